/* test_gradcheck: analytic backward passes against central finite differences.
 *
 * Every check differentiates a scalar L = sum(out * R) with a fixed random R (a random projection of the
 * output), so one backward call with dout = R gives dL/dinput, and L(x + h e_i) - L(x - h e_i) over 2h
 * estimates one coordinate. Forward passes run in float32 as the C does; L is accumulated in double, and
 * the step is divided by the float32 difference actually realised (x+h) - (x-h).
 *
 * Tolerances (float32 finite differences are noisy: round-off ~ 1e-7 |L| / h, truncation ~ h^2 |L'''|):
 *   a coordinate passes when |analytic - fd| <= atol + rtol * max(|analytic|, |fd|); the output prints the
 *   largest fraction of that tolerance used
 *   linear kernels (matmul, embedding, masked_mean)   h = 1e-2, rtol 1e-3, atol 1e-4  (fd exact up to round-off)
 *   layernorm, gelu, softmax, cross_entropy, attention h = 1e-2, rtol 2e-2, atol 5e-4
 *   whole model                                        h = 5e-3, rtol 1e-2, atol 2e-4 (up to 20 coordinates
 *                                                      per tensor; a coordinate whose budget or head mask
 *                                                      changes at x +- h is skipped: the discrete choices
 *                                                      are held fixed)
 *   straight-through d loss / d b_bud vs the hand formula: rtol 1e-3, atol 1e-6 (no differencing involved)
 * Backward kernels must accumulate: gradient buffers start at a non-zero constant that is subtracted after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "budgetformer/model.h"
#include "budgetformer/ops.h"
#include "budgetformer/util.h"
#include "testrng.h"

#define PREFILL 0.25f /* gradient buffers start here: backward must add (+=), not overwrite */

/* ------------------------------------------------------------------------------------- random numbers */

static void fill_normal(float *x, size_t n, test_rng *r, double mean, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + std * rng_normal(r));
}

