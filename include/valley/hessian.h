/* hessian.h — curvature (issue 19): exact Hessian-vector products, Lanczos with full
 * reorthogonalisation distributed over a group, stochastic Lanczos quadrature, `valley hessian`.
 *
 * The Hessian is that of the mean softmax cross-entropy over a set of training samples with
 * respect to all parameters, batch norm in evaluation mode with the given running statistics
 * (as PyHessian; no weight-decay term): the loss is then a sum of per-sample terms, and
 * H v = (1/N) sum_b H_b v.
 *
 * Products (hvp_add) are Pearlmutter's R-operator: a forward pass carries each activation a
 * and its directional derivative R{a} = d a(w + t v)/dt at t = 0; a backward pass carries the
 * adjoint g = dL/da and R{g}; the parameter part of R{g} is H v. Per layer:
 *   conv / linear  z = W x + b        R{z} = W R{x} + V x + v_b
 *                  dW = g x^T          R{dW} = R{g} x^T + g R{x}^T,  R{gx} = W^T R{g} + V^T g
 *   BN (eval)      y = γ s (x - μ) + β  R{y} = γ s R{x} + v_γ s (x - μ) + v_β  (s = 1/sqrt(σ² + ε))
 *   ReLU, max-pool the forward's decisions applied to the tangent and to both adjoints
 *   softmax CE     g = p - e_y         R{g} = p ⊙ (R{z} - <p, R{z}>)
 * Fp32 activations and GEMMs (im2col for convolutions), the sums over samples of the BN
 * parameters in double, a batch's product added to a double vector.
 */
#ifndef VALLEY_HESSIAN_H
#define VALLEY_HESSIAN_H
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "valley/comm.h"
#include "valley/deck.h"
#include "valley/model.h"

struct vl_job;

/* ------------------------------------------------------------------ products */

typedef struct vl_hvp vl_hvp_t;
/* Buffers for batches of at most max_batch samples of model m (its structure only; m is not
 * run). VL_EINPUT for a layer the products do not cover (a surface's combined first layer). */
int hvp_create(const vl_model_t *m, int max_batch, vl_hvp_t **out);
void hvp_free(vl_hvp_t *h);
double hvp_bytes(const vl_hvp_t *h);
/* Adds to hv (nparams doubles) H_S v, the Hessian of the SUM over the n samples x (n, in_dim)
 * with labels y of their cross-entropy at weights w (BN in eval mode with `state`), times v
 * (nparams floats). Returns the summed loss; *correct (may be NULL) the argmax hits.
 * Each sample's forward is computed on its own columns: its decisions (ReLU signs, pool
 * winners) do not depend on the other samples of the batch. Local. */
double hvp_add(vl_hvp_t *h, const float *w, const float *state, const float *x, const int32_t *y, int n,
               const float *v, double *hv, int64_t *correct);

/* ------------------------------------------------------------------ Lanczos */

/* The operator: adds this rank's part of the (unscaled) product to hv_local (np doubles,
 * zeroed by the caller); the Lanczos driver sums the parts over the group and scales them. */
typedef int (*vl_hop_fn)(void *ctx, const float *v, double *hv_local);

typedef struct {
    int steps;           /* Lanczos steps done (<= asked: stops early on an invariant subspace) */
    double *alpha, *beta;/* the tridiagonal matrix: alpha[0..steps), beta[0..steps) (beta[i] couples i, i+1) */
    double *ritz;        /* Ritz values, ascending (steps) */
    double *weight;      /* quadrature weights: squared first components of the Ritz vectors (sum 1) */
    double *bound;       /* residual bounds |beta_m s_{m,i}| = ||H y_i - theta_i y_i|| */
    double quad;         /* v^T H v of the start vector v as drawn (Rademacher: its norm^2 = np) */
    double norm2;        /* ||v||^2 of the start vector as drawn */
    double seconds;
} vl_lanczos_t;

/* Lanczos with full reorthogonalisation (classical Gram-Schmidt twice per step, double) on the
 * operator op scaled by `scale`, np parameters, from a Rademacher start vector drawn from
 * (seed, stream). The Lanczos vectors are distributed over the group: each rank keeps its
 * contiguous slice of the rows, a product costs one reduce-scatter of its np doubles and one
 * allgather of the next vector. `label` leads the progress lines (NULL: none). Collective over
 * g. Results are the same on every rank of g. */
int lanczos_run(MPI_Comm g, size_t np, vl_hop_fn op, void *ctx, double scale, int steps, uint64_t seed,
                uint64_t stream, const char *label, vl_lanczos_t *out);
void lanczos_free(vl_lanczos_t *l);
/* The tridiagonal matrix's eigen-decomposition: fills ritz, weight and bound from alpha, beta
 * (LAPACK dstev). Local. */
int lanczos_ritz(vl_lanczos_t *l);

/* ------------------------------------------------------------------ the job's Hessian */

/* The Hessian of the mean training NLL over the first `samples` samples of j->train (0: all),
 * BN in eval mode with `state`: context of hessian_op. */
typedef struct {
    struct vl_job *j;
    vl_hvp_t *h;
    const float *w, *state;
    int64_t n;           /* samples the mean runs over */
    int64_t lo, hi;      /* this rank's even share [lo, hi) of them (data_shard over the group) ... */
    float *x;            /* ... its inputs (hi - lo, in_dim), gathered from the ranks holding them */
    int32_t *y;          /* ... and labels */
    int batch;           /* samples per product batch: chunks aligned to global multiples of it */
    double loss;         /* this rank's summed loss and argmax hits over its samples in the last product */
    int64_t correct;
} vl_hess_t;
int hess_init(vl_hess_t *hs, struct vl_job *j, int64_t samples);
void hess_free(vl_hess_t *hs);
/* vl_hop_fn on a vl_hess_t: this rank's samples. */
int hess_op(void *ctx, const float *v, double *hv_local);
/* Largest and smallest eigenvalue (Lanczos of `steps` steps from (seed, stream)) and their
 * residual bounds at (w, state). Collective over the group. */
int hess_extremes(vl_hess_t *hs, const float *w, const float *state, int steps, uint64_t seed, uint64_t stream,
                  const char *label, double ext[4]);

/* `valley hessian MODEL.nc` -> outdir/hessian.nc. */
int hessian_command(vl_comm_t *c, vl_deck_t *d, int nin, char **in, const char *outdir);

#endif
