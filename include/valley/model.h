/* model.h — networks over one flat parameter vector.
 *
 * A model is a small graph of layers (linear, conv2d, batch norm, ReLU,
 * max-pool, global average pool, flatten, residual add) built from the deck.
 * The model owns only its structure and workspaces: the parameters `w`, the
 * gradients `g` (same layout) and the batch-norm running statistics `state`
 * are flat float vectors owned by the caller, so curves, SWAG and surfaces can
 * evaluate any weight vector without copying it into the model.
 *
 * Layout: activations of spatial layers are stored channel-major for the
 * whole batch, (C, N, H, W), so that a convolution over the batch is one
 * GEMM; dense layers use (N, features). Tensors in w and state follow
 * PyTorch's layout and order (see tensor.h).
 *
 * Data parallelism: batch-norm batch statistics must be those of the global
 * batch. model_set_reduce() installs a sum-allreduce callback used by every
 * batch-norm layer in MODE_TRAIN and MODE_BN_UPDATE (forward and backward),
 * so a step on P ranks equals the 1-rank step up to summation order. Ranks
 * holding no sample of a batch must still call forward/backward with n = 0.
 */
#ifndef VALLEY_MODEL_H
#define VALLEY_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "valley/tensor.h"

enum { MODEL_MLP = 0, MODEL_CONVNET = 1, MODEL_PRERESNET = 2, MODEL_LINEAR = 3, MODEL_RESNET = 4, MODEL_VGG = 5,
       MODEL_WIDERESNET = 6, MODEL_GRAPH = 7 };
enum { MODE_EVAL = 0, MODE_TRAIN = 1, MODE_BN_UPDATE = 2 };

#define MODEL_MAX_WIDTHS 16

typedef struct {
    int kind;                     /* MODEL_* */
    int widths[MODEL_MAX_WIDTHS]; /* mlp hidden widths */
    int nwidths;
    int depth;                    /* resnet, preresnet: 6n+2 (preresnet >= 44: 9n+2, bottleneck blocks);
                                     vgg: 11, 13, 16, 19; wideresnet: 6n+4 (families.c) */
    int widen;                    /* wideresnet: widening factor k (16k, 32k, 64k channels) */
    double width_factor;          /* every family but mlp: channel counts scaled by this (0 = 1) */
    int shortcuts;                /* resnet: 1 = residual shortcuts, 0 = the "noshort" variant */
    int bn;                       /* vgg: 1 = with batch norm after each conv */
    int preact_shortcut;          /* preresnet of files before families.c: the 1x1 shortcut conv
                                     reads relu(bn1(x)) instead of x (tensor names
                                     layerS_B_downsample_weight) */
    const char *graph;            /* graph: the network as text (graphdesc.h), interned (graphdesc_intern) */
    double dropout;               /* mlp: dropout after each hidden layer; vgg: before the classifier's hidden
                                     layers (the reference models); 0 = none */
    int in_c, in_h, in_w;         /* input shape; dense models use in_c*in_h*in_w */
    int out_dim;                  /* classes, or regression outputs */
} vl_model_config_t;

typedef struct vl_model vl_model_t;

/* The default model.depth of a family (resnet 20, preresnet 8, vgg 16, wideresnet 28), 0 for
 * the kinds without a depth (mlp, convnet). families.c */
int model_default_depth(int kind);
/* NULL when depth is one of the family's depths, else the rule ("a vgg's depth is 11, 13, 16
 * or 19"); preact_shortcut: a preresnet of the files before families.c (basic blocks only). */
const char *model_depth_rule(int kind, int depth, int preact_shortcut);

/* Sum-allreduce of n doubles in place over the data-parallel group. */
typedef void (*vl_reduce_fn)(double *buf, int n, void *ctx);

/* Builds the model for batches of at most max_batch samples (per call).
 * *out is owned by the caller (model_free). Fails with VL_EINPUT on a bad
 * configuration (message names the problem). */
int model_create(const vl_model_config_t *cfg, int max_batch, vl_model_t **out);
void model_free(vl_model_t *m);

