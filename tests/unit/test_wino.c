/* test_wino.c — the Winograd F(2x2, 3x3) forward (wino.c) against plain double loops, and
 * the convnet with it against the same convnet on the direct kernel.
 *
 * Kernel level, per shape (14x14 with an odd number of tile rows per chunk, 12x12, 4x4,
 * 8x10; 8 to 32 input channels): the stored outputs with bias; the fused eval batch norm
 * a y + b, ReLU and 2x2 max-pool against the same applied to the double-loop outputs; the
 * per-channel moments about a shift against their double sums. Tolerance: 1e-5 (1 + |want|):
 * the transforms add up to 16 terms and halve, a few units in the last place of outputs of
 * size ~5; a wrong transform entry, tile or lane is off by O(0.1).
 * Model level (convnet, 28x28): a train-mode step (output, every gradient, BN state), an
 * eval pass without gradients (the fused conv -> BN -> ReLU -> pool) and a BN refresh
 * (MODE_BN_UPDATE) with the Winograd forward against the direct kernel: relative 1e-4 of
 * each tensor's largest entry.
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
#include "valley/wino.h"
#include "conv_ref.h"

static float urand(vl_rng_t *r) { return (float)(rng_uniform(r) - 0.5); }
static float *alloc_f(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void check_kernel(int cin, int cout, int h, int w, int n, int flat)
{
    if (!wino_supported(cin, cout, h, w)) {
        printf("wino %dx%d %dx%d: not supported on this build, skipped\n", cin, cout, h, w);
        return;
    }
    conv3_geom_t g; /* aligned rows (16-float vectors) or flat ones (w + 2) */
    conv3_geom_layout(&g, cin, cout, h, w, flat);
    const size_t hw = (size_t)h * w, ph = (size_t)(h / 2) * (w / 2);
    vl_rng_t r;
    rng_init(&r, 5, (uint64_t)(cin * 977 + cout * 31 + h * 7 + w + n));
    float *x = alloc_f((size_t)cin * n * hw), *wt = alloc_f((size_t)cout * cin * 9), *b = alloc_f(cout);
    float *a2 = alloc_f(cout), *b2 = alloc_f(cout), *shift = alloc_f(cout), *mom = alloc_f(32 * (size_t)cout);
    float *y = alloc_f((size_t)cout * n * hw), *pool = alloc_f((size_t)cout * n * ph);
    double *want = calloc((size_t)cout * n * hw, sizeof(double));
    for (size_t i = 0; i < (size_t)cin * n * hw; i++) x[i] = urand(&r);
    for (int i = 0; i < cout * cin * 9; i++) wt[i] = urand(&r);
    for (int c = 0; c < cout; c++) {
        b[c] = urand(&r);
        a2[c] = 2.0f * urand(&r); /* negative scales too: the pool then takes the smallest conv output */
        b2[c] = urand(&r);
        shift[c] = urand(&r);
    }
    x[3] = 0.0f;
    float *xp = alloc_f(conv3_pad_floats(&g, cin, n)), *U = alloc_f(wino_pack_floats(cin, cout));
    float *work = alloc_f(wino_work_floats(&g, n));
    conv3_pad(&g, cin, x, (size_t)n * hw, n, xp);
    wino_pack(cin, cout, wt, U);
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < w; ox++)
                    want[(size_t)co * n * hw + i * hw + (size_t)oy * w + ox] =
                        b[co] + conv3_ref_at(x, wt, cin, n, h, w, co, i, oy, ox);
    wino_out_t o = {.out = y, .cstride = (size_t)n * hw, .shift = shift, .mom = mom};
    wino_forward(&g, n, conv3_pad_data(xp), U, b, work, &o);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)cout * n * hw; i++) {
        double e = fabs(y[i] - want[i]) / (1.0 + fabs(want[i]));
        if (e > worst) worst = e;
    }
    T_CHECK(worst <= 1e-5, "wino %dx%d %dx%d n=%d: outputs off by %.3g relative", cin, cout, h, w, n, worst);
    for (int co = 0; co < cout; co++) {
        double S = 0.0, Q = 0.0, mS = 0.0, mQ = 0.0;
        for (size_t p = 0; p < (size_t)n * hw; p++) {
            double d = want[(size_t)co * n * hw + p] - shift[co];
            S += d;
            Q += d * d;
        }
        for (int l = 0; l < 16; l++) {
            mS += mom[32 * co + l];
            mQ += mom[32 * co + 16 + l];
        }
        char what[96];
        snprintf(what, sizeof what, "wino %dx%d %dx%d n=%d: moment S of channel %d", cin, cout, h, w, n, co);
        T_CLOSE(mS, S, 1e-5, 1e-4 * (double)n * hw, what);
        snprintf(what, sizeof what, "wino %dx%d %dx%d n=%d: moment Q of channel %d", cin, cout, h, w, n, co);
        T_CLOSE(mQ, Q, 1e-5, 1e-4 * (double)n * hw, what);
    }
    wino_out_t op = {.pool = pool, .pstride = (size_t)n * ph, .a = a2, .b = b2};
    wino_forward(&g, n, conv3_pad_data(xp), U, b, work, &op);
    worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < n; i++)
            for (int py = 0; py < h / 2; py++)
                for (int px = 0; px < w / 2; px++) {
                    double m = 0.0;
                    for (int k = 0; k < 4; k++) {
                        double v = a2[co] * want[(size_t)co * n * hw + i * hw + (size_t)(2 * py + k / 2) * w + 2 * px + k % 2] + b2[co];
                        if (v > m) m = v;
                    }
                    double got = pool[(size_t)co * n * ph + i * ph + (size_t)py * (w / 2) + px];
                    double e = fabs(got - m) / (1.0 + m);
                    if (e > worst) worst = e;
                }
    T_CHECK(worst <= 1e-5, "wino %dx%d %dx%d n=%d: fused BN + ReLU + pool off by %.3g relative", cin, cout, h, w, n,
            worst);
    /* the eval epilogue: relu(a y + b) stored in place of y */
    wino_out_t oe = {.out = y, .cstride = (size_t)n * hw, .ep_a = a2, .ep_b = b2, .ep_relu = 1};
    wino_forward(&g, n, conv3_pad_data(xp), U, b, work, &oe);
    worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (size_t p = 0; p < (size_t)n * hw; p++) {
            const double v = fmax(0.0, a2[co] * want[(size_t)co * n * hw + p] + b2[co]);
            const double e = fabs(y[(size_t)co * n * hw + p] - v) / (1.0 + v);
            if (e > worst) worst = e;
        }
    T_CHECK(worst <= 1e-5, "wino %dx%d %dx%d n=%d: BN + ReLU epilogue off by %.3g relative", cin, cout, h, w, n, worst);
    printf("wino %dx%d on %dx%d (%s rows), %d images: outputs, moments, pooled values and epilogue checked\n", cin,
           cout, h, w, flat ? "flat" : "aligned", n);
    free(x); free(wt); free(b); free(a2); free(b2); free(shift); free(mom); free(y); free(pool); free(want);
    free(xp); free(U); free(work);
}

