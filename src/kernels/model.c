/* model: the BudgetFormer network (see model.h and MODEL.md). */
#include "budgetformer/model.h"
#include "model_parts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/ops.h"
#include "budgetformer/rng.h"
#include "budgetformer/router.h"
#include "budgetformer/util.h"

/* Activations of one layer for a batch of up to max_batch inputs (R = max_batch * T packed rows). */
typedef struct {
    float *x;            /* [R,D] input of the layer (residual stream) */
    float *u;            /* [R,D] LN1 output */
    float *mean1, *rstd1;/* [R] */
    float *qkv;          /* [R,3D] */
    float *att;          /* [B*H*T*T] probabilities, input b at att_off[b] */
    float *o;            /* [R,D] head outputs, ungated */
    float *og;           /* [R,D] gated head outputs */
    float *xm;           /* [R,D] x + attention output (input of LN2) */
    float *u2;           /* [R,D] LN2 output */
    float *mean2, *rstd2;/* [R] */
    float *h1;           /* [R,F] FFN pre-activation */
    float *a1;           /* [R,F] gelu(h1) */
    bf_router_state rt;  /* router: summary, relevance, budget, selection */
} layer_acts;

struct bf_acts {
    float *block;          /* one allocation for everything below */
    size_t block_floats;
    size_t rows_max;       /* max_batch * T */
    layer_acts *layers;    /* [L] */
    float *xf;             /* [R,D] final residual stream */
    float *zf;             /* [R,D] LNf output */
    float *meanf, *rstdf;  /* [R] */
    float *pooled;         /* [B,D] */
    float *probs;          /* [B,C] */
    /* backward scratch */
    float *dx, *du, *dog, *dob, *dqkv; /* [R,D] x4 and [R,3D] */
    float *da1, *dh1;      /* [R,F] x2 */
    float *dpooled;        /* [B,D] */
    float *dlogits;        /* [B,C] */
    float *scratch;        /* [T*T] */
    size_t *att_off;       /* [B] */
    size_t *row_off;       /* [B+1] */
    int n;                 /* inputs in the last forward */
    size_t rows;           /* packed rows in the last forward */
};

/* 1 when layer_budgets does not fit fixed_budget: 1..H for each layer with a per-layer budget, else all 0. */
static int layer_budgets_bad(const bf_model_config *c) {
    int per_layer = c->fixed_budget == BF_FIXED_PER_LAYER;
    for (int l = 0; l < BF_MAX_LAYERS; l++) {
        int k = c->layer_budgets[l];
        if (per_layer && l < c->n_layers ? k < 1 || k > c->n_heads : k != 0) return 1;
    }
    return 0;
}

int bf_model_config_check(const bf_model_config *c, char *msg, size_t len) {
    const char *why = NULL;
    if (c->vocab_size < 2) why = "vocab_size must be at least 2 (PAD and UNK)";
    else if (c->max_len < 1) why = "max_len must be positive";
    else if (c->n_heads < 2 || c->n_heads > BF_MAX_HEADS) why = "n_heads must be in 2..32";
    else if (c->d_model < 1 || c->d_model % c->n_heads) why = "d_model must be a positive multiple of n_heads";
    else if (c->n_layers < 1) why = "n_layers must be positive";
    else if (c->d_ff < 1) why = "d_ff must be positive";
    else if (c->n_classes < 2) why = "n_classes must be at least 2";
    else if (c->full_heads != 0 && c->full_heads != 1) why = "full_heads must be 0 or 1";
    else if (c->n_layers > BF_MAX_LAYERS) why = "n_layers must be at most 64";
    else if ((c->fixed_budget < 0 && c->fixed_budget != BF_FIXED_PER_LAYER) || c->fixed_budget > c->n_heads)
        why = "fixed_budget must be in 0..n_heads (or -1: a fixed budget per layer, layer_budgets)";
    else if (layer_budgets_bad(c)) why = c->fixed_budget == BF_FIXED_PER_LAYER
                                             ? "layer_budgets must hold one budget in 1..n_heads per layer"
                                             : "layer_budgets must be all 0 unless fixed_budget = -1";
    else if (c->full_heads && c->fixed_budget) why = "full_heads and fixed_budget exclude each other";
    else if (c->gate_norm != 0 && c->gate_norm != 1) why = "gate_norm must be 0 or 1";
    else if (c->budget_hidden < 0 || c->budget_hidden > BF_MAX_BUDGET_HIDDEN) why = "budget_hidden must be in 0..4096";
    else if (c->budget_hidden && (c->full_heads || c->fixed_budget))
        why = "budget_hidden needs a learned budget (full_heads = 0 and fixed_budget = 0)";
    if (why) {
        snprintf(msg, len, "%s", why);
        return -1;
    }
    return 0;
}

