/* test_torch.c — valley's networks against PyTorch (tests/py/torch_ref.py).
 *
 * Cases: mlp 1x12x12-32-16-10; the benchmark convnet on 1x28x28; preresnet8 on
 * 1x12x12; preresnet20 on 1x8x8; the families of families.c at small widths
 * (model.width_factor): resnet8 with and without shortcuts and resnet20, the
 * bottleneck preresnet47, vgg11 with and without BN (3x16x16), vgg16 with BN
 * (3x8x8: its last two pools left out), wideresnet16-2; a heteroscedastic-Gaussian
 * mlp 1x1x3-32-16-2.
 * Batch 16. For each this test
 *   1. builds the model, model_init(seed), gives the BN affine parameters
 *      non-trivial values (1 + 0.3 N(0,1) and 0.3 N(0,1): at 1 and 0 a layer
 *      that ignored them would pass), draws STEPS x CANDIDATES minibatches
 *      x ~ N(0,1) with random labels (or N(0,1) targets), and a random BN state
 *      for the eval-mode check;
 *   2. writes them to $VALLEY_TEST_TMP/torch_<case>/ (manifest.txt: one line per
 *      tensor "name param|state ndim shape... offset"; raw little-endian
 *      float32/int32 files) and runs "$PYTHON tests/py/torch_ref.py DIR FAMILY ...",
 *      which builds the same network from ordinary torch.nn modules, copies the
 *      tensors in by name and shape, trains it, and writes its results there;
 *   3. does the same computation here and compares:
 *      - eval-mode outputs (MODE_EVAL vs model.eval(), random running stats),
 *      - train-mode outputs, loss, every parameter gradient and the BN running
 *        statistics after the first forward,
 *      - the loss of each of STEPS SGD steps (lr 0.05, momentum 0.9, wd 5e-4),
 *        the parameters after every step and the BN state at the end;
 *   run once per kernel path this CPU has (VALLEY_ISA: tests/run.sh).
 *
 * Tolerance: every entry a (valley) of a tensor against b (torch) must meet
 *     |a - b| <= 1e-4 * max(|b|, rms(b)),
 * rms(b) being the root mean square of that torch tensor: 1e-4 relative, with
 * entries much smaller than the tensor's typical size (results of cancellation,
 * where relative error is fp32 noise) held to 1e-4 of that size instead.
 * Losses: plain 1e-4 relative. Analytically zero tensors (the gradient of a conv
 * bias feeding a batch norm: torch's entries all below 1e-5 x the largest
 * gradient entry) pass when valley's are below that bound too. The worst entry
 * of a failing tensor is printed; VERBOSE=1 prints every tensor's and the
 * trajectory step by step.
 *
 * Smooth pieces. ReLU and max-pool make the gradient jump where a decision
 * changes, and fp32 rounding (different summation orders) moves
 * pre-activations by up to a few 1e-6 (measured: torch fp32 vs float64 on
 * these networks). A decision closer than that to its kink may go either way;
 * one flip changes the gradient by one activation's share (up to 5% of a
 * tensor in preresnet20) and the two trajectories then drift apart (measured
 * with fixed minibatches: preresnet8 flipped at step 5 and reached a 1e-1
 * relative parameter difference by step 20). So torch_ref.py uses at each
 * step the first of CANDIDATES minibatches whose decisions, in float64 at the
 * current weights, are all at least KINK_TARGET = 1e-5 from their kink, else
 * the candidate with the largest margin; this test fails if that margin is
 * below KINK_MIN = 3e-6 (fp32 error of pre-activations near zero, torch vs
 * float64 on these networks: median <= 1.4e-7, 99th percentile <= 1.4e-6,
 * largest seen 3.6e-6; the convnet, with 150k max-pool windows, seldom has a
 * minibatch at 1e-5). Those margins are of torch's weights, so each step here starts
 * from torch's weights after the previous one (valley keeps its own momentum buffer):
 * every step's update is compared from the same point and no drift accumulates across
 * steps. (Run on valley's own trajectory instead, the 13-conv vgg16bn had drifted by
 * 4e-6 relative by step 18 and one decision 1.1e-5 from its kink at torch's weights
 * flipped at step 19 on the im2col path: the last two steps then differed by 3e-3.)
 * Set TORCH_CASE=name to run one case.
 *
 * Also checked here without PyTorch: the same seed gives bit-identical weights
 * and outputs (two inits, two model instances, memcmp), a different seed
 * different values in every random tensor and different outputs.
 *
 * A missing python3-torch is a failure, not a skip.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "valley/error.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/optim.h"
#include "valley/rng.h"
#include "valley/test.h"
#include "torch_io.h"

enum { BATCH = 16, STEPS = 20, CANDIDATES = 16 };
#define LR 0.05
#define MOMENTUM 0.9
#define WD 5e-4
#define RTOL 1e-4
#define ZERO_TENSOR 1e-5 /* a tensor below this times the largest entry of its kind is analytically zero */
#define KINK_TARGET 1e-5 /* wanted distance of every ReLU / max-pool decision from its kink */
#define KINK_MIN 3e-6    /* accepted when no candidate reaches KINK_TARGET */

