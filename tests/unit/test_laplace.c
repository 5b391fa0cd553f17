/* test_laplace.c — K-FAC factors (model_kfac_set) against PyTorch, and the KFAC-Laplace draws
 * (laplace.h) against the covariance they must have.
 *
 * 1. Factors. For each case (an mlp with biases; the benchmark convnet, whose first conv is the
 *    recomputed one model_kfac_set turns back into a stored one; preresnet8 with conv biases,
 *    stride-2 and 1x1 shortcut convs; resnet8 without conv biases), batch 16: model_init, BN
 *    affine parameters made non-trivial, candidate batches x ~ N(0,1) with random labels. Written
 *    to $VALLEY_TEST_TMP/kfac_<case>/ as test_torch.c does; tests/py/kfac_ref.py builds the
 *    same network in PyTorch, takes the first candidate whose ReLU / max-pool decisions are all
 *    >= 1e-5 from their kink in float64 (fp32 rounding moves pre-activations by a few 1e-6: a
 *    decision closer than that could flip between the two and change a gradient outright;
 *    this test fails if the chosen margin is below 3e-6), and computes every conv and linear
 *    layer's A = sum a a^T and G = sum g g^T in float64 from hooks on the modules (F.unfold of
 *    the input, the output gradient of the summed cross-entropy). Here the same batch goes
 *    through a train-mode forward and a backward with the per-sample loss gradients and the
 *    sinks set. Each factor must meet |a - b| <= 1e-4 max(|b|, rms(b)) entry by entry (the rule
 *    of test_torch.c). The parameter gradient with the sinks set must equal the one without
 *    them to 1e-5 relative (the hook must not disturb the backward; the convnet's first conv
 *    then takes the stored route instead of the recomputed one, so not bit for bit).
 * 2. Draws. A one-layer linear model (2 inputs + bias, 3 outputs) with random SPD factors,
 *    N = 50, tau = 2, scale 0.7: 200 000 draws of laplace_sample; their covariance must match
 *    scale^2 (P_G^{-1} kron P_A^{-1}) (inverses by LAPACK's dgesv of the explicit damped
 *    factors, an independent route) within 5 standard errors per entry; their mean within 5
 *    standard errors of the point estimate; a draw is reproducible from its stream.
 */
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "valley/laplace.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"
#include "torch_io.h"

enum { BATCH = 16, CANDIDATES = 12 };
#define RTOL 1e-4
#define KINK_MIN 3e-6

typedef struct {
    const char *name, *family;
    vl_model_config_t cfg;
    uint64_t seed;
} case_t;

static int read_doubles(const char *dir, const char *name, double *p, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno)); return -1; }
    size_t got = fread(p, sizeof(double), n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) { fprintf(stderr, "%s: expected %zu doubles\n", path, n); return -1; }
    return 0;
}

static double compare(const char *what, const double *a, const double *b, size_t n) { return compare_rule(what, a, b, n, RTOL); }