/* ---- parameter table ---- */

typedef struct {
    bf_tensor_info *t;
    int n, cap;
    size_t total;
} table_builder;

static void table_add(table_builder *tb, const char *name, int d0, int d1, int decay) {
    if (tb->n == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        tb->t = bf_xrealloc(tb->t, (size_t)tb->cap * sizeof *tb->t);
    }
    bf_tensor_info *ti = &tb->t[tb->n++];
    memset(ti, 0, sizeof *ti);
    snprintf(ti->name, sizeof ti->name, "%s", name);
    ti->ndim = d1 > 0 ? 2 : 1;
    ti->shape[0] = d0;
    ti->shape[1] = d1 > 0 ? d1 : 0;
    ti->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    ti->offset = tb->total;
    ti->decay = decay;
    tb->total += ti->numel;
}

/* Builds the table in block order: embeddings, layers 0..L-1, final LayerNorm, classifier. Within a layer
 * the order is that of the forward pass (LN1, router, attention, LN2, FFN), so backward finishes the
 * gradients in exactly descending block order: a gradient allreduce can then send contiguous buckets as
 * soon as backward completes them (see notify_range). budget_hidden > 0 adds the budget predictor's hidden
 * layer (3 tensors) after router/b_bud, inside the router's group; without it the table is unchanged. */
enum { LAYER_TENSORS = 16, BUDGET_HIDDEN_TENSORS = 3 };
static int layer_tensors(const bf_model_config *c) {
    return LAYER_TENSORS + (c->budget_hidden ? BUDGET_HIDDEN_TENSORS : 0);
}
static void build_table(bf_model *m) {
    const bf_model_config *c = &m->cfg;
    int V = c->vocab_size, T = c->max_len, D = c->d_model, H = c->n_heads, F = c->d_ff, C = c->n_classes;
    table_builder tb = {0};
    char name[64];
    table_add(&tb, "tok_emb", V, D, 0);
    table_add(&tb, "pos_emb", T, D, 0);
    for (int l = 0; l < c->n_layers; l++) {
#define ADD(suffix, d0, d1, decay)                                                                                 \
    do {                                                                                                           \
        snprintf(name, sizeof name, "layers/%d/%s", l, suffix);                                                    \
        table_add(&tb, name, d0, d1, decay);                                                                       \
    } while (0)
        ADD("ln1/gamma", D, 0, 0);
        ADD("ln1/beta", D, 0, 0);
        ADD("router/w_rel", D, H, 1);
        ADD("router/b_rel", H, 0, 0);
        ADD("router/w_bud", D, 0, 0);
        ADD("router/b_bud", 1, 0, 0);
        if (c->budget_hidden) {
            /* W_bud_h is a matmul's matrix (decayed, as w_rel); w_bud_o is the output vector (not, as w_bud). */
            ADD("router/w_bud_h", D, c->budget_hidden, 1);
            ADD("router/b_bud_h", c->budget_hidden, 0, 0);
            ADD("router/w_bud_o", c->budget_hidden, 0, 0);
        }
        ADD("attn/w_qkv", D, 3 * D, 1);
        ADD("attn/b_qkv", 3 * D, 0, 0);
        ADD("attn/w_out", D, D, 1);
        ADD("attn/b_out", D, 0, 0);
        ADD("ln2/gamma", D, 0, 0);
        ADD("ln2/beta", D, 0, 0);
        ADD("ffn/w1", D, F, 1);
        ADD("ffn/b1", F, 0, 0);
        ADD("ffn/w2", F, D, 1);
        ADD("ffn/b2", D, 0, 0);
#undef ADD
        BF_CHECK(tb.n == 2 + (l + 1) * layer_tensors(c), "layer tensor count changed: update LAYER_TENSORS");
    }
    table_add(&tb, "ln_f/gamma", D, 0, 0);
    table_add(&tb, "ln_f/beta", D, 0, 0);
    table_add(&tb, "classifier/w", D, C, 1);
    table_add(&tb, "classifier/b", C, 0, 0);
    m->tensors = tb.t;
    m->n_tensors = tb.n;
    m->n_params = tb.total;
}

