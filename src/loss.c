/* loss.c — softmax cross-entropy, Gaussian NLL, MSE. */
#include "valley/loss.h"

#include <math.h>

#define LOG_2PI 1.8378770664093453

double loss_softmax_ce(const float *logits, const int32_t *y, int n, int C, double total, float *dlogits,
                       int64_t *correct)
{
    double sum = 0.0;
    int64_t hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * C;
        int arg = 0;
        float zmax = z[0];
        for (int c = 1; c < C; c++)
            if (z[c] > zmax) { zmax = z[c]; arg = c; }
        double se = 0.0;
        for (int c = 0; c < C; c++) se += exp((double)z[c] - zmax);
        const double lse = zmax + log(se);
        sum += lse - z[y[i]];
        hits += arg == y[i];
        if (dlogits) {
            float *d = dlogits + (size_t)i * C;
            for (int c = 0; c < C; c++) {
                double p = exp((double)z[c] - lse);
                d[c] = (float)((p - (c == y[i])) / total);
            }
        }
    }
    if (correct) *correct = hits;
    return sum;
}

static double softplus(double s) { return s > 20 ? s : log1p(exp(s)); }
static double sigmoid(double s) { return 1.0 / (1.0 + exp(-s)); }

double loss_gaussian_nll(const float *out, const float *t, int n, int D, int heteroscedastic, double noise_var,
                         double total, float *dout)
{
    double sum = 0.0;
    const int stride = heteroscedastic ? 2 * D : D;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            const float *o = out + (size_t)i * stride;
            double mu = o[j], r = mu - t[(size_t)i * D + j];
            double var = heteroscedastic ? softplus(o[D + j]) + 1e-6 : noise_var;
            sum += 0.5 * (LOG_2PI + log(var)) + r * r / (2.0 * var);
            if (dout) {
                float *d = dout + (size_t)i * stride;
                d[j] = (float)(r / var / total);
                if (heteroscedastic) {
                    double dvar = 0.5 / var - r * r / (2.0 * var * var);
                    d[D + j] = (float)(dvar * sigmoid(o[D + j]) / total);
                }
            }
        }
    return sum;
}

double loss_mse(const float *out, const float *t, int n, int D, double total, float *dout)
{
    double sum = 0.0;
    for (size_t k = 0; k < (size_t)n * D; k++) {
        double r = (double)out[k] - t[k];
        sum += r * r;
        if (dout) dout[k] = (float)(2.0 * r / total);
    }
    return sum;
}

double loss_l2(const float *w, size_t n, double wd)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)w[i] * w[i];
    return 0.5 * wd * s;
}
