/* test_curve.c — curve coefficients and the control-point update against their formulas
 * (SPEC §1), written out here independently. */
#include <math.h>
#include <stdlib.h>

#include "valley/curve.h"
#include "valley/test.h"

static double binom(int n, int k)
{
    double r = 1;
    for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
    return r;
}

int main(void)
{
    const size_t d = 7;
    for (int bends = 2; bends <= 5; bends++) {
        vl_curve_t cv;
        T_CHECK(curve_init(&cv, CURVE_BEZIER, 2, bends, d) == 0, "bezier init");
        T_CHECK(cv.n == bends && cv.fixed[0] && cv.fixed[bends - 1], "bezier: %d points, ends fixed", cv.n);
        for (int j = 1; j < bends - 1; j++) T_CHECK(!cv.fixed[j], "bezier interior point %d trained", j);
        double c[8];
        for (double t = 0; t <= 1.0001; t += 0.125) {
            curve_coeffs(&cv, t, c);
            double sum = 0;
            for (int j = 0; j < bends; j++) {
                double want = binom(bends - 1, j) * pow(t, j) * pow(1 - t, bends - 1 - j);
                T_CLOSE(c[j], want, 1e-14, 1e-15, "Bezier coefficient");
                sum += c[j];
            }
            T_CLOSE(sum, 1.0, 1e-14, 0, "Bezier coefficients sum to 1");
        }
        curve_free(&cv);
    }
    /* Polygonal chain through 3 checkpoints with 3 bends: 5 points, fixed at 0, 2, 4. */
    vl_curve_t pc;
    T_CHECK(curve_init(&pc, CURVE_POLYCHAIN, 3, 3, d) == 0, "polychain init");
    T_CHECK(pc.n == 5 && pc.fixed[0] && !pc.fixed[1] && pc.fixed[2] && !pc.fixed[3] && pc.fixed[4], "polychain layout");
    double c[5];
    for (double t = 0; t <= 1.0001; t += 0.05) {
        curve_coeffs(&pc, t, c);
        for (int j = 0; j < 5; j++) {
            double v = 1 - fabs(t * 4 - j);
            T_CLOSE(c[j], v > 0 ? v : 0, 1e-14, 1e-15, "polychain coefficient");
        }
    }
    /* Initial interior points on the line between neighbouring checkpoints; curve_point. */
    for (int q = 0; q < 5; q += 2)
        for (size_t i = 0; i < d; i++) pc.theta[q * d + i] = (float)(q * 10 + i);
    curve_init_line(&pc);
    for (size_t i = 0; i < d; i++) {
        T_CLOSE(pc.theta[1 * d + i], 0.5 * (pc.theta[i] + pc.theta[2 * d + i]), 1e-6, 0, "interior point 1 on the line");
        T_CLOSE(pc.theta[3 * d + i], 0.5 * (pc.theta[2 * d + i] + pc.theta[4 * d + i]), 1e-6, 0, "interior point 3 on the line");
    }
    curve_coeffs(&pc, 0.5, c);
    float w[7];
    curve_point(&pc, c, w);
    for (size_t i = 0; i < d; i++) T_CLOSE(w[i], pc.theta[2 * d + i], 0, 0, "w(0.5) is the middle checkpoint");
    /* The update: gradient share c_j g for trained points, fixed points never move. */
    float before[35], g[7];
    for (size_t k = 0; k < 5 * d; k++) before[k] = pc.theta[k];
    for (size_t i = 0; i < d; i++) g[i] = (float)(0.25 * (i + 1));
    curve_coeffs(&pc, 0.3, c); /* t(n-1) = 1.2: c1 = 0.8, c2 = 0.2 */
    curve_sgd(&pc, c, g, 1.0, 0.0, 0);
    for (int j = 0; j < 5; j++)
        for (size_t i = 0; i < d; i++) {
            double want = pc.fixed[j] ? before[j * d + i] : before[j * d + i] - c[j] * g[i];
            T_CLOSE(pc.theta[j * d + i], want, 1e-6, 1e-7, pc.fixed[j] ? "fixed point unchanged" : "trained point moves by c_j g");
        }
    T_CLOSE(c[1], 0.8, 1e-12, 0, "c1 at t = 0.3");
    /* Momentum: two steps with momentum 0.9 equal buf = g, then 0.9 g + g. */
    for (size_t k = 0; k < 5 * d; k++) before[k] = pc.theta[k];
    for (size_t k = 0; k < 5 * d; k++) pc.mom[k] = 0;
    curve_sgd(&pc, c, g, 0.1, 0.9, 0);
    curve_sgd(&pc, c, g, 0.1, 0.9, 0);
    for (size_t i = 0; i < d; i++)
        T_CLOSE(pc.theta[1 * d + i], before[1 * d + i] - 0.1 * (c[1] * g[i]) - 0.1 * (1.9 * c[1] * g[i]), 1e-5, 1e-6,
                "momentum on a control point");
    curve_free(&pc);
    vl_curve_t bad;
    T_CHECK(curve_init(&bad, CURVE_BEZIER, 3, 3, d) != 0, "a Bezier curve through 3 checkpoints is refused");
    T_CHECK(curve_init(&bad, CURVE_POLYCHAIN, 1, 3, d) != 0, "one checkpoint is refused");
    T_DONE();
}
