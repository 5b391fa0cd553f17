/* conv3.c — direct 3x3 "same" convolution kernels (see conv3.h for the layout). */
#include "valley/conv3.h"

#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define CONV3_SIMD 1
#else
#define CONV3_SIMD 0
#endif

#define GUARD 16 /* floats of zeros before and after a padded buffer */

void conv3_geom(conv3_geom_t *g, int cin, int cout, int h, int w)
{
    g->cin = cin;
    g->cout = cout;
    g->h = h;
    g->w = w;
    g->V = (w + 2 + 15) / 16;
    g->rs = 16 * g->V;
    g->plane = (size_t)(h + 2) * g->rs;
}

int conv3_supported(int cin, int cout, int h, int w)
{
    if (!CONV3_SIMD || cin < 1 || cout < 8 || cout % 8 != 0 || h < 1 || w < 1) return 0;
    conv3_geom_t g;
    conv3_geom(&g, cin, cout, h, w);
    return 4 * w >= 3 * g.rs; /* at least 3/4 of the lanes hold data */
}

size_t conv3_pad_floats(const conv3_geom_t *g, int channels, int nimg)
{
    return 2 * GUARD + (size_t)nimg * channels * g->plane;
}

float *conv3_pad_data(float *buf) { return buf + GUARD; }

#if CONV3_SIMD
static __mmask16 row_mask(const conv3_geom_t *g, int cb);
#endif

void conv3_pad(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf)
{
    const int h = g->h, w = g->w, rs = g->rs;
    float *data = buf + GUARD;
    memset(buf, 0, GUARD * sizeof(float));
    memset(data + (size_t)nimg * channels * g->plane, 0, GUARD * sizeof(float));
#if CONV3_SIMD
    __mmask16 mask[8];
    for (int cb = 0; cb < g->V && cb < 8; cb++) mask[cb] = row_mask(g, cb);
#endif
    for (int i = 0; i < nimg; i++)
        for (int c = 0; c < channels; c++) {
            float *p = data + ((size_t)i * channels + c) * g->plane;
            const float *s = src + (size_t)c * cstride + (size_t)i * h * w;
            memset(p, 0, (size_t)rs * sizeof(float));
            for (int r = 0; r < h; r++) {
                float *row = p + (size_t)(r + 1) * rs;
                const float *sr = s + (size_t)r * w;
#if CONV3_SIMD
                if (g->V <= 8) { /* vector cb holds data columns 16 cb - 1 + lane; the rest zero */
                    for (int cb = 0; cb < g->V; cb++)
                        _mm512_storeu_ps(row + 16 * cb, _mm512_maskz_loadu_ps(mask[cb], sr + 16 * cb - 1));
                    continue;
                }
#endif
                row[0] = 0.0f;
                memcpy(row + 1, sr, (size_t)w * sizeof(float));
                memset(row + 1 + w, 0, (size_t)(rs - 1 - w) * sizeof(float));
            }
            memset(p + (size_t)(h + 1) * rs, 0, (size_t)rs * sizeof(float));
        }
}

void conv3_pack_forward(const conv3_geom_t *g, const float *w, float *pack)
{
    const int cin = g->cin, cout = g->cout;
    for (int ob = 0; ob < cout / 8; ob++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++)
                for (int o = 0; o < 8; o++)
                    pack[(((size_t)ob * cin + ci) * 9 + t) * 8 + o] = w[((size_t)(ob * 8 + o) * cin + ci) * 9 + t];
}

void conv3_flip(const conv3_geom_t *g, const float *w, float *wt)
{
    const int cin = g->cin, cout = g->cout;
    for (int ci = 0; ci < cin; ci++)
        for (int co = 0; co < cout; co++)
            for (int t = 0; t < 9; t++) wt[((size_t)ci * cout + co) * 9 + t] = w[((size_t)co * cin + ci) * 9 + (8 - t)];
}

