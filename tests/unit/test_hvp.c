/* test_hvp.c — Hessian-vector products (hvp.c) and Lanczos (hessian.c) against independent
 * references.
 *
 * 1. PyTorch. For each case (an mlp; the benchmark convnet, BN -> ReLU -> max-pool; preresnet8
 *    with conv biases, stride-2 and 1x1 shortcut convs; resnet8 with BN after every conv, residual
 *    adds, average pool; vgg11 with BN, max-pools and the classifier), batch 16: model_init, BN
 *    scales, shifts AND running statistics made non-trivial, candidate batches x ~ N(0,1) with
 *    random labels, three random directions v; preresnet8 at width 2 on 16x16 inputs puts 32-channel
 *    convs on 16-wide planes, where the products' weight parts run on Winograd (on AVX-512; the runner
 *    repeats this test on the AVX2 and portable paths, direct kernels and im2col). tests/py/hessian_ref.py builds the same network in
 *    float64, evaluation mode, takes the first candidate whose ReLU / max-pool decisions are all
 *    >= 1e-5 from their kink (fp32 rounding moves pre-activations by a few 1e-6; a decision
 *    closer than that could flip between the two; the test fails below 3e-6) and returns H v of
 *    the batch's mean cross-entropy by double backward. Each entry must meet
 *    |a - b| <= 1e-4 max(|b|, rms(b)) (the rule of test_torch.c).
 * 2. Dense Hessians (mlp, resnet8 at width 1/8): valley's H e_p for every p against PyTorch's
 *    dense Hessian, the same rule over the whole matrix. Then Lanczos (lanczos_run, one rank)
 *    against LAPACK's dsyev of PyTorch's matrix: with as many steps as parameters, the five
 *    largest and the smallest Ritz values equal the eigenvalues to 1e-4 ||H||; with 30 steps,
 *    the three largest Ritz values lie within their residual bound (+ 1e-5 ||H|| for the fp32
 *    operator) of an eigenvalue.
 * 3. Quadrature moments. For Rademacher start vectors v (regenerated here from the same stream),
 *    the quadrature's first moment sum w_i theta_i equals v^T H v / P and its second
 *    ||H v||^2 / P, computed from the dense matrix (1e-5 relative): the identities SLQ's density
 *    and Hutchinson's trace rest on. Over 400 such vectors the mean of v^T H v is within 5
 *    standard errors of trace(H) (dsyev's eigenvalues summed) and P times the mean second moment
 *    within 5 of trace(H^2).
 * 4. Finite differences (convnet, preresnet8): H v against (g(w + e v) - g(w - e v)) / 2e of the
 *    model's own fp32 gradient (model_backward), e = 1e-3 for a unit v, on the first candidate
 *    batch whose ReLU / pool decisions (model_pattern_hash) are the same at w - e v, w and w + e v;
 *    to 1e-2 of ||H v|| in the 2-norm (the fp32 gradient's rounding over e).
 */
#include <lapacke.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "valley/hessian.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"
#include "torch_io.h"

enum { BATCH = 16, CANDIDATES = 12, NVEC = 3 };
#define RTOL 1e-4
#define KINK_MIN 3e-6

typedef struct {
    const char *name, *family;
    vl_model_config_t cfg;
    uint64_t seed;
    int dense;
    int batch; /* 0: BATCH */
    int no_fd; /* 1: no finite-difference check (a large network: some decision flips over +- e v) */
} case_t;

static double compare(const char *what, const double *a, const double *b, size_t n) { return compare_rule(what, a, b, n, RTOL); }

typedef struct {
    vl_hvp_t *h;
    const float *w, *st, *x;
    const int32_t *y;
    int n;
} op_ctx_t;

static int batch_op(void *ctx, const float *v, double *hv)
{
    op_ctx_t *o = ctx;
    hvp_add(o->h, o->w, o->st, o->x, o->y, o->n, v, hv, NULL);
    return 0;
}

/* Rademacher vector of lanczos_run's start (seed, stream), unnormalised. */
static void rademacher(uint64_t seed, uint64_t stream, size_t np, double *v)
{
    vl_rng_t r;
    rng_init(&r, seed, stream);
    for (size_t i = 0; i < np; i++) v[i] = (rng_u32(&r) & 1u) ? 1.0 : -1.0;
}

