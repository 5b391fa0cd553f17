/* simplex.c — SPRO simplexes, mode-connecting complexes and ESPRO ensembles (SPEC §6).
 *
 * Layout of one component (a simplex or a complex): nm fixed modes (the input checkpoints)
 * followed by nconn = simplex.vertices − 1 connectors, nvc = nm + nconn vertices of d floats.
 * Simplex s of the component (s < nm) is {mode s, connector 1, ..., connector k} once k
 * connectors exist; a single input gives the plain SPRO simplex {θ_0 (the model), θ_1, ...}.
 *
 * Training (connector k, the only moving vertex, index q = nm + k − 1):
 *   - θ_q starts at the centroid of the vertices 0..q−1 (all frozen);
 *   - per minibatch, S = simplex.samples points w_s = Σ_j a_sj θ_j: one simplex drawn
 *     uniformly (complexes), a ~ Dirichlet(1) over its vertices;
 *   - loss = (1/S) Σ_s [CE(w_s) + 0.5 wd |w_s|²] − λ_n · (1/nm) Σ_simplexes log(V_ref + 1e−4)
 *     where V_ref is the reference code's `total_volume()`, i.e. the Cayley–Menger quantity
 *     |det CM| / ((n−1)!² 2^(n−1)) = V² (the squared volume), and
 *     λ_n = max(LMBD / log(V_init(n) + 1e−4), 1e−8) with V_init(n) the same quantity for n
 *     independently initialised networks (as the reference computes its reg_pars);
 *     n = k + 1 vertices per simplex. Because λ is divided by the log of the same quantity,
 *     using V² instead of V changes the penalty only through the 1e−4 offset.
 *   - gradient to θ_q = (1/S) Σ_s a_sq (∇CE(w_s) + wd w_s) − λ ∇ log-volume, SGD with
 *     momentum train.momentum, cosine learning rate from simplex.lr over simplex.epochs.
 *     Σ_s a_sq w_s = Σ_j (Σ_s a_sq a_sj) θ_j and the volume gradient is also a combination of
 *     the vertices, so no per-sample weight vector is kept.
 * Batch norm trains in MODE_TRAIN on batch statistics; every evaluated vertex or point gets
 * a BN refresh first (SPEC §0).
 *
 * Groups: component c (seed run.seed + c) is trained and evaluated by group c mod ngroups;
 * its vertices are then broadcast over comm->cross. Every per-vertex / per-point value is
 * computed by exactly one group and gathered with a sum over the groups (exact: the other
 * groups contribute zeros), the ensemble's probabilities are summed in component order, so
 * simplex.nc does not depend on the number of groups (at equal ranks per group).
 */
#include "valley/simplex.h"
#include "valley/signals.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/figure.h"
#include "valley/log.h"
#include "valley/metrics.h"
#include "valley/ncio.h"
#include "valley/optim.h"
#include "valley/rng.h"
#include "valley/train.h"

#define SIMPLEX_TITLE "valley simplex"
#define VOL_EPS 1e-4              /* log(V + 1e-4) of the reference */
#define EVAL_STREAM 0xFFFFFFEull  /* rng_stream `a` of the evaluation draws (training uses a = connector) */
#define INIT_SEED_OFFSET 7919     /* V_init: network i is initialised with seed run.seed + 7919 + i */

/* ------------------------------------------------------------ geometry */

void simplex_distances(int n, size_t d, const float *const *v, double *D)
{
    for (int i = 0; i < n; i++) {
        D[i * n + i] = 0.0;
        for (int j = i + 1; j < n; j++) {
            double s = 0.0;
            const float *a = v[i], *b = v[j];
            for (size_t t = 0; t < d; t++) {
                double e = (double)a[t] - (double)b[t];
                s += e * e;
            }
            D[i * n + j] = D[j * n + i] = s;
        }
    }
}

/* log((n−1)!² 2^(n−1)) */
static double cm_log_norm(int n) { return 2.0 * lgamma((double)n) + (n - 1) * log(2.0); }

static int check_d(int n, const double *D)
{
    if (n < 1 || n > SIMPLEX_MAX_VERTICES)
        return VL_FAIL(VL_EINPUT, "simplex volume: %d vertices (want 1..%d)", n, SIMPLEX_MAX_VERTICES);
    for (int i = 0; i < n * n; i++)
        if (!isfinite(D[i])) return VL_FAIL(VL_EINPUT, "simplex volume: non-finite squared distance");
    return VL_OK;
}

static void cm_fill(int n, const double *D, double *cm)
{
    const int m = n + 1;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) cm[i * m + j] = D[i * n + j];
        cm[i * m + n] = cm[n * m + i] = 1.0;
    }
    cm[n * m + n] = 0.0;
}

/* log|det a| and its sign (0 when singular) of an m×m matrix (overwritten) by LU. */
static int lu_logdet(int m, double *a, double *logabs, int *sign)
{
    lapack_int ipiv[SIMPLEX_MAX_VERTICES + 1];
    lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, m, m, a, m, ipiv);
    if (info < 0) return VL_FAIL(VL_EINPUT, "simplex volume: dgetrf argument %d", (int)-info);
    double la = 0.0;
    int sg = 1;
    for (int i = 0; i < m; i++) {
        double u = a[i * m + i];
        if (u == 0.0) { *logabs = -INFINITY; *sign = 0; return VL_OK; }
        if (u < 0) sg = -sg;
        if (ipiv[i] != i + 1) sg = -sg;
        la += log(fabs(u));
    }
    *logabs = la;
    *sign = sg;
    return VL_OK;
}

int simplex_volume_sq(int n, const double *D, double *v2)
{
    CHECK(check_d(n, D));
    const int m = n + 1;
    double cm[(SIMPLEX_MAX_VERTICES + 1) * (SIMPLEX_MAX_VERTICES + 1)];
    cm_fill(n, D, cm);
    double la;
    int sg;
    CHECK(lu_logdet(m, cm, &la, &sg));
    *v2 = sg == 0 ? 0.0 : exp(la - cm_log_norm(n));
    return VL_OK;
}

int simplex_logvol_coeffs(int n, const double *D, int k, double eps, double *coef, double *v2)
{
    CHECK(check_d(n, D));
    if (n < 2 || k < 0 || k >= n) return VL_FAIL(VL_EINPUT, "simplex volume gradient: vertex %d of %d", k, n);
    const int m = n + 1;
    enum { MM = (SIMPLEX_MAX_VERTICES + 1) * (SIMPLEX_MAX_VERTICES + 1) };
    double cm[MM], u[MM], vt[MM], s[SIMPLEX_MAX_VERTICES + 1], work[SIMPLEX_MAX_VERTICES + 1], tmp[MM];
    cm_fill(n, D, cm);
    /* CM = U diag(s) Vᵀ  →  adj(CM) = det(U) det(V) · V diag(π) Uᵀ,  π_i = Π_{j≠i} s_j. */
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'A', 'A', m, m, cm, m, s, u, m, vt, m, work);
    if (info != 0) return VL_FAIL(VL_EINPUT, "simplex volume gradient: SVD failed (info %d)", (int)info);
    double la;
    int sgu, sgv;
    memcpy(tmp, u, sizeof(double) * m * m);
    CHECK(lu_logdet(m, tmp, &la, &sgu));
    memcpy(tmp, vt, sizeof(double) * m * m);
    CHECK(lu_logdet(m, tmp, &la, &sgv));
    /* log c + log π_i (−inf when a singular value other than s_i is zero) */
    const double lc = -cm_log_norm(n);
    double logs_sum = 0.0;
    int nzero = 0, izero = -1;
    for (int i = 0; i < m; i++) {
        if (s[i] > 0) logs_sum += log(s[i]);
        else { nzero++; izero = i; }
    }
    double cpi[SIMPLEX_MAX_VERTICES + 1]; /* c · π_i */
    for (int i = 0; i < m; i++) {
        if (nzero > 1 || (nzero == 1 && i != izero)) cpi[i] = 0.0;
        else cpi[i] = exp(lc + logs_sum - (s[i] > 0 ? log(s[i]) : 0.0));
    }
    /* V² = c (−1)^n det CM (a Gram determinant, >= 0); det CM = det(U) det(V) Π s. */
    const double sgn = ((n % 2) ? -1.0 : 1.0) * sgu * sgv;
    double vol2 = nzero ? 0.0 : exp(lc + logs_sum);
    if (v2) *v2 = vol2;
    if (eps == 0.0 && !(vol2 > 0))
        return VL_FAIL(VL_EINPUT, "simplex volume gradient: log-volume of a degenerate simplex");
    /* adj_kj = Σ_i V_ki π_i U_ji = Σ_i vt[i][k] π_i u[j][i];  dV²/dθ_k = 4 sgn Σ_j c adj_kj (θ_k − θ_j). */
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        coef[j] = 0.0;
        if (j == k) continue;
        double a = 0.0;
        for (int i = 0; i < m; i++) a += vt[i * m + k] * cpi[i] * u[j * m + i];
        double w = 4.0 * sgn * a / (vol2 + eps);
        coef[j] = -w;
        sum += w;
    }
    coef[k] = sum;
    return VL_OK;
}

