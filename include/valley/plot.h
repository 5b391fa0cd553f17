/* plot.h — `valley plot FILE.nc...`: PNG figures from valley's output files.
 * The kind of each file is recognised from its variables:
 *   history.nc → <stem>.png: train/test loss and accuracy against epoch
 *   eval.nc, fge.nc → <stem>_reliability.png: reliability diagram with ECE
 *   bma.nc     → bma_reliability.png: one reliability panel per method
 *   curve_eval.nc → curve_eval.png: loss and error against t, curve and straight line
 *   surface.nc → <stem>_train_loss.png, <stem>_test_err.png: contours with named points
 *   infer.nc   → regression: <stem>_band.png, <stem>_band_model.png (predictive bands);
 *                classification: <stem>_reliability.png
 *   simplex.nc → plane contours of a 3-vertex simplex, points vs vertices, reliability
 *   hessian.nc → <stem>_density.png: spectral density (log) and each run's Ritz values; several
 *                hessian.nc together also hessian_compare.png (their densities in one panel)
 *   surface.nc with surface.hessian → also <stem>_hessian_max.png, <stem>_hessian_ratio.png
 * Figures are written next to the input unless --out is given. Serial (rank 0). */
#ifndef VALLEY_PLOT_H
#define VALLEY_PLOT_H
#include "valley/comm.h"

/* outdir NULL = the directory of each input. Returns the number of figures in *nfig. */
int plot_file(const char *path, const char *outdir, int *nfig);
int plot_command(vl_comm_t *c, int ninputs, char **inputs, const char *outdir);
/* 2..8 hessian.nc files: their densities in one panel -> outdir (NULL: beside the first)
 * /hessian_compare.png, each labelled by its directory's name; nothing (VL_OK) when an input is
 * not a hessian.nc. Serial. */
int plot_hessian_compare(int n, char **inputs, const char *outdir);
#endif
