/* error.c — first-failure record with a call-site trace. */
#include "valley/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    int status;
    int collective;
    char msg[1024];
    char where[512];
} err;

int vl_fail(int status, int collective, const char *file, int line, const char *fmt, ...)
{
    if (err.status) return status; /* keep the first, most specific, failure */
    err.status = status;
    err.collective = collective;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    snprintf(err.where, sizeof err.where, "%s:%d", file, line);
    return status;
}

void vl_trace(const char *file, int line)
{
    size_t n = strlen(err.where);
    if (n + 8 < sizeof err.where)
        snprintf(err.where + n, sizeof err.where - n, " <- %s:%d", file, line);
}

const char *vl_error_message(void) { return err.msg; }
const char *vl_error_where(void) { return err.where; }
int vl_error_status(void) { return err.status; }
int vl_error_collective(void) { return err.collective; }
void vl_error_set_collective(void) { err.collective = 1; }
void vl_error_clear(void) { memset(&err, 0, sizeof err); }

int vl_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}

void *vl_alloc(size_t nbytes, const char *what)
{
    void *p = NULL;
    if (nbytes > SIZE_MAX - 63) { /* rounding up would wrap around to a tiny block */
        VL_FAIL(VL_EIO, "out of memory allocating %zu bytes for %s", nbytes, what);
        return NULL;
    }
    size_t n = (nbytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    if (posix_memalign(&p, 64, n) != 0) {
        VL_FAIL(VL_EIO, "out of memory allocating %zu bytes for %s", nbytes, what);
        return NULL;
    }
    return p;
}

void *vl_calloc(size_t n, size_t size, const char *what)
{
    size_t total;
    if (vl_mul_size(n, size, &total)) {
        VL_FAIL(VL_EIO, "size overflow allocating %s", what);
        return NULL;
    }
    void *p = vl_alloc(total, what);
    if (p) memset(p, 0, total);
    return p;
}
