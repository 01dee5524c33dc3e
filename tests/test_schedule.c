/* Tests of the exploration schedule (schedule.h): exact endpoints, monotone in between, flat after. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "budgetformer/schedule.h"

static const bf_explore_shape kShapes[] = {BF_EXPLORE_LINEAR, BF_EXPLORE_COSINE, BF_EXPLORE_EXPONENTIAL};
#define N_SHAPES (sizeof kShapes / sizeof kShapes[0])

/* Checks one schedule over steps+20 updates: exact endpoints, monotone towards eps_end, inside the
 * endpoints, and eps_end from `steps` on. */
static void check_schedule(bf_explore_shape shape, float start, float end, long steps) {
    assert_true(bf_explore_eps(shape, start, end, steps, 1) == start);
    assert_true(bf_explore_eps(shape, start, end, steps, steps) == end);
    const float lo = fminf(start, end), hi = fmaxf(start, end);
    float prev = start;
    for (long s = 1; s <= steps + 20; s++) {
        float e = bf_explore_eps(shape, start, end, steps, s);
        if (start >= end)
            assert_true(e <= prev);
        else
            assert_true(e >= prev);
        assert_true(e >= lo && e <= hi);
        if (s >= steps) assert_true(e == end);
        prev = e;
    }
}

static void test_endpoints_and_monotone(void **state) {
    (void)state;
    static const long steps[] = {2, 3, 10, 1000};
    static const float ends[][2] = {{1.0f, 0.0f}, {0.5f, 0.05f}, {0.3f, 0.3f}, {0.1f, 0.9f}, {0.7f, 0.1f}};
    for (size_t i = 0; i < N_SHAPES; i++)
        for (size_t j = 0; j < sizeof steps / sizeof steps[0]; j++)
            for (size_t k = 0; k < sizeof ends / sizeof ends[0]; k++)
                check_schedule(kShapes[i], ends[k][0], ends[k][1], steps[j]);
}

/* eps_end = 0 reaches exactly 0 (pure exploitation) for every shape, and is still positive just before. */
static void test_zero_end(void **state) {
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.0f, 500, 500) == 0.0f);
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.0f, 500, 10000) == 0.0f);
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.0f, 500, 499) > 0.0f);
    }
}

/* Values in the middle follow the formulas of schedule.h. */
static void test_midpoints(void **state) {
    (void)state;
    /* steps = 101: step 51 is t = 0.5, step 26 is t = 0.25. */
    assert_float_equal(bf_explore_eps(BF_EXPLORE_LINEAR, 1.0f, 0.0f, 101, 51), 0.5, 1e-6);
    assert_float_equal(bf_explore_eps(BF_EXPLORE_LINEAR, 0.8f, 0.2f, 101, 26), 0.65, 1e-6);
    assert_float_equal(bf_explore_eps(BF_EXPLORE_COSINE, 1.0f, 0.0f, 101, 51), 0.5, 1e-6);
    assert_float_equal(bf_explore_eps(BF_EXPLORE_COSINE, 1.0f, 0.0f, 101, 26), (1.0 + sqrt(0.5)) / 2, 1e-6);
    /* exponential, a = ln 100: at t = 0.5, (0.1 - 0.01) / 0.99 = 1/11. */
    assert_float_equal(bf_explore_eps(BF_EXPLORE_EXPONENTIAL, 1.0f, 0.0f, 101, 51), 1.0 / 11.0, 1e-6);
    assert_float_equal(bf_explore_eps(BF_EXPLORE_EXPONENTIAL, 0.6f, 0.1f, 101, 51), 0.1 + 0.5 / 11.0, 1e-6);
}

/* steps <= 1 means t = 1: eps_end throughout. */
static void test_degenerate_lengths(void **state) {
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.25f, 1, 1) == 0.25f);
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.25f, 0, 1) == 0.25f);
        assert_true(bf_explore_eps(kShapes[i], 1.0f, 0.25f, 0, 50) == 0.25f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_and_monotone),
        cmocka_unit_test(test_zero_end),
        cmocka_unit_test(test_midpoints),
        cmocka_unit_test(test_degenerate_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
