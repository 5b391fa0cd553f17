/* log.c — rank-0 progress lines, phase timers and the MPI profiling wrappers that
 * measure the `mpi` phase (see log.h). */
#include "valley/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gitversion.h"
#include "valley/cpu.h"
#include "valley/error.h"
#include "valley/ncio.h"

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

/* ---- phase timers ---- */

static double t_acc[TIMER_COUNT], t_begin[TIMER_COUNT];
static long t_calls[TIMER_COUNT];
static int t_dirty = 1; /* a phase was timed since the last printed table */
static const char *t_names[TIMER_COUNT] = {"compute", "allreduce", "io", "evaluate", "bn_update", "mpi"};

void timer_start(int p)
{
    if (p >= 0 && p < TIMER_COUNT) t_begin[p] = vl_now();
}

void timer_stop(int p)
{
    if (p < 0 || p >= TIMER_COUNT) return;
    t_acc[p] += vl_now() - t_begin[p];
    t_calls[p]++;
    t_dirty = 1;
}

double timer_total(int p) { return p >= 0 && p < TIMER_COUNT ? t_acc[p] : 0.0; }

const char *timer_name(int p) { return p >= 0 && p < TIMER_COUNT ? t_names[p] : "?"; }

/* One row of the table: statistics over the ranks of comm (valid on every rank). */
typedef struct {
    double min, max, sum;
    int rmin, rmax;
    long calls;
} row_t;

#define NROWS (TIMER_COUNT + 1) /* the phases, then the wall time */

static void gather_rows(MPI_Comm comm, row_t *rows)
{
    int rank;
    PMPI_Comm_rank(comm, &rank);
    struct { double v; int r; } in[NROWS], mn[NROWS], mx[NROWS];
    double v[NROWS], sum[NROWS];
    long calls[NROWS], cmax[NROWS];
    for (int p = 0; p < NROWS; p++) {
        v[p] = p < TIMER_COUNT ? t_acc[p] : vl_now();
        calls[p] = p < TIMER_COUNT ? t_calls[p] : 1;
        in[p].v = v[p];
        in[p].r = rank;
    }
    /* PMPI_ directly: the report itself is not part of any phase. */
    PMPI_Allreduce(in, mn, NROWS, MPI_DOUBLE_INT, MPI_MINLOC, comm);
    PMPI_Allreduce(in, mx, NROWS, MPI_DOUBLE_INT, MPI_MAXLOC, comm);
    PMPI_Allreduce(v, sum, NROWS, MPI_DOUBLE, MPI_SUM, comm);
    PMPI_Allreduce(calls, cmax, NROWS, MPI_LONG, MPI_MAX, comm);
    for (int p = 0; p < NROWS; p++)
        rows[p] = (row_t){mn[p].v, mx[p].v, sum[p], mn[p].r, mx[p].r, cmax[p]};
}

static const char *row_name(int p) { return p < TIMER_COUNT ? t_names[p] : "wall"; }

static void print_rows(MPI_Comm comm, const row_t *rows, int size)
{
    vl_log(comm, "phase          min (rank)      max (rank)      avg   max/min  %%wall");
    const double wall = rows[TIMER_COUNT].sum / size;
    for (int p = 0; p < NROWS; p++) {
        const row_t *r = &rows[p];
        if (r->max <= 0) continue;
        char ratio[32] = "-"; /* undefined when some rank spent (almost) no time */
        if (r->min > 1e-3) snprintf(ratio, sizeof ratio, "%.2f", r->max / r->min);
        vl_log(comm, "%-10s %9.2fs (%3d) %9.2fs (%3d) %8.2fs %6s %6.1f", row_name(p), r->min, r->rmin, r->max, r->rmax,
               r->sum / size, ratio, wall > 0 ? 100.0 * r->sum / size / wall : 0.0);
    }
}

void timer_report(MPI_Comm comm)
{
    int size;
    PMPI_Comm_size(comm, &size);
    row_t rows[NROWS];
    gather_rows(comm, rows);
    print_rows(comm, rows, size);
    t_dirty = 0;
}

