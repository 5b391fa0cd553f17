/* metrics.c — classification and regression metrics over a distributed test set.
 *
 * Every rank computes K doubles per example of its shard (confidence,
 * correctness, NLL, ...), the rows are gathered to every rank straight into
 * their global positions (MPI_Allgatherv with displacement = lo), and all sums
 * run over the global index order. The per-example values do not depend on
 * which rank computed them, and the sums do not depend on how the set was cut,
 * so the metrics are bit-identical for any number of ranks. (A per-bin
 * MPI_Allreduce would be cheaper but its summation order follows the rank
 * count; the test set is <= 1e5 rows, a few MB gathered once per evaluation.)
 */
#include "valley/metrics.h"

#include "valley/error.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per-example records gathered to every rank. */
enum { CREC_CONF, CREC_CORRECT, CREC_NLL, CREC_BRIER, CREC_ENTROPY, CREC_K };
enum { RREC_SQERR, RREC_LOGLIK, RREC_COVERED, RREC_SIGMA, RREC_K };

/* What a rank found wrong with its own inputs; gathered so that every rank
 * reports the same first problem (lowest rank) and fails together. */
enum { BAD_NONE, BAD_N, BAD_LO, BAD_C, BAD_PTR, BAD_LABEL, BAD_PROB, BAD_MU, BAD_SIGMA, BAD_Y };

/* One rank's description of its shard, as int64 for one MPI_Allgather. */
enum { INFO_LO, INFO_N, INFO_C, INFO_BAD, INFO_ROW, INFO_COL, INFO_VAL, INFO_K };

static int mpi_check(int rc, const char *fn, const char *call)
{
    if (rc == MPI_SUCCESS) return VL_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return VL_FAIL(VL_EIO, "%s: %s failed: %s", fn, call, msg);
}
#define MPI_CHECK(fn, call) CHECK(mpi_check((call), (fn), #call))

static int cmp_int64_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b; /* (lo, n), ordered by lo */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Checks the gathered shard descriptions (identical on every rank, so every
 * rank reaches the same verdict) and returns the global N. */
static int check_shards(const int64_t *info, int size, const char *fn, int64_t *n_total)
{
    for (int r = 0; r < size; r++) {
        const int64_t *in = info + (size_t)r * INFO_K;
        long long row = (long long)in[INFO_ROW], col = (long long)in[INFO_COL],
                  val = (long long)in[INFO_VAL];
        switch (in[INFO_BAD]) {
        case BAD_NONE: break;
        case BAD_N:
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d: n_local = %lld is negative or above INT_MAX",
                               fn, r, val);
        case BAD_LO:
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d: lo = %lld is negative or above INT_MAX",
                               fn, r, (long long)in[INFO_LO]);
        case BAD_C:
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d: number of classes C = %lld < 1",
                               fn, r, (long long)in[INFO_C]);
        case BAD_PTR:
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d: NULL input array with n_local = %lld",
                               fn, r, (long long)in[INFO_N]);
        case BAD_LABEL:
            return VL_FAIL_ALL(VL_EINPUT, "%s: label %lld of example %lld is outside [0, %lld)",
                               fn, val, row, (long long)in[INFO_C]);
        case BAD_PROB:
            return VL_FAIL_ALL(VL_EINPUT,
                               "%s: probability of class %lld for example %lld is not finite or outside [0, 1]",
                               fn, col, row);
        case BAD_MU:
            return VL_FAIL_ALL(VL_EINPUT, "%s: predictive mean of example %lld is not finite", fn, row);
        case BAD_SIGMA:
            return VL_FAIL_ALL(VL_EINPUT, "%s: predictive std of example %lld is not finite and > 0",
                               fn, row);
        case BAD_Y:
            return VL_FAIL_ALL(VL_EINPUT, "%s: target of example %lld is not finite", fn, row);
        default:
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d: invalid input", fn, r);
        }
    }
    for (int r = 1; r < size; r++)
        if (info[(size_t)r * INFO_K + INFO_C] != info[INFO_C])
            return VL_FAIL_ALL(VL_EINPUT, "%s: rank %d has C = %lld classes, rank 0 has %lld", fn, r,
                               (long long)info[(size_t)r * INFO_K + INFO_C], (long long)info[INFO_C]);

    /* The non-empty shards, ordered by lo, must be 0..N-1 without gap or overlap. */
    int64_t *span = vl_alloc(sizeof(int64_t) * 2 * (size_t)size, "metrics shard table");
    if (!span) return vl_error_status();
    int m = 0;
    for (int r = 0; r < size; r++) {
        const int64_t *in = info + (size_t)r * INFO_K;
        if (in[INFO_N] == 0) continue;
        span[2 * m] = in[INFO_LO];
        span[2 * m + 1] = in[INFO_N];
        m++;
    }
    qsort(span, (size_t)m, 2 * sizeof(int64_t), cmp_int64_pair);
    int64_t next = 0; /* lo and n are both <= INT_MAX: no overflow */
    for (int k = 0; k < m; k++) {
        if (span[2 * k] != next) {
            long long lo = (long long)span[2 * k];
            free(span);
            return VL_FAIL_ALL(VL_EINPUT,
                               "%s: shards do not tile the test set: a shard starts at row %lld, "
                               "expected %lld (%s)",
                               fn, lo, (long long)next, lo > next ? "gap" : "overlap");
        }
        next += span[2 * k + 1];
    }
    free(span);
    if (next == 0) return VL_FAIL_ALL(VL_EINPUT, "%s: empty test set", fn);
    if (next > INT_MAX)
        return VL_FAIL_ALL(VL_EINPUT, "%s: test set of %lld examples is above INT_MAX", fn,
                           (long long)next);
    *n_total = next;
    return VL_OK;
}

