/* conv3.c — direct 3x3 "same" convolution kernels (see conv3.h for the layouts).
 *
 * The geometry, packing and padding code here is plain C; the kernels are compiled twice,
 * for AVX-512 and for AVX2 + FMA (GCC target pragmas around each block), inside a binary
 * built for plain x86-64. conv3_geom records the path of the process (cpu.h) and every entry
 * point below dispatches on it. */
#include "valley/conv3.h"

#include <string.h>

#include "valley/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONV3_X86 1
#else
#define CONV3_X86 0
#endif

#define GUARD 32 /* floats of zeros before and after a padded buffer */
/* At most this many run positions per image in the flat layout (a chunk's padded buffers stay a few MB). */
#define FLAT_MAX_POS (16 * 1024)

static int rs_aligned(int w) { return 16 * ((w + 2 + 15) / 16); }

/* The aligned layout when at least 3/4 of its lanes hold data, else the flat one. */
static int use_flat(int w) { return !(4 * w >= 3 * rs_aligned(w)); }

void conv3_geom(conv3_geom_t *g, int cin, int cout, int h, int w) { conv3_geom_layout(g, cin, cout, h, w, use_flat(w)); }

void conv3_geom_layout(conv3_geom_t *g, int cin, int cout, int h, int w, int flat)
{
    g->cin = cin;
    g->cout = cout;
    g->h = h;
    g->w = w;
    g->flat = flat;
    g->rs = g->flat ? w + 2 : rs_aligned(w);
    g->V = g->flat ? 0 : g->rs / 16;
    g->plane = (size_t)(h + 2) * g->rs;
    g->stride = 1;
    g->r0 = 1;
    g->cplane = g->plane;
    g->isa = CONV3_X86 ? vl_isa() : VL_ISA_PORTABLE;
}

void conv3_geom_s2(conv3_geom_t *g, int cin, int cout, int ho, int wo)
{
    g->cin = cin;
    g->cout = cout;
    g->h = ho;
    g->w = wo;
    g->flat = 1;
    g->V = 0;
    g->rs = wo + 1;
    g->plane = (size_t)(ho + 2) * g->rs;
    g->stride = 2;
    g->r0 = 0;
    g->cplane = 4 * g->plane;
    g->isa = CONV3_X86 ? vl_isa() : VL_ISA_PORTABLE;
}

int conv3_supported_s2(int cin, int cout, int ho, int wo)
{
    if (!CONV3_X86 || vl_isa() < VL_ISA_AVX2) return 0;
    if (cin < 1 || cout < 8 || cout % 8 != 0 || ho < 1) return 0;
    /* the weight gradient's last vector reads 15 lanes past the run: two zero rows of wo + 1 */
    return wo >= 7 && (long)ho * (wo + 1) <= FLAT_MAX_POS;
}

size_t conv3_pad_in_floats(const conv3_geom_t *g, int channels, int nimg)
{
    return 2 * GUARD + (size_t)nimg * channels * g->cplane;
}

void conv3_pad_phases(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf)
{
    const int ho = g->h, wo = g->w, rs = g->rs, hin = 2 * ho, win = 2 * wo;
    float *data = buf + GUARD;
    memset(buf, 0, GUARD * sizeof(float));
    memset(data + (size_t)nimg * channels * g->cplane, 0, GUARD * sizeof(float));
    for (int i = 0; i < nimg; i++)
        for (int c = 0; c < channels; c++) {
            const float *s = src + (size_t)c * cstride + (size_t)i * hin * win;
            float *p = data + ((size_t)i * channels + c) * g->cplane;
            for (int py = 0; py < 2; py++)
                for (int px = 0; px < 2; px++) {
                    float *q = p + (size_t)(2 * py + px) * g->plane;
                    /* q[r][j] = x[2r + py - 1][2j + px - 1], zero outside the image and in row ho + 1 */
                    for (int r = 0; r < ho + 2; r++) {
                        float *row = q + (size_t)r * rs;
                        const int iy = 2 * r + py - 1;
                        if (r > ho || iy < 0 || iy >= hin) {
                            for (int j = 0; j < rs; j++) row[j] = 0.0f;
                            continue;
                        }
                        const float *sr = s + (size_t)iy * win;
                        for (int j = 0; j < rs; j++) {
                            const int ix = 2 * j + px - 1;
                            row[j] = ix >= 0 && ix < win ? sr[ix] : 0.0f;
                        }
                    }
                }
        }
}

