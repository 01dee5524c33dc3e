/* ops: numerical kernels (see ops.h). Matrix products go through cblas_sgemm; element-wise kernels are
 * plain loops the compiler vectorises, or v16 vector code (vec16.h) where its vectoriser does badly
 * (reductions, exp). Every kernel checks its sizes on entry (always on). */
/* MAP_ANONYMOUS (bf_ops_reserve_blas) is not in strict POSIX. */
#define _DEFAULT_SOURCE
#include "budgetformer/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "budgetformer/util.h"
#include "exp_inline.h"
#include "vec16.h"

#define OPS_CHECK(cond) BF_CHECK((cond), "kernel precondition failed: %s", #cond)

void bf_matmul_forward(float *restrict out, const float *restrict inp, const float *restrict w,
                       const float *restrict b, size_t R, size_t K, size_t O) {
    OPS_CHECK(out && inp && w && K > 0 && O > 0);
    if (R == 0) return;
    float beta = 0.0f;
    if (b) {
        /* Start from the bias and let sgemm accumulate onto it (beta = 1): one pass over out. */
        for (size_t r = 0; r < R; r++) memcpy(out + r * O, b, O * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)O, (int)K, 1.0f, inp, (int)K, w, (int)O,
                beta, out, (int)O);
}

void bf_matmul_accumulate(float *restrict out, const float *restrict inp, const float *restrict w, size_t R, size_t K,
                          size_t O) {
    OPS_CHECK(out && inp && w && K > 0 && O > 0);
    if (R == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)O, (int)K, 1.0f, inp, (int)K, w, (int)O, 1.0f,
                out, (int)O);
}

void bf_add_rows_bias(float *restrict out, const float *restrict a, const float *restrict b, size_t R, size_t O) {
    for (size_t r = 0; r < R; r++)
        for (size_t o = 0; o < O; o++) out[r * O + o] = a[r * O + o] + b[o];
}

void bf_matmul_backward(float *restrict dinp, float *restrict dw, float *restrict db, const float *restrict dout,
                        const float *restrict inp, const float *restrict w, size_t R, size_t K, size_t O) {
    OPS_CHECK(dout && K > 0 && O > 0);
    if (R == 0) return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)K, (int)O, 1.0f, dout, (int)O, w, (int)O,
                    1.0f, dinp, (int)K);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)O, (int)R, 1.0f, inp, (int)K, dout,
                    (int)O, 1.0f, dw, (int)O);
    if (db) {
        for (size_t r = 0; r < R; r++) {
            const float *d = dout + r * O;
            for (size_t o = 0; o < O; o++) db[o] += d[o];
        }
    }
}

/* Sums over a row in 16 lanes (one v16): a float reduction written as one running sum is a dependency chain
 * the compiler may not reorder (no -ffast-math here), and an array of lane sums gets vectorised into shuffles;
 * a vector accumulator is one add per 16 values. The order is fixed, so results stay bitwise reproducible. */
static float sum_lanes(const float *restrict x, size_t n) {
    v16 acc = v16_splat(0.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) acc += v16_load(x + i);
    float s = v16_sum(acc);
    for (; i < n; i++) s += x[i];
    return s;
}

static float sum_sq_dev_lanes(const float *restrict x, float m, size_t n) {
    v16 acc = v16_splat(0.0f), mv = v16_splat(m);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16 d = v16_load(x + i) - mv;
        acc += d * d;
    }
    float s = v16_sum(acc);
    for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return s;
}

static float dot_lanes(const float *restrict x, const float *restrict y, size_t n) {
    v16 acc = v16_splat(0.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) acc += v16_load(x + i) * v16_load(y + i);
    float s = v16_sum(acc);
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* One row: y = (x - mean) rstd gamma + beta; returns mean and rstd. */
static inline void layernorm_row(float *restrict y, float *restrict mean, float *restrict rstd,
                                 const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                 size_t D) {
    float m = sum_lanes(x, D) / (float)D;
    float v = sum_sq_dev_lanes(x, m, D) / (float)D;
    float s = 1.0f / sqrtf(v + 1e-5f);
    for (size_t i = 0; i < D; i++) y[i] = (x[i] - m) * s * gamma[i] + beta[i];
    *mean = m;
    *rstd = s;
}

void bf_layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd, const float *restrict inp,
                          const float *restrict gamma, const float *restrict beta, size_t R, size_t D) {
    OPS_CHECK(out && mean && rstd && inp && gamma && beta && D > 0);
    for (size_t r = 0; r < R; r++) layernorm_row(out + r * D, mean + r, rstd + r, inp + r * D, gamma, beta, D);
}

