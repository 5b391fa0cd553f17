/* bench_families.c — training and evaluation throughput of the network families (issue 15) on
 * one rank, one thread, batch 128: ResNet-20, ResNet-56, PreResNet-20, VGG-16 at width 1/4 and
 * WRN-16-4, on 32x32x3 and 28x28x1 random inputs. Training = forward + backward + SGD step;
 * evaluation = a forward without gradients (MODE_EVAL, what a surface point's train and test
 * passes are); refresh = a MODE_BN_UPDATE forward (a surface point's BN refresh).
 * Usage: bench_families SECONDS [NAME...], NAME a family (resnet20) or one shape (resnet20_3x32x32). Prints "key value" lines for bench/run.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "valley/cpu.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/optim.h"
#include "valley/rng.h"

#include "bench_clock.h"

static void bench(const char *name, vl_model_config_t cfg, int B, double seconds)
{
    vl_model_t *m;
    if (model_create(&cfg, B, &m)) { fprintf(stderr, "%s: model_create failed\n", name); exit(1); }
    if (getenv("VALLEY_BENCH_NOWINO")) model_conv_winograd(m, 0); /* the direct kernels instead (A/B) */
    const size_t np = model_nparams(m), ns = model_nstate(m) + 1, in = (size_t)cfg.in_c * cfg.in_h * cfg.in_w;
    float *w = calloc(np, 4), *g = calloc(np, 4), *mom = calloc(np, 4), *st = calloc(ns, 4);
    float *x = malloc((size_t)B * in * 4), *d = malloc((size_t)B * 10 * 4);
    int32_t *y = malloc((size_t)B * 4);
    vl_rng_t r;
    rng_init(&r, 1, 1);
    for (size_t i = 0; i < (size_t)B * in; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < B; i++) y[i] = i % 10;
    model_init(m, 1, w, st);
    const char *only = getenv("VALLEY_BENCH_PHASE"); /* train, eval or refresh: that phase only (profiling) */
    for (int phase = 0; phase < 3; phase++) {
        if (only && strcmp(only, phase == 0 ? "train" : phase == 1 ? "eval" : "refresh")) continue;
        int it = -1; /* one untimed step first: the buffers' first-touch page faults are start-up cost */
        double t0 = now(), t, limit = phase == 0 ? seconds : seconds / 2;
        model_set_grad(m, phase == 0);
        if (phase == 2) model_bn_begin(m);
        do {
            if (it == 0) t0 = now();
            if (phase == 0) {
                const float *o = model_forward(m, w, st, x, B, MODE_TRAIN);
                loss_softmax_ce(o, y, B, 10, B, d, NULL);
                model_backward(m, w, d, g);
                sgd_step(w, g, mom, np, 0.01, 0.9, 5e-4, 0);
            } else {
                model_forward(m, w, st, x, B, phase == 1 ? MODE_EVAL : MODE_BN_UPDATE);
            }
            it++;
            t = now() - t0;
        } while (it < 1 || t < limit || it < 2);
        printf("%s_%s_samples_per_s %.1f\n", name, phase == 0 ? "train" : phase == 1 ? "eval" : "refresh", it * (double)B / t);
        fflush(stdout);
    }
    printf("%s_params %zu\n", name, np);
    free(w); free(g); free(mom); free(st); free(x); free(d); free(y);
    model_free(m);
}

int main(int argc, char **argv)
{
    /* VALLEY_BENCH_THREADS=T: T threads in valley's kernels and OpenBLAS (parallel.threads) */
    const int threads = getenv("VALLEY_BENCH_THREADS") ? atoi(getenv("VALLEY_BENCH_THREADS")) : 1;
    vl_set_threads(threads);
    openblas_set_num_threads(getenv("VALLEY_BENCH_BLAS1") ? 1 : threads);
    const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    const struct { const char *name; vl_model_config_t cfg; } nets[] = {
        {"resnet20", {.kind = MODEL_RESNET, .depth = 20, .shortcuts = 1}},
        {"resnet56", {.kind = MODEL_RESNET, .depth = 56, .shortcuts = 1}},
        {"preresnet20", {.kind = MODEL_PRERESNET, .depth = 20}},
        {"vgg16w4", {.kind = MODEL_VGG, .depth = 16, .bn = 1, .width_factor = 0.25}},
        {"wrn16_4", {.kind = MODEL_WIDERESNET, .depth = 16, .widen = 4}},
    };
    const int shapes[2][3] = {{3, 32, 32}, {1, 28, 28}};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        for (int s = 0; s < 2; s++) {
            vl_model_config_t c = nets[i].cfg;
            c.in_c = shapes[s][0]; c.in_h = shapes[s][1]; c.in_w = shapes[s][2]; c.out_dim = 10;
            char name[64];
            snprintf(name, sizeof name, "%s_%dx%dx%d", nets[i].name, c.in_c, c.in_h, c.in_w);
            int want = argc <= 2; /* NAME is a family (every shape) or family_CxHxW */
            for (int a = 2; a < argc; a++) want |= !strcmp(argv[a], nets[i].name) || !strcmp(argv[a], name);
            if (!want) continue;
            bench(name, c, 128, seconds);
        }
    }
    return 0;
}
