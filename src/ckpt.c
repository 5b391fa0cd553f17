/* ckpt.c — model.nc / checkpoint writer and reader. */
#include "valley/ckpt.h"

#include "valley/comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/graphdesc.h"
#include "valley/ncio.h"

const char *model_kind_name(int kind)
{
    switch (kind) {
    case MODEL_MLP: return "mlp";
    case MODEL_CONVNET: return "convnet";
    case MODEL_PRERESNET: return "preresnet";
    case MODEL_RESNET: return "resnet";
    case MODEL_VGG: return "vgg";
    case MODEL_WIDERESNET: return "wideresnet";
    case MODEL_GRAPH: return "graph";
    default: return "?";
    }
}

int model_kind_parse(const char *name)
{
    if (!strcmp(name, "mlp")) return MODEL_MLP;
    if (!strcmp(name, "convnet")) return MODEL_CONVNET;
    if (!strcmp(name, "preresnet")) return MODEL_PRERESNET;
    if (!strcmp(name, "resnet")) return MODEL_RESNET;
    if (!strcmp(name, "vgg")) return MODEL_VGG;
    if (!strcmp(name, "wideresnet")) return MODEL_WIDERESNET;
    if (!strcmp(name, "graph")) return MODEL_GRAPH;
    return -1;
}

/* A dimension named after its length ("n32"), defined once per file. */
static int dim_of_len(ncio_file_t *f, size_t len, int *dimid)
{
    char name[32];
    snprintf(name, sizeof name, "n%zu", len);
    if (nc_inq_dimid(f->ncid, name, dimid) == NC_NOERR) return VL_OK;
    return ncio_def_dim(f, name, len, dimid);
}

int ckpt_put_model_attrs(ncio_file_t *f, const vl_model_t *m, const vl_model_config_t *cfg, const char *dataset)
{
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    size_t plist_len = 1;
    for (int i = 0; i < nt; i++) plist_len += strlen(t[i].name) + 1;
    char *plist = calloc(plist_len, 1);
    if (!plist) return VL_FAIL(VL_EIO, "out of memory");
    for (int i = 0; i < nt; i++)
        if (t[i].kind == TENSOR_PARAM) {
            if (*plist) strcat(plist, ",");
            strcat(plist, t[i].name);
        }
    int st = ncio_put_att_text(f, NC_GLOBAL, "valley.params", plist);
    free(plist);
    CHECK(st);
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "model_kind", model_kind_name(cfg->kind)));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "model_description", model_describe(m)));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "dataset", dataset ? dataset : ""));
    int shape[4] = {cfg->in_c, cfg->in_h, cfg->in_w, cfg->out_dim};
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_input_shape", 3, shape));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_out_dim", 1, &shape[3]));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_depth", 1, &cfg->depth));
    int nw = cfg->nwidths;
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_nwidths", 1, &nw));
    if (nw) CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_widths", (size_t)nw, cfg->widths));
    /* the family's other hyper-parameters (families.c), so that every command rebuilds the network */
    int fam[4] = {cfg->widen, cfg->shortcuts, cfg->bn, cfg->preact_shortcut};
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_widen", 1, &fam[0]));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_shortcuts", 1, &fam[1]));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_bn", 1, &fam[2]));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "model_preact_shortcut", 1, &fam[3]));
    double wf = cfg->width_factor > 0 ? cfg->width_factor : 1.0;
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "model_width_factor", 1, &wf));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "model_dropout", 1, &cfg->dropout));
    /* the network as text, for every kind: what a graph model is rebuilt from, and for the families a
     * description any reader (python/valley, valley export) can build the network from */
    if (cfg->kind == MODEL_GRAPH) {
        CHECK(ncio_put_att_text(f, NC_GLOBAL, "model_graph", cfg->graph ? cfg->graph : ""));
    } else {
        char *g = model_graph_text(m);
        if (!g) return VL_FAIL(VL_EIO, "out of memory describing the model");
        const int st2 = ncio_put_att_text(f, NC_GLOBAL, "model_graph", g);
        free(g);
        CHECK(st2);
    }
    return VL_OK;
}

static int write_all_body(ncio_file_t *f, const vl_ckpt_t *c, int *varids);

