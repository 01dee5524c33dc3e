/* train: the training loop. Wires data order, model, optimiser, exploration schedule, log and checkpoints.
 * Written for data parallelism: each step takes the rank's part of the global batch, splits it into
 * micro-batches with gradient accumulation, and scales the loss by the global batch size, so the gradient is
 * the same for any split. */
#ifndef BUDGETFORMER_TRAIN_H
#define BUDGETFORMER_TRAIN_H

#include "budgetformer/config.h"
#include "budgetformer/dist.h"
#include "budgetformer/util.h"

/* Runs a whole training as configured, as one rank of `dist` (world size 1 without MPI). Returns 0, or -1
 * with err set; every rank returns the same status. */
int bf_train_run(const bf_config *cfg, bf_dist *dist, bf_err *err);

#endif
