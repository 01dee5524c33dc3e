/* test_prepare: `budgetformer prepare` (cmd_prepare.c, textread.c, tokenize.c).
 *
 * Most tests call bf_cmd_prepare in this process with stderr redirected into a file, then check the exit
 * status, the messages and the files (read back with bf_dataset_load, which validates them). One test runs
 * the real binary (BF_EXE) to check the dispatch and the exit codes. Inputs are written into BF_WORK.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "budgetformer/cli.h"
#include "budgetformer/dataset.h"
#include "budgetformer/rng.h"
#include "budgetformer/textread.h"
#include "budgetformer/tokenize.h"

static char g_root[1024];      /* BF_WORK/prepare */
static char g_dir[2048];       /* the current test's directory */
static char g_stderr[65536];   /* what the last run printed to stderr */
static char g_path[8][4096];   /* scratch paths (path() cycles through them) */
static int g_path_i;

static int group_setup(void **state) {
    (void)state;
    const char *work = getenv("BF_WORK");
    if (!work) {
        fprintf(stderr, "test_prepare: BF_WORK must be set (run through ctest)\n");
        return -1;
    }
    snprintf(g_root, sizeof g_root, "%s/prepare", work);
    bf_err err;
    if (bf_mkdir_p(g_root, &err) < 0) {
        fprintf(stderr, "test_prepare: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* A fresh, empty directory for one test. */
static void use_dir(const char *name) {
    snprintf(g_dir, sizeof g_dir, "%s/%s", g_root, name);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    assert_int_equal(system(cmd), 0);
}

static const char *path(const char *name) {
    char *p = g_path[g_path_i++ % 8];
    snprintf(p, 4096, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *name, const char *content) {
    FILE *f = fopen(path(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

#define assert_contains(hay, needle)                                                                             \
    do {                                                                                                         \
        if (!strstr((hay), (needle))) fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                      \
    } while (0)
#define assert_not_contains(hay, needle)                                                                         \
    do {                                                                                                         \
        if (strstr((hay), (needle))) fail_msg("did not expect \"%s\" in:\n%s", (needle), (hay));                 \
    } while (0)

static void read_into(const char *file, char *buf, size_t cap) {
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs bf_cmd_prepare in this process: args after "prepare", NULL-terminated. stderr goes to g_stderr. */
static int prep(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)(uintptr_t) "prepare";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) argv[argc++] = (char *)(uintptr_t)a;
    va_end(ap);
    argv[argc] = NULL;
    char capture[4096];
    snprintf(capture, sizeof capture, "%s/stderr.txt", g_root);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = bf_cmd_prepare(argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    read_into(capture, g_stderr, sizeof g_stderr);
    fprintf(stderr, "[prepare exit %d]\n%s", rc, g_stderr); /* visible with --output-on-failure */
    return rc;
}

/* prepare on the current directory's train/test files with extra flags, into out/. */
#define PREP(train, test, ...) prep("--train", path(train), "--test", path(test), "--out", path("out"), __VA_ARGS__)

static void load(bf_dataset *d, const char *name) {
    bf_err err;
    if (bf_dataset_load(d, path(name), &err) < 0) fail_msg("load %s: %s", name, err.msg);
}

static int64_t vocab_id(const bf_dataset *d, const char *word) {
    for (size_t i = 0; i < d->vocab_size; i++)
        if (!strcmp(d->vocab[i], word)) return (int64_t)i;
    return -1;
}

/* Row i's tokens as words joined by spaces. */
static const char *row_words(const bf_dataset *d, size_t i) {
    static char buf[4096];
    buf[0] = '\0';
    for (int t = 0; t < d->lengths[i]; t++) {
        if (t) strcat(buf, " ");
        strcat(buf, d->vocab[bf_dataset_token(d, i, (size_t)t)]);
    }
    return buf;
}

/* Number of directory entries other than . and .. */
static int count_entries(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

/* ---- tokenizer, reader and label units ---- */

static void test_tokenize_rules(void **state) {
    (void)state;
    const char *text = "Hello, World!  don't\t3.14 na\xc3\xafve\x01X-Ray";
    bf_token_list tl = {0};
    size_t n = bf_tokenize(text, strlen(text), &tl);
    const char *want[] = {"hello", ",", "world", "!", "don", "'", "t", "3", ".", "14", "na\xc3\xafve", "x", "-", "ray"};
    assert_int_equal(n, sizeof want / sizeof *want);
    for (size_t i = 0; i < n; i++) assert_string_equal(bf_token_str(&tl, i), want[i]);
    assert_int_equal(bf_tokenize(" \t\r\n ", 5, &tl), 0);
    bf_token_list_free(&tl);
    size_t off = 99;
    assert_true(bf_utf8_valid("caf\xc3\xa9", 5, NULL));
    assert_false(bf_utf8_valid("ab\xc3(", 4, &off));
    assert_int_equal(off, 2);
    assert_false(bf_utf8_valid("\xed\xa0\x80", 3, NULL)); /* surrogate */
    assert_false(bf_utf8_valid("\xc0\xaf", 2, NULL));     /* overlong */
}

static void test_csv_quoting(void **state) {
    (void)state;
    use_dir("quoting");
    write_file("train.csv", "a,\"one, two\"\n"                      /* line 1: embedded comma */
                            "b,\"she said \"\"hi\"\"\"\n"           /* line 2: doubled quotes */
                            "a,\"first\nsecond\n\nthird\"\n"        /* lines 3-6: newlines inside quotes */
                            "b,after\n"                             /* line 7 */
                            "\n"                                    /* line 8: blank, skipped */
                            "a,last\r\n");                          /* line 9: CRLF */
    bf_text_rows rows = {0};
    bf_err err;
    assert_int_equal(bf_text_read(path("train.csv"), BF_TEXT_CSV, 0, 0, &rows, &err), 0);
    assert_int_equal(rows.n, 5);
    assert_string_equal(rows.rows[0].text, "one, two");
    assert_string_equal(rows.rows[1].text, "she said \"hi\"");
    assert_string_equal(rows.rows[2].text, "first\nsecond\n\nthird");
    assert_string_equal(rows.rows[3].text, "after");
    assert_string_equal(rows.rows[4].text, "last");
    const int64_t lines[] = {1, 2, 3, 7, 9};
    for (int i = 0; i < 5; i++) assert_int_equal(rows.rows[i].line, lines[i]);
    bf_text_rows_free(&rows);

    write_file("test.csv", "a,x\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(d.source_line[i], lines[i]);
    assert_string_equal(row_words(&d, 0), "one , two");
    assert_string_equal(row_words(&d, 1), "she said \" hi \"");
    assert_string_equal(row_words(&d, 2), "first second third");
    bf_dataset_free(&d);
}

static void test_csv_several_text_columns(void **state) {
    (void)state;
    use_dir("columns");
    write_file("train.csv", "\"label\",\"title\",\"text\"\n"
                            "\"3\",\"Wall St. Bears\",\"Short sellers are back.\"\n"
                            "\"1\",\"Title two\",\"body two\"\n");
    write_file("test.csv", "label,title,text\n\"3\",\"T\",\"b\"\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--header", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n, 2);
    assert_string_equal(row_words(&d, 0), "wall st . bears short sellers are back .");
    assert_string_equal(row_words(&d, 1), "title two body two");
    assert_int_equal(d.source_line[0], 2);
    bf_dataset_free(&d);
}

static void test_tsv(void **state) {
    (void)state;
    use_dir("tsv");
    write_file("train.tsv", "pos\tgood\tand\tfine\r\nneg\tbad\n\nneg\tworse\n");
    write_file("test.txt", "pos\tgood\n");
    assert_int_equal(PREP("train.tsv", "test.txt", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n, 3);
    assert_string_equal(row_words(&d, 0), "good and fine");
    assert_int_equal(d.source_line[2], 4);
    assert_int_equal(d.n_classes, 2);
    assert_string_equal(d.label_names[0], "neg");
    bf_dataset_free(&d);
    write_file("bad.tsv", "pos\tok\nno tab here\n");
    assert_int_equal(PREP("bad.tsv", "test.txt", NULL), 1);
    assert_contains(g_stderr, "bad.tsv:2: expected label<TAB>text");
}

/* ---- labels ---- */

static void test_integer_labels_0_based(void **state) {
    (void)state;
    use_dir("int0");
    write_file("train.csv", "0,a\n2,b\n0,c\n");
    write_file("test.csv", "1,a\n2,b\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n_classes, 3);
    assert_string_equal(d.label_names[0], "0");
    assert_string_equal(d.label_names[2], "2");
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 2);
    bf_dataset_free(&d);
    load(&d, "out/test.h5");
    assert_int_equal(d.labels[0], 1);
    assert_int_equal(d.labels[1], 2);
    bf_dataset_free(&d);
    /* 3 is out of range for 0-based labels 0..2 */
    write_file("test.csv", "1,a\n3,b\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "test.csv:2: label '3'");
    /* negative labels */
    write_file("neg.csv", "0,a\n-1,b\n");
    assert_int_equal(PREP("neg.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "neg.csv:2: integer label '-1' is negative");
}

static void test_integer_labels_1_based(void **state) {
    (void)state;
    use_dir("int1");
    write_file("train.csv", "1,a\n4,b\n2,c\n");
    write_file("test.csv", "4,a\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n_classes, 4);
    const char *names[] = {"1", "2", "3", "4"};
    for (int c = 0; c < 4; c++) assert_string_equal(d.label_names[c], names[c]);
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 3);
    assert_int_equal(d.labels[2], 1);
    bf_dataset_free(&d);
    load(&d, "out/test.h5");
    assert_int_equal(d.labels[0], 3);
    bf_dataset_free(&d);
    write_file("test.csv", "0,a\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "test.csv:1: label '0'");
}

static void test_name_labels(void **state) {
    (void)state;
    use_dir("names");
    write_file("train.csv", "spam,a\nham,b\nSpam,c\n1,d\nham,e\n");
    write_file("test.csv", "spam,x\nSpam,y\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    bf_dataset d;
    load(&d, "out/test.h5");
    assert_int_equal(d.n_classes, 4);
    const char *names[] = {"1", "Spam", "ham", "spam"}; /* bytewise order */
    for (int c = 0; c < 4; c++) assert_string_equal(d.label_names[c], names[c]);
    assert_int_equal(d.labels[0], 3);
    assert_int_equal(d.labels[1], 1);
    bf_dataset_free(&d);
    load(&d, "out/train.h5");
    const int32_t want[] = {3, 2, 1, 0, 2};
    for (int i = 0; i < 5; i++) assert_int_equal(d.labels[i], want[i]);
    bf_dataset_free(&d);
}

static void test_unseen_test_label(void **state) {
    (void)state;
    use_dir("unseen");
    write_file("train.csv", "spam,a\nham,b\n");
    write_file("test.csv", "spam,x\nham,\"multi\nline\"\nham,z\neggs,w\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "test.csv:5: label 'eggs' never occurs in the training file");
    assert_int_equal(count_entries(path("out")), -1); /* nothing written, not even the directory */
}

/* ---- bad rows ---- */

static void test_wrong_column_count(void **state) {
    (void)state;
    use_dir("colcount");
    write_file("train.csv", "a,t1,x\na,\"t2\nmore\",y\nb,only two\n");
    write_file("test.csv", "a,b,c\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "train.csv:4: expected 3 columns, found 2");
}

static void test_invalid_utf8(void **state) {
    (void)state;
    use_dir("utf8");
    write_file("train.csv", "a,fine\nb,caf\xc3\xa9\na,\"bad \xff byte\"\n");
    write_file("test.csv", "a,x\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "train.csv:3: invalid UTF-8");
    write_file("test.tsv", "a\tfine\na\tbad \xc3\n");
    assert_int_equal(prep("--train", path("train.csv"), "--test", path("test.tsv"), "--out", path("out"),
                          "--skip-bad-rows", NULL),
                     0);
    assert_contains(g_stderr, "test.tsv: skipped 1 bad row (first: ");
    assert_contains(g_stderr, "test.tsv:2: invalid UTF-8");
}

static void test_skip_bad_rows(void **state) {
    (void)state;
    use_dir("skip");
    write_file("train.csv", "a,one,x\n"
                            "b,two\n"                 /* line 2: wrong column count */
                            "a,\"bad \xfe\",y\n"      /* line 3: invalid UTF-8 */
                            ",empty label,z\n"        /* line 4: empty label */
                            "b,three,w\n"             /* line 5 */
                            "a,\"oops\"x,v\n"         /* line 6: malformed quoting */
                            "b,four,u\n");            /* line 7 */
    write_file("test.csv", "a,t,x\nc,unseen,y\nb,t,z\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "train.csv:2: expected 3 columns, found 2");
    assert_int_equal(PREP("train.csv", "test.csv", "--skip-bad-rows", NULL), 0);
    assert_contains(g_stderr, "train.csv: skipped 4 bad rows (first: ");
    assert_contains(g_stderr, "train.csv:2: expected 3 columns, found 2");
    assert_contains(g_stderr, "test.csv: skipped 1 bad row (first: ");
    assert_contains(g_stderr, "test.csv:2: label 'c'");
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n, 3);
    assert_int_equal(d.source_line[0], 1);
    assert_int_equal(d.source_line[1], 5);
    assert_int_equal(d.source_line[2], 7);
    bf_dataset_free(&d);
    load(&d, "out/test.h5");
    assert_int_equal(d.n, 2);
    assert_int_equal(d.source_line[1], 3);
    bf_dataset_free(&d);
}

static void test_empty_texts(void **state) {
    (void)state;
    use_dir("empty");
    write_file("train.csv", "a,\"\"\nb,\" \t \"\na,words here\nb,\n");
    write_file("test.csv", "a,\"\"\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    assert_contains(g_stderr, "train.csv: 3 train rows had no tokens; each became one <unk>");
    assert_contains(g_stderr, "test.csv: 1 test row had no tokens");
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.n, 4);
    assert_int_equal(d.lengths[0], 1);
    assert_int_equal(bf_dataset_token(&d, 0, 0), BF_UNK_ID);
    assert_int_equal(d.lengths[1], 1);
    assert_int_equal(bf_dataset_token(&d, 1, 0), BF_UNK_ID);
    assert_int_equal(d.lengths[2], 2);
    bf_dataset_free(&d);
    /* one warning per file, not per row */
    const char *p = strstr(g_stderr, "train.csv: 3 train rows");
    assert_null(strstr(p + 1, "train.csv: 3 train rows"));
}

static void test_empty_training_file(void **state) {
    (void)state;
    use_dir("emptyfile");
    write_file("train.csv", "");
    write_file("test.csv", "a,b\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 1);
    assert_contains(g_stderr, "train.csv: no rows");
    write_file("train.csv", "label,text\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--header", NULL), 1);
    assert_contains(g_stderr, "train.csv: no rows");
}

/* ---- split, vocabulary, truncation ---- */

static void test_valid_split(void **state) {
    (void)state;
    use_dir("split");
    enum { N = 400 };
    static char text[N * 32];
    size_t pos = 0;
    for (int i = 0; i < N; i++) pos += (size_t)snprintf(text + pos, sizeof text - pos, "%c,word%d\n", 'a' + i % 3, i);
    write_file("train.csv", text);
    write_file("test.csv", "a,word1\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--valid-fraction", "0.25", NULL), 0);
    bf_dataset tr, va;
    load(&tr, "out/train.h5");
    load(&va, "out/valid.h5");
    assert_int_equal(tr.n + va.n, N);
    assert_true(va.n > N / 8 && va.n < N / 2);
    /* disjoint, complete, and following the documented rule */
    static char seen[N + 1];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < tr.n; i++) {
        int64_t l = tr.source_line[i];
        assert_true(l >= 1 && l <= N && !seen[l]);
        seen[l] = 1;
        assert_false(bf_rng_uniform(bf_rng_key(0, 0, (uint64_t)l, 0, BF_STREAM_SPLIT, 0)) < 0.25);
    }
    for (size_t i = 0; i < va.n; i++) {
        int64_t l = va.source_line[i];
        assert_true(l >= 1 && l <= N && !seen[l]);
        seen[l] = 2;
        assert_true(bf_rng_uniform(bf_rng_key(0, 0, (uint64_t)l, 0, BF_STREAM_SPLIT, 0)) < 0.25);
        /* valid words are not in the vocabulary (each word occurs once, in one split) */
        char w[32];
        snprintf(w, sizeof w, "word%lld", (long long)l - 1);
        assert_int_equal(vocab_id(&va, w), -1);
        assert_int_equal(bf_dataset_token(&va, i, 0), BF_UNK_ID);
    }
    assert_int_equal(tr.vocab_size, va.vocab_size);
    assert_int_equal(tr.vocab_size, 2 + tr.n);
    /* deterministic: a second run gives the same split */
    assert_int_equal(prep("--train", path("train.csv"), "--test", path("test.csv"), "--out", path("out2"),
                          "--valid-fraction", "0.25", NULL),
                     0);
    bf_dataset va2;
    load(&va2, "out2/valid.h5");
    assert_int_equal(va2.n, va.n);
    assert_memory_equal(va2.source_line, va.source_line, va.n * sizeof *va.source_line);
    assert_int_equal(va2.token_bytes, va.token_bytes);
    assert_memory_equal(va2.tokens, va.tokens, va.n * (size_t)va.max_len * (size_t)va.token_bytes);
    bf_dataset_free(&tr);
    bf_dataset_free(&va);
    bf_dataset_free(&va2);
    /* a run without a split removes the stale valid.h5 of the earlier run */
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    assert_false(bf_path_exists(path("out/valid.h5")));
}

static void test_vocab_cap_and_min_count(void **state) {
    (void)state;
    use_dir("vocab");
    /* counts: the 5, b 4, a 3, c 3, d 2, e 1; test-only word "zzz" */
    write_file("train.csv", "x,the the b a c d\n"
                            "y,the the b a c d e\n"
                            "x,the b b a c\n");
    write_file("test.csv", "x,the zzz e d\n");
    assert_int_equal(PREP("train.csv", "test.csv", NULL), 0);
    bf_dataset d;
    load(&d, "out/train.h5");
    const char *all[] = {"<pad>", "<unk>", "the", "b", "a", "c", "d", "e"};
    assert_int_equal(d.vocab_size, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(d.vocab[i], all[i]);
    bf_dataset_free(&d);
    /* cap: V = 5 keeps the, b, a (a before c: bytewise on a tie) */
    assert_int_equal(PREP("train.csv", "test.csv", "--vocab-size", "5", NULL), 0);
    load(&d, "out/test.h5");
    assert_int_equal(d.vocab_size, 5);
    for (int i = 0; i < 5; i++) assert_string_equal(d.vocab[i], all[i]);
    assert_string_equal(row_words(&d, 0), "the <unk> <unk> <unk>");
    bf_dataset_free(&d);
    /* min-count 3 drops d and e */
    assert_int_equal(PREP("train.csv", "test.csv", "--min-count", "3", NULL), 0);
    load(&d, "out/train.h5");
    assert_int_equal(d.vocab_size, 6);
    assert_string_equal(d.vocab[5], "c");
    assert_int_equal(vocab_id(&d, "d"), -1);
    bf_dataset_free(&d);
}

static void test_truncation(void **state) {
    (void)state;
    use_dir("trunc");
    write_file("train.csv", "a,one two three four five six\nb,one two\na,\"1,2,3,4\"\n");
    write_file("test.csv", "a,six five four three two one\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--max-len", "4", NULL), 0);
    assert_contains(g_stderr, "2 truncated to 4 tokens");
    bf_dataset d;
    load(&d, "out/train.h5");
    assert_int_equal(d.max_len, 4);
    assert_int_equal(d.lengths[0], 4);
    assert_int_equal(d.lengths[1], 2);
    assert_int_equal(d.lengths[2], 4);
    assert_string_equal(row_words(&d, 0), "one two three four");
    assert_string_equal(row_words(&d, 2), "1 , 2 ,");
    /* five, six were cut off and are not in the vocabulary */
    assert_int_equal(vocab_id(&d, "five"), -1);
    bf_dataset_free(&d);
    load(&d, "out/test.h5");
    assert_string_equal(row_words(&d, 0), "<unk> <unk> four three");
    bf_dataset_free(&d);
}

/* ---- outputs and usage ---- */

static void test_outputs_and_errors_leave_nothing(void **state) {
    (void)state;
    use_dir("atomic");
    write_file("train.csv", "a,x\nb,y\na,z\nb,w\n");
    write_file("test.csv", "a,x\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--valid-fraction", "0.5", NULL), 0);
    assert_int_equal(count_entries(path("out")), 3); /* train.h5, valid.h5, test.h5, no temporaries */
    bf_dataset d;
    load(&d, "out/valid.h5");
    assert_string_equal(d.source, path("train.csv"));
    bf_dataset_free(&d);
    load(&d, "out/test.h5");
    assert_string_equal(d.source, path("test.csv"));
    bf_dataset_free(&d);
    /* an error in the test file: no file of a new output directory exists afterwards */
    write_file("test.csv", "a,x\nc,y\n");
    assert_int_equal(prep("--train", path("train.csv"), "--test", path("test.csv"), "--out", path("new/out"), NULL), 1);
    assert_false(bf_path_exists(path("new/out/train.h5")));
    assert_false(bf_path_exists(path("new/out/test.h5")));
    /* an error in an existing directory leaves its earlier files alone and no temporaries */
    assert_int_equal(PREP("train.csv", "test.csv", "--valid-fraction", "0.5", NULL), 1);
    assert_int_equal(count_entries(path("out")), 3);
    load(&d, "out/train.h5");
    bf_dataset_free(&d);
    /* a failure while writing the second file (its staged name is blocked by a directory): the first file
     * written is removed again, so the directory holds no train.h5 */
    char blocker[64];
    snprintf(blocker, sizeof blocker, "blocked/test.h5.staged.%ld", (long)getpid());
    assert_int_equal(mkdir(path("blocked"), 0777), 0);
    assert_int_equal(mkdir(path(blocker), 0777), 0);
    write_file("test.csv", "a,x\n");
    assert_int_equal(prep("--train", path("train.csv"), "--test", path("test.csv"), "--out", path("blocked"), NULL), 1);
    assert_contains(g_stderr, "test.h5");
    assert_false(bf_path_exists(path("blocked/train.h5")));
    assert_int_equal(count_entries(path("blocked")), 1);
    /* --out is a file: the error names it, and nothing is left */
    write_file("test.csv", "a,x\n");
    write_file("afile", "x");
    assert_int_equal(prep("--train", path("train.csv"), "--test", path("test.csv"), "--out", path("afile"), NULL), 1);
    assert_contains(g_stderr, "afile");
}

static void test_usage_errors(void **state) {
    (void)state;
    use_dir("usage");
    write_file("train.csv", "a,x\n");
    write_file("test.csv", "a,x\n");
    assert_int_equal(PREP("train.csv", "test.csv", "--bogus", NULL), 2);
    assert_contains(g_stderr, "--bogus");
    assert_int_equal(PREP("train.csv", "test.csv", "--max-len", NULL), 2);
    assert_contains(g_stderr, "--max-len: missing value");
    assert_int_equal(PREP("train.csv", "test.csv", "--max-len", "12x", NULL), 2);
    assert_contains(g_stderr, "--max-len: expected an integer");
    assert_int_equal(PREP("train.csv", "test.csv", "--vocab-size", "1", NULL), 2);
    assert_contains(g_stderr, "--vocab-size");
    assert_int_equal(PREP("train.csv", "test.csv", "--min-count", "zero", NULL), 2);
    assert_contains(g_stderr, "--min-count");
    assert_int_equal(PREP("train.csv", "test.csv", "--valid-fraction", "1.5", NULL), 2);
    assert_contains(g_stderr, "--valid-fraction: expected a number in [0, 1)");
    assert_int_equal(PREP("train.csv", "test.csv", "--format", "xml", NULL), 2);
    assert_contains(g_stderr, "--format");
    assert_int_equal(PREP("train.csv", "test.csv", "--header=yes", NULL), 2);
    assert_contains(g_stderr, "--header");
    assert_int_equal(prep("--train", path("train.csv"), "--out", path("out"), NULL), 2);
    assert_contains(g_stderr, "missing --test");
    write_file("train.dat", "a,x\n");
    assert_int_equal(prep("--train", path("train.dat"), "--test", path("test.csv"), "--out", path("out"), NULL), 2);
    assert_contains(g_stderr, "--format");
    assert_int_equal(prep("--train", path("train.dat"), "--test", path("test.csv"), "--out", path("out"),
                          "--format=csv", "--max-len=8", NULL),
                     0);
    assert_int_equal(prep("--train", path("missing.csv"), "--test", path("test.csv"), "--out", path("out"), NULL), 1);
    assert_contains(g_stderr, "missing.csv: no such file");
    assert_int_equal(prep("--help", NULL), 0);
}

/* Runs BF_EXE with args; stderr into g_stderr; returns the exit status. */
static int run_exe(const char *const *args) {
    const char *exe = getenv("BF_EXE");
    if (!exe || access(exe, X_OK) != 0) fail_msg("BF_EXE (%s) is not an executable: build the budgetformer target", exe ? exe : "unset");
    char capture[4096];
    snprintf(capture, sizeof capture, "%s/exe-stderr.txt", g_root);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(127);
        dup2(fd, 2);
        char *argv[32];
        int n = 0;
        argv[n++] = (char *)(uintptr_t)exe;
        for (; args[n - 1] && n < 31; n++) argv[n] = (char *)(uintptr_t)args[n - 1];
        argv[n] = NULL;
        execv(exe, argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    read_into(capture, g_stderr, sizeof g_stderr);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_binary_exit_codes(void **state) {
    (void)state;
    use_dir("exe");
    write_file("train.csv", "a,x y\nb,z\n");
    write_file("test.csv", "a,x\nq,y\n");
    const char *ok[] = {"prepare", "--train", path("train.csv"), "--test", path("train.csv"), "--out", path("out"), NULL};
    assert_int_equal(run_exe(ok), 0);
    assert_contains(g_stderr, "2 rows, 2 classes, vocabulary 5");
    assert_true(bf_path_exists(path("out/train.h5")));
    const char *bad[] = {"prepare", "--train", path("train.csv"), "--test", path("test.csv"), "--out", path("out2"), NULL};
    assert_int_equal(run_exe(bad), 1);
    assert_contains(g_stderr, "test.csv:2: label 'q'");
    const char *usage[] = {"prepare", "--train", path("train.csv"), "--frobnicate", NULL};
    assert_int_equal(run_exe(usage), 2);
    assert_contains(g_stderr, "--frobnicate");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_rules),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_several_text_columns),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_integer_labels_0_based),
        cmocka_unit_test(test_integer_labels_1_based),
        cmocka_unit_test(test_name_labels),
        cmocka_unit_test(test_unseen_test_label),
        cmocka_unit_test(test_wrong_column_count),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_skip_bad_rows),
        cmocka_unit_test(test_empty_texts),
        cmocka_unit_test(test_empty_training_file),
        cmocka_unit_test(test_valid_split),
        cmocka_unit_test(test_vocab_cap_and_min_count),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_outputs_and_errors_leave_nothing),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_binary_exit_codes),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
