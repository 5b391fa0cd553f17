/* wino.c — Winograd F(2x2, 3x3) forward of 3x3 "same" convolutions (see wino.h). */
#include "valley/wino.h"

#include <string.h>

#include "valley/cpu.h"

/* The kernels are compiled for AVX-512 inside a plain x86-64 build and run only on that path. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WINO_SIMD 1
#else
#define WINO_SIMD 0
#endif

int wino_supported(int cin, int cout, int h, int w)
{
    return WINO_SIMD && vl_isa() == VL_ISA_AVX512 && cin >= 8 && cout >= 8 && cout % 8 == 0 && h >= 2 && h % 2 == 0 &&
           w >= 4 && w % 2 == 0;
}

size_t wino_pack_floats(int cin, int cout) { return (size_t)16 * cin * cout; }

/* U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], packed [16][cout/8][cin][8]. */
void wino_pack(int cin, int cout, const float *w, float *U)
{
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) {
            const float *g = w + ((size_t)co * cin + ci) * 9;
            double t[4][3]; /* G g */
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 3; k++) t[i][k] = G[i][0] * g[k] + G[i][1] * g[3 + k] + G[i][2] * g[6 + k];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const double u = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
                    U[(((size_t)(i * 4 + j) * (cout / 8) + co / 8) * cin + ci) * 8 + co % 8] = (float)u;
                }
        }
}

/* Segments of 8 tiles per tile row (16 output columns each), tile-row segments of a chunk
 * (one per 8 lanes), vectors of them (two each). */
static int nseg(const conv3_geom_t *g) { return (g->w / 2 + 7) / 8; }
static int tile_rows(const conv3_geom_t *g, int nb) { return nb * (g->h / 2) * nseg(g); }
static int tile_vecs(const conv3_geom_t *g, int nb) { return (tile_rows(g, nb) + 1) / 2; }
/* The tiles of segment sg of a tile row (8 lanes) that lie in the plane. */
static inline int seg_tiles(const conv3_geom_t *g, int sg) { return g->w / 2 - 8 * sg < 8 ? g->w / 2 - 8 * sg : 8; }

size_t wino_work_floats(const conv3_geom_t *g, int nb)
{
    return (size_t)16 * g->cin * tile_vecs(g, nb) * 16; /* the transformed input */
}

