/* test_grad.c — finite-difference checks of every layer, loss and model family.
 *
 * The network runs in fp32, so the central difference of the loss along a
 * unit direction v, (L(w+hv) - L(w-hv)) / 2h, carries rounding noise of about
 * 1e-7 * L / h. ReLU and max-pool make L piecewise smooth: the difference is
 * only meaningful when w-hv, w and w+hv make the same ReLU/max-pool decisions,
 * so h starts at 1e-2 and is divided by 4 until they do (at most 6 times).
 * Tolerance: |fd - g.v| <= 1e-3 * |g.v| + 1e-3 * |g_sub| + 1e-6 * L / h,
 * g_sub being the gradient restricted to the direction's support. A wrong
 * layer gradient gives errors of order |g_sub|. Losses are checked per output
 * coordinate (double arithmetic inside, h = 1e-3, relative 1e-3).
 */
#define _USE_MATH_DEFINES
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"

enum { N = 6 };

static double batch_loss(vl_model_t *m, const float *w, float *state, const float *x, const int32_t *y, float *g)
{
    int C = model_out_dim(m);
    const float *out = model_forward(m, w, state, x, N, MODE_TRAIN);
    float dout[N * 16];
    double l = loss_softmax_ce(out, y, N, C, N, g ? dout : NULL, NULL) / N;
    if (g) model_backward(m, w, dout, g);
    return l;
}

static void check_model(const char *name, vl_model_config_t cfg)
{
    vl_model_t *m = NULL;
    int st = model_create(&cfg, N, &m);
    T_CHECK(st == 0, "%s: model_create failed: %s", name, vl_error_message());
    if (st) return;
    size_t np = model_nparams(m), ns = model_nstate(m) + 1;
    float *w = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float)), *wp = malloc(np * sizeof(float));
    float *state = malloc(ns * sizeof(float));
    float *v = malloc(np * sizeof(float));
    int in_dim = model_in_dim(m);
    float *x = malloc((size_t)N * in_dim * sizeof(float));
    int32_t y[N];
    vl_rng_t r;
    rng_init(&r, 7, rng_stream(RNG_TEST, 1, 0));
    model_init(m, 3, w, state);
    /* Give BN affine parameters non-trivial values so their gradients matter. */
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++)
        if (t[i].role == ROLE_BN_WEIGHT || t[i].role == ROLE_BN_BIAS)
            for (size_t j = 0; j < t[i].numel; j++) w[t[i].offset + j] += (float)(0.3 * rng_normal(&r));
    for (int i = 0; i < N * in_dim; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < N; i++) y[i] = (int32_t)rng_below(&r, (uint64_t)cfg.out_dim);
    batch_loss(m, w, state, x, y, g);
    double gn = 0;
    for (size_t i = 0; i < np; i++) gn += (double)g[i] * g[i];
    gn = sqrt(gn);
    T_CHECK(gn > 1e-3, "%s: gradient norm %g is suspiciously small", name, gn);
    /* Directions: random, and one restricted to each tensor (so every layer is checked). */
    for (int dir = -1; dir < nt; dir++) {
        if (dir >= 0 && t[dir].kind != TENSOR_PARAM) continue;
        double vn = 0;
        for (size_t i = 0; i < np; i++) {
            int inside = dir < 0 || (i >= t[dir].offset && i < t[dir].offset + t[dir].numel);
            v[i] = inside ? (float)rng_normal(&r) : 0.0f;
            vn += (double)v[i] * v[i];
        }
        vn = sqrt(vn);
        double gv = 0, gsub = 0;
        for (size_t i = 0; i < np; i++) {
            v[i] = (float)(v[i] / vn);
            gv += (double)g[i] * v[i];
            if (v[i] != 0.0f) gsub += (double)g[i] * g[i];
        }
        gsub = sqrt(gsub);
        double l0 = batch_loss(m, w, state, x, y, NULL);
        uint64_t p0 = model_pattern_hash(m);
        double h = 1e-2, lp = 0, lm = 0;
        int same = 0;
        for (int tries = 0; tries < 7 && !same; tries++, h /= 4) {
            for (size_t i = 0; i < np; i++) wp[i] = w[i] + (float)(h * v[i]);
            lp = batch_loss(m, wp, state, x, y, NULL);
            uint64_t pp = model_pattern_hash(m);
            for (size_t i = 0; i < np; i++) wp[i] = w[i] - (float)(h * v[i]);
            lm = batch_loss(m, wp, state, x, y, NULL);
            same = pp == p0 && model_pattern_hash(m) == p0;
            if (same) break;
        }
        T_CHECK(same, "%s: no smooth piece found along direction %d", name, dir);
        double fd = (lp - lm) / (2 * h);
        char what[128];
        snprintf(what, sizeof what, "%s: direction %s: h %.1e fd %.6g vs g.v %.6g (|g_sub| %.3g)", name,
                 dir < 0 ? "random" : t[dir].name, h, fd, gv, gsub);
        T_CHECK(fabs(fd - gv) <= 1e-3 * fabs(gv) + 1e-3 * gsub + 1e-6 * fabs(l0) / h, "%s", what);
        if (getenv("VERBOSE")) printf("%s err %.3g\n", what, fabs(fd - gv));
    }
    free(w); free(g); free(wp); free(state); free(v); free(x);
    model_free(m);
}