static void check_case(const case_t *c)
{
    const char *root = getenv("VALLEY_TEST_TMP");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/kfac_%s", root && *root ? root : "/tmp", c->name);
    mkdir(dir, 0755);
    vl_model_t *m;
    const int created = model_create(&c->cfg, BATCH, &m) == 0;
    T_CHECK(created, "%s: model_create", c->name);
    if (!created) return;
    const size_t np = model_nparams(m), ns = model_nstate(m), in = (size_t)model_in_dim(m);
    const int C = c->cfg.out_dim;
    float *w = malloc(np * 4), *g0 = malloc(np * 4), *g1 = malloc(np * 4), *st = calloc(ns + 1, 4),
          *st1 = calloc(ns + 1, 4);
    float *x = malloc((size_t)CANDIDATES * BATCH * in * 4), *d = malloc((size_t)BATCH * C * 4);
    int32_t *y = malloc((size_t)CANDIDATES * BATCH * 4);
    model_init(m, c->seed, w, st);
    vl_rng_t r;
    rng_init(&r, c->seed, 77);
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++) /* BN scales and shifts away from 1 and 0 */
        if (t[i].kind == TENSOR_PARAM && t[i].ndim == 1 && strstr(t[i].name, "bn"))
            for (size_t k = 0; k < t[i].numel; k++)
                w[t[i].offset + k] = (float)(strstr(t[i].name, "weight") ? 1.0 + 0.3 * rng_normal(&r) : 0.3 * rng_normal(&r));
    for (size_t i = 0; i < (size_t)CANDIDATES * BATCH * in; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < CANDIDATES * BATCH; i++) y[i] = (int32_t)rng_below(&r, (uint64_t)C);
    const int bad = write_case(dir, m, w, st, x, (size_t)CANDIDATES * BATCH * in, y, (size_t)CANDIDATES * BATCH);
    T_CHECK(!bad, "%s: cannot write the case files in %s", c->name, dir);
    int chosen = -1;
    double margin = 0.0;
    if (!bad) run_reference("kfac_ref.py", dir, c->family, &c->cfg, BATCH, CANDIDATES, "", &chosen, &margin);
    T_CHECK(margin >= KINK_MIN, "%s: kink margin %.3g of the best candidate below %.1g", c->name, margin, KINK_MIN);
    if (chosen >= 0 && chosen < CANDIDATES && margin >= KINK_MIN) {
        const float *xb = x + (size_t)chosen * BATCH * in;
        const int32_t *yb = y + (size_t)chosen * BATCH;
        /* with the sinks first, on a model that has run no pass yet (a fused BN must not lean on
         * what an earlier pass of the recomputing route left behind), then without them */
        const int nl = model_kfac_layers(m, NULL, 0);
        vl_kfac_layer_t *lay = calloc((size_t)nl, sizeof *lay);
        double **A = calloc((size_t)nl, sizeof *A), **G = calloc((size_t)nl, sizeof *G);
        model_kfac_layers(m, lay, nl);
        for (int l = 0; l < nl; l++) {
            A[l] = calloc((size_t)lay[l].dim_a * lay[l].dim_a, sizeof(double));
            G[l] = calloc((size_t)lay[l].dim_g * lay[l].dim_g, sizeof(double));
        }
        T_CHECK(model_kfac_set(m, A, G) == 0, "%s: model_kfac_set", c->name);
        memcpy(st1, st, ns * 4);
        const float *o = model_forward(m, w, st1, xb, BATCH, MODE_TRAIN);
        loss_softmax_ce(o, yb, BATCH, C, 1.0, d, NULL);
        model_backward(m, w, d, g1);
        model_kfac_set(m, NULL, NULL);
        memcpy(st1, st, ns * 4);
        o = model_forward(m, w, st1, xb, BATCH, MODE_TRAIN);
        loss_softmax_ce(o, yb, BATCH, C, 1.0, d, NULL);
        model_backward(m, w, d, g0);
        double gmax = 0.0, gerr = 0.0;
        for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g0[i])), gerr = fmax(gerr, fabs(g0[i] - g1[i]));
        T_CHECK(gerr <= 1e-5 * gmax, "%s: the gradient with the K-FAC sinks differs by %.3g (max %.3g)", c->name, gerr, gmax);
        int matched = 0;
        for (int l = 0; l < nl; l++) {
            const char *name = NULL;
            for (int i = 0; i < nt; i++)
                if (t[i].kind == TENSOR_PARAM && t[i].offset == lay[l].w_off) name = t[i].name;
            T_CHECK(name != NULL, "%s: layer %d: no tensor at offset %zu", c->name, l, lay[l].w_off);
            if (!name) continue;
            const size_t na = (size_t)lay[l].dim_a * lay[l].dim_a, ng = (size_t)lay[l].dim_g * lay[l].dim_g;
            double *ta = malloc(na * sizeof(double)), *tg = malloc(ng * sizeof(double));
            char fa[128], fg[128], what[256];
            snprintf(fa, sizeof fa, "A_%s.f64", name);
            snprintf(fg, sizeof fg, "G_%s.f64", name);
            if (read_doubles(dir, fa, ta, na) == 0 && read_doubles(dir, fg, tg, ng) == 0) {
                snprintf(what, sizeof what, "%s: A of %s (%d x %d)", c->name, name, lay[l].dim_a, lay[l].dim_a);
                compare(what, A[l], ta, na);
                snprintf(what, sizeof what, "%s: G of %s (%d x %d)", c->name, name, lay[l].dim_g, lay[l].dim_g);
                compare(what, G[l], tg, ng);
                matched++;
            } else {
                T_CHECK(0, "%s: torch's factors of %s (%d x %d, %d x %d) unreadable", c->name, name, lay[l].dim_a,
                        lay[l].dim_a, lay[l].dim_g, lay[l].dim_g);
            }
            free(ta);
            free(tg);
        }
        printf("%s: %d layers' factors match PyTorch (batch %d, kink margin %.2g)\n", c->name, matched, chosen, margin);
        for (int l = 0; l < nl; l++) free(A[l]), free(G[l]);
        free(A); free(G); free(lay);
    }
    free(w); free(g0); free(g1); free(st); free(st1); free(x); free(d); free(y);
    model_free(m);
}

