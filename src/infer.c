/* infer.c — subspace inference (SPEC §5): elliptical slice sampling and variational
 * inference over z in w = ŵ + P z, BMA of the samples, infer.nc and its band figure.
 *
 * Design (doc/infer.md has the long form):
 * - The subspace comes from the first input: subspace.nc (PCA of `valley pca`, shift =
 *   SWA mean, rows σ_i/√(K−1)), curve.nc (curve subspace of SPEC §2) or swag.nc (PCA of
 *   its deviations by the K×K Gram route, or a random subspace). infer.subspace = random
 *   draws k Gaussian directions, orthonormalises them and rescales row i to the norm of
 *   PCA row i (from subspace.nc, or from the deviations of swag.nc).
 * - Likelihood: one data-parallel pass over the training set per evaluation. Models with
 *   batch norm are run in train mode (batch statistics) over the fixed batch order of the
 *   BN refresh (job->bn_perm): one pass per evaluation and a deterministic function of z;
 *   the alternative (a BN refresh, then an eval-mode pass) costs two passes. Samples kept
 *   for the BMA get a proper BN refresh (eval.bn_subset) before their test predictions.
 * - Regression: Gaussian likelihood with the noise std of model.noise_std, or (0) the
 *   training RMSE of the shift (the point estimate) — the same noise enters the
 *   predictive std. Heteroscedastic models use their own variance output.
 * - Chains: chain c on group c mod ngroups; everything per chain and per sample is
 *   computed by exactly one group and combined with a sum over c->cross (x + 0 = x), then
 *   averaged in sample order: identical results on any number of groups. */
#include "valley/infer.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/curve.h"
#include "valley/error.h"
#include "valley/figure.h"
#include "valley/log.h"
#include "valley/loss.h"
#include "valley/metrics.h"
#include "valley/ncio.h"
#include "valley/rng.h"
#include "valley/subspace.h"
#include "valley/swag.h"
#include "valley/train.h"

#define INFER_TITLE "valley subspace inference"
#define VI_STREAM_BIT (1ull << 27) /* VI streams: RNG_CHAIN with a = 2^27 + chain (ESS uses a = chain) */
#define TWO_PI 6.283185307179586476925

/* ================================================================ ESS */

int infer_ess(const infer_ess_opts_t *o, const double *z0, infer_loglik_fn f, void *ctx, infer_ess_out_t *out)
{
    const int k = o->k, total = o->burnin + o->nsamples;
    const int max_shrink = o->max_shrink > 0 ? o->max_shrink : 200;
    if (k < 1 || k > 64 || o->nsamples < 0 || o->burnin < 0 || !(o->prior_std > 0))
        return VL_FAIL(VL_EINPUT, "ess: bad settings (k %d, burn-in %d, samples %d, prior std %g)", k, o->burnin,
                       o->nsamples, o->prior_std);
    double z[64], nu[64], prop[64], ll;
    memcpy(z, z0, (size_t)k * sizeof(double));
    out->nevals = 0;
    out->nshrink = 0;
    CHECK(f(z, &ll, ctx));
    out->nevals++;
    if (!isfinite(ll))
        return VL_FAIL(VL_ENUM, "ess chain %llu: the log-likelihood at the starting point is %g (not finite)",
                       (unsigned long long)o->chain, ll);
    for (int it = 0; it < total; it++) {
        vl_rng_t r;
        rng_init(&r, o->seed, rng_stream(RNG_CHAIN, o->chain, (uint64_t)it));
        for (int q = 0; q < k; q++) nu[q] = o->prior_std * rng_normal(&r);
        const double logy = ll + log(rng_uniform_open(&r));
        double theta = TWO_PI * rng_uniform(&r);
        double lo = theta - TWO_PI, hi = theta, llp;
        int shrink = 0;
        for (;;) {
            const double ct = cos(theta), stt = sin(theta);
            for (int q = 0; q < k; q++) prop[q] = z[q] * ct + nu[q] * stt;
            CHECK(f(prop, &llp, ctx));
            out->nevals++;
            if (isnan(llp) || llp == INFINITY)
                return VL_FAIL(VL_ENUM, "ess chain %llu, iteration %d: the log-likelihood of a proposal is %g",
                               (unsigned long long)o->chain, it + 1, llp);
            if (llp > logy) break;
            if (++shrink > max_shrink)
                return VL_FAIL(VL_ENUM, "ess chain %llu, iteration %d: no proposal accepted after %d shrinkage steps "
                               "(log-likelihood %g at the current point; is infer.temperature too small?)",
                               (unsigned long long)o->chain, it + 1, max_shrink, ll);
            if (theta < 0) lo = theta;
            else hi = theta;
            theta = lo + (hi - lo) * rng_uniform(&r);
        }
        memcpy(z, prop, (size_t)k * sizeof(double));
        ll = llp;
        out->nshrink += shrink;
        if (out->trace) out->trace[it] = ll;
        if (it >= o->burnin) {
            const int s = it - o->burnin;
            memcpy(out->z + (size_t)s * k, z, (size_t)k * sizeof(double));
            out->loglik[s] = ll;
            out->shrink[s] = shrink;
        }
        if (o->progress) o->progress(it, total, ll, out->nevals, o->progress_ctx);
    }
    return VL_OK;
}

/* ================================================================= VI */

static double softplus_d(double x) { return x > 30 ? x : log1p(exp(x)); }
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double inv_softplus(double y) { return y > 30 ? y : log(expm1(y)); }

int infer_vi(const infer_vi_opts_t *o, infer_grad_fn f, void *ctx, double *mu, double *sigma, double *trace)
{
    const int k = o->k;
    if (k < 1 || k > 64 || o->steps < 1 || !(o->prior_std > 0) || !(o->lr > 0) || o->kl_weight < 0)
        return VL_FAIL(VL_EINPUT, "vi: bad settings (k %d, steps %lld, prior std %g, lr %g)", k, o->steps, o->prior_std, o->lr);
    const double s0 = o->prior_std, s02 = s0 * s0, w = o->kl_weight;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double rho[64], m[128] = {0}, v[128] = {0}, z[64], e[64], g[64], grad[128];
    const double sig0 = o->sigma0 > 0 ? o->sigma0 : s0 / 10;
    for (int q = 0; q < k; q++) { mu[q] = 0; rho[q] = inv_softplus(sig0); }
    double p1 = 1, p2 = 1, avg[128] = {0};
    const long long avg_from = o->steps - (o->steps + 3) / 4; /* iterate average over the last quarter */
    for (long long t = 0; t < o->steps; t++) {
        vl_rng_t r;
        rng_init(&r, o->seed, rng_stream(RNG_CHAIN, VI_STREAM_BIT + o->chain, (uint64_t)t));
        for (int q = 0; q < k; q++) {
            e[q] = rng_normal(&r);
            sigma[q] = softplus_d(rho[q]);
            z[q] = mu[q] + sigma[q] * e[q];
        }
        double loss;
        CHECK(f(z, t, &loss, g, ctx));
        double kl = 0;
        for (int q = 0; q < k; q++) kl += log(s0 / sigma[q]) + (sigma[q] * sigma[q] + mu[q] * mu[q]) / (2 * s02) - 0.5;
        const double obj = loss + w * kl;
        int finite = isfinite(obj);
        for (int q = 0; q < k; q++) finite &= isfinite(g[q]);
        if (!finite)
            return VL_FAIL(VL_ENUM, "vi chain %llu, step %lld: the minibatch loss (%g) or its gradient is not finite",
                           (unsigned long long)o->chain, t + 1, loss);
        if (trace) trace[t] = obj;
        for (int q = 0; q < k; q++) {
            grad[q] = g[q] + w * mu[q] / s02;
            grad[k + q] = (g[q] * e[q] + w * (sigma[q] / s02 - 1.0 / sigma[q])) * sigmoid_d(rho[q]);
        }
        /* lr constant for the first half, then linear down to lr/100 at the end */
        const double frac = (double)(t + 1) / (double)o->steps;
        const double lr = frac <= 0.5 ? o->lr : o->lr * (1.0 - 0.99 * (frac - 0.5) / 0.5);
        p1 *= b1;
        p2 *= b2;
        for (int q = 0; q < 2 * k; q++) {
            m[q] = b1 * m[q] + (1 - b1) * grad[q];
            v[q] = b2 * v[q] + (1 - b2) * grad[q] * grad[q];
            const double step = lr * (m[q] / (1 - p1)) / (sqrt(v[q] / (1 - p2)) + eps);
            if (q < k) mu[q] -= step;
            else rho[q - k] -= step;
            if (t >= avg_from) avg[q] += q < k ? mu[q] : rho[q - k];
        }
        if (o->progress) o->progress((int)t, (int)o->steps, obj, t + 1, o->progress_ctx);
    }
    const double na = (double)(o->steps - avg_from);
    for (int q = 0; q < k; q++) {
        mu[q] = avg[q] / na;
        sigma[q] = softplus_d(avg[k + q] / na);
    }
    return VL_OK;
}

/* ============================================================ inputs */

