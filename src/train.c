/* train.c — data-parallel SGD, evaluation passes, BN refresh, `train` and `evaluate`. */
#include "valley/train.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "valley/ckpt.h"
#include "valley/cpu.h"
#include "valley/error.h"
#include "valley/log.h"
#include "valley/loss.h"
#include "valley/metrics.h"
#include "valley/ncio.h"
#include "valley/optim.h"
#include "valley/rng.h"
#include "valley/signals.h"
#include "valley/swag.h"

/* ------------------------------------------------------------------ job */

static int config_from_deck(const vl_deck_t *d, const vl_split_t *s, vl_model_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    const int linear = !strcmp(deck_str(d, "model.kind"), "linear");
    cfg->kind = linear ? MODEL_MLP : model_kind_parse(deck_str(d, "model.kind"));
    if (cfg->kind == MODEL_GRAPH) {
        const char *where = deck_where(d, "model.kind");
        return VL_FAIL_ALL(VL_EINPUT, "%s%smodel.kind: a graph network is built from its model.nc (`valley import "
                                      "MODEL.onnx` writes one): give that file to the command instead",
                           where ? where : "", where ? ": " : "");
    }
    cfg->nwidths = linear ? 0 : deck_intlist(d, "model.widths", cfg->widths, MODEL_MAX_WIDTHS);
    cfg->depth = (int)deck_int(d, "model.depth");
    if (cfg->depth == 0 || !model_default_depth(cfg->kind)) cfg->depth = model_default_depth(cfg->kind);
    const char *rule = model_depth_rule(cfg->kind, cfg->depth, 0);
    if (rule) {
        const char *where = deck_where(d, "model.depth");
        return VL_FAIL_ALL(VL_EINPUT, "%s%smodel.depth: %s, got %d", where ? where : "", where ? ": " : "", rule, cfg->depth);
    }
    cfg->widen = cfg->kind == MODEL_WIDERESNET ? (int)deck_int(d, "model.widen") : 0;
    cfg->width_factor = cfg->kind == MODEL_MLP ? 1.0 : deck_double(d, "model.width_factor");
    cfg->shortcuts = cfg->kind == MODEL_RESNET ? deck_bool(d, "model.shortcuts") : 1;
    cfg->bn = cfg->kind == MODEL_VGG ? deck_bool(d, "model.bn") : 1;
    cfg->dropout = deck_double(d, "model.dropout");
    if (cfg->dropout > 0 && cfg->kind != MODEL_MLP && cfg->kind != MODEL_VGG) {
        const char *where = deck_where(d, "model.dropout");
        return VL_FAIL_ALL(VL_EINPUT, "%s%smodel.dropout: %s has no dropout layers (mlp: after each hidden layer; vgg: "
                                      "before the classifier's hidden layers)", where ? where : "", where ? ": " : "",
                           deck_str(d, "model.kind"));
    }
    cfg->in_c = s->in_c;
    cfg->in_h = s->in_h;
    cfg->in_w = s->in_w;
    cfg->out_dim = s->out_dim;
    if (!s->classification && !strcmp(deck_str(d, "model.noise"), "heteroscedastic")) cfg->out_dim *= 2;
    if (cfg->nwidths > MODEL_MAX_WIDTHS)
        return VL_FAIL_ALL(VL_EINPUT, "model.widths: at most %d hidden layers", MODEL_MAX_WIDTHS);
    if (cfg->kind != MODEL_MLP && (s->in_h < 4 || s->in_w < 4))
        return VL_FAIL_ALL(VL_EINPUT, "model.kind: %s needs image inputs, dataset '%s' has %d features",
                           deck_str(d, "model.kind"), s->dataset, s->in_dim);
    return VL_OK;
}

int job_adopt_inputs(vl_deck_t *d, MPI_Comm comm, const vl_model_config_t *cfg, const char *dataset,
                     const char *source)
{
    char v[DECK_LIST_MAX * 12 + 16];
    const char *kind = cfg->kind == MODEL_MLP && cfg->nwidths == 0 ? "linear" : model_kind_name(cfg->kind);
    const char *keys[9] = {"model.kind", "model.widths", "model.depth", "data.dataset",
                           "model.widen", "model.width_factor", "model.shortcuts", "model.bn", "model.dropout"};
    for (int k = 0; k < 9; k++) {
        if (k == 0) snprintf(v, sizeof v, "%s", kind);
        if (k == 1) { /* the hidden widths of an mlp; other kinds keep the deck's (unused) value */
            if (cfg->kind != MODEL_MLP || cfg->nwidths == 0) continue;
            size_t u = 0;
            for (int i = 0; i < cfg->nwidths && u < sizeof v; i++)
                u += (size_t)snprintf(v + u, sizeof v - u, "%s%d", i ? "," : "", cfg->widths[i]);
        }
        if (k == 2) {
            if (!cfg->depth) continue;
            snprintf(v, sizeof v, "%d", cfg->depth);
        }
        if (k == 4) {
            if (cfg->kind != MODEL_WIDERESNET) continue;
            snprintf(v, sizeof v, "%d", cfg->widen);
        }
        if (k == 5) {
            if (cfg->kind == MODEL_MLP || cfg->kind == MODEL_GRAPH) continue;
            snprintf(v, sizeof v, "%.17g", cfg->width_factor > 0 ? cfg->width_factor : 1.0);
        }
        if (k == 6) {
            if (cfg->kind != MODEL_RESNET) continue;
            snprintf(v, sizeof v, "%s", cfg->shortcuts ? "true" : "false");
        }
        if (k == 7) {
            if (cfg->kind != MODEL_VGG) continue;
            snprintf(v, sizeof v, "%s", cfg->bn ? "true" : "false");
        }
        if (k == 8) {
            if (cfg->kind != MODEL_VGG && cfg->kind != MODEL_MLP) continue;
            snprintf(v, sizeof v, "%.17g", cfg->dropout);
        }
        if (k == 3) {
            if (!dataset || !*dataset) continue;
            snprintf(v, sizeof v, "%s", dataset);
        }
        char was[256];
        snprintf(was, sizeof was, "%s", deck_str(d, keys[k]));
        int overridden = 0;
        CHECK(deck_adopt(d, keys[k], v, source, &overridden));
        if (overridden)
            vl_log(comm, "%s = %s from the deck is not used: %s holds %s = %s", keys[k], was, source, keys[k], v);
    }
    return VL_OK;
}

/* "deck.ini:12: " or "--set key=value: " before a message about a key, "" for a default. */
static void key_where(const vl_deck_t *d, const char *key, char *buf, size_t n)
{
    const char *w = deck_where(d, key);
    snprintf(buf, n, "%s%s", w ? w : "", w ? ": " : "");
}

/* The splits of the job (job_open's data.* keys): every rank selects the same rows (it reads
 * the labels), so the checks below fail on every rank alike. Collective over the world. */
static int job_load_data(vl_job_t *j, vl_comm_t *c, vl_deck_t *d, const char *path)
{
    int cls = 0, ncls = 0;
    CHECK(comm_agree_failure(c->world, data_classes(path, &cls, &ncls)));
    char wc[4200], wv[4200];
    key_where(d, "data.classes", wc, sizeof wc);
    key_where(d, "data.validation", wv, sizeof wv);
    int nkeep = deck_classlist(d, "data.classes", NULL, 0);
    int *keep = calloc((size_t)nkeep + 1, sizeof *keep);
    if (!keep) return VL_FAIL(VL_EIO, "out of memory");
    deck_classlist(d, "data.classes", keep, nkeep);
    int st = VL_OK;
    if (nkeep > 0 && !cls)
        st = VL_FAIL_ALL(VL_EINPUT, "%sdata.classes: %s is a regression dataset, it has no classes (leave data.classes = "
                                    "all)", wc, path);
    for (int k = 0; k < nkeep && !st; k++)
        if (keep[k] >= ncls)
            st = VL_FAIL_ALL(VL_EINPUT, "%sdata.classes: %d is not a class of %s (its classes are 0..%d)", wc, keep[k],
                             path, ncls - 1);
    if (nkeep == ncls) nkeep = 0; /* every class: nothing held out */
    const int64_t V = deck_int(d, "data.validation");
    vl_rows_t sel = {.subset = deck_int(d, "data.train_subset"), .classes = keep, .nclasses = nkeep};
    int64_t *rows = NULL, n = 0;
    if (!st) st = comm_agree_failure(c->world, data_select(path, "train", &sel, &rows, &n));
    if (!st && n == 0)
        st = VL_FAIL_ALL(VL_EINPUT, "%sdata.classes: no training image of classes %s among the %s%s training rows of %s",
                         wc, deck_str(d, "data.classes"), sel.subset ? "first " : "",
                         sel.subset ? deck_str(d, "data.train_subset") : "", path);
    if (!st && V >= n)
        st = VL_FAIL_ALL(VL_EINPUT, "%sdata.validation: %lld images held out for validation, but the training selection "
                                    "(data.train_subset = %lld, data.classes = %s) has only %lld: give fewer than %lld",
                         wv, (long long)V, deck_int(d, "data.train_subset"), deck_str(d, "data.classes"), (long long)n,
                         (long long)n);
    if (!st) { /* st is the same on every rank here; a read may fail on some ranks only */
        int lst = data_load_list(path, "train", rows, n - V, c->grank, c->gsize, &j->train);
        if (!lst && V > 0) lst = data_load_list(path, "train", rows + (n - V), V, c->grank, c->gsize, &j->valid);
        st = comm_agree_failure(c->world, lst);
    }
    free(rows);
    rows = NULL;
    sel.subset = deck_int(d, "data.test_subset");
    if (!st) st = comm_agree_failure(c->world, data_select(path, "test", &sel, &rows, &n));
    if (!st && n == 0)
        st = VL_FAIL_ALL(VL_EINPUT, "%sdata.classes: no test image of classes %s among the test rows of %s", wc,
                         deck_str(d, "data.classes"), path);
    if (!st) st = comm_agree_failure(c->world, data_load_list(path, "test", rows, n, c->grank, c->gsize, &j->test));
    free(rows);
    rows = NULL;
    int64_t nood = 0;
    if (!st && nkeep > 0) { /* the held-out classes' test images */
        sel.complement = 1;
        st = comm_agree_failure(c->world, data_select(path, "test", &sel, &rows, &nood));
        if (!st && nood > 0)
            st = comm_agree_failure(c->world, data_load_list(path, "test", rows, nood, c->grank, c->gsize, &j->ood));
        free(rows);
    }
    free(keep);
    if (!st && (V > 0 || nkeep > 0))
        vl_log(c->world, "data: %lld training images%s%s, %lld validation images (the last of the training selection), "
               "%lld test images%s", (long long)j->train.n, nkeep ? " of classes " : "",
               nkeep ? deck_str(d, "data.classes") : "", (long long)V, (long long)j->test.n,
               nkeep ? "; the other classes' test images are out of distribution" : "");
    if (!st && nkeep > 0) vl_log(c->world, "data: %lld test images of the other classes", (long long)nood);
    return st;
}

