/* bma.c — SWA / SWAG-Diag / SWAG / ensemble model averages. */
#include "valley/bma.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/laplace.h"
#include "valley/log.h"
#include "valley/metrics.h"
#include "valley/ncio.h"
#include "valley/rng.h"
#include "valley/swag.h"
#include "valley/train.h"

enum { M_SGD, M_ENSEMBLE, M_SWA, M_SWAG_DIAG, M_SWAG, M_LAPLACE_SGD, M_LAPLACE_SWA, M_COUNT };
static const char *method_names[M_COUNT] = {"sgd", "ensemble", "swa", "swag-diag", "swag", "laplace-sgd", "laplace-swa"};

typedef struct {
    int method;
    int nsamples;
    vl_class_metrics_t m;
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
        if (k < 0)
            return VL_FAIL_ALL(VL_EINPUT, "bma.methods: unknown method '%s' (sgd, ensemble, swa, swag-diag, swag, laplace-sgd, laplace-swa)", tok);
        on[k] = 1;
    }
    return VL_OK;
}

static int write_bma(const char *path, const bma_result_t *res, int nres, const char *deck_text)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, "valley Bayesian model averages", deck_text));
    int st, dm, db, dc, vname, vs, vbl, vbh, vba, vbc, vbn, v[6];
    st = ncio_def_dim(&f, "method", (size_t)nres, &dm);
    if (!st) st = ncio_def_dim(&f, "bin", METRICS_BINS_WIDTH, &db);
    if (!st) st = ncio_def_dim(&f, "count_bin", METRICS_BINS_COUNT, &dc);
    (void)dc;
    if (!st) st = ncio_def_var(&f, "method_name", NC_STRING, 1, &dm, "method of the model average", NULL, &vname);
    if (!st) st = ncio_def_var(&f, "n_samples", NC_INT, 1, &dm, "models averaged", "1", &vs);
    const char *names[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *longs[6] = {"test accuracy", "mean test negative log-likelihood", "ECE, 15 equal-width bins",
                            "ECE, 20 equal-count bins", "Brier score", "mean predictive entropy"};
    const char *units[6] = {"1", "nats", "1", "1", "1", "nats"};
    for (int i = 0; i < 6 && !st; i++) st = ncio_def_var(&f, names[i], NC_DOUBLE, 1, &dm, longs[i], units[i], &v[i]);
    int d2[2] = {dm, db};
    if (!st) st = ncio_def_var(&f, "bin_lower", NC_DOUBLE, 1, &db, "lower confidence edge", "1", &vbl);
    if (!st) st = ncio_def_var(&f, "bin_upper", NC_DOUBLE, 1, &db, "upper confidence edge", "1", &vbh);
    if (!st) st = ncio_def_var(&f, "bin_accuracy", NC_DOUBLE, 2, d2, "accuracy in the bin (NaN if empty)", "1", &vba);
    if (!st) st = ncio_def_var(&f, "bin_confidence", NC_DOUBLE, 2, d2, "mean confidence in the bin", "1", &vbc);
    if (!st) st = ncio_def_var(&f, "bin_count", NC_INT64, 2, d2, "examples in the bin", "1", &vbn);
    if (!st) st = ncio_enddef(&f);
    for (int r = 0; r < nres && !st; r++) {
        size_t idx = (size_t)r, one = 1;
        const char *nm = method_names[res[r].method];
        const vl_class_metrics_t *m = &res[r].m;
        double vals[6] = {m->accuracy, m->nll, m->ece, m->ece_count, m->brier, m->entropy};
        st = ncio_check(nc_put_vara_string(f.ncid, vname, &idx, &one, &nm), VL_EIO, path, "method_name");
        if (!st) st = ncio_check(nc_put_vara_int(f.ncid, vs, &idx, &one, &res[r].nsamples), VL_EIO, path, "n_samples");
        for (int k = 0; k < 6 && !st; k++) st = ncio_check(nc_put_vara_double(f.ncid, v[k], &idx, &one, &vals[k]), VL_EIO, path, names[k]);
        size_t start[2] = {idx, 0}, count[2] = {1, METRICS_BINS_WIDTH};
        long long cnt[METRICS_BINS_WIDTH];
        for (int b = 0; b < METRICS_BINS_WIDTH; b++) cnt[b] = m->bin_count[b];
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vba, start, count, m->bin_acc), VL_EIO, path, "bin_accuracy");
        if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vbc, start, count, m->bin_conf), VL_EIO, path, "bin_confidence");
        if (!st) st = ncio_check(nc_put_vara_longlong(f.ncid, vbn, start, count, cnt), VL_EIO, path, "bin_count");
        if (!st && r == 0) {
            st = ncio_check(nc_put_var_double(f.ncid, vbl, m->bin_lo), VL_EIO, path, "bin_lower");
            if (!st) st = ncio_check(nc_put_var_double(f.ncid, vbh, m->bin_hi), VL_EIO, path, "bin_upper");
        }
    }
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* Test probabilities of weights w (BN refreshed first when refresh is set) into probs. */
static int predict(vl_job_t *j, const float *w, float *state, int refresh, float *probs)
{
    if (refresh) CHECK(job_bn_update(j, w, state, deck_double(j->deck, "eval.bn_subset")));
    vl_pass_t p;
    CHECK(job_eval(j, w, state, &j->test, probs, &p));
    return VL_OK;
}

