/* Tests of the sharded optimiser's partition (shard.h): the parts of simulated ranks tile the block in rank
 * order with sizes that differ by at most one, and at world size 1 the gather, scatter and weight allgather
 * are the identity. Ranks are plain integers, so every world size runs in one process without MPI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts_tile_the_block),
        cmocka_unit_test(test_world_one_is_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
