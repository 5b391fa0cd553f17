/* surface.c — `valley surface`: loss/error over a grid in a subspace w = ŵ + P z.
 *
 * Grid points go to the groups in chunks, dynamically: each group leader takes the next
 * chunk from a counter on world rank 0 (MPI_Fetch_and_op), so a slow group does not hold
 * up the rest. A group computes a point data-parallel (BN refresh, then train and test
 * passes) and its leader puts the values straight into a result window on rank 0
 * (MPI_Put): no full-array reduction per point. Rank 0 writes surface.nc (tmp + rename)
 * every surface.flush_seconds and at the end; a restarted sweep reads it and computes
 * only the points not marked `computed`. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/curve.h"
#include "valley/error.h"
#include "valley/hessian.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/subspace.h"
#include "valley/signals.h"
#include "valley/train.h"

#define SURFACE_TITLE "valley loss surface"
enum { Q_TRAIN_LOSS, Q_TRAIN_ERR, Q_TEST_LOSS, Q_TEST_ERR, Q_HESS_MAX, Q_HESS_MAX_RES, Q_HESS_MIN, Q_HESS_MIN_RES, NQ };
#define NQ_PLAIN Q_HESS_MAX /* the quantities without surface.hessian */
#define STRIDE (NQ + 1) /* per point in the result window: the NQ values and a computed flag */
static const char *q_names[NQ] = {"train_loss", "train_err", "test_loss", "test_err",
                                  "hessian_max", "hessian_max_residual", "hessian_min", "hessian_min_residual"};
static const char *q_long[NQ] = {"mean training NLL after BN refresh", "training error", "mean test NLL", "test error",
                                 "largest eigenvalue of the Hessian of the mean training NLL (Lanczos, BN in eval mode)",
                                 "residual bound of hessian_max", "smallest eigenvalue of that Hessian",
                                 "residual bound of hessian_min"};
static const char *q_units[NQ] = {"nats", "1", "nats", "1", "nats", "nats", "nats", "nats"};

typedef struct {
    char name[64];
    double x, y, dist;
} named_t;

static int file_title(const char *path, char *title, size_t n)
{
    int ncid;
    char *t = NULL;
    CHECK(ncio_open(path, &ncid));
    title[0] = 0;
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "title", &t) == VL_OK) snprintf(title, n, "%s", t);
    vl_error_clear();
    free(t);
    nc_close(ncid);
    return VL_OK;
}

