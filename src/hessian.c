/* hessian.c — Lanczos with full reorthogonalisation over a group, stochastic Lanczos
 * quadrature, the Hessian of a job's training loss and `valley hessian` (hessian.h). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/ckpt.h"
#include "valley/curve.h"
#include "valley/data.h"
#include "valley/error.h"
#include "valley/hessian.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/rng.h"
#include "valley/train.h"

#define HESSIAN_TITLE "valley Hessian spectrum"

/* ------------------------------------------------------------------ Lanczos */

void lanczos_free(vl_lanczos_t *l)
{
    free(l->alpha); free(l->beta); free(l->ritz); free(l->weight); free(l->bound);
    memset(l, 0, sizeof *l);
}

static int lanczos_alloc(vl_lanczos_t *l, int steps)
{
    memset(l, 0, sizeof *l);
    const size_t n = (size_t)(steps > 0 ? steps : 1);
    l->alpha = calloc(n, sizeof(double));
    l->beta = calloc(n, sizeof(double));
    l->ritz = calloc(n, sizeof(double));
    l->weight = calloc(n, sizeof(double));
    l->bound = calloc(n, sizeof(double));
    if (!l->alpha || !l->beta || !l->ritz || !l->weight || !l->bound) {
        lanczos_free(l);
        return VL_FAIL(VL_EIO, "out of memory for the Lanczos coefficients");
    }
    return VL_OK;
}

int lanczos_ritz(vl_lanczos_t *l)
{
    const int m = l->steps;
    if (m < 1) return VL_OK;
    double *d = malloc((size_t)m * sizeof(double)), *e = malloc((size_t)m * sizeof(double));
    double *z = malloc((size_t)m * m * sizeof(double));
    if (!d || !e || !z) { free(d); free(e); free(z); return VL_FAIL(VL_EIO, "out of memory for the Ritz values"); }
    memcpy(d, l->alpha, (size_t)m * sizeof(double));
    memcpy(e, l->beta, (size_t)m * sizeof(double));
    const int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, d, e, z, m);
    if (info) {
        free(d); free(e); free(z);
        return VL_FAIL(VL_ENUM, "Lanczos: the tridiagonal eigensolver (LAPACK dstev) failed (info %d)", info);
    }
    for (int i = 0; i < m; i++) {
        l->ritz[i] = d[i];
        l->weight[i] = z[(size_t)i * m] * z[(size_t)i * m];
        l->bound[i] = fabs(l->beta[m - 1] * z[(size_t)i * m + m - 1]);
    }
    free(d); free(e); free(z);
    return VL_OK;
}

