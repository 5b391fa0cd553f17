/* test_metrics.c — metrics_classification / metrics_regression / softmax.
 *
 *   test_metrics                      closed forms and input errors (1 rank)
 *   test_metrics --numpy SCRIPT DIR   random data (n = 1013, C = 10) written to
 *                                     DIR, compared with the NumPy reference
 *                                     SCRIPT (tests/py/metrics_ref.py) at 1e-12
 *   mpirun -np P test_metrics --mpi   distributed over P ranks with uneven,
 *                                     rank-reversed shards: checks every rank
 *                                     equals a 1-rank (MPI_COMM_SELF) run bit for
 *                                     bit, collective error paths, and rank 0
 *                                     prints the metrics as "M name value" (%.17g)
 *                                     for tests/sh/metrics_ranks.sh to diff.
 */
#include "valley/error.h"
#include "valley/metrics.h"
#include "valley/rng.h"
#include "valley/test.h"

#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int finish(void) { T_DONE(); }

/* NaN-aware exact / close comparisons. */
#define T_SAME(a, b, what)                                                     \
    do {                                                                       \
        double sa_ = (a), sb_ = (b);                                           \
        T_CHECK((isnan(sa_) && isnan(sb_)) || sa_ == sb_, "%s: got %.17g, want %.17g", (what), sa_, sb_); \
    } while (0)
#define T_CLOSE_NAN(a, b, rtol, atol, what)                                    \
    do {                                                                       \
        double ca_ = (a), cb_ = (b);                                           \
        T_CHECK((isnan(ca_) && isnan(cb_)) ||                                  \
                    (!isnan(ca_) && !isnan(cb_) && fabs(ca_ - cb_) <= (atol) + (rtol) * fabs(cb_)), \
                "%s: got %.17g, want %.17g", (what), ca_, cb_);                \
    } while (0)

static double class_sum(const vl_class_metrics_t *m) /* anything non-trivial */
{
    return m->accuracy + m->nll + m->brier + m->entropy + m->ece + m->ece_count;
}