int job_open(vl_job_t *j, vl_comm_t *c, vl_deck_t *d, const vl_model_config_t *cfg_override,
             const char *dataset_override, const char *source)
{
    if (cfg_override) CHECK(job_adopt_inputs(d, c->world, cfg_override, dataset_override, source));
    memset(j, 0, sizeof *j);
    j->comm = c;
    j->gcomm = c->group;
    j->deck = d;
    snprintf(j->dataset, sizeof j->dataset, "%s", dataset_override ? dataset_override : deck_str(d, "data.dataset"));
    char path[4096];
    const char *p = deck_str(d, "data.path");
    if (*p) snprintf(path, sizeof path, "%s", p);
    else snprintf(path, sizeof path, "input/data/%s.nc", j->dataset);
    CHECK(job_load_data(j, c, d, path));
    if (j->train.classification) { /* crop padding = a black pixel after normalisation, per channel */
        int ncid;
        double mean[DATA_MAX_CHANNELS], sd[DATA_MAX_CHANNELS];
        CHECK(ncio_open(path, &ncid));
        int st = data_channel_stats(ncid, path, j->train.in_c, mean, sd);
        nc_close(ncid);
        CHECK(st);
        for (int c = 0; c < DATA_MAX_CHANNELS; c++) j->pad_value[c] = (float)(-mean[c] / sd[c]);
    }
    if (cfg_override) j->cfg = *cfg_override;
    else CHECK(config_from_deck(d, &j->train, &j->cfg));
    if (j->cfg.in_c * j->cfg.in_h * j->cfg.in_w != j->train.in_dim)
        return VL_FAIL(VL_EINPUT, "%s: the model expects %d inputs, the dataset has %d", path,
                       j->cfg.in_c * j->cfg.in_h * j->cfg.in_w, j->train.in_dim);
    j->batch = (int)deck_int(d, "train.batch_size");
    CHECK(comm_agree_failure(c->world, model_create(&j->cfg, j->batch, &j->model)));
    {   /* the network's buffers and ~5 parameter-sized vectors (weights, gradients, momentum,
         * a reference point, the optimiser's or a method's copy) must fit before anything is
         * touched (a WideResNet-28-10 at batch 128 needs ~4 GiB) */
        char what[320], advice[160];
        const double np = (double)model_nparams(j->model);
        snprintf(what, sizeof what, "%s at batch %d", model_describe(j->model), j->batch);
        snprintf(advice, sizeof advice, "use fewer ranks per node, a smaller train.batch_size or a smaller network");
        CHECK(comm_check_memory(c->world, model_bytes(j->model) + 5.0 * 4.0 * np, what, advice, NULL));
    }
    model_set_reduce(j->model, comm_reduce_sum, &j->gcomm);
    j->np = model_nparams(j->model);
    j->ns = model_nstate(j->model);
    j->w = vl_calloc(j->np + 1, sizeof(float), "parameters");
    /* +3: the stop flag, the non-finite-loss count and the timed-checkpoint flag ride along in
     * the step's allreduce */
    j->g = vl_calloc(j->np + 3, sizeof(float), "gradients");
    j->mom = vl_calloc(j->np + 1, sizeof(float), "momentum");
    j->state = vl_calloc(j->ns + 1, sizeof(float), "BN state");
    j->xb = vl_calloc((size_t)j->batch * j->train.in_dim, sizeof(float), "batch inputs");
    j->dout = vl_calloc((size_t)j->batch * j->cfg.out_dim, sizeof(float), "output gradients");
    j->yb = vl_calloc((size_t)j->batch, sizeof(int32_t), "batch labels");
    j->ib = vl_calloc((size_t)j->batch, sizeof(int64_t), "batch sample indices");
    j->tb = vl_calloc((size_t)j->batch * (j->train.out_dim > 0 ? j->train.out_dim : 1), sizeof(float), "targets");
    j->perm = vl_calloc((size_t)j->train.n + 1, sizeof(int64_t), "permutation");
    j->bn_perm = vl_calloc((size_t)j->train.n + 1, sizeof(int64_t), "BN refresh order");
    if (!j->w || !j->g || !j->mom || !j->state || !j->xb || !j->dout || !j->yb || !j->ib || !j->tb || !j->perm ||
        !j->bn_perm)
        return vl_error_status();
    /* The BN refresh's fixed global order (not an epoch's): its batches mix all shards, so
     * every rank works. Drawn once here, reused by every refresh of the job. */
    vl_rng_t r;
    rng_init(&r, (uint64_t)deck_int(d, "run.seed"), rng_stream(RNG_ORDER, 0xFFFFFFF, 1));
    rng_permutation(&r, j->train.n, j->bn_perm);
    return VL_OK;
}

void job_close(vl_job_t *j)
{
    model_free(j->model);
    free(j->w); free(j->g); free(j->mom); free(j->state);
    free(j->xb); free(j->dout); free(j->yb); free(j->ib); free(j->tb); free(j->perm); free(j->bn_perm);
    data_free(&j->train);
    data_free(&j->test);
    data_free(&j->valid);
    data_free(&j->ood);
    memset(j, 0, sizeof *j);
}

/* Gathers this rank's samples among global indices ids[0..n) into the batch buffers;
 * with augmentation, random crop (padding 2, or 4 from 32x32 on) and horizontal flip per
 * (epoch, sample), the same for every channel of an image. */
int job_gather_batch(vl_job_t *j, const vl_split_t *s, const int64_t *ids, int n, int augment, int64_t epoch,
                     uint64_t seed)
{
    int nl = 0;
    const int dim = s->in_dim;
    for (int i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < s->lo || id >= s->hi) continue;
        const float *src = s->x + (size_t)(id - s->lo) * dim;
        float *dst = j->xb + (size_t)nl * dim;
        if (!augment) {
            memcpy(dst, src, (size_t)dim * sizeof(float));
        } else {
            vl_rng_t r;
            rng_init(&r, seed, rng_stream(RNG_AUGMENT, (uint64_t)epoch, (uint64_t)id));
            /* padding 4 at 32x32 and larger (the CIFAR recipe of the reference codes), 2 below
             * (28x28 Fashion-MNIST, as before) */
            const int H = s->in_h, W = s->in_w, pad = (H >= 32 && W >= 32) ? 4 : 2;
            int dy = (int)rng_below(&r, 2 * pad + 1) - pad, dx = (int)rng_below(&r, 2 * pad + 1) - pad;
            int flip = (int)rng_below(&r, 2);
            for (int c = 0; c < s->in_c; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sy = y + dy, sx = (flip ? W - 1 - x : x) + dx;
                        dst[(c * H + y) * W + x] = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                                                       ? src[(c * H + sy) * W + sx]
                                                       : j->pad_value[c < DATA_MAX_CHANNELS ? c : 0];
                    }
        }
        j->ib[nl] = id;
        if (s->y) j->yb[nl] = s->y[id - s->lo];
        if (s->t) memcpy(j->tb + (size_t)nl * s->out_dim, s->t + (size_t)(id - s->lo) * s->out_dim,
                         (size_t)s->out_dim * sizeof(float));
        nl++;
    }
    return nl;
}

/* Loss of the model outputs for nl local rows of a global batch of `total`. */
double job_batch_loss(vl_job_t *j, const float *out, int nl, double total, float *dout, int64_t *correct)
{
    if (j->train.classification) return loss_softmax_ce(out, j->yb, nl, j->cfg.out_dim, total, dout, correct);
    int het = j->cfg.out_dim == 2 * j->train.out_dim;
    double nv = deck_double(j->deck, "model.noise_std");
    nv = nv > 0 ? nv * nv / (j->train.t_std * j->train.t_std) : 1.0; /* in standardised units */
    if (correct) *correct = 0;
    return loss_gaussian_nll(out, j->tb, nl, j->train.out_dim, het, nv, total, dout);
}