int lanczos_run(MPI_Comm g, size_t np, vl_hop_fn op, void *ctx, double scale, int steps, uint64_t seed, uint64_t stream,
                const char *label, vl_lanczos_t *out)
{
    int rank, P;
    MPI_Comm_rank(g, &rank);
    MPI_Comm_size(g, &P);
    if (np > (size_t)2147483647) return VL_FAIL_ALL(VL_EINPUT, "Lanczos: %zu parameters exceed MPI's int counts", np);
    if (steps < 1) steps = 1;
    if ((size_t)steps > np) steps = (int)np; /* at most np orthogonal directions */
    CHECK(lanczos_alloc(out, steps));
    const size_t lo = np * (size_t)rank / (size_t)P, hi = np * (size_t)(rank + 1) / (size_t)P, cnt = hi - lo;
    int *counts = malloc((size_t)P * sizeof(int)), *displs = malloc((size_t)P * sizeof(int));
    double *Q = malloc(((size_t)(steps + 1) * cnt + 1) * sizeof(double));
    double *full = malloc((np + 1) * sizeof(double)), *hv = malloc((np + 1) * sizeof(double));
    double *wv = malloc((cnt + 1) * sizeof(double)), *cf = malloc(((size_t)steps + 2) * sizeof(double));
    float *v = malloc((np + 1) * sizeof(float));
    int st = counts && displs && Q && full && hv && wv && cf && v ? VL_OK
             : VL_FAIL(VL_EIO, "out of memory for the Lanczos vectors (%.0f MB on this rank)",
                       ((steps + 1.0) * cnt * 8 + np * 20.0) / 1e6);
    st = comm_agree_failure(g, st);
    if (!st) {
        for (int r = 0; r < P; r++) {
            const size_t a = np * (size_t)r / (size_t)P, b = np * (size_t)(r + 1) / (size_t)P;
            counts[r] = (int)(b - a);
            displs[r] = (int)a;
        }
        /* the start vector: Rademacher signs in parameter order from (seed, stream), all ranks alike */
        vl_rng_t r;
        rng_init(&r, seed, stream);
        const double inv = 1.0 / sqrt((double)np);
        for (size_t i = 0; i < np; i++) {
            const double s = (rng_u32(&r) & 1u) ? 1.0 : -1.0;
            if (i >= lo && i < hi) Q[i - lo] = s * inv;
        }
        out->norm2 = (double)np;
    }
    const double t0 = vl_now();
    double last_log = t0;
    int m = 0;
    for (int jstep = 0; jstep < steps && !st; jstep++) {
        double *qj = Q + (size_t)jstep * cnt;
        MPI_Allgatherv(qj, (int)cnt, MPI_DOUBLE, full, counts, displs, MPI_DOUBLE, g);
        for (size_t i = 0; i < np; i++) v[i] = (float)full[i];
        memset(hv, 0, np * sizeof(double));
        timer_start(TIMER_COMPUTE);
        st = op(ctx, v, hv);
        timer_stop(TIMER_COMPUTE);
        st = comm_agree_failure(g, st);
        if (st) break;
        timer_start(TIMER_ALLREDUCE);
        MPI_Reduce_scatter(hv, wv, counts, MPI_DOUBLE, MPI_SUM, g);
        timer_stop(TIMER_ALLREDUCE);
        for (size_t i = 0; i < cnt; i++) wv[i] *= scale;
        /* alpha_j = q_j . H q_j; w -= alpha_j q_j + beta_{j-1} q_{j-1} */
        double a = 0.0;
        for (size_t i = 0; i < cnt; i++) a += qj[i] * wv[i];
        MPI_Allreduce(MPI_IN_PLACE, &a, 1, MPI_DOUBLE, MPI_SUM, g);
        const double bprev = jstep ? out->beta[jstep - 1] : 0.0;
        const double *qp = jstep ? Q + (size_t)(jstep - 1) * cnt : NULL;
        for (size_t i = 0; i < cnt; i++) wv[i] -= a * qj[i] + (qp ? bprev * qp[i] : 0.0);
        /* full reorthogonalisation against q_0..q_j, twice (classical Gram-Schmidt) */
        for (int pass = 0; pass < 2; pass++) {
            const int k = jstep + 1;
            for (int q = 0; q < k; q++) cf[q] = 0.0;
            if (cnt) cblas_dgemv(CblasRowMajor, CblasNoTrans, k, (int)cnt, 1.0, Q, (int)cnt, wv, 1, 0.0, cf, 1);
            MPI_Allreduce(MPI_IN_PLACE, cf, k, MPI_DOUBLE, MPI_SUM, g);
            if (cnt) cblas_dgemv(CblasRowMajor, CblasTrans, k, (int)cnt, -1.0, Q, (int)cnt, cf, 1, 1.0, wv, 1);
            a += cf[jstep];
        }
        double b = 0.0;
        for (size_t i = 0; i < cnt; i++) b += wv[i] * wv[i];
        MPI_Allreduce(MPI_IN_PLACE, &b, 1, MPI_DOUBLE, MPI_SUM, g);
        b = sqrt(b);
        if (!isfinite(a) || !isfinite(b)) {
            st = VL_FAIL_ALL(VL_ENUM, "Lanczos step %d: the Hessian-vector product is not finite (the loss at these weights "
                                      "is not finite?)", jstep + 1);
            break;
        }
        out->alpha[jstep] = a;
        out->beta[jstep] = b;
        m = jstep + 1;
        double amax = 0.0;
        for (int q = 0; q <= jstep; q++) amax = fmax(amax, fabs(out->alpha[q]));
        if (b <= 1e-12 * fmax(amax, 1e-300)) break; /* an invariant subspace: the spectrum seen is exact */
        double *qn = Q + (size_t)(jstep + 1) * cnt;
        for (size_t i = 0; i < cnt; i++) qn[i] = wv[i] / b;
        const double now = vl_now();
        if (label && (now - last_log > 10.0 || jstep + 1 == steps)) {
            char eta[32];
            const double per = (now - t0) / (jstep + 1);
            vl_fmt_duration(per * (steps - jstep - 1), eta, sizeof eta);
            vl_log(g, "%s: Lanczos step %d of %d (%.2f s/product) | alpha %.6g beta %.6g | ETA %s", label, jstep + 1, steps,
                   per, a, b, eta);
            last_log = now;
        }
    }
    out->steps = m;
    out->quad = out->norm2 * out->alpha[0];
    out->seconds = vl_now() - t0;
    free(counts); free(displs); free(Q); free(full); free(hv); free(wv); free(cf); free(v);
    if (!st) st = lanczos_ritz(out);
    if (st) lanczos_free(out);
    return st;
}