void bf_bias_layernorm_bias(float *restrict x, float *restrict u, const float *restrict b_in,
                            const float *restrict gamma, const float *restrict beta, const float *restrict b_out,
                            size_t R, size_t D) {
    OPS_CHECK(x && u && b_in && gamma && beta && b_out && D > 0);
    for (size_t r = 0; r < R; r++) {
        float *xr = x + r * D, m, s;
        for (size_t i = 0; i < D; i++) xr[i] += b_in[i];
        layernorm_row(u + r * D, &m, &s, xr, gamma, beta, D);
        for (size_t i = 0; i < D; i++) xr[i] += b_out[i];
    }
}

void bf_layernorm_backward(float *restrict dinp, float *restrict dgamma, float *restrict dbeta,
                           const float *restrict dout, const float *restrict inp, const float *restrict gamma,
                           const float *restrict mean, const float *restrict rstd, size_t R, size_t D) {
    OPS_CHECK(dinp && dgamma && dbeta && dout && inp && gamma && mean && rstd && D > 0);
    for (size_t r = 0; r < R; r++) {
        const float *x = inp + r * D, *dy = dout + r * D;
        float *dx = dinp + r * D;
        float m = mean[r], s = rstd[r];
        /* dx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma; the two sums in
         * vector accumulators (see sum_lanes) */
        v16 acc_d = v16_splat(0.0f), acc_dx = v16_splat(0.0f), mv = v16_splat(m);
        size_t i = 0;
        for (; i + 16 <= D; i += 16) {
            v16 xhat = (v16_load(x + i) - mv) * s, dyv = v16_load(dy + i), dxhat = dyv * v16_load(gamma + i);
            acc_d += dxhat;
            acc_dx += dxhat * xhat;
            v16_store(dgamma + i, v16_load(dgamma + i) + dyv * xhat);
            v16_store(dbeta + i, v16_load(dbeta + i) + dyv);
        }
        float sum_d = v16_sum(acc_d), sum_dx = v16_sum(acc_dx);
        for (; i < D; i++) {
            float xhat = (x[i] - m) * s;
            float dxhat = dy[i] * gamma[i];
            sum_d += dxhat;
            sum_dx += dxhat * xhat;
            dgamma[i] += dy[i] * xhat;
            dbeta[i] += dy[i];
        }
        sum_d /= (float)D;
        sum_dx /= (float)D;
        for (i = 0; i < D; i++) {
            float xhat = (x[i] - m) * s;
            dx[i] += s * (dy[i] * gamma[i] - sum_d - xhat * sum_dx);
        }
    }
}

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */

/* exp(2u), u = sqrt(2/pi) (a + 0.044715 a^3), on 16 values: the part every GELU form shares. */
static inline v16 gelu_exp2u16(v16 a) { return exp16(2.0f * GELU_C * (a + 0.044715f * a * a * a)); }

/* t = tanh(u) on 16 values, as 1 - 2 / (exp(2u) + 1): |u| large saturates correctly to +-1. */
static inline v16 gelu_tanh16(v16 a) { return 1.0f - 2.0f / (gelu_exp2u16(a) + 1.0f); }

static inline v16 gelu16(v16 a) { return 0.5f * a * (1.0f + gelu_tanh16(a)); }

/* d gelu / da on 16 values */
static inline v16 gelu_grad16(v16 a) {
    v16 t = gelu_tanh16(a), du = GELU_C * (1.0f + 3.0f * 0.044715f * a * a);
    return 0.5f * (1.0f + t) + 0.5f * a * (1.0f - t * t) * du;
}

/* The last n % 16 values go through the same vector code, padded with zeros. */
static inline v16 load_tail(const float *p, size_t m) {
    float buf[16] = {0};
    memcpy(buf, p, m * sizeof(float));
    return v16_load(buf);
}

static inline void store_tail(float *p, v16 v, size_t m) {
    float buf[16];
    v16_store(buf, v);
    memcpy(p, buf, m * sizeof(float));
}

void bf_gelu_forward(float *restrict out, const float *restrict inp, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) v16_store(out + i, gelu16(v16_load(inp + i)));
    if (i < n) store_tail(out + i, gelu16(load_tail(inp + i, n - i)), n - i);
}

/* Inference only (nothing needs tanh afterwards): 0.5 a (1 + tanh(u)) = a sigmoid(2u) = a e / (e + 1) with
 * e = exp(2u), one exp and one division per value in a single pass with no temporaries. e / (e + 1) is formed
 * first so that a clamped e (u > 44) gives 1, not inf / inf. */
static inline v16 gelu_sigmoid16(v16 a) {
    v16 e = gelu_exp2u16(a);
    return a * (e / (e + 1.0f));
}

void bf_bias_gelu_inplace(float *restrict x, const float *restrict b, size_t R, size_t F) {
    for (size_t r = 0; r < R; r++) {
        float *row = x + r * F;
        size_t i = 0;
        for (; i + 16 <= F; i += 16) v16_store(row + i, gelu_sigmoid16(v16_load(row + i) + v16_load(b + i)));
        if (i < F) store_tail(row + i, gelu_sigmoid16(load_tail(row + i, F - i) + load_tail(b + i, F - i)), F - i);
    }
}

