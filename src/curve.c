/* curve.c — Bezier / polygonal-chain curves: coefficients, training step, files,
 * and `valley curve` (train, then evaluate along t beside the straight line). */
#include "valley/curve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/rng.h"
#include "valley/train.h"

#define CURVE_TITLE "valley mode-connecting curve"

int curve_init(vl_curve_t *cv, int kind, int nfixed, int bends, size_t d)
{
    memset(cv, 0, sizeof *cv);
    if (nfixed < 2) return VL_FAIL_ALL(VL_EINPUT, "curve: give at least two checkpoints to connect");
    if (bends < 2) return VL_FAIL_ALL(VL_EINPUT, "curve.bends: %d, want at least 2 (the two ends)", bends);
    if (kind == CURVE_BEZIER && nfixed != 2)
        return VL_FAIL_ALL(VL_EINPUT, "curve.kind: a Bezier curve joins exactly two checkpoints (%d given); "
                                      "use polychain for a chain through several", nfixed);
    cv->kind = kind;
    cv->bends = bends;
    cv->n = (nfixed - 1) * (bends - 1) + 1;
    cv->d = d;
    cv->theta = vl_calloc((size_t)cv->n * d, sizeof(float), "curve control points");
    cv->mom = vl_calloc((size_t)cv->n * d, sizeof(float), "curve momentum");
    cv->fixed = calloc((size_t)cv->n, 1);
    if (!cv->theta || !cv->mom || !cv->fixed) { curve_free(cv); return VL_FAIL(VL_EIO, "out of memory for the curve"); }
    for (int j = 0; j < cv->n; j += bends - 1) cv->fixed[j] = 1;
    return VL_OK;
}

void curve_free(vl_curve_t *cv)
{
    free(cv->theta);
    free(cv->mom);
    free(cv->fixed);
    memset(cv, 0, sizeof *cv);
}

void curve_coeffs(const vl_curve_t *cv, double t, double *c)
{
    const int n = cv->n;
    if (cv->kind == CURVE_BEZIER) {
        double binom = 1.0; /* C(n-1, j) */
        for (int j = 0; j < n; j++) {
            c[j] = binom * pow(t, j) * pow(1.0 - t, n - 1 - j);
            binom = binom * (n - 1 - j) / (j + 1);
        }
    } else {
        for (int j = 0; j < n; j++) {
            double v = 1.0 - fabs(t * (n - 1) - j);
            c[j] = v > 0 ? v : 0.0;
        }
    }
}

void curve_point(const vl_curve_t *cv, const double *c, float *w)
{
    const size_t d = cv->d;
    for (size_t i = 0; i < d; i++) {
        double s = 0.0;
        for (int j = 0; j < cv->n; j++)
            if (c[j] != 0.0) s += c[j] * cv->theta[(size_t)j * d + i];
        w[i] = (float)s;
    }
}

void curve_init_line(vl_curve_t *cv)
{
    const size_t d = cv->d;
    const int seg = cv->bends - 1;
    for (int j = 0; j < cv->n; j++) {
        if (cv->fixed[j]) continue;
        int a = j / seg * seg, b = a + seg;
        double s = (double)(j - a) / seg;
        for (size_t i = 0; i < d; i++)
            cv->theta[(size_t)j * d + i] =
                (float)((1.0 - s) * cv->theta[(size_t)a * d + i] + s * cv->theta[(size_t)b * d + i]);
    }
}

void curve_sgd(vl_curve_t *cv, const double *c, const float *g, double lr, double momentum, int nesterov)
{
    const size_t d = cv->d;
    const float fm = (float)momentum, flr = (float)lr;
    for (int j = 0; j < cv->n; j++) {
        if (cv->fixed[j]) continue;
        const float cj = (float)c[j];
        float *th = cv->theta + (size_t)j * d, *buf = cv->mom + (size_t)j * d;
        for (size_t i = 0; i < d; i++) {
            float gi = cj * g[i];
            buf[i] = fm * buf[i] + gi;
            th[i] -= flr * (nesterov ? gi + fm * buf[i] : buf[i]);
        }
    }
}

