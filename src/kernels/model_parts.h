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

#endif