/* Points a view at a block laid out as the table says (the table order is fixed above). */
static void bind_view(bf_param_view *v, float *base, const bf_model *m) {
    const bf_tensor_info *t = m->tensors;
    int i = 0;
    v->tok_emb = base + t[i++].offset;
    v->pos_emb = base + t[i++].offset;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        bf_layer_params *p = &v->layers[l];
        p->ln1_g = base + t[i++].offset;
        p->ln1_b = base + t[i++].offset;
        p->w_rel = base + t[i++].offset;
        p->b_rel = base + t[i++].offset;
        p->w_bud = base + t[i++].offset;
        p->b_bud = base + t[i++].offset;
        p->w_bud_h = p->b_bud_h = p->w_bud_o = NULL;
        if (m->cfg.budget_hidden) {
            p->w_bud_h = base + t[i++].offset;
            p->b_bud_h = base + t[i++].offset;
            p->w_bud_o = base + t[i++].offset;
        }
        p->w_qkv = base + t[i++].offset;
        p->b_qkv = base + t[i++].offset;
        p->w_out = base + t[i++].offset;
        p->b_out = base + t[i++].offset;
        p->ln2_g = base + t[i++].offset;
        p->ln2_b = base + t[i++].offset;
        p->w1 = base + t[i++].offset;
        p->b1 = base + t[i++].offset;
        p->w2 = base + t[i++].offset;
        p->b2 = base + t[i++].offset;
    }
    v->lnf_g = base + t[i++].offset;
    v->lnf_b = base + t[i++].offset;
    v->cls_w = base + t[i++].offset;
    v->cls_b = base + t[i++].offset;
    BF_CHECK(i == m->n_tensors, "parameter table and view disagree (%d vs %d)", i, m->n_tensors);
}

