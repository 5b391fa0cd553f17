/* pca.c — distributed PCA of a row-distributed tall-skinny matrix (see pca.h).
 *
 * Shapes: A (d, K) distributed by rows; a rank's block is column-major (d_local, K)
 * with leading dimension lda = max(1, d_local). Small K × K problems are solved on
 * rank 0 and broadcast (with a status and message, so that a failure there is
 * collective), which keeps every rank's V, σ and signs bit-identical.
 */
#include "valley/pca.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/comm.h"
#include "valley/error.h"
#include "valley/scalapack.h"

enum {
    SVD_NB = 32, /* square block of the pdgesvd layout (pdgebrd's panel width) */
    QR_NB = 4,   /* column panel of pdgeqrf / pdormqr (rows: one block per rank); 4 measured
                    fastest of 4, 8, 16, 20 at d = 1e6, K = 20 */
    MSG_LEN = 256,
    SWEEP_ROWS = 2048 /* rows per cache block of the gram2 sweeps: 2048 × K doubles = 320 KB at K = 20 */
};

static const char *const route_names[PCA_NROUTES] = {"gram2", "gram", "qr", "svd"};

const char *pca_route_name(vl_pca_route_t route)
{
    return (route >= 0 && route < PCA_NROUTES) ? route_names[route] : "?";
}

int pca_route_parse(const char *name, vl_pca_route_t *route)
{
    for (int r = 0; r < PCA_NROUTES; r++)
        if (name && strcmp(name, route_names[r]) == 0) {
            *route = (vl_pca_route_t)r;
            return VL_OK;
        }
    return VL_FAIL(VL_EINPUT, "pca route '%s': want one of gram2, gram, qr, svd", name ? name : "(null)");
}

void pca_partition(int64_t d, MPI_Comm comm, int64_t *lo, int64_t *d_local)
{
    int rank, P;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &P);
    int64_t mb = d > 0 ? (d + P - 1) / P : 0;
    int64_t l = (int64_t)rank * mb, h = l + mb;
    if (l > d) l = d;
    if (h > d) h = d;
    *lo = l;
    *d_local = h - l;
}

