/* model_infer: inference that computes only the selected heads (see bf_model_infer in model.h).
 *
 * Per layer: LN1 and the router run on every input; the inputs are then grouped by their head set S. For
 * each group the q, k, v columns of the heads in S are gathered from W_qkv into one [D, 3 k dh] matrix and
 * the group's rows into one block, so the projection is a single sgemm of the width the group needs;
 * attention runs on k heads only; the gated head outputs meet only the k dh rows of W_out that belong to S.
 * Unselected heads cost nothing: no columns, no scores, no output rows.
 *
 * In bf16 (bf_model_set_precision) the projections and the FFN take bf16 inputs from the weights' bf16
 * copies (gathered the same way) and accumulate in fp32; the attention itself stays the fused fp32 kernel
 * of attention_infer.c, whose score rows never leave L1: per-head oneDNN calls would add more call overhead
 * than the bf16 arithmetic saves on products of n x dh x n. */
#include <stdlib.h>
#include <string.h>

#include "budgetformer/attention_infer.h"
#include "budgetformer/model.h"
#include "model_parts.h"
#include "budgetformer/ops.h"
#include "budgetformer/router.h"
#include "budgetformer/util.h"

/* Rows per FFN block: the hidden block FFN_ROWS x d_ff (1 MB at d_ff 1024) stays in a core's L2. Measured on
 * the standard benchmark shape: 6.7% more samples/s than one block of all rows; 128 and 512 rows are within
 * noise of 256, 64 is slower (the sgemm calls get too small). */
#define FFN_ROWS 256

struct bf_infer {
    size_t rows_max;
    float *x, *u, *h1;            /* [R,D] x2, [FFN_ROWS,F] */
    float *ug, *qkv, *o, *y;      /* group blocks: [R,D], [R,3D], [R,D], [R,D] */
    float *wg, *bg, *wog;         /* gathered weights: [D,3D], [3D], [D,D] */
    bf_bf16 *wgb, *wogb;          /* bf16: the same gathered from the weights' bf16 copies */
    float *att;                   /* attention scratch for one input (bf_attention_infer_scratch_floats) */
    float *mean, *rstd;           /* [R] */
    float *pooled, *probs;        /* [B,D], [B,C] */
    float *router_block;
    bf_router_state rt;
    size_t *row_off;              /* [B+1] */
    int *order;                   /* [B] inputs sorted by head set */
};

static bf_infer *infer_alloc(const bf_model *m) {
    const bf_model_config *c = &m->cfg;
    size_t B = (size_t)m->max_batch, T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads;
    size_t F = (size_t)c->d_ff, C = (size_t)c->n_classes, R = B * T;
    bf_infer *s = bf_xcalloc(1, sizeof *s);
    s->rows_max = R;
    s->x = bf_xcalloc(R * D, sizeof(float));
    s->u = bf_xcalloc(R * D, sizeof(float));
    s->h1 = bf_xcalloc((R < FFN_ROWS ? R : FFN_ROWS) * F, sizeof(float));
    s->ug = bf_xcalloc(R * D, sizeof(float));
    s->qkv = bf_xcalloc(R * 3 * D, sizeof(float));
    s->o = bf_xcalloc(R * D, sizeof(float));
    s->y = bf_xcalloc(R * D, sizeof(float));
    s->wg = bf_xcalloc(D * 3 * D, sizeof(float));
    s->bg = bf_xcalloc(3 * D, sizeof(float));
    s->wog = bf_xcalloc(D * D, sizeof(float));
    if (m->precision == BF_PREC_BF16) {
        s->wgb = bf_xcalloc(D * 3 * D, sizeof(bf_bf16));
        s->wogb = bf_xcalloc(D * D, sizeof(bf_bf16));
    }
    s->att = bf_xcalloc(bf_attention_infer_scratch_floats(T, D, H), sizeof(float));
    s->mean = bf_xcalloc(R, sizeof(float));
    s->rstd = bf_xcalloc(R, sizeof(float));
    s->pooled = bf_xcalloc(B * D, sizeof(float));
    s->probs = bf_xcalloc(B * C, sizeof(float));
    size_t NB = (size_t)c->budget_hidden;
    s->router_block = bf_xcalloc(bf_router_state_floats(B, D, H, NB), sizeof(float));
    bf_router_state_bind(&s->rt, s->router_block, B, D, H, NB);
    s->row_off = bf_xcalloc(B + 1, sizeof(size_t));
    s->order = bf_xcalloc(B, sizeof(int));
    return s;
}