/* ------------------------------------------------------------------ the job's Hessian */

int hess_init(vl_hess_t *hs, vl_job_t *j, int64_t samples)
{
    memset(hs, 0, sizeof hs[0]);
    hs->j = j;
    hs->n = samples > 0 && samples < j->train.n ? samples : j->train.n;
    hs->batch = j->batch > 0 ? j->batch : 128;
    if (!j->train.classification)
        return VL_FAIL_ALL(VL_EINPUT, "hessian: the Hessian of the cross-entropy needs a classification dataset, not %s",
                           j->dataset);
    if (hs->n < 1) return VL_FAIL_ALL(VL_EINPUT, "hessian: the training split is empty");
    /* the even share of [0, n) of each rank, from the rows each rank holds (its shard of the split) */
    const vl_split_t *s = &j->train;
    int P, r;
    MPI_Comm_size(j->gcomm, &P);
    MPI_Comm_rank(j->gcomm, &r);
    data_shard(hs->n, r, P, &hs->lo, &hs->hi);
    const int64_t mine = hs->hi - hs->lo, D = s->in_dim;
    hs->x = vl_alloc(((size_t)mine * D + 1) * sizeof(float), "the Hessian's samples");
    hs->y = vl_alloc(((size_t)mine + 1) * sizeof(int32_t), "the Hessian's labels");
    int *sc = calloc((size_t)P, sizeof(int)), *sd = calloc((size_t)P, sizeof(int)), *rc = calloc((size_t)P, sizeof(int)),
        *rd = calloc((size_t)P, sizeof(int));
    int st = hs->x && hs->y && sc && sd && rc && rd ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    if (!st && (int64_t)mine * D > 2147483647) st = VL_FAIL(VL_EINPUT, "hessian: too many samples per rank for one exchange");
    st = comm_agree_failure(j->gcomm, st);
    if (!st) {
        /* rows [a, b) of the split sit on rank q with shard [s_lo(q), s_hi(q)) */
        for (int q = 0; q < P; q++) {
            int64_t tl, th, ql, qh; /* q's target share; q's held shard */
            data_shard(hs->n, q, P, &tl, &th);
            data_shard(s->n, q, P, &ql, &qh);
            const int64_t sa = tl > s->lo ? tl : s->lo, sb = th < s->hi ? th : s->hi; /* what I send q */
            const int64_t ra = hs->lo > ql ? hs->lo : ql, rb = hs->hi < qh ? hs->hi : qh; /* what q sends me */
            sc[q] = sb > sa ? (int)(sb - sa) : 0;
            sd[q] = sb > sa ? (int)(sa - s->lo) : 0;
            rc[q] = rb > ra ? (int)(rb - ra) : 0;
            rd[q] = rb > ra ? (int)(ra - hs->lo) : 0;
        }
        MPI_Alltoallv(s->y, sc, sd, MPI_INT32_T, hs->y, rc, rd, MPI_INT32_T, j->gcomm);
        for (int q = 0; q < P; q++) sc[q] *= (int)D, sd[q] *= (int)D, rc[q] *= (int)D, rd[q] *= (int)D;
        MPI_Alltoallv(s->x, sc, sd, MPI_FLOAT, hs->x, rc, rd, MPI_FLOAT, j->gcomm);
    }
    free(sc); free(sd); free(rc); free(rd);
    if (!st) st = comm_agree_failure(j->gcomm, hvp_create(j->model, hs->batch, &hs->h));
    if (st) hess_free(hs);
    return st;
}

void hess_free(vl_hess_t *hs)
{
    hvp_free(hs->h);
    free(hs->x);
    free(hs->y);
    hs->h = NULL;
    hs->x = NULL;
    hs->y = NULL;
}

