/* model: the BudgetFormer network of MODEL.md: parameters, forward, backward, FLOP count.
 *
 * Use: bf_model_init (parameters, gradients, activation arena), bf_model_init_weights (or a load from a
 * checkpoint), bf_explore_draw for the exploration noise, bf_model_forward (fills m.logits, m.budget,
 * m.head_mask), bf_model_backward; src/training/step.c and tests/test_gradcheck.c are the compiled examples.
 *
 * All parameters live in one float block (m.params) described by a table of tensors whose names are the
 * stored names of MODEL.md (without the "/model/" prefix); the gradients have the same layout (m.grads).
 * A batch is packed: input b occupies rows off[b] .. off[b]+len[b]-1 of every [rows, D] activation, so
 * padded positions are never computed and cannot influence anything.
 * The model knows nothing of MPI or files.
 */
#ifndef BUDGETFORMER_MODEL_H
#define BUDGETFORMER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/bf16.h"
#include "budgetformer/util.h"

#define BF_MAX_LAYERS 64

typedef struct {
    int vocab_size;   /* V, PAD and UNK included */
    int max_len;      /* T */
    int d_model;      /* D */
    int n_heads;      /* H, 2..32, divides D */
    int n_layers;     /* L */
    int d_ff;         /* F */
    int n_classes;    /* C */
    int full_heads;   /* 1: every head, gate 1 (the baseline) */
    int fixed_budget; /* k > 0: k heads by relevance for every input, no learned budget; BF_FIXED_PER_LAYER:
                       * layer l uses layer_budgets[l] heads (added option, docs/MODEL.md) */
    int gate_norm;    /* added option (docs/MODEL.md): 1 = gates H p_h / sum over S of p_j; 0 = MODEL.md's H p_h */
    int budget_hidden;/* added option (docs/MODEL.md): N > 0 adds a GELU hidden layer of width N to the budget
                       * logit, a = s w_bud + b_bud + w_bud_o . gelu(s W_bud_h + b_bud_h); 0 = MODEL.md's linear */
    int layer_budgets[BF_MAX_LAYERS]; /* added option: with fixed_budget = BF_FIXED_PER_LAYER, layer l's k in 1..H for
                            * l < n_layers; all 0 otherwise (so equal models are equal bytes) */
} bf_model_config;

#define BF_MAX_HEADS 32
/* fixed_budget's value for a fixed budget per layer (model.layer_budgets). It is also what the checkpoint's
 * /model fixed_budget attribute holds then: a reader that does not know the option refuses the negative
 * value instead of computing a learned budget. */
#define BF_FIXED_PER_LAYER (-1)
#define BF_MAX_BUDGET_HIDDEN 4096

/* The fields of bf_model_config, in one table for every list of them: the checkpoint's /model attributes
 * (checkpoint.c), inspect's output (cmd_inspect.c) and resume's comparison (resume.c). `name`: the attribute
 * and output key; `key`: the configuration key that sets it ("data.train" for what prepare decides);
 * `added`: an added option (docs/MODEL.md) that older checkpoints lack (read as 0); `max`: the largest value an
 * added option takes (a larger one comes from a newer budgetformer). */
typedef struct {
    const char *name;
    const char *key;
    int added;
    int max;
} bf_model_field;
#define BF_MODEL_N_FIELDS 11
extern const bf_model_field bf_model_fields[BF_MODEL_N_FIELDS];
/* Field i of c (table order). */
int bf_model_field_get(const bf_model_config *c, int i);
void bf_model_field_set(bf_model_config *c, int i, int v);

typedef struct {
    char name[64];  /* stored name under /model, e.g. "layers/0/attn/w_qkv" */
    int ndim;       /* 1 or 2 */
    int shape[2];
    size_t offset;  /* into params / grads, in floats */
    size_t numel;
    int decay;      /* 1: AdamW weight decay applies (matrices of matmuls) */
} bf_tensor_info;

/* Named pointers into the parameter (or gradient) block of one layer. */
typedef struct {
    float *ln1_g, *ln1_b;   /* [D] */
    float *w_qkv, *b_qkv;   /* [D,3D], [3D] */
    float *w_out, *b_out;   /* [D,D], [D] */
    float *w_rel, *b_rel;   /* [D,H], [H] */
    float *w_bud, *b_bud;   /* [D], [1] */
    float *w_bud_h, *b_bud_h, *w_bud_o; /* [D,N], [N], [N] with budget_hidden = N > 0; NULL otherwise */
    float *ln2_g, *ln2_b;   /* [D] */
    float *w1, *b1;         /* [D,F], [F] */
    float *w2, *b2;         /* [F,D], [D] */
} bf_layer_params;