/* The weight gradient (wino_wgrad + wino_wgrad_finish) against double loops: dW[co][ci][ky][kx] =
 * sum over images and outputs of dy x (zero padding). The images go in two calls (the second
 * accumulating) from one padded chunk. Tolerance: 1e-6 of the sum of |dy x| over the same terms
 * (the transforms add and halve up to 16 terms of O(1) and the lanes sum ~hw n / 64 products
 * each in float: measured 2e-8 to 7e-8 of that scale; a wrong lane, tile or transform
 * entry is off by O(1e-2) of it). 2 threads must give the same bits as 1. */
static void check_wgrad(int cin, int cout, int h, int w, int n, int flat)
{
    if (!wino_wgrad_supported(cin, cout, h, w)) {
        printf("wino wgrad %dx%d %dx%d: not supported on this build, skipped\n", cin, cout, h, w);
        return;
    }
    conv3_geom_t g;
    conv3_geom_layout(&g, cin, cout, h, w, flat);
    const size_t hw = (size_t)h * w, nw = (size_t)cout * cin * 9, cc = (size_t)cout * cin;
    vl_rng_t r;
    rng_init(&r, 9, (uint64_t)(cin * 977 + cout * 31 + h * 7 + w + n));
    float *x = alloc_f((size_t)cin * n * hw), *dy = alloc_f((size_t)cout * n * hw);
    for (size_t i = 0; i < (size_t)cin * n * hw; i++) x[i] = urand(&r);
    for (size_t i = 0; i < (size_t)cout * n * hw; i++) dy[i] = urand(&r);
    float *xp = alloc_f(conv3_pad_floats(&g, cin, n)), *work = alloc_f(wino_wgrad_work_floats(&g, n));
    float *M = alloc_f(16 * cc), *dw = alloc_f(nw), *dw2 = alloc_f(nw);
    conv3_pad(&g, cin, x, (size_t)n * hw, n, xp);
    const int n1 = n / 2 > 0 ? n / 2 : n;
    for (int pass = 0; pass < 2; pass++) {
        vl_set_threads(pass ? 2 : 1);
        wino_wgrad(&g, n1, conv3_pad_data(xp), dy, (size_t)n * hw, work, M, 0);
        if (n > n1)
            wino_wgrad(&g, n - n1, conv3_pad_data(xp) + (size_t)n1 * cin * g.plane, dy + (size_t)n1 * hw, (size_t)n * hw,
                       work, M, 1);
        wino_wgrad_finish(cin, cout, M, pass ? dw2 : dw);
    }
    vl_set_threads(1);
    T_CHECK(memcmp(dw, dw2, nw * sizeof(float)) == 0, "wino wgrad %dx%d %dx%d: 2 threads differ from 1", cin, cout, h, w);
    double worst = 0.0;
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int k = 0; k < 9; k++) {
                const int ky = k / 3 - 1, kx = k % 3 - 1;
                double want = 0.0, scale = 0.0;
                for (int i = 0; i < n; i++)
                    for (int oy = 0; oy < h; oy++)
                        for (int ox = 0; ox < w; ox++) {
                            const int iy = oy + ky, ix = ox + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            const double t = (double)dy[((size_t)co * n + i) * hw + (size_t)oy * w + ox] *
                                             x[((size_t)ci * n + i) * hw + (size_t)iy * w + ix];
                            want += t;
                            scale += fabs(t);
                        }
                const double e = fabs(dw[((size_t)co * cin + ci) * 9 + k] - want) / scale;
                if (e > worst) worst = e;
            }
    T_CHECK(worst <= 1e-6, "wino wgrad %dx%d %dx%d n=%d: off by %.3g of the sum of |terms|", cin, cout, h, w, n, worst);
    printf("wino wgrad %dx%d on %dx%d (%s rows), %d images: within %.2g of the term scale, threads bit-identical\n", cin,
           cout, h, w, flat ? "flat" : "aligned", n, worst);
    free(x); free(dy); free(xp); free(work); free(M); free(dw); free(dw2);
}