void conv3_pad_s2out(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf)
{
    const int ho = g->h, wo = g->w, rs = g->rs;
    float *data = buf + GUARD;
    memset(buf, 0, GUARD * sizeof(float));
    memset(data + (size_t)nimg * channels * g->plane, 0, GUARD * sizeof(float));
    for (int i = 0; i < nimg; i++)
        for (int c = 0; c < channels; c++) {
            const float *s = src + (size_t)c * cstride + (size_t)i * ho * wo;
            float *p = data + ((size_t)i * channels + c) * g->plane;
            for (int r = 0; r < ho; r++) {
                for (int j = 0; j < wo; j++) p[(size_t)r * rs + j] = s[(size_t)r * wo + j];
                p[(size_t)r * rs + wo] = 0.0f;
            }
            memset(p + (size_t)ho * rs, 0, 2 * (size_t)rs * sizeof(float));
        }
}

int conv3_supported(int cin, int cout, int h, int w)
{
    if (!CONV3_X86 || vl_isa() < VL_ISA_AVX2) return 0;
    if (cin < 1 || cout < 8 || cout % 8 != 0 || h < 1 || w < 1) return 0;
    if (!use_flat(w)) return 1;
    /* flat rows: the lanes a run's last vector reads past row h lie in zero rows (w >= 6) */
    return w >= 6 && (long)h * (w + 2) <= FLAT_MAX_POS;
}

size_t conv3_pad_floats(const conv3_geom_t *g, int channels, int nimg)
{
    return 2 * GUARD + (size_t)nimg * channels * g->plane;
}

float *conv3_pad_data(float *buf) { return buf + GUARD; }

#if CONV3_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* Aligned rows of at most 8 vectors: vector cb of a row holds data columns 16 cb - 1 + lane
 * (lane 0 of vector 0 is the left border), loaded as masked vectors. */
static void pad_rows_avx512(const conv3_geom_t *g, float *row, const float *sr)
{
    for (int cb = 0; cb < g->V; cb++) {
        const int col0 = 16 * cb - 1;
        unsigned m = 0;
        for (int l = 0; l < 16; l++)
            if (col0 + l >= 0 && col0 + l < g->w) m |= 1u << l;
        _mm512_storeu_ps(row + 16 * cb, _mm512_maskz_loadu_ps((__mmask16)m, sr + col0));
    }
}
#pragma GCC pop_options
#endif

