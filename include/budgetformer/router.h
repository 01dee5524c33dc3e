/* router: per-input head budget and relevance (MODEL.md): summary s = mean of LN1 output, relevance
 * p = softmax(s W_rel + b_rel), continuous budget k^ = 1 + (H-1) sigmoid(a), a = s w_bud + b_bud (plus a GELU
 * hidden layer with the added option budget_hidden), selection of the
 * top-k heads by (perturbed) relevance logits, gates g_h = H p_h [h in S], and the straight-through backward
 * through the surrogate mask sigmoid((k^ - rank - 0.5) / tau). Knows nothing of attention internals: it
 * receives dL/dgate and returns dL/du. */
#ifndef BUDGETFORMER_ROUTER_H
#define BUDGETFORMER_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/model.h"

typedef enum {
    BF_ROUTER_LEARNED = 0, /* learned budget and relevance (BudgetFormer) */
    BF_ROUTER_FIXED = 1,   /* k = fixed_budget heads by relevance (layer_budgets[l] in layer l when set) */
    BF_ROUTER_FULL = 2,    /* every head, gate 1 (full multi-head attention) */
} bf_router_mode;

typedef struct {
    bf_router_mode mode;
    int fixed_budget;
    int n_heads;
    int gate_norm;     /* 1: gates renormalised over the selected heads (docs/MODEL.md, added option) */
    int budget_hidden; /* N > 0: the budget logit has a GELU hidden layer of width N (docs/MODEL.md, added option) */
    const int *layer_budgets; /* BF_ROUTER_FIXED with a budget per layer (added option): k of layer l; else NULL */
} bf_router_params_mode;

/* The budget predictor's weights (or their gradients): a = s w + b [+ w_o . gelu(s w_h + b_h)]. The hidden
 * layer's pointers are used only with budget_hidden > 0 (NULL otherwise). */
typedef struct {
    float *w, *b;          /* w_bud [D], b_bud [1] */
    float *w_h, *b_h, *w_o;/* w_bud_h [D,N], b_bud_h [N], w_bud_o [N] */
} bf_budget_weights;

/* Router activations of one layer for up to B inputs. */
typedef struct {
    float *s;          /* [B,D] summary */
    float *r;          /* [B,H] relevance logits */
    float *p;          /* [B,H] relevance distribution */
    float *abud;       /* [B] budget pre-activation */
    float *khat;       /* [B] continuous budget (k for fixed, H for full) */
    float *gate;       /* [B,H] */
    float *dgate;      /* [B,H] filled by the caller before backward */
    float *dr;         /* [B,H] backward scratch */
    float *ds;         /* [B,D] backward scratch */
    float *da;         /* [B] backward scratch */
    int32_t *k;        /* [B] budget used */
    int32_t *rank;     /* [B,H] rank of each head by perturbed logits, 0 = best */
    uint32_t *mask_bits; /* [B] bit h set when head h is selected */
    float *sel_mass;   /* [B] relevance mass of the selected heads, sum over S of p_h (1 for full heads) */
    float *hb, *ab;    /* [B,N] budget hidden pre-activation and gelu (budget_hidden = N > 0; else empty) */
    float *dab, *dhb;  /* [B,N] backward scratch */
} bf_router_state;

/* 4-byte slots the state needs, and binding it to a block of that many floats (returns the end); N is the
 * budget hidden width (0: none). */
size_t bf_router_state_floats(size_t B, size_t D, size_t H, size_t N);
float *bf_router_state_bind(bf_router_state *st, float *block, size_t B, size_t D, size_t H, size_t N);

/* Forward for layer l of L on n inputs: u is the packed LN1 output [rows, D]. ex may be NULL (eps = 0).
 * k_override (may be NULL) is [n, L]: a positive entry replaces the budget of that input and layer. */
void bf_router_forward(bf_router_state *st, const bf_router_params_mode *mode, const float *u,
                       const int32_t *lengths, const float *w_rel, const float *b_rel, const bf_budget_weights *bud,
                       const bf_explore *ex, const int32_t *k_override, size_t l, size_t L, size_t n, size_t D);

/* Backward: uses st->dgate; accumulates parameter gradients and du (+=, packed rows). cost_scale is the
 * weight of (k^ - 1)/(H - 1) in the loss (learned mode only). ex (may be NULL) gives tau, a forced budget (no
 * gradient to k^ then) and the budget-supervision targets. */
void bf_router_backward(bf_router_state *st, const bf_router_params_mode *mode, float *du, const int32_t *lengths,
                        const float *w_rel, const bf_budget_weights *bud, float *dw_rel, float *db_rel,
                        const bf_budget_weights *dbud, const bf_explore *ex, float cost_scale, size_t n, size_t D);

/* Ranks H logits (0 = largest; ties: lower head index first). */
/* Batch-ranked budgets (train.supervise_rank): ce[(k-1)*n + i] is input i's cross-entropy with k heads in
 * every layer, k = 1..H. Shares `total` heads (n <= total <= n*H) among the n inputs, at least one each,
 * greedily by the fall of cross-entropy per extra head; writes each input's k to k_out and returns the heads
 * given (fewer than total when no input gains from more). Deterministic: ties go to the lower index. */
int bf_budget_allocate(const float *ce, int n, int H, long total, float *k_out);

void bf_rank_heads(int32_t *rank, const float *z, int H);

#endif