int job_eval(vl_job_t *j, const float *w, const float *state, const vl_split_t *s, float *probs, vl_pass_t *out)
{
    double sums[3] = {0, 0, 0};
    const int64_t nloc = s->hi - s->lo;
    const int C = j->cfg.out_dim, B = j->batch;
    timer_start(TIMER_EVAL);
    model_set_grad(j->model, 0); /* no backward follows these forwards */
    if (j->mc_dropout) model_set_mc_dropout(j->model, 1);
    for (int64_t b = 0; b < nloc; b += B) {
        int nl = (int)(nloc - b < B ? nloc - b : B);
        if (j->mc_dropout) { /* the masks of sample i of the split: (mc_seed, mc_pass, i) */
            for (int i = 0; i < nl; i++) j->ib[i] = s->lo + b + i;
            model_dropout_key(j->model, j->mc_seed, j->mc_pass, j->ib);
        }
        if (s->y) memcpy(j->yb, s->y + b, (size_t)nl * sizeof(int32_t));
        if (s->t) memcpy(j->tb, s->t + (size_t)b * s->out_dim, (size_t)nl * s->out_dim * sizeof(float));
        /* the model reads its input where it lies (an evaluation keeps no pointer to it) */
        const float *o = model_forward(j->model, w, (float *)state, s->x + (size_t)b * s->in_dim, nl, MODE_EVAL);
        int64_t correct = 0;
        sums[0] += job_batch_loss(j, o, nl, 1.0, NULL, &correct);
        sums[1] += (double)correct;
        if (probs && s->classification) metrics_softmax(o, nl, C, probs + (size_t)b * C);
        if (j->logits) memcpy(j->logits + (size_t)b * C, o, (size_t)nl * C * sizeof(float));
    }
    model_set_grad(j->model, 1);
    if (j->mc_dropout) model_set_mc_dropout(j->model, 0);
    sums[2] = (double)nloc;
    MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, j->gcomm);
    timer_stop(TIMER_EVAL);
    out->loss_sum = sums[0];
    out->correct = sums[1];
    out->n = sums[2];
    return VL_OK;
}

int job_bn_update(vl_job_t *j, const float *w, float *state, double subset)
{
    if (!model_has_bn(j->model)) return VL_OK;
    timer_start(TIMER_BN_UPDATE);
    int64_t n = (int64_t)ceil(subset * (double)j->train.n);
    if (n < 1) n = 1;
    if (n > j->train.n) n = j->train.n;
    model_bn_begin(j->model);
    for (int64_t b = 0; b < n; b += j->batch) {
        int cnt = (int)(n - b < j->batch ? n - b : j->batch);
        int nl = job_gather_batch(j, &j->train, j->bn_perm + b, cnt, 0, 0, 0);
        model_forward(j->model, w, state, j->xb, nl, MODE_BN_UPDATE);
    }
    model_bn_finish(j->model, state);
    timer_stop(TIMER_BN_UPDATE);
    return VL_OK;
}

/* --------------------------------------------------------------- train */

enum { H_TRAIN_LOSS, H_TRAIN_ACC, H_TEST_LOSS, H_TEST_ACC, H_LR, H_TIME, H_COLS };
static const char *h_names[H_COLS] = {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "time"};
static const char *h_long[H_COLS] = {"mean training loss over the epoch (running weights)", "training accuracy over the epoch",
                                     "mean test loss", "test accuracy", "learning rate of the epoch's last step",
                                     "seconds since the start of the process at the end of the epoch"};
static const char *h_units[H_COLS] = {"nats", "1", "nats", "1", "1", "s"};

static int write_history(const char *path, const double *hist, int64_t rows, const char *deck_text,
                         const char *resumes)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, "valley training history", deck_text));
    int dim, vars[H_COLS + 1], st = ncio_def_dim(&f, "epoch", (size_t)rows, &dim);
    if (!st && resumes && *resumes) st = ncio_put_att_text(&f, NC_GLOBAL, "resumes", resumes);
    for (int k = 0; k < H_COLS && !st; k++)
        st = ncio_def_var(&f, h_names[k], NC_DOUBLE, 1, &dim, h_long[k], h_units[k], &vars[k]);
    if (!st) st = ncio_def_var(&f, "epoch", NC_INT, 1, &dim, "epoch number (1-based)", "1", &vars[H_COLS]);
    if (!st) st = ncio_enddef(&f);
    double *col = malloc(((size_t)rows + 1) * sizeof(double));
    int *ep = malloc(((size_t)rows + 1) * sizeof(int));
    for (int k = 0; k < H_COLS && !st; k++) {
        for (int64_t i = 0; i < rows; i++) col[i] = hist[i * H_COLS + k];
        st = ncio_check(nc_put_var_double(f.ncid, vars[k], col), VL_EIO, path, h_names[k]);
    }
    for (int64_t i = 0; i < rows; i++) ep[i] = (int)i + 1;
    if (!st) st = ncio_check(nc_put_var_int(f.ncid, vars[H_COLS], ep), VL_EIO, path, "epoch");
    free(col);
    free(ep);
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

static int all_finite(const float *v, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += v[i] * 0.0f; /* NaN/Inf propagate, finite values give 0 */
    return acc == 0.0f;
}



static double run_lr(const vl_sgd_t *r, int64_t ep, int64_t b, int64_t nb)
{
    if (r->fge) return sched_fge((int)ep, (double)b / nb, r->fge_cycle, r->fge_a1, r->fge_a2);
    if (!strcmp(r->sched, "cosine")) return sched_cosine((ep + (double)b / nb) / r->epochs, r->lr0);
    if (!strcmp(r->sched, "swa")) return sched_swa((int)ep, r->epochs, r->swa, r->swa_start, r->lr0, r->swa_lr);
    return r->lr0;
}

/* SWA/SWAG collection points: swa_freq evenly spaced batch ends of each epoch from swa_start on. */
static int collect_now(const vl_sgd_t *r, int64_t ep, int64_t b, int64_t nb)
{
    if (!r->swa || ep + 1 < r->swa_start) return 0;
    for (int k = 0; k < r->swa_freq; k++)
        if (b + 1 == (nb * (k + 1) + r->swa_freq - 1) / r->swa_freq) return 1;
    return 0;
}

/* A failure every rank of the group has reached identically in the same step: collective
 * when the group is the whole job (main prints it once and every rank exits with the
 * status); with several groups the others are not at a matching point, so it stays local
 * and main ends the job with MPI_Abort. */
static int group_failure(const vl_job_t *j, int status)
{
    if (j->comm->ngroups == 1) vl_error_set_collective();
    return status;
}

/* A write by group rank 0 alone: the whole group learns its outcome. Collective over the group. */
static int share_write_status(const vl_job_t *j, int st)
{
    return comm_agree_first(j->gcomm, st, j->comm->ngroups == 1);
}

/* 1 if any of v[0..n) is NaN or infinite. */
static int any_nonfinite_f(const float *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        if (!isfinite(v[i])) return 1;
    return 0;
}
static int any_nonfinite_d(const double *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        if (!isfinite(v[i])) return 1;
    return 0;
}

/* Refuses to write `path` when what would go into it holds a NaN or an infinity: the
 * weights w and BN state, the momentum buffer, the running loss sums, the SWA/SWAG
 * moments (r->swa) or the curve's control points and momentum (r->curve). Every rank
 * checks its own copy and the group agrees (MPI_MAX), so all return the same VL_ENUM
 * failure naming the file and the first offending part. Collective over the group. */
static int guard_finite(vl_sgd_t *r, const char *path, const float *w, const float *state, const float *mom,
                        int with_pos)
{
    static const char *parts[] = {"", "weights", "batch-norm state", "momentum buffer", "running loss sums",
                                  "SWA/SWAG moments", "trained parameters"};
    vl_job_t *j = r->j;
    int bad = 0;
    const char *own = NULL;
    if (r->param && with_pos) {
        if (r->param->nonfinite && (own = r->param->nonfinite(r->param))) bad = 6;
    } else {
        if (any_nonfinite_f(w, j->np)) bad = 1;
        else if (any_nonfinite_f(state, j->ns)) bad = 2;
        else if (any_nonfinite_f(mom, j->np)) bad = 3;
    }
    if (!bad && with_pos) {
        double sums[3] = {r->pos.loss_sum, r->pos.correct, r->pos.seen};
        if (any_nonfinite_d(sums, 3)) bad = 4;
    }
    if (!bad && r->swa && r->sw.n > 0) {
        const vl_swag_t *s = &r->sw;
        if (any_nonfinite_d(s->mean, s->d) || any_nonfinite_d(s->m2, s->d) || any_nonfinite_d(s->mu, s->d) ||
            any_nonfinite_f(s->shift, s->d) || any_nonfinite_f(s->dev, (size_t)s->ndev * s->d))
            bad = 5;
    }
    int worst = bad;
    MPI_Allreduce(&bad, &worst, 1, MPI_INT, MPI_MAX, j->gcomm);
    if (!worst) return VL_OK;
    VL_FAIL(VL_ENUM, "%s: not written: non-finite values in the %s (after SGD step %lld); try a smaller train.lr",
            path, worst == 6 && own ? own : parts[worst], (long long)r->pos.step);
    return group_failure(j, VL_ENUM);
}

static int save_checkpoint(vl_sgd_t *r, const char *path)
{
    vl_job_t *j = r->j;
    int st = VL_OK;
    /* The epoch's running loss sums are per rank: the file holds their sum over the
     * group (rank 0 takes it back on resume, the others start from zero). Collective. */
    CHECK(guard_finite(r, path, j->w, j->state, j->mom, 1));
    vl_train_pos_t pos = r->pos;
    double mine[3] = {pos.loss_sum, pos.correct, pos.seen};
    double *all = vl_calloc(3 * (size_t)j->comm->gsize, sizeof(double), "running sums");
    if (!all) return vl_error_status();
    MPI_Gather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, j->gcomm);
    pos.rank_sums = all;
    pos.nranks = j->comm->gsize;
    timer_start(TIMER_IO);
    if (j->comm->grank == 0 && r->param) {
        st = r->param->write(r->param, path, &pos);
    } else if (j->comm->grank == 0) {
        vl_ckpt_t c = {.m = j->model, .cfg = &j->cfg, .dataset = j->dataset, .w = j->w, .state = j->state,
                       .momentum = j->mom, .pos = &pos, .swag = r->swa ? &r->sw : NULL,
                       .title = "valley checkpoint", .deck_text = deck_text(j->deck)};
        st = ckpt_write(path, &c);
    }
    timer_stop(TIMER_IO);
    free(all);
    CHECK(share_write_status(j, st));
    return VL_OK;
}