int hess_op(void *ctx, const float *v, double *hv_local)
{
    vl_hess_t *hs = ctx;
    const int64_t lo = hs->lo, hi = hs->hi, B = hs->batch, D = hs->j->train.in_dim;
    double loss = 0.0;
    int64_t correct = 0;
    /* chunks of the global batches [kB, (k+1)B) this rank holds: whatever the rank count, a
     * sample sits in the same batch (and a GEMM's columns are per sample anyway) */
    for (int64_t g0 = lo / B * B; g0 < hi; g0 += B) {
        const int64_t a = g0 > lo ? g0 : lo, b = g0 + B < hi ? g0 + B : hi;
        if (a >= b) continue;
        int64_t c = 0;
        loss += hvp_add(hs->h, hs->w, hs->state, hs->x + (size_t)(a - lo) * D, hs->y + (a - lo), (int)(b - a), v, hv_local, &c);
        correct += c;
    }
    hs->loss = loss; /* this rank's sums over its samples; hessian_command reduces them once */
    hs->correct = correct;
    return VL_OK;
}

int hess_extremes(vl_hess_t *hs, const float *w, const float *state, int steps, uint64_t seed, uint64_t stream,
                  const char *label, double ext[4])
{
    hs->w = w;
    hs->state = state;
    vl_lanczos_t l;
    CHECK(lanczos_run(hs->j->gcomm, hs->j->np, hess_op, hs, 1.0 / (double)hs->n, steps, seed, stream, label, &l));
    ext[0] = l.ritz[l.steps - 1];
    ext[1] = l.bound[l.steps - 1];
    ext[2] = l.ritz[0];
    ext[3] = l.bound[0];
    lanczos_free(&l);
    return VL_OK;
}

/* ------------------------------------------------------------------ valley hessian */

typedef struct {
    int R, S, K, G;          /* runs, steps, top eigenvalues, density points */
    int *m;                  /* steps done per run */
    double *buf;             /* what the groups' leaders send rank 0, in one block: */
    double *alpha, *beta;    /* (R, S) */
    double *quad, *seconds;  /* (R) */
    vl_lanczos_t *l;         /* (R), Ritz values on rank 0 */
    double *dx, *dens;       /* (G) */
    double trace, trace_se, trace2, m1, m2;
    double loss, acc, sigma;
    int64_t n;
    size_t np;
} spectrum_t;

static void spectrum_free(spectrum_t *s)
{
    if (s->l)
        for (int r = 0; r < s->R; r++) lanczos_free(&s->l[r]);
    free(s->l); free(s->m); free(s->buf); free(s->dx); free(s->dens);
}

/* Rank 0: Ritz values of every run, the trace and the density. */
static int spectrum_finish(spectrum_t *s, double sigma_rel)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int r = 0; r < s->R; r++) {
        vl_lanczos_t *l = &s->l[r];
        CHECK(lanczos_alloc(l, s->S));
        l->steps = s->m[r];
        memcpy(l->alpha, s->alpha + (size_t)r * s->S, (size_t)s->S * sizeof(double));
        memcpy(l->beta, s->beta + (size_t)r * s->S, (size_t)s->S * sizeof(double));
        CHECK(lanczos_ritz(l));
        lo = fmin(lo, l->ritz[0]);
        hi = fmax(hi, l->ritz[l->steps - 1]);
    }
    /* Hutchinson: v^T H v of Rademacher v; the quadrature's first two moments */
    double sum = 0.0, sum2 = 0.0, m1 = 0.0, m2 = 0.0;
    for (int r = 0; r < s->R; r++) {
        sum += s->quad[r];
        sum2 += s->quad[r] * s->quad[r];
        for (int i = 0; i < s->l[r].steps; i++) {
            m1 += s->l[r].weight[i] * s->l[r].ritz[i];
            m2 += s->l[r].weight[i] * s->l[r].ritz[i] * s->l[r].ritz[i];
        }
    }
    s->trace = sum / s->R;
    s->trace_se = s->R > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / s->R) / (s->R - 1)) / s->R) : NAN;
    s->m1 = m1 / s->R;
    s->m2 = m2 / s->R;
    s->trace2 = s->m2 * (double)s->np;
    /* density: sum over runs and nodes of weight x N(x; ritz, sigma^2), averaged over the runs */
    const double range = hi > lo ? hi - lo : fmax(fabs(hi), 1e-12);
    const double sigma = sigma_rel * range, pad = 3 * sigma + 0.01 * range;
    s->sigma = sigma;
    for (int q = 0; q < s->G; q++) {
        const double x = lo - pad + (hi - lo + 2 * pad) * q / (s->G > 1 ? s->G - 1 : 1);
        double acc = 0.0;
        for (int r = 0; r < s->R; r++)
            for (int i = 0; i < s->l[r].steps; i++) {
                const double u = (x - s->l[r].ritz[i]) / sigma;
                acc += s->l[r].weight[i] * exp(-0.5 * u * u);
            }
        s->dx[q] = x;
        s->dens[q] = acc / (s->R * sigma * 2.5066282746310002);
    }
    return VL_OK;
}

