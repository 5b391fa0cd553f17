/* layers.c — the layers' kernels over flat float buffers: convolutions (im2col + GEMM, the
 * direct and Winograd 3x3 kernels), linear, batch norm with its fused ReLU / max-pool /
 * recomputed-conv forms, pools (model_internal.h has the layout). */

#include "model_internal.h"

/* ------------------------------------------------------------------ layers */

static void reduce(vl_model_t *m, double *buf, int n)
{
    if (m->reduce) m->reduce(buf, n, m->reduce_ctx);
}

/* Sums over float arrays with 16 float lanes per block of 1024 elements, the
 * blocks added in double: vectorisable without -ffast-math, accurate to ~1e-6
 * relative, and deterministic (fixed order). */
#define LANES 16
#define BLOCK 1024
VL_CLONES static double sum_f32(const float *x, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n;) {
        const size_t end = i + BLOCK < n ? i + BLOCK : n;
        float acc[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int k = 0; k < LANES; k++) acc[k] += x[i + k];
        for (; i < end; i++) acc[0] += x[i];
        double s = 0.0;
        for (int k = 0; k < LANES; k++) s += acc[k];
        total += s;
    }
    return total;
}

/* sum (x - mu)^2 */
VL_CLONES static double sumsq_dev_f32(const float *x, size_t n, float mu)
{
    double total = 0.0;
    for (size_t i = 0; i < n;) {
        const size_t end = i + BLOCK < n ? i + BLOCK : n;
        float acc[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int k = 0; k < LANES; k++) { float d = x[i + k] - mu; acc[k] += d * d; }
        for (; i < end; i++) { float d = x[i] - mu; acc[0] += d * d; }
        double s = 0.0;
        for (int k = 0; k < LANES; k++) s += acc[k];
        total += s;
    }
    return total;
}

/* sum dy and sum dy * (x - mu) */
/* sum dy and sum dy (x - mu), dy taken as ry > 0 ? dy : 0 when ry (the outputs of a ReLU
 * the BN feeds) is given: the ReLU's backward folded in, the same values as its own pass. */
VL_CLONES static void sum_dy_dyx(const float *dy, const float *ry, const float *x, size_t n, float mu, double *s_dy,
                                 double *s_dyx)
{
    double t1 = 0.0, t2 = 0.0;
    float masked[BLOCK];
    for (size_t i = 0; i < n;) {
        const size_t end = i + BLOCK < n ? i + BLOCK : n;
        const float *d = dy + i;
        if (ry) { /* the ReLU's mask first, in a plain loop (vectorised as a select) */
            for (size_t j = i; j < end; j++) {
                const float v = dy[j];
                masked[j - i] = ry[j] > 0.0f ? v : 0.0f;
            }
            d = masked;
        }
        const float *xb = x + i;
        const size_t len = end - i;
        float a1[LANES] = {0}, a2[LANES] = {0};
        size_t j = 0;
        for (; j + LANES <= len; j += LANES)
            for (int k = 0; k < LANES; k++) { a1[k] += d[j + k]; a2[k] += d[j + k] * (xb[j + k] - mu); }
        for (; j < len; j++) { a1[0] += d[j]; a2[0] += d[j] * (xb[j] - mu); }
        i = end;
        double s1 = 0.0, s2 = 0.0;
        for (int k = 0; k < LANES; k++) { s1 += a1[k]; s2 += a2[k]; }
        t1 += s1;
        t2 += s2;
    }
    *s_dy = t1;
    *s_dyx = t2;
}

/* Adds sum (x - s) and sum (x - s)^2 over n floats to *S and *Q (float lanes, blocks in
 * double, as sum_f32). */
VL_CLONES static void moments_f32(const float *x, size_t n, float s, double *S, double *Q)
{
    double t1 = 0.0, t2 = 0.0;
    for (size_t i = 0; i < n;) {
        const size_t end = i + BLOCK < n ? i + BLOCK : n;
        float a1[LANES] = {0}, a2[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int k = 0; k < LANES; k++) { float d = x[i + k] - s; a1[k] += d; a2[k] += d * d; }
        for (; i < end; i++) { float d = x[i] - s; a1[0] += d; a2[0] += d * d; }
        double s1 = 0.0, s2 = 0.0;
        for (int k = 0; k < LANES; k++) { s1 += a1[k]; s2 += a2[k]; }
        t1 += s1;
        t2 += s2;
    }
    *S += t1;
    *Q += t2;
}

/* Channel moments of a chunk of a conv output (rows of L floats, row stride ld) for the BN:
 * the first chunk sets each channel's shift to its mean. */
static void chunk_moments(double *csum, int C, const float *o, size_t L, size_t ld, int first)
{
    for (int c = 0; c < C; c++) {
        const float *x = o + (size_t)c * ld;
        if (first) {
            csum[c] = csum[C + c] = 0.0;
            csum[2 * C + c] = L ? (float)(sum_f32(x, L) / (double)L) : 0.0f;
        }
        moments_f32(x, L, (float)csum[2 * C + c], &csum[c], &csum[C + c]);
    }
}

/* Over the pool windows whose pooled value yp is positive: *s1 = sum dp, *s2 = sum dp (x - mu)
 * with x the BN input at the window's winner, xw[i] when xw is not NULL, else x[ap[i]]
 * (float lanes, blocks in double, as sum_f32; windows with yp <= 0 or NaN add nothing). */
static void pooled_sums(const float *restrict dp, const float *restrict yp, const float *restrict xw,
                        const float *restrict x, const int32_t *restrict ap, size_t n, float mu, double *s1, double *s2)
{
    double t1 = 0.0, t2 = 0.0;
    for (size_t i = 0; i < n;) {
        const size_t end = i + BLOCK < n ? i + BLOCK : n;
        float a1[LANES] = {0}, a2[LANES] = {0};
        if (xw) {
            for (; i + LANES <= end; i += LANES)
                for (int k = 0; k < LANES; k++) {
                    const int on = yp[i + k] > 0.0f;
                    const float d = dp[i + k], u = d * (xw[i + k] - mu);
                    a1[k] += on ? d : 0.0f;
                    a2[k] += on ? u : 0.0f;
                }
        } else {
            for (; i + LANES <= end; i += LANES)
                for (int k = 0; k < LANES; k++) {
                    const int on = yp[i + k] > 0.0f;
                    const float d = dp[i + k], u = d * (x[ap[i + k]] - mu);
                    a1[k] += on ? d : 0.0f;
                    a2[k] += on ? u : 0.0f;
                }
        }
        for (; i < end; i++)
            if (yp[i] > 0.0f) {
                a1[0] += dp[i];
                a2[0] += dp[i] * ((xw ? xw[i] : x[ap[i]]) - mu);
            }
        double u1 = 0.0, u2 = 0.0;
        for (int k = 0; k < LANES; k++) { u1 += a1[k]; u2 += a2[k]; }
        t1 += u1;
        t2 += u2;
    }
    *s1 = t1;
    *s2 = t2;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define LAYERS_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* scatter_winners' whole vectors on the AVX-512 path: returns how many elements it did. */
static size_t scatter_winners_avx512(float *dst, const int32_t *restrict ap, int32_t base, const float *restrict dp,
                                     const float *restrict yp, size_t n, float k)
{
    size_t i = 0;
    const __m512 kv = _mm512_set1_ps(k), zero = _mm512_setzero_ps();
    const __m512i bv = _mm512_set1_epi32(base);
    for (; i + 16 <= n; i += 16) {
        const __mmask16 on = _mm512_cmp_ps_mask(_mm512_loadu_ps(yp + i), zero, _CMP_GT_OQ);
        const __m512i idx = _mm512_sub_epi32(_mm512_loadu_si512(ap + i), bv);
        const __m512 old = _mm512_mask_i32gather_ps(zero, on, idx, dst, 4);
        _mm512_mask_i32scatter_ps(dst, on, idx, _mm512_fmadd_ps(kv, _mm512_loadu_ps(dp + i), old), 4);
    }
    return i;
}
#pragma GCC pop_options
#else
#define LAYERS_X86 0
#endif

/* dst[ap[i] - base] += k dp[i] for the windows with a positive pooled value yp[i] (the winners
 * of distinct windows are distinct, so a vector of them can be gathered and scattered). */
static void scatter_winners(float *dst, const int32_t *restrict ap, int32_t base, const float *restrict dp,
                            const float *restrict yp, size_t n, float k)
{
    size_t i = 0;
#if LAYERS_X86
    if (vl_isa() == VL_ISA_AVX512) i = scatter_winners_avx512(dst, ap, base, dp, yp, n, k);
#endif
    for (; i < n; i++)
        if (yp[i] > 0.0f) dst[ap[i] - base] += k * dp[i];
}

/* out = x + y, or relu(x + y) (NaN kept) into a residual add's ReLU. */
VL_CLONES void add_forward(const float *restrict x, const float *restrict y, float *restrict out, size_t n, int relu)
{
    if (relu)
        for (size_t j = 0; j < n; j++) {
            const float v = x[j] + y[j];
            out[j] = v < 0.0f ? 0.0f : v;
        }
    else
        for (size_t j = 0; j < n; j++) out[j] = x[j] + y[j];
}

/* dst (+)= src (a residual add's backward). */
VL_CLONES void add_into(float *restrict dst, const float *restrict src, size_t n, int acc)
{
    if (acc)
        for (size_t j = 0; j < n; j++) dst[j] += src[j];
    else
        memcpy(dst, src, n * sizeof(float));
}

VL_CLONES void relu_forward(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t j = 0; j < n; j++) y[j] = x[j] < 0.0f ? 0.0f : x[j]; /* NaN stays NaN */
}

