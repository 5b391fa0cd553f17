/* bench_pca.c — distributed PCA (src/pca.c) beside serial LAPACK.
 *
 *   mpirun -np P bench_pca [-r reps] [-k k] [-K K] [-s] [-R route] d...
 *   (defaults: 3 reps, K 20, k 5, d = 1e6 1e7, every route; -R: that route only)
 *
 * For each d: a d × K matrix (hash entries, columns scaled 1/(1+j)) distributed in
 * the canonical partition; serial LAPACKE_dgesvd (jobu = jobvt = 'S') of the whole
 * matrix on rank 0 while the other ranks sleep (the reference of the target),
 * then every route with k directions and with all K (the same output as LAPACK).
 * Times are wall-clock seconds, the slowest rank, best of reps. The svd route
 * (pdgesvd: ~3.5x serial LAPACK, 6·d + (32 + K)·d/P doubles of workspace per rank)
 * runs only at d <= 2e6 unless -s is given (at d = 1e7 that is ~5 GB per rank).
 * Prints "key value" lines for bench/run.sh:
 *   pca_P<P>_d<d>_lapack_s, pca_P<P>_d<d>_<route>_k<k>_s, ..._ratio (time / lapack).
 */
#include <lapacke.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "valley/error.h"
#include "valley/pca.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void fill(double *a, int64_t lo, int64_t n, int64_t ld, int K)
{
    for (int j = 0; j < K; j++)
        for (int64_t i = 0; i < n; i++)
            a[i + (size_t)j * ld] = ((double)(mix((uint64_t)(lo + i) * K + j) >> 11) * 0x1p-53 - 0.5) / (1.0 + j);
}

/* A barrier that sleeps instead of busy-polling (Open MPI's blocking calls spin a
 * core, which would slow rank 0's serial LAPACK when ranks share cores). */
static void idle_wait(MPI_Comm comm)
{
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(comm, &req);
    while (!done) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    int reps = 3, K = 20, k = 5, svd_big = 0, opt, only = -1;
    while ((opt = getopt(argc, argv, "r:k:K:sR:")) != -1) {
        vl_pca_route_t rr;
        if (opt == 'r') reps = atoi(optarg);
        else if (opt == 'k') k = atoi(optarg);
        else if (opt == 'K') K = atoi(optarg);
        else if (opt == 's') svd_big = 1;
        else if (opt == 'R' && pca_route_parse(optarg, &rr) == 0) only = (int)rr;
        else {
            if (rank == 0) fprintf(stderr, "usage: bench_pca [-r reps] [-k k] [-K K] [-s] [-R route] d...\n");
            MPI_Finalize();
            return 2;
        }
    }
    int64_t dlist[16] = {1000000, 10000000};
    int nd = 2;
    if (optind < argc) {
        nd = 0;
        for (int i = optind; i < argc && nd < 16; i++) dlist[nd++] = (int64_t)atof(argv[i]);
    }
    if (rank == 0) printf("pca_ranks %d\npca_K %d\npca_k %d\n", P, K, k);
    int status = 0;
    for (int id = 0; id < nd && !status; id++) {
        const int64_t d = dlist[id];
        int64_t lo, n;
        pca_partition(d, MPI_COMM_WORLD, &lo, &n);
        double *a = malloc(sizeof(double) * (size_t)(n ? n : 1) * K);
        if (!a) { fprintf(stderr, "bench_pca: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
        fill(a, lo, n, n, K);
        /* serial LAPACK on rank 0, the others waiting */
        double t_lapack = 0;
        if (rank == 0) {
            double *all = malloc(sizeof(double) * (size_t)d * K), *u = malloc(sizeof(double) * (size_t)d * K);
            double s[64], vt[64 * 64], sup[64];
            if (!all || !u || K > 64) { fprintf(stderr, "bench_pca: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
            t_lapack = 1e30;
            for (int r = 0; r < reps; r++) {
                fill(all, 0, d, d, K);
                double t0 = now();
                int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', (int)d, K, all, (int)d, s, u, (int)d, vt, K, sup);
                double t = now() - t0;
                if (info) { fprintf(stderr, "bench_pca: dgesvd info %d\n", info); MPI_Abort(MPI_COMM_WORLD, 1); }
                if (t < t_lapack) t_lapack = t;
            }
            printf("pca_P%d_d%lld_lapack_s %.4f\n", P, (long long)d, t_lapack);
            free(all);
            free(u);
        }
        idle_wait(MPI_COMM_WORLD); /* the other ranks sleep, not spin, while rank 0 runs LAPACK */
        MPI_Bcast(&t_lapack, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        const int ks[2] = {k, K};
        for (int route = 0; route < PCA_NROUTES; route++) {
            if (only >= 0 && route != only) continue;
            if (route == PCA_SVD && d > 2000000 && !svd_big) {
                if (rank == 0) printf("pca_P%d_d%lld_svd_skipped 1\n", P, (long long)d);
                continue;
            }
            for (int ik = 0; ik < 2; ik++) {
                if (ik == 1 && ks[1] == ks[0]) break;
                double best = 1e30;
                for (int r = 0; r < reps; r++) {
                    vl_pca_t p;
                    MPI_Barrier(MPI_COMM_WORLD);
                    double t0 = now();
                    int st = pca_compute(a, n, d, K, ks[ik], (vl_pca_route_t)route, MPI_COMM_WORLD, &p);
                    double t = now() - t0, tmax;
                    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                    if (st) {
                        if (rank == 0) fprintf(stderr, "bench_pca: %s failed: %s\n", pca_route_name(route), vl_error_message());
                        status = 1;
                        break;
                    }
                    pca_free(&p);
                    if (tmax < best) best = tmax;
                }
                if (status) break;
                if (rank == 0) {
                    printf("pca_P%d_d%lld_%s_k%d_s %.4f\n", P, (long long)d, pca_route_name(route), ks[ik], best);
                    printf("pca_P%d_d%lld_%s_k%d_ratio %.3f\n", P, (long long)d, pca_route_name(route), ks[ik],
                           best / t_lapack);
                    fflush(stdout);
                }
            }
            if (status) break;
        }
        free(a);
    }
    MPI_Finalize();
    return status;
}
