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

/* `valley pca SWAG.nc` (its deviations, centred at the SWA mean) or
 * `valley pca CKPT.nc CKPT.nc ...` (iterates minus their mean): pca.rank directions by
 * pca.route, scaled by pca.scale → outdir/subspace.nc. Collective over the world. */
int pca_command(vl_comm_t *c, const vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
#endif
