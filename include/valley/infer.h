/* infer.h — `valley infer`: subspace inference (SPEC §5), ESS and VI in w = ŵ + P z.
 * (Interface; the module's full description lives with its implementation.) */
#ifndef VALLEY_INFER_H
#define VALLEY_INFER_H
#include "valley/comm.h"
#include "valley/deck.h"

/* `valley infer INPUTS`: posterior over z in the subspace of the inputs, BMA of the
 * samples on the test set → outdir/infer.nc. Collective over the world. */
int infer_command(vl_comm_t *c, const vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
#endif
