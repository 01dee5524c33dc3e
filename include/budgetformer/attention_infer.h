/* attention_infer: multi-head self-attention of one input for inference, where nothing keeps the
 * probabilities (the training form with saved probabilities is bf_attention_forward in ops.h). */
#ifndef BUDGETFORMER_ATTENTION_INFER_H
#define BUDGETFORMER_ATTENTION_INFER_H

#include <stddef.h>

/* o[t, h dh .. h dh + dh) = gate[h] * softmax(q_h k_h^T / sqrt(dh)) v_h for the n rows of one input and all H
 * heads, where qkv is [n, 3D] (q | k | v, head h in columns h dh .. h dh + dh of each) and o is [n, D]. gate may
 * be NULL (every gate 1). scratch holds bf_attention_infer_scratch_floats(n, D, H) floats. */
void bf_attention_forward_infer(float *restrict o, float *restrict scratch, const float *restrict qkv, size_t n,
                                size_t D, size_t H, const float *restrict gate);

/* Scratch floats bf_attention_forward_infer uses for inputs of up to n_max rows (exactly what it touches for
 * an input of n_max rows; the fused head widths 16-64 need no n x n matrix). */
size_t bf_attention_infer_scratch_floats(size_t n_max, size_t D, size_t H);

#endif