/* Collective over comm: gathers the shard descriptions, validates them, and
 * gathers every rank's K doubles per row (mine, n_local rows) into *all
 * (N rows, global order; owned by the caller, free()). */
static int gather_rows(const int64_t me[INFO_K], const double *mine, int K, MPI_Comm comm,
                       const char *fn, double **all, int64_t *n_total)
{
    int size, rank;
    *all = NULL;
    MPI_CHECK(fn, MPI_Comm_size(comm, &size));
    MPI_CHECK(fn, MPI_Comm_rank(comm, &rank));
    int64_t *info = vl_alloc(sizeof(int64_t) * INFO_K * (size_t)size, "metrics shard info");
    int *counts = vl_alloc(sizeof(int) * (size_t)size, "metrics counts");
    int *displs = vl_alloc(sizeof(int) * (size_t)size, "metrics displacements");
    double *buf = NULL;
    MPI_Datatype row_type = MPI_DATATYPE_NULL;
    int st = VL_OK;
    if (!info || !counts || !displs) { st = vl_error_status(); goto done; }

    st = mpi_check(MPI_Allgather(me, INFO_K, MPI_INT64_T, info, INFO_K, MPI_INT64_T, comm), fn,
                   "MPI_Allgather");
    if (st) goto done;
    st = check_shards(info, size, fn, n_total);
    if (st) goto done;

    for (int r = 0; r < size; r++) {
        counts[r] = (int)info[(size_t)r * INFO_K + INFO_N];
        displs[r] = counts[r] ? (int)info[(size_t)r * INFO_K + INFO_LO] : 0;
    }
    size_t nbuf;
    if (vl_mul_size((size_t)*n_total, (size_t)K * sizeof(double), &nbuf)) {
        st = VL_FAIL(VL_EIO, "%s: size overflow", fn);
        goto done;
    }
    buf = vl_alloc(nbuf, "metrics gathered rows");
    if (!buf) { st = vl_error_status(); goto done; }
    st = mpi_check(MPI_Type_contiguous(K, MPI_DOUBLE, &row_type), fn, "MPI_Type_contiguous");
    if (!st) st = mpi_check(MPI_Type_commit(&row_type), fn, "MPI_Type_commit");
    if (!st)
        st = mpi_check(MPI_Allgatherv(mine, counts[rank], row_type, buf, counts, displs, row_type, comm),
                       fn, "MPI_Allgatherv");
    if (row_type != MPI_DATATYPE_NULL) MPI_Type_free(&row_type);
    if (st) goto done;
    *all = buf;
    buf = NULL;
done:
    free(buf);
    free(info);
    free(counts);
    free(displs);
    return st;
}

