/* optim: AdamW, the learning-rate schedule (linear warm-up then cosine decay) and global-norm clipping.
 * Plain arrays in, no MPI, no model layout: the trainer loops over the model's tensor table. */
#ifndef BUDGETFORMER_OPTIM_H
#define BUDGETFORMER_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float beta1, beta2, eps;
} bf_adamw_hparams;

/* One AdamW update of n parameters at optimiser step `step` (1-based, for bias correction):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * ( m/(1-b1^step) / (sqrt(v/(1-b2^step)) + eps) + wd * p )     (decoupled weight decay)
 * grad_scale multiplies g first (gradient clipping). */
void bf_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long step, float lr, float wd,
                     float grad_scale, const bf_adamw_hparams *hp);

/* Learning rate at update `step` (1-based) of `total`: linear warm-up from lr_max/warmup to lr_max over
 * `warmup` steps, then cosine decay from lr_max to lr_min at step `total`. */
float bf_lr_at(long step, long total, long warmup, float lr_max, float lr_min);

/* Sum of squares of g in double precision (callers add the parts and take the square root). */
double bf_sum_squares(const float *g, size_t n);

/* bf_sum_squares(g, n), bit for bit, reading only the rows r of the table g[lo .. lo + n_rows*width) with
 * used[r] != 0: the others must be zero (a zero adds exactly nothing, and every value keeps its lane and
 * its place in the lane's order). Needs lo and width to be multiples of 8 and the table within g[0, n);
 * otherwise it reads everything. For the token-embedding gradient, zero outside the rows a batch touched. */
double bf_sum_squares_rows(const float *g, size_t n, size_t lo, size_t width, size_t n_rows, const uint8_t *used);

/* The factor that scales gradients so their global norm is at most max_norm (1 when max_norm <= 0 or the
 * norm is already below it). */
float bf_clip_scale(double global_norm, float max_norm);

#endif
