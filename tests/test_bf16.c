/* bf16 products (src/kernels/bf16_*.c) against exact ones.
 *
 * Tolerance, from bf16's 8-bit mantissa: rounding an input to bf16 (nearest even) changes it by a relative
 * 2^-8 at most, so a product a b of two rounded inputs is off by at most (2^-8 + 2^-8 + 2^-16) |a b| <= 2^-7
 * |a b| (one more 2^-16 below), and a sum over K terms accumulated in fp32 adds at most K 2^-24 sum |a b|.
 * Each C[i,j] must be within (2^-7 + K 2^-24) sum_k |a_ik b_kj| of the product computed in double from the
 * fp32 inputs: a worst-case bound, growing with K through the sum of magnitudes (a random-sign sum grows
 * like sqrt(K), so the bound holds with a wide margin). The error must also be above what fp32 inputs would
 * give (> 2^-14 of the scale somewhere), so a product that silently ran in fp32 fails too.
 *
 * On a CPU without bf16 instructions (or with BF_CPU_NO_BF16=1, the second ctest entry) the refusal
 * message is checked to name avx512_bf16 and amx_bf16, and the test exits 77: ctest reports it skipped. */
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
#include "testrng.h"

static bf_bf16_gemm *g_gemm;

static void test_round_cases(void **state) {
    (void)state;
    /* 1 + 2^-8 is half-way between 1 and 1 + 2^-7: ties go to the even mantissa (1); 1 + 3 2^-8 to 1 + 2^-6 */
    assert_true(bf_bf16_to_f32(bf_bf16_round(1.0f + 0x1p-8f)) == 1.0f);
    assert_true(bf_bf16_to_f32(bf_bf16_round(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
    assert_true(bf_bf16_to_f32(bf_bf16_round(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f); /* above half: up */
    assert_true(bf_bf16_to_f32(bf_bf16_round(-2.5f)) == -2.5f);                              /* exact stays */
    assert_true(isinf(bf_bf16_to_f32(bf_bf16_round(INFINITY))));
    assert_true(isnan(bf_bf16_to_f32(bf_bf16_round(NAN))));
    assert_true(bf_bf16_to_f32(bf_bf16_round(1e-40f)) == 0.0f); /* denormal flushed, as the instruction does */
    assert_true(isinf(bf_bf16_to_f32(bf_bf16_round(3.4e38f)))); /* above bf16's largest finite: infinity */
}

/* The vector conversion gives the bits of the plain C one on random bit patterns (NaN, denormals included),
 * with and without a scale, at lengths that leave a tail. */
static void test_vector_matches_scalar(void **state) {
    (void)state;
    size_t n = 100003;
    float *x = malloc(n * sizeof *x);
    bf_bf16 *v = malloc(n * sizeof *v);
    test_rng r = {7};
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rng_next(&r);
        if (i % 5 == 0) u &= 0x807fffffu; /* denormals */
        memcpy(&x[i], &u, sizeof u);
    }
    float scales[2] = {1.0f, 0.125f};
    for (int s = 0; s < 2; s++) {
        bf_bf16_from_f32(v, x, n, scales[s]);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += v[i] != bf_bf16_round(x[i] * scales[s]);
        assert_int_equal(bad, 0);
    }
    free(x);
    free(v);
}

/* op(A) op(B) for one layout and shape, with leading dimensions wider than the rows. */
static void check_product(int ta, int tb, int acc, size_t M, size_t N, size_t K) {
    size_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    size_t arows = ta ? K : M, brows = tb ? N : K;
    float *a = malloc(arows * lda * sizeof *a), *b = malloc(brows * ldb * sizeof *b);
    float *c = malloc(M * ldc * sizeof *c), *c0 = malloc(M * ldc * sizeof *c0);
    bf_bf16 *ab = malloc(arows * lda * sizeof *ab), *bb = malloc(brows * ldb * sizeof *bb);
    test_rng r = {(uint64_t)(1 + ta + 2 * tb + 4 * acc) * 1000 + M};
    for (size_t i = 0; i < arows * lda; i++) a[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < brows * ldb; i++) b[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < M * ldc; i++) c0[i] = c[i] = (float)rng_normal(&r);
    bf_bf16_from_f32(ab, a, arows * lda, 1.0f);
    bf_bf16_from_f32(bb, b, brows * ldb, 1.0f);
    bf_bf16_matmul(g_gemm, c, ldc, ab, lda, ta, bb, ldb, tb, M, N, K, acc);
    double worst = 0.0, seen = 0.0;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double exact = acc ? c0[i * ldc + j] : 0.0, mag = 0.0;
            for (size_t k = 0; k < K; k++) {
                double x = ta ? a[k * lda + i] : a[i * lda + k], y = tb ? b[j * ldb + k] : b[k * ldb + j];
                exact += x * y;
                mag += fabs(x * y);
            }
            double bound = (0x1p-7 + (double)K * 0x1p-24) * mag + 0x1p-24 * fabs(exact);
            double err = fabs((double)c[i * ldc + j] - exact);
            worst = err / bound > worst ? err / bound : worst;
            seen = err / mag > seen ? err / mag : seen;
        }
    for (size_t i = 0; i < M; i++) /* the padding between rows of C is not written */
        for (size_t j = N; j < ldc; j++) assert_true(c[i * ldc + j] == c0[i * ldc + j]);
    printf("  ta %d tb %d acc %d %zux%zux%zu: largest error %.3f of the bound, %.2e of sum|ab|\n", ta, tb, acc, M, N,
           K, worst, seen);
    assert_true(worst <= 1.0);
    assert_true(seen > 0x1p-14); /* the inputs really were rounded to bf16 */
    free(a), free(b), free(c), free(c0), free(ab), free(bb);
}

/* Every layout, at the model's kinds of shape: projections (many rows), attention (n x dh x n), the
 * weight gradient (K = rows), and odd sizes. */
static void test_products(void **state) {
    (void)state;
    for (int idx = 0; idx < 8; idx++) {
        int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1;
        check_product(ta, tb, acc, 77, 96, 64);
        check_product(ta, tb, acc, 13, 7, 301);
    }
    check_product(0, 0, 1, 300, 256, 1024); /* the FFN's second product, K = d_ff */
    check_product(1, 0, 1, 64, 48, 500);    /* a weight gradient */
}

/* Products large enough for the fixed-shape blocks (bf16_matmul.c: 512 rows, or 512 of the reduction):
 * whole blocks with a remainder, an exact multiple, and each shape twice on new buffers, so the kept
 * primitives and memory objects are reused on other data. */
static void test_blocked_products(void **state) {
    (void)state;
    for (int idx = 0; idx < 8; idx++) {
        int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1;
        for (int twice = 0; twice < 2; twice++) {
            check_product(ta, tb, acc, 1100, 40, 24); /* rows: 2 blocks and 76 rows */
            check_product(ta, tb, acc, 24, 40, 1100); /* reduction: 2 blocks and 76 */
        }
        check_product(ta, tb, acc, 1024, 16, 8);
        check_product(ta, tb, acc, 8, 16, 1024);
    }
}

/* The batched form (attention: one call for all heads) against one call per matrix: the same bf16 inputs
 * accumulated in fp32, so they differ only in the order of the sums: within 2 K 2^-24 sum|a b|. Heads are
 * laid out as in the model: column blocks of one row-major array (stride dh, leading dimension 3D). */
static void test_batched(void **state) {
    (void)state;
    enum { NB = 4, N = 37, DH = 16, LD = 3 * NB * DH };
    for (int idx = 0; idx < 8; idx++) {
        int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1;
        /* A: [N, DH] per head (or stored [DH, N] when ta: then M = DH, K = N); B: [N, N] per head */
        size_t M = ta ? DH : N, K = ta ? N : DH, Nn = N;
        size_t lda = LD, sa = DH, ldb = (tb ? K : Nn) + 1, sb = (size_t)ldb * (tb ? Nn : K), ldc = NB * Nn, sc = Nn;
        size_t na = (ta ? K : M) * lda, nb = NB * sb, nc = M * ldc;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c1 = malloc(nc * sizeof *c1);
        float *c2 = malloc(nc * sizeof *c2);
        bf_bf16 *ab = malloc(na * sizeof *ab), *bb = malloc(nb * sizeof *bb);
        test_rng r = {99 + (uint64_t)idx};
        for (size_t i = 0; i < na; i++) a[i] = (float)rng_normal(&r);
        for (size_t i = 0; i < nb; i++) b[i] = (float)rng_normal(&r);
        for (size_t i = 0; i < nc; i++) c1[i] = c2[i] = (float)rng_normal(&r);
        bf_bf16_from_f32(ab, a, na, 1.0f);
        bf_bf16_from_f32(bb, b, nb, 1.0f);
        bf_bf16_matmul_batched(g_gemm, NB, c1, ldc, sc, ab, lda, sa, ta, bb, ldb, sb, tb, M, Nn, K, acc);
        for (size_t h = 0; h < NB; h++)
            bf_bf16_matmul(g_gemm, c2 + h * sc, ldc, ab + h * sa, lda, ta, bb + h * sb, ldb, tb, M, Nn, K, acc);
        double worst = 0.0;
        for (size_t i = 0; i < nc; i++) {
            double d = fabs((double)c1[i] - c2[i]), scale = 2.0 * (double)K * 0x1p-24 * (fabs(c2[i]) + 4.0 * K);
            worst = d / scale > worst ? d / scale : worst;
        }
        printf("  batched ta %d tb %d acc %d: largest difference %.3f of the bound\n", ta, tb, acc, worst);
        assert_true(worst <= 1.0);
        free(a), free(b), free(c1), free(c2), free(ab), free(bb);
    }
}

/* The refusal when bf_bf16_check fails: it must name what is missing. Returns 1 if the message is right. */
static int refusal_named(const bf_err *err) {
    return strstr(err->msg, "avx512_bf16") && strstr(err->msg, "amx_bf16");
}

static void test_emulation_flag(void **state) {
    (void)state;
    /* BF_CPU_NO_BF16 makes the check fail as on an old CPU; BF_BF16_EMULATE overrides it */
    setenv("BF_CPU_NO_BF16", "1", 1);
    bf_err err = {0};
    assert_int_equal(bf_bf16_check(&err), -1);
    assert_true(refusal_named(&err));
    assert_non_null(strstr(err.msg, "BF_CPU_NO_BF16"));
    setenv("BF_BF16_EMULATE", "1", 1);
    assert_int_equal(bf_bf16_check(NULL), 0);
    unsetenv("BF_BF16_EMULATE");
    unsetenv("BF_CPU_NO_BF16");
    assert_int_equal(bf_bf16_check(NULL), 0);
}

/* On a CPU without bf16 instructions, BF_BF16_EMULATE=1 must either be refused by the check, naming the
 * AVX-512 that oneDNN's emulation needs, or be accepted and then really give bf16 products: accepting it and
 * failing later on an unimplemented oneDNN primitive (as on an AVX2-only CPU before) is the defect caught here. */
static int emulation_honest(void) {
    setenv("BF_BF16_EMULATE", "1", 1);
    bf_err err = {0};
    int ok;
    if (bf_bf16_check(&err)) {
        /* a build without oneDNN says that instead */
        ok = strstr(err.msg, "lacks oneDNN") ||
             (strstr(err.msg, "AVX-512") && strstr(err.msg, "BF_BF16_EMULATE") && !strstr(err.msg, "or set"));
        if (!ok) fprintf(stderr, "test_bf16: the refusal of BF_BF16_EMULATE does not say why: %s\n", err.msg);
    } else {
        bf_bf16_gemm *g = bf_bf16_gemm_create(&err);
        ok = g != NULL;
        if (!ok) fprintf(stderr, "test_bf16: BF_BF16_EMULATE accepted, but the products fail: %s\n", err.msg);
        else fprintf(stderr, "test_bf16: BF_BF16_EMULATE=1 runs the emulated products on this CPU\n");
        bf_bf16_gemm_free(g);
    }
    unsetenv("BF_BF16_EMULATE");
    return ok;
}

int main(void) {
    bf_err err = {0};
    if (bf_bf16_check(&err)) {
        /* the skip path: still check that the message says why */
        fprintf(stderr, "test_bf16: skipped: %s\n", err.msg);
        if (!strstr(err.msg, "avx512_bf16") && !strstr(err.msg, "oneDNN")) {
            fprintf(stderr, "test_bf16: the refusal does not name the missing CPU feature or library\n");
            return 1;
        }
        if (!emulation_honest()) return 1;
        return 77;
    }
    g_gemm = bf_bf16_gemm_create(&err);
    if (!g_gemm) {
        fprintf(stderr, "test_bf16: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_cases),
        cmocka_unit_test(test_vector_matches_scalar),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_blocked_products),
        cmocka_unit_test(test_batched),
        cmocka_unit_test(test_emulation_flag),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bf_bf16_gemm_free(g_gemm);
    return rc;
}