void simplex_dirichlet(vl_rng_t *r, int n, double *a)
{
    double tot = 0.0;
    for (int i = 0; i < n; i++) {
        a[i] = -log(rng_uniform_open(r));
        tot += a[i];
    }
    for (int i = 0; i < n; i++) a[i] /= tot;
}

/* ------------------------------------------------------------ the run */

typedef struct {
    vl_comm_t *c;
    vl_job_t *j;
    const vl_deck_t *d;
    size_t np;
    int K;            /* components */
    int nm;           /* modes (inputs) per component */
    int nconn;        /* connectors = simplex.vertices − 1 */
    int nvc;          /* vertices per component */
    int nv;           /* vertices of one simplex = 1 + nconn */
    int S, E, epochs, grid;
    double lr0, wd, momentum, lmbd, subset;
    uint64_t seed;
    double lambda[SIMPLEX_MAX_VERTICES + 1], vinit[SIMPLEX_MAX_VERTICES + 1]; /* by simplex size n */
    float *theta;     /* (K, nvc, d); a component's vertices are valid on its group until shared */
    float *buf;       /* momentum of the trained vertex (d) */
    double *D;        /* (nvc, nvc) squared distances of the component being trained */
    double *hist_loss, *hist_acc, *hist_vol; /* (K, nconn, epochs) */
    /* evaluation */
    double *vert_loss, *vert_err;          /* (K·nvc) */
    double *pt_loss, *pt_err;              /* (K·E) */
    int *pt_simplex;                       /* (K·E) simplex index within the component */
    double *pt_w;                          /* (K·E, nv) weights over the simplex's vertices */
    double *comp_sum;                      /* (K, nloc·C) summed point probabilities */
    double *comp_m;                        /* (K, NCM) per-component BMA metrics */
    double *vol2;                          /* (K·nm) final squared volumes */
    float *probs;                          /* (nloc·C) */
} sx_t;

enum { CM_ACC, CM_NLL, CM_ECE, CM_ECE_COUNT, CM_BRIER, CM_ENTROPY, NCM };

static float *vert(sx_t *x, int comp, int i) { return x->theta + ((size_t)comp * x->nvc + (size_t)i) * x->np; }

/* Vertex indices (within the component) of simplex s when k connectors exist: n = k + 1. */
static int simplex_members(const sx_t *x, int s, int k, int *idx)
{
    idx[0] = s;
    for (int i = 1; i <= k; i++) idx[i] = x->nm + i - 1;
    return k + 1;
}

/* w = Σ_j a_j θ_idx[j] accumulated in double per element. */
static void point_weights_to_w(sx_t *x, int comp, int n, const int *idx, const double *a, float *w)
{
    const float *p[SIMPLEX_MAX_VERTICES];
    for (int i = 0; i < n; i++) p[i] = vert(x, comp, idx[i]);
    for (size_t t = 0; t < x->np; t++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += a[i] * p[i][t];
        w[t] = (float)s;
    }
}

/* The squared-distance submatrix of simplex members idx from the component's D (nvc, nvc). */
static void sub_d(const sx_t *x, int n, const int *idx, double *Ds)
{
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) Ds[a * n + b] = x->D[idx[a] * x->nvc + idx[b]];
}

/* D rows of vertex q against 0..q−1 (and symmetric). */
static void update_d(sx_t *x, int comp, int q)
{
    const float *a = vert(x, comp, q);
    x->D[q * x->nvc + q] = 0.0;
    for (int j = 0; j < q; j++) {
        const float *b = vert(x, comp, j);
        double s = 0.0;
        for (size_t t = 0; t < x->np; t++) {
            double e = (double)a[t] - (double)b[t];
            s += e * e;
        }
        x->D[q * x->nvc + j] = x->D[j * x->nvc + q] = s;
    }
}

/* Mean over the component's simplexes of the volume (not squared) with k connectors. */
static int mean_volume(sx_t *x, int k, double *out)
{
    double Ds[SIMPLEX_MAX_VERTICES * SIMPLEX_MAX_VERTICES], tot = 0.0;
    int idx[SIMPLEX_MAX_VERTICES];
    for (int s = 0; s < x->nm; s++) {
        int n = simplex_members(x, s, k, idx);
        sub_d(x, n, idx, Ds);
        double v2;
        CHECK(simplex_volume_sq(n, Ds, &v2));
        tot += sqrt(v2);
    }
    *out = tot / x->nm;
    return VL_OK;
}

/* λ_n for n = 2..nv: V_init(n) = CM quantity of n independently initialised networks. */
static int compute_lambdas(sx_t *x)
{
    const int nv = x->nv;
    if (nv < 2) return VL_OK;
    float *w = vl_calloc((size_t)nv * x->np + 1, sizeof(float), "V_init networks");
    if (!w) return vl_error_status();
    const float *p[SIMPLEX_MAX_VERTICES];
    for (int i = 0; i < nv; i++) {
        model_init(x->j->model, x->seed + INIT_SEED_OFFSET + (uint64_t)i, w + (size_t)i * x->np, NULL);
        p[i] = w + (size_t)i * x->np;
    }
    double Dall[SIMPLEX_MAX_VERTICES * SIMPLEX_MAX_VERTICES], Ds[SIMPLEX_MAX_VERTICES * SIMPLEX_MAX_VERTICES];
    simplex_distances(nv, x->np, p, Dall);
    free(w);
    for (int n = 2; n <= nv; n++) {
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) Ds[a * n + b] = Dall[a * nv + b];
        CHECK(simplex_volume_sq(n, Ds, &x->vinit[n]));
        double l = x->lmbd / log(x->vinit[n] + VOL_EPS);
        x->lambda[n] = l > 1e-8 ? l : 1e-8; /* also when log(V_init) <= 0, as max() in the reference */
    }
    return VL_OK;
}

/* The moving vertex θ_q of connector k as the SGD loop's parameterisation: per batch, S
 * points drawn on the component's simplexes (point), their gradients weighted by a_sq
 * (gather), and the vertex's step with the weight-decay and volume terms (update). */
typedef struct {
    vl_param_t p;
    sx_t *x;
    int comp, k, q;
    uint64_t seed;
    vl_rng_t rs;                            /* this batch's draws */
    double af[SIMPLEX_MAX_VERTICES + 1];    /* the point's weights over the component's vertices */
    double bcoef[SIMPLEX_MAX_VERTICES + 1]; /* Σ_s a_sq a_sj over the batch's points */
} sx_param_t;

static void sp_point(vl_param_t *p, int64_t ep, int64_t b, long long step, int s, float *w)
{
    (void)ep, (void)b;
    sx_param_t *m = p->ctx;
    sx_t *x = m->x;
    if (s == 0) { /* one stream per SGD step of the component (the step count runs over its connectors) */
        rng_init(&m->rs, m->seed, rng_stream(RNG_SIMPLEX, (uint64_t)m->k, (uint64_t)step));
        memset(m->bcoef, 0, sizeof m->bcoef);
    }
    int sidx = x->nm > 1 ? (int)rng_below(&m->rs, (uint64_t)x->nm) : 0, idx[SIMPLEX_MAX_VERTICES];
    double a[SIMPLEX_MAX_VERTICES];
    const int ns = simplex_members(x, sidx, m->k, idx);
    simplex_dirichlet(&m->rs, ns, a);
    memset(m->af, 0, sizeof m->af);
    for (int i = 0; i < ns; i++) m->af[idx[i]] = a[i];
    point_weights_to_w(x, m->comp, ns, idx, a, w);
}

static void sp_gather(vl_param_t *p, int s, const float *g, float *sum)
{
    (void)s;
    sx_param_t *m = p->ctx;
    const float aq = (float)m->af[m->q];
    if (aq != 0.0f)
        for (size_t t = 0; t < m->x->np; t++) sum[t] += aq * g[t];
    for (int i = 0; i <= m->q; i++) m->bcoef[i] += m->af[m->q] * m->af[i];
}