void pca_free(vl_pca_t *p)
{
    if (!p) return;
    free(p->sigma);
    free(p->evr);
    free(p->vt);
    free(p->basis);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------------------
 * The small problem on rank 0: its result travels in one broadcast buffer
 * [status, rank, σ (K), V (K×K col-major), M (K×k: the route's K×k matrix)]
 * followed by the message.
 * ------------------------------------------------------------------------- */
typedef struct {
    int K, k;   /* k: columns of m (k_eff, decided on rank 0) */
    int status; /* VL_OK or the failure code on rank 0 */
    int rank;
    double tol;
    double *sigma; /* (K) */
    double *v;     /* (K, K) col-major, column i = v_i */
    double *m;     /* (K, k) col-major: route-specific */
    char msg[MSG_LEN];
} small_t;

static int small_alloc(small_t *s, int K)
{
    memset(s, 0, sizeof *s);
    s->K = K;
    s->sigma = vl_calloc((size_t)K, sizeof(double), "pca sigma");
    s->v = vl_calloc((size_t)K * K, sizeof(double), "pca V");
    s->m = vl_calloc((size_t)K * K, sizeof(double), "pca M");
    return (s->sigma && s->v && s->m) ? VL_OK : VL_EIO;
}

static void small_free(small_t *s)
{
    free(s->sigma);
    free(s->v);
    free(s->m);
}

/* Rank 0 records a failure to broadcast. */
#define SMALL_FAIL(s, st, ...)                                                 \
    do {                                                                       \
        (s)->status = (st);                                                    \
        snprintf((s)->msg, MSG_LEN, __VA_ARGS__);                              \
    } while (0)

/* Broadcast the small result from rank 0; a failure on rank 0 becomes a collective
 * failure with rank 0's message. Collective over comm. */
static int small_bcast(small_t *s, MPI_Comm comm)
{
    int hdr[3] = {s->status, s->rank, s->k};
    MPI_Bcast(hdr, 3, MPI_INT, 0, comm);
    s->status = hdr[0], s->rank = hdr[1], s->k = hdr[2];
    if (s->status) {
        MPI_Bcast(s->msg, MSG_LEN, MPI_CHAR, 0, comm);
        s->msg[MSG_LEN - 1] = 0;
        return VL_FAIL_ALL(s->status, "%s", s->msg);
    }
    MPI_Bcast(&s->tol, 1, MPI_DOUBLE, 0, comm);
    MPI_Bcast(s->sigma, s->K, MPI_DOUBLE, 0, comm);
    MPI_Bcast(s->v, s->K * s->K, MPI_DOUBLE, 0, comm);
    if (s->k) MPI_Bcast(s->m, s->K * s->k, MPI_DOUBLE, 0, comm);
    return VL_OK;
}

/* Numerical rank: entries of sigma (descending) above tol. */
static int count_above(const double *sigma, int n, double tol)
{
    int r = 0;
    while (r < n && sigma[r] > tol) r++;
    return r;
}

/* Orientation: flips column i of v (K×n col-major) and of each of the two optional
 * partner matrices (rows × n col-major) so that v's largest-magnitude entry in column
 * i is positive. */
static void orient(double *v, int K, int n, double *p1, int rows1, double *p2, int rows2)
{
    for (int i = 0; i < n; i++) {
        int jmax = 0;
        for (int j = 1; j < K; j++)
            if (fabs(v[j + (size_t)i * K]) > fabs(v[jmax + (size_t)i * K])) jmax = j;
        if (v[jmax + (size_t)i * K] >= 0) continue;
        for (int j = 0; j < K; j++) v[j + (size_t)i * K] = -v[j + (size_t)i * K];
        if (p1)
            for (int j = 0; j < rows1; j++) p1[j + (size_t)i * rows1] = -p1[j + (size_t)i * rows1];
        if (p2)
            for (int j = 0; j < rows2; j++) p2[j + (size_t)i * rows2] = -p2[j + (size_t)i * rows2];
    }
}

/* Symmetric eigendecomposition of the K×K matrix in g (upper triangle used):
 * eigenvalues descending in lam, eigenvectors as columns of v. Rank 0 only. */
static int eig_desc(double *g, int K, double *lam, double *v, small_t *s)
{
    double *w = malloc(sizeof(double) * K);
    if (!w) { SMALL_FAIL(s, VL_EIO, "out of memory in the K x K eigenproblem"); return 1; }
    int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', K, g, K, w);
    if (info) {
        SMALL_FAIL(s, info < 0 ? VL_EINPUT : VL_ENUM, "pca: LAPACKE_dsyevd info %d (K = %d)", info, K);
        free(w);
        return 1;
    }
    for (int i = 0; i < K; i++) {
        lam[i] = w[K - 1 - i];
        memcpy(v + (size_t)i * K, g + (size_t)(K - 1 - i) * K, sizeof(double) * K);
    }
    free(w);
    return 0;
}

/* g (rank 0) = sum over comm of the n × n upper triangles of AᵀA, A (rows × n) with
 * leading dimension lda; loc: n × n scratch. */
static void gram_reduce(const double *a, int64_t lda, int64_t rows, int n, double *loc, double *g, MPI_Comm comm)
{
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, n, (int)rows, 1.0, a, (int)lda, 0.0, loc, n);
    MPI_Reduce(loc, g, n * n, MPI_DOUBLE, MPI_SUM, 0, comm);
}

/* ---------------------------------------------------------------------------
 * Gram routes. Pass 1: AᵀA = V Λ Vᵀ; r1 = eigenvalues above nmax·eps·λ_1.
 * One pass: σ = Λ^{1/2}, U = A V_k Σ_k^{-1}.
 * Two passes: Q1 = A V_r Λ_r^{-1/2} (d × r1); Q1ᵀQ1 = W μ Wᵀ; A = Q2 R' with
 * Q2 = Q1 W μ^{-1/2} and R' = μ^{1/2} Wᵀ Λ_r^{1/2} V_rᵀ (r1 × K); R' = X S Yᵀ gives
 * σ = S, v = Y and U = Q2 X = Q1 (W μ^{-1/2} X). The second pass restores the
 * orthogonality that the first lost (~eps κ²) while eps κ² < 1.
 * ------------------------------------------------------------------------- */

/* Rank 0, pass 2: from G2 = Q1ᵀQ1 (r1 × r1, in g), pass-1 λ and V (s->v), fills s. */
static void gram2_small(double *g, int r1, const double *lam, int K, int k, small_t *s)
{
    double *mu = malloc(sizeof(double) * r1), *w = malloc(sizeof(double) * r1 * r1);
    double *rp = malloc(sizeof(double) * r1 * K), *x = malloc(sizeof(double) * r1 * r1);
    double *yt = malloc(sizeof(double) * r1 * K), *sv = malloc(sizeof(double) * r1);
    double *sup = malloc(sizeof(double) * (r1 + 1));
    if (!mu || !w || !rp || !x || !yt || !sv || !sup) {
        SMALL_FAIL(s, VL_EIO, "out of memory in the small PCA problem");
        goto out;
    }
    if (eig_desc(g, r1, mu, w, s)) goto out;
    if (!(mu[r1 - 1] > 0)) {
        SMALL_FAIL(s, VL_ENUM, "pca gram2: second Gram matrix not positive definite (mu_min %g)", mu[r1 - 1]);
        goto out;
    }
    /* R' (r1 × K) = diag(sqrt(mu)) Wᵀ diag(sqrt(lam)) V_rᵀ */
    for (int c = 0; c < K; c++)
        for (int i = 0; i < r1; i++) {
            double acc = 0;
            for (int l = 0; l < r1; l++) acc += w[l + (size_t)i * r1] * sqrt(lam[l]) * s->v[c + (size_t)l * K];
            rp[i + (size_t)c * r1] = sqrt(mu[i]) * acc;
        }
    int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', r1, K, rp, r1, sv, x, r1, yt, r1, sup);
    if (info) {
        SMALL_FAIL(s, info < 0 ? VL_EINPUT : VL_ENUM, "pca gram2: LAPACKE_dgesvd info %d", info);
        goto out;
    }
    /* v_i = row i of Yᵀ for i < r1; beyond r1 the pass-1 vectors (unresolved) stay */
    for (int i = 0; i < r1; i++) {
        s->sigma[i] = sv[i];
        for (int j = 0; j < K; j++) s->v[j + (size_t)i * K] = yt[i + (size_t)j * r1];
    }
    s->rank = count_above(s->sigma, r1, s->tol);
    s->k = k < s->rank ? k : s->rank;
    orient(s->v, K, r1, x, r1, NULL, 0);
    /* M2 (r1 × k, ld K) = W diag(mu^{-1/2}) X[:, :k] */
    for (int i = 0; i < s->k; i++)
        for (int l = 0; l < r1; l++) {
            double acc = 0;
            for (int q = 0; q < r1; q++) acc += w[l + (size_t)q * r1] / sqrt(mu[q]) * x[q + (size_t)i * r1];
            s->m[l + (size_t)i * K] = acc;
        }
out:
    free(mu); free(w); free(rp); free(x); free(yt); free(sv); free(sup);
}

/* Q1 = A M1 (rows × r1) in blocks of SWEEP_ROWS rows that stay in cache: for each block,
 * g2 += Q1bᵀQ1b (upper, r1 × r1) when g2, and U[block] = Q1b M2 (M2: r1 × k, ld K) when
 * u. Q1 is never stored whole: the U sweep recomputes each block with the very same
 * dgemm call as the G2 sweep, so U is built from exactly the Q1 whose Gram matrix the
 * second pass orthonormalised (bitwise: same BLAS call on the same operands; the
 * orthonormality check at condition 1e6 in test_pca would show any difference, as an
 * eps·κ loss). Saves d_local·K doubles and one write and two reads of Q1. */
static void q1_sweep(const double *a, int64_t rows, int64_t lda, int K, const double *m1, int r1, double *q1b,
                     double *g2, const double *m2, int k, double *u)
{
    for (int64_t r0 = 0; r0 < rows; r0 += SWEEP_ROWS) {
        const int nb = (int)(rows - r0 < SWEEP_ROWS ? rows - r0 : SWEEP_ROWS);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nb, r1, K, 1.0, a + r0, (int)lda, m1, K, 0.0, q1b,
                    SWEEP_ROWS);
        if (g2) cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, r1, nb, 1.0, q1b, SWEEP_ROWS, 1.0, g2, r1);
        if (u)
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nb, k, r1, 1.0, q1b, SWEEP_ROWS, m2, K, 0.0, u + r0,
                        (int)lda);
    }
}

