/* pca.h — distributed PCA of a tall-skinny matrix (SPEC §4, issue 7).
 *
 * A is d × K (d parameters up to 1e7–1e8, K ≈ 20 deviations or centred iterates),
 * distributed by rows over the ranks of a communicator: each rank holds a contiguous
 * block of rows [lo, lo + d_local), ranks in order. The local block is passed in the
 * layout that a column slab [lo, hi) of the NetCDF variable `deviations` (rank, param)
 * arrives in: (K, d_local) row-major, i.e. a[j * d_local + i] = A[lo + i, j] — which is
 * also A's block in column-major order with leading dimension d_local, the layout
 * LAPACK and ScaLAPACK use, so no transpose is ever made.
 *
 * Output: the K singular values σ (descending), explained variance ratios
 * σ_i² / Σ_j σ_j², and the top-k left singular vectors (the principal directions)
 * as rows of a (k, d_local) basis on each rank, plus the right singular vectors
 * (k, K) on every rank (coordinates of the K columns: A[:, j] ≈ Σ_i σ_i vt[i][j] u_i).
 *
 * Routes (accuracy measured in tests/unit/test_pca.c, speed in bench/bench_pca.c):
 *  PCA_GRAM2 (default) G = AᵀA (K×K, dsyrk, summed in double), eigendecomposed on rank 0
 *            (G = V Λ Vᵀ); Q1 = A V Λ^{-1/2}; the same again on Q1 (a second
 *            orthogonalisation pass: "SVQB twice", CholeskyQR2 in eigen form), then
 *            the SVD of the small K×K factor. Three sweeps over the local rows (Q1 is
 *            formed in cache-sized blocks and never stored), three K×K reductions, no
 *            ScaLAPACK, no copy of A. Singular values to a few eps·σ_1 (absolute) and
 *            orthonormality ~1e-14, like Householder QR; directions well inside the
 *            resolved range as accurate as QR's, those next to the cut only as good as
 *            the Gram route's. Resolution: σ_i <= sqrt(max(d,K)·eps)·σ_1 (e.g. 4.7e-6 σ_1
 *            at d = 1e5, 1.5e-4 σ_1 at d = 1e8; float data carry ~6e-8 relative noise
 *            anyway) count as rank deficient.
 *  PCA_GRAM  the first pass only: U = A V Σ^{-1}. Fastest (two sweeps) but squares the
 *            condition number: σ_i has absolute error ~eps σ_1²/σ_i and U loses
 *            orthogonality by ~eps (σ_1/σ_k)² (2e-12 at σ_1/σ_k = 100). Same resolution
 *            as PCA_GRAM2.
 *  PCA_QR    ScaLAPACK pdgeqrf on the row-distributed A (process grid P×1, row block
 *            ceil(d/P) so that block-cyclic is the contiguous layout, column panel 4),
 *            SVD of the K×K R on rank 0 (LAPACKE_dgesvd), U = Q [U_R; 0] with pdormqr.
 *            Backward stable for any conditioning; resolution max(d,K)·eps·σ_1. Works on
 *            a copy of A.
 *  PCA_SVD   ScaLAPACK pdgesvd directly, after redistributing A (pdgemr2d; not needed on
 *            one rank) to square 32×32 blocks, which pdgesvd requires (MB_A == NB_A; the
 *            descriptors are checked before the call, and every info after). Backward
 *            stable but ~4x slower than serial LAPACK, and its workspace is
 *            6·d + (32 + K)·d/P doubles per rank (the 6·d part is not distributed);
 *            kept as a reference. Resolution as PCA_QR.
 *  PCA_QR and PCA_SVD need the canonical row partition (pca_partition) and, because
 *  ScaLAPACK indexes with 32-bit integers, d_local·K and their workspace below 2^31 on
 *  every rank (VL_EINPUT otherwise); the Gram routes accept any contiguous partition
 *  (ranks may hold no rows) and need only d_local < 2^31.
 *
 * Degenerate input (documented behaviour, identical on every rank):
 *  - k < 1, k > K, K < 1, d < K, partition sizes that do not add up to d,
 *    non-finite entries, or A == 0: VL_EINPUT, collective (every rank returns it).
 *  - K == 1: allowed; σ_1 = ‖A‖, the direction is A/‖A‖, evr = 1.
 *  - rank deficiency: the numerical rank r is the number of σ_i above the route's
 *    resolution (out->tol). Directions with σ_i <= tol are undefined, so they are not
 *    returned: out->k = min(k, r) (the caller may log out->k < out->k_requested).
 *    Their σ_i are still reported (at noise level; exactly what the route computed).
 *  - sign: each direction is oriented so that the largest-magnitude entry of its right
 *    singular vector is positive: deterministic, and the same on any number of ranks
 *    unless two entries of v_i tie in magnitude to rounding.
 */