static int write_hessian(const char *path, const vl_deck_t *d, const spectrum_t *s, const char *input, const char *what)
{
    ncio_file_t f;
    CHECK(ncio_create(&f, path, HESSIAN_TITLE, deck_text(d)));
    const vl_lanczos_t *l0 = &s->l[0];
    const int K = s->K < l0->steps ? s->K : l0->steps;
    int dk, dr, ds, dg, vt, vtr, vmin, vminr, vtrace, vtse, vtr2, vdx, vd, vritz, vw, vb, valpha, vbeta, vm, vq, vsec, vloss, vacc;
    int st = ncio_def_dim(&f, "top", (size_t)K, &dk);
    if (!st) st = ncio_def_dim(&f, "run", (size_t)s->R, &dr);
    if (!st) st = ncio_def_dim(&f, "step", (size_t)s->S, &ds);
    if (!st) st = ncio_def_dim(&f, "density_point", (size_t)s->G, &dg);
    if (!st) st = ncio_def_var(&f, "top_eigenvalues", NC_DOUBLE, 1, &dk, "largest eigenvalues, descending (Ritz values of run 0)", "nats", &vt);
    if (!st) st = ncio_def_var(&f, "top_residual", NC_DOUBLE, 1, &dk, "residual bound ||H y - theta y|| of each (an eigenvalue lies within it)", "nats", &vtr);
    if (!st) st = ncio_def_var(&f, "min_eigenvalue", NC_DOUBLE, 0, NULL, "smallest eigenvalue (smallest Ritz value of run 0)", "nats", &vmin);
    if (!st) st = ncio_def_var(&f, "min_residual", NC_DOUBLE, 0, NULL, "residual bound of min_eigenvalue", "nats", &vminr);
    if (!st) st = ncio_def_var(&f, "trace", NC_DOUBLE, 0, NULL, "trace (Hutchinson: mean of v^T H v over the runs' Rademacher vectors)", "nats", &vtrace);
    if (!st) st = ncio_def_var(&f, "trace_stderr", NC_DOUBLE, 0, NULL, "standard error of trace over the runs (NaN with one run)", "nats", &vtse);
    if (!st) st = ncio_def_var(&f, "trace_h2", NC_DOUBLE, 0, NULL, "trace of H^2 (second moment of the quadrature times the parameter count)", "nats^2", &vtr2);
    if (!st) st = ncio_def_var(&f, "density_x", NC_DOUBLE, 1, &dg, "eigenvalue axis of the density", "nats", &vdx);
    if (!st) st = ncio_def_var(&f, "density", NC_DOUBLE, 1, &dg, "spectral density (stochastic Lanczos quadrature, Gaussian kernel of width density_sigma; integrates to 1)", "1/nats", &vd);
    int d2[2] = {dr, ds};
    if (!st) st = ncio_def_var(&f, "ritz", NC_DOUBLE, 2, d2, "Ritz values of each run, ascending (NaN past steps_done)", "nats", &vritz);
    if (!st) st = ncio_def_var(&f, "ritz_weight", NC_DOUBLE, 2, d2, "quadrature weights (squared first components of the Ritz vectors)", "1", &vw);
    if (!st) st = ncio_def_var(&f, "ritz_residual", NC_DOUBLE, 2, d2, "residual bounds of the Ritz values", "nats", &vb);
    if (!st) st = ncio_def_var(&f, "alpha", NC_DOUBLE, 2, d2, "Lanczos tridiagonal: diagonal", "nats", &valpha);
    if (!st) st = ncio_def_var(&f, "beta", NC_DOUBLE, 2, d2, "Lanczos tridiagonal: off-diagonal (beta[i] couples steps i, i+1)", "nats", &vbeta);
    if (!st) st = ncio_def_var(&f, "steps_done", NC_INT, 1, &dr, "Lanczos steps of each run (fewer than asked: an invariant subspace)", "1", &vm);
    if (!st) st = ncio_def_var(&f, "quadratic_form", NC_DOUBLE, 1, &dr, "v^T H v of each run's Rademacher start vector", "nats", &vq);
    if (!st) st = ncio_def_var(&f, "run_seconds", NC_DOUBLE, 1, &dr, "wall time of each run", "s", &vsec);
    if (!st) st = ncio_def_var(&f, "loss", NC_DOUBLE, 0, NULL, "mean training NLL over the samples (BN in eval mode)", "nats", &vloss);
    if (!st) st = ncio_def_var(&f, "accuracy", NC_DOUBLE, 0, NULL, "training accuracy over the samples", "1", &vacc);
    char of[1024];
    snprintf(of, sizeof of, "the mean training NLL (softmax cross-entropy) over the first %lld samples of the training split; "
                            "no weight-decay term; batch norm in evaluation mode with the model's running statistics",
             (long long)s->n);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "hessian_of", of);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "model", what);
    if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "inputs", input);
    const int iv[3] = {(int)s->n, s->S, s->R};
    const double npd = (double)s->np;
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "samples", 1, &iv[0]);
    if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "parameters", 1, &npd);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "steps", 1, &iv[1]);
    if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "runs", 1, &iv[2]);
    if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "density_sigma", 1, &s->sigma);
    if (!st) st = ncio_enddef(&f);
    double top[256], topr[256];
    for (int k = 0; k < K && k < 256; k++) {
        top[k] = l0->ritz[l0->steps - 1 - k];
        topr[k] = l0->bound[l0->steps - 1 - k];
    }
    const size_t RS = (size_t)s->R * s->S;
    double *rz = malloc(RS * sizeof(double) + 8), *rw = malloc(RS * sizeof(double) + 8), *rb = malloc(RS * sizeof(double) + 8);
    double *al = malloc(RS * sizeof(double) + 8), *be = malloc(RS * sizeof(double) + 8);
    if (!rz || !rw || !rb || !al || !be) st = st ? st : VL_FAIL(VL_EIO, "out of memory");
    for (int r = 0; r < s->R && !st; r++)
        for (int i = 0; i < s->S; i++) {
            const size_t o = (size_t)r * s->S + i;
            const int in = i < s->l[r].steps;
            rz[o] = in ? s->l[r].ritz[i] : NAN;
            rw[o] = in ? s->l[r].weight[i] : NAN;
            rb[o] = in ? s->l[r].bound[i] : NAN;
            al[o] = in ? s->alpha[o] : NAN;
            be[o] = in ? s->beta[o] : NAN;
        }
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vt, top), VL_EIO, path, "top_eigenvalues");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vtr, topr), VL_EIO, path, "top_residual");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vmin, &l0->ritz[0]), VL_EIO, path, "min_eigenvalue");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vminr, &l0->bound[0]), VL_EIO, path, "min_residual");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vtrace, &s->trace), VL_EIO, path, "trace");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vtse, &s->trace_se), VL_EIO, path, "trace_stderr");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vtr2, &s->trace2), VL_EIO, path, "trace_h2");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vdx, s->dx), VL_EIO, path, "density_x");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vd, s->dens), VL_EIO, path, "density");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vritz, rz), VL_EIO, path, "ritz");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vw, rw), VL_EIO, path, "ritz_weight");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vb, rb), VL_EIO, path, "ritz_residual");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, valpha, al), VL_EIO, path, "alpha");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vbeta, be), VL_EIO, path, "beta");
    if (!st) st = ncio_check(nc_put_var_int(f.ncid, vm, s->m), VL_EIO, path, "steps_done");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vq, s->quad), VL_EIO, path, "quadratic_form");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vsec, s->seconds), VL_EIO, path, "run_seconds");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vloss, &s->loss), VL_EIO, path, "loss");
    if (!st) st = ncio_check(nc_put_var_double(f.ncid, vacc, &s->acc), VL_EIO, path, "accuracy");
    free(rz); free(rw); free(rb); free(al); free(be);
    if (st) { ncio_abandon(&f); return st; }
    return ncio_commit(&f);
}

