/* Unit tests of the budget controls (evaluate.h) and of the diagnostics bins and counts (headstats.h):
 *   - the shuffle permutation is a permutation, fixed by its seed, and differs between seeds;
 *   - the shuffle control keeps every layer's histogram of k and moves whole budget rows;
 *   - the constant control is floor(mean + 1/2) per layer, exact at the half-way points, clamped to 1..H;
 *   - bins: k^ splits at the rounding points, the ends are clamped (k^ = H, mass 1, NaN, saturated logits);
 *   - bf_headstats_add counts each input once per layer in every diagnostics histogram. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/evaluate.h"
#include "budgetformer/headstats.h"

static void test_perm(void **state) {
    (void)state;
    enum { N = 257 };
    size_t a[N], b[N], c[N];
    bf_budget_control_perm(N, 1, a);
    bf_budget_control_perm(N, 1, b);
    bf_budget_control_perm(N, 2, c);
    unsigned char seen[N] = {0};
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(a[i] < N);
        assert_false(seen[a[i]]);
        seen[a[i]] = 1;
        fixed += a[i] == i;
    }
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c, sizeof a) != 0);
    assert_true(fixed < N / 4); /* a shuffle, not the identity */
    bf_budget_control_perm(0, 1, a); /* no inputs: nothing to do */
    bf_budget_control_perm(1, 1, a);
    assert_int_equal(a[0], 0);
}

static void test_shuffle_keeps_histograms(void **state) {
    (void)state;
    enum { N = 100, L = 3, H = 8 };
    int32_t budget[N * L], out[N * L];
    for (int i = 0; i < N; i++)
        for (int l = 0; l < L; l++) budget[i * L + l] = 1 + (i * (l + 3) + l) % H;
    bf_budget_control_make(BF_CONTROL_SHUFFLE, 5, budget, N, L, H, out);
    size_t perm[N];
    bf_budget_control_perm(N, 5, perm);
    for (int l = 0; l < L; l++) {
        int ha[H + 1] = {0}, hb[H + 1] = {0};
        for (int i = 0; i < N; i++) {
            ha[budget[i * L + l]]++;
            hb[out[i * L + l]]++;
        }
        assert_memory_equal(ha, hb, sizeof ha);
    }
    for (int i = 0; i < N; i++) assert_memory_equal(out + i * L, budget + perm[i] * L, L * sizeof(int32_t));
}

static void test_constant_rounding(void **state) {
    (void)state;
    /* layer 0: 1, 2 -> mean 1.5 -> 2 (half rounds up); layer 1: 3, 3 -> 3; layer 2: 1, 1 -> 1 */
    int32_t budget[] = {1, 3, 1, 2, 3, 1}, out[6];
    bf_budget_control_make(BF_CONTROL_CONSTANT, 1, budget, 2, 3, 4, out);
    const int32_t want[] = {2, 3, 1, 2, 3, 1};
    assert_memory_equal(out, want, sizeof want);
    /* 1, 1, 2 -> mean 1.333 -> 1; 4, 4, 3 -> 3.667 -> 4 */
    int32_t b2[] = {1, 4, 1, 4, 2, 3}, o2[6];
    bf_budget_control_make(BF_CONTROL_CONSTANT, 1, b2, 3, 2, 4, o2);
    const int32_t w2[] = {1, 4, 1, 4, 1, 4};
    assert_memory_equal(o2, w2, sizeof w2);
    int32_t none[2] = {7, 7};
    bf_budget_control_make(BF_CONTROL_NONE, 1, b2, 1, 2, 4, none);
    assert_int_equal(none[0], 0);
    assert_int_equal(none[1], 0);
}

