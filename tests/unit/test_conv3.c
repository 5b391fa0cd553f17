/* test_conv3.c — the direct 3x3 convolution kernels (conv3.c) against plain double loops,
 * and the models' convolutions on the direct kernels against the same models on
 * im2col + OpenBLAS GEMM (model_conv_direct).
 *
 * Run once per kernel path this CPU has (VALLEY_ISA=avx512, avx2: tests/run.sh).
 * Kernel level, per shape (aligned rows of V = 1, 2 and 3 vectors, widths that fill 3/4 to
 * 7/8 of a row's lanes; flat rows of w + 2 at 32, 16, 8, 7 and 6 wide; 1 to 64 input channels): forward with bias, forward added to an
 * existing output, the BN moments of the forward's epilogue, the input gradient (the
 * forward on the padded output gradient with flipped weights) and the weight gradient,
 * with and without accumulation. Tolerance: |got - want| <= 1e-5 (1 + |want|), fp32 sums
 * of at most 9 x 32 products of values in [-0.5, 0.5] (forward, input gradient) and of
 * 3 x 14 x 46 (weight gradient); a wrong tap or a misplaced lane is off by O(0.1).
 * Stride 2 (the four-phase kernels): forward with moments and with the eval epilogue, and
 * the weight gradient, at 32 -> 16, 16 -> 8 and an odd 14x18 -> 7x9.
 * Model level: the convnet on 28x28, preresnet8 on 12x12 and resnet8 on 32x32x3 (their
 * stride-1 and, at 16x16 and 8x8 outputs, stride-2 3x3 convs direct on the AVX-512 and AVX2 paths), train-mode output and every parameter gradient, direct
 * vs GEMM, relative 1e-4 of each tensor's largest entry (a different summation order only);
 * and eval outputs with and without gradients (model_set_grad) bit-identical; a train step
 * and an eval pass on two kernel threads (vl_set_threads) bit-identical to one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/conv3.h"
#include "valley/cpu.h"
#include "valley/error.h"
#include "valley/loss.h"
#include "valley/model.h"
#include "valley/rng.h"
#include "valley/test.h"
#include "conv_ref.h"

static float urand(vl_rng_t *r) { return (float)(rng_uniform(r) - 0.5); }

static float *alloc_f(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void check_kernels(int cin, int cout, int h, int w, int n)
{
    char what[160];
    conv3_geom_t g;
    conv3_geom(&g, cin, cout, h, w);
    if (!conv3_supported(cin, cout, h, w)) {
        printf("conv3 %dx%d %dx%d: not supported on this build, skipped\n", cin, cout, h, w);
        return;
    }
    const size_t hw = (size_t)h * w, nx = (size_t)cin * n * hw, ny = (size_t)cout * n * hw;
    vl_rng_t r;
    rng_init(&r, 7, (uint64_t)(cin * 1000 + cout + h * 7 + w));
    float *x = alloc_f(nx), *wt = alloc_f((size_t)cout * cin * 9), *b = alloc_f(cout), *dy = alloc_f(ny);
    float *y = alloc_f(ny), *y0 = alloc_f(ny), *dx = alloc_f(nx), *dw = alloc_f((size_t)cout * cin * 9);
    for (size_t i = 0; i < nx; i++) x[i] = urand(&r);
    for (int i = 0; i < cout * cin * 9; i++) wt[i] = urand(&r);
    for (int i = 0; i < cout; i++) b[i] = urand(&r);
    for (size_t i = 0; i < ny; i++) dy[i] = urand(&r);
    for (size_t i = 0; i < ny; i++) y0[i] = y[i] = urand(&r); /* an existing output for acc */
    float *xp = alloc_f(conv3_pad_floats(&g, cin, n)), *dp = alloc_f(conv3_pad_floats(&g, cout, n));
    float *pf = alloc_f((size_t)cout * cin * 9), *pb = alloc_f((size_t)cout * cin * 9);
    float *mom = alloc_f(32 * (size_t)cout), *shift = alloc_f(cout);
    for (int c = 0; c < cout; c++) shift[c] = 0.25f * urand(&r);
    conv3_pack_forward(&g, wt, pf);
    conv3_pad(&g, cin, x, (size_t)n * hw, n, xp);
    conv3_pad(&g, cout, dy, (size_t)n * hw, n, dp);
    /* forward added to y (acc = 1) with moments of the added values */
    for (int i = 0; i < n; i++)
        conv3_forward(&g, cin, cout, conv3_pad_data(xp) + (size_t)i * cin * g.plane, pf, b, y + (size_t)i * hw,
                      (size_t)n * hw, 1, shift, mom);
    double worst = 0.0;
    for (int co = 0; co < cout; co++) {
        double S = 0.0, Q = 0.0, mS = 0.0, mQ = 0.0;
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < w; ox++) {
                    const double s = b[co] + conv3_ref_at(x, wt, cin, n, h, w, co, i, oy, ox);
                    size_t at = (size_t)co * n * hw + i * hw + (size_t)oy * w + ox;
                    double err = fabs(y[at] - (y0[at] + s)) / (1.0 + fabs(y0[at] + s));
                    if (err > worst) worst = err;
                    S += s - shift[co];
                    Q += (s - shift[co]) * (s - shift[co]);
                }
        for (int l = 0; l < 16; l++) {
            mS += mom[32 * co + l];
            mQ += mom[32 * co + 16 + l];
        }
        snprintf(what, sizeof what, "conv3 %dx%d %dx%d n=%d: moment S of channel %d", cin, cout, h, w, n, co);
        T_CLOSE(mS, S, 1e-5, 1e-4 * (double)n * hw, what);
        snprintf(what, sizeof what, "conv3 %dx%d %dx%d n=%d: moment Q of channel %d", cin, cout, h, w, n, co);
        T_CLOSE(mQ, Q, 1e-5, 1e-4 * (double)n * hw, what);
    }
    T_CHECK(worst <= 1e-5, "conv3 %dx%d %dx%d n=%d: forward (acc) off by %.3g relative", cin, cout, h, w, n, worst);
    /* forward overwriting, no bias */
    for (int i = 0; i < n; i++)
        conv3_forward(&g, cin, cout, conv3_pad_data(xp) + (size_t)i * cin * g.plane, pf, NULL, y + (size_t)i * hw,
                      (size_t)n * hw, 0, NULL, NULL);
    worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < n; i++)
            for (size_t p = 0; p < hw; p++) {
                const double s = conv3_ref_at(x, wt, cin, n, h, w, co, i, (int)(p / w), (int)(p % w));
                double err = fabs(y[(size_t)co * n * hw + i * hw + p] - s) / (1.0 + fabs(s));
                if (err > worst) worst = err;
            }
    T_CHECK(worst <= 1e-5, "conv3 %dx%d %dx%d n=%d: forward off by %.3g relative", cin, cout, h, w, n, worst);
    /* input gradient: dx[ci] = sum_co,t W[co][ci][t] dy[co] shifted back */
    if (cin % 8 == 0) {
        conv3_pack_backward(&g, wt, pb);
        for (int i = 0; i < n; i++)
            conv3_forward(&g, cout, cin, conv3_pad_data(dp) + (size_t)i * cout * g.plane, pb, NULL, dx + (size_t)i * hw,
                          (size_t)n * hw, 0, NULL, NULL);
        worst = 0.0;
        for (int ci = 0; ci < cin; ci++)
            for (int i = 0; i < n; i++)
                for (size_t p = 0; p < hw; p++) {
                    int iy = (int)(p / w), ix = (int)(p % w);
                    double s = 0.0;
                    for (int co = 0; co < cout; co++)
                        for (int t = 0; t < 9; t++) {
                            int oy = iy - t / 3 + 1, ox = ix - t % 3 + 1;
                            if (oy < 0 || oy >= h || ox < 0 || ox >= w) continue;
                            s += (double)wt[((size_t)co * cin + ci) * 9 + t] * dy[(size_t)co * n * hw + i * hw + oy * w + ox];
                        }
                    double err = fabs(dx[(size_t)ci * n * hw + i * hw + p] - s) / (1.0 + fabs(s));
                    if (err > worst) worst = err;
                }
        T_CHECK(worst <= 1e-5, "conv3 %dx%d %dx%d n=%d: input gradient off by %.3g relative", cin, cout, h, w, n, worst);
    }
    /* weight gradient, written then accumulated once more (twice the sum) */
    for (int pass = 0; pass < 2; pass++) {
        conv3_wgrad(&g, n, conv3_pad_data(xp), conv3_pad_data(dp), dw, pass);
        worst = 0.0;
        for (int co = 0; co < cout; co++)
            for (int ci = 0; ci < cin; ci++)
                for (int t = 0; t < 9; t++) {
                    double s = 0.0;
                    for (int i = 0; i < n; i++)
                        for (int oy = 0; oy < h; oy++)
                            for (int ox = 0; ox < w; ox++) {
                                int iy = oy + t / 3 - 1, ix = ox + t % 3 - 1;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                s += (double)dy[(size_t)co * n * hw + i * hw + oy * w + ox] *
                                     x[(size_t)ci * n * hw + i * hw + iy * w + ix];
                            }
                    s *= pass + 1;
                    double err = fabs(dw[((size_t)co * cin + ci) * 9 + t] - s) / (1.0 + fabs(s));
                    if (err > worst) worst = err;
                }
        T_CHECK(worst <= 1e-5, "conv3 %dx%d %dx%d n=%d: weight gradient (pass %d) off by %.3g relative", cin, cout, h,
                w, n, pass, worst);
    }
    printf("conv3 %dx%d on %dx%d (%s rows of %d), %d images, %s path: kernels checked\n", cin, cout, h, w,
           g.flat ? "flat" : "aligned", g.rs, n, vl_isa_name(g.isa));
    free(x); free(wt); free(b); free(dy); free(y); free(y0); free(dx); free(dw);
    free(xp); free(dp); free(pf); free(pb); free(mom); free(shift);
}

