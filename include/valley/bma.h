/* bma.h — `valley bma SWAG.nc [MODEL.nc ...]`: posterior samples, BN refresh per
 * sample, Bayesian model averages and their metrics → bma.nc (SPEC §4).
 *
 * Methods (bma.methods): sgd (the first MODEL.nc), ensemble (all MODEL.nc, when
 * several), swa (the SWA mean of swag.nc with its refreshed BN; with several swag.nc,
 * the ensemble of their SWA means), swag-diag and swag (bma.samples samples each at
 * bma.diag_scale / bma.scale; with several swag.nc, MultiSWAG: sample s comes from
 * chain s mod nchains). Sample s of a method
 * is drawn from the stream (run.seed, method, s) and computed by group s mod
 * ngroups; per-sample probabilities are combined in sample order, so the metrics
 * do not depend on the number of groups. Collective over the world. */
#ifndef VALLEY_BMA_H
#define VALLEY_BMA_H
#include "valley/comm.h"
#include "valley/deck.h"

int bma_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
/* The weights of sample s of bma's swag (diag = 0) or swag-diag (diag = 1) method of a single
 * swag.nc with seed run.seed: the draw `valley bma` makes (before its BN refresh). */
#include "valley/swag.h"
void bma_swag_sample(const vl_swag_t *sw, const float *var, uint64_t seed, int s, double scale, int diag, float *w);
#endif