/* Expects a collective VL_EINPUT failure whose message contains `needle`. */
static void expect_fail(int st, const char *needle, const char *what)
{
    T_CHECK(st == VL_EINPUT, "%s: status %d, want %d", what, st, VL_EINPUT);
    T_CHECK(vl_error_collective() == 1, "%s: failure not collective", what);
    T_CHECK(strstr(vl_error_message(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
            vl_error_message(), needle);
    vl_error_clear();
}

/* ---------------------------------------------------------------- closed forms */

static void test_one_hot(void)
{
    enum { N = 8, C = 4 };
    float p[N * C] = {0};
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = (i * 3) % C;
        p[i * C + y[i]] = 1.0f;
    }
    vl_class_metrics_t m;
    T_CHECK(metrics_classification(p, y, N, C, 0, MPI_COMM_SELF, &m) == VL_OK, "one-hot: %s",
            vl_error_message());
    T_CHECK(m.n == N, "n = %lld", (long long)m.n);
    T_SAME(m.accuracy, 1.0, "one-hot accuracy");
    T_SAME(m.error, 0.0, "one-hot error");
    T_SAME(m.nll, 0.0, "one-hot nll");
    T_SAME(m.brier, 0.0, "one-hot brier");
    T_SAME(m.entropy, 0.0, "one-hot entropy");
    T_SAME(m.ece, 0.0, "one-hot ece");
    T_SAME(m.ece_count, 0.0, "one-hot ece_count");
    T_CHECK(m.bin_count[METRICS_BINS_WIDTH - 1] == N, "top bin count %lld",
            (long long)m.bin_count[METRICS_BINS_WIDTH - 1]);
    T_SAME(m.bin_conf[METRICS_BINS_WIDTH - 1], 1.0, "top bin conf");
    T_SAME(m.bin_acc[METRICS_BINS_WIDTH - 1], 1.0, "top bin acc");
    for (int b = 0; b < METRICS_BINS_WIDTH - 1; b++) {
        T_CHECK(m.bin_count[b] == 0, "bin %d count %lld", b, (long long)m.bin_count[b]);
        T_CHECK(isnan(m.bin_conf[b]) && isnan(m.bin_acc[b]), "empty bin %d not NaN", b);
    }
    T_SAME(m.bin_lo[0], 0.0, "bin_lo[0]");
    T_SAME(m.bin_hi[METRICS_BINS_WIDTH - 1], 1.0, "bin_hi[last]");
    T_SAME(m.bin_hi[4], 1.0 / 3.0, "bin_hi[4]");
    /* N = 8 < 20: bin b holds positions [floor(8b/20), floor(8(b+1)/20)) */
    int64_t total = 0;
    for (int b = 0; b < METRICS_BINS_COUNT; b++) {
        int64_t want = (int64_t)(b + 1) * N / 20 - (int64_t)b * N / 20;
        T_CHECK(m.cbin_count[b] == want, "cbin %d count %lld want %lld", b,
                (long long)m.cbin_count[b], (long long)want);
        T_CHECK(want ? m.cbin_conf[b] == 1.0 : isnan(m.cbin_conf[b]), "cbin %d conf %g", b, m.cbin_conf[b]);
        total += m.cbin_count[b];
    }
    T_CHECK(total == N, "cbin total %lld", (long long)total);

    /* one confidently wrong example: p_y = 0 hits the clamp */
    y[5] = (y[5] + 1) % C;
    T_CHECK(metrics_classification(p, y, N, C, 0, MPI_COMM_SELF, &m) == VL_OK, "clamp");
    T_CLOSE(m.nll, -log(1e-12) / N, 1e-14, 0, "clamped nll");
    T_CLOSE(m.brier, 2.0 / N, 1e-14, 0, "brier of one wrong one-hot");
    T_CLOSE(m.accuracy, (N - 1.0) / N, 1e-15, 0, "accuracy");
    T_CLOSE(m.ece, 1.0 / N, 1e-14, 0, "ece: top bin conf 1, acc 7/8");
}

static void test_uniform(int C)
{
    enum { N = 12 };
    float *p = malloc(sizeof(float) * N * C);
    int32_t y[N];
    for (int i = 0; i < N * C; i++) p[i] = 1.0f / C;
    int n_label0 = 0;
    for (int i = 0; i < N; i++) {
        y[i] = (i * 5 + 1) % C;
        n_label0 += y[i] == 0;
    }
    const double q = (float)(1.0f / C); /* exact for C a power of two */
    vl_class_metrics_t m;
    T_CHECK(metrics_classification(p, y, N, C, 0, MPI_COMM_SELF, &m) == VL_OK, "uniform");
    char what[64];
    double tol = (C & (C - 1)) == 0 ? 1e-15 : 1e-7; /* 1/C rounded to float otherwise */
    snprintf(what, sizeof what, "uniform C=%d nll", C);
    T_CLOSE(m.nll, log((double)C), tol, 0, what);
    snprintf(what, sizeof what, "uniform C=%d entropy", C);
    T_CLOSE(m.entropy, log((double)C), tol, 0, what);
    snprintf(what, sizeof what, "uniform C=%d brier", C);
    T_CLOSE(m.brier, 1.0 - 1.0 / C, tol, 0, what);
    /* ties: argmax picks class 0 */
    snprintf(what, sizeof what, "uniform C=%d accuracy", C);
    T_CLOSE(m.accuracy, (double)n_label0 / N, 1e-15, 0, what);
    snprintf(what, sizeof what, "uniform C=%d ece", C);
    T_CLOSE(m.ece, fabs((double)n_label0 / N - q), 1e-14, 1e-15, what);
    free(p);
}

/* Four examples, C = 2, exact binary fractions (see the sums in comments). */
static void test_ece_hand(void)
{
    /* conf    correct  width bin (conf*15)  sorted pos -> count bin (N=4: 4, 9, 14, 19)
     * 0.875   yes      13.125 -> 13         2 -> 14
     * 0.90625 no       13.59  -> 13         3 -> 19
     * 0.625   yes       9.375 ->  9         1 -> 9
     * 0.5625  no        8.44  ->  8         0 -> 4
     * width: bin 13 acc 1/2 conf 0.890625 -> 2/4*0.390625; bin 9: 1/4*0.375; bin 8: 1/4*0.5625
     *        ECE = 0.1953125 + 0.09375 + 0.140625 = 0.4296875
     * count: (0.125 + 0.90625 + 0.375 + 0.5625)/4 = 0.4921875 */
    const float p[8] = {0.875f, 0.125f, 0.09375f, 0.90625f, 0.375f, 0.625f, 0.5625f, 0.4375f};
    const int32_t y[4] = {0, 0, 1, 1};
    vl_class_metrics_t m;
    T_CHECK(metrics_classification(p, y, 4, 2, 0, MPI_COMM_SELF, &m) == VL_OK, "hand");
    T_SAME(m.accuracy, 0.5, "hand accuracy");
    T_SAME(m.ece, 0.4296875, "hand ece");
    T_SAME(m.ece_count, 0.4921875, "hand ece_count");
    T_CHECK(m.bin_count[13] == 2 && m.bin_count[9] == 1 && m.bin_count[8] == 1, "hand width counts");
    T_SAME(m.bin_conf[13], 0.890625, "hand bin 13 conf");
    T_SAME(m.bin_acc[13], 0.5, "hand bin 13 acc");
    const int cb[4] = {4, 9, 14, 19};
    const double cconf[4] = {0.5625, 0.625, 0.875, 0.90625}, cacc[4] = {0, 1, 1, 0};
    for (int k = 0; k < 4; k++) {
        T_CHECK(m.cbin_count[cb[k]] == 1, "hand cbin %d count %lld", cb[k], (long long)m.cbin_count[cb[k]]);
        T_SAME(m.cbin_conf[cb[k]], cconf[k], "hand cbin conf");
        T_SAME(m.cbin_acc[cb[k]], cacc[k], "hand cbin acc");
    }
    /* nll = mean -log p_y; brier (C = 2) = mean 2 (1 - p_y)^2 */
    const double py[4] = {0.875, 0.09375, 0.625, 0.4375};
    double nll = 0, brier = 0, ent = 0;
    for (int i = 0; i < 4; i++) {
        nll -= log(py[i]) / 4;
        brier += 2 * (1 - py[i]) * (1 - py[i]) / 4;
        ent -= (py[i] * log(py[i]) + (1 - py[i]) * log(1 - py[i])) / 4;
    }
    T_CLOSE(m.nll, nll, 1e-14, 0, "hand nll");
    T_CLOSE(m.brier, brier, 1e-14, 0, "hand brier");
    T_CLOSE(m.entropy, ent, 1e-14, 0, "hand entropy");
}

/* 40 examples with equal confidence 0.75; ties are broken by global index, so
 * count bin b holds examples 2b, 2b+1, correct when i % 4 < 2: bins alternate
 * accuracy 1, 0. ece_count = 10 * 2/40 * 0.25 + 10 * 2/40 * 0.75 = 0.5;
 * width ECE = |0.5 - 0.75| = 0.25. Any other tie order gives a different value. */
static void test_ties(void)
{
    enum { N = 40 };
    float p[2 * N];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        p[2 * i] = 0.75f;
        p[2 * i + 1] = 0.25f;
        y[i] = i % 4 < 2 ? 0 : 1;
    }
    vl_class_metrics_t m;
    T_CHECK(metrics_classification(p, y, N, 2, 0, MPI_COMM_SELF, &m) == VL_OK, "ties");
    T_CLOSE(m.ece_count, 0.5, 1e-15, 0, "ties ece_count");
    T_CLOSE(m.ece, 0.25, 1e-15, 0, "ties ece");
    for (int b = 0; b < METRICS_BINS_COUNT; b++) {
        T_CHECK(m.cbin_count[b] == 2, "ties cbin %d count", b);
        T_SAME(m.cbin_acc[b], b % 2 == 0 ? 1.0 : 0.0, "ties cbin acc");
    }
}

