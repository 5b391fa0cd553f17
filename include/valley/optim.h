/* optim.h — SGD with momentum and weight decay (PyTorch semantics) and the
 * learning-rate schedules of SPEC §0, §1 and §3. */
#ifndef VALLEY_OPTIM_H
#define VALLEY_OPTIM_H
#include <stddef.h>

/* One step over n parameters, as torch.optim.SGD (dampening 0):
 *   d = g + wd*w;  buf = momentum*buf + d;  w -= lr * (nesterov ? d + momentum*buf : buf)
 * buf starts at zero (equal to PyTorch's first-step buf = d). g is not modified. */
void sgd_step(float *w, const float *g, float *buf, size_t n, double lr, double momentum, double wd, int nesterov);

/* "swa" schedule (SPEC §0): t = epoch/T, T = swa_start if swa else epochs;
 * r = swa_lr/lr if swa else 0.01; factor 1 for t <= 0.5, linear to r at t = 0.9, r after.
 * epoch counts from 0. Also the curve-training schedule (swa = 0). */
double sched_swa(int epoch, int epochs, int swa, int swa_start, double lr, double swa_lr);
/* Cosine annealing from lr to 0 over progress in [0, 1]. */
double sched_cosine(double progress, double lr);
/* FGE cyclic schedule (SPEC §3): t = ((epoch mod cycle) + frac)/cycle,
 * lr = a1(1-2t) + 2t a2 for t < 0.5, else a1(2t-1) + a2(2-2t). */
double sched_fge(int epoch, double frac, int cycle, double a1, double a2);

#endif
