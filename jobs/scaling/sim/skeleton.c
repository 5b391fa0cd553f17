/* skeleton.c — valley's communication skeleton for SimGrid SMPI (jobs/scaling/sim/run.sh).
 *
 * The same MPI calls in the same pattern as valley, with the computation replaced by
 * durations measured on the real machine (smpi_execute_benched) or by the real BLAS
 * kernels benchmarked a few times and replayed (SMPI_SAMPLE_GLOBAL):
 *
 *   skeleton train D LOCAL_BATCH STEPS T_SAMPLE
 *       data-parallel SGD (src/train.c): per step a forward/backward pass of
 *       LOCAL_BATCH samples (T_SAMPLE seconds each, measured by valley's compute
 *       timer) then MPI_Allreduce(MPI_IN_PLACE, g, D + 2, MPI_FLOAT, MPI_SUM, group).
 *   skeleton surface POINTS GROUP_SIZE CHUNK T_POINT
 *       surface sweep (src/surface.c): results window and chunk counter on rank 0
 *       (MPI_Win_allocate); each group leader takes the next chunk with
 *       MPI_Fetch_and_op under a shared lock, MPI_Bcast to its group; every point is
 *       evaluated data-parallel in the group (T_POINT / GROUP_SIZE seconds, then the
 *       allreduce of 3 loss/accuracy sums for the training and the test set) and the
 *       leader MPI_Puts its 5 doubles into rank 0's window under an exclusive lock;
 *       a final MPI_Barrier.
 *   skeleton pca D K k
 *       the Gram routes of src/pca.c (pca.route = gram2) — ScaLAPACK cannot be linked
 *       under SMPI, so the TSQR/SVD routes are not simulated: rows of the D x K
 *       deviation matrix in blocks over the ranks; pass 1 local Gram (cblas_dsyrk,
 *       sampled), MPI_Reduce of the K x K Gram to rank 0, eigen-decomposition there
 *       (LAPACKE_dsyev), broadcast of the small factors (MPI_Bcast x 6 as small_bcast);
 *       pass 2 Q1 = A M1 and its Gram (cblas_dgemm + dsyrk, sampled), MPI_Reduce,
 *       small SVD on rank 0, broadcast; the basis U = Q1 M2 (cblas_dgemm, sampled).
 *       Reading swag.nc and writing subspace.nc are not simulated.
 *
 * Output (rank 0), one line: MODE P simulated seconds: total, compute, communication
 * (max over ranks), and the mode's parameters. Build: smpicc (see run.sh).
 */
#include <cblas.h>
#include <lapacke.h>
#include <mpi.h>
#include <smpi/smpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double t_comp, t_comm;

/* MPI_Reduce; on one rank a copy (SimGrid 3.32's ompi reduce aborts with "Actor pid=-1
 * is gone" on a one-rank communicator; a one-rank reduce moves no data anyway). */
static void reduce(const void *in, void *out, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm)
{
    int P, size;
    MPI_Comm_size(comm, &P);
    MPI_Type_size(t, &size);
    if (P == 1) memcpy(out, in, (size_t)n * size);
    else MPI_Reduce(in, out, n, t, op, 0, comm);
}

static void compute(double seconds)
{
    double t = MPI_Wtime();
    smpi_execute_benched(seconds);
    t_comp += MPI_Wtime() - t;
}

#define COMM(call)                          \
    do {                                    \
        double t_ = MPI_Wtime();            \
        call;                               \
        t_comm += MPI_Wtime() - t_;         \
    } while (0)

static void report(const char *mode, double total, const char *params)
{
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    double in[3] = {total, t_comp, t_comm}, mx[3];
    reduce(in, mx, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("%s %d total %.6f compute %.6f comm %.6f %s\n", mode, P, mx[0], mx[1], mx[2], params);
}

static int do_train(long d, int local_batch, int steps, double t_sample)
{
    float *g = SMPI_SHARED_MALLOC(sizeof(float) * (size_t)(d + 2));
    memset(g, 0, sizeof(float) * (size_t)(d + 2));
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int s = 0; s < steps; s++) {
        compute(t_sample * local_batch);
        COMM(MPI_Allreduce(MPI_IN_PLACE, g, (int)d + 2, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
    double total = MPI_Wtime() - t0;
    char p[256];
    snprintf(p, sizeof p, "d %ld local_batch %d steps %d t_sample %g per_step %.6f", d, local_batch, steps, t_sample,
             total / steps);
    report("train", total, p);
    SMPI_SHARED_FREE(g);
    return 0;
}

enum { NQ = 4, STRIDE = NQ + 1 };

static int do_surface(int npoints, int gsize, int chunk, double t_point)
{
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    if (P % gsize) { if (!rank) fprintf(stderr, "group size must divide P\n"); return 2; }
    MPI_Comm group;
    MPI_Comm_split(MPI_COMM_WORLD, rank / gsize, rank % gsize, &group);
    int grank;
    MPI_Comm_rank(group, &grank);
    double *res;
    long long *ctr;
    MPI_Win wres, wctr;
    MPI_Win_allocate(rank == 0 ? (MPI_Aint)((size_t)npoints * STRIDE * sizeof(double)) : 0, sizeof(double),
                     MPI_INFO_NULL, MPI_COMM_WORLD, &res, &wres);
    MPI_Win_allocate(rank == 0 ? (MPI_Aint)sizeof(long long) : 0, sizeof(long long), MPI_INFO_NULL, MPI_COMM_WORLD,
                     &ctr, &wctr);
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wctr);
        *ctr = 0;
        MPI_Win_unlock(0, wctr);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    int mine = 0;
    for (;;) {
        long long k = 0, one = 1;
        if (grank == 0) {
            COMM(MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, wctr); MPI_Fetch_and_op(&one, &k, MPI_LONG_LONG, 0, 0, MPI_SUM, wctr);
                 MPI_Win_unlock(0, wctr));
        }
        COMM(MPI_Bcast(&k, 1, MPI_LONG_LONG, 0, group));
        const long long first = k * chunk;
        if (first >= npoints) break;
        for (long long q = first; q < first + chunk && q < npoints; q++) {
            double vals[STRIDE] = {0}, sums[3] = {0};
            for (int set = 0; set < 2; set++) { /* training set, then test set */
                compute(t_point / gsize / 2);
                COMM(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, group));
            }
            vals[NQ] = 1.0;
            if (grank == 0) {
                COMM(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, wres);
                     MPI_Put(vals, STRIDE, MPI_DOUBLE, 0, (MPI_Aint)q * STRIDE, STRIDE, MPI_DOUBLE, wres);
                     MPI_Win_unlock(0, wres));
            }
            mine++;
        }
    }
    COMM(MPI_Barrier(MPI_COMM_WORLD));
    double total = MPI_Wtime() - t0;
    char p[256];
    snprintf(p, sizeof p, "points %d group_size %d chunk %d t_point %g per_point %.6f", npoints, gsize, chunk, t_point,
             total / npoints);
    report("surface", total, p);
    MPI_Win_free(&wres);
    MPI_Win_free(&wctr);
    MPI_Comm_free(&group);
    return 0;
}

