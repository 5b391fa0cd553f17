/* test_swag.c — SWA/SWAG moments, deviation ring and sampling (SPEC §4) against
 * independent references computed here in double:
 *  1. swag_mean / swag_variance against a shifted two-pass computation over the
 *     stored float iterates, including coordinates whose mean is 10^3..10^6 times
 *     their standard deviation, constant coordinates (clamped to SWAG_VAR_MIN and
 *     counted) and tiny-variance coordinates on both sides of the clamp;
 *  2. the deviation ring: K = 5 after 8 collections holds the deviations
 *     w_i − w̄_i of collections 4..8, oldest first, bit for bit;
 *  3. swag_sample: empirical mean and covariance of 200000 samples against
 *     w̄ and s·(diag(σ²) + DᵀD/(ndev−1)) within 5 Monte-Carlo standard errors
 *     (Var(x_i x_j) = S_ii S_jj + S_ij² for a centred Gaussian), SWAG-Diag,
 *     ndev < 2, scale 0, the documented draw order, and determinism. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/rng.h"
#include "valley/swag.h"
#include "valley/test.h"

/* ---------------------------------------------------------------- 1. moments */

enum { M_D = 1000, M_N = 50 };
enum { C_PLAIN, C_RATIO, C_RATIO6, C_CONST, C_TINY_ABOVE, C_TINY_BELOW, C_KINDS };