const bf_tensor_info *bf_model_tensor(const bf_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* ---- activation arena ---- */

/* Floats of the activation arena for max_batch inputs of up to max_len tokens. */
static size_t acts_floats(const bf_model *m) {
    const bf_model_config *c = &m->cfg;
    size_t B = (size_t)m->max_batch, T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads;
    size_t F = (size_t)c->d_ff, C = (size_t)c->n_classes, L = (size_t)c->n_layers;
    size_t R = B * T;
    size_t per_layer = R * D * 6 + R * 3 * D + B * H * T * T + R * 4 + R * F * 2 + bf_router_state_floats(B, D, H, (size_t)c->budget_hidden);
    return L * per_layer + R * D * 2 + R * 2 + B * D + B * C /* forward */
           + R * D * 4 + R * 3 * D + 2 * R * F + B * D + B * C + T * T; /* backward */
}

/* Carves the activations out of `block` (acts_floats(m) floats, zeroed). */
static void bind_acts(bf_model *m, float *block) {
    const bf_model_config *c = &m->cfg;
    size_t B = (size_t)m->max_batch, T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads;
    size_t F = (size_t)c->d_ff, C = (size_t)c->n_classes, L = (size_t)c->n_layers;
    size_t R = B * T;
    bf_acts *a = bf_xcalloc(1, sizeof *a);
    a->rows_max = R;
    a->layers = bf_xcalloc(L, sizeof *a->layers);
    size_t total = acts_floats(m);
    a->block = block;
    a->block_floats = total;
    float *p = a->block;
#define TAKE(ptr, count)                                                                                           \
    do {                                                                                                           \
        (ptr) = p;                                                                                                 \
        p += (count);                                                                                              \
    } while (0)
    for (size_t l = 0; l < L; l++) {
        layer_acts *la = &a->layers[l];
        TAKE(la->x, R * D);
        TAKE(la->u, R * D);
        TAKE(la->mean1, R);
        TAKE(la->rstd1, R);
        TAKE(la->qkv, R * 3 * D);
        TAKE(la->att, B * H * T * T);
        TAKE(la->o, R * D);
        TAKE(la->og, R * D);
        TAKE(la->xm, R * D);
        TAKE(la->u2, R * D);
        TAKE(la->mean2, R);
        TAKE(la->rstd2, R);
        TAKE(la->h1, R * F);
        TAKE(la->a1, R * F);
        p = bf_router_state_bind(&la->rt, p, B, D, H, (size_t)c->budget_hidden);
    }
    TAKE(a->xf, R * D);
    TAKE(a->zf, R * D);
    TAKE(a->meanf, R);
    TAKE(a->rstdf, R);
    TAKE(a->pooled, B * D);
    TAKE(a->probs, B * C);
    TAKE(a->dx, R * D);
    TAKE(a->du, R * D);
    TAKE(a->dog, R * D);
    TAKE(a->dob, R * D);
    TAKE(a->dqkv, R * 3 * D);
    TAKE(a->da1, R * F);
    TAKE(a->dh1, R * F);
    TAKE(a->dpooled, B * D);
    TAKE(a->dlogits, B * C);
    TAKE(a->scratch, T * T);
#undef TAKE
    BF_CHECK((size_t)(p - a->block) == total, "activation arena size mismatch");
    a->att_off = bf_xcalloc(B, sizeof(size_t));
    a->row_off = bf_xcalloc(B + 1, sizeof(size_t));
    m->acts = a;
}

void bf_model_init(bf_model *m, const bf_model_config *cfg, int max_batch) {
    char msg[256];
    BF_CHECK(bf_model_config_check(cfg, msg, sizeof msg) == 0, "invalid model configuration: %s", msg);
    BF_CHECK(max_batch >= 1, "max_batch must be positive");
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->max_batch = max_batch;
    build_table(m);
    /* One arena: parameters, gradients, activations. Training touches nothing else per step. */
    size_t act = acts_floats(m);
    m->params = bf_xcalloc(2 * m->n_params + act, sizeof(float));
    m->grads = m->params + m->n_params;
    m->p.layers = bf_xcalloc((size_t)cfg->n_layers, sizeof(bf_layer_params));
    m->g.layers = bf_xcalloc((size_t)cfg->n_layers, sizeof(bf_layer_params));
    bind_view(&m->p, m->params, m);
    bind_view(&m->g, m->grads, m);
    bind_acts(m, m->grads + m->n_params);
    size_t B = (size_t)max_batch, L = (size_t)cfg->n_layers;
    m->logits = bf_xcalloc(B * (size_t)cfg->n_classes, sizeof(float));
    m->budget = bf_xcalloc(B * L, sizeof(int32_t));
    m->head_mask = bf_xcalloc(B * L, sizeof(uint32_t));
    m->khat = bf_xcalloc(B * L, sizeof(float));
    m->ce = bf_xcalloc(B, sizeof(float));
    m->sel_mass = bf_xcalloc(B * L, sizeof(float));
    m->probs = m->acts->probs;
}

void bf_model_free(bf_model *m) {
    if (!m) return;
    bf_model_infer_free(m);
    bf_mm_free(m);
    free(m->params); /* the arena: gradients and activations too */
    free(m->tensors);
    free(m->p.layers);
    free(m->g.layers);
    if (m->acts) {
        free(m->acts->layers);
        free(m->acts->att_off);
        free(m->acts->row_off);
        free(m->acts);
    }
    free(m->logits);
    free(m->budget);
    free(m->head_mask);
    free(m->khat);
    free(m->ce);
    free(m->sel_mass);
    memset(m, 0, sizeof *m);
}

size_t bf_model_activation_bytes(const bf_model *m) { return m->acts ? m->acts->block_floats * sizeof(float) : 0; }

void bf_model_zero_grad(bf_model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

void bf_model_init_weights(bf_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *t = &m->tensors[i];
        float *w = m->params + t->offset;
        const char *leaf = strrchr(t->name, '/');
        leaf = leaf ? leaf + 1 : t->name;
        if (!strcmp(leaf, "gamma")) {
            for (size_t j = 0; j < t->numel; j++) w[j] = 1.0f;
        } else if (t->ndim == 2 || !strcmp(leaf, "w_bud") || !strcmp(leaf, "w_bud_o")) {
            /* N(0, 0.02): each element is keyed by (tensor number, element), so the values do not depend
             * on allocation order or on the number of ranks. */
            for (size_t j = 0; j < t->numel; j++)
                w[j] = (float)(0.02 * bf_rng_normal(bf_rng_key(seed, 0, j, (uint32_t)i, BF_STREAM_INIT, 0)));
        } else {
            /* Biases start at zero; b_bud = 0 puts the continuous budget at (H + 1) / 2, mid-range. */
            memset(w, 0, t->numel * sizeof(float));
        }
    }
}

void bf_explore_draw(const bf_model_config *cfg, uint64_t seed, const int64_t *epoch, const int64_t *index, int n,
                     float eps, float *gumbel, int32_t *k_random) {
    int L = cfg->n_layers, H = cfg->n_heads;
    for (int b = 0; b < n; b++) {
        for (int l = 0; l < L; l++) {
            float *g = gumbel + ((size_t)b * L + l) * H;
            int32_t *kr = &k_random[(size_t)b * L + l];
            if (eps <= 0.0f) {
                memset(g, 0, (size_t)H * sizeof(float));
                *kr = 0;
                continue;
            }
            uint64_t e = (uint64_t)epoch[b], i = (uint64_t)index[b];
            for (int h = 0; h < H; h++)
                g[h] = (float)bf_rng_gumbel(bf_rng_key(seed, e, i, (uint32_t)l, BF_STREAM_GUMBEL, (uint32_t)h));
            double coin = bf_rng_uniform(bf_rng_key(seed, e, i, (uint32_t)l, BF_STREAM_COIN, 0));
            if (coin < (double)eps) {
                double u = bf_rng_uniform(bf_rng_key(seed, e, i, (uint32_t)l, BF_STREAM_KDRAW, 0));
                int k = 1 + (int)(u * H);
                *kr = k > H ? H : k;
            } else {
                *kr = 0;
            }
        }
    }
}

/* ---- forward ---- */

static void gate_heads(float *restrict og, const float *restrict o, const float *restrict gate, size_t rows,
                       size_t D, size_t H) {
    size_t dh = D / H;
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 0; h < H; h++) {
            float g = gate[h];
            const float *src = o + r * D + h * dh;
            float *dst = og + r * D + h * dh;
            for (size_t i = 0; i < dh; i++) dst[i] = g * src[i];
        }
}

