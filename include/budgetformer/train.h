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

/* Runs a whole training as configured, as one rank of `dist` (world size 1 without MPI). Returns 0, or -1
 * with err set; every rank returns the same status. opts may be NULL (a new run). */
int bf_train_run_opts(const bf_config *cfg, bf_dist *dist, const bf_train_options *opts, bf_err *err);
/* The same with opts = NULL. */
int bf_train_run(const bf_config *cfg, bf_dist *dist, bf_err *err);

#endif
