/* Tests of the data order (sampler.h): epoch permutations, shards of simulated ranks, batches straddling
 * epochs, and the micro-batch split. Ranks are plain integers, so every world size runs in one process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/rng.h"
#include "budgetformer/sampler.h"

/* The permutation as sampler.h specifies it, written out independently. */
static void reference_perm(int64_t *perm, size_t n, uint64_t seed, uint64_t epoch) {
    for (size_t i = 0; i < n; i++) perm[i] = (int64_t)i;
    for (size_t i = n - 1; i >= 1; i--) {
        size_t j = (size_t)(bf_rng_key(seed, epoch, i, 0, BF_STREAM_SHUFFLE, 0) % (i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Epoch e of a world-1 run with batch size N is batch e: exactly perm_e. */
static void get_epoch(bf_sampler *s, long e, int64_t *perm) {
    int n = (int)s->n;
    int64_t *epoch = malloc((size_t)n * sizeof *epoch);
    assert_non_null(epoch);
    assert_int_equal(bf_sampler_shard(s, e, n, 0, 1, perm, epoch), n);
    for (int i = 0; i < n; i++) assert_int_equal(epoch[i], e);
    free(epoch);
}

static void test_permutation(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 2, 7, 100, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t n = sizes[si];
        int64_t *perm = malloc(n * sizeof *perm), *ref = malloc(n * sizeof *ref);
        int *seen = calloc(n, sizeof *seen);
        assert_true(perm && ref && seen);
        bf_sampler s;
        bf_sampler_init(&s, n, 42);
        for (long e = 0; e < 4; e++) {
            get_epoch(&s, e, perm);
            memset(seen, 0, n * sizeof *seen);
            for (size_t i = 0; i < n; i++) {
                assert_true(perm[i] >= 0 && perm[i] < (int64_t)n);
                seen[perm[i]]++;
            }
            for (size_t i = 0; i < n; i++) assert_int_equal(seen[i], 1);
            reference_perm(ref, n, 42, (uint64_t)e);
            assert_memory_equal(perm, ref, n * sizeof *perm);
        }
        bf_sampler_free(&s);
        free(perm);
        free(ref);
        free(seen);
    }
}

/* The order depends on (seed, epoch) only: not on what was asked before (the cache), and it changes
 * with the seed and the epoch. */
static void test_permutation_depends_on_seed_and_epoch(void **state) {
    (void)state;
    const size_t n = 100;
    int64_t a[100], b[100], c[100], idx[64], ep[64];
    bf_sampler s1, s2;
    bf_sampler_init(&s1, n, 7);
    bf_sampler_init(&s2, n, 7);
    /* Warm s2's cache with other epochs through other batch shapes first. */
    bf_sampler_shard(&s2, 1000, 37, 1, 3, idx, ep);
    bf_sampler_shard(&s2, 5, 64, 0, 1, idx, ep);
    get_epoch(&s1, 3, a);
    get_epoch(&s2, 3, b);
    assert_memory_equal(a, b, sizeof a);
    get_epoch(&s1, 4, c);
    assert_memory_not_equal(a, c, sizeof a);
    bf_sampler_free(&s1);
    bf_sampler_free(&s2);

    bf_sampler_init(&s1, n, 8);
    get_epoch(&s1, 3, c);
    assert_memory_not_equal(a, c, sizeof a);
    bf_sampler_free(&s1);
}

/* For every world size the ranks' parts, in rank order, are exactly the world-1 batch: each position
 * taken once, none dropped, whatever divides what. */
static void test_shards_cover_batch(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 7, 10, 13};
    static const int batches[] = {1, 2, 3, 5, 7, 10, 11, 32};
    static const int worlds[] = {1, 2, 3, 5};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int B = batches[bi];
            int64_t ref_i[32], ref_e[32], idx[33], ep[33];
            bf_sampler ref, s;
            bf_sampler_init(&ref, sizes[si], 3);
            bf_sampler_init(&s, sizes[si], 3);
            for (long step = 0; step < 12; step++) {
                assert_int_equal(bf_sampler_shard(&ref, step, B, 0, 1, ref_i, ref_e), B);
                for (size_t wi = 0; wi < sizeof worlds / sizeof worlds[0]; wi++) {
                    const int W = worlds[wi];
                    int taken = 0;
                    for (int r = 0; r < W; r++) {
                        int got = bf_sampler_shard(&s, step, B, r, W, idx, ep);
                        assert_int_equal(got, (r + 1) * B / W - r * B / W);
                        assert_true(taken + got <= B);
                        assert_memory_equal(idx, ref_i + taken, (size_t)got * sizeof *idx);
                        assert_memory_equal(ep, ref_e + taken, (size_t)got * sizeof *ep);
                        taken += got;
                    }
                    assert_int_equal(taken, B);
                }
            }
            bf_sampler_free(&ref);
            bf_sampler_free(&s);
        }
}

/* Batches that do not divide N run across the epoch boundary: position p is perm_{p/N}[p%N]. With
 * B > N one batch spans three epochs. Over consecutive batches every input comes once per epoch. */
static void test_straddling_epochs(void **state) {
    (void)state;
    struct {
        size_t n;
        int b;
    } cases[] = {{10, 4}, {10, 3}, {3, 8}, {5, 5}, {1, 3}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const size_t n = cases[ci].n;
        const int B = cases[ci].b;
        int64_t perms[8][10], idx[8], ep[8];
        for (uint64_t e = 0; e < 8; e++) reference_perm(perms[e], n, 99, e);
        bf_sampler s;
        bf_sampler_init(&s, n, 99);
        int count[8][10] = {{0}};
        const long n_batches = (long)(6 * n) / B; /* stays inside the first 6 epochs */
        for (long step = 0; step < n_batches; step++) {
            assert_int_equal(bf_sampler_shard(&s, step, B, 0, 1, idx, ep), B);
            for (int k = 0; k < B; k++) {
                const long p = step * B + k, e = p / (long)n;
                assert_int_equal(ep[k], e);
                assert_int_equal(idx[k], perms[e][p % (long)n]);
                count[e][idx[k]]++;
            }
        }
        const long full_epochs = n_batches * B / (long)n;
        for (long e = 0; e < full_epochs; e++)
            for (size_t i = 0; i < n; i++) assert_int_equal(count[e][i], 1);
        bf_sampler_free(&s);
    }
}

/* Balanced parts (bf_sampler_balance): every position of the world-1 batch once, the contiguous parts'
 * counts, each rank's inputs in batch order; the most loaded rank's cost no more than the contiguous deal's
 * on average and never more than the lower bound plus the largest single cost (the greedy deal's guarantee);
 * a known case dealt as the rule says. */
static void test_balanced_shards(void **state) {
    (void)state;
    enum { N = 97, BMAX = 40 };
    double cost[N];
    for (int i = 0; i < N; i++) cost[i] = 1.0 + (double)((i * 37) % 23); /* lengths 1..23, ties included */
    static const int batches[] = {1, 2, 5, 16, 33, 40};
    static const int worlds[] = {2, 3, 4, 7};
    double worse_sum = 0.0, balanced_sum = 0.0;
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
        for (size_t wi = 0; wi < sizeof worlds / sizeof worlds[0]; wi++) {
            const int B = batches[bi], W = worlds[wi];
            bf_sampler ref, s;
            bf_sampler_init(&ref, N, 5);
            bf_sampler_init(&s, N, 5);
            bf_sampler_balance(&s, cost, BMAX);
            for (long step = 0; step < 9; step++) {
                int64_t ref_i[BMAX], ref_e[BMAX], idx[BMAX], ep[BMAX];
                int used[BMAX] = {0};
                assert_int_equal(bf_sampler_shard(&ref, step, B, 0, 1, ref_i, ref_e), B);
                double total = 0.0, biggest = 0.0, max_load = 0.0, max_contig = 0.0;
                for (int k = 0; k < B; k++) {
                    total += cost[ref_i[k]];
                    if (cost[ref_i[k]] > biggest) biggest = cost[ref_i[k]];
                }
                for (int r = 0; r < W; r++) {
                    int got = bf_sampler_shard(&s, step, B, r, W, idx, ep);
                    assert_int_equal(got, (r + 1) * B / W - r * B / W);
                    double load = 0.0, contig = 0.0;
                    int last = -1;
                    for (int m = 0; m < got; m++) {
                        int k = 0;
                        while (k < B && (used[k] || ref_i[k] != idx[m] || ref_e[k] != ep[m])) k++;
                        assert_true(k < B);   /* a position of the batch, not taken before */
                        assert_true(k > last); /* in batch order */
                        used[k] = 1;
                        last = k;
                        load += cost[idx[m]];
                    }
                    for (int k = r * B / W; k < (r + 1) * B / W; k++) contig += cost[ref_i[k]];
                    if (load > max_load) max_load = load;
                    if (contig > max_contig) max_contig = contig;
                }
                for (int k = 0; k < B; k++) assert_true(used[k]);
                assert_true(max_load <= total / W + biggest + 1e-9);
                balanced_sum += max_load;
                worse_sum += max_contig;
            }
            bf_sampler_free(&ref);
            bf_sampler_free(&s);
        }
    assert_true(balanced_sum < worse_sum);
    /* Known case: costs 5 4 3 3 2 1 at the positions 0..5 of the batch, 2 ranks of 3 inputs. */
    {
        double c6[6];
        bf_sampler s;
        bf_sampler_init(&s, 6, 1);
        int64_t perm[6], ep[6], idx[3];
        bf_sampler_shard(&s, 0, 6, 0, 1, perm, ep);
        static const double by_pos[6] = {5, 4, 3, 3, 2, 1};
        for (int k = 0; k < 6; k++) c6[perm[k]] = by_pos[k];
        bf_sampler_balance(&s, c6, 6);
        /* 5 -> r0 (0 vs 0: lower rank); 4 -> r1; 3@2 -> r1 (4 < 5); 3@3 -> r0 (5 < 7); 2 -> r1 (7 < 8);
         * r1 is full (3), so 1 -> r0: r0 = {0, 3, 5}, r1 = {1, 2, 4}, loads 9 and 9. */
        assert_int_equal(bf_sampler_shard(&s, 0, 6, 0, 2, idx, ep), 3);
        assert_int_equal(idx[0], perm[0]);
        assert_int_equal(idx[1], perm[3]);
        assert_int_equal(idx[2], perm[5]);
        assert_int_equal(bf_sampler_shard(&s, 0, 6, 1, 2, idx, ep), 3);
        assert_int_equal(idx[0], perm[1]);
        assert_int_equal(idx[1], perm[2]);
        assert_int_equal(idx[2], perm[4]);
        bf_sampler_free(&s);
    }
}

/* A rank can get nothing when the batch is smaller than the world. */
static void test_more_ranks_than_inputs(void **state) {
    (void)state;
    bf_sampler s;
    bf_sampler_init(&s, 10, 1);
    int64_t idx[2], ep[2];
    int total = 0;
    for (int r = 0; r < 5; r++) total += bf_sampler_shard(&s, 0, 2, r, 5, idx, ep);
    assert_int_equal(total, 2);
    assert_int_equal(bf_sampler_shard(&s, 0, 2, 0, 5, idx, ep), 0);
    bf_sampler_free(&s);
}

static void test_split_micro(void **state) {
    (void)state;
    int starts[64];
    for (int count = 0; count <= 40; count++)
        for (int micro = 0; micro <= 45; micro++) {
            memset(starts, 0xff, sizeof starts);
            int m = bf_split_micro(count, micro, starts);
            int expect = count == 0 ? 0 : micro == 0 ? 1 : (count + micro - 1) / micro;
            assert_int_equal(m, expect);
            assert_int_equal(starts[0], 0);
            assert_int_equal(starts[m], count);
            for (int j = 0; j < m; j++) {
                int size = starts[j + 1] - starts[j];
                assert_true(size >= 1);
                if (micro > 0) assert_true(size <= micro);
                if (micro > 0 && j + 1 < m) assert_int_equal(size, micro);
            }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_permutation_depends_on_seed_and_epoch),
        cmocka_unit_test(test_shards_cover_batch),
        cmocka_unit_test(test_straddling_epochs),
        cmocka_unit_test(test_more_ranks_than_inputs),
        cmocka_unit_test(test_balanced_shards),
        cmocka_unit_test(test_split_micro),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