static int route_gram(const double *a, int64_t d_local, int64_t d, int K, int k, int two_pass, MPI_Comm comm,
                      small_t *s, double **basis)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    const int64_t lda = d_local > 1 ? d_local : 1;
    const double nmax = (double)(d > K ? d : K);
    double *g = vl_calloc((size_t)K * K, sizeof(double), "pca Gram matrix");
    double *loc = vl_calloc((size_t)K * K, sizeof(double), "pca Gram matrix");
    double *lam = vl_calloc((size_t)K, sizeof(double), "pca eigenvalues");
    double *m1 = vl_calloc((size_t)K * K, sizeof(double), "pca M1");
    double *q1 = NULL;
    int r1 = 0, st = comm_agree_failure(comm, (g && loc && lam && m1) ? VL_OK : VL_EIO);
    if (st) goto done;

    /* pass 1 */
    gram_reduce(a, lda, d_local, K, loc, g, comm);
    if (rank == 0) {
        int finite = 1;
        for (int j = 0; j < K; j++) finite &= isfinite(g[j + (size_t)j * K]) != 0;
        if (!finite) {
            SMALL_FAIL(s, VL_EINPUT, "pca: the matrix has non-finite entries (or overflows in its Gram matrix)");
        } else if (!eig_desc(g, K, lam, s->v, s)) {
            if (!(lam[0] > 0)) {
                SMALL_FAIL(s, VL_EINPUT, "pca: the matrix is zero: no principal directions");
                goto small_done;
            }
            double tol_lam = nmax * DBL_EPSILON * lam[0];
            s->tol = sqrt(tol_lam);
            for (int i = 0; i < K; i++) s->sigma[i] = sqrt(lam[i] > 0 ? lam[i] : 0);
            s->rank = r1 = count_above(lam, K, tol_lam);
            if (two_pass) { /* M1 = V_r Λ_r^{-1/2}, broadcast as m with r1 columns */
                s->k = r1;
                for (int i = 0; i < r1; i++)
                    for (int j = 0; j < K; j++) s->m[j + (size_t)i * K] = s->v[j + (size_t)i * K] / sqrt(lam[i]);
            } else { /* M = V_k Σ_k^{-1} */
                s->k = k < r1 ? k : r1;
                orient(s->v, K, K, NULL, 0, NULL, 0);
                for (int i = 0; i < s->k; i++)
                    for (int j = 0; j < K; j++) s->m[j + (size_t)i * K] = s->v[j + (size_t)i * K] / s->sigma[i];
            }
        }
    }