static void test_moments(void)
{
    static float it[M_N][M_D];
    int kind[M_D];
    vl_rng_t r;
    rng_init(&r, 20240601, rng_stream(RNG_TEST, 1, 0));
    /* Coordinate kinds by i % 10: 0-3 plain, 4-5 mean/std 10^3..10^6, 6 mean/std
     * exactly 10^6, 7 constant, 8 variance ~1e-28 (above the clamp), 9 variance
     * ~1e-34 (below the clamp, not constant). */
    static const int kind_of[10] = {C_PLAIN, C_PLAIN, C_PLAIN, C_PLAIN, C_RATIO, C_RATIO,
                                    C_RATIO6, C_CONST, C_TINY_ABOVE, C_TINY_BELOW};
    int nconst = 0, ntiny_below = 0;
    for (int i = 0; i < M_D; i++) {
        kind[i] = kind_of[i % 10];
        double mu = 0, sd = 0;
        double sign = rng_uniform(&r) < 0.5 ? -1.0 : 1.0;
        switch (kind[i]) {
        case C_PLAIN: mu = 10 * rng_normal(&r); sd = 0.1 + 2 * rng_uniform(&r); break;
        case C_RATIO:
            mu = sign * pow(10.0, 3 * rng_uniform(&r));                /* 1 .. 1e3 */
            sd = fabs(mu) / pow(10.0, 3 + 3 * rng_uniform(&r));       /* ratio 1e3 .. 1e6 */
            break;
        case C_RATIO6: mu = sign * pow(10.0, 4 * rng_uniform(&r) - 1); sd = fabs(mu) * 1e-6; break;
        case C_CONST:
            mu = (i / 10) % 3 == 0 ? 0.0 : (i / 10) % 3 == 1 ? 1e6 * sign : rng_normal(&r);
            sd = 0;
            nconst++;
            break;
        case C_TINY_ABOVE: mu = 1e-13 * rng_normal(&r); sd = 1e-14; break;
        case C_TINY_BELOW: mu = 0; sd = 1e-17; ntiny_below++; break;
        }
        for (int k = 0; k < M_N; k++) it[k][i] = (float)(mu + sd * rng_normal(&r));
    }

    vl_swag_t s;
    T_CHECK(swag_init(&s, M_D, 3) == 0, "swag_init");
    float *var = malloc(M_D * sizeof *var), *mean = malloc(M_D * sizeof *mean);
    /* Before any collection: variance 0 everywhere and nothing counted. */
    T_CHECK(swag_variance(&s, var) == 0, "clamp count with n = 0");
    int zero = 1;
    for (int i = 0; i < M_D; i++) zero &= var[i] == 0.0f;
    T_CHECK(zero, "variance with n = 0 is 0");

    for (int k = 0; k < M_N; k++) swag_collect(&s, it[k]);
    T_CHECK(s.n == M_N, "n = %lld", (long long)s.n);
    int64_t clamped = swag_variance(&s, var);
    swag_mean(&s, mean);

    /* Reference: two passes in double over the float iterates, shifted by the first
     * iterate (x_k − x_0 is exact in double), so the reference is accurate to a few
     * ulps of σ even when |mean|/σ = 10^6. */
    const float var_min_f = (float)SWAG_VAR_MIN;
    int64_t want_clamped = 0;
    int bad_mean = 0, bad_mean_f = 0, bad_var = 0, bad_var_f = 0, neg = 0, below = 0, bad_clamp_val = 0;
    int design_ok = 1;
    double worst_var_rel[C_KINDS] = {0}, worst_mean_rel = 0;
    for (int i = 0; i < M_D; i++) {
        const double x0 = it[0][i];
        double sdx = 0, amax = 0;
        for (int k = 0; k < M_N; k++) {
            sdx += (double)it[k][i] - x0;
            amax = fmax(amax, fabs((double)it[k][i]));
        }
        const double md = sdx / M_N, ref_mean = x0 + md;
        double ss = 0;
        for (int k = 0; k < M_N; k++) {
            const double e = ((double)it[k][i] - x0) - md;
            ss += e * e;
        }
        const double ref_var = ss / M_N;
        /* The data are built so no reference variance is near the clamp threshold. */
        if (ref_var != 0 && ref_var > 1e-32 && ref_var < 1e-29) design_ok = 0;
        if ((kind[i] == C_CONST) != (ref_var == 0)) design_ok = 0;
        if (kind[i] == C_TINY_BELOW && !(ref_var > 0 && ref_var < SWAG_VAR_MIN)) design_ok = 0;
        if (kind[i] == C_TINY_ABOVE && !(ref_var > SWAG_VAR_MIN)) design_ok = 0;
        if ((kind[i] == C_RATIO || kind[i] == C_RATIO6) &&
            !(fabs(ref_mean) / sqrt(ref_var) > 5e2 && fabs(ref_mean) / sqrt(ref_var) < 2e6))
            design_ok = 0;
        const int is_clamped = ref_var < SWAG_VAR_MIN;
        want_clamped += is_clamped;

        /* Mean in double: relative 1e-10 (scaled by max |x| for means near 0). */
        const double em = fabs(s.mean[i] - ref_mean);
        worst_mean_rel = fmax(worst_mean_rel, em / fmax(amax, 1e-300));
        if (!(em <= 1e-10 * fmax(fabs(ref_mean), amax) + 1e-300)) {
            if (bad_mean++ < 5)
                fprintf(stderr, "  mean[%d] kind %d: got %.17g want %.17g\n", i, kind[i], s.mean[i], ref_mean);
        }
        /* Float mean: the reference rounded to float, within one float ulp. */
        if (!(fabs((double)mean[i] - ref_mean) <= FLT_EPSILON * fabs(ref_mean) + 1e-300 ||
              (ref_mean == 0 && mean[i] == 0))) {
            if (bad_mean_f++ < 5) fprintf(stderr, "  swag_mean[%d]: got %.9g want %.17g\n", i, mean[i], ref_mean);
        }
        /* Variance in double (M2/n): relative 1e-10 wherever it is non-zero. */
        const double got_var = s.m2[i] / (double)s.n;
        if (s.m2[i] < 0) neg++;
        if (ref_var > 0) {
            const double ev = fabs(got_var - ref_var) / ref_var;
            worst_var_rel[kind[i]] = fmax(worst_var_rel[kind[i]], ev);
            if (!(ev <= 1e-10)) {
                if (bad_var++ < 5)
                    fprintf(stderr, "  M2/n[%d] kind %d (|mean|/std %.3g): got %.17g want %.17g (rel %.3g)\n", i,
                            kind[i], fabs(ref_mean) / sqrt(ref_var), got_var, ref_var, ev);
            }
        } else if (!(got_var < SWAG_VAR_MIN)) {
            if (bad_var++ < 5) fprintf(stderr, "  M2/n[%d] constant: got %.17g want 0\n", i, got_var);
        }
        /* Float variance: clamped entries are exactly (float)SWAG_VAR_MIN, the others the
         * reference rounded to float (within one float ulp). */
        if (var[i] < 0) neg++;
        if (var[i] < var_min_f) below++;
        if (is_clamped) {
            if (var[i] != var_min_f) bad_clamp_val++;
        } else if (!(fabs((double)var[i] - ref_var) <= FLT_EPSILON * ref_var)) {
            if (bad_var_f++ < 5) fprintf(stderr, "  var[%d]: got %.9g want %.17g\n", i, var[i], ref_var);
        }
    }
    printf("moments: worst mean error/max|x| %.3g; worst variance rel error: plain %.3g, ratio 1e3-1e6 %.3g, "
           "ratio 1e6 %.3g, tiny %.3g / %.3g\n",
           worst_mean_rel, worst_var_rel[C_PLAIN], worst_var_rel[C_RATIO], worst_var_rel[C_RATIO6],
           worst_var_rel[C_TINY_ABOVE], worst_var_rel[C_TINY_BELOW]);
    T_CHECK(design_ok, "test data do not have the intended properties");
    T_CHECK(want_clamped == nconst + ntiny_below, "expected clamps %lld != %d constant + %d tiny",
            (long long)want_clamped, nconst, ntiny_below);
    T_CHECK(bad_mean == 0, "%d means off by more than 1e-10 relative", bad_mean);
    T_CHECK(bad_mean_f == 0, "%d float means off by more than one ulp", bad_mean_f);
    T_CHECK(bad_var == 0, "%d variances (M2/n) off by more than 1e-10 relative", bad_var);
    T_CHECK(bad_var_f == 0, "%d float variances off by more than one ulp", bad_var_f);
    T_CHECK(neg == 0, "%d negative variances / M2", neg);
    T_CHECK(below == 0, "%d variances below SWAG_VAR_MIN", below);
    T_CHECK(bad_clamp_val == 0, "%d clamped variances not equal to SWAG_VAR_MIN", bad_clamp_val);
    T_CHECK(clamped == want_clamped, "swag_variance returned %lld clamps, want %lld", (long long)clamped,
            (long long)want_clamped);
    free(var);
    free(mean);
    swag_free(&s);
}

