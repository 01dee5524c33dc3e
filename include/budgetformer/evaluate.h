/* evaluate: run a model over a dataset (or a shard of it) at eps = 0 and collect what eval reports:
 * a confusion matrix, budget sums and histograms (counts, so shards can be added up by a reduction), and
 * optionally the per-input records of FILES.md. */
#ifndef BUDGETFORMER_EVALUATE_H
#define BUDGETFORMER_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/dataset.h"
#include "budgetformer/model.h"

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

/* Per-input records (FILES.md "Evaluation records"), rows in dataset order. */
typedef struct {
    int32_t *label, *pred, *length; /* [N] */
    float *logits;                  /* [N,C] */
    int32_t *budget;                /* [N,L] */
    uint32_t *head_mask;            /* [N,L] */
} bf_eval_records;

void bf_eval_counts_init(bf_eval_counts *e, const bf_model_config *c);
void bf_eval_counts_free(bf_eval_counts *e);

/* Evaluates inputs [lo, hi) in batches of at most m->max_batch with the head-skipping inference path
 * (bf_model_infer); adds to counts; fills rec rows lo..hi-1 when rec is not NULL. */
void bf_evaluate(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e, bf_eval_records *rec);
/* The same, asking stop(stop_ctx) before every batch: when it returns non-zero the evaluation ends there
 * (the counts hold the whole batches done) and 1 is returned; 0 when every input was evaluated. A stop
 * request during training's validation thus waits for one batch, not the whole set. stop may be NULL. */
int bf_evaluate_until(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e,
                      bf_eval_records *rec, int (*stop)(void *), void *stop_ctx);

double bf_eval_accuracy(const bf_eval_counts *e);
/* Macro-F1: mean over the classes present in labels or predictions. */
double bf_eval_macro_f1(const bf_eval_counts *e);

void bf_eval_records_alloc(bf_eval_records *r, size_t n, int n_classes, int n_layers);
void bf_eval_records_free(bf_eval_records *r);
/* Writes the records of FILES.md (and the integer attribute n_heads of /records), atomically. */
int bf_eval_records_write(const char *path, const bf_eval_records *r, size_t n, int n_classes, int n_layers,
                          int n_heads, bf_err *err);

#endif
