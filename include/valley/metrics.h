/* metrics.h — evaluation metrics of a predictive distribution on a test set
 * (SPEC §0 "Metrics"), for classification and Gaussian regression.
 *
 * The test set is distributed: each rank passes its shard, rows lo..lo+n_local-1
 * of the global test set; the shards of all ranks must tile 0..N-1 exactly once
 * (in any rank order; ranks may hold zero rows). Per-example values are gathered
 * to every rank (MPI_Allgatherv, the test set is small: <= 1e5 rows) and summed
 * in global index order, so every rank gets the same result and 1, 2, 4, ...
 * ranks give bit-identical metrics. All accumulation is in double.
 *
 * Classification, per example i with probability row p (C classes, already the
 * BMA average, rows sum to 1) and label y:
 *   prediction    argmax_c p_c (ties: lowest class index), confidence = max_c p_c
 *   correct       1 if prediction == y
 *   nll           -log(max(p_y, 1e-12))      (clamp METRICS_P_MIN: a zero
 *                 probability on the label costs 27.63 nats, not +inf)
 *   brier         sum_c (p_c - [c == y])^2   (sum over classes, not divided by C)
 *   entropy       -sum_c p_c log p_c, with 0 log 0 = 0 (nats)
 * and the reported values are means over the N examples (never sums).
 * Reliability / ECE:
 *   - equal-width: 15 bins with edges e_b = b/15 (computed as (double)b / 15);
 *     bin b holds e_b < conf <= e_{b+1} (bin 0 also holds conf <= 0).
 *   - equal-count (the SWAG code's convention): examples sorted by confidence,
 *     ties by global index, sorted position j in [0, N) goes to bin b with
 *     floor(b*N/20) <= j < floor((b+1)*N/20); bins are empty when N < 20.
 *   ECE = sum_b (n_b/N) |acc_b - conf_b| over non-empty bins, in both cases.
 *
 * Regression, per example with Gaussian predictive N(mu, sigma^2) in original
 * target units and target y (d = y - mu):
 *   loglik_i = -0.5 log(2 pi) - log(sigma) - 0.5 (d/sigma)^2
 *   covered_i = |d| <= 1.96 sigma
 * reported: rmse = sqrt(mean d^2), loglik = mean loglik_i, nll = -loglik,
 * coverage95 = mean covered_i, mean_std = mean sigma.
 *
 * Errors (all collective: every rank fails with the same message, VL_FAIL_ALL,
 * status VL_EINPUT): empty test set, shards that do not tile 0..N-1, N too large
 * for MPI counts (> INT_MAX), C < 1 or differing between ranks, a label outside
 * [0, C), a probability that is not finite or outside [0, 1], a non-finite mu or
 * y, sigma not finite or <= 0. Out-of-memory is VL_EIO (local).
 */
#ifndef VALLEY_METRICS_H
#define VALLEY_METRICS_H
#include <mpi.h>
#include <stdint.h>

#define METRICS_BINS_WIDTH 15 /* equal-width confidence bins */
#define METRICS_BINS_COUNT 20 /* equal-count confidence bins (SWAG code) */
#define METRICS_P_MIN 1e-12   /* NLL clamp: -log(max(p_y, METRICS_P_MIN)) */

typedef struct {
    int64_t n;                                   /* global number of examples N */
    double accuracy, error;                      /* fractions in [0, 1], error = 1 - accuracy */
    double nll, brier, entropy;                  /* means per example (nats; brier summed over classes) */
    double ece, ece_count;                       /* 15 equal-width, 20 equal-count bins */
    double bin_lo[METRICS_BINS_WIDTH], bin_hi[METRICS_BINS_WIDTH]; /* equal-width edges */
    int64_t bin_count[METRICS_BINS_WIDTH];
    double bin_conf[METRICS_BINS_WIDTH], bin_acc[METRICS_BINS_WIDTH]; /* bin means, NaN if empty */
    double cbin_conf[METRICS_BINS_COUNT], cbin_acc[METRICS_BINS_COUNT]; /* NaN if empty */
    int64_t cbin_count[METRICS_BINS_COUNT];
} vl_class_metrics_t;

typedef struct {
    int64_t n;          /* global number of examples N */
    double rmse;        /* sqrt(mean (y - mu)^2) */
    double nll;         /* -loglik */
    double loglik;      /* mean log N(y; mu, sigma^2) (nats) */
    double coverage95;  /* fraction with |y - mu| <= 1.96 sigma */
    double mean_std;    /* mean sigma */
} vl_reg_metrics_t;

/* Classification metrics of the predictive probabilities on a distributed test
 * set. Collective over comm. probs (n_local, C) row-major; labels (n_local);
 * lo = global index of this rank's row 0. Fills *out identically on every rank.
 * Returns VL_OK or a status (see "Errors" above); *out is unspecified on failure. */
int metrics_classification(const float *probs, const int32_t *labels, int64_t n_local, int C,
                           int64_t lo, MPI_Comm comm, vl_class_metrics_t *out);

/* Gaussian regression metrics. Collective over comm. mu, sigma, y (n_local):
 * predictive mean, predictive standard deviation and target of each example, in
 * the original target units; lo = global index of this rank's row 0. Fills *out
 * identically on every rank. Returns VL_OK or a status (see "Errors" above). */
int metrics_regression(const float *mu, const float *sigma, const float *y, int64_t n_local,
                       int64_t lo, MPI_Comm comm, vl_reg_metrics_t *out);

/* Predictive entropy H_i = -sum_c p_c log p_c (0 log 0 = 0, nats) of each example of a
 * distributed set (probs (n_local, C), rows lo.. of the set, tiling 0..N-1 as above): its mean
 * over the N examples into *mean and a histogram of nbins equal-width bins on [0, log C] into
 * counts[0..nbins): bin b = floor(H / log C * nbins), clamped to 0..nbins-1 (so bin b holds
 * b w <= H < (b+1) w, w = log C / nbins, and the last one also H = log C; C = 1: bin 0). Gathered
 * and summed in global order: bit-identical on any rank count. Collective over comm; errors as
 * metrics_classification (empty set, bad shards, a probability outside [0, 1]). */
#define METRICS_ENTROPY_BINS 20
int metrics_entropy(const float *probs, int64_t n_local, int C, int64_t lo, MPI_Comm comm, int nbins,
                    double *mean, int64_t *counts);

/* Row-wise softmax of logits (n, C) into probs (n, C), computed in double with
 * max subtraction (no overflow for large logits). probs may equal logits (in
 * place). A -inf logit gives probability 0; a row with a NaN or +inf logit (or
 * only -inf) gives NaN probabilities, which metrics_classification rejects.
 * Local, cannot fail. */
void metrics_softmax(const float *logits, int64_t n, int C, float *probs);

/* Row-wise log-softmax: logp[i,c] = x_c - max - log sum_k exp(x_k - max), in
 * double. logp may equal logits (in place). Local, cannot fail. */
void metrics_log_softmax(const float *logits, int64_t n, int C, float *logp);

#endif
