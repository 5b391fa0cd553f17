/* conv_ref.h — the 3x3 "same" convolution (stride 1, pad 1) in double loops: the reference
 * of test_conv3.c and test_wino.c. x is (cin, n, h, w), wt (cout, cin, 3, 3). */
#ifndef VALLEY_TEST_CONV_REF_H
#define VALLEY_TEST_CONV_REF_H
#include <stddef.h>

/* sum over ci and taps of wt[co][ci][t] x[ci][i] at (oy, ox) shifted by the tap, no bias */
static double conv3_ref_at(const float *x, const float *wt, int cin, int n, int h, int w, int co, int i, int oy, int ox)
{
    const size_t hw = (size_t)h * w;
    double s = 0.0;
    for (int ci = 0; ci < cin; ci++)
        for (int t = 0; t < 9; t++) {
            const int iy = oy + t / 3 - 1, ix = ox + t % 3 - 1;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            s += (double)wt[((size_t)co * cin + ci) * 9 + t] * x[(size_t)ci * n * hw + i * hw + (size_t)iy * w + ix];
        }
    return s;
}
#endif