typedef struct {
    float *tok_emb;  /* [V,D] */
    float *pos_emb;  /* [T,D] */
    bf_layer_params *layers; /* [L] */
    float *lnf_g, *lnf_b;    /* [D] */
    float *cls_w, *cls_b;    /* [D,C], [C] */
} bf_param_view;

/* A packed batch. tokens is [n, T] left-aligned as in the dataset file; lengths >= 1. labels may be NULL
 * (inference). index is each input's index in its dataset (keys the random draws); may be NULL at eps = 0. */
typedef struct {
    int n;
    const int32_t *tokens;
    const int32_t *lengths;
    const int32_t *labels;
    /* Optional [n, C] target distributions for the backward pass (in-place distillation): the gradient is
     * that of the cross-entropy against them instead of the labels. The forward pass still reports the
     * cross-entropy against the labels. */
    const float *soft_targets;
    /* Optional [n, L] budgets that replace the router's k (0 = keep it), in training and inference alike: the
     * budget controls of `eval --budget-control` (the same weights with budgets moved between inputs). */
    const int32_t *k_override;
} bf_batch;

/* Exploration inputs for one batch (MODEL.md "Exploration"). With eps = 0 the arrays are ignored and may be
 * NULL. gumbel is [n, L, H] standard Gumbel draws; k_random is [n, L]: 0 where the coin said exploit,
 * else the random budget in 1..H. bf_explore_draw fills both from the counter-based generator. */
typedef struct {
    float eps;
    float tau;            /* straight-through temperature (> 0) */
    const float *gumbel;
    const int32_t *k_random;
    /* Added training options (docs/MODEL.md "Training options"); zero/NULL reproduces MODEL.md exactly. */
    int k_force;          /* > 0: every input and layer uses k = min(k_force, H); k^ gets no gradient */
    const float *k_target;/* [n] budget-supervision target k* per input (NULL: none) */
    float sup_scale;      /* weight of (k^ - k*)^2 / (H-1)^2 per (input, layer) in the differentiated loss */
    int sup_center;       /* 1: both sides centred on their mean over the batch's inputs, per layer */
    float spread_sd;      /* sigma > 0: per layer, spread_scale n max(0, 1 - var_b(k^)/sigma^2)^2 joins the loss */
    float spread_scale;
} bf_explore;

typedef struct bf_acts bf_acts; /* activation arena, private to model.c */
typedef struct bf_infer bf_infer; /* scratch of the head-skipping inference path, private to model_infer.c */
typedef struct bf_mm bf_mm;       /* bf16 state: weight copies, scratch, oneDNN primitives; model_mm.c */

/* Called by backward as each tensor's gradient becomes final, in descending table order (so in
 * descending memory order of the gradient block). */
typedef void (*bf_grad_ready_fn)(void *ctx, int tensor);

typedef struct {
    bf_model_config cfg;
    int max_batch;           /* inputs per forward call */
    size_t n_params;         /* floats in params (and grads) */
    float *params;
    float *grads;
    bf_tensor_info *tensors; /* table, in block order */
    int n_tensors;
    bf_param_view p, g;      /* named pointers into params and grads */
    bf_acts *acts;
    /* Outputs of the last forward call, for input b (row-major): */
    float *logits;           /* [max_batch, C] */
    int32_t *budget;         /* [max_batch, L] k used */
    uint32_t *head_mask;     /* [max_batch, L] bit h set when head h in S */
    float *khat;             /* [max_batch, L] continuous budget (H for full heads, k for fixed) */
    float *ce;               /* [max_batch] cross-entropy of each input (labels given) */
    float *sel_mass;         /* [max_batch, L] relevance mass of the selected heads (1 for full heads) */
    float *probs;            /* [max_batch, C] class probabilities of the last bf_model_forward call */
    bf_infer *infer;         /* allocated by the first bf_model_infer call */
    bf_precision precision;  /* of the matrix products; set with bf_model_set_precision (default fp32) */
    bf_mm *mm;               /* bf16 only */
    bf_grad_ready_fn grad_ready; /* optional; set it only for the last backward before the update */
    void *grad_ready_ctx;
} bf_model;

/* Checks the configuration (H range and divisibility, positive sizes, fixed_budget in 0..H); returns 0 or
 * -1 with a message in msg (len bytes). */
