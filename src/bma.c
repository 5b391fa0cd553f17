/* bma.c — SWA / SWAG-Diag / SWAG / ensemble model averages. */
#include "valley/bma.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/calib.h"
#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/laplace.h"
#include "valley/log.h"
#include "valley/metrics.h"
#include "valley/ncio.h"
#include "valley/rng.h"
#include "valley/swag.h"
#include "valley/train.h"

enum { M_SGD, M_ENSEMBLE, M_SWA, M_SWAG_DIAG, M_SWAG, M_SGD_TEMP, M_SWA_TEMP, M_SGD_DROP, M_SWA_DROP, M_LAPLACE_SGD,
       M_LAPLACE_SWA, M_COUNT };
static const char *method_names[M_COUNT] = {"sgd",      "ensemble", "swa",      "swag-diag",   "swag",       "sgd-temp",
                                            "swa-temp", "sgd-drop", "swa-drop", "laplace-sgd", "laplace-swa"};
#define METHOD_LIST "sgd, ensemble, swa, swag-diag, swag, sgd-temp, swa-temp, sgd-drop, swa-drop, laplace-sgd, laplace-swa"

/* The MC-dropout masks of test image i in pass s: model_dropout_key(run.seed ^ salt, s, i), one
 * salt for the test images and one for the held-out classes' images (their indices overlap). */
#define MC_SALT_TEST 0x9E3779B97F4A7C15ull
#define MC_SALT_OOD 0xC2B2AE3D27D4EB4Full

enum { NB = METRICS_ENTROPY_BINS };

typedef struct {
    int method;
    int nsamples;
    vl_class_metrics_t m;
    int64_t ent_count[NB];            /* test images per predictive-entropy bin */
    double temperature;               /* sgd-temp, swa-temp: the fitted T; NaN otherwise */
    double val_nll, val_nll_t1;       /* their validation NLL at T and at T = 1; NaN otherwise */
    double ood_entropy;               /* mean entropy on the held-out classes' test images (NaN: none) */
    double prior;                     /* laplace-sgd, laplace-swa: the prior precision; NaN otherwise */
    int64_t ood_count[NB];
} bma_result_t;

static int parse_methods(const char *list, int *on)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    memset(on, 0, M_COUNT * sizeof(int));
    for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", ")) {
        int k = -1;
        for (int i = 0; i < M_COUNT; i++)
            if (!strcmp(tok, method_names[i])) k = i;
        if (k < 0) return VL_FAIL_ALL(VL_EINPUT, "bma.methods: unknown method '%s' (" METHOD_LIST ")", tok);
        on[k] = 1;
    }
    return VL_OK;
}

/* What bma.nc says about the data beyond the test split: the validation images and the held-out
 * classes. */
typedef struct {
    int64_t n_test, n_valid, n_ood;
    const char *classes;
    char ood_classes[4096];
} bma_data_t;

static int put_row_d(ncio_file_t *f, const char *path, int var, size_t r, double v, const char *name)
{
    size_t one = 1;
    return ncio_check(nc_put_vara_double(f->ncid, var, &r, &one, &v), VL_EIO, path, name);
}

static int put_counts(ncio_file_t *f, const char *path, int var, size_t r, const int64_t *c, const char *name)
{
    size_t start[2] = {r, 0}, count[2] = {1, NB};
    long long v[NB];
    for (int b = 0; b < NB; b++) v[b] = c[b];
    return ncio_check(nc_put_vara_longlong(f->ncid, var, start, count, v), VL_EIO, path, name);
}

