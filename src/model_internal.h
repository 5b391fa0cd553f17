/* model_internal.h — what the model's three parts share (src/ only, not installed).
 *
 *   graph.c   the graph: building it (graph.h), model_create / model_free, accessors,
 *             initialisation, the graph as text (model_graph_text)
 *   layers.c  the layers' kernels: convolutions (im2col + GEMM, direct, Winograd), linear,
 *             batch norm (with its fused ReLU / max-pool / recomputed-conv forms), pools
 *   passes.c  the passes over the graph: forward, backward, BN refresh, dropout
 *
 * Each layer is a node in a list kept in topological order; a node reads one or two earlier
 * nodes' outputs. Forward runs the list; backward runs it in reverse, each node writing (first
 * consumer) or adding (later consumers) the gradient of its inputs. Shapes in comments: spatial
 * activations are (C, N, H, W) for the whole batch, dense ones (N, F).
 */
#ifndef VALLEY_MODEL_INTERNAL_H
#define VALLEY_MODEL_INTERNAL_H
#include "valley/model.h"

#include <cblas.h>
#include <math.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/conv3.h"
#include "valley/cpu.h"
#include "valley/error.h"
#include "valley/graph.h"
#include "valley/rng.h"
#include "valley/wino.h"

/* Elementwise loops (ReLU, batch norm, sums) compiled for AVX-512, AVX2 and plain x86-64 and
 * chosen when the program loads (GCC function multi-versioning): the same arithmetic in every
 * clone (no FMA contraction under -std=c11; the sums keep their fixed lanes), wider vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VL_CLONES
#endif

enum { OP_INPUT, OP_CONV, OP_BN, OP_RELU, OP_MAXPOOL, OP_AVGPOOL, OP_FLATTEN, OP_LINEAR, OP_ADD, OP_COMBINE, OP_DROPOUT };

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1
#define MAX_NODES 2048   /* PreResNet-164: 549 nodes, 820 tensors */
#define MAX_TENSORS 4096

typedef struct {
    int op;
    int in0, in1;        /* input nodes (-1 if none) */
    int spatial;         /* output layout: 1 = (C,N,H,W), 0 = (N,F) with F = c */
    int c, h, w;         /* output shape per sample */
    /* conv / linear */
    int cin, hin, win, k, stride, pad, has_bias;
    size_t w_off, b_off; /* parameter offsets (floats) */
    size_t rm_off, rv_off; /* BN state offsets */
    float *out;          /* (max_batch * c*h*w) */
    float *dout;         /* same size: dLoss/dout */
    int dout_set;        /* set during backward: dout holds a value */
    int sole_bn;         /* conv whose only consumer is the next node, a BN */
    int relu_dy;         /* set during backward on a fuse_relu BN: its ReLU (node + 1) did not write
                            this dout; bn_backward reads the ReLU's gradient and output instead */
    /* BN per-channel values of the last forward */
    double *mean, *invstd;
    double *acc_mean, *acc_var; /* MODE_BN_UPDATE accumulators */
    double acc_n;
    int bn_batch_stats;  /* last forward used batch statistics */
    int32_t *argmax;     /* max-pool: input index per output */
    int fuse_relu;       /* BN or residual add whose only consumer is the next node, a ReLU:
                            forward writes the ReLU's output directly (one pass instead of two;
                            the node's own output is never needed by backward, which works from
                            BN's input; an add's backward needs no values) */
    int fuse_pool;       /* BN (fuse_relu) whose ReLU feeds only a 2x2/2 max-pool (node + 2):
                            forward writes the pooled output and indices directly (the ReLU output
                            is never stored); backward works from the pool's gradient, since the
                            only nonzero entries of dLoss/d(BN output) sit at the pool winners
                            with a positive value. The ReLU and pool nodes are then skipped. */
    int pooled_by_bn;    /* ReLU or max-pool node computed by the BN two nodes up (fuse_pool) */
    double *csum;        /* conv feeding a BN: per-channel moments of the output of the last
                            training-mode forward about a shift (the mean of its first chunk),
                            taken chunk by chunk while in cache: S = sum (x - s) in [0, C),
                            Q = sum (x - s)^2 in [C, 2C), s in [2C, 3C) */
    int bias_grad_done;  /* conv: its bias gradient was written by the fused BN backward */
    int recompute;       /* conv on the model input feeding a fused BN -> ReLU -> pool: its output is
                            never stored; the BN recomputes it chunk by chunk of images in cache
                            (three cheap passes instead of streaming a batch-sized array) and
                            does its backward too */
    float *xwin;         /* fused BN of a recompute conv: the BN input at each pool winner */
    int32_t *pool_off;   /* pool of a fused BN over even planes: window offset of each output */
    int direct_ok;       /* 3x3 "same" conv the direct kernels of conv3.c handle (conv3_supported) */
    int direct;          /* ... and uses them (model_conv_direct switches it) */
    int wino_ok;         /* ... of a shape wino.c handles (not a recompute conv) */
    int wino;            /* ... and its forward is the Winograd F(2x2, 3x3) (model_conv_winograd switches it) */
    int eval_fused;      /* BN whose eval forward its conv already did, with the ReLU and pool (this pass) */
    conv3_geom_t geom;   /* their geometry */
    double drop_p;       /* dropout: the probability of zeroing an element */
    float *mask;         /* dropout: 0 or 1/(1-p) per element of the last forward that dropped */
    int dropped;         /* dropout: the last forward applied mask (else it passed its input on) */
    int recompute_kfac;  /* a recompute conv whose recompute model_kfac_set turned off */
    int kfac_index;      /* conv / linear: its K-FAC layer number (model_kfac_layers) */
} node_t;


