/* model_mm: the model's matrix products at its precision (bf_model_set_precision in model.h; the
 * functions in model_parts.h). fp32 calls the OpenBLAS kernels of ops.c unchanged, so fp32 results are those
 * of before bf16 existed. bf16: the weights of the products (attention QKV and output, FFN, classifier) have
 * bf16 copies made once after each update; an activation is rounded to bf16 as it enters a product; oneDNN
 * accumulates in fp32 into the fp32 output. The router's small products stay fp32 (its top-k decisions are
 * discrete, and they are a fraction of a percent of the work). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/bf16.h"
#include "budgetformer/model.h"
#include "budgetformer/ops.h"
#include "budgetformer/util.h"
#include "model_parts.h"

struct bf_mm {
    bf_bf16_gemm *g;
    bf_bf16 *w;        /* the bf16 weight copies, back to back in table order */
    size_t *w_off;     /* [n_tensors] offset of a tensor's copy in w, SIZE_MAX when it has none */
    int stale;         /* 1: m->params changed since the copies were made */
    bf_bf16 *a;        /* [R * max(3D, F)] the activation operand of a product */
    bf_bf16 *b;        /* [R * max(3D, F)] the gradient operand of a backward product */
    bf_bf16 *qkv;      /* [T, 3D] one input's q, k, v */
    bf_bf16 *dout;     /* [T, D] one input's head-output gradient */
    bf_bf16 *att, *ds; /* [H, T, T] one input's probabilities and score gradients */
    float *dsf;        /* [H, T, T] one input's score gradients in fp32 */
};

/* The matrices that go through bf16: every weight matrix but the router's. */
static int has_copy(const bf_tensor_info *t) { return t->decay && !strstr(t->name, "router/"); }

int bf_model_set_precision(bf_model *m, bf_precision p, bf_err *err) {
    if (p == m->precision) return 0;
    if (p == BF_PREC_FP32) {
        bf_mm_free(m);
        bf_model_infer_free(m);
        m->precision = BF_PREC_FP32;
        return 0;
    }
    bf_bf16_gemm *g = bf_bf16_gemm_create(err);
    if (!g) return -1;
    const bf_model_config *c = &m->cfg;
    size_t T = (size_t)c->max_len, D = (size_t)c->d_model, F = (size_t)c->d_ff, R = (size_t)m->max_batch * T;
    size_t wide = 3 * D > F ? 3 * D : F;
    bf_mm *mm = bf_xcalloc(1, sizeof *mm);
    mm->g = g;
    mm->w_off = bf_xcalloc((size_t)m->n_tensors, sizeof(size_t));
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        mm->w_off[i] = has_copy(&m->tensors[i]) ? total : SIZE_MAX;
        if (has_copy(&m->tensors[i])) total += m->tensors[i].numel;
    }
    mm->w = bf_xcalloc(total, sizeof(bf_bf16));
    mm->a = bf_xcalloc(R * wide, sizeof(bf_bf16));
    mm->b = bf_xcalloc(R * wide, sizeof(bf_bf16));
    mm->qkv = bf_xcalloc(T * 3 * D, sizeof(bf_bf16));
    mm->dout = bf_xcalloc(T * D, sizeof(bf_bf16));
    size_t H = (size_t)c->n_heads;
    mm->att = bf_xcalloc(2 * H * T * T, sizeof(bf_bf16));
    mm->ds = mm->att + H * T * T;
    mm->dsf = bf_xcalloc(H * T * T, sizeof(float));
    mm->stale = 1;
    bf_model_infer_free(m); /* the inference scratch is made again, with its bf16 buffers */
    m->mm = mm;
    m->precision = BF_PREC_BF16;
    return 0;
}

void bf_mm_free(bf_model *m) {
    bf_mm *mm = m->mm;
    if (!mm) return;
    bf_bf16_gemm_free(mm->g);
    free(mm->w);
    free(mm->w_off);
    free(mm->a);
    free(mm->b);
    free(mm->qkv);
    free(mm->dout);
    free(mm->att);
    free(mm->dsf);
    free(mm);
    m->mm = NULL;
}