/* Bins are (e_b, e_{b+1}] with e_b = (double)b/15. Most edges are not floats,
 * so take the floats just below-or-at and just above e_9 = 0.6: they must land
 * in bins 8 and 9. */
static void test_edges(void)
{
    const int b = 9;
    const double e = (double)b / METRICS_BINS_WIDTH;
    float below = (float)e, above = (float)e;
    if ((double)below > e) below = nextafterf(below, 0.0f);
    if ((double)above <= e) above = nextafterf(above, 1.0f);
    const float p[4] = {below, 1.0f - below, above, 1.0f - above};
    const int32_t y[2] = {0, 0};
    vl_class_metrics_t m;
    T_CHECK(metrics_classification(p, y, 2, 2, 0, MPI_COMM_SELF, &m) == VL_OK, "edges");
    T_CHECK(m.bin_count[b - 1] == 1 && m.bin_count[b] == 1, "edge split: bins %d,%d = %lld,%lld", b - 1,
            b, (long long)m.bin_count[b - 1], (long long)m.bin_count[b]);
}

static void test_regression(void)
{
    /* y = 0; mu = 0, 1, -3, 0.5; sigma = 1, 1, 1, 2 */
    const float y[4] = {0, 0, 0, 0}, mu[4] = {0, 1, -3, 0.5f}, sd[4] = {1, 1, 1, 2};
    vl_reg_metrics_t m;
    T_CHECK(metrics_regression(mu, sd, y, 4, 0, MPI_COMM_SELF, &m) == VL_OK, "regression");
    T_CHECK(m.n == 4, "reg n");
    T_CLOSE(m.rmse, sqrt((0 + 1 + 9 + 0.25) / 4), 1e-15, 0, "rmse");
    T_SAME(m.coverage95, 0.75, "coverage95");
    T_SAME(m.mean_std, 1.25, "mean_std");
    const double c = -0.5 * log(2 * 3.14159265358979323846);
    const double ll = (c + (c - 0.5) + (c - 4.5) + (c - log(2.0) - 0.5 * 0.0625)) / 4;
    T_CLOSE(m.loglik, ll, 1e-14, 0, "loglik");
    T_SAME(m.nll, -m.loglik, "nll = -loglik");
    /* coverage is inclusive at exactly 1.96 sigma: sigma = 1, |d| = 1.96f needs
     * |d| <= 1.96 in double; use sigma = 25, d = 49 = 1.96 * 25 exactly? 1.96*25
     * rounds to 49 in double, so this is on the boundary and must count. */
    const float y2[1] = {49}, mu2[1] = {0}, sd2[1] = {25};
    T_CHECK(1.96 * 25.0 == 49.0, "boundary premise");
    T_CHECK(metrics_regression(mu2, sd2, y2, 1, 0, MPI_COMM_SELF, &m) == VL_OK, "reg boundary");
    T_SAME(m.coverage95, 1.0, "coverage inclusive at 1.96 sigma");
}

