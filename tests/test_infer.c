/* The head-skipping inference path (bf_model_infer) gives the outputs of the training forward pass that
 * computes every head and then masks (bf_model_forward at eps = 0): logits within 1e-5 (sums run in another
 * order), budgets and head masks exactly; and it holds less attention memory when heads are skipped. Head
 * width 4 runs the two-sgemm attention, width 16 the fused kernel (src/kernels/attention_infer.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/attention_infer.h"
#include "budgetformer/model.h"
#include "budgetformer/rng.h"

enum { B = 12, T = 10 };

static void random_weights(bf_model *m, uint64_t seed, float scale) {
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] = (float)(scale * bf_rng_normal(bf_rng_key(seed, 0, i, 0, 99, 0)));
}

static void make_batch(int32_t *tok, int32_t *len, int32_t *lab, int V) {
    memset(tok, 0, sizeof(int32_t) * B * T);
    for (int b = 0; b < B; b++) {
        len[b] = 1 + (b * 7) % T;
        lab[b] = b % 3;
        for (int t = 0; t < len[b]; t++) tok[b * T + t] = 2 + (int)(bf_rng_key(5, 0, (uint64_t)(b * T + t), 0, 98, 0) % (uint64_t)(V - 2));
    }
}

/* gate_norm: the added renormalised gates; budget_hidden: the added hidden layer of the budget predictor;
 * k_override (NULL or [B, 3]): budgets set from outside (eval's budget controls), in both paths alike. */
static void check_model_bh(int d_model, int full_heads, int fixed_budget, float w_scale, int gate_norm,
                           int budget_hidden, const int32_t *k_override) {
    bf_model_config c = {.vocab_size = 40, .max_len = T, .d_model = d_model, .n_heads = 4, .n_layers = 3,
                         .d_ff = 24, .n_classes = 3, .full_heads = full_heads, .fixed_budget = fixed_budget,
                         .gate_norm = gate_norm, .budget_hidden = budget_hidden};
    bf_model m;
    bf_model_init(&m, &c, B);
    random_weights(&m, 11, w_scale);
    int32_t tok[B * T], len[B], lab[B];
    make_batch(tok, len, lab, c.vocab_size);
    bf_batch batch = {.n = B, .tokens = tok, .lengths = len, .labels = lab, .k_override = k_override};
    bf_explore ex = {.eps = 0.0f, .tau = 1.0f};
    double ce_full = bf_model_forward(&m, &batch, &ex);
    float logits[B * 3];
    int32_t budget[B * 3];
    uint32_t mask[B * 3];
    memcpy(logits, m.logits, sizeof logits);
    memcpy(budget, m.budget, sizeof budget);
    memcpy(mask, m.head_mask, sizeof mask);
    bf_infer_stats st;
    double ce_skip = bf_model_infer(&m, &batch, &st);
    double worst = 0.0;
    for (int i = 0; i < B * 3; i++) {
        double d = fabs((double)logits[i] - (double)m.logits[i]);
        worst = d > worst ? d : worst;
    }
    print_message("full_heads=%d fixed_budget=%d: max logit difference %.3g, attention bytes %.0f of %.0f\n",
                  full_heads, fixed_budget, worst, st.attn_bytes, st.attn_bytes_all_heads);
    assert_true(worst <= 1e-5);
    assert_true(fabs(ce_full - ce_skip) <= 1e-4);
    assert_memory_equal(budget, m.budget, sizeof budget);
    assert_memory_equal(mask, m.head_mask, sizeof mask);
    if (k_override)
        for (int i = 0; i < B * 3; i++)
            if (k_override[i] > 0) assert_int_equal(m.budget[i], k_override[i]);
    /* Every head: q, k, v of all rows plus the kernel's scratch for the longest input, exactly. */
    size_t rows = 0, n_max = 0;
    for (int b = 0; b < B; b++) {
        rows += (size_t)len[b];
        n_max = (size_t)len[b] > n_max ? (size_t)len[b] : n_max;
    }
    double held_all = ((double)rows * 3.0 * (double)d_model +
                       (double)bf_attention_infer_scratch_floats(n_max, (size_t)d_model, 4)) * sizeof(float);
    if (full_heads) assert_true(st.attn_bytes == held_all);
    else assert_true(st.attn_bytes < held_all);
    assert_true(st.attn_bytes < st.attn_bytes_all_heads);
    /* A second call reuses the scratch and gives the same bits. */
    float again[B * 3];
    memcpy(again, m.logits, sizeof again);
    bf_model_infer(&m, &batch, NULL);
    assert_memory_equal(again, m.logits, sizeof again);
    bf_model_free(&m);
}

