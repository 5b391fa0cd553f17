/* conv3.h — direct 3x3 "same" convolutions (stride 1, pad 1) with AVX-512 and AVX2 kernels.
 *
 * The im2col route copies every input nine times into a K x positions matrix, which
 * OpenBLAS then copies again into its packed format before a GEMM whose M (the output
 * channels, 32-64 here) is too small to hide those copies. These kernels read the input
 * where it lies instead: each image's planes are copied once into a zero-bordered layout
 * whose rows are whole 16-float vectors (row stride rs = 16 V), so that kernel tap
 * (ky, kx) of a run of output positions is the same run of the padded plane shifted by
 * (ky - 1) rs + (kx - 1): a plain vector load. The output positions of the data rows,
 * border columns included, form one contiguous run of h V vectors; a tile of 8 output
 * channels x up to 3 vectors keeps 24 accumulators in registers over the whole
 * K = cin x 9 reduction, and the border lanes are masked out at the store.
 *
 * forward:      out[co] (+)= bias[co] + sum_{ci,t} W[co][ci][t] x[ci] shifted by t
 * input grad:   the same kernel on the padded output gradient with the flipped,
 *               transposed weights W'[ci][co][8 - t] (a "full" convolution)
 * weight grad:  dW[co][ci][t] += sum_p dy[co][p] x[ci][p + shift t] over the padded
 *               positions (the padded dy is zero off the image, so the border lanes add 0)
 *
 * Two row layouts. Aligned: rows of whole 16-float vectors (rs = 16 V), used when at least
 * 3/4 of a row's lanes hold data (w = 12..14, 28..30, ...): every vector lies in one row.
 * Flat: rs = w + 2, rows back to back (32x32: 34 floats a row, 94 % data where aligned rows
 * would be 67 %); the run of rows 1..h is cut into vectors that may span two or three rows,
 * and the epilogue stores each vector as up to three masked row segments. Taps are the same
 * shifted loads in both. The weight gradient sums over the whole run: the padded dy is zero
 * off the image, and the lanes the run's last vector reads past row h lie in zero rows
 * (row h + 1 and the next image's row 0, or the guard) when rs >= 8.
 *
 * Kernels: AVX-512 (8 output channels x 3 vectors of 16) and AVX2 + FMA (4 output channels x
 * 3 vectors of 8), chosen by the process's path (cpu.h), recorded in the geometry. Supported
 * on either path when cout is a multiple of 8 and w >= 6 (flat rows: h (w + 2) <= 16384).
 */
#ifndef VALLEY_CONV3_H
#define VALLEY_CONV3_H
#include <stddef.h>

typedef struct {
    int cin, cout, h, w;
    int flat;     /* 1: rows of w + 2 floats; 0: rows of whole 16-float vectors */
    int V;        /* aligned rows: 16-float vectors per padded row (0 when flat) */
    int rs;       /* padded row stride: 16 V floats, or w + 2 when flat */
    size_t plane; /* floats per padded plane, (h + 2) rs */
    int isa;      /* the kernel path (cpu.h) of the process that made the geometry */
    int stride;   /* 1, or 2 (conv3_geom_s2) */
    int r0;       /* first data row and column of the run: 1 (stride 1), 0 (stride 2) */
    size_t cplane; /* floats between one input channel's padded data and the next: plane, or
                      4 planes (stride 2: the input's four phases) */
} conv3_geom_t;

/* 1 when the direct kernels handle this convolution on this process's path, else 0. */
int conv3_supported(int cin, int cout, int h, int w);
/* The geometry in the layout conv3_supported chose (aligned rows when they are 3/4 data). */
void conv3_geom(conv3_geom_t *g, int cin, int cout, int h, int w);
/* The geometry in a given layout (flat 0: aligned rows, which the Winograd kernels need). */
void conv3_geom_layout(conv3_geom_t *g, int cin, int cout, int h, int w, int flat);

