/* Tests of the one-process side of node_shared.h and of memusage.h, without an MPI launch (the 2-rank
 * window is tests/test_shared_dataset.py): without MPI the shared memory is plain memory that this process
 * writes and reads, publish passes the outcome through; the memory report's numbers are ordered as Linux
 * defines them and see a private allocation that is touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/dist.h"
#include "budgetformer/memusage.h"
#include "budgetformer/node_shared.h"

static void test_without_mpi(void **state) {
    (void)state;
    bf_dist d = {.rank = 0, .world = 1, .mpi = 0};
    bf_node_shared *s = bf_node_shared_alloc(&d, 1000);
    assert_non_null(s);
    assert_int_equal(bf_node_shared_writer(s), 1);
    assert_int_equal(bf_node_shared_ranks(s), 1);
    assert_int_equal(bf_node_shared_bytes(s), 1000);
    unsigned char *p = bf_node_shared_ptr(s);
    memset(p, 0xab, 1000);
    assert_int_equal(bf_node_shared_publish(s, 0), 0);
    assert_int_equal(bf_node_shared_publish(s, -1), -1);
    int64_t id[4] = {1, 2, 3, 4}, copy[4];
    memcpy(copy, id, sizeof id);
    bf_node_shared_bcast(s, id, sizeof id); /* one rank: unchanged */
    assert_memory_equal(id, copy, sizeof id);
    assert_int_equal(p[999], 0xab);
    bf_node_shared_free(s);
}

static void test_memusage(void **state) {
    (void)state;
    bf_memusage a, b;
    bf_memusage_read(&a);
    assert_true(a.peak_rss_kb > 0);
    if (a.pss_kb < 0) {
        skip(); /* no /proc/self/smaps_rollup (Linux < 4.14) */
        return;
    }
    assert_true(a.private_kb > 0 && a.private_kb <= a.pss_kb + 4 && a.pss_kb <= a.rss_kb + 4);
    /* 64 MiB touched: private memory, PSS and peak RSS all grow by about that */
    size_t n = (size_t)64 << 20;
    unsigned char *big = malloc(n);
    assert_non_null(big);
    volatile unsigned char *touch = big; /* stores the compiler must keep */
    for (size_t i = 0; i < n; i += 4096) touch[i] = 1;
    bf_memusage_read(&b);
    assert_true(b.private_kb - a.private_kb > 60 * 1024);
    assert_true(b.pss_kb - a.pss_kb > 60 * 1024);
    assert_true(b.peak_rss_kb >= a.peak_rss_kb + 60 * 1024);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_without_mpi), cmocka_unit_test(test_memusage)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