#if CONV3_X86 && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void conv3_pad(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf)
{
    const int h = g->h, w = g->w, rs = g->rs;
    float *data = buf + GUARD;
    memset(buf, 0, GUARD * sizeof(float));
    memset(data + (size_t)nimg * channels * g->plane, 0, GUARD * sizeof(float));
#if CONV3_X86
    const int fast = g->isa == VL_ISA_AVX512 && !g->flat && g->V <= 8;
#endif
    for (int i = 0; i < nimg; i++)
        for (int c = 0; c < channels; c++) {
            float *p = data + ((size_t)i * channels + c) * g->plane;
            const float *s = src + (size_t)c * cstride + (size_t)i * h * w;
            memset(p, 0, (size_t)rs * sizeof(float));
            for (int r = 0; r < h; r++) {
                float *row = p + (size_t)(r + 1) * rs;
                const float *sr = s + (size_t)r * w;
#if CONV3_X86
                if (fast) {
                    pad_rows_avx512(g, row, sr);
                    continue;
                }
#endif
                row[0] = 0.0f;
                for (int c = 0; c < w; c++) row[1 + c] = sr[c]; /* inline: rows of 6-64 floats */
                for (int c = w + 1; c < rs; c++) row[c] = 0.0f;
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

#if CONV3_X86
/* The nine tap offsets in a padded plane. */
static void tap_offsets(const conv3_geom_t *g, long off[9])
{
    for (int t = 0; t < 9; t++) {
        const int ky = t / 3, kx = t % 3;
        off[t] = g->stride == 1 ? (long)(ky - 1) * g->rs + (kx - 1)
                                : (long)(2 * (ky % 2) + kx % 2) * (long)g->plane + (long)(ky / 2) * g->rs + kx / 2;
    }
}

/* Where the VW lanes of the run's vector starting at plane position q0 (the run is rows r0..
 * r0 + h - 1 of the padded plane, border columns included; r0 = 1, or 0 for stride 2) go in
 * the compact h x w plane: up to three row segments, segment k storing lane l at compact index
 * at[k] + l for the lanes in mask mk[k] (the lanes of row R with a data column, columns r0..
 * r0 + w - 1; at = q0 + (R - r0) w - R rs - r0). Aligned rows give one segment per vector;
 * flat rows of rs >= 8 at most three. */
static inline __attribute__((always_inline)) int vec_segs(const conv3_geom_t *g, int VW, long q0, long at[3],
                                                           unsigned mk[3])
{
    const long rs = g->rs, end = q0 + VW;
    int n = 0;
    for (long q = q0; q < end;) {
        const long R = q / rs, e = (R + 1) * rs < end ? (R + 1) * rs : end;
        const long r0 = g->r0, c0 = g->r0; /* first data row and column: 1, or 0 (stride 2) */
        if (R >= r0 && R < r0 + g->h) {
            const long a = R * rs + c0 > q ? R * rs + c0 : q, b = R * rs + g->w + c0 < e ? R * rs + g->w + c0 : e;
            if (b > a) {
                at[n] = q0 + (R - r0) * g->w - R * rs - c0;
                mk[n++] = ((1u << (b - q0)) - 1) & ~((1u << (a - q0)) - 1);
            }
        }
        q = e;
    }
    return n;
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* 8 output channels x NV vectors (starting at run vector v0) of one image. */
static inline __attribute__((always_inline)) void fwd_tile16(const conv3_geom_t *g, int NV, int nin, const float *xpad,
                                                             const float *wp, const float *bias8, const long *off,
                                                             float *out, size_t cstride, int v0, int acc_out,
                                                             const float *shift8, float *mom8, const conv3_ep_t *ep,
                                                             int ob)
{
    __m512 acc[8][3];
    for (int o = 0; o < 8; o++) {
        const __m512 b = bias8 ? _mm512_set1_ps(bias8[o]) : _mm512_setzero_ps();
        for (int j = 0; j < NV; j++) acc[o][j] = b;
    }
    const float *base = xpad + (size_t)g->r0 * g->rs + 16 * (size_t)v0;
    for (int ci = 0; ci < nin; ci++, base += g->cplane) {
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
    unsigned valid[3] = {0, 0, 0};
    for (int j = 0; j < NV; j++) {
        long at[3];
        unsigned mk[3];
        const int ns = vec_segs(g, 16, (long)g->r0 * g->rs + 16 * (long)(v0 + j), at, mk);
        for (int s = 0; s < ns && out; s++) {
            const __mmask16 m = (__mmask16)mk[s];
            for (int o = 0; o < 8; o++) {
                float *dst = out + (size_t)o * cstride + at[s];
                __m512 val = acc[o][j];
                if (acc_out) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(m, dst));
                if (ep) { /* a val + b, then max(., 0) keeping NaN: axpb / axpb_relu's arithmetic */
                    val = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(ep->a[8 * ob + o]), val),
                                        _mm512_set1_ps(ep->b[8 * ob + o]));
                    if (ep->relu)
                        val = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(val, _mm512_setzero_ps(), _CMP_LT_OQ), val,
                                                   _mm512_setzero_ps());
                }
                _mm512_mask_storeu_ps(dst, m, val);
            }
        }
        for (int s = 0; s < ns; s++) valid[j] |= mk[s];
    }
    if (mom8) /* per-lane sums of (out - shift) and its square over the data lanes */
        for (int o = 0; o < 8; o++) {
            const __m512 sh = _mm512_set1_ps(shift8[o]);
            __m512 S = _mm512_loadu_ps(mom8 + 32 * o), Q = _mm512_loadu_ps(mom8 + 32 * o + 16);
            for (int j = 0; j < NV; j++) {
                const __m512 d = _mm512_maskz_sub_ps((__mmask16)valid[j], acc[o][j], sh);
                S = _mm512_add_ps(S, d);
                Q = _mm512_fmadd_ps(d, d, Q);
            }
            _mm512_storeu_ps(mom8 + 32 * o, S);
            _mm512_storeu_ps(mom8 + 32 * o + 16, Q);
        }
}

static void forward_avx512(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                           const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom,
                           const conv3_ep_t *ep)
{
    long off[9];
    tap_offsets(g, off);
    const int nvec = (int)(((long)g->h * g->rs + 15) / 16), nt = vl_threads();
    const size_t hw = (size_t)g->h * g->w;
#pragma omp parallel for num_threads(nt) if (nt > 1 && nout / 8 > 1) schedule(static)
    for (int ob = 0; ob < nout / 8; ob++)
        for (int i = 0; i < nimg; i++) {
            const float *wp = pack + (size_t)ob * nin * 72, *xi = xpad + (size_t)i * nin * g->cplane;
            const float *b8 = bias ? bias + 8 * ob : NULL;
            float *o8 = out ? out + (size_t)8 * ob * cstride + i * hw : NULL;
            const float *s8 = mom ? shift + 8 * ob : NULL;
            float *m8 = mom ? mom + 256 * ob : NULL;
            int v0 = 0;
            for (; v0 + 3 <= nvec; v0 += 3) fwd_tile16(g, 3, nin, xi, wp, b8, off, o8, cstride, v0, acc, s8, m8, ep, ob);
            if (nvec - v0 == 2) fwd_tile16(g, 2, nin, xi, wp, b8, off, o8, cstride, v0, acc, s8, m8, ep, ob);
            else if (nvec - v0 == 1) fwd_tile16(g, 1, nin, xi, wp, b8, off, o8, cstride, v0, acc, s8, m8, ep, ob);
        }
}

/* dw of NCO output channels from co and input channel ci, summed over nimg images: 9 NCO
 * accumulators of 8 floats (27 of ymm0-31), each vector step loads NCO dy vectors and the 9
 * shifted x vectors. */
static inline __attribute__((always_inline)) void wgrad_tile8w(const conv3_geom_t *g, int NCO, int nimg,
                                                               const float *xpad, const float *dypad, const long *off,
                                                               int co, int ci, float *dw, int acc)
{
    const int cin = g->cin, cout = g->cout, nvec = (int)(((long)g->h * g->rs + 7) / 8);
    __m256 a[3][9];
    for (int o = 0; o < NCO; o++)
        for (int t = 0; t < 9; t++) a[o][t] = _mm256_setzero_ps();
    for (int i = 0; i < nimg; i++) {
        const float *d = dypad + ((size_t)i * cout + co) * g->plane + (size_t)g->r0 * g->rs;
        const float *x = xpad + ((size_t)i * cin + ci) * g->cplane + (size_t)g->r0 * g->rs;
        for (int v = 0; v < nvec; v++) {
            __m256 y[3];
            for (int o = 0; o < NCO; o++) y[o] = _mm256_loadu_ps(d + o * g->plane + 8 * v);
            for (int t = 0; t < 9; t++) {
                const __m256 xv = _mm256_loadu_ps(x + 8 * v + off[t]);
                for (int o = 0; o < NCO; o++) a[o][t] = _mm256_fmadd_ps(y[o], xv, a[o][t]);
            }
        }
    }
    for (int o = 0; o < NCO; o++) {
        float *wo = dw + ((size_t)(co + o) * cin + ci) * 9;
        for (int t = 0; t < 9; t++) {
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a[o][t]), _mm256_extractf128_ps(a[o][t], 1));
            s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
            const float s = _mm_cvtss_f32(s4);
            wo[t] = acc ? wo[t] + s : s;
        }
    }
}