small_done:
    if ((st = small_bcast(s, comm))) goto done;
    if (two_pass) {
        r1 = s->k;
        memcpy(m1, s->m, sizeof(double) * K * r1);
        q1 = vl_alloc(sizeof(double) * SWEEP_ROWS * r1, "pca Q1 block");
        if ((st = comm_agree_failure(comm, q1 ? VL_OK : VL_EIO))) goto done;
        /* pass 2: G2 = Q1ᵀQ1 (r1 × r1, ld r1), Q1 formed block by block */
        memset(loc, 0, sizeof(double) * r1 * r1);
        q1_sweep(a, d_local, lda, K, m1, r1, q1, loc, NULL, 0, NULL);
        MPI_Reduce(loc, g, r1 * r1, MPI_DOUBLE, MPI_SUM, 0, comm);
        if (rank == 0) gram2_small(g, r1, lam, K, k, s);
        if ((st = small_bcast(s, comm))) goto done;
    }
    /* U (d_local × k, col-major = the (k, d_local) row-major basis) */
    *basis = vl_alloc(sizeof(double) * (size_t)lda * s->k, "pca basis");
    if ((st = comm_agree_failure(comm, *basis ? VL_OK : VL_EIO))) goto done;
    if (two_pass) /* U = Q1 M2, Q1 recomputed block by block exactly as in pass 2 */
        q1_sweep(a, d_local, lda, K, m1, r1, q1, NULL, s->m, s->k, *basis);
    else /* U = A M, M = V_k Σ_k^{-1} */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)d_local, s->k, K, 1.0, a, (int)lda, s->m, K, 0.0,
                    *basis, (int)lda);
done:
    free(g);
    free(loc);
    free(lam);
    free(m1);
    free(q1);
    return st;
}

/* ---------------------------------------------------------------------------
 * ScaLAPACK routes: a P×1 BLACS grid over comm (process row = rank in comm).
 * ------------------------------------------------------------------------- */
typedef struct {
    int handle, ctxt, P, myrow;
} grid_t;

static int grid_open(MPI_Comm comm, grid_t *gr)
{
    int rank, P, pnum, nprocs, nprow, npcol, mycol;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &P);
    Cblacs_pinfo(&pnum, &nprocs); /* initialises BLACS on first use */
    gr->handle = Csys2blacs_handle(comm);
    gr->ctxt = gr->handle;
    Cblacs_gridinit(&gr->ctxt, "R", P, 1);
    Cblacs_gridinfo(gr->ctxt, &nprow, &npcol, &gr->myrow, &mycol);
    gr->P = P;
    int ok = nprow == P && npcol == 1 && gr->myrow == rank && mycol == 0;
    int all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) {
        if (nprow != -1) Cblacs_gridexit(gr->ctxt);
        Cfree_blacs_system_handle(gr->handle);
        return VL_FAIL_ALL(VL_EINPUT, "pca: BLACS grid %d x %d is not the P x 1 grid over the communicator (P = %d)",
                           nprow, npcol, P);
    }
    return VL_OK;
}

static void grid_close(grid_t *gr)
{
    Cblacs_gridexit(gr->ctxt);
    Cfree_blacs_system_handle(gr->handle);
}

static int desc_init(int *desc, int m, int n, int mb, int nb, int ctxt, int lld, const char *what)
{
    int zero = 0, info = 0;
    descinit_(desc, &m, &n, &mb, &nb, &zero, &zero, &ctxt, &lld, &info);
    if (info) return VL_FAIL(VL_EINPUT, "pca: descinit of %s (%d x %d, blocks %d x %d, lld %d): info %d", what, m, n,
                             mb, nb, lld, info);
    return VL_OK;
}

/* ScaLAPACK's info, agreed over comm: info < 0 is a bug on our side or bad input
 * (an illegal argument: nothing was computed), info > 0 a numerical failure. */
