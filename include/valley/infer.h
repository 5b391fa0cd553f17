/* infer.h — `valley infer`: subspace inference (SPEC §5), ESS and VI in w = ŵ + P z.
 *
 * Model: w(z) = ŵ + P z with a prior z ~ N(0, prior_std² I) and the tempered
 * log-likelihood L(z) = −(sum of per-example losses over the training set)/T.
 * The two samplers below are plain functions of a callback so that they can be
 * tested on closed-form targets; infer_command plugs in a data-parallel pass of
 * the network (collective over the group that runs the chain).
 *
 * Random numbers are counter-based (rng.h): iteration i of chain c draws from the
 * stream (seed, RNG_CHAIN, c, i) whatever group runs it, so a chain gives the same
 * samples on any number of groups.
 */
#ifndef VALLEY_INFER_H
#define VALLEY_INFER_H
#include <stdint.h>

#include "valley/comm.h"
#include "valley/deck.h"

/* Log-likelihood at z (k values) into *ll; returns VL_OK or a status. A value of
 * -inf is allowed (the point is rejected); NaN or +inf must be reported by the
 * callback as VL_ENUM (infer_ess also checks). May be collective: the sampler calls it
 * in the same order on every rank that runs the chain. */
typedef int (*infer_loglik_fn)(const double *z, double *ll, void *ctx);
/* Progress report after iteration `iter` (0-based) of `total`, at z with log-likelihood ll. */
typedef void (*infer_progress_fn)(int iter, int total, double ll, long long nevals, void *ctx);

typedef struct {
    int k;                    /* dimension of z (1..SUBSPACE_MAX_K) */
    double prior_std;         /* prior N(0, prior_std² I) */
    int burnin, nsamples;     /* iterations discarded, then kept (one sample per iteration) */
    uint64_t seed, chain;     /* random stream of iteration i: (seed, RNG_CHAIN, chain, i) */
    int max_shrink;           /* shrinkage steps before giving up (0 = 200) */
    infer_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} infer_ess_opts_t;

/* Results of one ESS chain; the caller owns the arrays (sizes below). */
typedef struct {
    double *z;          /* (nsamples, k) kept samples */
    double *loglik;     /* (nsamples) L(z) of each kept sample */
    int *shrink;        /* (nsamples) rejected proposals (shrinkage steps) before each kept sample */
    double *trace;      /* (burnin + nsamples) L after every iteration; may be NULL */
    long long nevals;   /* likelihood evaluations, the one at z0 included */
    long long nshrink;  /* shrinkage steps over all iterations (burn-in included) */
} infer_ess_out_t;

/* Elliptical slice sampling (Murray, Adams & MacKay 2010) of p(z) ∝ exp(L(z)) N(z; 0,
 * prior_std² I), starting at z0 (k values). Per iteration: ν ~ prior, log y = L(z) +
 * log u, θ ~ U(0, 2π), bracket [θ − 2π, θ]; proposals z cos θ + ν sin θ, the bracket
 * shrunk towards 0 on every rejection. Errors: VL_ENUM if L(z0) is not finite, if L is
 * NaN or +inf anywhere, or if the bracket shrinks max_shrink times (a message names the
 * chain and iteration); the callback's own status otherwise. Collective like f. */
int infer_ess(const infer_ess_opts_t *o, const double *z0, infer_loglik_fn f, void *ctx, infer_ess_out_t *out);

/* Minibatch objective for VI: at z and optimisation step `step`, the mean per-example
 * loss of the step's minibatch into *loss and its gradient w.r.t. z (k values) into
 * grad. May be collective like infer_loglik_fn. */
typedef int (*infer_grad_fn)(const double *z, long long step, double *loss, double *grad, void *ctx);

typedef struct {
    int k;
    double prior_std;
    double kl_weight;         /* T / N: objective = E_q[mean loss] + (T/N) KL(q || prior) */
    long long steps;          /* Adam steps */
    double lr;                /* Adam step size; constant for the first half, then linear to lr/100 */
    double sigma0;            /* initial σ of q (0 = prior_std / 10) */
    uint64_t seed, chain;     /* ε of step s: stream (seed, RNG_CHAIN, 2^27 + chain, s) */
    infer_progress_fn progress; /* called after each step with iter = step, ll = objective; may be NULL */
    void *progress_ctx;
} infer_vi_opts_t;

/* Mean-field Gaussian VI: q(z) = N(μ, diag softplus(ρ)²), μ = 0 and softplus(ρ) = sigma0
 * at the start, one reparameterised sample z = μ + σ ⊙ ε per step; gradients
 * ∂/∂μ = g + w μ/s0², ∂/∂ρ = (g ε + w (σ/s0² − 1/σ)) sigmoid(ρ) with g = ∂loss/∂z and
 * w = kl_weight; Adam (β 0.9, 0.999, ε 1e-8) on (μ, ρ). Writes mu, sigma (k each) and,
 * when trace is non-NULL, the objective estimate of every step (steps values).
 * VL_ENUM if the loss or a gradient is not finite. Collective like f. */
int infer_vi(const infer_vi_opts_t *o, infer_grad_fn f, void *ctx, double *mu, double *sigma, double *trace);

/* `valley infer INPUTS`: posterior over z in the subspace of the inputs, BMA of the
 * samples on the test set → outdir/infer.nc. Inputs: subspace.nc (from `valley pca`),
 * curve.nc or swag.nc first (infer.subspace chooses the subspace), then optionally a
 * swag.nc (adds a `swag` row: SWAG samples at bma.scale) and a MODEL.nc (adds an `sgd`
 * row) for comparison. Chain c runs on group c mod ngroups; per-sample predictions are
 * combined in sample order, so the output does not depend on the number of groups.
 * Collective over the world. */
int infer_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);

/* Predictive band of a 1-D regression infer.nc (x_grid, pred_mean, pred_std and the
 * training points train_x, train_y) → <outdir or the input's directory>/<stem>_band.png.
 * VL_EINPUT if the file has no x-grid. Serial (call on one rank). */
int infer_plot(const char *path, const char *outdir);
#endif