size_t model_nparams(const vl_model_t *m);
size_t model_nstate(const vl_model_t *m);
int model_max_batch(const vl_model_t *m);
int model_out_dim(const vl_model_t *m);
int model_in_dim(const vl_model_t *m);
/* The tensor table (parameters first, then state), owned by m. */
const vl_tensor_t *model_tensors(const vl_model_t *m, int *ntensors);
/* Dropout keys for the next forward (and its backward): sample b of the batch draws its masks
 * from the Philox stream (seed, RNG_DROPOUT, pass and the layer, ids[b]), so a sample's masks do
 * not depend on the rank count or on its place in the batch. ids (the samples' indices in the
 * data set) must stay valid until the backward. A training forward without keys drops nothing
 * (BN refreshes, likelihood passes); MODE_BN_UPDATE never drops (valley refreshes BN with dropout
 * off: in the families with dropout it comes after the last BN, where the two agree). */
void model_dropout_key(vl_model_t *m, uint64_t seed, uint64_t pass, const int64_t *ids);
/* MC dropout: evaluation forwards with keys drop too (issue 18). */
void model_set_mc_dropout(vl_model_t *m, int on);
int model_has_dropout(const vl_model_t *m);
/* The network as text (graphdesc.h): one line per layer, the same network rebuilt from it
 * (model.kind = graph) with the same tensors in the same order. malloc'd; NULL when out of memory. */
char *model_graph_text(const vl_model_t *m);
/* Short description, e.g. "convnet 1x28x28 -> 10, 421642 parameters". Owned by m. */
const char *model_describe(const vl_model_t *m);
/* Bytes of the model's buffers (activations, their gradients, indices, workspaces) for its
 * max_batch: allocated by model_create, touched by the first passes. */
double model_bytes(const vl_model_t *m);

/* PyTorch's default initialisation in law: weights and biases of linear and
 * conv layers U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5)),
 * BN weight 1, bias 0, running mean 0, var 1. Each tensor draws from its own
 * counter-based stream (seed, tensor index), so the result is independent of
 * the number of ranks. state may be NULL. */
void model_init(const vl_model_t *m, uint64_t seed, float *w, float *state);
void model_reset_state(const vl_model_t *m, float *state); /* mean 0, var 1 */

void model_set_reduce(vl_model_t *m, vl_reduce_fn fn, void *ctx);

/* Forward pass of n samples x (n, in_dim), row-major per sample, n <= max_batch.
 * Returns the outputs (n, out_dim), owned by m, valid until the next forward.
 * MODE_EVAL: BN uses running statistics from state (state not modified).
 * MODE_TRAIN: BN uses (global) batch statistics and updates state with
 *   momentum 0.1 (running var unbiased), as PyTorch's train mode.
 * MODE_BN_UPDATE: BN uses batch statistics and accumulates them for
 *   model_bn_finish (state not modified). Begin with model_bn_begin. The pass
 *   stops at the last BN's statistics (nothing after them is needed) and
 *   returns NULL when the model has a BN.
 * Collective over the reduce group when the model has BN and mode != EVAL. */
const float *model_forward(vl_model_t *m, const float *w, float *state, const float *x,
                           int n, int mode);

/* model_set_grad(m, 0): MODE_EVAL forwards skip what only a backward needs (the
 * max-pool winners of a fused BN -> ReLU -> pool); no model_backward may follow them.
 * model_set_grad(m, 1) (the default) restores that. Outputs are the same either way. */
void model_set_grad(vl_model_t *m, int on);

/* Backward pass for the last forward (which must have been MODE_TRAIN or
 * MODE_EVAL with gradients on, model_set_grad): dout (n, out_dim) is dLoss/dOutput; writes the full parameter
 * gradient into g (overwrites all nparams entries). Collective like forward. */
void model_backward(vl_model_t *m, const float *w, const float *dout, float *g);