enum { IN_SUBSPACE, IN_CURVE, IN_SWAG, IN_MODEL };
static const char *in_names[4] = {"subspace.nc", "curve.nc", "swag.nc", "model checkpoint"};

/* Kind of an input file from its title (and the model attributes for checkpoints). */
static int input_kind(const char *path, int *kind)
{
    int ncid;
    CHECK(ncio_open(path, &ncid));
    char *title = NULL;
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "title", &title)) title = NULL;
    vl_error_clear();
    size_t len;
    const int model = nc_inq_attlen(ncid, NC_GLOBAL, "valley.params", &len) == NC_NOERR;
    nc_close(ncid);
    int st = VL_OK;
    if (title && !strcmp(title, "valley subspace")) *kind = IN_SUBSPACE;
    else if (title && !strcmp(title, "valley mode-connecting curve")) *kind = IN_CURVE;
    else if (title && !strcmp(title, CKPT_TITLE_SWAG)) *kind = IN_SWAG;
    else if (model) *kind = IN_MODEL;
    else st = VL_FAIL(VL_EINPUT, "%s: '%s' is not an input of infer (give subspace.nc from `valley pca`, curve.nc or swag.nc)",
                      path, title ? title : "a file without a title");
    free(title);
    return st;
}

/* Row norms of the PCA directions of swag.nc's deviations and, when basis is non-NULL,
 * the directions themselves (k rows, scaled σ_i/√(K−1)), by the K×K Gram matrix. Also the
 * SWA mean into shift. Every rank computes the same (the inputs are small). */
static int swag_pca(const char *path, size_t np, int k, float *shift, float *basis, double *norms)
{
    int ncid, v, dimids[2];
    size_t K = 0;
    CHECK(ncio_open(path, &ncid));
    int st = ncio_check(nc_inq_varid(ncid, "deviations", &v), VL_EINPUT, path, "deviations (swag.nc of a run with train.swag = true)");
    if (!st) st = ncio_check(nc_inq_vardimid(ncid, v, dimids), VL_EINPUT, path, "deviations");
    if (!st) st = ncio_check(nc_inq_dimlen(ncid, dimids[0], &K), VL_EINPUT, path, "deviations");
    nc_close(ncid);
    CHECK(st);
    if ((int)K < 2 || (int)K <= k - 1 || (int)K < k)
        return VL_FAIL(VL_EINPUT, "%s: %zu SWAG deviations stored: infer.rank = %d needs at least %d", path, K, k, k < 2 ? 2 : k);
    vl_swag_t sw;
    CHECK(swag_init(&sw, np, (int)K));
    st = ckpt_read_swag(path, &sw);
    double *G = st ? NULL : vl_calloc(K * K, sizeof(double), "Gram matrix");
    double *ev = st ? NULL : vl_calloc(K, sizeof(double), "eigenvalues");
    if (!st && (!G || !ev)) st = vl_error_status();
    if (!st) {
        swag_mean(&sw, shift);
        for (size_t a = 0; a < K; a++)
            for (size_t b = 0; b <= a; b++) {
                const float *da = swag_deviation(&sw, (int)a), *db = swag_deviation(&sw, (int)b);
                double acc = 0;
                for (size_t i = 0; i < np; i++) acc += (double)da[i] * db[i];
                G[a * K + b] = G[b * K + a] = acc;
            }
        if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)K, G, (lapack_int)K, ev))
            st = VL_FAIL(VL_ENUM, "%s: eigen-decomposition of the deviations' Gram matrix failed", path);
    }
    /* ascending eigenvalues: direction q is column K-1-q */
    for (int q = 0; q < k && !st; q++) {
        const size_t c = K - 1 - (size_t)q;
        if (!(ev[c] > 1e-12 * ev[K - 1]))
            st = VL_FAIL(VL_EINPUT, "%s: the deviations have numerical rank %d < infer.rank = %d", path, q, k);
        if (!st) norms[q] = sqrt(ev[c] / ((double)K - 1));
        if (!st && basis) {
            float *row = basis + (size_t)q * np;
            for (size_t i = 0; i < np; i++) {
                double acc = 0;
                for (size_t a = 0; a < K; a++) acc += G[a * K + c] * swag_deviation(&sw, (int)a)[i];
                row[i] = (float)(acc / sqrt((double)K - 1));
            }
        }
    }
    free(G);
    free(ev);
    swag_free(&sw);
    CHECK(st);
    return VL_OK;
}

/* Gaussian directions (seed, RNG_DIRECTION, q, 1), orthonormalised (modified Gram–Schmidt
 * in double), row q scaled to norms[q]. */
static int random_directions(float *basis, size_t np, int k, const double *norms, uint64_t seed)
{
    double *row = vl_alloc(np * sizeof(double), "random direction");
    if (!row) return vl_error_status();
    for (int q = 0; q < k && q < SUBSPACE_MAX_K; q++) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_DIRECTION, (uint64_t)q, 1));
        for (size_t i = 0; i < np; i++) row[i] = rng_normal(&r);
        for (int p = 0; p < q; p++) {
            const float *bp = basis + (size_t)p * np;
            double dot = 0, nn = 0;
            for (size_t i = 0; i < np; i++) { dot += row[i] * bp[i]; nn += (double)bp[i] * bp[i]; }
            for (size_t i = 0; i < np; i++) row[i] -= dot / nn * bp[i];
        }
        double nn = 0;
        for (size_t i = 0; i < np; i++) nn += row[i] * row[i];
        const double sc = norms[q] / sqrt(nn);
        for (size_t i = 0; i < np; i++) basis[(size_t)q * np + i] = (float)(row[i] * sc);
    }
    free(row);
    return VL_OK;
}

/* The subspace of the first input (kind `ik`) and infer.subspace into s; z0 the chains'
 * start (0, or the curve midpoint); desc says what the shift is. Every rank reads whole. */
static int build_subspace(vl_job_t *j, const vl_deck_t *d, const char *path, int ik, vl_subspace_t *s, double *z0,
                          char *desc, size_t ndesc)
{
    const size_t np = j->np;
    const char *want = deck_str(d, "infer.subspace");
    int k = (int)deck_int(d, "infer.rank");
    char kind[16];
    if (!strcmp(want, "auto")) snprintf(kind, sizeof kind, "%s", ik == IN_CURVE ? "curve" : "pca");
    else snprintf(kind, sizeof kind, "%s", want);
    if ((ik == IN_CURVE) != !strcmp(kind, "curve"))
        return VL_FAIL(VL_EINPUT, "infer.subspace = %s does not go with %s (a %s): use auto, %s", want, path, in_names[ik],
                       ik == IN_CURVE ? "curve" : "pca or random");
    if (ik == IN_CURVE) {
        if (k != 0 && k != 2) return VL_FAIL(VL_EINPUT, "infer.rank = %d: a curve subspace has k = 2 directions", k);
        k = 2;
    } else if (k == 0 && ik == IN_SWAG) { /* the reference setting, within what the deviations hold */
        int K = 0;
        CHECK(ckpt_swag_rank(path, &K));
        k = K < 5 ? K : 5;
        if (k < 1) return VL_FAIL(VL_EINPUT, "%s: no SWAG deviations (a run with train.swag = true writes them)", path);
    } else if (k == 0) { /* every direction subspace.nc holds */
        int ncid, v, dims[2], nd = 0;
        size_t len = 0;
        CHECK(ncio_open(path, &ncid));
        if (nc_inq_varid(ncid, "basis", &v) == NC_NOERR && nc_inq_varndims(ncid, v, &nd) == NC_NOERR && nd == 2 &&
            nc_inq_vardimid(ncid, v, dims) == NC_NOERR)
            nc_inq_dimlen(ncid, dims[0], &len);
        nc_close(ncid);
        if (len < 1) return VL_FAIL(VL_EINPUT, "%s: no basis (a subspace.nc of valley pca has one)", path);
        if (len > SUBSPACE_MAX_K)
            return VL_FAIL(VL_EINPUT, "%s: %zu directions stored, at most %d can be used: set infer.rank", path, len,
                           SUBSPACE_MAX_K);
        k = (int)len;
    }
    for (int q = 0; q < SUBSPACE_MAX_K; q++) z0[q] = 0;
    CHECK(subspace_alloc(s, np, k, kind));
    int st = VL_OK;
    double norms[SUBSPACE_MAX_K];
    if (ik == IN_SUBSPACE) {
        int ncid, v;
        size_t len[2];
        long long wb[2] = {-1, (long long)np}, w1 = (long long)np;
        st = ncio_open(path, &ncid);
        if (st) { subspace_free(s); return st; }
        st = ncio_var(ncid, path, "basis", NC_FLOAT, 2, wb, &v, len);
        if (!st && (int)len[0] < k)
            st = VL_FAIL(VL_EINPUT, "%s: %zu directions stored, infer.rank asks for %d", path, len[0], k);
        size_t s2[2] = {0, 0}, c2[2] = {(size_t)k, np};
        if (!st) st = ncio_check(nc_get_vara_float(ncid, v, s2, c2, s->basis), VL_EINPUT, path, "basis");
        if (!st) st = ncio_var(ncid, path, "shift", NC_FLOAT, 1, &w1, &v, NULL);
        if (!st) st = ncio_check(nc_get_var_float(ncid, v, s->shift), VL_EINPUT, path, "shift");
        nc_close(ncid);
        for (int q = 0; q < k && !st; q++) {
            double nn = 0;
            for (size_t i = 0; i < np; i++) nn += (double)s->basis[(size_t)q * np + i] * s->basis[(size_t)q * np + i];
            norms[q] = sqrt(nn);
        }
        if (!st && !strcmp(kind, "random")) st = random_directions(s->basis, np, k, norms, (uint64_t)deck_int(d, "run.seed"));
        snprintf(desc, ndesc, "shift of %s (the SWA mean for a PCA of SWAG deviations)", path);
    } else if (ik == IN_SWAG) {
        const int pca = !strcmp(kind, "pca");
        st = swag_pca(path, np, k, s->shift, pca ? s->basis : NULL, norms);
        if (!st && !pca) st = random_directions(s->basis, np, k, norms, (uint64_t)deck_int(d, "run.seed"));
        snprintf(desc, ndesc, "SWA mean of %s", path);
    } else if (ik == IN_CURVE) {
        vl_curve_t cv;
        memset(&cv, 0, sizeof cv);
        st = curve_read(path, np, &cv, NULL);
        if (!st && cv.n < 3) st = VL_FAIL(VL_EINPUT, "%s: a curve subspace needs a curve with a trained middle point", path);
        float *mid = st ? NULL : vl_calloc(np + 1, sizeof(float), "curve midpoint");
        double cc[256];
        if (!st && !mid) st = vl_error_status();
        if (!st && cv.n > 256) st = VL_FAIL(VL_EINPUT, "%s: %d control points, at most 256", path, cv.n);
        if (!st) {
            /* w0, w(1/2), w2; shift = their mean; u = (w2 − w0)/√3, v = (wm − w0 ⊥ u)/1.5 */
            curve_coeffs(&cv, 0.5, cc);
            curve_point(&cv, cc, mid);
            const float *w0 = cv.theta, *w2 = cv.theta + (size_t)(cv.n - 1) * np;
            double uu = 0, uv = 0;
            for (size_t i = 0; i < np; i++) {
                const double u = (double)w2[i] - w0[i], m = (double)mid[i] - w0[i];
                uu += u * u;
                uv += u * m;
            }
            if (!(uu > 0)) st = VL_FAIL(VL_EINPUT, "%s: the curve's end points are equal", path);
            for (size_t i = 0; i < np && !st; i++) {
                const double u = (double)w2[i] - w0[i], m = (double)mid[i] - w0[i];
                s->shift[i] = (float)(((double)w0[i] + mid[i] + w2[i]) / 3.0);
                s->basis[i] = (float)(u / sqrt(3.0));
                s->basis[np + i] = (float)((m - uv / uu * u) / 1.5);
            }
            if (!st) subspace_project(s, mid, z0); /* chains start at the curve's midpoint */
        }
        free(mid);
        curve_free(&cv);
        snprintf(desc, ndesc, "mean of the end points and midpoint of %s", path);
    }
    if (st) { subspace_free(s); return st; }
    return VL_OK;
}