static void test_softmax(void)
{
    const float x[6] = {0.0f, (float)log(2.0), (float)log(3.0), 1000.0f, 1001.0f, -INFINITY};
    float p[6], lp[6];
    metrics_softmax(x, 2, 3, p);
    metrics_log_softmax(x, 2, 3, lp);
    T_CLOSE(p[0], 1.0 / 6, 1e-6, 0, "softmax p0");
    T_CLOSE(p[1], 2.0 / 6, 1e-6, 0, "softmax p1");
    T_CLOSE(p[2], 3.0 / 6, 1e-6, 0, "softmax p2");
    T_CLOSE(lp[0], -log(6.0), 1e-6, 0, "log-softmax 0");
    const double e = exp(1.0);
    T_CLOSE(p[3], 1 / (1 + e), 1e-6, 0, "large logits p3");
    T_CLOSE(p[4], e / (1 + e), 1e-6, 0, "large logits p4");
    T_SAME(p[5], 0.0, "-inf logit");
    T_CLOSE(lp[3], -log1p(e), 1e-6, 0, "log-softmax large");
    T_CHECK(isinf(lp[5]) && lp[5] < 0, "log-softmax of -inf logit = %g", lp[5]);
    float q[3] = {1.0f, 2.0f, 3.0f}; /* in place */
    metrics_softmax(q, 1, 3, q);
    T_CLOSE(q[0] + q[1] + q[2], 1.0, 1e-6, 0, "in-place softmax sums to 1");
    T_CLOSE(q[2] / q[0], exp(2.0), 1e-5, 0, "in-place softmax ratio");
    float nanrow[2] = {NAN, 1.0f};
    metrics_softmax(nanrow, 1, 2, nanrow);
    T_CHECK(isnan(nanrow[1]), "NaN logit poisons the row");
}