static int write_bma(const char *path, const bma_result_t *res, int nres, const bma_data_t *dd, int C,
                     const char *deck_text)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, "valley Bayesian model averages", deck_text));
    int st, dm, db, dc, de, vname, vs, vbl, vbh, vba, vbc, vbn, v[6], vt, vvn, vvn1, vel, veh, vec, vood = -1, voc = -1, vpp;
    const int ood = dd->n_ood > 0;
    st = ncio_def_dim(&f, "method", (size_t)nres, &dm);
    if (!st) st = ncio_def_dim(&f, "bin", METRICS_BINS_WIDTH, &db);
    if (!st) st = ncio_def_dim(&f, "count_bin", METRICS_BINS_COUNT, &dc);
    if (!st) st = ncio_def_dim(&f, "entropy_bin", NB, &de);
    (void)dc;
    if (!st) st = ncio_def_var(&f, "method_name", NC_STRING, 1, &dm, "method of the model average", NULL, &vname);
    if (!st) st = ncio_def_var(&f, "n_samples", NC_INT, 1, &dm, "models averaged (MC-dropout passes for *-drop)", "1", &vs);
    const char *names[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *longs[6] = {"test accuracy", "mean test negative log-likelihood", "ECE, 15 equal-width bins",
                            "ECE, 20 equal-count bins", "Brier score", "mean predictive entropy"};
    const char *units[6] = {"1", "nats", "1", "1", "1", "nats"};
    for (int i = 0; i < 6 && !st; i++) st = ncio_def_var(&f, names[i], NC_DOUBLE, 1, &dm, longs[i], units[i], &v[i]);
    int d2[2] = {dm, db}, d3[2] = {dm, de};
    if (!st) st = ncio_def_var(&f, "bin_lower", NC_DOUBLE, 1, &db, "lower confidence edge", "1", &vbl);
    if (!st) st = ncio_def_var(&f, "bin_upper", NC_DOUBLE, 1, &db, "upper confidence edge", "1", &vbh);
    if (!st) st = ncio_def_var(&f, "bin_accuracy", NC_DOUBLE, 2, d2, "accuracy in the bin (NaN if empty)", "1", &vba);
    if (!st) st = ncio_def_var(&f, "bin_confidence", NC_DOUBLE, 2, d2, "mean confidence in the bin", "1", &vbc);
    if (!st) st = ncio_def_var(&f, "bin_count", NC_INT64, 2, d2, "examples in the bin", "1", &vbn);
    if (!st) st = ncio_def_var(&f, "temperature", NC_DOUBLE, 1, &dm,
                               "temperature T of softmax(logits / T), fitted on the validation split (NaN: the method "
                               "has none)", "1", &vt);
    if (!st) st = ncio_def_var(&f, "validation_nll", NC_DOUBLE, 1, &dm,
                               "mean validation NLL at the fitted temperature (NaN: no fit)", "nats", &vvn);
    if (!st) st = ncio_def_var(&f, "validation_nll_t1", NC_DOUBLE, 1, &dm,
                               "mean validation NLL of the same model at T = 1 (NaN: no fit)", "nats", &vvn1);
    if (!st) st = ncio_def_var(&f, "prior_precision", NC_DOUBLE, 1, &dm,
                               "KFAC-Laplace: prior precision of the weights (laplace.prior_precision or fitted on the "
                               "validation split; NaN: the method has none)", "1", &vpp);
    if (!st) st = ncio_def_var(&f, "entropy_bin_lower", NC_DOUBLE, 1, &de, "lower edge of the entropy bin", "nats", &vel);
    if (!st) st = ncio_def_var(&f, "entropy_bin_upper", NC_DOUBLE, 1, &de,
                               "upper edge of the entropy bin (the last bin holds its upper edge, log K)", "nats", &veh);
    if (!st) st = ncio_def_var(&f, "entropy_count", NC_INT64, 2, d3, "test images per predictive-entropy bin", "1", &vec);
    if (!st && ood)
        st = ncio_def_var(&f, "ood_entropy", NC_DOUBLE, 1, &dm,
                          "mean predictive entropy on the test images of the held-out classes (out of distribution)",
                          "nats", &vood);
    if (!st && ood)
        st = ncio_def_var(&f, "ood_entropy_count", NC_INT64, 2, d3,
                          "held-out classes' test images per predictive-entropy bin", "1", &voc);
    int nt = (int)dd->n_test, nv = (int)dd->n_valid, no = (int)dd->n_ood;
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "n_test", 1, &nt);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "n_validation", 1, &nv);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "classes", dd->classes);
    if (!st && ood) st = ncio_put_att_text(&f, NC_GLOBAL, "ood_classes", dd->ood_classes);
    if (!st && ood) st = ncio_put_att_int(&f, NC_GLOBAL, "n_ood", 1, &no);
    if (!st) st = ncio_enddef(&f);
    for (int r = 0; r < nres && !st; r++) {
        size_t idx = (size_t)r, one = 1;
        const char *nm = method_names[res[r].method];
        const vl_class_metrics_t *m = &res[r].m;
        double vals[6] = {m->accuracy, m->nll, m->ece, m->ece_count, m->brier, m->entropy};
        st = ncio_check(nc_put_vara_string(f.ncid, vname, &idx, &one, &nm), VL_EIO, path, "method_name");
        if (!st) st = ncio_check(nc_put_vara_int(f.ncid, vs, &idx, &one, &res[r].nsamples), VL_EIO, path, "n_samples");
        for (int k = 0; k < 6 && !st; k++) st = put_row_d(&f, path, v[k], idx, vals[k], names[k]);
        size_t start[2] = {idx, 0}, count[2] = {1, METRICS_BINS_WIDTH};
        long long cnt[METRICS_BINS_WIDTH];
        for (int b = 0; b < METRICS_BINS_WIDTH; b++) cnt[b] = m->bin_count[b];
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vba, start, count, m->bin_acc), VL_EIO, path, "bin_accuracy");
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vbc, start, count, m->bin_conf), VL_EIO, path, "bin_confidence");
        if (!st) st = ncio_check(nc_put_vara_longlong(f.ncid, vbn, start, count, cnt), VL_EIO, path, "bin_count");
        if (!st) st = put_row_d(&f, path, vt, idx, res[r].temperature, "temperature");
        if (!st) st = put_row_d(&f, path, vvn, idx, res[r].val_nll, "validation_nll");
        if (!st) st = put_row_d(&f, path, vvn1, idx, res[r].val_nll_t1, "validation_nll_t1");
        if (!st) st = put_row_d(&f, path, vpp, idx, res[r].prior, "prior_precision");
        if (!st) st = put_counts(&f, path, vec, idx, res[r].ent_count, "entropy_count");
        if (!st && ood) st = put_row_d(&f, path, vood, idx, res[r].ood_entropy, "ood_entropy");
        if (!st && ood) st = put_counts(&f, path, voc, idx, res[r].ood_count, "ood_entropy_count");
        if (!st && r == 0) {
            st = ncio_check(nc_put_var_double(f.ncid, vbl, m->bin_lo), VL_EIO, path, "bin_lower");
            if (!st) st = ncio_check(nc_put_var_double(f.ncid, vbh, m->bin_hi), VL_EIO, path, "bin_upper");
        }
    }
    double elo[NB], ehi[NB];
    for (int b = 0; b < NB; b++) { /* the edges metrics_entropy bins by: b log K / NB */
        elo[b] = log((double)C) * b / NB;
        ehi[b] = log((double)C) * (b + 1) / NB;
    }
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vel, elo), VL_EIO, path, "entropy_bin_lower");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, veh, ehi), VL_EIO, path, "entropy_bin_upper");
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* Probabilities of weights w on split sp into probs (local rows): softmax of the outputs, or with
 * T > 0 softmax(outputs / T) (the outputs go through logits, local rows x classes). */