int timer_write(MPI_Comm comm, const char *dir, const char *command)
{
    int rank, size;
    PMPI_Comm_rank(comm, &rank);
    PMPI_Comm_size(comm, &size);
    row_t rows[NROWS];
    gather_rows(comm, rows);
    if (t_dirty) print_rows(comm, rows, size);
    t_dirty = 0;
    if (rank != 0) return VL_OK;
    CHECK(ncio_mkdirs(dir));
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/timers.txt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return VL_FAIL(VL_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    const double wall = rows[TIMER_COUNT].sum / size;
    fprintf(f, "# valley timers: command=%s ranks=%d wall_s=%.6f valley=%s git=%s kernels=%s\n", command, size, wall,
            VALLEY_VERSION, VALLEY_GIT_COMMIT, vl_isa_name(vl_isa()));
    fprintf(f, "# seconds per rank over the %d rank(s); phases may nest (mpi includes every MPI call)\n", size);
    fprintf(f, "# %-9s %8s %12s %8s %12s %8s %12s %8s %8s\n", "phase", "calls", "min_s", "min_rank", "max_s", "max_rank",
            "avg_s", "max/min", "avg%wall");
    for (int p = 0; p < NROWS; p++) {
        const row_t *r = &rows[p];
        char ratio[32] = "-"; /* undefined when some rank spent (almost) no time */
        if (r->min > 1e-6) snprintf(ratio, sizeof ratio, "%.3f", r->max / r->min);
        fprintf(f, "%-11s %8ld %12.6f %8d %12.6f %8d %12.6f %8s %8.2f\n", row_name(p), r->calls, r->min, r->rmin, r->max,
                r->rmax, r->sum / size, ratio, wall > 0 ? 100.0 * r->sum / size / wall : 0.0);
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return VL_FAIL(VL_EIO, "%s: cannot write: %s", path, strerror(errno));
    }
    return VL_OK;
}

/* ---- MPI profiling interface: the `mpi` phase ----
 * Each wrapper times the call into t_acc[TIMER_MPI] and forwards to PMPI_. A
 * program that links libvalley.a gets these definitions instead of libmpi's; shared
 * libraries (ScaLAPACK/BLACS, HDF5) resolve their MPI_ calls to them too. */

#define WRAP(call)                                                                  \
    do {                                                                            \
        double t0_ = vl_now();                                                      \
        int rc_ = (call);                                                           \
        t_acc[TIMER_MPI] += vl_now() - t0_;                                         \
        t_calls[TIMER_MPI]++;                                                       \
        return rc_;                                                                 \
    } while (0)

int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    WRAP(PMPI_Allreduce(s, r, n, t, op, c));
}
int MPI_Reduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c)
{
    WRAP(PMPI_Reduce(s, r, n, t, op, root, c));
}
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c) { WRAP(PMPI_Bcast(b, n, t, root, c)); }
int MPI_Barrier(MPI_Comm c) { WRAP(PMPI_Barrier(c)); }
int MPI_Allgather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, MPI_Comm c)
{
    WRAP(PMPI_Allgather(s, sn, st, r, rn, rt, c));
}
int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int rn[], const int displs[], MPI_Datatype rt,
                   MPI_Comm c)
{
    WRAP(PMPI_Allgatherv(s, sn, st, r, rn, displs, rt, c));
}
int MPI_Gather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, int root, MPI_Comm c)
{
    WRAP(PMPI_Gather(s, sn, st, r, rn, rt, root, c));
}
int MPI_Gatherv(const void *s, int sn, MPI_Datatype st, void *r, const int rn[], const int displs[], MPI_Datatype rt,
                int root, MPI_Comm c)
{
    WRAP(PMPI_Gatherv(s, sn, st, r, rn, displs, rt, root, c));
}
int MPI_Scatterv(const void *s, const int sn[], const int displs[], MPI_Datatype st, void *r, int rn, MPI_Datatype rt,
                 int root, MPI_Comm c)
{
    WRAP(PMPI_Scatterv(s, sn, displs, st, r, rn, rt, root, c));
}
int MPI_Send(const void *b, int n, MPI_Datatype t, int dest, int tag, MPI_Comm c) { WRAP(PMPI_Send(b, n, t, dest, tag, c)); }
int MPI_Recv(void *b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Status *s)
{
    WRAP(PMPI_Recv(b, n, t, src, tag, c, s));
}
int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype st, int dest, int stag, void *rb, int rn, MPI_Datatype rt, int src,
                 int rtag, MPI_Comm c, MPI_Status *s)
{
    WRAP(PMPI_Sendrecv(sb, sn, st, dest, stag, rb, rn, rt, src, rtag, c, s));
}
int MPI_Wait(MPI_Request *q, MPI_Status *s) { WRAP(PMPI_Wait(q, s)); }
int MPI_Waitall(int n, MPI_Request q[], MPI_Status s[]) { WRAP(PMPI_Waitall(n, q, s)); }
int MPI_Fetch_and_op(const void *o, void *r, MPI_Datatype t, int target, MPI_Aint disp, MPI_Op op, MPI_Win w)
{
    WRAP(PMPI_Fetch_and_op(o, r, t, target, disp, op, w));
}
int MPI_Put(const void *o, int on, MPI_Datatype ot, int target, MPI_Aint disp, int tn, MPI_Datatype tt, MPI_Win w)
{
    WRAP(PMPI_Put(o, on, ot, target, disp, tn, tt, w));
}
int MPI_Get(void *o, int on, MPI_Datatype ot, int target, MPI_Aint disp, int tn, MPI_Datatype tt, MPI_Win w)
{
    WRAP(PMPI_Get(o, on, ot, target, disp, tn, tt, w));
}
int MPI_Win_lock(int type, int target, int assert_, MPI_Win w) { WRAP(PMPI_Win_lock(type, target, assert_, w)); }
int MPI_Win_unlock(int target, MPI_Win w) { WRAP(PMPI_Win_unlock(target, w)); }
int MPI_Win_fence(int assert_, MPI_Win w) { WRAP(PMPI_Win_fence(assert_, w)); }
int MPI_Win_flush(int target, MPI_Win w) { WRAP(PMPI_Win_flush(target, w)); }
