/* bench_clock.h — the clock of the benchmarks (bench_core.c, bench_families.c).
 * VALLEY_BENCH_CLOCK=cpu: rates per second of this process's CPU time (a loaded machine);
 * otherwise wall-clock time. */
#ifndef VALLEY_BENCH_CLOCK_H
#define VALLEY_BENCH_CLOCK_H
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("VALLEY_BENCH_CLOCK") && !strcmp(getenv("VALLEY_BENCH_CLOCK"), "cpu");
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
#endif
