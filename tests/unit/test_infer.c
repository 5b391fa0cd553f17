/* test_infer.c — the two subspace samplers of infer.c on targets with closed forms.
 *
 * ESS: prior N(0, s0² I), s0 = 2, and a correlated Gaussian log-likelihood
 * L(z) = −½ (z − a)ᵀ C⁻¹ (z − a) in 2-D, so the posterior is N(m, Σ) with
 * Σ = (C⁻¹ + I/s0²)⁻¹, m = Σ C⁻¹ a. 4000 independent chains from z = 0 (20 burn-in
 * iterations, the 21st state kept) give independent samples: the sample mean must be
 * within 4 standard errors sqrt(Σ_ii/n) of m and each covariance entry within 4 standard
 * errors sqrt((Σ_ii Σ_jj + Σ_ij²)/n) of Σ (Gaussian sampling variance of a covariance);
 * the chance of a false failure over the 5 checks is ~3e-4 (and the seed is fixed). A
 * negative control runs the same chains with the wrong prior (s0 = 0.7) and requires the
 * same statistics to flag the difference, so the bound is tight enough to catch a bug.
 * A single long chain checks the bookkeeping (evaluations = 1 + iterations + shrinkage
 * steps, trace = sample log-likelihoods) and its mean by batch means; determinism per
 * (seed, chain); NaN / non-finite log-likelihoods → VL_ENUM.
 *
 * VI: conjugate linear-Gaussian regression y = X z + ε, ε ~ N(0, s²), s = 2, k = 3,
 * correlated columns, temperature T = 2, prior s0 = 1.5: the tempered posterior has
 * precision Λ = XᵀX/(s² T) + I/s0² and mean m = Λ⁻¹ Xᵀy/(s² T); the optimum of mean-field
 * VI is μ = m, σ_i = 1/sqrt(Λ_ii). Minibatches of 20 out of 200, 8000 epochs of Adam (the
 * optimum is reached up to the noise of one reparameterised sample per step, ~1% here).
 * Checks: |μ_i − m_i| < 0.03 sqrt(Σ_ii) and |σ_i/σ*_i − 1| < 0.04; and (negative
 * control) σ is much closer to the mean-field σ* than to the marginal posterior std
 * sqrt(Σ_ii), which is ~1.8 times larger for the two correlated coordinates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/infer.h"
#include "valley/rng.h"
#include "valley/test.h"

/* ---------------------------------------------------------------- ESS */

typedef struct { double a[2], P[2][2]; long long calls; int nan_after; } gauss_t; /* P = C⁻¹ */

static int gauss_ll(const double *z, double *ll, void *ctx)
{
    gauss_t *g = ctx;
    g->calls++;
    if (g->nan_after > 0 && g->calls > g->nan_after) { *ll = NAN; return VL_OK; }
    const double d0 = z[0] - g->a[0], d1 = z[1] - g->a[1];
    *ll = -0.5 * (g->P[0][0] * d0 * d0 + 2 * g->P[0][1] * d0 * d1 + g->P[1][1] * d1 * d1);
    return VL_OK;
}

static void inv2(const double A[2][2], double B[2][2])
{
    const double det = A[0][0] * A[1][1] - A[0][1] * A[1][0];
    B[0][0] = A[1][1] / det; B[1][1] = A[0][0] / det;
    B[0][1] = -A[0][1] / det; B[1][0] = -A[1][0] / det;
}

/* Independent-chain moments: returns the largest |deviation| / standard error over the
 * two means and three covariance entries. */
static double ess_moments(gauss_t *g, double s0, int nchains, const double m[2], const double Sig[2][2], double *mean,
                          double *cov)
{
    double sum[2] = {0, 0}, sq[3] = {0, 0, 0};
    double *zs = malloc((size_t)nchains * 2 * sizeof(double));
    for (int c = 0; c < nchains; c++) {
        double z[2], ll;
        int sh;
        double z0[2] = {0, 0};
        infer_ess_opts_t o = {.k = 2, .prior_std = s0, .burnin = 20, .nsamples = 1, .seed = 11, .chain = (uint64_t)c};
        infer_ess_out_t out = {.z = z, .loglik = &ll, .shrink = &sh};
        if (infer_ess(&o, z0, gauss_ll, g, &out)) { free(zs); return INFINITY; }
        zs[2 * c] = z[0];
        zs[2 * c + 1] = z[1];
        sum[0] += z[0];
        sum[1] += z[1];
    }
    const double n = nchains;
    mean[0] = sum[0] / n;
    mean[1] = sum[1] / n;
    for (int c = 0; c < nchains; c++) {
        const double e0 = zs[2 * c] - mean[0], e1 = zs[2 * c + 1] - mean[1];
        sq[0] += e0 * e0; sq[1] += e0 * e1; sq[2] += e1 * e1;
    }
    free(zs);
    cov[0] = sq[0] / (n - 1); cov[1] = sq[1] / (n - 1); cov[2] = sq[2] / (n - 1);
    double worst = 0;
    for (int i = 0; i < 2; i++) worst = fmax(worst, fabs(mean[i] - m[i]) / sqrt(Sig[i][i] / n));
    const double se00 = sqrt(2 * Sig[0][0] * Sig[0][0] / n), se11 = sqrt(2 * Sig[1][1] * Sig[1][1] / n);
    const double se01 = sqrt((Sig[0][0] * Sig[1][1] + Sig[0][1] * Sig[0][1]) / n);
    worst = fmax(worst, fabs(cov[0] - Sig[0][0]) / se00);
    worst = fmax(worst, fabs(cov[1] - Sig[0][1]) / se01);
    worst = fmax(worst, fabs(cov[2] - Sig[1][1]) / se11);
    return worst;
}

