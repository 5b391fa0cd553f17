/* laplace.c — KFAC-Laplace (laplace.h). */
#include "valley/laplace.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/log.h"

int laplace_init(vl_laplace_t *lp, const vl_model_t *m)
{
    memset(lp, 0, sizeof *lp);
    lp->nl = model_kfac_layers(m, NULL, 0);
    const int nl = lp->nl;
    lp->lay = calloc((size_t)nl + 1, sizeof *lp->lay);
    lp->A = calloc((size_t)nl + 1, sizeof(double *));
    lp->G = calloc((size_t)nl + 1, sizeof(double *));
    lp->LA = calloc((size_t)nl + 1, sizeof(double *));
    lp->LG = calloc((size_t)nl + 1, sizeof(double *));
    int bad = !lp->lay || !lp->A || !lp->G || !lp->LA || !lp->LG;
    if (!bad) model_kfac_layers(m, lp->lay, nl);
    for (int l = 0; l < nl && !bad; l++) {
        const size_t a = (size_t)lp->lay[l].dim_a * lp->lay[l].dim_a, g = (size_t)lp->lay[l].dim_g * lp->lay[l].dim_g;
        lp->A[l] = calloc(a, sizeof(double));
        lp->G[l] = calloc(g, sizeof(double));
        lp->LA[l] = calloc(a, sizeof(double));
        lp->LG[l] = calloc(g, sizeof(double));
        bad = !lp->A[l] || !lp->G[l] || !lp->LA[l] || !lp->LG[l];
    }
    if (bad) {
        laplace_free(lp);
        return VL_FAIL(VL_EIO, "out of memory for the K-FAC factors");
    }
    return VL_OK;
}

void laplace_free(vl_laplace_t *lp)
{
    for (int l = 0; l < lp->nl; l++) {
        if (lp->A) free(lp->A[l]);
        if (lp->G) free(lp->G[l]);
        if (lp->LA) free(lp->LA[l]);
        if (lp->LG) free(lp->LG[l]);
    }
    free(lp->lay); free(lp->A); free(lp->G); free(lp->LA); free(lp->LG);
    memset(lp, 0, sizeof *lp);
}

int laplace_fit(vl_laplace_t *lp, vl_job_t *j, const float *w, const float *state)
{
    vl_model_t *m = j->model;
    const int64_t n = j->train.n;
    float *st = malloc((j->ns + 1) * sizeof(float));
    int64_t *ids = malloc(((size_t)j->batch + 1) * sizeof(int64_t));
    int status = st && ids ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    if (!status) {
        memcpy(st, state, j->ns * sizeof(float));
        for (int l = 0; l < lp->nl; l++) {
            memset(lp->A[l], 0, (size_t)lp->lay[l].dim_a * lp->lay[l].dim_a * sizeof(double));
            memset(lp->G[l], 0, (size_t)lp->lay[l].dim_g * lp->lay[l].dim_g * sizeof(double));
        }
        status = model_kfac_set(m, lp->A, lp->G);
    }
    status = comm_agree_failure(j->gcomm, status);
    double t0 = vl_now(), last = t0;
    model_set_grad(m, 1);
    for (int64_t b = 0; b < n && !status; b += j->batch) {
        const int cnt = (int)(n - b < j->batch ? n - b : j->batch);
        for (int i = 0; i < cnt; i++) ids[i] = b + i;
        const int nl = job_gather_batch(j, &j->train, ids, cnt, 0, 0, 0);
        const float *out = model_forward(m, w, st, j->xb, nl, MODE_TRAIN);
        job_batch_loss(j, out, nl, 1.0, j->dout, NULL); /* each sample's own loss gradient */
        model_backward(m, w, j->dout, j->g);
        const double now = vl_now();
        if (now - last > 30 || b + cnt >= n) {
            last = now;
            const double rate = (double)(b + cnt) / (now - t0);
            vl_log(j->gcomm, "laplace: K-FAC factors %lld/%lld samples | %.0f samples/s | ETA %.0f s",
                   (long long)(b + cnt), (long long)n, rate, (double)(n - b - cnt) / rate);
        }
    }
    model_kfac_set(m, NULL, NULL);
    free(st);
    free(ids);
    CHECK(status);
    /* the sums of all ranks, as rank 0 of the group has them, on every rank */
    int rank;
    MPI_Comm_rank(j->gcomm, &rank);
    for (int l = 0; l < lp->nl; l++) {
        const vl_kfac_layer_t *L = &lp->lay[l];
        double *f[2] = {lp->A[l], lp->G[l]};
        const int d[2] = {L->dim_a, L->dim_g};
        for (int k = 0; k < 2; k++) {
            const int cnt = d[k] * d[k];
            MPI_Reduce(rank ? f[k] : MPI_IN_PLACE, f[k], cnt, MPI_DOUBLE, MPI_SUM, 0, j->gcomm);
            MPI_Bcast(f[k], cnt, MPI_DOUBLE, 0, j->gcomm);
            const double rows = (double)n * L->locations;
            for (int i = 0; i < cnt; i++) f[k][i] /= rows;
        }
    }
    lp->n = (double)n;
    return VL_OK;
}

