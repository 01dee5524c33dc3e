/* The model in bf16 (bf_model_set_precision) against the same weights in fp32: loss, logits, every
 * parameter's gradient, and the head-skipping inference path.
 *
 * Tolerances. Each product rounds its two inputs to bf16 (relative 2^-8 each, test_bf16.c), so one
 * product's output is off by about 2^-8 relative (random-sign errors of K terms add like sqrt(K), against
 * a sum that grows like sqrt(K) too); a gradient passes through a chain of such products (forward and
 * backward, 2 layers here: about 10), so its relative error is a few times 2^-8 = 0.4%. The check is per
 * tensor, in norm: ||g_bf16 - g_fp32|| <= 0.05 ||g_fp32|| (about 12 x 2^-8; measured largest here 1.0% full heads, 3.0% for a router bias:
 * printed), and the loss within 2^-6 relative. Discrete router decisions must agree (same head sets), else
 * the comparison would be between two different functions.
 *
 * Skipped (exit 77) on a CPU without bf16 instructions, after checking that bf_model_set_precision refuses
 * with the message naming avx512_bf16 and amx_bf16 and leaves the model in fp32. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/bf16.h"
#include "budgetformer/model.h"
#include "testrng.h"

enum { B = 6, T = 12, L = 2 };

static const bf_model_config kCfg = {.vocab_size = 50, .max_len = T, .d_model = 32, .n_heads = 4, .n_layers = L,
                                     .d_ff = 48, .n_classes = 3, .gate_norm = 1};

static void setup_model(bf_model *m, int full_heads) {
    bf_model_config c = kCfg;
    c.full_heads = full_heads;
    bf_model_init(m, &c, B);
    test_rng r = {42};
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = (float)(0.15 * rng_normal(&r));
    for (int l = 0; l < L; l++) m->p.layers[l].b_bud[0] = 0.0f;
}

static void make_batch(int32_t *tok, int32_t *len, int32_t *lab) {
    test_rng r = {5};
    memset(tok, 0, sizeof(int32_t) * B * T);
    for (int b = 0; b < B; b++) {
        len[b] = 3 + (b * 5) % (T - 2);
        lab[b] = b % 3;
        for (int t = 0; t < len[b]; t++) tok[b * T + t] = 2 + (int)(rng_next(&r) % 48);
    }
}

static double norm_diff(const float *a, const float *b, size_t n, double *na) {
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)a[i] * a[i];
    }
    *na = sqrt(s);
    return sqrt(d);
}

static void check_gradients(int full_heads) {
    int32_t tok[B * T], len[B], lab[B];
    make_batch(tok, len, lab);
    bf_batch batch = {.n = B, .tokens = tok, .lengths = len, .labels = lab};
    bf_explore ex = {.eps = 0.0f, .tau = 1.0f};
    bf_model m32, m16;
    setup_model(&m32, full_heads);
    setup_model(&m16, full_heads);
    bf_err err = {0};
    assert_int_equal(bf_model_set_precision(&m16, BF_PREC_BF16, &err), 0);
    double ce32 = bf_model_forward(&m32, &batch, &ex), ce16 = bf_model_forward(&m16, &batch, &ex);
    for (int i = 0; i < B * L; i++) assert_int_equal(m32.head_mask[i], m16.head_mask[i]);
    bf_model_zero_grad(&m32);
    bf_model_zero_grad(&m16);
    bf_model_backward(&m32, &batch, &ex, 1.0f / B, 0.01f / (B * L));
    bf_model_backward(&m16, &batch, &ex, 1.0f / B, 0.01f / (B * L));
    printf("  full_heads %d: loss fp32 %.6f bf16 %.6f (relative %.2e)\n", full_heads, ce32, ce16,
           fabs(ce16 - ce32) / ce32);
    assert_true(fabs(ce16 - ce32) <= 0x1p-6 * fabs(ce32));
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < m32.n_tensors; i++) {
        const bf_tensor_info *t = &m32.tensors[i];
        double n32, d = norm_diff(m32.grads + t->offset, m16.grads + t->offset, t->numel, &n32);
        if (n32 < 1e-6) continue; /* no gradient (for instance the router of a full-heads model) */
        if (d / n32 > worst) worst = d / n32, worst_name = t->name;
        if (d > 0.05 * n32) printf("  %s: relative difference %.4f\n", t->name, d / n32);
        assert_true(d <= 0.05 * n32);
    }
    printf("  largest relative gradient difference %.4f (%s)\n", worst, worst_name);
    assert_true(worst > 0.0); /* bf16 really ran */
    bf_model_free(&m32);
    bf_model_free(&m16);
}