/* ------------------------------------------------------------ 2. deviations */

enum { R_D = 300, R_K = 5, R_N = 8 };

static void test_ring(void)
{
    /* Iterates are multiples of 1/4 in [-50, 50] plus a per-coordinate offset up to
     * ±1000 (also a multiple of 1/4): the running sums are exact in double, so
     * S_i/i is the correctly rounded running mean. A deviation (i·w_i − S_i)/i is
     * then a non-zero rational with denominator 4i, at least 1/(4·8·2^18) away
     * from a float rounding midpoint, while the double error of any correct
     * computation is ~1e-13: its float value is unique. Exact zeros (w_i equal to
     * the previous running mean) are avoided, where the sign of a 1-ulp residue
     * would be arbitrary. */
    static float it[R_N][R_D];
    static float want[R_N][R_D];
    vl_rng_t r;
    rng_init(&r, 7, rng_stream(RNG_TEST, 2, 0));
    for (int i = 0; i < R_D; i++) {
        const double off = (double)((int64_t)rng_below(&r, 8001) - 4000) / 4.0;
        double S = 0;
        for (int k = 0; k < R_N; k++) {
            double w = off + (double)((int64_t)rng_below(&r, 401) - 200) / 4.0;
            if (k > 0 && w * k == S) w += 0.25; /* w equal to the previous mean: deviation 0 */
            it[k][i] = (float)w;
            S += w;
            want[k][i] = (float)(w - S / (k + 1));
        }
    }
    vl_swag_t s;
    T_CHECK(swag_init(&s, R_D, R_K) == 0, "swag_init ring");
    T_CHECK(s.ndev == 0, "ndev before collecting: %d", s.ndev);
    for (int k = 0; k < R_N; k++) {
        swag_collect(&s, it[k]);
        const int n = k + 1, nd = n < R_K ? n : R_K;
        T_CHECK(s.ndev == nd, "after %d collections ndev = %d, want %d", n, s.ndev, nd);
        /* The stored deviations are collections n-nd+1 .. n, oldest first. */
        int bad = 0;
        for (int j = 0; j < s.ndev && j < nd; j++) {
            const float *dv = swag_deviation(&s, j);
            const int src = n - nd + j; /* 0-based collection index */
            for (int i = 0; i < R_D; i++) bad += dv[i] != want[src][i];
        }
        T_CHECK(bad == 0, "after %d collections: %d deviation entries differ from w_i - mean_i", n, bad);
    }
    /* Explicitly: K = 5 after 8 collections holds collections 4..8 (1-based). */
    int bad = 0;
    for (int j = 0; j < R_K; j++) {
        const float *dv = swag_deviation(&s, j);
        for (int i = 0; i < R_D; i++)
            if (dv[i] != want[3 + j][i]) {
                if (bad++ < 3)
                    fprintf(stderr, "  deviation %d [%d]: got %.9g want %.9g (collection %d)\n", j, i, dv[i],
                            want[3 + j][i], 4 + j);
            }
    }
    T_CHECK(bad == 0, "K=5 after 8: %d entries differ from the deviations of collections 4..8", bad);
    swag_free(&s);

    /* K = 0 (SWA only): no deviations, the mean is still collected. */
    T_CHECK(swag_init(&s, R_D, 0) == 0, "swag_init K = 0");
    for (int k = 0; k < R_N; k++) swag_collect(&s, it[k]);
    T_CHECK(s.ndev == 0 && s.dev == NULL, "K = 0 keeps no deviations (ndev %d)", s.ndev);
    double S0 = 0;
    for (int k = 0; k < R_N; k++) S0 += it[k][0];
    T_CLOSE(s.mean[0], S0 / R_N, 1e-15, 1e-12, "K = 0 mean");
    swag_free(&s);
}

