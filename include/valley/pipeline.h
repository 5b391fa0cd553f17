/* pipeline.h — `valley run`: the whole pipeline of a deck, and report.md. */
#ifndef VALLEY_PIPELINE_H
#define VALLEY_PIPELINE_H
#include "valley/comm.h"
#include "valley/deck.h"

/* Converts dataset `name` into path on rank 0; every rank returns the same status
 * (collective over the world; rank 0 prints the message). */
int pipeline_prepare(vl_comm_t *c, vl_deck_t *d, const char *name, const char *path);
/* Runs the stages of the deck into outdir (stages whose output exists are reused)
 * and writes outdir/report.md. Collective over the world. */
int pipeline_command(vl_comm_t *c, vl_deck_t *d, const char *deck_path, const char *outdir);
#endif
