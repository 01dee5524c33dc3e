/* headstats: head-usage counts over an interval of training: inputs seen, per true class, how often each
 * head of each layer was selected, the budget histogram, overall and per class, and the budget diagnostics
 * (histograms of the budget logit, of the continuous budget k^ and of the gate mass over the selected heads,
 * per layer). Plain int64 counts in one block, so a single allreduce sums them over ranks exactly (no input
 * counted twice or lost). */
#ifndef BUDGETFORMER_HEADSTATS_H
#define BUDGETFORMER_HEADSTATS_H

#include <stddef.h>
#include <stdint.h>

/* Fixed bins of the diagnostics histograms (docs/LOGS.md). A value below the first edge counts in the first
 * bin, one at or above the last edge in the last bin. */
#define BF_LOGIT_BINS 24      /* budget logit a = s.w_bud + b_bud: 24 bins of 0.5 over [-6, 6] */
#define BF_LOGIT_MIN (-6.0)
#define BF_LOGIT_MAX 6.0
#define BF_KHAT_PER_UNIT 4    /* k^: 4 bins per head over [1, H], so 4 (H - 1) bins */
#define BF_MASS_BINS 20       /* gate mass over S: 20 bins of 0.05 over [0, 1] */

typedef struct {
    int n_classes, n_layers, n_heads;
    int khat_bins;        /* BF_KHAT_PER_UNIT * (n_heads - 1) */
    int64_t *block;       /* everything below, contiguous */
    size_t block_len;
    int64_t *count;       /* [1] inputs */
    int64_t *class_count; /* [C] */
    int64_t *usage;       /* [L,H] inputs for which head h of layer l was selected */
    int64_t *budget;      /* [L,H] inputs whose budget in layer l was h+1 */
    int64_t *class_usage; /* [C,L,H] */
    /* Diagnostics (after the counts above, so a block of an older checkpoint is a prefix of this one): */
    int64_t *logit_hist;  /* [L, BF_LOGIT_BINS] budget logit a = logit((k^ - 1) / (H - 1)) */
    int64_t *khat_hist;   /* [L, khat_bins] continuous budget k^ */
    int64_t *mass_hist;   /* [L, BF_MASS_BINS] sum over S of p_h */
} bf_headstats;

void bf_headstats_init(bf_headstats *s, int n_classes, int n_layers, int n_heads);
void bf_headstats_free(bf_headstats *s);
void bf_headstats_reset(bf_headstats *s);
/* Block length of this layout (what bf_headstats_init allocates). */
size_t bf_headstats_block_len(int n_classes, int n_layers, int n_heads);
/* Block length of the layout before the diagnostics (checkpoints written before them hold that many). */
size_t bf_headstats_legacy_len(int n_classes, int n_layers, int n_heads);
/* Adds n inputs: labels [n], budget [n,L], head_mask [n,L], khat [n,L], sel_mass [n,L] (the model's outputs
 * of one forward). */
void bf_headstats_add(bf_headstats *s, const int32_t *labels, const int32_t *budget, const uint32_t *head_mask,
                      const float *khat, const float *sel_mass, int n);

/* Bin helpers shared with the readers' documentation (docs/LOGS.md): the bin of a value, ends clamped.
 * The logit bin is that of a = logit((k^ - 1) / (H - 1)) (-inf at k^ = 1, +inf at k^ = H). */
int bf_headstats_logit_bin(float khat, int n_heads);
int bf_headstats_khat_bin(float khat, int n_heads);
int bf_headstats_mass_bin(float mass);

#endif