/* Stride 2, pad 1 (conv3_geom_s2): forward added to an existing output with its moments, forward
 * with the eval epilogue (a y + b, ReLU), and the weight gradient, against double loops. */
static void check_kernels_s2(int cin, int cout, int ho, int wo, int n)
{
    if (!conv3_supported_s2(cin, cout, ho, wo)) {
        printf("conv3 stride 2 %dx%d -> %dx%d: not supported on this path, skipped\n", cin, cout, ho, wo);
        return;
    }
    conv3_geom_t g;
    conv3_geom_s2(&g, cin, cout, ho, wo);
    const int hin = 2 * ho, win = 2 * wo;
    const size_t hwi = (size_t)hin * win, hwo = (size_t)ho * wo, nx = (size_t)cin * n * hwi, ny = (size_t)cout * n * hwo;
    vl_rng_t r;
    rng_init(&r, 9, (uint64_t)(cin * 1000 + cout + ho));
    float *x = alloc_f(nx), *wt = alloc_f((size_t)cout * cin * 9), *b = alloc_f(cout), *dy = alloc_f(ny);
    float *y = alloc_f(ny), *y0 = alloc_f(ny), *dw = alloc_f((size_t)cout * cin * 9), *pf = alloc_f((size_t)cout * cin * 9);
    float *mom = alloc_f(32 * (size_t)cout), *shift = alloc_f(cout), *ea = alloc_f(cout), *eb = alloc_f(cout);
    for (size_t i = 0; i < nx; i++) x[i] = urand(&r);
    for (int i = 0; i < cout * cin * 9; i++) wt[i] = urand(&r);
    for (int i = 0; i < cout; i++) { b[i] = urand(&r); shift[i] = 0.25f * urand(&r); ea[i] = 1.0f + urand(&r); eb[i] = urand(&r); }
    for (size_t i = 0; i < ny; i++) dy[i] = urand(&r);
    for (size_t i = 0; i < ny; i++) y0[i] = y[i] = urand(&r);
    float *xp = alloc_f(conv3_pad_in_floats(&g, cin, n)), *dp = alloc_f(conv3_pad_floats(&g, cout, n));
    conv3_pack_forward(&g, wt, pf);
    conv3_pad_phases(&g, cin, x, (size_t)n * hwi, n, xp);
    conv3_pad_s2out(&g, cout, dy, (size_t)n * hwo, n, dp);
    /* ref(co, i, oy, ox) */
#define S2REF(co, i, oy, ox) ({ double s_ = 0.0; \
        for (int ci = 0; ci < cin; ci++) for (int t = 0; t < 9; t++) { \
            const int iy = 2 * (oy) + t / 3 - 1, ix = 2 * (ox) + t % 3 - 1; \
            if (iy < 0 || iy >= hin || ix < 0 || ix >= win) continue; \
            s_ += (double)wt[((size_t)(co) * cin + ci) * 9 + t] * x[(size_t)ci * n * hwi + (size_t)(i) * hwi + (size_t)iy * win + ix]; } \
        s_; })
    conv3_forward_n(&g, n, cin, cout, conv3_pad_data(xp), pf, b, y, (size_t)n * hwo, 1, shift, mom);
    double worst = 0.0, worst_m = 0.0;
    for (int co = 0; co < cout; co++) {
        double S = 0.0, Q = 0.0, mS = 0.0, mQ = 0.0;
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    const double v = b[co] + S2REF(co, i, oy, ox);
                    const size_t at = (size_t)co * n * hwo + (size_t)i * hwo + (size_t)oy * wo + ox;
                    const double err = fabs(y[at] - (y0[at] + v)) / (1.0 + fabs(y0[at] + v));
                    if (err > worst) worst = err;
                    S += v - shift[co];
                    Q += (v - shift[co]) * (v - shift[co]);
                }
        for (int l = 0; l < 16; l++) { mS += mom[32 * co + l]; mQ += mom[32 * co + 16 + l]; }
        const double e = fmax(fabs(mS - S) / (1.0 + fabs(S)), fabs(mQ - Q) / (1.0 + fabs(Q)));
        if (e > worst_m) worst_m = e;
    }
    T_CHECK(worst <= 1e-5, "conv3 s2 %dx%d -> %dx%d n=%d: forward (acc) off by %.3g relative", cin, cout, ho, wo, n, worst);
    T_CHECK(worst_m <= 1e-5, "conv3 s2 %dx%d -> %dx%d n=%d: moments off by %.3g relative", cin, cout, ho, wo, n, worst_m);
    const conv3_ep_t ep = {.a = ea, .b = eb, .relu = 1};
    conv3_forward_ep(&g, n, cin, cout, conv3_pad_data(xp), pf, NULL, y, (size_t)n * hwo, 0, NULL, NULL, &ep);
    worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < n; i++)
            for (size_t p = 0; p < hwo; p++) {
                const double v = fmax(0.0, ea[co] * S2REF(co, i, (int)(p / wo), (int)(p % wo)) + eb[co]);
                const double err = fabs(y[(size_t)co * n * hwo + (size_t)i * hwo + p] - v) / (1.0 + fabs(v));
                if (err > worst) worst = err;
            }
    T_CHECK(worst <= 1e-5, "conv3 s2 %dx%d -> %dx%d n=%d: forward with BN-ReLU epilogue off by %.3g relative", cin, cout,
            ho, wo, n, worst);
    conv3_wgrad(&g, n, conv3_pad_data(xp), conv3_pad_data(dp), dw, 0);
    worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++) {
                double sum = 0.0;
                for (int i = 0; i < n; i++)
                    for (int oy = 0; oy < ho; oy++)
                        for (int ox = 0; ox < wo; ox++) {
                            const int iy = 2 * oy + t / 3 - 1, ix = 2 * ox + t % 3 - 1;
                            if (iy < 0 || iy >= hin || ix < 0 || ix >= win) continue;
                            sum += (double)dy[(size_t)co * n * hwo + (size_t)i * hwo + (size_t)oy * wo + ox] *
                                   x[(size_t)ci * n * hwi + (size_t)i * hwi + (size_t)iy * win + ix];
                        }
                const double err = fabs(dw[((size_t)co * cin + ci) * 9 + t] - sum) / (1.0 + fabs(sum));
                if (err > worst) worst = err;
            }
    T_CHECK(worst <= 1e-5, "conv3 s2 %dx%d -> %dx%d n=%d: weight gradient off by %.3g relative", cin, cout, ho, wo, n,
            worst);