/* ================================================= the network as a target */

typedef struct {
    vl_job_t *j;
    const vl_subspace_t *s;
    float *w, *scratch;      /* weights at z; BN state written by train-mode passes (discarded) */
    double T, noise_var;     /* temperature; homoscedastic noise variance in standardised units */
    int het, bn;
    uint64_t seed, chain;
    int64_t perm_epoch;      /* VI: the epoch whose order is in j->perm (-1 none) */
    int64_t nb;              /* VI: batches per epoch */
    double t_start, t_eval;  /* progress: start of the group's sampling, seconds in likelihood passes */
    long long evals;
    int chains_done, chains_mine;
    double *step_trace;      /* VI: objective per step */
} net_t;

/* Sum over the nl local rows in the batch buffers of the per-example loss (dout as in
 * job_batch_loss when non-NULL, divided by total). */
static double net_loss(const net_t *n, const float *out, int nl, double total, float *dout)
{
    const vl_job_t *j = n->j;
    if (j->train.classification) return loss_softmax_ce(out, j->yb, nl, j->cfg.out_dim, total, dout, NULL);
    return loss_gaussian_nll(out, j->tb, nl, j->train.out_dim, n->het, n->noise_var, total, dout);
}

/* Sum of per-example training losses at weights w; models with BN in train mode over the
 * fixed order j->bn_perm (batch statistics), others in eval mode over the local shard.
 * Collective over the group. */
static double train_loss_sum(net_t *n, const float *w)
{
    vl_job_t *j = n->j;
    double sum = 0;
    if (n->bn) {
        for (int64_t b = 0; b < j->train.n; b += j->batch) {
            const int cnt = (int)(j->train.n - b < j->batch ? j->train.n - b : j->batch);
            const int nl = job_gather_batch(j, &j->train, j->bn_perm + b, cnt, 0, 0, 0);
            const float *o = model_forward(j->model, w, n->scratch, j->xb, nl, MODE_TRAIN);
            sum += net_loss(n, o, nl, 1.0, NULL);
        }
    } else {
        const vl_split_t *s = &j->train;
        const int64_t nloc = s->hi - s->lo;
        for (int64_t b = 0; b < nloc; b += j->batch) {
            const int nl = (int)(nloc - b < j->batch ? nloc - b : j->batch);
            memcpy(j->xb, s->x + (size_t)b * s->in_dim, (size_t)nl * s->in_dim * sizeof(float));
            if (s->y) memcpy(j->yb, s->y + b, (size_t)nl * sizeof(int32_t));
            if (s->t) memcpy(j->tb, s->t + (size_t)b * s->out_dim, (size_t)nl * s->out_dim * sizeof(float));
            const float *o = model_forward(j->model, w, n->scratch, j->xb, nl, MODE_EVAL);
            sum += net_loss(n, o, nl, 1.0, NULL);
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, j->gcomm);
    return sum;
}

static int net_loglik(const double *z, double *ll, void *ctx)
{
    net_t *n = ctx;
    const double t0 = vl_now();
    subspace_point(n->s, z, n->w);
    const double sum = train_loss_sum(n, n->w);
    *ll = -sum / n->T;
    n->evals++;
    n->t_eval += vl_now() - t0;
    if (isnan(*ll) || *ll == INFINITY)
        return VL_FAIL(VL_ENUM, "infer chain %llu, likelihood evaluation %lld: the training loss is %g (not finite)",
                       (unsigned long long)n->chain, n->evals, sum);
    return VL_OK;
}

static void ess_progress(int it, int total, double ll, long long nevals, void *ctx)
{
    net_t *n = ctx;
    const int every = total >= 10 ? total / 10 : 1;
    if ((it + 1) % every && it + 1 != total) return;
    const double el = vl_now() - n->t_start;
    const double per_it = el / ((double)n->chains_done * total + it + 1);
    char eta[32];
    vl_fmt_duration(per_it * ((double)(n->chains_mine - n->chains_done) * total - it - 1), eta, sizeof eta);
    vl_log(n->j->gcomm, "ess chain %llu: iteration %d/%d  loglik %.4f  %lld evaluations (%.2f per iteration) | "
           "%.2f s/evaluation, %.1f s/iteration | ETA %s", (unsigned long long)n->chain, it + 1, total, ll, nevals,
           (double)nevals / (it + 1), n->t_eval / (n->evals ? n->evals : 1), per_it, eta);
}

/* VI: mean loss of minibatch `step` at z and its gradient Pᵀ∇w. Collective over the group. */
static int net_grad(const double *z, long long step, double *loss, double *gz, void *ctx)
{
    net_t *n = ctx;
    vl_job_t *j = n->j;
    const int64_t ep = step / n->nb, b = step % n->nb;
    if (ep != n->perm_epoch) {
        vl_rng_t r;
        rng_init(&r, n->seed, rng_stream(RNG_ORDER, (uint64_t)ep, 2 + n->chain));
        rng_permutation(&r, j->train.n, j->perm);
        n->perm_epoch = ep;
    }
    const int B = j->batch, cnt = (int)(j->train.n - b * B < B ? j->train.n - b * B : B);
    const int nl = job_gather_batch(j, &j->train, j->perm + b * B, cnt, 0, 0, 0);
    subspace_point(n->s, z, n->w);
    const float *o = model_forward(j->model, n->w, n->scratch, j->xb, nl, MODE_TRAIN);
    double l = net_loss(n, o, nl, cnt, j->dout);
    model_backward(j->model, n->w, j->dout, j->g);
    MPI_Allreduce(MPI_IN_PLACE, j->g, (int)j->np, MPI_FLOAT, MPI_SUM, j->gcomm);
    MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, j->gcomm);
    *loss = l / cnt; /* net_loss returns the sum over the rows (dout is already divided by cnt) */
    const size_t np = j->np;
    for (int q = 0; q < n->s->k; q++) {
        const float *bq = n->s->basis + (size_t)q * np;
        double acc = 0;
        for (size_t i = 0; i < np; i++) acc += (double)bq[i] * j->g[i];
        gz[q] = acc;
    }
    return VL_OK;
}