void bf_model_layer_budgets_text(const bf_model_config *c, char *buf, size_t len) {
    size_t at = 0;
    if (len) buf[0] = '\0';
    for (int l = 0; c->fixed_budget == BF_FIXED_PER_LAYER && l < c->n_layers && at < len; l++) {
        int n = snprintf(buf + at, len - at, "%s%d", l ? "," : "", c->layer_budgets[l]);
        if (n < 0) break;
        at += (size_t)n;
    }
}

bf_router_params_mode bf_model_router_mode(const bf_model_config *c) {
    bf_router_mode mode = c->full_heads ? BF_ROUTER_FULL : c->fixed_budget ? BF_ROUTER_FIXED : BF_ROUTER_LEARNED;
    return (bf_router_params_mode){
        .mode = mode, .fixed_budget = c->fixed_budget, .n_heads = c->n_heads, .gate_norm = c->gate_norm,
        .budget_hidden = c->budget_hidden,
        .layer_budgets = c->fixed_budget == BF_FIXED_PER_LAYER ? c->layer_budgets : NULL};
}

bf_budget_weights bf_model_budget_weights(const bf_layer_params *p) {
    return (bf_budget_weights){.w = p->w_bud, .b = p->b_bud, .w_h = p->w_bud_h, .b_h = p->b_bud_h, .w_o = p->w_bud_o};
}

void bf_model_record_routes(bf_model *m, const bf_router_state *rt, size_t l, int n) {
    size_t L = (size_t)m->cfg.n_layers;
    for (int b = 0; b < n; b++) {
        m->budget[(size_t)b * L + l] = rt->k[b];
        m->head_mask[(size_t)b * L + l] = rt->mask_bits[b];
        m->khat[(size_t)b * L + l] = rt->khat[b];
        m->sel_mass[(size_t)b * L + l] = rt->sel_mass[b];
    }
}

double bf_model_head_forward(bf_model *m, const bf_batch *batch, const float *x, float *z, float *mean, float *rstd,
                             float *pooled, float *probs, size_t rows) {
    size_t n = (size_t)batch->n, D = (size_t)m->cfg.d_model, C = (size_t)m->cfg.n_classes;
    bf_layernorm_forward(z, mean, rstd, x, m->p.lnf_g, m->p.lnf_b, rows, D);
    bf_masked_mean_forward(pooled, z, batch->lengths, n, D);
    bf_mm_forward(m, m->logits, pooled, m->p.cls_w, m->p.cls_b, n, D, C);
    bf_cross_entropy_forward(batch->labels ? m->ce : NULL, probs, m->logits, batch->labels, n, C);
    double ce_sum = 0.0;
    if (batch->labels)
        for (size_t b = 0; b < n; b++) ce_sum += m->ce[b];
    return ce_sum;
}

