/* test_dataset: bf_dataset_write / bf_dataset_load (dataset.c): a round trip, and files damaged in one way
 * each (with HDF5 directly), whose load must fail with a message naming the file, the dataset and what was
 * expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include <cmocka.h>

#include "budgetformer/dataset.h"
#include "h5io.h" /* src/files: internal to the files layer */

enum { N = 3, T = 4, V = 6, C = 2 };

static char g_dir[2048];
static char g_path[4096];

static int group_setup(void **state) {
    (void)state;
    const char *work = getenv("BF_WORK");
    if (!work) {
        fprintf(stderr, "test_dataset: BF_WORK must be set (run through ctest)\n");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/dataset", work);
    bf_err err;
    if (bf_mkdir_p(g_dir, &err) < 0) {
        fprintf(stderr, "test_dataset: %s\n", err.msg);
        return -1;
    }
    bf_h5_init();
    return 0;
}

static const char *path(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    return g_path;
}

#define assert_contains(hay, needle)                                                                             \
    do {                                                                                                         \
        if (!strstr((hay), (needle))) fail_msg("expected \"%s\" in: %s", (needle), (hay));                       \
    } while (0)

/* A small valid dataset with static storage (do not free). */
static int32_t g_tokens[N * T] = {2, 3, 4, 0, /**/ 1, 0, 0, 0, /**/ 5, 5, 2, 1};
static int32_t g_lengths[N] = {3, 1, 4};
static int32_t g_labels[N] = {1, 0, 1};
static int64_t g_lines[N] = {1, 2, 5};
static char g_w0[] = "<pad>", g_w1[] = "<unk>", g_w2[] = "the", g_w3[] = "cat", g_w4[] = "caf\xc3\xa9", g_w5[] = "!";
static char *g_vocab[V] = {g_w0, g_w1, g_w2, g_w3, g_w4, g_w5};
static char g_c0[] = "ham", g_c1[] = "spam";
static char *g_names[C] = {g_c0, g_c1};
static char g_source[] = "data/train.csv";

static bf_dataset sample(void) {
    return (bf_dataset){.n = N,
                        .max_len = T,
                        .n_classes = C,
                        .token_bytes = 4,
                        .tokens = g_tokens,
                        .lengths = g_lengths,
                        .labels = g_labels,
                        .source_line = g_lines,
                        .vocab = g_vocab,
                        .vocab_size = V,
                        .label_names = g_names,
                        .source = g_source};
}

static void write_sample(const char *name) {
    bf_dataset d = sample();
    bf_err err;
    if (bf_dataset_write(&d, path(name), &err) < 0) fail_msg("write: %s", err.msg);
}

static void test_round_trip(void **state) {
    (void)state;
    write_sample("round.h5");
    bf_dataset d;
    bf_err err;
    if (bf_dataset_load(&d, path("round.h5"), &err) < 0) fail_msg("load: %s", err.msg);
    assert_int_equal(d.n, N);
    assert_int_equal(d.max_len, T);
    assert_int_equal(d.n_classes, C);
    assert_int_equal(d.vocab_size, V);
    /* V = 6: the ids are held as uint16 and read back widened */
    assert_int_equal(d.token_bytes, 2);
    int32_t rows[N * T];
    bf_dataset_rows(&d, 0, N, rows);
    assert_memory_equal(rows, g_tokens, sizeof g_tokens);
    for (size_t i = 0; i < N; i++)
        for (size_t t = 0; t < T; t++) assert_int_equal(bf_dataset_token(&d, i, t), g_tokens[i * T + t]);
    assert_memory_equal(d.lengths, g_lengths, sizeof g_lengths);
    assert_memory_equal(d.labels, g_labels, sizeof g_labels);
    assert_memory_equal(d.source_line, g_lines, sizeof g_lines);
    for (int i = 0; i < V; i++) assert_string_equal(d.vocab[i], g_vocab[i]);
    for (int c = 0; c < C; c++) assert_string_equal(d.label_names[c], g_names[c]);
    assert_string_equal(d.source, "data/train.csv");
    bf_dataset_free(&d);
    /* no temporary is left next to the file */
    DIR *dp = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(dp))) assert_null(strstr(e->d_name, ".tmp."));
    closedir(dp);
}

