/* test_pca.c — distributed PCA (src/pca.c) against independent references.
 *
 *   mpirun -np P test_pca [d [K [k [parts]]]]   (defaults 40000 20 5 all)
 *
 * parts: "all" runs 1–3 below, "lapack" only 1 (for the large size, to keep it short).
 *
 * 1. A d×K matrix with entries from a counter-based hash of (row, column) — the same
 *    matrix on any number of ranks — and columns scaled by 1/(1+j) (condition ~30),
 *    against LAPACKE_dgesvd of the gathered matrix on rank 0, for every route:
 *    singular values within 1e-10 relative, largest principal angle between the
 *    computed top-k span and LAPACK's ≤ 1e-8, ‖UᵀU − I‖_F ≤ 1e-12, each u_i and v_i
 *    within 1e-8 of LAPACK's (sign-aligned), the orientation rule, the float entry
 *    point, identical σ on every rank.
 * 2. A = Q_L Σ Q_Rᵀ with chosen σ (log-spaced, condition 1e2 and 1e6): Q_L = H·D·C
 *    (C: K exactly orthonormal DCT-II columns of distinct frequencies, D random ±1,
 *    H a dense Householder reflector), Q_R a product of K Householder reflectors.
 *    Prints each route's measured errors ("S" lines) and asserts each within what
 *    it can achieve (bounds stated at the checks).
 * 3. Degenerate input: K = 1, rank deficiency (k clipped to the rank), centred
 *    columns, ranks holding no rows, and the VL_EINPUT cases, collectively.
 * Every rank checks its own statuses; failures are summed over ranks at the end.
 */
#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "valley/error.h"
#include "valley/pca.h"
#include "valley/test.h"

static int rank_, nranks_;
static const vl_pca_route_t routes[] = {PCA_GRAM2, PCA_GRAM, PCA_QR, PCA_SVD};
enum { NROUTES = 4 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
/* uniform in [-0.5, 0.5), a function of (seed, i) only */
static double hash_unif(uint64_t seed, uint64_t i) { return (double)(mix(seed * 0x100000001b3ull ^ mix(i)) >> 11) * 0x1p-53 - 0.5; }

/* Column-major (n, K) on rank 0 from every rank's (K, n_local) slab; NULL elsewhere. */
static double *gather_cols(const double *loc, int64_t n_local, int64_t n, int K)
{
    int *cnt = NULL, *dsp = NULL;
    double *all = NULL;
    int nl = (int)n_local;
    if (rank_ == 0) {
        cnt = malloc(sizeof(int) * nranks_);
        dsp = malloc(sizeof(int) * nranks_);
        all = malloc(sizeof(double) * (size_t)n * K + 8);
    }
    MPI_Gather(&nl, 1, MPI_INT, cnt, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank_ == 0)
        for (int p = 0, off = 0; p < nranks_; p++) dsp[p] = off, off += cnt[p];
    for (int j = 0; j < K; j++)
        MPI_Gatherv(loc + (size_t)j * n_local, nl, MPI_DOUBLE, rank_ == 0 ? all + (size_t)j * n : NULL, cnt, dsp,
                    MPI_DOUBLE, 0, MPI_COMM_WORLD);
    free(cnt);
    free(dsp);
    return all;
}

/* Rank 0 metrics of a computed basis U (n × m, col-major) against a reference Uref
 * (n × ≥m, col-major, ld n). */
static double orth_err(const double *u, int64_t n, int m) /* ‖UᵀU − I‖_F */
{
    double *g = malloc(sizeof(double) * m * m), s = 0;
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, m, (int)n, 1.0, u, (int)n, u, (int)n, 0.0, g, m);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double e = g[i + j * m] - (i == j);
            s += e * e;
        }
    free(g);
    return sqrt(s);
}

/* sin of the largest principal angle between span(U) and span(Uref[:, :m]), both
 * orthonormal: ‖U − Uref (Urefᵀ U)‖_2, from the largest eigenvalue of RᵀR (no
 * cancellation, unlike sqrt(1 − cos²)). */
static double angle_err(const double *u, const double *uref, int64_t n, int m)
{
    double *b = malloc(sizeof(double) * m * m), *r = malloc(sizeof(double) * (size_t)n * m);
    double *rr = malloc(sizeof(double) * m * m), *w = malloc(sizeof(double) * m);
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, m, (int)n, 1.0, uref, (int)n, u, (int)n, 0.0, b, m);
    memcpy(r, u, sizeof(double) * (size_t)n * m);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, m, m, -1.0, uref, (int)n, b, m, 1.0, r, (int)n);
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, m, (int)n, 1.0, r, (int)n, r, (int)n, 0.0, rr, m);
    LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'U', m, rr, m, w);
    double e = sqrt(w[m - 1] > 0 ? w[m - 1] : 0);
    free(b); free(r); free(rr); free(w);
    return e;
}