/* The subspace of the deck from the inputs; named points and an optional curve polyline. */
static int build_subspace(vl_job_t *j, const vl_deck_t *d, int nin, char **in, vl_subspace_t *s, named_t *pts, int *npts,
                          double *cx, double *cy, int *ncurve)
{
    const char *basis = deck_str(d, "surface.basis");
    const size_t np = j->np;
    char title[128];
    *npts = 0;
    *ncurve = 0;
    CHECK(file_title(in[0], title, sizeof title));
    float *a = vl_calloc(np + 1, sizeof(float), "weights"), *b = vl_calloc(np + 1, sizeof(float), "weights");
    float *c = vl_calloc(np + 1, sizeof(float), "weights");
    int st = (a && b && c) ? VL_OK : vl_error_status();
    vl_curve_t cv;
    memset(&cv, 0, sizeof cv);
    const char *names[3] = {in[0], nin > 1 ? in[1] : "", nin > 2 ? in[2] : ""};
    if (!st && !strcmp(basis, "plane")) {
        if (nin == 1 && !strcmp(title, "valley mode-connecting curve")) {
            st = curve_read(in[0], np, &cv, NULL);
            if (!st && cv.n < 3) st = VL_FAIL_ALL(VL_EINPUT, "%s: a plane needs a curve with a trained middle point", in[0]);
            if (!st) {
                memcpy(a, cv.theta, np * sizeof(float));
                memcpy(b, cv.theta + (size_t)(cv.n / 2) * np, np * sizeof(float));
                memcpy(c, cv.theta + (size_t)(cv.n - 1) * np, np * sizeof(float));
                names[0] = "endpoint 1"; names[1] = "curve middle point"; names[2] = "endpoint 2";
            }
        } else if (nin == 3) {
            st = ckpt_read(in[0], j->model, a, j->state, NULL, NULL);
            if (!st) st = ckpt_read(in[1], j->model, b, j->state, NULL, NULL);
            if (!st) st = ckpt_read(in[2], j->model, c, j->state, NULL, NULL);
        } else {
            st = VL_FAIL_ALL(VL_EINPUT, "surface.basis = plane: give three checkpoints (w0, middle, w2) or one curve.nc");
        }
        if (!st) st = subspace_plane(s, np, a, b, c);
        if (!st) {
            const float *p3[3] = {a, b, c};
            for (int i = 0; i < 3; i++) {
                double z[2];
                pts[i].dist = subspace_project(s, p3[i], z);
                pts[i].x = z[0];
                pts[i].y = z[1];
                snprintf(pts[i].name, sizeof pts[i].name, "%s", names[i]);
            }
            *npts = 3;
        }
        if (!st && cv.n) { /* the curve drawn in the plane */
            double cc[64], z[2];
            for (int q = 0; q < 51 && cv.n <= 64; q++) {
                curve_coeffs(&cv, q / 50.0, cc);
                curve_point(&cv, cc, a);
                subspace_project(s, a, z);
                cx[q] = z[0];
                cy[q] = z[1];
            }
            *ncurve = cv.n <= 64 ? 51 : 0;
        }
    } else if (!st && !strcmp(basis, "line")) {
        if (nin != 2) st = VL_FAIL_ALL(VL_EINPUT, "surface.basis = line: give two checkpoints");
        if (!st) st = ckpt_read(in[0], j->model, a, j->state, NULL, NULL);
        if (!st) st = ckpt_read(in[1], j->model, b, j->state, NULL, NULL);
        if (!st) st = subspace_line(s, np, a, b);
        if (!st) {
            snprintf(pts[0].name, 64, "%s", in[0]);
            snprintf(pts[1].name, 64, "%s", in[1]);
            pts[1].x = 1;
            *npts = 2;
        }
    } else if (!st && !strcmp(basis, "random")) {
        if (nin != 1) st = VL_FAIL_ALL(VL_EINPUT, "surface.basis = random: give one checkpoint (the centre)");
        int nt;
        const vl_tensor_t *t = model_tensors(j->model, &nt);
        if (!st) st = ckpt_read(in[0], j->model, a, j->state, NULL, NULL);
        if (!st) st = subspace_random(s, np, 2, a, t, nt, (uint64_t)deck_int(d, "run.seed"), 0);
        if (!st) { snprintf(pts[0].name, 64, "%s", in[0]); *npts = 1; }
    } else if (!st && !strcmp(basis, "pca")) {
        int ncid = -1, v;
        size_t len[2] = {0, 0};
        long long want[2] = {-1, (long long)np}, w1 = (long long)np;
        st = ncio_open(in[0], &ncid);
        if (!st) st = ncio_var(ncid, in[0], "basis", NC_FLOAT, 2, want, &v, len);
        if (!st && len[0] == 0) st = VL_FAIL(VL_EINPUT, "%s: variable 'basis' has no rows", in[0]);
        int k = len[0] >= 2 ? 2 : 1;
        if (!st) st = subspace_alloc(s, np, k, "pca");
        size_t s2[2] = {0, 0}, c2[2] = {(size_t)k, np};
        if (!st) st = ncio_check(nc_get_vara_float(ncid, v, s2, c2, s->basis), VL_EINPUT, in[0], "basis");
        if (!st) st = ncio_var(ncid, in[0], "shift", NC_FLOAT, 1, &w1, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_float(ncid, v, s->shift), VL_EINPUT, in[0], "shift");
        if (ncid >= 0) nc_close(ncid);
        for (int i = 1; i < nin && !st; i++) { /* further inputs: checkpoints to project (SGD iterates, SWA) */
            st = ckpt_read(in[i], j->model, a, j->state, NULL, NULL);
            double z[2] = {0, 0};
            if (!st && *npts < 64) {
                pts[*npts].dist = subspace_project(s, a, z);
                pts[*npts].x = z[0];
                pts[*npts].y = k > 1 ? z[1] : 0;
                snprintf(pts[*npts].name, 64, "%s", in[i]);
                (*npts)++;
            }
        }
    } else if (!st) {
        st = VL_FAIL_ALL(VL_EINPUT, "surface.basis: unknown '%s'", basis);
    }
    curve_free(&cv);
    free(a); free(b); free(c);
    CHECK(st);
    return VL_OK;
}

