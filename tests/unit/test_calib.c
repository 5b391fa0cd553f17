/* test_calib.c — temperature scaling (calib.c) and the entropy histogram (metrics_entropy).
 *
 *   test_calib          against independent references and closed forms (1 rank):
 *     - two sets of fixed random logits (an overconfident model, T > 1, and an underconfident
 *       one, T < 1): T against SciPy's bounded Brent minimiser of the NLL (1e-6 relative),
 *       against brentq on the analytic derivative in NumPy (1e-9), against a dense grid (its
 *       spacing); the NLL at T and at T = 1 against NumPy (1e-12);
 *     - calibrated by construction: labels drawn from softmax(z / T0) for 100 000 examples;
 *       the fitted T is the maximum-likelihood estimate of T0, asymptotically normal in
 *       u = log T with standard error 1 / sqrt(N I), I = E[beta0^2 Var_p(z)] the Fisher
 *       information per example; |log T - log T0| must be within 4 standard errors (the
 *       standard error is ~0.003 here, so T = 1 would fail by hundreds of them);
 *     - closed forms: equal logits (no information: T = 1 exactly), perfectly separated
 *       logits (the NLL falls as T -> 0: T at CALIB_T_MIN, at_bound), a non-finite logit
 *       (VL_ENUM) and a bad label (VL_EINPUT), both collective;
 *     - calib_softmax at T = 1 equals metrics_softmax bit for bit, and the NLL of its float
 *       probabilities at the fitted T equals the fit's NLL to float rounding;
 *     - metrics_entropy against NumPy (mean 1e-12, every bin count exact), with a uniform row
 *       (H = log K: the last bin) and one-hot rows (H = 0: bin 0).
 *   mpirun -np P test_calib --mpi   the same logits spread unevenly over P ranks: T equal to
 *       the 1-rank fit to 1e-12 relative (the sums' order changes), the entropy mean and
 *       histogram bit-identical (gathered in global order).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "valley/calib.h"
#include "valley/error.h"
#include "valley/metrics.h"
#include "valley/rng.h"
#include "valley/test.h"

/* Logits z_ic = scale * N(0, 1) + (c == y_i) * shift with labels y_i uniform: shift > 0 makes the
 * labelled class stand out; the size of scale against shift sets how (over)confident the model is. */
static void make_logits(int64_t n, int C, double scale, double shift, uint64_t seed, float *z, int32_t *y)
{
    vl_rng_t r;
    rng_init(&r, seed, rng_stream(RNG_TEST, 18, 1));
    for (int64_t i = 0; i < n; i++) {
        y[i] = (int32_t)rng_below(&r, (uint64_t)C);
        for (int c = 0; c < C; c++) z[i * C + c] = (float)(scale * rng_normal(&r) + (c == y[i] ? shift : 0.0));
        /* a label that is not the largest logit for about a third of the rows: an imperfect model */
        if (rng_uniform(&r) < 0.3) y[i] = (int32_t)rng_below(&r, (uint64_t)C);
    }
}

typedef struct { char name[32]; double v; int used; } ref_t;
static ref_t refs[64];
static int nrefs;
static double ref(const char *name)
{
    for (int k = 0; k < nrefs; k++)
        if (!strcmp(refs[k].name, name)) { refs[k].used = 1; return refs[k].v; }
    T_CHECK(0, "reference value %s missing", name);
    return NAN;
}

enum { ENT_M = 503, ENT_K = 7 };

/* Probabilities for the entropy check: softmax of random logits of varied sharpness, a uniform row
 * and two one-hot rows. */
static void make_probs(float *p)
{
    vl_rng_t r;
    rng_init(&r, 5, rng_stream(RNG_TEST, 18, 2));
    float z[ENT_K];
    for (int i = 0; i < ENT_M; i++) {
        const double s = 0.1 + 6.0 * rng_uniform(&r);
        for (int c = 0; c < ENT_K; c++) z[c] = (float)(s * rng_normal(&r));
        metrics_softmax(z, 1, ENT_K, p + (size_t)i * ENT_K);
    }
    for (int c = 0; c < ENT_K; c++) {
        p[0 * ENT_K + c] = 1.0f / ENT_K;
        p[1 * ENT_K + c] = c == 3 ? 1.0f : 0.0f;
        p[(ENT_M - 1) * ENT_K + c] = c == 0 ? 1.0f : 0.0f;
    }
}