/* L (lower, row-major) = the Cholesky factor of c F + d I. */
static int damped_cholesky(const double *F, int dim, double c, double d, double *L, int layer, const char *which)
{
    for (int i = 0; i < dim; i++)
        for (int k = 0; k < dim; k++) L[(size_t)i * dim + k] = k <= i ? c * F[(size_t)i * dim + k] + (i == k ? d : 0.0) : 0.0;
    const int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', dim, L, dim);
    if (info)
        return VL_FAIL(VL_EINPUT, "laplace: layer %d: the damped factor %s is not positive definite (LAPACK dpotrf info %d)",
                       layer + 1, which, info);
    return VL_OK;
}

int laplace_prepare(vl_laplace_t *lp, double tau)
{
    if (!(tau > 0)) return VL_FAIL(VL_EINPUT, "laplace: prior precision %g: it must be > 0", tau);
    for (int l = 0; l < lp->nl; l++) {
        const vl_kfac_layer_t *L = &lp->lay[l];
        const double c = sqrt(lp->n * L->locations), d = sqrt(tau);
        CHECK(damped_cholesky(lp->A[l], L->dim_a, c, d, lp->LA[l], l, "A"));
        CHECK(damped_cholesky(lp->G[l], L->dim_g, c, d, lp->LG[l], l, "G"));
    }
    lp->tau = tau;
    return VL_OK;
}

int laplace_sample(const vl_laplace_t *lp, const float *w_mean, size_t np, double scale, vl_rng_t *r, float *w)
{
    memcpy(w, w_mean, np * sizeof(float));
    size_t most = 1;
    for (int l = 0; l < lp->nl; l++)
        if ((size_t)lp->lay[l].dim_a * lp->lay[l].dim_g > most) most = (size_t)lp->lay[l].dim_a * lp->lay[l].dim_g;
    double *Z = malloc(most * sizeof(double));
    if (!Z) return VL_FAIL(VL_EIO, "out of memory for a KFAC-Laplace draw");
    for (int l = 0; l < lp->nl; l++) {
        const vl_kfac_layer_t *L = &lp->lay[l];
        const int da = L->dim_a, dg = L->dim_g, in = da - L->has_bias;
        for (size_t i = 0; i < (size_t)da * dg; i++) Z[i] = rng_normal(r);
        /* Z := L_G^{-T} Z L_A^{-1} */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, dg, da, 1.0, lp->LA[l], da, Z, da);
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, dg, da, 1.0, lp->LG[l], dg, Z, da);
        for (int o = 0; o < dg; o++) {
            for (int i = 0; i < in; i++)
                w[L->w_off + (size_t)o * in + i] = (float)(w_mean[L->w_off + (size_t)o * in + i] + scale * Z[(size_t)o * da + i]);
            if (L->has_bias) w[L->b_off + o] = (float)(w_mean[L->b_off + o] + scale * Z[(size_t)o * da + in]);
        }
    }
    free(Z);
    return VL_OK;
}