/* FGE snapshot: test probabilities of the current weights join the ensemble. */
/* A member joins the FGE ensemble: its test probabilities, metrics and epoch. Collective. */
static int fge_add_member(vl_sgd_t *r, const float *w, const float *state, int64_t ep)
{
    vl_job_t *j = r->j;
    const int64_t nloc = j->test.hi - j->test.lo;
    const int C = j->cfg.out_dim;
    vl_pass_t p;
    CHECK(job_eval(j, w, state, &j->test, r->probs, &p));
    CHECK(metrics_classification(r->probs, j->test.y, nloc, C, j->test.lo, j->gcomm, &r->snap[r->nsnap]));
    r->snap_epoch[r->nsnap] = (int)ep + 1;
    for (size_t i = 0; i < (size_t)nloc * C; i++) r->ens[i] += r->probs[i];
    r->nsnap++;
    return VL_OK;
}

static int fge_snapshot(vl_sgd_t *r, int64_t ep)
{
    vl_job_t *j = r->j;
    const int64_t nloc = j->test.hi - j->test.lo;
    const int C = j->cfg.out_dim;
    CHECK(fge_add_member(r, j->w, j->state, ep));
    for (size_t i = 0; i < (size_t)nloc * C; i++) r->probs[i] = (float)(r->ens[i] / r->nsnap);
    vl_class_metrics_t e;
    CHECK(metrics_classification(r->probs, j->test.y, nloc, C, j->test.lo, j->gcomm, &e));
    vl_log(j->gcomm, "FGE snapshot %d (epoch %lld): member acc %.4f nll %.4f | ensemble of %d: acc %.4f nll %.4f ece %.4f",
           r->nsnap, (long long)ep + 1, r->snap[r->nsnap - 1].accuracy, r->snap[r->nsnap - 1].nll, r->nsnap, e.accuracy,
           e.nll, e.ece);
    char path[8400];
    snprintf(path, sizeof path, "%s/snapshots/snapshot_%02d.nc", r->outdir, r->nsnap);
    CHECK(guard_finite(r, path, j->w, j->state, NULL, 0));
    int st = VL_OK;
    if (j->comm->grank == 0) {
        vl_ckpt_t c = {.m = j->model, .cfg = &j->cfg, .dataset = j->dataset, .w = j->w, .state = j->state,
                       .title = "valley FGE snapshot", .deck_text = deck_text(j->deck)};
        st = ckpt_write(path, &c);
    }
    CHECK(share_write_status(j, st));
    return VL_OK;
}

static int sgd_epochs(vl_sgd_t *r);
static void load_history(const char *outdir, vl_sgd_t *r, int64_t epochs_done);

/* The SGD loop in a phase that stops cleanly on a signal (checkpoint, exit 143). */
int sgd_run(vl_sgd_t *r)
{
    const int was = signals_graceful(1);
    const int st = sgd_epochs(r);
    signals_graceful(was);
    return st;
}

/* The flat weights' update: SGD with momentum and weight decay on j->w. */
static int flat_update(vl_sgd_t *r, const float *g, double lr)
{
    vl_job_t *j = r->j;
    sgd_step(j->w, g, j->mom, j->np, lr, r->momentum, r->wd, r->nesterov);
    return VL_OK;
}

static int sgd_epochs(vl_sgd_t *r)
{
    vl_job_t *j = r->j;
    const vl_deck_t *d = j->deck;
    vl_param_t *p = r->param;
    const int S = p ? p->samples : 1;
    const int64_t n = j->train.n;
    const int B = j->batch;
    const int64_t nb = (n + B - 1) / B;
    const int epochs = r->epochs;
    const char *meth = r->method ? r->method : "", *sep = r->method ? ": " : "";
    char path[8400];
    int log_every = (int)deck_int(d, "train.log_every");
    if (log_every <= 0) log_every = nb >= 10 ? (int)(nb / 10) : 1;
    double t_start = vl_now(), rate = 0;
    int64_t samples_done = 0;
    const long long nan_step = deck_int(d, "debug.nan_step"), nan_rank = deck_int(d, "debug.nan_rank");
    const double step_delay = deck_double(d, "debug.step_delay");
    if (!r->hist) r->hist = vl_calloc((size_t)epochs * H_COLS + 1, sizeof(double), "history");
    const int gather = p && p->gather;
    if (gather && !r->acc) r->acc = vl_calloc(j->np + 3, sizeof(float), "summed gradients");
    if (!r->hist || (gather && !r->acc)) return vl_error_status();
    float *red = gather ? r->acc : j->g; /* what the group sums: the gradient and three flags */
    /* resumed (train, fge, curve): the finished epochs' rows and the record of earlier resumes
     * come from outdir/history.nc, and this resume's line (sgd_resume_check) joins them */
    if (r->pos.epoch > 0) load_history(r->outdir, r, r->pos.epoch);
    if (r->resume_line) {
        const size_t old = r->resumes ? strlen(r->resumes) : 0, add = strlen(r->resume_line);
        char *grown = realloc(r->resumes, old + add + 1);
        if (!grown) return VL_FAIL(VL_EIO, "out of memory");
        memcpy(grown + old, r->resume_line, add + 1);
        r->resumes = grown;
        free(r->resume_line);
        r->resume_line = NULL;
    }
    for (int64_t ep = r->pos.epoch; ep < epochs; ep++) {
        const uint64_t ekey = r->epoch_key | (uint64_t)ep; /* the data order's and augmentation's epoch */
        vl_rng_t rg;
        rng_init(&rg, r->seed, rng_stream(RNG_ORDER, ekey, 0));
        rng_permutation(&rg, n, j->perm);
        double lr = r->lr0, t_ep = vl_now();
        for (int64_t b = r->pos.batch; b < nb; b++) {
            lr = run_lr(r, ep, b, nb);
            const int cnt = (int)(n - b * B < B ? n - b * B : B);
            timer_start(TIMER_COMPUTE);
            int nl = job_gather_batch(j, &j->train, j->perm + b * B, cnt, r->augment, (int64_t)ekey, r->seed);
            if (gather) memset(red, 0, (j->np + 3) * sizeof(float));
            double bloss = 0.0;
            for (int s = 0; s < S; s++) {
                if (p) p->point(p, ep, b, r->pos.step, s, j->w);
                /* dropout masks of this pass: (seed, SGD step and point, the samples' indices) */
                model_dropout_key(j->model, r->seed, (uint64_t)r->pos.step * (uint64_t)S + (uint64_t)s, j->ib);
                const float *out = model_forward(j->model, j->w, j->state, j->xb, nl, MODE_TRAIN);
                int64_t correct = 0;
                double sl = job_batch_loss(j, out, nl, cnt, j->dout, &correct);
                if (nan_step > 0 && r->pos.step + 1 == nan_step && j->comm->rank == nan_rank) {
                    /* debug.nan_step: this rank's loss and its output gradient become NaN */
                    sl = NAN;
                    if (nl > 0) j->dout[0] = NAN;
                }
                bloss += sl;
                r->pos.loss_sum += sl;
                r->pos.correct += (double)correct;
                r->pos.seen += nl;
                model_backward(j->model, j->w, j->dout, j->g);
                if (gather) p->gather(p, s, j->g, red);
            }
            timer_stop(TIMER_COMPUTE);
            if (step_delay > 0) /* debug.step_delay: a slow step (tests: two signals inside one step) */
                for (double until = vl_now() + step_delay; vl_now() < until;) {
                    struct timespec ts = {0, 10000000};
                    nanosleep(&ts, NULL);
                }
            red[j->np] = (vl_stop_signal || (r->stop_step > 0 && r->pos.step + 1 == r->stop_step)) ? 1.0f : 0.0f;
            red[j->np + 1] = isfinite(bloss) ? 0.0f : 1.0f; /* ranks whose loss is not finite */
            /* rank 0's clock decides when a timed checkpoint is due, for the whole group */
            red[j->np + 2] = r->ck_seconds > 0 && j->comm->grank == 0 && vl_now() - r->last_ck >= r->ck_seconds;
            timer_start(TIMER_ALLREDUCE);
            MPI_Allreduce(MPI_IN_PLACE, red, (int)j->np + 3, MPI_FLOAT, MPI_SUM, j->gcomm);
            timer_stop(TIMER_ALLREDUCE);
            /* Every rank sees the same reduced flags and gradient, so all of them stop in this
             * step, before the update: no weight, checkpoint or history row takes the NaN. */
            if (!r->allow_nonfinite && (red[j->np + 1] != 0.0f || !all_finite(red, j->np))) {
                const int nloss = (int)red[j->np + 1];
                char on[48] = "";
                if (nloss) snprintf(on, sizeof on, " on %d rank%s", nloss, nloss > 1 ? "s" : "");
                VL_FAIL(VL_ENUM, "%s%snon-finite %s%s at %sepoch %lld, batch %lld (SGD step %lld, lr %g); "
                                 "set train.allow_nonfinite = true to continue anyway",
                        meth, sep, nloss ? "loss" : "gradient", on, r->label, (long long)ep + 1, (long long)b + 1,
                        (long long)r->pos.step + 1, lr);
                return group_failure(j, VL_ENUM);
            }
            timer_start(TIMER_COMPUTE);
            CHECK(p ? p->update(p, red, j->w, lr) : flat_update(r, red, lr));
            if (collect_now(r, ep, b, nb)) swag_collect(&r->sw, j->w);
            timer_stop(TIMER_COMPUTE);
            r->pos.step++;
            samples_done += cnt;
            r->pos.batch = b + 1;
            r->pos.epoch = ep;
            if (red[j->np] > 0.0f) { /* some rank was signalled: checkpoint and stop */
                if (p && !p->write)
                    return VL_FAIL_ALL(VL_ESIGNAL, "%s%sstopped by a signal at %sepoch %lld, batch %lld; %s", meth, sep,
                                       r->label, (long long)ep + 1, (long long)b + 1,
                                       p->no_checkpoint ? p->no_checkpoint : "no checkpoint is kept");
                snprintf(path, sizeof path, "%s/checkpoints/preempt.nc", r->outdir);
                CHECK(save_checkpoint(r, path));
                vl_log(j->gcomm, "signal received: checkpoint %s written at epoch %lld, batch %lld; exiting 143", path,
                       (long long)ep + 1, (long long)b + 1);
                return VL_FAIL_ALL(VL_ESIGNAL, "stopped by a signal; resume with --set train.resume=%s", path);
            }
            if (red[j->np + 2] > 0.0f) { /* train.checkpoint_minutes have passed */
                snprintf(path, sizeof path, "%s/checkpoints/latest.nc", r->outdir);
                CHECK(save_checkpoint(r, path));
                r->last_ck = vl_now();
                vl_log(j->gcomm, "checkpoint %s at epoch %lld, batch %lld (every %g min of wall-clock time)", path,
                       (long long)ep + 1, (long long)b + 1, r->ck_seconds / 60);
            }
            if ((b + 1) % log_every == 0 || b + 1 == nb) {
                double el = vl_now() - t_start;
                rate = samples_done / (el > 0 ? el : 1e-9);
                double left = ((double)(epochs - ep) * n - (double)(b + 1) * B + r->samples_after) / (rate > 0 ? rate : 1);
                char eta[32], note[128] = "", points[32] = "";
                vl_fmt_duration(left, eta, sizeof eta);
                if (p && p->note) {
                    note[0] = ' ', note[1] = '|', note[2] = ' ';
                    CHECK(p->note(p, note + 3, sizeof note - 3));
                }
                if (S > 1) snprintf(points, sizeof points, " (x%d points)", S);
                double sums[3] = {r->pos.loss_sum, r->pos.correct, r->pos.seen};
                MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, j->gcomm);
                vl_log(j->gcomm, "%sepoch %3lld/%d [%3d%%] loss %.4f acc %.4f%s | lr %.4g | %.0f samples/s%s | ETA %s",
                       r->label, (long long)ep + 1, epochs, (int)(100 * (b + 1) / nb), sums[0] / sums[2],
                       j->train.classification ? sums[1] / sums[2] : NAN, note, lr, rate, points, eta);
            }
        }
        double sums[3] = {r->pos.loss_sum, r->pos.correct, r->pos.seen};
        MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, j->gcomm);
        r->pos.epoch = ep + 1;
        r->pos.batch = 0;
        r->pos.loss_sum = r->pos.correct = r->pos.seen = 0;
        if (p && p->epoch_done) CHECK(p->epoch_done(p, ep, sums, vl_now() - t_ep));
        if (!r->per_epoch) continue;
        vl_pass_t te;
        CHECK(job_eval(j, j->w, j->state, &j->test, NULL, &te));
        double *h = r->hist + ep * H_COLS;
        h[H_TRAIN_LOSS] = sums[0] / sums[2];
        h[H_TRAIN_ACC] = sums[1] / sums[2];
        h[H_TEST_LOSS] = te.loss_sum / te.n;
        h[H_TEST_ACC] = te.correct / te.n;
        h[H_LR] = lr;
        h[H_TIME] = vl_now();
        vl_log(j->gcomm, "%sepoch %3lld/%d done in %.1fs: train loss %.4f acc %.4f | test loss %.4f acc %.4f%s", r->label,
               (long long)ep + 1, epochs, vl_now() - t_ep, h[H_TRAIN_LOSS], h[H_TRAIN_ACC], h[H_TEST_LOSS],
               h[H_TEST_ACC], r->swa && r->sw.n ? " | collecting SWA" : "");
        if (r->fge && (ep % r->fge_cycle) + 1 == r->fge_cycle / 2) CHECK(fge_snapshot(r, ep));
        int hst = VL_OK;
        if (j->comm->grank == 0) {
            snprintf(path, sizeof path, "%s/history.nc", r->outdir);
            timer_start(TIMER_IO);
            hst = write_history(path, r->hist, ep + 1, deck_text(d), r->resumes);
            timer_stop(TIMER_IO);
        }
        CHECK(share_write_status(j, hst));
        if (!r->fge && r->ck_every > 0 && (ep + 1) % r->ck_every == 0 && ep + 1 < epochs) {
            snprintf(path, sizeof path, "%s/checkpoints/epoch_%04lld.nc", r->outdir, (long long)ep + 1);
            CHECK(save_checkpoint(r, path));
            r->last_ck = vl_now();
        }
    }
    if (r->per_epoch) vl_log(j->gcomm, "%d epochs in %.1fs (%.0f samples/s)", epochs - 0, vl_now() - t_start, rate);
    return VL_OK;
}

