/* The inference attention kernel (src/kernels/attention_infer.c) against the definition, computed in double:
 * o[t, h] = gate[h] * sum_j softmax_j(q_t . k_j / sqrt(dh)) v_j. Covers the fused head widths (16, 32, 48,
 * 64: one, two, three and four vectors), the two-sgemm form for other widths (8, 24), row counts below, at
 * and across the fused kernel's 8- and 4-row blocks and its 16-key vectors, large scores (softmax's shift),
 * and a NULL gate. Tolerance: 2e-6 relative to the largest |o| of the case for scores of order 1 (float
 * arithmetic over sums of up to 130 terms; a wrong index or a missing normalisation is off by order 1), and
 * 2e-5 for scores of order 100 (see test_large_scores_and_no_gate). */
#include <setjmp.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "budgetformer/attention_infer.h"
#include "budgetformer/util.h"
#include "testrng.h"

static double check_case(size_t n, size_t H, size_t dh, double score_scale, int with_gate, uint64_t seed) {
    size_t D = H * dh, ld = 3 * D;
    test_rng r = {seed};
    float *qkv = bf_xmalloc(n * ld * sizeof(float)), *o = bf_xmalloc(n * D * sizeof(float));
    float *scratch = bf_xmalloc(bf_attention_infer_scratch_floats(n, D, H) * sizeof(float));
    float gate[32];
    for (size_t i = 0; i < n * ld; i++) qkv[i] = (float)(score_scale * rng_normal(&r));
    for (size_t h = 0; h < H; h++) gate[h] = (float)(0.5 + 2.0 * rng_uniform(&r));
    for (size_t i = 0; i < n * D; i++) o[i] = 1e30f; /* every output must be written */
    bf_attention_forward_infer(o, scratch, qkv, n, D, H, with_gate ? gate : NULL);
    double *p = bf_xmalloc(n * sizeof(double)), worst = 0.0, biggest = 0.0;
    for (size_t h = 0; h < H; h++)
        for (size_t t = 0; t < n; t++) {
            double mx = -1e300, sum = 0.0;
            for (size_t j = 0; j < n; j++) {
                double s = 0.0;
                for (size_t d = 0; d < dh; d++) s += (double)qkv[t * ld + h * dh + d] * qkv[j * ld + D + h * dh + d];
                p[j] = s / sqrt((double)dh);
                mx = p[j] > mx ? p[j] : mx;
            }
            for (size_t j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
            double g = with_gate ? gate[h] : 1.0;
            for (size_t d = 0; d < dh; d++) {
                double y = 0.0;
                for (size_t j = 0; j < n; j++) y += p[j] * qkv[j * ld + 2 * D + h * dh + d];
                y *= g / sum;
                double e = fabs(y - (double)o[t * D + h * dh + d]);
                worst = e > worst ? e : worst;
                biggest = fabs(y) > biggest ? fabs(y) : biggest;
            }
        }
    free(p);
    free(qkv);
    free(o);
    free(scratch);
    return worst / (biggest > 1.0 ? biggest : 1.0);
}

static void test_fused_widths_and_row_counts(void **state) {
    (void)state;
    const size_t widths[] = {16, 32, 48, 64}, rows[] = {1, 3, 4, 7, 8, 9, 16, 17, 33, 130};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++)
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            double e = check_case(rows[i], 3, widths[w], 1.0, 1, 100 * w + i + 1);
            if (e > 2e-6) printf("  dh %zu, n %zu: relative error %.3g\n", widths[w], rows[i], e);
            assert_true(e <= 2e-6);
        }
}

static void test_sgemm_form_for_other_widths(void **state) {
    (void)state;
    const size_t widths[] = {8, 24}, rows[] = {1, 5, 64};
    for (size_t w = 0; w < 2; w++)
        for (size_t i = 0; i < 3; i++) {
            double e = check_case(rows[i], 2, widths[w], 1.0, 1, 1000 + 10 * w + i);
            assert_true(e <= 2e-6);
        }
}

/* Scores up to about 130: without the shift by the row maximum exp overflows to inf and the output is NaN.
 * The tolerance is 2e-5 here: a float score of size 130, summed from 32 products, carries a rounding error of
 * about 1e-5, which becomes a relative error of the same size in its exponential (seen: 1.3e-6 in the
 * Release build, 2.0e-6 in the Debug build, which has no fused multiply-adds). */
static void test_large_scores_and_no_gate(void **state) {
    (void)state;
    double e = check_case(40, 2, 32, 6.0, 0, 77);
    printf("  large scores, no gate: relative error %.3g\n", e);
    assert_true(e <= 2e-5);
    e = check_case(12, 8, 16, 1.0, 0, 78);
    assert_true(e <= 2e-6);
}

/* A NaN in one key of head 1 (a diverged model) makes one score of every row NaN. That must come out as NaN
 * in head 1 of every row, not as a plausible number from the other keys (exp must not turn a NaN score into
 * a zero weight); head 0 stays finite. */
static void test_nan_propagates(void **state) {
    (void)state;
    size_t n = 20, H = 2, dh = 32, D = H * dh, ld = 3 * D;
    test_rng r = {5};
    float *qkv = bf_xmalloc(n * ld * sizeof(float)), *o = bf_xmalloc(n * D * sizeof(float));
    float *scratch = bf_xmalloc(bf_attention_infer_scratch_floats(n, D, H) * sizeof(float));
    for (size_t i = 0; i < n * ld; i++) qkv[i] = (float)rng_normal(&r);
    qkv[17 * ld + D + dh + 3] = NAN; /* key of row 17, head 1, one component */
    bf_attention_forward_infer(o, scratch, qkv, n, D, H, NULL);
    size_t nan_h1 = 0, finite_h0 = 0;
    for (size_t t = 0; t < n; t++)
        for (size_t d = 0; d < dh; d++) {
            nan_h1 += isnan(o[t * D + dh + d]) != 0;
            finite_h0 += isfinite(o[t * D + d]) != 0;
        }
    assert_int_equal(nan_h1, n * dh);
    assert_int_equal(finite_h0, n * dh);
    free(qkv);
    free(o);
    free(scratch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_widths_and_row_counts),
        cmocka_unit_test(test_sgemm_form_for_other_widths),
        cmocka_unit_test(test_large_scores_and_no_gate),
        cmocka_unit_test(test_nan_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