void bf_model_infer_free(bf_model *m) {
    bf_infer *s = m->infer;
    if (!s) return;
    float *bufs[] = {s->x, s->u, s->h1, s->ug, s->qkv, s->o, s->y, s->wg, s->bg, s->wog,
                     s->att, s->mean, s->rstd, s->pooled, s->probs, s->router_block};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(s->wgb);
    free(s->wogb);
    free(s->row_off);
    free(s->order);
    free(s);
    m->infer = NULL;
}

/* Sort key: inputs with the same head set become neighbours (stable by input index). */
static const uint32_t *g_sort_masks;
static int by_mask(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    uint32_t mi = g_sort_masks[i], mj = g_sort_masks[j];
    if (mi != mj) return mi < mj ? -1 : 1;
    return i - j;
}

/* The q, k, v biases of the k heads in hs, from b_qkv [3D] into bg [3 k dh]. */
static void gather_head_biases(float *restrict bg, const bf_layer_params *p, const int *hs, int k, size_t D,
                               size_t dh) {
    size_t kw = (size_t)k * dh;
    for (size_t part = 0; part < 3; part++)
        for (int j = 0; j < k; j++)
            memcpy(bg + part * kw + (size_t)j * dh, p->b_qkv + part * D + (size_t)hs[j] * dh, dh * sizeof(float));
}

/* Gathers the q, k, v columns (and biases) of the k heads in hs from W_qkv [D, 3D] into wg [D, 3 k dh], and
 * the rows of those heads from W_out [D, D] into wog [k dh, D]. */
static void gather_head_weights(float *restrict wg, float *restrict bg, float *restrict wog,
                                const bf_layer_params *p, const int *hs, int k, size_t D, size_t dh) {
    size_t kw = (size_t)k * dh, w3 = 3 * kw;
    /* 3 k copies of dh floats per row: a plain loop, which the compiler unrolls into a few vector moves, is
     * cheaper than as many memcpy calls of 128 bytes */
    for (size_t r = 0; r < D; r++)
        for (size_t part = 0; part < 3; part++)
            for (int j = 0; j < k; j++) {
                float *restrict dst = wg + r * w3 + part * kw + (size_t)j * dh;
                const float *restrict src = p->w_qkv + r * 3 * D + part * D + (size_t)hs[j] * dh;
                for (size_t i = 0; i < dh; i++) dst[i] = src[i];
            }
    for (int j = 0; j < k; j++)
        memcpy(wog + (size_t)j * dh * D, p->w_out + (size_t)hs[j] * dh * D, dh * D * sizeof(float));
    gather_head_biases(bg, p, hs, k, D, dh);
}

/* gather_head_weights from the bf16 weight copies (the biases stay fp32, gathered by the fp32 form). */
static void gather_head_weights_bf16(bf_bf16 *restrict wg, bf_bf16 *restrict wog, const bf_bf16 *restrict w_qkv,
                                     const bf_bf16 *restrict w_out, const int *hs, int k, size_t D, size_t dh) {
    size_t kw = (size_t)k * dh, w3 = 3 * kw;
    for (size_t r = 0; r < D; r++)
        for (size_t part = 0; part < 3; part++)
            for (int j = 0; j < k; j++) {
                bf_bf16 *restrict dst = wg + r * w3 + part * kw + (size_t)j * dh;
                const bf_bf16 *restrict src = w_qkv + r * 3 * D + part * D + (size_t)hs[j] * dh;
                for (size_t i = 0; i < dh; i++) dst[i] = src[i];
            }
    for (int j = 0; j < k; j++) memcpy(wog + (size_t)j * dh * D, w_out + (size_t)hs[j] * dh * D, dh * D * sizeof *wog);
}