/* max_i ‖±u_i − uref_i‖ (sign aligned), i < m */
static double vec_err(const double *u, const double *uref, int64_t n, int ldu, int ldr, int m)
{
    double worst = 0;
    for (int i = 0; i < m; i++) {
        double dot = cblas_ddot((int)n, u + (size_t)i * ldu, 1, uref + (size_t)i * ldr, 1), s = dot < 0 ? -1 : 1, e = 0;
        for (int64_t j = 0; j < n; j++) {
            double t = s * u[j + (size_t)i * ldu] - uref[j + (size_t)i * ldr];
            e += t * t;
        }
        if (sqrt(e) > worst) worst = sqrt(e);
    }
    return worst;
}

/* Every rank: the σ it holds equals rank 0's bit for bit. */
static void check_same_sigma(const vl_pca_t *p, const char *what)
{
    double *s0 = malloc(sizeof(double) * p->K);
    memcpy(s0, p->sigma, sizeof(double) * p->K);
    MPI_Bcast(s0, p->K, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    T_CHECK(memcmp(s0, p->sigma, sizeof(double) * p->K) == 0, "%s: sigma differs from rank 0's", what);
    free(s0);
}

/* Orientation rule: the largest-magnitude entry of each v_i is positive. */
static void check_orientation(const vl_pca_t *p, const char *what)
{
    for (int i = 0; i < p->k; i++) {
        int jm = 0;
        for (int j = 1; j < p->K; j++)
            if (fabs(p->vt[i * p->K + j]) > fabs(p->vt[i * p->K + jm])) jm = j;
        T_CHECK(p->vt[i * p->K + jm] > 0, "%s: v_%d's largest entry is negative", what, i);
    }
}

/* max_i ‖A v_i − σ_i u_i‖ / σ_1 over the returned directions: the triples (u_i, σ_i,
 * v_i) belong together (a sign flipped on one side only shows here). Collective. */
static double pair_residual(const double *a, int64_t n, const vl_pca_t *p)
{
    double *r = malloc(sizeof(double) * (size_t)(n ? n : 1)), worst = 0;
    for (int i = 0; i < p->k; i++) {
        double ss = 0;
        for (int64_t j = 0; j < n; j++) r[j] = -p->sigma[i] * p->basis[j + (size_t)i * n];
        for (int c = 0; c < p->K; c++)
            for (int64_t j = 0; j < n; j++) r[j] += a[j + (size_t)c * n] * p->vt[(size_t)i * p->K + c];
        for (int64_t j = 0; j < n; j++) ss += r[j] * r[j];
        MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        worst = fmax(worst, sqrt(ss) / p->sigma[0]);
    }
    free(r);
    return worst;
}

/* ---------------------------------------------------------------------------
 * 1. hash matrix vs LAPACK
 * ------------------------------------------------------------------------- */
static void fill_hash(double *a, int64_t lo, int64_t n, int K, uint64_t seed)
{
    for (int j = 0; j < K; j++)
        for (int64_t i = 0; i < n; i++) a[i + (size_t)j * n] = hash_unif(seed, (uint64_t)(lo + i) * K + j) / (1.0 + j);
}

static void test_vs_lapack(int64_t d, int K, int k)
{
    int64_t lo, n;
    pca_partition(d, MPI_COMM_WORLD, &lo, &n);
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);
    fill_hash(a, lo, n, K, 1);
    double *all = gather_cols(a, n, d, K);
    double *sref = NULL, *uref = NULL, *vtref = NULL;
    double t_lapack = 0;
    if (rank_ == 0) {
        sref = malloc(sizeof(double) * K);
        uref = malloc(sizeof(double) * (size_t)d * K);
        vtref = malloc(sizeof(double) * K * K);
        double *sup = malloc(sizeof(double) * K);
        double t0 = now();
        int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', (int)d, K, all, (int)d, sref, uref, (int)d, vtref, K, sup);
        t_lapack = now() - t0;
        T_CHECK(info == 0, "reference dgesvd info %d", info);
        free(sup);
        printf("R lapack d=%lld K=%d time %.3f s\n", (long long)d, K, t_lapack);
    }
    for (int r = 0; r < NROUTES; r++) {
        vl_pca_t p;
        char what[64];
        snprintf(what, sizeof what, "hash d=%lld %s", (long long)d, pca_route_name(routes[r]));
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        int st = pca_compute(a, n, d, K, k, routes[r], MPI_COMM_WORLD, &p);
        double t = now() - t0;
        T_CHECK(st == 0, "%s: status %d: %s", what, st, vl_error_message());
        if (st) { vl_error_clear(); continue; }
        T_CHECK(p.k == k && p.rank == K && p.K == K && p.d_local == n, "%s: k %d rank %d", what, p.k, p.rank);
        check_same_sigma(&p, what);
        check_orientation(&p, what);
        double epair = pair_residual(a, n, &p);
        T_CHECK(epair <= 1e-13, "%s: |A v_i - sigma_i u_i| / sigma_1 = %.3g", what, epair);
        double es = 0, eevr = 0, ss = 0;
        for (int i = 0; i < K; i++) ss += p.sigma[i] * p.sigma[i];
        for (int i = 0; i < K; i++) eevr = fmax(eevr, fabs(p.evr[i] - p.sigma[i] * p.sigma[i] / ss));
        T_CHECK(eevr < 1e-15, "%s: evr inconsistent with sigma (%g)", what, eevr);
        double *u = gather_cols(p.basis, n, d, p.k);
        if (rank_ == 0) {
            for (int i = 0; i < K; i++) es = fmax(es, fabs(p.sigma[i] - sref[i]) / sref[i]);
            double eo = orth_err(u, d, p.k), ea = angle_err(u, uref, d, p.k);
            double eu = vec_err(u, uref, d, (int)d, (int)d, p.k), ev = 0;
            for (int i = 0; i < p.k; i++) { /* v_i against row i of VTref, sign aligned */
                double dot = 0, e = 0;
                for (int j = 0; j < K; j++) dot += p.vt[i * K + j] * vtref[i + j * K];
                for (int j = 0; j < K; j++) {
                    double x = (dot < 0 ? -1 : 1) * p.vt[i * K + j] - vtref[i + j * K];
                    e += x * x;
                }
                ev = fmax(ev, sqrt(e));
            }
            printf("R %-5s P=%d d=%lld K=%d k=%d time %.3f s (lapack %.3f)  sigma %.2e angle %.2e orth %.2e "
                   "u %.2e v %.2e Av-su %.2e\n",
                   pca_route_name(routes[r]), nranks_, (long long)d, K, k, t, t_lapack, es, ea, eo, eu, ev, epair);
            T_CHECK(es <= 1e-10, "%s: sigma relative error %.3g > 1e-10", what, es);
            T_CHECK(ea <= 1e-8, "%s: subspace angle %.3g > 1e-8", what, ea);
            T_CHECK(eo <= 1e-12, "%s: orthonormality %.3g > 1e-12", what, eo);
            T_CHECK(eu <= 1e-8 && ev <= 1e-8, "%s: singular vectors off by %.3g / %.3g", what, eu, ev);
            for (int i = 0; i < K; i++) printf("SIG %s %d %.17g\n", pca_route_name(routes[r]), i, p.sigma[i]);
        }
        free(u);
        /* float entry point on the float-rounded matrix = double entry point on the same values */
        if (r == 0 || r == 2) {
            float *af = malloc(sizeof(float) * (size_t)(n ? n : 1) * K);
            double *ad = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);
            for (int64_t i = 0; i < n * K; i++) ad[i] = af[i] = (float)a[i];
            vl_pca_t pf, pd;
            int s1 = pca_compute_float(af, n, d, K, k, routes[r], MPI_COMM_WORLD, &pf);
            int s2 = pca_compute(ad, n, d, K, k, routes[r], MPI_COMM_WORLD, &pd);
            T_CHECK(s1 == 0 && s2 == 0, "%s float: status %d %d", what, s1, s2);
            if (!s1 && !s2) {
                double e = 0;
                for (int i = 0; i < K; i++) e = fmax(e, fabs(pf.sigma[i] - pd.sigma[i]) / pd.sigma[i]);
                for (int64_t i = 0; i < n * k; i++) e = fmax(e, fabs(pf.basis[i] - pd.basis[i]));
                T_CHECK(e <= 1e-13, "%s: float and double entry points differ by %.3g", what, e);
                /* and the float rounding of A moves sigma by ~1e-7 relative, not more */
                double ef = 0;
                for (int i = 0; i < K; i++) ef = fmax(ef, fabs(pf.sigma[i] - p.sigma[i]) / p.sigma[i]);
                T_CHECK(ef < 1e-6 && ef > 0, "%s: float input moved sigma by %.3g", what, ef);
            }
            pca_free(&pf);
            pca_free(&pd);
            free(af);
            free(ad);
        }
        pca_free(&p);
        T_CHECK(p.basis == NULL && p.sigma == NULL, "pca_free leaves pointers");
    }
    free(a); free(all); free(sref); free(uref); free(vtref);
}