static void test_errors(void)
{
    const float p[4] = {0.5f, 0.5f, 0.25f, 0.75f};
    int32_t y[2] = {0, 2};
    vl_class_metrics_t m;
    expect_fail(metrics_classification(p, y, 2, 2, 0, MPI_COMM_SELF, &m), "label 2 of example 1",
                "label out of range");
    y[1] = 1;
    expect_fail(metrics_classification(p, y, 2, 2, 5, MPI_COMM_SELF, &m), "tile", "gap");
    expect_fail(metrics_classification(p, y, 0, 2, 0, MPI_COMM_SELF, &m), "empty", "empty");
    expect_fail(metrics_classification(p, y, 2, 0, 0, MPI_COMM_SELF, &m), "C = 0", "C = 0");
    expect_fail(metrics_classification(NULL, y, 2, 2, 0, MPI_COMM_SELF, &m), "NULL", "NULL probs");
    const float bad[4] = {0.5f, 0.5f, NAN, 1.0f};
    expect_fail(metrics_classification(bad, y, 2, 2, 0, MPI_COMM_SELF, &m), "class 0 for example 1",
                "NaN prob");
    const float neg[4] = {1.5f, -0.5f, 0.5f, 0.5f};
    expect_fail(metrics_classification(neg, y, 2, 2, 0, MPI_COMM_SELF, &m), "outside [0, 1]", "p > 1");
    vl_reg_metrics_t r;
    const float mu[2] = {0, 0}, y2[2] = {0, 0}, sd0[2] = {1, 0}, mun[2] = {0, INFINITY};
    expect_fail(metrics_regression(mu, sd0, y2, 2, 0, MPI_COMM_SELF, &r), "std of example 1", "sigma 0");
    expect_fail(metrics_regression(mun, sd0 + 0, y2, 2, 0, MPI_COMM_SELF, &r), "mean of example 1",
                "mu inf");
    expect_fail(metrics_regression(mu, sd0, y2, -1, 0, MPI_COMM_SELF, &r), "negative", "n < 0");
    T_CHECK(vl_error_status() == VL_OK, "error state cleared");
}

/* ------------------------------------------------------------- random data */

/* Deterministic dataset, row i from its own RNG stream, so any rank can build
 * any row. logits (n, C); probs = softmax with a few rows replaced by exact
 * one-hot rows (ties at confidence 1, and p_y = 0) and uniform rows (ties in
 * argmax and confidence); labels mostly drawn from the row's probabilities. */
static void make_class_data(int64_t n, int C, uint64_t seed, float *logits, float *sm, float *lsm,
                            float *probs, int32_t *labels)
{
    for (int64_t i = 0; i < n; i++) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_TEST, 1, (uint64_t)i));
        const double temp = 0.3 + 4.0 * rng_uniform(&r);
        for (int c = 0; c < C; c++) logits[i * C + c] = (float)(temp * rng_normal(&r));
    }
    metrics_softmax(logits, n, C, sm);
    metrics_log_softmax(logits, n, C, lsm);
    memcpy(probs, sm, sizeof(float) * (size_t)n * (size_t)C);
    for (int64_t i = 0; i < n; i++) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_TEST, 2, (uint64_t)i));
        float *p = probs + i * C;
        int y = (int)rng_below(&r, (uint64_t)C);
        if (rng_uniform(&r) < 0.8) { /* sample the label from the prediction */
            double u = rng_uniform(&r), cum = 0;
            for (y = 0; y < C - 1; y++) {
                cum += p[y];
                if (u < cum) break;
            }
        }
        labels[i] = y;
        if (i % 16 == 7) { /* exact one-hot, ~6% of the rows: a tie at confidence 1
                              * across the last two count bins; right in the first
                              * half of the set, wrong (p_y = 0) in the second, so
                              * the tie order decides the accuracy of both bins */
            for (int c = 0; c < C; c++) p[c] = 0.0f;
            p[i < n / 2 ? y : (y + 1) % C] = 1.0f;
        } else if (i % 50 == 11) {
            for (int c = 0; c < C; c++) p[c] = 1.0f / C;
        }
    }
}

static void make_reg_data(int64_t n, uint64_t seed, float *mu, float *sd, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_TEST, 3, (uint64_t)i));
        mu[i] = (float)(2.0 * rng_normal(&r));
        sd[i] = (float)(0.2 + 1.8 * rng_uniform(&r));
        const double scale = 0.5 + rng_uniform(&r); /* over- and under-confident */
        y[i] = i % 37 == 0 ? mu[i] : (float)(mu[i] + scale * sd[i] * rng_normal(&r));
    }
}

/* ------------------------------------------------------------ NumPy compare */

typedef struct {
    char name[32];
    double value;
    int used;
} ref_t;

static ref_t refs[512];
static int n_refs;