/* Writes the data, runs tests/py/calib_ref.py, reads its values into refs. */
static int run_reference(const float *z, const int32_t *y, int64_t n, int C, const float *p)
{
    char dir[] = "/tmp/test_calib.XXXXXX", path[256], cmd[1024];
    if (!mkdtemp(dir)) { T_CHECK(0, "mkdtemp"); return 1; }
    snprintf(path, sizeof path, "%s/data.bin", dir);
    FILE *f = fopen(path, "wb");
    const int64_t hdr[2] = {n, C}, hdr2[3] = {ENT_M, ENT_K, METRICS_ENTROPY_BINS};
    int ok = f && fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(z, sizeof(float), (size_t)(n * C), f) == (size_t)(n * C) &&
             fwrite(y, sizeof(int32_t), (size_t)n, f) == (size_t)n && fwrite(hdr2, sizeof hdr2, 1, f) == 1 &&
             fwrite(p, sizeof(float), ENT_M * ENT_K, f) == ENT_M * ENT_K;
    if (f) ok &= fclose(f) == 0;
    T_CHECK(ok, "cannot write %s", path);
    const char *py = getenv("PYTHON");
    snprintf(cmd, sizeof cmd, "'%s' tests/py/calib_ref.py '%s'", py && *py ? py : "/usr/bin/python3", path);
    FILE *pipe = popen(cmd, "r");
    nrefs = 0;
    char line[256];
    while (pipe && fgets(line, sizeof line, pipe) && nrefs < 64)
        if (sscanf(line, "%31s %lf", refs[nrefs].name, &refs[nrefs].v) == 2) refs[nrefs++].used = 0;
    int rc = pipe ? pclose(pipe) : -1;
    T_CHECK(rc == 0, "%s failed (status %d): SciPy and NumPy are required (Debian's python3-scipy, a dependency of "
                     "python3-sklearn); this test does not skip", cmd, rc);
    unlink(path);
    rmdir(dir);
    return rc != 0;
}

static void test_against_scipy(double scale, double shift, const char *what)
{
    enum { N = 3001, C = 10 };
    float *z = malloc(sizeof(float) * N * C), *p = malloc(sizeof(float) * ENT_M * ENT_K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    make_logits(N, C, scale, shift, 7, z, y);
    make_probs(p);
    if (run_reference(z, y, N, C, p)) goto done;
    vl_temp_fit_t fit;
    int st = calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit);
    T_CHECK(st == VL_OK, "%s: fit failed: %s", what, vl_error_message());
    printf("%s: T = %.12f (scipy Brent %.12f, brentq on the derivative %.12f, grid %.4f) in %d evaluations; "
           "NLL %.6f -> %.6f\n", what, fit.temperature, ref("T_brent"), ref("T_root"), ref("T_grid"), fit.evaluations,
           fit.nll_t1, fit.nll);
    T_CLOSE(fit.temperature, ref("T_brent"), 1e-6, 0, "T against scipy's bounded Brent");
    T_CLOSE(fit.temperature, ref("T_root"), 1e-9, 0, "T against brentq on the derivative");
    T_CLOSE(fit.temperature, ref("T_grid"), 0.005, 0, "T against the grid minimum");
    T_CLOSE(fit.nll, ref("nll"), 1e-12, 0, "NLL at T");
    T_CLOSE(fit.nll_t1, ref("nll_t1"), 1e-12, 0, "NLL at T = 1");
    T_CHECK(fit.n == N && !fit.at_bound && fit.evaluations < 40, "n %lld, at_bound %d, %d evaluations",
            (long long)fit.n, fit.at_bound, fit.evaluations);
    T_CHECK(fit.nll < fit.nll_t1, "scaling does not lower the NLL: %g >= %g", fit.nll, fit.nll_t1);
    /* the probabilities the method reports: their NLL (double over float probabilities) is the fit's */
    float *q = malloc(sizeof(float) * N * C), *q1 = malloc(sizeof(float) * N * C);
    calib_softmax(z, N, C, fit.temperature, q);
    double s = 0;
    for (int i = 0; i < N; i++) s -= log((double)q[(size_t)i * C + y[i]]);
    T_CLOSE(s / N, fit.nll, 1e-6, 0, "NLL of calib_softmax's probabilities");
    calib_softmax(z, N, C, 1.0, q);
    metrics_softmax(z, N, C, q1);
    T_CHECK(!memcmp(q, q1, sizeof(float) * N * C), "calib_softmax at T = 1 differs from metrics_softmax");
    free(q);
    free(q1);
    /* the entropy histogram */
    double mean;
    int64_t cnt[METRICS_ENTROPY_BINS];
    st = metrics_entropy(p, ENT_M, ENT_K, 0, MPI_COMM_SELF, METRICS_ENTROPY_BINS, &mean, cnt);
    T_CHECK(st == VL_OK, "metrics_entropy: %s", vl_error_message());
    T_CLOSE(mean, ref("ent_mean"), 1e-12, 0, "mean entropy");
    char name[32];
    int64_t total = 0;
    for (int b = 0; b < METRICS_ENTROPY_BINS; b++) {
        snprintf(name, sizeof name, "ent_bin_%d", b);
        T_CHECK((double)cnt[b] == ref(name), "entropy bin %d: %lld, numpy %g", b, (long long)cnt[b], ref(name));
        total += cnt[b];
    }
    T_CHECK(total == ENT_M && cnt[0] >= 2 && cnt[METRICS_ENTROPY_BINS - 1] >= 1, "histogram: %lld rows, bin 0 %lld, last %lld",
            (long long)total, (long long)cnt[0], (long long)cnt[METRICS_ENTROPY_BINS - 1]);
    for (int k = 0; k < nrefs; k++) T_CHECK(refs[k].used, "reference value %s not compared", refs[k].name);
done:
    free(z);
    free(y);
    free(p);
}

