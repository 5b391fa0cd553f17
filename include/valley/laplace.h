/* laplace.h — KFAC-Laplace around a point estimate (issue 18; Ritter, Botev & Barber 2018, as
 * the SWAG paper's baseline: wjmaddox/swa_gaussian, swag/posteriors/laplace.py).
 *
 * The posterior of the weights of each conv and linear layer l (its weight matrix
 * W_l, dim_g x dim_a, the bias as the last column) is Gaussian around the point estimate, with
 * precision the Kronecker product
 *     Λ_l = (sqrt(N L_l) A_l + sqrt(τ) I) ⊗ (sqrt(N L_l) G_l + sqrt(τ) I),
 * A_l = mean over the N training samples and the L_l output locations of a a^T (a: the input
 * patch of an output, then 1 for the bias), G_l = the same mean of g g^T (g: the gradient of the
 * sample's loss with respect to that output): N L_l A_l ⊗ G_l is the K-FAC (for convs KFC,
 * Grosse & Martens 2016) approximation of the empirical Fisher of the summed training loss, and
 * τ the prior precision, split evenly over the two factors. The other parameters (batch-norm
 * scales and shifts) stay at the point estimate, as in the reference code.
 *
 * A draw: W_l = W*_l + s L_G^{-T} Z L_A^{-1}, Z i.i.d. N(0, 1), L_A L_A^T and L_G L_G^T the
 * Cholesky factorisations of the two damped factors; its covariance is s^2 Λ_l^{-1}.
 * The reference code differs: it takes the factors of one minibatch of 128 images (here: the
 * whole training split) and scales its draws by s / N instead of s (a posterior sqrt(N) times
 * narrower); both are stated in doc/interface.md.
 */
#ifndef VALLEY_LAPLACE_H
#define VALLEY_LAPLACE_H
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/train.h"

typedef struct {
    int nl;                 /* covered layers (model_kfac_layers) */
    vl_kfac_layer_t *lay;
    double **A, **G;        /* the factors: means over samples and locations (after laplace_fit) */
    double **LA, **LG;      /* lower Cholesky factors of the damped factors (laplace_prepare) */
    double n;               /* training samples the factors average over */
    double tau;             /* prior precision of the last laplace_prepare */
} vl_laplace_t;

int laplace_init(vl_laplace_t *lp, const vl_model_t *m);
void laplace_free(vl_laplace_t *lp);
/* The factors of the model at (w, state) over the job's training split: global batches of
 * j->batch samples in data order, train-mode BN (the batch statistics of the global batch, as
 * the SGD steps and the reference code; state itself is not changed), the gradient of each
 * sample's own loss. Reduced over the group; the same on every rank. Collective over the group. */
int laplace_fit(vl_laplace_t *lp, vl_job_t *j, const float *w, const float *state);
/* The Cholesky factors for prior precision tau > 0. VL_EINPUT if a damped factor is not
 * positive definite (it is for any tau > 0 unless the factors hold NaN). */
int laplace_prepare(vl_laplace_t *lp, double tau);
/* w = w_mean + scale x a draw of the posterior deviation (np parameters, those of no covered
 * layer copied from w_mean); the normals come from r in layer order, row by row. */
int laplace_sample(const vl_laplace_t *lp, const float *w_mean, size_t np, double scale, vl_rng_t *r, float *w);
/* The prior precision of a bma method (its draws' streams: method) and the Cholesky factors
 * for it: laplace.prior_precision when > 0; else, with a validation split (data.validation),
 * the value of the grid n_train train.wd 10^k, k = -1 .. 7, whose model average of
 * laplace.fit_samples draws (BN refreshed each) has the smallest mean validation NLL; else
 * n_train train.wd (the prior SGD's weight decay stands for). Logs the choice. Collective over
 * the group. */
int laplace_prior(vl_laplace_t *lp, vl_job_t *j, const float *base, float *state, uint64_t seed, int method, double *tau);
#endif