/* The attention block of one layer for the inputs order[g0..g1) which share the head set `mask`. */
static void attend_group(bf_infer *s, bf_model *m, const bf_layer_params *p, const int32_t *lengths,
                         int g0, int g1, uint32_t mask, bf_infer_stats *st) {
    const bf_model_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, H = (size_t)c->n_heads, dh = D / H;
    int hs[BF_MAX_HEADS], k = 0;
    for (size_t h = 0; h < H; h++)
        if (mask >> h & 1u) hs[k++] = (int)h;
    size_t kw = (size_t)k * dh;
    int all = (size_t)k == H; /* every head: use the weights as stored, nothing to gather */
    const float *wq = p->w_qkv, *bq = p->b_qkv, *wo = p->w_out;
    int bf16 = m->precision == BF_PREC_BF16;
    const bf_bf16 *wqb = bf16 ? bf_mm_weight(m, p->w_qkv) : NULL, *wob = bf16 ? bf_mm_weight(m, p->w_out) : NULL;
    if (!all) {
        if (bf16) {
            gather_head_weights_bf16(s->wgb, s->wogb, wqb, wob, hs, k, D, dh);
            gather_head_biases(s->bg, p, hs, k, D, dh);
            wqb = s->wgb;
            wob = s->wogb;
        } else {
            gather_head_weights(s->wg, s->bg, s->wog, p, hs, k, D, dh);
        }
        wq = s->wg;
        bq = s->bg;
        wo = s->wog;
    }
    /* Gather the group's rows of u into one block (a group of one input is already one block). */
    size_t rows = 0;
    const float *ug = s->ug;
    if (g1 - g0 == 1) {
        int b = s->order[g0];
        ug = s->u + s->row_off[b] * D;
        rows = (size_t)lengths[b];
    } else {
        for (int gi = g0; gi < g1; gi++) {
            int b = s->order[gi];
            size_t n = (size_t)lengths[b];
            memcpy(s->ug + rows * D, s->u + s->row_off[b] * D, n * D * sizeof(float));
            rows += n;
        }
    }
    if (bf16) bf_mm_forward_bf16(m, s->qkv, ug, wqb, bq, rows, D, 3 * kw, 0);
    else bf_matmul_forward(s->qkv, ug, wq, bq, rows, D, 3 * kw);
    size_t r0 = 0;
    double att_peak = 0.0;
    for (int gi = g0; gi < g1; gi++) {
        int b = s->order[gi];
        size_t n = (size_t)lengths[b];
        /* k heads of width dh: the kernel sees a model of width k dh with k heads. */
        float gk[BF_MAX_HEADS];
        for (int j = 0; j < k; j++) gk[j] = s->rt.gate[(size_t)b * H + (size_t)hs[j]];
        bf_attention_forward_infer(s->o + r0 * kw, s->att, s->qkv + r0 * 3 * kw, n, kw, (size_t)k, gk);
        double a = (double)bf_attention_infer_scratch_floats(n, kw, (size_t)k) * sizeof(float);
        att_peak = a > att_peak ? a : att_peak;
        r0 += n;
    }
    if (g1 - g0 == 1) {
        /* One input: its rows are contiguous, so the sgemm adds o W_out to them in place (b_out is added with
         * LN2, see bf_model_infer). */
        float *x = s->x + s->row_off[s->order[g0]] * D;
        if (bf16) bf_mm_forward_bf16(m, x, s->o, wob, NULL, rows, kw, D, 1);
        else bf_matmul_accumulate(x, s->o, wo, rows, kw, D);
    } else {
        if (bf16) bf_mm_forward_bf16(m, s->y, s->o, wob, NULL, rows, kw, D, 0);
        else bf_matmul_forward(s->y, s->o, wo, NULL, rows, kw, D);
        /* x += y, scattered back to the inputs' rows */
        r0 = 0;
        for (int gi = g0; gi < g1; gi++) {
            int b = s->order[gi];
            size_t n = (size_t)lengths[b], off = s->row_off[b] * D;
            const float *y = s->y + r0 * D;
            for (size_t i = 0; i < n * D; i++) s->x[off + i] += y[i];
            r0 += n;
        }
    }
    /* What the layer holds for attention: q, k, v of the selected heads for every row of the batch, plus
     * the attention kernel's scratch for the largest input (one input at a time). */
    st->attn_bytes += (double)rows * 3.0 * (double)kw * sizeof(float);
    st->attn_bytes_all_heads = att_peak > st->attn_bytes_all_heads ? att_peak : st->attn_bytes_all_heads;
}