static void posterior(const gauss_t *g, double s0, double m[2], double Sig[2][2])
{
    double L[2][2] = {{g->P[0][0] + 1 / (s0 * s0), g->P[0][1]}, {g->P[1][0], g->P[1][1] + 1 / (s0 * s0)}};
    inv2(L, Sig);
    const double b0 = g->P[0][0] * g->a[0] + g->P[0][1] * g->a[1], b1 = g->P[1][0] * g->a[0] + g->P[1][1] * g->a[1];
    m[0] = Sig[0][0] * b0 + Sig[0][1] * b1;
    m[1] = Sig[1][0] * b0 + Sig[1][1] * b1;
}

static void test_ess(void)
{
    const double C[2][2] = {{0.5, 0.45}, {0.45, 0.6}};
    gauss_t g = {.a = {1.0, -0.5}};
    inv2(C, g.P);
    const double s0 = 2.0;
    double m[2], Sig[2][2], mean[2], cov[3];
    posterior(&g, s0, m, Sig);
    const int nch = 4000;
    double worst = ess_moments(&g, s0, nch, m, Sig, mean, cov);
    printf("ESS %d independent chains: mean (%.4f, %.4f) want (%.4f, %.4f); cov (%.4f, %.4f, %.4f) want (%.4f, %.4f, %.4f); "
           "worst deviation %.2f standard errors\n", nch, mean[0], mean[1], m[0], m[1], cov[0], cov[1], cov[2], Sig[0][0],
           Sig[0][1], Sig[1][1], worst);
    T_CHECK(worst < 4.0, "ESS moments off by %.2f standard errors (bound 4)", worst);
    /* negative control: the wrong prior must be detected by the same statistic */
    double worst_bad = ess_moments(&g, 0.7, nch, m, Sig, mean, cov);
    printf("negative control (prior std 0.7 instead of 2): worst deviation %.1f standard errors\n", worst_bad);
    T_CHECK(worst_bad > 8.0, "the moment check does not detect a wrong prior (%.2f standard errors)", worst_bad);

    /* one long chain: bookkeeping and batch-means check of the mean */
    const int burn = 50, ns = 20000, nbatch = 50;
    double *z = malloc((size_t)ns * 2 * sizeof(double)), *ll = malloc(ns * sizeof(double));
    double *tr = malloc((size_t)(burn + ns) * sizeof(double));
    int *sh = malloc(ns * sizeof(int));
    double z0[2] = {0, 0};
    infer_ess_opts_t o = {.k = 2, .prior_std = s0, .burnin = burn, .nsamples = ns, .seed = 3, .chain = 7};
    infer_ess_out_t out = {.z = z, .loglik = ll, .shrink = sh, .trace = tr};
    g.calls = 0;
    T_CHECK(infer_ess(&o, z0, gauss_ll, &g, &out) == VL_OK, "long chain");
    T_CHECK(out.nevals == g.calls, "nevals %lld, callback calls %lld", out.nevals, g.calls);
    T_CHECK(out.nevals == 1 + burn + ns + out.nshrink, "evaluations %lld != 1 + iterations + shrinkage %lld", out.nevals,
            1 + burn + ns + out.nshrink);
    long long shs = 0;
    int bad_trace = 0;
    for (int s = 0; s < ns; s++) { shs += sh[s]; bad_trace += tr[burn + s] != ll[s]; }
    T_CHECK(shs <= out.nshrink, "per-sample shrinkage %lld > total %lld", shs, out.nshrink);
    T_CHECK(bad_trace == 0, "%d trace entries differ from the sample log-likelihoods", bad_trace);
    double recheck;
    gauss_ll(z + 2 * (ns - 1), &recheck, &g);
    T_CLOSE(ll[ns - 1], recheck, 0, 1e-12, "stored log-likelihood of the last sample");
    for (int i = 0; i < 2; i++) {
        double bm[50], tot = 0;
        for (int b = 0; b < nbatch; b++) {
            bm[b] = 0;
            for (int s = b * (ns / nbatch); s < (b + 1) * (ns / nbatch); s++) bm[b] += z[2 * s + i];
            bm[b] /= ns / nbatch;
            tot += bm[b];
        }
        tot /= nbatch;
        double v = 0;
        for (int b = 0; b < nbatch; b++) v += (bm[b] - tot) * (bm[b] - tot);
        const double se = sqrt(v / (nbatch - 1) / nbatch);
        printf("long chain mean[%d] %.4f want %.4f (batch-means SE %.4f), mean shrinkage %.2f per sample\n", i, tot, m[i], se,
               (double)out.nshrink / (burn + ns));
        T_CHECK(fabs(tot - m[i]) < 4 * se, "long-chain mean[%d] %.4f, want %.4f +- 4 x %.4f", i, tot, m[i], se);
        T_CHECK(se < 0.05, "batch-means SE %.4f: the chain barely moves", se);
    }
    /* determinism per (seed, chain) */
    double za[20], zb[20], lla[10], llb[10];
    int sa[10], sb[10];
    infer_ess_opts_t o2 = {.k = 2, .prior_std = s0, .burnin = 5, .nsamples = 10, .seed = 3, .chain = 2};
    infer_ess_out_t oa = {.z = za, .loglik = lla, .shrink = sa}, ob = {.z = zb, .loglik = llb, .shrink = sb};
    infer_ess(&o2, z0, gauss_ll, &g, &oa);
    infer_ess(&o2, z0, gauss_ll, &g, &ob);
    T_CHECK(!memcmp(za, zb, sizeof za), "the same (seed, chain) gives different samples");
    o2.chain = 3;
    infer_ess(&o2, z0, gauss_ll, &g, &ob);
    T_CHECK(memcmp(za, zb, sizeof za) != 0, "chains 2 and 3 give the same samples");
    /* non-finite log-likelihoods */
    g.calls = 0;
    g.nan_after = 5;
    vl_error_clear();
    T_CHECK(infer_ess(&o2, z0, gauss_ll, &g, &oa) == VL_ENUM, "NaN log-likelihood not reported as VL_ENUM");
    T_CHECK(strstr(vl_error_message(), "not finite") || strstr(vl_error_message(), "nan"), "message: %s", vl_error_message());
    printf("NaN proposal: %s\n", vl_error_message());
    vl_error_clear();
    g.calls = 0;
    g.nan_after = 0;
    double zinf[2] = {1e300, 1e300};
    T_CHECK(infer_ess(&o2, zinf, gauss_ll, &g, &oa) == VL_ENUM, "non-finite start not reported");
    vl_error_clear();
    free(z); free(ll); free(tr); free(sh);
}