static int sp_update(vl_param_t *p, float *g, const float *w, double lr)
{
    (void)w;
    sx_param_t *m = p->ctx;
    sx_t *x = m->x;
    const int q = m->q, k = m->k;
    /* coefficients of the vertices in the rest of the gradient: weight decay on the points
     * and the volume term, averaged over the simplexes */
    double cj[SIMPLEX_MAX_VERTICES + 1];
    for (int i = 0; i <= q; i++) cj[i] = x->wd * m->bcoef[i] / x->S;
    for (int s = 0; s < x->nm; s++) {
        int idx[SIMPLEX_MAX_VERTICES];
        double Ds[SIMPLEX_MAX_VERTICES * SIMPLEX_MAX_VERTICES], co[SIMPLEX_MAX_VERTICES];
        int ns = simplex_members(x, s, k, idx);
        sub_d(x, ns, idx, Ds);
        CHECK(simplex_logvol_coeffs(ns, Ds, ns - 1, VOL_EPS, co, NULL));
        for (int i = 0; i < ns; i++) cj[idx[i]] -= x->lambda[k + 1] * co[i] / x->nm;
    }
    const float *pv[SIMPLEX_MAX_VERTICES + 1];
    for (int i = 0; i <= q; i++) pv[i] = vert(x, m->comp, i);
    float *th = vert(x, m->comp, q);
    const float fm = (float)x->momentum, flr = (float)lr, invs = 1.0f / (float)x->S;
    for (size_t t = 0; t < x->np; t++) {
        double r = 0.0;
        for (int i = 0; i <= q; i++) r += cj[i] * pv[i][t];
        float gt = g[t] * invs + (float)r;
        x->buf[t] = fm * x->buf[t] + gt;
        th[t] -= flr * x->buf[t];
    }
    update_d(x, m->comp, q);
    return VL_OK;
}

static int sp_note(vl_param_t *p, char *buf, size_t n)
{
    sx_param_t *m = p->ctx;
    double vol;
    CHECK(mean_volume(m->x, m->k, &vol));
    snprintf(buf, n, "volume %.4g", vol);
    return VL_OK;
}

static int sp_epoch_done(vl_param_t *p, int64_t ep, const double sums[3], double seconds)
{
    sx_param_t *m = p->ctx;
    sx_t *x = m->x;
    double vol;
    CHECK(mean_volume(x, m->k, &vol));
    size_t h = ((size_t)m->comp * x->nconn + (size_t)(m->k - 1)) * x->epochs + (size_t)ep;
    x->hist_loss[h] = sums[0] / sums[2];
    x->hist_acc[h] = sums[1] / sums[2];
    x->hist_vol[h] = vol;
    vl_log(x->j->gcomm, "component %d vertex %d epoch %lld/%d done in %.1fs: sampled-point train loss %.4f acc %.4f | "
                        "volume %.4g", m->comp, m->q + 1, (long long)ep + 1, x->epochs, seconds, x->hist_loss[h],
           x->hist_acc[h], vol);
    return VL_OK;
}

/* Trains the component's connectors one after another, each by the SGD loop (train.c) with
 * the moving vertex as its parameterisation: cosine learning rate from simplex.lr over
 * simplex.epochs, the data order of seed run.seed + comp and epoch (k << 20) | epoch. */
static int train_component(sx_t *x, int comp)
{
    vl_job_t *j = x->j;
    const int nvc = x->nvc;
    long long step = 0; /* SGD steps of the component, over all its connectors */
    for (int q = 0; q < x->nm; q++) update_d(x, comp, q);
    sx_param_t m = {.p = {.samples = x->S, .point = sp_point, .gather = sp_gather, .update = sp_update,
                          .note = sp_note, .epoch_done = sp_epoch_done,
                          .no_checkpoint = "simplex training keeps no checkpoint: run it again"},
                    .x = x, .comp = comp, .seed = x->seed + (uint64_t)comp};
    m.p.ctx = &m;
    for (int k = 1; k <= x->nconn; k++) {
        const int q = x->nm + k - 1, nsv = k + 1;
        /* the new vertex at the centroid of the frozen ones */
        float *th = vert(x, comp, q);
        const float *pv[SIMPLEX_MAX_VERTICES + 1];
        for (int i = 0; i <= q; i++) pv[i] = vert(x, comp, i);
        for (size_t t = 0; t < x->np; t++) {
            double s = 0.0;
            for (int i = 0; i < q; i++) s += pv[i][t];
            th[t] = (float)(s / q);
        }
        memset(x->buf, 0, x->np * sizeof(float));
        update_d(x, comp, q);
        double v0;
        CHECK(mean_volume(x, k, &v0));
        vl_log(j->gcomm, "component %d: vertex %d/%d at the centroid of %d frozen vertices: %d epochs, lr %g (cosine), "
                         "%d samples per batch, lambda %.3g (V_init %.4g), volume %.4g", comp, q + 1, nvc, q, x->epochs,
               x->lr0, x->S, x->lambda[nsv], x->vinit[nsv], v0);
        m.k = k;
        m.q = q;
        vl_sgd_t r;
        int st = sgd_setup(&r, j, NULL, SGD_PLUGIN);
        if (!st) {
            r.param = &m.p;
            r.method = "simplex";
            snprintf(r.label, sizeof r.label, "component %d vertex %d ", comp, q + 1);
            r.epochs = x->epochs;
            r.lr0 = x->lr0;
            r.sched = "cosine";
            r.per_epoch = 0;
            r.ck_seconds = 0;
            r.seed = r.pos.seed = m.seed;
            r.epoch_key = (uint64_t)k << 20;
            r.samples_after = (double)(x->nconn - k) * x->epochs * (double)j->train.n;
            r.pos.step = step;
            st = sgd_run(&r);
            step = r.pos.step;
        }
        sgd_free(&r);
        CHECK(st);
    }
    return VL_OK;
}

/* Evaluation draw s of component comp: a simplex (uniform) and Dirichlet weights. */
static void eval_draw(const sx_t *x, int comp, int s, int *sidx, double *a)
{
    vl_rng_t r;
    rng_init(&r, x->seed + (uint64_t)comp, rng_stream(RNG_SIMPLEX, EVAL_STREAM, (uint64_t)s));
    *sidx = x->nm > 1 ? (int)rng_below(&r, (uint64_t)x->nm) : 0;
    simplex_dirichlet(&r, x->nv, a);
}

/* Test loss and error of w after a BN refresh; probs (local shard) may be NULL. */
static int eval_point(sx_t *x, float *probs, double *loss, double *err)
{
    vl_job_t *j = x->j;
    CHECK(job_bn_update(j, j->w, j->state, x->subset));
    vl_pass_t p;
    CHECK(job_eval(j, j->w, j->state, &j->test, probs, &p));
    *loss = p.loss_sum / p.n;
    *err = 1.0 - p.correct / p.n;
    return VL_OK;
}

static int evaluate_component(sx_t *x, int comp, double *t0, int *done, int mine)
{
    vl_job_t *j = x->j;
    const int64_t nloc = j->test.hi - j->test.lo;
    const int C = j->cfg.out_dim;
    const size_t P = (size_t)nloc * C;
    for (int i = 0; i < x->nvc; i++) {
        memcpy(j->w, vert(x, comp, i), x->np * sizeof(float));
        size_t g = (size_t)comp * x->nvc + (size_t)i;
        CHECK(eval_point(x, NULL, &x->vert_loss[g], &x->vert_err[g]));
        vl_log(j->gcomm, "component %d vertex %d%s: test loss %.4f err %.4f", comp, i + 1, i < x->nm ? " (input)" : "",
               x->vert_loss[g], x->vert_err[g]);
    }
    double *cs = x->comp_sum + (size_t)comp * P;
    for (int s = 0; s < x->E; s++) {
        size_t g = (size_t)comp * x->E + (size_t)s;
        int idx[SIMPLEX_MAX_VERTICES];
        int n = simplex_members(x, x->pt_simplex[g], x->nconn, idx);
        point_weights_to_w(x, comp, n, idx, x->pt_w + g * x->nv, j->w);
        CHECK(eval_point(x, x->probs, &x->pt_loss[g], &x->pt_err[g]));
        for (size_t i = 0; i < P; i++) cs[i] += x->probs[i];
        (*done)++;
        double el = vl_now() - *t0;
        char eta[32];
        vl_fmt_duration(el / *done * (mine - *done), eta, sizeof eta);
        vl_log(j->gcomm, "component %d point %d/%d: test loss %.4f err %.4f | %.1f s/point | ETA %s", comp, s + 1, x->E,
               x->pt_loss[g], x->pt_err[g], el / *done, eta);
    }
    for (size_t i = 0; i < P; i++) x->probs[i] = (float)(cs[i] / x->E);
    vl_class_metrics_t m;
    CHECK(metrics_classification(x->probs, j->test.y, nloc, C, j->test.lo, j->gcomm, &m));
    double *cm = x->comp_m + (size_t)comp * NCM;
    cm[CM_ACC] = m.accuracy; cm[CM_NLL] = m.nll; cm[CM_ECE] = m.ece; cm[CM_ECE_COUNT] = m.ece_count;
    cm[CM_BRIER] = m.brier; cm[CM_ENTROPY] = m.entropy;
    vl_log(j->gcomm, "component %d: BMA of %d points: accuracy %.4f nll %.4f ece %.4f", comp, x->E, m.accuracy, m.nll, m.ece);
    return VL_OK;
}

