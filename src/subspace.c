/* subspace.c — `valley pca`: distributed PCA of SWAG deviations or iterates, subspace.nc. */
#include "valley/subspace.h"
#include "valley/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/pca.h"

/* ------------------------------------------------------------ subspaces */

int subspace_alloc(vl_subspace_t *s, size_t d, int k, const char *kind)
{
    memset(s, 0, sizeof *s);
    if (k < 1 || k > SUBSPACE_MAX_K) return VL_FAIL(VL_EINPUT, "subspace: %d directions, want 1 to %d", k, SUBSPACE_MAX_K);
    s->d = d;
    s->k = k;
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    s->shift = vl_calloc(d + 1, sizeof(float), "subspace shift");
    s->basis = vl_calloc((size_t)k * d + 1, sizeof(float), "subspace basis");
    if (!s->shift || !s->basis) { subspace_free(s); return vl_error_status(); }
    return VL_OK;
}

void subspace_free(vl_subspace_t *s)
{
    free(s->shift);
    free(s->basis);
    memset(s, 0, sizeof *s);
}

void subspace_point(const vl_subspace_t *s, const double *z, float *w)
{
    for (size_t i = 0; i < s->d; i++) {
        double v = s->shift[i];
        for (int q = 0; q < s->k; q++) v += z[q] * s->basis[(size_t)q * s->d + i];
        w[i] = (float)v;
    }
}

static double dot_f(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

double subspace_project(const vl_subspace_t *s, const float *w, double *z)
{
    const int k = s->k;
    const size_t d = s->d;
    double G[SUBSPACE_MAX_K][SUBSPACE_MAX_K], r[SUBSPACE_MAX_K];
    for (int a = 0; a < k; a++) {
        const float *ba = s->basis + (size_t)a * d;
        double acc = 0;
        for (size_t i = 0; i < d; i++) acc += (double)ba[i] * ((double)w[i] - s->shift[i]);
        r[a] = acc;
        for (int b = 0; b <= a; b++) G[a][b] = G[b][a] = dot_f(ba, s->basis + (size_t)b * d, d);
    }
    /* Cholesky solve of the k x k normal equations. */
    double L[SUBSPACE_MAX_K][SUBSPACE_MAX_K] = {{0}};
    for (int a = 0; a < k; a++)
        for (int b = 0; b <= a; b++) {
            double v = G[a][b];
            for (int q = 0; q < b; q++) v -= L[a][q] * L[b][q];
            L[a][b] = a == b ? sqrt(v > 0 ? v : 1e-300) : v / L[b][b];
        }
    double y[SUBSPACE_MAX_K];
    for (int a = 0; a < k; a++) {
        double v = r[a];
        for (int q = 0; q < a; q++) v -= L[a][q] * y[q];
        y[a] = v / L[a][a];
    }
    for (int a = k - 1; a >= 0; a--) {
        double v = y[a];
        for (int q = a + 1; q < k; q++) v -= L[q][a] * z[q];
        z[a] = v / L[a][a];
    }
    double res = 0;
    for (size_t i = 0; i < d; i++) {
        double v = (double)w[i] - s->shift[i];
        for (int q = 0; q < k; q++) v -= z[q] * s->basis[(size_t)q * d + i];
        res += v * v;
    }
    return sqrt(res);
}

int subspace_plane(vl_subspace_t *s, size_t d, const float *w0, const float *w1, const float *w2)
{
    CHECK(subspace_alloc(s, d, 2, "plane"));
    float *b1 = s->basis, *b2 = s->basis + d;
    memcpy(s->shift, w0, d * sizeof(float));
    double n1 = 0, uv = 0;
    for (size_t i = 0; i < d; i++) {
        double e = (double)w2[i] - w0[i], f = (double)w1[i] - w0[i];
        b1[i] = (float)e;
        n1 += e * e;
        uv += e * f;
    }
    if (n1 <= 0) { subspace_free(s); return VL_FAIL_ALL(VL_EINPUT, "plane: the first and last point are the same"); }
    double n2 = 0, nv = 0;
    for (size_t i = 0; i < d; i++) {
        double f = (double)w1[i] - w0[i], e = (double)w2[i] - w0[i];
        double v = f - uv / n1 * e; /* Gram-Schmidt against u, keeping |v_raw| as the scale */
        b2[i] = (float)v;
        n2 += v * v;
        nv += f * f;
    }
    if (n2 <= 1e-12 * nv) { subspace_free(s); return VL_FAIL_ALL(VL_EINPUT, "plane: the three points are collinear"); }
    return VL_OK;
}

int subspace_line(vl_subspace_t *s, size_t d, const float *w0, const float *w1)
{
    CHECK(subspace_alloc(s, d, 1, "line"));
    memcpy(s->shift, w0, d * sizeof(float));
    for (size_t i = 0; i < d; i++) s->basis[i] = w1[i] - w0[i];
    return VL_OK;
}

int subspace_random(vl_subspace_t *s, size_t d, int k, const float *w, const vl_tensor_t *t, int nt, uint64_t seed,
                    int include_1d)
{
    CHECK(subspace_alloc(s, d, k, "random"));
    memcpy(s->shift, w, d * sizeof(float));
    for (int q = 0; q < k; q++) {
        float *dir = s->basis + (size_t)q * d;
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_DIRECTION, (uint64_t)q, 0));
        for (int ti = 0; ti < nt; ti++) {
            if (t[ti].kind != TENSOR_PARAM) continue;
            const size_t off = t[ti].offset, n = t[ti].numel;
            if (t[ti].ndim < 2 && !include_1d) continue; /* stays zero */
            const size_t nf = t[ti].ndim >= 2 ? (size_t)t[ti].shape[0] : 1, per = n / nf;
            for (size_t f = 0; f < nf; f++) {
                float *dv = dir + off + f * per;
                const float *wv = w + off + f * per;
                double dn = 0, wn = 0;
                for (size_t i = 0; i < per; i++) {
                    dv[i] = (float)rng_normal(&r);
                    dn += (double)dv[i] * dv[i];
                    wn += (double)wv[i] * wv[i];
                }
                const double sc = dn > 0 ? sqrt(wn / dn) : 0;
                for (size_t i = 0; i < per; i++) dv[i] = (float)(dv[i] * sc);
            }
        }
    }
    return VL_OK;
}

