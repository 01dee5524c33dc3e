/* ops: the numerical kernels. Each forward has its backward; backward kernels accumulate (+=) into the
 * gradients they produce. Outputs first, then inputs, sizes last. Kernels never call MPI or HDF5.
 * Matrices are row-major; a weight w is stored [in, out] so out = inp · w (+ b).
 * Packed sequences: rows off[b] .. off[b] + len[b] - 1 of a [rows, D] array belong to input b. */
#ifndef BUDGETFORMER_OPS_H
#define BUDGETFORMER_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

/* out[R,O] = inp[R,K] · w[K,O] + b[O] (b may be NULL). */
void bf_matmul_forward(float *restrict out, const float *restrict inp, const float *restrict w,
                       const float *restrict b, size_t R, size_t K, size_t O);
/* out[R,O] += inp[R,K] · w[K,O] (accumulates: a residual connection without a separate pass). */
void bf_matmul_accumulate(float *restrict out, const float *restrict inp, const float *restrict w, size_t R, size_t K,
                          size_t O);
/* out[r] = a[r] + b for each of R rows of width O (residual plus bias, one pass). */
void bf_add_rows_bias(float *restrict out, const float *restrict a, const float *restrict b, size_t R, size_t O);
/* x[r] = gelu(x[r] + b) in place for R rows of width F (inference: the pre-activation is not kept). */
void bf_bias_gelu_inplace(float *restrict x, const float *restrict b, size_t R, size_t F);

/* dinp += dout · w^T; dw += inp^T · dout; db += column sums of dout. dinp, dw, db may be NULL (skipped). */
void bf_matmul_backward(float *restrict dinp, float *restrict dw, float *restrict db, const float *restrict dout,
                        const float *restrict inp, const float *restrict w, size_t R, size_t K, size_t O);

/* LayerNorm over the last dimension, eps 1e-5, biased variance. Saves mean and rstd ([R]) for backward. */
void bf_layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd, const float *restrict inp,
                          const float *restrict gamma, const float *restrict beta, size_t R, size_t D);
void bf_layernorm_backward(float *restrict dinp, float *restrict dgamma, float *restrict dbeta,
                           const float *restrict dout, const float *restrict inp, const float *restrict gamma,
                           const float *restrict mean, const float *restrict rstd, size_t R, size_t D);

/* Inference, between an attention block and its FFN: x += b_in; u = LayerNorm(x) (gamma, beta); x += b_out,
 * row by row over R rows of width D, so the residual rows are read and written once. */
void bf_bias_layernorm_bias(float *restrict x, float *restrict u, const float *restrict b_in,
                            const float *restrict gamma, const float *restrict beta, const float *restrict b_out,
                            size_t R, size_t D);

/* gelu_tanh(a) = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))), element-wise on n values. */
void bf_gelu_forward(float *restrict out, const float *restrict inp, size_t n);
void bf_gelu_backward(float *restrict dinp, const float *restrict inp, const float *restrict dout, size_t n);

/* Softmax of one vector of n values (max-subtracted); out may equal inp (in place). */
void bf_softmax_forward(float *out, const float *inp, size_t n);
/* dinp += p ⊙ (dout - <p, dout>). */
void bf_softmax_backward(float *restrict dinp, const float *restrict p, const float *restrict dout, size_t n);

/* Embedding: x[row] = tok_emb[id] + pos_emb[t] for t < len[b], packed. */
void bf_embedding_forward(float *restrict x, const int32_t *restrict tokens, const int32_t *restrict len,
                          const float *restrict tok_emb, const float *restrict pos_emb, size_t B, size_t T, size_t D);
void bf_embedding_backward(float *restrict dtok_emb, float *restrict dpos_emb, const float *restrict dx,
                           const int32_t *restrict tokens, const int32_t *restrict len, size_t B, size_t T, size_t D);

/* out[b] = mean over the rows of input b. */
void bf_masked_mean_forward(float *restrict out, const float *restrict inp, const int32_t *restrict len, size_t B,
                            size_t D);
void bf_masked_mean_backward(float *restrict dinp, const float *restrict dout, const int32_t *restrict len, size_t B,
                             size_t D);

/* Multi-head self-attention of one input of n rows, all H heads. qkv is [n, 3D] (q | k | v, head h uses
 * columns h*dh .. h*dh+dh-1 of each); att [H, n, n] saves the probabilities; o is [n, D], head h in columns
 * h*dh... scratch needs n*n floats... (see model.c). Only heads with bit h of head_mask set are computed
 * (others left untouched); pass all bits for training. */
void bf_attention_forward(float *restrict o, float *restrict att, const float *restrict qkv, size_t n, size_t D,
                          size_t H, uint32_t head_mask);
/* dqkv += gradient wrt qkv for heads in head_mask; scratch holds n*n floats. */
void bf_attention_backward(float *restrict dqkv, float *restrict scratch, const float *restrict dout,
                           const float *restrict qkv, const float *restrict att, size_t n, size_t D, size_t H,
                           uint32_t head_mask);

/* Cross-entropy per input: loss[b] = logsumexp(logits[b]) - logits[b][label[b]]; probs saved [B,C]. */
void bf_cross_entropy_forward(float *restrict loss, float *restrict probs, const float *restrict logits,
                              const int32_t *restrict labels, size_t B, size_t C);
/* dlogits += scale * (probs - onehot(label)). */
void bf_cross_entropy_backward(float *restrict dlogits, const float *restrict probs, const int32_t *restrict labels,
                               float scale, size_t B, size_t C);

/* Makes OpenBLAS take its work buffers now (one tiny product) after checking that an address-space limit
 * (RLIMIT_AS) leaves room for them; OpenBLAS itself would retry that allocation for ever. Returns 0, or -1
 * with err naming the limit, what is mapped and what is needed. Call once at start, after MPI_Init. */
int bf_ops_reserve_blas(bf_err *err);

#endif