VL_CLONES void relu_backward(const float *restrict y, const float *restrict dy, float *restrict dx, size_t n, int acc)
{
    if (acc)
        for (size_t j = 0; j < n; j++) dx[j] += y[j] > 0.0f ? dy[j] : 0.0f;
    else
        for (size_t j = 0; j < n; j++) dx[j] = y[j] > 0.0f ? dy[j] : 0.0f;
}

static void add_const(float *restrict x, size_t n, float b)
{
    for (size_t i = 0; i < n; i++) x[i] += b;
}

static void fill_const(float *restrict x, size_t n, float b)
{
    for (size_t i = 0; i < n; i++) x[i] = b;
}

VL_CLONES static void axpb(const float *restrict x, float *restrict y, size_t n, float a, float b)
{
    for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b;
}

VL_CLONES static void axpb_relu(const float *restrict x, float *restrict y, size_t n, float a, float b)
{
    for (size_t i = 0; i < n; i++) {
        float v = a * x[i] + b;
        y[i] = v < 0.0f ? 0.0f : v; /* NaN stays NaN */
    }
}

/* Zeroes, in an (h, w) plane, the rows and columns of the output positions whose input
 * (oy + dy, ox + dx) is outside the image. */
static void zero_outside(float *plane, int h, int w, int dy, int dx)
{
    for (int oy = 0; oy < h; oy++) {
        float *r = plane + (size_t)oy * w;
        if (oy + dy < 0 || oy + dy >= h) { memset(r, 0, (size_t)w * sizeof(float)); continue; }
        for (int ox = 0; ox < -dx && ox < w; ox++) r[ox] = 0.0f;
        for (int ox = w - dx > 0 ? w - dx : 0; ox < w; ox++) r[ox] = 0.0f;
    }
}

/* Kernel tap (ky, kx) of a "same" convolution: output position i reads input i + sh, which
 * lies in the plane for lo <= i < hi (hi <= lo when the kernel is wider than the image). */
static void same_shift(const node_t *nd, int ky, int kx, long *sh, long *lo, long *hi)
{
    const long hw = (long)nd->h * nd->w;
    *sh = (long)(ky - nd->pad) * nd->w + (kx - nd->pad);
    *lo = *sh < 0 ? -*sh : 0;
    *hi = *sh > 0 ? hw - *sh : hw;
}

static void im2col_same(const node_t *nd, int n, int b0, int nb, const float *x, float *col)
{
    const int k = nd->k, p = nd->pad, h = nd->h, w = nd->w;
    const long hw = (long)h * w;
    const size_t ncol = (size_t)nb * hw;
    for (int ci = 0; ci < nd->cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + ((size_t)(ci * k + ky) * k + kx) * ncol;
                long sh, lo, hi;
                same_shift(nd, ky, kx, &sh, &lo, &hi);
                for (int b = 0; b < nb; b++) {
                    const float *plane = x + ((size_t)ci * n + b0 + b) * hw;
                    float *dst = row + (size_t)b * hw;
                    if (hi <= lo) { memset(dst, 0, (size_t)hw * sizeof(float)); continue; } /* kernel wider than the image */
                    memcpy(dst + lo, plane + lo + sh, (size_t)(hi - lo) * sizeof(float));
                    if (lo) memset(dst, 0, (size_t)lo * sizeof(float));
                    if (hi < hw) memset(dst + hi, 0, (size_t)(hw - hi) * sizeof(float));
                    zero_outside(dst, h, w, ky - p, kx - p);
                }
            }
}

/* images b0..b0+nb-1 of dx += col2im(dcol) for a "same" convolution; zeroes the entries of
 * dcol that belong to positions outside the image first (dcol is scratch) */
static void col2im_add_same(const node_t *nd, int n, int b0, int nb, float *dcol, float *dx)
{
    const int k = nd->k, p = nd->pad, h = nd->h, w = nd->w;
    const long hw = (long)h * w;
    const size_t ncol = (size_t)nb * hw;
    for (int ci = 0; ci < nd->cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = dcol + ((size_t)(ci * k + ky) * k + kx) * ncol;
                long sh, lo, hi;
                same_shift(nd, ky, kx, &sh, &lo, &hi);
                for (int b = 0; b < nb; b++) {
                    float *restrict plane = dx + ((size_t)ci * n + b0 + b) * hw;
                    float *restrict src = row + (size_t)b * hw;
                    zero_outside(src, h, w, ky - p, kx - p);
                    for (long i = lo; i < hi; i++) plane[i + sh] += src[i];
                }
            }
}

/* col (K, nb*ho*wo) from images b0..b0+nb-1 of x (cin, n, h, w) */
static void im2col(const node_t *nd, int n, int b0, int nb, const float *x, float *col)
{
    if (conv_is_same(nd)) { im2col_same(nd, n, b0, nb, x, col); return; }
    const int k = nd->k, s = nd->stride, p = nd->pad;
    const int h = nd->hin, w = nd->win, ho = nd->h, wo = nd->w;
    const size_t ncol = (size_t)nb * ho * wo;
    for (int ci = 0; ci < nd->cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + ((size_t)(ci * k + ky) * k + kx) * ncol;
                const int ox0 = p - kx > 0 ? p - kx : 0;           /* first ox with ix >= 0 (stride 1) */
                const int ox1 = w + p - kx < wo ? w + p - kx : wo; /* first ox with ix >= w (stride 1) */
                for (int b = 0; b < nb; b++) {
                    const float *plane = x + ((size_t)ci * n + b0 + b) * h * w;
                    for (int oy = 0; oy < ho; oy++) {
                        float *dst = row + ((size_t)b * ho + oy) * wo;
                        int iy = oy * s - p + ky;
                        if (iy < 0 || iy >= h) { memset(dst, 0, wo * sizeof(float)); continue; }
                        const float *src = plane + (size_t)iy * w;
                        if (s == 1) {
                            const float *sx = src - p + kx;
                            for (int ox = 0; ox < ox0; ox++) dst[ox] = 0.0f;
                            for (int ox = ox0; ox < ox1; ox++) dst[ox] = sx[ox];
                            for (int ox = ox1 > ox0 ? ox1 : ox0; ox < wo; ox++) dst[ox] = 0.0f;
                        } else {
                            for (int ox = 0; ox < wo; ox++) {
                                int ix = ox * s - p + kx;
                                dst[ox] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
                            }
                        }
                    }
                }
            }
}

