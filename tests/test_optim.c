/* Tests of AdamW, the learning-rate schedule and gradient clipping (optim.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "budgetformer/optim.h"

/* Two AdamW steps on three parameters, lr 0.1, wd 0.01, betas (0.9, 0.999), eps 1e-8, worked out by hand:
 *   p = 1,   g = 0.5 then -0.25:
 *     step 1: m = 0.05, v = 0.00025, m^ = 0.5, v^ = 0.25 -> p = 1 - 0.1 (0.5/(0.5+1e-8) + 0.01) = 0.899000002
 *     step 2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225,
 *             m^ = 0.02/0.19, v^ = 0.00031225/0.001999 -> p = 0.8714672987058464
 *   p = -2,  g = 0 twice: only the decoupled decay acts: p = -2 (1 - 0.001)^2 = -1.996002
 *   p = 0.5, g = 3 then 1, scaled by grad_scale 0.5 (so 1.5 then 0.5):
 *     step 1: m = 0.15, v = 0.00225, m^ = 1.5, v^ = 2.25 -> p = 0.5 - 0.1 (1.5/(1.5+1e-8) + 0.005) = 0.3995000006667
 *     step 2: m = 0.185, v = 0.00249775 -> p = 0.31199410637282565 */
static void test_adamw_two_steps(void **state) {
    (void)state;
    const bf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.5f, 0.0f, 3.0f}, g2[3] = {-0.25f, 0.0f, 1.0f};

    /* grad_scale applies to all of one call, so the third parameter goes through its own calls. */
    bf_adamw_update(p, g1, m, v, 2, 1, 0.1f, 0.01f, 1.0f, &hp);
    bf_adamw_update(p + 2, g1 + 2, m + 2, v + 2, 1, 1, 0.1f, 0.01f, 0.5f, &hp);
    assert_float_equal(p[0], 0.899000002, 1e-6);
    assert_float_equal(p[1], -1.998, 1e-6);
    assert_float_equal(p[2], 0.3995000006666667, 1e-6);
    assert_float_equal(m[0], 0.05, 1e-7); /* float betas: 1 - 0.9f is 0.100000024 */
    assert_float_equal(v[0], 0.00025, 1e-8);
    assert_float_equal(m[2], 0.15, 1e-7);

    bf_adamw_update(p, g2, m, v, 2, 2, 0.1f, 0.01f, 1.0f, &hp);
    bf_adamw_update(p + 2, g2 + 2, m + 2, v + 2, 1, 2, 0.1f, 0.01f, 0.5f, &hp);
    assert_float_equal(p[0], 0.8714672987058464, 1e-6);
    assert_float_equal(p[1], -1.996002, 1e-6);
    assert_float_equal(p[2], 0.31199410637282565, 1e-6);
    assert_float_equal(m[0], 0.02, 1e-7);
    assert_float_equal(v[0], 0.00031225, 1e-8);
}

/* Bias correction makes the first step lr * sign(g) whatever the gradient's size (eps aside). */
static void test_adamw_first_step_size(void **state) {
    (void)state;
    const bf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float p[4] = {0}, m[4] = {0}, v[4] = {0};
    const float g[4] = {1e-3f, -7.0f, 250.0f, -0.5f};
    bf_adamw_update(p, g, m, v, 4, 1, 0.01f, 0.0f, 1.0f, &hp);
    for (int i = 0; i < 4; i++) assert_float_equal(fabsf(p[i]), 0.01, 1e-6);
    assert_true(p[0] < 0 && p[1] > 0 && p[2] < 0 && p[3] > 0);
}

