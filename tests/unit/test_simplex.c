/* test_simplex.c — Cayley–Menger volumes of known simplexes embedded in high dimension,
 * the log-volume gradient against central finite differences, and Dirichlet(1) moments
 * against their closed forms (SPEC §6). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "valley/rng.h"
#include "valley/simplex.h"
#include "valley/test.h"

enum { DIM = 2000 };

/* An orthonormal set of k vectors in R^DIM (Gram–Schmidt of Gaussian vectors, double). */
static void orthonormal(vl_rng_t *r, int k, double *q)
{
    for (int a = 0; a < k; a++) {
        double *v = q + (size_t)a * DIM;
        for (int t = 0; t < DIM; t++) v[t] = rng_normal(r);
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < a; b++) {
                double dot = 0;
                for (int t = 0; t < DIM; t++) dot += v[t] * q[(size_t)b * DIM + t];
                for (int t = 0; t < DIM; t++) v[t] -= dot * q[(size_t)b * DIM + t];
            }
        double nn = 0;
        for (int t = 0; t < DIM; t++) nn += v[t] * v[t];
        for (int t = 0; t < DIM; t++) v[t] /= sqrt(nn);
    }
}

/* Vertices with coordinates xs (n, k) in the frame q, shifted by an offset; as floats. */
static void embed(int n, int k, const double *xs, const double *q, const double *offset, float *out)
{
    for (int i = 0; i < n; i++)
        for (int t = 0; t < DIM; t++) {
            double s = offset[t];
            for (int a = 0; a < k; a++) s += xs[i * k + a] * q[(size_t)a * DIM + t];
            out[(size_t)i * DIM + t] = (float)s;
        }
}

static double volume_of(int n, const float *v)
{
    const float *p[8];
    double D[64], v2 = -1;
    for (int i = 0; i < n; i++) p[i] = v + (size_t)i * DIM;
    simplex_distances(n, DIM, p, D);
    T_CHECK(simplex_volume_sq(n, D, &v2) == 0, "volume call");
    return sqrt(v2);
}

/* D of double vertices (n, dd), for the finite-difference test. */
static void dist_double(int n, int dd, const double *x, double *D)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < dd; t++) { double e = x[i * dd + t] - x[j * dd + t]; s += e * e; }
            D[i * n + j] = s;
        }
}

static double logvol_eps(int n, int dd, const double *x, double eps)
{
    double D[64], v2;
    dist_double(n, dd, x, D);
    simplex_volume_sq(n, D, &v2);
    return log(v2 + eps);
}

