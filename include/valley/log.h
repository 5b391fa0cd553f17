/* log.h — progress lines from rank 0 of a communicator, and phase timers. */
#ifndef VALLEY_LOG_H
#define VALLEY_LOG_H
#include <mpi.h>

/* printf-like line on stdout from rank 0 of comm only, prefixed with elapsed time. */
void vl_log(MPI_Comm comm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Wall-clock seconds since the program started (first call). */
double vl_now(void);
/* "1h02m", "3m07s", "12s" */
void vl_fmt_duration(double seconds, char *buf, int len);

/* Phase timers: accumulate seconds per named phase; report min/max/avg over comm. */
enum { TIMER_COMPUTE, TIMER_ALLREDUCE, TIMER_IO, TIMER_EVAL, TIMER_BN_UPDATE, TIMER_COUNT };
void timer_start(int phase);
void timer_stop(int phase);
double timer_total(int phase);
/* Collective over comm: one table line per phase with min/max/avg and the ranks of min/max. */
void timer_report(MPI_Comm comm);
#endif
