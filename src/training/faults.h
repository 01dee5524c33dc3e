/* faults: fault injection for tests, BF_FAULT, read once at the start of a run (docs/FAILURES.md; internal
 * to src/training). */
#ifndef BUDGETFORMER_TRAINING_FAULTS_H
#define BUDGETFORMER_TRAINING_FAULTS_H

#include "budgetformer/checkpoint.h"
#include "budgetformer/util.h"

typedef struct {
    long nan_step, nan_count;   /* the highest rank's loss and gradient are NaN at updates nan_step.. (+count) */
    bf_ckpt_fault save_fault;   /* armed for one save ... */
    long save_step;             /* ... the save of this step; -1: the first save of this process */
    int save_delay_ms;          /* BF_CKPT_DELAY */
    long alloc_step;            /* one stray allocation inside this update (BF_CHECK_ALLOC catches it) */
    long eval_delay_ms;         /* slow_eval: a pause before every evaluation batch (to signal during one) */
} fault_plan;

/* Comma-separated items: nan_at_step:N[:COUNT], crash_in_save:PHASE[:STEP], enospc_in_save[:STEP],
 * delay_in_save:MS[:STEP], alloc_in_step:N, slow_eval:MS. NULL or "": no faults. Returns 0 or -1 with err. */
int bf_train_parse_faults(const char *spec, fault_plan *fp, bf_err *err);

#endif