#if WINO_SIMD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* B^T d B of the 8 tiles of a segment (padded rows 2 ty .. 2 ty + 3 from p, row stride rs,
 * columns 16 s .. 16 s + 17 from p): u[e], e = 4 i + j, valid at the even lanes 2 tx. The
 * lanes past column 15 come from the next 16 floats of each row (beyond the data they feed
 * only tiles past the row's last). */
static inline __attribute__((always_inline)) void input_tiles(const float *p, long rs, __m512 u[16])
{
    __m512 t[4], h[4];
    {
        const __m512 d0 = _mm512_loadu_ps(p), d1 = _mm512_loadu_ps(p + rs), d2 = _mm512_loadu_ps(p + 2 * rs),
                     d3 = _mm512_loadu_ps(p + 3 * rs);
        t[0] = _mm512_sub_ps(d0, d2);
        t[1] = _mm512_add_ps(d1, d2);
        t[2] = _mm512_sub_ps(d2, d1);
        t[3] = _mm512_sub_ps(d1, d3);
    }
    {
        const __m512 d0 = _mm512_loadu_ps(p + 16), d1 = _mm512_loadu_ps(p + rs + 16),
                     d2 = _mm512_loadu_ps(p + 2 * rs + 16), d3 = _mm512_loadu_ps(p + 3 * rs + 16);
        h[0] = _mm512_sub_ps(d0, d2);
        h[1] = _mm512_add_ps(d1, d2);
        h[2] = _mm512_sub_ps(d2, d1);
        h[3] = _mm512_sub_ps(d1, d3);
    }
    for (int i = 0; i < 4; i++) {
        const __m512i ti = _mm512_castps_si512(t[i]), hi = _mm512_castps_si512(h[i]);
        const __m512 c0 = t[i];
        const __m512 c1 = _mm512_castsi512_ps(_mm512_alignr_epi32(hi, ti, 1));
        const __m512 c2 = _mm512_castsi512_ps(_mm512_alignr_epi32(hi, ti, 2));
        const __m512 c3 = _mm512_castsi512_ps(_mm512_alignr_epi32(hi, ti, 3));
        u[4 * i + 0] = _mm512_sub_ps(c0, c2);
        u[4 * i + 1] = _mm512_add_ps(c1, c2);
        u[4 * i + 2] = _mm512_sub_ps(c2, c1);
        u[4 * i + 3] = _mm512_sub_ps(c1, c3);
    }
}

/* Image, tile row and segment of tile-row segment q. */
static inline __attribute__((always_inline)) void seg_of(const conv3_geom_t *g, int q, int *img, int *ty, int *sg)
{
    const int ns = nseg(g), per = (g->h / 2) * ns;
    *img = q / per;
    *ty = (q % per) / ns;
    *sg = q % ns;
}

/* GEMM of 8 output channels x NV tile vectors for all 16 e into mb, then the output transform. */
static inline __attribute__((always_inline)) void tile_block(const conv3_geom_t *g, int NV, int nb, const float *V,
                                                             size_t T, const float *U, int cob, int vb,
                                                             const float *bias, float *mb, const wino_out_t *o)
{
    const int cin = g->cin, ncob = g->cout / 8, th = g->h / 2, tw = g->w / 2, w = g->w;
    const int R = tile_rows(g, nb);
    const size_t hw = (size_t)g->h * g->w, phw = (size_t)th * tw;
    for (int e = 0; e < 16; e++) {
        __m512 acc[8][3];
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < NV; j++) acc[k][j] = _mm512_setzero_ps();
        const float *up = U + ((size_t)e * ncob + cob) * cin * 8;
        const float *vp = V + (size_t)e * cin * T + (size_t)vb * 16;
        for (int ci = 0; ci < cin; ci++, up += 8, vp += T) {
            __m512 x[3];
            for (int j = 0; j < NV; j++) x[j] = _mm512_loadu_ps(vp + 16 * j);
            for (int k = 0; k < 8; k++) {
                const __m512 uv = _mm512_set1_ps(up[k]);
                for (int j = 0; j < NV; j++) acc[k][j] = _mm512_fmadd_ps(uv, x[j], acc[k][j]);
            }
        }
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < NV; j++) _mm512_storeu_ps(mb + ((size_t)(e * 8 + k) * 3 + j) * 16, acc[k][j]);
    }
    /* interleave y_r0, y_r1 of tiles 0..7 (half A) or 8..15 (half B) into a row of 16 outputs */
    const __m512i ilA = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ilB = _mm512_add_epi32(ilA, _mm512_set1_epi32(8));
    for (int j = 0; j < NV; j++) {
        const int qA = 2 * (vb + j), qB = qA + 1;
        const int okA = qA < R, okB = qB < R;
        int iA, tyA, sA, iB, tyB, sB;
        seg_of(g, qA, &iA, &tyA, &sA);
        seg_of(g, qB, &iB, &tyB, &sB);
        /* output columns and tiles of each half's segment */
        const int colA = w - 16 * sA < 16 ? w - 16 * sA : 16, colB = w - 16 * sB < 16 ? w - 16 * sB : 16;
        const int tilA = seg_tiles(g, sA), tilB = seg_tiles(g, sB);
        const __mmask16 rowmA = (__mmask16)((1u << colA) - 1), rowmB = (__mmask16)((1u << colB) - 1);
        const __mmask16 tilemA = (__mmask16)((1u << tilA) - 1), tilemB = (__mmask16)((1u << tilB) - 1);
        const __mmask16 valid = (__mmask16)((okA ? tilemA : 0) | (okB ? tilemB << 8 : 0));
        for (int k = 0; k < 8; k++) {
            const int co = 8 * cob + k;
            __m512 m[16];
            for (int e = 0; e < 16; e++) m[e] = _mm512_loadu_ps(mb + ((size_t)(e * 8 + k) * 3 + j) * 16);
            __m512 p0[4], p1[4];
            for (int c = 0; c < 4; c++) {
                p0[c] = _mm512_add_ps(_mm512_add_ps(m[c], m[4 + c]), m[8 + c]);
                p1[c] = _mm512_sub_ps(_mm512_sub_ps(m[4 + c], m[8 + c]), m[12 + c]);
            }
            const __m512 bv = _mm512_set1_ps(bias ? bias[co] : 0.0f);
            const __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p0[0], p0[1]), p0[2]), bv);
            const __m512 y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(p0[1], p0[2]), p0[3]), bv);
            const __m512 y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p1[0], p1[1]), p1[2]), bv);
            const __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(p1[1], p1[2]), p1[3]), bv);
            if (o->out) {
                float *base = o->out + (size_t)co * o->cstride;
                __m512 r0A = _mm512_permutex2var_ps(y00, ilA, y01), r1A = _mm512_permutex2var_ps(y10, ilA, y11);
                __m512 r0B = _mm512_permutex2var_ps(y00, ilB, y01), r1B = _mm512_permutex2var_ps(y10, ilB, y11);
                if (o->ep_a) { /* the eval BN (a y + b) and ReLU, as conv3_forward_ep */
                    const __m512 av = _mm512_set1_ps(o->ep_a[co]), bb = _mm512_set1_ps(o->ep_b[co]);
                    __m512 *rr[4] = {&r0A, &r1A, &r0B, &r1B};
                    for (int r = 0; r < 4; r++) {
                        __m512 v = _mm512_add_ps(_mm512_mul_ps(av, *rr[r]), bb);
                        if (o->ep_relu)
                            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v,
                                                     _mm512_setzero_ps());
                        *rr[r] = v;
                    }
                }
                if (okA) {
                    float *r = base + (size_t)iA * hw + (size_t)2 * tyA * w + 16 * sA;
                    _mm512_mask_storeu_ps(r, rowmA, r0A);
                    _mm512_mask_storeu_ps(r + w, rowmA, r1A);
                }
                if (okB) {
                    float *r = base + (size_t)iB * hw + (size_t)2 * tyB * w + 16 * sB;
                    _mm512_mask_storeu_ps(r, rowmB, r0B);
                    _mm512_mask_storeu_ps(r + w, rowmB, r1B);
                }
            }
            if (o->mom) {
                const __m512 sh = _mm512_set1_ps(o->shift[co]);
                float *mo = o->mom + 32 * (size_t)co;
                __m512 S = _mm512_loadu_ps(mo), Q = _mm512_loadu_ps(mo + 16);
                const __m512 ys[4] = {y00, y01, y10, y11};
                for (int r = 0; r < 4; r++) {
                    const __m512 d = _mm512_maskz_sub_ps(valid, ys[r], sh);
                    S = _mm512_add_ps(S, d);
                    Q = _mm512_fmadd_ps(d, d, Q);
                }
                _mm512_storeu_ps(mo, S);
                _mm512_storeu_ps(mo + 16, Q);
            }
            if (o->pool) { /* relu(a y + b), then the window's maximum (a NaN wins) */
                const __m512 av = _mm512_set1_ps(o->a[co]), bb = _mm512_set1_ps(o->b[co]), z = _mm512_setzero_ps();
                const __m512 ys[4] = {y00, y01, y10, y11};
                __m512 mx = _mm512_setzero_ps();
                for (int r = 0; r < 4; r++) {
                    __m512 v = _mm512_add_ps(_mm512_mul_ps(av, ys[r]), bb); /* as bn_forward: no fused multiply-add */
                    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), v, z); /* NaN stays */
                    if (r == 0) { mx = v; continue; }
                    const __mmask16 t = _mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                    mx = _mm512_mask_blend_ps(t, mx, v);
                }
                float *pb = o->pool + (size_t)co * o->pstride;
                if (okA) _mm512_mask_storeu_ps(pb + (size_t)iA * phw + (size_t)tyA * tw + 8 * sA, tilemA, mx);
                if (okB)
                    _mm512_mask_storeu_ps(pb + (size_t)iB * phw + (size_t)tyB * tw + 8 * sB - 8, (__mmask16)(tilemB << 8),
                                          mx);
            }
        }
    }
}
#pragma GCC pop_options
#endif