static int check_info(MPI_Comm comm, const char *routine, int info)
{
    int st = VL_OK;
    if (info < 0) st = VL_FAIL(VL_EINPUT, "pca: %s: illegal argument (info %d); nothing was computed", routine, info);
    if (info > 0) st = VL_FAIL(VL_ENUM, "pca: %s did not converge (info %d)", routine, info);
    return comm_agree_failure(comm, st);
}

/* Workspace size from a query's work[0], bounded by ScaLAPACK's 32-bit lwork. */
static int lwork_from(MPI_Comm comm, double query, const char *routine, int *lwork)
{
    int st = VL_OK;
    if (!(query < (double)INT_MAX))
        st = VL_FAIL(VL_EINPUT,
                     "pca: %s needs %.3g doubles of workspace, beyond ScaLAPACK's 32-bit limit: use more ranks "
                     "or route gram2",
                     routine, query);
    *lwork = st ? 0 : (int)query + 1;
    return comm_agree_failure(comm, st);
}

/* Owner rank of global row i (0-based) in the canonical partition (its local row: i - owner·mb). */
static int owner_of(int64_t i, int64_t mb) { return (int)(i / mb); }

/* (b) pdgeqrf, SVD of R on rank 0, U = Q [U_R(:, :k); 0] by pdormqr. w: the working
 * copy of A (destroyed). */
static int route_qr(double *w, int64_t d_local, int64_t d, int K, int k, MPI_Comm comm, small_t *s,
                    double **basis)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    grid_t gr;
    CHECK(grid_open(comm, &gr));
    const int P = gr.P, one = 1;
    const int64_t mb64 = (d + P - 1) / P, lo = (int64_t)rank * mb64;
    const int di = (int)d, mb = (int)mb64, lld = d_local > 1 ? (int)d_local : 1, nb = K < QR_NB ? K : QR_NB;
    int desc[SL_DLEN], descc[SL_DLEN], info = 0, lwork = 0;
    double *tau = vl_calloc((size_t)K, sizeof(double), "pca tau"), *work = NULL, *c = NULL;
    double *rloc = vl_calloc((size_t)K * K, sizeof(double), "pca R"), *r = NULL, *sup = NULL, *ur = NULL;
    int st = comm_agree_failure(comm, (tau && rloc) ? VL_OK : VL_EIO);
    if (st) goto done;
    if ((st = comm_agree_failure(comm, desc_init(desc, di, K, mb, nb, gr.ctxt, lld, "A")))) goto done;
    double q = 0;
    lwork = -1;
    pdgeqrf_(&di, &K, w, &one, &one, desc, tau, &q, &lwork, &info);
    if ((st = check_info(comm, "pdgeqrf (workspace query)", info))) goto done;
    if ((st = lwork_from(comm, q, "pdgeqrf", &lwork))) goto done;
    work = vl_alloc(sizeof(double) * (size_t)lwork, "pdgeqrf workspace");
    if ((st = comm_agree_failure(comm, work ? VL_OK : VL_EIO))) goto done;
    pdgeqrf_(&di, &K, w, &one, &one, desc, tau, work, &lwork, &info);
    if ((st = check_info(comm, "pdgeqrf", info))) goto done;
    free(work);
    work = NULL;

    /* R: the upper triangle of the first K global rows, gathered on rank 0 */
    for (int i = 0; i < K; i++)
        if (owner_of(i, mb64) == rank)
            for (int j = i; j < K; j++) rloc[i + (size_t)j * K] = w[(i - lo) + (size_t)j * lld];
    if (rank == 0) {
        r = malloc(sizeof(double) * K * K);
        ur = malloc(sizeof(double) * K * K);
        sup = malloc(sizeof(double) * (K + 1));
    }
    if (rank == 0 && !r)
        MPI_Reduce(MPI_IN_PLACE, rloc, K * K, MPI_DOUBLE, MPI_SUM, 0, comm); /* only to stay collective */
    else
        MPI_Reduce(rloc, r, K * K, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (rank == 0) {
        if (!r || !ur || !sup) {
            SMALL_FAIL(s, VL_EIO, "out of memory in the small PCA problem");
        } else {
            double *vt = rloc; /* reuse: K × K */
            info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', K, K, r, K, s->sigma, ur, K, vt, K, sup);
            if (info) {
                SMALL_FAIL(s, info < 0 ? VL_EINPUT : VL_ENUM, "pca qr: LAPACKE_dgesvd of R: info %d", info);
            } else if (!(s->sigma[0] > 0)) {
                SMALL_FAIL(s, VL_EINPUT, "pca: the matrix is zero: no principal directions");
            } else {
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) s->v[j + (size_t)i * K] = vt[i + (size_t)j * K];
                s->tol = (double)(d > K ? d : K) * DBL_EPSILON * s->sigma[0];
                s->rank = count_above(s->sigma, K, s->tol);
                s->k = k < s->rank ? k : s->rank;
                orient(s->v, K, K, ur, K, NULL, 0);
                memcpy(s->m, ur, sizeof(double) * K * s->k);
            }
        }
    }
    if ((st = small_bcast(s, comm))) goto done;

    /* C = [U_R(:, :k); 0] in A's layout, then C := Q C */
    c = vl_calloc((size_t)lld * s->k, sizeof(double), "pca basis");
    if ((st = comm_agree_failure(comm, c ? VL_OK : VL_EIO))) goto done;
    for (int i = 0; i < K; i++)
        if (owner_of(i, mb64) == rank)
            for (int j = 0; j < s->k; j++) c[(i - lo) + (size_t)j * lld] = s->m[i + (size_t)j * K];
    if ((st = comm_agree_failure(comm, desc_init(descc, di, s->k, mb, nb, gr.ctxt, lld, "C")))) goto done;
    lwork = -1;
    pdormqr_("L", "N", &di, &s->k, &K, w, &one, &one, desc, tau, c, &one, &one, descc, &q, &lwork, &info, 1, 1);
    if ((st = check_info(comm, "pdormqr (workspace query)", info))) goto done;
    if ((st = lwork_from(comm, q, "pdormqr", &lwork))) goto done;
    work = vl_alloc(sizeof(double) * (size_t)lwork, "pdormqr workspace");
    if ((st = comm_agree_failure(comm, work ? VL_OK : VL_EIO))) goto done;
    pdormqr_("L", "N", &di, &s->k, &K, w, &one, &one, desc, tau, c, &one, &one, descc, work, &lwork, &info, 1, 1);
    if ((st = check_info(comm, "pdormqr", info))) goto done;
    *basis = c; /* ld = lld = d_local (or 1 when the rank holds no rows) */
    c = NULL;