static double ref(const char *name)
{
    for (int k = 0; k < n_refs; k++)
        if (!strcmp(refs[k].name, name)) {
            refs[k].used = 1;
            return refs[k].value;
        }
    T_CHECK(0, "reference lacks %s", name);
    return NAN;
}

static double refi(const char *name, int i)
{
    char key[32];
    snprintf(key, sizeof key, "%s[%d]", name, i);
    return ref(key);
}

static int write_all(FILE *f, const void *p, size_t size, size_t n)
{
    return fwrite(p, size, n, f) == n;
}

static void run_numpy(const char *script, const char *dir)
{
    enum { N = 1013, C = 10, M = 500 }; /* N % 20 != 0: uneven count bins */
    float *logits = malloc(sizeof(float) * N * C), *sm = malloc(sizeof(float) * N * C),
          *lsm = malloc(sizeof(float) * N * C), *probs = malloc(sizeof(float) * N * C);
    int32_t *labels = malloc(sizeof(int32_t) * N);
    float mu[M], sd[M], y[M];
    make_class_data(N, C, 2024, logits, sm, lsm, probs, labels);
    make_reg_data(M, 2024, mu, sd, y);

    char path[4096], cmd[8192];
    snprintf(path, sizeof path, "%s/metrics_data.bin", dir);
    FILE *f = fopen(path, "wb");
    T_CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    const int64_t hdr[2] = {N, C}, m64 = M;
    int ok = write_all(f, hdr, sizeof(int64_t), 2) && write_all(f, logits, sizeof(float), N * C) &&
             write_all(f, sm, sizeof(float), N * C) && write_all(f, lsm, sizeof(float), N * C) &&
             write_all(f, probs, sizeof(float), N * C) && write_all(f, labels, sizeof(int32_t), N) &&
             write_all(f, &m64, sizeof(int64_t), 1) && write_all(f, mu, sizeof(float), M) &&
             write_all(f, sd, sizeof(float), M) && write_all(f, y, sizeof(float), M);
    T_CHECK(fclose(f) == 0 && ok, "write %s", path);

    const char *python = getenv("PYTHON");
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python && *python ? python : "/usr/bin/python3", script,
             path);
    FILE *pipe = popen(cmd, "r");
    T_CHECK(pipe != NULL, "cannot run %s", cmd);
    if (!pipe) return;
    char line[256];
    while (fgets(line, sizeof line, pipe) && n_refs < (int)(sizeof refs / sizeof refs[0])) {
        ref_t *r = &refs[n_refs];
        if (sscanf(line, "%31s %lf", r->name, &r->value) == 2) n_refs++;
    }
    T_CHECK(pclose(pipe) == 0, "%s failed", cmd);
    T_CHECK(n_refs > 100, "only %d reference values", n_refs);

    vl_class_metrics_t m;
    vl_reg_metrics_t r;
    T_CHECK(metrics_classification(probs, labels, N, C, 0, MPI_COMM_SELF, &m) == VL_OK, "classification: %s",
            vl_error_message());
    T_CHECK(metrics_regression(mu, sd, y, M, 0, MPI_COMM_SELF, &r) == VL_OK, "regression: %s",
            vl_error_message());
    const double rt = 1e-12, at = 1e-14;
    T_SAME((double)m.n, ref("n"), "n");
    T_CLOSE(m.accuracy, ref("accuracy"), rt, at, "accuracy");
    T_CLOSE(m.error, ref("error"), rt, at, "error");
    T_CLOSE(m.nll, ref("nll"), rt, at, "nll");
    T_CLOSE(m.brier, ref("brier"), rt, at, "brier");
    T_CLOSE(m.entropy, ref("entropy"), rt, at, "entropy");
    T_CLOSE(m.ece, ref("ece"), rt, at, "ece");
    T_CLOSE(m.ece_count, ref("ece_count"), rt, at, "ece_count");
    char what[64];
    for (int b = 0; b < METRICS_BINS_WIDTH; b++) {
        snprintf(what, sizeof what, "width bin %d", b);
        T_SAME(m.bin_lo[b], refi("bin_lo", b), what);
        T_SAME(m.bin_hi[b], refi("bin_hi", b), what);
        T_SAME((double)m.bin_count[b], refi("bin_count", b), what);
        T_CLOSE_NAN(m.bin_conf[b], refi("bin_conf", b), rt, at, what);
        T_CLOSE_NAN(m.bin_acc[b], refi("bin_acc", b), rt, at, what);
    }
    for (int b = 0; b < METRICS_BINS_COUNT; b++) {
        snprintf(what, sizeof what, "count bin %d", b);
        T_SAME((double)m.cbin_count[b], refi("cbin_count", b), what);
        T_CLOSE_NAN(m.cbin_conf[b], refi("cbin_conf", b), rt, at, what);
        T_CLOSE_NAN(m.cbin_acc[b], refi("cbin_acc", b), rt, at, what);
    }
    T_SAME((double)r.n, ref("reg_n"), "reg n");
    T_CLOSE(r.rmse, ref("rmse"), rt, at, "rmse");
    T_CLOSE(r.loglik, ref("loglik"), rt, at, "loglik");
    T_CLOSE(r.nll, ref("reg_nll"), rt, at, "reg nll");
    T_CLOSE(r.coverage95, ref("coverage95"), rt, at, "coverage95");
    T_CLOSE(r.mean_std, ref("mean_std"), rt, at, "mean_std");
    /* float outputs of a double computation: within a float rounding */
    T_CHECK(ref("softmax_err") <= 1e-7, "softmax max abs error %g", ref("softmax_err"));
    T_CHECK(ref("log_softmax_err") <= 2e-7, "log-softmax max rel error %g", ref("log_softmax_err"));
    for (int k = 0; k < n_refs; k++) T_CHECK(refs[k].used, "reference value %s not compared", refs[k].name);

    /* the data exercise what they should */
    int empty = 0, tied_top = 0;
    for (int b = 0; b < METRICS_BINS_WIDTH; b++) empty += m.bin_count[b] == 0;
    for (int i = 0; i < N; i++) tied_top += i % 16 == 7;
    T_CHECK(empty >= 1 && empty < METRICS_BINS_WIDTH - 3, "%d empty width bins", empty);
    T_CHECK(m.nll > 1.0 && m.accuracy > 0.3 && m.accuracy < 0.95 && m.ece > 1e-3 && tied_top > METRICS_BINS_COUNT && tied_top > N / METRICS_BINS_COUNT,
            "dataset not as intended: nll %g accuracy %g ece %g", m.nll, m.accuracy, m.ece);
    T_CHECK(r.coverage95 > 0.5 && r.coverage95 < 1.0, "coverage %g", r.coverage95);
    printf("numpy: n %lld accuracy %.6f nll %.6f brier %.6f ece %.6f ece_count %.6f rmse %.6f loglik %.6f "
           "coverage %.4f\n",
           (long long)m.n, m.accuracy, m.nll, m.brier, m.ece, m.ece_count, r.rmse, r.loglik, r.coverage95);
    free(logits);
    free(sm);
    free(lsm);
    free(probs);
    free(labels);
}