/* largest |a - b| over n against the largest |b| */
static void compare(const char *what, const float *a, const float *b, size_t n, double rtol)
{
    double big = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > big) big = fabs(b[i]);
        if (fabs(a[i] - b[i]) > err || a[i] != a[i]) err = a[i] != a[i] ? INFINITY : fabs(a[i] - b[i]);
    }
    T_CHECK(err <= rtol * big + 1e-7, "%s: Winograd vs direct differs by %.3g (largest %.3g)", what, err, big);
}

static void check_model(void)
{
    vl_model_config_t cfg = {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 28, .in_w = 28, .out_dim = 10};
    const int n = 7;
    vl_model_t *m = NULL;
    int st = model_create(&cfg, n, &m);
    T_CHECK(st == 0, "convnet: model_create failed: %s", vl_error_message());
    if (st) return;
    const int nw = model_conv_winograd(m, -1);
    if (wino_supported(32, 64, 14, 14)) T_CHECK(nw == 1, "convnet: %d Winograd convolutions, want 1 (conv2)", nw);
    const size_t np = model_nparams(m), ns = model_nstate(m) + 1, nout = (size_t)n * 10;
    float *w = alloc_f(np), *s1 = alloc_f(ns), *s2 = alloc_f(ns), *g1 = alloc_f(np), *g2 = alloc_f(np);
    float *o1 = alloc_f(nout), *o2 = alloc_f(nout), *x = alloc_f((size_t)n * 784), *d = alloc_f(nout);
    int32_t y[7];
    vl_rng_t r;
    rng_init(&r, 9, 2);
    for (int i = 0; i < n * 784; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < n; i++) y[i] = (i * 3) % 10;
    model_init(m, 4, w, s1);
    for (int pass = 0; pass < 2; pass++) { /* pass 0: Winograd, pass 1: direct */
        float *s = pass ? s2 : s1, *g = pass ? g2 : g1, *o = pass ? o2 : o1;
        model_conv_winograd(m, pass == 0);
        if (pass) model_init(m, 4, w, s);
        const float *out = model_forward(m, w, s, x, n, MODE_TRAIN);
        memcpy(o, out, nout * sizeof(float));
        loss_softmax_ce(out, y, n, 10, n, d, NULL);
        model_backward(m, w, d, g);
    }
    compare("convnet train-mode output", o1, o2, nout, 1e-4);
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int k = 0; k < nt; k++) {
        char what[96];
        snprintf(what, sizeof what, "convnet %s %s", t[k].name, t[k].kind == TENSOR_PARAM ? "gradient" : "state");
        if (t[k].kind == TENSOR_PARAM) compare(what, g1 + t[k].offset, g2 + t[k].offset, t[k].numel, 1e-4);
        else compare(what, s1 + t[k].offset, s2 + t[k].offset, t[k].numel, 1e-4);
    }
    /* eval without gradients (conv2 -> bn2 -> relu -> pool fused) vs direct with gradients */
    model_conv_winograd(m, 1);
    model_set_grad(m, 0);
    memcpy(o1, model_forward(m, w, s1, x, n, MODE_EVAL), nout * sizeof(float));
    model_set_grad(m, 1);
    model_conv_winograd(m, 0);
    memcpy(o2, model_forward(m, w, s1, x, n, MODE_EVAL), nout * sizeof(float));
    compare("convnet eval output (fused pool)", o1, o2, nout, 1e-4);
    /* BN refresh: the statistics the Winograd pass accumulates */
    for (int pass = 0; pass < 2; pass++) {
        float *s = pass ? s2 : s1;
        model_conv_winograd(m, pass == 0);
        model_bn_begin(m);
        T_CHECK(model_forward(m, w, s, x, n, MODE_BN_UPDATE) == NULL, "a refresh forward returns NULL");
        model_forward(m, w, s, x + 3 * 784, n - 3, MODE_BN_UPDATE);
        model_bn_finish(m, s);
    }
    for (int k = 0; k < nt; k++)
        if (t[k].kind == TENSOR_STATE) {
            char what[96];
            snprintf(what, sizeof what, "convnet refresh %s", t[k].name);
            compare(what, s1 + t[k].offset, s2 + t[k].offset, t[k].numel, 1e-4);
        }
    printf("convnet: train step, eval without gradients and BN refresh with the Winograd conv2 match the direct kernel\n");
    free(w); free(s1); free(s2); free(g1); free(g2); free(o1); free(o2); free(x); free(d);
    model_free(m);
}