/* ---------------------------------------------- the SGD loop's parameterisation */

/* The curve as the SGD loop's parameterisation (SPEC §1): per global batch one t ~ U(0,1),
 * the same on every rank; the network runs at w(t) = sum_j c_j(t) theta_j, weight decay
 * 0.5 wd |w(t)|^2 is added to the gradient at w(t), and c_j(t) times the gradient goes
 * to each trained control point. */
typedef struct {
    vl_param_t p;
    vl_curve_t *cv;
    vl_job_t *j;
    double *cc; /* the coefficients at the batch's t */
    uint64_t seed;
    double wd, momentum;
    int nesterov;
} curve_param_t;

static void cp_point(vl_param_t *p, int64_t ep, int64_t b, long long step, int s, float *w)
{
    (void)step, (void)s;
    curve_param_t *q = p->ctx;
    vl_rng_t rt;
    rng_init(&rt, q->seed, rng_stream(RNG_CURVE, (uint64_t)ep, (uint64_t)b));
    curve_coeffs(q->cv, rng_uniform(&rt), q->cc);
    curve_point(q->cv, q->cc, w);
}

static int cp_update(vl_param_t *p, float *g, const float *w, double lr)
{
    curve_param_t *q = p->ctx;
    for (size_t i = 0; i < q->cv->d; i++) g[i] += (float)q->wd * w[i]; /* 0.5 wd |w(t)|^2 */
    curve_sgd(q->cv, q->cc, g, lr, q->momentum, q->nesterov);
    return VL_OK;
}

static const char *cp_nonfinite(vl_param_t *p)
{
    curve_param_t *q = p->ctx;
    const size_t n = (size_t)q->cv->n * q->cv->d;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(q->cv->theta[i])) return "curve control points";
    for (size_t i = 0; i < n; i++)
        if (!isfinite(q->cv->mom[i])) return "curve momentum";
    return NULL;
}

static int cp_write(vl_param_t *p, const char *path, const vl_train_pos_t *pos)
{
    curve_param_t *q = p->ctx;
    return curve_write(path, q->cv, q->j, pos);
}

/* ----------------------------------------------------------------- files */

int curve_write(const char *path, const vl_curve_t *cv, const struct vl_job *j, const struct vl_train_pos *pos)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, CURVE_TITLE, deck_text(j->deck)));
    int dp, dq, vt, vf, vm = -1, vpos = -1, st;
    st = ckpt_put_model_attrs(&f, j->model, &j->cfg, j->dataset);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "curve_kind", cv->kind == CURVE_BEZIER ? "bezier" : "polychain");
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "curve_bends", 1, &cv->bends);
    if (!st) st = ncio_def_dim(&f, "point", (size_t)cv->n, &dp);
    if (!st) st = ncio_def_dim(&f, "param", cv->d, &dq);
    int dims[2] = {dp, dq};
    if (!st) st = ncio_def_var(&f, "control_points", NC_FLOAT, 2, dims, "curve control points theta_j, flat parameter order", "1", &vt);
    if (!st) st = ncio_def_var(&f, "fixed", NC_BYTE, 1, &dp, "1 for a fixed checkpoint, 0 for a trained point", "1", &vf);
    if (!st && pos) st = ncio_def_var(&f, "momentum_buffer", NC_FLOAT, 2, dims, "SGD momentum of the control points", "1", &vm);
    if (!st && pos) {
        int pd;
        st = ncio_def_dim(&f, "train_position", 4, &pd);
        if (!st) st = ncio_def_var(&f, "train_position", NC_INT64, 1, &pd, "epoch, next batch, SGD step, seed", "1", &vpos);
        if (!st && pos->rank_sums)
            st = ncio_put_att_double(&f, vpos, "epoch_running_sums", 3 * (size_t)pos->nranks, pos->rank_sums);
    }
    if (!st) st = ncio_enddef(&f);
    if (!st) st = ncio_check(nc_put_var_float(f.ncid, vt, cv->theta), VL_EIO, path, "control_points");
    if (!st) st = ncio_check(nc_put_var_schar(f.ncid, vf, (const signed char *)cv->fixed), VL_EIO, path, "fixed");
    if (!st && pos) st = ncio_check(nc_put_var_float(f.ncid, vm, cv->mom), VL_EIO, path, "momentum_buffer");
    if (!st && pos) {
        long long v[4] = {pos->epoch, pos->batch, pos->step, (long long)pos->seed};
        st = ncio_check(nc_put_var_longlong(f.ncid, vpos, v), VL_EIO, path, "train_position");
    }
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