/* Writes the sample, applies one change with HDF5, and returns the load error message. */
typedef void (*damage_fn)(hid_t f);
static const char *load_damaged(const char *name, damage_fn damage) {
    static bf_err err;
    write_sample(name);
    hid_t f = bf_h5_open_rw(path(name), &err);
    assert_true(f >= 0);
    damage(f);
    assert_int_equal(bf_h5_close(f, path(name), &err), 0);
    bf_dataset d;
    memset(&err, 0, sizeof err);
    assert_int_equal(bf_dataset_load(&d, path(name), &err), -1);
    fprintf(stderr, "[load error] %s\n", err.msg);
    assert_contains(err.msg, path(name));
    return err.msg;
}

static void replace_i32(hid_t f, const char *name, int rank, const unsigned long long *dims, const int32_t *data) {
    bf_err err;
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    if (bf_h5_write(f, name, H5T_NATIVE_INT32, rank, dims, data, &err) < 0) fail_msg("%s", err.msg);
}

static void tokens_wrong_width(hid_t f) {
    int32_t t[N * (T + 1)] = {0};
    const unsigned long long dims[2] = {N, T + 1};
    replace_i32(f, "/tokens", 2, dims, t);
}
static void tokens_rank1(hid_t f) {
    const unsigned long long dims[1] = {N * T};
    replace_i32(f, "/tokens", 1, dims, g_tokens);
}
static void label_out_of_range(hid_t f) {
    int32_t l[N] = {1, 2, 0};
    const unsigned long long dims[1] = {N};
    replace_i32(f, "/labels", 1, dims, l);
}
static void lengths_missing(hid_t f) { assert_true(H5Ldelete(f, "/lengths", H5P_DEFAULT) >= 0); }
static void lengths_short(hid_t f) {
    const unsigned long long dims[1] = {N - 1};
    replace_i32(f, "/lengths", 1, dims, g_lengths);
}
static void token_out_of_vocab(hid_t f) {
    int32_t t[N * T];
    memcpy(t, g_tokens, sizeof t);
    t[1] = V;
    const unsigned long long dims[2] = {N, T};
    replace_i32(f, "/tokens", 2, dims, t);
}
static void pad_inside_length(hid_t f) {
    int32_t l[N] = {4, 1, 4}; /* row 0 has PAD at position 3 */
    const unsigned long long dims[1] = {N};
    replace_i32(f, "/lengths", 1, dims, l);
}
static void token_after_length(hid_t f) {
    int32_t l[N] = {3, 1, 3}; /* row 2 has a token at position 3 */
    const unsigned long long dims[1] = {N};
    replace_i32(f, "/lengths", 1, dims, l);
}
static void zero_length(hid_t f) {
    int32_t l[N] = {3, 0, 4};
    const unsigned long long dims[1] = {N};
    replace_i32(f, "/lengths", 1, dims, l);
}
static void too_many_classes(hid_t f) {
    bf_err err;
    assert_int_equal(bf_h5_write_attr_int(f, "/", "n_classes", 3, &err), 0);
}
static void bad_vocab_start(hid_t f) {
    bf_err err;
    const char *v[V] = {"<unk>", "<pad>", "the", "cat", "x", "!"};
    assert_true(H5Ldelete(f, "/vocab", H5P_DEFAULT) >= 0);
    assert_int_equal(bf_h5_write_strings(f, "/vocab", v, V, &err), 0);
}
static void labels_float(hid_t f) {
    bf_err err;
    float x[N] = {0, 1, 0};
    const unsigned long long dims[1] = {N};
    assert_true(H5Ldelete(f, "/labels", H5P_DEFAULT) >= 0);
    assert_int_equal(bf_h5_write(f, "/labels", H5T_NATIVE_FLOAT, 1, dims, x, &err), 0);
}

