/* error.h — status codes and error propagation.
 *
 * Every function that can fail returns an int status (VL_OK = 0). The first
 * failure records a message with file:line; callers propagate with CHECK().
 * The exit status of the program is the status code (INTERFACE.md):
 *   0 success, 2 bad input, 3 numerical failure, 4 I/O failure, 143 signal.
 *
 * Two kinds of failure:
 *  - collective: every rank of the job reaches the same failure with the same
 *    message (e.g. deck validation, which runs identically on every rank).
 *    Raise with VL_FAIL_ALL; main() lets rank 0 print and all ranks exit cleanly.
 *  - local (the default): only this rank knows. main() prints the message with
 *    the rank and calls MPI_Abort, so the whole job ends within seconds.
 */
#ifndef VALLEY_ERROR_H
#include <stddef.h>
#define VALLEY_ERROR_H

enum {
    VL_OK = 0,
    VL_EINPUT = 2,   /* bad deck, bad file, bad argument */
    VL_ENUM = 3,     /* non-finite loss that the deck did not allow */
    VL_EIO = 4,      /* cannot write, disk full, NetCDF write error */
    VL_ESIGNAL = 143 /* stopped by a signal after writing a checkpoint */
};

/* Records the first failure (later ones are ignored until vl_error_clear);
 * returns status so it can be used as `return VL_FAIL(...)`. */
int vl_fail(int status, int collective, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define VL_FAIL(st, ...) vl_fail((st), 0, __FILE__, __LINE__, __VA_ARGS__)
#define VL_FAIL_ALL(st, ...) vl_fail((st), 1, __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failing status, appending the call site to the trace. */
#define CHECK(expr)                                                            \
    do {                                                                       \
        int vl_check_st_ = (expr);                                             \
        if (vl_check_st_) { vl_trace(__FILE__, __LINE__); return vl_check_st_; } \
    } while (0)

void vl_trace(const char *file, int line);
const char *vl_error_message(void); /* "" when none */
const char *vl_error_where(void);   /* "src/x.c:12 <- src/y.c:40" */
int vl_error_status(void);
int vl_error_collective(void);
void vl_error_clear(void);
/* Marks the recorded failure as collective (after the ranks agreed on it). */
void vl_error_set_collective(void);

/* Overflow-safe size arithmetic for allocations from file dimensions:
 * returns 0 and sets *out on success, nonzero on overflow. */
int vl_mul_size(size_t a, size_t b, size_t *out);

/* malloc/calloc that record a failure (status VL_EIO, "out of memory allocating
 * <what>") and return NULL when the allocation fails. Memory is 64-byte aligned. */
void *vl_alloc(size_t nbytes, const char *what);
void *vl_calloc(size_t n, size_t size, const char *what);

#endif