/* Labels drawn from softmax(z / T0): the fit is the MLE of T0. */
static void test_calibrated(double T0, double sigma)
{
    enum { N = 100000, C = 10 };
    float *z = malloc(sizeof(float) * N * C), q[C];
    int32_t *y = malloc(sizeof(int32_t) * N);
    vl_rng_t r;
    rng_init(&r, 11, rng_stream(RNG_TEST, 18, 3));
    const double b0 = 1.0 / T0;
    double info = 0;
    for (int i = 0; i < N; i++) {
        float *zi = z + (size_t)i * C, zs[C];
        for (int c = 0; c < C; c++) {
            zi[c] = (float)(sigma * rng_normal(&r));
            zs[c] = (float)(b0 * zi[c]);
        }
        metrics_softmax(zs, 1, C, q);
        double u = rng_uniform(&r), acc = 0, e1 = 0, e2 = 0;
        y[i] = C - 1;
        for (int c = 0; c < C; c++) {
            acc += q[c];
            if (u < acc) { y[i] = c; break; }
        }
        for (int c = 0; c < C; c++) {
            e1 += q[c] * zi[c];
            e2 += q[c] * (double)zi[c] * zi[c];
        }
        info += b0 * b0 * (e2 - e1 * e1); /* Fisher information of u = log T from example i */
    }
    const double se = 1.0 / sqrt(info);
    vl_temp_fit_t fit;
    int st = calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit);
    T_CHECK(st == VL_OK, "fit: %s", vl_error_message());
    const double dev = (log(fit.temperature) - log(T0)) / se;
    printf("calibrated by construction, T0 = %g (logits sd %g, %d examples): T = %.5f, standard error of log T %.5f, "
           "%+.2f standard errors\n", T0, sigma, N, fit.temperature, se, dev);
    T_CHECK(se < 0.01, "standard error %g: the check would be weak", se);
    T_CHECK(fabs(dev) < 4, "T = %g is %.2f standard errors from T0 = %g", fit.temperature, dev, T0);
    free(z);
    free(y);
}