#if WINO_SIMD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* Input transform of nb images: V[e][ci][tiles], two tile-row segments per vector (the even lanes
 * of each input_tiles); masked: the lanes of tiles outside the plane are zero (else unspecified). */
static void input_transform(const conv3_geom_t *g, int nb, const float *xpad, float *V, int masked)
{
    const int cin = g->cin, R = tile_rows(g, nb), NVt = tile_vecs(g, nb);
    const size_t T = (size_t)NVt * 16;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const int nt = vl_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int ci = 0; ci < cin; ci++)
        for (int qp = 0; qp < NVt; qp++) {
            __m512 uA[16], uB[16];
            const int qA = 2 * qp, qB = qA + 1;
            int im, ty, sg, nA, nB = 0;
            seg_of(g, qA, &im, &ty, &sg);
            nA = seg_tiles(g, sg);
            input_tiles(xpad + ((size_t)im * cin + ci) * g->plane + (size_t)2 * ty * g->rs + 16 * sg, g->rs, uA);
            if (qB < R) {
                seg_of(g, qB, &im, &ty, &sg);
                nB = seg_tiles(g, sg);
                input_tiles(xpad + ((size_t)im * cin + ci) * g->plane + (size_t)2 * ty * g->rs + 16 * sg, g->rs, uB);
            } else
                for (int e = 0; e < 16; e++) uB[e] = _mm512_setzero_ps();
            const __mmask16 k = masked ? (__mmask16)(((1u << nA) - 1) | (((1u << nB) - 1) << 8)) : (__mmask16)0xffff;
            for (int e = 0; e < 16; e++)
                _mm512_storeu_ps(V + ((size_t)e * cin + ci) * T + (size_t)qp * 16,
                                 _mm512_maskz_permutex2var_ps(k, uA[e], even, uB[e]));
        }
}
#pragma GCC pop_options
#endif

