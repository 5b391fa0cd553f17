/* test_dropout.c — the dropout layer (graph_dropout, model_dropout_key) against its definition,
 * PyTorch's nn.Dropout: in a training forward with keys each element is zeroed with
 * probability p and the others scaled by exactly (float)(1/(1-p)); evaluation forwards and
 * forwards without keys pass the input on; a sample's mask depends on (seed, pass, the sample's
 * index) only, not on its place in the batch (so not on the rank that holds it); MC dropout
 * drops in evaluation; the backward multiplies by the same mask (central differences of a
 * loss that is linear in the first layer's weights, so exact up to rounding); the families
 * place it as the reference models do, and model_graph_text / graphdesc keep it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/graphdesc.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"

enum { F = 2000, NB = 50 };

/* input dense (F) -> dropout p -> linear F x F (identity weights, zero bias): out = drop(x) */
static vl_model_t *identity_net(double p, float **w)
{
    char desc[128];
    snprintf(desc, sizeof desc, "input dense\ndropout 0 %.17g\nlinear fc 1 %d\n", p, F);
    vl_model_config_t cfg = {.kind = MODEL_GRAPH, .graph = graphdesc_intern(desc), .width_factor = 1, .in_c = F,
                             .in_h = 1, .in_w = 1, .out_dim = F};
    vl_model_t *m = NULL;
    if (model_create(&cfg, NB, &m) != VL_OK) {
        fprintf(stderr, "model_create: %s\n", vl_error_message());
        return NULL;
    }
    *w = calloc(model_nparams(m), sizeof(float));
    for (int i = 0; i < F; i++) (*w)[(size_t)i * F + i] = 1.0f;
    return m;
}

static void test_law(void)
{
    const double p = 0.3;
    float *w;
    vl_model_t *m = identity_net(p, &w);
    T_CHECK(m != NULL, "model");
    if (!m) return;
    float *x = malloc(sizeof(float) * NB * F), *first = malloc(sizeof(float) * NB * F);
    for (int i = 0; i < NB * F; i++) x[i] = 0.5f + (float)(i % 17) * 0.25f;
    int64_t ids[NB];
    for (int b = 0; b < NB; b++) ids[b] = 1000 + 3 * b;
    model_dropout_key(m, 7, 0, ids);
    const float *out = model_forward(m, w, NULL, x, NB, MODE_TRAIN);
    const float scale = (float)(1.0 / (1.0 - p));
    long zeros = 0, bad = 0;
    for (int i = 0; i < NB * F; i++) {
        if (out[i] == 0.0f) zeros++;
        else if (out[i] != x[i] * scale) bad++;
    }
    const double frac = (double)zeros / (NB * F), sd = sqrt(p * (1 - p) / (NB * F));
    printf("dropout p = %.2f over %d elements: zero fraction %.4f (5 sigma = %.4f), %ld survivors not x/(1-p)\n", p,
           NB * F, frac, 5 * sd, bad);
    T_CHECK(fabs(frac - p) <= 5 * sd, "zero fraction %.5f, want %.2f +- %.5f", frac, p, 5 * sd);
    T_CHECK(bad == 0, "%ld survivors differ from x * (float)(1/(1-p))", bad);
    memcpy(first, out, sizeof(float) * NB * F);
    /* the same sample at another place of another batch (another rank's batch): the same mask */
    int64_t ids2[3] = {ids[9], 5, ids[0]};
    float x2[3 * F];
    memcpy(x2, x + 9 * F, sizeof(float) * F);
    memcpy(x2 + F, x + 4 * F, sizeof(float) * F);
    memcpy(x2 + 2 * F, x, sizeof(float) * F);
    model_dropout_key(m, 7, 0, ids2);
    out = model_forward(m, w, NULL, x2, 3, MODE_TRAIN);
    T_CHECK(!memcmp(out, first + 9 * F, sizeof(float) * F), "sample 1009's mask depends on its place in the batch");
    T_CHECK(!memcmp(out + 2 * F, first, sizeof(float) * F), "sample 1000's mask depends on its place in the batch");
    /* another pass, another seed: other masks */
    model_dropout_key(m, 7, 1, ids);
    out = model_forward(m, w, NULL, x, NB, MODE_TRAIN);
    T_CHECK(memcmp(out, first, sizeof(float) * NB * F), "pass 1 repeats pass 0's masks");
    model_dropout_key(m, 8, 0, ids);
    out = model_forward(m, w, NULL, x, NB, MODE_TRAIN);
    T_CHECK(memcmp(out, first, sizeof(float) * NB * F), "seed 8 repeats seed 7's masks");
    /* no keys, or evaluation: the identity */
    out = model_forward(m, w, NULL, x, NB, MODE_TRAIN);
    T_CHECK(!memcmp(out, x, sizeof(float) * NB * F), "a training forward without keys dropped");
    model_dropout_key(m, 7, 0, ids);
    out = model_forward(m, w, NULL, x, NB, MODE_EVAL);
    T_CHECK(!memcmp(out, x, sizeof(float) * NB * F), "an evaluation forward dropped");
    /* MC dropout: evaluation drops like training */
    model_set_mc_dropout(m, 1);
    model_dropout_key(m, 7, 0, ids);
    out = model_forward(m, w, NULL, x, NB, MODE_EVAL);
    T_CHECK(!memcmp(out, first, sizeof(float) * NB * F), "MC dropout's evaluation masks differ from training's");
    free(x);
    free(first);
    free(w);
    model_free(m);
}

/* L = sum r .* fc2(drop(fc1 x)): linear in fc1's weights; its central difference along fc1 must
 * equal the backward's gradient with the same masks (the same keys on every forward). */