#ifndef VALLEY_PCA_H
#define VALLEY_PCA_H
#include <mpi.h>
#include <stdint.h>

typedef enum { PCA_GRAM2 = 0, PCA_GRAM = 1, PCA_QR = 2, PCA_SVD = 3, PCA_NROUTES = 4 } vl_pca_route_t;
#define PCA_DEFAULT_ROUTE PCA_GRAM2

typedef struct {
    vl_pca_route_t route;
    int64_t d, d_local; /* global and local rows of A */
    int K;              /* columns of A */
    int k_requested;
    int k;              /* directions returned: min(k_requested, rank) */
    int rank;           /* numerical rank: number of sigma > tol */
    double tol;         /* the route's resolution: sigma_i <= tol counts as zero */
    double *sigma;      /* (K) singular values, descending */
    double *evr;        /* (K) sigma_i^2 / sum_j sigma_j^2 */
    double *vt;         /* (k, K) right singular vectors, row i = v_i; same on every rank */
    double *basis;      /* (k, d_local) row-major: row i = this rank's rows of u_i */
} vl_pca_t;

/* The canonical row partition of d rows over comm: rank p holds rows
 * [p·ceil(d/P), min(d, (p+1)·ceil(d/P))) (the last ranks may hold fewer or none).
 * This is ScaLAPACK's block-cyclic layout on a P×1 grid with row block ceil(d/P),
 * required by PCA_QR and PCA_SVD; read the slab [*lo, *lo + *d_local) of the file.
 * Not collective (uses only the rank and size of comm). */
void pca_partition(int64_t d, MPI_Comm comm, int64_t *lo, int64_t *d_local);

/* PCA of the row-distributed d × K matrix A: fills *out (see above). a_local: this
 * rank's rows, (K, d_local) row-major; not modified (the routes that factor in place
 * work on a copy). d, K, k and route must be the same on every rank. On failure *out
 * holds nothing to free (pca_free is harmless). Returns VL_OK, VL_EINPUT for bad input
 * (collective), VL_ENUM when a LAPACK/ScaLAPACK routine does not converge (collective),
 * VL_EIO when memory runs out (local on the failing ranks, collective on the others).
 * Collective over comm. Uses the calling thread's OpenBLAS settings. */
int pca_compute(const double *a_local, int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route,
                MPI_Comm comm, vl_pca_t *out);

/* The same for float input (the dtype of the `deviations` variable): converts to a
 * double working copy once (8·d_local·K bytes), which the in-place routes then reuse,
 * so it needs no more memory than pca_compute. Collective over comm. */
int pca_compute_float(const float *a_local, int64_t d_local, int64_t d, int K, int k, vl_pca_route_t route,
                      MPI_Comm comm, vl_pca_t *out);

/* Frees the arrays of *p and zeroes it. */
void pca_free(vl_pca_t *p);

/* "gram2", "gram", "qr", "svd" ("?" for an invalid value). */
const char *pca_route_name(vl_pca_route_t route);
/* Parses a route name as printed by pca_route_name; VL_EINPUT (not collective) for an
 * unknown name, listing the valid ones. */
int pca_route_parse(const char *name, vl_pca_route_t *route);

#endif