/* Stride 2 (pad 1, input 2 ho x 2 wo, output ho x wo), as one stride-1 pass over the input's
 * four phases: phase (py, px) holds padded-input rows 2 r + py and columns 2 j + px, a flat
 * (ho + 2) x (wo + 1) plane (row ho + 1 zero), and tap (ky, kx) of output (r, j) is element
 * (r + ky / 2, j + kx / 2) of phase (ky % 2, kx % 2): a shifted load as for stride 1. The run
 * is rows 0..ho-1 (column wo masked). The output side (dy of the weight gradient) pads to
 * (ho + 2) x (wo + 1) with column wo and rows ho, ho + 1 zero (conv3_pad_s2out). The input
 * gradient of a stride-2 conv is not done here (im2col's col2im route). */
void conv3_geom_s2(conv3_geom_t *g, int cin, int cout, int ho, int wo);
int conv3_supported_s2(int cin, int cout, int ho, int wo);
/* Floats of the padded input of nimg images (4 phases per channel for stride 2). */
size_t conv3_pad_in_floats(const conv3_geom_t *g, int channels, int nimg);
/* The four phases of images 0..nimg-1 (channel c, image i at src + c cstride + i 4 ho wo). */
void conv3_pad_phases(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf);
/* An output-shaped tensor (dy, ho x wo per image) padded for the stride-2 weight gradient. */
void conv3_pad_s2out(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf);

/* Floats of a padded buffer of nimg images of `channels` planes, its guard vectors included. */
size_t conv3_pad_floats(const conv3_geom_t *g, int channels, int nimg);
/* The padded planes of images 0..nimg-1 start here (one guard vector after buf). */
float *conv3_pad_data(float *buf);
/* Copies images 0..nimg-1 (plane of channel c, image i at src + c cstride + i h w) into the
 * padded buffer, image-major: [image][channel][padded plane]; borders and guards zero. */
void conv3_pad(const conv3_geom_t *g, int channels, const float *src, size_t cstride, int nimg, float *buf);

/* Weights (cout, cin, 3, 3) packed for conv3_forward: [cout/8][cin][9][8]. */
void conv3_pack_forward(const conv3_geom_t *g, const float *w, float *pack);
/* The weights of the input gradient as an ordinary conv's, unpacked: wt (cin, cout, 3, 3),
 * wt[ci][co][t] = w[co][ci][8 - t] (for a kernel other than conv3_forward, e.g. wino.c). */
void conv3_flip(const conv3_geom_t *g, const float *w, float *wt);
/* The same weights packed as the forward of the input gradient: [cin/8][cout][9][8], flipped.
 * Needs cin a multiple of 8. */
void conv3_pack_backward(const conv3_geom_t *g, const float *w, float *pack);

/* One image: out[co] (co < nout, a multiple of 8), a compact h x w plane at out + co cstride,
 * from nin padded input planes at xpad (one image of a conv3_pad buffer), packed weights,
 * bias (NULL: none). acc != 0 adds to what out holds; out NULL: nothing is stored (the
 * moments only). mom (NULL: none) accumulates, per
 * output channel co, 16 lanes of sum (out - shift[co]) at mom + 32 co and 16 lanes of
 * sum (out - shift[co])^2 at mom + 32 co + 16 (the batch-norm moments, taken while the
 * values are in registers; with acc they are those of the values added, not of the sums). */
void conv3_forward(const conv3_geom_t *g, int nin, int nout, const float *xpad, const float *pack,
                   const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom);

/* conv3_forward of nimg images: image i's padded planes at xpad + i nin plane, its outputs at
 * out + i h w (+ co cstride); the moments summed over the images in order. Threads
 * (vl_threads) take blocks of output channels, each over all the images. */
void conv3_forward_n(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                     const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom);

/* An epilogue applied to each output before it is stored: a[co] out + b[co] (the batch norm of
 * an evaluation, with its running statistics), then max(., 0) when relu (NaN kept), in the
 * arithmetic of the separate passes (bit-identical to them). */
typedef struct {
    const float *a, *b;
    int relu;
} conv3_ep_t;
/* conv3_forward_n with an epilogue (ep NULL: none). */
void conv3_forward_ep(const conv3_geom_t *g, int nimg, int nin, int nout, const float *xpad, const float *pack,
                      const float *bias, float *out, size_t cstride, int acc, const float *shift, float *mom,
                      const conv3_ep_t *ep);

/* dw (cout, cin, 3, 3) (+)= weight gradient over nimg images of padded x and padded dy. */
void conv3_wgrad(const conv3_geom_t *g, int nimg, const float *xpad, const float *dypad, float *dw, int acc);

#endif