/* small_bcast of src/pca.c: header, message-less status, tol, sigma, V, M */
static void small_bcast(int K, int kk, double *buf)
{
    int hdr[3] = {0, K, kk};
    COMM(MPI_Bcast(hdr, 3, MPI_INT, 0, MPI_COMM_WORLD); MPI_Bcast(buf, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
         MPI_Bcast(buf, K, MPI_DOUBLE, 0, MPI_COMM_WORLD); MPI_Bcast(buf, K * K, MPI_DOUBLE, 0, MPI_COMM_WORLD);
         if (kk) MPI_Bcast(buf, K * kk, MPI_DOUBLE, 0, MPI_COMM_WORLD));
}

static int do_pca(long d, int K, int k)
{
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const long dl = d / P + (rank < d % P); /* pca_partition: contiguous row blocks */
    /* One shared buffer for every rank's block (the values do not matter for timing). */
    double *a = SMPI_SHARED_MALLOC(sizeof(double) * (size_t)(d / P + 1) * K);
    double *q = SMPI_SHARED_MALLOC(sizeof(double) * (size_t)(d / P + 1) * K);
    double *g = calloc((size_t)K * K, sizeof(double)), *loc = calloc((size_t)K * K, sizeof(double));
    double *buf = calloc((size_t)K * K + K, sizeof(double)), *w = calloc((size_t)K, sizeof(double));
    for (long i = 0; i < (d / P + 1) * K; i += 512) a[i] = 1e-3 * (double)(i % 97);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), tc;
    /* pass 1: local Gram, reduce, eig on rank 0, broadcast */
    tc = MPI_Wtime();
    SMPI_SAMPLE_GLOBAL(int it = 0, it < 1, it++, 3, 0.02)
    {
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, K, (int)dl, 1.0, a, (int)dl, 0.0, loc, K);
    }
    t_comp += MPI_Wtime() - tc;
    COMM(reduce(loc, g, K * K, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    if (rank == 0) {
        for (int i = 0; i < K; i++) g[i + (size_t)i * K] += K + 1.0; /* SPD */
        LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', K, g, K, w);
    }
    small_bcast(K, K, buf);
    /* pass 2: Q1 = A M1 (d_local x K) and its Gram, reduce, small SVD, broadcast */
    tc = MPI_Wtime();
    SMPI_SAMPLE_GLOBAL(int it = 0, it < 1, it++, 3, 0.02)
    {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)dl, K, K, 1.0, a, (int)dl, buf, K, 0.0, q, (int)dl);
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, K, (int)dl, 1.0, q, (int)dl, 0.0, loc, K);
    }
    t_comp += MPI_Wtime() - tc;
    COMM(reduce(loc, g, K * K, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    if (rank == 0) {
        for (int i = 0; i < K; i++) g[i + (size_t)i * K] += K + 1.0;
        LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', K, g, K, w);
    }
    small_bcast(K, k, buf);
    /* the basis U = Q1 M2 (d_local x k), recomputed block by block as in pass 2 */
    tc = MPI_Wtime();
    SMPI_SAMPLE_GLOBAL(int it = 0, it < 1, it++, 3, 0.02)
    {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)dl, K, K, 1.0, a, (int)dl, buf, K, 0.0, q, (int)dl);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)dl, k, K, 1.0, q, (int)dl, buf, K, 0.0, a, (int)dl);
    }
    t_comp += MPI_Wtime() - tc;
    double total = MPI_Wtime() - t0;
    char p[256];
    snprintf(p, sizeof p, "d %ld K %d k %d", d, K, k);
    report("pca", total, p);
    SMPI_SHARED_FREE(a);
    SMPI_SHARED_FREE(q);
    free(g); free(loc); free(buf); free(w);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int st = 2;
    if (argc == 6 && !strcmp(argv[1], "train"))
        st = do_train(atol(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    else if (argc == 6 && !strcmp(argv[1], "surface"))
        st = do_surface(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    else if (argc == 5 && !strcmp(argv[1], "pca"))
        st = do_pca(atol(argv[2]), atoi(argv[3]), atoi(argv[4]));
    else
        fprintf(stderr, "usage: skeleton train D LOCAL_BATCH STEPS T_SAMPLE | surface POINTS GROUP CHUNK T_POINT | pca D K k\n");
    MPI_Finalize();
    return st;
}
