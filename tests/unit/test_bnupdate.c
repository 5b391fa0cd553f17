/* test_bnupdate.c — the BN refresh (SPEC §0) against a direct computation.
 *
 * After model_bn_begin / MODE_BN_UPDATE forwards / model_bn_finish, the running
 * statistics of the convnet's first BN layer must be the sample-weighted average of
 * the per-batch mean and unbiased variance of conv1's output (PyTorch's bn_update
 * with momentum b/(n+b)); here conv1 is recomputed naively in double. Batches have
 * unequal sizes (the last is short) so per-batch and per-sample weighting differ.
 * Run under mpirun with any number of ranks: the samples of every batch are dealt
 * round-robin to the ranks, BN statistics are summed over MPI_COMM_WORLD, and the
 * result must match the same reference to 1e-5 (relative to the value, floor 1e-6).
 */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "valley/comm.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"

enum { H = 8, W = 8, NS = 70, B = 32 };

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm comm = MPI_COMM_WORLD;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    vl_model_config_t cfg = {.kind = MODEL_CONVNET, .in_c = 1, .in_h = H, .in_w = W, .out_dim = 3};
    vl_model_t *m;
    T_CHECK(model_create(&cfg, B, &m) == 0, "model_create");
    model_set_reduce(m, comm_reduce_sum, &comm);
    size_t np = model_nparams(m), ns = model_nstate(m);
    float *w = malloc(np * sizeof(float)), *state = malloc(ns * sizeof(float));
    model_init(m, 5, w, state);
    float *x = malloc(sizeof(float) * NS * H * W), *xb = malloc(sizeof(float) * B * H * W);
    vl_rng_t r;
    rng_init(&r, 9, rng_stream(RNG_TEST, 3, 0));
    for (int i = 0; i < NS * H * W; i++) x[i] = (float)(rng_normal(&r) + 0.5);
    model_bn_begin(m);
    for (int b0 = 0; b0 < NS; b0 += B) {
        int nb = NS - b0 < B ? NS - b0 : B, nl = 0;
        for (int i = 0; i < nb; i++)
            if (i % size == rank) memcpy(xb + (size_t)nl++ * H * W, x + (size_t)(b0 + i) * H * W, sizeof(float) * H * W);
        model_forward(m, w, state, xb, nl, MODE_BN_UPDATE);
    }
    model_bn_finish(m, state);
    /* Reference: conv1 (32 filters 3x3, pad 1, bias) in double, per batch statistics. */
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    const float *cw = w + t[0].offset, *cb = w + t[1].offset; /* conv1_weight, conv1_bias */
    const float *rm = NULL, *rv = NULL;
    for (int i = 0; i < nt; i++) {
        if (!strcmp(t[i].name, "bn1_running_mean")) rm = state + t[i].offset;
        if (!strcmp(t[i].name, "bn1_running_var")) rv = state + t[i].offset;
    }
    T_CHECK(rm && rv, "bn1 running statistics in the tensor table");
    for (int c = 0; c < 32 && rm && rv; c++) {
        double acc_mean = 0, acc_var = 0, total = 0;
        for (int b0 = 0; b0 < NS; b0 += B) {
            int nb = NS - b0 < B ? NS - b0 : B;
            double s = 0, s2 = 0, cnt = (double)nb * H * W;
            for (int pass = 0; pass < 2; pass++)
                for (int i = b0; i < b0 + nb; i++)
                    for (int y = 0; y < H; y++)
                        for (int xx = 0; xx < W; xx++) {
                            double v = cb[c];
                            for (int ky = 0; ky < 3; ky++)
                                for (int kx = 0; kx < 3; kx++) {
                                    int iy = y + ky - 1, ix = xx + kx - 1;
                                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                        v += (double)cw[c * 9 + ky * 3 + kx] * x[(size_t)i * H * W + iy * W + ix];
                                }
                            if (pass == 0) s += v;
                            else s2 += (v - s / cnt) * (v - s / cnt);
                        }
            acc_mean += cnt * (s / cnt);
            acc_var += cnt * (s2 / (cnt - 1));
            total += cnt;
        }
        double want_m = acc_mean / total, want_v = acc_var / total;
        T_CHECK(fabs(rm[c] - want_m) <= 1e-5 * fabs(want_m) + 1e-6, "channel %d running mean %.8g, want %.8g", c, rm[c], want_m);
        T_CHECK(fabs(rv[c] - want_v) <= 1e-5 * fabs(want_v) + 1e-6, "channel %d running var %.8g, want %.8g", c, rv[c], want_v);
    }
    free(w); free(state); free(x); free(xb);
    model_free(m);
    int failures = test_failures;
    MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, comm);
    if (rank) { MPI_Finalize(); return failures ? 1 : 0; }
    test_failures = failures;
    MPI_Finalize();
    T_DONE();
}
