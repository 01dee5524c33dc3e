/* train: the training loop. Wires data order, model, optimiser, exploration schedule, log and checkpoints.
 * Written for data parallelism: each step takes the rank's part of the global batch, splits it into
 * micro-batches with gradient accumulation, and scales the loss by the global batch size, so the gradient is
 * the same for any split. */
#ifndef BUDGETFORMER_TRAIN_H
#define BUDGETFORMER_TRAIN_H

#include "budgetformer/config.h"
#include "budgetformer/dist.h"
#include "budgetformer/util.h"

/* How a run starts (docs/CHECKPOINTS.md). */
typedef struct {
    /* NULL: a new run (refused when run.dir already holds one); "auto": continue from the newest valid
     * checkpoint in run.dir/checkpoints, or start fresh when there is none; otherwise a checkpoint file. */
    const char *resume;
} bf_train_options;

/* Exit status of `budgetformer train` after a stop on request: a checkpoint of the last update is written;
 * the same command with --resume auto continues (EX_TEMPFAIL: "preempted, requeue me"). docs/FAILURES.md. */
#define BF_EXIT_PREEMPTED 75

/* Runs a whole training as configured, as one rank of `dist` (world size 1 without MPI). Returns 0 when done,
 * BF_EXIT_PREEMPTED when stopped on request with the checkpoint written, or -1 with err set; every rank
 * returns the same status. opts may be NULL (a new run).
 * Test hooks read once at the start (docs/FAILURES.md): BF_FAULT (fault injection), BF_CHECK_ALLOC=1 (the
 * run fails if an update after the first allocates through bf_xmalloc & co.), BF_TRACE (per-rank trace). */
int bf_train_run_opts(const bf_config *cfg, bf_dist *dist, const bf_train_options *opts, bf_err *err);

/* Installs handlers (sigaction) of SIGTERM, SIGUSR1, SIGINT, SIGHUP and SIGPIPE (a closed stderr pipe; no note is
 * written after it) that only record the signal: the training loop
 * reads the record at the next update boundary, where all ranks agree on it within the update's loss
 * reduction, writes one checkpoint and returns BF_EXIT_PREEMPTED; an evaluation in progress ends at its next batch. Later signals are counted and ignored; the
 * save is not interrupted. `announce`: this process prints a note when a signal arrives (rank 0).
 * Returns 0 or -1 (errno set). */
int bf_train_install_signal_handlers(int announce);

#endif