/* Reads this rank's slab [lo, lo+n) of a flat float (or double) 1-D variable. */
static int read_slab(int ncid, const char *path, const char *name, int64_t d, int64_t lo, int64_t n, double *out)
{
    int v;
    long long len = d;
    nc_type type;
    CHECK(ncio_check(nc_inq_varid(ncid, name, &v), VL_EINPUT, path, name));
    CHECK(ncio_check(nc_inq_vartype(ncid, v, &type), VL_EINPUT, path, name));
    CHECK(ncio_var(ncid, path, name, type == NC_FLOAT ? NC_FLOAT : NC_DOUBLE, 1, &len, &v, NULL));
    size_t start = (size_t)lo, count = (size_t)n;
    CHECK(ncio_check(nc_get_vara_double(ncid, v, &start, &count, out), VL_EINPUT, path, name));
    return VL_OK;
}

static int write_subspace(const vl_comm_t *c, const char *path, const vl_deck_t *d, const vl_pca_t *p,
                          const float *shift, const float *basis, int64_t lo, const char *source, const char *scale,
                          const vl_model_t *m, const vl_model_config_t *cfg, const char *dataset)
{
    ncio_file_t f;
    CHECK(ncio_create_par(&f, path, "valley subspace", deck_text(d), c->world));
    int dk, dp, dK, vs, vb, vsv, vev, vall, st;
    st = ckpt_put_model_attrs(&f, m, cfg, dataset);
    if (!st) st = ncio_def_dim(&f, "k", (size_t)p->k, &dk);
    if (!st) st = ncio_def_dim(&f, "param", (size_t)p->d, &dp);
    if (!st) st = ncio_def_dim(&f, "column", (size_t)p->K, &dK);
    int d2[2] = {dk, dp};
    if (!st) st = ncio_def_var(&f, "shift", NC_FLOAT, 1, &dp, "shift w_hat of the subspace, flat parameter order", "1", &vs);
    if (!st) st = ncio_def_var(&f, "basis", NC_FLOAT, 2, d2, "basis directions (rows): w = shift + basis^T z", "1", &vb);
    if (!st) st = ncio_def_var(&f, "singular_values", NC_DOUBLE, 1, &dk, "singular values of the directions", "1", &vsv);
    if (!st) st = ncio_def_var(&f, "explained_variance_ratio", NC_DOUBLE, 1, &dk,
                               "sigma_i^2 over the sum of all squared singular values", "1", &vev);
    if (!st) st = ncio_def_var(&f, "singular_values_all", NC_DOUBLE, 1, &dK, "all singular values of the matrix", "1", &vall);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "subspace_kind", "pca");
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "source", source);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "pca_route", pca_route_name(p->route));
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "basis_scaling",
                                    !strcmp(scale, "sv") ? "sigma_i / sqrt(K - 1) (subspace inference)" : "unit norm");
    if (!st) st = ncio_enddef(&f);
    if (!st) st = ncio_check(nc_var_par_access(f.ncid, vs, NC_COLLECTIVE), VL_EIO, path, "shift");
    if (!st) st = ncio_check(nc_var_par_access(f.ncid, vb, NC_COLLECTIVE), VL_EIO, path, "basis");
    size_t start = (size_t)lo, count = (size_t)p->d_local;
    if (!st) st = ncio_check(nc_put_vara_float(f.ncid, vs, &start, &count, shift), VL_EIO, path, "shift");
    size_t s2[2] = {0, (size_t)lo}, c2[2] = {(size_t)p->k, (size_t)p->d_local};
    if (!st) st = ncio_check(nc_put_vara_float(f.ncid, vb, s2, c2, basis), VL_EIO, path, "basis");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vsv, p->sigma), VL_EIO, path, "singular_values");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vev, p->evr), VL_EIO, path, "explained_variance_ratio");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vall, p->sigma), VL_EIO, path, "singular_values_all");
    st = comm_agree_failure(c->world, st);
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

