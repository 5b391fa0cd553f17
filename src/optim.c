/* optim.c — SGD and learning-rate schedules. */
#include "valley/optim.h"

#include <math.h>

void sgd_step(float *w, const float *g, float *buf, size_t n, double lr, double momentum, double wd, int nesterov)
{
    const float fwd = (float)wd, fm = (float)momentum, flr = (float)lr;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + fwd * w[i];
        if (fm != 0.0f) {
            buf[i] = fm * buf[i] + d;
            d = nesterov ? d + fm * buf[i] : buf[i];
        }
        w[i] -= flr * d;
    }
}

double sched_swa(int epoch, int epochs, int swa, int swa_start, double lr, double swa_lr)
{
    double T = swa ? swa_start : epochs;
    double t = T > 0 ? epoch / T : 1.0;
    double r = swa ? swa_lr / lr : 0.01;
    double f = t <= 0.5 ? 1.0 : t <= 0.9 ? 1.0 - (1.0 - r) * (t - 0.5) / 0.4 : r;
    return lr * f;
}

double sched_cosine(double progress, double lr)
{
    if (progress < 0) progress = 0;
    if (progress > 1) progress = 1;
    return 0.5 * lr * (1.0 + cos(3.14159265358979323846 * progress));
}

double sched_fge(int epoch, double frac, int cycle, double a1, double a2)
{
    double t = ((epoch % cycle) + frac) / cycle;
    return t < 0.5 ? a1 * (1.0 - 2.0 * t) + 2.0 * t * a2 : a1 * (2.0 * t - 1.0) + a2 * (2.0 - 2.0 * t);
}