typedef struct {
    const char *name;   /* case label, also the directory name */
    const char *family; /* FAMILY argument of torch_ref.py */
    vl_model_config_t cfg;
    int gauss;          /* heteroscedastic Gaussian NLL instead of softmax CE */
    uint64_t seed;
} case_t;

static int verbose;
static char tmp_root[2048];

/* ------------------------------------------------------------ comparison */

/* Compares a (valley) with b (torch) over n entries under the rule in the
 * header: |a-b| <= RTOL * max(|b|, rms(b)). Returns the worst ratio
 * |a-b| / limit (<= 1 passes) and prints the worst entry when it fails, and
 * every tensor's worst entry when print && verbose. */
static double compare(const char *cs, const char *what, const char *tensor, const float *a, const float *b, size_t n,
                      int print)
{
    double ss = 0.0, maxb = 0.0;
    for (size_t i = 0; i < n; i++) {
        ss += (double)b[i] * b[i];
        if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    }
    const double rms = n ? sqrt(ss / (double)n) : 0.0;
    double worst = 0.0;
    size_t at = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) { nonfinite = 1; worst = INFINITY; at = i; break; }
        double err = fabs((double)a[i] - b[i]);
        double lim = RTOL * fmax(fabs(b[i]), rms);
        double r = lim > 0 ? err / lim : (err > 0 ? INFINITY : 0.0);
        if (r > worst) { worst = r; at = i; }
    }
    char label[256];
    snprintf(label, sizeof label, "%s: %s %s", cs, what, tensor);
    const double diff = n ? fabs((double)a[at] - b[at]) : 0.0;
    T_CHECK(worst <= 1.0, "%s: worst entry %zu of %zu: valley %.9g torch %.9g |diff| %.3g = %.3g x max(|torch|, rms %.3g)%s",
            label, at, n, n ? a[at] : 0.0, n ? b[at] : 0.0, diff, n ? diff / fmax(fabs(b[at]), rms) : 0.0, rms,
            nonfinite ? " (non-finite)" : "");
    if (print && verbose)
        printf("  %-52s n %7zu  max|torch| %9.3g  rms %9.3g  worst rel %9.3g (%.3f of tol)\n", label, n, maxb, rms,
               worst * RTOL, worst);
    return worst;
}

/* Per tensor of the given kind; returns the worst ratio over all of them.
 * A tensor whose torch entries are all below ZERO_TENSOR times the largest
 * entry of its kind is analytically zero (the gradient of a conv bias that
 * feeds a batch norm): both sides hold rounding noise there, so it passes
 * when valley's entries are below that bound too. */