/* The weight gradient on the AVX-512 path runs in 8-float vectors (wgrad_tile8w): its 12
 * unaligned loads per step split a cache line every time at 64 bytes and 7 times in 16 at
 * 32; measured on an AMD EPYC (Zen 4, whose FMA units are 256 bits wide either way) 1.7x
 * faster than the same tile in 16-float vectors. */
static void wgrad_avx512(const conv3_geom_t *g, int nimg, const float *xpad, const float *dypad, float *dw, int acc)
{
    long off[9];
    tap_offsets(g, off);
    const int cin = g->cin, cout = g->cout, nt = vl_threads();
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int k = 0; k < cout / 3; k++)
        for (int ci = 0; ci < cin; ci++) wgrad_tile8w(g, 3, nimg, xpad, dypad, off, 3 * k, ci, dw, acc);
    int co = 3 * (cout / 3);
    for (; co + 2 <= cout; co += 2)
        for (int ci = 0; ci < cin; ci++) wgrad_tile8w(g, 2, nimg, xpad, dypad, off, co, ci, dw, acc);
    for (; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) wgrad_tile8w(g, 1, nimg, xpad, dypad, off, co, ci, dw, acc);
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
/* The lanes of bits as an AVX2 mask vector. */
static inline __attribute__((always_inline)) __m256i mask8(unsigned bits)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane), lane);
}

