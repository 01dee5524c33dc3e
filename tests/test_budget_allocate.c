/* Unit tests of the batch-ranked budget allocation (bf_budget_allocate, train.supervise_rank):
 *   - a hand example: heads go to the input that gains most, a flat-then-falling curve gets a jump;
 *   - on convex curves (where the greedy rule is optimal) the allocation's summed cross-entropy equals an
 *     exhaustive search's for every total, and never uses more heads than allowed;
 *   - inputs that gain nothing keep one head, and the unspent heads are reported. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "budgetformer/router.h"

/* ce[(k-1)*n + i] */
static void test_hand_example(void **state) {
    (void)state;
    enum { N = 3, H = 4 };
    const float ce[H * N] = {
        2.0f, 1.0f, 3.0f, /* k = 1 */
        0.5f, 1.0f, 3.0f, /* k = 2: input 0 falls by 1.5 */
        0.4f, 1.0f, 3.0f, /* k = 3 */
        0.4f, 1.0f, 1.0f, /* k = 4: input 2 falls by 2 in one jump of 3 heads (0.67 per head) */
    };
    float k[N];
    /* 2 spare heads: input 0's jump 1 -> 2 (1.5 per head) first; then 1 left: input 0's 2 -> 3 (0.1) beats
     * nothing else that fits (input 2 needs 3 heads to gain). */
    assert_int_equal(bf_budget_allocate(ce, N, H, 5, k), 5);
    assert_true(k[0] == 3.0f && k[1] == 1.0f && k[2] == 1.0f);
    /* 5 spare heads: 0 -> 2 (1.5), then input 2's jump 1 -> 4 (0.67 per head), then 0 -> 3 (0.1). */
    assert_int_equal(bf_budget_allocate(ce, N, H, 8, k), 8);
    assert_true(k[0] == 3.0f && k[1] == 1.0f && k[2] == 4.0f);
    /* More heads than help: input 1 never gains, input 0 stops at 3; 8 of 12 given. */
    assert_int_equal(bf_budget_allocate(ce, N, H, 12, k), 8);
    assert_true(k[1] == 1.0f);
    /* The minimum: one head each. */
    assert_int_equal(bf_budget_allocate(ce, N, H, 3, k), 3);
    assert_true(k[0] == 1.0f && k[1] == 1.0f && k[2] == 1.0f);
}

static double sum_ce(const float *ce, int n, const int *k) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += ce[(size_t)(k[i] - 1) * (size_t)n + (size_t)i];
    return s;
}

/* Exhaustive: the smallest summed CE with at most `total` heads, one to H each. */
static double best_ce(const float *ce, int n, int H, int total) {
    int k[8], combos = 1;
    for (int i = 0; i < n; i++) combos *= H;
    double best = INFINITY;
    for (int c = 0; c < combos; c++) {
        int x = c, used = 0;
        for (int i = 0; i < n; i++) {
            k[i] = 1 + x % H;
            x /= H;
            used += k[i];
        }
        if (used <= total) {
            double s = sum_ce(ce, n, k);
            if (s < best) best = s;
        }
    }
    return best;
}

static void test_convex_optimal(void **state) {
    (void)state;
    enum { N = 5, H = 4 };
    srand(7);
    for (int trial = 0; trial < 200; trial++) {
        float ce[H * N];
        for (int i = 0; i < N; i++) {
            /* decreasing falls: a convex, non-increasing curve (distinct values, so no ties) */
            float v = 1.0f + (float)rand() / (float)RAND_MAX, fall = (float)rand() / (float)RAND_MAX;
            for (int kk = 0; kk < H; kk++) {
                ce[kk * N + i] = v;
                v -= fall;
                fall *= 0.2f + 0.7f * (float)rand() / (float)RAND_MAX;
            }
        }
        for (int total = N; total <= N * H; total++) {
            float kf[N];
            int given = bf_budget_allocate(ce, N, H, total, kf);
            int k[N], used = 0;
            for (int i = 0; i < N; i++) {
                k[i] = (int)kf[i];
                assert_true(kf[i] == (float)k[i] && k[i] >= 1 && k[i] <= H);
                used += k[i];
            }
            assert_int_equal(used, given);
            assert_true(given <= total);
            assert_float_equal(sum_ce(ce, N, k), best_ce(ce, N, H, total), 1e-5);
        }
    }
}

static void test_no_gain(void **state) {
    (void)state;
    enum { N = 4, H = 8 };
    float ce[H * N];
    for (int j = 0; j < H * N; j++) ce[j] = 0.7f; /* flat: more heads never help */
    float k[N];
    assert_int_equal(bf_budget_allocate(ce, N, H, 16, k), N);
    for (int i = 0; i < N; i++) assert_true(k[i] == 1.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_convex_optimal),
        cmocka_unit_test(test_no_gain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