void conv_im2col(const node_t *nd, int n, int b0, int nb, const float *x, float *col) { im2col(nd, n, b0, nb, x, col); }

/* images b0..b0+nb-1 of dx (cin, n, h, w) += col2im(dcol); dcol is scratch (may be changed) */
static void col2im_add(const node_t *nd, int n, int b0, int nb, float *dcol, float *dx)
{
    if (conv_is_same(nd)) { col2im_add_same(nd, n, b0, nb, dcol, dx); return; }
    const int k = nd->k, s = nd->stride, p = nd->pad;
    const int h = nd->hin, w = nd->win, ho = nd->h, wo = nd->w;
    const size_t ncol = (size_t)nb * ho * wo;
    for (int ci = 0; ci < nd->cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = dcol + ((size_t)(ci * k + ky) * k + kx) * ncol;
                const int ox0 = p - kx > 0 ? p - kx : 0, ox1 = w + p - kx < wo ? w + p - kx : wo;
                for (int b = 0; b < nb; b++) {
                    float *plane = dx + ((size_t)ci * n + b0 + b) * h * w;
                    for (int oy = 0; oy < ho; oy++) {
                        int iy = oy * s - p + ky;
                        if (iy < 0 || iy >= h) continue;
                        const float *src = row + ((size_t)b * ho + oy) * wo;
                        float *dst = plane + (size_t)iy * w;
                        if (s == 1) {
                            float *d = dst - p + kx;
                            for (int ox = ox0; ox < ox1; ox++) d[ox] += src[ox];
                        } else {
                            for (int ox = 0; ox < wo; ox++) {
                                int ix = ox * s - p + kx;
                                if (ix >= 0 && ix < w) dst[ix] += src[ox];
                            }
                        }
                    }
                }
            }
}

void conv_col2im_add(const node_t *nd, int n, int b0, int nb, float *dcol, float *dx) { col2im_add(nd, n, b0, nb, dcol, dx); }

/* The BN's running statistics from state as its mean and 1/std (eval mode). */
static void bn_running(node_t *nd, const float *state)
{
    for (int c = 0; c < nd->c; c++) {
        nd->mean[c] = state[nd->rm_off + c];
        nd->invstd[c] = 1.0 / sqrt((double)state[nd->rv_off + c] + BN_EPS);
    }
}

/* Channel c of a BN as y = a x + b with its current mean and 1/std. */
static void bn_affine(const node_t *nd, const float *w, int c, float *a, float *b)
{
    const float *gamma = w + nd->w_off, *beta = w + nd->b_off;
    *a = (float)(gamma[c] * nd->invstd[c]);
    *b = (float)(beta[c] - gamma[c] * nd->invstd[c] * nd->mean[c]);
}

/* Direct conv of images b0..b0+nb-1 of x (cin, n, h, w) with the weights packed in m->wpack:
 * channel co of image b0+i lands at out + co cstride + i hw; the chunk's padded input is
 * left in m->xpad. With csum, the chunk's BN moments are added to it as chunk_moments does:
 * the first chunk's (first != 0) by chunk_moments, which sets the shifts, the later ones by
 * the kernel while the values are in registers (moments_only: and not stored). */
static void conv_direct_chunk(vl_model_t *m, const node_t *nd, const float *w, const float *x, int n, int b0, int nb,
                              float *out, size_t cstride, double *csum, int first, int moments_only,
                              const conv3_ep_t *ep)
{
    const conv3_geom_t *g = &nd->geom;
    const int C = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, hwin = (size_t)nd->hin * nd->win;
    if (g->stride == 2) conv3_pad_phases(g, nd->cin, x + (size_t)b0 * hwin, (size_t)n * hwin, nb, m->xpad);
    else conv3_pad(g, nd->cin, x + (size_t)b0 * hw, (size_t)n * hw, nb, m->xpad);
    const float *xp = conv3_pad_data(m->xpad);
    float *mom = csum && !first ? m->mom : NULL;
    if (mom) memset(mom, 0, 32 * (size_t)C * sizeof(float));
    if (nd->wino) {
        wino_out_t o = {.out = mom && moments_only ? NULL : out, .cstride = cstride, .shift = m->shift, .mom = mom};
        wino_forward(g, nb, xp, m->wU, nd->has_bias ? w + nd->b_off : NULL, m->wwork, &o);
    } else {
        conv3_forward_ep(g, nb, nd->cin, C, xp, m->wpack, nd->has_bias ? w + nd->b_off : NULL,
                         mom && moments_only ? NULL : out, cstride, 0, m->shift, mom, ep);
    }
    if (!csum) return;
    if (first) {
        chunk_moments(csum, C, out, (size_t)nb * hw, cstride, 1);
        for (int c = 0; c < C; c++) m->shift[c] = (float)csum[2 * C + c];
        return;
    }
    for (int c = 0; c < C; c++) {
        double s = 0.0, q = 0.0;
        for (int l = 0; l < 16; l++) {
            s += mom[32 * c + l];
            q += mom[32 * c + 16 + l];
        }
        csum[c] += s;
        csum[C + c] += q;
    }
}

/* Weight gradient (and input gradient when dx) of a direct conv: per chunk of images, the
 * padded input and output gradient, then dW (+)= the kernels' reduction and dx (+)= the
 * "full" convolution of dy with the flipped weights. */