static inline __attribute__((always_inline)) float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 4 output channels (lanes 4 h .. 4 h + 3 of the packed 8) x NV <= 2 8-float vectors from run
 * vector v0: 8 accumulators, 2 input loads and 4 broadcasts per tap (with NV = 3 the 12
 * accumulators, 3 inputs and the broadcast need all 16 ymm registers and GCC spills them). */
static inline __attribute__((always_inline)) void fwd_tile8(const conv3_geom_t *g, int NV, int nin, const float *xpad,
                                                            const float *wp, const float *bias4, const long *off,
                                                            float *out, size_t cstride, int v0, int acc_out,
                                                            const float *shift4, float *mom4, const conv3_ep_t *ep,
                                                            int ob)
{
    __m256 acc[4][3];
    for (int o = 0; o < 4; o++) {
        const __m256 b = bias4 ? _mm256_set1_ps(bias4[o]) : _mm256_setzero_ps();
        for (int j = 0; j < NV; j++) acc[o][j] = b;
    }
    const float *base = xpad + (size_t)g->r0 * g->rs + 8 * (size_t)v0;
    for (int ci = 0; ci < nin; ci++, base += g->cplane) {
        for (int t = 0; t < 9; t++, wp += 8) {
            const float *q = base + off[t];
            __m256 x[3];
            for (int j = 0; j < NV; j++) x[j] = _mm256_loadu_ps(q + 8 * j);
            for (int o = 0; o < 4; o++) {
                const __m256 wv = _mm256_broadcast_ss(wp + o);
                for (int j = 0; j < NV; j++) acc[o][j] = _mm256_fmadd_ps(wv, x[j], acc[o][j]);
            }
        }
    }
    for (int j = 0; j < NV; j++) {
        long at[3];
        unsigned mk[3], valid = 0;
        const int ns = vec_segs(g, 8, (long)g->r0 * g->rs + 8 * (long)(v0 + j), at, mk);
        for (int s = 0; s < ns && out; s++) {
            const __m256i m = mask8(mk[s]);
            for (int o = 0; o < 4; o++) {
                float *dst = out + (size_t)o * cstride + at[s];
                __m256 val = acc[o][j];
                if (acc_out) val = _mm256_add_ps(val, _mm256_maskload_ps(dst, m));
                if (ep) {
                    val = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(ep->a[4 * ob + o]), val),
                                        _mm256_set1_ps(ep->b[4 * ob + o]));
                    if (ep->relu)
                        val = _mm256_blendv_ps(val, _mm256_setzero_ps(),
                                               _mm256_cmp_ps(val, _mm256_setzero_ps(), _CMP_LT_OQ));
                }
                _mm256_maskstore_ps(dst, m, val);
            }
        }
        for (int s = 0; s < ns; s++) valid |= mk[s];
        if (mom4) { /* lanes 0..7 of the 16 per channel */
            const __m256 vm = _mm256_castsi256_ps(mask8(valid));
            for (int o = 0; o < 4; o++) {
                const __m256 d = _mm256_and_ps(_mm256_sub_ps(acc[o][j], _mm256_set1_ps(shift4[o])), vm);
                _mm256_storeu_ps(mom4 + 32 * o, _mm256_add_ps(_mm256_loadu_ps(mom4 + 32 * o), d));
                _mm256_storeu_ps(mom4 + 32 * o + 16, _mm256_fmadd_ps(d, d, _mm256_loadu_ps(mom4 + 32 * o + 16)));
            }
        }
    }
}

static void forward_avx2(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                         const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom,
                         const conv3_ep_t *ep)
{
    long off[9];
    tap_offsets(g, off);
    const int nvec = (int)(((long)g->h * g->rs + 7) / 8), nt = vl_threads();
    const size_t hw = (size_t)g->h * g->w;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int ob = 0; ob < nout / 4; ob++)
        for (int i = 0; i < nimg; i++) {
            const float *wp = pack + (size_t)(ob / 2) * nin * 72 + 4 * (ob % 2), *xi = xpad + (size_t)i * nin * g->cplane;
            const float *b4 = bias ? bias + 4 * ob : NULL;
            float *o4 = out ? out + (size_t)4 * ob * cstride + i * hw : NULL;
            const float *s4 = mom ? shift + 4 * ob : NULL;
            float *m4 = mom ? mom + 128 * ob : NULL;
            int v0 = 0;
            for (; v0 + 2 <= nvec; v0 += 2) fwd_tile8(g, 2, nin, xi, wp, b4, off, o4, cstride, v0, acc, s4, m4, ep, ob);
            if (nvec - v0 == 1) fwd_tile8(g, 1, nin, xi, wp, b4, off, o4, cstride, v0, acc, s4, m4, ep, ob);
        }
}