/* ---------------------------------------------------------------------------
 * 2. known spectrum
 * ------------------------------------------------------------------------- */
/* DCT-II basis entry: sqrt(2/d) cos(π (2i+1) f / (2d)) (f > 0), with the angle's
 * integer part reduced exactly so that large i·f lose no accuracy. */
static double dct(int64_t i, int64_t f, int64_t d)
{
    int64_t m = ((2 * i + 1) % (4 * d)) * (f % (4 * d)) % (4 * d); /* angle = π m / (2d) */
    return sqrt(2.0 / (double)d) * cos(3.14159265358979323846 * (double)m / (2.0 * (double)d));
}

/* Q_R: product of K Householder reflectors of size K (K×K col-major), same on every rank. */
static void make_qr(int K, double *q)
{
    memset(q, 0, sizeof(double) * K * K);
    for (int i = 0; i < K; i++) q[i + i * K] = 1;
    double *w = malloc(sizeof(double) * K);
    for (int h = 0; h < K; h++) {
        double ww = 0;
        for (int i = 0; i < K; i++) {
            w[i] = hash_unif(100 + h, i);
            ww += w[i] * w[i];
        }
        for (int c = 0; c < K; c++) { /* q[:, c] -= 2 w (wᵀ q[:, c]) / ww */
            double dot = 0;
            for (int i = 0; i < K; i++) dot += w[i] * q[i + c * K];
            for (int i = 0; i < K; i++) q[i + c * K] -= 2 * w[i] * dot / ww;
        }
    }
    free(w);
}

