/* simplex.h — `valley simplex`: SPRO simplexes, simplicial complexes, ESPRO (SPEC §6).
 * (Interface; the module's full description lives with its implementation.) */
#ifndef VALLEY_SIMPLEX_H
#define VALLEY_SIMPLEX_H
#include "valley/comm.h"
#include "valley/deck.h"

/* `valley simplex MODEL.nc [MODEL.nc ...]` → outdir/simplex.nc. Collective over the world. */
int simplex_command(vl_comm_t *c, const vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
#endif