/* dw of NCO output channels from co, input channel ci, kernel row ky: 3 NCO accumulators;
 * each vector step loads NCO dy vectors and 3 shifted x vectors. */
static inline __attribute__((always_inline)) void wgrad_tile8(const conv3_geom_t *g, int NCO, int nimg,
                                                              const float *xpad, const float *dypad, const long *off,
                                                              int co, int ci, int ky, float *dw, int acc)
{
    const int cin = g->cin, cout = g->cout, nvec = (int)(((long)g->h * g->rs + 7) / 8);
    __m256 a[3][3];
    for (int o = 0; o < NCO; o++)
        for (int k = 0; k < 3; k++) a[o][k] = _mm256_setzero_ps();
    for (int i = 0; i < nimg; i++) {
        const float *d = dypad + ((size_t)i * cout + co) * g->plane + (size_t)g->r0 * g->rs;
        const float *x = xpad + ((size_t)i * cin + ci) * g->cplane + (size_t)g->r0 * g->rs;
        for (int v = 0; v < nvec; v++) {
            __m256 y[3];
            for (int o = 0; o < NCO; o++) y[o] = _mm256_loadu_ps(d + o * g->plane + 8 * v);
            for (int k = 0; k < 3; k++) {
                const __m256 xv = _mm256_loadu_ps(x + 8 * v + off[3 * ky + k]);
                for (int o = 0; o < NCO; o++) a[o][k] = _mm256_fmadd_ps(y[o], xv, a[o][k]);
            }
        }
    }
    for (int o = 0; o < NCO; o++) {
        float *wo = dw + ((size_t)(co + o) * cin + ci) * 9 + 3 * ky;
        for (int k = 0; k < 3; k++) {
            const float s = hsum8(a[o][k]);
            wo[k] = acc ? wo[k] + s : s;
        }
    }
}

static void wgrad_avx2(const conv3_geom_t *g, int nimg, const float *xpad, const float *dypad, float *dw, int acc)
{
    long off[9];
    tap_offsets(g, off);
    const int cin = g->cin, cout = g->cout;
    const int nt = vl_threads();
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int k = 0; k < cout / 3; k++)
        for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < 3; ky++) wgrad_tile8(g, 3, nimg, xpad, dypad, off, 3 * k, ci, ky, dw, acc);
    for (int co = 3 * (cout / 3); co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < 3; ky++) wgrad_tile8(g, 1, nimg, xpad, dypad, off, co, ci, ky, dw, acc);
}
#pragma GCC pop_options
#endif

void conv3_forward_ep(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                      const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom,
                      const conv3_ep_t *ep)
{
#if CONV3_X86
    if (g->isa == VL_ISA_AVX512)
        forward_avx512(g, nimg, nin, nout, xpad, pack, bias, out, cstride, acc, shift, mom, ep);
    else if (g->isa == VL_ISA_AVX2)
        forward_avx2(g, nimg, nin, nout, xpad, pack, bias, out, cstride, acc, shift, mom, ep);
#else
    (void)g; (void)nimg; (void)nin; (void)nout; (void)xpad; (void)pack; (void)bias; (void)out; (void)cstride;
    (void)acc; (void)shift; (void)mom; (void)ep;
#endif
}

void conv3_forward_n(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                     const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom)
{
    conv3_forward_ep(g, nimg, nin, nout, xpad, pack, bias, out, cstride, acc, shift, mom, NULL);
}

void conv3_forward(const conv3_geom_t *g, int nin, int nout, const float *xpad, const float *pack,
                   const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom)
{
    conv3_forward_n(g, 1, nin, nout, xpad, pack, bias, out, cstride, acc, shift, mom);
}

void conv3_wgrad(const conv3_geom_t *g, int nimg, const float *xpad, const float *dypad, float *dw, int acc)
{
#if CONV3_X86
    if (g->isa == VL_ISA_AVX512) wgrad_avx512(g, nimg, xpad, dypad, dw, acc);
    else if (g->isa == VL_ISA_AVX2) wgrad_avx2(g, nimg, xpad, dypad, dw, acc);
#else
    (void)g; (void)nimg; (void)xpad; (void)dypad; (void)dw; (void)acc;
#endif
}
