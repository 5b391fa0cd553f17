/* log.h — progress lines from rank 0 of a communicator, and phase timers.
 *
 * Phase timers (PETSc -log_view style): each rank accumulates wall seconds and call
 * counts per phase; timer_report prints and timer_write also stores a table with
 * min/max/avg over the ranks. Phases can nest (an evaluation does allreduces), so the
 * rows need not add up to the wall time:
 *   compute    forward/backward passes and optimiser steps (train, fge, curve)
 *   allreduce  the gradient / statistics allreduce of data-parallel training
 *   io         reading and writing NetCDF files (checkpoints, outputs)
 *   evaluate   evaluation passes (loss/accuracy over a data set)
 *   bn_update  BatchNorm statistics refresh passes
 *   mpi        ALL time spent inside MPI communication calls, whatever the caller
 *              (collectives, point-to-point, one-sided: MPI_Fetch_and_op, MPI_Put,
 *              window locks), including calls made by ScaLAPACK/BLACS and parallel
 *              NetCDF. Measured through the MPI profiling interface: log.c defines
 *              the wrapped MPI_* functions, which time the call and forward it to
 *              PMPI_*. It includes the wait for slower ranks (load imbalance).
 * The wall row is the time since MPI initialisation (the start of the command).
 */
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
enum { TIMER_COMPUTE, TIMER_ALLREDUCE, TIMER_IO, TIMER_EVAL, TIMER_BN_UPDATE, TIMER_MPI, TIMER_COUNT };
/* Starts / stops phase `phase` on this rank (a phase must not be started twice
 * without a stop in between; different phases may nest). */
void timer_start(int phase);
void timer_stop(int phase);
/* Seconds accumulated so far in `phase` on this rank. */
double timer_total(int phase);
/* Name of a phase ("compute", ...), or "?" when out of range. Static string. */
const char *timer_name(int phase);
/* Collective over comm: prints (rank 0, through vl_log) one table line per phase that
 * was used, with min/max/avg over the ranks, the ranks of min/max and max/min. */
void timer_report(MPI_Comm comm);
/* Collective over comm: gathers the same table plus the wall time and call counts, and
 * rank 0 writes it to DIR/timers.txt (written under a temporary name, then renamed;
 * DIR is created when missing). The table is also printed, unless timer_report has
 * printed it already and no phase has been timed since. `command` names the command
 * in the file's header. Format (whitespace-separated columns, '#' comment lines):
 *   # valley timers: command=train ranks=2 wall_s=12.3 valley=0.1 git=abc
 *   # phase calls min_s min_rank max_s max_rank avg_s max/min avg%wall
 *   compute 1200 10.10 1 10.52 0 10.31 1.04 83.6    (max/min is '-' when min is ~0)
 *   ...
 *   wall 1 12.30 1 12.33 0 12.31 1.00 100.0
 * Returns VL_OK, or VL_EIO (on rank 0 only: a local failure) when the file cannot be
 * written. */
int timer_write(MPI_Comm comm, const char *dir, const char *command);
#endif