#undef S2REF
    printf("conv3 stride 2 %dx%d on %dx%d -> %dx%d, %d images, %s path: kernels checked\n", cin, cout, hin, win, ho, wo,
           n, vl_isa_name(g.isa));
    free(x); free(wt); free(b); free(dy); free(y); free(y0); free(dw); free(pf); free(mom); free(shift); free(ea);
    free(eb); free(xp); free(dp);
}

/* output and gradients of one train-mode step on a fixed batch */
static void step(vl_model_t *m, const float *w, float *state, const float *x, const int32_t *y, int n, float *out,
                 float *g)
{
    const int C = model_out_dim(m);
    const float *o = model_forward(m, w, state, x, n, MODE_TRAIN);
    memcpy(out, o, (size_t)n * C * sizeof(float));
    float *d = alloc_f((size_t)n * C);
    loss_softmax_ce(o, y, n, C, n, d, NULL);
    model_backward(m, w, d, g);
    free(d);
}

static void check_model(const char *name, vl_model_config_t cfg, int n, int want_direct)
{
    vl_model_t *m = NULL;
    int st = model_create(&cfg, n, &m);
    T_CHECK(st == 0, "%s: model_create failed: %s", name, vl_error_message());
    if (st) return;
    const int ndirect = model_conv_direct(m, -1);
    if (conv3_supported(32, 64, 14, 14))
        T_CHECK(ndirect == want_direct, "%s: %d convolutions on the direct kernels, want %d", name, ndirect, want_direct);
    const size_t np = model_nparams(m), ns = model_nstate(m) + 1, nout = (size_t)n * model_out_dim(m);
    float *w = alloc_f(np), *st1 = alloc_f(ns), *st2 = alloc_f(ns), *g1 = alloc_f(np), *g2 = alloc_f(np);
    float *o1 = alloc_f(nout), *o2 = alloc_f(nout), *x = alloc_f((size_t)n * model_in_dim(m));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    vl_rng_t r;
    rng_init(&r, 3, 1);
    for (size_t i = 0; i < (size_t)n * model_in_dim(m); i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < n; i++) y[i] = i % model_out_dim(m);
    model_init(m, 11, w, st1);
    model_init(m, 11, w, st2);
    step(m, w, st1, x, y, n, o1, g1);
    model_conv_direct(m, 0);
    T_CHECK(model_conv_direct(m, -1) == 0, "%s: the direct kernels could not be switched off", name);
    step(m, w, st2, x, y, n, o2, g2);
    double omax = 0.0, oerr = 0.0;
    for (size_t i = 0; i < nout; i++) {
        if (fabs(o2[i]) > omax) omax = fabs(o2[i]);
        if (fabs(o1[i] - o2[i]) > oerr) oerr = fabs(o1[i] - o2[i]);
    }
    T_CHECK(oerr <= 1e-4 * omax, "%s: output direct vs GEMM differs by %.3g (largest %.3g)", name, oerr, omax);
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int k = 0; k < nt; k++) {
        const float *a = t[k].kind == TENSOR_PARAM ? g1 + t[k].offset : st1 + t[k].offset;
        const float *b = t[k].kind == TENSOR_PARAM ? g2 + t[k].offset : st2 + t[k].offset;
        double big = 0.0, err = 0.0;
        for (size_t j = 0; j < t[k].numel; j++) {
            if (fabs(b[j]) > big) big = fabs(b[j]);
            if (fabs(a[j] - b[j]) > err) err = fabs(a[j] - b[j]);
        }
        T_CHECK(err <= 1e-4 * big + 1e-7, "%s: %s %s direct vs GEMM differs by %.3g (largest %.3g)", name, t[k].name,
                t[k].kind == TENSOR_PARAM ? "gradient" : "state", err, big);
    }
    /* eval forwards without gradients (no pool winners kept) give the same outputs, bit for bit */
    model_conv_direct(m, 1);
    memcpy(o1, model_forward(m, w, st1, x, n, MODE_EVAL), nout * sizeof(float));
    model_set_grad(m, 0);
    memcpy(o2, model_forward(m, w, st1, x, n, MODE_EVAL), nout * sizeof(float));
    model_set_grad(m, 1);
    T_CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0, "%s: eval output without gradients differs", name);
    /* two kernel threads (parallel.threads) give the same bits as one: a train step's outputs,
     * gradients and BN state, and an eval pass (OpenBLAS stays at one thread here) */
    model_init(m, 11, w, st1);
    model_init(m, 11, w, st2);
    step(m, w, st1, x, y, n, o1, g1);
    vl_set_threads(2);
    step(m, w, st2, x, y, n, o2, g2);
    T_CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0 && memcmp(g1, g2, np * sizeof(float)) == 0 &&
                memcmp(st1, st2, ns * sizeof(float)) == 0,
            "%s: a train step on 2 kernel threads differs from 1", name);
    memcpy(o2, model_forward(m, w, st1, x, n, MODE_EVAL), nout * sizeof(float));
    vl_set_threads(1);
    memcpy(o1, model_forward(m, w, st1, x, n, MODE_EVAL), nout * sizeof(float));
    T_CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0, "%s: an eval pass on 2 kernel threads differs from 1", name);
    printf("%s: %d direct convolutions, output and %d tensors' gradients/state equal to the GEMM route\n", name,
           ndirect, nt);
    free(w); free(st1); free(st2); free(g1); free(g2); free(o1); free(o2); free(x); free(y);
    model_free(m);
}