/* Rows [lo, lo+n) of Q_L (n × K col-major) = H D C (see top). Collective (one allreduce). */
static void make_ql(int64_t d, int64_t lo, int64_t n, int K, double *q)
{
    int64_t step = (d - 1) / (K + 1);
    for (int j = 0; j < K; j++) {
        int64_t f = 1 + (int64_t)(j + 1) * step - (j % 3); /* distinct frequencies in [1, d) */
        for (int64_t i = 0; i < n; i++) {
            double sgn = hash_unif(7, (uint64_t)(lo + i)) < 0 ? -1 : 1;
            q[i + (size_t)j * n] = sgn * dct(lo + i, f, d);
        }
    }
    double *w = malloc(sizeof(double) * (n ? n : 1)), *dots = calloc(K + 1, sizeof(double));
    for (int64_t i = 0; i < n; i++) w[i] = hash_unif(8, (uint64_t)(lo + i));
    for (int j = 0; j < K; j++)
        for (int64_t i = 0; i < n; i++) dots[j] += w[i] * q[i + (size_t)j * n];
    for (int64_t i = 0; i < n; i++) dots[K] += w[i] * w[i];
    MPI_Allreduce(MPI_IN_PLACE, dots, K + 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (int j = 0; j < K; j++)
        for (int64_t i = 0; i < n; i++) q[i + (size_t)j * n] -= 2 * w[i] * dots[j] / dots[K];
    free(w);
    free(dots);
}

static void test_spectrum(int64_t d, int K, double kappa)
{
    int64_t lo, n;
    pca_partition(d, MPI_COMM_WORLD, &lo, &n);
    double *ql = malloc(sizeof(double) * (size_t)(n ? n : 1) * K), *qr = malloc(sizeof(double) * K * K);
    double *sig = malloc(sizeof(double) * K), *m = malloc(sizeof(double) * K * K);
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);
    make_ql(d, lo, n, K, ql);
    make_qr(K, qr);
    for (int i = 0; i < K; i++) sig[i] = 3.0 * pow(kappa, -(double)i / (K - 1));
    for (int i = 0; i < K; i++) /* m = Σ Q_Rᵀ */
        for (int j = 0; j < K; j++) m[i + j * K] = sig[i] * qr[j + i * K];
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, K, K, 1.0, ql, (int)(n ? n : 1), m, K, 0.0, a,
                (int)(n ? n : 1));
    double *uref = gather_cols(ql, n, d, K);
    const double eps = DBL_EPSILON, nmax = (double)(d > K ? d : K);
    if (rank_ == 0) T_CHECK(orth_err(uref, d, K) < 1e-13, "Q_L not orthonormal: %.3g", orth_err(uref, d, K));
    for (int r = 0; r < NROUTES; r++) {
        vl_pca_t p;
        char what[80];
        snprintf(what, sizeof what, "spectrum kappa=%.0e %s", kappa, pca_route_name(routes[r]));
        int st = pca_compute(a, n, d, K, K, routes[r], MPI_COMM_WORLD, &p);
        T_CHECK(st == 0, "%s: status %d: %s", what, st, vl_error_message());
        if (st) { vl_error_clear(); continue; }
        const int gram = routes[r] == PCA_GRAM || routes[r] == PCA_GRAM2;
        /* expected rank: σ above the route's resolution (documented in pca.h) */
        double tol = gram ? sqrt(nmax * eps) * sig[0] : nmax * eps * sig[0];
        int want = 0;
        while (want < K && sig[want] > tol) want++;
        int near = want < K && sig[want] > 0.5 * tol; /* too close to call: skip the exact check */
        T_CHECK(p.rank == want || near, "%s: rank %d, want %d (tol %.3g)", what, p.rank, want, p.tol);
        T_CHECK(p.k == p.rank, "%s: k %d != rank %d", what, p.k, p.rank);
        check_orientation(&p, what);
        double *u = gather_cols(p.basis, n, d, p.k);
        if (rank_ == 0) {
            /* scaled errors: e_abs = max_i |σ_i − Σ_i| / (eps σ_1) (backward stable: O(1)–O(sqrt d)),
             * e_gram = max_i |σ_i − Σ_i| σ_i / (eps σ_1²) (Gram: δλ ~ eps σ_1²) */
            double eabs = 0, egram = 0, erel = 0, ea5, eo, eatop, ev5;
            for (int i = 0; i < p.k; i++) {
                double e = fabs(p.sigma[i] - sig[i]);
                eabs = fmax(eabs, e / (eps * sig[0]));
                egram = fmax(egram, e * sig[i] / (eps * sig[0] * sig[0]));
                erel = fmax(erel, e / sig[i]);
            }
            int k5 = p.k < 5 ? p.k : 5;
            ea5 = angle_err(u, uref, d, k5);
            ev5 = vec_err(u, uref, d, (int)d, (int)d, k5);
            eatop = angle_err(u, uref, d, p.k);
            eo = orth_err(u, d, p.k);
            printf("S %-5s P=%d d=%lld kappa %.0e rank %2d  sigma rel %.2e (abs %.1f eps*s1, %.2g eps*s1^2/s_i)  "
                   "angle top5 %.2e  top%d %.2e  u top5 %.2e  orth %.2e\n",
                   pca_route_name(routes[r]), nranks_, (long long)d, kappa, p.rank, erel, eabs, egram, ea5, p.k,
                   eatop, ev5, eo);
            /* Bounds, with c = 100 (measured: at most ~15 at d <= 1e5; the constant of
             * the perturbation bounds, including the rounding of A's construction):
             * backward-stable routes (qr, svd, and gram2 while eps κ² < 1):
             * |δσ_i| <= c eps σ_1, orthonormality <= 1e-12, top-5 angle <=
             * c eps σ_1 / (σ_5 − σ_6), and <= 1e-8 when κ <= 1e3;
             * gram: |δσ_i| <= c eps σ_1² / σ_i (δλ ~ eps σ_1²), orthonormality
             * <= c eps (σ_1/σ_r)², top-5 angle <= c eps σ_1² / (σ_5 (σ_5 − σ_6)). */
            const double c = 1e2, gap5 = sig[4] - sig[5];
            if (routes[r] != PCA_GRAM) {
                T_CHECK(eabs <= c, "%s: sigma error %.3g eps*sigma_1 > %g", what, eabs, c);
                T_CHECK(eo <= 1e-12, "%s: orthonormality %.3g > 1e-12", what, eo);
                T_CHECK(ea5 <= c * eps * sig[0] / gap5, "%s: top-5 angle %.3g", what, ea5);
                T_CHECK(ea5 <= 1e-8 || kappa > 1e3, "%s: top-5 angle %.3g > 1e-8", what, ea5);
                /* the whole resolved span: qr/svd separate it from the rest like any
                 * subspace (c eps σ_1 / gap); gram2's span is A V_r with V_r from the
                 * first Gram pass, so at its cut it is only as good as the Gram route's
                 * (c eps σ_1² / (σ_r (σ_r − σ_r+1))), which the second pass does not improve */
                const int rr = p.k;
                const double gapr = sig[rr - 1] - (rr < K ? sig[rr] : 0);
                const double bound = routes[r] == PCA_GRAM2 ? c * eps * sig[0] * sig[0] / (sig[rr - 1] * gapr)
                                                            : c * eps * sig[0] / gapr;
                T_CHECK(eatop <= bound, "%s: angle of the resolved span %.3g > %.3g", what, eatop, bound);
            } else {
                double kr = sig[0] / sig[p.k - 1];
                T_CHECK(egram <= c, "%s: sigma error %.3g eps*sigma_1^2/sigma_i > %g", what, egram, c);
                T_CHECK(eo <= c * eps * kr * kr, "%s: orthonormality %.3g > %.3g", what, eo, c * eps * kr * kr);
                T_CHECK(ea5 <= c * eps * sig[0] * sig[0] / (sig[4] * gap5), "%s: top-5 angle %.3g", what, ea5);
            }
            if (kappa <= 1e2) { /* well conditioned: the figures (gram's orthonormality is
                                 * ~eps κ² = 2e-12 here, checked against that above) */
                T_CHECK(erel <= 1e-10 && ea5 <= 1e-8, "%s: kappa 1e2: sigma %.3g angle %.3g", what, erel, ea5);
                T_CHECK(eo <= 1e-12 || routes[r] == PCA_GRAM, "%s: kappa 1e2: orthonormality %.3g", what, eo);
            }
        }
        free(u);
        pca_free(&p);
    }
    free(ql); free(qr); free(sig); free(m); free(a); free(uref);
}