#if WINO_SIMD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
static void forward_avx512(const conv3_geom_t *g, int nb, const float *xpad, const float *U, const float *bias,
                           float *work, const wino_out_t *o)
{
    const int NVt = tile_vecs(g, nb);
    const size_t T = (size_t)NVt * 16;
    float *V = work;
    input_transform(g, nb, xpad, V, 0);
    const int nt = vl_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int cob = 0; cob < g->cout / 8; cob++) {
        float mb[16 * 8 * 3 * 16] __attribute__((aligned(64))); /* each thread's GEMM block, 24 KB */
        int vb = 0;
        for (; vb + 3 <= NVt; vb += 3) tile_block(g, 3, nb, V, T, U, cob, vb, bias, mb, o);
        if (NVt - vb == 2) tile_block(g, 2, nb, V, T, U, cob, vb, bias, mb, o);
        else if (NVt - vb == 1) tile_block(g, 1, nb, V, T, U, cob, vb, bias, mb, o);
    }
}
#pragma GCC pop_options
#endif

void wino_forward(const conv3_geom_t *g, int nb, const float *xpad, const float *U, const float *bias, float *work,
                  const wino_out_t *o)
{
#if WINO_SIMD
    if (g->isa == VL_ISA_AVX512 && g->stride == 1) forward_avx512(g, nb, xpad, U, bias, work, o);
#else
    (void)g; (void)nb; (void)xpad; (void)U; (void)bias; (void)work; (void)o;
#endif
}

/* ------------------------------------------------------------------ weight gradient */

