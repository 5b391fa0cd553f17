/* signals.h — stop requests: SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (Slurm's pre-emption).
 *
 * While a command is in a phase that can stop cleanly (signals_graceful(1): the SGD loops
 * of train, fge and curve, simplex training, a surface sweep), the first SIGINT, SIGTERM
 * or SIGUSR1 only sets vl_stop_signal; the phase notices it at its next synchronisation
 * point (an SGD step's allreduce, a grid point), writes its checkpoint or its results so
 * far, and the command exits 143. A second SIGINT or SIGTERM ends the process at once.
 * Outside such phases (evaluation, BN refreshes, bma, pca...) SIGINT and SIGTERM end the
 * process at once, as they would any program: there is nothing to save; SIGUSR1 is
 * noted and ignored (jobs/ requeue such commands themselves).
 *
 * Under Open MPI's mpirun, Ctrl-C reaches mpirun only; it sends SIGTERM to the ranks and
 * SIGKILL odls_base_sigkill_timeout seconds later (1 s by default): a checkpoint that
 * takes longer needs OMPI_MCA_odls_base_sigkill_timeout raised (rank 0 says so when it
 * meets the default). Under srun, Slurm forwards the signals to every task.
 */
#ifndef VALLEY_SIGNALS_H
#define VALLEY_SIGNALS_H
#include <signal.h>

/* The first stop signal received in a graceful phase (0: none). */
extern volatile sig_atomic_t vl_stop_signal;

/* Installs the handlers; world_rank decides who prints the one-line notice. */
void signals_install(int world_rank);
/* Enters (on = 1) or leaves (0) a phase that stops cleanly on a signal; returns the
 * previous setting, so phases nest (the pipeline's stages). */
int signals_graceful(int on);

#endif