/* Fills the common fields of a shard description and checks n_local and lo. */
static void shard_info_init(int64_t me[INFO_K], int64_t n_local, int64_t lo, int C)
{
    memset(me, 0, sizeof(int64_t) * INFO_K);
    me[INFO_LO] = lo;
    me[INFO_N] = n_local;
    me[INFO_C] = C;
    if (n_local < 0 || n_local > INT_MAX) {
        me[INFO_BAD] = BAD_N;
        me[INFO_VAL] = n_local;
        me[INFO_N] = 0; /* keep the tiling check meaningful for the others */
    } else if (n_local > 0 && (lo < 0 || lo > INT_MAX)) {
        me[INFO_BAD] = BAD_LO;
    }
}

/* Equal-width bin of a confidence: e_b < conf <= e_{b+1}, e_b = b / nb. */
static int width_bin(double conf)
{
    const int nb = METRICS_BINS_WIDTH;
    if (!(conf > 0)) return 0;
    int b = conf >= 1 ? nb - 1 : (int)ceil(conf * nb) - 1;
    if (b < 0) b = 0;
    if (b > nb - 1) b = nb - 1;
    /* conf * nb may round across an edge: settle against the stored edges. */
    while (b > 0 && conf <= (double)b / nb) b--;
    while (b < nb - 1 && conf > (double)(b + 1) / nb) b++;
    return b;
}

typedef struct {
    double conf;
    int64_t idx;
} conf_idx_t;