done:
    free(tau); free(work); free(c); free(rloc); free(r); free(sup); free(ur);
    grid_close(&gr);
    return st;
}

/* (a) pdgesvd on square SVD_NB blocks. w: the working copy of A (destroyed when P
 * is 1: one process holds every block in order, so no redistribution). */
static int route_svd(double *w, int64_t d_local, int64_t d, int K, int k, MPI_Comm comm, small_t *s,
                     double **basis)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    grid_t gr;
    CHECK(grid_open(comm, &gr));
    const int P = gr.P, one = 1, zero = 0, nb = SVD_NB;
    const int di = (int)d, mb = (int)((d + P - 1) / P), lld = d_local > 1 ? (int)d_local : 1;
    const int rows_b = numroc_(&di, &nb, &gr.myrow, &zero, &P), lldb = rows_b > 1 ? rows_b : 1;
    const int rows_v = numroc_(&K, &nb, &gr.myrow, &zero, &P), lldv = rows_v > 1 ? rows_v : 1;
    int desca[SL_DLEN], descb[SL_DLEN], descu[SL_DLEN], descvt[SL_DLEN], descc[SL_DLEN], info = 0, lwork = 0;
    double *b = NULL, *u = NULL, *vt = NULL, *work = NULL, *c = NULL, *vfull = NULL;
    int st = VL_OK;
    /* the square-block requirement of pdgesvd (MB_A == NB_A), checked, not assumed */
    st = desc_init(descb, di, K, nb, nb, gr.ctxt, lldb, "A (square blocks)");
    if (!st) st = desc_init(descu, di, K, nb, nb, gr.ctxt, lldb, "U");
    if (!st) st = desc_init(descvt, K, K, nb, nb, gr.ctxt, lldv, "VT");
    if (!st) st = desc_init(desca, di, K, mb, K, gr.ctxt, lld, "A (row blocks)");
    if (!st && (descb[SL_MB] != descb[SL_NB] || descu[SL_MB] != descu[SL_NB]))
        st = VL_FAIL(VL_EINPUT, "pca svd: pdgesvd needs square blocks, have %d x %d", descb[SL_MB], descb[SL_NB]);
    if ((st = comm_agree_failure(comm, st))) goto done;
    if (P == 1) {
        b = w;
    } else {
        b = vl_alloc(sizeof(double) * (size_t)lldb * K, "pca A in square blocks");
        if ((st = comm_agree_failure(comm, b ? VL_OK : VL_EIO))) goto done;
        pdgemr2d_(&di, &K, w, &one, &one, desca, b, &one, &one, descb, &gr.ctxt);
    }
    u = vl_alloc(sizeof(double) * (size_t)lldb * K, "pca U");
    vt = vl_calloc((size_t)lldv * K, sizeof(double), "pca VT");
    vfull = vl_calloc((size_t)K * K, sizeof(double), "pca V");
    if ((st = comm_agree_failure(comm, (u && vt && vfull) ? VL_OK : VL_EIO))) goto done;
    double q = 0;
    lwork = -1;
    pdgesvd_("V", "V", &di, &K, b, &one, &one, descb, s->sigma, u, &one, &one, descu, vt, &one, &one, descvt, &q,
             &lwork, &info, 1, 1);
    if ((st = check_info(comm, "pdgesvd (workspace query)", info))) goto done;
    if ((st = lwork_from(comm, q, "pdgesvd", &lwork))) goto done;
    work = vl_alloc(sizeof(double) * (size_t)lwork, "pdgesvd workspace");
    if ((st = comm_agree_failure(comm, work ? VL_OK : VL_EIO))) goto done;
    pdgesvd_("V", "V", &di, &K, b, &one, &one, descb, s->sigma, u, &one, &one, descu, vt, &one, &one, descvt, work,
             &lwork, &info, 1, 1);
    if ((st = check_info(comm, "pdgesvd", info))) goto done;
    free(work);
    work = NULL;

    /* VT's rows are block-cyclic over the P×1 grid: global row g sits on rank
     * (g/nb) mod P at local row (g/(nb·P))·nb + g mod nb. Gathered by an exact sum. */
    for (int gi = 0; gi < K; gi++)
        if ((gi / nb) % P == rank) {
            int li = (gi / (nb * P)) * nb + gi % nb;
            for (int j = 0; j < K; j++) vfull[j + (size_t)gi * K] = vt[li + (size_t)j * lldv];
        }
    MPI_Reduce(rank == 0 ? MPI_IN_PLACE : vfull, vfull, K * K, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (rank == 0) {
        if (!(s->sigma[0] > 0)) {
            SMALL_FAIL(s, VL_EINPUT, "pca: the matrix is zero: no principal directions");
        } else {
            memcpy(s->v, vfull, sizeof(double) * K * K);
            s->tol = (double)(d > K ? d : K) * DBL_EPSILON * s->sigma[0];
            s->rank = count_above(s->sigma, K, s->tol);
            s->k = k < s->rank ? k : s->rank;
            /* orient V and record the flips in m's first row: m[0 + i*K] = ±1 */
            for (int i = 0; i < K; i++) s->m[(size_t)i * K] = 1;
            orient(s->v, K, K, s->m, K, NULL, 0);
        }
    }
    if ((st = small_bcast(s, comm))) goto done;
    for (int i = 0; i < s->k; i++)
        if (s->m[(size_t)i * K] < 0)
            for (int j = 0; j < rows_b; j++) u[j + (size_t)i * lldb] = -u[j + (size_t)i * lldb];
    if (P == 1) {
        *basis = u; /* ld = d: the first k columns are the basis */
        u = NULL;
    } else {
        c = vl_alloc(sizeof(double) * (size_t)lld * s->k, "pca basis");
        if ((st = comm_agree_failure(comm, c ? VL_OK : VL_EIO))) goto done;
        if ((st = comm_agree_failure(comm, desc_init(descc, di, s->k, mb, s->k, gr.ctxt, lld, "U (row blocks)"))))
            goto done;
        pdgemr2d_(&di, &s->k, u, &one, &one, descu, c, &one, &one, descc, &gr.ctxt);
        *basis = c;
        c = NULL;
    }
done:
    if (b != w) free(b);
    free(u); free(vt); free(vfull); free(work); free(c);
    grid_close(&gr);
    return st;
}