static void test_lr_schedule(void **state) {
    (void)state;
    const float lr = 1e-3f, lr_min = 1e-5f;
    const long total = 1000, warmup = 50;
    /* Warm-up: lr/warmup at step 1, linear, lr at step warmup. */
    assert_float_equal(bf_lr_at(1, total, warmup, lr, lr_min), lr / 50.0, 1e-12);
    assert_float_equal(bf_lr_at(25, total, warmup, lr, lr_min), lr / 2.0, 1e-12);
    assert_true(bf_lr_at(warmup, total, warmup, lr, lr_min) == lr);
    for (long s = 1; s < warmup; s++)
        assert_true(bf_lr_at(s, total, warmup, lr, lr_min) < bf_lr_at(s + 1, total, warmup, lr, lr_min));
    /* Decay: monotone down to lr_min at the last step, half-way at the middle, lr_min after. */
    for (long s = warmup; s < total; s++)
        assert_true(bf_lr_at(s + 1, total, warmup, lr, lr_min) <= bf_lr_at(s, total, warmup, lr, lr_min));
    assert_true(bf_lr_at(total, total, warmup, lr, lr_min) == lr_min);
    assert_float_equal(bf_lr_at(525, total, warmup, lr, lr_min), (lr + lr_min) / 2.0, 1e-9);
    assert_true(bf_lr_at(total + 10, total, warmup, lr, lr_min) == lr_min);
    /* No warm-up: starts just below lr, still ends at lr_min. */
    assert_true(bf_lr_at(1, 100, 0, lr, lr_min) <= lr);
    assert_true(bf_lr_at(1, 100, 0, lr, lr_min) > 0.99f * lr);
    assert_true(bf_lr_at(100, 100, 0, lr, lr_min) == lr_min);
    /* A one-step run. */
    assert_true(bf_lr_at(1, 1, 0, lr, lr_min) == lr_min);
}

static void test_sum_squares(void **state) {
    (void)state;
    const size_t n = 1000003;
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    double expect = 0.0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)((double)(i % 17) - 8.0) * 0.1f;
        expect += (double)g[i] * (double)g[i];
    }
    assert_float_equal(bf_sum_squares(g, n), expect, 1e-9 * expect);
    assert_true(bf_sum_squares(g, 0) == 0.0);
    const float three_four[2] = {3.0f, -4.0f};
    assert_true(bf_sum_squares(three_four, 2) == 25.0);
    free(g);
}

static void test_clip_scale(void **state) {
    (void)state;
    assert_true(bf_clip_scale(0.5, 1.0f) == 1.0f);  /* below the limit */
    assert_true(bf_clip_scale(1.0, 1.0f) == 1.0f);  /* at it */
    assert_true(bf_clip_scale(10.0, 0.0f) == 1.0f); /* clipping off */
    assert_float_equal(bf_clip_scale(10.0, 1.0f), 0.1, 1e-7);
    assert_float_equal(bf_clip_scale(4.0, 2.5f), 0.625, 1e-7);
    /* The clipped norm is max_norm. */
    const float g[2] = {30.0f, 40.0f};
    float s = bf_clip_scale(sqrt(bf_sum_squares(g, 2)), 5.0f);
    float h[2] = {g[0] * s, g[1] * s};
    assert_float_equal(sqrt(bf_sum_squares(h, 2)), 5.0, 1e-5);
}

/* The row-skipping sum is bitwise the full sum when the skipped rows are zero: tables at several offsets
 * and widths inside blocks with a tail, and the fallback (unaligned offset or width) reads everything. */
static void test_sum_squares_rows(void **state) {
    (void)state;
    enum { NMAX = 2000 };
    static float g[NMAX];
    uint8_t used[256];
    static const size_t los[] = {0, 8, 24, 40, 13};
    static const size_t widths[] = {8, 16, 64, 12};
    uint32_t x = 12345u;
    for (size_t li = 0; li < sizeof los / sizeof *los; li++)
        for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
            size_t lo = los[li], w = widths[wi], rows = 1000 / w, n = lo + rows * w + 37;
            for (size_t i = 0; i < n; i++) {
                x = x * 1664525u + 1013904223u;
                g[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 3.0f;
            }
            for (size_t r = 0; r < rows; r++) {
                x = x * 1664525u + 1013904223u;
                used[r] = (x >> 28) < 5; /* about a third of the rows touched */
                if (!used[r])
                    for (size_t i = 0; i < w; i++) g[lo + r * w + i] = 0.0f;
            }
            double full = bf_sum_squares(g, n), part = bf_sum_squares_rows(g, n, lo, w, rows, used);
            assert_memory_equal(&full, &part, sizeof full);
        }
    /* A non-zero value in an unused row is left out (so the caller's promise matters): aligned case only. */
    for (size_t i = 0; i < 64; i++) g[i] = 1.0f;
    uint8_t some[2] = {1, 0};
    assert_true(bf_sum_squares_rows(g, 64, 0, 32, 2, some) == 32.0);
    assert_true(bf_sum_squares_rows(g, 64, 4, 30, 2, some) == 64.0); /* unaligned: everything read */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_two_steps), cmocka_unit_test(test_adamw_first_step_size),
        cmocka_unit_test(test_lr_schedule),     cmocka_unit_test(test_sum_squares),
        cmocka_unit_test(test_clip_scale),      cmocka_unit_test(test_sum_squares_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
