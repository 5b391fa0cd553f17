/* bench_core.c — throughput of the numerical core on one rank:
 * training (forward + backward + SGD step) and evaluation of mlp and convnet
 * on 28x28 inputs, batch 128, and OpenBLAS sgemm's rate on the same GEMM shapes.
 * Prints "key value" lines that bench/run.sh turns into ratios. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "valley/loss.h"
#include "valley/model.h"
#include "valley/optim.h"
#include "valley/rng.h"

#include "bench_clock.h"

static void bench_model(const char *name, vl_model_config_t cfg, int B, double seconds)
{
    vl_model_t *m;
    if (model_create(&cfg, B, &m)) { fprintf(stderr, "model_create failed\n"); exit(1); }
    size_t np = model_nparams(m), ns = model_nstate(m) + 1;
    float *w = calloc(np, 4), *g = calloc(np, 4), *mom = calloc(np, 4), *st = calloc(ns, 4);
    float *x = malloc((size_t)B * 784 * 4), *d = malloc((size_t)B * 10 * 4);
    int32_t *y = malloc(B * 4);
    vl_rng_t r;
    rng_init(&r, 1, 1);
    for (int i = 0; i < B * 784; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < B; i++) y[i] = i % 10;
    model_init(m, 1, w, st);
    /* training */
    int it = 0;
    double t0 = now(), t;
    do {
        const float *o = model_forward(m, w, st, x, B, MODE_TRAIN);
        loss_softmax_ce(o, y, B, 10, B, d, NULL);
        model_backward(m, w, d, g);
        sgd_step(w, g, mom, np, 0.01, 0.9, 5e-4, 0);
        it++;
        t = now() - t0;
    } while (t < seconds || it < 3);
    printf("%s_train_samples_per_s %.1f\n", name, it * (double)B / t);
    it = 0;
    t0 = now();
    do {
        model_forward(m, w, st, x, B, MODE_EVAL);
        it++;
        t = now() - t0;
    } while (t < seconds / 2 || it < 3);
    printf("%s_eval_samples_per_s %.1f\n", name, it * (double)B / t);
    free(w); free(g); free(mom); free(st); free(x); free(d); free(y);
    model_free(m);
}

/* GFLOP/s of sgemm for C(M,N) = A(M,K) B(K,N) with the given transposes. */
static double gemm_rate(int ta, int tb, int M, int N, int K, double seconds)
{
    float *A = calloc((size_t)M * K, 4), *Bm = calloc((size_t)K * N, 4), *C = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = 1e-3f * (float)(i % 7);
    for (size_t i = 0; i < (size_t)K * N; i++) Bm[i] = 1e-3f * (float)(i % 5);
    int it = 0;
    double t0 = now(), t;
    do {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                    ta ? M : K, Bm, tb ? K : N, 0.0f, C, N);
        it++;
        t = now() - t0;
    } while (t < seconds || it < 3);
    free(A); free(Bm); free(C);
    return 2.0 * M * N * K * it / t / 1e9;
}

int main(int argc, char **argv)
{
    double sec = argc > 1 ? atof(argv[1]) : 3.0;
    openblas_set_num_threads(1);
    vl_model_config_t mlp = {.kind = MODEL_MLP, .widths = {512, 512}, .nwidths = 2, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10};
    vl_model_config_t conv = {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10};
    const char *only = argc > 2 ? argv[2] : "";
    if (strcmp(only, "convnet")) bench_model("mlp", mlp, 128, sec);
    if (strcmp(only, "mlp")) bench_model("convnet", conv, 128, sec);
    if (*only) return 0;
    /* Peak reference: a large square sgemm; and the convnet's dominant shape (conv2 forward). */
    printf("sgemm_peak_gflops %.2f\n", gemm_rate(0, 0, 1024, 1024, 1024, sec / 2));
    printf("sgemm_conv2_fwd_gflops %.2f\n", gemm_rate(0, 0, 64, 128 * 196, 288, sec / 2));
    printf("sgemm_conv2_wgrad_gflops %.2f\n", gemm_rate(0, 1, 64, 288, 128 * 196, sec / 2));
    printf("sgemm_conv2_dgrad_gflops %.2f\n", gemm_rate(1, 0, 288, 128 * 196, 64, sec / 2));
    printf("sgemm_mlp_fc2_gflops %.2f\n", gemm_rate(0, 1, 128, 512, 512, sec / 2));
    /* flops per sample of the two models (forward), for the fraction of peak */
    printf("convnet_fwd_mflop_per_sample %.3f\n", (2.0 * 32 * 9 * 784 + 2.0 * 64 * 288 * 196 + 2.0 * 3136 * 128 + 2.0 * 1280) / 1e6);
    printf("mlp_fwd_mflop_per_sample %.3f\n", (2.0 * 784 * 512 + 2.0 * 512 * 512 + 2.0 * 5120) / 1e6);
    return 0;
}