/* -------------------------------------------------------------- 3. sampling */

enum { S_D = 6, S_K = 4, S_NS = 200000 };

typedef struct {
    double mean[S_D], var[S_D];  /* two-pass reference */
    double dev[S_K][S_D];        /* last ndev deviations, oldest first (double) */
    int ndev;
} ref_t;

/* Builds s by collecting the n given iterates and the reference moments in double. */
static void build(vl_swag_t *s, int K, int n, const double it[][S_D], ref_t *ref)
{
    float w[S_D];
    swag_init(s, S_D, K);
    double S[S_D] = {0};
    ref->ndev = n < K ? n : K;
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < S_D; i++) {
            w[i] = (float)it[k][i];
            S[i] += w[i];
        }
        swag_collect(s, w);
        const int slot = k - (n - ref->ndev);
        if (slot >= 0)
            for (int i = 0; i < S_D; i++) ref->dev[slot][i] = (double)w[i] - S[i] / (k + 1);
    }
    for (int i = 0; i < S_D; i++) {
        ref->mean[i] = S[i] / n;
        double ss = 0;
        for (int k = 0; k < n; k++) ss += ((double)(float)it[k][i] - ref->mean[i]) * ((double)(float)it[k][i] - ref->mean[i]);
        ref->var[i] = ss / n;
    }
}

/* Target covariance scale·(diag(var) + [lowrank] DᵀD/(ndev−1)). */
static void target_cov(const ref_t *ref, double scale, int lowrank, double C[S_D][S_D])
{
    for (int a = 0; a < S_D; a++)
        for (int b = 0; b < S_D; b++) {
            double c = a == b ? ref->var[a] : 0;
            if (lowrank) {
                double g = 0;
                for (int j = 0; j < ref->ndev; j++) g += ref->dev[j][a] * ref->dev[j][b];
                c += g / (ref->ndev - 1);
            }
            C[a][b] = scale * c;
        }
}

/* Draws S_NS samples and checks the empirical mean and covariance (about the known
 * mean) against ref/C, each entry within 5 standard errors. Returns the number of
 * entries outside. */