static void test_backward(void)
{
    const int H = 40, K = 7, N = 6, D = 30;
    char desc[160];
    snprintf(desc, sizeof desc, "input dense\nlinear fc1 0 %d\ndropout 1 0.4\nlinear fc2 2 %d\n", H, K);
    vl_model_config_t cfg = {.kind = MODEL_GRAPH, .graph = graphdesc_intern(desc), .width_factor = 1, .in_c = D,
                             .in_h = 1, .in_w = 1, .out_dim = K};
    vl_model_t *m = NULL;
    T_CHECK(model_create(&cfg, N, &m) == VL_OK, "model: %s", vl_error_message());
    if (!m) return;
    const size_t np = model_nparams(m);
    float *w = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float)), *wp = malloc(np * sizeof(float));
    float x[6 * 30], r[6 * 7];
    vl_rng_t rg;
    rng_init(&rg, 3, rng_stream(RNG_TEST, 1, 0));
    for (size_t i = 0; i < np; i++) w[i] = (float)(0.3 * rng_normal(&rg));
    for (int i = 0; i < N * D; i++) x[i] = (float)rng_normal(&rg);
    for (int i = 0; i < N * K; i++) r[i] = (float)rng_normal(&rg);
    const int64_t ids[6] = {4, 8, 15, 16, 23, 42};
    model_dropout_key(m, 11, 5, ids);
    model_forward(m, w, NULL, x, N, MODE_TRAIN);
    model_backward(m, w, r, g);
    double worst = 0, gmax = 0;
    for (int t = 0; t < 40; t++) {
        const size_t k = (size_t)(rng_below(&rg, (uint64_t)H * D)); /* an fc1 weight */
        const float h = 1e-2f;
        double L[2];
        for (int s = 0; s < 2; s++) {
            memcpy(wp, w, np * sizeof(float));
            wp[k] += s ? -h : h;
            model_dropout_key(m, 11, 5, ids);
            const float *o = model_forward(m, wp, NULL, x, N, MODE_TRAIN);
            double sum = 0;
            for (int i = 0; i < N * K; i++) sum += (double)o[i] * r[i];
            L[s] = sum;
        }
        const double fd = (L[0] - L[1]) / (2 * h);
        worst = fmax(worst, fabs(fd - g[k]));
        gmax = fmax(gmax, fabs(g[k]));
    }
    printf("dropout backward: 40 fc1 weights, max |central difference - gradient| %.2e (max |gradient| %.2e)\n", worst, gmax);
    T_CHECK(gmax > 1e-3 && worst <= 1e-3 * gmax + 1e-4, "gradient through dropout: %.3e off (scale %.3e)", worst, gmax);
    free(w);
    free(g);
    free(wp);
    model_free(m);
}

/* The families: mlp after each hidden layer, vgg before the classifier's hidden layers; the
 * description keeps the layer and its probability; other families and bad p are refused. */
static void test_families(void)
{
    vl_model_config_t mlp = {.kind = MODEL_MLP, .widths = {32, 16}, .nwidths = 2, .width_factor = 1, .in_c = 1,
                             .in_h = 28, .in_w = 28, .out_dim = 10, .dropout = 0.25};
    vl_model_t *m = NULL;
    T_CHECK(model_create(&mlp, 4, &m) == VL_OK, "mlp: %s", vl_error_message());
    char *t = m ? model_graph_text(m) : NULL;
    T_CHECK(t && !strcmp(t, "input dense\nlinear fc1 0 32\nrelu 1\ndropout 2 0.25\nlinear fc2 3 16\nrelu 4\n"
                            "dropout 5 0.25\nlinear fc3 6 10\n"), "mlp description:\n%s", t ? t : "(none)");
    free(t);
    model_free(m);
    vl_model_config_t vgg = {.kind = MODEL_VGG, .depth = 11, .width_factor = 0.125, .bn = 1, .shortcuts = 1, .in_c = 1,
                             .in_h = 28, .in_w = 28, .out_dim = 10, .dropout = 0.5};
    m = NULL;
    T_CHECK(model_create(&vgg, 4, &m) == VL_OK, "vgg: %s", vl_error_message());
    t = m ? model_graph_text(m) : NULL;
    const char *cls = t ? strstr(t, "flatten") : NULL;
    T_CHECK(cls && strstr(cls, "dropout") && strstr(strstr(cls, "dropout") + 1, "linear classifier_1") &&
                strstr(strstr(cls, "linear classifier_1"), "dropout") &&
                strstr(strstr(strstr(cls, "linear classifier_1"), "dropout"), "linear classifier_4"),
            "vgg classifier:\n%s", cls ? cls : "(none)");
    free(t);
    model_free(m);
    vl_model_config_t res = {.kind = MODEL_RESNET, .depth = 8, .width_factor = 0.25, .shortcuts = 1, .bn = 1, .in_c = 1,
                             .in_h = 28, .in_w = 28, .out_dim = 10, .dropout = 0.2};
    m = NULL;
    vl_error_clear();
    T_CHECK(model_create(&res, 4, &m) == VL_EINPUT && strstr(vl_error_message(), "model.dropout"),
            "resnet with dropout: %s", vl_error_message());
    model_free(m);
    mlp.dropout = 1.0;
    m = NULL;
    vl_error_clear();
    T_CHECK(model_create(&mlp, 4, &m) == VL_EINPUT && strstr(vl_error_message(), "model.dropout"), "p = 1: %s",
            vl_error_message());
    model_free(m);
    vl_error_clear();
}

int main(void)
{
    test_law();
    test_backward();
    test_families();
    T_DONE();
}