int main(void)
{
    check_kernels(32, 64, 14, 14, 3); /* the convnet's conv2 */
    check_kernels(1, 32, 28, 28, 2);  /* its conv1 (V = 2) */
    check_kernels(16, 16, 12, 13, 2); /* uneven width */
    check_kernels(8, 16, 13, 46, 2);  /* V = 3 */
    check_kernels(16, 8, 1, 14, 3);   /* one row */
    /* flat rows (rs = w + 2): the residual networks' 32x32, 16x16 and 8x8 stages, their input
     * conv, and narrow planes whose vectors span two and three rows */
    check_kernels(16, 16, 32, 32, 2);
    check_kernels(3, 16, 32, 32, 2);
    check_kernels(32, 32, 16, 16, 2);
    check_kernels(64, 64, 8, 8, 2);
    check_kernels(8, 16, 6, 7, 3);
    check_kernels(16, 8, 9, 6, 2);
    /* stride 2: the residual networks' 32 -> 16 and 16 -> 8 downsampling convs, and narrow ones */
    check_kernels_s2(16, 32, 16, 16, 2);
    check_kernels_s2(32, 64, 8, 8, 2);
    check_kernels_s2(3, 8, 7, 9, 3);
    check_model("convnet", (vl_model_config_t){.kind = MODEL_CONVNET, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10},
                9, 2);
    check_model("preresnet8",
                (vl_model_config_t){.kind = MODEL_PRERESNET, .depth = 8, .in_c = 1, .in_h = 12, .in_w = 12, .out_dim = 10},
                5, 4);
    check_model("resnet8",
                (vl_model_config_t){.kind = MODEL_RESNET, .depth = 8, .shortcuts = 1, .in_c = 3, .in_h = 32, .in_w = 32,
                                    .out_dim = 10},
                3, 7);
    T_DONE();
}