/* --------------------------------------------------------------- MPI ranks */

static void print_class(const char *tag, const vl_class_metrics_t *m)
{
    printf("M %s n %lld\n", tag, (long long)m->n);
    printf("M %s accuracy %.17g\nM %s error %.17g\nM %s nll %.17g\nM %s brier %.17g\n", tag, m->accuracy,
           tag, m->error, tag, m->nll, tag, m->brier);
    printf("M %s entropy %.17g\nM %s ece %.17g\nM %s ece_count %.17g\n", tag, m->entropy, tag, m->ece, tag,
           m->ece_count);
    for (int b = 0; b < METRICS_BINS_WIDTH; b++)
        printf("M %s bin[%d] %.17g %.17g %lld %.17g %.17g\n", tag, b, m->bin_lo[b], m->bin_hi[b],
               (long long)m->bin_count[b], m->bin_conf[b], m->bin_acc[b]);
    for (int b = 0; b < METRICS_BINS_COUNT; b++)
        printf("M %s cbin[%d] %lld %.17g %.17g\n", tag, b, (long long)m->cbin_count[b], m->cbin_conf[b],
               m->cbin_acc[b]);
}

/* Shard of rank `rank` of `size`: block size-1-rank of an uneven (quadratic)
 * cut of 0..n-1, so rank order and index order differ and sizes vary. */
static void shard(int64_t n, int rank, int size, int64_t *lo, int64_t *cnt)
{
    const int blk = size - 1 - rank;
    const int64_t a = n * blk * blk / ((int64_t)size * size);
    const int64_t b = n * (blk + 1) * (blk + 1) / ((int64_t)size * size);
    *lo = a;
    *cnt = b - a;
}