static void test_wrong_shape_tokens(void **state) {
    (void)state;
    const char *m = load_damaged("wide.h5", tokens_wrong_width);
    assert_contains(m, "dataset /tokens has shape [3, 5]: expected [N, 4]");
    m = load_damaged("rank1.h5", tokens_rank1);
    assert_contains(m, "/tokens");
    assert_contains(m, "expected 2");
}

static void test_label_out_of_range(void **state) {
    (void)state;
    const char *m = load_damaged("label.h5", label_out_of_range);
    assert_contains(m, "dataset /labels[1] = 2: expected a class index in [0, 2)");
    m = load_damaged("classes.h5", too_many_classes);
    assert_contains(m, "dataset /label_names has 2 entries: expected 3");
    m = load_damaged("labelsf.h5", labels_float);
    assert_contains(m, "/labels");
    assert_contains(m, "expected int32");
}

static void test_missing_dataset(void **state) {
    (void)state;
    const char *m = load_damaged("nolen.h5", lengths_missing);
    assert_contains(m, "missing dataset /lengths");
    m = load_damaged("short.h5", lengths_short);
    assert_contains(m, "dataset /lengths has shape [2]: expected [3]");
    bf_dataset d;
    bf_err err;
    assert_int_equal(bf_dataset_load(&d, path("does-not-exist.h5"), &err), -1);
    assert_contains(err.msg, "does-not-exist.h5");
}

static void test_token_checks(void **state) {
    (void)state;
    const char *m = load_damaged("oov.h5", token_out_of_vocab);
    assert_contains(m, "dataset /tokens[0, 1] = 6: expected a token id in [0, 6)");
    m = load_damaged("padin.h5", pad_inside_length);
    assert_contains(m, "dataset /tokens[0, 3] is PAD (0) inside the length 4");
    m = load_damaged("after.h5", token_after_length);
    assert_contains(m, "dataset /tokens[2, 3] = 1 after the length 3: expected PAD (0)");
    m = load_damaged("zero.h5", zero_length);
    assert_contains(m, "dataset /lengths[1] = 0: expected a length in [1, 4]");
    m = load_damaged("vocab.h5", bad_vocab_start);
    assert_contains(m, "dataset /vocab starts with \"<unk>\", \"<pad>\": expected \"<pad>\", \"<unk>\"");
}

static void test_write_refuses_invalid(void **state) {
    (void)state;
    bf_dataset d = sample();
    int32_t labels[N] = {0, 5, 1};
    d.labels = labels;
    bf_err err;
    assert_int_equal(bf_dataset_write(&d, path("never.h5"), &err), -1);
    assert_contains(err.msg, "/labels[1] = 5");
    assert_false(bf_path_exists(path("never.h5")));
}

/* The same data held as uint16 (loaded, V = 6) and as int32 (the sample in memory) is the same dataset: the
 * same rows, the same digest (ranks compare it), and written back it is the same int32 file. */
static void test_uint16_same_as_int32(void **state) {
    (void)state;
    write_sample("u16.h5");
    bf_dataset wide = sample(), narrow;
    bf_err err;
    if (bf_dataset_load(&narrow, path("u16.h5"), &err) < 0) fail_msg("load: %s", err.msg);
    assert_int_equal(narrow.token_bytes, 2);
    unsigned char a[32], b[32];
    bf_dataset_digest(&wide, a);
    bf_dataset_digest(&narrow, b);
    assert_memory_equal(a, b, 32);
    if (bf_dataset_write(&narrow, path("u16-again.h5"), &err) < 0) fail_msg("write: %s", err.msg);
    hid_t f = bf_h5_open_read(path("u16-again.h5"), &err);
    assert_true(f >= 0);
    int32_t back[N * T];
    const unsigned long long dims[2] = {N, T};
    if (bf_h5_read_into(f, "/tokens", H5T_NATIVE_INT32, 2, dims, back, &err) < 0) fail_msg("%s", err.msg);
    H5Fclose(f);
    assert_memory_equal(back, g_tokens, sizeof g_tokens);
    bf_dataset_free(&narrow);
}

/* An id that does not fit 16 bits is refused with its value, not cut to a valid one (65536 would become PAD). */
static void token_65536(hid_t f) {
    int32_t t[N * T];
    memcpy(t, g_tokens, sizeof t);
    t[2] = 65536;
    const unsigned long long dims[2] = {N, T};
    replace_i32(f, "/tokens", 2, dims, t);
}