/* Sum over the groups in place (each value computed by one group, zeros elsewhere: exact). */
static void sum_groups(const sx_t *x, double *v, size_t n)
{
    if (x->c->ngroups > 1 && n) MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, x->c->cross);
}

/* ----------------------------------------------------------- plane grid */

typedef struct {
    int n;                 /* n × n points */
    double *gx, *gy;       /* (n) coordinates */
    double *loss, *err;    /* (n·n) row-major (y, x) */
    double vx[3], vy[3];   /* the triangle's vertices in the plane */
    int vidx[3];           /* their global vertex indices */
} plane_t;

/* Test loss/error over the plane of component 0's first simplex (3 vertices). Coordinates:
 * origin θ_a = vertex 0, x along θ_b − θ_a, y along the part of θ_c − θ_a orthogonal to it,
 * both in parameter-space distance; the grid spans the triangle with a 20% margin. */
static int plane_grid(sx_t *x, plane_t *pl)
{
    vl_job_t *j = x->j;
    const size_t np = x->np;
    int idx[3];
    simplex_members(x, 0, x->nconn, idx);
    const float *a = vert(x, 0, idx[0]), *b = vert(x, 0, idx[1]), *c3 = vert(x, 0, idx[2]);
    double *u = vl_calloc(np + 1, sizeof(double), "plane u"), *v = vl_calloc(np + 1, sizeof(double), "plane v");
    if (!u || !v) { free(u); free(v); return vl_error_status(); }
    double nu = 0, cu = 0, nv2 = 0;
    for (size_t t = 0; t < np; t++) { u[t] = (double)b[t] - a[t]; nu += u[t] * u[t]; }
    nu = sqrt(nu);
    for (size_t t = 0; t < np; t++) { u[t] /= nu > 0 ? nu : 1; cu += ((double)c3[t] - a[t]) * u[t]; }
    for (size_t t = 0; t < np; t++) { v[t] = (double)c3[t] - a[t] - cu * u[t]; nv2 += v[t] * v[t]; }
    nv2 = sqrt(nv2);
    if (!(nu > 0) || !(nv2 > 1e-12 * (nu + fabs(cu)))) {
        free(u); free(v);
        vl_log(x->c->world, "simplex.grid: the simplex is degenerate (its vertices do not span a plane); no grid");
        pl->n = 0;
        return VL_OK;
    }
    for (size_t t = 0; t < np; t++) v[t] /= nv2;
    pl->vx[0] = 0; pl->vy[0] = 0; pl->vx[1] = nu; pl->vy[1] = 0; pl->vx[2] = cu; pl->vy[2] = nv2;
    for (int i = 0; i < 3; i++) pl->vidx[i] = idx[i];
    double xmin = fmin(0, cu), xmax = fmax(nu, cu), ymin = 0, ymax = nv2;
    double m = 0.2 * fmax(xmax - xmin, ymax - ymin);
    const int N = x->grid;
    pl->n = N;
    pl->gx = calloc((size_t)N, sizeof(double));
    pl->gy = calloc((size_t)N, sizeof(double));
    pl->loss = calloc((size_t)N * N, sizeof(double));
    pl->err = calloc((size_t)N * N, sizeof(double));
    if (!pl->gx || !pl->gy || !pl->loss || !pl->err) { free(u); free(v); return VL_FAIL(VL_EIO, "out of memory"); }
    for (int i = 0; i < N; i++) {
        pl->gx[i] = xmin - m + (xmax - xmin + 2 * m) * i / (N - 1);
        pl->gy[i] = ymin - m + (ymax - ymin + 2 * m) * i / (N - 1);
    }
    const int G = x->c->ngroups, me = x->c->group_id;
    int mine = 0, done = 0, st = VL_OK;
    for (int i = 0; i < N * N; i++) mine += i % G == me;
    double t0 = vl_now();
    for (int i = 0; i < N * N && !st; i++) {
        if (i % G != me) continue;
        const double px = pl->gx[i % N], py = pl->gy[i / N];
        for (size_t t = 0; t < np; t++) j->w[t] = (float)((double)a[t] + px * u[t] + py * v[t]);
        st = eval_point(x, NULL, &pl->loss[i], &pl->err[i]);
        if (st) break;
        done++;
        double el = vl_now() - t0;
        char eta[32];
        vl_fmt_duration(el / done * (mine - done), eta, sizeof eta);
        vl_log(j->gcomm, "plane point (%.3g, %.3g): test loss %.4f err %.4f | %d/%d | ETA %s", px, py, pl->loss[i],
               pl->err[i], done, mine, eta);
    }
    free(u);
    free(v);
    CHECK(st);
    sum_groups(x, pl->loss, (size_t)N * N);
    sum_groups(x, pl->err, (size_t)N * N);
    return VL_OK;
}

/* ---------------------------------------------------------------- output */

static int put_d(ncio_file_t *f, int v, const double *p, const char *what)
{
    return ncio_check(nc_put_var_double(f->ncid, v, p), VL_EIO, f->path, what);
}