static void conv_direct_backward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g,
                                 float *dx, int dx_acc)
{
    const conv3_geom_t *geo = &nd->geom;
    const size_t hw = (size_t)nd->h * nd->w, np = (size_t)n * hw;
    const int chunk = direct_chunk(nd);
    /* the input gradient as a Winograd forward of the padded dy with the flipped, transposed
     * weights W'[ci][co][t] = W[co][ci][8 - t] (when it overwrites dx) */
    const int wino_dx = dx && !dx_acc && nd->wino && wino_supported(nd->c, nd->cin, nd->h, nd->w);
    conv3_geom_t gb;
    if (wino_dx) {
        conv3_flip(geo, w + nd->w_off, m->wpack);
        wino_pack(nd->c, nd->cin, m->wpack, m->wUb);
        conv3_geom_layout(&gb, nd->c, nd->cin, nd->h, nd->w, geo->flat);
    } else if (dx) {
        conv3_pack_backward(geo, w + nd->w_off, m->wpack);
    }
    /* the weight gradient on Winograd too where its tiles fill the vectors (wino.h) */
    const int wino_dw = nd->wino && wino_wgrad_supported(nd->cin, nd->c, nd->h, nd->w) && wino_wgrad_pays(nd->cin, nd->c);
    const int nbw = wino_dw ? (wino_wgrad_images(geo) < chunk ? wino_wgrad_images(geo) : chunk) : 0;
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        conv3_pad(geo, nd->cin, x + (size_t)b0 * hw, np, nb, m->xpad);
        if (dx || !wino_dw) conv3_pad(geo, nd->c, nd->dout + (size_t)b0 * hw, np, nb, m->dpad);
        const float *dp = conv3_pad_data(m->dpad);
        if (wino_dw) {
            for (int i = 0; i < nb; i += nbw) {
                const int ni = nb - i < nbw ? nb - i : nbw;
                wino_wgrad(geo, ni, conv3_pad_data(m->xpad) + (size_t)i * nd->cin * geo->plane, nd->dout + (size_t)(b0 + i) * hw,
                           np, m->wwork, m->wgM, b0 > 0 || i > 0);
            }
        } else {
            conv3_wgrad(geo, nb, conv3_pad_data(m->xpad), dp, g + nd->w_off, b0 > 0);
        }
        if (wino_dx) {
            for (int i = 0; i < nb; i += WINO_CHUNK) {
                const int ni = nb - i < WINO_CHUNK ? nb - i : WINO_CHUNK;
                wino_out_t o = {.out = dx + (size_t)(b0 + i) * hw, .cstride = np};
                wino_forward(&gb, ni, dp + (size_t)i * nd->c * geo->plane, m->wUb, NULL, m->wwork, &o);
            }
        } else if (dx) {
            conv3_forward_n(geo, nb, nd->c, nd->cin, dp, m->wpack, NULL, dx + (size_t)b0 * hw, np, dx_acc, NULL, NULL);
        }
    }
    if (wino_dw && n > 0) wino_wgrad_finish(nd->cin, nd->c, m->wgM, g + nd->w_off);
    else if (wino_dw) memset(g + nd->w_off, 0, (size_t)nd->c * nd->cin * 9 * sizeof(float));
}

/* Weight gradient of a direct stride-2 conv on the direct kernel, over the input's phases (its
 * input gradient takes conv_backward's GEMM + col2im route). */
static void conv_s2_wgrad(vl_model_t *m, node_t *nd, const float *x, int n, float *g)
{
    const conv3_geom_t *geo = &nd->geom;
    const size_t hw = (size_t)nd->h * nd->w, hwin = (size_t)nd->hin * nd->win, np = (size_t)n * hw;
    const int chunk = direct_chunk(nd);
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        conv3_pad_phases(geo, nd->cin, x + (size_t)b0 * hwin, (size_t)n * hwin, nb, m->xpad);
        conv3_pad_s2out(geo, nd->c, nd->dout + (size_t)b0 * hw, np, nb, m->dpad);
        conv3_wgrad(geo, nb, conv3_pad_data(m->xpad), conv3_pad_data(m->dpad), g + nd->w_off, b0 > 0);
    }
}

/* m->wU = the Winograd transform of the conv's weights wt, unless it already holds it. */
static void wino_weights(vl_model_t *m, node_t *nd, const float *wt)
{
    const size_t nw = (size_t)nd->c * nd->cin * 9;
    const int id = (int)(nd - m->nodes);
    if (m->wU_node == id && memcmp(m->wU_src, wt, nw * sizeof(float)) == 0) return;
    wino_pack(nd->cin, nd->c, wt, m->wU);
    memcpy(m->wU_src, wt, nw * sizeof(float));
    m->wU_node = id;
}

void conv_forward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n)
{
    const int K = nd->cin * nd->k * nd->k, hw = nd->h * nd->w;
    const int np = n * hw;
    if (conv_is_pointwise(nd)) {
        /* out (cout, np) = W (cout, K) x (K, np) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nd->c, np, K, 1.0f, w + nd->w_off, K, x, np, 0.0f,
                    nd->out, np);
    } else if (nd->direct) {
        const int chunk = nd->wino ? WINO_CHUNK : direct_chunk(nd);
        if (nd->wino) wino_weights(m, nd, w + nd->w_off);
        else conv3_pack_forward(&nd->geom, w + nd->w_off, m->wpack);
        node_t *bn = nd + 1; /* the BN this conv feeds, when it is its only consumer (sole_bn, csum) */
        if (nd->sole_bn && m->mode == MODE_EVAL && m->no_grad && (!bn->fuse_pool || (nd->wino && (bn + 2)->pool_off))) {
            /* an evaluation no backward follows: the BN (running statistics) and its ReLU in the
             * kernel's epilogue, straight into the BN's (or the ReLU's) output; a Winograd conv
             * whose BN also pools stores the pooled values only (the tile is the pool window) */
            float *a = m->shift, *b = m->mom; /* scratch: C floats each */
            bn_running(bn, m->state);
            for (int c = 0; c < nd->c; c++) bn_affine(bn, w, c, &a[c], &b[c]);
            const conv3_ep_t ep = {.a = a, .b = b, .relu = bn->fuse_relu};
            float *dst = bn->fuse_relu ? (bn + 1)->out : bn->out;
            node_t *pool = bn + 2;
            const size_t phw = bn->fuse_pool ? (size_t)pool->h * pool->w : 0;
            for (int b0 = 0; b0 < n; b0 += chunk) {
                const int nb = n - b0 < chunk ? n - b0 : chunk;
                if (nd->wino) {
                    conv3_pad(&nd->geom, nd->cin, x + (size_t)b0 * hw, (size_t)np, nb, m->xpad);
                    wino_out_t o = {.out = dst + (size_t)b0 * hw, .cstride = (size_t)np, .ep_a = a, .ep_b = b,
                                    .ep_relu = bn->fuse_relu};
                    if (bn->fuse_pool)
                        o = (wino_out_t){.pool = pool->out + (size_t)b0 * phw, .pstride = (size_t)n * phw, .a = a, .b = b};
                    wino_forward(&nd->geom, nb, conv3_pad_data(m->xpad), m->wU, nd->has_bias ? w + nd->b_off : NULL,
                                 m->wwork, &o);
                } else {
                    conv_direct_chunk(m, nd, w, x, n, b0, nb, dst + (size_t)b0 * hw, (size_t)np, NULL, 0, 0, &ep);
                }
            }
            bn->eval_fused = 1;
            return;
        }
        /* a refresh that ends with this conv's BN needs its moments only */
        const int moments_only = m->mode == MODE_BN_UPDATE && nd->csum && bn->op == OP_BN &&
                                 bn->in0 == nd - m->nodes && bn - m->nodes == m->last_bn;
        for (int b0 = 0; b0 < n; b0 += chunk) {
            const int nb = n - b0 < chunk ? n - b0 : chunk;
            conv_direct_chunk(m, nd, w, x, n, b0, nb, nd->out + (size_t)b0 * hw, (size_t)np,
                              nd->csum && m->mode != MODE_EVAL ? nd->csum : NULL, b0 == 0, moments_only, NULL);
        }
        if (n == 0 && nd->csum) memset(nd->csum, 0, 3 * (size_t)nd->c * sizeof(double));
        return;
    } else {
        const int chunk = conv_chunk(nd);
        for (int b0 = 0; b0 < n; b0 += chunk) {
            const int nb = n - b0 < chunk ? n - b0 : chunk;
            im2col(nd, n, b0, nb, x, m->col);
            /* out[:, b0*hw ...] (cout, nb*hw) = bias + W (cout, K) col (K, nb*hw): the output starts
             * as the bias and the GEMM adds to it (beta = 1 spares OpenBLAS its own pass over C) */
            if (nd->has_bias)
                for (int co = 0; co < nd->c; co++)
                    fill_const(nd->out + (size_t)co * np + (size_t)b0 * hw, (size_t)nb * hw, w[nd->b_off + co]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nd->c, nb * hw, K, 1.0f, w + nd->w_off, K, m->col,
                        nb * hw, nd->has_bias ? 1.0f : 0.0f, nd->out + (size_t)b0 * hw, np);
            /* the BN's channel sums while the chunk's output is still in cache */
            if (nd->csum && m->mode != MODE_EVAL)
                chunk_moments(nd->csum, nd->c, nd->out + (size_t)b0 * hw, (size_t)nb * hw, (size_t)np, b0 == 0);
        }
        if (n == 0 && nd->csum) memset(nd->csum, 0, 3 * (size_t)nd->c * sizeof(double));
        return;
    }
    if (nd->has_bias)
        for (int co = 0; co < nd->c; co++) add_const(nd->out + (size_t)co * np, (size_t)np, w[nd->b_off + co]);
    if (nd->csum && m->mode != MODE_EVAL) chunk_moments(nd->csum, nd->c, nd->out, (size_t)np, (size_t)np, 1);
}