int curve_read(const char *path, size_t d, vl_curve_t *cv, struct vl_train_pos *pos)
{
    int ncid, v, st;
    char *kind = NULL;
    double bends = 0;
    size_t len[2];
    CHECK(ncio_open(path, &ncid));
    st = ncio_get_att_text(ncid, NC_GLOBAL, path, "curve_kind", &kind);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "curve_bends", 1, &bends);
    long long want[2] = {-1, (long long)d};
    if (!st) st = ncio_var(ncid, path, "control_points", NC_FLOAT, 2, want, &v, len);
    int k = kind && !strcmp(kind, "bezier") ? CURVE_BEZIER : CURVE_POLYCHAIN;
    if (!st && !(bends >= 2 && bends <= 100 && bends == (double)(int)bends))
        st = VL_FAIL(VL_EINPUT, "%s: curve_bends = %g is not an integer in [2, 100]", path, bends);
    if (!st && (len[0] < 2 || (len[0] - 1) % (size_t)(bends - 1)))
        st = VL_FAIL(VL_EINPUT, "%s: %zu control points do not fit curve_bends %g", path, len[0], bends);
    if (!st) st = curve_init(cv, k, (int)((len[0] - 1) / (size_t)(bends - 1)) + 1, (int)bends, d);
    if (!st) st = ncio_check(nc_get_var_float(ncid, v, cv->theta), VL_EINPUT, path, "control_points");
    if (!st && pos) {
        long long w2[2] = {(long long)len[0], (long long)d}, four = 4, p[4];
        size_t nsums = 0;
        st = ncio_var(ncid, path, "momentum_buffer", NC_FLOAT, 2, w2, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_float(ncid, v, cv->mom), VL_EINPUT, path, "momentum_buffer");
        if (!st) st = ncio_var(ncid, path, "train_position", NC_INT64, 1, &four, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_longlong(ncid, v, p), VL_EINPUT, path, "train_position");
        if (!st) {
            memset(pos, 0, sizeof *pos);
            pos->epoch = p[0]; pos->batch = p[1]; pos->step = p[2]; pos->seed = (uint64_t)p[3];
            if (nc_inq_attlen(ncid, v, "epoch_running_sums", &nsums) == NC_NOERR && nsums >= 3 && nsums % 3 == 0 &&
                nsums <= 3000000 && (pos->rank_sums = malloc(nsums * sizeof(double)))) {
                st = ncio_get_att_double(ncid, v, path, "epoch_running_sums", nsums, pos->rank_sums);
                pos->nranks = (int)(nsums / 3);
            }
        }
    }
    free(kind);
    nc_close(ncid);
    if (st) curve_free(cv);
    CHECK(st);
    return VL_OK;
}

/* ------------------------------------------------------------- evaluation */

enum { S_TRAIN_LOSS, S_TRAIN_ERR, S_TEST_LOSS, S_TEST_ERR, NSER };
static const char *ser_names[NSER] = {"train_loss", "train_err", "test_loss", "test_err"};
static const char *ser_long[NSER] = {"mean training NLL at w(t) after BN refresh", "training error at w(t)",
                                     "mean test NLL at w(t)", "test error at w(t)"};