static int write_all(ncio_file_t *f, const vl_ckpt_t *c)
{
    int nt;
    model_tensors(c->m, &nt);
    int *varids = calloc((size_t)nt + 1, sizeof *varids);
    if (!varids) return VL_FAIL(VL_EIO, "out of memory");
    int st0 = write_all_body(f, c, varids);
    free(varids);
    return st0;
}

static int write_all_body(ncio_file_t *f, const vl_ckpt_t *c, int *varids)
{
    const vl_model_t *m = c->m;
    int nt, st;
    const vl_tensor_t *t = model_tensors(m, &nt);
    CHECK(ckpt_put_model_attrs(f, m, c->cfg, c->dataset));
    for (int i = 0; i < nt; i++) {
        int dims[4];
        for (int k = 0; k < t[i].ndim; k++) CHECK(dim_of_len(f, (size_t)t[i].shape[k], &dims[k]));
        const char *ln = t[i].kind == TENSOR_PARAM ? "parameter tensor (PyTorch layout)" : "batch-norm running statistic";
        CHECK(ncio_def_var(f, t[i].name, NC_FLOAT, t[i].ndim, dims, ln, "1", &varids[i]));
    }
    int pdim = -1, vm = -1, vpos = -1, vmean = -1, vvar = -1, vm2 = -1, vdev = -1, vn = -1, vmu = -1, vsh = -1;
    const vl_swag_t *sw = c->swag;
    if (c->momentum || sw) CHECK(ncio_def_dim(f, "param", model_nparams(m), &pdim));
    if (c->momentum)
        CHECK(ncio_def_var(f, "momentum_buffer", NC_FLOAT, 1, &pdim, "SGD momentum buffer, flat parameter order", "1", &vm));
    if (c->pos) {
        int pd;
        CHECK(ncio_def_dim(f, "train_position", 4, &pd));
        CHECK(ncio_def_var(f, "train_position", NC_INT64, 1, &pd, "epoch, next batch, SGD step, seed", "1", &vpos));
        double sums[3] = {c->pos->loss_sum, c->pos->correct, c->pos->seen};
        if (c->pos->rank_sums && c->pos->nranks > 0)
            CHECK(ncio_put_att_double(f, vpos, "epoch_running_sums", 3 * (size_t)c->pos->nranks, c->pos->rank_sums));
        else
            CHECK(ncio_put_att_double(f, vpos, "epoch_running_sums", 3, sums));
    }
    if (sw) {
        CHECK(ncio_def_var(f, "mean", NC_DOUBLE, 1, &pdim, "SWA mean of the collected iterates, flat parameter order", "1", &vmean));
        CHECK(ncio_def_var(f, "variance", NC_DOUBLE, 1, &pdim, "SWAG diagonal variance max(M2/n, 1e-30)", "1", &vvar));
        CHECK(ncio_def_var(f, "swag_m2", NC_DOUBLE, 1, &pdim, "Welford sum of squared deviations M2", "1", &vm2));
        CHECK(ncio_def_var(f, "swag_shift", NC_FLOAT, 1, &pdim, "first iterate: the moments are taken about it", "1", &vsh));
        CHECK(ncio_def_var(f, "swag_mu", NC_DOUBLE, 1, &pdim, "running mean of (w - swag_shift)", "1", &vmu));
        CHECK(ncio_def_var(f, "n_models", NC_INT64, 0, NULL, "number of collected iterates", "1", &vn));
        int K = sw->K;
        CHECK(ncio_put_att_int(f, vn, "max_rank", 1, &K));
        if (sw->ndev > 0) {
            int dd[2];
            CHECK(ncio_def_dim(f, "rank", (size_t)sw->ndev, &dd[0]));
            dd[1] = pdim;
            CHECK(ncio_def_var(f, "deviations", NC_FLOAT, 2, dd,
                               "last deviations w_i - mean_i (mean after update i), oldest first", "1", &vdev));
        }
    }
    CHECK(ncio_enddef(f));
    for (int i = 0; i < nt; i++) {
        const float *src = (t[i].kind == TENSOR_PARAM ? c->w : c->state) + t[i].offset;
        NC_CHECK_W(f, nc_put_var_float(f->ncid, varids[i], src), t[i].name);
    }
    if (c->momentum) NC_CHECK_W(f, nc_put_var_float(f->ncid, vm, c->momentum), "momentum_buffer");
    if (c->pos) {
        long long v[4] = {c->pos->epoch, c->pos->batch, c->pos->step, (long long)c->pos->seed};
        NC_CHECK_W(f, nc_put_var_longlong(f->ncid, vpos, v), "train_position");
    }
    if (sw) {
        NC_CHECK_W(f, nc_put_var_double(f->ncid, vmean, sw->mean), "mean");
        NC_CHECK_W(f, nc_put_var_double(f->ncid, vm2, sw->m2), "swag_m2");
        NC_CHECK_W(f, nc_put_var_float(f->ncid, vsh, sw->shift), "swag_shift");
        NC_CHECK_W(f, nc_put_var_double(f->ncid, vmu, sw->mu), "swag_mu");
        double *var = malloc(sw->d * sizeof(double) + 1);
        if (!var) return VL_FAIL(VL_EIO, "out of memory");
        for (size_t i = 0; i < sw->d; i++) {
            double v = sw->n > 0 ? sw->m2[i] / (double)sw->n : 0.0;
            var[i] = sw->n > 0 && v < SWAG_VAR_MIN ? SWAG_VAR_MIN : v;
        }
        st = ncio_check(nc_put_var_double(f->ncid, vvar, var), VL_EIO, f->path, "variance");
        free(var);
        CHECK(st);
        long long n = sw->n;
        NC_CHECK_W(f, nc_put_var_longlong(f->ncid, vn, &n), "n_models");
        for (int j = 0; j < sw->ndev; j++) {
            size_t start[2] = {(size_t)j, 0}, count[2] = {1, sw->d};
            NC_CHECK_W(f, nc_put_vara_float(f->ncid, vdev, start, count, swag_deviation(sw, j)), "deviations");
        }
    }
    return VL_OK;
}