void conv_backward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g,
                          float *dx, int dx_acc)
{
    const int K = nd->cin * nd->k * nd->k, hw = nd->h * nd->w;
    const int np = n * hw;
    if (nd->has_bias && !nd->bias_grad_done)
        for (int co = 0; co < nd->c; co++)
            g[nd->b_off + co] = (float)sum_f32(nd->dout + (size_t)co * np, (size_t)np);
    nd->bias_grad_done = 0;
    if (n == 0) { memset(g + nd->w_off, 0, (size_t)nd->c * K * sizeof(float)); return; }
    if (conv_is_pointwise(nd)) {
        /* dW (cout, K) = dy (cout, np) x^T;  dx (K, np) (+)= W^T (K, cout) dy (cout, np) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nd->c, K, np, 1.0f, nd->dout, np, x, np, 0.0f,
                    g + nd->w_off, K);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, np, nd->c, 1.0f, w + nd->w_off, K, nd->dout, np,
                        dx_acc ? 1.0f : 0.0f, dx, np);
        return;
    }
    /* a direct stride-2 conv: dW on the direct kernel, dx on the GEMM route below */
    const int wgrad_done = nd->direct && nd->geom.stride == 2;
    if (wgrad_done) conv_s2_wgrad(m, nd, x, n, g);
    else if (nd->direct && (!dx || nd->cin % 8 == 0)) { conv_direct_backward(m, nd, w, x, n, g, dx, dx_acc); return; }
    if (wgrad_done && !dx) return;
    if (dx && !dx_acc) memset(dx, 0, (size_t)nd->cin * n * nd->hin * nd->win * sizeof(float));
    const int chunk = conv_chunk(nd);
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        const float *dy = nd->dout + (size_t)b0 * hw; /* (cout, nb*hw) with row stride np */
        if (!wgrad_done) {
            im2col(nd, n, b0, nb, x, m->col);
            /* dW (cout, K) += dy (cout, nb*hw) col^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nd->c, K, nb * hw, 1.0f, dy, np, m->col, nb * hw,
                        b0 ? 1.0f : 0.0f, g + nd->w_off, K);
        }
        if (!dx) continue;
        /* dcol (K, nb*hw) = W^T (K, cout) dy */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, nb * hw, nd->c, 1.0f, w + nd->w_off, K, dy, np, 0.0f,
                    m->dcol, nb * hw);
        col2im_add(nd, n, b0, nb, m->dcol, dx);
    }
}

void linear_forward(node_t *nd, const float *w, const float *x, int n)
{
    const int fin = nd->cin, fout = nd->c;
    /* out (n, fout) = x (n, fin) W^T + b */
    for (int i = 0; i < n; i++) memcpy(nd->out + (size_t)i * fout, w + nd->b_off, fout * sizeof(float));
    if (n) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1.0f, x, fin, w + nd->w_off, fin, 1.0f,
                       nd->out, fout);
}

void linear_backward(node_t *nd, const float *w, const float *x, int n, float *g, float *dx, int dx_acc)
{
    const int fin = nd->cin, fout = nd->c;
    /* dW (fout, fin) = dy^T (fout, n) x (n, fin); db = sum_n dy */
    if (n) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fout, fin, n, 1.0f, nd->dout, fout, x, fin, 0.0f,
                    g + nd->w_off, fin);
    } else {
        memset(g + nd->w_off, 0, (size_t)fout * fin * sizeof(float));
    }
    for (int j = 0; j < fout; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += nd->dout[(size_t)i * fout + j];
        g[nd->b_off + j] = (float)s;
    }
    /* dx (n, fin) (+)= dy (n, fout) W (fout, fin) */
    if (dx && n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, fin, fout, 1.0f, nd->dout, fout, w + nd->w_off, fin,
                    dx_acc ? 1.0f : 0.0f, dx, fin);
}

/* One output row of a 2x2/2 max-pool: branch-free so that it vectorises. Ties keep
 * the first element in window order and a NaN wins, as PyTorch's CPU kernel. */
static void maxpool_row(const float *restrict r0, const float *restrict r1, int wo, int w, int32_t base,
                        float *restrict y, int32_t *restrict arg)
{
    for (int ox = 0; ox < wo; ox++) {
        float m = r0[2 * ox], v;
        int32_t k = 0;
        int t;
        v = r0[2 * ox + 1]; t = (v > m) | (v != v); m = t ? v : m; k = t ? 1 : k;
        v = r1[2 * ox];     t = (v > m) | (v != v); m = t ? v : m; k = t ? w : k;
        v = r1[2 * ox + 1]; t = (v > m) | (v != v); m = t ? v : m; k = t ? w + 1 : k;
        y[ox] = m;
        arg[ox] = base + 2 * ox + k;
    }
}

/* relu(a*x + b) then 2x2/2 max-pool of one (h, w) plane with h and w even, in two
 * vectorisable sweeps: the larger of each vertical pair (v, and which row won in vy), then
 * the larger of each horizontal pair of v, read as one contiguous array (pairs never straddle
 * rows because w is even). Ties keep the first element in window order, as maxpool_row; a
 * NaN wins (which NaN of a window holding two may differ from maxpool_row: the output is
 * NaN either way). off[i] = offset of output i's window in the plane. */
static void relu_pool_plane(const float *restrict xp, int h, int w, float a, float b, float *restrict work,
                            const int32_t *restrict off, int32_t base, float *restrict y, int32_t *restrict arg)
{
    const int ho = h / 2, nout = ho * (w / 2);
    float *restrict p = work, *restrict v = work + (size_t)h * w;
    int32_t *restrict vy = (int32_t *)(v + (size_t)ho * w);
    axpb_relu(xp, p, (size_t)h * w, a, b);
    for (int oy = 0; oy < ho; oy++) {
        const float *restrict r0 = p + (size_t)2 * oy * w, *restrict r1 = r0 + w;
        float *restrict vr = v + (size_t)oy * w;
        int32_t *restrict yr = vy + (size_t)oy * w;
        for (int x = 0; x < w; x++) {
            float m = r0[x], u = r1[x];
            int32_t k = 0;
            int t = (u > m) | (u != u);
            m = t ? u : m;
            k = t ? 1 : k;
            vr[x] = m;
            yr[x] = k;
        }
    }
    for (int i = 0; i < nout; i++) {
        const float l = v[2 * i], r = v[2 * i + 1];
        const int32_t yl = vy[2 * i], yr = vy[2 * i + 1];
        const int sel = (r > l) | (r != r) | ((r == l) & (yr < yl));
        y[i] = sel ? r : l;
        arg[i] = base + off[i] + (sel ? yr : yl) * w + sel;
    }
}

/* relu(a*x + b) then 2x2/2 max-pool of one (h, w) plane with h and w even, values only (no
 * winner indices: a forward that no backward follows): the larger of each vertical pair,
 * then of each horizontal pair, a NaN winning as in relu_pool_plane. */