static int write_simplex(sx_t *x, const char *path, int ninputs, char **inputs, const vl_class_metrics_t *ens,
                         const plane_t *pl)
{
    vl_job_t *j = x->j;
    const int K = x->K, NV = K * x->nvc, NS = K * x->nm, NP = K * x->E;
    ncio_file_t f;
    CHECK(ncio_create(&f, path, SIMPLEX_TITLE, deck_text(x->d)));
    int st = ckpt_put_model_attrs(&f, j->model, &j->cfg, j->dataset);
    size_t len = 1;
    for (int i = 0; i < ninputs; i++) len += strlen(inputs[i]) + 1;
    char *list = calloc(len, 1);
    for (int i = 0; i < ninputs && list; i++) { if (i) strcat(list, ","); strcat(list, inputs[i]); }
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "simplex_inputs", list ? list : "");
    free(list);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "simplex_kind", x->nm > 1 ? "complex" : "simplex");
    int ai[4] = {K, x->nm, x->nconn, x->nv};
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "simplex_components", 1, &ai[0]);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "simplex_modes", 1, &ai[1]);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "simplex_connectors", 1, &ai[2]);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "simplex_size", 1, &ai[3]);
    int dv, dp, dsx, dsv, dc, dpt, dcon = -1, dep = -1, db, dpx = -1, dpy = -1, dpv = -1;
    if (!st) st = ncio_def_dim(&f, "vertex", (size_t)NV, &dv);
    if (!st) st = ncio_def_dim(&f, "param", x->np, &dp);
    if (!st) st = ncio_def_dim(&f, "simplex", (size_t)NS, &dsx);
    if (!st) st = ncio_def_dim(&f, "simplex_vertex", (size_t)x->nv, &dsv);
    if (!st) st = ncio_def_dim(&f, "component", (size_t)K, &dc);
    if (!st) st = ncio_def_dim(&f, "point", (size_t)NP, &dpt);
    if (!st && x->nconn > 0) st = ncio_def_dim(&f, "connector", (size_t)x->nconn, &dcon);
    if (!st && x->nconn > 0 && x->epochs > 0) st = ncio_def_dim(&f, "epoch", (size_t)x->epochs, &dep);
    if (!st) st = ncio_def_dim(&f, "bin", METRICS_BINS_WIDTH, &db);
    if (!st && pl->n > 0) st = ncio_def_dim(&f, "plane_x", (size_t)pl->n, &dpx);
    if (!st && pl->n > 0) st = ncio_def_dim(&f, "plane_y", (size_t)pl->n, &dpy);
    if (!st && pl->n > 0) st = ncio_def_dim(&f, "plane_vertex", 3, &dpv);
    enum { V_VERT, V_VCOMP, V_VFIX, V_VLOSS, V_VERR, V_SV, V_SCOMP, V_VOL, V_VOL2, V_PCOMP, V_PSIMP, V_PW, V_PLOSS, V_PERR,
           V_CACC, V_CNLL, V_CECE, V_CECEC, V_CBRIER, V_CENT, V_ACC, V_NLL, V_ECE, V_ECEC, V_BRIER, V_ENT,
           V_BLO, V_BHI, V_BACC, V_BCONF, V_BCNT, V_LAM, V_VINIT, V_HLOSS, V_HACC, V_HVOL,
           V_PX, V_PY, V_PLL, V_PLE, V_PVX, V_PVY, V_PVI, NVAR };
    int v[NVAR];
    for (int i = 0; i < NVAR; i++) v[i] = -1;
    int d2[2] = {dv, dp};
    if (!st) st = ncio_def_var(&f, "vertices", NC_FLOAT, 2, d2, "simplex vertices, flat parameter order (valley.params)", "1", &v[V_VERT]);
    if (!st) st = ncio_def_var(&f, "vertex_component", NC_INT, 1, &dv, "component (simplex or complex) of the vertex", "1", &v[V_VCOMP]);
    if (!st) st = ncio_def_var(&f, "vertex_fixed", NC_BYTE, 1, &dv, "1 for an input model (never trained), 0 for a trained vertex", "1", &v[V_VFIX]);
    if (!st) st = ncio_def_var(&f, "vertex_test_loss", NC_DOUBLE, 1, &dv, "mean test NLL at the vertex after BN refresh", "nats", &v[V_VLOSS]);
    if (!st) st = ncio_def_var(&f, "vertex_test_err", NC_DOUBLE, 1, &dv, "test error at the vertex after BN refresh", "1", &v[V_VERR]);
    int d3[2] = {dsx, dsv};
    if (!st) st = ncio_def_var(&f, "simplex_vertices", NC_INT, 2, d3, "vertices (index into vertex) of each simplex", "1", &v[V_SV]);
    if (!st) st = ncio_def_var(&f, "simplex_component", NC_INT, 1, &dsx, "component of the simplex", "1", &v[V_SCOMP]);
    if (!st) st = ncio_def_var(&f, "volume", NC_DOUBLE, 1, &dsx, "(n-1)-dimensional volume of the simplex (Cayley-Menger)", "1", &v[V_VOL]);
    if (!st) st = ncio_def_var(&f, "volume_squared", NC_DOUBLE, 1, &dsx,
                               "|det CM| / ((n-1)!^2 2^(n-1)): the squared volume, the reference code's total_volume()", "1", &v[V_VOL2]);
    if (!st) st = ncio_def_var(&f, "point_component", NC_INT, 1, &dpt, "component of the sampled point", "1", &v[V_PCOMP]);
    if (!st) st = ncio_def_var(&f, "point_simplex", NC_INT, 1, &dpt, "simplex (index into simplex) of the sampled point", "1", &v[V_PSIMP]);
    int d4[2] = {dpt, dsv};
    if (!st) st = ncio_def_var(&f, "point_weights", NC_DOUBLE, 2, d4, "Dirichlet(1) weights over the simplex's vertices (order of simplex_vertices)", "1", &v[V_PW]);
    if (!st) st = ncio_def_var(&f, "point_test_loss", NC_DOUBLE, 1, &dpt, "mean test NLL at the sampled point after BN refresh", "nats", &v[V_PLOSS]);
    if (!st) st = ncio_def_var(&f, "point_test_err", NC_DOUBLE, 1, &dpt, "test error at the sampled point after BN refresh", "1", &v[V_PERR]);
    const char *mn[NCM] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *ml[NCM] = {"test accuracy", "mean test negative log-likelihood", "expected calibration error, 15 equal-width bins",
                           "expected calibration error, 20 equal-count bins", "Brier score (sum over classes, mean over examples)",
                           "mean predictive entropy"};
    const char *mu[NCM] = {"1", "nats", "1", "1", "1", "nats"};
    for (int i = 0; i < NCM && !st; i++) {
        char nm[64], ln[200];
        snprintf(nm, sizeof nm, "component_%s", mn[i]);
        snprintf(ln, sizeof ln, "%s of the model average over the component's sampled points", ml[i]);
        st = ncio_def_var(&f, nm, NC_DOUBLE, 1, &dc, ln, mu[i], &v[V_CACC + i]);
    }
    for (int i = 0; i < NCM && !st; i++) {
        char ln[200];
        snprintf(ln, sizeof ln, "%s of the model average over all sampled points of all components (ESPRO)", ml[i]);
        st = ncio_def_var(&f, mn[i], NC_DOUBLE, 0, NULL, ln, mu[i], &v[V_ACC + i]);
    }
    if (!st) st = ncio_def_var(&f, "bin_lower", NC_DOUBLE, 1, &db, "lower confidence edge of the bin", "1", &v[V_BLO]);
    if (!st) st = ncio_def_var(&f, "bin_upper", NC_DOUBLE, 1, &db, "upper confidence edge of the bin", "1", &v[V_BHI]);
    if (!st) st = ncio_def_var(&f, "bin_accuracy", NC_DOUBLE, 1, &db, "accuracy in the bin, ensemble (NaN if empty)", "1", &v[V_BACC]);
    if (!st) st = ncio_def_var(&f, "bin_confidence", NC_DOUBLE, 1, &db, "mean confidence in the bin, ensemble (NaN if empty)", "1", &v[V_BCONF]);
    if (!st) st = ncio_def_var(&f, "bin_count", NC_INT64, 1, &db, "examples in the bin", "1", &v[V_BCNT]);
    if (!st && dcon >= 0) {
        st = ncio_def_var(&f, "lambda", NC_DOUBLE, 1, &dcon, "volume weight lambda while training connector k (simplexes of k+1 vertices)", "1", &v[V_LAM]);
        if (!st) st = ncio_def_var(&f, "volume_init", NC_DOUBLE, 1, &dcon,
                                   "V_init: squared volume of k+1 independently initialised networks", "1", &v[V_VINIT]);
    }
    if (!st && dep >= 0) {
        int dh[3] = {dc, dcon, dep};
        st = ncio_def_var(&f, "epoch_train_loss", NC_DOUBLE, 3, dh, "mean training loss of the sampled points over the epoch", "nats", &v[V_HLOSS]);
        if (!st) st = ncio_def_var(&f, "epoch_train_acc", NC_DOUBLE, 3, dh, "training accuracy of the sampled points over the epoch", "1", &v[V_HACC]);
        if (!st) st = ncio_def_var(&f, "epoch_volume", NC_DOUBLE, 3, dh, "volume at the end of the epoch (mean over the component's simplexes)", "1", &v[V_HVOL]);
    }
    if (!st && pl->n > 0) {
        int dg[2] = {dpy, dpx};
        st = ncio_def_var(&f, "plane_x", NC_DOUBLE, 1, &dpx, "plane coordinate along vertex 2 - vertex 1 (parameter distance)", "1", &v[V_PX]);
        if (!st) st = ncio_def_var(&f, "plane_y", NC_DOUBLE, 1, &dpy, "plane coordinate orthogonal to it, towards vertex 3", "1", &v[V_PY]);
        if (!st) st = ncio_def_var(&f, "plane_test_loss", NC_DOUBLE, 2, dg, "mean test NLL over the plane of the first simplex (BN refreshed)", "nats", &v[V_PLL]);
        if (!st) st = ncio_def_var(&f, "plane_test_err", NC_DOUBLE, 2, dg, "test error over the plane of the first simplex (BN refreshed)", "1", &v[V_PLE]);
        if (!st) st = ncio_def_var(&f, "plane_vertex_x", NC_DOUBLE, 1, &dpv, "plane x of the simplex's vertices", "1", &v[V_PVX]);
        if (!st) st = ncio_def_var(&f, "plane_vertex_y", NC_DOUBLE, 1, &dpv, "plane y of the simplex's vertices", "1", &v[V_PVY]);
        if (!st) st = ncio_def_var(&f, "plane_vertex_index", NC_INT, 1, &dpv, "the vertices (index into vertex)", "1", &v[V_PVI]);
    }
    if (!st) st = ncio_enddef(&f);
    /* vertices, one at a time (no second copy of the whole array) */
    for (int i = 0; i < NV && !st; i++) {
        size_t start[2] = {(size_t)i, 0}, count[2] = {1, x->np};
        st = ncio_check(nc_put_vara_float(f.ncid, v[V_VERT], start, count, x->theta + (size_t)i * x->np), VL_EIO, path, "vertices");
    }
    int *iv = calloc((size_t)(NV + NS * x->nv + NP + NS) + 1, sizeof(int));
    signed char *fx = calloc((size_t)NV + 1, 1);
    double *dd = calloc((size_t)(2 * NS + NP + K) + 1, sizeof(double));
    if (!st && (!iv || !fx || !dd)) st = VL_FAIL(VL_EIO, "out of memory");
    if (!st) {
        for (int i = 0; i < NV; i++) { iv[i] = i / x->nvc; fx[i] = (signed char)(i % x->nvc < x->nm); }
        st = ncio_check(nc_put_var_int(f.ncid, v[V_VCOMP], iv), VL_EIO, path, "vertex_component");
        if (!st) st = ncio_check(nc_put_var_schar(f.ncid, v[V_VFIX], fx), VL_EIO, path, "vertex_fixed");
    }
    if (!st) st = put_d(&f, v[V_VLOSS], x->vert_loss, "vertex_test_loss");
    if (!st) st = put_d(&f, v[V_VERR], x->vert_err, "vertex_test_err");
    if (!st) {
        for (int s = 0; s < NS; s++) {
            int idx[SIMPLEX_MAX_VERTICES], comp = s / x->nm;
            simplex_members(x, s % x->nm, x->nconn, idx);
            for (int i = 0; i < x->nv; i++) iv[s * x->nv + i] = comp * x->nvc + idx[i];
        }
        st = ncio_check(nc_put_var_int(f.ncid, v[V_SV], iv), VL_EIO, path, "simplex_vertices");
        for (int s = 0; s < NS; s++) iv[s] = s / x->nm;
        if (!st) st = ncio_check(nc_put_var_int(f.ncid, v[V_SCOMP], iv), VL_EIO, path, "simplex_component");
        for (int s = 0; s < NS; s++) { dd[s] = sqrt(x->vol2[s]); dd[NS + s] = x->vol2[s]; }
        if (!st) st = put_d(&f, v[V_VOL], dd, "volume");
        if (!st) st = put_d(&f, v[V_VOL2], dd + NS, "volume_squared");
        for (int p = 0; p < NP; p++) iv[p] = p / x->E;
        if (!st) st = ncio_check(nc_put_var_int(f.ncid, v[V_PCOMP], iv), VL_EIO, path, "point_component");
        for (int p = 0; p < NP; p++) iv[p] = (p / x->E) * x->nm + x->pt_simplex[p];
        if (!st) st = ncio_check(nc_put_var_int(f.ncid, v[V_PSIMP], iv), VL_EIO, path, "point_simplex");
    }
    if (!st) st = put_d(&f, v[V_PW], x->pt_w, "point_weights");
    if (!st) st = put_d(&f, v[V_PLOSS], x->pt_loss, "point_test_loss");
    if (!st) st = put_d(&f, v[V_PERR], x->pt_err, "point_test_err");
    for (int i = 0; i < NCM && !st; i++) {
        for (int k = 0; k < K; k++) dd[k] = x->comp_m[(size_t)k * NCM + i];
        st = put_d(&f, v[V_CACC + i], dd, mn[i]);
    }
    double e6[NCM] = {ens->accuracy, ens->nll, ens->ece, ens->ece_count, ens->brier, ens->entropy};
    for (int i = 0; i < NCM && !st; i++) st = put_d(&f, v[V_ACC + i], &e6[i], mn[i]);
    if (!st) st = put_d(&f, v[V_BLO], ens->bin_lo, "bin_lower");
    if (!st) st = put_d(&f, v[V_BHI], ens->bin_hi, "bin_upper");
    if (!st) st = put_d(&f, v[V_BACC], ens->bin_acc, "bin_accuracy");
    if (!st) st = put_d(&f, v[V_BCONF], ens->bin_conf, "bin_confidence");
    long long cnt[METRICS_BINS_WIDTH];
    for (int b = 0; b < METRICS_BINS_WIDTH; b++) cnt[b] = ens->bin_count[b];
    if (!st) st = ncio_check(nc_put_var_longlong(f.ncid, v[V_BCNT], cnt), VL_EIO, path, "bin_count");
    if (!st && v[V_LAM] >= 0) st = put_d(&f, v[V_LAM], x->lambda + 2, "lambda");
    if (!st && v[V_VINIT] >= 0) st = put_d(&f, v[V_VINIT], x->vinit + 2, "volume_init");
    if (!st && v[V_HLOSS] >= 0) st = put_d(&f, v[V_HLOSS], x->hist_loss, "epoch_train_loss");
    if (!st && v[V_HACC] >= 0) st = put_d(&f, v[V_HACC], x->hist_acc, "epoch_train_acc");
    if (!st && v[V_HVOL] >= 0) st = put_d(&f, v[V_HVOL], x->hist_vol, "epoch_volume");
    if (!st && pl->n > 0) {
        st = put_d(&f, v[V_PX], pl->gx, "plane_x");
        if (!st) st = put_d(&f, v[V_PY], pl->gy, "plane_y");
        if (!st) st = put_d(&f, v[V_PLL], pl->loss, "plane_test_loss");
        if (!st) st = put_d(&f, v[V_PLE], pl->err, "plane_test_err");
        if (!st) st = put_d(&f, v[V_PVX], pl->vx, "plane_vertex_x");
        if (!st) st = put_d(&f, v[V_PVY], pl->vy, "plane_vertex_y");
        if (!st) st = ncio_check(nc_put_var_int(f.ncid, v[V_PVI], pl->vidx), VL_EIO, path, "plane_vertex_index");
    }
    free(iv);
    free(fx);
    free(dd);
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* ---------------------------------------------------------------- command */