static const char *ser_units[NSER] = {"nats", "1", "nats", "1"};
enum { ST_MIN, ST_MAX, ST_MEAN, ST_INT, NSTAT };

/* min, max, mean and the length-weighted integral of SPEC §1 for one series. */
static void series_stats(const double *v, const double *seg, int T, double *out)
{
    double mn = v[0], mx = v[0], sum = 0, num = 0, den = 0;
    for (int i = 0; i < T; i++) {
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
        sum += v[i];
        if (i > 0) { num += 0.5 * (v[i - 1] + v[i]) * seg[i]; den += seg[i]; }
    }
    out[ST_MIN] = mn;
    out[ST_MAX] = mx;
    out[ST_MEAN] = sum / T;
    out[ST_INT] = den > 0 ? num / den : NAN;
}

static int write_eval(const char *path, const double *tv, int T, double res[2][NSER][1024], const double seg[2][1024],
                      const char *deck_text)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, "valley curve evaluation", deck_text));
    int dt, ds, dstat, vt, v[2][NSER], vsum, vlen[2], st;
    st = ncio_def_dim(&f, "t", (size_t)T, &dt);
    if (!st) st = ncio_def_dim(&f, "series", 2 * NSER, &ds);
    if (!st) st = ncio_def_dim(&f, "stat", NSTAT, &dstat);
    if (!st) st = ncio_def_var(&f, "t", NC_DOUBLE, 1, &dt, "curve parameter", "1", &vt);
    for (int c = 0; c < 2 && !st; c++)
        for (int k = 0; k < NSER && !st; k++) {
            char nm[64], ln[160];
            snprintf(nm, sizeof nm, "%s%s", c ? "line_" : "", ser_names[k]);
            snprintf(ln, sizeof ln, "%s (%s)", ser_long[k], c ? "straight line between the endpoints" : "fitted curve");
            st = ncio_def_var(&f, nm, NC_DOUBLE, 1, &dt, ln, ser_units[k], &v[c][k]);
        }
    int d2[2] = {ds, dstat};
    if (!st) st = ncio_def_var(&f, "summary", NC_DOUBLE, 2, d2,
                               "per series (curve then line_, order of the variables): min, max, mean, length-weighted integral",
                               NULL, &vsum);
    if (!st) st = ncio_def_var(&f, "length", NC_DOUBLE, 0, NULL, "length of the curve sum |w(t_i) - w(t_{i-1})|", "1", &vlen[0]);
    if (!st) st = ncio_def_var(&f, "line_length", NC_DOUBLE, 0, NULL, "length of the straight path", "1", &vlen[1]);
    if (!st) st = ncio_put_att_text(&f, vsum, "stat_names", "min,max,mean,integral");
    if (!st) st = ncio_put_att_text(&f, vsum, "series_names",
                                    "train_loss,train_err,test_loss,test_err,line_train_loss,line_train_err,line_test_loss,line_test_err");
    if (!st) st = ncio_enddef(&f);
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vt, tv), VL_EIO, path, "t");
    double summary[2 * NSER][NSTAT];
    for (int c = 0; c < 2 && !st; c++) {
        double len = 0;
        for (int i = 1; i < T; i++) len += seg[c][i];
        st = ncio_check(nc_put_var_double(f.ncid, vlen[c], &len), VL_EIO, path, "length");
        for (int k = 0; k < NSER && !st; k++) {
            st = ncio_check(nc_put_var_double(f.ncid, v[c][k], res[c][k]), VL_EIO, path, ser_names[k]);
            series_stats(res[c][k], seg[c], T, summary[c * NSER + k]);
        }
    }
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vsum, &summary[0][0]), VL_EIO, path, "summary");
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* Evaluates the curve and the line at T points spread over the groups. */
static int curve_evaluate(vl_comm_t *c, vl_job_t *j, const vl_curve_t *cv, const char *outdir)
{
    const int T = (int)deck_int(j->deck, "curve.points");
    if (T > 1024) return VL_FAIL_ALL(VL_EINPUT, "curve.points: at most 1024");
    static double res[2][NSER][1024];
    static double seg[2][1024];
    double tv[1024], *cc = calloc((size_t)cv->n, sizeof(double));
    float *prev = vl_calloc(2 * j->np + 1, sizeof(float), "previous curve points"); /* curve, line */
    vl_curve_t line;
    memset(&line, 0, sizeof line);
    int st = (cc && prev) ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    /* The straight path: a polychain through the fixed points only. */
    int nfixed = 0;
    for (int k = 0; k < cv->n; k++) nfixed += cv->fixed[k];
    if (!st) st = curve_init(&line, CURVE_POLYCHAIN, nfixed, 2, j->np);
    for (int k = 0, q = 0; !st && k < cv->n; k++)
        if (cv->fixed[k]) memcpy(line.theta + (size_t)q++ * j->np, cv->theta + (size_t)k * j->np, j->np * sizeof(float));
    double *cl = calloc((size_t)nfixed + 1, sizeof(double));
    memset(res, 0, sizeof res);
    memset(seg, 0, sizeof seg);
    const double subset = deck_double(j->deck, "eval.bn_subset");
    double t0 = vl_now();
    int done = 0, mine = 0;
    for (int i = 0; i < T; i++) mine += i % c->ngroups == c->group_id;
    for (int i = 0; i < T && !st; i++) {
        tv[i] = T > 1 ? (double)i / (T - 1) : 0.0;
        for (int s = 0; s < 2 && !st; s++) {
            const vl_curve_t *cur = s ? &line : cv;
            double *coef = s ? cl : cc;
            curve_coeffs(cur, tv[i], coef);
            /* segment lengths: every rank, all points (cheap next to a pass over the data) */
            curve_point(cur, coef, j->w);
            float *pv = prev + (size_t)s * j->np;
            if (i > 0) {
                double ss = 0;
                for (size_t q = 0; q < j->np; q++) { double dd = (double)j->w[q] - pv[q]; ss += dd * dd; }
                seg[s][i] = sqrt(ss);
            }
            memcpy(pv, j->w, j->np * sizeof(float));
            if (i % c->ngroups != c->group_id) continue;
            vl_pass_t tr, te;
            st = job_bn_update(j, j->w, j->state, subset);
            if (!st) st = job_eval(j, j->w, j->state, &j->train, NULL, &tr);
            if (!st) st = job_eval(j, j->w, j->state, &j->test, NULL, &te);
            if (!st) {
                res[s][S_TRAIN_LOSS][i] = tr.loss_sum / tr.n;
                res[s][S_TRAIN_ERR][i] = 1.0 - tr.correct / tr.n;
                res[s][S_TEST_LOSS][i] = te.loss_sum / te.n;
                res[s][S_TEST_ERR][i] = 1.0 - te.correct / te.n;
            }
        }
        if (!st && i % c->ngroups == c->group_id) {
            done++;
            double el = vl_now() - t0;
            char eta[32];
            vl_fmt_duration(el / done * (mine - done), eta, sizeof eta);
            vl_log(j->gcomm, "t = %.3f: curve train loss %.4f test err %.4f | line train loss %.4f test err %.4f | %d/%d | ETA %s",
                   tv[i], res[0][S_TRAIN_LOSS][i], res[0][S_TEST_ERR][i], res[1][S_TRAIN_LOSS][i], res[1][S_TEST_ERR][i],
                   done, mine, eta);
        }
    }
    /* Each point was computed by one group: the sum over groups gathers them exactly. */
    if (!st && c->ngroups > 1) MPI_Allreduce(MPI_IN_PLACE, res, 2 * NSER * 1024, MPI_DOUBLE, MPI_SUM, c->cross);
    char path[8400];
    snprintf(path, sizeof path, "%s/curve_eval.nc", outdir);
    if (!st && c->rank == 0) {
        st = write_eval(path, tv, T, res, seg, deck_text(j->deck));
        double s[NSTAT], sl[NSTAT];
        series_stats(res[0][S_TEST_ERR], seg[0], T, s);
        series_stats(res[1][S_TEST_ERR], seg[1], T, sl);
        if (!st)
            vl_log(MPI_COMM_SELF, "wrote %s: test error max %.4f (curve) vs %.4f (line), mean %.4f vs %.4f", path,
                   s[ST_MAX], sl[ST_MAX], s[ST_MEAN], sl[ST_MEAN]);
    }
    curve_free(&line);
    free(cc);
    free(cl);
    free(prev);
    return st;
}

