/* signals: stop on request. SIGTERM, SIGUSR1, SIGINT, SIGHUP and SIGPIPE only set a flag that the training
 * loop reads at its next update boundary (signals.h, docs/FAILURES.md). */
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/train.h"

/* The handler only records the signal; the loop reads the flag at the next step boundary, where every rank
 * agrees on it through the step's loss reduction (docs/FAILURES.md). */
static volatile sig_atomic_t g_stop_signal = 0;  /* the first stop signal received; 0 = none */
static volatile sig_atomic_t g_stop_count = 0;   /* stop signals received (capped) */
static int g_announce = 0;                        /* this rank prints the handler's notes (rank 0) */
static volatile sig_atomic_t g_stderr_broken = 0; /* SIGPIPE seen: stderr's reader is gone, say nothing more */

static void say(const char *msg, size_t len) {
    ssize_t r = write(STDERR_FILENO, msg, len); /* async-signal-safe, unlike stdio */
    (void)r;
}
#define SAY(lit) say(lit, sizeof lit - 1)

static void on_stop_signal(int sig) {
    int saved_errno = errno;
    /* A closed stderr pipe (the terminal or `| head` went away): writing a note would raise SIGPIPE again. */
    if (sig == SIGPIPE) g_stderr_broken = 1;
    if (g_stderr_broken) {
        if (g_stop_count < 1000) g_stop_count++;
        if (g_stop_signal == 0) g_stop_signal = sig;
        errno = saved_errno;
        return;
    }
    if (g_stop_count < 1000) g_stop_count++;
    if (g_stop_signal == 0) {
        g_stop_signal = sig;
        if (g_announce)
            SAY("budgetformer: stop requested by a signal: finishing the current update, then a checkpoint and "
                "exit status 75\n");
    } else if (g_announce) {
        SAY("budgetformer: another stop signal: already stopping; it is ignored and the checkpoint being written "
            "is completed (SIGKILL ends at once; the previous checkpoint stays valid)\n");
    }
    errno = saved_errno;
}

int bf_train_install_signal_handlers(int announce) {
    g_announce = announce;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* file writes and MPI's polling carry on; the save is never cut short */
    /* SIGHUP (the terminal or ssh session went away) and SIGPIPE (stderr's reader went away) used to end the
     * run without a checkpoint: they are stop requests like the others. */
    const int sigs[] = {SIGTERM, SIGUSR1, SIGINT, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) return -1;
    return 0;
}

int bf_train_stop_signal(void) { return (int)g_stop_signal; }

const char *bf_train_signal_name(int sig) {
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE (stderr closed)";
    default: return "a signal";
    }
}