static void sx_free(sx_t *x)
{
    free(x->theta); free(x->buf); free(x->D);
    free(x->hist_loss); free(x->hist_acc); free(x->hist_vol);
    free(x->vert_loss); free(x->vert_err); free(x->pt_loss); free(x->pt_err); free(x->pt_simplex); free(x->pt_w);
    free(x->comp_sum); free(x->comp_m); free(x->vol2); free(x->probs);
}

/* After a phase the groups did on their own: every rank learns whether one failed. The
 * leader of a failing group other than world rank 0's prints its message (main prints only
 * world rank 0's). Collective over the world. */
static int agree(const sx_t *x, int st)
{
    if (st && x->c->rank != 0 && x->c->grank == 0) {
        fprintf(stderr, "valley: group %d: %s\n", x->c->group_id, vl_error_message());
        fflush(stderr);
    }
    return comm_agree_failure(x->c->world, st);
}

static int run(sx_t *x, int ninputs, char **inputs, const char *outdir)
{
    vl_comm_t *c = x->c;
    vl_job_t *j = x->j;
    const int K = x->K;
    const size_t nvert = (size_t)K * x->nvc, NP = (size_t)K * x->E;
    const int64_t nloc = j->test.hi - j->test.lo;
    const size_t P = (size_t)nloc * j->cfg.out_dim;
    size_t total;
    if (vl_mul_size(nvert, x->np, &total)) return VL_FAIL_ALL(VL_EINPUT, "simplex: too many vertices");
    x->theta = vl_calloc(total + 1, sizeof(float), "simplex vertices");
    x->buf = vl_calloc(x->np + 1, sizeof(float), "momentum");
    x->D = vl_calloc((size_t)x->nvc * x->nvc, sizeof(double), "squared distances");
    size_t nh = (size_t)K * (x->nconn ? x->nconn : 1) * (x->epochs ? x->epochs : 1);
    x->hist_loss = vl_calloc(nh, sizeof(double), "history");
    x->hist_acc = vl_calloc(nh, sizeof(double), "history");
    x->hist_vol = vl_calloc(nh, sizeof(double), "history");
    x->vert_loss = vl_calloc(nvert, sizeof(double), "vertex metrics");
    x->vert_err = vl_calloc(nvert, sizeof(double), "vertex metrics");
    x->pt_loss = vl_calloc(NP, sizeof(double), "point metrics");
    x->pt_err = vl_calloc(NP, sizeof(double), "point metrics");
    x->pt_simplex = vl_calloc(NP, sizeof(int), "point simplexes");
    x->pt_w = vl_calloc(NP * x->nv, sizeof(double), "point weights");
    x->comp_sum = vl_calloc((size_t)K * P + 1, sizeof(double), "component probabilities");
    x->comp_m = vl_calloc((size_t)K * NCM, sizeof(double), "component metrics");
    x->vol2 = vl_calloc((size_t)K * x->nm, sizeof(double), "volumes");
    x->probs = vl_calloc(P + 1, sizeof(float), "probabilities");
    if (!x->theta || !x->buf || !x->D || !x->hist_loss || !x->hist_acc || !x->hist_vol || !x->vert_loss ||
        !x->vert_err || !x->pt_loss || !x->pt_err || !x->pt_simplex || !x->pt_w || !x->comp_sum || !x->comp_m || !x->vol2 ||
        !x->probs)
        return vl_error_status();
    /* the modes: read once, copied into every component (their BN state is not used) */
    int st = VL_OK;
    for (int i = 0; i < ninputs && !st; i++) st = ckpt_read(inputs[i], j->model, vert(x, 0, i), j->state, NULL, NULL);
    CHECK(comm_agree_failure(c->world, st));
    for (int k = 1; k < K; k++) memcpy(vert(x, k, 0), vert(x, 0, 0), (size_t)x->nm * x->np * sizeof(float));
    CHECK(compute_lambdas(x));
    vl_log(c->world, "%s: %d component(s) of %d %s (%d mode(s), %d connector(s) each), %d group(s); training %d epochs "
                     "per vertex with %d samples per batch on %lld training samples",
           x->nm > 1 ? "mode-connecting complex" : "SPRO simplex", K, x->nm, x->nm > 1 ? "simplexes" : "simplex",
           x->nm, x->nconn, c->ngroups, x->epochs, x->S, (long long)j->train.n);
    /* training */
    const int was_graceful = signals_graceful(1); /* a signal stops training at a step (exit 143) */
    for (int comp = c->group_id; comp < K && !st; comp += c->ngroups) st = train_component(x, comp);
    signals_graceful(was_graceful);
    /* a group that failed (non-finite loss, signal) must not leave the others in the broadcast */
    CHECK(agree(x, st));
    /* every group gets every component's vertices */
    for (int comp = 0; comp < K && c->ngroups > 1; comp++) {
        size_t n = (size_t)x->nvc * x->np;
        if (n > 2147483647u) return VL_FAIL_ALL(VL_EINPUT, "simplex: a component is too large to broadcast");
        MPI_Bcast(vert(x, comp, 0), (int)n, MPI_FLOAT, comp % c->ngroups, c->cross);
    }
    /* volumes */
    for (int comp = 0; comp < K; comp++)
        for (int s = 0; s < x->nm; s++) {
            int idx[SIMPLEX_MAX_VERTICES];
            const float *p[SIMPLEX_MAX_VERTICES];
            double Ds[SIMPLEX_MAX_VERTICES * SIMPLEX_MAX_VERTICES];
            int n = simplex_members(x, s, x->nconn, idx);
            for (int i = 0; i < n; i++) p[i] = vert(x, comp, idx[i]);
            if (n == 1) { x->vol2[comp * x->nm + s] = 0.0; continue; } /* a point: no volume */
            simplex_distances(n, x->np, p, Ds);
            CHECK(simplex_volume_sq(n, Ds, &x->vol2[comp * x->nm + s]));
        }
    /* evaluation draws (all ranks, cheap) */
    for (int comp = 0; comp < K; comp++)
        for (int s = 0; s < x->E; s++) {
            size_t g = (size_t)comp * x->E + (size_t)s;
            eval_draw(x, comp, s, &x->pt_simplex[g], x->pt_w + g * x->nv);
        }
    int mine = 0, done = 0;
    for (int comp = c->group_id; comp < K; comp += c->ngroups) mine += x->E;
    double t0 = vl_now();
    for (int comp = c->group_id; comp < K && !st; comp += c->ngroups) st = evaluate_component(x, comp, &t0, &done, mine);
    CHECK(agree(x, st));
    sum_groups(x, x->vert_loss, nvert);
    sum_groups(x, x->vert_err, nvert);
    sum_groups(x, x->pt_loss, NP);
    sum_groups(x, x->pt_err, NP);
    sum_groups(x, x->comp_m, (size_t)K * NCM);
    if (x->nconn && x->epochs) {
        size_t nhh = (size_t)K * x->nconn * x->epochs;
        sum_groups(x, x->hist_loss, nhh);
        sum_groups(x, x->hist_acc, nhh);
        sum_groups(x, x->hist_vol, nhh);
    }
    /* the ensemble: component sums added in component order */
    double *ens = vl_calloc(P + 1, sizeof(double), "ensemble");
    if (!ens) return vl_error_status();
    for (int comp = 0; comp < K; comp++) {
        double *cs = x->comp_sum + (size_t)comp * P;
        sum_groups(x, cs, P);
        for (size_t i = 0; i < P; i++) ens[i] += cs[i];
    }
    for (size_t i = 0; i < P; i++) x->probs[i] = (float)(ens[i] / (double)NP);
    free(ens);
    vl_class_metrics_t em;
    CHECK(metrics_classification(x->probs, j->test.y, nloc, j->cfg.out_dim, j->test.lo, j->gcomm, &em));
    plane_t pl;
    memset(&pl, 0, sizeof pl);
    if (x->grid > 0) st = plane_grid(x, &pl);
    /* summary */
    if (!st) {
        for (int comp = 0; comp < K; comp++) {
            double mn = 1, mx = 0, mean = 0;
            for (int s = 0; s < x->E; s++) {
                double e = x->pt_err[(size_t)comp * x->E + s];
                mn = e < mn ? e : mn;
                mx = e > mx ? e : mx;
                mean += e / x->E;
            }
            double base = x->vert_err[(size_t)comp * x->nvc];
            vl_log(c->world, "component %d: input vertex test err %.4f | %d sampled points: err min %.4f mean %.4f max %.4f | "
                             "volume %.4g | BMA acc %.4f nll %.4f", comp, base, x->E, mn, mean, mx,
                   sqrt(x->vol2[(size_t)comp * x->nm]), x->comp_m[(size_t)comp * NCM + CM_ACC],
                   x->comp_m[(size_t)comp * NCM + CM_NLL]);
        }
        vl_log(c->world, "ensemble of %zu points from %d component(s): accuracy %.4f  nll %.4f  ece %.4f  brier %.4f", NP, K,
               em.accuracy, em.nll, em.ece, em.brier);
    }
    char path[8400];
    snprintf(path, sizeof path, "%s/simplex.nc", outdir);
    if (!st && c->rank == 0) st = write_simplex(x, path, ninputs, inputs, &em, &pl);
    if (!st) vl_log(c->world, "wrote %s", path);
    free(pl.gx); free(pl.gy); free(pl.loss); free(pl.err);
    return st;
}