int wino_wgrad_supported(int cin, int cout, int h, int w)
{
    /* tile rows fill whole 8-lane segments (w a multiple of 16): narrower planes would leave
     * lanes of every vector empty, and the direct kernel is then as fast */
    return WINO_SIMD && vl_isa() == VL_ISA_AVX512 && cin >= 16 && cin % 16 == 0 && cout >= 1 && h >= 2 && h % 2 == 0 &&
           w >= 16 && w % 16 == 0;
}

int wino_wgrad_pays(int cin, int cout) { return cin >= 32 && cout >= 32; }

int wino_wgrad_images(const conv3_geom_t *g)
{
    const size_t per = (size_t)16 * (g->cin + g->cout) * tile_vecs(g, 1) * 16 * sizeof(float);
    const size_t nb = ((size_t)2 << 20) / (per ? per : 1);
    return nb < 1 ? 1 : nb > 64 ? 64 : (int)nb;
}

size_t wino_wgrad_work_floats(const conv3_geom_t *g, int nb)
{
    return (size_t)16 * (g->cin + g->cout) * tile_vecs(g, nb) * 16;
}

#if WINO_SIMD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
/* D[e][co][tiles] = A dy A^T of each tile, in the lanes of V's tiles (zero outside the plane). */
static void grad_transform(const conv3_geom_t *g, int nb, const float *dy, size_t dstride, float *D)
{
    const int cout = g->cout, R = tile_rows(g, nb), NVt = tile_vecs(g, nb), w = g->w;
    const size_t T = (size_t)NVt * 16, hw = (size_t)g->h * g->w;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const int nt = vl_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int co = 0; co < cout; co++)
        for (int qp = 0; qp < NVt; qp++) {
            const int qA = 2 * qp;
            __m512 r[2][2]; /* [segment][row] */
            for (int k = 0; k < 2; k++) {
                const int q = qA + k;
                if (q >= R) { r[k][0] = r[k][1] = _mm512_setzero_ps(); continue; }
                int im, ty, sg;
                seg_of(g, q, &im, &ty, &sg);
                const int cols = w - 16 * sg < 16 ? w - 16 * sg : 16;
                const __mmask16 m = (__mmask16)((1u << cols) - 1);
                const float *p = dy + (size_t)co * dstride + (size_t)im * hw + (size_t)2 * ty * w + 16 * sg;
                r[k][0] = _mm512_maskz_loadu_ps(m, p);
                r[k][1] = _mm512_maskz_loadu_ps(m, p + w);
            }
            /* y_rs: output (r, s) of each tile, A's tiles in lanes 0-7, B's in 8-15 */
            const __m512 y00 = _mm512_permutex2var_ps(r[0][0], ev, r[1][0]), y01 = _mm512_permutex2var_ps(r[0][0], od, r[1][0]);
            const __m512 y10 = _mm512_permutex2var_ps(r[0][1], ev, r[1][1]), y11 = _mm512_permutex2var_ps(r[0][1], od, r[1][1]);
            const __m512 z = _mm512_setzero_ps();
            /* rows i of A dy: dy row 0, row 0 + row 1, row 0 - row 1, -row 1; then the columns alike */
            const __m512 a[4] = {y00, _mm512_add_ps(y00, y10), _mm512_sub_ps(y00, y10), _mm512_sub_ps(z, y10)};
            const __m512 b[4] = {y01, _mm512_add_ps(y01, y11), _mm512_sub_ps(y01, y11), _mm512_sub_ps(z, y11)};
            for (int i = 0; i < 4; i++) {
                const __m512 v[4] = {a[i], _mm512_add_ps(a[i], b[i]), _mm512_sub_ps(a[i], b[i]), _mm512_sub_ps(z, b[i])};
                for (int j = 0; j < 4; j++)
                    _mm512_storeu_ps(D + ((size_t)(4 * i + j) * cout + co) * T + (size_t)qp * 16, v[j]);
            }
        }
}

