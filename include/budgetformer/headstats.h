/* headstats: head-usage counts over an interval of training: inputs seen, per true class, how often each
 * head of each layer was selected, and the budget histogram, overall and per class. Plain int64 counts in
 * one block, so a single allreduce sums them over ranks exactly (no input counted twice or lost). */
#ifndef BUDGETFORMER_HEADSTATS_H
#define BUDGETFORMER_HEADSTATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_classes, n_layers, n_heads;
    int64_t *block;       /* everything below, contiguous */
    size_t block_len;
    int64_t *count;       /* [1] inputs */
    int64_t *class_count; /* [C] */
    int64_t *usage;       /* [L,H] inputs for which head h of layer l was selected */
    int64_t *budget;      /* [L,H] inputs whose budget in layer l was h+1 */
    int64_t *class_usage; /* [C,L,H] */
} bf_headstats;

void bf_headstats_init(bf_headstats *s, int n_classes, int n_layers, int n_heads);
void bf_headstats_free(bf_headstats *s);
void bf_headstats_reset(bf_headstats *s);
/* Adds n inputs: labels [n], budget [n,L], head_mask [n,L] (the model's outputs of one forward). */
void bf_headstats_add(bf_headstats *s, const int32_t *labels, const int32_t *budget, const uint32_t *head_mask,
                      int n);

#endif