static double compare_tensors(const char *cs, const char *what, const vl_model_t *m, int kind, const float *a,
                              const float *b, int print)
{
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    double big = 0.0;
    for (int i = 0; i < nt; i++)
        if (t[i].kind == kind)
            for (size_t j = 0; j < t[i].numel; j++) big = fmax(big, fabs(b[t[i].offset + j]));
    double worst = 0.0;
    for (int i = 0; i < nt; i++) {
        if (t[i].kind != kind) continue;
        const float *ai = a + t[i].offset, *bi = b + t[i].offset;
        double maxa = 0.0, maxb = 0.0;
        for (size_t j = 0; j < t[i].numel; j++) { maxa = fmax(maxa, fabs(ai[j])); maxb = fmax(maxb, fabs(bi[j])); }
        if (maxb < ZERO_TENSOR * big) {
            T_CHECK(maxa < ZERO_TENSOR * big, "%s: %s %s: torch's is zero (max %.3g) but valley's max is %.3g", cs, what,
                    t[i].name, maxb, maxa);
            if (print && verbose)
                printf("  %s: %s %-30s zero: max|torch| %.3g, max|valley| %.3g (bound %.3g)\n", cs, what, t[i].name,
                       maxb, maxa, ZERO_TENSOR * big);
            continue;
        }
        double r = compare(cs, what, t[i].name, ai, bi, t[i].numel, print);
        if (r > worst) worst = r;
    }
    return worst;
}

static void compare_scalar(const char *cs, const char *what, double a, double b)
{
    T_CHECK(fabs(a - b) <= RTOL * fabs(b), "%s: %s: valley %.9g torch %.9g rel %.3g", cs, what, a, b,
            fabs(a - b) / fabs(b));
}

/* ----------------------------------------------------------------- files */

/* Runs torch_ref.py on dir; returns 0 when it succeeded and its stdout said
 * what we expect (parameter counts, order). */
static int run_torch(const case_t *c, const char *dir, const vl_model_t *m)
{
    const char *py = getenv("PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    const char *script = "tests/py/torch_ref.py";
    if (access(script, R_OK) != 0) {
        T_CHECK(0, "%s not found: run this test from the repository root (tests/run.sh does)", script);
        return -1;
    }
    if (strchr(dir, '\'') || strchr(py, '\'')) {
        T_CHECK(0, "paths with a quote are not supported: %s %s", py, dir);
        return -1;
    }
    char widths[256] = "";
    for (int i = 0; i < c->cfg.nwidths; i++)
        snprintf(widths + strlen(widths), sizeof widths - strlen(widths), "%s%d", i ? "," : "", c->cfg.widths[i]);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' %s '%s' %s --input %dx%dx%d --out %d%s%s --depth %d --batch %d --steps %d --candidates %d "
             "--margin %.17g --lr %.17g --momentum %.17g --wd %.17g --loss %s --width-factor %.17g --widen %d "
             "--shortcuts %d --bn %d",
             py, script, dir, c->family, c->cfg.in_c, c->cfg.in_h, c->cfg.in_w, c->cfg.out_dim,
             c->cfg.nwidths ? " --widths " : "", widths, c->cfg.depth ? c->cfg.depth : 8, BATCH, STEPS, CANDIDATES,
             KINK_TARGET, LR, MOMENTUM, WD, c->gauss ? "gauss" : "ce",
             c->cfg.width_factor > 0 ? c->cfg.width_factor : 1.0, c->cfg.widen, c->cfg.shortcuts, c->cfg.bn);
    if (verbose) printf("%s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) {
        T_CHECK(0, "%s: cannot run %s: %s", c->name, py, strerror(errno));
        return -1;
    }
    char line[512];
    long long nparams = -1, nstate = -1;
    int order_ok = -1;
    while (fgets(line, sizeof line, p)) {
        char key[64];
        long long v;
        if (sscanf(line, "%63s %lld", key, &v) == 2) {
            if (!strcmp(key, "nparams")) nparams = v;
            if (!strcmp(key, "nstate")) nstate = v;
            if (!strcmp(key, "order_ok")) order_ok = (int)v;
        }
        if (verbose) printf("  torch_ref: %s", line);
    }
    int st = pclose(p);
    int code = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (code == 3) {
        T_CHECK(0, "python3-torch is missing: %s cannot import torch or numpy (install Debian's python3-torch and "
                   "python3-numpy; this test requires them and does not skip)", py);
        return -1;
    }
    T_CHECK(code == 0, "%s: torch_ref.py failed with status %d (its message is above)", c->name, code);
    if (code != 0) return -1;
    T_CHECK(nparams == (long long)model_nparams(m) && nstate == (long long)model_nstate(m),
            "%s: torch counts %lld params %lld state, valley %zu %zu", c->name, nparams, nstate, model_nparams(m),
            model_nstate(m));
    T_CHECK(order_ok == 1, "%s: valley's tensor order is not PyTorch's registration order", c->name);
    return 0;
}