/* The first part of c holding a NaN or an infinity, or NULL when all is finite. */
static const char *nonfinite_part(const vl_ckpt_t *c)
{
    const size_t np = model_nparams(c->m), ns = model_nstate(c->m);
    const float *fv[3] = {c->w, c->state, c->momentum};
    const size_t fn[3] = {np, ns, np};
    const char *fname[3] = {"weights", "batch-norm state", "momentum buffer"};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; fv[k] && i < fn[k]; i++)
            if (!isfinite(fv[k][i])) return fname[k];
    if (c->pos) {
        if (!isfinite(c->pos->loss_sum) || !isfinite(c->pos->correct) || !isfinite(c->pos->seen))
            return "running loss sums";
        for (int i = 0; c->pos->rank_sums && i < 3 * c->pos->nranks; i++)
            if (!isfinite(c->pos->rank_sums[i])) return "running loss sums";
    }
    const vl_swag_t *s = c->swag;
    if (s && s->n > 0) {
        for (size_t i = 0; i < s->d; i++)
            if (!isfinite(s->mean[i]) || !isfinite(s->m2[i]) || !isfinite(s->mu[i]) || !isfinite(s->shift[i]))
                return "SWA/SWAG moments";
        for (int j = 0; j < s->ndev; j++) {
            const float *dv = swag_deviation(s, j);
            for (size_t i = 0; dv && i < s->d; i++)
                if (!isfinite(dv[i])) return "SWAG deviations";
        }
    }
    return NULL;
}

int ckpt_write(const char *path, const vl_ckpt_t *c)
{
    /* never a model file with a NaN or an infinity in it (nothing is created) */
    const char *bad = nonfinite_part(c);
    if (bad) return VL_FAIL(VL_ENUM, "%s: not written: non-finite values in the %s", path, bad);
    ncio_file_t f;
    CHECK(ncio_create(&f, path, c->title ? c->title : "valley model", c->deck_text));
    int st = write_all(&f, c);
    if (st) { ncio_abandon(&f); vl_trace(__FILE__, __LINE__); return st; }
    CHECK(ncio_commit(&f));
    return VL_OK;
}