#if LAYERS_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* relu_pool_plane_values for w <= 32 on the AVX-512 path: a row in two vectors (relu, vertical
 * maximum, then even vs odd lanes, in registers). */
static void relu_pool_plane_values_avx512(const float *restrict xp, int h, int w, float a, float b, float *restrict y)
{
    const int ho = h / 2, wo = w / 2;
    const __m512 av = _mm512_set1_ps(a), bv = _mm512_set1_ps(b), z = _mm512_setzero_ps();
    const __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1);
    const __mmask16 m1 = (__mmask16)(w > 16 ? (1u << (w - 16)) - 1 : 0);
    const __mmask16 mo = (__mmask16)((1u << wo) - 1);
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int oy = 0; oy < ho; oy++) {
        const float *r0 = xp + (size_t)2 * oy * w, *r1 = r0 + w;
        __m512 v[2];
        for (int k = 0; k < 2; k++) {
            const __mmask16 mk = k ? m1 : m0;
            __m512 p = _mm512_add_ps(_mm512_mul_ps(av, _mm512_maskz_loadu_ps(mk, r0 + 16 * k)), bv);
            __m512 u = _mm512_add_ps(_mm512_mul_ps(av, _mm512_maskz_loadu_ps(mk, r1 + 16 * k)), bv);
            p = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(p, z, _CMP_LT_OQ), p, z); /* relu, NaN stays */
            u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, z, _CMP_LT_OQ), u, z);
            const __mmask16 t = _mm512_cmp_ps_mask(u, p, _CMP_GT_OQ) | _mm512_cmp_ps_mask(u, u, _CMP_UNORD_Q);
            v[k] = _mm512_mask_blend_ps(t, p, u);
        }
        const __m512 l = _mm512_permutex2var_ps(v[0], ev, v[1]), r = _mm512_permutex2var_ps(v[0], od, v[1]);
        const __mmask16 t = _mm512_cmp_ps_mask(r, l, _CMP_GT_OQ) | _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
        _mm512_mask_storeu_ps(y + (size_t)oy * wo, mo, _mm512_mask_blend_ps(t, l, r));
    }
}
#pragma GCC pop_options
#endif

static void relu_pool_plane_values(const float *restrict xp, int h, int w, float a, float b, float *restrict work,
                                   float *restrict y)
{
    const int ho = h / 2, wo = w / 2, nout = ho * wo;
#if LAYERS_X86
    if (w <= 32 && vl_isa() == VL_ISA_AVX512) {
        relu_pool_plane_values_avx512(xp, h, w, a, b, y);
        return;
    }
#endif
    float *restrict p = work, *restrict v = work + (size_t)h * w;
    axpb_relu(xp, p, (size_t)h * w, a, b);
    for (int oy = 0; oy < ho; oy++) {
        const float *restrict r0 = p + (size_t)2 * oy * w, *restrict r1 = r0 + w;
        float *restrict vr = v + (size_t)oy * w;
        for (int x = 0; x < w; x++) {
            const float m = r0[x], u = r1[x];
            const int t = (u > m) | (u != u);
            vr[x] = t ? u : m;
        }
    }
    for (int i = 0; i < nout; i++) {
        const float l = v[2 * i], r = v[2 * i + 1];
        const int t = (r > l) | (r != r);
        y[i] = t ? r : l;
    }
}

/* Fused BN -> ReLU -> max-pool forward of nimg images of one channel (planes plane0 ..
 * plane0 + nimg - 1 of the (C, N, H, W) layout, their BN input at xc): writes the pool node's
 * output and indices (into that layout, as maxpool_forward), and the BN input at each winner
 * into xwin when it is not NULL; no_grad: the output only, when the planes are even (for a
 * forward that no backward follows). */
static void bn_relu_pool(const node_t *bn, node_t *pool, size_t plane0, int nimg, const float *xc, float a, float b,
                         float *rows, float *xwin, int no_grad)
{
    const int h = bn->h, w = bn->w, ho = pool->h, wo = pool->w;
    const size_t hw = (size_t)h * w;
    for (int img = 0; img < nimg; img++) {
        const size_t plane = plane0 + img;
        const float *xp = xc + (size_t)img * hw;
        float *yp = pool->out + plane * ho * wo;
        int32_t *ap = pool->argmax + plane * ho * wo;
        if (pool->pool_off && no_grad) {
            relu_pool_plane_values(xp, h, w, a, b, rows, yp);
            continue;
        } else if (pool->pool_off) {
            relu_pool_plane(xp, h, w, a, b, rows, pool->pool_off, (int32_t)(plane * hw), yp, ap);
        } else {
            for (int oy = 0; oy < ho; oy++) { /* two rows of relu(a*x + b) in L1, then the pool row */
                axpb_relu(xp + (size_t)2 * oy * w, rows, (size_t)2 * w, a, b);
                maxpool_row(rows, rows + w, wo, w, (int32_t)(plane * hw + (size_t)2 * oy * w), yp + (size_t)oy * wo,
                            ap + (size_t)oy * wo);
            }
        }
        if (xwin) /* the BN input at each winner, for a backward that cannot read it back */
            for (int i = 0; i < ho * wo; i++) xwin[plane * ho * wo + i] = xp[ap[i] - plane * hw];
    }
}

/* The model input in the (C, N, H, W) layout the first conv reads. */
static const float *model_input(const vl_model_t *m) { return m->nodes[0].out ? m->nodes[0].out : m->x; }

/* Before a pass of conv_chunk_out over a batch: the direct kernel's packed weights. */
static void recompute_begin(vl_model_t *m, const node_t *cv, const float *w)
{
    if (cv->direct) conv3_pack_forward(&cv->geom, w + cv->w_off, m->wpack);
}

/* Output of a recompute conv for images b0..b0+nb-1: out (cout, nb*hw) = bias + W col, with
 * the chunk's im2col left in m->col (direct: its padded input in m->xpad); with csum, the
 * chunk's BN moments are added to it (chunk_moments); moments_only: out may be left unwritten. */
static void conv_chunk_out(vl_model_t *m, const node_t *cv, const float *w, int n, int b0, int nb, float *out,
                           double *csum, int moments_only)
{
    const int K = cv->cin * cv->k * cv->k, L = nb * cv->h * cv->w;
    if (cv->direct) { /* weights packed by recompute_begin; the padded chunk is left in m->xpad */
        conv_direct_chunk(m, cv, w, model_input(m), n, b0, nb, out, (size_t)L, csum, b0 == 0, moments_only, NULL);
        return;
    }
    im2col(cv, n, b0, nb, model_input(m), m->col);
    if (cv->has_bias)
        for (int co = 0; co < cv->c; co++) fill_const(out + (size_t)co * L, (size_t)L, w[cv->b_off + co]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cv->c, L, K, 1.0f, w + cv->w_off, K, m->col, L,
                cv->has_bias ? 1.0f : 0.0f, out, L);
    if (csum) chunk_moments(csum, cv->c, out, (size_t)L, (size_t)L, b0 == 0);
}

/* The normalise + ReLU + pool pass of a BN over a recompute conv; records the BN input at
 * each pool winner (xwin) for the backward. */