void bf_gelu_backward(float *restrict dinp, const float *restrict inp, const float *restrict dout, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        v16_store(dinp + i, v16_load(dinp + i) + gelu_grad16(v16_load(inp + i)) * v16_load(dout + i));
    if (i < n) {
        size_t m = n - i;
        store_tail(dinp + i, load_tail(dinp + i, m) + gelu_grad16(load_tail(inp + i, m)) * load_tail(dout + i, m), m);
    }
}

void bf_softmax_forward(float *out, const float *inp, size_t n) {
    OPS_CHECK(n > 0);
    float mx = max_lanes(inp, n);
    if (out != inp) memmove(out, inp, n * sizeof(float));
    float inv = 1.0f / exp_shift_sum_inplace(out, n, mx);
    for (size_t i = 0; i < n; i++) out[i] *= inv;
}

void bf_softmax_backward(float *restrict dinp, const float *restrict p, const float *restrict dout, size_t n) {
    float dot = 0.0f;
    for (size_t i = 0; i < n; i++) dot += p[i] * dout[i];
    for (size_t i = 0; i < n; i++) dinp[i] += p[i] * (dout[i] - dot);
}

void bf_embedding_forward(float *restrict x, const int32_t *restrict tokens, const int32_t *restrict len,
                          const float *restrict tok_emb, const float *restrict pos_emb, size_t B, size_t T, size_t D) {
    size_t row = 0;
    for (size_t b = 0; b < B; b++) {
        OPS_CHECK(len[b] >= 1 && (size_t)len[b] <= T);
        for (size_t t = 0; t < (size_t)len[b]; t++, row++) {
            const float *e = tok_emb + (size_t)tokens[b * T + t] * D, *p = pos_emb + t * D;
            float *o = x + row * D;
            for (size_t i = 0; i < D; i++) o[i] = e[i] + p[i];
        }
    }
}

void bf_embedding_backward(float *restrict dtok_emb, float *restrict dpos_emb, const float *restrict dx,
                           const int32_t *restrict tokens, const int32_t *restrict len, size_t B, size_t T, size_t D) {
    size_t row = 0;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < (size_t)len[b]; t++, row++) {
            float *de = dtok_emb + (size_t)tokens[b * T + t] * D, *dp = dpos_emb + t * D;
            const float *d = dx + row * D;
            for (size_t i = 0; i < D; i++) {
                de[i] += d[i];
                dp[i] += d[i];
            }
        }
    }
}

void bf_masked_mean_forward(float *restrict out, const float *restrict inp, const int32_t *restrict len, size_t B,
                            size_t D) {
    size_t row = 0;
    for (size_t b = 0; b < B; b++) {
        float *o = out + b * D;
        memset(o, 0, D * sizeof(float));
        for (int t = 0; t < len[b]; t++, row++) {
            const float *x = inp + row * D;
            for (size_t i = 0; i < D; i++) o[i] += x[i];
        }
        float inv = 1.0f / (float)len[b];
        for (size_t i = 0; i < D; i++) o[i] *= inv;
    }
}

void bf_masked_mean_backward(float *restrict dinp, const float *restrict dout, const int32_t *restrict len, size_t B,
                             size_t D) {
    size_t row = 0;
    for (size_t b = 0; b < B; b++) {
        float inv = 1.0f / (float)len[b];
        const float *d = dout + b * D;
        for (int t = 0; t < len[b]; t++, row++) {
            float *dx = dinp + row * D;
            for (size_t i = 0; i < D; i++) dx[i] += d[i] * inv;
        }
    }
}

void bf_attention_forward(float *restrict o, float *restrict att, const float *restrict qkv, size_t n, size_t D,
                          size_t H, uint32_t head_mask) {
    OPS_CHECK(H > 0 && H <= 32 && D % H == 0 && n > 0);
    size_t dh = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)dh);
    for (size_t h = 0; h < H; h++) {
        if (!(head_mask >> h & 1u)) continue;
        const float *q = qkv + h * dh, *k = qkv + D + h * dh, *v = qkv + 2 * D + h * dh;
        float *a = att + h * n * n;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)dh, scale, q, (int)ld, k, (int)ld,
                    0.0f, a, (int)n);
        for (size_t t = 0; t < n; t++) bf_softmax_forward(a + t * n, a + t * n, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dh, (int)n, 1.0f, a, (int)n, v, (int)ld,
                    0.0f, o + h * dh, (int)D);
    }
}

