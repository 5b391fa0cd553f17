/* comm.c — communicators, agreement and the job-wide abort. */
#include "valley/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"

int comm_init(int *argc, char ***argv, vl_comm_t *c)
{
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->size);
    MPI_Comm_dup(c->world, &c->group);
    c->grank = c->rank;
    c->gsize = c->size;
    c->group_id = 0;
    c->ngroups = 1;
    MPI_Comm_split(c->world, c->rank == 0 ? 0 : MPI_UNDEFINED, 0, &c->leaders);
    MPI_Comm_split(c->world, c->rank, 0, &c->cross);
    return VL_OK;
}

int comm_split(vl_comm_t *c, int group_size)
{
    if (group_size == 0) group_size = c->size;
    if (group_size < 0 || c->size % group_size != 0)
        return VL_FAIL_ALL(VL_EINPUT, "parallel.group_size: %d does not divide the %d ranks of the job", group_size,
                           c->size);
    MPI_Comm_free(&c->group);
    if (c->leaders != MPI_COMM_NULL) MPI_Comm_free(&c->leaders);
    MPI_Comm_free(&c->cross);
    c->group_id = c->rank / group_size;
    c->ngroups = c->size / group_size;
    MPI_Comm_split(c->world, c->group_id, c->rank, &c->group);
    MPI_Comm_rank(c->group, &c->grank);
    MPI_Comm_size(c->group, &c->gsize);
    MPI_Comm_split(c->world, c->grank == 0 ? 0 : MPI_UNDEFINED, c->rank, &c->leaders);
    MPI_Comm_split(c->world, c->grank, c->group_id, &c->cross);
    return VL_OK;
}

void comm_finalize(vl_comm_t *c)
{
    if (c->leaders != MPI_COMM_NULL) MPI_Comm_free(&c->leaders);
    MPI_Comm_free(&c->cross);
    MPI_Comm_free(&c->group);
    MPI_Comm_free(&c->world);
    MPI_Finalize();
}

void comm_reduce_sum(double *buf, int n, void *ctx)
{
    MPI_Comm comm = *(MPI_Comm *)ctx;
    MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, comm);
}

int comm_agree(MPI_Comm comm, int status)
{
    int all = status;
    MPI_Allreduce(&status, &all, 1, MPI_INT, MPI_MAX, comm);
    return all;
}

int comm_agree_failure(MPI_Comm comm, int status)
{
    int mm[2] = {-status, status};
    MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_INT, MPI_MAX, comm);
    const int lo = -mm[0], hi = mm[1];
    if (hi == 0) return VL_OK;
    if (lo == hi) { vl_error_set_collective(); return status; }
    if (status) return status; /* this rank failed alone: main aborts the job */
    return VL_FAIL_ALL(hi, "another rank failed (see its message)");
}

int comm_agree_first(MPI_Comm comm, int st, int collective)
{
    int rank, size, first;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int who = st ? rank : size;
    MPI_Allreduce(&who, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return VL_OK;
    struct { int st; char msg[1024]; } m;
    memset(&m, 0, sizeof m);
    if (rank == first) {
        m.st = st;
        snprintf(m.msg, sizeof m.msg, "%s", vl_error_message());
    }
    MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, comm);
    if (rank != first) VL_FAIL(m.st, "%s", m.msg); /* kept only if this rank has no failure of its own */
    if (collective) vl_error_set_collective();
    return m.st;
}

void comm_abort(const vl_comm_t *c, int status)
{
    fprintf(stderr, "valley: error on rank %d: %s\n  at %s\n", c->rank, vl_error_message(), vl_error_where());
    fflush(stderr);
    MPI_Abort(c->world, status);
}

static double env_bytes(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    double x = strtod(v, &end);
    if (end == v || !(x > 0)) return 0;
    if (*end == 'K' || *end == 'k') x *= 1024.0;
    if (*end == 'M' || *end == 'm') x *= 1024.0 * 1024.0;
    if (*end == 'G' || *end == 'g') x *= 1024.0 * 1024.0 * 1024.0;
    return x;
}

double comm_mem_per_rank(void)
{
    double avail = env_bytes("VALLEY_MEM_AVAILABLE");
    if (avail <= 0) {
        FILE *f = fopen("/proc/meminfo", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { avail = (double)kb * 1024.0; break; }
        }
        if (f) fclose(f);
    }
    if (avail <= 0) return 0;
    int local = 1;
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!ls || !*ls) ls = getenv("SLURM_NTASKS_PER_NODE");
    if (ls && atoi(ls) > 0) local = atoi(ls);
    return avail / local;
}

int comm_check_memory(MPI_Comm comm, double bytes_per_rank, const char *what, const char *advice,
                      double *avail_per_rank)
{
    const double per = comm_mem_per_rank();
    if (avail_per_rank) *avail_per_rank = per;
    int st = VL_OK;
    if (per > 0 && bytes_per_rank > per) {
        const double G = 1024.0 * 1024.0 * 1024.0;
        st = VL_FAIL(VL_EIO, "%s needs about %.2f GiB per rank, and %.2f GiB are available per rank on this node "
                             "(%s): %s", what, bytes_per_rank / G, per / G,
                     getenv("VALLEY_MEM_AVAILABLE") && *getenv("VALLEY_MEM_AVAILABLE") ? "VALLEY_MEM_AVAILABLE"
                                                                                      : "MemAvailable / ranks on the node",
                     advice);
    }
    return comm_agree_failure(comm, st);
}
