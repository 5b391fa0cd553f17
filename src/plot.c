/* plot.c — figures from output files (see plot.h). */
#include "valley/plot.h"

#include <libgen.h>
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/figure.h"
#include "valley/infer.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/simplex.h"

/* Reads a 1-D double variable of length n (any numeric type). NULL if absent. */
static double *read_1d(int ncid, const char *path, const char *name, size_t *n)
{
    int v, nd, dim;
    if (nc_inq_varid(ncid, name, &v) != NC_NOERR) return NULL;
    if (nc_inq_varndims(ncid, v, &nd) != NC_NOERR || nd != 1) return NULL;
    nc_inq_vardimid(ncid, v, &dim);
    nc_inq_dimlen(ncid, dim, n);
    double *x = calloc(*n + 1, sizeof(double));
    if (x && nc_get_var_double(ncid, v, x) != NC_NOERR) {
        VL_FAIL(VL_EINPUT, "%s: cannot read variable '%s'", path, name);
        free(x);
        return NULL;
    }
    return x;
}

/* "<outdir or dir of path>/<stem of path><suffix>.png" */
static void out_name(char *buf, size_t len, const char *path, const char *outdir, const char *suffix)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    char *stem = basename(a), *dir = dirname(b);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    snprintf(buf, len, "%s/%s%s.png", outdir ? outdir : dir, stem, suffix);
}

static int plot_history(int ncid, const char *path, const char *outdir)
{
    size_t n = 0, m;
    double *ep = read_1d(ncid, path, "epoch", &n);
    double *trl = read_1d(ncid, path, "train_loss", &m), *tel = read_1d(ncid, path, "test_loss", &m);
    double *tra = read_1d(ncid, path, "train_acc", &m), *tea = read_1d(ncid, path, "test_acc", &m);
    int st = VL_OK;
    if (!ep || !trl || !tel || !tra || !tea) st = VL_FAIL(VL_EINPUT, "%s: not a complete history file", path);
    if (!st) {
        double *tre = malloc(n * sizeof(double)), *tee = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) { tre[i] = 1 - tra[i]; tee[i] = 1 - tea[i]; }
        fig_series_t loss[2] = {{.x = ep, .y = trl, .n = (int)n, .label = "train", .style = FIG_LINE_MARKERS},
                                {.x = ep, .y = tel, .n = (int)n, .label = "test", .style = FIG_LINE_MARKERS}};
        fig_series_t err[2] = {{.x = ep, .y = tre, .n = (int)n, .label = "train", .style = FIG_LINE_MARKERS},
                               {.x = ep, .y = tee, .n = (int)n, .label = "test", .style = FIG_LINE_MARKERS}};
        fig_axes_t ax[2] = {{.title = "loss", .xlabel = "epoch", .ylabel = "mean NLL (nats)", .logy = 1},
                            {.title = "error", .xlabel = "epoch", .ylabel = "error (fraction)", .logy = 1}};
        const fig_series_t *ss[2] = {loss, err};
        int ns[2] = {2, 2};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "");
        st = fig_lines_panels(out, 2, ax, ss, ns, "training history");
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
        free(tre);
        free(tee);
    }
    free(ep); free(trl); free(tel); free(tra); free(tea);
    return st;
}