/* History rows of the finished epochs come from the run directory's history.nc, with its
 * record of earlier resumes (attribute `resumes`, into r->resumes). */
static void load_history(const char *outdir, vl_sgd_t *r, int64_t epochs_done)
{
    double *hist = r->hist;
    int ncid;
    char hp[8400];
    snprintf(hp, sizeof hp, "%s/history.nc", outdir);
    if (nc_open(hp, NC_NOWRITE, &ncid) != NC_NOERR) return;
    size_t alen = 0;
    free(r->resumes);
    r->resumes = NULL;
    if (nc_inq_attlen(ncid, NC_GLOBAL, "resumes", &alen) == NC_NOERR && alen < (1u << 20) &&
        (r->resumes = calloc(alen + 1, 1)) && nc_get_att_text(ncid, NC_GLOBAL, "resumes", r->resumes) != NC_NOERR)
        r->resumes[0] = '\0';
    int dim, var;
    size_t rows = 0;
    if (nc_inq_dimid(ncid, "epoch", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &rows);
    if ((int64_t)rows > epochs_done) rows = (size_t)epochs_done;
    double *col = malloc((rows + 1) * sizeof(double));
    for (int k = 0; k < H_COLS && col && rows; k++)
        if (nc_inq_varid(ncid, h_names[k], &var) == NC_NOERR) {
            size_t start = 0;
            if (nc_get_vara_double(ncid, var, &start, &rows, col) == NC_NOERR)
                for (size_t i = 0; i < rows; i++) hist[i * H_COLS + k] = col[i];
        }
    free(col);
    nc_close(ncid);
}

void sgd_free(vl_sgd_t *r)
{
    swag_free(&r->sw);
    free(r->hist);
    free(r->resumes);
    free(r->resume_line);
    free(r->ens);
    free(r->probs);
    free(r->snap);
    free(r->snap_epoch);
    free(r->acc);
}

/* SWA mean → BN refresh → test metrics → swag.nc (the SWA model plus the moments). */
static int finish_swa(vl_sgd_t *r)
{
    vl_job_t *j = r->j;
    if (r->sw.n == 0) {
        vl_log(j->gcomm, "SWA: no iterate was collected (train.swa_start = %d > epochs?): no swag.nc", r->swa_start);
        return VL_OK;
    }
    float *wswa = vl_calloc(j->np + 1, sizeof(float), "SWA weights");
    float *sswa = vl_calloc(j->ns + 1, sizeof(float), "SWA BN state");
    float *var = vl_calloc(j->np + 1, sizeof(float), "SWAG variance");
    if (!wswa || !sswa || !var) { free(wswa); free(sswa); free(var); return vl_error_status(); }
    swag_mean(&r->sw, wswa);
    int64_t clamped = swag_variance(&r->sw, var);
    int st = job_bn_update(j, wswa, sswa, deck_double(j->deck, "eval.bn_subset"));
    vl_pass_t te;
    if (!st) st = job_eval(j, wswa, sswa, &j->test, NULL, &te);
    if (!st)
        vl_log(j->gcomm, "SWA of %lld iterates (%d deviations kept, %lld variances clamped to %g): test loss %.4f acc %.4f",
               (long long)r->sw.n, r->sw.ndev, (long long)clamped, SWAG_VAR_MIN, te.loss_sum / te.n, te.correct / te.n);
    char path[8400];
    snprintf(path, sizeof path, "%s/swag.nc", r->outdir);
    if (!st) st = guard_finite(r, path, wswa, sswa, NULL, 0);
    if (!st) {
        int wst = VL_OK;
        if (j->comm->grank == 0) {
            vl_ckpt_t c = {.m = j->model, .cfg = &j->cfg, .dataset = j->dataset, .w = wswa, .state = sswa,
                           .swag = &r->sw, .title = CKPT_TITLE_SWAG, .deck_text = deck_text(j->deck)};
            wst = ckpt_write(path, &c);
            if (!wst) vl_log(MPI_COMM_SELF, "wrote %s", path);
        }
        st = share_write_status(j, wst);
    }
    free(wswa); free(sswa); free(var);
    return st;
}

int sgd_setup(vl_sgd_t *r, vl_job_t *j, const char *outdir, int mode)
{
    const vl_deck_t *d = j->deck;
    const int fge = mode == SGD_FGE;
    memset(r, 0, sizeof *r);
    r->j = j;
    r->outdir = outdir;
    r->fge = fge;
    r->mode = mode;
    r->epochs = (int)deck_int(d, "train.epochs");
    r->lr0 = deck_double(d, "train.lr");
    r->momentum = deck_double(d, "train.momentum");
    r->wd = deck_double(d, "train.wd");
    r->nesterov = deck_bool(d, "train.nesterov");
    r->sched = deck_str(d, "train.schedule");
    r->ck_every = (int)deck_int(d, "train.checkpoint_every");
    r->ck_seconds = fge ? 0 : 60 * deck_double(d, "train.checkpoint_minutes");
    r->last_ck = vl_now();
    r->augment = !strcmp(deck_str(d, "data.augment"), "crop-flip");
    r->allow_nonfinite = deck_bool(d, "train.allow_nonfinite");
    r->seed = (uint64_t)deck_int(d, "run.seed") + (uint64_t)j->comm->group_id;
    r->pos.seed = r->seed;
    if (mode != SGD_PLUGIN && j->comm->group_id != 0) { /* group g trains the run of seed run.seed + g: its BN refreshes (SWA, FGE
                                   * snapshots) take that run's order too, as a 1-group run of that seed does */
        vl_rng_t ro;
        rng_init(&ro, r->seed, rng_stream(RNG_ORDER, 0xFFFFFFF, 1));
        rng_permutation(&ro, j->train.n, j->bn_perm);
    }
    r->stop_step = deck_int(d, "debug.stop_at_step");
    r->per_epoch = 1;
    if (mode == SGD_PLUGIN) {
        /* the method sets its epochs, learning rate, schedule, weight decay and param */
    } else if (!fge) {
        r->swa = deck_bool(d, "train.swa") || deck_bool(d, "train.swag");
        r->swag_rank = deck_bool(d, "train.swag") ? (int)deck_int(d, "train.swag_rank") : 0;
        r->swa_start = (int)deck_int(d, "train.swa_start");
        if (r->swa_start == 0) r->swa_start = (3 * r->epochs + 3) / 4;
        r->swa_lr = deck_double(d, "train.swa_lr");
        r->swa_freq = (int)deck_int(d, "train.swa_freq");
        if (r->swa) { /* SWAG: the mean and Welford sums in double, the shift and K deviations in float */
            const double np = (double)j->np, base = model_bytes(j->model) + 5.0 * 4.0 * np + 3.0 * 8.0 * np + 4.0 * np;
            const double per = comm_mem_per_rank();
            char what[320], advice[200];
            snprintf(what, sizeof what, "SWAG of rank %d on %s (%.2f GiB of deviations)", r->swag_rank,
                     model_describe(j->model), 4.0 * np * r->swag_rank / (1024.0 * 1024.0 * 1024.0));
            const double kfit = per > base ? floor((per - base) / (4.0 * np)) : 0;
            snprintf(advice, sizeof advice, "ask for train.swag_rank <= %.0f (what fits here), or use fewer ranks per node",
                     kfit);
            CHECK(comm_check_memory(j->gcomm, base + 4.0 * np * r->swag_rank, what, advice, NULL));
            CHECK(swag_init(&r->sw, j->np, r->swag_rank));
        }
    } else {
        r->fge_cycle = (int)deck_int(d, "fge.cycle");
        r->fge_a1 = deck_double(d, "fge.lr1");
        r->fge_a2 = deck_double(d, "fge.lr2");
        r->epochs = (int)deck_int(d, "fge.cycles") * r->fge_cycle;
        const int64_t nloc = j->test.hi - j->test.lo;
        const int C = j->cfg.out_dim, ns = (int)deck_int(d, "fge.cycles");
        r->ens = vl_calloc((size_t)nloc * C + 1, sizeof(double), "FGE ensemble");
        r->probs = vl_calloc((size_t)nloc * C + 1, sizeof(float), "FGE probabilities");
        r->snap = calloc((size_t)ns + 1, sizeof *r->snap);
        r->snap_epoch = calloc((size_t)ns + 1, sizeof(int));
        if (!r->ens || !r->probs || !r->snap || !r->snap_epoch) return VL_FAIL(VL_EIO, "out of memory");
    }
    return VL_OK;
}

/* train.resume = auto: the checkpoint of the run directory that went furthest (most SGD
 * steps) among checkpoints/ *.nc and model.nc, or "" when there is none. Group rank 0
 * looks; the group takes its answer. */
static void resume_auto(const vl_job_t *j, const char *outdir, char *path, size_t n)
{
    path[0] = '\0';
    if (j->comm->grank == 0) {
        long long best = -1;
        char cand[8400], dir[8300];
        snprintf(dir, sizeof dir, "%s/checkpoints", outdir);
        DIR *dp = opendir(dir);
        for (struct dirent *e = dp ? readdir(dp) : NULL;; e = dp ? readdir(dp) : NULL) {
            if (e) {
                const size_t len = strlen(e->d_name);
                if (len < 4 || strcmp(e->d_name + len - 3, ".nc")) continue; /* also skips *.tmp.* files */
                snprintf(cand, sizeof cand, "%s/%s", dir, e->d_name);
            } else {
                snprintf(cand, sizeof cand, "%s/model.nc", outdir);
            }
            long long step = -1;
            if (access(cand, R_OK) == 0 && ckpt_read_step(cand, &step) != VL_OK) {
                vl_log(MPI_COMM_SELF, "train.resume = auto: skipping %s: %s", cand, vl_error_message());
                vl_error_clear();
            } else if (step > best) {
                best = step;
                snprintf(path, n, "%s", cand);
            }
            if (!e) break;
        }
        if (dp) closedir(dp);
    }
    int len = (int)strlen(path) + 1;
    MPI_Bcast(&len, 1, MPI_INT, 0, j->gcomm);
    MPI_Bcast(path, len, MPI_CHAR, 0, j->gcomm);
}

int sgd_resume_check(vl_sgd_t *r, const char *path)
{
    vl_job_t *j = r->j;
    int ncid;
    char *text = NULL;
    int st = ncio_open(path, &ncid);
    if (!st) {
        st = ncio_get_att_text(ncid, NC_GLOBAL, path, "deck", &text);
        nc_close(ncid);
    }
    CHECK(comm_agree_failure(j->gcomm, st));
    deck_change_t ch[64];
    const int n = deck_changes(j->deck, text, ch, 64);
    free(text);
    static const char *fatal[] = {"data.dataset", "data.train_subset", "data.test_subset", "data.validation",
                                  "data.classes", "train.batch_size", "run.seed"};
    const int force = deck_bool(j->deck, "train.resume_force");
    char list[4096] = "";
    size_t used = 0;
    for (int i = 0; i < n && i < 64; i++) {
        int bad = !strncmp(ch[i].key, "model.", 6);
        for (size_t k = 0; k < sizeof fatal / sizeof *fatal; k++) bad |= !strcmp(ch[i].key, fatal[k]);
        if (bad && !force)
            return VL_FAIL_ALL(VL_EINPUT, "%s: resuming with %s = %s, but the checkpoint's run used %s: that would be a "
                                          "different run (start it in a new --out), or say --set "
                                          "train.resume_force=true", path, ch[i].key, ch[i].now, ch[i].old);
        vl_log(j->gcomm, "resume: %s changes from %s to %s%s", ch[i].key, ch[i].old, ch[i].now,
               bad ? " (train.resume_force)" : "");
        if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s %s -> %s", i ? "; " : "", ch[i].key,
                                     ch[i].old, ch[i].now);
    }
    char line[8192], when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(line, sizeof line, "%s: resumed at epoch %lld, batch %lld (SGD step %lld) from %s: %s\n", when,
             (long long)r->pos.epoch + 1, (long long)r->pos.batch, (long long)r->pos.step, path,
             n ? list : "no deck change");
    free(r->resume_line); /* history.nc gets it after its earlier resumes (sgd_run) */
    r->resume_line = strdup(line);
    if (!r->resume_line) return VL_FAIL(VL_EIO, "out of memory");
    return VL_OK;
}