static int predict_split(vl_job_t *j, const float *w, const float *state, const vl_split_t *sp, double T,
                         float *logits, float *probs)
{
    vl_pass_t p;
    if (T > 0) {
        j->logits = logits;
        int st = job_eval(j, w, state, sp, NULL, &p);
        j->logits = NULL;
        CHECK(st);
        calib_softmax(logits, sp->hi - sp->lo, j->cfg.out_dim, T, probs);
        return VL_OK;
    }
    CHECK(job_eval(j, w, state, sp, probs, &p));
    return VL_OK;
}

/* Test (and held-out classes') probabilities of weights w into pt (and po); BN refreshed first when
 * refresh is set; MC dropout pass `mc` when mc >= 0; temperature T when T > 0. */
static int predict(vl_job_t *j, const float *w, float *state, int refresh, long long mc, double T, float *logits,
                   float *pt, float *po)
{
    if (refresh) CHECK(job_bn_update(j, w, state, deck_double(j->deck, "eval.bn_subset")));
    const uint64_t seed = (uint64_t)deck_int(j->deck, "run.seed");
    j->mc_dropout = mc >= 0;
    j->mc_pass = (uint64_t)(mc >= 0 ? mc : 0);
    j->mc_seed = seed ^ MC_SALT_TEST;
    int st = predict_split(j, w, state, &j->test, T, logits, pt);
    j->mc_seed = seed ^ MC_SALT_OOD;
    if (!st && j->ood.n > 0) st = predict_split(j, w, state, &j->ood, T, logits, po);
    j->mc_dropout = 0;
    return st;
}