/* K-FAC factors (issue 18, laplace.h). The layers K-FAC covers are the conv and linear layers,
 * in node order. Layer i's weights are a (dim_g) x (dim_a - has_bias) matrix at w_off (PyTorch's
 * (out, in, kh, kw) read as rows of in*kh*kw), its bias (dim_g) at b_off; `locations` is the
 * number of output pixels of a sample (1 for a linear layer). Returns the layer count (fills at
 * most max entries). */
typedef struct {
    int dim_a, dim_g, has_bias, locations;
    size_t w_off, b_off;
} vl_kfac_layer_t;
int model_kfac_layers(const vl_model_t *m, vl_kfac_layer_t *lay, int max);
/* With sinks set (A[i]: dim_a^2 doubles, G[i]: dim_g^2, row-major, owned by the caller), each
 * later model_backward adds to layer i's A the sum over the batch's samples and the layer's
 * output locations of a a^T, a = the input patch that output reads (in*kh*kw values, zero
 * padding included, then 1 with a bias), and to G the sum of g g^T, g = the gradient of the
 * loss the backward was given with respect to that output (per-sample loss gradients give the
 * empirical Fisher's factors). Partial sums in float over at most 4096 terms, added in double.
 * While set, the conv on the model input that its BN recomputes (convnet) stores its output
 * instead (the factors need its gradient). model_kfac_set(m, NULL, NULL) stops. Returns
 * VL_OK, or an error when out of memory. */
int model_kfac_set(vl_model_t *m, double *const *A, double *const *G);

/* bn_update (SPEC §0): begin resets the accumulators; each MODE_BN_UPDATE forward
 * adds b·mean and b·var_unbiased of its (global) batch of b samples; finish sets
 * the running statistics in state to the equal-weight average over all samples
 * (PyTorch's momentum b/(n+b)). */
void model_bn_begin(vl_model_t *m);
void model_bn_finish(vl_model_t *m, float *state);
int model_has_bn(const vl_model_t *m);
/* 3x3 "same" convolutions run on the direct kernels of conv3.c where the build and the shape
 * allow (the default) or on im2col + GEMM: on = 1 / 0 switches, -1 only asks. Returns how
 * many convolutions use the direct kernels. */
int model_conv_direct(vl_model_t *m, int on);
/* The forward of those direct convolutions whose shape allows it (wino.c) runs as a Winograd
 * F(2x2, 3x3) (the default) or on the direct kernel: on = 1 / 0 switches, -1 only asks.
 * Returns how many convolutions use it. */
int model_conv_winograd(vl_model_t *m, int on);

/* Loss surfaces (SPEC §2, w = shift + sum z_i basis_i): the first layer of an mlp is linear
 * in z, W(z)x + b(z) = (W0 x + b0) + sum z_i (D_i x + d_i), so its responses to the shift
 * and to each direction can be computed once per sample and combined per grid point.
 * model_first_dense tells whether node 1 is a dense layer on the input (returns 1 and its
 * weight/bias offsets and sizes) or not (returns 0). model_combine turns that layer of a
 * model into the combination: the model's input becomes nresp responses per sample,
 * (n, nresp*fout) with response r in columns [r*fout, (r+1)*fout), and the layer's output
 * is resp_0 + sum_{r>=1} coef_r resp_r with the coefficients of model_set_combine_coef
 * (initially 1, 0, 0, ...). The parameter layout is unchanged (the layer's tensors stay in
 * w but are not read). Backward gives zero gradients for them: for evaluation only. */
#define MODEL_COMBINE_MAX 17
int model_first_dense(const vl_model_t *m, size_t *w_off, size_t *b_off, int *fin, int *fout);
int model_combine(vl_model_t *m, int nresp);
void model_set_combine_coef(vl_model_t *m, const float *coef);

/* For tests: a hash of the piecewise-linear decisions of the last forward
 * (ReLU signs, max-pool winners), so a finite-difference check can tell
 * whether two weight vectors lie on the same smooth piece. */
uint64_t model_pattern_hash(const vl_model_t *m);

#endif
