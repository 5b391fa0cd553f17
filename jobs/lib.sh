# jobs/lib.sh — shared by valley's sbatch scripts (sourced, not run).
#
# An sbatch script is copied into Slurm's spool directory before it runs, so it
# cannot find this file next to itself: the scripts cd to $SLURM_SUBMIT_DIR (submit
# from the repository root, or set VALLEY_ROOT) and source $VALLEY_ROOT/jobs/lib.sh.
#
# Environment (all optional):
#   VALLEY            the program (default: $VALLEY_ROOT/bin/valley)
#   VALLEY_LAUNCHER   srun (default: srun --mpi=pmix) or mpirun (Open MPI's mpirun reads
#                     the Slurm allocation; use it when Slurm was built without PMIx)
#   VALLEY_SRUN_MPI   the srun --mpi plugin (default pmix; Debian's Open MPI 4.1 does not
#                     work with pmi2)
#   VALLEY_MAX_REQUEUE  give up requeueing after this many restarts (default 20)
#
# Pre-emption protocol (every script): #SBATCH --signal=B:USR1@T makes Slurm send
# SIGUSR1 to the batch shell T seconds before the time limit (or do it by hand:
# scancel --signal=USR1 --batch JOBID). valley_run's trap forwards it to srun, which
# forwards it to every task; valley's training loops (train, fge, curve) write
# RUN/checkpoints/preempt.nc and exit 143; valley_finish then requeues the job
# (scontrol requeue) and the next start resumes. Commands that do not checkpoint on a
# signal (surface, pca, bma, evaluate, infer, simplex, run) are requeued at once when
# the signal arrives (valley_run VALLEY_ON_USR1=requeue): a surface sweep keeps the
# points already flushed to surface.nc (surface.flush_seconds) and computes only the
# rest; the pipeline reuses every finished stage.

VALLEY_ROOT=${VALLEY_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
VALLEY=${VALLEY:-$VALLEY_ROOT/bin/valley}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [[ $(id -u) = 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

vl_say() { echo "[$(date +%H:%M:%S) job ${SLURM_JOB_ID:-none}${SLURM_ARRAY_TASK_ID:+ task $SLURM_ARRAY_TASK_ID}] $*"; }

# valley_deck_args DECK: prints the deck argument ("-" or "none" = no deck).
valley_deck_args() { [[ $1 == - || $1 == none ]] || printf '%s\n' "$1"; }

_vl_pid=""
_vl_trapped=0
_vl_on_usr1=forward

_vl_requeue_now() {
    vl_say "time limit near: requeueing now (this command keeps no state in memory worth a checkpoint)"
    scontrol requeue "$SLURM_JOB_ID"
    sleep 60 # Slurm ends this shell as part of the requeue
}

_vl_trap() { # SIGNAL
    _vl_trapped=1
    if [[ $1 == USR1 && $_vl_on_usr1 == requeue && -n ${SLURM_JOB_ID:-} ]]; then _vl_requeue_now; return; fi
    vl_say "forwarding SIG$1 to valley (pid $_vl_pid)"
    [[ -n $_vl_pid ]] && kill "-$1" "$_vl_pid" 2>/dev/null
}

# valley_run COMMAND ARGS...: runs valley under srun/mpirun in the background, forwards
# SIGUSR1/SIGTERM to it (or requeues at once on SIGUSR1 when VALLEY_ON_USR1=requeue),
# and returns valley's exit status.
valley_run() {
    local launcher
    case ${VALLEY_LAUNCHER:-srun} in
    srun) launcher=(srun "--mpi=${VALLEY_SRUN_MPI:-pmix}" --kill-on-bad-exit=1) ;;
    mpirun) # mpirun sends SIGTERM then SIGKILL this many seconds later: time for a checkpoint
        export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-60}
        launcher=(mpirun) ;;
    *) vl_say "VALLEY_LAUNCHER must be srun or mpirun"; return 2 ;;
    esac
    _vl_on_usr1=${VALLEY_ON_USR1:-forward}
    vl_say "${launcher[*]} $VALLEY $*"
    trap '_vl_trap USR1' USR1
    trap '_vl_trap TERM' TERM
    "${launcher[@]}" "$VALLEY" "$@" &
    _vl_pid=$!
    local st
    _vl_trapped=0
    wait "$_vl_pid"; st=$?
    # A trapped signal makes `wait` return early (status > 128): wait for the real end.
    while [[ $_vl_trapped == 1 ]]; do
        _vl_trapped=0
        wait "$_vl_pid"; st=$?
    done
    trap - USR1 TERM
    _vl_pid=""
    return $st
}

# valley_finish STATUS: exit 143 (valley checkpointed on a signal) requeues the job;
# any other status ends the job with it.
valley_finish() {
    local st=$1
    if [[ $st == 143 && -n ${SLURM_JOB_ID:-} ]]; then
        local n=${SLURM_RESTART_COUNT:-0}
        if ((n >= ${VALLEY_MAX_REQUEUE:-20})); then
            vl_say "valley stopped on a signal, but the job was already restarted $n times: giving up"
            exit 143
        fi
        vl_say "valley checkpointed on a signal: requeueing job $SLURM_JOB_ID (restart $((n + 1)))"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    vl_say "valley exited with status $st"
    exit "$st"
}

# valley_resume_args RUN_DIR: "--set train.resume=RUN_DIR/checkpoints/preempt.nc" when
# a pre-emption checkpoint is there (printed one word a line, for mapfile).
valley_resume_args() {
    if [[ -f $1/checkpoints/preempt.nc ]]; then
        vl_say "resuming from $1/checkpoints/preempt.nc (restart ${SLURM_RESTART_COUNT:-0})" >&2
        printf '%s\n' --set "train.resume=$1/checkpoints/preempt.nc"
    fi
}