static void test_gradients_learned(void **state) {
    (void)state;
    check_gradients(0);
}

static void test_gradients_full_heads(void **state) {
    (void)state;
    check_gradients(1);
}

/* bf16 head-skipping inference against the bf16 forward (both round the same products' inputs; the
 * attention of inference stays fp32, so they agree to bf16 rounding, not bitwise), and against fp32. */
static void test_infer(void **state) {
    (void)state;
    int32_t tok[B * T], len[B], lab[B];
    make_batch(tok, len, lab);
    bf_batch batch = {.n = B, .tokens = tok, .lengths = len, .labels = lab};
    bf_explore ex = {.eps = 0.0f, .tau = 1.0f};
    bf_model m;
    setup_model(&m, 0);
    float l32[B * 3], lfwd[B * 3];
    uint32_t mask[B * L];
    bf_model_infer(&m, &batch, NULL);
    memcpy(l32, m.logits, sizeof l32);
    memcpy(mask, m.head_mask, sizeof mask);
    bf_err err = {0};
    assert_int_equal(bf_model_set_precision(&m, BF_PREC_BF16, &err), 0);
    bf_model_forward(&m, &batch, &ex);
    memcpy(lfwd, m.logits, sizeof lfwd);
    bf_model_infer(&m, &batch, NULL);
    double scale = 0.0, d_fwd = 0.0, d_32 = 0.0;
    for (int i = 0; i < B * 3; i++) {
        scale = fmax(scale, fabs(l32[i]));
        d_fwd = fmax(d_fwd, fabs((double)m.logits[i] - lfwd[i]));
        d_32 = fmax(d_32, fabs((double)m.logits[i] - l32[i]));
    }
    for (int i = 0; i < B * L; i++) assert_int_equal(mask[i], m.head_mask[i]);
    printf("  bf16 inference: largest logit difference %.2e from the bf16 forward, %.2e from fp32 (logits up "
           "to %.2f)\n", d_fwd, d_32, scale);
    assert_true(d_fwd <= 0.03 * scale && d_32 <= 0.03 * scale);
    bf_model_free(&m);
}

/* A weight change reaches the bf16 copies only through bf_model_params_updated (once per update). */
static void test_params_updated(void **state) {
    (void)state;
    int32_t tok[B * T], len[B], lab[B];
    make_batch(tok, len, lab);
    bf_batch batch = {.n = B, .tokens = tok, .lengths = len, .labels = lab};
    bf_explore ex = {.eps = 0.0f, .tau = 1.0f};
    bf_model m;
    setup_model(&m, 1);
    bf_err err = {0};
    assert_int_equal(bf_model_set_precision(&m, BF_PREC_BF16, &err), 0);
    bf_model_forward(&m, &batch, &ex);
    float before = m.logits[0];
    for (int i = 0; i < 3 * 32; i++) m.p.cls_w[i] *= 2.0f; /* the classifier's weights doubled */
    bf_model_forward(&m, &batch, &ex);
    assert_true(m.logits[0] == before); /* stale copies until told */
    bf_model_params_updated(&m);
    bf_model_forward(&m, &batch, &ex);
    assert_true(m.logits[0] != before);
    bf_model_free(&m);
}

int main(void) {
    bf_err err = {0};
    if (bf_bf16_check(&err)) {
        bf_model m;
        setup_model(&m, 0);
        bf_err e2 = {0};
        int rc = bf_model_set_precision(&m, BF_PREC_BF16, &e2);
        int ok = rc == -1 && m.precision == BF_PREC_FP32 &&
                 ((strstr(e2.msg, "avx512_bf16") && strstr(e2.msg, "amx_bf16")) || strstr(e2.msg, "oneDNN"));
        bf_model_free(&m);
        fprintf(stderr, "test_bf16_model: skipped: %s\n", e2.msg);
        return ok ? 77 : 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_learned),
        cmocka_unit_test(test_gradients_full_heads),
        cmocka_unit_test(test_infer),
        cmocka_unit_test(test_params_updated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
