/* log.c — rank-0 progress lines and phase timers. */
#include "valley/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static double t_origin = -1.0;

double vl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = ts.tv_sec + 1e-9 * ts.tv_nsec;
    if (t_origin < 0) t_origin = t;
    return t - t_origin;
}

void vl_fmt_duration(double s, char *buf, int len)
{
    if (s < 0) s = 0;
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(buf, len, "%ldh%02ldm", v / 3600, (v % 3600) / 60);
    else if (v >= 60) snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
    else snprintf(buf, len, "%lds", v);
}

void vl_log(MPI_Comm comm, const char *fmt, ...)
{
    int rank = 0;
    if (comm != MPI_COMM_NULL) MPI_Comm_rank(comm, &rank);
    if (rank != 0) return;
    char when[32];
    vl_fmt_duration(vl_now(), when, sizeof when);
    printf("[%6s] ", when);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static double t_acc[TIMER_COUNT], t_begin[TIMER_COUNT];
static const char *t_names[TIMER_COUNT] = {"compute", "allreduce", "io", "evaluate", "bn_update"};

void timer_start(int p) { t_begin[p] = vl_now(); }
void timer_stop(int p) { t_acc[p] += vl_now() - t_begin[p]; }
double timer_total(int p) { return t_acc[p]; }

void timer_report(MPI_Comm comm)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    vl_log(comm, "phase          min (rank)      max (rank)      avg   max/min");
    for (int p = 0; p < TIMER_COUNT; p++) {
        struct { double v; int r; } in = {t_acc[p], rank}, mn, mx;
        double sum;
        MPI_Allreduce(&in, &mn, 1, MPI_DOUBLE_INT, MPI_MINLOC, comm);
        MPI_Allreduce(&in, &mx, 1, MPI_DOUBLE_INT, MPI_MAXLOC, comm);
        MPI_Allreduce(&t_acc[p], &sum, 1, MPI_DOUBLE, MPI_SUM, comm);
        if (mx.v <= 0) continue;
        vl_log(comm, "%-10s %9.2fs (%3d) %9.2fs (%3d) %8.2fs %6.2f", t_names[p], mn.v, mn.r, mx.v, mx.r, sum / size,
               mn.v > 1e-3 ? mx.v / mn.v : 1.0);
    }
}