int main(void)
{
    vl_rng_t r;
    rng_init(&r, 42, rng_stream(RNG_TEST, 9, 0));
    double *q = malloc(sizeof(double) * 4 * DIM), *off = malloc(sizeof(double) * DIM);
    float *v = malloc(sizeof(float) * 5 * DIM);
    orthonormal(&r, 4, q);
    for (int t = 0; t < DIM; t++) off[t] = 0.05 * rng_normal(&r); /* like network weights: an offset of norm ~2 */

    /* right triangle with legs 3 and 4: area 6 */
    double tri[6] = {0, 0, 3, 0, 0, 4};
    embed(3, 2, tri, q, off, v);
    T_CLOSE(volume_of(3, v), 6.0, 1e-5, 0, "right triangle 3-4-5 area");
    /* a segment: its length */
    T_CLOSE(volume_of(2, v), 3.0, 1e-5, 0, "segment length");
    /* regular tetrahedron of edge a: a^3 / (6 sqrt 2) */
    const double a = 2.5;
    double tet[12] = {0, 0, 0, a, 0, 0, a / 2, a * sqrt(3) / 2, 0, a / 2, a * sqrt(3) / 6, a * sqrt(2.0 / 3.0)};
    embed(4, 3, tet, q, off, v);
    T_CLOSE(volume_of(4, v), a * a * a / (6 * sqrt(2.0)), 1e-5, 0, "regular tetrahedron volume");
    /* a unit 4-simplex corner (0, e1..e4): volume 1/4! */
    double cor[20] = {0};
    for (int i = 1; i <= 4; i++) cor[i * 4 + i - 1] = 1.0;
    embed(5, 4, cor, q, off, v);
    T_CLOSE(volume_of(5, v), 1.0 / 24.0, 1e-4, 0, "corner 4-simplex volume 1/4!");
    /* degenerate: three collinear points, four coplanar points, a repeated vertex */
    double col[6] = {0, 0, 1, 1, 3, 3};
    embed(3, 2, col, q, off, v);
    T_CHECK(volume_of(3, v) < 1e-3 * 3 * 3, "collinear triangle area %g not ~0", volume_of(3, v));
    double cop[12] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0};
    embed(4, 3, cop, q, off, v);
    T_CHECK(volume_of(4, v) < 1e-3, "coplanar tetrahedron volume %g not ~0", volume_of(4, v));
    double dup[6] = {0, 0, 1, 2, 1, 2};
    embed(3, 2, dup, q, off, v);
    T_CHECK(volume_of(3, v) < 1e-3, "triangle with a repeated vertex: %g", volume_of(3, v));
    /* exact distances, no rounding: a point-like D gives 0 exactly, n = 1 gives the formula's 1 */
    double Dz[9] = {0}, v2 = -1;
    T_CHECK(simplex_volume_sq(3, Dz, &v2) == 0 && v2 == 0.0, "all-zero distances: V^2 = %g", v2);
    T_CHECK(simplex_volume_sq(1, Dz, &v2) == 0 && v2 == 1.0, "one vertex: %g", v2);
    /* large n does not overflow: a unit corner simplex with n = 40 vertices has V = 1/39! */
    {
        enum { N = 40 };
        double *D = calloc(N * N, sizeof(double));
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) D[i * N + j] = i == j ? 0 : (i == 0 || j == 0) ? 1.0 : 2.0;
        T_CHECK(simplex_volume_sq(N, D, &v2) == 0, "n = 40");
        T_CLOSE(0.5 * log(v2), -lgamma(40.0), 1e-9, 1e-9, "log volume of the 39-dimensional corner simplex");
        free(D);
    }
    /* bad input is refused */
    double Dn[4] = {0, NAN, NAN, 0};
    T_CHECK(simplex_volume_sq(2, Dn, &v2) != 0, "NaN distance accepted");
    T_CHECK(simplex_volume_sq(0, Dz, &v2) != 0, "n = 0 accepted");

    /* gradient of log(V^2 + eps) for each vertex, against central differences (double) */
    {
        enum { N = 4, DD = 30 };
        double x[N * DD], D[N * N], coef[N];
        for (int i = 0; i < N * DD; i++) x[i] = rng_normal(&r);
        for (int k = 0; k < N; k++)
            for (int e = 0; e < 2; e++) {
                const double eps = e ? 1e-4 : 0.0;
                dist_double(N, DD, x, D);
                T_CHECK(simplex_logvol_coeffs(N, D, k, eps, coef, NULL) == 0, "coeffs");
                double csum = 0, maxerr = 0, maxg = 0;
                for (int j = 0; j < N; j++) csum += coef[j];
                T_CLOSE(csum, 0.0, 0, 1e-9, "coefficients sum to 0 (translation invariance)");
                for (int t = 0; t < DD; t++) {
                    double g = 0;
                    for (int j = 0; j < N; j++) g += coef[j] * x[j * DD + t];
                    const double h = 1e-6, keep = x[k * DD + t];
                    x[k * DD + t] = keep + h;
                    double fp = logvol_eps(N, DD, x, eps);
                    x[k * DD + t] = keep - h;
                    double fm = logvol_eps(N, DD, x, eps);
                    x[k * DD + t] = keep;
                    double fd = (fp - fm) / (2 * h);
                    maxerr = fmax(maxerr, fabs(g - fd));
                    maxg = fmax(maxg, fabs(fd));
                }
                T_CHECK(maxerr <= 1e-6 * (1 + maxg), "vertex %d eps %g: gradient differs from FD by %g (scale %g)", k, eps,
                        maxerr, maxg);
            }
        /* a degenerate simplex (the new vertex at the centroid of the others): V^2 = 0 and the
         * gradient of log(V^2 + eps) is 0 exactly there (V^2 is quadratic in the offset) */
        for (int t = 0; t < DD; t++) x[3 * DD + t] = (x[t] + x[DD + t] + x[2 * DD + t]) / 3.0;
        dist_double(N, DD, x, D);
        double vv = -1;
        T_CHECK(simplex_logvol_coeffs(N, D, 3, 1e-4, coef, &vv) == 0, "degenerate coeffs");
        double gmax = 0;
        for (int t = 0; t < DD; t++) {
            double g = 0;
            for (int j = 0; j < N; j++) g += coef[j] * x[j * DD + t];
            gmax = fmax(gmax, fabs(g));
        }
        T_CHECK(vv < 1e-9 && gmax < 1e-4, "degenerate simplex: V^2 %g, |grad| %g", vv, gmax);
        /* the gradient points outwards: a small step along it increases the volume */
        x[3 * DD + 0] += 0.01;
        dist_double(N, DD, x, D);
        simplex_logvol_coeffs(N, D, 3, 1e-4, coef, NULL);
        double before = logvol_eps(N, DD, x, 1e-4), step[DD];
        for (int t = 0; t < DD; t++) {
            step[t] = 0;
            for (int j = 0; j < N; j++) step[t] += coef[j] * x[j * DD + t];
        }
        for (int t = 0; t < DD; t++) x[3 * DD + t] += 1e-4 * step[t];
        T_CHECK(logvol_eps(N, DD, x, 1e-4) > before, "ascent along the gradient does not increase the volume");
    }

    /* Dirichlet(1): mean 1/n, variance (n-1)/(n^2 (n+1)), covariance -1/(n^2 (n+1)), sum 1 */
    for (int n = 2; n <= 5; n += 3) {
        const int M = 200000;
        double s1[5] = {0}, s2[5] = {0}, s01 = 0, worst = 0, a[5];
        int nonpos = 0;
        rng_init(&r, 7, rng_stream(RNG_SIMPLEX, 1, (uint64_t)n));
        for (int m = 0; m < M; m++) {
            simplex_dirichlet(&r, n, a);
            double tot = 0;
            for (int i = 0; i < n; i++) { s1[i] += a[i]; s2[i] += a[i] * a[i]; tot += a[i]; nonpos += !(a[i] > 0); }
            s01 += a[0] * a[1];
            worst = fmax(worst, fabs(tot - 1));
        }
        T_CHECK(worst < 1e-14, "weights do not sum to 1 (%g)", worst);
        T_CHECK(nonpos == 0, "%d weights <= 0", nonpos);
        const double mean = 1.0 / n, var = (n - 1.0) / (n * n * (n + 1.0)), cov = -1.0 / (n * n * (n + 1.0));
        /* 5 standard errors; for a_i ~ Beta(1, n-1): Var(a) = var, Var(a^2) = E a^4 - (E a^2)^2 */
        const double ea2 = 2.0 / (n * (n + 1.0)), ea4 = 24.0 / (n * (n + 1.0) * (n + 2.0) * (n + 3.0));
        for (int i = 0; i < n; i++) {
            double m1 = s1[i] / M, m2 = s2[i] / M;
            T_CLOSE(m1, mean, 0, 5 * sqrt(var / M), "Dirichlet mean");
            T_CLOSE(m2 - m1 * m1, var, 0, 5 * sqrt((ea4 - ea2 * ea2) / M), "Dirichlet variance");
        }
        T_CLOSE(s01 / M - (s1[0] / M) * (s1[1] / M), cov, 0, 5 * sqrt(ea4 / M), "Dirichlet covariance");
    }
    free(q);
    free(off);
    free(v);
    T_DONE();
}
