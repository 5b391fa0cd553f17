/* wino.h — Winograd F(2x2, 3x3) forward of 3x3 "same" convolutions (stride 1, pad 1) on
 * AVX-512 (compiled for it inside a plain x86-64 build, run on that path only), for even
 * planes at least 4 wide, in aligned or flat rows (conv3.h).
 *
 * Each 2x2 block of outputs (a tile) comes from the 4x4 input patch around it:
 * Y = A^T [ (G g G^T) .* (B^T d B) ] A, so a tile costs 16 multiplications per input and
 * output channel instead of 36: for each of the 16 transform positions e, a GEMM
 * M_e (cout x tiles) = U_e (cout x cin) V_e (cin x tiles). A tile row is cut into segments
 * of 8 tiles (16 output columns), a segment fills 8 lanes (w = 14: one segment of 7 tiles,
 * w = 32: two of 8, w = 8: one of 4), two segments per 16-lane vector, the segments of all
 * images of a chunk one after the other. The input transform reads the padded planes of
 * conv3_pad, 18 columns per segment (two vectors a row); the output transform keeps each
 * tile's 2x2 outputs in registers and then, as asked: stores them (or the eval-mode batch
 * norm and ReLU of them), adds the batch-norm moments of the channel, and/or applies the
 * eval-mode batch norm (a y + b), the ReLU and the 2x2 max-pool, whose window is the
 * tile, storing the pooled value only (for a forward that no backward follows).
 *
 * Rounding differs from the direct sum (the transforms add and halve), by a few units in
 * the last place of the outputs' magnitude: tests/unit/test_wino.c.
 */
#ifndef VALLEY_WINO_H
#define VALLEY_WINO_H
#include <stddef.h>

#include "valley/conv3.h"

/* 1 when this process runs the AVX-512 path (cpu.h) and the shape fits: h and w even, w >= 4,
 * cin >= 8, cout a multiple of 8. Aligned or flat rows (stride 1). */
int wino_supported(int cin, int cout, int h, int w);

/* U = the transformed weights (cout, cin, 3, 3), packed [16][cout/8][cin][8]. */
size_t wino_pack_floats(int cin, int cout);
void wino_pack(int cin, int cout, const float *w, float *U);

/* Work space (floats) of wino_forward for nb images. */
size_t wino_work_floats(const conv3_geom_t *g, int nb);

typedef struct {
    float *out;          /* outputs, channel co of image i at out + co cstride + i h w (NULL: not stored) */
    size_t cstride;
    const float *shift;  /* with mom: per-channel moments of the outputs about shift, 16 lanes of */
    float *mom;          /* sum (y - s) at mom + 32 co, of sum (y - s)^2 at mom + 32 co + 16 (added) */
    float *pool;         /* relu(a y + b) max-pooled 2x2: channel co of image i at pool + co pstride + */
    size_t pstride;      /* i (h/2)(w/2) (NULL: none); a, b per channel */
    const float *a, *b;
    const float *ep_a, *ep_b; /* with out: store relu?(ep_a y + ep_b) instead of y (an evaluation's BN) */
    int ep_relu;
} wino_out_t;

/* Forward of nb images whose padded input planes (conv3_pad with g, nb images) start at xpad. */
void wino_forward(const conv3_geom_t *g, int nb, const float *xpad, const float *U, const float *bias, float *work,
                  const wino_out_t *o);

/* Weight gradient. Each tile's contribution to dW is G^T [ (A dy A^T) .* (B^T d B) ] G, so
 * dW = G^T M G with M_e (cout x cin) = sum over tiles of D_e V_e^T, e the 16 transform
 * positions: 16 multiplications per input and output channel per 2x2 tile instead of 36. The
 * tiles of a call are packed densely (t = image, tile row, tile column); V (the input transform,
 * as the forward's) is stored [e][t][cin] and D (the output gradient's A dy A^T) [e][cout][t],
 * and M_e += D_e V_e^T runs on AVX-512 blocks of output channels x 16-channel input vectors,
 * one thread per e. Stride 1, same shapes as the forward, and cin a multiple of 16. */
int wino_wgrad_supported(int cin, int cout, int h, int w);
/* Where it beats the direct kernel (at 90-100 % of the sgemm peak) on Zen 4: 32 and more input
 * and output channels (measured, 8 images: 16 x 16 at 32x32 0.9x, 32 x 32 at 16x16 1.35x,
 * 64 x 64 1.7x, 128 x 128 2.0x). */
int wino_wgrad_pays(int cin, int cout);
/* Images per wino_wgrad call that keep its V and D (16 (cin + cout) floats a tile) near 2 MB. */
int wino_wgrad_images(const conv3_geom_t *g);
/* Work space (floats) of wino_wgrad for nb images. */
size_t wino_wgrad_work_floats(const conv3_geom_t *g, int nb);
/* M [16][cout][cin] (acc: +=, else =) the sums of the nb images whose padded input planes start
 * at xpad (conv3_pad, any chunk) and whose output gradient, channel co of image i, is at
 * dy + co dstride + i h w. */
void wino_wgrad(const conv3_geom_t *g, int nb, const float *xpad, const float *dy, size_t dstride, float *work, float *M,
                int acc);
/* dW (cout, cin, 3, 3) = G^T M_e G (in double). */
void wino_wgrad_finish(int cin, int cout, const float *M, float *dw);

#endif