static int train_job(vl_job_t *j, const char *outdir)
{
    vl_sgd_t r;
    int st = sgd_setup(&r, j, outdir, SGD_TRAIN);
    char resume[8400];
    snprintf(resume, sizeof resume, "%s", deck_str(j->deck, "train.resume"));
    if (!st && !strcmp(resume, "auto")) {
        resume_auto(j, outdir, resume, sizeof resume);
        vl_log(j->gcomm, "train.resume = auto: %s", *resume ? resume : "no checkpoint yet: starting");
    }
    if (!st && *resume) {
        st = comm_agree_failure(j->comm->world, ckpt_read(resume, j->model, j->w, j->state, j->mom, &r.pos));
        ckpt_take_rank_sums(&r.pos, j->comm->grank, j->comm->gsize);
        if (!st) st = sgd_resume_check(&r, resume);
        if (!st && r.pos.seed != r.seed)
            st = VL_FAIL(VL_EINPUT, "%s: checkpoint was made with seed %llu, the deck says %llu", resume,
                         (unsigned long long)r.pos.seed, (unsigned long long)r.seed);
        if (!st && r.swa) st = ckpt_read_swag(resume, &r.sw);
        if (!st)
            vl_log(j->gcomm, "resuming from %s at epoch %lld, batch %lld", resume, (long long)r.pos.epoch + 1,
                   (long long)r.pos.batch);
    } else if (!st && *deck_str(j->deck, "train.init")) { /* a given start: weights and BN statistics, no momentum */
        const char *init = deck_str(j->deck, "train.init");
        st = comm_agree_failure(j->comm->world, ckpt_read(init, j->model, j->w, j->state, NULL, NULL));
        memset(j->mom, 0, j->np * sizeof(float));
        if (!st) vl_log(j->gcomm, "starting from %s (train.init)", init);
    } else if (!st) {
        model_init(j->model, r.seed, j->w, j->state);
        memset(j->mom, 0, j->np * sizeof(float));
    }
    if (!st)
        vl_log(j->gcomm, "training %s on %s: %lld samples, batch %d, %d epochs, %d rank(s) per group, %d group(s)%s; "
               "%s kernels",
               model_describe(j->model), j->dataset, (long long)j->train.n, j->batch, r.epochs, j->comm->gsize,
               j->comm->ngroups, r.swa ? (r.swag_rank ? ", collecting SWAG" : ", collecting SWA") : "",
               vl_isa_name(vl_isa()));
    if (!st) st = sgd_run(&r);
    char path[8400];
    snprintf(path, sizeof path, "%s/model.nc", outdir);
    if (!st) st = save_checkpoint(&r, path);
    if (!st) vl_log(j->gcomm, "wrote %s", path);
    if (!st && r.swa) st = finish_swa(&r);
    if (!st) { /* a pre-emption checkpoint of an earlier, stopped try of this run is obsolete now that it
                * finished (a rerun that started afresh would otherwise leave it beside model.nc) */
        snprintf(path, sizeof path, "%s/checkpoints/preempt.nc", outdir);
        int gr;
        MPI_Comm_rank(j->gcomm, &gr);
        if (gr == 0 && unlink(path) == 0) vl_log(MPI_COMM_SELF, "removed %s (the run it could resume has finished)", path);
    }
    sgd_free(&r);
    CHECK(st);
    return VL_OK;
}