void bf_attention_backward(float *restrict dqkv, float *restrict scratch, const float *restrict dout,
                           const float *restrict qkv, const float *restrict att, size_t n, size_t D, size_t H,
                           uint32_t head_mask) {
    OPS_CHECK(H > 0 && H <= 32 && D % H == 0 && n > 0);
    size_t dh = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)dh);
    for (size_t h = 0; h < H; h++) {
        if (!(head_mask >> h & 1u)) continue;
        const float *q = qkv + h * dh, *k = qkv + D + h * dh, *v = qkv + 2 * D + h * dh;
        float *dq = dqkv + h * dh, *dk = dqkv + D + h * dh, *dv = dqkv + 2 * D + h * dh;
        const float *a = att + h * n * n, *dO = dout + h * dh;
        /* datt = dO · V^T ; dV += att^T · dO */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)dh, 1.0f, dO, (int)D, v, (int)ld,
                    0.0f, scratch, (int)n);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)dh, (int)n, 1.0f, a, (int)n, dO, (int)D,
                    1.0f, dv, (int)ld);
        /* scores gradient: row-wise softmax backward, in place */
        for (size_t t = 0; t < n; t++) {
            const float *p = a + t * n;
            float *d = scratch + t * n;
            float dot = dot_lanes(p, d, n);
            for (size_t j = 0; j < n; j++) d[j] = p[j] * (d[j] - dot);
        }
        /* dQ += dS · K * scale ; dK += dS^T · Q * scale */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dh, (int)n, scale, scratch, (int)n, k,
                    (int)ld, 1.0f, dq, (int)ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)dh, (int)n, scale, scratch, (int)n, q,
                    (int)ld, 1.0f, dk, (int)ld);
    }
}

void bf_cross_entropy_forward(float *restrict loss, float *restrict probs, const float *restrict logits,
                              const int32_t *restrict labels, size_t B, size_t C) {
    for (size_t b = 0; b < B; b++) {
        const float *z = logits + b * C;
        float *p = probs + b * C;
        bf_softmax_forward(p, z, C);
        if (loss && labels) {
            /* log-sum-exp in double: the loss is summed over many inputs and logged. */
            double mx = z[0];
            for (size_t c = 1; c < C; c++) mx = z[c] > mx ? z[c] : mx;
            double s = 0.0;
            for (size_t c = 0; c < C; c++) s += exp((double)z[c] - mx);
            loss[b] = (float)(mx + log(s) - (double)z[labels[b]]);
        }
    }
}

void bf_cross_entropy_backward(float *restrict dlogits, const float *restrict probs, const int32_t *restrict labels,
                               float scale, size_t B, size_t C) {
    for (size_t b = 0; b < B; b++) {
        for (size_t c = 0; c < C; c++) {
            float y = (int32_t)c == labels[b] ? 1.0f : 0.0f;
            dlogits[b * C + c] += scale * (probs[b * C + c] - y);
        }
    }
}

/* ---- OpenBLAS's buffers under an address-space limit ----------------------------------------------- */

/* OpenBLAS (0.3.x) maps a 128 MiB work buffer per thread on its first product and, when the mapping fails
 * under RLIMIT_AS (ulimit -v, SGE h_vmem), retries for ever: training hangs at its first update. So the
 * headroom is checked first, with a mapping of that size that is released at once, and then a tiny product
 * makes OpenBLAS take its buffer now, while the space is known to exist. */
#define BF_BLAS_BUFFER_MIB 128

static long vm_size_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7) && sscanf(line + 7, "%ld", &kib) != 1) kib = -1;
    fclose(f);
    return kib;
}

int bf_ops_reserve_blas(bf_err *err) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        int threads = openblas_get_num_threads();
        if (threads < 1) threads = 1;
        /* One buffer per thread, and room for the first allocations around them. */
        size_t need = (size_t)threads * BF_BLAS_BUFFER_MIB << 20;
        size_t margin = (size_t)32 << 20;
        void *p = mmap(NULL, need + margin, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            long vm = vm_size_kib();
            return bf_fail(err, "out of memory: the address-space limit (ulimit -v, or the scheduler's h_vmem / "
                                "mem limit) is %llu MiB, %ld MiB are mapped already, and OpenBLAS needs %zu MiB "
                                "more for its work buffers (%d thread%s x %d MiB; it would retry for ever): raise "
                                "the limit to at least %llu MiB (more for the model and data)%s",
                           (unsigned long long)(rl.rlim_cur >> 20), vm > 0 ? vm / 1024 : -1L, need >> 20, threads,
                           threads > 1 ? "s" : "", BF_BLAS_BUFFER_MIB,
                           (unsigned long long)((vm > 0 ? (size_t)vm << 10 : 0) + need + margin) >> 20,
                           threads > 1 ? ", or lower OPENBLAS_NUM_THREADS" : "");
        }
        munmap(p, need + margin);
    }
    float a[4] = {1, 0, 0, 1}, b[4] = {1, 2, 3, 4}, c[4];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    return 0;
}
