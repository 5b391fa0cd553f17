/* simplex.h — `valley simplex`: SPRO simplexes, mode-connecting simplicial complexes and
 * ESPRO ensembles (SPEC §6, Benton et al., ICML 2021).
 *
 * A simplex is a set of n vertices θ_0..θ_{n-1} (flat parameter vectors); a point of it is
 * Σ a_i θ_i with a ~ Dirichlet(1). Its size is measured with the Cayley–Menger determinant
 * of the squared distances D_ij = |θ_i − θ_j|²:
 *     CM = [[D, 1], [1ᵀ, 0]]  ((n+1)×(n+1)),   V² = |det CM| / ((n−1)!² · 2^(n−1)),
 * the squared (n−1)-dimensional volume. Only the n×n matrix D is ever formed (pairwise
 * differences accumulated in double), never anything d×d.
 *
 * The pure functions below (volume, its gradient, Dirichlet draws) are local, allocate
 * nothing the caller must free and never call MPI. See src/simplex.c for the command.
 */
#ifndef VALLEY_SIMPLEX_H
#define VALLEY_SIMPLEX_H
#include <stddef.h>

#include "valley/comm.h"
#include "valley/deck.h"
#include "valley/rng.h"

/* Largest number of vertices of one simplex (the deck's simplex.vertices maximum). */
#define SIMPLEX_MAX_VERTICES 64

/* Squared distances D (n, n) of the n vertices v[0..n-1] (each d floats): D_ij = Σ (v_i − v_j)²
 * accumulated in double, D_ii = 0, D symmetric. Local, cannot fail. */
void simplex_distances(int n, size_t d, const float *const *v, double *D);

/* Squared volume V² = |det CM| / ((n−1)!² 2^(n−1)) of the simplex whose squared distance
 * matrix is D (n, n), 1 <= n <= SIMPLEX_MAX_VERTICES, via an LU determinant (LAPACK) in
 * double, scaled in the log domain so that large n does not overflow. n = 1 gives 1 (the
 * formula's value for a point). A degenerate simplex gives 0 up to rounding. Returns VL_OK,
 * or VL_EINPUT for a bad n or a non-finite D (message recorded). */
int simplex_volume_sq(int n, const double *D, double *v2);

/* Gradient of log(V² + eps) with respect to vertex k (0 <= k < n), expressed as a linear
 * combination of the vertices: ∇_{θ_k} log(V² + eps) = Σ_j coef[j] θ_j (coef has n entries,
 * Σ_j coef[j] = 0). Uses dV²/dθ_k = 4 c (−1)^n Σ_j adj(CM)_kj (θ_k − θ_j), c = 1/((n−1)!² 2^(n−1)),
 * with the adjugate from an SVD of CM, so it is exact (and zero) for degenerate simplexes
 * too. eps = 0 gives the gradient of log V² (= 2 log V), which needs V > 0. *v2 (may be
 * NULL) gets V². n >= 2. Returns VL_OK or VL_EINPUT (bad n, k, non-finite D, SVD failure). */
int simplex_logvol_coeffs(int n, const double *D, int k, double eps, double *coef, double *v2);

/* A Dirichlet(1) draw of n weights (SPEC §6): a_i = E_i / Σ E, E_i = −log U_i, U_i ~ U(0,1)
 * drawn from r in order. Local, cannot fail. */
void simplex_dirichlet(vl_rng_t *r, int n, double *a);

/* `valley simplex MODEL.nc [MODEL.nc ...]` → outdir/simplex.nc.
 *   one MODEL.nc:  SPRO — a simplex of simplex.vertices vertices whose vertex 0 is the model
 *                  (frozen); the others are added one at a time at the centroid of the
 *                  existing ones and trained for simplex.epochs each.
 *   several:       a mode-connecting complex — the models are 0-simplices, simplex.vertices − 1
 *                  shared connectors are joined to each of them: simplexes {mode_i} ∪ connectors.
 * simplex.components (0 = one per group) independent copies are trained (ESPRO); component c
 * uses seed run.seed + c for data order and Dirichlet draws and is trained and evaluated by
 * group c mod ngroups. Evaluation: every vertex and simplex.eval_samples points per component,
 * each after a BN refresh; Bayesian model average per component and over all components.
 * Collective over the world. */
int simplex_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);

/* Figures of a simplex.nc: <stem>_plane_err.png and <stem>_plane_loss.png (test error / loss
 * over the plane of a 3-vertex simplex, when the file holds the plane grid of simplex.grid,
 * with the triangle, its vertices and the sampled points on top), <stem>_points.png (test
 * error of every vertex and sampled point) and <stem>_reliability.png (the ensemble).
 * Written to outdir (NULL = the directory of path). Serial (call on one rank). Returns
 * VL_OK, VL_EINPUT (not a simplex.nc) or VL_EIO. */
int simplex_plot(const char *path, const char *outdir);
#endif
