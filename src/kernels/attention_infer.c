/* attention_infer: multi-head self-attention for inference (see attention_infer.h).
 *
 * For head widths that are a multiple of 16 up to 64 (the standard shape has 32) the scores, softmax and
 * weighted sum run fused in blocks of query rows: a block's score rows stay in L1, the keys are transposed
 * once per head so that 16 keys are one vector, and the products are written with v16 vector values
 * (vec16.h). Against two OpenBLAS calls per head this saves packing q, k, the n x n score matrix and v for
 * every head, and the pass that rescales the output. Other head widths take the two-sgemm form. */
#include "budgetformer/attention_infer.h"

#include <cblas.h>
#include <math.h>

#include "budgetformer/util.h"
#include "exp_inline.h"
#include "vec16.h"

static size_t keys_padded(size_t n) { return (n + 15) & ~(size_t)15; }

/* Head widths with a fused kernel: 16 to 64 in steps of 16 (one to four 16-float vectors per row). */
static int fused_width(size_t dh) { return dh % 16 == 0 && dh >= 16 && dh <= 64; }

size_t bf_attention_infer_scratch_floats(size_t n_max, size_t D, size_t H) {
    size_t dh = D / H, np = keys_padded(n_max);
    /* fused: transposed keys [dh, np] and one block's score rows [8, np]; otherwise scores [n, n] and the
     * rows' 1/sum [n] */
    return fused_width(dh) ? dh * np + 8 * np : n_max * n_max + n_max;
}

/* One block of `rows` query rows (a compile-time constant where inlined) of one head with head width
 * DV * 16. s: [rows, np] scores; kt: [dh, np] transposed keys; out rows get gate * softmax(q k^T scale) v. */
static inline __attribute__((always_inline)) void attend_block(float *restrict out, size_t ldo, float *restrict s,
                                                               const float *restrict q, const float *restrict kt,
                                                               const float *restrict v, size_t ld, size_t n,
                                                               size_t np, float scale, float gate, int rows,
                                                               int DV) {
    size_t dh = (size_t)DV * 16;
    /* scores: for each 16 keys, rows accumulators over the head width */
    for (size_t j0 = 0; j0 < np; j0 += 16) {
        v16 acc[8];
        for (int r = 0; r < rows; r++) acc[r] = v16_splat(0.0f);
        for (size_t d = 0; d < dh; d++) {
            v16 kv = v16_load(kt + d * np + j0);
            for (int r = 0; r < rows; r++) acc[r] += v16_splat(q[(size_t)r * ld + d]) * kv;
        }
        for (int r = 0; r < rows; r++) v16_store(s + (size_t)r * np + j0, acc[r] * scale);
    }
    /* softmax numerators in place; the 1/sum (times the gate) is applied to the dh outputs */
    float mul[8];
    for (int r = 0; r < rows; r++) {
        float *sr = s + (size_t)r * np;
        mul[r] = gate / exp_shift_sum_inplace(sr, n, max_lanes(sr, n));
    }
    /* weighted sum of values: rows x DV accumulators */
    v16 o[8][4];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < DV; c++) o[r][c] = v16_splat(0.0f);
    for (size_t j = 0; j < n; j++) {
        v16 vv[4];
        for (int c = 0; c < DV; c++) vv[c] = v16_load(v + j * ld + (size_t)c * 16);
        for (int r = 0; r < rows; r++) {
            v16 p = v16_splat(s[(size_t)r * np + j]);
            for (int c = 0; c < DV; c++) o[r][c] += p * vv[c];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < DV; c++) v16_store(out + (size_t)r * ldo + (size_t)c * 16, o[r][c] * mul[r]);
}

/* One head of width DV * 16: keys transposed into kt, then blocks of 8 (DV <= 2) or 4 query rows. */
static inline __attribute__((always_inline)) void attend_head(float *restrict out, size_t ldo, float *restrict scratch,
                                                              const float *restrict q, const float *restrict k,
                                                              const float *restrict v, size_t ld, size_t n,
                                                              float gate, int DV) {
    size_t dh = (size_t)DV * 16, np = keys_padded(n);
    float scale = 1.0f / sqrtf((float)dh);
    float *kt = scratch, *s = scratch + dh * np;
    for (size_t j = 0; j < n; j++)
        for (size_t d = 0; d < dh; d++) kt[d * np + j] = k[j * ld + d];
    for (size_t d = 0; d < dh; d++)
        for (size_t j = n; j < np; j++) kt[d * np + j] = 0.0f;
    const int block = DV <= 2 ? 8 : 4;
    size_t t = 0;
    for (; t + (size_t)block <= n; t += (size_t)block)
        attend_block(out + t * ldo, ldo, s, q + t * ld, kt, v, ld, n, np, scale, gate, block, DV);
    for (; t < n; t++) attend_block(out + t * ldo, ldo, s, q + t * ld, kt, v, ld, n, np, scale, gate, 1, DV);
}

/* The two-sgemm form for any head width: exponentiated scores without normalising, then the weighted sum,
 * then the head's output row divided by the row's sum (dh divisions instead of n). */
static void attend_head_sgemm(float *restrict out, size_t ldo, float *restrict scratch, const float *restrict q,
                              const float *restrict k, const float *restrict v, size_t ld, size_t n, size_t dh,
                              float gate) {
    float scale = 1.0f / sqrtf((float)dh);
    float *a = scratch, *mul = scratch + n * n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)dh, scale, q, (int)ld, k, (int)ld, 0.0f,
                a, (int)n);
    for (size_t t = 0; t < n; t++) mul[t] = gate / exp_shift_sum_inplace(a + t * n, n, max_lanes(a + t * n, n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dh, (int)n, 1.0f, a, (int)n, v, (int)ld, 0.0f,
                out, (int)ldo);
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < dh; i++) out[t * ldo + i] *= mul[t];
}

void bf_attention_forward_infer(float *restrict o, float *restrict scratch, const float *restrict qkv, size_t n,
                                size_t D, size_t H, const float *restrict gate) {
    BF_CHECK(H > 0 && H <= 32 && D % H == 0 && n > 0, "attention: %zu heads of a width-%zu model over %zu rows", H, D,
             n);
    size_t dh = D / H, ld = 3 * D;
    for (size_t h = 0; h < H; h++) {
        const float *q = qkv + h * dh, *k = qkv + D + h * dh, *v = qkv + 2 * D + h * dh;
        float *oh = o + h * dh, g = gate ? gate[h] : 1.0f;
        if (!fused_width(dh)) {
            attend_head_sgemm(oh, D, scratch, q, k, v, ld, n, dh, g);
            continue;
        }
        switch (dh / 16) { /* constant vector counts, so each call is compiled for its width */
        case 1: attend_head(oh, D, scratch, q, k, v, ld, n, g, 1); break;
        case 2: attend_head(oh, D, scratch, q, k, v, ld, n, g, 2); break;
        case 3: attend_head(oh, D, scratch, q, k, v, ld, n, g, 3); break;
        default: attend_head(oh, D, scratch, q, k, v, ld, n, g, 4); break;
        }
    }
}
