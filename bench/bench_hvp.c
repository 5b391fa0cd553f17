/* bench_hvp.c — cost of one Hessian-vector product (hvp.c) against one gradient, 1 thread,
 * batch 128: the gradient = an evaluation-mode forward + backward (the same loss hvp_add
 * differentiates twice, BN with running statistics), the product = hvp_add. Prints
 * "key value" lines for bench/run.sh: NAME_grad_samples_per_s, NAME_hvp_samples_per_s.
 * Usage: bench_hvp SECONDS [NAME...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/hessian.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/rng.h"

#include "bench_clock.h"

static void bench(const char *name, vl_model_config_t cfg, double seconds)
{
    const int B = 128;
    vl_model_t *m;
    vl_hvp_t *h;
    if (model_create(&cfg, B, &m) || hvp_create(m, B, &h)) { fprintf(stderr, "%s: create failed\n", name); exit(1); }
    const size_t np = model_nparams(m), ns = model_nstate(m) + 1, in = (size_t)model_in_dim(m);
    float *w = calloc(np, 4), *g = calloc(np, 4), *v = calloc(np, 4), *st = calloc(ns, 4);
    float *x = malloc((size_t)B * in * 4), *d = malloc((size_t)B * cfg.out_dim * 4);
    double *hv = calloc(np, sizeof(double));
    int32_t *y = malloc(B * 4);
    vl_rng_t r;
    rng_init(&r, 1, 1);
    for (size_t i = 0; i < (size_t)B * in; i++) x[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < np; i++) v[i] = (float)rng_normal(&r);
    for (int i = 0; i < B; i++) y[i] = i % cfg.out_dim;
    model_init(m, 1, w, st);
    /* one of each first: the buffers' pages are touched (mapped) outside the timing */
    loss_softmax_ce(model_forward(m, w, st, x, B, MODE_EVAL), y, B, cfg.out_dim, B, d, NULL);
    model_backward(m, w, d, g);
    hvp_add(h, w, st, x, y, B, v, hv, NULL);
    int it = 0;
    double t0 = now(), t;
    do {
        const float *o = model_forward(m, w, st, x, B, MODE_EVAL);
        loss_softmax_ce(o, y, B, cfg.out_dim, B, d, NULL);
        model_backward(m, w, d, g);
        it++;
        t = now() - t0;
    } while (t < seconds || it < 3);
    printf("%s_grad_samples_per_s %.2f\n", name, it * (double)B / t);
    it = 0;
    t0 = now();
    do {
        hvp_add(h, w, st, x, y, B, v, hv, NULL);
        it++;
        t = now() - t0;
    } while (t < seconds || it < 3);
    printf("%s_hvp_samples_per_s %.2f\n", name, it * (double)B / t);
    fflush(stdout);
    hvp_free(h);
    model_free(m);
    free(w); free(g); free(v); free(st); free(x); free(d); free(hv); free(y);
}

static int wanted(int argc, char **argv, const char *name)
{
    if (argc <= 2) return 1;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const double s = argc > 1 ? atof(argv[1]) : 3.0;
    if (wanted(argc, argv, "convnet")) bench("convnet", (vl_model_config_t){.kind = MODEL_CONVNET, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10}, s);
    if (wanted(argc, argv, "resnet20"))
        bench("resnet20", (vl_model_config_t){.kind = MODEL_RESNET, .depth = 20, .shortcuts = 1, .in_c = 3, .in_h = 32, .in_w = 32, .out_dim = 10}, s);
    if (wanted(argc, argv, "preresnet20"))
        bench("preresnet20", (vl_model_config_t){.kind = MODEL_PRERESNET, .depth = 20, .in_c = 3, .in_h = 32, .in_w = 32, .out_dim = 10}, s);
    return 0;
}