int ckpt_read_swag(const char *path, vl_swag_t *s)
{
    int ncid, st = VL_OK, v;
    CHECK(ncio_open(path, &ncid));
    long long d = (long long)s->d, n = 0;
    size_t len[2];
    st = ncio_var(ncid, path, "mean", NC_DOUBLE, 1, &d, &v, NULL);
    if (!st) st = ncio_check(nc_get_var_double(ncid, v, s->mean), VL_EINPUT, path, "mean");
    if (!st) st = ncio_var(ncid, path, "swag_m2", NC_DOUBLE, 1, &d, &v, NULL);
    if (!st) st = ncio_check(nc_get_var_double(ncid, v, s->m2), VL_EINPUT, path, "swag_m2");
    if (!st && nc_inq_varid(ncid, "swag_mu", &v) == NC_NOERR) {
        st = ncio_var(ncid, path, "swag_mu", NC_DOUBLE, 1, &d, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_double(ncid, v, s->mu), VL_EINPUT, path, "swag_mu");
        if (!st) st = ncio_var(ncid, path, "swag_shift", NC_FLOAT, 1, &d, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_float(ncid, v, s->shift), VL_EINPUT, path, "swag_shift");
    } else if (!st) { /* moments written elsewhere: no shift */
        memset(s->shift, 0, s->d * sizeof(float));
        memcpy(s->mu, s->mean, s->d * sizeof(double));
    }
    if (!st) st = ncio_var(ncid, path, "n_models", NC_INT64, 0, NULL, &v, NULL);
    if (!st) st = ncio_check(nc_get_var_longlong(ncid, v, &n), VL_EINPUT, path, "n_models");
    if (!st && n < 0) st = VL_FAIL(VL_EINPUT, "%s: n_models is negative", path);
    s->n = n;
    s->ndev = 0;
    s->head = 0;
    if (!st && nc_inq_varid(ncid, "deviations", &v) == NC_NOERR) {
        long long want[2] = {-1, d};
        st = ncio_var(ncid, path, "deviations", NC_FLOAT, 2, want, &v, len);
        if (!st && (long long)len[0] > s->K)
            st = VL_FAIL(VL_EINPUT, "%s: %zu deviations stored, more than the SWAG rank %d", path, len[0], s->K);
        for (size_t j = 0; !st && j < len[0]; j++) {
            size_t start[2] = {j, 0}, count[2] = {1, s->d};
            st = ncio_check(nc_get_vara_float(ncid, v, start, count, s->dev + j * s->d), VL_EINPUT, path, "deviations");
        }
        if (!st) { s->ndev = (int)len[0]; s->head = s->K > 0 ? s->ndev % s->K : 0; }
    }
    nc_close(ncid);
    CHECK(st);
    return VL_OK;
}

int ckpt_swag_rank(const char *path, int *K)
{
    int ncid, v, dims[2], nd = 0;
    size_t len = 0;
    *K = 0;
    CHECK(ncio_open(path, &ncid));
    if (nc_inq_varid(ncid, "deviations", &v) == NC_NOERR && nc_inq_varndims(ncid, v, &nd) == NC_NOERR && nd == 2 &&
        nc_inq_vardimid(ncid, v, dims) == NC_NOERR)
        nc_inq_dimlen(ncid, dims[0], &len);
    nc_close(ncid);
    if (len > 100000) return VL_FAIL(VL_EINPUT, "%s: %zu SWAG deviations: more than 100000", path, len);
    *K = (int)len;
    return VL_OK;
}

/* A model description attribute value as an int in [lo, hi]: integral, finite, in
 * range (a double from the file is never cast to int unchecked). */
static int att_int(const char *path, const char *name, double v, int lo, int hi, int *out)
{
    if (!(v >= lo && v <= hi) || v != (double)(long long)v)
        return VL_FAIL(VL_EINPUT, "%s: attribute '%s' = %g is not an integer in [%d, %d]", path, name, v, lo, hi);
    *out = (int)v;
    return VL_OK;
}