int main(void)
{
    check_kernel(32, 64, 14, 14, 3, 0); /* conv2 of the convnet; 21 tile rows: a half-empty last vector */
    check_kernel(32, 64, 14, 14, 2, 0);
    check_kernel(16, 8, 12, 12, 2, 0);
    check_kernel(8, 16, 4, 4, 1, 0);
    check_kernel(8, 8, 8, 10, 3, 0);
    /* segments of 8 tiles: the residual networks' 32x32, 16x16 and 8x8 planes in flat rows, 32x32
     * in aligned rows of 3 vectors, an uneven segment (w = 20: 8 + 2 tiles) */
    check_kernel(16, 16, 32, 32, 2, 1);
    check_kernel(16, 16, 32, 32, 1, 0);
    check_kernel(32, 32, 16, 16, 2, 1);
    check_kernel(64, 64, 8, 8, 3, 1);
    check_kernel(8, 16, 6, 20, 2, 1);
    /* the weight gradient: 32x32 and 16x16 planes, flat and aligned rows, an odd image count, a
     * channel count that is no multiple of 4 (7 outputs), w = 48 (three segments a row) */
    check_wgrad(16, 16, 32, 32, 3, 1);
    check_wgrad(16, 16, 32, 32, 2, 0);
    check_wgrad(32, 7, 16, 16, 3, 1);
    check_wgrad(64, 32, 16, 16, 2, 1);
    check_wgrad(16, 8, 4, 48, 1, 1);
    check_model();
    T_DONE();
}
