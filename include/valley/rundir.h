/* rundir.h — a command's run directory (its --out): the lock that keeps two jobs out of
 * one directory, and the record of what ran there.
 *
 * DIR/valley.lock   exists while a command runs in DIR: world rank 0 holds an fcntl write
 *                   lock on it (released by the kernel when the process dies, also on a
 *                   kill -9; on NFS through the lock manager) and writes its owner into it:
 *                   command, host, pid, Slurm job, start time. A second command finds the
 *                   lock held and stops with exit 2 naming the owner; a lock file whose lock
 *                   nobody holds is the trace of a job that died, and is taken over with a
 *                   message; the *.tmp.PID files such a job left mid-write are removed then
 *                   (never a final-named file, never in a subdirectory another live command
 *                   holds). A lock held on DIR's parent, grandparent... (a `valley run`
 *                   writing its stages into subdirectories) counts too.
 * DIR/valley-run.txt what ran in DIR: the command, its input files, its identity (the deck
 *                   keys that change its results, deck_identity), state (running, finished,
 *                   stopped by a signal, failed), times, ranks, host, version. A command
 *                   whose command, inputs or identity differ from a finished, stopped or
 *                   killed run recorded there is refused (exit 2, the differences named)
 *                   unless it resumes that run (train.resume) or run.overwrite = true; a
 *                   failed run may be replaced. The same command again (a surface sweep
 *                   completing its grid, a pipeline reusing its finished stages, a resume)
 *                   goes on. A command that fails before writing any file leaves the
 *                   directory as it found it (no record, or the previous one).
 *
 * Where fcntl locks are not available (some parallel file systems mounted without lock
 * support), the owner written in the file decides: a live pid on this host, or any owner
 * on another host, holds it (the message says to remove the file if that job is gone).
 */
#ifndef VALLEY_RUNDIR_H
#define VALLEY_RUNDIR_H
#include "valley/comm.h"
#include "valley/deck.h"

#define RUNDIR_LOCK "valley.lock"
#define RUNDIR_RECORD "valley-run.txt"

typedef struct {
    int fd;             /* the lock file's descriptor on world rank 0 (-1: none held) */
    char dir[4096];
    char started[32];   /* ISO time the command started (rank 0) */
    char *record;       /* the record's text up to its state line (rank 0, owned) */
    char *identity;     /* its identity part (rank 0, owned) */
    char *previous;     /* the record found there, restored when this command fails before
                           writing anything (rank 0, owned) */
    long long t0;       /* start time (s since the epoch) */
    int created;        /* rank 0 made the directory (removed again when left empty) */
} vl_rundir_t;

/* Takes DIR for `valley <deck_command(d)>` with the given input files: creates DIR, takes
 * its lock, checks the recorded run and writes the new record (state running). Collective
 * over c->world; on failure (VL_EINPUT: in use or holding another run; VL_EIO: DIR cannot
 * be created or written) every rank returns the same collective failure and nothing in
 * DIR was changed. r must be released with rundir_close whatever the outcome. */
int rundir_open(vl_comm_t *c, vl_rundir_t *r, const char *dir, const vl_deck_t *d, int ninputs,
                char **inputs);

/* Records how the command ended (status 0 finished, 143 stopped by a signal, else failed)
 * and releases the lock. Rank 0 only does anything; not collective. A record that cannot
 * be updated is a warning on stderr. */
void rundir_close(vl_rundir_t *r, int status);

#endif