int ckpt_read_config(const char *path, vl_model_config_t *cfg, char *dataset)
{
    int ncid;
    CHECK(ncio_open(path, &ncid));
    memset(cfg, 0, sizeof *cfg);
    char *kind = NULL;
    size_t alen;
    if (nc_inq_attlen(ncid, NC_GLOBAL, "model_kind", &alen) != NC_NOERR) { /* say what the file is instead */
        char *title = NULL;
        nc_type t;
        if (nc_inq_att(ncid, NC_GLOBAL, "title", &t, &alen) == NC_NOERR && t == NC_CHAR && alen < 256 &&
            (title = calloc(alen + 1, 1)) && nc_get_att_text(ncid, NC_GLOBAL, "title", title) != NC_NOERR) {
            free(title);
            title = NULL;
        }
        nc_close(ncid);
        int st = VL_FAIL(VL_EINPUT, "%s is %s%s%s, not a model: give a model file (model.nc, checkpoints/*.nc, swag.nc, "
                                    "snapshots/*.nc)", path, title ? "a file of " : "a NetCDF file without a model",
                         title ? title : "", title ? "" : " description");
        free(title);
        return st;
    }
    int st = ncio_get_att_text(ncid, NC_GLOBAL, path, "model_kind", &kind);
    if (!st) {
        cfg->kind = model_kind_parse(kind);
        if (cfg->kind < 0) st = VL_FAIL(VL_EINPUT, "%s: unknown model_kind '%s'", path, kind);
    }
    /* Every size is range-checked here, before any model is built from it: a file may
     * claim any shape. Limits: 2^16 per input axis, 2^24 inputs, 2^20 outputs and
     * hidden units, and at most 2^31 weights in any one dense layer. */
    double v[MODEL_MAX_WIDTHS];
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_input_shape", 3, v);
    if (!st) st = att_int(path, "model_input_shape", v[0], 1, 1 << 16, &cfg->in_c);
    if (!st) st = att_int(path, "model_input_shape", v[1], 1, 1 << 16, &cfg->in_h);
    if (!st) st = att_int(path, "model_input_shape", v[2], 1, 1 << 16, &cfg->in_w);
    if (!st && (double)cfg->in_c * cfg->in_h * cfg->in_w > (double)(1 << 24))
        st = VL_FAIL(VL_EINPUT, "%s: model_input_shape %d x %d x %d: more than 2^24 inputs", path, cfg->in_c,
                     cfg->in_h, cfg->in_w);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_out_dim", 1, v);
    if (!st) st = att_int(path, "model_out_dim", v[0], 1, 1 << 20, &cfg->out_dim);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_depth", 1, v);
    if (!st) st = att_int(path, "model_depth", v[0], 0, 1000, &cfg->depth);
    if (!st && !model_default_depth(cfg->kind))
        cfg->depth = 0; /* files before families.c recorded the deck's (unused) depth for every kind */
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_nwidths", 1, v);
    if (!st) st = att_int(path, "model_nwidths", v[0], 0, MODEL_MAX_WIDTHS, &cfg->nwidths);
    if (!st && cfg->nwidths) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_widths", (size_t)cfg->nwidths, v);
    double fan_in = (double)cfg->in_c * cfg->in_h * cfg->in_w;
    for (int i = 0; !st && i < cfg->nwidths; i++) {
        st = att_int(path, "model_widths", v[i], 1, 1 << 20, &cfg->widths[i]);
        if (!st && fan_in * cfg->widths[i] > 2147483648.0)
            st = VL_FAIL(VL_EINPUT, "%s: model_widths: layer %d has %.0f weights (more than 2^31)", path, i + 1,
                         fan_in * cfg->widths[i]);
        if (!st) fan_in = cfg->widths[i];
    }
    /* the family's hyper-parameters; files written before families.c lack them: their
     * defaults are what those files meant (a preresnet's shortcut conv read relu(bn1(x))) */
    const char *fam_names[4] = {"model_widen", "model_shortcuts", "model_bn", "model_preact_shortcut"};
    int *fam_vals[4] = {&cfg->widen, &cfg->shortcuts, &cfg->bn, &cfg->preact_shortcut};
    const int fam_hi[4] = {1024, 1, 1, 1};
    cfg->shortcuts = 1;
    cfg->bn = 1;
    cfg->preact_shortcut = cfg->kind == MODEL_PRERESNET;
    cfg->width_factor = 1.0;
    for (int i = 0; !st && i < 4; i++) {
        if (nc_inq_attlen(ncid, NC_GLOBAL, fam_names[i], &alen) != NC_NOERR) continue;
        st = ncio_get_att_double(ncid, NC_GLOBAL, path, fam_names[i], 1, v);
        if (!st) st = att_int(path, fam_names[i], v[0], 0, fam_hi[i], fam_vals[i]);
    }
    if (!st && nc_inq_attlen(ncid, NC_GLOBAL, "model_width_factor", &alen) == NC_NOERR) {
        st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_width_factor", 1, v);
        if (!st && !(v[0] > 0 && v[0] <= 64))
            st = VL_FAIL(VL_EINPUT, "%s: attribute 'model_width_factor' = %g is not in (0, 64]", path, v[0]);
        if (!st) cfg->width_factor = v[0];
    }
    if (!st && nc_inq_attlen(ncid, NC_GLOBAL, "model_dropout", &alen) == NC_NOERR) { /* files before it: none */
        st = ncio_get_att_double(ncid, NC_GLOBAL, path, "model_dropout", 1, v);
        if (!st && !(v[0] >= 0 && v[0] < 1))
            st = VL_FAIL(VL_EINPUT, "%s: attribute 'model_dropout' = %g is not in [0, 1)", path, v[0]);
        if (!st) cfg->dropout = cfg->kind == MODEL_GRAPH ? 0 : v[0]; /* a graph says it in model_graph */
    }
    if (!st && cfg->kind == MODEL_GRAPH) { /* the network as text: checked line by line when it is built */
        char *text = NULL;
        if (nc_inq_attlen(ncid, NC_GLOBAL, "model_graph", &alen) != NC_NOERR)
            st = VL_FAIL(VL_EINPUT, "%s: model_kind is graph but the attribute 'model_graph' is missing", path);
        else if (alen > GRAPHDESC_MAX_BYTES)
            st = VL_FAIL(VL_EINPUT, "%s: attribute 'model_graph' has %zu bytes (at most %d)", path, alen, GRAPHDESC_MAX_BYTES);
        if (!st) st = ncio_get_att_text(ncid, NC_GLOBAL, path, "model_graph", &text);
        if (!st && !(cfg->graph = graphdesc_intern(text))) st = VL_FAIL(VL_EIO, "out of memory");
        free(text);
        fan_in = 0; /* the graph's layers are checked by the builder */
    }
    if (!st && fan_in * cfg->out_dim > 2147483648.0)
        st = VL_FAIL(VL_EINPUT, "%s: the output layer has %.0f weights (more than 2^31)", path, fan_in * cfg->out_dim);
    if (!st && dataset) {
        char *ds = NULL;
        st = ncio_get_att_text(ncid, NC_GLOBAL, path, "dataset", &ds);
        if (!st) snprintf(dataset, 32, "%s", ds);
        free(ds);
    }
    free(kind);
    nc_close(ncid);
    CHECK(st);
    return VL_OK;
}