/* ----------------------------------------------------------------- VI */

enum { VN = 200, VK = 3, VB = 20 };
typedef struct { double X[VN][VK], y[VN], s; int perm[VN]; long long epoch; uint64_t seed; } lin_t;

static int lin_grad(const double *z, long long step, double *loss, double *grad, void *ctx)
{
    lin_t *L = ctx;
    const long long nb = VN / VB, ep = step / nb, b = step % nb;
    if (ep != L->epoch) { /* a fresh permutation per epoch */
        vl_rng_t r;
        rng_init(&r, L->seed, rng_stream(RNG_TEST, 99, (uint64_t)ep));
        int64_t p[VN];
        rng_permutation(&r, VN, p);
        for (int i = 0; i < VN; i++) L->perm[i] = (int)p[i];
        L->epoch = ep;
    }
    double l = 0;
    for (int q = 0; q < VK; q++) grad[q] = 0;
    for (int t = 0; t < VB; t++) {
        const int i = L->perm[b * VB + t];
        double r = L->y[i];
        for (int q = 0; q < VK; q++) r -= L->X[i][q] * z[q];
        l += r * r / (2 * L->s * L->s);
        for (int q = 0; q < VK; q++) grad[q] -= L->X[i][q] * r / (L->s * L->s);
    }
    *loss = l / VB;
    for (int q = 0; q < VK; q++) grad[q] /= VB;
    return VL_OK;
}