static int mc_check(const vl_swag_t *s, const float *var, double scale, int diag, const ref_t *ref,
                    double C[S_D][S_D], uint64_t stream, const char *what)
{
    vl_rng_t r;
    rng_init(&r, 99, rng_stream(RNG_TEST, 3, stream));
    double sum[S_D] = {0}, cross[S_D][S_D] = {{0}};
    float w[S_D];
    for (int n = 0; n < S_NS; n++) {
        swag_sample(s, var, scale, diag, &r, w);
        double x[S_D];
        for (int i = 0; i < S_D; i++) {
            sum[i] += w[i];
            x[i] = (double)w[i] - ref->mean[i];
        }
        for (int a = 0; a < S_D; a++)
            for (int b = a; b < S_D; b++) cross[a][b] += x[a] * x[b];
    }
    int bad = 0;
    double worst = 0;
    for (int a = 0; a < S_D; a++) {
        const double m = sum[a] / S_NS, se = sqrt(C[a][a] / S_NS);
        const double z = fabs(m - ref->mean[a]) / se;
        worst = fmax(worst, z);
        if (!(z <= 5)) {
            bad++;
            fprintf(stderr, "  %s: mean[%d] = %.9g, want %.9g (%.1f SE)\n", what, a, m, ref->mean[a], z);
        }
        for (int b = a; b < S_D; b++) {
            const double c = cross[a][b] / S_NS;
            const double se2 = sqrt((C[a][a] * C[b][b] + C[a][b] * C[a][b]) / S_NS);
            const double z2 = fabs(c - C[a][b]) / se2;
            worst = fmax(worst, z2);
            if (!(z2 <= 5)) {
                bad++;
                fprintf(stderr, "  %s: cov[%d][%d] = %.9g, want %.9g (%.1f SE)\n", what, a, b, c, C[a][b], z2);
            }
        }
    }
    printf("sampling %-28s worst deviation %.2f standard errors\n", what, worst);
    return bad;
}