static void vi_progress(int t, int total, double obj, long long steps, void *ctx)
{
    net_t *n = ctx;
    (void)steps;
    n->step_trace[t] = obj;
    if ((t + 1) % n->nb && t + 1 != total) return;
    const int64_t ep = t / n->nb, e0 = ep * n->nb;
    double m = 0;
    for (int64_t s = e0; s <= t; s++) m += n->step_trace[s];
    m /= (double)(t + 1 - e0);
    const double el = vl_now() - n->t_start;
    const double per = el / ((double)n->chains_done * total + t + 1);
    char eta[32];
    vl_fmt_duration(per * ((double)(n->chains_mine - n->chains_done) * total - t - 1), eta, sizeof eta);
    vl_log(n->j->gcomm, "vi chain %llu: epoch %lld/%lld  objective %.5f | %.0f steps/s | ETA %s", (unsigned long long)n->chain,
           (long long)ep + 1, (long long)(total / n->nb), m, 1.0 / per, eta);
}

/* ================================================== predictions */

/* Regression outputs (eval mode) for n rows of x: mean and variance in standardised units
 * (variance = noise_var, or the model's own for heteroscedastic models). Local. */
static void reg_outputs(net_t *n, const float *w, const float *state, const float *x, int64_t nrows, float *mu, float *var)
{
    vl_job_t *j = n->j;
    const int D = j->cfg.out_dim, in = j->train.in_dim;
    for (int64_t b = 0; b < nrows; b += j->batch) {
        const int nl = (int)(nrows - b < j->batch ? nrows - b : j->batch);
        memcpy(j->xb, x + (size_t)b * in, (size_t)nl * in * sizeof(float));
        const float *o = model_forward(j->model, w, (float *)state, j->xb, nl, MODE_EVAL);
        for (int i = 0; i < nl; i++) {
            mu[b + i] = o[(size_t)i * D];
            var[b + i] = n->het ? (float)(softplus_d(o[(size_t)i * D + 1]) + 1e-6) : (float)n->noise_var;
        }
    }
}