/* ----------------------------------------------------------------- command */

int curve_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "curve: give two or more MODEL.nc to connect, or a curve.nc");
    /* A single curve.nc: evaluate it (or continue training it with train.resume). */
    int ncid, is_curve = 0;
    CHECK(comm_agree_failure(c->world, ncio_open(inputs[0], &ncid)));
    char *title = NULL;
    if (ncio_get_att_text(ncid, NC_GLOBAL, inputs[0], "title", &title) == VL_OK) is_curve = !strcmp(title, CURVE_TITLE);
    vl_error_clear();
    free(title);
    nc_close(ncid);
    if (is_curve && ninputs > 1) return VL_FAIL_ALL(VL_EINPUT, "curve: give either MODEL.nc files or one curve.nc");
    if (!is_curve && ninputs < 2) return VL_FAIL_ALL(VL_EINPUT, "curve: give at least two MODEL.nc to connect");
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(ckpt_read_configs(c->world, ninputs, inputs, &cfg, dataset));
    if (c->rank == 0) CHECK(ncio_mkdirs(outdir));
    /* Training runs data-parallel over all ranks; evaluation spreads points over the groups. */
    const int kind = !strcmp(deck_str(d, "curve.kind"), "bezier") ? CURVE_BEZIER : CURVE_POLYCHAIN;
    const int bends = (int)deck_int(d, "curve.bends");
    vl_job_t j;
    vl_curve_t cv;
    memset(&cv, 0, sizeof cv);
    const int group_size = (int)deck_int(d, "parallel.group_size");
    CHECK(comm_split(c, is_curve ? group_size : 0)); /* a curve trains on all ranks together */
    int st = job_open(&j, c, d, &cfg, dataset, inputs[0]);
    if (!st && !j.train.classification) st = VL_FAIL_ALL(VL_EINPUT, "curve: classification datasets only (for now)");
    vl_sgd_t r;
    memset(&r, 0, sizeof r);
    curve_param_t cp;
    memset(&cp, 0, sizeof cp);
    char path[8400];
    snprintf(path, sizeof path, "%s/curve.nc", outdir);
    const char *resume = deck_str(d, "train.resume");
    if (!st && is_curve) {
        st = comm_agree_failure(c->world, curve_read(inputs[0], j.np, &cv, NULL));
        if (!st) vl_log(c->world, "curve %s: %d control points; evaluating", inputs[0], cv.n);
    } else if (!st) {
        st = curve_init(&cv, kind, ninputs, bends, j.np);
        for (int i = 0; i < ninputs && !st; i++) /* the checkpoints' BN state is not used: every point is refreshed */
            st = comm_agree_failure(c->world, ckpt_read(inputs[i], j.model, cv.theta + (size_t)i * (bends - 1) * j.np,
                                                        j.state, NULL, NULL));
        for (int i = 0; i + 1 < ninputs && !st; i++) { /* a curve from a model to itself connects nothing */
            const float *a = cv.theta + (size_t)i * (bends - 1) * j.np, *b = a + (size_t)(bends - 1) * j.np;
            if (!memcmp(a, b, j.np * sizeof(float)))
                st = VL_FAIL_ALL(VL_EINPUT, "curve: %s and %s hold the same weights: a curve from a model to itself "
                                            "has nothing to connect (give two different trained models)", inputs[i],
                                 inputs[i + 1]);
        }
        if (!st) curve_init_line(&cv);
        if (!st) st = sgd_setup(&r, &j, outdir, SGD_PLUGIN);
        if (!st) {
            r.epochs = (int)deck_int(d, "curve.epochs");
            r.lr0 = deck_double(d, "curve.lr");
            r.wd = deck_double(d, "curve.wd"); /* on w(t), not on the control points */
            r.sched = "swa";                   /* SPEC §1: 1 until 50%, linear to 0.01 at 90% */
            cp = (curve_param_t){.p = {.samples = 1, .point = cp_point, .update = cp_update, .nonfinite = cp_nonfinite,
                                       .write = cp_write},
                                 .cv = &cv, .j = &j, .seed = r.seed, .wd = r.wd, .momentum = r.momentum,
                                 .nesterov = r.nesterov};
            cp.p.ctx = &cp;
            cp.cc = vl_calloc((size_t)cv.n, sizeof(double), "curve coefficients");
            if (!cp.cc) st = vl_error_status();
            r.param = &cp.p;
        }
        if (!st && *resume) {
            vl_curve_t saved;
            st = comm_agree_failure(c->world, curve_read(resume, j.np, &saved, &r.pos));
            if (!st && (saved.n != cv.n || saved.kind != cv.kind))
                st = VL_FAIL_ALL(VL_EINPUT, "%s: a different curve (%d points) than the deck's (%d)", resume, saved.n, cv.n);
            if (!st) st = sgd_resume_check(&r, resume);
            if (!st) {
                memcpy(cv.theta, saved.theta, (size_t)cv.n * j.np * sizeof(float));
                memcpy(cv.mom, saved.mom, (size_t)cv.n * j.np * sizeof(float));
                ckpt_take_rank_sums(&r.pos, c->grank, c->gsize);
                vl_log(c->world, "resuming the curve from %s at epoch %lld", resume, (long long)r.pos.epoch + 1);
            }
            if (saved.theta) curve_free(&saved);
        }
        if (!st) {
            r.pos.seed = r.seed;
            vl_log(c->world, "training a %s curve with %d control points (%d trained) through %d checkpoint(s): %d epochs, lr %g, wd %g",
                   kind == CURVE_BEZIER ? "Bezier" : "polygonal-chain", cv.n, cv.n - ninputs, ninputs, r.epochs, r.lr0, r.wd);
            char ck[8400];
            snprintf(ck, sizeof ck, "%s/checkpoints", outdir);
            if (c->grank == 0) st = ncio_mkdirs(ck);
        }
        if (!st) st = sgd_run(&r);
        if (!st && c->grank == 0) st = curve_write(path, &cv, &j, &r.pos);
        if (!st) vl_log(c->world, "wrote %s", path);
    }
    if (!st && !is_curve && group_size != 0 && group_size != c->size) { /* evaluation: points over the deck's groups */
        job_close(&j);
        st = comm_split(c, group_size);
        if (!st) st = job_open(&j, c, d, &cfg, dataset, inputs[0]);
    }
    if (!st) st = curve_evaluate(c, &j, &cv, outdir);
    sgd_free(&r);
    free(cp.cc);
    curve_free(&cv);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}

int curve_file(const char *path)
{
    int ncid, is = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return 0;
    char *title = NULL;
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "title", &title) == VL_OK) is = !strcmp(title, CURVE_TITLE);
    vl_error_clear();
    free(title);
    nc_close(ncid);
    return is;
}
