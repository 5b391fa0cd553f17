/* plot.h — `valley plot FILE.nc...`: PNG figures from valley's output files.
 * The kind of each file is recognised from its variables:
 *   history.nc → <stem>.png: train/test loss and accuracy against epoch
 *   eval.nc, fge.nc → <stem>_reliability.png: reliability diagram with ECE
 *   bma.nc     → bma_reliability.png: one reliability panel per method
 *   curve_eval.nc → curve_eval.png: loss and error against t, curve and straight line
 * Figures are written next to the input unless --out is given. Serial (rank 0). */
#ifndef VALLEY_PLOT_H
#define VALLEY_PLOT_H
#include "valley/comm.h"

/* outdir NULL = the directory of each input. Returns the number of figures in *nfig. */
int plot_file(const char *path, const char *outdir, int *nfig);
int plot_command(vl_comm_t *c, int ninputs, char **inputs, const char *outdir);
#endif
