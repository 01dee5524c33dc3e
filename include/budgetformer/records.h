/* records: the per-input evaluation records file (FILES.md "Evaluation records"): written by eval and the
 * trainer's evaluation (bf_eval_records_write*), read back by `budgetformer heads` (bf_records_view_read).
 * The one owner of that format. */
#ifndef BUDGETFORMER_RECORDS_H
#define BUDGETFORMER_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

/* Per-input records (FILES.md "Evaluation records"), rows in dataset order. */
typedef struct {
    int32_t *label, *pred, *length; /* [N] */
    float *logits;                  /* [N,C] */
    int32_t *budget;                /* [N,L] */
    uint32_t *head_mask;            /* [N,L] */
    float *khat;                    /* [N,L] continuous budget k^ (the router's, also under a budget control) */
    float *sel_mass;                /* [N,L] relevance mass of the selected heads */
} bf_eval_records;

void bf_eval_records_alloc(bf_eval_records *r, size_t n, int n_classes, int n_layers);
void bf_eval_records_free(bf_eval_records *r);
/* Writes the records of FILES.md (and the integer attribute n_heads of /records), atomically. */
int bf_eval_records_write(const char *path, const bf_eval_records *r, size_t n, int n_classes, int n_layers,
                          int n_heads, bf_err *err);
/* As bf_eval_records_write for the pass of a budget control: /records also gets the string attribute
 * budget_control ("shuffle" or "constant") and, when control_seed >= 0 (shuffle), the integer attribute
 * control_seed. */
int bf_eval_records_write_control(const char *path, const bf_eval_records *r, size_t n, int n_classes,
                                  int n_layers, int n_heads, const char *control, long long control_seed,
                                  bf_err *err);

/* A records file as read back: the columns that head-usage reports need, every value range-checked. */
typedef struct {
    size_t N, C, L, H;
    const char *h_from; /* "option", "attribute" or "inferred" */
    int32_t *label, *pred, *length; /* [N] */
    int32_t *budget;                /* [N,L] */
    uint32_t *mask;                 /* [N,L] */
} bf_records_view;

/* Reads the records file at path. H is n_heads when > 0, else the n_heads attribute of /records or of the
 * file, else inferred from budgets and masks. Returns 0, or -1 with err naming file and dataset (free d
 * either way). */
int bf_records_view_read(const char *path, int n_heads, bf_records_view *d, bf_err *err);
void bf_records_view_free(bf_records_view *d);

#endif