static void bn_pool_recompute(vl_model_t *m, node_t *nd, const float *w, int n)
{
    const int no_grad = (m->no_grad && m->mode == MODE_EVAL) || m->mode == MODE_BN_UPDATE;
    const node_t *cv = &m->nodes[nd->in0];
    const int chunk = recompute_chunk(cv);
    const size_t hw = (size_t)nd->h * nd->w;
    recompute_begin(m, cv, w);
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        conv_chunk_out(m, cv, w, n, b0, nb, m->xchunk, NULL, 0);
        for (int c = 0; c < nd->c; c++) {
            float a, b;
            bn_affine(nd, w, c, &a, &b);
            bn_relu_pool(nd, nd + 2, (size_t)c * n + b0, nb, m->xchunk + (size_t)c * nb * hw, a, b, m->rows,
                         no_grad ? NULL : nd->xwin, no_grad);
        }
    }
}

void bn_forward(vl_model_t *m, node_t *nd, const float *w, float *state, const float *x, int n, int mode,
                       int stats_only)
{
    const node_t *cv = &m->nodes[nd->in0];
    const int recompute = cv->recompute, chunk = recompute ? recompute_chunk(cv) : 0;
    const int C = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, np = (size_t)n * hw;
    nd->bn_batch_stats = mode != MODE_EVAL;
    if (mode == MODE_EVAL) {
        bn_running(nd, state);
    } else {
        /* Two passes, each reduced over the group: mean, then centred sum of squares. */
        double *red = m->red;
        const node_t *src = &m->nodes[nd->in0];
        /* Moments about a per-channel shift s (S = sum (x - s), Q = sum (x - s)^2, taken while
         * the conv output was in cache), then, with the group's mean M, the centred sum of
         * squares Q + 2 (s - M) S + n (s - M)^2: two reductions, one pass over the data. */
        const double *mom = src->csum;
        if (recompute) {
            double *cm = nd->acc_mean + 2 * (size_t)C; /* scratch: 3 C doubles after the accumulators */
            recompute_begin(m, cv, w);
            for (int b0 = 0; b0 < n; b0 += chunk) {
                const int nb = n - b0 < chunk ? n - b0 : chunk;
                conv_chunk_out(m, cv, w, n, b0, nb, m->xchunk, cm, 1);
            }
            if (n == 0) memset(cm, 0, 3 * (size_t)C * sizeof(double));
            mom = cm;
        }
        if (mom) {
            for (int c = 0; c < C; c++) red[c] = mom[c] + (double)np * mom[2 * C + c];
        } else {
            for (int c = 0; c < C; c++) red[c] = sum_f32(x + (size_t)c * np, np);
        }
        red[C] = (double)np;
        reduce(m, red, C + 1);
        const double cnt = red[C];
        for (int c = 0; c < C; c++) nd->mean[c] = cnt > 0 ? red[c] / cnt : 0.0;
        if (mom) {
            for (int c = 0; c < C; c++) {
                const double ds = mom[2 * C + c] - nd->mean[c];
                red[c] = mom[C + c] + 2.0 * ds * mom[c] + (double)np * ds * ds;
            }
        } else {
            for (int c = 0; c < C; c++) red[c] = sumsq_dev_f32(x + (size_t)c * np, np, (float)nd->mean[c]);
        }
        reduce(m, red, C);
        for (int c = 0; c < C; c++) {
            double var = cnt > 0 ? red[c] / cnt : 0.0;
            double var_unbiased = cnt > 1 ? red[c] / (cnt - 1) : var;
            nd->invstd[c] = 1.0 / sqrt(var + BN_EPS);
            if (mode == MODE_TRAIN) {
                float *rm = state + nd->rm_off, *rv = state + nd->rv_off;
                rm[c] = (float)((1.0 - BN_MOMENTUM) * rm[c] + BN_MOMENTUM * nd->mean[c]);
                rv[c] = (float)((1.0 - BN_MOMENTUM) * rv[c] + BN_MOMENTUM * var_unbiased);
            } else {
                nd->acc_mean[c] += cnt * nd->mean[c];
                nd->acc_var[c] += cnt * var_unbiased;
            }
        }
        if (mode == MODE_BN_UPDATE) nd->acc_n += cnt;
    }
    if (stats_only) return;
    if (recompute) { bn_pool_recompute(m, nd, w, n); return; }
    const int no_grad = (m->no_grad && mode == MODE_EVAL) || mode == MODE_BN_UPDATE; /* no backward follows */
    const int nt = nd->fuse_pool ? 1 : vl_threads(); /* bn_relu_pool shares m->rows */
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * np;
        float *yc = nd->out + (size_t)c * np;
        float a, b;
        bn_affine(nd, w, c, &a, &b);
        if (nd->fuse_pool) bn_relu_pool(nd, nd + 2, (size_t)c * n, n, xc, a, b, m->rows, NULL, no_grad);
        else if (nd->fuse_relu) axpb_relu(xc, (nd + 1)->out + (size_t)c * np, np, a, b);
        else axpb(xc, yc, np, a, b);
    }
}

VL_CLONES void bn_backward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g, float *dx,
                        int dx_acc)
{
    const int C = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, np = (size_t)n * hw;
    const float *gamma = w + nd->w_off;
    double *red = m->red; /* [sum dy (C), sum dy*xhat (C), count] */
    /* relu_dy: the ReLU this BN feeds left its backward to this one (model_backward): dy is
     * its gradient where its output is positive, else 0 */
    const float *dyb = nd->relu_dy ? (nd + 1)->dout : nd->dout, *ryb = nd->relu_dy ? (nd + 1)->out : NULL;
    const int nt = vl_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int c = 0; c < C; c++) {
        double s1, s2;
        sum_dy_dyx(dyb + (size_t)c * np, ryb ? ryb + (size_t)c * np : NULL, x + (size_t)c * np, np,
                   (float)nd->mean[c], &s1, &s2);
        s2 *= nd->invstd[c];
        g[nd->b_off + c] = (float)s1; /* local: the gradient allreduce sums them */
        g[nd->w_off + c] = (float)s2;
        red[c] = s1;
        red[C + c] = s2;
    }
    if (!dx) return;
    if (nd->bn_batch_stats) {
        red[2 * C] = (double)np;
        reduce(m, red, 2 * C + 1);
        const double cnt = red[2 * C];
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int c = 0; c < C; c++) {
            const float *xc = x + (size_t)c * np, *dy = dyb + (size_t)c * np, *ry = ryb ? ryb + (size_t)c * np : NULL;
            float *d = dx + (size_t)c * np;
            const double is = nd->invstd[c];
            /* dx = k*dy + a*x + b with k = gamma*is, a = -k*is*mean(dy*xhat), b = -k*mean(dy) - a*mu */
            const float k = (float)(gamma[c] * is);
            const float a = (float)(-gamma[c] * is * is * red[C + c] / cnt);
            const float b = (float)(-gamma[c] * is * red[c] / cnt - a * nd->mean[c]);
            /* (dy read unconditionally, so that the select vectorises) */
            if (ry && dx_acc)
                for (size_t i = 0; i < np; i++) {
                    const float v = dy[i], u = ry[i] > 0.0f ? v : 0.0f;
                    d[i] += k * u + a * xc[i] + b;
                }
            else if (ry)
                for (size_t i = 0; i < np; i++) {
                    const float v = dy[i], u = ry[i] > 0.0f ? v : 0.0f;
                    d[i] = k * u + a * xc[i] + b;
                }
            else if (dx_acc)
                for (size_t i = 0; i < np; i++) d[i] += k * dy[i] + a * xc[i] + b;
            else
                for (size_t i = 0; i < np; i++) d[i] = k * dy[i] + a * xc[i] + b;
        }
    } else {
        for (int c = 0; c < C; c++) {
            const float *dy = dyb + (size_t)c * np, *ry = ryb ? ryb + (size_t)c * np : NULL;
            float *d = dx + (size_t)c * np;
            const float k = (float)(gamma[c] * nd->invstd[c]);
            if (ry && dx_acc)
                for (size_t i = 0; i < np; i++) {
                    const float v = dy[i], u = ry[i] > 0.0f ? v : 0.0f;
                    d[i] += k * u;
                }
            else if (ry)
                for (size_t i = 0; i < np; i++) {
                    const float v = dy[i], u = ry[i] > 0.0f ? v : 0.0f;
                    d[i] = k * u;
                }
            else if (dx_acc)
                for (size_t i = 0; i < np; i++) d[i] += k * dy[i];
            else
                for (size_t i = 0; i < np; i++) d[i] = k * dy[i];
        }
    }
}