int simplex_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs < 1)
        return VL_FAIL_ALL(VL_EINPUT, "simplex: give MODEL.nc (a simplex around it) or several MODEL.nc (a complex connecting them)");
    const int V = (int)deck_int(d, "simplex.vertices"), grid = (int)deck_int(d, "simplex.grid");
    if (V > SIMPLEX_MAX_VERTICES) return VL_FAIL_ALL(VL_EINPUT, "simplex.vertices: at most %d", SIMPLEX_MAX_VERTICES);
    if (grid > 0 && V != 3)
        return VL_FAIL_ALL(VL_EINPUT, "simplex.grid: the plane grid needs 3-vertex simplexes (simplex.vertices = 3, not %d)", V);
    if (grid == 1) return VL_FAIL_ALL(VL_EINPUT, "simplex.grid: 1 point is not a grid (0 = none, or at least 2)");
    if (ninputs > 1 && V < 2)
        return VL_FAIL_ALL(VL_EINPUT, "simplex.vertices: a complex connecting %d models needs at least one connector (>= 2)", ninputs);
    if (ninputs + V - 1 > SIMPLEX_MAX_VERTICES)
        return VL_FAIL_ALL(VL_EINPUT, "simplex: %d model(s) and %d connector(s): at most %d vertices per component", ninputs,
                           V - 1, SIMPLEX_MAX_VERTICES);
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(ckpt_read_configs(c->world, ninputs, inputs, &cfg, dataset));
    CHECK(comm_agree_failure(c->world, c->rank == 0 ? ncio_mkdirs(outdir) : VL_OK));
    vl_job_t j;
    CHECK(job_open(&j, c, d, &cfg, dataset, inputs[0]));
    int st = j.test.classification ? VL_OK : VL_FAIL_ALL(VL_EINPUT, "simplex: classification datasets only");
    sx_t x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.j = &j;
    x.d = d;
    x.np = j.np;
    x.K = (int)deck_int(d, "simplex.components");
    if (x.K == 0) x.K = c->ngroups;
    x.nm = ninputs;
    x.nconn = V - 1;
    x.nvc = x.nm + x.nconn;
    x.nv = V;
    x.S = (int)deck_int(d, "simplex.samples");
    x.E = (int)deck_int(d, "simplex.eval_samples");
    x.epochs = (int)deck_int(d, "simplex.epochs");
    x.grid = grid;
    x.lr0 = deck_double(d, "simplex.lr");
    x.wd = deck_double(d, "simplex.wd");
    x.lmbd = deck_double(d, "simplex.lmbd");
    x.momentum = deck_double(d, "train.momentum");
    x.subset = deck_double(d, "eval.bn_subset");
    x.seed = (uint64_t)deck_int(d, "run.seed");
    if (!st) st = run(&x, ninputs, inputs, outdir);
    sx_free(&x);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}

/* ----------------------------------------------------------------- plot */

static double *read_var(int ncid, const char *name, size_t *n)
{
    int v, nd, dims[4];
    if (nc_inq_varid(ncid, name, &v) != NC_NOERR || nc_inq_varndims(ncid, v, &nd) != NC_NOERR || nd < 1 || nd > 4)
        return NULL;
    nc_inq_vardimid(ncid, v, dims);
    size_t tot = 1;
    for (int i = 0; i < nd; i++) {
        size_t l;
        nc_inq_dimlen(ncid, dims[i], &l);
        tot *= l;
    }
    double *x = calloc(tot + 1, sizeof(double));
    if (x && nc_get_var_double(ncid, v, x) != NC_NOERR) { free(x); return NULL; }
    *n = tot;
    return x;
}