/* Mean validation NLL of the model average of S draws at prior precision tau (BN refreshed per
 * draw); draws from the streams (seed, RNG_SAMPLE, method, salt + s). */
static int valid_nll(vl_laplace_t *lp, vl_job_t *j, const float *base, float *state, uint64_t seed, int method,
                     uint64_t salt, int S, float *w, double *probs, float *pr, double *nll)
{
    const int C = j->cfg.out_dim;
    const int64_t nl = j->valid.hi - j->valid.lo;
    memset(probs, 0, (size_t)nl * C * sizeof(double));
    for (int s = 0; s < S; s++) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_SAMPLE, (uint64_t)method, salt + (uint64_t)s));
        CHECK(laplace_sample(lp, base, j->np, deck_double(j->deck, "laplace.scale"), &r, w));
        CHECK(job_bn_update(j, w, state, deck_double(j->deck, "eval.bn_subset")));
        vl_pass_t p;
        CHECK(job_eval(j, w, state, &j->valid, pr, &p));
        for (size_t i = 0; i < (size_t)nl * C; i++) probs[i] += pr[i];
    }
    double sum = 0.0;
    for (int64_t i = 0; i < nl; i++) sum -= log(fmax(probs[(size_t)i * C + j->valid.y[i]] / S, 1e-300));
    MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, j->gcomm);
    *nll = sum / (double)j->valid.n;
    return VL_OK;
}

int laplace_prior(vl_laplace_t *lp, vl_job_t *j, const float *base, float *state, uint64_t seed, int method, double *tau)
{
    const double given = deck_double(j->deck, "laplace.prior_precision"), wd = deck_double(j->deck, "train.wd");
    const double tau0 = lp->n * (wd > 0 ? wd : 1e-4);
    if (given > 0 || j->valid.n == 0) {
        *tau = given > 0 ? given : tau0;
        vl_log(j->gcomm, "laplace: K-FAC factors of %d layers over %.0f training samples; prior precision %g%s", lp->nl, lp->n,
               *tau, given > 0 ? " (laplace.prior_precision)" : " (training samples x train.wd: not fitted, no data.validation)");
        return laplace_prepare(lp, *tau);
    }
    /* the grid tau0 10^k, k = -1 .. 7, each judged by the validation NLL of fit_samples draws */
    const int S = (int)deck_int(j->deck, "laplace.fit_samples"), C = j->cfg.out_dim;
    const int64_t nl = j->valid.hi - j->valid.lo;
    double *probs = malloc(((size_t)nl * C + 1) * sizeof(double));
    float *pr = malloc(((size_t)nl * C + 1) * sizeof(float)), *w = malloc((j->np + 1) * sizeof(float));
    int st = probs && pr && w ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    double best = tau0, best_nll = INFINITY;
    const double t0 = vl_now();
    for (int k = -1; k <= 7 && !st; k++) {
        const double t = tau0 * pow(10.0, k);
        double nll = NAN;
        st = laplace_prepare(lp, t);
        if (!st) st = valid_nll(lp, j, base, state, seed, method, (uint64_t)(k + 1) << 32, S, w, probs, pr, &nll);
        if (st) break;
        vl_log(j->gcomm, "laplace: prior precision %-10g validation nll %.5f (%d draws) | %.0f s", t, nll, S, vl_now() - t0);
        if (nll < best_nll) best = t, best_nll = nll;
    }
    free(probs); free(pr); free(w);
    CHECK(st);
    *tau = best;
    if (best == tau0 * 1e7 || best == tau0 * 0.1)
        vl_log(j->gcomm, "warning: laplace: the validation NLL is lowest at the grid's %s value (%g): %s", best > tau0 ? "largest" : "smallest",
               best, best > tau0 ? "the closer the draws stay to the point estimate, the better they predict" : "the prior may be broader still");
    vl_log(j->gcomm, "laplace: K-FAC factors of %d layers over %.0f training samples; prior precision %g (fitted on %lld "
           "validation images: nll %.5f)", lp->nl, lp->n, best, (long long)j->valid.n, best_nll);
    return laplace_prepare(lp, best);
}