static int cmp_conf_idx(const void *a, const void *b)
{
    const conf_idx_t *x = a, *y = b;
    if (x->conf != y->conf) return x->conf < y->conf ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int metrics_classification(const float *probs, const int32_t *labels, int64_t n_local, int C,
                           int64_t lo, MPI_Comm comm, vl_class_metrics_t *out)
{
    static const char fn[] = "metrics_classification";
    int64_t me[INFO_K];
    shard_info_init(me, n_local, lo, C);
    if (!me[INFO_BAD] && C < 1) me[INFO_BAD] = BAD_C;
    if (!me[INFO_BAD] && n_local > 0 && (!probs || !labels)) me[INFO_BAD] = BAD_PTR;
    for (int64_t i = 0; !me[INFO_BAD] && i < n_local; i++) {
        if (labels[i] < 0 || labels[i] >= C) {
            me[INFO_BAD] = BAD_LABEL;
            me[INFO_ROW] = lo + i;
            me[INFO_VAL] = labels[i];
            break;
        }
        const float *p = probs + (size_t)i * (size_t)C;
        for (int c = 0; c < C; c++)
            if (!(p[c] >= 0.0f && p[c] <= 1.0f)) { /* also catches NaN */
                me[INFO_BAD] = BAD_PROB;
                me[INFO_ROW] = lo + i;
                me[INFO_COL] = c;
                break;
            }
    }

    /* Per-example records of this shard (computed only when the input is valid). */
    int64_t n_mine = me[INFO_BAD] ? 0 : n_local;
    double *rec = vl_alloc(sizeof(double) * CREC_K * (size_t)n_mine, "metrics records");
    if (!rec) return vl_error_status();
    for (int64_t i = 0; i < n_mine; i++) {
        const float *p = probs + (size_t)i * (size_t)C;
        const int y = labels[i];
        int pred = 0; /* argmax, ties to the lowest class like numpy.argmax */
        for (int c = 1; c < C; c++)
            if (p[c] > p[pred]) pred = c;
        double brier = 0, entropy = 0;
        for (int c = 0; c < C; c++) {
            const double q = p[c];
            const double t = q - (c == y ? 1.0 : 0.0);
            brier += t * t;
            if (q > 0) entropy -= q * log(q);
        }
        const double py = p[y];
        double *r = rec + (size_t)i * CREC_K;
        r[CREC_CONF] = p[pred];
        r[CREC_CORRECT] = pred == y ? 1.0 : 0.0;
        r[CREC_NLL] = -log(py > METRICS_P_MIN ? py : METRICS_P_MIN);
        r[CREC_BRIER] = brier;
        r[CREC_ENTROPY] = entropy;
    }

    double *all = NULL;
    int64_t n = 0;
    int st = gather_rows(me, rec, CREC_K, comm, fn, &all, &n);
    free(rec);
    CHECK(st);

    /* Everything below runs identically on every rank over the global order. */
    enum { NW = METRICS_BINS_WIDTH, NC = METRICS_BINS_COUNT };
    memset(out, 0, sizeof *out);
    out->n = n;
    double s_correct = 0, s_nll = 0, s_brier = 0, s_entropy = 0;
    double w_conf[NW] = {0}, w_correct[NW] = {0};
    for (int64_t i = 0; i < n; i++) {
        const double *r = all + (size_t)i * CREC_K;
        s_correct += r[CREC_CORRECT];
        s_nll += r[CREC_NLL];
        s_brier += r[CREC_BRIER];
        s_entropy += r[CREC_ENTROPY];
        const int b = width_bin(r[CREC_CONF]);
        out->bin_count[b]++;
        w_conf[b] += r[CREC_CONF];
        w_correct[b] += r[CREC_CORRECT];
    }
    const double dn = (double)n;
    out->accuracy = s_correct / dn;
    out->error = 1.0 - out->accuracy;
    out->nll = s_nll / dn;
    out->brier = s_brier / dn;
    out->entropy = s_entropy / dn;
    for (int b = 0; b < NW; b++) {
        out->bin_lo[b] = (double)b / NW;
        out->bin_hi[b] = (double)(b + 1) / NW;
        if (out->bin_count[b] == 0) {
            out->bin_conf[b] = out->bin_acc[b] = NAN;
            continue;
        }
        const double nb = (double)out->bin_count[b];
        out->bin_conf[b] = w_conf[b] / nb;
        out->bin_acc[b] = w_correct[b] / nb;
        out->ece += nb / dn * fabs(out->bin_acc[b] - out->bin_conf[b]);
    }

    /* Equal-count bins: sort by (confidence, global index), a total order. */
    conf_idx_t *order = vl_alloc(sizeof(conf_idx_t) * (size_t)n, "metrics confidence order");
    if (!order) {
        free(all);
        return vl_error_status();
    }
    for (int64_t i = 0; i < n; i++) {
        order[i].conf = all[(size_t)i * CREC_K + CREC_CONF];
        order[i].idx = i;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_conf_idx);
    for (int b = 0; b < NC; b++) {
        const int64_t j0 = b * n / NC, j1 = (b + 1) * n / NC; /* n <= INT_MAX: no overflow */
        double s_conf = 0, s_acc = 0;
        for (int64_t j = j0; j < j1; j++) {
            s_conf += order[j].conf;
            s_acc += all[(size_t)order[j].idx * CREC_K + CREC_CORRECT];
        }
        out->cbin_count[b] = j1 - j0;
        if (j1 == j0) {
            out->cbin_conf[b] = out->cbin_acc[b] = NAN;
            continue;
        }
        const double nb = (double)(j1 - j0);
        out->cbin_conf[b] = s_conf / nb;
        out->cbin_acc[b] = s_acc / nb;
        out->ece_count += nb / dn * fabs(out->cbin_acc[b] - out->cbin_conf[b]);
    }
    free(order);
    free(all);
    return VL_OK;
}

int metrics_regression(const float *mu, const float *sigma, const float *y, int64_t n_local,
                       int64_t lo, MPI_Comm comm, vl_reg_metrics_t *out)
{
    static const char fn[] = "metrics_regression";
    int64_t me[INFO_K];
    shard_info_init(me, n_local, lo, 1);
    if (!me[INFO_BAD] && n_local > 0 && (!mu || !sigma || !y)) me[INFO_BAD] = BAD_PTR;
    for (int64_t i = 0; !me[INFO_BAD] && i < n_local; i++) {
        int bad = !isfinite(mu[i]) ? BAD_MU
                : !(isfinite(sigma[i]) && sigma[i] > 0) ? BAD_SIGMA
                : !isfinite(y[i]) ? BAD_Y : BAD_NONE;
        if (bad) {
            me[INFO_BAD] = bad;
            me[INFO_ROW] = lo + i;
        }
    }

    int64_t n_mine = me[INFO_BAD] ? 0 : n_local;
    double *rec = vl_alloc(sizeof(double) * RREC_K * (size_t)n_mine, "metrics records");
    if (!rec) return vl_error_status();
    const double half_log_2pi = 0.5 * log(2.0 * 3.14159265358979323846);
    for (int64_t i = 0; i < n_mine; i++) {
        const double d = (double)y[i] - (double)mu[i], s = sigma[i], z = d / s;
        double *r = rec + (size_t)i * RREC_K;
        r[RREC_SQERR] = d * d;
        r[RREC_LOGLIK] = -half_log_2pi - log(s) - 0.5 * z * z;
        r[RREC_COVERED] = fabs(d) <= 1.96 * s ? 1.0 : 0.0;
        r[RREC_SIGMA] = s;
    }

    double *all = NULL;
    int64_t n = 0;
    int st = gather_rows(me, rec, RREC_K, comm, fn, &all, &n);
    free(rec);
    CHECK(st);

    double s_sq = 0, s_ll = 0, s_cov = 0, s_sigma = 0;
    for (int64_t i = 0; i < n; i++) {
        const double *r = all + (size_t)i * RREC_K;
        s_sq += r[RREC_SQERR];
        s_ll += r[RREC_LOGLIK];
        s_cov += r[RREC_COVERED];
        s_sigma += r[RREC_SIGMA];
    }
    free(all);
    const double dn = (double)n;
    memset(out, 0, sizeof *out);
    out->n = n;
    out->rmse = sqrt(s_sq / dn);
    out->loglik = s_ll / dn;
    out->nll = -out->loglik;
    out->coverage95 = s_cov / dn;
    out->mean_std = s_sigma / dn;
    return VL_OK;
}

int metrics_entropy(const float *probs, int64_t n_local, int C, int64_t lo, MPI_Comm comm, int nbins,
                    double *mean, int64_t *counts)
{
    static const char fn[] = "metrics_entropy";
    int64_t me[INFO_K];
    shard_info_init(me, n_local, lo, C);
    if (!me[INFO_BAD] && C < 1) me[INFO_BAD] = BAD_C;
    if (!me[INFO_BAD] && n_local > 0 && !probs) me[INFO_BAD] = BAD_PTR;
    for (int64_t i = 0; !me[INFO_BAD] && i < n_local; i++) {
        const float *p = probs + (size_t)i * (size_t)C;
        for (int c = 0; c < C; c++)
            if (!(p[c] >= 0.0f && p[c] <= 1.0f)) {
                me[INFO_BAD] = BAD_PROB;
                me[INFO_ROW] = lo + i;
                me[INFO_COL] = c;
                break;
            }
    }
    int64_t n_mine = me[INFO_BAD] ? 0 : n_local;
    double *rec = vl_alloc(sizeof(double) * ((size_t)n_mine + 1), "entropy records");
    if (!rec) return vl_error_status();
    for (int64_t i = 0; i < n_mine; i++) {
        const float *p = probs + (size_t)i * (size_t)C;
        double h = 0;
        for (int c = 0; c < C; c++)
            if (p[c] > 0) h -= (double)p[c] * log((double)p[c]);
        rec[i] = h;
    }
    double *all = NULL;
    int64_t n = 0;
    int st = gather_rows(me, rec, 1, comm, fn, &all, &n);
    free(rec);
    CHECK(st);
    const double hmax = log((double)C);
    double sum = 0;
    for (int b = 0; b < nbins; b++) counts[b] = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += all[i];
        int b = hmax > 0 ? (int)floor(all[i] / hmax * nbins) : 0;
        if (b < 0) b = 0;
        if (b > nbins - 1) b = nbins - 1;
        counts[b]++;
    }
    *mean = sum / (double)n;
    free(all);
    return VL_OK;
}

/* Row max and sum_c exp(x_c - max), in double. NaN/+inf make the sum NaN. */
static void row_max_sum(const float *x, int C, double *max, double *sum)
{
    double m = -INFINITY, s = 0;
    for (int c = 0; c < C; c++)
        if (x[c] > m) m = x[c];
    for (int c = 0; c < C; c++) s += exp((double)x[c] - m);
    *max = m;
    *sum = s;
}

void metrics_softmax(const float *logits, int64_t n, int C, float *probs)
{
    for (int64_t i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * (size_t)C;
        float *p = probs + (size_t)i * (size_t)C;
        double m, s;
        row_max_sum(x, C, &m, &s);
        for (int c = 0; c < C; c++) p[c] = (float)(exp((double)x[c] - m) / s);
    }
}

void metrics_log_softmax(const float *logits, int64_t n, int C, float *logp)
{
    for (int64_t i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * (size_t)C;
        float *lp = logp + (size_t)i * (size_t)C;
        double m, s;
        row_max_sum(x, C, &m, &s);
        const double log_s = log(s);
        for (int c = 0; c < C; c++) lp[c] = (float)(((double)x[c] - m) - log_s);
    }
}