static void plot_name(char *buf, size_t len, const char *path, const char *outdir, const char *suffix)
{
    const char *slash = strrchr(path, '/');
    const char *stem = slash ? slash + 1 : path;
    char s[1024];
    snprintf(s, sizeof s, "%s", stem);
    char *dot = strrchr(s, '.');
    if (dot) *dot = 0;
    if (outdir) snprintf(buf, len, "%s/%s%s.png", outdir, s, suffix);
    else if (slash) snprintf(buf, len, "%.*s/%s%s.png", (int)(slash - path), path, s, suffix);
    else snprintf(buf, len, "%s%s.png", s, suffix);
}

int simplex_plot(const char *path, const char *outdir)
{
    int ncid, v;
    if (outdir) CHECK(ncio_mkdirs(outdir));
    CHECK(ncio_open(path, &ncid));
    if (nc_inq_varid(ncid, "vertex_component", &v) != NC_NOERR || nc_inq_varid(ncid, "point_weights", &v) != NC_NOERR) {
        nc_close(ncid);
        return VL_FAIL(VL_EINPUT, "%s: not a simplex.nc (no vertex_component / point_weights)", path);
    }
    size_t n1, n2, npt, nsv, nvx, nv;
    double *px = read_var(ncid, "plane_x", &n1), *py = read_var(ncid, "plane_y", &n2);
    double *pw = read_var(ncid, "point_weights", &npt), *psx = read_var(ncid, "point_simplex", &n1);
    double *pe = read_var(ncid, "point_test_err", &n1), *ve = read_var(ncid, "vertex_test_err", &nv);
    double *vc = read_var(ncid, "vertex_component", &nv), *pc = read_var(ncid, "point_component", &n1);
    double *sv = read_var(ncid, "simplex_vertices", &nsv);
    int dim;
    size_t nsimp = 0;
    if (nc_inq_dimid(ncid, "simplex", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &nsimp);
    size_t ssize = nsimp ? nsv / nsimp : 0, np = ssize ? npt / ssize : 0;
    int st = (pw && psx && pe && ve && vc && pc && sv && ssize) ? VL_OK : VL_FAIL(VL_EINPUT, "%s: incomplete simplex.nc", path);
    char out[8400];
    /* the plane of the first simplex */
    if (!st && px && py) {
        size_t nx, ny, nvv;
        nc_inq_dimid(ncid, "plane_x", &dim); nc_inq_dimlen(ncid, dim, &nx);
        nc_inq_dimid(ncid, "plane_y", &dim); nc_inq_dimlen(ncid, dim, &ny);
        double *vxx = read_var(ncid, "plane_vertex_x", &nvx), *vyy = read_var(ncid, "plane_vertex_y", &nvv);
        double *pi = read_var(ncid, "plane_vertex_index", &nvv);
        double tx[4], ty[4];
        fig_point_t pts[3 + 4096];
        int npts = 0;
        if (!vxx || !vyy || !pi) st = VL_FAIL(VL_EINPUT, "%s: incomplete plane description", path);
        if (!st) {
            for (int i = 0; i < 4; i++) { tx[i] = vxx[i % 3]; ty[i] = vyy[i % 3]; }
            static const char *lbl[3] = {"vertex 1 (input)", "vertex 2", "vertex 3"};
            for (int i = 0; i < 3; i++) pts[npts++] = (fig_point_t){vxx[i], vyy[i], lbl[i]};
            /* the sampled points of simplex 0: the weights are over its vertices, whose plane coordinates we have */
            for (size_t p = 0; p < np && npts < 3 + 4096; p++) {
                if ((int)psx[p] != 0) continue;
                double X = 0, Y = 0;
                for (int i = 0; i < 3; i++) { X += pw[p * ssize + i] * vxx[i]; Y += pw[p * ssize + i] * vyy[i]; }
                pts[npts++] = (fig_point_t){X, Y, NULL};
            }
        }
        fig_polyline_t tri = {tx, ty, 4, "simplex"};
        const char *q[2] = {"plane_test_err", "plane_test_loss"};
        const char *sfx[2] = {"_plane_err", "_plane_loss"};
        const char *zl[2] = {"test error", "test NLL (nats)"};
        const char *tt[2] = {"test error over the plane of the simplex (BN refreshed per point)",
                             "test loss over the plane of the simplex (BN refreshed per point)"};
        for (int k = 0; k < 2 && !st; k++) {
            size_t nz;
            double *z = read_var(ncid, q[k], &nz);
            if (!z || nz != nx * ny) { free(z); st = VL_FAIL(VL_EINPUT, "%s: %s", path, q[k]); break; }
            fig_axes_t ax = {.title = tt[k], .xlabel = "distance along vertex 2 - vertex 1",
                             .ylabel = "distance towards vertex 3"};
            plot_name(out, sizeof out, path, outdir, sfx[k]);
            st = fig_contour(out, &ax, px, (int)nx, py, (int)ny, z, NULL, 12, k == 1, pts, npts, &tri, 1, zl[k]);
            if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
            free(z);
        }
        free(vxx); free(vyy); free(pi);
    }
    /* test error of the vertices and the sampled points, per component */
    if (!st) {
        size_t K = 0;
        if (nc_inq_dimid(ncid, "component", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &K);
        if (K > 8) K = 8;
        fig_series_t s[16];
        double *xs = calloc(np + 2 * K + 1, sizeof(double)), *ys = calloc(np + 2 * K + 1, sizeof(double));
        char lab[16][64];
        int ns = 0;
        size_t off = 0;
        for (size_t k = 0; k < K && xs && ys; k++) {
            size_t a = off;
            for (size_t p = 0; p < np; p++)
                if ((size_t)pc[p] == k) { xs[off] = (double)(off - a) + 1; ys[off] = pe[p]; off++; }
            snprintf(lab[ns], sizeof lab[ns], "component %zu: sampled points", k);
            s[ns] = (fig_series_t){.x = xs + a, .y = ys + a, .n = (int)(off - a), .label = lab[ns], .style = FIG_MARKERS,
                                   .color = (int)k + 1};
            ns++;
            /* the input vertex (vertex 0 of the component): a dashed line over the points */
            size_t b = off, first = 0;
            while (first < nv && (size_t)vc[first] != k) first++;
            if (first < nv) {
                xs[off] = 1; ys[off] = ve[first]; off++;
                xs[off] = (double)(b - a > 1 ? b - a : 2); ys[off] = ve[first]; off++;
            }
            snprintf(lab[ns], sizeof lab[ns], "component %zu: input vertex", k);
            s[ns] = (fig_series_t){.x = xs + b, .y = ys + b, .n = (int)(off - b), .label = lab[ns], .style = FIG_DASHED,
                                   .color = (int)k + 1};
            ns++;
        }
        if (!xs || !ys) st = VL_FAIL(VL_EIO, "out of memory");
        fig_axes_t ax = {.title = "test error at the sampled points and at the input vertex (BN refreshed)",
                         .xlabel = "sampled point", .ylabel = "test error"};
        plot_name(out, sizeof out, path, outdir, "_points");
        if (!st) st = fig_lines(out, &ax, s, ns);
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
        free(xs);
        free(ys);
    }
    /* reliability of the ensemble */
    if (!st) {
        size_t nb;
        double *lo = read_var(ncid, "bin_lower", &nb), *hi = read_var(ncid, "bin_upper", &nb);
        double *acc = read_var(ncid, "bin_accuracy", &nb), *conf = read_var(ncid, "bin_confidence", &nb);
        double *cntd = read_var(ncid, "bin_count", &nb);
        double ece = NAN;
        if (nc_inq_varid(ncid, "ece", &v) == NC_NOERR) nc_get_var_double(ncid, v, &ece);
        long long cnt[64];
        if (lo && hi && acc && conf && cntd && nb <= 64) {
            for (size_t b = 0; b < nb; b++) cnt[b] = (long long)cntd[b];
            fig_reliability_t r = {.name = "simplex ensemble", .nbins = (int)nb, .bin_lo = lo, .bin_hi = hi, .acc = acc,
                                   .conf = conf, .count = cnt, .ece = ece};
            plot_name(out, sizeof out, path, outdir, "_reliability");
            st = fig_reliability(out, &r, 1, "reliability of the simplex ensemble");
            if (!st) vl_log(MPI_COMM_SELF, "wrote %s", out);
        }
        free(lo); free(hi); free(acc); free(conf); free(cntd);
    }
    free(px); free(py); free(pw); free(psx); free(pe); free(ve); free(vc); free(pc); free(sv);
    nc_close(ncid);
    return st;
}