/* Solves A x = b for a 3x3 SPD A (Cholesky); also returns A⁻¹'s diagonal. */
static void spd_solve3(const double A[VK][VK], const double *b, double *x, double *inv_diag)
{
    double Lc[VK][VK] = {{0}};
    for (int i = 0; i < VK; i++)
        for (int j = 0; j <= i; j++) {
            double v = A[i][j];
            for (int q = 0; q < j; q++) v -= Lc[i][q] * Lc[j][q];
            Lc[i][j] = i == j ? sqrt(v) : v / Lc[j][j];
        }
    for (int col = -1; col < VK; col++) { /* col -1: solve for b; else the unit vector e_col */
        double rhs[VK], y[VK], s[VK];
        for (int i = 0; i < VK; i++) rhs[i] = col < 0 ? b[i] : (i == col);
        for (int i = 0; i < VK; i++) {
            double v = rhs[i];
            for (int q = 0; q < i; q++) v -= Lc[i][q] * y[q];
            y[i] = v / Lc[i][i];
        }
        for (int i = VK - 1; i >= 0; i--) {
            double v = y[i];
            for (int q = i + 1; q < VK; q++) v -= Lc[q][i] * s[q];
            s[i] = v / Lc[i][i];
        }
        if (col < 0) memcpy(x, s, sizeof s);
        else inv_diag[col] = s[col];
    }
}

static void test_vi(void)
{
    lin_t L;
    memset(&L, 0, sizeof L);
    L.s = 2.0;
    L.epoch = -1;
    L.seed = 21;
    vl_rng_t r;
    rng_init(&r, 4, rng_stream(RNG_TEST, 98, 0));
    const double zt[VK] = {0.8, -1.2, 0.4};
    for (int i = 0; i < VN; i++) {
        const double u = rng_normal(&r), v = rng_normal(&r), w = rng_normal(&r);
        L.X[i][0] = u;
        L.X[i][1] = 0.8 * u + 0.6 * v; /* correlated with column 0 */
        L.X[i][2] = 0.5 * w - 0.3 * v;
        L.y[i] = L.s * rng_normal(&r);
        for (int q = 0; q < VK; q++) L.y[i] += L.X[i][q] * zt[q];
    }
    const double T = 2.0, s0 = 1.5;
    double Lam[VK][VK], rhs[VK] = {0}, m[VK], Sd[VK];
    for (int a = 0; a < VK; a++) {
        for (int b = 0; b < VK; b++) {
            double acc = 0;
            for (int i = 0; i < VN; i++) acc += L.X[i][a] * L.X[i][b];
            Lam[a][b] = acc / (L.s * L.s * T) + (a == b) / (s0 * s0);
        }
        for (int i = 0; i < VN; i++) rhs[a] += L.X[i][a] * L.y[i] / (L.s * L.s * T);
    }
    spd_solve3(Lam, rhs, m, Sd);
    double mu[VK], sg[VK];
    const long long epochs = 8000, steps = epochs * (VN / VB);
    infer_vi_opts_t o = {.k = VK, .prior_std = s0, .kl_weight = T / VN, .steps = steps, .lr = 0.01, .seed = 5, .chain = 0};
    double *trace = malloc((size_t)steps * sizeof(double));
    T_CHECK(infer_vi(&o, lin_grad, &L, mu, sg, trace) == VL_OK, "vi run");
    for (int q = 0; q < VK; q++) {
        const double smf = 1 / sqrt(Lam[q][q]), smarg = sqrt(Sd[q]);
        printf("VI z[%d]: mu %.5f want %.5f | sigma %.5f want (mean-field) %.5f, marginal posterior std %.5f\n", q, mu[q], m[q],
               sg[q], smf, smarg);
        T_CHECK(fabs(mu[q] - m[q]) < 0.03 * smarg, "mu[%d] %.5f, want %.5f +- %.5f", q, mu[q], m[q], 0.03 * smarg);
        T_CHECK(fabs(sg[q] / smf - 1) < 0.04, "sigma[%d] %.5f, want %.5f within 4%%", q, sg[q], smf);
        if (smarg / smf > 1.3)
            T_CHECK(fabs(sg[q] - smf) < 0.2 * fabs(sg[q] - smarg), "sigma[%d] not the mean-field solution", q);
    }
    /* the objective decreases: mean of the last epoch below the first */
    double first = 0, last = 0;
    for (int s = 0; s < VN / VB; s++) { first += trace[s]; last += trace[steps - 1 - s]; }
    T_CHECK(last < first, "objective did not decrease (%.4f -> %.4f)", first, last);
    free(trace);
    /* a non-finite gradient is VL_ENUM */
    L.y[0] = NAN;
    L.epoch = -1;
    o.steps = 50;
    vl_error_clear();
    T_CHECK(infer_vi(&o, lin_grad, &L, mu, sg, NULL) == VL_ENUM, "NaN loss not reported as VL_ENUM");
    vl_error_clear();
}

int main(void)
{
    test_ess();
    test_vi();
    T_DONE();
}