static void run_mpi(void)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int C = 10;
    const int64_t sizes[2] = {1003, 3}; /* n = 3: ranks without rows, empty bins */
    for (int t = 0; t < 2; t++) {
        const int64_t n = sizes[t];
        float *logits = malloc(sizeof(float) * n * C), *sm = malloc(sizeof(float) * n * C),
              *lsm = malloc(sizeof(float) * n * C), *probs = malloc(sizeof(float) * n * C);
        int32_t *labels = malloc(sizeof(int32_t) * n);
        float *mu = malloc(sizeof(float) * n), *sd = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        make_class_data(n, C, 77 + t, logits, sm, lsm, probs, labels);
        make_reg_data(n, 77 + t, mu, sd, y);
        int64_t lo, cnt;
        shard(n, rank, size, &lo, &cnt);

        vl_class_metrics_t md, ms;
        vl_reg_metrics_t rd, rs;
        T_CHECK(metrics_classification(probs + lo * C, labels + lo, cnt, C, lo, MPI_COMM_WORLD, &md) == VL_OK,
                "distributed classification: %s", vl_error_message());
        T_CHECK(metrics_classification(probs, labels, n, C, 0, MPI_COMM_SELF, &ms) == VL_OK, "serial");
        T_CHECK(metrics_regression(mu + lo, sd + lo, y + lo, cnt, lo, MPI_COMM_WORLD, &rd) == VL_OK,
                "distributed regression: %s", vl_error_message());
        T_CHECK(metrics_regression(mu, sd, y, n, 0, MPI_COMM_SELF, &rs) == VL_OK, "serial regression");
        T_CHECK(memcmp(&md, &ms, sizeof md) == 0, "n=%lld: %d ranks differ from 1 rank: sum %.17g vs %.17g",
                (long long)n, size, class_sum(&md), class_sum(&ms));
        T_CHECK(memcmp(&rd, &rs, sizeof rd) == 0, "n=%lld: regression on %d ranks differs from 1 rank: "
                "loglik %.17g vs %.17g", (long long)n, size, rd.loglik, rs.loglik);
        if (rank == 0) {
            char tag[16];
            snprintf(tag, sizeof tag, "n%lld", (long long)n);
            print_class(tag, &md);
            printf("M %s reg %lld %.17g %.17g %.17g %.17g %.17g\n", tag, (long long)rd.n, rd.rmse, rd.nll,
                   rd.loglik, rd.coverage95, rd.mean_std);
        }

        if (t == 0 && size > 1) {
            /* collective failure: only the last rank has a bad label; every
             * rank must return the same error instead of hanging */
            int32_t save = labels[lo];
            if (rank == size - 1 && cnt > 0) labels[lo] = C;
            expect_fail(metrics_classification(probs + lo * C, labels + lo, cnt, C, lo, MPI_COMM_WORLD, &md),
                        "outside [0, 10)", "bad label on one rank");
            labels[lo] = save;
            /* overlapping shards: every rank claims to start at 0 */
            expect_fail(metrics_classification(probs, labels, cnt, C, 0, MPI_COMM_WORLD, &md), "overlap",
                        "overlap");
            /* differing C */
            const int32_t zero = 0;
            expect_fail(metrics_classification(probs, &zero, 1, rank == 0 ? C : C - 1, rank, MPI_COMM_WORLD,
                                               &md),
                        "classes", "C differs");
        }
        free(logits);
        free(sm);
        free(lsm);
        free(probs);
        free(labels);
        free(mu);
        free(sd);
        free(y);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc > 1 && !strcmp(argv[1], "--mpi")) {
        /* only rank 0 writes stdout (whole lines of several ranks interleave);
         * failures still go to stderr on every rank and are summed */
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
        run_mpi();
        int local[2] = {test_failures, test_checks}, total[2];
        MPI_Allreduce(local, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        test_failures = total[0];
        test_checks = total[1];
    } else if (argc > 3 && !strcmp(argv[1], "--numpy")) {
        run_numpy(argv[2], argv[3]);
    } else {
        test_one_hot();
        test_uniform(4);
        test_uniform(8);
        test_uniform(10);
        test_ece_hand();
        test_ties();
        test_edges();
        test_regression();
        test_softmax();
        test_errors();
    }
    int rc = finish();
    MPI_Finalize();
    return rc;
}