static int write_surface(const char *path, const vl_deck_t *d, const double *xs, int nx, const double *ys, int ny,
                         const double *res, const signed char *done, const named_t *pts, int npts, const double *cx,
                         const double *cy, int ncurve, const char *basis, const char *inputs, int nq)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, SURFACE_TITLE, deck_text(d)));
    int dx, dy, dp = -1, dc = -1, vx, vy, vq[NQ], vdone, vpn = -1, vpx = -1, vpy = -1, vpd = -1, vcx = -1, vcy = -1, st;
    st = ncio_def_dim(&f, "x", (size_t)nx, &dx);
    if (!st) st = ncio_def_dim(&f, "y", (size_t)ny, &dy);
    if (!st) st = ncio_def_var(&f, "x", NC_DOUBLE, 1, &dx, "first subspace coordinate", "1", &vx);
    if (!st) st = ncio_def_var(&f, "y", NC_DOUBLE, 1, &dy, "second subspace coordinate", "1", &vy);
    int d2[2] = {dy, dx};
    const float fill = NC_FILL_FLOAT;
    for (int q = 0; q < nq && !st; q++) {
        st = ncio_def_var(&f, q_names[q], NC_FLOAT, 2, d2, q_long[q], q_units[q], &vq[q]);
        if (!st) st = ncio_check(nc_def_var_fill(f.ncid, vq[q], 0, &fill), VL_EIO, path, q_names[q]);
    }
    if (!st) st = ncio_def_var(&f, "computed", NC_BYTE, 2, d2, "1 where the point has been computed (restart)", "1", &vdone);
    if (!st && npts > 0) {
        st = ncio_def_dim(&f, "point", (size_t)npts, &dp);
        if (!st) st = ncio_def_var(&f, "point_name", NC_STRING, 1, &dp, "named point", NULL, &vpn);
        if (!st) st = ncio_def_var(&f, "point_x", NC_DOUBLE, 1, &dp, "projected x of the named point", "1", &vpx);
        if (!st) st = ncio_def_var(&f, "point_y", NC_DOUBLE, 1, &dp, "projected y of the named point", "1", &vpy);
        if (!st) st = ncio_def_var(&f, "point_distance", NC_DOUBLE, 1, &dp, "distance of the point from the subspace", "1", &vpd);
    }
    if (!st && ncurve > 0) {
        st = ncio_def_dim(&f, "curve_t", (size_t)ncurve, &dc);
        if (!st) st = ncio_def_var(&f, "curve_x", NC_DOUBLE, 1, &dc, "the curve projected on the plane, x", "1", &vcx);
        if (!st) st = ncio_def_var(&f, "curve_y", NC_DOUBLE, 1, &dc, "the curve projected on the plane, y", "1", &vcy);
    }
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "surface_basis", basis);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "inputs", inputs);
    if (!st) st = ncio_enddef(&f);
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vx, xs), VL_EIO, path, "x");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vy, ys), VL_EIO, path, "y");
    float *buf = malloc(sizeof(float) * (size_t)nx * ny + 4);
    for (int q = 0; q < nq && !st && buf; q++) {
        for (int p = 0; p < nx * ny; p++) {
            double v = res[(size_t)p * STRIDE + q];
            buf[p] = done[p] && isfinite(v) ? (float)v : fill;
        }
        st = ncio_check(nc_put_var_float(f.ncid, vq[q], buf), VL_EIO, path, q_names[q]);
    }
    free(buf);
    if (!st) st = ncio_check(nc_put_var_schar(f.ncid, vdone, done), VL_EIO, path, "computed");
    for (int i = 0; i < npts && !st; i++) {
        size_t idx = (size_t)i, one = 1;
        const char *nm = pts[i].name;
        st = ncio_check(nc_put_vara_string(f.ncid, vpn, &idx, &one, &nm), VL_EIO, path, "point_name");
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vpx, &idx, &one, &pts[i].x), VL_EIO, path, "point_x");
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vpy, &idx, &one, &pts[i].y), VL_EIO, path, "point_y");
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vpd, &idx, &one, &pts[i].dist), VL_EIO, path, "point_distance");
    }
    if (!st && ncurve > 0) st = ncio_check(nc_put_var_double(f.ncid, vcx, cx), VL_EIO, path, "curve_x");
    if (!st && ncurve > 0) st = ncio_check(nc_put_var_double(f.ncid, vcy, cy), VL_EIO, path, "curve_y");
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* A previous surface.nc of the same grid: its computed points and values. */
static void load_previous(const char *path, int nx, int ny, double *res, signed char *done, const char *basis, int nq)
{
    int ncid, v, dim;
    size_t lx = 0, ly = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return;
    char *b = NULL;
    int ok = nc_inq_dimid(ncid, "x", &dim) == NC_NOERR && nc_inq_dimlen(ncid, dim, &lx) == NC_NOERR &&
             nc_inq_dimid(ncid, "y", &dim) == NC_NOERR && nc_inq_dimlen(ncid, dim, &ly) == NC_NOERR &&
             (int)lx == nx && (int)ly == ny && ncio_get_att_text(ncid, NC_GLOBAL, path, "surface_basis", &b) == VL_OK &&
             !strcmp(b, basis);
    vl_error_clear();
    free(b);
    float *buf = malloc(sizeof(float) * (size_t)nx * ny + 4);
    if (ok && buf && nc_inq_varid(ncid, "computed", &v) == NC_NOERR && nc_get_var_schar(ncid, v, done) == NC_NOERR) {
        int all = 1; /* a sweep that now also wants the Hessian maps recomputes points without them */
        for (int q = 0; q < nq; q++)
            if (nc_inq_varid(ncid, q_names[q], &v) == NC_NOERR && nc_get_var_float(ncid, v, buf) == NC_NOERR)
                for (int p = 0; p < nx * ny; p++)
                    res[(size_t)p * STRIDE + q] = buf[p] == NC_FILL_FLOAT ? NAN : buf[p];
            else all = 0;
        if (!all) memset(done, 0, (size_t)nx * ny);
        for (int p = 0; p < nx * ny; p++) res[(size_t)p * STRIDE + NQ] = done[p] ? 1.0 : 0.0;
    } else {
        memset(done, 0, (size_t)nx * ny);
    }
    free(buf);
    nc_close(ncid);
}