/* ---------------------------------------------------------------------------
 * 3. degenerate input
 * ------------------------------------------------------------------------- */
/* pca_compute must fail with VL_EINPUT on every rank, collectively. */
static void expect_einput(const double *a, int64_t n, int64_t d, int K, int k, vl_pca_route_t route, const char *what)
{
    vl_pca_t p;
    int st = pca_compute(a, n, d, K, k, route, MPI_COMM_WORLD, &p);
    T_CHECK(st == VL_EINPUT, "%s (%s): status %d, want VL_EINPUT", what, pca_route_name(route), st);
    T_CHECK(st == 0 || vl_error_collective(), "%s (%s): failure not collective", what, pca_route_name(route));
    T_CHECK(p.sigma == NULL && p.basis == NULL, "%s: output left allocated", what);
    if (rank_ == 0 && st) printf("E %-5s %s -> %s\n", pca_route_name(route), what, vl_error_message());
    vl_error_clear();
}

/* Tiny d (down to d = K): on 4 ranks the canonical partition leaves a rank without
 * rows and spreads R over two ranks; every route against LAPACK on the gathered matrix. */
static void test_tiny(int64_t d, int K)
{
    int64_t lo, n;
    pca_partition(d, MPI_COMM_WORLD, &lo, &n);
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);
    fill_hash(a, lo, n, K, 12);
    double *all = gather_cols(a, n, d, K), sref[64], vt[64 * 64], sup[64], *uref = NULL;
    if (rank_ == 0) {
        uref = malloc(sizeof(double) * d * K);
        T_CHECK(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', (int)d, K, all, (int)d, sref, uref, (int)d, vt, K, sup) == 0,
                "tiny reference");
    }
    for (int r = 0; r < NROUTES; r++) {
        vl_pca_t p;
        int st = pca_compute(a, n, d, K, K, routes[r], MPI_COMM_WORLD, &p);
        T_CHECK(st == 0, "tiny d=%lld %s: status %d %s", (long long)d, pca_route_name(routes[r]), st, vl_error_message());
        if (st) { vl_error_clear(); continue; }
        T_CHECK(p.k == K, "tiny d=%lld %s: k %d", (long long)d, pca_route_name(routes[r]), p.k);
        double ep = pair_residual(a, n, &p);
        double *u = gather_cols(p.basis, n, d, p.k);
        if (rank_ == 0) {
            double es = 0;
            for (int i = 0; i < K; i++) es = fmax(es, fabs(p.sigma[i] - sref[i]) / sref[i]);
            double ea = angle_err(u, uref, d, p.k), eo = orth_err(u, d, p.k);
            /* hash matrices this small are still well conditioned (sigma_K/sigma_1 > 1e-2) */
            T_CHECK(es < 1e-11 && ea < 1e-10 && eo < 1e-11 && ep < 1e-13,
                    "tiny d=%lld %s: sigma %.3g angle %.3g orth %.3g pair %.3g", (long long)d, pca_route_name(routes[r]),
                    es, ea, eo, ep);
        }
        free(u);
        pca_free(&p);
    }
    free(a);
    free(all);
    free(uref);
}