void bf_model_params_updated(bf_model *m) {
    if (m->mm) m->mm->stale = 1;
}

void bf_mm_sync_weights(bf_model *m) {
    bf_mm *mm = m->mm;
    if (!mm || !mm->stale) return;
    for (int i = 0; i < m->n_tensors; i++)
        if (mm->w_off[i] != SIZE_MAX)
            bf_bf16_from_f32(mm->w + mm->w_off[i], m->params + m->tensors[i].offset, m->tensors[i].numel, 1.0f);
    mm->stale = 0;
}

const bf_bf16 *bf_mm_weight(const bf_model *m, const float *w) {
    const bf_mm *mm = m->mm;
    BF_CHECK(mm && !mm->stale, "bf16 weights used before bf_mm_sync_weights");
    for (int i = 0; i < m->n_tensors; i++)
        if (w == m->params + m->tensors[i].offset && mm->w_off[i] != SIZE_MAX) return mm->w + mm->w_off[i];
    BF_CHECK(0, "bf16 product on a weight without a bf16 copy");
    return NULL;
}

void bf_mm_forward_bf16(bf_model *m, float *out, const float *inp, const bf_bf16 *wb, const float *b, size_t R,
                        size_t K, size_t O, int accumulate) {
    if (R == 0) return;
    if (b && !accumulate) {
        /* start from the bias and accumulate onto it, as the fp32 kernel does: one pass over out */
        for (size_t r = 0; r < R; r++) memcpy(out + r * O, b, O * sizeof(float));
        accumulate = 1;
    }
    bf_bf16_from_f32(m->mm->a, inp, R * K, 1.0f);
    bf_bf16_matmul(m->mm->g, out, O, m->mm->a, K, 0, wb, O, 0, R, O, K, accumulate);
}

void bf_mm_forward(bf_model *m, float *out, const float *inp, const float *w, const float *b, size_t R, size_t K,
                   size_t O) {
    if (m->precision == BF_PREC_FP32) {
        bf_matmul_forward(out, inp, w, b, R, K, O);
        return;
    }
    bf_mm_forward_bf16(m, out, inp, bf_mm_weight(m, w), b, R, K, O, 0);
}

void bf_mm_accumulate(bf_model *m, float *out, const float *inp, const float *w, size_t R, size_t K, size_t O) {
    if (m->precision == BF_PREC_FP32) {
        bf_matmul_accumulate(out, inp, w, R, K, O);
        return;
    }
    bf_mm_forward_bf16(m, out, inp, bf_mm_weight(m, w), NULL, R, K, O, 1);
}

void bf_mm_backward(bf_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                    const float *w, size_t R, size_t K, size_t O) {
    if (m->precision == BF_PREC_FP32) {
        bf_matmul_backward(dinp, dw, db, dout, inp, w, R, K, O);
        return;
    }
    if (R == 0) return;
    bf_mm *mm = m->mm;
    bf_bf16_from_f32(mm->b, dout, R * O, 1.0f);
    /* dinp[R,K] += dout[R,O] · w^T: w [K,O] read transposed in place */
    if (dinp) bf_bf16_matmul(mm->g, dinp, K, mm->b, O, 0, bf_mm_weight(m, w), O, 1, R, K, O, 1);
    if (dw) { /* dw[K,O] += inp^T · dout: inp [R,K] read transposed */
        bf_bf16_from_f32(mm->a, inp, R * K, 1.0f);
        bf_bf16_matmul(mm->g, dw, O, mm->a, K, 1, mm->b, O, 0, K, O, R, 1);
    }
    if (db)
        for (size_t r = 0; r < R; r++)
            for (size_t o = 0; o < O; o++) db[o] += dout[r * O + o];
}

/* ---- attention of one input, every head ------------------------------------------------------------- */

/* Both attention functions make one oneDNN call per product for all H heads of the input (the batched
 * form: head h is column block h of q, k, v and of the output, and matrix h of the probabilities), since a
 * call per head costs more than its n x dh x n product on small heads. */