/* Responses of the first (dense) layer to the subspace's shift and directions, once per
 * sample: split x (n, fin) becomes (n, (1+k)*fout), response r = x W_r^T + b_r with W_r, b_r
 * the first layer's part of the shift (r = 0) or of direction r. */
static int precompute_split(vl_split_t *sp, const vl_subspace_t *s, size_t wo, size_t bo, int fin, int fout)
{
    const int R = 1 + s->k;
    const int64_t n = sp->hi - sp->lo;
    float *nx = vl_alloc(((size_t)n * R * fout + 1) * sizeof(float), "first-layer responses");
    if (!nx) return vl_error_status();
    for (int r = 0; r < R; r++) {
        const float *v = r == 0 ? s->shift : s->basis + (size_t)(r - 1) * s->d;
        for (int64_t i = 0; i < n; i++) memcpy(nx + ((size_t)i * R + r) * fout, v + bo, (size_t)fout * sizeof(float));
        if (n) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, fout, fin, 1.0f, sp->x, fin, v + wo, fin, 1.0f,
                           nx + (size_t)r * fout, R * fout);
    }
    free(sp->x);
    sp->x = nx;
    sp->in_dim = R * fout;
    return VL_OK;
}

/* When the model's first layer is dense (mlp), replaces the job's model by one whose first
 * layer combines precomputed responses (model_combine) and the splits by those responses:
 * a grid point then costs the layers after the first only. Sets *on. Collective over the
 * group only through the agreement on failure. */