/* Mean squared training residual (standardised units) at w, state. Collective over the group. */
static double train_mse(net_t *n, const float *w, const float *state)
{
    vl_job_t *j = n->j;
    const vl_split_t *s = &j->train;
    const int64_t nloc = s->hi - s->lo;
    const int D = j->cfg.out_dim;
    double sums[2] = {0, (double)nloc};
    for (int64_t b = 0; b < nloc; b += j->batch) {
        const int nl = (int)(nloc - b < j->batch ? nloc - b : j->batch);
        memcpy(j->xb, s->x + (size_t)b * s->in_dim, (size_t)nl * s->in_dim * sizeof(float));
        const float *o = model_forward(j->model, w, (float *)state, j->xb, nl, MODE_EVAL);
        for (int i = 0; i < nl; i++) {
            const double r = (double)o[(size_t)i * D] - s->t[b + i];
            sums[0] += r * r;
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, j->gcomm);
    return sums[0] / sums[1];
}

/* Per-example predictions of one model into out: classification (nloc, C) probabilities;
 * regression (2, nloc) means then variances on the test shard, followed by (2, G) on the
 * grid when G > 0. BN refreshed first when refresh is set. Collective over the group. */
static int predict(net_t *n, const float *w, float *state, int refresh, const float *grid, int G, float *out)
{
    vl_job_t *j = n->j;
    if (refresh && n->bn) CHECK(job_bn_update(j, w, state, deck_double(j->deck, "eval.bn_subset")));
    const int64_t nloc = j->test.hi - j->test.lo;
    if (j->test.classification) {
        vl_pass_t p;
        CHECK(job_eval(j, w, state, &j->test, out, &p));
        return VL_OK;
    }
    reg_outputs(n, w, state, j->test.x, nloc, out, out + nloc);
    if (G > 0) reg_outputs(n, w, state, grid, G, out + 2 * nloc, out + 2 * nloc + G);
    return VL_OK;
}

typedef struct {
    char name[32];
    int nsamples;
    vl_class_metrics_t cm;
    vl_reg_metrics_t rm;
    double *gmean, *gstd, *gstd_model; /* 1-D regression: over the grid (original units), owned */
} row_t;

/* BMA of S per-sample predictions (each `stride` floats, layout of predict) and metrics:
 * classification mean of probabilities; regression moment-matched Gaussian mixture in
 * original units. Sums in sample order. Collective over the group. */
static int combine(net_t *n, const float *all, int S, size_t stride, int G, row_t *row)
{
    vl_job_t *j = n->j;
    const int64_t nloc = j->test.hi - j->test.lo;
    row->nsamples = S;
    if (j->test.classification) {
        const size_t P = (size_t)nloc * j->cfg.out_dim;
        float *p = vl_calloc(P + 1, sizeof(float), "model average");
        if (!p) return vl_error_status();
        for (size_t i = 0; i < P; i++) {
            double acc = 0;
            for (int s = 0; s < S; s++) acc += all[(size_t)s * stride + i];
            p[i] = (float)(acc / S);
        }
        int st = metrics_classification(p, j->test.y, nloc, j->cfg.out_dim, j->test.lo, j->gcomm, &row->cm);
        free(p);
        return st;
    }
    const double tm = j->train.t_mean, ts = j->train.t_std;
    const int64_t M = nloc + G;
    float *mu = vl_calloc((size_t)M + 1, sizeof(float), "predictive mean");
    float *sd = vl_calloc((size_t)M + 1, sizeof(float), "predictive std");
    float *y = vl_calloc((size_t)nloc + 1, sizeof(float), "targets");
    if (G > 0) {
        row->gmean = calloc((size_t)G, sizeof(double));
        row->gstd = calloc((size_t)G, sizeof(double));
        row->gstd_model = calloc((size_t)G, sizeof(double));
    }
    if (!mu || !sd || !y || (G > 0 && (!row->gmean || !row->gstd || !row->gstd_model))) {
        free(mu); free(sd); free(y);
        return VL_FAIL(VL_EIO, "out of memory");
    }
    for (int64_t i = 0; i < M; i++) {
        /* test row i: mean at [i], variance at [nloc + i]; grid point g: [2 nloc + g], [2 nloc + G + g] */
        const size_t im = i < nloc ? (size_t)i : (size_t)(2 * nloc + (i - nloc));
        const size_t iv = i < nloc ? (size_t)(nloc + i) : (size_t)(2 * nloc + G + (i - nloc));
        double m1 = 0, m2 = 0, nv = 0;
        for (int s = 0; s < S; s++) {
            const double a = all[(size_t)s * stride + im], v = all[(size_t)s * stride + iv];
            m1 += a;
            m2 += a * a;
            nv += v;
        }
        m1 /= S;
        double model_var = m2 / S - m1 * m1;
        if (model_var < 0) model_var = 0;
        const double var = nv / S + model_var;
        mu[i] = (float)(m1 * ts + tm);
        sd[i] = (float)(sqrt(var) * ts);
        if (i >= nloc) {
            row->gmean[i - nloc] = m1 * ts + tm;
            row->gstd[i - nloc] = sqrt(var) * ts;
            row->gstd_model[i - nloc] = sqrt(model_var) * ts;
        }
    }
    for (int64_t i = 0; i < nloc; i++) y[i] = (float)(j->test.t[i] * ts + tm);
    int st = metrics_regression(mu, sd, y, nloc, j->test.lo, j->gcomm, &row->rm);
    free(mu); free(sd); free(y);
    return st;
}

static void log_row(const vl_comm_t *c, const row_t *r, int classification)
{
    if (classification)
        vl_log(c->world, "%-13s (%3d model(s)): accuracy %.4f  nll %.4f  ece %.4f  brier %.4f", r->name, r->nsamples,
               r->cm.accuracy, r->cm.nll, r->cm.ece, r->cm.brier);
    else
        vl_log(c->world, "%-13s (%3d model(s)): rmse %.4f  test loglik %.4f  coverage95 %.3f  mean std %.4f", r->name,
               r->nsamples, r->rm.rmse, r->rm.loglik, r->rm.coverage95, r->rm.mean_std);
}

/* ================================================== infer.nc */

typedef struct {
    const vl_deck_t *d;
    int classification, k, nch, ns, niter, ess, nrows, G, ntrain;
    const double *z, *sll, *shr, *trace, *evals, *nshrink, *vimu, *visig, *tchain;
    const row_t *rows;
    const double *xg, *trx, *try_;
    const char *kind, *method, *inputs, *point_desc, *bn_mode;
    double T, prior_std, noise_std, sec_per_eval;
} out_t;

static int def(ncio_file_t *f, const char *name, nc_type t, int nd, const int *dims, const char *lng, const char *units, int *v)
{
    return ncio_def_var(f, name, t, nd, dims, lng, units, v);
}

static int put_d(ncio_file_t *f, int v, const double *x, const char *name)
{
    return ncio_check(nc_put_var_double(f->ncid, v, x), VL_EIO, f->path, name);
}

static int write_infer(const char *path, const out_t *o)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, INFER_TITLE, deck_text(o->d)));
    const int S = o->nch * o->ns, R = o->nrows;
    int ds, dk, dc, di, dm, db = -1, dx = -1, dt = -1, st = VL_OK;
    int vz, vch, vll = -1, vsh = -1, vtr = -1, vev, vns, vmu = -1, vsg = -1, vtc, vname, vn, vm[6], vb[5];
    int vxg = -1, vpm = -1, vps = -1, vpsm = -1, vpt = -1, vtx = -1, vty = -1;
    st = ncio_def_dim(&f, "sample", (size_t)S, &ds);
    if (!st) st = ncio_def_dim(&f, "k", (size_t)o->k, &dk);
    if (!st) st = ncio_def_dim(&f, "chain", (size_t)o->nch, &dc);
    if (!st) st = ncio_def_dim(&f, o->ess ? "iteration" : "epoch", (size_t)o->niter, &di);
    if (!st) st = ncio_def_dim(&f, "method", (size_t)R, &dm);
    int d2[2] = {ds, dk}, dck[2] = {dc, dk}, dci[2] = {dc, di};
    if (!st) st = def(&f, "z", NC_DOUBLE, 2, d2, "subspace coordinates of the samples: w = shift + basis^T z", "1", &vz);
    if (!st) st = def(&f, "sample_chain", NC_INT, 1, &ds, "chain of each sample", "1", &vch);
    if (!st && o->ess) st = def(&f, "sample_loglik", NC_DOUBLE, 1, &ds, "tempered training log-likelihood of each sample", "nats", &vll);
    if (!st && o->ess) st = def(&f, "sample_shrinkage", NC_INT, 1, &ds, "ESS shrinkage steps (rejected proposals) before each sample", "1", &vsh);
    if (!st && o->ess) st = def(&f, "loglik_trace", NC_DOUBLE, 2, dci, "tempered training log-likelihood after each ESS iteration (burn-in included)", "nats", &vtr);
    if (!st && !o->ess) st = def(&f, "vi_objective", NC_DOUBLE, 2, dci, "mean minibatch objective (mean loss + T KL / N) per epoch", "nats", &vtr);
    if (!st && !o->ess) st = def(&f, "vi_mu", NC_DOUBLE, 2, dck, "mean of the variational posterior q(z)", "1", &vmu);
    if (!st && !o->ess) st = def(&f, "vi_sigma", NC_DOUBLE, 2, dck, "standard deviation of q(z)", "1", &vsg);
    if (!st) st = def(&f, "chain_evaluations", NC_DOUBLE, 1, &dc, o->ess ? "likelihood evaluations (full training passes) of the chain" : "gradient steps of the chain", "1", &vev);
    if (!st) st = def(&f, "chain_shrinkage", NC_DOUBLE, 1, &dc, "ESS shrinkage steps over the whole chain (0 for VI)", "1", &vns);
    if (!st) st = def(&f, "chain_seconds", NC_DOUBLE, 1, &dc, "wall time of the chain", "s", &vtc);
    if (!st) st = def(&f, "method_name", NC_STRING, 1, &dm, "model average: subspace posterior, its point estimate, comparisons", NULL, &vname);
    if (!st) st = def(&f, "n_samples", NC_INT, 1, &dm, "models averaged", "1", &vn);
    const char *cn[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *cl[6] = {"test accuracy", "mean test negative log-likelihood", "ECE, 15 equal-width bins", "ECE, 20 equal-count bins",
                         "Brier score", "mean predictive entropy"};
    const char *cu[6] = {"1", "nats", "1", "1", "1", "nats"};
    const char *rn[5] = {"rmse", "loglik", "nll", "coverage95", "mean_std"};
    const char *rl[5] = {"test RMSE (original target units)", "mean test log-likelihood", "mean test negative log-likelihood",
                         "fraction of test targets within 1.96 predictive std", "mean predictive std"};
    const char *ru[5] = {"target units", "nats", "nats", "1", "target units"};
    const int nmet = o->classification ? 6 : 5;
    for (int q = 0; q < nmet && !st; q++)
        st = o->classification ? def(&f, cn[q], NC_DOUBLE, 1, &dm, cl[q], cu[q], &vm[q]) : def(&f, rn[q], NC_DOUBLE, 1, &dm, rl[q], ru[q], &vm[q]);
    if (!st && o->classification) { /* reliability bins, as in bma.nc (valley plot draws them) */
        st = ncio_def_dim(&f, "bin", METRICS_BINS_WIDTH, &db);
        int dmb[2] = {dm, db};
        if (!st) st = def(&f, "bin_lower", NC_DOUBLE, 1, &db, "lower confidence edge", "1", &vb[0]);
        if (!st) st = def(&f, "bin_upper", NC_DOUBLE, 1, &db, "upper confidence edge", "1", &vb[1]);
        if (!st) st = def(&f, "bin_accuracy", NC_DOUBLE, 2, dmb, "accuracy in the bin (NaN if empty)", "1", &vb[2]);
        if (!st) st = def(&f, "bin_confidence", NC_DOUBLE, 2, dmb, "mean confidence in the bin", "1", &vb[3]);
        if (!st) st = def(&f, "bin_count", NC_INT64, 2, dmb, "examples in the bin", "1", &vb[4]);
    }
    if (!st && o->G > 0) {
        int dmx[2];
        st = ncio_def_dim(&f, "x", (size_t)o->G, &dx);
        if (!st) st = ncio_def_dim(&f, "train", (size_t)o->ntrain, &dt);
        dmx[0] = dm;
        dmx[1] = dx;
        if (!st) st = def(&f, "x_grid", NC_DOUBLE, 1, &dx, "input x of the grid (original units)", "input units", &vxg);
        if (!st) st = def(&f, "pred_mean", NC_DOUBLE, 1, &dx, "predictive mean of the subspace posterior", "target units", &vpm);
        if (!st) st = def(&f, "pred_std", NC_DOUBLE, 1, &dx, "predictive std of the subspace posterior (noise included)", "target units", &vps);
        if (!st) st = def(&f, "pred_std_model", NC_DOUBLE, 1, &dx, "predictive std without the noise (spread of the sampled models)", "target units", &vpsm);
        if (!st) st = def(&f, "method_pred", NC_DOUBLE, 2, dmx, "predictive mean over the grid of every method", "target units", &vpt);
        if (!st) st = def(&f, "train_x", NC_DOUBLE, 1, &dt, "training inputs", "input units", &vtx);
        if (!st) st = def(&f, "train_y", NC_DOUBLE, 1, &dt, "training targets", "target units", &vty);
    }
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "subspace_kind", o->kind);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "infer_method", o->method);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "inputs", o->inputs);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "point_estimate", o->point_desc);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "likelihood_bn_mode", o->bn_mode);
    if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "temperature", 1, &o->T);
    if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "prior_std", 1, &o->prior_std);
    if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "seconds_per_evaluation", 1, &o->sec_per_eval);
    if (!st && !o->classification) st = ncio_put_att_double(&f, NC_GLOBAL, "noise_std", 1, &o->noise_std);
    if (!st) st = ncio_enddef(&f);
    int *ich = calloc((size_t)S + 1, sizeof(int)), *ish = calloc((size_t)S + 1, sizeof(int));
    if (!st && (!ich || !ish)) st = VL_FAIL(VL_EIO, "out of memory");
    for (int s = 0; s < S && !st; s++) { ich[s] = s / o->ns; ish[s] = (int)o->shr[s]; }
    if (!st) st = put_d(&f, vz, o->z, "z");
    if (!st) st = ncio_check(nc_put_var_int(f.ncid, vch, ich), VL_EIO, path, "sample_chain");
    if (!st && o->ess) st = put_d(&f, vll, o->sll, "sample_loglik");
    if (!st && o->ess) st = ncio_check(nc_put_var_int(f.ncid, vsh, ish), VL_EIO, path, "sample_shrinkage");
    if (!st) st = put_d(&f, vtr, o->trace, "trace");
    if (!st && !o->ess) st = put_d(&f, vmu, o->vimu, "vi_mu");
    if (!st && !o->ess) st = put_d(&f, vsg, o->visig, "vi_sigma");
    if (!st) st = put_d(&f, vev, o->evals, "chain_evaluations");
    if (!st) st = put_d(&f, vns, o->nshrink, "chain_shrinkage");
    if (!st) st = put_d(&f, vtc, o->tchain, "chain_seconds");
    free(ich);
    free(ish);
    for (int r = 0; r < R && !st; r++) {
        size_t idx = (size_t)r, one = 1;
        const char *nm = o->rows[r].name;
        const vl_class_metrics_t *m = &o->rows[r].cm;
        const vl_reg_metrics_t *g = &o->rows[r].rm;
        double cv[6] = {m->accuracy, m->nll, m->ece, m->ece_count, m->brier, m->entropy};
        double rv[5] = {g->rmse, g->loglik, g->nll, g->coverage95, g->mean_std};
        st = ncio_check(nc_put_vara_string(f.ncid, vname, &idx, &one, &nm), VL_EIO, path, "method_name");
        if (!st) st = ncio_check(nc_put_vara_int(f.ncid, vn, &idx, &one, &o->rows[r].nsamples), VL_EIO, path, "n_samples");
        for (int q = 0; q < nmet && !st; q++)
            st = ncio_check(nc_put_vara_double(f.ncid, vm[q], &idx, &one, o->classification ? &cv[q] : &rv[q]), VL_EIO, path, "metrics");
        if (!st && o->classification) {
            size_t s2[2] = {idx, 0}, c2[2] = {1, METRICS_BINS_WIDTH};
            long long cnt[METRICS_BINS_WIDTH];
            for (int b = 0; b < METRICS_BINS_WIDTH; b++) cnt[b] = m->bin_count[b];
            st = ncio_check(nc_put_vara_double(f.ncid, vb[2], s2, c2, m->bin_acc), VL_EIO, path, "bin_accuracy");
            if (!st) st = ncio_check(nc_put_vara_double(f.ncid, vb[3], s2, c2, m->bin_conf), VL_EIO, path, "bin_confidence");
            if (!st) st = ncio_check(nc_put_vara_longlong(f.ncid, vb[4], s2, c2, cnt), VL_EIO, path, "bin_count");
            if (!st && r == 0) st = put_d(&f, vb[0], m->bin_lo, "bin_lower");
            if (!st && r == 0) st = put_d(&f, vb[1], m->bin_hi, "bin_upper");
        }
        if (!st && o->G > 0) {
            size_t s2[2] = {idx, 0}, c2[2] = {1, (size_t)o->G};
            st = ncio_check(nc_put_vara_double(f.ncid, vpt, s2, c2, o->rows[r].gmean), VL_EIO, path, "method_pred");
        }
    }
    if (!st && o->G > 0) {
        st = put_d(&f, vxg, o->xg, "x_grid");
        if (!st) st = put_d(&f, vpm, o->rows[0].gmean, "pred_mean");
        if (!st) st = put_d(&f, vps, o->rows[0].gstd, "pred_std");
        if (!st) st = put_d(&f, vpsm, o->rows[0].gstd_model, "pred_std_model");
        if (!st) st = put_d(&f, vtx, o->trx, "train_x");
        if (!st) st = put_d(&f, vty, o->try_, "train_y");
    }
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* ================================================== the command */