void conv3_pack_backward(const conv3_geom_t *g, const float *w, float *pack)
{
    const int cin = g->cin, cout = g->cout;
    for (int ib = 0; ib < cin / 8; ib++)
        for (int co = 0; co < cout; co++)
            for (int t = 0; t < 9; t++)
                for (int o = 0; o < 8; o++)
                    pack[(((size_t)ib * cout + co) * 9 + t) * 8 + o] = w[((size_t)co * cin + ib * 8 + o) * 9 + (8 - t)];
}

#if CONV3_SIMD
/* The nine tap offsets in a padded plane. */
static void tap_offsets(const conv3_geom_t *g, long off[9])
{
    for (int t = 0; t < 9; t++) off[t] = (long)(t / 3 - 1) * g->rs + (t % 3 - 1);
}

/* Lanes of vector cb of a padded row that hold data columns (column 16 cb - 1 + lane). */
static __mmask16 row_mask(const conv3_geom_t *g, int cb)
{
    const int col0 = 16 * cb - 1;
    unsigned m = 0;
    for (int l = 0; l < 16; l++)
        if (col0 + l >= 0 && col0 + l < g->w) m |= 1u << l;
    return (__mmask16)m;
}

/* 8 output channels x NV vectors (starting at data vector v0) of one image. */
static inline __attribute__((always_inline)) void fwd_tile(const conv3_geom_t *g, int NV, int nin, const float *xpad,
                                                           const float *wp, const float *bias8, const long *off,
                                                           const __mmask16 *mask, float *out, size_t cstride, int v0,
                                                           int acc_out, const float *shift8, float *mom8)
{
    __m512 acc[8][3];
    for (int o = 0; o < 8; o++) {
        const __m512 b = bias8 ? _mm512_set1_ps(bias8[o]) : _mm512_setzero_ps();
        for (int j = 0; j < NV; j++) acc[o][j] = b;
    }
    const float *base = xpad + g->rs + 16 * (size_t)v0;
    for (int ci = 0; ci < nin; ci++, base += g->plane) {
        for (int t = 0; t < 9; t++, wp += 8) {
            const float *q = base + off[t];
            __m512 x[3];
            for (int j = 0; j < NV; j++) x[j] = _mm512_loadu_ps(q + 16 * j);
            for (int o = 0; o < 8; o++) {
                const __m512 wv = _mm512_set1_ps(wp[o]);
                for (int j = 0; j < NV; j++) acc[o][j] = _mm512_fmadd_ps(wv, x[j], acc[o][j]);
            }
        }
    }
    for (int j = 0; j < NV && out; j++) {
        const int v = v0 + j, r = v / g->V, cb = v % g->V;
        const __mmask16 mk = mask[cb];
        const long at = (long)r * g->w + 16 * cb - 1; /* compact index of lane 0 (masked when a border) */
        for (int o = 0; o < 8; o++) {
            float *dst = out + (size_t)o * cstride + at;
            __m512 val = acc[o][j];
            if (acc_out) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mk, dst));
            _mm512_mask_storeu_ps(dst, mk, val);
        }
    }
    if (mom8) /* per-lane sums of (out - shift) and its square over the data lanes */
        for (int o = 0; o < 8; o++) {
            const __m512 sh = _mm512_set1_ps(shift8[o]);
            __m512 S = _mm512_loadu_ps(mom8 + 32 * o), Q = _mm512_loadu_ps(mom8 + 32 * o + 16);
            for (int j = 0; j < NV; j++) {
                const __m512 d = _mm512_maskz_sub_ps(mask[(v0 + j) % g->V], acc[o][j], sh);
                S = _mm512_add_ps(S, d);
                Q = _mm512_fmadd_ps(d, d, Q);
            }
            _mm512_storeu_ps(mom8 + 32 * o, S);
            _mm512_storeu_ps(mom8 + 32 * o + 16, Q);
        }
}
#endif