double bf_model_infer(bf_model *m, const bf_batch *batch, bf_infer_stats *stats) {
    const bf_model_config *c = &m->cfg;
    int n = batch->n;
    BF_CHECK(n >= 1 && n <= m->max_batch, "batch of %d inputs, model sized for 1..%d", n, m->max_batch);
    if (!m->infer) m->infer = infer_alloc(m);
    bf_mm_sync_weights(m);
    bf_infer *s = m->infer;
    size_t T = (size_t)c->max_len, D = (size_t)c->d_model, H = (size_t)c->n_heads, F = (size_t)c->d_ff;
    size_t L = (size_t)c->n_layers;
    size_t rows = 0, max_len = 0;
    for (int b = 0; b < n; b++) {
        size_t len = (size_t)batch->lengths[b];
        BF_CHECK(len >= 1 && len <= T, "input %d has length %zu outside 1..%zu", b, len, T);
        s->row_off[b] = rows;
        rows += len;
        max_len = len > max_len ? len : max_len;
    }
    s->row_off[n] = rows;
    bf_router_params_mode mode = bf_model_router_mode(c);
    bf_infer_stats st = {0};
    double layer_bytes_all = 0.0;
    bf_embedding_forward(s->x, batch->tokens, batch->lengths, m->p.tok_emb, m->p.pos_emb, (size_t)n, T, D);
    for (size_t l = 0; l < L; l++) {
        const bf_layer_params *p = &m->p.layers[l];
        bf_layernorm_forward(s->u, s->mean, s->rstd, s->x, p->ln1_g, p->ln1_b, rows, D);
        bf_budget_weights bud = bf_model_budget_weights(p); /* the same router as training, hidden layer included */
        bf_router_forward(&s->rt, &mode, s->u, batch->lengths, p->w_rel, p->b_rel, &bud, NULL, batch->k_override, l,
                          L, (size_t)n, D);
        for (int b = 0; b < n; b++) s->order[b] = b;
        g_sort_masks = s->rt.mask_bits;
        qsort(s->order, (size_t)n, sizeof(int), by_mask);
        bf_infer_stats lst = {0}; /* attn_bytes: q,k,v bytes; attn_bytes_all_heads: largest scratch (reused field) */
        for (int g0 = 0; g0 < n;) {
            uint32_t mask = s->rt.mask_bits[s->order[g0]];
            int g1 = g0 + 1;
            while (g1 < n && s->rt.mask_bits[s->order[g1]] == mask) g1++;
            attend_group(s, m, p, batch->lengths, g0, g1, mask, &lst);
            g0 = g1;
        }
        double used = lst.attn_bytes + lst.attn_bytes_all_heads;
        st.attn_bytes = used > st.attn_bytes ? used : st.attn_bytes;
        double all = (double)rows * 3.0 * (double)D * sizeof(float) + (double)H * (double)(max_len * max_len) * sizeof(float);
        layer_bytes_all = all > layer_bytes_all ? all : layer_bytes_all;
        /* LN2 and the FFN in blocks of rows, so the hidden block [FFN_ROWS, F] that the first sgemm writes is
         * still in cache when GELU and the second sgemm read it (the whole [rows, F] would go to memory and
         * back three times). The residual stream x is updated in place and the element-wise passes are fused:
         * one pass adds b_out, normalises into u and adds b2; gelu(h + b1) in place; x += a W2. */
        for (size_t r0 = 0; r0 < rows; r0 += FFN_ROWS) {
            size_t nr = rows - r0 < FFN_ROWS ? rows - r0 : FFN_ROWS;
            bf_bias_layernorm_bias(s->x + r0 * D, s->u, p->b_out, p->ln2_g, p->ln2_b, p->b2, nr, D);
            bf_mm_forward(m, s->h1, s->u, p->w1, NULL, nr, D, F);
            bf_bias_gelu_inplace(s->h1, p->b1, nr, F);
            bf_mm_accumulate(m, s->x + r0 * D, s->h1, p->w2, nr, F, D);
        }
        bf_model_record_routes(m, &s->rt, l, n);
    }
    double ce_sum = bf_model_head_forward(m, batch, s->x, s->u, s->mean, s->rstd, s->pooled, s->probs, rows);
    if (stats) {
        stats->attn_bytes = st.attn_bytes;
        stats->attn_bytes_all_heads = layer_bytes_all;
    }
    return ce_sum;
}