/* Raw 1-D inputs and targets of a split, gathered on every rank of the group (small). */
static int gather_1d(vl_job_t *j, const vl_split_t *s, double xm, double xs, double *x, double *y)
{
    const int gs = j->comm->gsize;
    int *cnt = calloc((size_t)gs, sizeof(int)), *off = calloc((size_t)gs, sizeof(int));
    float *xl = calloc((size_t)s->n + 1, sizeof(float)), *yl = calloc((size_t)s->n + 1, sizeof(float));
    if (!cnt || !off || !xl || !yl) { free(cnt); free(off); free(xl); free(yl); return VL_FAIL(VL_EIO, "out of memory"); }
    for (int r = 0; r < gs; r++) {
        int64_t lo, hi;
        data_shard(s->n, r, gs, &lo, &hi);
        cnt[r] = (int)(hi - lo);
        off[r] = (int)lo;
    }
    const int nl = (int)(s->hi - s->lo);
    MPI_Allgatherv(s->x, nl, MPI_FLOAT, xl, cnt, off, MPI_FLOAT, j->gcomm);
    MPI_Allgatherv(s->t, nl, MPI_FLOAT, yl, cnt, off, MPI_FLOAT, j->gcomm);
    for (int64_t i = 0; i < s->n; i++) {
        x[i] = xl[i] * xs + xm;
        y[i] = yl[i] * s->t_std + s->t_mean;
    }
    free(cnt); free(off); free(xl); free(yl);
    return VL_OK;
}

/* Sums v over the groups (each entry was computed by exactly one group: exact). */
static void sum_cross_d(const vl_comm_t *c, double *v, size_t n)
{
    if (c->ngroups > 1 && n > 0) MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, c->cross);
}