static void fill_const(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static double dot_proj(const float *out, const float *R, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * (double)R[i];
    return s;
}

/* ------------------------------------------------------------------------------- the generic check */

typedef double (*loss_fn)(void *ctx);

typedef struct {
    double worst; /* largest |a - fd| / (atol + rtol max(|a|, |fd|)): the fraction of the tolerance used */
    int checked, failed;
} fd_stats;

/* Compares the analytic gradient `analytic` of loss(ctx) with respect to x[0..n-1] against central
 * differences, on all coordinates when n <= max_coords, else on max_coords sampled ones. The gradient was
 * accumulated on top of PREFILL when `prefilled`. Returns the number of failing coordinates. */
static int fd_check(const char *what, float *x, size_t n, const float *analytic, int prefilled, loss_fn loss,
                    void *ctx, double h, double rtol, double atol, size_t max_coords, test_rng *r) {
    fd_stats st = {0.0, 0, 0};
    for (size_t c = 0; c < n && c < max_coords; c++) {
        size_t i = n <= max_coords ? c : (size_t)(rng_next(r) % n);
        float xi = x[i];
        float xp = (float)(xi + h), xm = (float)(xi - h);
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = xi;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double a = (double)analytic[i] - (prefilled ? (double)PREFILL : 0.0);
        double err = fabs(a - fd), scale = fmax(fabs(a), fabs(fd));
        st.checked++;
        if (!(err <= atol + rtol * scale)) {
            if (st.failed < 5)
                printf("    %s[%zu]: analytic %.7g, finite difference %.7g  MISMATCH\n", what, i, a, fd);
            st.failed++;
        }
        double used = err / (atol + rtol * scale);
        if (used > st.worst) st.worst = used;
    }
    printf("  %-28s %3d coordinates, tolerance used %.3f%s\n", what, st.checked, st.worst,
           st.failed ? "  FAILED" : "");
    return st.failed;
}

/* ------------------------------------------------------------------------------------------- matmul */

typedef struct {
    float *out, *inp, *w, *b, *R;
    size_t rows, I, O;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    bf_matmul_forward(c->out, c->inp, c->w, c->b, c->rows, c->I, c->O);
    return dot_proj(c->out, c->R, c->rows * c->O);
}

static void test_matmul(void **state) {
    (void)state;
    test_rng r = {11};
    mm_ctx c = {.rows = 5, .I = 7, .O = 6};
    c.out = bf_xmalloc(c.rows * c.O * sizeof(float));
    c.inp = bf_xmalloc(c.rows * c.I * sizeof(float));
    c.w = bf_xmalloc(c.I * c.O * sizeof(float));
    c.b = bf_xmalloc(c.O * sizeof(float));
    c.R = bf_xmalloc(c.rows * c.O * sizeof(float));
    float *dinp = bf_xmalloc(c.rows * c.I * sizeof(float)), *dw = bf_xmalloc(c.I * c.O * sizeof(float));
    float *db = bf_xmalloc(c.O * sizeof(float)), *dw2 = bf_xmalloc(c.I * c.O * sizeof(float));
    fill_normal(c.inp, c.rows * c.I, &r, 0, 1);
    fill_normal(c.w, c.I * c.O, &r, 0, 1);
    fill_normal(c.b, c.O, &r, 0, 1);
    fill_normal(c.R, c.rows * c.O, &r, 0, 1);
    /* the forward against a double loop */
    mm_loss(&c);
    double worst = 0.0;
    for (size_t i = 0; i < c.rows; i++)
        for (size_t o = 0; o < c.O; o++) {
            double s = c.b[o];
            for (size_t k = 0; k < c.I; k++) s += (double)c.inp[i * c.I + k] * c.w[k * c.O + o];
            worst = fmax(worst, fabs(s - c.out[i * c.O + o]));
        }
    printf("  matmul forward vs double loop: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-5);
    fill_const(dinp, c.rows * c.I, PREFILL);
    fill_const(dw, c.I * c.O, PREFILL);
    fill_const(db, c.O, PREFILL);
    bf_matmul_backward(dinp, dw, db, c.R, c.inp, c.w, c.rows, c.I, c.O);
    int bad = 0;
    bad += fd_check("matmul dinp", c.inp, c.rows * c.I, dinp, 1, mm_loss, &c, 1e-2, 1e-3, 1e-4, 1000, &r);
    bad += fd_check("matmul dw", c.w, c.I * c.O, dw, 1, mm_loss, &c, 1e-2, 1e-3, 1e-4, 1000, &r);
    bad += fd_check("matmul db", c.b, c.O, db, 1, mm_loss, &c, 1e-2, 1e-3, 1e-4, 1000, &r);
    /* NULL outputs are skipped and the others unchanged */
    fill_const(dw2, c.I * c.O, PREFILL);
    bf_matmul_backward(NULL, dw2, NULL, c.R, c.inp, c.w, c.rows, c.I, c.O);
    for (size_t i = 0; i < c.I * c.O; i++) bad += fabsf(dw2[i] - dw[i]) > 1e-6f;
    assert_int_equal(bad, 0);
    free(c.out), free(c.inp), free(c.w), free(c.b), free(c.R), free(dinp), free(dw), free(db), free(dw2);
}

/* ---------------------------------------------------------------------------------------- layernorm */

typedef struct {
    float *out, *mean, *rstd, *inp, *gamma, *beta, *R;
    size_t rows, D;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    bf_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->rows, c->D);
    return dot_proj(c->out, c->R, c->rows * c->D);
}

/* One LayerNorm case: forward against the definition, backward against finite differences. */
static void layernorm_case(size_t rows, size_t D, uint64_t seed) {
    test_rng r = {seed};
    ln_ctx c = {.rows = rows, .D = D};
    size_t n = c.rows * c.D;
    c.out = bf_xmalloc(n * sizeof(float));
    c.inp = bf_xmalloc(n * sizeof(float));
    c.R = bf_xmalloc(n * sizeof(float));
    c.mean = bf_xmalloc(c.rows * sizeof(float));
    c.rstd = bf_xmalloc(c.rows * sizeof(float));
    c.gamma = bf_xmalloc(c.D * sizeof(float));
    c.beta = bf_xmalloc(c.D * sizeof(float));
    float *dinp = bf_xmalloc(n * sizeof(float)), *dg = bf_xmalloc(c.D * sizeof(float));
    float *dbeta = bf_xmalloc(c.D * sizeof(float));
    fill_normal(c.inp, n, &r, 0.5, 2.0);
    fill_normal(c.gamma, c.D, &r, 1.0, 0.3);
    fill_normal(c.beta, c.D, &r, 0.0, 0.3);
    fill_normal(c.R, n, &r, 0, 1);
    ln_loss(&c);
    /* forward against the definition: eps 1e-5, biased variance */
    double worst = 0.0;
    for (size_t i = 0; i < c.rows; i++) {
        double mu = 0.0, var = 0.0;
        for (size_t j = 0; j < c.D; j++) mu += c.inp[i * c.D + j];
        mu /= (double)c.D;
        for (size_t j = 0; j < c.D; j++) var += (c.inp[i * c.D + j] - mu) * (c.inp[i * c.D + j] - mu);
        var /= (double)c.D;
        for (size_t j = 0; j < c.D; j++) {
            double y = (c.inp[i * c.D + j] - mu) / sqrt(var + 1e-5) * c.gamma[j] + c.beta[j];
            worst = fmax(worst, fabs(y - c.out[i * c.D + j]));
        }
    }
    printf("  layernorm forward vs definition: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-5);
    fill_const(dinp, n, PREFILL);
    fill_const(dg, c.D, PREFILL);
    fill_const(dbeta, c.D, PREFILL);
    bf_layernorm_backward(dinp, dg, dbeta, c.R, c.inp, c.gamma, c.mean, c.rstd, c.rows, c.D);
    int bad = 0;
    bad += fd_check("layernorm dinp", c.inp, n, dinp, 1, ln_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r);
    bad += fd_check("layernorm dgamma", c.gamma, c.D, dg, 1, ln_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r);
    bad += fd_check("layernorm dbeta", c.beta, c.D, dbeta, 1, ln_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r);
    assert_int_equal(bad, 0);
    free(c.out), free(c.inp), free(c.R), free(c.mean), free(c.rstd), free(c.gamma), free(c.beta);
    free(dinp), free(dg), free(dbeta);
}

static void test_layernorm(void **state) {
    (void)state;
    layernorm_case(4, 8, 12);
    layernorm_case(3, 40, 13); /* two 16-lane vectors and a tail of 8: the kernels' vector sums */
}

/* Rows wider than one 16-lane vector (40 = two vectors and a tail of 8), where the kernels' vector sums run,
 * and the inference form that adds a bias before and after: x += b_in; u = LayerNorm(x); x += b_out. Both
 * against the definition in double, within 1e-5 (float sums of 40 terms of size about 3). */
static void test_layernorm_wide_and_between_biases(void **state) {
    (void)state;
    enum { LR = 3, LD = 40 };
    test_rng r = {21};
    float x[LR * LD], x0[LR * LD], u[LR * LD], ln[LR * LD], mean[LR], rstd[LR];
    float g[LD], be[LD], b_in[LD], b_out[LD];
    fill_normal(x, LR * LD, &r, 0.7, 3.0);
    fill_normal(g, LD, &r, 1.0, 0.3);
    fill_normal(be, LD, &r, 0.0, 0.3);
    fill_normal(b_in, LD, &r, 0.0, 1.0);
    fill_normal(b_out, LD, &r, 0.0, 1.0);
    memcpy(x0, x, sizeof x);
    bf_layernorm_forward(ln, mean, rstd, x, g, be, LR, LD);
    bf_bias_layernorm_bias(x, u, b_in, g, be, b_out, LR, LD);
    double worst_ln = 0.0, worst_u = 0.0, worst_x = 0.0;
    for (size_t i = 0; i < LR; i++) {
        for (int shifted = 0; shifted < 2; shifted++) {
            double v[LD], mu = 0.0, var = 0.0;
            for (size_t j = 0; j < LD; j++) mu += v[j] = (double)x0[i * LD + j] + (shifted ? b_in[j] : 0.0);
            mu /= LD;
            for (size_t j = 0; j < LD; j++) var += (v[j] - mu) * (v[j] - mu);
            var /= LD;
            for (size_t j = 0; j < LD; j++) {
                double y = (v[j] - mu) / sqrt(var + 1e-5) * g[j] + be[j];
                if (!shifted) worst_ln = fmax(worst_ln, fabs(y - ln[i * LD + j]));
                else {
                    worst_u = fmax(worst_u, fabs(y - u[i * LD + j]));
                    worst_x = fmax(worst_x, fabs(v[j] + b_out[j] - x[i * LD + j]));
                }
            }
        }
    }
    printf("  layernorm width 40: max |diff| %.3g; between biases: u %.3g, x %.3g\n", worst_ln, worst_u, worst_x);
    assert_true(worst_ln < 1e-5);
    assert_true(worst_u < 1e-5);
    assert_true(worst_x < 1e-5);
}

/* --------------------------------------------------------------------------------------------- gelu */

typedef struct {
    float *out, *inp, *R;
    size_t n;
} ew_ctx;

static double gelu_loss(void *p) {
    ew_ctx *c = p;
    bf_gelu_forward(c->out, c->inp, c->n);
    return dot_proj(c->out, c->R, c->n);
}

static void test_gelu(void **state) {
    (void)state;
    test_rng r = {13};
    ew_ctx c = {.n = 41};
    c.out = bf_xmalloc(c.n * sizeof(float));
    c.inp = bf_xmalloc(c.n * sizeof(float));
    c.R = bf_xmalloc(c.n * sizeof(float));
    float *dinp = bf_xmalloc(c.n * sizeof(float));
    for (size_t i = 0; i < c.n; i++) c.inp[i] = -4.0f + 8.0f * (float)i / (float)(c.n - 1) + 0.013f;
    fill_normal(c.R, c.n, &r, 0, 1);
    gelu_loss(&c);
    double worst = 0.0;
    for (size_t i = 0; i < c.n; i++) {
        double a = c.inp[i];
        double y = 0.5 * a * (1.0 + tanh(sqrt(2.0 / 3.141592653589793) * (a + 0.044715 * a * a * a)));
        worst = fmax(worst, fabs(y - c.out[i]));
    }
    printf("  gelu forward vs definition: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-6);
    /* the inference kernel (bias + GELU in place, sigmoid form) against the same definition, over a wider
     * range that reaches exp's clamps (|a| up to 60) */
    enum { GR = 3, GF = 45 };
    float gx[GR * GF], gb[GF];
    for (size_t i = 0; i < GF; i++) gb[i] = 0.25f * (float)i - 5.0f;
    for (size_t i = 0; i < GR * GF; i++) gx[i] = -60.0f + 120.0f * (float)i / (float)(GR * GF - 1);
    float gin[GR * GF];
    memcpy(gin, gx, sizeof gx);
    bf_bias_gelu_inplace(gx, gb, GR, GF);
    double gworst = 0.0;
    for (size_t i = 0; i < GR * GF; i++) {
        double a = (double)gin[i] + (double)gb[i % GF];
        double y = 0.5 * a * (1.0 + tanh(sqrt(2.0 / 3.141592653589793) * (a + 0.044715 * a * a * a)));
        gworst = fmax(gworst, fabs(y - gx[i]) / fmax(1.0, fabs(y)));
    }
    printf("  bias+gelu (inference) vs definition: max rel |diff| %.3g\n", gworst);
    assert_true(gworst < 1e-6);
    fill_const(dinp, c.n, PREFILL);
    bf_gelu_backward(dinp, c.inp, c.R, c.n);
    assert_int_equal(fd_check("gelu dinp", c.inp, c.n, dinp, 1, gelu_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r), 0);
    free(c.out), free(c.inp), free(c.R), free(dinp);
}

/* ------------------------------------------------------------------------------------------ softmax */

static double softmax_loss(void *p) {
    ew_ctx *c = p;
    bf_softmax_forward(c->out, c->inp, c->n);
    return dot_proj(c->out, c->R, c->n);
}

static void test_softmax(void **state) {
    (void)state;
    test_rng r = {14};
    ew_ctx c = {.n = 7};
    c.out = bf_xmalloc(c.n * sizeof(float));
    c.inp = bf_xmalloc(c.n * sizeof(float));
    c.R = bf_xmalloc(c.n * sizeof(float));
    float *dinp = bf_xmalloc(c.n * sizeof(float));
    fill_normal(c.inp, c.n, &r, 30.0, 2.0); /* large logits: the max must be subtracted */
    fill_normal(c.R, c.n, &r, 0, 1);
    softmax_loss(&c);
    double m = c.inp[0], z = 0.0, worst = 0.0;
    for (size_t i = 1; i < c.n; i++) m = fmax(m, c.inp[i]);
    for (size_t i = 0; i < c.n; i++) z += exp(c.inp[i] - m);
    for (size_t i = 0; i < c.n; i++) worst = fmax(worst, fabs(exp(c.inp[i] - m) / z - c.out[i]));
    printf("  softmax forward vs definition: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-6);
    fill_const(dinp, c.n, PREFILL);
    bf_softmax_backward(dinp, c.out, c.R, c.n);
    assert_int_equal(fd_check("softmax dinp", c.inp, c.n, dinp, 1, softmax_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r),
                     0);
    free(c.out), free(c.inp), free(c.R), free(dinp);
}

/* -------------------------------------------------------------------------- embedding and masked mean */

#define PK_B 3
#define PK_T 5
#define PK_D 4
#define PK_V 6
static const int32_t pk_len[PK_B] = {2, 5, 1};
static const int32_t pk_tokens[PK_B * PK_T] = {3, 5, 0, 0, 0, /**/ 1, 3, 3, 4, 2, /**/ 5, 0, 0, 0, 0};
#define PK_ROWS 8 /* 2 + 5 + 1 packed rows */

typedef struct {
    float *x, *tok, *pos, *R;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    bf_embedding_forward(c->x, pk_tokens, pk_len, c->tok, c->pos, PK_B, PK_T, PK_D);
    return dot_proj(c->x, c->R, PK_ROWS * PK_D);
}

static void test_embedding(void **state) {
    (void)state;
    test_rng r = {15};
    emb_ctx c;
    c.x = bf_xmalloc(PK_ROWS * PK_D * sizeof(float));
    c.tok = bf_xmalloc(PK_V * PK_D * sizeof(float));
    c.pos = bf_xmalloc(PK_T * PK_D * sizeof(float));
    c.R = bf_xmalloc(PK_ROWS * PK_D * sizeof(float));
    float *dtok = bf_xmalloc(PK_V * PK_D * sizeof(float)), *dpos = bf_xmalloc(PK_T * PK_D * sizeof(float));
    fill_normal(c.tok, PK_V * PK_D, &r, 0, 1);
    fill_normal(c.pos, PK_T * PK_D, &r, 0, 1);
    fill_normal(c.R, PK_ROWS * PK_D, &r, 0, 1);
    emb_loss(&c);
    int bad = 0;
    size_t row = 0;
    for (size_t b = 0; b < PK_B; b++)
        for (size_t t = 0; t < (size_t)pk_len[b]; t++, row++)
            for (size_t i = 0; i < PK_D; i++)
                bad += c.x[row * PK_D + i] != c.tok[(size_t)pk_tokens[b * PK_T + t] * PK_D + i] + c.pos[t * PK_D + i];
    assert_int_equal(bad, 0);
    fill_const(dtok, PK_V * PK_D, PREFILL);
    fill_const(dpos, PK_T * PK_D, PREFILL);
    bf_embedding_backward(dtok, dpos, c.R, pk_tokens, pk_len, PK_B, PK_T, PK_D);
    bad += fd_check("embedding dtok_emb", c.tok, PK_V * PK_D, dtok, 1, emb_loss, &c, 1e-2, 1e-3, 1e-4, 1000, &r);
    bad += fd_check("embedding dpos_emb", c.pos, PK_T * PK_D, dpos, 1, emb_loss, &c, 1e-2, 1e-3, 1e-4, 1000, &r);
    assert_int_equal(bad, 0);
    free(c.x), free(c.tok), free(c.pos), free(c.R), free(dtok), free(dpos);
}

typedef struct {
    float *out, *inp, *R;
} mean_ctx;

static double mean_loss(void *p) {
    mean_ctx *c = p;
    bf_masked_mean_forward(c->out, c->inp, pk_len, PK_B, PK_D);
    return dot_proj(c->out, c->R, PK_B * PK_D);
}

static void test_masked_mean(void **state) {
    (void)state;
    test_rng r = {16};
    mean_ctx c;
    c.out = bf_xmalloc(PK_B * PK_D * sizeof(float));
    c.inp = bf_xmalloc(PK_ROWS * PK_D * sizeof(float));
    c.R = bf_xmalloc(PK_B * PK_D * sizeof(float));
    float *dinp = bf_xmalloc(PK_ROWS * PK_D * sizeof(float));
    fill_normal(c.inp, PK_ROWS * PK_D, &r, 0, 1);
    fill_normal(c.R, PK_B * PK_D, &r, 0, 1);
    mean_loss(&c);
    double worst = 0.0;
    size_t row = 0;
    for (size_t b = 0; b < PK_B; b++) {
        for (size_t i = 0; i < PK_D; i++) {
            double s = 0.0;
            for (size_t t = 0; t < (size_t)pk_len[b]; t++) s += c.inp[(row + t) * PK_D + i];
            worst = fmax(worst, fabs(s / pk_len[b] - c.out[b * PK_D + i]));
        }
        row += (size_t)pk_len[b];
    }
    printf("  masked_mean forward vs definition: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-6);
    fill_const(dinp, PK_ROWS * PK_D, PREFILL);
    bf_masked_mean_backward(dinp, c.R, pk_len, PK_B, PK_D);
    assert_int_equal(fd_check("masked_mean dinp", c.inp, PK_ROWS * PK_D, dinp, 1, mean_loss, &c, 1e-2, 1e-3, 1e-4,
                              1000, &r),
                     0);
    free(c.out), free(c.inp), free(c.R), free(dinp);
}

/* ---------------------------------------------------------------------------------------- attention */

typedef struct {
    float *o, *att, *qkv, *R;
    size_t n, D, H;
    uint32_t mask;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    fill_const(c->o, c->n * c->D, 0.0f); /* unselected heads are left untouched: keep them at 0 */
    bf_attention_forward(c->o, c->att, c->qkv, c->n, c->D, c->H, c->mask);
    return dot_proj(c->o, c->R, c->n * c->D);
}

static int attention_case(size_t n, size_t D, size_t H, uint32_t mask, uint64_t seed) {
    test_rng r = {seed};
    att_ctx c = {.n = n, .D = D, .H = H, .mask = mask};
    size_t dh = D / H;
    c.o = bf_xmalloc(n * D * sizeof(float));
    c.att = bf_xmalloc(H * n * n * sizeof(float));
    c.qkv = bf_xmalloc(n * 3 * D * sizeof(float));
    c.R = bf_xmalloc(n * D * sizeof(float));
    float *dqkv = bf_xmalloc(n * 3 * D * sizeof(float)), *scratch = bf_xmalloc(n * n * sizeof(float));
    fill_normal(c.qkv, n * 3 * D, &r, 0, 1);
    fill_normal(c.R, n * D, &r, 0, 1);
    printf("  attention n=%zu D=%zu H=%zu head_mask 0x%x\n", n, D, H, mask);
    /* forward against the definition, and untouched columns of unselected heads */
    fill_const(c.o, n * D, 7.0f);
    bf_attention_forward(c.o, c.att, c.qkv, n, D, H, mask);
    double worst = 0.0;
    int bad = 0;
    for (size_t h = 0; h < H; h++) {
        int sel = (mask >> h) & 1u;
        for (size_t t = 0; t < n; t++) {
            double s[64], mx = -INFINITY, z = 0.0;
            for (size_t j = 0; j < n; j++) {
                double d = 0.0;
                for (size_t i = 0; i < dh; i++)
                    d += (double)c.qkv[t * 3 * D + h * dh + i] * c.qkv[j * 3 * D + D + h * dh + i];
                s[j] = d / sqrt((double)dh);
                mx = fmax(mx, s[j]);
            }
            for (size_t j = 0; j < n; j++) z += (s[j] = exp(s[j] - mx));
            for (size_t i = 0; i < dh; i++) {
                double y = 0.0;
                for (size_t j = 0; j < n; j++) y += s[j] / z * c.qkv[j * 3 * D + 2 * D + h * dh + i];
                float got = c.o[t * D + h * dh + i];
                if (sel) worst = fmax(worst, fabs(y - got));
                else bad += got != 7.0f;
            }
        }
    }
    printf("  attention forward vs definition: max |diff| %.3g, untouched columns of unselected heads: %s\n", worst,
           bad ? "NO" : "yes");
    bad += !(worst < 1e-5);
    att_loss(&c);
    fill_const(dqkv, n * 3 * D, PREFILL);
    bf_attention_backward(dqkv, scratch, c.R, c.qkv, c.att, n, D, H, mask);
    bad += fd_check("attention dqkv", c.qkv, n * 3 * D, dqkv, 1, att_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r);
    free(c.o), free(c.att), free(c.qkv), free(c.R), free(dqkv), free(scratch);
    return bad;
}

static void test_attention_all_heads(void **state) {
    (void)state;
    int bad = attention_case(5, 8, 4, 0xFu, 17);
    bad += attention_case(6, 12, 3, 0x7u, 18); /* dh = 4, H not a power of two */
    bad += attention_case(1, 8, 2, 0x3u, 19);  /* a single row */
    bad += attention_case(20, 32, 2, 0x3u, 22); /* rows of 20 scores: a 16-lane vector and a tail */
    assert_int_equal(bad, 0);
}

static void test_attention_subset(void **state) {
    (void)state;
    int bad = attention_case(5, 8, 4, 0xAu, 20);
    bad += attention_case(4, 12, 3, 0x1u, 21);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------ cross-entropy */

#define CE_B 3
#define CE_C 5
static const int32_t ce_labels[CE_B] = {2, 0, 4};
#define CE_SCALE 0.7f

typedef struct {
    float *loss, *probs, *logits;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    bf_cross_entropy_forward(c->loss, c->probs, c->logits, ce_labels, CE_B, CE_C);
    double s = 0.0;
    for (size_t b = 0; b < CE_B; b++) s += c->loss[b];
    return CE_SCALE * s;
}

static void test_cross_entropy(void **state) {
    (void)state;
    test_rng r = {22};
    ce_ctx c;
    c.loss = bf_xmalloc(CE_B * sizeof(float));
    c.probs = bf_xmalloc(CE_B * CE_C * sizeof(float));
    c.logits = bf_xmalloc(CE_B * CE_C * sizeof(float));
    float *dl = bf_xmalloc(CE_B * CE_C * sizeof(float));
    fill_normal(c.logits, CE_B * CE_C, &r, 0, 2);
    c.logits[4] += 40.0f; /* large logits: logsumexp must subtract the max */
    ce_loss(&c);
    double worst = 0.0;
    for (size_t b = 0; b < CE_B; b++) {
        double m = -INFINITY, z = 0.0;
        for (size_t k = 0; k < CE_C; k++) m = fmax(m, c.logits[b * CE_C + k]);
        for (size_t k = 0; k < CE_C; k++) z += exp(c.logits[b * CE_C + k] - m);
        double want = m + log(z) - c.logits[b * CE_C + (size_t)ce_labels[b]];
        worst = fmax(worst, fabs(want - c.loss[b]) / fmax(1.0, fabs(want)));
    }
    printf("  cross_entropy forward vs definition: max rel diff %.3g\n", worst);
    assert_true(worst < 1e-5);
    fill_const(dl, CE_B * CE_C, PREFILL);
    bf_cross_entropy_backward(dl, c.probs, ce_labels, CE_SCALE, CE_B, CE_C);
    assert_int_equal(
        fd_check("cross_entropy dlogits", c.logits, CE_B * CE_C, dl, 1, ce_loss, &c, 1e-2, 2e-2, 5e-4, 1000, &r), 0);
    free(c.loss), free(c.probs), free(c.logits), free(dl);
}

/* ------------------------------------------------------------------------------------- whole model */

#define MB 4
#define MT 8
static const int32_t mb_len[MB] = {8, 3, 1, 5};
static const int32_t mb_labels[MB] = {0, 2, 1, 2};

typedef struct {
    bf_model m;
    bf_batch batch;
    bf_explore ex;
    float ce_scale, cost_scale;
    int32_t tokens[MB * MT];
    float gumbel[MB * 2 * BF_MAX_HEADS];
    int32_t k_random[MB * 2];
    int32_t budget0[MB * 2];
    uint32_t mask0[MB * 2];
    int flipped; /* set by model_loss when a discrete choice differs from budget0/mask0 */
} model_ctx;

/* The budgets of each layer when model_setup_bh gets fixed_budget = BF_FIXED_PER_LAYER (model.layer_budgets). */
static const int kLayerBudgets[2] = {3, 1};

/* budget_hidden: the added hidden layer of the budget predictor (0: none). */
static void model_setup_bh(model_ctx *c, int full_heads, int fixed_budget, int gate_norm, int budget_hidden,
                           uint64_t seed) {
    bf_model_config cfg = {.vocab_size = 20, .max_len = MT, .d_model = 8, .n_heads = 4, .n_layers = 2,
                           .d_ff = 12, .n_classes = 3, .full_heads = full_heads, .fixed_budget = fixed_budget,
                           .gate_norm = gate_norm, .budget_hidden = budget_hidden};
    if (fixed_budget == BF_FIXED_PER_LAYER) memcpy(cfg.layer_budgets, kLayerBudgets, sizeof kLayerBudgets);
    memset(c, 0, sizeof *c);
    bf_model_init(&c->m, &cfg, MB);
    test_rng r = {seed};
    for (int i = 0; i < c->m.n_tensors; i++) {
        const bf_tensor_info *t = &c->m.tensors[i];
        size_t len = strlen(t->name);
        int gamma = len >= 5 && strcmp(t->name + len - 5, "gamma") == 0;
        fill_normal(c->m.params + t->offset, t->numel, &r, gamma ? 1.0 : 0.0, 0.3);
    }
    for (size_t b = 0; b < MB; b++)
        for (size_t t = 0; t < MT; t++)
            c->tokens[b * MT + t] = t < (size_t)mb_len[b] ? (int32_t)(1 + rng_next(&r) % 19) : 0;
    c->batch = (bf_batch){.n = MB, .tokens = c->tokens, .lengths = mb_len, .labels = mb_labels};
    c->ex = (bf_explore){.eps = 0.0f, .tau = 1.0f, .gumbel = NULL, .k_random = NULL};
    c->ce_scale = 1.0f / MB;
    c->cost_scale = 0.0f;
}

static void model_setup_opts(model_ctx *c, int full_heads, int fixed_budget, int gate_norm, uint64_t seed) {
    model_setup_bh(c, full_heads, fixed_budget, gate_norm, 0, seed);
}

static void model_setup(model_ctx *c, int full_heads, int fixed_budget, uint64_t seed) {
    model_setup_opts(c, full_heads, fixed_budget, 0, seed);
}

/* Larger budget weights, so that k^ (and the budget) differs between inputs and layers. */
static void spread_budgets(bf_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int i = 0; i < m->cfg.d_model; i++) m->p.layers[l].w_bud[i] *= 5.0f;
        m->p.layers[l].b_bud[0] += l % 2 ? 0.5f : -0.5f;
    }
}

static void model_set_explore(model_ctx *c, float eps, float tau, int random_budgets, uint64_t seed) {
    test_rng r = {seed};
    size_t L = (size_t)c->m.cfg.n_layers, H = (size_t)c->m.cfg.n_heads;
    for (size_t i = 0; i < MB * L * H; i++) c->gumbel[i] = (float)(-log(-log(rng_uniform(&r))));
    for (size_t i = 0; i < MB * L; i++)
        c->k_random[i] = random_budgets && rng_uniform(&r) < 0.5 ? (int32_t)(1 + rng_next(&r) % H) : 0;
    c->ex = (bf_explore){.eps = eps, .tau = tau, .gumbel = eps > 0 ? c->gumbel : NULL,
                         .k_random = eps > 0 ? c->k_random : NULL};
}

static double model_loss(void *p) {
    model_ctx *c = p;
    double ce = bf_model_forward(&c->m, &c->batch, &c->ex);
    size_t n = MB * (size_t)c->m.cfg.n_layers;
    for (size_t i = 0; i < n; i++)
        if (c->m.budget[i] != c->budget0[i] || c->m.head_mask[i] != c->mask0[i]) c->flipped = 1;
    if (c->batch.soft_targets) { /* distillation: cross-entropy against the target distributions */
        ce = 0.0;
        for (size_t i = 0; i < MB * (size_t)c->m.cfg.n_classes; i++)
            ce -= (double)c->batch.soft_targets[i] * log((double)c->m.probs[i]);
    }
    double sup = 0.0, H = c->m.cfg.n_heads;
    size_t L = (size_t)c->m.cfg.n_layers;
    if (c->ex.k_target)
        for (size_t i = 0; i < n; i++) {
            double d = (double)c->m.khat[i] - (double)c->ex.k_target[i / L];
            if (c->ex.sup_center) { /* centred: both sides less their mean over the inputs, in this layer */
                double mk = 0.0, mt = 0.0;
                for (size_t b = 0; b < MB; b++) {
                    mk += c->m.khat[b * L + i % L];
                    mt += c->ex.k_target[b];
                }
                d -= (mk - mt) / (double)MB;
            }
            sup += (double)c->ex.sup_scale * d * d / ((H - 1.0) * (H - 1.0));
        }
    if (c->ex.spread_sd > 0.0f && c->ex.k_force == 0) /* train.budget_spread, per layer over the inputs */
        for (size_t l = 0; l < L; l++) {
            double mk = 0.0, v = 0.0, s2 = (double)c->ex.spread_sd * c->ex.spread_sd;
            for (size_t b = 0; b < MB; b++) mk += c->m.khat[b * L + l] / (double)MB;
            for (size_t b = 0; b < MB; b++) v += pow(c->m.khat[b * L + l] - mk, 2) / (double)MB;
            double gap = fmax(0.0, 1.0 - v / s2);
            sup += (double)c->ex.spread_scale * (double)MB * gap * gap;
        }
    return c->ce_scale * ce + c->cost_scale * bf_model_budget_sum(&c->m, MB) + sup;
}

/* FD on up to 20 coordinates of every tensor, skipping coordinates where a discrete choice flips. */
static int model_fd(model_ctx *c, const char *label) {
    bf_model *m = &c->m;
    size_t n = MB * (size_t)m->cfg.n_layers;
    bf_model_forward(m, &c->batch, &c->ex);
    memcpy(c->budget0, m->budget, n * sizeof(int32_t));
    memcpy(c->mask0, m->head_mask, n * sizeof(uint32_t));
    printf("model %s: budgets", label);
    for (size_t i = 0; i < n; i++) printf(" %d", m->budget[i]);
    printf(", head masks");
    for (size_t i = 0; i < n; i++) printf(" 0x%x", m->head_mask[i]);
    printf("\n");
    bf_model_zero_grad(m);
    bf_model_backward(m, &c->batch, &c->ex, c->ce_scale, c->cost_scale);
    float *grads = bf_xmalloc(m->n_params * sizeof(float));
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    test_rng r = {99};
    const double h = 5e-3, rtol = 1e-2, atol = 2e-4;
    int bad = 0, skipped = 0, checked = 0;
    double worst = 0.0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const bf_tensor_info *t = &m->tensors[ti];
        int is_tok = strcmp(t->name, "tok_emb") == 0;
        float *x = m->params + t->offset;
        const float *a = grads + t->offset;
        size_t D = (size_t)m->cfg.d_model;
        int tbad = 0, tchecked = 0;
        double tworst = 0.0;
        for (int s = 0; s < 20 && (size_t)s < t->numel; s++) {
            size_t i;
            if (is_tok) { /* a row of a token that occurs in the batch */
                size_t b = rng_next(&r) % MB, pos = rng_next(&r) % (size_t)mb_len[b];
                i = (size_t)c->tokens[b * MT + pos] * D + rng_next(&r) % D;
            } else {
                i = t->numel <= 20 ? (size_t)s : (size_t)(rng_next(&r) % t->numel);
            }
            float xi = x[i], xp = (float)(xi + h), xm = (float)(xi - h);
            c->flipped = 0;
            x[i] = xp;
            double lp = model_loss(c);
            x[i] = xm;
            double lm = model_loss(c);
            x[i] = xi;
            if (c->flipped) {
                skipped++;
                continue;
            }
            double fd = (lp - lm) / ((double)xp - (double)xm), ga = a[i];
            double err = fabs(ga - fd), scale = fmax(fabs(ga), fabs(fd));
            tchecked++;
            if (!(err <= atol + rtol * scale)) {
                if (tbad < 3)
                    printf("    %s[%zu]: analytic %.7g, finite difference %.7g  MISMATCH\n", t->name, i, ga, fd);
                tbad++;
            }
            tworst = fmax(tworst, err / (atol + rtol * scale));
        }
        printf("  %-24s %2d coordinates, tolerance used %.3f%s\n", t->name, tchecked, tworst,
               tbad ? "  FAILED" : "");
        worst = fmax(worst, tworst);
        bad += tbad;
        checked += tchecked;
    }
    printf("model %s: %d coordinates checked, %d skipped (a choice flipped), tolerance used %.3f, %d failed\n", label, checked,
           skipped, worst, bad);
    /* the discrete choices must be stable for almost every coordinate, or the check says little */
    if (skipped * 5 > checked) {
        printf("model %s: too many skipped coordinates\n", label);
        bad++;
    }
    free(grads);
    return bad;
}

static void test_model_full_heads(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    model_setup(c, 1, 0, 101);
    int bad = model_fd(c, "full_heads");
    bf_model_free(&c->m);
    free(c);
    assert_int_equal(bad, 0);
}

static void test_model_fixed_budget(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    model_setup(c, 0, 2, 102);
    int bad = model_fd(c, "fixed_budget=2 eps=0");
    model_set_explore(c, 0.5f, 1.0f, 0, 202);
    bad += model_fd(c, "fixed_budget=2 eps=0.5");
    bf_model_free(&c->m);
    free(c);
    assert_int_equal(bad, 0);
}

/* model.layer_budgets = 3,1 (added option): layer 0 keeps 3 heads, layer 1 one, with and without exploration
 * and with renormalised gates. */
static void test_model_layer_budgets(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    model_setup(c, 0, BF_FIXED_PER_LAYER, 103);
    int bad = model_fd(c, "layer_budgets=3,1 eps=0");
    for (int b = 0; b < MB; b++) { /* the forward really used k = 3 in layer 0 and k = 1 in layer 1 */
        assert_int_equal(c->m.budget[b * 2 + 0], 3);
        assert_int_equal(c->m.budget[b * 2 + 1], 1);
    }
    model_set_explore(c, 0.5f, 1.0f, 0, 203);
    bad += model_fd(c, "layer_budgets=3,1 eps=0.5");
    bf_model_free(&c->m);
    model_setup_opts(c, 0, BF_FIXED_PER_LAYER, 1, 104);
    bad += model_fd(c, "gate_norm layer_budgets=3,1 eps=0");
    bf_model_free(&c->m);
    free(c);
    assert_int_equal(bad, 0);
}

/* Smallest distance of any k^ of the last forward from a rounding boundary x.5. */
static double khat_margin(const bf_model *m, int n) {
    double d = INFINITY;
    for (size_t i = 0; i < (size_t)n * (size_t)m->cfg.n_layers; i++) {
        double k = m->khat[i];
        d = fmin(d, fabs(k - (floor(k) + 0.5)));
    }
    return d;
}

/* A learned-budget model (spread budgets) from the first seed >= `seed` whose k^ stay at least 0.1 from every
 * rounding boundary x.5, with and without exploration, so finite differences cannot flip a budget. Returns
 * the seed; fails the test past `last`. */
static uint64_t setup_learned_away_bh(model_ctx *c, int gate_norm, int budget_hidden, uint64_t seed,
                                      uint64_t last) {
    for (;; seed++) {
        model_setup_bh(c, 0, 0, gate_norm, budget_hidden, seed);
        spread_budgets(&c->m);
        model_set_explore(c, 0.6f, 2e-3f, 1, seed + 1000);
        bf_model_forward(&c->m, &c->batch, &c->ex);
        double m1 = khat_margin(&c->m, MB);
        c->ex.eps = 0.0f;
        bf_model_forward(&c->m, &c->batch, &c->ex);
        if (fmin(m1, khat_margin(&c->m, MB)) >= 0.1) return seed;
        bf_model_free(&c->m);
        assert_true(seed < last);
    }
}

static uint64_t setup_learned_away_from_rounding(model_ctx *c, int gate_norm, uint64_t seed, uint64_t last) {
    return setup_learned_away_bh(c, gate_norm, 0, seed, last);
}

/* Learned budget. With a tiny temperature the surrogate slope sigma'((k^ - rank - 0.5)/tau)/tau vanishes
 * (k^ stays >= 0.1 from every x.5, so the argument is >= 50 in magnitude): the analytic gradient is then the
 * true derivative of the loss with the choices held fixed, budget cost included, and FD checks every
 * parameter (w_bud and b_bud through the cost alone). The surrogate itself is checked in
 * test_model_straight_through. */
static void test_model_learned(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    uint64_t seed = setup_learned_away_from_rounding(c, 0, 103, 200);
    printf("learned-budget model: seed %llu\n", (unsigned long long)seed);
    c->cost_scale = 0.05f;
    model_set_explore(c, 0.0f, 2e-3f, 0, seed + 1000);
    int bad = model_fd(c, "learned eps=0 (tau 2e-3)");
    model_set_explore(c, 0.6f, 2e-3f, 1, seed + 1000);
    bad += model_fd(c, "learned eps=0.6 (tau 2e-3)");
    bf_model_free(&c->m);
    free(c);
    assert_int_equal(bad, 0);
}

/* Added options (docs/MODEL.md): renormalised gates (gate_norm = 1) for a fixed and a learned budget, and the
 * training losses of the sandwich rule and budget supervision (distillation targets, k* targets), checked by
 * finite differences with the discrete choices held fixed (tiny tau for the learned budget, as above). */
static void test_model_gate_norm_and_training_losses(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    model_setup_opts(c, 0, 2, 1, 105);
    int bad = model_fd(c, "gate_norm fixed_budget=2 eps=0");
    model_set_explore(c, 0.5f, 1.0f, 0, 205);
    bad += model_fd(c, "gate_norm fixed_budget=2 eps=0.5");
    bf_model_free(&c->m);
    uint64_t seed = setup_learned_away_from_rounding(c, 1, 106, 300);
    c->cost_scale = 0.05f;
    model_set_explore(c, 0.6f, 2e-3f, 1, seed + 1000);
    bad += model_fd(c, "gate_norm learned eps=0.6 (tau 2e-3)");
    float soft[MB * 3] = {0.2f, 0.5f, 0.3f, 0.6f, 0.1f, 0.3f, 0.3f, 0.3f, 0.4f, 0.05f, 0.15f, 0.8f};
    float k_target[MB] = {1.0f, 4.0f, 2.0f, 3.0f};
    c->batch.soft_targets = soft;
    c->ex.k_target = k_target;
    c->ex.sup_scale = 0.3f;
    bad += model_fd(c, "gate_norm learned, distillation targets, budget supervision");
    c->ex.sup_center = 1; /* train.supervise_center: the mean of k^ over the inputs is differentiated too */
    bad += model_fd(c, "gate_norm learned, distillation targets, centred budget supervision");
    c->ex.sup_center = 0;
    c->ex.spread_sd = 2.0f; /* train.budget_spread beside supervision: sigma above the budgets' sd, so it acts */
    c->ex.spread_scale = 0.3f;
    bad += model_fd(c, "gate_norm learned, distillation targets, budget supervision and spread");
    c->ex.spread_sd = 0.0f;
    c->ex.k_target = NULL;
    c->ex.k_force = 3; /* a sandwich pass: every layer at k = 3, no gradient to k^ (nor cost) */
    c->cost_scale = 0.0f;
    bad += model_fd(c, "gate_norm learned, forced k = 3, distillation targets");
    bf_model_free(&c->m);
    free(c);
    assert_int_equal(bad, 0);
}

/* Added option (docs/MODEL.md): the budget predictor's hidden layer (budget_hidden = 6), with and without
 * renormalised gates. At tiny tau the budget weights get their gradient through the budget cost and, in the
 * last check, through budget supervision (k^ - k*)^2, which reaches W_bud_h, b_bud_h and w_bud_o through the
 * GELU; the choices are held fixed as above. */
static void test_model_budget_hidden(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    int bad = 0;
    for (int gn = 0; gn <= 1; gn++) {
        uint64_t seed = setup_learned_away_bh(c, gn, 6, 107 + 100 * (uint64_t)gn, 200 + 100 * (uint64_t)gn);
        printf("budget_hidden = 6, gate_norm = %d: seed %llu\n", gn, (unsigned long long)seed);
        assert_non_null(bf_model_tensor(&c->m, "layers/1/router/w_bud_o"));
        c->cost_scale = 0.05f;
        model_set_explore(c, 0.0f, 2e-3f, 0, seed + 1000);
        bad += model_fd(c, gn ? "budget_hidden gate_norm eps=0 (tau 2e-3)" : "budget_hidden eps=0 (tau 2e-3)");
        model_set_explore(c, 0.6f, 2e-3f, 1, seed + 1000);
        float k_target[MB] = {1.0f, 4.0f, 2.0f, 3.0f};
        c->ex.k_target = k_target;
        c->ex.sup_scale = 0.3f;
        bad += model_fd(c, gn ? "budget_hidden gate_norm eps=0.6, budget supervision"
                              : "budget_hidden eps=0.6, budget supervision");
        c->ex.sup_center = 1;
        bad += model_fd(c, gn ? "budget_hidden gate_norm eps=0.6, centred budget supervision"
                              : "budget_hidden eps=0.6, centred budget supervision");
        c->ex.sup_center = 0;
        c->ex.k_target = NULL;
        c->ex.spread_sd = 1.5f; /* train.budget_spread alone: through the hidden layer too */
        c->ex.spread_scale = 0.5f;
        bad += model_fd(c, gn ? "budget_hidden gate_norm eps=0.6, budget spread" : "budget_hidden eps=0.6, budget spread");
        c->ex.spread_sd = 0.0f;
        c->ex.spread_scale = 0.0f;
        bf_model_free(&c->m);
    }
    free(c);
    assert_int_equal(bad, 0);
}

/* The straight-through estimator of the budget, by hand from forward outputs:
 *   d loss / d b_bud(l) = dk^/db * ( cost_scale/(H-1) + sum_h A_h sigma'((k^ - rank_h - 0.5)/tau)/tau ),
 *   dk^/db = (k^ - 1)(H - k^)/(H - 1),   A_h = H p_h d loss/d g_h = g_h d loss/d g_h.
 * One input per batch, and exploration draws k = H in every layer with no Gumbel noise, so every head is
 * selected (g_h = H p_h != 0) and A_h is observable: scaling head h's rows of W_out by (1 + d) scales g_h o_h,
 * so A_h = sum over those rows of W_out * dW_out. The ranks come from forwards with k = 1..H-1 in layer l. */
static void test_model_straight_through(void **state) {
    (void)state;
    model_ctx *c = bf_xmalloc(sizeof *c);
    model_setup(c, 0, 0, 104);
    spread_budgets(&c->m);
    bf_model *m = &c->m;
    const size_t H = (size_t)m->cfg.n_heads, L = (size_t)m->cfg.n_layers, D = (size_t)m->cfg.d_model, dh = D / H;
    const float tau = 0.8f, cost_scale = 0.05f, ce_scale = 1.0f;
    int bad = 0;
    for (size_t b = 0; b < MB; b++) {
        bf_batch one = {.n = 1, .tokens = c->tokens + b * MT, .lengths = mb_len + b, .labels = mb_labels + b};
        float gumbel[2 * BF_MAX_HEADS] = {0};
        int32_t kr[2];
        bf_explore ex = {.eps = 0.5f, .tau = tau, .gumbel = gumbel, .k_random = kr};
        for (size_t l = 0; l < L; l++) {
            /* ranks of layer l: head in the top-j set but not the top-(j-1) set has rank j-1 */
            int rank[BF_MAX_HEADS];
            uint32_t prev = 0;
            for (size_t j = 1; j <= H; j++) {
                for (size_t i = 0; i < L; i++) kr[i] = (int32_t)H;
                kr[l] = (int32_t)j;
                bf_model_forward(m, &one, &ex);
                uint32_t mk = m->head_mask[l], add = mk & ~prev;
                assert_int_equal(__builtin_popcount(add), 1);
                rank[__builtin_ctz(add)] = (int)j - 1;
                prev = mk;
            }
            /* k = H everywhere: forward, backward */
            for (size_t i = 0; i < L; i++) kr[i] = (int32_t)H;
            bf_model_forward(m, &one, &ex);
            double kh = m->khat[l];
            bf_model_zero_grad(m);
            bf_model_backward(m, &one, &ex, ce_scale, cost_scale);
            const float *w_out = m->p.layers[l].w_out, *dw_out = m->g.layers[l].w_out;
            double dkhat = cost_scale / (double)(H - 1);
            for (size_t h = 0; h < H; h++) {
                double A = 0.0;
                for (size_t i = h * dh; i < (h + 1) * dh; i++)
                    for (size_t o = 0; o < D; o++) A += (double)w_out[i * D + o] * dw_out[i * D + o];
                double z = (kh - rank[h] - 0.5) / tau, sg = 1.0 / (1.0 + exp(-z));
                dkhat += A * sg * (1.0 - sg) / tau;
            }
            double want = dkhat * (kh - 1.0) * ((double)H - kh) / (double)(H - 1);
            double got = m->g.layers[l].b_bud[0];
            int ok = fabs(got - want) <= 1e-6 + 1e-3 * fabs(want);
            printf("  input %zu layer %zu: k^ %.4f ranks %d %d %d %d  d loss/d b_bud: C %.7g, hand %.7g%s\n", b, l, kh,
                   rank[0], rank[1], rank[2], rank[3], got, want, ok ? "" : "  MISMATCH");
            bad += !ok;
        }
    }
    bf_model_free(m);
    free(c);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_wide_and_between_biases),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_masked_mean),
        cmocka_unit_test(test_attention_all_heads),
        cmocka_unit_test(test_attention_subset),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_model_full_heads),
        cmocka_unit_test(test_model_fixed_budget),
        cmocka_unit_test(test_model_layer_budgets),
        cmocka_unit_test(test_model_learned),
        cmocka_unit_test(test_model_straight_through),
        cmocka_unit_test(test_model_gate_norm_and_training_losses),
        cmocka_unit_test(test_model_budget_hidden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
