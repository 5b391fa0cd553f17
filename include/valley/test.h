/* test.h — tiny assertion helpers for the C unit tests (tests/unit/test_*.c).
 * A test binary exits 0 when every check passed, 1 otherwise; each failed
 * check prints file:line and the values compared. */
#ifndef VALLEY_TEST_H
#define VALLEY_TEST_H
#include <math.h>
#include <stdio.h>

static int test_failures = 0, test_checks = 0;

#define T_CHECK(cond, ...)                                                     \
    do {                                                                       \
        test_checks++;                                                         \
        if (!(cond)) {                                                         \
            test_failures++;                                                   \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define T_CLOSE(a, b, rtol, atol, what)                                        \
    do {                                                                       \
        double ta_ = (a), tb_ = (b);                                           \
        T_CHECK(fabs(ta_ - tb_) <= (atol) + (rtol) * fabs(tb_),                \
                "%s: got %.10g, want %.10g", (what), ta_, tb_);                \
    } while (0)

#define T_DONE()                                                               \
    do {                                                                       \
        printf("%d checks, %d failed\n", test_checks, test_failures);          \
        return (test_failures || !test_checks) ? 1 : 0;                        \
    } while (0)
#endif
