/* torch_io.h — the files the PyTorch-reference tests hand to tests/py (test_torch.c,
 * test_laplace.c): raw little-endian arrays and manifest.txt, one line per tensor
 * "name param|state ndim shape... offset" (torch_ref.py's read_manifest). */
#ifndef VALLEY_TESTS_TORCH_IO_H
#define VALLEY_TESTS_TORCH_IO_H
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "valley/model.h"
#include "valley/test.h"

static inline int write_file(const char *dir, const char *name, const void *p, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno)); return -1; }
    size_t done = size ? fwrite(p, 1, size, f) : 0;
    int bad = fclose(f) != 0 || done != size;
    if (bad) fprintf(stderr, "cannot write %s\n", path);
    return bad ? -1 : 0;
}

/* Reads exactly size bytes (the file must have that size). */
static inline int read_file(const char *dir, const char *name, void *p, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno)); return -1; }
    size_t got = size ? fread(p, 1, size, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != size || extra) {
        fprintf(stderr, "%s: expected %zu bytes, got %zu%s\n", path, size, got, extra ? " and more" : "");
        return -1;
    }
    return 0;
}

static inline int write_manifest(const char *dir, const vl_model_t *m)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno)); return -1; }
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++) {
        fprintf(f, "%s %s %d", t[i].name, t[i].kind == TENSOR_PARAM ? "param" : "state", t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) fprintf(f, " %lld", (long long)t[i].shape[d]);
        fprintf(f, " %zu\n", t[i].offset);
    }
    return fclose(f) ? -1 : 0;
}

/* A case for a reference script: manifest.txt, params.f32, state.f32, x.f32 (nx floats), y.i32
 * (ny labels). Returns 0, or -1 after printing why. */
static inline int write_case(const char *dir, const vl_model_t *m, const float *w, const float *st, const float *x, size_t nx,
                             const int32_t *y, size_t ny)
{
    return write_manifest(dir, m) || write_file(dir, "params.f32", w, model_nparams(m) * 4) ||
                   write_file(dir, "state.f32", st, model_nstate(m) * 4) || write_file(dir, "x.f32", x, nx * 4) ||
                   write_file(dir, "y.i32", y, ny * 4)
               ? -1
               : 0;
}

/* Runs tests/py/SCRIPT DIR FAMILY with the network's options (--input CxHxW --out --batch
 * --candidates [--widths] --depth --width-factor, then `extra`) and reads the batch it chose and
 * its kink margin from DIR/chosen.txt. A missing torch (exit 3) and any other failure are failed
 * checks. Returns 0 when *chosen is a candidate. */
static inline int run_reference(const char *script, const char *dir, const char *family, const vl_model_config_t *cfg, int batch,
                                int candidates, const char *extra, int *chosen, double *margin)
{
    const char *py = getenv("PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    char widths[256] = "", cmd[8192];
    for (int i = 0; i < cfg->nwidths; i++)
        snprintf(widths + strlen(widths), sizeof widths - strlen(widths), "%s%d", i ? "," : "", cfg->widths[i]);
    snprintf(cmd, sizeof cmd, "'%s' tests/py/%s '%s' %s --input %dx%dx%d --out %d --batch %d --candidates %d%s%s "
                              "--depth %d --width-factor %.17g %s",
             py, script, dir, family, cfg->in_c, cfg->in_h, cfg->in_w, cfg->out_dim, batch, candidates,
             cfg->nwidths ? " --widths " : "", widths, cfg->depth ? cfg->depth : 8, cfg->width_factor > 0 ? cfg->width_factor : 1.0,
             extra ? extra : "");
    const int status = system(cmd);
    const int code = status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    T_CHECK(code != 3, "python3-torch is missing (install Debian's python3-torch; this test does not skip)");
    T_CHECK(code == 0, "%s: %s failed with status %d (its message is above)", dir, script, code);
    *chosen = -1;
    *margin = 0.0;
    char path[4300];
    snprintf(path, sizeof path, "%s/chosen.txt", dir);
    FILE *f = code == 0 ? fopen(path, "r") : NULL;
    if (f) {
        if (fscanf(f, "%d %lf", chosen, margin) != 2) *chosen = -1;
        fclose(f);
    }
    T_CHECK(*chosen >= 0 && *chosen < candidates, "%s: no batch chosen by %s", dir, script);
    return *chosen >= 0 && *chosen < candidates ? 0 : -1;
}

/* |a - b| <= rtol max(|b|, rms(b)) for every entry (test_torch.c's rule: relative for the large
 * entries, relative to the tensor's size for the small ones); a failed check names the worst. */
static inline double compare_rule(const char *what, const double *a, const double *b, size_t n, double rtol)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += b[i] * b[i];
    const double rms = sqrt(ss / (double)n);
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double lim = rtol * fmax(fabs(b[i]), rms), err = fabs(a[i] - b[i]);
        const double r = !isfinite(a[i]) ? INFINITY : lim > 0 ? err / lim : (err > 0 ? INFINITY : 0.0);
        if (r > worst) worst = r, at = i;
    }
    T_CHECK(worst <= 1.0, "%s: worst entry %zu of %zu: valley %.12g torch %.12g (rms %.3g)", what, at, n, a[at], b[at], rms);
    return worst;
}

#endif