static int plot_eval(int ncid, const char *path, const char *outdir)
{
    size_t n = 0, m;
    double *lo = read_1d(ncid, path, "bin_lower", &n), *hi = read_1d(ncid, path, "bin_upper", &m);
    double *acc = read_1d(ncid, path, "bin_accuracy", &m), *conf = read_1d(ncid, path, "bin_confidence", &m);
    double *cnt = read_1d(ncid, path, "bin_count", &m);
    double ece = NAN;
    int v;
    if (nc_inq_varid(ncid, "ece", &v) == NC_NOERR) nc_get_var_double(ncid, v, &ece);
    int st = VL_OK;
    if (!lo || !hi || !acc || !conf || !cnt) st = VL_FAIL(VL_EINPUT, "%s: no reliability bins", path);
    if (!st) {
        long long *c = malloc(n * sizeof(long long));
        for (size_t i = 0; i < n; i++) c[i] = (long long)cnt[i];
        fig_reliability_t r = {.name = "model", .nbins = (int)n, .bin_lo = lo, .bin_hi = hi, .acc = acc, .conf = conf,
                               .count = c, .ece = ece};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "_reliability");
        st = fig_reliability(out, &r, 1, "reliability (15 equal-width bins)");
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
        free(c);
    }
    free(lo); free(hi); free(acc); free(conf); free(cnt);
    return st;
}

/* curve_eval.nc: loss and error against t, curve and straight line, train and test. */
static int plot_curve(int ncid, const char *path, const char *outdir)
{
    size_t n = 0, m;
    const char *names[8] = {"train_loss", "test_loss", "line_train_loss", "line_test_loss",
                            "train_err", "test_err", "line_train_err", "line_test_err"};
    double *t = read_1d(ncid, path, "t", &n), *v[8];
    int st = t ? VL_OK : VL_FAIL(VL_EINPUT, "%s: no t", path);
    for (int k = 0; k < 8; k++) {
        v[k] = read_1d(ncid, path, names[k], &m);
        if (!v[k]) st = VL_FAIL(VL_EINPUT, "%s: no variable %s", path, names[k]);
    }
    if (!st) {
        const char *labels[4] = {"curve, train", "curve, test", "line, train", "line, test"};
        const int styles[4] = {FIG_LINE_MARKERS, FIG_LINE_MARKERS, FIG_DASHED, FIG_DASHED};
        const int colors[4] = {1, 2, 1, 2};
        fig_series_t loss[4], err[4];
        for (int k = 0; k < 4; k++) {
            loss[k] = (fig_series_t){.x = t, .y = v[k], .n = (int)n, .label = labels[k], .style = styles[k], .color = colors[k]};
            err[k] = (fig_series_t){.x = t, .y = v[4 + k], .n = (int)n, .label = labels[k], .style = styles[k], .color = colors[k]};
        }
        fig_axes_t ax[2] = {{.title = "loss along the path", .xlabel = "t", .ylabel = "mean NLL (nats)", .logy = 1},
                            {.title = "error along the path", .xlabel = "t", .ylabel = "error (fraction)", .logy = 1}};
        const fig_series_t *ss[2] = {loss, err};
        int ns[2] = {4, 4};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "");
        st = fig_lines_panels(out, 2, ax, ss, ns, "mode connectivity: fitted curve vs straight line");
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    free(t);
    for (int k = 0; k < 8; k++) free(v[k]);
    return st;
}