static void check_model_opts(int d_model, int full_heads, int fixed_budget, float w_scale, int gate_norm,
                             const int32_t *k_override) {
    check_model_bh(d_model, full_heads, fixed_budget, w_scale, gate_norm, 0, k_override);
}

static void check_model(int d_model, int full_heads, int fixed_budget, float w_scale) {
    check_model_opts(d_model, full_heads, fixed_budget, w_scale, 0, NULL);
}

static void test_gate_norm_and_overrides(void **state) {
    (void)state;
    check_model_opts(16, 0, 0, 0.3f, 1, NULL);
    check_model_opts(64, 0, 0, 0.3f, 1, NULL);
    check_model_opts(16, 0, 2, 0.3f, 1, NULL);
    int32_t ko[B * 3];
    for (int i = 0; i < B * 3; i++) ko[i] = i % 5; /* 0 = the router's own k, else 1..4 */
    check_model_opts(16, 0, 0, 0.3f, 0, ko);
    check_model_opts(64, 0, 0, 0.3f, 1, ko);
}

/* The budget predictor's hidden layer: the inference path computes the same budgets and logits (both call
 * the same router), with plain and renormalised gates, both attention kernels and a budget control. */
static void test_budget_hidden(void **state) {
    (void)state;
    check_model_bh(16, 0, 0, 0.3f, 0, 8, NULL);
    check_model_bh(64, 0, 0, 0.3f, 1, 32, NULL);
    int32_t ko[B * 3];
    for (int i = 0; i < B * 3; i++) ko[i] = i % 5;
    check_model_bh(16, 0, 0, 0.3f, 1, 8, ko);
}

static void test_learned_budget(void **state) {
    (void)state;
    check_model(16, 0, 0, 0.3f); /* varied budgets and head sets across inputs */
}

static void test_learned_budget_fused_attention(void **state) {
    (void)state;
    check_model(64, 0, 0, 0.3f);
}

static void test_fixed_budget(void **state) {
    (void)state;
    check_model(16, 0, 2, 0.3f);
    check_model(64, 0, 2, 0.3f);
}

static void test_full_heads(void **state) {
    (void)state;
    check_model(16, 1, 0, 0.3f);
    check_model(64, 1, 0, 0.3f);
}

/* Groups really vary: with these weights the learned model uses several different head sets. */
static void test_head_sets_vary(void **state) {
    (void)state;
    bf_model_config c = {.vocab_size = 40, .max_len = T, .d_model = 16, .n_heads = 4, .n_layers = 3, .d_ff = 24,
                         .n_classes = 3};
    bf_model m;
    bf_model_init(&m, &c, B);
    random_weights(&m, 11, 0.3f);
    int32_t tok[B * T], len[B], lab[B];
    make_batch(tok, len, lab, c.vocab_size);
    bf_batch batch = {.n = B, .tokens = tok, .lengths = len, .labels = lab};
    bf_model_infer(&m, &batch, NULL);
    int distinct = 0;
    for (int i = 0; i < B * 3; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= m.head_mask[j] == m.head_mask[i];
        distinct += !seen;
    }
    assert_true(distinct >= 3);
    bf_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learned_budget),
        cmocka_unit_test(test_learned_budget_fused_attention),
        cmocka_unit_test(test_fixed_budget),
        cmocka_unit_test(test_gate_norm_and_overrides),
        cmocka_unit_test(test_budget_hidden),
        cmocka_unit_test(test_full_heads),
        cmocka_unit_test(test_head_sets_vary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