static void check_lanczos(const case_t *c, op_ctx_t *o, const double *H, size_t np)
{
    double *A = malloc(np * np * sizeof(double)), *lam = malloc(np * sizeof(double));
    memcpy(A, H, np * np * sizeof(double));
    for (size_t i = 0; i < np; i++) /* symmetrise PyTorch's rows (equal to rounding) */
        for (size_t j = 0; j < i; j++) A[i * np + j] = A[j * np + i] = 0.5 * (A[i * np + j] + A[j * np + i]);
    const int info = LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (int)np, A, (int)np, lam);
    T_CHECK(info == 0, "%s: dsyev info %d", c->name, info);
    const double hn = fmax(fabs(lam[0]), fabs(lam[np - 1]));
    double tr = 0.0, tr2 = 0.0;
    for (size_t i = 0; i < np; i++) tr += lam[i], tr2 += lam[i] * lam[i];
    /* (a) as many steps as parameters */
    vl_lanczos_t l;
    T_CHECK(lanczos_run(MPI_COMM_SELF, np, batch_op, o, 1.0 / o->n, (int)np, 7, 1, NULL, &l) == 0, "%s: lanczos_run", c->name);
    const int m = l.steps;
    for (int k = 0; k < 5; k++)
        T_CHECK(fabs(l.ritz[m - 1 - k] - lam[np - 1 - k]) <= 1e-4 * hn, "%s: %d-th largest Ritz value %.10g, dsyev %.10g", c->name,
                k + 1, l.ritz[m - 1 - k], lam[np - 1 - k]);
    T_CHECK(fabs(l.ritz[0] - lam[0]) <= 1e-4 * hn, "%s: smallest Ritz value %.10g, dsyev %.10g", c->name, l.ritz[0], lam[0]);
    printf("%s: %d Lanczos steps: largest %.8g (dsyev %.8g), smallest %.8g (dsyev %.8g)\n", c->name, m, l.ritz[m - 1],
           lam[np - 1], l.ritz[0], lam[0]);
    lanczos_free(&l);
    /* (b) 30 steps: the residual bounds hold */
    T_CHECK(lanczos_run(MPI_COMM_SELF, np, batch_op, o, 1.0 / o->n, 30, 7, 2, NULL, &l) == 0, "%s: lanczos_run 30", c->name);
    for (int k = 0; k < 3; k++) {
        const double th = l.ritz[l.steps - 1 - k], b = l.bound[l.steps - 1 - k];
        double dist = INFINITY;
        for (size_t i = 0; i < np; i++) dist = fmin(dist, fabs(th - lam[i]));
        T_CHECK(dist <= b + 1e-5 * hn, "%s: 30 steps: Ritz value %.10g is %.3g from the nearest eigenvalue, bound %.3g", c->name, th,
                dist, b);
        printf("%s: 30 steps: Ritz value %d = %.8g, nearest eigenvalue %.3g away, residual bound %.3g\n", c->name, k + 1, th, dist,
               b);
    }
    lanczos_free(&l);
    /* (c) quadrature moments against the dense matrix, (d) Hutchinson */
    double *v = malloc(np * sizeof(double)), *hv = malloc(np * sizeof(double));
    const int R = 400;
    double s1 = 0.0, s1q = 0.0, s2 = 0.0, s2q = 0.0;
    for (int r = 0; r < R; r++) {
        const int steps = r < 4 ? 20 : 3;
        T_CHECK(lanczos_run(MPI_COMM_SELF, np, batch_op, o, 1.0 / o->n, steps, 9, (uint64_t)r, NULL, &l) == 0, "lanczos");
        rademacher(9, (uint64_t)r, np, v);
        double q = 0.0, q2 = 0.0;
        for (size_t i = 0; i < np; i++) {
            double s = 0.0;
            for (size_t j = 0; j < np; j++) s += H[i * np + j] * v[j];
            hv[i] = s;
            q += v[i] * s;
            q2 += s * s;
        }
        double m1 = 0.0, m2 = 0.0;
        for (int i = 0; i < l.steps; i++) m1 += l.weight[i] * l.ritz[i], m2 += l.weight[i] * l.ritz[i] * l.ritz[i];
        T_CHECK(fabs(m1 * np - q) <= 1e-5 * fmax(fabs(q), hn * np), "%s: probe %d: quadrature first moment x P %.10g, v^T H v %.10g",
                c->name, r, m1 * np, q);
        T_CHECK(fabs(m2 * np - q2) <= 1e-5 * q2, "%s: probe %d: second moment x P %.10g, ||H v||^2 %.10g", c->name, r, m2 * np, q2);
        T_CHECK(fabs(l.quad - q) <= 1e-5 * fmax(fabs(q), hn * np), "%s: probe %d: quad %.10g, v^T H v %.10g", c->name, r, l.quad, q);
        s1 += l.quad, s1q += l.quad * l.quad;
        s2 += m2 * np, s2q += (m2 * np) * (m2 * np);
        lanczos_free(&l);
    }
    const double mean1 = s1 / R, se1 = sqrt((s1q / R - mean1 * mean1) / (R - 1));
    const double mean2 = s2 / R, se2 = sqrt((s2q / R - mean2 * mean2) / (R - 1));
    T_CHECK(fabs(mean1 - tr) <= 5 * se1, "%s: Hutchinson trace %.8g +- %.3g, dsyev trace %.8g", c->name, mean1, se1, tr);
    T_CHECK(fabs(mean2 - tr2) <= 5 * se2, "%s: trace of H^2 %.8g +- %.3g, dsyev %.8g", c->name, mean2, se2, tr2);
    printf("%s: %d probes: trace %.6g +- %.2g (dsyev %.6g), trace H^2 %.6g +- %.2g (dsyev %.6g)\n", c->name, R, mean1, se1, tr, mean2,
           se2, tr2);
    free(v); free(hv); free(A); free(lam);
}