int bma_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1) return VL_FAIL_ALL(VL_EINPUT, "bma: give swag.nc (from train with train.swag) and/or MODEL.nc files");
    int on[M_COUNT];
    CHECK(parse_methods(deck_str(d, "bma.methods"), on));
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
    if (!nmodels) on[M_SGD] = on[M_ENSEMBLE] = on[M_LAPLACE_SGD] = 0;
    if (nmodels < 2) on[M_ENSEMBLE] = 0;
    if (!swagfile) on[M_SWA] = on[M_SWAG_DIAG] = on[M_SWAG] = on[M_LAPLACE_SWA] = 0;
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
    for (int i = 0; i < nsw && !st; i++) {
        int K = 0;
        st = ckpt_swag_rank(swagfiles[i], &K); /* the deviations the file holds, whatever train.swag_rank says */
        if (!st) st = swag_init(&sw[i], j.np, K > 0 ? K : 1);
        if (!st) st = ckpt_read_swag(swagfiles[i], &sw[i]);
    }
    st = comm_agree_failure(c->world, st);
    const int64_t nloc = j.test.hi - j.test.lo;
    const int C = cfg.out_dim, N = (int)deck_int(d, "bma.samples");
    const size_t P = (size_t)nloc * C;
    const uint64_t seed = (uint64_t)deck_int(d, "run.seed");
    float *probs = vl_calloc(P + 1, sizeof(float), "probabilities");
    int most = N > nmodels ? N : nmodels;
    if (nsw > most) most = nsw;
    float *all = vl_calloc(P * (size_t)most + 1, sizeof(float), "per-sample probabilities");
    double *acc = vl_calloc(P + 1, sizeof(double), "model average");
    float *var = nsw ? vl_calloc(j.np * (size_t)nsw + 1, sizeof(float), "SWAG variances") : NULL;
    float *state = vl_calloc(j.ns + 1, sizeof(float), "BN state");
    float *base = vl_calloc(j.np + 1, sizeof(float), "point estimate");
    vl_laplace_t lp = {0};
    if (!st && (!probs || !all || !acc || (swagfile && !var) || !state || !base)) st = vl_error_status();
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
        int ns = m == M_SGD ? 1 : m == M_SWA ? nsw : m == M_ENSEMBLE ? nmodels : N;
        const int laplace = m == M_LAPLACE_SGD || m == M_LAPLACE_SWA;
        if (laplace) { /* the point estimate, its K-FAC factors and their Cholesky factors */
            st = ckpt_read(m == M_LAPLACE_SGD ? models[0] : swagfile, j.model, base, state, NULL, NULL);
            if (!st) st = laplace_init(&lp, j.model);
            if (!st) st = laplace_fit(&lp, &j, base, state);
            double tau = deck_double(d, "laplace.prior_precision");
            if (!(tau > 0)) tau = lp.n * deck_double(d, "train.wd");
            if (!st) st = laplace_prepare(&lp, tau);
            if (!st)
                vl_log(c->world, "%s: K-FAC factors of %d layers over %.0f training samples; prior precision %g%s",
                       method_names[m], lp.nl, lp.n, tau,
                       deck_double(d, "laplace.prior_precision") > 0 ? "" : " (training samples x train.wd)");
            if (st) break;
        }
        memset(all, 0, P * (size_t)ns * sizeof(float));
        for (int s = 0; s < ns && !st; s++) {
            if (s % c->ngroups != c->group_id) continue;
            float *ps = all + (size_t)s * P;
            if (m == M_SGD || m == M_ENSEMBLE) {
                st = ckpt_read(models[s], j.model, j.w, state, NULL, NULL);
                if (!st) st = predict(&j, j.w, state, 0, ps);
            } else if (m == M_SWA) {
                st = ckpt_read(swagfiles[s], j.model, j.w, state, NULL, NULL); /* SWA mean, BN already refreshed */
                if (!st) st = predict(&j, j.w, state, 0, ps);
            } else if (laplace) {
                vl_rng_t r;
                rng_init(&r, seed, rng_stream(RNG_SAMPLE, (uint64_t)m, (uint64_t)s));
                st = laplace_sample(&lp, base, j.np, deck_double(d, "laplace.scale"), &r, j.w);
                if (!st) st = predict(&j, j.w, state, 1, ps);
            } else {
                const int ch = s % nsw;
                bma_swag_sample(&sw[ch], var + (size_t)ch * j.np, seed, s,
                                deck_double(d, m == M_SWAG ? "bma.scale" : "bma.diag_scale"), m == M_SWAG_DIAG, j.w);
                st = predict(&j, j.w, state, 1, ps);
            }
            if (!st && ns > 1 && (s + 1) % (ns > 10 ? ns / 10 : 1) == 0) {
                double el = vl_now() - t0;
                char eta[32];
                vl_fmt_duration(el / (s + 1) * (ns - s - 1), eta, sizeof eta);
                vl_log(j.gcomm, "%s: sample %d/%d (group %d) | %.1f s/sample | ETA %s", method_names[m], s + 1, ns,
                       c->group_id, el / (s + 1) * c->ngroups, eta);
            }
        }
        /* Each sample was computed by exactly one group: a sum over groups is an exact gather. */
        if (!st && c->ngroups > 1) MPI_Allreduce(MPI_IN_PLACE, all, (int)(P * ns), MPI_FLOAT, MPI_SUM, c->cross);
        if (laplace) laplace_free(&lp);
        if (st) break;
        memset(acc, 0, P * sizeof(double));
        for (int s = 0; s < ns; s++)
            for (size_t i = 0; i < P; i++) acc[i] += all[(size_t)s * P + i];
        for (size_t i = 0; i < P; i++) probs[i] = (float)(acc[i] / ns);
        res[nres].method = m;
        res[nres].nsamples = ns;
        st = metrics_classification(probs, j.test.y, nloc, C, j.test.lo, j.gcomm, &res[nres].m);
        if (!st)
            vl_log(c->world, "%-9s (%2d model(s)): accuracy %.4f  nll %.4f  ece %.4f  brier %.4f  (%.0fs)", method_names[m], ns,
                   res[nres].m.accuracy, res[nres].m.nll, res[nres].m.ece, res[nres].m.brier, vl_now() - t0);
        nres++;
    }
    if (!st && nres == 0) st = VL_FAIL_ALL(VL_EINPUT, "bma: no method of bma.methods applies to the inputs given");
    char path[8400];
    snprintf(path, sizeof path, "%s/bma.nc", outdir);
    if (!st && c->rank == 0) st = ncio_mkdirs(outdir);
    if (!st && c->rank == 0) st = write_bma(path, res, nres, deck_text(d));
    if (!st) vl_log(c->world, "wrote %s", path);
    free(probs); free(all); free(acc); free(var); free(state); free(base);
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
