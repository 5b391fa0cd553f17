/* signals.c — SIGINT / SIGTERM / SIGUSR1 handling (see signals.h). */
#include "valley/signals.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t vl_stop_signal = 0;
static volatile sig_atomic_t graceful = 0;
static volatile sig_atomic_t tstp_stopped = 0; /* stopped by a (forwarded) SIGTSTP, not yet continued */
static int notice_rank = 0;                     /* world rank: rank 0 prints the notices */
static int under_mpirun = 0;

static void say(const char *s)
{
    if (notice_rank == 0) {
        ssize_t r = write(2, s, strlen(s));
        (void)r;
    }
}

static void die_now(int sig)
{
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_tstp(int sig)
{
    (void)sig;
    tstp_stopped = 1; /* Ctrl-Z (mpirun forwards it): stop as usual; the SIGCONT that follows is a resume */
    signal(SIGTSTP, SIG_DFL);
    raise(SIGTSTP);
    signal(SIGTSTP, on_tstp);
    tstp_stopped = 0;
}

static void on_signal(int sig)
{
    if (sig == SIGCONT) {
        /* Open MPI's mpirun ends a job (Ctrl-C or SIGTERM at mpirun) with SIGCONT, then SIGTERM
         * odls_base_sigkill_timeout seconds later and SIGKILL as long again: a SIGCONT that
         * resumes nothing is the first word of that, and the best time to start stopping. */
        if (tstp_stopped || !graceful || vl_stop_signal) return;
        vl_stop_signal = SIGTERM;
        say("valley: mpirun is ending the job (Ctrl-C?): stopping after this step with a checkpoint; mpirun kills "
            "the ranks 2 x odls_base_sigkill_timeout seconds after (2 s by default: export "
            "OMPI_MCA_odls_base_sigkill_timeout=30 to give a long step or checkpoint time)\n");
        return;
    }
    if (!graceful) {
        if (sig == SIGUSR1) return; /* noted by the job script, not by this phase */
        die_now(sig);
        return;
    }
    if (vl_stop_signal) { /* already stopping: a second Ctrl-C means now; anything else, wait */
        if (sig == SIGINT) {
            say("valley: second interrupt: stopping now, without a checkpoint\n");
            die_now(sig);
        }
        return;
    }
    vl_stop_signal = sig;
    say(sig == SIGINT ? "valley: interrupt (SIGINT): stopping after this step with a checkpoint; "
                        "press Ctrl-C again to stop at once without one\n"
        : sig == SIGTERM ? "valley: SIGTERM: stopping after this step with a checkpoint\n"
                         : "valley: SIGUSR1: stopping after this step with a checkpoint\n");
}

void signals_install(int world_rank)
{
    notice_rank = world_rank;
    under_mpirun = getenv("OMPI_MCA_orte_hnp_uri") != NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    /* a SIGINT ignored on entry stays ignored (nohup, a background job of a script) */
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    if (under_mpirun) {
        sigaction(SIGCONT, &sa, NULL);
        struct sigaction st = sa;
        st.sa_handler = on_tstp;
        sigaction(SIGTSTP, &st, NULL);
    }
}

int signals_graceful(int on)
{
    const int was = graceful;
    graceful = on != 0;
    return was;
}