int bf_model_config_check(const bf_model_config *cfg, char *msg, size_t len);
/* "k_1,...,k_L" of a fixed budget per layer (model.layer_budgets), "" for any other model. */
void bf_model_layer_budgets_text(const bf_model_config *cfg, char *buf, size_t len);

void bf_model_init(bf_model *m, const bf_model_config *cfg, int max_batch);
void bf_model_free(bf_model *m);

/* Deterministic initialisation from a seed (N(0, 0.02) matrices and embeddings, zero biases, unit gains,
 * b_bud chosen so the initial continuous budget is about H/2). */
void bf_model_init_weights(bf_model *m, uint64_t seed);

/* Looks up a tensor by stored name; NULL when absent. */
const bf_tensor_info *bf_model_tensor(const bf_model *m, const char *name);

/* Fills gumbel [n,L,H] and k_random [n,L] from the counter-based generator for inputs with dataset
 * indices index[0..n-1] in epoch `epoch`. Draws nothing (zeros) when eps == 0. */
void bf_explore_draw(const bf_model_config *cfg, uint64_t seed, const int64_t *epoch, const int64_t *index,
                     int n, float eps, float *gumbel, int32_t *k_random);

/* Forward pass. Returns the summed cross-entropy over the batch (0 when labels are NULL). Fills logits,
 * budget, head_mask, khat, ce. */
double bf_model_forward(bf_model *m, const bf_batch *batch, const bf_explore *ex);

/* Sum over the batch of (k^ - 1)/(H - 1) summed over layers (0 for full-heads and fixed-budget models). */
double bf_model_budget_sum(const bf_model *m, int n);

/* Backward pass of the last forward call; accumulates (+=) into m->grads. The loss differentiated is
 *   ce_scale * sum_b CE_b + cost_scale * sum_{b,l} (k^_bl - 1)/(H - 1)
 * so the trainer passes ce_scale = 1/B and cost_scale = lambda/(B L) for a global batch of B inputs. */
void bf_model_backward(bf_model *m, const bf_batch *batch, const bf_explore *ex, float ce_scale,
                       float cost_scale);

void bf_model_zero_grad(bf_model *m);

/* The precision of the matrix products (docs/PERFORMANCE.md "bf16"). fp32: OpenBLAS sgemm. bf16: the
 * products of forward, backward and inference take bf16 inputs (activations rounded as they enter a
 * product, weights from bf16 copies) and accumulate in fp32 through oneDNN; the parameters, gradients and
 * everything between the products stay fp32. Returns 0, or -1 with err (bf_bf16_check's reasons) leaving
 * the model in fp32. Allocates the bf16 copies and scratch (about half the weights' bytes plus 4 bytes per
 * activation row and width). */
int bf_model_set_precision(bf_model *m, bf_precision p, bf_err *err);
/* Tells a bf16 model that m->params changed (after each optimiser update, after writing weights by hand):
 * the next forward pass makes the bf16 weight copies again, once, not once per product. Free in fp32. A
 * load before the first forward needs no call. */
void bf_model_params_updated(bf_model *m);

/* Bytes of the activation arena (forward activations and backward scratch for max_batch inputs). */
size_t bf_model_activation_bytes(const bf_model *m);

/* Memory of the attention part of the last bf_model_infer call, in bytes, peak over its layers: the q, k, v
 * columns of the selected heads for the batch plus the attention kernel's scratch for its largest input,
 * against what computing every head holds (q, k, v of every head plus the H score matrices of an input). */
typedef struct {
    double attn_bytes, attn_bytes_all_heads;
} bf_infer_stats;

/* Inference at eps = 0 that computes only the selected heads: for each input only the q, k, v columns,
 * attention scores and W_out rows of the heads in S. Inputs with the same head set are grouped so their
 * projections run as one sgemm on the gathered weight columns. Gives the same outputs as bf_model_forward
 * at eps = 0 up to float rounding; fills logits, budget, head_mask, khat, ce (no backward possible). */
double bf_model_infer(bf_model *m, const bf_batch *batch, bf_infer_stats *stats);
/* Frees the inference scratch (bf_model_free does it too). */
void bf_model_infer_free(bf_model *m);

/* Multiply-add FLOPs (2 per MAC) of one forward pass of an input of length n, with `heads` heads computed
 * in each layer (all heads: heads = H). Embedding lookups are free; element-wise work is not counted. */
double bf_model_forward_flops(const bf_model_config *cfg, int n, int heads);
/* Attention part only (q,k,v projections, scores, weighted sum, output projection) for one layer. */
double bf_model_attention_flops(const bf_model_config *cfg, int n, int heads);

#endif
