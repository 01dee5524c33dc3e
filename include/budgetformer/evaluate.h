/* evaluate: run a model over a dataset (or a shard of it) at eps = 0 and collect what eval reports:
 * a confusion matrix, budget sums and histograms (counts, so shards can be added up by a reduction), and
 * optionally the per-input records of FILES.md. */
#ifndef BUDGETFORMER_EVALUATE_H
#define BUDGETFORMER_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/dataset.h"
#include "budgetformer/model.h"
#include "budgetformer/records.h"

typedef struct {
    int n_classes, n_layers, n_heads;
    int64_t n;             /* inputs evaluated */
    int64_t *confusion;    /* [C,C] row = true class, column = prediction */
    int64_t *budget_count; /* [L,H] inputs whose budget in layer l was h+1 */
    double *budget_sum;    /* [L] sum of budgets */
    double ce_sum;         /* summed cross-entropy */
    double flops_used, flops_full;           /* whole forward, skipping vs all heads */
    double attn_flops_used, attn_flops_full; /* attention part only */
    double seconds;        /* wall time of the forward passes */
    double attn_bytes, attn_bytes_all_heads; /* peak attention memory per batch, skipping vs every head */
} bf_eval_counts;

void bf_eval_counts_init(bf_eval_counts *e, const bf_model_config *c);
void bf_eval_counts_free(bf_eval_counts *e);

/* Evaluates inputs [lo, hi) in batches of at most m->max_batch with the head-skipping inference path
 * (bf_model_infer); adds to counts; fills rec rows lo..hi-1 when rec is not NULL. */
void bf_evaluate(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e, bf_eval_records *rec);
/* As bf_evaluate, with per-input budgets from outside: k_override is [d->n, L] in dataset order (row i for
 * input i; only rows lo..hi-1 are read), 0 = the router's own k (bf_batch.k_override); NULL = none. */
void bf_evaluate_override(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, const int32_t *k_override,
                          bf_eval_counts *e, bf_eval_records *rec);

/* Budget controls of `eval --budget-control` (README "Evaluating"): the same weights with the model's own
 * budgets moved between the inputs. */
typedef enum { BF_CONTROL_NONE = 0, BF_CONTROL_SHUFFLE, BF_CONTROL_CONSTANT, BF_CONTROL_ORACLE } bf_budget_control;

/* Parses "shuffle", "constant" or "oracle"; returns -1 for anything else. */
int bf_budget_control_parse(const char *s, bf_budget_control *out);
const char *bf_budget_control_name(bf_budget_control c);
/* The fixed permutation of 0..n-1 of the shuffle control for `seed` (Fisher-Yates keyed by bf_rng_key, stream
 * BF_STREAM_CONTROL): perm[i] is the input whose budgets input i gets. */
void bf_budget_control_perm(size_t n, uint64_t seed, size_t *perm);
/* Fills k_override [n, L] from the budgets [n, L] of every input (the model's own, dataset order):
 *   shuffle:  row i = budget row perm[i] (one permutation for all layers, so each layer's histogram of k and
 *             each input's budget vector are kept, only moved to another input);
 *   constant: every row = per layer floor(mean + 1/2) of that layer's budgets, clamped to 1..n_heads.
 * Depends only on its arguments, so every rank computes the same overrides. */
void bf_budget_control_make(bf_budget_control c, uint64_t seed, const int32_t *budget, size_t n, int n_layers,
                            int n_heads, int32_t *k_override);
/* The oracle control (a diagnostic, not a model: it reads the labels): evaluates inputs [0, d->n) with the
 * same k in every layer for every k = 1..H, then shares the model's own heads (sum of `budget` [n, L] over
 * inputs and layers, divided by L and rounded) among the inputs where they lower each input's cross-entropy
 * most (bf_budget_allocate); writes those k to every layer's k_override. The upper end of what per-input
 * budgets alone could gain over the constant control on these weights. One rank. */
void bf_eval_oracle_budgets(bf_model *m, const bf_dataset *d, const int32_t *budget, int32_t *k_override);

/* The same, asking stop(stop_ctx) before every batch: when it returns non-zero the evaluation ends there
 * (the counts hold the whole batches done) and 1 is returned; 0 when every input was evaluated. A stop
 * request during training's validation thus waits for one batch, not the whole set. stop may be NULL. */
int bf_evaluate_until(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e,
                      bf_eval_records *rec, int (*stop)(void *), void *stop_ctx);

double bf_eval_accuracy(const bf_eval_counts *e);
/* Macro-F1: mean over the classes present in labels or predictions. */
double bf_eval_macro_f1(const bf_eval_counts *e);

#endif
