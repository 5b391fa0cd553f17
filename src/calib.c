/* calib.c — temperature scaling: the fit of T on validation logits and its softmax (calib.h). */
#include "valley/calib.h"

#include <math.h>
#include <string.h>

#include "valley/error.h"

enum { S_NLL, S_DIFF, S_VAR, S_N, S_BAD, S_BADY, S_K };

/* Sums over the local rows at beta = 1/T (calib.h): NLL, z_y - E_p[z], Var_p[z], rows, and the
 * numbers of rows with a non-finite logit and with a label outside [0, C). */
static void local_sums(const float *z, const int32_t *y, int64_t n, int C, double beta, double *s)
{
    memset(s, 0, S_K * sizeof *s);
    for (int64_t i = 0; i < n; i++) {
        const float *r = z + (size_t)i * (size_t)C;
        double m = -INFINITY;
        int finite = 1;
        for (int c = 0; c < C; c++) {
            finite &= isfinite(r[c]) != 0;
            if (r[c] > m) m = r[c];
        }
        if (y[i] < 0 || y[i] >= C) {
            s[S_BADY] += 1;
            continue;
        }
        if (!finite) {
            s[S_BAD] += 1;
            continue;
        }
        /* moments of d = z - max under p: E[d], E[d^2]; every d <= 0 and the largest is 0 */
        double Z = 0, e1 = 0, e2 = 0;
        for (int c = 0; c < C; c++) {
            const double d = (double)r[c] - m, e = exp(beta * d);
            Z += e;
            e1 += e * d;
            e2 += e * d * d;
        }
        e1 /= Z;
        e2 /= Z;
        const double dy = (double)r[y[i]] - m;
        s[S_NLL] += log(Z) - beta * dy; /* logsumexp(beta z) - beta z_y */
        s[S_DIFF] += dy - e1;           /* z_y - E_p[z] */
        const double var = e2 - e1 * e1;
        s[S_VAR] += var > 0 ? var : 0;
        s[S_N] += 1;
    }
}

typedef struct {
    const float *z;
    const int32_t *y;
    int64_t n;
    int C;
    MPI_Comm comm;
    int evaluations;
} fit_ctx_t;

/* f(u), f'(u), f''(u) at u = log T over all ranks (one allreduce). */
static int evaluate(fit_ctx_t *x, double u, double *f, double *g, double *h, double *count)
{
    double s[S_K];
    const double beta = exp(-u);
    local_sums(x->z, x->y, x->n, x->C, beta, s);
    MPI_Allreduce(MPI_IN_PLACE, s, S_K, MPI_DOUBLE, MPI_SUM, x->comm);
    x->evaluations++;
    if (s[S_BADY] > 0)
        return VL_FAIL_ALL(VL_EINPUT, "temperature scaling: %.0f validation label(s) outside 0..%d", s[S_BADY], x->C - 1);
    if (s[S_BAD] > 0)
        return VL_FAIL_ALL(VL_ENUM, "temperature scaling: %.0f validation example(s) with a non-finite logit",
                           s[S_BAD]);
    if (s[S_N] < 1) return VL_FAIL_ALL(VL_EINPUT, "temperature scaling: no validation example");
    *f = s[S_NLL] / s[S_N];
    *g = beta * s[S_DIFF] / s[S_N];
    *h = (-beta * s[S_DIFF] + beta * beta * s[S_VAR]) / s[S_N];
    *count = s[S_N];
    return VL_OK;
}

int calib_fit_temperature(const float *logits, const int32_t *labels, int64_t n_local, int C, MPI_Comm comm,
                          vl_temp_fit_t *out)
{
    memset(out, 0, sizeof *out);
    int c_min = C, c_max = C;
    MPI_Allreduce(MPI_IN_PLACE, &c_min, 1, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, &c_max, 1, MPI_INT, MPI_MAX, comm);
    if (c_min < 1 || c_min != c_max)
        return VL_FAIL_ALL(VL_EINPUT, "temperature scaling: %d to %d classes over the ranks", c_min, c_max);
    fit_ctx_t x = {.z = logits, .y = labels, .n = n_local > 0 ? n_local : 0, .C = C, .comm = comm};
    const double umax = log(CALIB_T_MAX), umin = log(CALIB_T_MIN), tol = 1e-12;
    double f0, g0, h0, cnt;
    CHECK(evaluate(&x, 0.0, &f0, &g0, &h0, &cnt));
    out->nll_t1 = f0;
    out->n = (int64_t)cnt;
    double u = 0, f = f0, g = g0, h = h0;
    if (g0 != 0) {
        /* bracket: step from u = 0 toward the descent (-g) until df/du changes sign */
        const double dir = g0 < 0 ? 1.0 : -1.0;
        double a = 0, fa = f0, ga = g0, ha = h0, step = 0.5, b = 0, fb = f0, gb = g0, hb = h0;
        int found = 0;
        for (;;) {
            b = a + dir * step;
            if (b > umax) b = umax;
            if (b < umin) b = umin;
            CHECK(evaluate(&x, b, &fb, &gb, &hb, &cnt));
            /* a strict sign change; df/du = 0 here is a plateau (the NLL has stopped changing, e.g.
             * separated data far out), not the minimum: keep going */
            if (gb != 0 && (gb > 0) != (g0 > 0)) { found = 1; break; }
            if (b == umax || b == umin) break;
            a = b; fa = fb; ga = gb; ha = hb;
            step *= 2;
        }
        /* start from the end of the bracket with the smaller |df/du| */
        if (!found || fabs(gb) <= fabs(ga)) { u = b; f = fb; g = gb; h = hb; }
        else { u = a; f = fa; g = ga; h = ha; }
        out->at_bound = !found; /* the NLL still falls at the bound: T is the bound */
        if (found) {
            double lo = dir > 0 ? a : b, hi = dir > 0 ? b : a; /* df/du(lo) < 0 < df/du(hi) */
            for (int it = 0; it < 200; it++) {
                double next = h > 0 ? u - g / h : NAN;
                if (!(next > lo && next < hi)) next = 0.5 * (lo + hi); /* Newton leaves the bracket: bisect */
                const double du = next - u;
                u = next;
                CHECK(evaluate(&x, u, &f, &g, &h, &cnt));
                if (g < 0) lo = u;
                else if (g > 0) hi = u;
                if (g == 0 || fabs(du) < tol || hi - lo < tol) break;
            }
        }
    }
    out->temperature = exp(u);
    out->nll = f;
    out->evaluations = x.evaluations;
    return VL_OK;
}

void calib_softmax(const float *logits, int64_t n, int C, double T, float *probs)
{
    const double beta = 1.0 / T;
    for (int64_t i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * (size_t)C;
        float *p = probs + (size_t)i * (size_t)C;
        double m = -INFINITY, s = 0;
        for (int c = 0; c < C; c++)
            if (x[c] > m) m = x[c];
        for (int c = 0; c < C; c++) s += exp(beta * ((double)x[c] - m));
        for (int c = 0; c < C; c++) p[c] = (float)(exp(beta * ((double)x[c] - m)) / s);
    }
}