void bf_mm_attention_forward(bf_model *m, float *o, float *att, const float *qkv, size_t n, size_t D, size_t H) {
    if (m->precision == BF_PREC_FP32) {
        bf_attention_forward(o, att, qkv, n, D, H, H == 32 ? 0xFFFFFFFFu : ((1u << H) - 1u));
        return;
    }
    bf_mm *mm = m->mm;
    size_t dh = D / H, ld = 3 * D, nn = n * n;
    float scale = 1.0f / sqrtf((float)dh);
    bf_bf16_from_f32(mm->qkv, qkv, n * ld, 1.0f);
    const bf_bf16 *q = mm->qkv, *k = mm->qkv + D, *v = mm->qkv + 2 * D;
    /* scores[h] = q_h k_h^T (k read transposed), scaled in fp32, softmax in fp32 */
    bf_bf16_matmul_batched(mm->g, H, att, n, nn, q, ld, dh, 0, k, ld, dh, 1, n, n, dh, 0);
    for (size_t t = 0; t < H * n; t++) {
        float *row = att + t * n;
        for (size_t j = 0; j < n; j++) row[j] *= scale;
        bf_softmax_forward(row, row, n);
    }
    bf_bf16_from_f32(mm->att, att, H * nn, 1.0f);
    /* o_h = att_h v_h, into column block h of o */
    bf_bf16_matmul_batched(mm->g, H, o, D, dh, mm->att, n, nn, 0, v, ld, dh, 0, n, dh, n, 0);
}

void bf_mm_attention_backward(bf_model *m, float *dqkv, float *scratch, const float *dout, const float *qkv,
                              const float *att, size_t n, size_t D, size_t H) {
    if (m->precision == BF_PREC_FP32) {
        bf_attention_backward(dqkv, scratch, dout, qkv, att, n, D, H, H == 32 ? 0xFFFFFFFFu : ((1u << H) - 1u));
        return;
    }
    bf_mm *mm = m->mm;
    size_t dh = D / H, ld = 3 * D, nn = n * n;
    float scale = 1.0f / sqrtf((float)dh);
    float *ds = mm->dsf; /* [H, n, n]: the model's scratch holds one head's n x n only */
    bf_bf16_from_f32(mm->qkv, qkv, n * ld, 1.0f);
    bf_bf16_from_f32(mm->dout, dout, n * D, 1.0f);
    bf_bf16_from_f32(mm->att, att, H * nn, 1.0f);
    const bf_bf16 *q = mm->qkv, *k = mm->qkv + D, *v = mm->qkv + 2 * D;
    float *dq = dqkv, *dk = dqkv + D, *dv = dqkv + 2 * D;
    /* datt_h = dO_h v_h^T; dv_h += att_h^T dO_h */
    bf_bf16_matmul_batched(mm->g, H, ds, n, nn, mm->dout, D, dh, 0, v, ld, dh, 1, n, n, dh, 0);
    bf_bf16_matmul_batched(mm->g, H, dv, ld, dh, mm->att, n, nn, 1, mm->dout, D, dh, 0, n, dh, n, 1);
    /* softmax backward in fp32, in place; the 1/sqrt(dh) of the scores goes into the rounding of dS */
    for (size_t t = 0; t < H * n; t++) {
        const float *p = att + t * n;
        float *d = ds + t * n, dot = 0.0f;
        for (size_t j = 0; j < n; j++) dot += p[j] * d[j];
        for (size_t j = 0; j < n; j++) d[j] = p[j] * (d[j] - dot);
    }
    bf_bf16_from_f32(mm->ds, ds, H * nn, scale);
    /* dq_h += dS_h k_h; dk_h += dS_h^T q_h */
    bf_bf16_matmul_batched(mm->g, H, dq, ld, dh, mm->ds, n, nn, 0, k, ld, dh, 0, n, dh, n, 1);
    bf_bf16_matmul_batched(mm->g, H, dk, ld, dh, mm->ds, n, nn, 1, q, ld, dh, 0, n, dh, n, 1);
    (void)scratch;
}