/* ------------------------------------------------------------ one family */

/* Mean loss of minibatch b (index into the STEPS*CANDIDATES) and its dLoss/dout. */
static double batch_loss(const case_t *c, const float *out, int b, const int32_t *y, const float *t, float *dout)
{
    const int C = c->cfg.out_dim;
    if (c->gauss) return loss_gaussian_nll(out, t + (size_t)b * BATCH * (C / 2), BATCH, C / 2, 1, 0.0, BATCH, dout) / BATCH;
    return loss_softmax_ce(out, y + (size_t)b * BATCH, BATCH, C, BATCH, dout, NULL) / BATCH;
}

static void check_case(const case_t *c)
{
    vl_model_t *m = NULL;
    int st = model_create(&c->cfg, BATCH, &m);
    T_CHECK(st == 0, "%s: model_create failed: %s", c->name, vl_error_message());
    if (st) return;
    printf("%s: %s\n", c->name, model_describe(m));
    const size_t np = model_nparams(m), ns = model_nstate(m), nsa = ns ? ns : 1;
    const size_t nb = (size_t)STEPS * CANDIDATES; /* minibatches */
    const int in_dim = model_in_dim(m), C = c->cfg.out_dim, D = c->gauss ? C / 2 : 1;
    float *w0 = vl_alloc(np * sizeof(float), "w0"), *w = vl_alloc(np * sizeof(float), "w");
    float *g = vl_alloc(np * sizeof(float), "g"), *buf = vl_calloc(np, sizeof(float), "momentum");
    float *wt = vl_alloc(np * sizeof(float), "torch w"), *gt = vl_alloc(np * sizeof(float), "torch g");
    float *s0 = vl_alloc(nsa * sizeof(float), "s0"), *s = vl_alloc(nsa * sizeof(float), "s");
    float *se = vl_alloc(nsa * sizeof(float), "eval s"), *st_t = vl_alloc(nsa * sizeof(float), "torch s");
    float *x = vl_alloc(nb * BATCH * in_dim * sizeof(float), "x");
    int32_t *y = vl_alloc(nb * BATCH * sizeof(int32_t), "y");
    float *t = vl_alloc(nb * BATCH * D * sizeof(float), "t");
    float *out_t = vl_alloc((size_t)BATCH * C * sizeof(float), "torch logits");
    float *dout = vl_alloc((size_t)BATCH * C * sizeof(float), "dout");
    double loss_c[STEPS], loss_t[STEPS], margin[STEPS], worst_step[STEPS], relnorm[STEPS];
    int32_t chosen[STEPS];
    FILE *traj = NULL;
    if (!w0 || !w || !g || !buf || !wt || !gt || !s0 || !s || !se || !st_t || !x || !y || !t || !out_t || !dout) {
        T_CHECK(0, "%s: out of memory", c->name);
        goto done;
    }

    /* 1. Weights, state, data. */
    model_init(m, c->seed, w0, s0);
    vl_rng_t r;
    rng_init(&r, c->seed, rng_stream(RNG_TEST, 40, 0));
    int nt;
    const vl_tensor_t *tt = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++)
        for (size_t j = 0; j < tt[i].numel; j++) {
            float *p = tt[i].kind == TENSOR_PARAM ? w0 + tt[i].offset + j : se + tt[i].offset + j;
            switch (tt[i].role) {
            case ROLE_BN_WEIGHT: *p = (float)(1.0 + 0.3 * rng_normal(&r)); break;
            case ROLE_BN_BIAS: *p = (float)(0.3 * rng_normal(&r)); break;
            case ROLE_BN_MEAN: *p = (float)(0.5 * rng_normal(&r)); break;
            case ROLE_BN_VAR: *p = (float)(0.5 + 1.5 * rng_uniform(&r)); break;
            default: break;
            }
        }
    for (size_t i = 0; i < nb * BATCH * in_dim; i++) x[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < nb * BATCH; i++) y[i] = (int32_t)rng_below(&r, (uint64_t)C);
    for (size_t i = 0; i < nb * BATCH * D; i++) t[i] = (float)rng_normal(&r);

    char dir[2200];
    snprintf(dir, sizeof dir, "%s/torch_%s", tmp_root, c->name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        T_CHECK(0, "cannot create %s: %s", dir, strerror(errno));
        goto done;
    }
    int bad = write_manifest(dir, m);
    bad |= write_file(dir, "params.f32", w0, np * sizeof(float));
    bad |= write_file(dir, "state.f32", s0, ns * sizeof(float));
    bad |= write_file(dir, "evalstate.f32", se, ns * sizeof(float));
    bad |= write_file(dir, "x.f32", x, nb * BATCH * in_dim * sizeof(float));
    if (c->gauss) bad |= write_file(dir, "t.f32", t, nb * BATCH * D * sizeof(float));
    else bad |= write_file(dir, "y.i32", y, nb * BATCH * sizeof(int32_t));
    T_CHECK(!bad, "%s: cannot write the inputs of torch_ref.py to %s", c->name, dir);
    if (bad) goto done;

    /* 2. PyTorch. */
    if (run_torch(c, dir, m)) goto done;
    if (read_file(dir, "losses.f64", loss_t, sizeof loss_t) || read_file(dir, "chosen.i32", chosen, sizeof chosen) ||
        read_file(dir, "margins.f64", margin, sizeof margin)) {
        T_CHECK(0, "%s: results of torch_ref.py unreadable", c->name);
        goto done;
    }
    for (int k = 0; k < STEPS; k++) {
        T_CHECK(chosen[k] >= k * CANDIDATES && chosen[k] < (k + 1) * CANDIDATES, "%s: step %d: bad minibatch %d",
                c->name, k + 1, (int)chosen[k]);
        T_CHECK(margin[k] >= KINK_MIN,
                "%s: step %d: none of %d minibatches keeps every ReLU/max-pool decision %.0e from its kink (best "
                "%.3g); change the case's seed or add candidates", c->name, k + 1, CANDIDATES, KINK_MIN, margin[k]);
        if (chosen[k] < k * CANDIDATES || chosen[k] >= (k + 1) * CANDIDATES) goto done;
    }

    /* 3a. Eval mode with the random running statistics (candidate 0 of step 0). */
    const float *out = model_forward(m, w0, se, x, BATCH, MODE_EVAL);
    if (read_file(dir, "eval_logits.f32", out_t, (size_t)BATCH * C * sizeof(float)) == 0)
        compare(c->name, "eval-mode", "outputs", out, out_t, (size_t)BATCH * C, 1);
    else T_CHECK(0, "%s: eval_logits.f32 unreadable", c->name);

    /* 3b. First train-mode step: outputs, loss, gradients, BN state; then the trajectory. */
    char path[2400];
    snprintf(path, sizeof path, "%s/traj.f32", dir);
    traj = fopen(path, "rb");
    T_CHECK(traj != NULL, "%s: cannot open %s", c->name, path);
    if (!traj) goto done;
    memcpy(w, w0, np * sizeof(float));
    memcpy(s, s0, ns * sizeof(float));
    for (int k = 0; k < STEPS; k++) {
        const int b = chosen[k];
        out = model_forward(m, w, s, x + (size_t)b * BATCH * in_dim, BATCH, MODE_TRAIN);
        loss_c[k] = batch_loss(c, out, b, y, t, dout);
        model_backward(m, w, dout, g);
        if (k == 0) {
            if (read_file(dir, "logits.f32", out_t, (size_t)BATCH * C * sizeof(float)) ||
                read_file(dir, "grads.f32", gt, np * sizeof(float)) ||
                read_file(dir, "state1.f32", st_t, ns * sizeof(float))) {
                T_CHECK(0, "%s: first-step results of torch unreadable", c->name);
                goto done;
            }
            compare(c->name, "train-mode", "outputs", out, out_t, (size_t)BATCH * C, 1);
            compare_scalar(c->name, "loss of the first minibatch", loss_c[0], loss_t[0]);
            if (verbose) printf("  %s: first loss valley %.9g torch %.9g\n", c->name, loss_c[0], loss_t[0]);
            compare_tensors(c->name, "gradient", m, TENSOR_PARAM, g, gt, 1);
            compare_tensors(c->name, "BN state after one forward", m, TENSOR_STATE, s, st_t, 1);
        }
        sgd_step(w, g, buf, np, LR, MOMENTUM, WD, 0);
        if (fread(wt, sizeof(float), np, traj) != np) {
            T_CHECK(0, "%s: traj.f32 too short at step %d", c->name, k + 1);
            goto done;
        }
        char what[64];
        snprintf(what, sizeof what, "params after step %d", k + 1);
        worst_step[k] = compare_tensors(c->name, what, m, TENSOR_PARAM, w, wt, k == STEPS - 1);
        double dn = 0, mv = 0;
        for (size_t i = 0; i < np; i++) {
            dn += ((double)w[i] - wt[i]) * ((double)w[i] - wt[i]);
            mv += ((double)wt[i] - w0[i]) * ((double)wt[i] - w0[i]);
        }
        relnorm[k] = mv > 0 ? sqrt(dn / mv) : 0.0;
        /* the next step starts from torch's weights (valley's own momentum buffer goes on): the
         * kink margins torch_ref.py chose the minibatch by hold at the weights valley runs at */
        memcpy(w, wt, np * sizeof(float));
        snprintf(what, sizeof what, "loss of step %d", k + 1);
        compare_scalar(c->name, what, loss_c[k], loss_t[k]);
    }
    if (verbose) {
        printf("  %s trajectory: step, minibatch, kink margin, loss valley, loss torch, rel diff, worst param "
               "(fraction of tol), |w - w_torch| / |w_torch - w0|\n", c->name);
        for (int k = 0; k < STEPS; k++)
            printf("    %2d %4d %9.2e %.9g %.9g %9.2e %7.3f %9.2e\n", k + 1, (int)chosen[k], margin[k], loss_c[k],
                   loss_t[k], fabs(loss_c[k] - loss_t[k]) / fabs(loss_t[k]), worst_step[k], relnorm[k]);
    }
    if (read_file(dir, "final_state.f32", st_t, ns * sizeof(float)) == 0)
        compare_tensors(c->name, "BN state after the steps", m, TENSOR_STATE, s, st_t, 1);
    else T_CHECK(0, "%s: final_state.f32 unreadable", c->name);

