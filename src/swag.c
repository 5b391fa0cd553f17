/* swag.c — Welford moments, deviation ring, sampling. */
#include "valley/swag.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"

int swag_init(vl_swag_t *s, size_t d, int K)
{
    memset(s, 0, sizeof *s);
    if (K < 0) return VL_FAIL(VL_EINPUT, "SWAG rank %d is negative", K);
    s->d = d;
    s->K = K;
    s->mean = vl_calloc(d, sizeof(double), "SWA mean");
    s->m2 = vl_calloc(d, sizeof(double), "SWAG second moment");
    s->mu = vl_calloc(d, sizeof(double), "SWAG shifted mean");
    s->shift = vl_calloc(d, sizeof(float), "SWAG shift");
    s->dev = K > 0 ? vl_calloc((size_t)K * d, sizeof(float), "SWAG deviations") : NULL;
    if (!s->mean || !s->m2 || !s->mu || !s->shift || (K > 0 && !s->dev)) { swag_free(s); return vl_error_status(); }
    return VL_OK;
}

void swag_free(vl_swag_t *s)
{
    free(s->mean);
    free(s->m2);
    free(s->mu);
    free(s->shift);
    free(s->dev);
    memset(s, 0, sizeof *s);
}

void swag_collect(vl_swag_t *s, const float *w)
{
    if (s->n == 0) memcpy(s->shift, w, s->d * sizeof(float));
    s->n++;
    const double inv = 1.0 / (double)s->n;
    float *dev = s->K > 0 ? s->dev + (size_t)s->head * s->d : NULL;
    for (size_t i = 0; i < s->d; i++) {
        double x = (double)w[i] - s->shift[i], delta = x - s->mu[i]; /* exact: w and shift are floats */
        s->mu[i] += delta * inv;
        double after = x - s->mu[i];
        s->m2[i] += delta * after;
        s->mean[i] = s->shift[i] + s->mu[i];
        if (dev) dev[i] = (float)after;
    }
    if (s->K > 0) {
        s->head = (s->head + 1) % s->K;
        if (s->ndev < s->K) s->ndev++;
    }
}

void swag_mean(const vl_swag_t *s, float *out)
{
    for (size_t i = 0; i < s->d; i++) out[i] = (float)s->mean[i];
}

int64_t swag_variance(const vl_swag_t *s, float *var)
{
    int64_t clamped = 0;
    for (size_t i = 0; i < s->d; i++) {
        double v = s->n > 0 ? s->m2[i] / (double)s->n : 0.0;
        if (s->n > 0 && v < SWAG_VAR_MIN) { v = SWAG_VAR_MIN; clamped++; }
        var[i] = (float)v;
    }
    return clamped;
}

const float *swag_deviation(const vl_swag_t *s, int j)
{
    if (s->K <= 0 || j < 0 || j >= s->ndev) return NULL;
    int oldest = s->ndev < s->K ? 0 : s->head;
    return s->dev + (size_t)((oldest + j) % s->K) * s->d;
}

void swag_sample(const vl_swag_t *s, const float *var, double scale, int diag, vl_rng_t *r, float *w)
{
    const double a = sqrt(scale);
    for (size_t i = 0; i < s->d; i++) w[i] = (float)(s->mean[i] + a * sqrt((double)var[i]) * rng_normal(r));
    if (diag || s->ndev < 2) return;
    const double b = a / sqrt((double)(s->ndev - 1));
    for (int j = 0; j < s->ndev; j++) {
        const float z = (float)(b * rng_normal(r));
        const float *dv = swag_deviation(s, j);
        for (size_t i = 0; i < s->d; i++) w[i] += z * dv[i];
    }
}