double bf_model_forward(bf_model *m, const bf_batch *batch, const bf_explore *ex) {
    const bf_model_config *c = &m->cfg;
    bf_acts *a = m->acts;
    int n = batch->n;
    BF_CHECK(n >= 1 && n <= m->max_batch, "batch of %d inputs, model sized for 1..%d", n, m->max_batch);
    size_t T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads, F = (size_t)c->d_ff;
    size_t L = (size_t)c->n_layers;
    /* Packed row offsets and attention offsets. */
    size_t rows = 0, att = 0;
    for (int b = 0; b < n; b++) {
        int len = batch->lengths[b];
        BF_CHECK(len >= 1 && (size_t)len <= T, "input %d has length %d outside 1..%zu", b, len, T);
        a->row_off[b] = rows;
        a->att_off[b] = att;
        rows += (size_t)len;
        att += H * (size_t)len * (size_t)len;
    }
    a->row_off[n] = rows;
    a->n = n;
    a->rows = rows;
    bf_router_params_mode mode = bf_model_router_mode(c);
    bf_mm_sync_weights(m); /* bf16: the weight copies, once after each update */

    bf_embedding_forward(a->layers[0].x, batch->tokens, batch->lengths, m->p.tok_emb, m->p.pos_emb, (size_t)n, T, D);
    for (size_t l = 0; l < L; l++) {
        layer_acts *la = &a->layers[l];
        const bf_layer_params *p = &m->p.layers[l];
        float *xnext = l + 1 < L ? a->layers[l + 1].x : a->xf;
        bf_layernorm_forward(la->u, la->mean1, la->rstd1, la->x, p->ln1_g, p->ln1_b, rows, D);
        /* Router: head budget and relevance from the summary of the input. */
        bf_budget_weights bud = bf_model_budget_weights(p);
        bf_router_forward(&la->rt, &mode, la->u, batch->lengths, p->w_rel, p->b_rel, &bud, ex, batch->k_override, l,
                          L, (size_t)n, D);
        bf_mm_forward(m, la->qkv, la->u, p->w_qkv, p->b_qkv, rows, D, 3 * D);
        for (int b = 0; b < n; b++) {
            size_t len = (size_t)batch->lengths[b], r0 = a->row_off[b];
            /* Training computes every head: the straight-through gradient needs unselected heads too. */
            bf_mm_attention_forward(m, la->o + r0 * D, la->att + a->att_off[b], la->qkv + r0 * 3 * D, len, D, H);
            gate_heads(la->og + r0 * D, la->o + r0 * D, la->rt.gate + (size_t)b * H, len, D, H);
        }
        /* xm = x + b_out + og · W_out (the sgemm accumulates onto the residual) */
        bf_add_rows_bias(la->xm, la->x, p->b_out, rows, D);
        bf_mm_accumulate(m, la->xm, la->og, p->w_out, rows, D, D);
        bf_layernorm_forward(la->u2, la->mean2, la->rstd2, la->xm, p->ln2_g, p->ln2_b, rows, D);
        bf_mm_forward(m, la->h1, la->u2, p->w1, p->b1, rows, D, F);
        bf_gelu_forward(la->a1, la->h1, rows * F);
        bf_add_rows_bias(xnext, la->xm, p->b2, rows, D); /* x_next = xm + b2 + a1 W2 */
        bf_mm_accumulate(m, xnext, la->a1, p->w2, rows, F, D);
        bf_model_record_routes(m, &la->rt, l, n);
    }
    return bf_model_head_forward(m, batch, a->xf, a->zf, a->meanf, a->rstdf, a->pooled, a->probs, rows);
}

double bf_model_budget_sum(const bf_model *m, int n) {
    const bf_model_config *c = &m->cfg;
    if (c->full_heads || c->fixed_budget) return 0.0;
    double s = 0.0, H = c->n_heads;
    for (size_t i = 0; i < (size_t)n * (size_t)c->n_layers; i++) s += ((double)m->khat[i] - 1.0) / (H - 1.0);
    return s;
}

/* ---- backward ---- */

/* Tells the caller (the trainer's gradient allreduce) that tensors hi, hi-1, ..., lo are final. */
static void notify_range(const bf_model *m, int hi, int lo) {
    if (!m->grad_ready) return;
    for (int i = hi; i >= lo; i--) m->grad_ready(m->grad_ready_ctx, i);
}