/* H v of the model's fp32 gradient by central differences, on a batch whose decisions hold. */
static void check_fd(const case_t *c, vl_model_t *m, vl_hvp_t *h, const float *w, const float *st, const float *x,
                     const int32_t *y)
{
    const size_t np = model_nparams(m), in = (size_t)model_in_dim(m);
    const int C = c->cfg.out_dim, B = c->batch ? c->batch : BATCH;
    float *v = malloc(np * 4), *wp = malloc(np * 4), *wm = malloc(np * 4), *gp = malloc(np * 4), *gm = malloc(np * 4);
    float *d = malloc((size_t)B * C * 4);
    double *hv = calloc(np, sizeof(double));
    vl_rng_t r;
    rng_init(&r, c->seed, 501);
    double nv = 0.0;
    for (size_t i = 0; i < np; i++) v[i] = (float)rng_normal(&r), nv += (double)v[i] * v[i];
    for (size_t i = 0; i < np; i++) v[i] = (float)(v[i] / sqrt(nv));
    const double e = 1e-3;
    for (size_t i = 0; i < np; i++) wp[i] = (float)(w[i] + e * v[i]), wm[i] = (float)(w[i] - e * v[i]);
    int chosen = -1;
    for (int b = 0; b < CANDIDATES && chosen < 0; b++) {
        const float *xb = x + (size_t)b * B * in;
        model_forward(m, w, (float *)st, xb, B, MODE_EVAL);
        const uint64_t h0 = model_pattern_hash(m);
        model_forward(m, wp, (float *)st, xb, B, MODE_EVAL);
        const uint64_t h1 = model_pattern_hash(m);
        model_forward(m, wm, (float *)st, xb, B, MODE_EVAL);
        if (h0 == h1 && h0 == model_pattern_hash(m)) chosen = b;
    }
    T_CHECK(chosen >= 0, "%s: no candidate batch keeps its ReLU / pool decisions over w +- %g v", c->name, e);
    if (chosen >= 0) {
        const float *xb = x + (size_t)chosen * B * in;
        const int32_t *yb = y + (size_t)chosen * B;
        const float *o = model_forward(m, wp, (float *)st, xb, B, MODE_EVAL);
        loss_softmax_ce(o, yb, B, C, B, d, NULL);
        model_backward(m, wp, d, gp);
        o = model_forward(m, wm, (float *)st, xb, B, MODE_EVAL);
        loss_softmax_ce(o, yb, B, C, B, d, NULL);
        model_backward(m, wm, d, gm);
        hvp_add(h, w, st, xb, yb, B, v, hv, NULL);
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < np; i++) {
            const double fd = ((double)gp[i] - gm[i]) / (2 * e), a = hv[i] / B;
            num += (fd - a) * (fd - a);
            den += a * a;
        }
        T_CHECK(sqrt(num) <= 1e-2 * sqrt(den), "%s: finite differences: ||fd - Hv|| = %.3g of ||Hv|| = %.3g", c->name, sqrt(num),
                sqrt(den));
        printf("%s: finite differences (batch %d, e = %g): ||fd - Hv|| / ||Hv|| = %.2g\n", c->name, chosen, e, sqrt(num / den));
    }
    free(v); free(wp); free(wm); free(gp); free(gm); free(d); free(hv);
}

