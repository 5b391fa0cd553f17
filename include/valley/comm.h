/* comm.h — the communicators of a valley job (the only module that creates them).
 *
 * world:   a duplicate of MPI_COMM_WORLD.
 * group:   parallel.group_size consecutive ranks doing data-parallel work together
 *          (all ranks when group_size is 0).
 * leaders: rank 0 of every group (MPI_COMM_NULL on the other ranks); groups share
 *          independent tasks (chains, grid points) through it.
 * cross:   the ranks with the same rank inside their group, one per group, ordered
 *          by group: combines per-group results that are sharded alike (an ensemble's
 *          test probabilities) without going through one rank.
 */
#ifndef VALLEY_COMM_H
#define VALLEY_COMM_H
#include <mpi.h>

typedef struct {
    MPI_Comm world;
    int rank, size;
    MPI_Comm group;
    int grank, gsize, group_id, ngroups;
    MPI_Comm leaders;
    MPI_Comm cross;
} vl_comm_t;

/* MPI_Init and world duplicate; groups = whole world until comm_split. */
int comm_init(int *argc, char ***argv, vl_comm_t *c);
/* Splits the world into groups of group_size ranks (0 = one group). Collective over
 * world. group_size must divide the number of ranks: VL_EINPUT (collective) otherwise. */
int comm_split(vl_comm_t *c, int group_size);
void comm_finalize(vl_comm_t *c);
/* Sum-allreduce of n doubles over *(MPI_Comm *)ctx in place: the model's BN reduction. */
void comm_reduce_sum(double *buf, int n, void *ctx);
/* Largest status over comm: lets every rank agree that someone failed. Collective. */
int comm_agree(MPI_Comm comm, int status);
/* After a step that every rank did on its own (reading its shard, a header every rank
 * reads): if all ranks failed, the failure becomes collective (rank 0 prints its
 * message, all exit with the status, no abort); if only some failed, they keep
 * their local failure (main aborts the job) and the others return a collective
 * failure. Returns the status to propagate. Collective over comm. */
int comm_agree_failure(MPI_Comm comm, int status);
/* A step some ranks did alone (rank 0 writing a file, taking a lock): every rank learns the
 * outcome of the lowest failing rank (its status and message). collective = 1 makes the
 * failure collective (rank 0 prints it once, all exit with the status); 0 keeps it local
 * to the failing ranks and the others' copy. Returns the status. Collective over comm. */
int comm_agree_first(MPI_Comm comm, int st, int collective);
/* Ends the whole job now with `status` after printing this rank's error record. */
void comm_abort(const vl_comm_t *c, int status);

/* Memory a rank is about to use against what its node offers: MemAvailable of /proc/meminfo
 * (or VALLEY_MEM_AVAILABLE, bytes with an optional K/M/G suffix, to state a node's memory
 * explicitly), shared by the ranks on the node (OMPI_COMM_WORLD_LOCAL_SIZE, else
 * SLURM_NTASKS_PER_NODE, else 1). When bytes_per_rank times that count exceeds it, fails with
 * VL_EIO (exit 4) before anything is allocated, naming `what`, the figures and `advice`.
 * Collective over comm (every rank agrees); *avail_per_rank (may be NULL) receives the bytes
 * a rank may use. */
int comm_check_memory(MPI_Comm comm, double bytes_per_rank, const char *what, const char *advice,
                      double *avail_per_rank);
/* The bytes a rank may use (see comm_check_memory); 0 when unknown. Not collective. */
double comm_mem_per_rank(void);

#endif