/* dgate[b,h] = <dog_h, o_h> over the input's rows; dob = dog * gate (gradient wrt ungated output). */
static void gate_heads_backward(float *restrict dgate, float *restrict dob, const float *restrict dog,
                                const float *restrict o, const float *restrict gate, size_t rows, size_t D, size_t H) {
    size_t dh = D / H;
    for (size_t h = 0; h < H; h++) dgate[h] = 0.0f;
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 0; h < H; h++) {
            const float *d = dog + r * D + h * dh, *x = o + r * D + h * dh;
            float *db = dob + r * D + h * dh;
            float g = gate[h], s = 0.0f;
            for (size_t i = 0; i < dh; i++) {
                s += d[i] * x[i];
                db[i] = d[i] * g;
            }
            dgate[h] += s;
        }
}

void bf_model_backward(bf_model *m, const bf_batch *batch, const bf_explore *ex, float ce_scale, float cost_scale) {
    const bf_model_config *c = &m->cfg;
    bf_acts *a = m->acts;
    int n = a->n;
    BF_CHECK(n == batch->n, "backward batch differs from the last forward");
    BF_CHECK(batch->labels != NULL, "backward needs labels");
    size_t T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads, F = (size_t)c->d_ff;
    size_t C = (size_t)c->n_classes, L = (size_t)c->n_layers, rows = a->rows;
    bf_router_params_mode mode = bf_model_router_mode(c);

    /* classifier and pooling */
    memset(a->dlogits, 0, (size_t)n * C * sizeof(float));
    if (batch->soft_targets) {
        /* distillation: d/dlogits of cross-entropy against a distribution q is probs - q */
        for (size_t i = 0; i < (size_t)n * C; i++) a->dlogits[i] = ce_scale * (a->probs[i] - batch->soft_targets[i]);
    } else {
        bf_cross_entropy_backward(a->dlogits, a->probs, batch->labels, ce_scale, (size_t)n, C);
    }
    memset(a->dpooled, 0, (size_t)n * D * sizeof(float));
    bf_mm_backward(m, a->dpooled, m->g.cls_w, m->g.cls_b, a->dlogits, a->pooled, m->p.cls_w, (size_t)n, D, C);
    int top = m->n_tensors - 1; /* classifier/b; then classifier/w, ln_f/beta, ln_f/gamma */
    notify_range(m, top, top - 1);
    memset(a->du, 0, rows * D * sizeof(float));
    bf_masked_mean_backward(a->du, a->dpooled, batch->lengths, (size_t)n, D);
    memset(a->dx, 0, rows * D * sizeof(float));
    bf_layernorm_backward(a->dx, m->g.lnf_g, m->g.lnf_b, a->du, a->xf, m->p.lnf_g, a->meanf, a->rstdf, rows, D);
    notify_range(m, top - 2, top - 3);

    for (size_t li = L; li-- > 0;) {
        layer_acts *la = &a->layers[li];
        const bf_layer_params *p = &m->p.layers[li];
        bf_layer_params *g = &m->g.layers[li];
        int base = 2 + (int)li * layer_tensors(c); /* table index of layers/<li>/ln1/gamma */
        int x = layer_tensors(c) - LAYER_TENSORS;  /* the budget hidden layer's tensors, after router/b_bud */
        /* feed-forward: x_next = xm + W2 gelu(W1 LN2(xm)); a->dx holds d x_next and becomes d xm */
        memset(a->da1, 0, rows * F * sizeof(float));
        bf_mm_backward(m, a->da1, g->w2, g->b2, a->dx, la->a1, p->w2, rows, F, D);
        notify_range(m, base + 15 + x, base + 14 + x);
        memset(a->dh1, 0, rows * F * sizeof(float));
        bf_gelu_backward(a->dh1, la->h1, a->da1, rows * F);
        memset(a->du, 0, rows * D * sizeof(float));
        bf_mm_backward(m, a->du, g->w1, g->b1, a->dh1, la->u2, p->w1, rows, D, F);
        notify_range(m, base + 13 + x, base + 12 + x);
        bf_layernorm_backward(a->dx, g->ln2_g, g->ln2_b, a->du, la->xm, p->ln2_g, la->mean2, la->rstd2, rows, D);
        notify_range(m, base + 11 + x, base + 10 + x);
        /* attention output projection: xm = x + og W_out + b_out */
        memset(a->dog, 0, rows * D * sizeof(float));
        bf_mm_backward(m, a->dog, g->w_out, g->b_out, a->dx, la->og, p->w_out, rows, D, D);
        notify_range(m, base + 9 + x, base + 8 + x);
        /* gates, then attention */
        memset(a->dqkv, 0, rows * 3 * D * sizeof(float));
        for (int b = 0; b < n; b++) {
            size_t len = (size_t)batch->lengths[b], r0 = a->row_off[b];
            gate_heads_backward(la->rt.dgate + (size_t)b * H, a->dob + r0 * D, a->dog + r0 * D, la->o + r0 * D,
                                la->rt.gate + (size_t)b * H, len, D, H);
            bf_mm_attention_backward(m, a->dqkv + r0 * 3 * D, a->scratch, a->dob + r0 * D, la->qkv + r0 * 3 * D,
                                     la->att + a->att_off[b], len, D, H);
        }
        memset(a->du, 0, rows * D * sizeof(float));
        bf_mm_backward(m, a->du, g->w_qkv, g->b_qkv, a->dqkv, la->u, p->w_qkv, rows, D, 3 * D);
        notify_range(m, base + 7 + x, base + 6 + x);
        /* router: gates -> relevance and budget -> summary -> u */
        bf_budget_weights bud = bf_model_budget_weights(p), dbud = bf_model_budget_weights(g);
        bf_router_backward(&la->rt, &mode, a->du, batch->lengths, p->w_rel, &bud, g->w_rel, g->b_rel, &dbud, ex,
                           cost_scale, (size_t)n, D);
        notify_range(m, base + 5 + x, base + 2);
        bf_layernorm_backward(a->dx, g->ln1_g, g->ln1_b, a->du, la->x, p->ln1_g, la->mean1, la->rstd1, rows, D);
        notify_range(m, base + 1, base);
    }
    bf_embedding_backward(m->g.tok_emb, m->g.pos_emb, a->dx, batch->tokens, batch->lengths, (size_t)n, T, D);
    notify_range(m, 1, 0);
}