int train_command(vl_comm_t *c, vl_deck_t *d, const char *outdir)
{
    char sub[4200];
    /* several groups: each trains its own run (seed + group) into outdir/group_N */
    if (c->ngroups > 1) snprintf(sub, sizeof sub, "%s/group_%d", outdir, c->group_id);
    else snprintf(sub, sizeof sub, "%s", outdir);
    char ck[4300];
    snprintf(ck, sizeof ck, "%s/checkpoints", sub);
    int st = c->grank == 0 ? ncio_mkdirs(ck) : VL_OK;
    CHECK(comm_agree_first(c->world, st, 1));
    vl_job_t j;
    const char *init = deck_str(d, "train.init");
    if (*init) { /* the network (and its dataset) of the start file */
        vl_model_config_t cfg;
        char dataset[32];
        char *in[1] = {(char *)init};
        CHECK(ckpt_read_configs(c->world, 1, in, &cfg, dataset));
        st = job_open(&j, c, d, &cfg, dataset, init);
    } else {
        st = job_open(&j, c, d, NULL, NULL, NULL);
    }
    if (!st && deck_int(d, "debug.fail_rank") == c->rank)
        st = VL_FAIL(VL_EIO, "debug.fail_rank: simulated failure on rank %d", c->rank);
    if (!st) st = train_job(&j, sub);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}

/* ------------------------------------------------------------ evaluate */

static int write_eval(const char *path, const vl_class_metrics_t *ens, const vl_class_metrics_t *members, int nm,
                      char **models, const char *deck_text, const float *logits, int64_t ntest, int C)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, "valley evaluation", deck_text));
    int st = VL_OK, dm, dw, dc, v[32], k = 0;
    st = ncio_def_dim(&f, "member", (size_t)nm, &dm);
    if (!st) st = ncio_def_dim(&f, "bin", METRICS_BINS_WIDTH, &dw);
    if (!st) st = ncio_def_dim(&f, "count_bin", METRICS_BINS_COUNT, &dc);
    const char *names[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *longs[6] = {"test accuracy (of the ensemble when several)", "mean test negative log-likelihood",
                            "expected calibration error, 15 equal-width bins", "expected calibration error, 20 equal-count bins",
                            "Brier score (sum over classes, mean over examples)", "mean predictive entropy"};
    const char *units[6] = {"1", "nats", "1", "1", "1", "nats"};
    for (int i = 0; i < 6 && !st; i++) st = ncio_def_var(&f, names[i], NC_DOUBLE, 0, NULL, longs[i], units[i], &v[k++]);
    const char *mlongs[6] = {"test accuracy of each member", "mean test NLL of each member",
                             "ECE (15 equal-width bins) of each member", "ECE (20 equal-count bins) of each member",
                             "Brier score of each member", "mean predictive entropy of each member"};
    for (int i = 0; i < 6 && !st; i++) {
        char nm2[64];
        snprintf(nm2, sizeof nm2, "member_%s", names[i]);
        st = ncio_def_var(&f, nm2, NC_DOUBLE, 1, &dm, mlongs[i], units[i], &v[k++]);
    }
    if (!st) st = ncio_def_var(&f, "bin_lower", NC_DOUBLE, 1, &dw, "lower confidence edge of the bin", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "bin_upper", NC_DOUBLE, 1, &dw, "upper confidence edge of the bin", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "bin_confidence", NC_DOUBLE, 1, &dw, "mean confidence in the bin (NaN if empty)", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "bin_accuracy", NC_DOUBLE, 1, &dw, "accuracy in the bin (NaN if empty)", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "bin_count", NC_INT64, 1, &dw, "examples in the bin", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "count_bin_confidence", NC_DOUBLE, 1, &dc, "mean confidence, equal-count bins", "1", &v[k++]);
    if (!st) st = ncio_def_var(&f, "count_bin_accuracy", NC_DOUBLE, 1, &dc, "accuracy, equal-count bins", "1", &v[k++]);
    int vlog = -1;
    if (!st && logits) { /* eval.logits: the networks' outputs, test samples in file order */
        int ds, dk, d3[3];
        st = ncio_def_dim(&f, "sample", (size_t)ntest, &ds);
        if (!st) st = ncio_def_dim(&f, "class", (size_t)C, &dk);
        d3[0] = dm, d3[1] = ds, d3[2] = dk;
        if (!st) st = ncio_def_var(&f, "logits", NC_FLOAT, 3, d3, "each member's outputs (before the softmax) on the test samples", "1", &vlog);
    }
    size_t len = 1;
    for (int i = 0; i < nm; i++) len += strlen(models[i]) + 1;
    char *list = calloc(len, 1);
    for (int i = 0; i < nm && list; i++) { if (i) strcat(list, ","); strcat(list, models[i]); }
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "models", list ? list : "");
    free(list);
    if (!st) st = ncio_enddef(&f);
    if (!st) {
        double e[6] = {ens->accuracy, ens->nll, ens->ece, ens->ece_count, ens->brier, ens->entropy};
        for (int i = 0; i < 6 && !st; i++) st = ncio_check(nc_put_var_double(f.ncid, v[i], &e[i]), VL_EIO, path, names[i]);
        double *col = malloc(sizeof(double) * (size_t)(nm + 1));
        for (int i = 0; i < 6 && !st && col; i++) {
            for (int m = 0; m < nm; m++) {
                const vl_class_metrics_t *x = &members[m];
                double vals[6] = {x->accuracy, x->nll, x->ece, x->ece_count, x->brier, x->entropy};
                col[m] = vals[i];
            }
            st = ncio_check(nc_put_var_double(f.ncid, v[6 + i], col), VL_EIO, path, "member metrics");
        }
        free(col);
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[12], ens->bin_lo), VL_EIO, path, "bin_lower");
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[13], ens->bin_hi), VL_EIO, path, "bin_upper");
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[14], ens->bin_conf), VL_EIO, path, "bin_confidence");
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[15], ens->bin_acc), VL_EIO, path, "bin_accuracy");
        long long cnt[METRICS_BINS_WIDTH];
        for (int i = 0; i < METRICS_BINS_WIDTH; i++) cnt[i] = ens->bin_count[i];
        if (!st) st = ncio_check(nc_put_var_longlong(f.ncid, v[16], cnt), VL_EIO, path, "bin_count");
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[17], ens->cbin_conf), VL_EIO, path, "count_bin_confidence");
        if (!st) st = ncio_check(nc_put_var_double(f.ncid, v[18], ens->cbin_acc), VL_EIO, path, "count_bin_accuracy");
    }
    if (!st && vlog >= 0) st = ncio_check(nc_put_var_float(f.ncid, vlog, logits), VL_EIO, path, "logits");
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

int evaluate_command(vl_comm_t *c, vl_deck_t *d, int nmodels, char **models, const char *outdir)
{
    if (nmodels < 1) return VL_FAIL_ALL(VL_EINPUT, "evaluate: give at least one MODEL.nc");
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(ckpt_read_configs(c->world, nmodels, models, &cfg, dataset));
    vl_job_t j;
    CHECK(job_open(&j, c, d, &cfg, dataset, models[0]));
    const int64_t nloc = j.test.hi - j.test.lo;
    const int C = cfg.out_dim;
    float *probs = vl_calloc((size_t)nloc * C + 1, sizeof(float), "probabilities");
    float *avg = vl_calloc((size_t)nloc * C + 1, sizeof(float), "ensemble probabilities");
    vl_class_metrics_t *mm = calloc((size_t)nmodels, sizeof *mm), ens;
    int st = (probs && avg && mm) ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    if (!st && !j.test.classification) st = VL_FAIL_ALL(VL_EINPUT, "evaluate: regression models are evaluated by `infer`/`bma`");
    double *acc = calloc((size_t)nloc * C + 1, sizeof(double));
    /* eval.logits: each member's outputs, gathered in test order on rank 0 */
    const int keep = deck_bool(d, "eval.logits");
    const int64_t ntest = j.test.n;
    float *all = NULL;
    int *counts = NULL, *displs = NULL;
    if (keep) {
        if ((double)ntest * C * nmodels > 2e9) st = VL_FAIL_ALL(VL_EINPUT, "eval.logits: %d x %lld x %d values are too many", nmodels, (long long)ntest, C);
        j.logits = vl_calloc((size_t)nloc * C + 1, sizeof(float), "logits");
        all = c->grank == 0 ? vl_calloc((size_t)nmodels * ntest * C + 1, sizeof(float), "logits") : NULL;
        counts = calloc((size_t)c->gsize, sizeof(int));
        displs = calloc((size_t)c->gsize, sizeof(int));
        if (!st && (!j.logits || (c->grank == 0 && !all) || !counts || !displs)) st = VL_FAIL(VL_EIO, "out of memory");
        int mine = (int)(nloc * C);
        if (!st) MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, j.gcomm);
        for (int r = 1; !st && r < c->gsize; r++) displs[r] = displs[r - 1] + counts[r - 1];
    }
    for (int m = 0; m < nmodels && !st; m++) {
        st = ckpt_read(models[m], j.model, j.w, j.state, NULL, NULL);
        st = comm_agree_failure(c->world, st);
        if (!st && deck_bool(d, "eval.bn_refresh")) st = job_bn_update(&j, j.w, j.state, deck_double(d, "eval.bn_subset"));
        vl_pass_t p;
        if (!st) st = job_eval(&j, j.w, j.state, &j.test, probs, &p);
        if (!st) st = metrics_classification(probs, j.test.y, nloc, C, j.test.lo, j.gcomm, &mm[m]);
        for (size_t i = 0; i < (size_t)nloc * C && !st; i++) acc[i] += probs[i];
        if (!st && keep)
            MPI_Gatherv(j.logits, (int)(nloc * C), MPI_FLOAT, all ? all + (size_t)m * ntest * C : NULL, counts, displs,
                        MPI_FLOAT, 0, j.gcomm);
        if (!st) vl_log(c->world, "%s: accuracy %.4f  nll %.4f  ece %.4f  brier %.4f", models[m], mm[m].accuracy,
                        mm[m].nll, mm[m].ece, mm[m].brier);
    }
    for (size_t i = 0; i < (size_t)nloc * C && !st; i++) avg[i] = (float)(acc[i] / nmodels);
    if (!st) st = metrics_classification(avg, j.test.y, nloc, C, j.test.lo, j.gcomm, &ens);
    if (!st && nmodels > 1)
        vl_log(c->world, "ensemble of %d: accuracy %.4f  nll %.4f  ece %.4f  brier %.4f", nmodels, ens.accuracy, ens.nll,
               ens.ece, ens.brier);
    char path[8400];
    snprintf(path, sizeof path, "%s/eval.nc", outdir);
    if (!st) {
        int wst = c->rank == 0 ? ncio_mkdirs(outdir) : VL_OK;
        if (!wst && c->rank == 0) wst = write_eval(path, &ens, mm, nmodels, models, deck_text(d), all, ntest, C);
        st = comm_agree_first(c->world, wst, 1);
    }
    if (!st) vl_log(c->world, "wrote %s", path);
    free(probs); free(avg); free(acc); free(mm);
    free(j.logits); free(all); free(counts); free(displs);
    j.logits = NULL;
    job_close(&j);
    CHECK(st);
    return VL_OK;
}