done:
    if (traj) fclose(traj);
    free(w0); free(w); free(g); free(buf); free(wt); free(gt); free(s0); free(s); free(se); free(st_t);
    free(x); free(y); free(t); free(out_t); free(dout);
    model_free(m);
}

/* ------------------------------------------------------- reproducibility */

static void check_seed(const case_t *c)
{
    vl_model_t *m1 = NULL, *m2 = NULL;
    int st = model_create(&c->cfg, BATCH, &m1);
    if (!st) st = model_create(&c->cfg, BATCH, &m2);
    T_CHECK(st == 0, "%s: model_create failed: %s", c->name, vl_error_message());
    if (st) { model_free(m1); return; }
    const size_t np = model_nparams(m1), ns = model_nstate(m1) + 1, nout = (size_t)BATCH * c->cfg.out_dim;
    const int in_dim = model_in_dim(m1);
    float *wa = malloc(np * sizeof(float)), *wb = malloc(np * sizeof(float)), *wc = malloc(np * sizeof(float));
    float *sa = malloc(ns * sizeof(float)), *sb = malloc(ns * sizeof(float)), *sc = malloc(ns * sizeof(float));
    float *oa = malloc(nout * sizeof(float)), *ob = malloc(nout * sizeof(float));
    float *x = malloc((size_t)BATCH * in_dim * sizeof(float));
    if (!wa || !wb || !wc || !sa || !sb || !sc || !oa || !ob || !x) { T_CHECK(0, "out of memory"); goto done; }
    vl_rng_t r;
    rng_init(&r, 5, rng_stream(RNG_TEST, 41, 0));
    for (size_t i = 0; i < (size_t)BATCH * in_dim; i++) x[i] = (float)rng_normal(&r);
    memset(wb, 0xAB, np * sizeof(float)); /* different garbage before init */
    model_init(m1, c->seed, wa, sa);
    model_init(m2, c->seed, wb, sb);
    model_init(m1, c->seed + 1, wc, sc);
    T_CHECK(memcmp(wa, wb, np * sizeof(float)) == 0, "%s: same seed, different weights", c->name);
    T_CHECK(memcmp(sa, sb, (ns - 1) * sizeof(float)) == 0, "%s: same seed, different state", c->name);
    int nt;
    const vl_tensor_t *t = model_tensors(m1, &nt);
    for (int i = 0; i < nt; i++)
        if (t[i].kind == TENSOR_PARAM && (t[i].role == ROLE_WEIGHT || t[i].role == ROLE_BIAS) && t[i].init == INIT_ZERO) {
            for (size_t j = 0; j < t[i].numel; j++) /* the VGG's conv biases: zero, as in its reference */
                if (wa[t[i].offset + j] != 0.0f) { T_CHECK(0, "%s: %s is not zero after init", c->name, t[i].name); break; }
        } else if (t[i].kind == TENSOR_PARAM && (t[i].role == ROLE_WEIGHT || t[i].role == ROLE_BIAS))
            T_CHECK(memcmp(wa + t[i].offset, wc + t[i].offset, t[i].numel * sizeof(float)) != 0,
                    "%s: seeds %llu and %llu give the same %s", c->name, (unsigned long long)c->seed,
                    (unsigned long long)c->seed + 1, t[i].name);
    for (int mode = MODE_EVAL; mode <= MODE_TRAIN; mode++) {
        memcpy(oa, model_forward(m1, wa, sa, x, BATCH, mode), nout * sizeof(float));
        memcpy(ob, model_forward(m2, wb, sb, x, BATCH, mode), nout * sizeof(float));
        T_CHECK(memcmp(oa, ob, nout * sizeof(float)) == 0, "%s: same seed, different %s outputs", c->name,
                mode ? "train" : "eval");
        T_CHECK(memcmp(sa, sb, (ns - 1) * sizeof(float)) == 0, "%s: same seed, different state after forward",
                c->name);
        memcpy(ob, model_forward(m2, wc, sc, x, BATCH, mode), nout * sizeof(float));
        T_CHECK(memcmp(oa, ob, nout * sizeof(float)) != 0, "%s: different seeds, same outputs", c->name);
    }
done:
    free(wa); free(wb); free(wc); free(sa); free(sb); free(sc); free(oa); free(ob); free(x);
    model_free(m1);
    model_free(m2);
}