static void test_bins(void **state) {
    (void)state;
    const int H = 4; /* 12 k^ bins */
    assert_int_equal(bf_headstats_khat_bin(1.0f, H), 0);
    assert_int_equal(bf_headstats_khat_bin(1.4999999f, H), 1);
    assert_int_equal(bf_headstats_khat_bin(1.5f, H), 2); /* round(1.5) = 2: the first bin of k = 2 */
    assert_int_equal(bf_headstats_khat_bin(2.4999998f, H), 5);
    assert_int_equal(bf_headstats_khat_bin(2.5f, H), 6);
    assert_int_equal(bf_headstats_khat_bin(4.0f, H), 11);
    assert_int_equal(bf_headstats_khat_bin(0.5f, H), 0);
    assert_int_equal(bf_headstats_khat_bin(NAN, H), 0);
    for (int k = 1; k <= 32; k++) /* bins 4k-6 .. 4k-3 are k^ within 1/2 of k (H = 32) */
        for (float kh = k - 0.5f; kh < k + 0.5f; kh += 0.0625f) {
            if (kh < 1.0f || kh > 32.0f) continue;
            int b = bf_headstats_khat_bin(kh, 32), kr = (int)floorf(kh + 0.5f);
            kr = kr > 32 ? 32 : kr;
            int lo = kr == 1 ? 0 : 4 * kr - 6, hi = kr == 32 ? 4 * 31 - 1 : 4 * kr - 3;
            assert_true(b >= lo && b <= hi);
        }
    assert_int_equal(bf_headstats_mass_bin(0.0f), 0);
    assert_int_equal(bf_headstats_mass_bin(0.05f), 1);
    assert_int_equal(bf_headstats_mass_bin(1.0f), BF_MASS_BINS - 1);
    assert_int_equal(bf_headstats_mass_bin(1.0001f), BF_MASS_BINS - 1);
    assert_int_equal(bf_headstats_mass_bin(NAN), 0);
    assert_int_equal(bf_headstats_logit_bin(1.0f, H), 0);            /* sigmoid saturated low */
    assert_int_equal(bf_headstats_logit_bin(4.0f, H), BF_LOGIT_BINS - 1); /* saturated high */
    assert_int_equal(bf_headstats_logit_bin(2.5f, H), 12);           /* a = 0 */
    /* a = 1.1: k^ = 1 + 3 sigmoid(1.1) -> [1, 1.5) = bin 14 */
    assert_int_equal(bf_headstats_logit_bin(1.0f + 3.0f / (1.0f + expf(-1.1f)), H), 14);
    assert_int_equal(bf_headstats_logit_bin(1.0f + 3.0f / (1.0f + expf(7.0f)), H), 0); /* a = -7: underflow */
}

static void test_add_counts(void **state) {
    (void)state;
    enum { C = 2, L = 2, H = 4, N = 3 };
    bf_headstats s;
    bf_headstats_init(&s, C, L, H);
    assert_int_equal(s.block_len, bf_headstats_block_len(C, L, H));
    assert_true(s.block_len > bf_headstats_legacy_len(C, L, H));
    int32_t labels[N] = {0, 1, 1}, budget[N * L] = {1, 4, 2, 2, 3, 1};
    uint32_t mask[N * L] = {0x1, 0xF, 0x3, 0x5, 0x7, 0x8};
    float khat[N * L] = {1.2f, 4.0f, 2.1f, 1.6f, 2.6f, 1.0f}, mass[N * L] = {0.3f, 1.0f, 0.55f, 0.6f, 0.9f, 0.1f};
    bf_headstats_add(&s, labels, budget, mask, khat, mass, N);
    bf_headstats_add(&s, labels, budget, mask, khat, mass, N);
    for (int l = 0; l < L; l++) {
        int64_t a = 0, b = 0, c = 0;
        for (int i = 0; i < BF_LOGIT_BINS; i++) a += s.logit_hist[l * BF_LOGIT_BINS + i];
        for (int i = 0; i < s.khat_bins; i++) b += s.khat_hist[l * s.khat_bins + i];
        for (int i = 0; i < BF_MASS_BINS; i++) c += s.mass_hist[l * BF_MASS_BINS + i];
        assert_int_equal(a, 2 * N);
        assert_int_equal(b, 2 * N);
        assert_int_equal(c, 2 * N);
    }
    assert_int_equal(s.khat_hist[0 * s.khat_bins + 0], 2);  /* 1.2 */
    assert_int_equal(s.khat_hist[1 * s.khat_bins + 11], 2); /* 4.0 */
    assert_int_equal(s.khat_hist[1 * s.khat_bins + 0], 2);  /* 1.0 */
    assert_int_equal(s.mass_hist[1 * BF_MASS_BINS + 19], 2); /* 1.0 */
    assert_int_equal(s.mass_hist[0 * BF_MASS_BINS + 11], 2); /* 0.55 */
    bf_headstats_reset(&s);
    assert_int_equal(s.khat_hist[0], 0);
    bf_headstats_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perm),
        cmocka_unit_test(test_shuffle_keeps_histograms),
        cmocka_unit_test(test_constant_rounding),
        cmocka_unit_test(test_bins),
        cmocka_unit_test(test_add_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