static void check_case(const case_t *c)
{
    const char *root = getenv("VALLEY_TEST_TMP");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hvp_%s", root && *root ? root : "/tmp", c->name);
    mkdir(dir, 0755);
    vl_model_t *m;
    const int B = c->batch ? c->batch : BATCH;
    const int created = model_create(&c->cfg, B, &m) == 0;
    T_CHECK(created, "%s: model_create", c->name);
    if (!created) return;
    vl_hvp_t *h = NULL;
    T_CHECK(hvp_create(m, B, &h) == 0, "%s: hvp_create", c->name);
    const size_t np = model_nparams(m), ns = model_nstate(m), in = (size_t)model_in_dim(m);
    const int C = c->cfg.out_dim;
    float *w = malloc(np * 4), *st = calloc(ns + 1, 4), *v = malloc((size_t)NVEC * np * 4);
    float *x = malloc((size_t)CANDIDATES * B * in * 4);
    int32_t *y = malloc((size_t)CANDIDATES * B * 4);
    model_init(m, c->seed, w, st);
    vl_rng_t r;
    rng_init(&r, c->seed, 77);
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++) { /* BN scales, shifts and running statistics away from 1 and 0 */
        const int bnp = t[i].kind == TENSOR_PARAM && t[i].ndim == 1 && strstr(t[i].name, "bn");
        for (size_t k = 0; k < t[i].numel; k++) {
            if (bnp) w[t[i].offset + k] = (float)(strstr(t[i].name, "weight") ? 1.0 + 0.3 * rng_normal(&r) : 0.3 * rng_normal(&r));
            if (t[i].kind != TENSOR_PARAM && strstr(t[i].name, "running_mean")) st[t[i].offset + k] = (float)(0.3 * rng_normal(&r));
            if (t[i].kind != TENSOR_PARAM && strstr(t[i].name, "running_var")) st[t[i].offset + k] = (float)(0.5 + rng_uniform(&r));
        }
    }
    for (size_t i = 0; i < (size_t)CANDIDATES * B * in; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < CANDIDATES * B; i++) y[i] = (int32_t)rng_below(&r, (uint64_t)C);
    for (size_t i = 0; i < (size_t)NVEC * np; i++) v[i] = (float)rng_normal(&r);
    int bad = write_case(dir, m, w, st, x, (size_t)CANDIDATES * B * in, y, (size_t)CANDIDATES * B) ||
              write_file(dir, "v.f32", v, (size_t)NVEC * np * 4);
    T_CHECK(!bad, "%s: cannot write the case files in %s", c->name, dir);
    char extra[64];
    snprintf(extra, sizeof extra, "--vectors %d%s", NVEC, c->dense ? " --dense" : "");
    int chosen = -1;
    double margin = 0.0;
    if (!bad) run_reference("hessian_ref.py", dir, c->family, &c->cfg, B, CANDIDATES, extra, &chosen, &margin);
    T_CHECK(margin >= KINK_MIN, "%s: kink margin %.3g of the best candidate below %.1g", c->name, margin, KINK_MIN);
    if (chosen >= 0 && chosen < CANDIDATES && margin >= KINK_MIN && h) {
        const float *xb = x + (size_t)chosen * B * in;
        const int32_t *yb = y + (size_t)chosen * B;
        double *ref = malloc((size_t)NVEC * np * sizeof(double)), *hv = calloc((size_t)NVEC * np, sizeof(double));
        T_CHECK(read_file(dir, "hv.f64", ref, (size_t)NVEC * np * sizeof(double)) == 0, "%s: hv.f64", c->name);
        for (int k = 0; k < NVEC; k++) {
            hvp_add(h, w, st, xb, yb, B, v + (size_t)k * np, hv + (size_t)k * np, NULL);
            for (size_t i = 0; i < np; i++) hv[(size_t)k * np + i] /= B;
            char what[128];
            snprintf(what, sizeof what, "%s: H v_%d (%zu parameters)", c->name, k, np);
            compare(what, hv + (size_t)k * np, ref + (size_t)k * np, np);
        }
        printf("%s: H v of %d vectors match PyTorch (%zu parameters, batch %d, kink margin %.2g)\n", c->name, NVEC, np, chosen,
               margin);
        if (c->dense) {
            double *H = malloc(np * np * sizeof(double)), *Hv = calloc(np * np, sizeof(double));
            float *e = calloc(np, sizeof(float));
            T_CHECK(read_file(dir, "hess.f64", H, np * np * sizeof(double)) == 0, "%s: hess.f64", c->name);
            for (size_t p = 0; p < np; p++) {
                e[p] = 1.0f;
                hvp_add(h, w, st, xb, yb, B, e, Hv + p * np, NULL);
                e[p] = 0.0f;
            }
            for (size_t i = 0; i < np * np; i++) Hv[i] /= B;
            char what[128];
            snprintf(what, sizeof what, "%s: dense Hessian (%zu x %zu)", c->name, np, np);
            compare(what, Hv, H, np * np);
            printf("%s: the dense %zu x %zu Hessian matches PyTorch's\n", c->name, np, np);
            op_ctx_t o = {h, w, st, xb, yb, B};
            check_lanczos(c, &o, H, np);
            free(H); free(Hv); free(e);
        }
        free(ref); free(hv);
    }
    if (!c->dense && !c->no_fd && h) check_fd(c, m, h, w, st, x, y);
    hvp_free(h);
    free(w); free(st); free(v); free(x); free(y);
    model_free(m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const case_t cases[] = {
        {"mlp", "mlp", {.kind = MODEL_MLP, .widths = {12, 8}, .nwidths = 2, .in_c = 1, .in_h = 6, .in_w = 6, .out_dim = 5}, 3, 1, 0, 0},
        {"resnet8", "resnet", {.kind = MODEL_RESNET, .depth = 8, .shortcuts = 1, .width_factor = 0.125, .in_c = 3, .in_h = 8,
                               .in_w = 8, .out_dim = 10}, 6, 1, 0, 0},
        {"convnet", "convnet", {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 12, .in_w = 12, .out_dim = 10}, 4, 0, 0, 0},
        {"preresnet8", "preresnet", {.kind = MODEL_PRERESNET, .depth = 8, .width_factor = 0.5, .in_c = 1, .in_h = 8, .in_w = 8,
                                     .out_dim = 10}, 5, 0, 0, 0},
        {"preresnet8w2", "preresnet", {.kind = MODEL_PRERESNET, .depth = 8, .width_factor = 2, .in_c = 1, .in_h = 16,
                                       .in_w = 16, .out_dim = 10}, 7, 0, 4, 1},
        {"vgg11", "vgg", {.kind = MODEL_VGG, .depth = 11, .bn = 1, .width_factor = 0.125, .in_c = 3, .in_h = 32, .in_w = 32,
                          .out_dim = 10}, 8, 0, 0, 0},
    };
    const char *only = getenv("HVP_CASE");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || !strcmp(only, cases[i].name)) check_case(&cases[i]);
    MPI_Finalize();
    T_DONE();
}