int pca_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "pca: give swag.nc, or two or more checkpoints (an SGD trajectory)");
    vl_pca_route_t route;
    if (pca_route_parse(deck_str(d, "pca.route"), &route))
        return VL_FAIL_ALL(VL_EINPUT, "pca.route: '%s' is not one of gram2|gram|qr|svd", deck_str(d, "pca.route"));
    const char *scale = deck_str(d, "pca.scale");
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(comm_agree_failure(c->world, ckpt_read_config(inputs[0], &cfg, dataset)));
    CHECK(job_adopt_inputs(d, c->world, &cfg, dataset, inputs[0]));
    vl_model_t *m = NULL;
    CHECK(model_create(&cfg, 1, &m));
    const int64_t dd = (int64_t)model_nparams(m);
    int64_t lo, dl;
    pca_partition(dd, c->world, &lo, &dl);
    /* swag.nc (its title) or checkpoints */
    int ncid, is_swag = 0, st;
    char *title = NULL;
    st = comm_agree_failure(c->world, ncio_open(inputs[0], &ncid));
    if (st) { model_free(m); return st; }
    if (ncio_get_att_text(ncid, NC_GLOBAL, inputs[0], "title", &title) == VL_OK) is_swag = !strcmp(title, CKPT_TITLE_SWAG);
    vl_error_clear();
    free(title);
    int K = 0;
    double *A = NULL, *shift = NULL;
    char source[4200];
    if (is_swag) {
        nc_close(ncid);
        if (ninputs > 1) st = VL_FAIL_ALL(VL_EINPUT, "pca: give one swag.nc (or checkpoints only)");
        long long want[2] = {-1, dd};
        size_t len[2];
        int v = -1;
        if (!st) st = ncio_open(inputs[0], &ncid);
        if (!st) st = ncio_var(ncid, inputs[0], "deviations", NC_FLOAT, 2, want, &v, len);
        if (!st) {
            K = (int)len[0];
            A = vl_calloc((size_t)K * (size_t)dl + 1, sizeof(double), "deviation slab");
            shift = vl_calloc((size_t)dl + 1, sizeof(double), "shift slab");
            if (!A || !shift) st = vl_error_status();
        }
        size_t s2[2] = {0, (size_t)lo}, c2[2] = {(size_t)K, (size_t)dl};
        if (!st) st = ncio_check(nc_get_vara_double(ncid, v, s2, c2, A), VL_EINPUT, inputs[0], "deviations");
        if (!st) st = read_slab(ncid, inputs[0], "mean", dd, lo, dl, shift);
        if (!st || v >= 0) nc_close(ncid);
        snprintf(source, sizeof source, "SWAG deviations of %s", inputs[0]);
    } else {
        nc_close(ncid);
        K = ninputs;
        A = vl_calloc((size_t)K * (size_t)dl + 1, sizeof(double), "iterate slab");
        shift = vl_calloc((size_t)dl + 1, sizeof(double), "shift slab");
        float *w = vl_calloc((size_t)dd + 1, sizeof(float), "iterate");
        float *state = vl_calloc(model_nstate(m) + 1, sizeof(float), "state");
        if (!A || !shift || !w || !state) st = vl_error_status();
        for (int i = 0; i < K && !st; i++) {
            st = ckpt_read(inputs[i], m, w, state, NULL, NULL);
            for (int64_t q = 0; q < dl && !st; q++) A[(size_t)i * dl + q] = w[lo + q];
        }
        for (int64_t q = 0; q < dl && !st; q++) { /* centre at the mean of the iterates */
            double s = 0;
            for (int i = 0; i < K; i++) s += A[(size_t)i * dl + q];
            shift[q] = s / K;
            for (int i = 0; i < K; i++) A[(size_t)i * dl + q] -= shift[q];
        }
        free(w);
        free(state);
        snprintf(source, sizeof source, "%d iterates minus their mean (%s ... %s)", K, inputs[0], inputs[K - 1]);
    }
    st = comm_agree_failure(c->world, st);
    int k = (int)deck_int(d, "pca.rank");
    if (!st && k > K && !deck_is_set(d, "pca.rank")) { /* the default asks for more than the input holds */
        vl_log(c->world, "pca: the input has %d columns: keeping %d directions (pca.rank's default is %d)", K, K, k);
        k = K;
    }
    if (!st && !strcmp(scale, "sv") && K < 2) st = VL_FAIL_ALL(VL_EINPUT, "pca.scale = sv needs K >= 2 columns, the input has %d", K);
    if (!st && k > K) st = VL_FAIL_ALL(VL_EINPUT, "pca.rank: %d directions asked of a matrix with %d columns", k, K);
    vl_pca_t p;
    memset(&p, 0, sizeof p);
    double t0 = vl_now();
    if (!st) st = pca_compute(A, dl, dd, K, k, route, c->world, &p);
    if (!st && p.k < p.k_requested)
        vl_log(c->world, "pca: the matrix has numerical rank %d: %d of the %d directions asked are returned", p.rank, p.k,
               p.k_requested);
    float *basis = NULL, *fshift = NULL;
    if (!st) {
        basis = vl_calloc((size_t)p.k * (size_t)dl + 1, sizeof(float), "basis slab");
        fshift = vl_calloc((size_t)dl + 1, sizeof(float), "shift slab");
        if (!basis || !fshift) st = vl_error_status();
    }
    for (int i = 0; i < (st ? 0 : p.k); i++) {
        double f = !strcmp(scale, "sv") ? p.sigma[i] / sqrt((double)K - 1) : 1.0;
        for (int64_t q = 0; q < dl; q++) basis[(size_t)i * dl + q] = (float)(f * p.basis[(size_t)i * dl + q]);
    }
    for (int64_t q = 0; q < (st ? 0 : dl); q++) fshift[q] = (float)shift[q];
    if (!st) {
        char sv[256] = "", ev[256] = "";
        for (int i = 0; i < p.k && i < 8; i++) {
            snprintf(sv + strlen(sv), sizeof sv - strlen(sv), " %.4g", p.sigma[i]);
            snprintf(ev + strlen(ev), sizeof ev - strlen(ev), " %.3f", p.evr[i]);
        }
        vl_log(c->world, "pca (%s, %lld x %d over %d rank(s), %.2fs): singular values%s | explained variance%s",
               pca_route_name(route), (long long)dd, K, c->size, vl_now() - t0, sv, ev);
    }
    char path[8400];
    snprintf(path, sizeof path, "%s/subspace.nc", outdir);
    if (!st && c->rank == 0) st = ncio_mkdirs(outdir);
    if (!st) st = comm_agree_failure(c->world, st);
    if (!st) st = write_subspace(c, path, d, &p, fshift, basis, lo, source, scale, m, &cfg, dataset);
    if (!st) vl_log(c->world, "wrote %s", path);
    pca_free(&p);
    free(A); free(shift); free(basis); free(fshift);
    model_free(m);
    CHECK(st);
    return VL_OK;
}