int main(void)
{
    verbose = getenv("VERBOSE") && *getenv("VERBOSE") && strcmp(getenv("VERBOSE"), "0");
    const char *tmp = getenv("VALLEY_TEST_TMP");
    if (tmp && *tmp) {
        snprintf(tmp_root, sizeof tmp_root, "%s", tmp);
    } else {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/valley-torch.XXXXXX");
        if (!mkdtemp(tmp_root)) { fprintf(stderr, "cannot create a temporary directory\n"); return 1; }
    }
    const case_t cases[] = {
        {"mlp", "mlp", {.kind = MODEL_MLP, .widths = {32, 16}, .nwidths = 2, .in_c = 1, .in_h = 12, .in_w = 12,
                        .out_dim = 10}, 0, 101},
        {"convnet", "convnet", {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10}, 0, 102},
        {"preresnet8", "preresnet", {.kind = MODEL_PRERESNET, .depth = 8, .in_c = 1, .in_h = 12, .in_w = 12,
                                     .out_dim = 10}, 0, 103},
        {"preresnet20", "preresnet", {.kind = MODEL_PRERESNET, .depth = 20, .in_c = 1, .in_h = 8, .in_w = 8,
                                      .out_dim = 10}, 0, 104},
        /* the families of the field (families.c), small: width_factor and 8x8 to 16x16 inputs */
        {"resnet8", "resnet", {.kind = MODEL_RESNET, .depth = 8, .width_factor = 0.5, .shortcuts = 1, .in_c = 3,
                               .in_h = 8, .in_w = 8, .out_dim = 10}, 0, 106},
        {"resnet8_noshort", "resnet", {.kind = MODEL_RESNET, .depth = 8, .width_factor = 0.5, .shortcuts = 0,
                                       .in_c = 3, .in_h = 8, .in_w = 8, .out_dim = 10}, 0, 107},
        {"resnet20", "resnet", {.kind = MODEL_RESNET, .depth = 20, .width_factor = 0.25, .shortcuts = 1, .in_c = 1,
                                .in_h = 8, .in_w = 8, .out_dim = 10}, 0, 108},
        {"preresnet47", "preresnet", {.kind = MODEL_PRERESNET, .depth = 47, .width_factor = 0.25, .in_c = 3,
                                      .in_h = 8, .in_w = 8, .out_dim = 10}, 0, 109},
        {"vgg11bn", "vgg", {.kind = MODEL_VGG, .depth = 11, .width_factor = 0.125, .bn = 1, .in_c = 3, .in_h = 16,
                            .in_w = 16, .out_dim = 10}, 0, 110},
        {"vgg11", "vgg", {.kind = MODEL_VGG, .depth = 11, .width_factor = 0.125, .bn = 0, .in_c = 3, .in_h = 16,
                          .in_w = 16, .out_dim = 10}, 0, 111},
        {"vgg16bn", "vgg", {.kind = MODEL_VGG, .depth = 16, .width_factor = 0.0625, .bn = 1, .in_c = 3, .in_h = 32,
                            .in_w = 32, .out_dim = 10}, 0, 112},
        {"wideresnet16_2", "wideresnet", {.kind = MODEL_WIDERESNET, .depth = 16, .widen = 2, .width_factor = 0.25,
                                          .in_c = 3, .in_h = 8, .in_w = 8, .out_dim = 10}, 0, 113},
        {"mlp_gauss", "mlp", {.kind = MODEL_MLP, .widths = {32, 16}, .nwidths = 2, .in_c = 1, .in_h = 1, .in_w = 3,
                              .out_dim = 2}, 1, 105},
    };
    const char *only = getenv("TORCH_CASE"); /* debugging: run one case */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && *only && strcmp(only, cases[i].name)) continue;
        check_seed(&cases[i]);
        check_case(&cases[i]);
    }
    T_DONE();
}