struct vl_model {
    vl_model_config_t cfg;
    int max_batch;
    int n;               /* batch size of the last forward */
    int nnodes;
    node_t *nodes;       /* MAX_NODES */
    vl_tensor_t *tensors; /* MAX_TENSORS */
    int ntensors;
    size_t nparams, nstate;
    float *col, *dcol;   /* im2col workspace, shared by all conv layers */
    float *xchunk;       /* output chunk of a recompute conv */
    float *rows;         /* two rows of a fused BN -> ReLU -> pool */
    float *xpad, *dpad;  /* direct convs: padded input and padded output-gradient chunks */
    float *wpack;        /* direct convs: packed weights */
    float *mom, *shift;  /* direct convs: per-channel lanes of the BN moments (32 floats) and shifts */
    float *wU, *wwork;   /* Winograd convs: transformed weights, work space */
    float *wUb;          /* ... the transformed flipped weights of an input gradient */
    float *wgM;          /* ... the weight gradient's transformed sums (wino_wgrad) */
    float *wU_src;       /* the weights wU was made from, and their node (0: none): evaluation passes */
    int wU_node;         /* with unchanged weights transform them once */
    const float *state;  /* BN state of the current forward */
    size_t col_size;
    double *red;         /* reduction buffer (4*max channels + 1) */
    int max_c;
    vl_reduce_fn reduce;
    void *reduce_ctx;
    const float *x;      /* input of the last forward */
    int mode;            /* mode of the last forward */
    int in_dim;          /* input features per sample (model_combine changes it) */
    int nresp;           /* model_combine: responses per sample combined by the first layer */
    float coef[MODEL_COMBINE_MAX];
    int has_bn;
    int no_grad;         /* model_set_grad(m, 0): eval forwards skip what only a backward needs */
    int last_bn;         /* index of the last BN node (0: none): a MODE_BN_UPDATE forward stops at
                            its statistics, nothing after them being needed */
    char desc[256];
    double bytes;        /* model_bytes */
    /* dropout keys (model_dropout_key) for the next forward, and those of the last one */
    uint64_t key_seed, key_pass;
    const int64_t *key_ids;
    int key_set, drop_on, mc_dropout, has_dropout;
    /* K-FAC factor sinks (model_kfac_set, kfac.c): per covered layer in node order; NULL: off */
    double **kfac_A, **kfac_G;
    float *kfac_col, *kfac_tmp; /* a chunk's input patches; a float partial sum (largest factor) */
};


/* ------------------------------------------------------ convolution geometry */