int infer_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1)
        return VL_FAIL_ALL(VL_EINPUT, "infer: give subspace.nc (from `valley pca`), curve.nc or swag.nc, then optionally "
                                      "swag.nc and MODEL.nc for comparison");
    int kinds[8];
    if (ninputs > 3) return VL_FAIL_ALL(VL_EINPUT, "infer: at most 3 inputs (subspace, swag.nc, MODEL.nc)");
    for (int i = 0; i < ninputs; i++) CHECK(comm_agree_failure(c->world, input_kind(inputs[i], &kinds[i])));
    if (kinds[0] == IN_MODEL)
        return VL_FAIL_ALL(VL_EINPUT, "%s: a model checkpoint, not a subspace: give subspace.nc (`valley pca swag.nc`), "
                                      "curve.nc or swag.nc", inputs[0]);
    const char *cmp_swag = NULL, *cmp_model = NULL;
    for (int i = 1; i < ninputs; i++) {
        if (kinds[i] == IN_SWAG && !cmp_swag) cmp_swag = inputs[i];
        else if (kinds[i] == IN_MODEL && !cmp_model) cmp_model = inputs[i];
        else return VL_FAIL_ALL(VL_EINPUT, "%s: a %s; after the subspace, infer takes one swag.nc and one MODEL.nc (for comparison)",
                                inputs[i], in_names[kinds[i]]);
    }
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(ckpt_read_configs(c->world, ninputs, inputs, &cfg, dataset));
    const int ess = !strcmp(deck_str(d, "infer.method"), "ess");
    vl_job_t j;
    vl_subspace_t sub;
    memset(&sub, 0, sizeof sub);
    double z0[SUBSPACE_MAX_K];
    char desc[4400] = "";
    int st = job_open(&j, c, d, &cfg, dataset, inputs[0]);
    if (!st) st = comm_agree_failure(c->world, build_subspace(&j, d, inputs[0], kinds[0], &sub, z0, desc, sizeof desc));
    if (st) { subspace_free(&sub); job_close(&j); return st; }
    const int k = sub.k, classification = j.train.classification;
    const size_t np = j.np;
    const int64_t N = j.train.n, nloc = j.test.hi - j.test.lo;
    double T = deck_double(d, "infer.temperature");
    if (T == 0) T = classification ? (double)N / 10.0 : 1.0;
    const double prior_std = deck_double(d, "infer.prior_std");
    const int nch = deck_int(d, "infer.chains") > 0 ? (int)deck_int(d, "infer.chains") : c->ngroups;
    const int ns = (int)deck_int(d, "infer.samples"), burnin = ess ? (int)deck_int(d, "infer.burnin") : 0;
    const int epochs = (int)deck_int(d, "infer.vi_epochs");
    const int64_t nb = (N + j.batch - 1) / j.batch;
    const int niter = ess ? burnin + ns : epochs, S = nch * ns;
    const uint64_t seed = (uint64_t)deck_int(d, "run.seed");
    net_t n;
    memset(&n, 0, sizeof n);
    n.j = &j;
    n.s = &sub;
    n.T = T;
    n.bn = model_has_bn(j.model);
    n.het = !classification && cfg.out_dim == 2 * j.train.out_dim;
    n.seed = seed;
    n.nb = nb;
    n.perm_epoch = -1;
    n.w = vl_calloc(np + 1, sizeof(float), "weights");
    n.scratch = vl_calloc(j.ns + 1, sizeof(float), "BN scratch state");
    float *state = vl_calloc(j.ns + 1, sizeof(float), "BN state");
    if (!n.w || !n.scratch || !state) st = vl_error_status();
    const char *bn_mode = n.bn ? "train mode: batch statistics over the fixed batch order of the BN refresh (one pass per evaluation)"
                               : "no batch norm: eval mode";
    /* 1-D regression: the x-grid (original units), standardised for the model */
    const int oned = !classification && j.train.in_dim == 1;
    const int G = oned ? (int)deck_int(d, "infer.grid_points") : 0;
    double *xg = NULL, *trx = NULL, *try_ = NULL;
    float *grid = NULL;
    if (!st && oned) {
        char path[4096];
        const char *p = deck_str(d, "data.path");
        if (*p) snprintf(path, sizeof path, "%s", p);
        else snprintf(path, sizeof path, "input/data/%s.nc", dataset);
        double xm = 0, xs = 1;
        int ncid;
        st = ncio_open(path, &ncid);
        if (!st) {
            st = ncio_get_att_double(ncid, NC_GLOBAL, path, "x_mean", 1, &xm);
            if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "x_std", 1, &xs);
            nc_close(ncid);
        }
        xg = calloc((size_t)G, sizeof(double));
        grid = vl_calloc((size_t)G, sizeof(float), "grid");
        trx = calloc((size_t)N + 1, sizeof(double));
        try_ = calloc((size_t)N + 1, sizeof(double));
        if (!st && (!xg || !grid || !trx || !try_)) st = VL_FAIL(VL_EIO, "out of memory");
        if (!st) st = gather_1d(&j, &j.train, xm, xs, trx, try_);
        double lh[2] = {-INFINITY, -INFINITY}; /* max of -x and of x over the standardised inputs */
        for (int64_t i = 0; i < j.train.hi - j.train.lo && !st; i++) {
            lh[0] = fmax(lh[0], -j.train.x[i]);
            lh[1] = fmax(lh[1], j.train.x[i]);
        }
        for (int64_t i = 0; i < nloc && !st; i++) {
            lh[0] = fmax(lh[0], -j.test.x[i]);
            lh[1] = fmax(lh[1], j.test.x[i]);
        }
        MPI_Allreduce(MPI_IN_PLACE, lh, 2, MPI_DOUBLE, MPI_MAX, j.gcomm);
        const double lo = -lh[0] * xs + xm, hi = lh[1] * xs + xm, pad = 0.1 * (hi - lo);
        for (int g = 0; g < G && !st; g++) {
            xg[g] = (lo - pad) + (hi - lo + 2 * pad) * g / (G - 1);
            grid[g] = (float)((xg[g] - xm) / xs);
        }
    }
    st = comm_agree_failure(c->world, st);
    /* the point estimate (z = 0): BN refresh, and the noise of the regression likelihood */
    const size_t stride = classification ? (size_t)nloc * cfg.out_dim : (size_t)(2 * nloc + 2 * G);
    float *one = st ? NULL : vl_calloc(stride + 1, sizeof(float), "predictions");
    if (!st && !one) st = vl_error_status();
    row_t rows[4];
    memset(rows, 0, sizeof rows);
    int nrows = 1; /* row 0: the subspace posterior, filled last */
    double noise_std = 0;
    if (!st) {
        memcpy(n.w, sub.shift, np * sizeof(float));
        if (n.bn) st = job_bn_update(&j, n.w, state, deck_double(d, "eval.bn_subset"));
        if (!st && !classification && !n.het) {
            const double fixed = deck_double(d, "model.noise_std");
            n.noise_var = fixed > 0 ? fixed * fixed / (j.train.t_std * j.train.t_std) : train_mse(&n, n.w, state);
            noise_std = sqrt(n.noise_var) * j.train.t_std;
            vl_log(c->world, "regression noise std %.4g (%s)", noise_std,
                   fixed > 0 ? "model.noise_std" : "training RMSE of the point estimate");
        }
        if (!st) st = predict(&n, n.w, state, 0, grid, G, one);
        snprintf(rows[1].name, sizeof rows[1].name, "%s", kinds[0] == IN_CURVE ? "curve-centre" : "swa");
        if (!st) st = combine(&n, one, 1, stride, G, &rows[1]);
        nrows = 2;
    }
    st = comm_agree_failure(c->world, st);
    if (!st) {
        vl_log(c->world, "infer: %s on %s (%s), %s subspace k = %d from %s; %s, %d chain(s) over %d group(s) of %d rank(s); "
               "T = %g, prior std %g", model_describe(j.model), dataset, classification ? "classification" : "regression",
               sub.kind, k, inputs[0], ess ? "ESS" : "VI", nch, c->ngroups, c->gsize, T, prior_std);
        log_row(c, &rows[1], classification);
    }
    /* ---- chains */
    double *Z = calloc((size_t)S * k + 1, sizeof(double)), *sll = calloc((size_t)S + 1, sizeof(double));
    double *shr = calloc((size_t)S + 1, sizeof(double)), *trace = calloc((size_t)nch * niter + 1, sizeof(double));
    double *evals = calloc((size_t)nch + 1, sizeof(double)), *nshr = calloc((size_t)nch + 1, sizeof(double));
    double *vimu = calloc((size_t)nch * k + 1, sizeof(double)), *visig = calloc((size_t)nch * k + 1, sizeof(double));
    double *tch = calloc((size_t)nch + 1, sizeof(double));
    double *sec = calloc(2, sizeof(double));
    int *ishr = calloc((size_t)ns + 1, sizeof(int));
    double *strace = (!ess && !st) ? vl_calloc((size_t)(epochs * nb) + 1, sizeof(double), "VI trace") : NULL;
    if (!st && (!Z || !sll || !shr || !trace || !evals || !nshr || !vimu || !visig || !tch || !sec || !ishr || (!ess && !strace)))
        st = VL_FAIL(VL_EIO, "out of memory");
    n.t_start = vl_now();
    n.step_trace = strace;
    for (int ch = 0; ch < nch; ch++) n.chains_mine += ch % c->ngroups == c->group_id;
    for (int ch = 0; ch < nch && !st; ch++) {
        if (ch % c->ngroups != c->group_id) continue;
        const double t0 = vl_now();
        n.chain = (uint64_t)ch;
        if (ess) {
            infer_ess_opts_t o = {.k = k, .prior_std = prior_std, .burnin = burnin, .nsamples = ns, .seed = seed,
                                  .chain = (uint64_t)ch, .progress = ess_progress, .progress_ctx = &n};
            infer_ess_out_t out = {.z = Z + (size_t)ch * ns * k, .loglik = sll + (size_t)ch * ns, .shrink = ishr,
                                   .trace = trace + (size_t)ch * niter};
            st = infer_ess(&o, z0, net_loglik, &n, &out);
            for (int s = 0; s < ns && !st; s++) shr[(size_t)ch * ns + s] = ishr[s];
            evals[ch] = (double)out.nevals;
            nshr[ch] = (double)out.nshrink;
        } else {
            infer_vi_opts_t o = {.k = k, .prior_std = prior_std, .kl_weight = T / (double)N, .steps = (long long)epochs * nb,
                                 .lr = deck_double(d, "infer.vi_lr"), .seed = seed, .chain = (uint64_t)ch,
                                 .progress = vi_progress, .progress_ctx = &n};
            n.perm_epoch = -1;
            st = infer_vi(&o, net_grad, &n, vimu + (size_t)ch * k, visig + (size_t)ch * k, NULL);
            for (int e = 0; e < epochs && !st; e++) {
                double m = 0;
                for (int64_t b = 0; b < nb; b++) m += strace[e * nb + b];
                trace[(size_t)ch * niter + e] = m / (double)nb;
            }
            evals[ch] = (double)o.steps;
            for (int s = 0; s < ns && !st; s++) { /* draws from q */
                vl_rng_t r;
                rng_init(&r, seed, rng_stream(RNG_SAMPLE, VI_STREAM_BIT + (uint64_t)ch, (uint64_t)s));
                for (int q = 0; q < k; q++)
                    Z[((size_t)ch * ns + s) * k + q] = vimu[(size_t)ch * k + q] + visig[(size_t)ch * k + q] * rng_normal(&r);
            }
            if (!st) {
                char mu_s[256] = "", sg_s[256] = "";
                for (int q = 0; q < k; q++) {
                    snprintf(mu_s + strlen(mu_s), sizeof mu_s - strlen(mu_s), " %.4f", vimu[(size_t)ch * k + q]);
                    snprintf(sg_s + strlen(sg_s), sizeof sg_s - strlen(sg_s), " %.4f", visig[(size_t)ch * k + q]);
                }
                vl_log(j.gcomm, "vi chain %d: mu%s | sigma%s", ch, mu_s, sg_s);
            }
        }
        tch[ch] = vl_now() - t0;
        n.chains_done++;
    }
    st = comm_agree_failure(c->world, st);
    if (!st) {
        sum_cross_d(c, Z, (size_t)S * k);
        sum_cross_d(c, sll, (size_t)S);
        sum_cross_d(c, shr, (size_t)S);
        sum_cross_d(c, trace, (size_t)nch * niter);
        sum_cross_d(c, evals, (size_t)nch);
        sum_cross_d(c, nshr, (size_t)nch);
        sum_cross_d(c, vimu, (size_t)nch * k);
        sum_cross_d(c, visig, (size_t)nch * k);
        sum_cross_d(c, tch, (size_t)nch);
        sec[0] = n.t_eval;
        sec[1] = (double)n.evals;
        if (c->grank == 0 && c->ngroups > 1) MPI_Allreduce(MPI_IN_PLACE, sec, 2, MPI_DOUBLE, MPI_SUM, c->leaders);
        MPI_Bcast(sec, 2, MPI_DOUBLE, 0, j.gcomm);
        if (ess) {
            double te = 0, tsh = 0;
            for (int ch = 0; ch < nch; ch++) { te += evals[ch]; tsh += nshr[ch]; }
            vl_log(c->world, "ESS: %d chain(s) x (%d burn-in + %d samples): %.0f likelihood evaluations (%.2f per iteration, "
                   "%.2f shrinkage steps per iteration), %.2f s per evaluation", nch, burnin, ns, te, te / ((double)nch * niter),
                   tsh / ((double)nch * niter), sec[1] > 0 ? sec[0] / sec[1] : 0.0);
        }
    }
    /* ---- per-sample predictions, each by its chain's group, then the BMA */
    float *all = st ? NULL : vl_calloc(stride * (size_t)S + 1, sizeof(float), "per-sample predictions");
    if (!st && !all) st = vl_error_status();
    double t0 = vl_now();
    int mine = 0, done = 0;
    for (int s = 0; s < S; s++) mine += (s / ns) % c->ngroups == c->group_id;
    for (int s = 0; s < S && !st; s++) {
        if ((s / ns) % c->ngroups != c->group_id) continue;
        subspace_point(&sub, Z + (size_t)s * k, n.w);
        st = predict(&n, n.w, state, 1, grid, G, all + (size_t)s * stride);
        done++;
        if (!st && (done % (mine >= 10 ? mine / 10 : 1) == 0 || done == mine)) {
            const double el = vl_now() - t0;
            char eta[32];
            vl_fmt_duration(el / done * (mine - done), eta, sizeof eta);
            vl_log(j.gcomm, "predictions: sample %d/%d of group %d | %.2f s/sample | ETA %s", done, mine, c->group_id, el / done, eta);
        }
    }
    st = comm_agree_failure(c->world, st);
    if (!st && c->ngroups > 1) MPI_Allreduce(MPI_IN_PLACE, all, (int)(stride * S), MPI_FLOAT, MPI_SUM, c->cross);
    snprintf(rows[0].name, sizeof rows[0].name, "%.20s-%s", sub.kind, ess ? "ess" : "vi");
    if (!st) st = combine(&n, all, S, stride, G, &rows[0]);
    free(all);
    all = NULL;
    if (!st) log_row(c, &rows[0], classification);
    /* ---- comparisons: SWAG samples of a second swag.nc, and an SGD model */
    const double noise_var0 = n.noise_var;
    const int estimate_noise = !classification && !n.het && !(deck_double(d, "model.noise_std") > 0);
    if (!st && cmp_swag) {
        vl_swag_t sw;
        int ncid, v, dims[2];
        size_t K = 0;
        st = ncio_open(cmp_swag, &ncid);
        if (!st) {
            if (nc_inq_varid(ncid, "deviations", &v) == NC_NOERR && nc_inq_vardimid(ncid, v, dims) == NC_NOERR)
                nc_inq_dimlen(ncid, dims[0], &K);
            nc_close(ncid);
        }
        const int nsw = (int)deck_int(d, "bma.samples");
        float *var = st ? NULL : vl_calloc(np + 1, sizeof(float), "SWAG variance");
        all = st ? NULL : vl_calloc(stride * (size_t)nsw + 1, sizeof(float), "SWAG predictions");
        if (!st && (!var || !all)) st = vl_error_status();
        if (!st) st = swag_init(&sw, np, (int)K);
        if (!st) st = ckpt_read_swag(cmp_swag, &sw);
        if (!st) {
            swag_variance(&sw, var);
            if (estimate_noise) { /* the noise of the SWA mean's fit */
                swag_mean(&sw, n.w);
                if (n.bn) st = job_bn_update(&j, n.w, state, deck_double(d, "eval.bn_subset"));
                if (!st) n.noise_var = train_mse(&n, n.w, state);
            }
        }
        for (int s = 0; s < nsw && !st; s++) {
            if (s % c->ngroups != c->group_id) continue;
            vl_rng_t r;
            rng_init(&r, seed, rng_stream(RNG_SAMPLE, 4, (uint64_t)s)); /* bma's stream for method swag */
            swag_sample(&sw, var, deck_double(d, "bma.scale"), 0, &r, n.w);
            st = predict(&n, n.w, state, 1, grid, G, all + (size_t)s * stride);
        }
        st = comm_agree_failure(c->world, st);
        if (!st && c->ngroups > 1) MPI_Allreduce(MPI_IN_PLACE, all, (int)(stride * nsw), MPI_FLOAT, MPI_SUM, c->cross);
        snprintf(rows[nrows].name, sizeof rows[nrows].name, "swag");
        if (!st) st = combine(&n, all, nsw, stride, G, &rows[nrows]);
        if (!st) log_row(c, &rows[nrows++], classification);
        swag_free(&sw);
        free(var);
        free(all);
        all = NULL;
    }
    if (!st && cmp_model) {
        st = comm_agree_failure(c->world, ckpt_read(cmp_model, j.model, n.w, state, NULL, NULL));
        if (!st && estimate_noise) n.noise_var = train_mse(&n, n.w, state);
        if (!st) st = predict(&n, n.w, state, 0, grid, G, one);
        snprintf(rows[nrows].name, sizeof rows[nrows].name, "sgd");
        if (!st) st = combine(&n, one, 1, stride, G, &rows[nrows]);
        if (!st) log_row(c, &rows[nrows++], classification);
    }
    n.noise_var = noise_var0;
    /* ---- infer.nc */
    char path[8400], inlist[4200] = "";
    for (int i = 0; i < ninputs; i++)
        snprintf(inlist + strlen(inlist), sizeof inlist - strlen(inlist), "%s%s", i ? "," : "", inputs[i]);
    snprintf(path, sizeof path, "%s/infer.nc", outdir);
    if (!st && c->rank == 0) st = ncio_mkdirs(outdir);
    if (!st && c->rank == 0) {
        out_t o = {.d = d, .classification = classification, .k = k, .nch = nch, .ns = ns, .niter = niter, .ess = ess,
                   .nrows = nrows, .G = G, .ntrain = (int)N, .z = Z, .sll = sll, .shr = shr, .trace = trace, .evals = evals,
                   .nshrink = nshr, .vimu = vimu, .visig = visig, .tchain = tch, .rows = rows, .xg = xg, .trx = trx,
                   .try_ = try_, .kind = sub.kind, .method = ess ? "ess" : "vi", .inputs = inlist, .point_desc = desc,
                   .bn_mode = bn_mode, .T = T, .prior_std = prior_std, .noise_std = noise_std,
                   .sec_per_eval = sec[1] > 0 ? sec[0] / sec[1] : 0.0};
        st = write_infer(path, &o);
    }
    st = comm_agree_failure(c->world, st);
    if (!st) vl_log(c->world, "wrote %s", path);
    for (int r = 0; r < 4; r++) { free(rows[r].gmean); free(rows[r].gstd); free(rows[r].gstd_model); }
    free(Z); free(sll); free(shr); free(trace); free(evals); free(nshr); free(vimu); free(visig); free(tch); free(sec);
    free(ishr); free(strace); free(one); free(state); free(n.w); free(n.scratch);
    free(xg); free(grid); free(trx); free(try_);
    subspace_free(&sub);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}