int ckpt_read(const char *path, const vl_model_t *m, float *w, float *state, float *mom, vl_train_pos_t *pos)
{
    int ncid, st = VL_OK;
    CHECK(ncio_open(path, &ncid));
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int i = 0; i < nt && !st; i++) {
        long long len[4];
        for (int k = 0; k < t[i].ndim; k++) len[k] = t[i].shape[k];
        int varid;
        st = ncio_var(ncid, path, t[i].name, NC_FLOAT, t[i].ndim, len, &varid, NULL);
        float *dst = (t[i].kind == TENSOR_PARAM ? w : state) + t[i].offset;
        if (!st) st = ncio_check(nc_get_var_float(ncid, varid, dst), VL_EINPUT, path, t[i].name);
    }
    if (!st && mom) {
        long long len = (long long)model_nparams(m);
        int varid;
        st = ncio_var(ncid, path, "momentum_buffer", NC_FLOAT, 1, &len, &varid, NULL);
        if (!st) st = ncio_check(nc_get_var_float(ncid, varid, mom), VL_EINPUT, path, "momentum_buffer");
    }
    if (!st && pos) {
        long long len = 4, v[4];
        int varid;
        size_t nsums = 0;
        pos->rank_sums = NULL;
        pos->nranks = 0;
        st = ncio_var(ncid, path, "train_position", NC_INT64, 1, &len, &varid, NULL);
        if (!st) st = ncio_check(nc_get_var_longlong(ncid, varid, v), VL_EINPUT, path, "train_position");
        if (!st) st = ncio_check(nc_inq_attlen(ncid, varid, "epoch_running_sums", &nsums), VL_EINPUT, path,
                                 "train_position:epoch_running_sums");
        if (!st && (nsums < 3 || nsums % 3 || nsums > 3 * 1000000))
            st = VL_FAIL(VL_EINPUT, "%s: train_position:epoch_running_sums has %zu values, want 3 per rank", path, nsums);
        if (!st && !(pos->rank_sums = malloc(nsums * sizeof(double)))) st = VL_FAIL(VL_EIO, "out of memory");
        if (!st) st = ncio_get_att_double(ncid, varid, path, "epoch_running_sums", nsums, pos->rank_sums);
        if (!st) {
            pos->nranks = (int)(nsums / 3);
            pos->epoch = v[0]; pos->batch = v[1]; pos->step = v[2]; pos->seed = (uint64_t)v[3];
            pos->loss_sum = pos->correct = pos->seen = 0;
            for (int r = 0; r < pos->nranks; r++) {
                pos->loss_sum += pos->rank_sums[3 * r];
                pos->correct += pos->rank_sums[3 * r + 1];
                pos->seen += pos->rank_sums[3 * r + 2];
            }
            if (v[0] < 0 || v[1] < 0 || v[2] < 0) st = VL_FAIL(VL_EINPUT, "%s: train_position is negative", path);
        }
    }
    nc_close(ncid);
    CHECK(st);
    return VL_OK;
}