/* ---------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------- */

/* Checks every rank agrees on (identical) arguments and the partition. Collective. */
static int check_input(int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route, MPI_Comm comm)
{
    int rank, P;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &P);
    if (route < 0 || route >= PCA_NROUTES) return VL_FAIL_ALL(VL_EINPUT, "pca: unknown route %d", (int)route);
    if (K < 1) return VL_FAIL_ALL(VL_EINPUT, "pca: K = %d columns: need at least 1", K);
    if (k < 1 || k > K)
        return VL_FAIL_ALL(VL_EINPUT, "pca: %d directions requested from K = %d columns: want 1 <= k <= K", k, K);
    if (d < K)
        return VL_FAIL_ALL(VL_EINPUT, "pca: d = %lld rows < K = %d columns: the matrix must be tall",
                           (long long)d, K);
    /* sum and minimum of d_local, and (for ScaLAPACK) the canonical partition */
    int64_t lo_c, dl_c;
    pca_partition(d, comm, &lo_c, &dl_c);
    int64_t v[5] = {d_local, d_local < 0 ? 1 : 0, d_local != dl_c ? 1 : 0, d_local > 1 ? d_local * K : K, d_local};
    int64_t sum = 0, agg[4] = {0, 0, 0, 0};
    MPI_Allreduce(&v[0], &sum, 1, MPI_INT64_T, MPI_SUM, comm);
    MPI_Allreduce(&v[1], agg, 4, MPI_INT64_T, MPI_MAX, comm);
    if (agg[0] || sum != d)
        return VL_FAIL_ALL(VL_EINPUT, "pca: the ranks' row counts add up to %lld, not d = %lld", (long long)sum,
                           (long long)d);
    if (route == PCA_QR || route == PCA_SVD) {
        if (agg[1])
            return VL_FAIL_ALL(VL_EINPUT,
                               "pca route %s: the rows must follow the canonical partition (pca_partition: "
                               "ceil(d/P) rows per rank in rank order)",
                               pca_route_name(route));
        if (d > INT_MAX || agg[2] > INT_MAX)
            return VL_FAIL_ALL(VL_EINPUT,
                               "pca route %s: %lld local entries exceed ScaLAPACK's 32-bit indexing: use more "
                               "ranks or route gram2",
                               pca_route_name(route), (long long)agg[2]);
    } else if (agg[3] > INT_MAX) {
        return VL_FAIL_ALL(VL_EINPUT, "pca: %lld rows on one rank exceed BLAS's 32-bit dimensions: use more ranks",
                           (long long)agg[3]);
    }
    return VL_OK;
}