void conv3_forward(const conv3_geom_t *g, int nin, int nout, const float *xpad, const float *pack,
                   const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom)
{
#if CONV3_SIMD
    long off[9];
    __mmask16 mask[8];
    tap_offsets(g, off);
    for (int cb = 0; cb < g->V && cb < 8; cb++) mask[cb] = row_mask(g, cb);
    const int nvec = g->h * g->V;
    for (int ob = 0; ob < nout / 8; ob++) {
        const float *wp = pack + (size_t)ob * nin * 72;
        const float *b8 = bias ? bias + 8 * ob : NULL;
        float *o8 = out ? out + (size_t)8 * ob * cstride : NULL;
        const float *s8 = mom ? shift + 8 * ob : NULL;
        float *m8 = mom ? mom + 256 * ob : NULL;
        int v0 = 0;
        for (; v0 + 3 <= nvec; v0 += 3) fwd_tile(g, 3, nin, xpad, wp, b8, off, mask, o8, cstride, v0, acc, s8, m8);
        if (nvec - v0 == 2) fwd_tile(g, 2, nin, xpad, wp, b8, off, mask, o8, cstride, v0, acc, s8, m8);
        else if (nvec - v0 == 1) fwd_tile(g, 1, nin, xpad, wp, b8, off, mask, o8, cstride, v0, acc, s8, m8);
    }
#else
    (void)g; (void)nin; (void)nout; (void)xpad; (void)pack; (void)bias; (void)out; (void)cstride; (void)acc;
    (void)shift; (void)mom;
#endif
}

#if CONV3_SIMD
/* dw of NCO output channels from co and input channel ci, summed over nimg images: 9 NCO
 * accumulators, each vector step loads NCO dy vectors and the 9 shifted x vectors. */
static inline __attribute__((always_inline)) void wgrad_tile(const conv3_geom_t *g, int NCO, int nimg,
                                                             const float *xpad, const float *dypad, const long *off,
                                                             int co, int ci, float *dw, int acc)
{
    const int cin = g->cin, cout = g->cout, nvec = g->h * g->V;
    __m512 a[3][9];
    for (int o = 0; o < NCO; o++)
        for (int t = 0; t < 9; t++) a[o][t] = _mm512_setzero_ps();
    for (int i = 0; i < nimg; i++) {
        const float *d = dypad + ((size_t)i * cout + co) * g->plane + g->rs;
        const float *x = xpad + ((size_t)i * cin + ci) * g->plane + g->rs;
        for (int v = 0; v < nvec; v++) {
            __m512 y[3];
            for (int o = 0; o < NCO; o++) y[o] = _mm512_loadu_ps(d + o * g->plane + 16 * v);
            for (int t = 0; t < 9; t++) {
                const __m512 xv = _mm512_loadu_ps(x + 16 * v + off[t]);
                for (int o = 0; o < NCO; o++) a[o][t] = _mm512_fmadd_ps(y[o], xv, a[o][t]);
            }
        }
    }
    for (int o = 0; o < NCO; o++) {
        float *wo = dw + ((size_t)(co + o) * cin + ci) * 9;
        for (int t = 0; t < 9; t++) {
            const float s = _mm512_reduce_add_ps(a[o][t]);
            wo[t] = acc ? wo[t] + s : s;
        }
    }
}
#endif

void conv3_wgrad(const conv3_geom_t *g, int nimg, const float *xpad, const float *dypad, float *dw, int acc)
{
#if CONV3_SIMD
    long off[9];
    tap_offsets(g, off);
    const int cin = g->cin, cout = g->cout;
    int co = 0;
    for (; co + 3 <= cout; co += 3)
        for (int ci = 0; ci < cin; ci++) wgrad_tile(g, 3, nimg, xpad, dypad, off, co, ci, dw, acc);
    for (; co + 2 <= cout; co += 2)
        for (int ci = 0; ci < cin; ci++) wgrad_tile(g, 2, nimg, xpad, dypad, off, co, ci, dw, acc);
    for (; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) wgrad_tile(g, 1, nimg, xpad, dypad, off, co, ci, dw, acc);
#else
    (void)g; (void)nimg; (void)xpad; (void)dypad; (void)dw; (void)acc;
#endif
}