static void test_uint16_refuses_large_id(void **state) {
    (void)state;
    const char *m = load_damaged("big.h5", token_65536);
    assert_contains(m, "dataset /tokens[0, 2] = 65536: expected a token id in [0, 6)");
}

/* A vocabulary above 65536 keeps int32 ids in memory, ids above 16 bits intact. */
static void test_large_vocab_int32(void **state) {
    (void)state;
    enum { BIG = 65536 + 10 };
    char **vocab = calloc(BIG, sizeof *vocab);
    static char store[BIG][8];
    for (int i = 0; i < BIG; i++) {
        snprintf(store[i], sizeof store[i], "w%d", i);
        vocab[i] = store[i];
    }
    vocab[0] = g_w0;
    vocab[1] = g_w1;
    int32_t tokens[N * T] = {2, BIG - 1, 65536, 0, /**/ 1, 0, 0, 0, /**/ 5, 5, 2, 1};
    bf_dataset d = sample();
    d.tokens = tokens;
    d.vocab = vocab;
    d.vocab_size = BIG;
    bf_err err;
    if (bf_dataset_write(&d, path("bigvocab.h5"), &err) < 0) fail_msg("write: %s", err.msg);
    bf_dataset l;
    if (bf_dataset_load(&l, path("bigvocab.h5"), &err) < 0) fail_msg("load: %s", err.msg);
    assert_int_equal(l.token_bytes, 4);
    assert_memory_equal(l.tokens, tokens, sizeof tokens);
    assert_int_equal(bf_dataset_token(&l, 0, 1), BIG - 1);
    bf_dataset_free(&l);
    free(vocab);
}

/* The two-phase load into the caller's memory gives what bf_dataset_load gives; bf_dataset_check refuses
 * rows another process spoiled; bf_dataset_free leaves borrowed rows alone. */
static void test_two_phase(void **state) {
    (void)state;
    write_sample("phases.h5");
    bf_dataset d, whole;
    bf_err err;
    if (bf_dataset_load_header(&d, path("phases.h5"), &err) < 0) fail_msg("header: %s", err.msg);
    assert_null(d.tokens);
    assert_int_equal(d.n, N);
    size_t bytes[3];
    bf_dataset_rows_bytes(&d, bytes);
    assert_int_equal(bytes[0], N * T * 2);
    assert_int_equal(bytes[1], N * 4);
    static uint16_t tok[N * T];
    static int32_t len[N], lab[N];
    d.tokens = tok;
    d.lengths = len;
    d.labels = lab;
    d.rows_borrowed = 1;
    if (bf_dataset_read_rows(&d, path("phases.h5"), &err) < 0) fail_msg("rows: %s", err.msg);
    if (bf_dataset_check(&d, path("phases.h5"), &err) < 0) fail_msg("check: %s", err.msg);
    if (bf_dataset_load(&whole, path("phases.h5"), &err) < 0) fail_msg("load: %s", err.msg);
    unsigned char a[32], b[32];
    bf_dataset_digest(&d, a);
    bf_dataset_digest(&whole, b);
    assert_memory_equal(a, b, 32);
    tok[1] = 0; /* PAD inside row 0's length 3 */
    assert_int_equal(bf_dataset_check(&d, "shared copy", &err), -1);
    assert_contains(err.msg, "shared copy: dataset /tokens[0, 1] is PAD (0) inside the length 3");
    bf_dataset_free(&d); /* must not free the static rows */
    bf_dataset_free(&whole);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_wrong_shape_tokens),
        cmocka_unit_test(test_label_out_of_range), cmocka_unit_test(test_missing_dataset),
        cmocka_unit_test(test_token_checks),       cmocka_unit_test(test_write_refuses_invalid),
        cmocka_unit_test(test_uint16_same_as_int32), cmocka_unit_test(test_uint16_refuses_large_id),
        cmocka_unit_test(test_large_vocab_int32),  cmocka_unit_test(test_two_phase),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