/* ---- FLOPs ---- */

double bf_model_attention_flops(const bf_model_config *c, int n, int heads) {
    double D = c->d_model, dh = (double)c->d_model / c->n_heads, k = heads, N = n;
    /* q,k,v projections of the computed heads, scores and weighted sum, rows of W_out */
    return 2.0 * N * D * 3.0 * dh * k + 2.0 * 2.0 * N * N * dh * k + 2.0 * N * dh * k * D;
}

double bf_model_forward_flops(const bf_model_config *c, int n, int heads) {
    double D = c->d_model, F = c->d_ff, N = n, H = c->n_heads;
    double per_layer = bf_model_attention_flops(c, n, heads) + 2.0 * 2.0 * N * D * F;
    if (!c->full_heads) per_layer += 2.0 * D * (H + 1.0); /* router on the summary */
    if (c->budget_hidden) per_layer += 2.0 * c->budget_hidden * (D + 1.0); /* its budget hidden layer */
    return c->n_layers * per_layer + 2.0 * D * c->n_classes;
}

/* ---- the fields of bf_model_config (model.h) ---------------------------------------------------- */

const bf_model_field bf_model_fields[BF_MODEL_N_FIELDS] = {
    {"vocab_size", "data.train", 0, 0},     {"max_len", "data.train", 0, 0},      {"d_model", "model.d_model", 0, 0},
    {"n_heads", "model.n_heads", 0, 0},     {"n_layers", "model.n_layers", 0, 0}, {"d_ff", "model.d_ff", 0, 0},
    {"n_classes", "data.train", 0, 0},      {"full_heads", "model.full_heads", 0, 0},
    {"fixed_budget", "model.fixed_budget", 0, 0}, {"gate_norm", "model.gate_norm", 1, 1},
    {"budget_hidden", "model.budget_hidden", 1, BF_MAX_BUDGET_HIDDEN}};

static int *field_ptr(bf_model_config *c, int i) {
    int *p[BF_MODEL_N_FIELDS] = {&c->vocab_size, &c->max_len, &c->d_model,    &c->n_heads,      &c->n_layers,
                                 &c->d_ff,       &c->n_classes, &c->full_heads, &c->fixed_budget, &c->gate_norm,
                                 &c->budget_hidden};
    BF_CHECK(i >= 0 && i < BF_MODEL_N_FIELDS, "model field %d", i);
    return p[i];
}

int bf_model_field_get(const bf_model_config *c, int i) {
    bf_model_config copy = *c;
    return *field_ptr(&copy, i);
}

void bf_model_field_set(bf_model_config *c, int i, int v) { *field_ptr(c, i) = v; }
