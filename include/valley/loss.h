/* loss.h — losses of a (global) minibatch held in shards by the ranks.
 *
 * Every loss is the mean over the global batch of `total` samples, of which
 * this rank holds n. Each function returns this rank's SUM of per-example
 * losses (double; the caller reduces and divides by total) and writes
 * dLoss/dOutput for its rows, already divided by total, so that the sum of the
 * ranks' parameter gradients is the gradient of the global mean.
 */
#ifndef VALLEY_LOSS_H
#define VALLEY_LOSS_H
#include <stddef.h>
#include <stdint.h>

/* Softmax cross-entropy. logits (n, C), labels y (n). dlogits may be NULL.
 * *correct (may be NULL) receives the number of argmax hits. */
double loss_softmax_ce(const float *logits, const int32_t *y, int n, int C, double total, float *dlogits,
                       int64_t *correct);

/* Gaussian negative log-likelihood for regression targets t (n, D).
 * Homoscedastic: out (n, D) is the mean, the noise variance is `noise_var`.
 * Heteroscedastic: out (n, 2D) holds the mean (first D) and a raw value s
 * (last D), variance = softplus(s) + 1e-6. dout may be NULL. */
double loss_gaussian_nll(const float *out, const float *t, int n, int D, int heteroscedastic, double noise_var,
                         double total, float *dout);

/* Mean squared error: mean over samples of sum over D of (out - t)^2. */
double loss_mse(const float *out, const float *t, int n, int D, double total, float *dout);

/* Plain L2 regulariser 0.5*wd*||w||^2 (value; the optimiser adds wd*w to the gradient). */
double loss_l2(const float *w, size_t n, double wd);

#endif
