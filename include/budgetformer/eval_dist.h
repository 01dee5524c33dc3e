/* eval_dist: distributed evaluation glue: every rank evaluates a contiguous shard of the dataset; the counts
 * are summed over ranks and the per-input records gathered on rank 0 in dataset order. */
#ifndef BUDGETFORMER_EVAL_DIST_H
#define BUDGETFORMER_EVAL_DIST_H

#include "budgetformer/dist.h"
#include "budgetformer/evaluate.h"

/* The shard [lo, hi) of n inputs that `rank` of `world` evaluates. */
void bf_eval_shard(size_t n, int rank, int world, size_t *lo, size_t *hi);
/* Sums the counts of every rank into every rank's copy. */
void bf_eval_counts_reduce(bf_dist *d, bf_eval_counts *e);
/* Records rows [lo, hi) are filled on each rank; afterwards rank 0 holds all n rows. */
void bf_eval_records_gather(bf_dist *d, bf_eval_records *r, size_t n, int n_classes, int n_layers);

/* The overrides [n, L] of a budget control on every rank: each rank holds the budgets of its shard in rows
 * [lo, hi) of budget [n, L] (e.g. first-pass records); they are combined into every rank's copy with one
 * exact integer reduction, and every rank computes the same overrides with bf_budget_control_make. */
void bf_eval_budget_control(bf_dist *d, bf_budget_control c, uint64_t seed, const int32_t *budget, size_t n,
                            int n_layers, int n_heads, int32_t *k_override);

#endif
