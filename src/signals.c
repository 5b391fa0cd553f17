/* signals.c — SIGINT / SIGTERM / SIGUSR1 handling (see signals.h). */
#include "valley/signals.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t vl_stop_signal = 0;
static volatile sig_atomic_t graceful = 0;
static int notice_rank = 0;  /* world rank: rank 0 prints the notice */
static int mpirun_short = 0; /* under mpirun with its default 1 s between SIGTERM and SIGKILL */

static void say(const char *s) { ssize_t r = write(2, s, strlen(s)); (void)r; }

static void die_now(int sig)
{
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_signal(int sig)
{
    if (!graceful || (vl_stop_signal && sig != SIGUSR1)) {
        if (sig == SIGUSR1) return; /* noted by the job script, not by this phase */
        if (notice_rank == 0 && vl_stop_signal) say("valley: second interrupt: stopping now, without a checkpoint\n");
        die_now(sig);
        return;
    }
    if (vl_stop_signal) return;
    vl_stop_signal = sig;
    if (notice_rank != 0) return;
    say(sig == SIGINT ? "valley: interrupt (SIGINT): stopping after this step with a checkpoint; "
                        "press Ctrl-C again to stop at once without one\n"
        : sig == SIGTERM ? "valley: SIGTERM: stopping after this step with a checkpoint\n"
                         : "valley: SIGUSR1: stopping after this step with a checkpoint\n");
    if (mpirun_short && sig == SIGTERM)
        say("valley: note: mpirun kills the ranks 1 s after its SIGTERM (Ctrl-C at mpirun sends one); export "
            "OMPI_MCA_odls_base_sigkill_timeout=60 before mpirun to give the checkpoint time\n");
}

void signals_install(int world_rank)
{
    notice_rank = world_rank;
    const char *t = getenv("OMPI_MCA_odls_base_sigkill_timeout");
    mpirun_short = getenv("OMPI_MCA_orte_hnp_uri") && (!t || atoi(t) < 10);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    /* a SIGINT ignored on entry stays ignored (nohup, a background job of a script) */
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int signals_graceful(int on)
{
    const int was = graceful;
    graceful = on != 0;
    return was;
}