static void test_sampling(void)
{
    /* Six iterates chosen so that the diagonal and the low-rank parts of the
     * covariance are of the same size and the deviations correlate coordinates. */
    static const double it[6][S_D] = {
        {1.0, -2.0, 0.5, 3.0, 10.0, -1.0},
        {1.6, -1.1, 0.2, 2.1, 10.5, -0.2},
        {0.4, -2.7, 1.3, 3.8, 9.1, -1.9},
        {1.9, -0.6, -0.4, 2.4, 11.2, 0.3},
        {0.7, -2.2, 0.9, 3.3, 9.6, -1.4},
        {1.3, -1.5, 0.1, 2.7, 10.9, -0.6},
    };
    vl_swag_t s;
    ref_t ref;
    double C[S_D][S_D];
    float var[S_D], mean[S_D], w[S_D], w2[S_D];

    /* K = 4, 6 collections: the ring has wrapped, ndev = 4. */
    build(&s, S_K, 6, it, &ref);
    T_CHECK(s.ndev == 4 && ref.ndev == 4, "ndev %d", s.ndev);
    swag_variance(&s, var);
    swag_mean(&s, mean);
    target_cov(&ref, 0.5, 1, C);
    T_CHECK(mc_check(&s, var, 0.5, 0, &ref, C, 1, "SWAG K=4 ndev=4 s=0.5") == 0, "SWAG covariance (ndev = 4)");
    target_cov(&ref, 1.0, 0, C);
    T_CHECK(mc_check(&s, var, 1.0, 1, &ref, C, 2, "SWAG-Diag s=1") == 0, "SWAG-Diag covariance");
    target_cov(&ref, 0.5, 0, C);
    T_CHECK(mc_check(&s, var, 0.5, 1, &ref, C, 3, "SWAG-Diag s=0.5") == 0, "SWAG-Diag covariance, scale 0.5");

    /* Documented draw order: z1 (d normals) then z2 (ndev normals); the sample is
     * reproduced from the same stream in double to float accuracy, and the stream
     * is left exactly d + ndev normals further on. */
    {
        vl_rng_t r, q;
        rng_init(&r, 5, rng_stream(RNG_TEST, 4, 0));
        q = r;
        swag_sample(&s, var, 0.5, 0, &r, w);
        double z1[S_D], z2[S_K];
        for (int i = 0; i < S_D; i++) z1[i] = rng_normal(&q);
        for (int j = 0; j < ref.ndev; j++) z2[j] = rng_normal(&q);
        T_CHECK(memcmp(&r, &q, sizeof r) == 0, "swag_sample drew other than d + ndev normals");
        for (int i = 0; i < S_D; i++) {
            double x = sqrt(ref.var[i]) * z1[i];
            for (int j = 0; j < ref.ndev; j++) x += ref.dev[j][i] * z2[j] / sqrt(ref.ndev - 1.0);
            T_CLOSE(w[i], ref.mean[i] + sqrt(0.5) * x, 1e-5, 1e-5, "sample reproduced from z1, z2");
        }
        rng_init(&r, 5, rng_stream(RNG_TEST, 4, 0));
        q = r;
        swag_sample(&s, var, 0.5, 1, &r, w);
        for (int i = 0; i < S_D; i++) z1[i] = rng_normal(&q);
        T_CHECK(memcmp(&r, &q, sizeof r) == 0, "SWAG-Diag drew other than d normals");
        for (int i = 0; i < S_D; i++)
            T_CLOSE(w[i], ref.mean[i] + sqrt(0.5 * ref.var[i]) * z1[i], 1e-5, 1e-5, "diag sample from z1");
    }

    /* Determinism: the same stream gives the identical sample, another stream not. */
    {
        vl_rng_t r1, r2, r3;
        rng_init(&r1, 11, rng_stream(RNG_TEST, 5, 0));
        rng_init(&r2, 11, rng_stream(RNG_TEST, 5, 0));
        rng_init(&r3, 11, rng_stream(RNG_TEST, 5, 1));
        float w3[S_D];
        int same = 1;
        for (int rep = 0; rep < 3; rep++) {
            swag_sample(&s, var, 0.5, 0, &r1, w);
            swag_sample(&s, var, 0.5, 0, &r2, w2);
            same &= memcmp(w, w2, sizeof w) == 0;
        }
        swag_sample(&s, var, 0.5, 0, &r3, w3);
        T_CHECK(same, "same rng stream gave different samples");
        T_CHECK(memcmp(w, w3, sizeof w) != 0, "different rng streams gave the same sample");
    }

    /* scale = 0 gives exactly the SWA mean (both variants). */
    {
        vl_rng_t r;
        rng_init(&r, 3, rng_stream(RNG_TEST, 6, 0));
        int exact = 1;
        for (int rep = 0; rep < 4; rep++) {
            swag_sample(&s, var, 0.0, rep & 1, &r, w);
            for (int i = 0; i < S_D; i++) exact &= w[i] == mean[i];
        }
        T_CHECK(exact, "scale 0 sample differs from swag_mean");
    }
    swag_free(&s);

    /* K = 4 but only 3 collections: the formula uses ndev = 3 (SPEC decision), not K. */
    build(&s, S_K, 3, it, &ref);
    T_CHECK(s.ndev == 3 && ref.ndev == 3, "ndev %d", s.ndev);
    swag_variance(&s, var);
    target_cov(&ref, 0.5, 1, C);
    T_CHECK(mc_check(&s, var, 0.5, 0, &ref, C, 4, "SWAG K=4 ndev=3 s=0.5") == 0, "SWAG covariance (ndev = 3 < K)");
    swag_free(&s);

    /* K = 1: ndev = 1 < 2 drops the low-rank term even with diag = 0. */
    build(&s, 1, 6, it, &ref);
    T_CHECK(s.ndev == 1, "ndev %d", s.ndev);
    swag_variance(&s, var);
    target_cov(&ref, 1.0, 0, C);
    T_CHECK(mc_check(&s, var, 1.0, 0, &ref, C, 5, "SWAG K=1 (ndev<2) s=1") == 0, "ndev < 2 covariance");
    swag_free(&s);
}

int main(void)
{
    test_moments();
    test_ring();
    test_sampling();
    T_DONE();
}
