/* model_parts: the pieces the training forward pass (model.c) and the head-skipping inference path
 * (model_infer.c) share, so both end in the same classifier code. Not for other modules. */
#ifndef BUDGETFORMER_MODEL_PARTS_H
#define BUDGETFORMER_MODEL_PARTS_H

#include "budgetformer/model.h"
#include "budgetformer/router.h"

bf_router_params_mode bf_model_router_mode(const bf_model_config *cfg);
/* The budget predictor's pointers of one layer's parameters (or gradients) for the router. */
bf_budget_weights bf_model_budget_weights(const bf_layer_params *p);
/* Copies layer l's router decisions (k, head set, k^) of the n inputs into m->budget, head_mask, khat. */
void bf_model_record_routes(bf_model *m, const bf_router_state *rt, size_t l, int n);
/* The classifier on the last layer's output x [rows, D]: final LayerNorm into z (mean, rstd [rows]), masked
 * mean into pooled [n, D], m->logits, and with labels m->ce and probs [n, C]. Returns the summed cross-entropy
 * (0 without labels). */
double bf_model_head_forward(bf_model *m, const bf_batch *batch, const float *x, float *z, float *mean, float *rstd,
                             float *pooled, float *probs, size_t rows);

/* ---- the matrix products at the model's precision (model_mm.c) ------------------------------------------
 * Each takes the model's weight pointer w (into m->params) as the fp32 kernels of ops.h do: in fp32 they are
 * those kernels; in bf16 the activation operand is rounded to bf16 into the model's scratch, w's bf16 copy
 * is found by its offset, and oneDNN accumulates in fp32. */
void bf_mm_forward(bf_model *m, float *out, const float *inp, const float *w, const float *b, size_t R, size_t K,
                   size_t O);
void bf_mm_accumulate(bf_model *m, float *out, const float *inp, const float *w, size_t R, size_t K, size_t O);
void bf_mm_backward(bf_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                    const float *w, size_t R, size_t K, size_t O);
/* bf_attention_forward / bf_attention_backward (ops.h) at the model's precision; every head computed. */
void bf_mm_attention_forward(bf_model *m, float *o, float *att, const float *qkv, size_t n, size_t D, size_t H);
void bf_mm_attention_backward(bf_model *m, float *dqkv, float *scratch, const float *dout, const float *qkv,
                              const float *att, size_t n, size_t D, size_t H);
/* Makes the bf16 weight copies if bf_model_params_updated (or the precision's setting) asked for them. */
void bf_mm_sync_weights(bf_model *m);
void bf_mm_free(bf_model *m);
/* For inference on gathered weights: the bf16 copy of weight w (which must be a matrix of the model), and
 * out (+)= inp · wb with inp fp32 rounded as it enters, b (may be NULL) added first unless accumulating. */
const bf_bf16 *bf_mm_weight(const bf_model *m, const float *w);
void bf_mm_forward_bf16(bf_model *m, float *out, const float *inp, const bf_bf16 *wb, const float *b, size_t R,
                        size_t K, size_t O, int accumulate);

#endif