/* M_e[co0 .. co0 + CA) x [ci0 .. ci0 + CB) (+)= the lane sums of D_e rows x V_e rows over T lanes. */
static inline __attribute__((always_inline)) void dot_block(const float *De, const float *Ve, size_t T, int cin, int co0,
                                                            int ci0, int CA, int CB, float *Me, int acc)
{
    __m512 s[4][4];
    for (int a = 0; a < CA; a++)
        for (int b = 0; b < CB; b++) s[a][b] = _mm512_setzero_ps();
    for (size_t t = 0; t < T; t += 16) {
        __m512 d[4], v[4];
        for (int a = 0; a < CA; a++) d[a] = _mm512_loadu_ps(De + (size_t)(co0 + a) * T + t);
        for (int b = 0; b < CB; b++) v[b] = _mm512_loadu_ps(Ve + (size_t)(ci0 + b) * T + t);
        for (int a = 0; a < CA; a++)
            for (int b = 0; b < CB; b++) s[a][b] = _mm512_fmadd_ps(d[a], v[b], s[a][b]);
    }
    for (int a = 0; a < CA; a++)
        for (int b = 0; b < CB; b++) {
            float *mp = Me + (size_t)(co0 + a) * cin + ci0 + b;
            const float r = _mm512_reduce_add_ps(s[a][b]);
            *mp = acc ? *mp + r : r;
        }
}

static void wgrad_avx512(const conv3_geom_t *g, int nb, const float *xpad, const float *dy, size_t dstride, float *work,
                         float *M, int acc)
{
    const int cin = g->cin, cout = g->cout;
    const size_t T = (size_t)tile_vecs(g, nb) * 16;
    float *V = work, *D = work + (size_t)16 * cin * T;
    input_transform(g, nb, xpad, V, 1);
    grad_transform(g, nb, dy, dstride, D);
    const int nco = (cout + 3) / 4, nt = vl_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int job = 0; job < 16 * nco; job++) {
        const int e = job / nco, co0 = 4 * (job % nco), CA = cout - co0 < 4 ? cout - co0 : 4;
        const float *De = D + (size_t)e * cout * T, *Ve = V + (size_t)e * cin * T;
        float *Me = M + (size_t)e * cout * cin;
        for (int ci0 = 0; ci0 < cin; ci0 += 4) {
            const int CB = cin - ci0 < 4 ? cin - ci0 : 4;
            if (CA == 4 && CB == 4) dot_block(De, Ve, T, cin, co0, ci0, 4, 4, Me, acc);
            else dot_block(De, Ve, T, cin, co0, ci0, CA, CB, Me, acc);
        }
    }
}
#pragma GCC pop_options
#endif

void wino_wgrad(const conv3_geom_t *g, int nb, const float *xpad, const float *dy, size_t dstride, float *work, float *M,
                int acc)
{
#if WINO_SIMD
    if (g->isa == VL_ISA_AVX512 && g->stride == 1) wgrad_avx512(g, nb, xpad, dy, dstride, work, M, acc);
#else
    (void)g; (void)nb; (void)xpad; (void)dy; (void)dstride; (void)work; (void)M; (void)acc;
#endif
}

void wino_wgrad_finish(int cin, int cout, const float *M, float *dw)
{
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    const size_t cc = (size_t)cout * cin;
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) {
            double m[4][4], t[4][3];
            for (int e = 0; e < 16; e++) m[e / 4][e % 4] = M[(size_t)e * cc + (size_t)co * cin + ci];
            for (int i = 0; i < 4; i++) /* m G */
                for (int b = 0; b < 3; b++) t[i][b] = m[i][0] * G[0][b] + m[i][1] * G[1][b] + m[i][2] * G[2][b] + m[i][3] * G[3][b];
            float *o = dw + ((size_t)co * cin + ci) * 9;
            for (int a = 0; a < 3; a++) /* G^T (m G) */
                for (int b = 0; b < 3; b++)
                    o[3 * a + b] = (float)(G[0][a] * t[0][b] + G[1][a] * t[1][b] + G[2][a] * t[2][b] + G[3][a] * t[3][b]);
        }
}
