/* Tests of the sharded optimiser's partition (shard.h): the parts of simulated ranks tile the block in rank
 * order with sizes that differ by at most one, and at world size 1 the gather, scatter and weight allgather
 * are the identity. Ranks are plain integers, so every world size runs in one process without MPI.
 * Also the arithmetic of the bf16 gradient exchange (dist.h, dist.grad_precision = bf16), which needs no MPI:
 * the element-wise bf16 sum and the conversions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/bf16.h"
#include "budgetformer/dist.h"
#include "budgetformer/shard.h"

static void test_parts_tile_the_block(void **state) {
    (void)state;
    static const size_t sizes[] = {0, 1, 3, 5, 5629, 1120150};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        for (int world = 1; world <= 8; world++) {
            size_t next = 0, smallest = (size_t)-1, largest = 0;
            for (int r = 0; r < world; r++) {
                bf_shard s;
                bf_shard_init(&s, n, r, world);
                assert_int_equal(s.lo, next);            /* contiguous, in rank order */
                assert_true(s.hi >= s.lo);
                for (int q = 0; q < world; q++) {        /* every rank computes every part alike */
                    size_t lo, hi;
                    bf_shard_range(n, q, world, &lo, &hi);
                    assert_int_equal((size_t)s.displs[q], lo);
                    assert_int_equal((size_t)s.counts[q], hi - lo);
                }
                size_t part = s.hi - s.lo;
                smallest = part < smallest ? part : smallest;
                largest = part > largest ? part : largest;
                assert_int_equal(bf_shard_max_part(&s), (n + (size_t)world - 1) / (size_t)world);
                next = s.hi;
                bf_shard_free(&s);
            }
            assert_int_equal(next, n); /* the last part ends the block */
            assert_true(largest - smallest <= 1);
        }
    }
}

/* World size 1 never reaches MPI: the one part is the block, and the collectives copy or do nothing. */
static void test_world_one_is_identity(void **state) {
    (void)state;
    enum { N = 37 };
    bf_dist d;
    memset(&d, 0, sizeof d);
    d.world = 1;
    bf_shard s;
    bf_shard_init(&s, N, 0, 1);
    assert_int_equal(s.lo, 0);
    assert_int_equal(s.hi, N);
    float part[N], full[N], back[N];
    for (int i = 0; i < N; i++) part[i] = (float)i * 0.5f;
    bf_shard_gather_f32(&d, &s, part, full);
    assert_memory_equal(part, full, sizeof part);
    bf_shard_scatter_f32(&d, &s, full, back);
    assert_memory_equal(part, back, sizeof part);
    size_t lo[2] = {20, 0}, hi[2] = {N, 20};
    bf_param_gather *g = bf_param_gather_create(&d, &s, full, lo, hi, 2);
    bf_param_gather_start(g, 0);
    bf_param_gather_wait(g); /* starts segment 1 itself */
    bf_param_gather_wait(g); /* and again: ready for the next step */
    assert_memory_equal(part, full, sizeof part);
    bf_param_gather_free(g);
    bf_shard_free(&s);
}

static uint16_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)(u >> 16);
}

/* bf_dist_bf16_sum: each pair added in fp32 and rounded to nearest even, worked by hand at the ties, and
 * against the plain rounding of the fp32 sum over many made-up values. */
static void test_bf16_sum(void **state) {
    (void)state;
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (bf16 keeps 7 mantissa bits): ties go to the even 1.
     * 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: it goes up to 1 + 2^-6. */
    uint16_t in[4] = {bits_of(1.0f), bits_of(1.0f + 0x1p-7f), bits_of(-2.0f), bits_of(0x1p-8f)};
    uint16_t io[4] = {bits_of(0x1p-8f), bits_of(0x1p-8f), bits_of(2.0f), bits_of(0x1p-8f)};
    bf_dist_bf16_sum(in, io, 4);
    assert_int_equal(io[0], bits_of(1.0f));
    assert_int_equal(io[1], bits_of(1.0f + 0x1p-6f));
    assert_int_equal(io[2], bits_of(0.0f));
    assert_int_equal(io[3], bits_of(0x1p-7f));  /* exact sums stay exact */
    uint32_t x = 12345u;
    for (int i = 0; i < 10000; i++) {
        float v[2];
        for (int j = 0; j < 2; j++) {
            x = x * 1664525u + 1013904223u;
            v[j] = ((float)(x >> 8) / 16777216.0f - 0.5f) * (float)(1 << (i % 20)) * 1e-3f;
        }
        uint16_t a = bf_bf16_round(v[0]), b = bf_bf16_round(v[1]);
        uint16_t got = b;
        bf_dist_bf16_sum(&a, &got, 1);
        assert_int_equal(got, bf_bf16_round(bf_bf16_to_f32(a) + bf_bf16_to_f32(b)));
        float rel = fabsf(bf_bf16_to_f32(got) - (bf_bf16_to_f32(a) + bf_bf16_to_f32(b)));
        assert_true(rel <= 0x1p-8f * fabsf(bf_bf16_to_f32(a) + bf_bf16_to_f32(b)));
    }
}

/* The conversions of the exchange: to bf16 rounds (the bits of bf_bf16_round), back is exact. */
static void test_bf16_wire(void **state) {
    (void)state;
    float x[67], back[67];
    uint16_t w[67];
    for (int i = 0; i < 67; i++) x[i] = (float)(i - 33) * 0.3721f + 1e-4f * (float)i;
    bf_dist_to_bf16(w, x, 67);
    bf_dist_from_bf16(back, w, 67);
    for (int i = 0; i < 67; i++) {
        assert_int_equal(w[i], bf_bf16_round(x[i]));
        assert_int_equal(bits_of(back[i]), w[i]);
        assert_true(fabsf(back[i] - x[i]) <= 0x1p-8f * fabsf(x[i]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts_tile_the_block),
        cmocka_unit_test(test_world_one_is_identity),
        cmocka_unit_test(test_bf16_sum),
        cmocka_unit_test(test_bf16_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
