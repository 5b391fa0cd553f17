/* test_subspace.c — subspace constructors (SPEC §2) against their definitions:
 * the plane through three points puts them at (0,0), (1,0), (alpha,1); projection
 * recovers coordinates; filter normalisation gives every filter of a direction the norm
 * of the same filter of the weights, and biases / BN a zero direction. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/model.h"
#include "valley/subspace.h"
#include "valley/test.h"

int main(void)
{
    vl_rng_t r;
    rng_init(&r, 5, rng_stream(RNG_TEST, 7, 0));
    const size_t d = 1000;
    float *w0 = malloc(d * 4), *w1 = malloc(d * 4), *w2 = malloc(d * 4), *p = malloc(d * 4);
    for (size_t i = 0; i < d; i++) {
        w0[i] = (float)rng_normal(&r);
        w1[i] = w0[i] + (float)rng_normal(&r);
        w2[i] = w0[i] + (float)(2 * rng_normal(&r));
    }
    vl_subspace_t s;
    T_CHECK(subspace_plane(&s, d, w0, w1, w2) == 0, "plane");
    double z[2];
    double res = subspace_project(&s, w0, z);
    T_CLOSE(z[0], 0, 0, 1e-9, "w0 alpha"); T_CLOSE(z[1], 0, 0, 1e-9, "w0 beta"); T_CLOSE(res, 0, 0, 1e-6, "w0 in plane");
    res = subspace_project(&s, w2, z);
    T_CLOSE(z[0], 1, 1e-7, 0, "w2 alpha"); T_CLOSE(z[1], 0, 0, 1e-7, "w2 beta"); T_CLOSE(res, 0, 0, 1e-4, "w2 in plane");
    double e2 = 0, ef = 0;
    for (size_t i = 0; i < d; i++) { double e = (double)w2[i] - w0[i]; e2 += e * e; ef += e * ((double)w1[i] - w0[i]); }
    res = subspace_project(&s, w1, z);
    T_CLOSE(z[0], ef / e2, 1e-6, 1e-7, "w1 alpha = <w1-w0,u>/|w2-w0|"); T_CLOSE(z[1], 1, 1e-6, 0, "w1 beta");
    T_CLOSE(res, 0, 0, 1e-4, "w1 in plane");
    double dotb = 0;
    for (size_t i = 0; i < d; i++) dotb += (double)s.basis[i] * s.basis[d + i];
    T_CLOSE(dotb, 0, 0, 1e-3, "plane basis orthogonal");
    double zz[2] = {0.3, -0.7}, back[2];
    subspace_point(&s, zz, p);
    subspace_project(&s, p, back);
    T_CLOSE(back[0], 0.3, 1e-5, 1e-6, "projection recovers alpha"); T_CLOSE(back[1], -0.7, 1e-5, 1e-6, "projection recovers beta");
    subspace_free(&s);
    T_CHECK(subspace_plane(&s, d, w0, w0, w2) != 0, "collinear points refused");
    vl_error_clear();
    T_CHECK(subspace_line(&s, d, w0, w2) == 0 && s.k == 1, "line");
    res = subspace_project(&s, w2, z);
    T_CLOSE(z[0], 1, 1e-7, 0, "line: w2 at 1");
    subspace_free(&s);

    /* Filter normalisation on the convnet's tensor table. */
    vl_model_config_t cfg = {.kind = MODEL_CONVNET, .in_c = 1, .in_h = 8, .in_w = 8, .out_dim = 3};
    vl_model_t *m;
    T_CHECK(model_create(&cfg, 2, &m) == 0, "model");
    size_t np = model_nparams(m);
    float *w = malloc(np * 4), *st = malloc((model_nstate(m) + 1) * 4);
    model_init(m, 3, w, st);
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    T_CHECK(subspace_random(&s, np, 2, w, t, nt, 11, 0) == 0, "random directions");
    int filters = 0;
    for (int q = 0; q < 2; q++)
        for (int ti = 0; ti < nt; ti++) {
            if (t[ti].kind != TENSOR_PARAM) continue;
            const float *dv = s.basis + (size_t)q * np + t[ti].offset, *wv = w + t[ti].offset;
            if (t[ti].ndim < 2) {
                double a = 0;
                for (size_t i = 0; i < t[ti].numel; i++) a += fabs(dv[i]);
                T_CHECK(a == 0, "%s: 1-D tensor direction must be zero", t[ti].name);
                continue;
            }
            size_t nf = (size_t)t[ti].shape[0], per = t[ti].numel / nf;
            for (size_t f = 0; f < nf; f++) {
                double dn = 0, wn = 0;
                for (size_t i = 0; i < per; i++) { dn += (double)dv[f * per + i] * dv[f * per + i]; wn += (double)wv[f * per + i] * wv[f * per + i]; }
                T_CLOSE(sqrt(dn), sqrt(wn), 1e-5, 0, "filter norm equals the weights' filter norm");
                filters++;
            }
        }
    T_CHECK(filters == 2 * (32 + 64 + 128 + 3), "%d filters checked", filters);
    double cross = 0;
    for (size_t i = 0; i < np; i++) cross += (double)s.basis[i] * s.basis[np + i];
    { double n0 = 0; for (size_t i = 0; i < np; i++) n0 += (double)s.basis[i] * s.basis[i];
      T_CHECK(fabs(cross) < 0.5 * n0, "two directions are different draws (cos %g)", cross / n0); }
    subspace_free(&s);
    T_CHECK(subspace_random(&s, np, 1, w, t, nt, 11, 1) == 0, "random with 1-D tensors");
    double a1 = 0;
    for (int ti = 0; ti < nt; ti++)
        if (t[ti].kind == TENSOR_PARAM && t[ti].ndim == 1)
            for (size_t i = 0; i < t[ti].numel; i++) a1 += fabs(s.basis[t[ti].offset + i]);
    T_CHECK(a1 > 0, "include_1d gives biases a direction");
    subspace_free(&s);
    model_free(m);
    free(w); free(st); free(w0); free(w1); free(w2); free(p);
    T_DONE();
}
