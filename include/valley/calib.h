/* calib.h — temperature scaling (Guo et al. 2017) of a point model's logits, the calibration
 * the SWAG paper compares with (issue 18): one scalar T > 0 for all classes, fitted on a
 * validation split and applied at test as softmax(logits / T).
 *
 * The fit minimises the mean validation NLL
 *     f(T) = (1/N) sum_i [ logsumexp_c(z_ic / T) - z_iy / T ]
 * over u = log T (so T > 0 always), in double on the float logits. With beta = 1/T and p the
 * softmax of beta z, per example
 *     df/du   = beta (z_y - E_p[z])                 (summed and divided by N)
 *     d2f/du2 = -beta (z_y - E_p[z]) + beta^2 Var_p[z].
 * f is convex in beta, so df/du changes sign once: the minimiser is bracketed by stepping u
 * from 0 (T = 1) by 0.5, 1, 2, ... toward the descent, then found by Newton's method on df/du
 * safeguarded by bisection of the bracket, to |du| < 1e-12 (T to 1e-12 relative). Each
 * evaluation is one pass over the rank's rows and one MPI_Allreduce of the sums (NLL, both
 * derivatives, count), so the result does not depend on how the rows are spread over the
 * ranks except for the summation order (T agrees to ~1e-13 relative across rank counts).
 * A minimum beyond T in [CALIB_T_MIN, CALIB_T_MAX] (validation data that the model separates
 * perfectly: NLL -> 0 as T -> 0; a derivative that underflows to 0 on the way counts as "still
 * falling") returns the bound with at_bound = 1. Logits that carry no information (df/du = 0
 * at T = 1 exactly, e.g. all equal) give T = 1.
 */
#ifndef VALLEY_CALIB_H
#define VALLEY_CALIB_H
#include <mpi.h>
#include <stdint.h>

#define CALIB_T_MIN 1e-4
#define CALIB_T_MAX 1e4

typedef struct {
    double temperature; /* the fitted T */
    double nll;         /* mean NLL at T */
    double nll_t1;      /* mean NLL at T = 1 (the unscaled model) */
    int64_t n;          /* examples over all ranks */
    int evaluations;    /* passes over the logits (one allreduce each) */
    int at_bound;       /* 1: the minimum lies at or beyond a bound; T is that bound */
} vl_temp_fit_t;

/* Fits T on the distributed set: each rank passes its rows' logits (n_local, C) and labels.
 * Collective over comm (every rank gets the same *out). Errors (collective, every rank alike):
 * an empty set, C < 1, a label outside [0, C) (VL_EINPUT), a non-finite logit (VL_ENUM). */
int calib_fit_temperature(const float *logits, const int32_t *labels, int64_t n_local, int C, MPI_Comm comm,
                          vl_temp_fit_t *out);

/* probs = softmax(logits / T) row-wise, in double with max subtraction (probs may equal
 * logits). Local, cannot fail. */
void calib_softmax(const float *logits, int64_t n, int C, double T, float *probs);
#endif