static void test_closed_forms(void)
{
    enum { N = 40, C = 5 };
    float z[N * C];
    int32_t y[N];
    vl_temp_fit_t fit;
    /* equal logits: the NLL is log C whatever T */
    for (int i = 0; i < N * C; i++) z[i] = 1.5f;
    for (int i = 0; i < N; i++) y[i] = i % C;
    T_CHECK(calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit) == VL_OK, "flat: %s", vl_error_message());
    T_CHECK(fit.temperature == 1.0 && fabs(fit.nll - log(C)) < 1e-14, "flat logits: T %.17g nll %.17g", fit.temperature,
            fit.nll);
    /* separated: every label has the largest logit; the NLL falls toward 0 as T -> 0 */
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) z[i * C + c] = c == y[i] ? 2.0f : (float)(-0.1 * c);
    T_CHECK(calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit) == VL_OK, "separated: %s", vl_error_message());
    T_CHECK(fit.at_bound && fabs(fit.temperature - CALIB_T_MIN) < 1e-12 * CALIB_T_MIN,
            "separated logits: T %g, at_bound %d", fit.temperature, fit.at_bound);
    /* bad input */
    z[7] = NAN;
    vl_error_clear();
    int st = calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit);
    T_CHECK(st == VL_ENUM && vl_error_collective() && strstr(vl_error_message(), "non-finite logit"),
            "NaN logit: status %d, %s", st, vl_error_message());
    vl_error_clear();
    z[7] = 0;
    y[3] = C;
    st = calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &fit);
    T_CHECK(st == VL_EINPUT && vl_error_collective() && strstr(vl_error_message(), "label(s) outside 0..4"),
            "bad label: status %d, %s", st, vl_error_message());
    vl_error_clear();
    st = calib_fit_temperature(z, y, 0, C, MPI_COMM_SELF, &fit);
    T_CHECK(st == VL_EINPUT && strstr(vl_error_message(), "no validation example"), "empty: status %d, %s", st,
            vl_error_message());
    vl_error_clear();
}

/* The same logits over P ranks in uneven shards (rank r holds a block whose size grows with r). */
static void run_mpi(void)
{
    enum { N = 3001, C = 10 };
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    float *z = malloc(sizeof(float) * N * C), *p = malloc(sizeof(float) * ENT_M * ENT_K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    make_logits(N, C, 2.0, 4.0, 7, z, y);
    make_probs(p);
    vl_temp_fit_t one, all;
    T_CHECK(calib_fit_temperature(z, y, N, C, MPI_COMM_SELF, &one) == VL_OK, "1-rank fit");
    /* shard r: rows [N r^2 / P^2, N (r+1)^2 / P^2) */
    const int64_t lo = (int64_t)N * rank * rank / ((int64_t)size * size),
                  hi = (int64_t)N * (rank + 1) * (rank + 1) / ((int64_t)size * size);
    T_CHECK(calib_fit_temperature(z + lo * C, y + lo, hi - lo, C, MPI_COMM_WORLD, &all) == VL_OK, "fit: %s",
            vl_error_message());
    if (rank == 0)
        printf("%d ranks: T = %.17g, 1 rank %.17g (relative difference %.2g), NLL %.17g / %.17g\n", size,
               all.temperature, one.temperature, fabs(all.temperature / one.temperature - 1), all.nll, one.nll);
    T_CLOSE(all.temperature, one.temperature, 1e-12, 0, "T over the ranks");
    T_CLOSE(all.nll, one.nll, 1e-12, 0, "NLL over the ranks");
    T_CHECK(all.n == N, "n %lld", (long long)all.n);
    double m1, mp;
    int64_t c1[METRICS_ENTROPY_BINS], cp[METRICS_ENTROPY_BINS];
    const int64_t elo = (int64_t)ENT_M * (size - 1 - rank) / size, ehi = (int64_t)ENT_M * (size - rank) / size;
    T_CHECK(metrics_entropy(p, ENT_M, ENT_K, 0, MPI_COMM_SELF, METRICS_ENTROPY_BINS, &m1, c1) == VL_OK, "entropy 1");
    T_CHECK(metrics_entropy(p + elo * ENT_K, ehi - elo, ENT_K, elo, MPI_COMM_WORLD, METRICS_ENTROPY_BINS, &mp, cp) ==
                VL_OK, "entropy P: %s", vl_error_message());
    T_CHECK(m1 == mp && !memcmp(c1, cp, sizeof c1), "entropy over %d ranks: %.17g vs %.17g", size, mp, m1);
    free(z);
    free(y);
    free(p);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc > 1 && !strcmp(argv[1], "--mpi")) {
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
        run_mpi();
        int local[2] = {test_failures, test_checks}, total[2];
        MPI_Allreduce(local, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        test_failures = total[0];
        test_checks = total[1];
    } else {
        test_against_scipy(2.0, 4.0, "overconfident logits");
        test_against_scipy(0.3, 0.8, "underconfident logits");
        test_calibrated(2.5, 3.0);
        test_calibrated(0.5, 0.8);
        test_closed_forms();
    }
    printf("%d checks, %d failed\n", test_checks, test_failures);
    const int rc = (test_failures || !test_checks) ? 1 : 0;
    MPI_Finalize();
    return rc;
}
