/* test_optim.c — SGD semantics and learning-rate schedules against their formulas
 * (SPEC §0, §1, §3), computed independently here in double. */
#include <math.h>
#include <stdio.h>

#include "valley/optim.h"
#include "valley/test.h"

int main(void)
{
    /* SWA schedule: lr 0.1, swa_lr 0.05, swa_start 10: t = e/10, r = 0.5. */
    for (int e = 0; e < 15; e++) {
        double t = e / 10.0, r = 0.5, f = t <= 0.5 ? 1 : t <= 0.9 ? 1 - (1 - r) * (t - 0.5) / 0.4 : r;
        T_CLOSE(sched_swa(e, 20, 1, 10, 0.1, 0.05), 0.1 * f, 1e-15, 0, "swa schedule with SWA");
    }
    T_CLOSE(sched_swa(12, 20, 1, 10, 0.1, 0.05), 0.05, 1e-15, 0, "after swa_start the LR is swa_lr");
    /* Without SWA: T = epochs, r = 0.01 (also the curve schedule). */
    T_CLOSE(sched_swa(0, 20, 0, 0, 0.05, 0), 0.05, 1e-15, 0, "swa schedule start");
    T_CLOSE(sched_swa(10, 20, 0, 0, 0.05, 0), 0.05, 1e-15, 0, "swa schedule at t = 0.5");
    T_CLOSE(sched_swa(14, 20, 0, 0, 0.05, 0), 0.05 * (1 - 0.99 * 0.2 / 0.4), 1e-15, 0, "swa schedule at t = 0.7");
    T_CLOSE(sched_swa(19, 20, 0, 0, 0.05, 0), 0.0005, 1e-15, 0, "swa schedule at t = 0.95");
    /* Cosine. */
    T_CLOSE(sched_cosine(0, 0.1), 0.1, 1e-15, 0, "cosine start");
    T_CLOSE(sched_cosine(0.5, 0.1), 0.05, 1e-15, 0, "cosine middle");
    T_CLOSE(sched_cosine(1, 0.1), 0.0, 0, 1e-17, "cosine end");
    /* FGE: cycle 4, a1 = 0.05, a2 = 1e-4: ends of the cycle at a1, mid-cycle at a2, piecewise linear. */
    T_CLOSE(sched_fge(0, 0.0, 4, 0.05, 1e-4), 0.05, 1e-15, 0, "fge cycle start");
    T_CLOSE(sched_fge(2, 0.0, 4, 0.05, 1e-4), 1e-4, 1e-12, 0, "fge mid-cycle");
    T_CLOSE(sched_fge(5, 0.5, 4, 0.05, 1e-4), 0.05 * (1 - 2 * 0.375) + 2 * 0.375 * 1e-4, 1e-12, 0, "fge epoch 5.5");
    T_CLOSE(sched_fge(3, 0.0, 4, 0.05, 1e-4), 0.05 * 0.5 + 1e-4 * 0.5, 1e-12, 0, "fge 3/4 of cycle");
    /* SGD with momentum and weight decay, PyTorch's update written out in double. */
    float w[3] = {1.0f, -2.0f, 0.5f}, buf[3] = {0}, g[3] = {0.1f, 0.2f, -0.3f};
    double wd_[3] = {1.0, -2.0, 0.5}, bd[3] = {0};
    for (int step = 0; step < 5; step++) {
        sgd_step(w, g, buf, 3, 0.1, 0.9, 0.01, 0);
        for (int i = 0; i < 3; i++) {
            double d = (double)g[i] + 0.01 * wd_[i];
            bd[i] = 0.9 * bd[i] + d;
            wd_[i] -= 0.1 * bd[i];
        }
    }
    for (int i = 0; i < 3; i++) T_CLOSE(w[i], wd_[i], 1e-6, 0, "sgd momentum trajectory");
    float wn[1] = {1.0f}, bn[1] = {0}, gn[1] = {0.5f};
    sgd_step(wn, gn, bn, 1, 0.1, 0.9, 0.0, 1);
    T_CLOSE(wn[0], 1.0 - 0.1 * (0.5 + 0.9 * 0.5), 1e-7, 0, "nesterov first step");
    T_DONE();
}