static int surface_precompute(vl_job_t *j, const vl_subspace_t *s, int *on)
{
    size_t wo, bo;
    int fin, fout;
    *on = 0;
    if (!model_first_dense(j->model, &wo, &bo, &fin, &fout) || 1 + s->k > MODEL_COMBINE_MAX) return VL_OK;
    const int R = 1 + s->k;
    const double bytes = (double)((j->train.hi - j->train.lo) + (j->test.hi - j->test.lo)) * R * fout * sizeof(float);
    if (bytes > 2e9) {
        vl_log(j->gcomm, "surface: first-layer responses would need %.1f GB per rank: computed per point instead", bytes / 1e9);
        return VL_OK;
    }
    vl_model_t *m2 = NULL;
    int st = model_create(&j->cfg, model_max_batch(j->model), &m2);
    if (!st) st = model_combine(m2, R);
    if (!st) st = precompute_split(&j->train, s, wo, bo, fin, fout);
    if (!st) st = precompute_split(&j->test, s, wo, bo, fin, fout);
    float *xb = st ? NULL : vl_alloc((size_t)j->batch * R * fout * sizeof(float), "batch responses");
    if (!st && !xb) st = vl_error_status();
    if (st) { model_free(m2); return st; }
    model_set_reduce(m2, comm_reduce_sum, &j->gcomm);
    model_free(j->model);
    j->model = m2;
    free(j->xb);
    j->xb = xb;
    *on = 1;
    vl_log(j->gcomm, "surface: first layer (%d -> %d) precomputed for the shift and %d direction(s); each point "
                     "combines %d responses per sample", fin, fout, s->k, R);
    return VL_OK;
}

