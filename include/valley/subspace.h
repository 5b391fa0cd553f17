/* subspace.h — subspaces w = ŵ + P z and `valley pca` (SPEC §2, §4).
 *
 * subspace.nc: `shift` (param), `basis` (k, param), `singular_values` (k),
 * `explained_variance_ratio` (k), the model description, and what the basis was
 * built from. Written in parallel: each rank writes its contiguous slab of the
 * parameter dimension (pca_partition), no rank ever holds the whole basis. */
#ifndef VALLEY_SUBSPACE_H
#define VALLEY_SUBSPACE_H
#include "valley/comm.h"
#include "valley/deck.h"

#include <stddef.h>
#include <stdint.h>

#include "valley/rng.h"
#include "valley/tensor.h"

/* A subspace w = shift + Σ_i z_i basis_i held whole on every rank (d floats each). */
#define SUBSPACE_MAX_K 16
typedef struct {
    size_t d;
    int k;
    float *shift;     /* (d) */
    float *basis;     /* (k, d), row i = direction i */
    char kind[32];    /* "plane", "line", "random", "pca", "curve" */
} vl_subspace_t;

int subspace_alloc(vl_subspace_t *s, size_t d, int k, const char *kind);
void subspace_free(vl_subspace_t *s);
/* w = shift + Σ z_i basis_i (accumulated in double per element). */
void subspace_point(const vl_subspace_t *s, const double *z, float *w);
/* Least-squares coordinates of w: solves (B Bᵀ) z = B (w − shift) (k ≤ SUBSPACE_MAX_K).
 * Returns the distance of w from the subspace. */
double subspace_project(const vl_subspace_t *s, const float *w, double *z);

/* Plane through three points (SPEC §2): u = (w2−w0)/|w2−w0|, v = (w1−w0) with its u
 * component removed; basis = [w2 − w0, that v] so that w0, w2 sit at (0,0), (1,0) and w1
 * at (<w1−w0, u>/|w2−w0|, 1). VL_EINPUT if the points are (nearly) collinear. */
int subspace_plane(vl_subspace_t *s, size_t d, const float *w0, const float *w1, const float *w2);
/* The line w0 → w1 (k = 1, basis w1 − w0). */
int subspace_line(vl_subspace_t *s, size_t d, const float *w0, const float *w1);
/* k random filter-normalised directions around w (Li et al. 2018): Gaussian entries from
 * the stream (seed, RNG_DIRECTION, i); every filter (slice along the first axis of a
 * tensor with two or more axes) rescaled to the norm of the same filter of w; tensors
 * with one axis (biases, BN) get zero unless include_1d. tensors: the model's table. */
int subspace_random(vl_subspace_t *s, size_t d, int k, const float *w, const vl_tensor_t *tensors, int ntensors,
                    uint64_t seed, int include_1d);

/* `valley pca SWAG.nc` (its deviations, centred at the SWA mean) or
 * `valley pca CKPT.nc CKPT.nc ...` (iterates minus their mean): pca.rank directions by
 * pca.route, scaled by pca.scale → outdir/subspace.nc. Collective over the world. */
int pca_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
/* `valley surface INPUTS`: loss and error over a grid in the subspace of surface.basis
 * (plane: 3 checkpoints or a curve.nc; line: 2 checkpoints; random: 1 checkpoint;
 * pca: subspace.nc [+ checkpoints to project]) → outdir/surface.nc. Restartable.
 * Collective over the world. */
int surface_command(vl_comm_t *c, vl_deck_t *d, int nin, char **in, const char *outdir);
#endif
