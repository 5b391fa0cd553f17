/* torch_io.h — the files the PyTorch-reference tests hand to tests/py (test_torch.c,
 * test_laplace.c): raw little-endian arrays and manifest.txt, one line per tensor
 * "name param|state ndim shape... offset" (torch_ref.py's read_manifest). */
#ifndef VALLEY_TESTS_TORCH_IO_H
#define VALLEY_TESTS_TORCH_IO_H
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "valley/model.h"

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

#endif
