/* swag.h — SWA and SWAG moments of the SGD iterates (SPEC §3–4).
 *
 * Mean and second central moment by Welford's update in double (the reference
 * code's float E[w²]−E[w]² goes negative), taken about a shift (the first
 * iterate) so that weights whose mean is 10^6 times their spread keep a
 * variance accurate to ~1e-15 instead of ~1e-10; variance = max(M2/n, 1e-30)
 * with the clamps counted. The last K deviations w_i − w̄_i (mean after the update) are
 * kept first-in-first-out in float. Every rank of a group holds the whole
 * vectors (they are identical on all ranks of a data-parallel group).
 */
#ifndef VALLEY_SWAG_H
#define VALLEY_SWAG_H
#include <stddef.h>
#include <stdint.h>

#include "valley/rng.h"

#define SWAG_VAR_MIN 1e-30

typedef struct {
    size_t d;        /* parameters */
    int K;           /* maximum deviations kept (0: SWA only) */
    int ndev;        /* deviations stored (<= K) */
    int head;        /* ring position of the next deviation to write */
    int64_t n;       /* models collected */
    double *mean;    /* shift + mu: the SWA mean */
    double *m2;      /* Welford sum of squared deviations */
    float *shift;    /* the first iterate */
    double *mu;      /* running mean of (w - shift) */
    float *dev;      /* (K, d) ring */
} vl_swag_t;

int swag_init(vl_swag_t *s, size_t d, int K);
void swag_free(vl_swag_t *s);
/* Adds one model w (d floats). */
void swag_collect(vl_swag_t *s, const float *w);
void swag_mean(const vl_swag_t *s, float *out);
/* var[i] = max(M2/n, SWAG_VAR_MIN) (0 when n == 0); returns the number of clamped entries. */
int64_t swag_variance(const vl_swag_t *s, float *var);
/* Deviation j in chronological order (0 = oldest stored); NULL unless 0 <= j < ndev. */
const float *swag_deviation(const vl_swag_t *s, int j);
/* One sample: w = mean + sqrt(scale)*(sqrt(var) ⊙ z1 + D^T z2 / sqrt(ndev-1)),
 * z1 ~ N(0, I_d), z2 ~ N(0, I_ndev); diag = 1 (or ndev < 2) drops the low-rank term.
 * var from swag_variance. Draws z1 first (d numbers), then z2. */
void swag_sample(const vl_swag_t *s, const float *var, double scale, int diag, vl_rng_t *r, float *w);
#endif