/* Parameter gradients of a recompute conv under its fused BN: per chunk of images, its
 * output is recomputed in cache, turned into dLoss/d(conv output) = a*x + b (+ k*dy at the
 * pool winners), summed for the bias and multiplied by the chunk's im2col for the weights.
 * red holds the BN's reduced [sum dy, sum dy*xhat] and cnt the global count. */
static void conv_backward_recompute(vl_model_t *m, const node_t *nd, const float *w, int n, float *g,
                                    const double *red, double cnt)
{
    node_t *cv = &m->nodes[nd->in0];
    const node_t *pool = nd + 2;
    const int C = nd->c, K = cv->cin * cv->k * cv->k, chunk = recompute_chunk(cv);
    const size_t hw = (size_t)nd->h * nd->w, phw = (size_t)pool->h * pool->w;
    const float *gamma = w + nd->w_off;
    double *bsum = m->red + 2 * C + 1; /* bias sums, C doubles (the buffer holds 4 max_c + 2) */
    for (int c = 0; c < C; c++) bsum[c] = 0.0;
    if (n == 0) memset(g + cv->w_off, 0, (size_t)C * K * sizeof(float));
    recompute_begin(m, cv, w);
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        const size_t L = (size_t)nb * hw;
        float *d = m->xchunk;
        conv_chunk_out(m, cv, w, n, b0, nb, d, NULL, 0);
        for (int c = 0; c < C; c++) {
            const double is = nd->invstd[c];
            const float k = (float)(gamma[c] * is);
            float a = 0.0f, b = 0.0f;
            if (nd->bn_batch_stats) {
                a = (float)(-gamma[c] * is * is * red[C + c] / cnt);
                b = (float)(-gamma[c] * is * red[c] / cnt - a * nd->mean[c]);
            }
            float *dc = d + (size_t)c * L;
            for (size_t i = 0; i < L; i++) dc[i] = a * dc[i] + b;
            for (int img = 0; img < nb; img++) {
                const size_t plane = (size_t)c * n + b0 + img;
                const float *dp = pool->dout + plane * phw, *yp = pool->out + plane * phw;
                const int32_t *ap = pool->argmax + plane * phw;
                scatter_winners(dc + (size_t)img * hw, ap, (int32_t)(plane * hw), dp, yp, phw, k);
            }
            if (cv->has_bias) bsum[c] += sum_f32(dc, L);
        }
        if (cv->direct) { /* dW (+)= the direct reduction of the padded d and input chunk */
            conv3_pad(&cv->geom, C, d, L, nb, m->dpad);
            conv3_wgrad(&cv->geom, nb, conv3_pad_data(m->xpad), conv3_pad_data(m->dpad), g + cv->w_off, b0 > 0);
            continue;
        }
        /* dW (cout, K) += d (cout, L) col^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, K, (int)L, 1.0f, d, (int)L, m->col, (int)L,
                    b0 ? 1.0f : 0.0f, g + cv->w_off, K);
    }
    if (cv->has_bias)
        for (int c = 0; c < C; c++) g[cv->b_off + c] = (float)bsum[c];
}

/* Backward of a fused BN -> ReLU -> max-pool (fuse_pool): dLoss/d(BN output) is the pool's
 * gradient at the winner of each window whose pooled value is positive and zero elsewhere,
 * so the BN sums run over the windows only. When dx is the input conv's gradient (the BN
 * its only consumer), that conv's bias gradient (the sum of dx per channel) is written
 * here from the same pass. */
void bn_backward_pooled(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g, float *dx,
                               int dx_acc)
{
    const node_t *pool = nd + 2;
    const int C = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, np = (size_t)n * hw, npool = (size_t)n * pool->h * pool->w;
    const float *gamma = w + nd->w_off;
    double *red = m->red; /* [sum dy (C), sum dy*xhat (C), count] */
    node_t *conv = &m->nodes[nd->in0];
    /* the BN input at the winners: recorded by a recomputing forward, else read from the conv's output
     * (K-FAC turns the recompute off: xwin is then stale) */
    const float *xwin = conv->recompute ? nd->xwin : NULL;
    for (int c = 0; c < C; c++) {
        const float *dp = pool->dout + (size_t)c * npool, *yp = pool->out + (size_t)c * npool;
        const int32_t *ap = pool->argmax + (size_t)c * npool;
        const float mu = (float)nd->mean[c];
        double s1, s2;
        pooled_sums(dp, yp, xwin ? xwin + (size_t)c * npool : NULL, x, ap, npool, mu, &s1, &s2);
        s2 *= nd->invstd[c];
        g[nd->b_off + c] = (float)s1;
        g[nd->w_off + c] = (float)s2;
        red[c] = s1;
        red[C + c] = s2;
    }
    if (!dx && !conv->recompute) return;
    const int conv_bias = conv->op == OP_CONV && conv->has_bias && conv->csum && !dx_acc;
    double cnt = (double)np;
    if (nd->bn_batch_stats) {
        red[2 * C] = (double)np;
        reduce(m, red, 2 * C + 1);
        cnt = red[2 * C];
    }
    if (conv->recompute) { conv_backward_recompute(m, nd, w, n, g, red, cnt); return; }
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * np;
        float *d = dx + (size_t)c * np;
        const double is = nd->invstd[c];
        const float k = (float)(gamma[c] * is);
        float a = 0.0f, b = 0.0f;
        if (nd->bn_batch_stats) { /* dx = k*dy + a*x + b */
            a = (float)(-gamma[c] * is * is * red[C + c] / cnt);
            b = (float)(-gamma[c] * is * red[c] / cnt - a * nd->mean[c]);
        }
        if (dx_acc) {
            for (size_t i = 0; i < np; i++) d[i] += a * xc[i] + b;
        } else {
            axpb(xc, d, np, a, b);
        }
        const float *dp = pool->dout + (size_t)c * npool, *yp = pool->out + (size_t)c * npool;
        const int32_t *ap = pool->argmax + (size_t)c * npool;
        scatter_winners(dx, ap, 0, dp, yp, npool, k);
        if (conv_bias) g[conv->b_off + c] = (float)sum_f32(d, np); /* d is still in cache */
    }
    if (conv_bias) conv->bias_grad_done = 1;
}

void maxpool_forward(node_t *nd, const node_t *src, const float *x, int n)
{
    const int h = src->h, w = src->w, ho = nd->h, wo = nd->w;
    for (int c = 0; c < nd->c; c++)
        for (int b = 0; b < n; b++) {
            size_t plane = ((size_t)c * n + b);
            const float *xp = x + plane * h * w;
            float *yp = nd->out + plane * ho * wo;
            int32_t *ap = nd->argmax + plane * ho * wo;
            for (int oy = 0; oy < ho; oy++)
                maxpool_row(xp + (size_t)2 * oy * w, xp + (size_t)(2 * oy + 1) * w, wo, w,
                            (int32_t)(plane * h * w + (size_t)2 * oy * w), yp + (size_t)oy * wo, ap + (size_t)oy * wo);
        }
}