int surface_command(vl_comm_t *c, vl_deck_t *d, int nin, char **in, const char *outdir)
{
    if (nin < 1) return VL_FAIL_ALL(VL_EINPUT, "surface: give the checkpoints, curve.nc or subspace.nc that define the subspace");
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(comm_agree_failure(c->world, ckpt_read_config(in[0], &cfg, dataset)));
    const int nx = (int)deck_int(d, "surface.nx");
    int ny = (int)deck_int(d, "surface.ny");
    const char *basis = deck_str(d, "surface.basis");
    if (!strcmp(basis, "line")) ny = 1;
    const int N = nx * ny, chunk = (int)deck_int(d, "surface.chunk");
    double *xs = calloc((size_t)nx, sizeof(double)), *ys = calloc((size_t)ny, sizeof(double));
    for (int i = 0; i < nx; i++)
        xs[i] = nx > 1 ? deck_double(d, "surface.xmin") + (deck_double(d, "surface.xmax") - deck_double(d, "surface.xmin")) * i / (nx - 1)
                       : deck_double(d, "surface.xmin");
    for (int i = 0; i < ny; i++)
        ys[i] = ny > 1 ? deck_double(d, "surface.ymin") + (deck_double(d, "surface.ymax") - deck_double(d, "surface.ymin")) * i / (ny - 1)
                       : 0.0;
    vl_job_t j;
    vl_subspace_t s;
    memset(&s, 0, sizeof s);
    named_t pts[64];
    double cx[64], cy[64];
    memset(pts, 0, sizeof pts); /* the centre of a random plane is at (0, 0), distance 0 */
    int npts = 0, ncurve = 0;
    int st = job_open(&j, c, d, &cfg, dataset, in[0]);
    if (!st) st = comm_agree_failure(c->world, build_subspace(&j, d, nin, in, &s, pts, &npts, cx, cy, &ncurve));
    int pre = 0;
    const int hess = deck_bool(d, "surface.hessian"), nq = hess ? NQ : NQ_PLAIN;
    vl_hess_t hs;
    memset(&hs, 0, sizeof hs);
    /* the Hessian needs the network itself: no precomputed first layer */
    if (!st && deck_bool(d, "surface.precompute") && !hess) st = comm_agree_failure(c->world, surface_precompute(&j, &s, &pre));
    if (!st && hess) st = comm_agree_failure(c->world, hess_init(&hs, &j, deck_int(d, "hessian.samples")));
    /* Results on rank 0, exposed to every rank for MPI_Put; the counter of taken chunks. */
    double *res = NULL;
    signed char *done = calloc((size_t)N + 1, 1);
    int *todo = calloc((size_t)N + 1, sizeof(int));
    int ntodo = 0;
    char path[8400];
    snprintf(path, sizeof path, "%s/surface.nc", outdir);
    if (!st && c->rank == 0) st = ncio_mkdirs(outdir);
    st = comm_agree_failure(c->world, st);
    MPI_Win wres = MPI_WIN_NULL, wctr = MPI_WIN_NULL;
    long long *ctr = NULL;
    if (!st) {
        MPI_Win_allocate(c->rank == 0 ? (MPI_Aint)((size_t)N * STRIDE * sizeof(double)) : 0, sizeof(double), MPI_INFO_NULL,
                         c->world, &res, &wres);
        MPI_Win_allocate(c->rank == 0 ? (MPI_Aint)sizeof(long long) : 0, sizeof(long long), MPI_INFO_NULL, c->world, &ctr, &wctr);
        if (c->rank == 0) {
            MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wres);
            for (int p = 0; p < N * STRIDE; p++) res[p] = p % STRIDE == NQ ? 0.0 : NAN;
            if (!deck_bool(d, "run.overwrite")) load_previous(path, nx, ny, res, done, basis, nq); /* restart */
            MPI_Win_unlock(0, wres);
            MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wctr);
            *ctr = 0;
            MPI_Win_unlock(0, wctr);
        }
        MPI_Bcast(done, N, MPI_SIGNED_CHAR, 0, c->world);
        for (int p = 0; p < N; p++)
            if (!done[p]) todo[ntodo++] = p;
        vl_log(c->world, "surface (%s basis, %d x %d grid): %d point(s) to compute%s, %d group(s) of %d rank(s), chunks of %d",
               basis, nx, ny, ntodo, ntodo < N ? " (the rest from the previous surface.nc)" : "", c->ngroups, c->gsize, chunk);
        if (hess)
            vl_log(c->world, "surface: with the Hessian's extreme eigenvalues at each point (Lanczos, %lld steps, mean NLL over "
                             "%lld training samples, BN in eval mode after the point's refresh)",
                   deck_int(d, "hessian.steps"), (long long)hs.n);
        MPI_Barrier(c->world);
    }
    const int stop_after = (int)deck_int(d, "debug.surface_stop_after");
    const double flush = deck_double(d, "surface.flush_seconds");
    const int want_train = deck_bool(d, "surface.train"), want_test = deck_bool(d, "surface.test");
    double t0 = vl_now(), last_flush = vl_now();
    int mine = 0, stopped = 0;
    float *w = j.w;
    const int was_graceful = signals_graceful(1); /* a signal ends the sweep between chunks (exit 143) */
    while (!st) {
        int sig = vl_stop_signal != 0; /* a stop request on any rank of the group stops the group */
        MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, c->group);
        if (sig) { stopped = 2; break; }
        long long k = 0, one = 1;
        if (c->grank == 0) {
            MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, wctr);
            MPI_Fetch_and_op(&one, &k, MPI_LONG_LONG, 0, 0, MPI_SUM, wctr);
            MPI_Win_unlock(0, wctr);
        }
        MPI_Bcast(&k, 1, MPI_LONG_LONG, 0, c->group);
        const long long first = k * chunk;
        if (first >= ntodo) break;
        if (stop_after > 0 && first >= stop_after) { stopped = 1; break; } /* tests: an interrupted sweep */
        for (long long q = first; q < first + chunk && q < ntodo && !st; q++) {
            const int p = todo[q], ix = p % nx, iy = p / nx;
            double z[2] = {xs[ix], ys[iy]}, vals[STRIDE];
            subspace_point(&s, z, w);
            if (pre) {
                float coef[MODEL_COMBINE_MAX] = {1.0f};
                for (int i = 0; i < s.k; i++) coef[1 + i] = (float)z[i];
                model_set_combine_coef(j.model, coef);
            }
            vl_pass_t tr = {0, 0, 0}, te = {0, 0, 0};
            st = job_bn_update(&j, w, j.state, deck_double(d, "eval.bn_subset"));
            if (!st && want_train) st = job_eval(&j, w, j.state, &j.train, NULL, &tr);
            if (!st && want_test) st = job_eval(&j, w, j.state, &j.test, NULL, &te);
            vals[Q_TRAIN_LOSS] = want_train ? tr.loss_sum / tr.n : NAN;
            vals[Q_TRAIN_ERR] = want_train ? 1 - tr.correct / tr.n : NAN;
            vals[Q_TEST_LOSS] = want_test ? te.loss_sum / te.n : NAN;
            vals[Q_TEST_ERR] = want_test ? 1 - te.correct / te.n : NAN;
            for (int q = NQ_PLAIN; q < NQ; q++) vals[q] = NAN;
            if (!st && hess) { /* the Hessian at the point, its BN statistics just refreshed */
                double ext[4];
                st = hess_extremes(&hs, w, j.state, (int)deck_int(d, "hessian.steps"), (uint64_t)deck_int(d, "run.seed"),
                                   rng_stream(RNG_HESSIAN, 1, (uint64_t)p), NULL, ext);
                vals[Q_HESS_MAX] = ext[0];
                vals[Q_HESS_MAX_RES] = ext[1];
                vals[Q_HESS_MIN] = ext[2];
                vals[Q_HESS_MIN_RES] = ext[3];
            }
            vals[NQ] = 1.0; /* computed, even when a value is not finite (stored as fill) */
            if (!st && c->grank == 0) {
                MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wres);
                MPI_Put(vals, STRIDE, MPI_DOUBLE, 0, (MPI_Aint)p * STRIDE, STRIDE, MPI_DOUBLE, wres);
                MPI_Win_unlock(0, wres);
            }
            mine++;
        }
        if (!st) {
            double el = vl_now() - t0;
            char eta[32];
            long long left = ntodo - (first + chunk);
            vl_fmt_duration(left > 0 ? el / mine * left / c->ngroups : 0, eta, sizeof eta);
            vl_log(j.gcomm, "group %d: %d point(s) done (%.2f s/point) | chunk %lld of %d | ETA %s", c->group_id, mine,
                   el / mine, k + 1, (ntodo + chunk - 1) / chunk, eta);
        }
        if (!st && c->rank == 0 && vl_now() - last_flush > flush) { /* results so far land in surface.nc */
            MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wres);
            for (int p = 0; p < N; p++) done[p] = res[(size_t)p * STRIDE + NQ] == 1.0;
            st = write_surface(path, d, xs, nx, ys, ny, res, done, pts, npts, cx, cy, ncurve, basis, in[0], nq);
            MPI_Win_unlock(0, wres);
            last_flush = vl_now();
        }
    }
    signals_graceful(was_graceful);
    /* A failure inside the sweep is this rank's alone (others may wait in a group
     * collective): no agreement here, main ends the job with MPI_Abort. */
    if (st) { vl_trace(__FILE__, __LINE__); return st; }
    if (wres != MPI_WIN_NULL) MPI_Barrier(c->world); /* every put is complete (each was unlocked) */
    if (!st && c->rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wres);
        for (int p = 0; p < N; p++) done[p] = res[(size_t)p * STRIDE + NQ] == 1.0;
        st = write_surface(path, d, xs, nx, ys, ny, res, done, pts, npts, cx, cy, ncurve, basis, in[0], nq);
        MPI_Win_unlock(0, wres);
        if (!st)
            vl_log(MPI_COMM_SELF, "wrote %s%s", path,
                   stopped == 1 ? " (partial: stopped by debug.surface_stop_after)"
                   : stopped == 2 ? " (partial: stopped by a signal; the same command computes the rest)" : "");
    }
    st = comm_agree_failure(c->world, st);
    if (wres != MPI_WIN_NULL) MPI_Win_free(&wres);
    if (wctr != MPI_WIN_NULL) MPI_Win_free(&wctr);
    subspace_free(&s);
    hess_free(&hs);
    job_close(&j);
    free(xs); free(ys); free(done); free(todo);
    int any_stopped = stopped; /* one group stopped by a signal: the job ends 143 */
    if (!st) MPI_Allreduce(&stopped, &any_stopped, 1, MPI_INT, MPI_MAX, c->world);
    if (!st && any_stopped == 1)
        return VL_FAIL_ALL(VL_ESIGNAL, "surface sweep stopped after %d points (debug.surface_stop_after)", stop_after);
    if (!st && any_stopped == 2)
        return VL_FAIL_ALL(VL_ESIGNAL, "surface sweep stopped by a signal; surface.nc holds the points computed so far: "
                                       "the same command computes the rest");
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}