/* surface.nc: train loss (log-spaced levels) and test error contours, points and curve on top. */
static int plot_surface(int ncid, const char *path, const char *outdir)
{
    size_t nx = 0, ny = 0, m, np = 0, nc = 0;
    double *x = read_1d(ncid, path, "x", &nx), *y = read_1d(ncid, path, "y", &ny);
    double *px = read_1d(ncid, path, "point_x", &np), *py = read_1d(ncid, path, "point_y", &m);
    double *cx = read_1d(ncid, path, "curve_x", &nc), *cy = read_1d(ncid, path, "curve_y", &m);
    int st = (x && y) ? VL_OK : VL_FAIL(VL_EINPUT, "%s: no grid", path);
    fig_point_t pts[64];
    char *names[64] = {0};
    static char short_names[64][128];
    int vn;
    if (np > 64) np = 64;
    for (size_t i = 0; i < np && px && py; i++) {
        size_t one = 1;
        if (nc_inq_varid(ncid, "point_name", &vn) == NC_NOERR) nc_get_vara_string(ncid, vn, &i, &one, &names[i]);
        /* a file name as a label: its last directory part and stem (".../group_0/swag.nc" -> "group_0/swag") */
        snprintf(short_names[i], sizeof short_names[i], "%s", names[i] ? names[i] : "");
        char *dot = strstr(short_names[i], ".nc");
        if (dot && dot[3] == 0) *dot = 0;
        char *last = strrchr(short_names[i], '/');
        if (last) {
            *last = 0;
            char *prev = strrchr(short_names[i], '/');
            *last = '/';
            memmove(short_names[i], prev ? prev + 1 : short_names[i], strlen(prev ? prev + 1 : short_names[i]) + 1);
        }
        pts[i] = (fig_point_t){.x = px[i], .y = py[i], .label = short_names[i]};
    }
    fig_polyline_t line = {.x = cx, .y = cy, .n = (int)nc, .label = "curve"};
    const char *qs[2] = {"train_loss", "test_err"}, *labels[2] = {"train loss (nats)", "test error"};
    const char *suffix[2] = {"_train_loss", "_test_err"};
    float *buf = malloc(sizeof(float) * nx * ny + 4);
    double *z = malloc(sizeof(double) * nx * ny + 8);
    for (int q = 0; q < 2 && !st && buf && z; q++) {
        int v;
        if (nc_inq_varid(ncid, qs[q], &v) != NC_NOERR || nc_get_var_float(ncid, v, buf) != NC_NOERR) continue;
        int any = 0;
        for (size_t i = 0; i < nx * ny; i++) {
            z[i] = buf[i] == NC_FILL_FLOAT ? NAN : buf[i];
            any |= !isnan(z[i]);
        }
        if (!any || ny < 2) continue;
        char out[8400], title[128];
        out_name(out, sizeof out, path, outdir, suffix[q]);
        snprintf(title, sizeof title, "%s over the subspace", labels[q]);
        fig_axes_t ax = {.title = title, .xlabel = "x", .ylabel = "y"};
        st = fig_contour(out, &ax, x, (int)nx, y, (int)ny, z, NULL, 12, 1, pts, px && py ? (int)np : 0,
                         nc ? &line : NULL, nc ? 1 : 0, labels[q]);
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    /* surface.hessian: the largest eigenvalue and |lambda_min / lambda_max| (loss-landscape's map of
     * how convex the surface is: near 0 where the curvature is positive in every direction) */
    int vmax, vmin;
    float *b2 = malloc(sizeof(float) * nx * ny + 4);
    if (!st && buf && b2 && z && ny >= 2 && nc_inq_varid(ncid, "hessian_max", &vmax) == NC_NOERR &&
        nc_inq_varid(ncid, "hessian_min", &vmin) == NC_NOERR && nc_get_var_float(ncid, vmax, buf) == NC_NOERR &&
        nc_get_var_float(ncid, vmin, b2) == NC_NOERR) {
        for (int q = 0; q < 2 && !st; q++) {
            int any = 0;
            for (size_t i = 0; i < nx * ny; i++) {
                const double mx = buf[i] == NC_FILL_FLOAT ? NAN : buf[i], mn = b2[i] == NC_FILL_FLOAT ? NAN : b2[i];
                z[i] = q == 0 ? mx : (mx > 0 ? fabs(mn) / mx : NAN);
                any |= !isnan(z[i]);
            }
            if (!any) continue;
            char out[8400];
            out_name(out, sizeof out, path, outdir, q == 0 ? "_hessian_max" : "_hessian_ratio");
            fig_axes_t ax = {.title = q == 0 ? "largest Hessian eigenvalue over the subspace"
                                             : "|lambda_min / lambda_max| of the Hessian over the subspace",
                             .xlabel = "x", .ylabel = "y"};
            st = fig_contour(out, &ax, x, (int)nx, y, (int)ny, z, NULL, 12, q == 0, pts, px && py ? (int)np : 0,
                             nc ? &line : NULL, nc ? 1 : 0, q == 0 ? "lambda_max (nats)" : "|lambda_min| / lambda_max");
            if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
        }
    }
    free(b2);
    for (size_t i = 0; i < np; i++) if (names[i]) nc_free_string(1, &names[i]);
    free(buf); free(z); free(x); free(y); free(px); free(py); free(cx); free(cy);
    return st;
}

/* hessian.nc (issue 19): the spectral density on a log scale (PyHessian's figure) and each run's
 * quadrature nodes (Ritz values) with their weights -> <stem>_density.png. */
static int plot_hessian(int ncid, const char *path, const char *outdir)
{
    size_t ng = 0, nk = 0;
    double *dx = read_1d(ncid, path, "density_x", &ng), *dn = read_1d(ncid, path, "density", &ng);
    double *top = read_1d(ncid, path, "top_eigenvalues", &nk);
    int st = dx && dn && top && ng >= 2 && nk >= 1 ? VL_OK : VL_FAIL(VL_EINPUT, "%s: no density or eigenvalues", path);
    int vr, vw, dims[2];
    size_t R = 0, S = 0;
    if (!st && (nc_inq_varid(ncid, "ritz", &vr) != NC_NOERR || nc_inq_varid(ncid, "ritz_weight", &vw) != NC_NOERR))
        st = VL_FAIL(VL_EINPUT, "%s: no Ritz values", path);
    if (!st) {
        nc_inq_vardimid(ncid, vr, dims);
        nc_inq_dimlen(ncid, dims[0], &R);
        nc_inq_dimlen(ncid, dims[1], &S);
    }
    double *rz = st ? NULL : calloc(R * S + 1, sizeof(double)), *rw = st ? NULL : calloc(R * S + 1, sizeof(double));
    if (!st && (!rz || !rw || nc_get_var_double(ncid, vr, rz) != NC_NOERR || nc_get_var_double(ncid, vw, rw) != NC_NOERR))
        st = VL_FAIL(VL_EINPUT, "%s: cannot read the Ritz values", path);
    double trace = NAN, mn = NAN;
    int v;
    if (!st && nc_inq_varid(ncid, "trace", &v) == NC_NOERR) nc_get_var_double(ncid, v, &trace);
    if (!st && nc_inq_varid(ncid, "min_eigenvalue", &v) == NC_NOERR) nc_get_var_double(ncid, v, &mn);
    if (!st) {
        double dmax = 0.0;
        for (size_t i = 0; i < ng; i++) dmax = fmax(dmax, dn[i]);
        for (size_t i = 0; i < ng; i++) dn[i] = fmax(dn[i], 1e-9 * dmax); /* the log axis: a floor 9 decades down */
        const int nr = R > 7 ? 7 : (int)R;
        fig_series_t dens = {.x = dx, .y = dn, .n = (int)ng, .label = "density (SLQ, all runs)", .style = FIG_LINE};
        fig_series_t nodes[7];
        char lab[7][32];
        for (int r = 0; r < nr; r++) {
            snprintf(lab[r], sizeof lab[r], "run %d", r);
            nodes[r] = (fig_series_t){.x = rz + (size_t)r * S, .y = rw + (size_t)r * S, .n = (int)S, .label = lab[r],
                                      .style = FIG_MARKERS, .color = r + 1};
        }
        char title[256];
        snprintf(title, sizeof title, "Hessian spectrum: lambda_max %.4g, lambda_min %.4g, trace %.4g", top[0], mn, trace);
        fig_axes_t ax[2] = {{.title = "spectral density", .xlabel = "eigenvalue", .ylabel = "density", .logy = 1},
                            {.title = "Lanczos nodes and quadrature weights", .xlabel = "Ritz value", .ylabel = "weight",
                             .logy = 1}};
        const fig_series_t *ss[2] = {&dens, nodes};
        const int ns[2] = {1, nr};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "_density");
        st = fig_lines_panels(out, 2, ax, ss, ns, title);
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    free(dx); free(dn); free(top); free(rz); free(rw);
    return st;
}

/* bma.nc with entropy histograms (issue 18): the share of test images per predictive-entropy
 * bin, a line per method, and with held-out classes a second panel of their images (the SWAG
 * paper's split-classes figure) -> <stem>_entropy.png. Nothing for a bma.nc without them. */
static int plot_bma_entropy(int ncid, const char *path, const char *outdir, char *const *names, size_t nm)
{
    int vc, vo = -1;
    if (nc_inq_varid(ncid, "entropy_count", &vc) != NC_NOERR) return VL_OK;
    const int ood = nc_inq_varid(ncid, "ood_entropy_count", &vo) == NC_NOERR;
    size_t nb = 0, m = 0;
    double *lo = read_1d(ncid, path, "entropy_bin_lower", &nb), *hi = read_1d(ncid, path, "entropy_bin_upper", &m);
    long long *cnt = calloc(nm * nb * 2 + 1, sizeof(long long));
    double *x = calloc(nb + 1, sizeof(double)), *y = calloc(nm * nb * 2 + 1, sizeof(double));
    int st = lo && hi && m == nb && cnt && x && y ? VL_OK : VL_FAIL(VL_EINPUT, "%s: cannot read the entropy bins", path);
    size_t start[2] = {0, 0}, count[2] = {nm, nb};
    if (!st && (nc_get_vara_longlong(ncid, vc, start, count, cnt) ||
                (ood && nc_get_vara_longlong(ncid, vo, start, count, cnt + nm * nb))))
        st = VL_FAIL(VL_EINPUT, "%s: cannot read the entropy counts", path);
    if (!st) {
        for (size_t b = 0; b < nb; b++) x[b] = 0.5 * (lo[b] + hi[b]);
        for (size_t k = 0; k < nm * (ood ? 2 : 1); k++) { /* shares of the images */
            long long tot = 0;
            for (size_t b = 0; b < nb; b++) tot += cnt[k * nb + b];
            for (size_t b = 0; b < nb; b++) y[k * nb + b] = tot ? (double)cnt[k * nb + b] / (double)tot : NAN;
        }
        fig_series_t ser[2][FIG_RELIABILITY_MAX];
        int ns[2] = {(int)nm, (int)nm};
        for (int p = 0; p < 2; p++)
            for (size_t k = 0; k < nm; k++)
                ser[p][k] = (fig_series_t){.x = x, .y = y + ((size_t)p * nm + k) * nb, .n = (int)nb, .label = names[k],
                                           .style = FIG_LINE_MARKERS};
        fig_axes_t ax[2] = {{.title = "test images of the training classes", .xlabel = "predictive entropy (nats)",
                             .ylabel = "share of the images"},
                            {.title = "out-of-distribution test images", .xlabel = "predictive entropy (nats)",
                             .ylabel = "share of the images"}};
        const fig_series_t *sp[2] = {ser[0], ser[1]};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "_entropy");
        st = fig_lines_panels(out, ood ? 2 : 1, ax, sp, ns, "predictive entropy of the model averages");
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    free(lo); free(hi); free(cnt); free(x); free(y);
    return st;
}

/* bma.nc: one reliability panel per method. */
static int plot_bma(int ncid, const char *path, const char *outdir)
{
    int vn, vba, vbc, vbn, vece, dim;
    size_t nm = 0, nb = 0;
    int st = VL_OK;
    if (nc_inq_varid(ncid, "method_name", &vn) || nc_inq_varid(ncid, "bin_accuracy", &vba) ||
        nc_inq_varid(ncid, "bin_confidence", &vbc) || nc_inq_varid(ncid, "bin_count", &vbn) ||
        nc_inq_varid(ncid, "ece", &vece) || nc_inq_dimid(ncid, "method", &dim) || nc_inq_dimlen(ncid, dim, &nm) ||
        nc_inq_dimid(ncid, "bin", &dim) || nc_inq_dimlen(ncid, dim, &nb))
        return VL_FAIL(VL_EINPUT, "%s: not a complete bma.nc", path);
    if (nm > FIG_RELIABILITY_MAX) nm = FIG_RELIABILITY_MAX;
    size_t m;
    double *lo = read_1d(ncid, path, "bin_lower", &m), *hi = read_1d(ncid, path, "bin_upper", &m);
    double *acc = calloc(nm * nb + 1, sizeof(double)), *conf = calloc(nm * nb + 1, sizeof(double));
    long long *cnt = calloc(nm * nb + 1, sizeof(long long));
    double ece[FIG_RELIABILITY_MAX];
    char *names[FIG_RELIABILITY_MAX] = {0};
    if (!lo || !hi || !acc || !conf || !cnt) st = VL_FAIL(VL_EINPUT, "%s: cannot read the bins", path);
    /* the first nm methods only (the buffers hold nm rows) */
    size_t start[2] = {0, 0}, count[2] = {nm, nb};
    if (!st && (nc_get_vara_double(ncid, vba, start, count, acc) || nc_get_vara_double(ncid, vbc, start, count, conf) ||
                nc_get_vara_longlong(ncid, vbn, start, count, cnt) || nc_get_vara_double(ncid, vece, start, count, ece)))
        st = VL_FAIL(VL_EINPUT, "%s: cannot read the bins", path);
    for (size_t k = 0; k < nm && !st; k++) {
        size_t idx = k, one = 1;
        if (nc_get_vara_string(ncid, vn, &idx, &one, &names[k])) st = VL_FAIL(VL_EINPUT, "%s: method_name", path);
    }
    if (!st) {
        fig_reliability_t r[FIG_RELIABILITY_MAX];
        for (size_t k = 0; k < nm; k++)
            r[k] = (fig_reliability_t){.name = names[k], .nbins = (int)nb, .bin_lo = lo, .bin_hi = hi,
                                       .acc = acc + k * nb, .conf = conf + k * nb, .count = cnt + k * nb, .ece = ece[k]};
        char out[8400];
        out_name(out, sizeof out, path, outdir, "_reliability");
        st = fig_reliability(out, r, (int)nm, "reliability of the model averages (15 equal-width bins)");
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    if (!st) st = plot_bma_entropy(ncid, path, outdir, names, nm);
    for (size_t k = 0; k < nm; k++) if (names[k]) nc_free_string(1, &names[k]);
    free(lo); free(hi); free(acc); free(conf); free(cnt);
    return st;
}

int plot_file(const char *path, const char *outdir, int *nfig)
{
    int ncid, v;
    CHECK(ncio_open(path, &ncid));
    int st;
    *nfig = 0;
    if (nc_inq_varid(ncid, "train_loss", &v) == NC_NOERR && nc_inq_varid(ncid, "lr", &v) == NC_NOERR)
        st = plot_history(ncid, path, outdir);
    else if (nc_inq_varid(ncid, "computed", &v) == NC_NOERR)
        st = plot_surface(ncid, path, outdir);
    else if (nc_inq_varid(ncid, "line_test_err", &v) == NC_NOERR)
        st = plot_curve(ncid, path, outdir);
    else if (nc_inq_varid(ncid, "vertex_component", &v) == NC_NOERR)
        st = simplex_plot(path, outdir); /* simplex.nc: plane contours, points, reliability */
    else if (nc_inq_varid(ncid, "x_grid", &v) == NC_NOERR && nc_inq_varid(ncid, "pred_std", &v) == NC_NOERR)
        st = infer_plot(path, outdir); /* 1-D regression infer.nc: predictive bands */
    else if (nc_inq_varid(ncid, "method_name", &v) == NC_NOERR)
        st = plot_bma(ncid, path, outdir); /* bma.nc, and a classification infer.nc (same bins) */
    else if (nc_inq_varid(ncid, "bin_accuracy", &v) == NC_NOERR)
        st = plot_eval(ncid, path, outdir);
    else if (nc_inq_varid(ncid, "density", &v) == NC_NOERR && nc_inq_varid(ncid, "top_eigenvalues", &v) == NC_NOERR)
        st = plot_hessian(ncid, path, outdir);
    else
        st = VL_FAIL(VL_EINPUT, "%s: no figure is known for this file (history.nc, eval.nc, fge.nc, bma.nc, curve_eval.nc, surface.nc, infer.nc, simplex.nc, hessian.nc)", path);
    nc_close(ncid);
    CHECK(st);
    *nfig = 1;
    return VL_OK;
}

/* Several hessian.nc: their densities in one panel (SGD against SWA, ...) -> hessian_compare.png
 * in outdir or beside the first input; each labelled by its directory's name. Nothing unless every
 * input is a hessian.nc. */
int plot_hessian_compare(int n, char **inputs, const char *outdir)
{
    if (n < 2 || n > 8) return VL_OK;
    double *dx[8] = {0}, *dn[8] = {0};
    size_t ng[8] = {0};
    static char labels[8][128];
    int st = VL_OK, all = 1;
    for (int i = 0; i < n && all; i++) {
        int ncid, v;
        if (nc_open(inputs[i], NC_NOWRITE, &ncid) != NC_NOERR) { all = 0; break; }
        all = nc_inq_varid(ncid, "density", &v) == NC_NOERR && nc_inq_varid(ncid, "top_eigenvalues", &v) == NC_NOERR;
        if (all) {
            dx[i] = read_1d(ncid, inputs[i], "density_x", &ng[i]);
            dn[i] = read_1d(ncid, inputs[i], "density", &ng[i]);
            all = dx[i] && dn[i];
        }
        nc_close(ncid);
        char a[4096];
        snprintf(a, sizeof a, "%s", inputs[i]);
        snprintf(labels[i], sizeof labels[i], "%s", basename(dirname(a)));
    }
    if (all) {
        fig_series_t ser[8];
        for (int i = 0; i < n; i++) {
            double mx = 0.0;
            for (size_t k = 0; k < ng[i]; k++) mx = fmax(mx, dn[i][k]);
            for (size_t k = 0; k < ng[i]; k++) dn[i][k] = fmax(dn[i][k], 1e-9 * mx);
            ser[i] = (fig_series_t){.x = dx[i], .y = dn[i], .n = (int)ng[i], .label = labels[i], .style = FIG_LINE};
        }
        char out[8400], b[4096];
        snprintf(b, sizeof b, "%s", inputs[0]);
        snprintf(out, sizeof out, "%s/hessian_compare.png", outdir ? outdir : dirname(b));
        fig_axes_t ax = {.title = "Hessian spectral densities (stochastic Lanczos quadrature)", .xlabel = "eigenvalue",
                         .ylabel = "density", .logy = 1};
        st = fig_lines(out, &ax, ser, n);
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    for (int i = 0; i < n; i++) free(dx[i]), free(dn[i]);
    return st;
}

int plot_command(vl_comm_t *c, int ninputs, char **inputs, const char *outdir)
{
    int st = VL_OK;
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "plot: give at least one output file (history.nc, eval.nc)");
    if (c->rank == 0) {
        if (outdir) st = ncio_mkdirs(outdir);
        for (int i = 0; i < ninputs && !st; i++) {
            int nf;
            st = plot_file(inputs[i], outdir, &nf);
        }
        if (!st) st = plot_hessian_compare(ninputs, inputs, outdir);
    }
    int all = comm_agree(c->world, st);
    if (all && !st) return VL_FAIL_ALL(all, "plot failed on rank 0");
    if (st) vl_error_set_collective();
    return st;
}