int ckpt_read_step(const char *path, long long *step)
{
    int ncid, varid;
    long long len = 4, v[4];
    CHECK(ncio_open(path, &ncid));
    int st = ncio_var(ncid, path, "train_position", NC_INT64, 1, &len, &varid, NULL);
    if (!st) st = ncio_check(nc_get_var_longlong(ncid, varid, v), VL_EINPUT, path, "train_position");
    nc_close(ncid);
    CHECK(st);
    *step = v[2];
    return VL_OK;
}

void ckpt_take_rank_sums(vl_train_pos_t *pos, int grank, int gsize)
{
    if (pos->rank_sums && pos->nranks == gsize) {
        const double *mine = pos->rank_sums + 3 * grank;
        pos->loss_sum = mine[0];
        pos->correct = mine[1];
        pos->seen = mine[2];
    } else {
        pos->loss_sum = pos->correct = pos->seen = 0;
        for (int r = 0; grank == 0 && pos->rank_sums && r < pos->nranks; r++) {
            pos->loss_sum += pos->rank_sums[3 * r];
            pos->correct += pos->rank_sums[3 * r + 1];
            pos->seen += pos->rank_sums[3 * r + 2];
        }
    }
    free(pos->rank_sums);
    pos->rank_sums = NULL;
    pos->nranks = 0;
}

int ckpt_read_configs(MPI_Comm comm, int n, char **paths, vl_model_config_t *cfg, char *dataset)
{
    CHECK(comm_agree_failure(comm, ckpt_read_config(paths[0], cfg, dataset)));
    for (int i = 1; i < n; i++) {
        vl_model_config_t c2;
        char ds2[32];
        int st = ckpt_read_config(paths[i], &c2, ds2);
        if (!st && (memcmp(&c2, cfg, sizeof c2) || strcmp(ds2, dataset)))
            st = VL_FAIL(VL_EINPUT, "%s: a different model or dataset than %s", paths[i], paths[0]);
        CHECK(comm_agree_failure(comm, st));
    }
    return VL_OK;
}

int ckpt_has_momentum(const char *path)
{
    int ncid, v;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return 0;
    const int has = nc_inq_varid(ncid, "momentum_buffer", &v) == NC_NOERR;
    nc_close(ncid);
    return has;
}