/* ----------------------------------------------------------------- fge */

/* Sums per-group arrays (identically sharded inside each group) over the groups, in
 * group order, so the result does not depend on how the groups are scheduled. */
static int sum_over_groups(const vl_comm_t *c, double *v, size_t n)
{
    if (c->ngroups == 1) return VL_OK;
    double *all = vl_calloc(n * (size_t)c->ngroups + 1, sizeof(double), "ensemble gather");
    if (!all) return vl_error_status();
    MPI_Allgather(v, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, c->cross);
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int g = 0; g < c->ngroups; g++) s += all[(size_t)g * n + i];
        v[i] = s;
    }
    free(all);
    return VL_OK;
}

int fge_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "fge: give the trained MODEL.nc to start from (one per chain, or one for all)");
    if (deck_int(d, "fge.cycle") % 2 || deck_int(d, "fge.cycle") < 2)
        return VL_FAIL_ALL(VL_EINPUT, "fge.cycle: the cycle length must be even (snapshots are taken at mid-cycle)");
    const char *start = inputs[c->group_id % ninputs];
    char sub[4200];
    if (c->ngroups > 1) snprintf(sub, sizeof sub, "%s/chain_%d", outdir, c->group_id);
    else snprintf(sub, sizeof sub, "%s", outdir);
    char snaps[4300], cks[4300];
    snprintf(snaps, sizeof snaps, "%s/snapshots", sub);
    snprintf(cks, sizeof cks, "%s/checkpoints", sub);
    int mst = c->grank == 0 ? ncio_mkdirs(snaps) : VL_OK;
    if (!mst && c->grank == 0) mst = ncio_mkdirs(cks);
    CHECK(comm_agree_first(c->world, mst, 1));
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(comm_agree_failure(c->world, ckpt_read_config(start, &cfg, dataset)));
    vl_job_t j;
    vl_sgd_t r;
    memset(&r, 0, sizeof r);
    int st = job_open(&j, c, d, &cfg, dataset, start);
    if (!st) st = sgd_setup(&r, &j, sub, SGD_FGE);
    if (!st && !j.test.classification) st = VL_FAIL_ALL(VL_EINPUT, "fge: classification datasets only");
    /* train.resume: a pre-emption checkpoint of this chain ("auto": each chain its own
     * checkpoints/preempt.nc when there is one); the snapshots already taken are
     * re-read from snapshots/ to rebuild the ensemble. */
    char resume[8400] = "";
    if (!strcmp(deck_str(d, "train.resume"), "auto")) {
        snprintf(resume, sizeof resume, "%s/checkpoints/preempt.nc", sub);
        FILE *probe = fopen(resume, "r");
        if (probe) fclose(probe);
        else resume[0] = 0;
    } else if (*deck_str(d, "train.resume")) {
        if (c->ngroups > 1) st = VL_FAIL_ALL(VL_EINPUT, "train.resume: with several chains use 'auto' (each chain its own checkpoint)");
        snprintf(resume, sizeof resume, "%s", deck_str(d, "train.resume"));
    }
    if (!st && *resume) {
        st = ckpt_read(resume, j.model, j.w, j.state, j.mom, &r.pos);
        if (!st && r.pos.seed != r.seed)
            st = VL_FAIL(VL_EINPUT, "%s: checkpoint of a chain with seed %llu, this chain has %llu", resume,
                         (unsigned long long)r.pos.seed, (unsigned long long)r.seed);
        ckpt_take_rank_sums(&r.pos, c->grank, c->gsize);
        st = comm_agree_failure(c->world, st);
        float *wtmp = st ? NULL : vl_calloc(j.np + 1, sizeof(float), "snapshot weights");
        float *stmp = st ? NULL : vl_calloc(j.ns + 1, sizeof(float), "snapshot state");
        if (!st && (!wtmp || !stmp)) st = vl_error_status();
        for (int64_t e = 0; e < r.pos.epoch && !st; e++) {
            if ((e % r.fge_cycle) + 1 != r.fge_cycle / 2) continue;
            char sp[8400];
            snprintf(sp, sizeof sp, "%s/snapshots/snapshot_%02d.nc", sub, r.nsnap + 1);
            st = comm_agree_failure(c->world, ckpt_read(sp, j.model, wtmp, stmp, NULL, NULL));
            if (!st) st = fge_add_member(&r, wtmp, stmp, e);
        }
        free(wtmp);
        free(stmp);
        if (!st) st = sgd_resume_check(&r, resume);
        if (!st)
            vl_log(j.gcomm, "FGE chain %d resumes from %s at epoch %lld, batch %lld, with %d snapshot(s) re-read",
                   c->group_id, resume, (long long)r.pos.epoch + 1, (long long)r.pos.batch, r.nsnap);
    } else if (!st) { /* a model without an optimiser state (imported, an SWA mean) starts with zero momentum */
        const int has_mom = ckpt_has_momentum(start);
        st = ckpt_read(start, j.model, j.w, j.state, has_mom ? j.mom : NULL, NULL);
        if (!has_mom) memset(j.mom, 0, j.np * sizeof(float));
        if (!st && !has_mom) vl_log(j.gcomm, "FGE chain %d: %s holds no momentum buffer: starting from zero momentum", c->group_id, start);
    }
    st = comm_agree_failure(c->world, st);
    if (!st && !*resume) {
        vl_pass_t p;
        st = job_eval(&j, j.w, j.state, &j.test, NULL, &p);
        if (!st)
            vl_log(j.gcomm, "FGE chain %d from %s (test acc %.4f): %d cycles of %d epochs, lr %g -> %g", c->group_id,
                   start, p.correct / p.n, (int)deck_int(d, "fge.cycles"), r.fge_cycle, r.fge_a1, r.fge_a2);
    }
    if (!st) st = sgd_run(&r);
    /* The ensemble over every chain's snapshots. */
    const int64_t nloc = j.test.hi - j.test.lo;
    const int C = cfg.out_dim;
    int total = r.nsnap * c->ngroups;
    vl_class_metrics_t ens, *members = NULL;
    if (!st) st = sum_over_groups(c, r.ens, (size_t)nloc * C);
    for (size_t i = 0; !st && i < (size_t)nloc * C; i++) r.probs[i] = (float)(r.ens[i] / total);
    if (!st) st = metrics_classification(r.probs, j.test.y, nloc, C, j.test.lo, j.gcomm, &ens);
    if (!st) {
        members = calloc((size_t)total + 1, sizeof *members);
        if (!members) st = VL_FAIL(VL_EIO, "out of memory");
    }
    if (!st)
        MPI_Allgather(r.snap, (int)(r.nsnap * sizeof *r.snap), MPI_BYTE, members, (int)(r.nsnap * sizeof *r.snap),
                      MPI_BYTE, c->cross);
    if (!st)
        vl_log(c->world, "FGE ensemble of %d snapshots (%d chain(s)): accuracy %.4f  nll %.4f  ece %.4f  brier %.4f", total,
               c->ngroups, ens.accuracy, ens.nll, ens.ece, ens.brier);
    char path[8400];
    snprintf(path, sizeof path, "%s/fge.nc", outdir);
    int wst = VL_OK;
    if (!st && c->rank == 0) {
        char **names = calloc((size_t)total + 1, sizeof(char *));
        for (int k = 0; k < total && names; k++) {
            names[k] = malloc(64);
            if (names[k]) snprintf(names[k], 64, "chain %d snapshot %d", k / (r.nsnap ? r.nsnap : 1), k % (r.nsnap ? r.nsnap : 1) + 1);
        }
        wst = names ? write_eval(path, &ens, members, total, names, deck_text(d), NULL, 0, 0) : VL_FAIL(VL_EIO, "out of memory");
        for (int k = 0; k < total && names; k++) free(names[k]);
        free(names);
        if (!wst) vl_log(MPI_COMM_SELF, "wrote %s", path);
    }
    if (!st) st = comm_agree_first(c->world, wst, 1); /* every rank is here when st == 0 */
    free(members);
    sgd_free(&r);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}