static void check_losses(void)
{
    vl_rng_t r;
    rng_init(&r, 11, rng_stream(RNG_TEST, 2, 0));
    enum { n = 4, C = 5, D = 2 };
    float z[n * 2 * D > n * C ? n * 2 * D : n * C], d[n * C], t[n * D];
    int32_t y[n];
    for (int i = 0; i < n * C; i++) z[i] = (float)(2 * rng_normal(&r));
    for (int i = 0; i < n; i++) y[i] = (int32_t)rng_below(&r, C);
    double total = 10;
    loss_softmax_ce(z, y, n, C, total, d, NULL);
    for (int k = 0; k < n * C; k++) {
        float s = z[k];
        const double h = 1e-3;
        z[k] = s + (float)h; double lp = loss_softmax_ce(z, y, n, C, total, NULL, NULL);
        z[k] = s - (float)h; double lm = loss_softmax_ce(z, y, n, C, total, NULL, NULL);
        z[k] = s;
        double fd = (lp - lm) / (2 * h) / total, h2 = (double)((float)(s + h) - (float)(s - h)) / 2;
        fd *= h / h2;
        T_CLOSE(d[k], fd, 1e-3, 1e-6, "softmax CE dlogit");
    }
    for (int het = 0; het < 2; het++) {
        int w = het ? 2 * D : D;
        for (int i = 0; i < n * w; i++) z[i] = (float)rng_normal(&r);
        for (int i = 0; i < n * D; i++) t[i] = (float)rng_normal(&r);
        loss_gaussian_nll(z, t, n, D, het, 0.3, total, d);
        for (int k = 0; k < n * w; k++) {
            float s = z[k];
            const double h = 1e-3;
            z[k] = s + (float)h; double lp = loss_gaussian_nll(z, t, n, D, het, 0.3, total, NULL);
            z[k] = s - (float)h; double lm = loss_gaussian_nll(z, t, n, D, het, 0.3, total, NULL);
            z[k] = s;
            double fd = (lp - lm) / ((double)((float)(s + h) - (float)(s - h))) / total;
            T_CLOSE(d[k], fd, 1e-3, 1e-6, het ? "heteroscedastic NLL" : "homoscedastic NLL");
        }
    }
    /* Closed forms: uniform logits give log C; Gaussian NLL at the mean. */
    float zero[C] = {0};
    int32_t y0 = 2;
    T_CLOSE(loss_softmax_ce(zero, &y0, 1, C, 1, NULL, NULL), log((double)C), 1e-12, 0, "CE of uniform logits");
    float mu = 1.0f, tt = 1.0f;
    T_CLOSE(loss_gaussian_nll(&mu, &tt, 1, 1, 0, 2.0, 1, NULL), 0.5 * log(2 * 3.14159265358979323846 * 2.0), 1e-12, 0, "NLL at mean");
    T_CLOSE(loss_mse(&mu, &tt, 1, 1, 1, NULL), 0.0, 0, 1e-15, "MSE zero");
}

int main(void)
{
    check_losses();
    vl_model_config_t mlp = {.kind = MODEL_MLP, .widths = {16, 8}, .nwidths = 2, .in_c = 1, .in_h = 5, .in_w = 5, .out_dim = 4};
    check_model("mlp", mlp);
    vl_model_config_t conv = {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 8, .in_w = 8, .out_dim = 5};
    check_model("convnet", conv);
    vl_model_config_t conv3 = {.kind = MODEL_CONVNET, .in_c = 3, .in_h = 6, .in_w = 6, .out_dim = 3};
    check_model("convnet-3ch", conv3);
    vl_model_config_t res = {.kind = MODEL_PRERESNET, .depth = 8, .in_c = 1, .in_h = 8, .in_w = 8, .out_dim = 4};
    check_model("preresnet8", res);
    T_DONE();
}