/* ================================================== figure */

static double *read_var(int ncid, const char *path, const char *name, size_t *n, int *st)
{
    int v, nd, dim;
    if (*st) return NULL;
    if (nc_inq_varid(ncid, name, &v) || nc_inq_varndims(ncid, v, &nd) || nd != 1 || nc_inq_vardimid(ncid, v, &dim) ||
        nc_inq_dimlen(ncid, dim, n)) {
        *st = VL_FAIL(VL_EINPUT, "%s: variable '%s' missing (not the infer.nc of a 1-D regression)", path, name);
        return NULL;
    }
    double *x = calloc(*n + 1, sizeof(double));
    if (!x || nc_get_var_double(ncid, v, x)) {
        free(x);
        *st = VL_FAIL(VL_EINPUT, "%s: cannot read '%s'", path, name);
        return NULL;
    }
    return x;
}

int infer_plot(const char *path, const char *outdir)
{
    int ncid;
    CHECK(ncio_open(path, &ncid));
    int st = VL_OK, st2 = VL_OK;
    size_t G = 0, G2 = 0, G3 = 0, G4 = 0, nt = 0, nt2 = 0;
    double *x = read_var(ncid, path, "x_grid", &G, &st), *m = read_var(ncid, path, "pred_mean", &G2, &st);
    double *s = read_var(ncid, path, "pred_std", &G3, &st);
    double *sm = read_var(ncid, path, "pred_std_model", &G4, &st2); /* optional */
    double *tx = read_var(ncid, path, "train_x", &nt, &st), *ty = read_var(ncid, path, "train_y", &nt2, &st);
    char *kind = NULL, *method = NULL;
    if (!st && (G != G2 || G != G3 || nt != nt2 || (sm && G4 != G))) st = VL_FAIL(VL_EINPUT, "%s: grid or data lengths differ", path);
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "subspace_kind", &kind)) kind = NULL;
    if (ncio_get_att_text(ncid, NC_GLOBAL, path, "infer_method", &method)) method = NULL;
    if (!st) vl_error_clear(); /* the optional attributes and pred_std_model */
    nc_close(ncid);
    char dir[4096], stem[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : path);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    if (!st && outdir) st = ncio_mkdirs(outdir);
    for (int f = 0; f < (sm ? 2 : 1) && !st; f++) {
        char out[8400], title[256];
        snprintf(out, sizeof out, "%s/%s_band%s.png", outdir ? outdir : dir, stem, f ? "_model" : "");
        snprintf(title, sizeof title, "subspace inference (%s, %s): %s", kind ? kind : "?", method ? method : "?",
                 f ? "spread of the sampled functions (no noise)" : "predictive mean and std (noise included)");
        fig_axes_t ax = {.title = title, .xlabel = "x", .ylabel = "y"};
        st = fig_band(out, &ax, x, m, f ? sm : s, (int)G, tx, ty, (int)nt);
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
    }
    free(kind); free(method);
    free(x); free(m); free(s); free(sm); free(tx); free(ty);
    CHECK(st);
    return VL_OK;
}