/* "Same" convolutions (stride 1, output as large as the input): row (ci, ky, kx) of an image's
 * im2col is its plane shifted by (ky-p)*w + (kx-p), so it is one contiguous copy, after which
 * the rows and columns that fell off the image are zeroed. */
static inline int conv_is_same(const node_t *nd)
{
    return nd->stride == 1 && nd->h == nd->hin && nd->w == nd->win && 2 * nd->pad == nd->k - 1;
}

static inline int conv_is_pointwise(const node_t *nd) { return nd->k == 1 && nd->stride == 1 && nd->pad == 0; }

/* The convolution works on chunks of `nb` images so that the im2col matrix of a
 * chunk (K = cin*k*k rows, nb*ho*wo columns) stays in the L2 cache: im2col,
 * GEMM and col2im then touch memory once per image instead of streaming a
 * batch-sized matrix three times. */
#define COL_CHUNK_FLOATS (256 * 1024)

static inline int conv_chunk(const node_t *nd)
{
    size_t per = (size_t)nd->cin * nd->k * nd->k * nd->h * nd->w;
    size_t nb = COL_CHUNK_FLOATS / (per ? per : 1);
    return nb < 1 ? 1 : (int)nb;
}

/* Images per chunk of a recompute conv: its im2col and output chunk together in L2. */
#define RECOMPUTE_CHUNK_FLOATS (192 * 1024)
static inline int recompute_chunk(const node_t *nd)
{
    size_t per = (size_t)(nd->cin * nd->k * nd->k + nd->c) * nd->h * nd->w;
    size_t nb = RECOMPUTE_CHUNK_FLOATS / (per ? per : 1);
    return nb < 1 ? 1 : (int)nb;
}

/* Images per chunk of a direct conv that is not recomputed: the padded input and output
 * gradient of the chunk (8 x 96 KB for the convnet's conv2) stay in L2 for the weight
 * gradient, which reads them once per output-channel pair and per input channel. */
#define DIRECT_CHUNK 8
static inline int direct_chunk(const node_t *nd) { return nd->recompute ? recompute_chunk(nd) : DIRECT_CHUNK; }
/* Images per chunk of a Winograd forward: its transformed input (16 x cin x 56 tiles per
 * 14x14 image) then stays in L1/L2 for the 16 GEMMs (measured: 24 us per image of the
 * convnet's conv2 at 2 images, 27 at 8). */
#define WINO_CHUNK 2


/* ------------------------------------------- layers.c, for the passes (passes.c) */

void add_forward(const float *x, const float *y, float *out, size_t n, int relu);
void add_into(float *dst, const float *src, size_t n, int acc);
void relu_forward(const float *restrict x, float *restrict y, size_t n);
void relu_backward(const float *restrict y, const float *restrict dy, float *restrict dx, size_t n, int acc);
void conv_forward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n);
void conv_backward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g, float *dx, int dx_acc);
/* col (cin k k, nb ho wo) of images b0..b0+nb-1 of x (cin, n, hin, win): the GEMM route's im2col */
void conv_im2col(const node_t *nd, int n, int b0, int nb, const float *x, float *col);
/* images b0..b0+nb-1 of dx (cin, n, hin, win) += col2im(dcol) (the GEMM route's; dcol is scratch) */
void conv_col2im_add(const node_t *nd, int n, int b0, int nb, float *dcol, float *dx);
/* kfac.c: adds the K-FAC factors of conv / linear node nd with input x (model_kfac_set) */
void kfac_accumulate(vl_model_t *m, const node_t *nd, const float *x, int n);
void kfac_free(vl_model_t *m);
void linear_forward(node_t *nd, const float *w, const float *x, int n);
void linear_backward(node_t *nd, const float *w, const float *x, int n, float *g, float *dx, int dx_acc);
void bn_forward(vl_model_t *m, node_t *nd, const float *w, float *state, const float *x, int n, int mode, int stats_only);
void bn_backward(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g, float *dx, int dx_acc);
void bn_backward_pooled(vl_model_t *m, node_t *nd, const float *w, const float *x, int n, float *g, float *dx, int dx_acc);
void maxpool_forward(node_t *nd, const node_t *src, const float *x, int n);

#endif