/* a: A's local block (read only); scratch: a copy of it that may be destroyed, or
 * NULL (one is made when the route factors in place). */
static int pca_run(const double *a, double *scratch, int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route,
                   MPI_Comm comm, vl_pca_t *out)
{
    memset(out, 0, sizeof *out);
    CHECK(check_input(d_local, d, K, k, route, comm));
    small_t s;
    int st = comm_agree_failure(comm, small_alloc(&s, K));
    double *w = scratch, *basis = NULL;
    if (st) goto done;
    if (route == PCA_QR || route == PCA_SVD) {
        if (!w) { /* working copy, checked for non-finite entries on the way */
            const int64_t lld = d_local > 1 ? d_local : 1;
            w = vl_alloc(sizeof(double) * (size_t)lld * K, "pca working copy");
            if ((st = comm_agree_failure(comm, w ? VL_OK : VL_EIO))) goto done;
            memcpy(w, a, sizeof(double) * (size_t)d_local * K);
        }
        int bad = 0;
        for (int64_t i = 0; i < d_local * K; i++) bad |= !isfinite(w[i]);
        if ((st = comm_agree(comm, bad))) {
            st = VL_FAIL_ALL(VL_EINPUT, "pca: the matrix has non-finite entries");
            goto done;
        }
        st = route == PCA_QR ? route_qr(w, d_local, d, K, k, comm, &s, &basis)
                             : route_svd(w, d_local, d, K, k, comm, &s, &basis);
    } else {
        st = route_gram(a, d_local, d, K, k, route == PCA_GRAM2, comm, &s, &basis);
    }
    if (st) goto done;

    out->route = route;
    out->d = d;
    out->d_local = d_local;
    out->K = K;
    out->k_requested = k;
    out->k = s.k;
    out->rank = s.rank;
    out->tol = s.tol;
    out->sigma = s.sigma;
    s.sigma = NULL;
    out->evr = vl_calloc((size_t)K, sizeof(double), "pca evr");
    out->vt = vl_alloc(sizeof(double) * (size_t)K * s.k, "pca vt");
    if ((st = comm_agree_failure(comm, (out->evr && out->vt) ? VL_OK : VL_EIO))) goto done;
    double ss = 0;
    for (int i = 0; i < K; i++) ss += out->sigma[i] * out->sigma[i];
    for (int i = 0; i < K; i++) out->evr[i] = out->sigma[i] * out->sigma[i] / ss;
    memcpy(out->vt, s.v, sizeof(double) * (size_t)K * s.k); /* column i of V = row i of vt */
    /* the basis comes with leading dimension max(1, d_local): exactly d_local unless empty */
    out->basis = basis;
    basis = NULL;
done:
    if (w != scratch) free(w);
    free(basis);
    small_free(&s);
    if (st) pca_free(out);
    return st;
}

int pca_compute(const double *a_local, int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route, MPI_Comm comm,
                vl_pca_t *out)
{
    CHECK(pca_run(a_local, NULL, d_local, d, K, k, route, comm, out));
    return VL_OK;
}

int pca_compute_float(const float *a_local, int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route,
                      MPI_Comm comm, vl_pca_t *out)
{
    memset(out, 0, sizeof *out);
    const int64_t n = d_local > 0 ? d_local * (K > 0 ? K : 0) : 0;
    const int64_t lld = d_local > 1 ? d_local : 1;
    double *w = vl_alloc(sizeof(double) * (size_t)lld * (K > 0 ? K : 1), "pca working copy");
    int st = comm_agree_failure(comm, w ? VL_OK : VL_EIO);
    if (st) { free(w); return st; }
    for (int64_t i = 0; i < n; i++) w[i] = a_local[i];
    st = pca_run(w, w, d_local, d, K, k, route, comm, out);
    free(w);
    CHECK(st);
    return VL_OK;
}