/* The deck that trained `path` (its `deck` attribute) against this bma's: a different validation
 * split or class selection is worth a warning (a temperature fitted on images the model was
 * trained on, held-out classes it has seen). */
static void warn_data_keys(vl_comm_t *c, const vl_deck_t *d, const char *path)
{
    int ncid;
    char *text = NULL;
    if (c->rank != 0 || nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return;
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "deck", &text) != VL_OK) text = NULL;
    vl_error_clear();
    nc_close(ncid);
    if (!text) return;
    deck_change_t ch[64];
    const int n = deck_changes(d, text, ch, 64);
    for (int i = 0; i < n && i < 64; i++)
        if (!strcmp(ch[i].key, "data.validation") || !strcmp(ch[i].key, "data.classes"))
            vl_log(MPI_COMM_SELF, "warning: %s was made with %s = %s, this bma uses %s = %s", path, ch[i].key,
                   ch[i].old, ch[i].key, ch[i].now);
    free(text);
}

int bma_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "bma: give swag.nc (from train with train.swag) and/or MODEL.nc files");
    int on[M_COUNT];
    CHECK(parse_methods(deck_str(d, "bma.methods"), on));
    if ((on[M_SGD_TEMP] || on[M_SWA_TEMP]) && deck_int(d, "data.validation") == 0)
        return VL_FAIL_ALL(VL_EINPUT, "bma.methods: %s fit%s the temperature on the validation split, but "
                                      "data.validation = 0: hold out N training images with data.validation = N (the "
                                      "same N as the training run, so the model has not seen them)",
                           on[M_SGD_TEMP] && on[M_SWA_TEMP] ? "sgd-temp and swa-temp" : on[M_SGD_TEMP] ? "sgd-temp" : "swa-temp",
                           on[M_SGD_TEMP] && on[M_SWA_TEMP] ? "" : "s");
    /* Inputs: files with SWAG moments (variable `mean`) and plain models. */
    char *models[256], *swagfiles[256];
    int nmodels = 0, nsw = 0;
    for (int i = 0; i < ninputs; i++) {
        int ncid, v, has = 0;
        CHECK(comm_agree_failure(c->world, ncio_open(inputs[i], &ncid)));
        char *title = NULL;
        has = nc_inq_varid(ncid, "mean", &v) == NC_NOERR &&
              ncio_get_att_text(ncid, NC_GLOBAL, inputs[i], "title", &title) == VL_OK && !strcmp(title, CKPT_TITLE_SWAG);
        vl_error_clear(); /* a file without a title is simply not a swag.nc */
        free(title);
        nc_close(ncid);
        if (has && nsw < 256) swagfiles[nsw++] = inputs[i];
        else if (!has && nmodels < 256) models[nmodels++] = inputs[i];
    }
    const char *swagfile = nsw ? swagfiles[0] : NULL;
    if (!nmodels) on[M_SGD] = on[M_ENSEMBLE] = on[M_SGD_TEMP] = on[M_SGD_DROP] = on[M_LAPLACE_SGD] = 0;
    if (nmodels < 2) on[M_ENSEMBLE] = 0;
    if (!swagfile) on[M_SWA] = on[M_SWAG_DIAG] = on[M_SWAG] = on[M_SWA_TEMP] = on[M_SWA_DROP] = on[M_LAPLACE_SWA] = 0;
    vl_model_config_t cfg;
    char dataset[32];
    char *all_in[512]; /* the swag.nc files first: the first input names the model */
    for (int i = 0; i < nsw; i++) all_in[i] = swagfiles[i];
    for (int i = 0; i < nmodels; i++) all_in[nsw + i] = models[i];
    CHECK(ckpt_read_configs(c->world, nsw + nmodels, all_in, &cfg, dataset));
    vl_job_t j;
    vl_swag_t *sw = calloc((size_t)nsw + 1, sizeof *sw);
    if (!sw) return VL_FAIL(VL_EIO, "out of memory");
    int st = job_open(&j, c, d, &cfg, dataset, all_in[0]);
    if (!st && !j.test.classification) st = VL_FAIL_ALL(VL_EINPUT, "bma: regression posteriors are handled by `infer`");
    if (!st && (on[M_SGD_DROP] || on[M_SWA_DROP]) && !model_has_dropout(j.model))
        st = VL_FAIL_ALL(VL_EINPUT, "bma.methods: %s average%s MC-dropout passes, but the network of %s has no dropout "
                                    "layers (train an mlp or a vgg with model.dropout = p)",
                         on[M_SGD_DROP] && on[M_SWA_DROP] ? "sgd-drop and swa-drop" : on[M_SGD_DROP] ? "sgd-drop" : "swa-drop",
                         on[M_SGD_DROP] && on[M_SWA_DROP] ? "" : "s", all_in[0]);
    if (!st) warn_data_keys(c, d, all_in[0]);
    for (int i = 0; i < nsw && !st; i++) {
        int K = 0;
        st = ckpt_swag_rank(swagfiles[i], &K); /* the deviations the file holds, whatever train.swag_rank says */
        if (!st) st = swag_init(&sw[i], j.np, K > 0 ? K : 1);
        if (!st) st = ckpt_read_swag(swagfiles[i], &sw[i]);
    }
    st = comm_agree_failure(c->world, st);
    const char *ood_data = deck_str(d, "bma.ood_data");
    if (!st && *ood_data) { /* another dataset's test images as the out-of-distribution set */
        if (j.ood.n > 0)
            st = VL_FAIL_ALL(VL_EINPUT, "bma.ood_data: data.classes already leaves classes out (their test images are the "
                                        "out-of-distribution set): give one of the two");
        char train_path[4200];
        const char *p = deck_str(d, "data.path");
        if (*p) snprintf(train_path, sizeof train_path, "%s", p);
        else snprintf(train_path, sizeof train_path, "input/data/%s.nc", j.dataset);
        int64_t avail = 0, *rows = NULL, sub = deck_int(d, "data.test_subset");
        const vl_rows_t all_rows = {.subset = 0};
        if (!st) st = comm_agree_failure(c->world, data_select(ood_data, "test", &all_rows, &rows, &avail));
        free(rows);
        if (sub <= 0 || sub > avail) sub = avail; /* data.test_subset images of it, or all it holds */
        if (!st) st = comm_agree_failure(c->world, data_load_as(ood_data, "test", sub, train_path, c->grank, c->gsize, &j.ood));
        if (!st && (j.ood.in_c != j.test.in_c || j.ood.in_h != j.test.in_h || j.ood.in_w != j.test.in_w))
            st = VL_FAIL_ALL(VL_EINPUT, "bma.ood_data: %s holds %dx%dx%d images, the model takes %dx%dx%d", ood_data,
                             j.ood.in_c, j.ood.in_h, j.ood.in_w, j.test.in_c, j.test.in_h, j.test.in_w);
        if (!st) vl_log(c->world, "data: %lld test images of %s (bma.ood_data) as the out-of-distribution set",
                        (long long)j.ood.n, ood_data);
    }
    const int64_t nloc = j.test.hi - j.test.lo, nood = j.ood.hi - j.ood.lo, nval = j.valid.hi - j.valid.lo;
    const int C = cfg.out_dim, N = (int)deck_int(d, "bma.samples");
    const size_t P = (size_t)nloc * C, Po = (size_t)nood * C;
    const uint64_t seed = (uint64_t)deck_int(d, "run.seed");
    float *probs = vl_calloc(P + 1, sizeof(float), "probabilities");
    float *probs_ood = vl_calloc(Po + 1, sizeof(float), "held-out classes' probabilities");
    int most = N > nmodels ? N : nmodels;
    if (nsw > most) most = nsw;
    float *all = vl_calloc(P * (size_t)most + 1, sizeof(float), "per-sample probabilities");
    float *all_ood = vl_calloc(Po * (size_t)most + 1, sizeof(float), "per-sample held-out probabilities");
    double *acc = vl_calloc((P > Po ? P : Po) + 1, sizeof(double), "model average");
    int64_t most_rows = nloc > nood ? nloc : nood;
    if (nval > most_rows) most_rows = nval;
    float *logits = vl_calloc((size_t)most_rows * C + 1, sizeof(float), "logits");
    float *var = nsw ? vl_calloc(j.np * (size_t)nsw + 1, sizeof(float), "SWAG variances") : NULL;
    float *state = vl_calloc(j.ns + 1, sizeof(float), "BN state");
    float *base = vl_calloc(j.np + 1, sizeof(float), "point estimate");
    vl_laplace_t lp = {0};
    if (!st && (!probs || !probs_ood || !all || !all_ood || !acc || !logits || (swagfile && !var) || !state || !base))
        st = vl_error_status();
    for (int i = 0; i < nsw && !st; i++) {
        int64_t clamped = swag_variance(&sw[i], var + (size_t)i * j.np);
        vl_log(c->world, "%s: SWAG of %lld iterates, %d deviations, %lld variances clamped", swagfiles[i],
               (long long)sw[i].n, sw[i].ndev, (long long)clamped);
        if (sw[i].ndev < 2 && on[M_SWAG]) vl_log(c->world, "warning: fewer than 2 deviations: swag equals swag-diag");
    }
    if (nsw > 1) vl_log(c->world, "MultiSWAG: %d chains; sample s of a method comes from chain s mod %d", nsw, nsw);
    bma_result_t res[M_COUNT];
    int nres = 0;
    for (int m = 0; m < M_COUNT && !st; m++) {
        if (!on[m]) continue;
        double t0 = vl_now();
        bma_result_t *rs = &res[nres];
        memset(rs, 0, sizeof *rs);
        rs->temperature = rs->val_nll = rs->val_nll_t1 = rs->ood_entropy = rs->prior = NAN;
        const int drop = m == M_SGD_DROP || m == M_SWA_DROP, temp = m == M_SGD_TEMP || m == M_SWA_TEMP;
        const int laplace = m == M_LAPLACE_SGD || m == M_LAPLACE_SWA;
        int ns = m == M_SGD || temp ? 1 : m == M_SWA ? nsw : m == M_ENSEMBLE ? nmodels : N;
        if (laplace) { /* the point estimate, its K-FAC factors and their Cholesky factors */
            st = ckpt_read(m == M_LAPLACE_SGD ? models[0] : swagfile, j.model, base, state, NULL, NULL);
            if (!st) st = laplace_init(&lp, j.model);
            if (!st) st = laplace_fit(&lp, &j, base, state);
            if (!st) st = laplace_prior(&lp, &j, base, state, seed, m, &rs->prior);
            if (st) break;
        }
        memset(all, 0, P * (size_t)ns * sizeof(float));
        memset(all_ood, 0, Po * (size_t)ns * sizeof(float));
        const char *loaded = NULL; /* the file whose weights j.w and state hold (drop methods read once) */
        double fit[4] = {0, 0, 0, 0}; /* T, validation NLL at T and at 1, at the bound */
        for (int s = 0; s < ns && !st; s++) {
            if (s % c->ngroups != c->group_id) continue;
            float *ps = all + (size_t)s * P, *po = all_ood + (size_t)s * Po;
            const char *file = m == M_SGD || m == M_ENSEMBLE ? models[s] : m == M_SWA ? swagfiles[s]
                             : m == M_SGD_TEMP || m == M_SGD_DROP ? models[0]
                             : m == M_SWA_TEMP ? swagfiles[0] : m == M_SWA_DROP ? swagfiles[s % nsw] : NULL;
            if (file && file != loaded) { /* a model, or a SWA mean with its BN already refreshed */
                st = ckpt_read(file, j.model, j.w, state, NULL, NULL);
                loaded = file;
            }
            if (st) break;
            if (temp) {
                vl_pass_t vp;
                vl_temp_fit_t tf;
                j.logits = logits;
                st = job_eval(&j, j.w, state, &j.valid, NULL, &vp);
                j.logits = NULL;
                if (!st) st = calib_fit_temperature(logits, j.valid.y, nval, C, j.gcomm, &tf);
                if (!st && tf.at_bound)
                    vl_log(j.gcomm, "warning: %s: the validation NLL still falls at T = %g (the model separates the "
                           "validation images): T is that bound", method_names[m], tf.temperature);
                fit[0] = tf.temperature;
                fit[1] = tf.nll;
                fit[2] = tf.nll_t1;
                fit[3] = tf.at_bound;
                if (!st) st = predict(&j, j.w, state, 0, -1, tf.temperature, logits, ps, po);
            } else if (drop) {
                st = predict(&j, j.w, state, 0, s, 0, logits, ps, po);
            } else if (m == M_SGD || m == M_ENSEMBLE || m == M_SWA) {
                st = predict(&j, j.w, state, 0, -1, 0, logits, ps, po);
            } else if (laplace) {
                vl_rng_t r;
                rng_init(&r, seed, rng_stream(RNG_SAMPLE, (uint64_t)m, (uint64_t)s));
                st = laplace_sample(&lp, base, j.np, deck_double(d, "laplace.scale"), &r, j.w);
                loaded = NULL;
                if (!st) st = predict(&j, j.w, state, 1, -1, 0, logits, ps, po);
            } else {
                const int ch = s % nsw;
                bma_swag_sample(&sw[ch], var + (size_t)ch * j.np, seed, s,
                                deck_double(d, m == M_SWAG ? "bma.scale" : "bma.diag_scale"), m == M_SWAG_DIAG, j.w);
                loaded = NULL;
                st = predict(&j, j.w, state, 1, -1, 0, logits, ps, po);
            }
            if (!st && ns > 1 && (s + 1) % (ns > 10 ? ns / 10 : 1) == 0) {
                double el = vl_now() - t0;
                char eta[32];
                vl_fmt_duration(el / (s + 1) * (ns - s - 1), eta, sizeof eta);
                vl_log(j.gcomm, "%s: sample %d/%d (group %d) | %.1f s/sample | ETA %s", method_names[m], s + 1, ns,
                       c->group_id, el / (s + 1) * c->ngroups, eta);
            }
        }
        if (laplace) laplace_free(&lp);
        /* Each sample was computed by exactly one group: a sum over groups is an exact gather. */
        if (!st && c->ngroups > 1) {
            MPI_Allreduce(MPI_IN_PLACE, all, (int)(P * ns), MPI_FLOAT, MPI_SUM, c->cross);
            if (Po) MPI_Allreduce(MPI_IN_PLACE, all_ood, (int)(Po * ns), MPI_FLOAT, MPI_SUM, c->cross);
            if (temp) MPI_Allreduce(MPI_IN_PLACE, fit, 4, MPI_DOUBLE, MPI_SUM, c->cross); /* group 0 fitted */
        }
        if (st) break;
        memset(acc, 0, P * sizeof(double));
        for (int s = 0; s < ns; s++)
            for (size_t i = 0; i < P; i++) acc[i] += all[(size_t)s * P + i];
        for (size_t i = 0; i < P; i++) probs[i] = (float)(acc[i] / ns);
        rs->method = m;
        rs->nsamples = ns;
        if (temp) {
            rs->temperature = fit[0];
            rs->val_nll = fit[1];
            rs->val_nll_t1 = fit[2];
        }
        st = metrics_classification(probs, j.test.y, nloc, C, j.test.lo, j.gcomm, &rs->m);
        double ent;
        if (!st) st = metrics_entropy(probs, nloc, C, j.test.lo, j.gcomm, NB, &ent, rs->ent_count);
        if (!st && j.ood.n > 0) {
            memset(acc, 0, Po * sizeof(double));
            for (int s = 0; s < ns; s++)
                for (size_t i = 0; i < Po; i++) acc[i] += all_ood[(size_t)s * Po + i];
            for (size_t i = 0; i < Po; i++) probs_ood[i] = (float)(acc[i] / ns);
            st = metrics_entropy(probs_ood, nood, C, j.ood.lo, j.gcomm, NB, &rs->ood_entropy, rs->ood_count);
        }
        if (!st) {
            char extra[160] = "";
            size_t u = 0;
            if (temp)
                u += (size_t)snprintf(extra + u, sizeof extra - u, "  T %.4f (validation nll %.4f -> %.4f)",
                                      rs->temperature, rs->val_nll_t1, rs->val_nll);
            if (j.ood.n > 0 && u < sizeof extra)
                snprintf(extra + u, sizeof extra - u, "  entropy %.4f, held-out classes %.4f", rs->m.entropy,
                         rs->ood_entropy);
            vl_log(c->world, "%-11s (%2d model(s)): accuracy %.4f  nll %.4f  ece %.4f  brier %.4f%s  (%.0fs)",
                   method_names[m], ns, rs->m.accuracy, rs->m.nll, rs->m.ece, rs->m.brier, extra, vl_now() - t0);
        }
        nres++;
    }
    if (!st && nres == 0) st = VL_FAIL_ALL(VL_EINPUT, "bma: no method of bma.methods applies to the inputs given");
    if (!st) { /* the table of every method */
        vl_log(c->world, "%-11s %6s %9s %8s %7s %7s %8s %10s %9s%s", "method", "models", "accuracy", "nll", "ece", "brier",
               "T", "prior", "entropy", j.ood.n > 0 ? "  held-out entropy" : "");
        for (int r = 0; r < nres; r++) {
            char t[32] = "-", pr[32] = "-", o[32] = "";
            if (!isnan(res[r].temperature)) snprintf(t, sizeof t, "%.4f", res[r].temperature);
            if (!isnan(res[r].prior)) snprintf(pr, sizeof pr, "%.4g", res[r].prior);
            if (j.ood.n > 0) snprintf(o, sizeof o, "  %16.4f", res[r].ood_entropy);
            vl_log(c->world, "%-11s %6d %9.4f %8.4f %7.4f %7.4f %8s %10s %9.4f%s", method_names[res[r].method],
                   res[r].nsamples, res[r].m.accuracy, res[r].m.nll, res[r].m.ece, res[r].m.brier, t, pr, res[r].m.entropy, o);
        }
    }
    char path[8400];
    snprintf(path, sizeof path, "%s/bma.nc", outdir);
    bma_data_t dd = {.n_test = j.test.n, .n_valid = j.valid.n, .n_ood = j.ood.n, .classes = deck_str(d, "data.classes")};
    if (!st && *ood_data) snprintf(dd.ood_classes, sizeof dd.ood_classes, "every class of %s", ood_data);
    else if (!st && j.ood.n > 0) { /* the classes that are not data.classes */
        int keep[4096];
        const int nk = deck_classlist(d, "data.classes", keep, 4096);
        size_t u = 0;
        for (int k = 0, i = 0; k < C && u < sizeof dd.ood_classes; k++) {
            while (i < nk && keep[i] < k) i++;
            if (i < nk && keep[i] == k) continue;
            u += (size_t)snprintf(dd.ood_classes + u, sizeof dd.ood_classes - u, "%s%d", u ? "," : "", k);
        }
    }
    if (!st && c->rank == 0) st = ncio_mkdirs(outdir);
    if (!st && c->rank == 0) st = write_bma(path, res, nres, &dd, C, deck_text(d));
    if (!st) vl_log(c->world, "wrote %s", path);
    free(probs); free(probs_ood); free(all); free(all_ood); free(acc); free(logits); free(var); free(state); free(base);
    laplace_free(&lp);
    for (int i = 0; i < nsw; i++) swag_free(&sw[i]);
    free(sw);
    job_close(&j);
    CHECK(st);
    return VL_OK;
}

void bma_swag_sample(const vl_swag_t *sw, const float *var, uint64_t seed, int s, double scale, int diag, float *w)
{
    vl_rng_t r;
    rng_init(&r, seed, rng_stream(RNG_SAMPLE, (uint64_t)(diag ? M_SWAG_DIAG : M_SWAG), (uint64_t)s));
    swag_sample(sw, var, scale, diag, &r, w);
}