/* Inverse of the SPD matrix M (d x d) by dgesv against the identity. */
static void inverse(const double *M, int d, double *inv)
{
    double *a = malloc((size_t)d * d * sizeof(double));
    int *piv = malloc((size_t)d * sizeof(int));
    memcpy(a, M, (size_t)d * d * sizeof(double));
    for (int i = 0; i < d * d; i++) inv[i] = (i / d == i % d);
    T_CHECK(LAPACKE_dgesv(LAPACK_ROW_MAJOR, d, d, a, d, piv, inv, d) == 0, "dgesv");
    free(a);
    free(piv);
}

static void check_draws(void)
{
    vl_model_config_t cfg = {.kind = MODEL_MLP, .nwidths = 0, .in_c = 1, .in_h = 1, .in_w = 2, .out_dim = 3};
    vl_model_t *m;
    const int created = model_create(&cfg, 4, &m) == 0;
    T_CHECK(created, "linear model");
    if (!created) return;
    vl_laplace_t lp;
    const int init = laplace_init(&lp, m) == 0;
    T_CHECK(init, "laplace_init");
    if (!init) { model_free(m); return; }
    T_CHECK(lp.nl == 1 && lp.lay[0].dim_a == 3 && lp.lay[0].dim_g == 3 && lp.lay[0].has_bias, "one layer 3 x (2 + 1): %d", lp.nl);
    const int dg = 3;
    vl_rng_t r;
    rng_init(&r, 5, 1);
    /* SPD factors B B^T / 3 + 0.1 I */
    double *F[2] = {lp.A[0], lp.G[0]};
    for (int k = 0; k < 2; k++) {
        double B[9];
        for (int i = 0; i < 9; i++) B[i] = rng_normal(&r);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0.0;
                for (int q = 0; q < 3; q++) s += B[i * 3 + q] * B[j * 3 + q];
                F[k][i * 3 + j] = s / 3 + (i == j ? 0.1 : 0.0);
            }
    }
    lp.n = 50;
    const double tau = 2.0, scale = 0.7;
    T_CHECK(laplace_prepare(&lp, tau) == 0, "laplace_prepare");
    /* the expected covariance of (W row-major, then bias) ... as entries (o, i) of the 3 x 3 deviation */
    double PA[9], PG[9], iA[9], iG[9];
    for (int i = 0; i < 9; i++) {
        PA[i] = sqrt(lp.n) * lp.A[0][i] + (i / 3 == i % 3 ? sqrt(tau) : 0.0);
        PG[i] = sqrt(lp.n) * lp.G[0][i] + (i / 3 == i % 3 ? sqrt(tau) : 0.0);
    }
    inverse(PA, 3, iA);
    inverse(PG, 3, iG);
    const size_t np = model_nparams(m);
    float *mean = malloc(np * 4), *w = malloc(np * 4), *w2 = malloc(np * 4);
    for (size_t i = 0; i < np; i++) mean[i] = (float)(0.5 * i - 1.0);
    const vl_kfac_layer_t *L = &lp.lay[0];
    const int S = 200000;
    double sum[9] = {0}, sum2[81] = {0};
    for (int s = 0; s < S; s++) {
        vl_rng_t rs;
        rng_init(&rs, 11, rng_stream(RNG_SAMPLE, 99, (uint64_t)s));
        laplace_sample(&lp, mean, np, scale, &rs, w);
        double dv[9];
        for (int o = 0; o < dg; o++) {
            for (int i = 0; i < 2; i++) dv[o * 3 + i] = (double)w[L->w_off + o * 2 + i] - mean[L->w_off + o * 2 + i];
            dv[o * 3 + 2] = (double)w[L->b_off + o] - mean[L->b_off + o];
        }
        for (int p = 0; p < 9; p++) {
            sum[p] += dv[p];
            for (int q = 0; q < 9; q++) sum2[p * 9 + q] += dv[p] * dv[q];
        }
    }
    int worst_p = 0, worst_q = 0;
    double worst = 0.0;
    for (int p = 0; p < 9; p++)
        for (int q = 0; q < 9; q++) {
            const int o1 = p / 3, i1 = p % 3, o2 = q / 3, i2 = q % 3;
            const double want = scale * scale * iG[o1 * 3 + o2] * iA[i1 * 3 + i2];
            const double vp = scale * scale * iG[o1 * 3 + o1] * iA[i1 * 3 + i1], vq = scale * scale * iG[o2 * 3 + o2] * iA[i2 * 3 + i2];
            const double se = sqrt((vp * vq + want * want) / S);
            const double got = sum2[p * 9 + q] / S - (sum[p] / S) * (sum[q] / S);
            if (fabs(got - want) / se > worst) worst = fabs(got - want) / se, worst_p = p, worst_q = q;
        }
    T_CHECK(worst <= 5.0, "draw covariance entry (%d, %d) is %.2f standard errors from scale^2 (P_G^-1 kron P_A^-1)", worst_p,
            worst_q, worst);
    printf("draws: covariance of %d draws within %.2f standard errors of the Kronecker inverse (9 x 9 entries)\n", S, worst);
    for (int p = 0; p < 9; p++) {
        const int o = p / 3, i = p % 3;
        const double se = sqrt(scale * scale * iG[o * 3 + o] * iA[i * 3 + i] / S);
        T_CHECK(fabs(sum[p] / S) <= 5 * se, "draw mean of entry %d is %.3g (%.1f standard errors)", p, sum[p] / S, fabs(sum[p] / S) / se);
    }
    vl_rng_t r1, r2;
    rng_init(&r1, 11, rng_stream(RNG_SAMPLE, 99, 3));
    rng_init(&r2, 11, rng_stream(RNG_SAMPLE, 99, 3));
    laplace_sample(&lp, mean, np, scale, &r1, w);
    laplace_sample(&lp, mean, np, scale, &r2, w2);
    T_CHECK(memcmp(w, w2, np * 4) == 0, "a draw is reproducible from its stream");
    T_CHECK(laplace_prepare(&lp, 0.0) != 0, "tau = 0 is refused");
    free(mean); free(w); free(w2);
    laplace_free(&lp);
    model_free(m);
}

int main(void)
{
    const case_t cases[] = {
        {"mlp", "mlp", {.kind = MODEL_MLP, .widths = {12, 8}, .nwidths = 2, .in_c = 1, .in_h = 6, .in_w = 6, .out_dim = 5}, 3},
        {"convnet", "convnet", {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 12, .in_w = 12, .out_dim = 10}, 4},
        {"preresnet8", "preresnet", {.kind = MODEL_PRERESNET, .depth = 8, .width_factor = 0.5, .in_c = 1, .in_h = 8, .in_w = 8,
                                     .out_dim = 10}, 5},
        {"resnet8", "resnet", {.kind = MODEL_RESNET, .depth = 8, .shortcuts = 1, .width_factor = 0.5, .in_c = 3, .in_h = 8,
                               .in_w = 8, .out_dim = 10}, 6},
    };
    const char *only = getenv("KFAC_CASE");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || !strcmp(only, cases[i].name)) check_case(&cases[i]);
    check_draws();
    T_DONE();
}