/* The weights of the input: a curve's point curve.t (BN refreshed), else the file's weights and
 * running statistics (model.nc, a checkpoint, swag.nc: its SWA mean). */
static int load_point(vl_job_t *j, const vl_deck_t *d, const char *in, char *what, size_t nwhat)
{
    if (curve_file(in)) {
        vl_curve_t cv;
        const double t = deck_double(d, "curve.t");
        CHECK(comm_agree_failure(j->comm->world, curve_read(in, j->np, &cv, NULL)));
        double *cc = calloc((size_t)cv.n + 1, sizeof(double));
        if (!cc) { curve_free(&cv); return VL_FAIL(VL_EIO, "out of memory"); }
        curve_coeffs(&cv, t, cc);
        curve_point(&cv, cc, j->w);
        free(cc);
        curve_free(&cv);
        CHECK(job_bn_update(j, j->w, j->state, deck_double(d, "eval.bn_subset")));
        snprintf(what, nwhat, "the point t = %g of the curve %s (BN statistics refreshed)", t, in);
        return VL_OK;
    }
    CHECK(comm_agree_failure(j->comm->world, ckpt_read(in, j->model, j->w, j->state, NULL, NULL)));
    snprintf(what, nwhat, "%s", in);
    return VL_OK;
}

int hessian_command(vl_comm_t *c, vl_deck_t *d, int nin, char **in, const char *outdir)
{
    if (nin != 1)
        return VL_FAIL_ALL(VL_EINPUT, "hessian: give one model file (model.nc, a checkpoint, swag.nc for its SWA mean, or "
                                      "curve.nc with --set curve.t=T)");
    vl_model_config_t cfg;
    char dataset[32], what[4400];
    CHECK(ckpt_read_configs(c->world, 1, in, &cfg, dataset));
    vl_job_t j;
    CHECK(job_open(&j, c, d, &cfg, dataset, in[0]));
    spectrum_t s;
    memset(&s, 0, sizeof s);
    vl_hess_t hs;
    memset(&hs, 0, sizeof hs);
    int st = load_point(&j, d, in[0], what, sizeof what);
    if (!st) st = hess_init(&hs, &j, deck_int(d, "hessian.samples"));
    s.R = (int)deck_int(d, "hessian.probes");
    s.S = (int)deck_int(d, "hessian.steps");
    s.K = (int)deck_int(d, "hessian.top");
    s.G = (int)deck_int(d, "hessian.density_points");
    s.np = j.np;
    if ((size_t)s.S > j.np) s.S = (int)j.np;
    if (!st && s.K > s.S)
        st = VL_FAIL_ALL(VL_EINPUT, "hessian.top = %d exceeds hessian.steps = %d: Lanczos gives at most one Ritz value per "
                                    "step", s.K, s.S);
    if (!st) {
        const double basis = ((double)s.S + 1) * j.np / c->gsize * 8 + (double)j.np * 20;
        st = comm_check_memory(c->world, hvp_bytes(hs.h) + basis, "the Hessian-vector products and the Lanczos vectors",
                               "lower train.batch_size, hessian.steps, or spread the group over more ranks", NULL);
    }
    const size_t RS = (size_t)s.R * s.S, nbuf = 2 * RS + 2 * (size_t)s.R;
    s.m = calloc((size_t)s.R, sizeof(int));
    s.buf = calloc(nbuf, sizeof(double));
    s.l = calloc((size_t)s.R, sizeof(vl_lanczos_t));
    s.dx = calloc((size_t)s.G, sizeof(double));
    s.dens = calloc((size_t)s.G, sizeof(double));
    if (s.buf) {
        s.alpha = s.buf;
        s.beta = s.buf + RS;
        s.quad = s.buf + 2 * RS;
        s.seconds = s.quad + s.R;
    }
    if (!st && (!s.m || !s.buf || !s.l || !s.dx || !s.dens))
        st = VL_FAIL(VL_EIO, "out of memory");
    st = comm_agree_failure(c->world, st);
    hs.w = j.w;
    hs.state = j.state;
    s.n = hs.n;
    if (!st)
        vl_log(c->world, "hessian of the mean NLL over %lld training samples, %zu parameters (BN in eval mode): %d Lanczos "
                         "run(s) of %d steps over %d group(s) of %d rank(s)",
               (long long)hs.n, j.np, s.R, s.S, c->ngroups, c->gsize);
    const uint64_t seed = (uint64_t)deck_int(d, "run.seed");
    for (int r = c->group_id; r < s.R && !st; r += c->ngroups) {
        vl_lanczos_t l;
        char label[64];
        snprintf(label, sizeof label, "hessian run %d", r);
        st = lanczos_run(c->group, j.np, hess_op, &hs, 1.0 / (double)hs.n, s.S, seed, rng_stream(RNG_HESSIAN, 0, (uint64_t)r),
                         label, &l);
        if (st) break;
        if (c->grank == 0) {
            s.m[r] = l.steps;
            memcpy(s.alpha + (size_t)r * s.S, l.alpha, (size_t)l.steps * sizeof(double));
            memcpy(s.beta + (size_t)r * s.S, l.beta, (size_t)l.steps * sizeof(double));
            s.quad[r] = l.quad;
            s.seconds[r] = l.seconds;
        }
        if (r == c->group_id) { /* the loss and accuracy at the point (the products' forward), once per group */
            double sums[2] = {hs.loss, (double)hs.correct};
            MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, c->group);
            s.loss = sums[0] / (double)hs.n;
            s.acc = sums[1] / (double)hs.n;
        }
        vl_log(c->group, "hessian run %d: %d steps in %.1f s | largest Ritz value %.6g (residual %.2g), smallest %.6g "
                         "(residual %.2g), v^T H v %.6g", r, l.steps, l.seconds, l.ritz[l.steps - 1], l.bound[l.steps - 1],
               l.ritz[0], l.bound[0], l.quad);
        lanczos_free(&l);
    }
    /* A failure inside a group's runs is that group's alone: main aborts the job. */
    if (st) { vl_trace(__FILE__, __LINE__); job_close(&j); hess_free(&hs); spectrum_free(&s); return st; }
    /* the groups' runs to rank 0 (world rank 0 leads group 0) */
    const int root_has = c->rank == 0;
    if (c->grank != 0) { /* only the leaders' copies count */
        memset(s.m, 0, (size_t)s.R * sizeof(int));
        memset(s.buf, 0, nbuf * sizeof(double));
    }
    MPI_Reduce(root_has ? MPI_IN_PLACE : s.m, s.m, s.R, MPI_INT, MPI_SUM, 0, c->world);
    MPI_Reduce(root_has ? MPI_IN_PLACE : s.buf, s.buf, (int)nbuf, MPI_DOUBLE, MPI_SUM, 0, c->world);
    char path[8400];
    snprintf(path, sizeof path, "%s/hessian.nc", outdir);
    if (c->rank == 0) {
        st = ncio_mkdirs(outdir);
        if (!st) st = spectrum_finish(&s, deck_double(d, "hessian.density_sigma"));
        if (!st) st = write_hessian(path, d, &s, in[0], what);
        if (!st) {
            const vl_lanczos_t *l0 = &s.l[0];
            vl_log(MPI_COMM_SELF, "hessian of %s: loss %.6g, accuracy %.4f over %lld samples", what, s.loss, s.acc, (long long)s.n);
            for (int k = 0; k < s.K && k < l0->steps; k++)
                vl_log(MPI_COMM_SELF, "  lambda_%d = %12.6g  (residual bound %.2g)", k + 1, l0->ritz[l0->steps - 1 - k],
                       l0->bound[l0->steps - 1 - k]);
            vl_log(MPI_COMM_SELF, "  lambda_min = %12.6g (residual bound %.2g); ratio |min/max| %.4g", l0->ritz[0], l0->bound[0],
                   fabs(l0->ritz[0] / l0->ritz[l0->steps - 1]));
            vl_log(MPI_COMM_SELF, "  trace %.6g +- %.2g (Hutchinson, %d vectors); trace of H^2 %.6g", s.trace, s.trace_se, s.R,
                   s.trace2);
            vl_log(MPI_COMM_SELF, "wrote %s", path);
        }
    }
    st = comm_agree_first(c->world, st, 1);
    hess_free(&hs);
    spectrum_free(&s);
    job_close(&j);
    CHECK(st);
    timer_report(c->world);
    return VL_OK;
}