static void test_degenerate(void)
{
    const int64_t d = 3000;
    int64_t lo, n;
    pca_partition(d, MPI_COMM_WORLD, &lo, &n);
    const int K = 6;
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1) * K), *b = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);

    for (int r = 0; r < NROUTES; r++) {
        vl_pca_route_t rt = routes[r];
        const char *nm = pca_route_name(rt);
        /* K = 1: σ = ‖a‖, u = a/‖a‖ oriented so that v = +1 */
        fill_hash(a, lo, n, 1, 5);
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += a[i] * a[i];
        MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        vl_pca_t p;
        int st = pca_compute(a, n, d, 1, 1, rt, MPI_COMM_WORLD, &p);
        T_CHECK(st == 0, "K=1 %s: status %d %s", nm, st, vl_error_message());
        if (!st) {
            T_CLOSE(p.sigma[0], sqrt(ss), 1e-13, 0, "K=1 sigma");
            T_CLOSE(p.evr[0], 1.0, 1e-15, 0, "K=1 evr");
            T_CHECK(p.k == 1 && p.rank == 1 && p.vt[0] == 1.0, "K=1 %s: k %d rank %d v %g", nm, p.k, p.rank, p.vt[0]);
            double e = 0;
            for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(p.basis[i] - a[i] / sqrt(ss)));
            T_CHECK(e < 1e-14, "K=1 %s: direction off by %.3g", nm, e);
            pca_free(&p);
        }
        vl_error_clear();

        /* rank 3 in K = 6 columns, 5 requested: 3 returned, spanning the true range */
        fill_hash(b, lo, n, 3, 6); /* basis of the range: (n × 3) */
        for (int j = 0; j < K; j++)
            for (int64_t i = 0; i < n; i++)
                a[i + j * n] = b[i] * (1 + j) + b[i + n] * (j % 2 ? 1 : -2) + b[i + 2 * n] * 0.5 * (j - 2.5);
        st = pca_compute(a, n, d, K, 5, rt, MPI_COMM_WORLD, &p);
        T_CHECK(st == 0, "rank-3 %s: status %d %s", nm, st, vl_error_message());
        if (!st) {
            T_CHECK(p.rank == 3 && p.k == 3 && p.k_requested == 5, "rank-3 %s: rank %d k %d", nm, p.rank, p.k);
            for (int i = 3; i < K; i++) T_CHECK(p.sigma[i] <= p.tol, "rank-3 %s: sigma_%d = %g > tol %g", nm, i, p.sigma[i], p.tol);
            /* residual of the range basis b after projecting on the returned directions */
            double *bb = gather_cols(b, n, d, 3), *u = gather_cols(p.basis, n, d, p.k);
            if (rank_ == 0) {
                double *q = malloc(sizeof(double) * d * 3), tau[3];
                memcpy(q, bb, sizeof(double) * d * 3);
                LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)d, 3, q, (int)d, tau);
                LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)d, 3, 3, q, (int)d, tau);
                double ea = angle_err(u, q, d, 3);
                T_CHECK(ea < 1e-10, "rank-3 %s: span off by %.3g", nm, ea);
                T_CHECK(orth_err(u, d, 3) < 1e-12, "rank-3 %s: not orthonormal", nm);
                printf("D %-5s rank-3: rank %d k %d sigma %.3g %.3g %.3g | %.2g %.2g %.2g tol %.2g angle %.2e\n", nm,
                       p.rank, p.k, p.sigma[0], p.sigma[1], p.sigma[2], p.sigma[3], p.sigma[4], p.sigma[5], p.tol, ea);
                free(q);
            }
            free(bb);
            free(u);
            pca_free(&p);
        }
        vl_error_clear();

        /* centred columns (iterates minus their mean): rank K − 1, the last σ ≈ 0 */
        fill_hash(a, lo, n, K, 9);
        for (int64_t i = 0; i < n; i++) {
            double mean = 0;
            for (int j = 0; j < K; j++) mean += a[i + j * n] / K;
            for (int j = 0; j < K; j++) a[i + j * n] -= mean;
        }
        st = pca_compute(a, n, d, K, K, rt, MPI_COMM_WORLD, &p);
        T_CHECK(st == 0 && p.rank == K - 1 && p.k == K - 1, "centred %s: status %d rank %d k %d", nm, st,
                st ? -1 : p.rank, st ? -1 : p.k);
        if (!st) {
            /* each direction is orthogonal to nothing in particular, but every v_i ⟂ 1 */
            double e = 0;
            for (int i = 0; i < p.k; i++) {
                double s = 0;
                for (int j = 0; j < K; j++) s += p.vt[i * K + j];
                e = fmax(e, fabs(s));
            }
            T_CHECK(e < 1e-10, "centred %s: v_i not orthogonal to the ones vector (%.3g)", nm, e);
            pca_free(&p);
        }
        vl_error_clear();

        /* bad input, collectively */
        fill_hash(a, lo, n, K, 10);
        expect_einput(a, n, d, K, K + 1, rt, "k > K");
        expect_einput(a, n, d, K, 0, rt, "k = 0");
        expect_einput(a, n, d, 0, 1, rt, "K = 0");
        expect_einput(a, n, d + 1, K, 2, rt, "row counts != d");
        int64_t lo5, n5;
        pca_partition(5, MPI_COMM_WORLD, &lo5, &n5);
        expect_einput(a, n5, 5, K, 1, rt, "d = 5 < K");
        memset(b, 0, sizeof(double) * (size_t)(n ? n : 1) * K);
        expect_einput(b, n, d, K, 2, rt, "zero matrix");
        memcpy(b, a, sizeof(double) * (size_t)n * K);
        if (rank_ == nranks_ - 1 && n > 0) b[n / 2 + 2 * n] = NAN;
        expect_einput(b, n, d, K, 2, rt, "NaN on the last rank");
        memcpy(b, a, sizeof(double) * (size_t)n * K);
        if (rank_ == 0 && n > 0) b[0] = INFINITY;
        expect_einput(b, n, d, K, 2, rt, "Inf on rank 0");
    }
    expect_einput(a, n, d, K, 2, (vl_pca_route_t)17, "unknown route");
    vl_pca_route_t rr;
    T_CHECK(pca_route_parse("qr", &rr) == 0 && rr == PCA_QR, "parse qr");
    T_CHECK(pca_route_parse("gram2", &rr) == 0 && rr == PCA_GRAM2, "parse gram2");
    T_CHECK(pca_route_parse("lanczos", &rr) == VL_EINPUT, "parse of an unknown route accepted");
    vl_error_clear();

    /* a non-canonical partition: all rows on the last rank (others hold none).
     * The Gram routes accept it and agree with the canonical run; QR/SVD refuse. */
    if (nranks_ > 1) {
        fill_hash(a, lo, n, K, 11);
        double *full = malloc(sizeof(double) * d * K);
        int64_t nn = rank_ == nranks_ - 1 ? d : 0;
        fill_hash(full, 0, nn, K, 11);
        for (int r = 0; r < 2; r++) {
            vl_pca_t p1, p2;
            int s1 = pca_compute(a, n, d, K, 3, routes[r], MPI_COMM_WORLD, &p1);
            int s2 = pca_compute(full, nn, d, K, 3, routes[r], MPI_COMM_WORLD, &p2);
            T_CHECK(s1 == 0 && s2 == 0, "uneven %s: status %d %d", pca_route_name(routes[r]), s1, s2);
            if (!s1 && !s2) {
                double e = 0;
                for (int i = 0; i < K; i++) e = fmax(e, fabs(p1.sigma[i] - p2.sigma[i]) / p1.sigma[0]);
                T_CHECK(e < 1e-13, "uneven %s: sigma differs by %.3g", pca_route_name(routes[r]), e);
                double *u1 = gather_cols(p1.basis, n, d, 3), *u2 = gather_cols(p2.basis, nn, d, 3);
                if (rank_ == 0) {
                    double ev = vec_err(u1, u2, d, (int)d, (int)d, 3);
                    T_CHECK(ev < 1e-10, "uneven %s: directions differ by %.3g", pca_route_name(routes[r]), ev);
                }
                free(u1);
                free(u2);
            }
            pca_free(&p1);
            pca_free(&p2);
            vl_error_clear();
        }
        expect_einput(full, nn, d, K, 3, PCA_QR, "non-canonical partition");
        expect_einput(full, nn, d, K, 3, PCA_SVD, "non-canonical partition");
        free(full);
    }
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    int64_t d = argc > 1 ? atoll(argv[1]) : 40000;
    int K = argc > 2 ? atoi(argv[2]) : 20;
    int k = argc > 3 ? atoi(argv[3]) : 5;
    const char *parts = argc > 4 ? argv[4] : "all";
    int all = strcmp(parts, "all") == 0;
    if (d < 100 || K < 6 || k < 1 || k > K || (!all && strcmp(parts, "lapack") != 0)) {
        if (rank_ == 0) fprintf(stderr, "usage: test_pca [d >= 100 [K >= 6 [1 <= k <= K [all|lapack]]]]\n");
        MPI_Finalize();
        return 2;
    }
    test_vs_lapack(d, K, k);
    if (all) {
        test_spectrum(d, K, 1e2);
        test_spectrum(d, K, 1e6);
        test_degenerate();
        test_tiny(9, 6);
        test_tiny(6, 6);
    }
    int fails = test_failures;
    MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ != 0) fflush(stdout);
    MPI_Finalize();
    test_failures = fails;
    if (rank_ != 0) return fails ? 1 : 0;
    T_DONE();
}
