/* test_checkpoint_unit: checkpoint.c and the resume part of runlog.c without training.
 *   - a round trip of every saved field, bit for bit (weights, AdamW moments, coordinator doubles, head
 *     counts, data position, seed above 2^63), with a valid SHA-256 sidecar in sha256sum's format;
 *   - damaged files refused with a message naming the problem: a flipped byte, a truncation, a missing or
 *     malformed sidecar, a temporary file name, a model-only file (no training state);
 *   - rotation keeps the newest `keep` VALID checkpoints, never deletes an invalid file or the newest valid
 *     one, and removes leftovers of killed writers (temporary files, orphan sidecars) up to the new step;
 *   - bf_runlog_load reads log.h5 back up to a step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "budgetformer/checkpoint.h"
#include "h5io.h" /* src/files: internal to the files layer */
#include "budgetformer/headstats.h"
#include "budgetformer/model.h"
#include "budgetformer/runlog.h"

static char g_dir[2048];

#define assert_contains(hay, needle)                                                                             \
    do {                                                                                                         \
        if (!strstr((hay), (needle))) fail_msg("expected \"%s\" in: %s", (needle), (hay));                       \
    } while (0)

static const bf_model_config kCfg = {.vocab_size = 11, .max_len = 7, .d_model = 8, .n_heads = 4, .n_layers = 2,
                                     .d_ff = 12, .n_classes = 3, .full_heads = 0, .fixed_budget = 0};

static int group_setup(void **state) {
    (void)state;
    const char *work = getenv("BF_WORK");
    if (!work) {
        fprintf(stderr, "test_checkpoint_unit: BF_WORK must be set (run through ctest)\n");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/checkpoint_unit", work);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) return -1;
    bf_err err;
    if (bf_mkdir_p(g_dir, &err) < 0) {
        fprintf(stderr, "test_checkpoint_unit: %s\n", err.msg);
        return -1;
    }
    bf_h5_init();
    return 0;
}

static const char *path_in(char *buf, size_t len, const char *sub, const char *name) {
    snprintf(buf, len, "%s/%s/%s", g_dir, sub, name);
    return buf;
}

static void make_sub(const char *sub) {
    char p[2200];
    snprintf(p, sizeof p, "%s/%s", g_dir, sub);
    bf_err err;
    assert_int_equal(bf_mkdir_p(p, &err), 0);
}

/* Everything a training checkpoint carries, filled with recognisable values. */
typedef struct {
    bf_model m;
    float *adam_m, *adam_v;
    bf_coordinator co;
    bf_headstats hs;
    char *vocab[11];
    char *labels[3];
    bf_ckpt_meta meta;
} fixture;

static void fixture_init_cfg(fixture *f, long step, const bf_model_config *cfg) {
    memset(f, 0, sizeof *f);
    bf_model_init(&f->m, cfg, 1);
    bf_model_init_weights(&f->m, 7);
    size_t n = f->m.n_params;
    f->adam_m = calloc(n, sizeof(float));
    f->adam_v = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) {
        f->adam_m[i] = (float)((double)i * 1e-3 - 0.7);
        f->adam_v[i] = (float)((double)i * 3.3e-7 + 1e-12);
    }
    f->co = (bf_coordinator){.shape = BF_EXPLORE_ADAPTIVE, .eps_start = 0.8f, .eps_end = 0.05f, .steps = 90,
                             .window = 7, .anneal_steps = 13, .threshold = 0.0312f, .anneal_from = 0,
                             .window_sum = 3.14159265358979311599796346854, .window_n = 5,
                             .prev_mean = 1.0986122886681098};
    bf_headstats_init(&f->hs, kCfg.n_classes, kCfg.n_layers, kCfg.n_heads);
    for (size_t i = 0; i < f->hs.block_len; i++) f->hs.block[i] = (int64_t)(i * 37 + 1);
    for (int i = 0; i < 11; i++) {
        char w[16];
        snprintf(w, sizeof w, i == 0 ? "<pad>" : i == 1 ? "<unk>" : "w%d", i);
        f->vocab[i] = strdup(w);
    }
    f->labels[0] = strdup("ham");
    f->labels[1] = strdup("spam");
    f->labels[2] = strdup("caf\xc3\xa9");
    f->meta = (bf_ckpt_meta){.step = step, .seed = 0xF123456789ABCDEFull, .world_size = 3, .batch_size = 16,
                             .n_train = 50, .skipped_steps = 2, .nonfinite_run = 1, .lr = 1e-3f,
                             .adam_m = f->adam_m, .adam_v = f->adam_v, .coord = &f->co,
                             .headstats = f->hs.block, .headstats_len = f->hs.block_len,
                             .config_text = "[train]\nsteps = 99\n",
                             .vocab = (const char *const *)f->vocab, .vocab_size = 11,
                             .label_names = (const char *const *)f->labels, .n_classes = 3};
}

static void fixture_init(fixture *f, long step) { fixture_init_cfg(f, step, &kCfg); }

static void fixture_free(fixture *f) {
    bf_model_free(&f->m);
    free(f->adam_m);
    free(f->adam_v);
    bf_headstats_free(&f->hs);
    for (int i = 0; i < 11; i++) free(f->vocab[i]);
    for (int i = 0; i < 3; i++) free(f->labels[i]);
}

static void save_step(fixture *f, const char *sub, long step) {
    char p[2300];
    snprintf(p, sizeof p, "%s/%s/step-%08ld.h5", g_dir, sub, step);
    f->meta.step = step;
    bf_err err = {{0}};
    if (bf_checkpoint_save(p, &f->m, &f->meta, &err)) fail_msg("%s", err.msg);
}

static void test_round_trip(void **state) {
    (void)state;
    make_sub("rt");
    fixture f;
    fixture_init(&f, 21);
    save_step(&f, "rt", 21);
    char p[2300], side[2400];
    path_in(p, sizeof p, "rt", "step-00000021.h5");
    /* the sidecar is hidden beside it, in sha256sum's format: 64 hex digits, two blanks, the file name */
    path_in(side, sizeof side, "rt", ".step-00000021.h5.sha256");
    FILE *sf = fopen(side, "r");
    assert_non_null(sf);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, sf));
    fclose(sf);
    assert_int_equal(strlen(line), 64 + 2 + strlen("step-00000021.h5") + 1);
    assert_string_equal(line + 64, "  step-00000021.h5\n");

    bf_model m2;
    bf_model_init(&m2, &kCfg, 1);
    float *am = calloc(m2.n_params, sizeof(float)), *av = calloc(m2.n_params, sizeof(float));
    bf_ckpt_file cf;
    bf_ckpt_state st;
    bf_err err = {{0}};
    if (bf_checkpoint_open(p, BF_DIGEST_REQUIRED, &cf, &err)) fail_msg("%s", err.msg);
    assert_int_equal(cf.digest, BF_DIGEST_VALID);
    assert_string_equal(cf.sha256, cf.sidecar_sha256);
    bf_model_config mc;
    assert_int_equal(bf_checkpoint_file_model_config(&cf, &mc, &err), 0);
    assert_memory_equal(&mc, &kCfg, sizeof mc);
    if (bf_checkpoint_read_training(&cf, &m2, am, av, f.hs.block_len, &st, &err)) fail_msg("%s", err.msg);
    bf_checkpoint_close(&cf);
    assert_memory_equal(m2.params, f.m.params, f.m.n_params * sizeof(float));
    assert_memory_equal(am, f.adam_m, f.m.n_params * sizeof(float));
    assert_memory_equal(av, f.adam_v, f.m.n_params * sizeof(float));
    assert_int_equal(st.format_version, BF_CHECKPOINT_FORMAT);
    assert_int_equal(st.step, 21);
    assert_true(st.seed == 0xF123456789ABCDEFull);
    assert_int_equal(st.world_size, 3);
    assert_int_equal(st.batch_size, 16);
    assert_int_equal(st.n_train, 50);
    assert_int_equal(st.stream_position, 21 * 16);
    assert_int_equal(st.epoch, 21 * 16 / 50);
    assert_int_equal(st.epoch_position, 21 * 16 % 50);
    assert_int_equal(st.skipped_steps, 2);
    assert_int_equal(st.nonfinite_run, 1);
    assert_string_equal(st.config_text, "[train]\nsteps = 99\n");
    /* every coordinator field, doubles bit for bit */
    assert_int_equal(st.coord.shape, f.co.shape);
    assert_true(st.coord.eps_start == f.co.eps_start && st.coord.eps_end == f.co.eps_end);
    assert_int_equal(st.coord.steps, f.co.steps);
    assert_int_equal(st.coord.window, f.co.window);
    assert_int_equal(st.coord.anneal_steps, f.co.anneal_steps);
    assert_true(st.coord.threshold == f.co.threshold);
    assert_int_equal(st.coord.anneal_from, f.co.anneal_from);
    assert_memory_equal(&st.coord.window_sum, &f.co.window_sum, sizeof(double));
    assert_int_equal(st.coord.window_n, f.co.window_n);
    assert_memory_equal(&st.coord.prev_mean, &f.co.prev_mean, sizeof(double));
    assert_int_equal(st.headstats_len, f.hs.block_len);
    assert_memory_equal(st.headstats, f.hs.block, f.hs.block_len * sizeof(int64_t));
    bf_ckpt_state_free(&st);

    /* the model-only loader (eval) reads the same weights and names */
    char **vocab = NULL, **labels = NULL;
    size_t nv = 0, nl = 0;
    memset(m2.params, 0, m2.n_params * sizeof(float));
    if (bf_checkpoint_load_model(p, &m2, &vocab, &nv, &labels, &nl, &err)) fail_msg("%s", err.msg);
    assert_memory_equal(m2.params, f.m.params, f.m.n_params * sizeof(float));
    assert_int_equal(nv, 11);
    assert_string_equal(labels[2], "caf\xc3\xa9");
    bf_h5_free_strings(vocab, nv);
    bf_h5_free_strings(labels, nl);

    /* the listing sees the checkpoint but not its sidecar */
    bf_ckpt_entry *e;
    size_t n;
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/rt", g_dir);
    assert_int_equal(bf_checkpoint_list(dir, &e, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].step, 21);
    free(e);
    free(am);
    free(av);
    bf_model_free(&m2);
    fixture_free(&f);
}

/* The added budget hidden layer (docs/MODEL.md): /model attribute budget_hidden and the tensors
 * router/w_bud_h, b_bud_h, w_bud_o of each layer come back as saved; a value above the largest the option
 * takes (a newer budgetformer's) is refused by name. */
static void test_budget_hidden_round_trip(void **state) {
    (void)state;
    make_sub("bh");
    bf_model_config cfg = kCfg;
    cfg.gate_norm = 1;
    cfg.budget_hidden = 5;
    fixture f;
    fixture_init_cfg(&f, 3, &cfg);
    save_step(&f, "bh", 3);
    char p[2300];
    path_in(p, sizeof p, "bh", "step-00000003.h5");
    bf_ckpt_file cf;
    bf_err err = {{0}};
    if (bf_checkpoint_open(p, BF_DIGEST_REQUIRED, &cf, &err)) fail_msg("%s", err.msg);
    bf_model_config mc;
    assert_int_equal(bf_checkpoint_file_model_config(&cf, &mc, &err), 0);
    bf_checkpoint_close(&cf);
    assert_memory_equal(&mc, &cfg, sizeof mc);
    bf_model m2;
    bf_model_init(&m2, &mc, 1);
    const bf_tensor_info *t = bf_model_tensor(&m2, "layers/1/router/w_bud_h");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 8);
    assert_int_equal(t->shape[1], 5);
    assert_non_null(bf_model_tensor(&m2, "layers/0/router/b_bud_h"));
    assert_non_null(bf_model_tensor(&m2, "layers/0/router/w_bud_o"));
    char **vocab = NULL, **labels = NULL;
    size_t nv = 0, nl = 0;
    if (bf_checkpoint_load_model(p, &m2, &vocab, &nv, &labels, &nl, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m2.n_params, f.m.n_params);
    assert_memory_equal(m2.params, f.m.params, f.m.n_params * sizeof(float));
    bf_h5_free_strings(vocab, nv);
    bf_h5_free_strings(labels, nl);
    bf_model_free(&m2);
    /* budget_hidden = 5000 (above BF_MAX_BUDGET_HIDDEN): refused, naming the attribute */
    hid_t h = bf_h5_open_rw(p, &err);
    assert_true(h >= 0);
    assert_int_equal(bf_h5_write_attr_int(h, "/model", "budget_hidden", 5000, &err), 0);
    assert_int_equal(bf_h5_close(h, p, &err), 0);
    if (bf_checkpoint_open(p, BF_DIGEST_REPORT, &cf, &err)) fail_msg("%s", err.msg);
    assert_int_equal(bf_checkpoint_file_model_config(&cf, &mc, &err), -1);
    bf_checkpoint_close(&cf);
    assert_contains(err.msg, "budget_hidden = 5000");
    fixture_free(&f);
}

static void copy_file(const char *from, const char *to) {
    char cmd[5000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Opens with the given policy and expects failure with `status` and a message containing `word`. */
static void expect_refused(const char *p, bf_digest_policy pol, bf_digest_status status, const char *word) {
    bf_ckpt_file cf;
    bf_err err = {{0}};
    int rc = bf_checkpoint_open(p, pol, &cf, &err);
    bf_checkpoint_close(&cf);
    if (rc == 0) fail_msg("%s was accepted; expected a refusal with \"%s\"", p, word);
    assert_int_equal(cf.digest, status);
    assert_contains(err.msg, word);
}

static void test_damaged(void **state) {
    (void)state;
    make_sub("dmg");
    fixture f;
    fixture_init(&f, 10);
    save_step(&f, "dmg", 10);
    char good[2300], p[2300], side[2400], gside[2400];
    path_in(good, sizeof good, "dmg", "step-00000010.h5");
    path_in(gside, sizeof gside, "dmg", ".step-00000010.h5.sha256");

    /* a flipped byte in the middle of the file (the weights) */
    path_in(p, sizeof p, "dmg", "flip.h5");
    path_in(side, sizeof side, "dmg", ".flip.h5.sha256");
    copy_file(good, p);
    copy_file(gside, side);
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    long mid = file_size(p) / 2;
    fseek(fp, mid, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, mid, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    expect_refused(p, BF_DIGEST_REQUIRED, BF_DIGEST_CORRUPT, "corrupt");
    expect_refused(p, BF_DIGEST_IF_PRESENT, BF_DIGEST_CORRUPT, "does not match");

    /* truncated */
    path_in(p, sizeof p, "dmg", "trunc.h5");
    path_in(side, sizeof side, "dmg", ".trunc.h5.sha256");
    copy_file(good, p);
    copy_file(gside, side);
    assert_int_equal(truncate(p, file_size(p) - 1000), 0);
    expect_refused(p, BF_DIGEST_REQUIRED, BF_DIGEST_CORRUPT, "corrupt");

    /* a missing sidecar: refused for resuming, accepted (unverified) for evaluation */
    path_in(p, sizeof p, "dmg", "nosidecar.h5");
    copy_file(good, p);
    expect_refused(p, BF_DIGEST_REQUIRED, BF_DIGEST_MISSING, "missing");
    bf_ckpt_file cf;
    bf_err err = {{0}};
    assert_int_equal(bf_checkpoint_open(p, BF_DIGEST_IF_PRESENT, &cf, &err), 0);
    assert_int_equal(cf.digest, BF_DIGEST_MISSING);
    bf_checkpoint_close(&cf);

    /* a malformed sidecar */
    path_in(p, sizeof p, "dmg", "badsidecar.h5");
    path_in(side, sizeof side, "dmg", ".badsidecar.h5.sha256");
    copy_file(good, p);
    FILE *sf = fopen(side, "w");
    fputs("not a digest\n", sf);
    fclose(sf);
    expect_refused(p, BF_DIGEST_REQUIRED, BF_DIGEST_CORRUPT, "malformed");

    /* the temporary name of a writer */
    path_in(p, sizeof p, "dmg", ".step-00000011.h5.tmp");
    copy_file(good, p);
    expect_refused(p, BF_DIGEST_REQUIRED, BF_DIGEST_MISSING, "temporary");

    /* a model-only checkpoint (no optimiser, coordinator or head counts) cannot be resumed */
    f.meta.adam_m = f.meta.adam_v = NULL;
    f.meta.coord = NULL;
    f.meta.headstats = NULL;
    save_step(&f, "dmg", 12);
    path_in(p, sizeof p, "dmg", "step-00000012.h5");
    assert_int_equal(bf_checkpoint_open(p, BF_DIGEST_REQUIRED, &cf, &err), 0);
    bf_model m2;
    bf_model_init(&m2, &kCfg, 1);
    float *am = calloc(m2.n_params, sizeof(float)), *av = calloc(m2.n_params, sizeof(float));
    bf_ckpt_state st;
    assert_int_equal(bf_checkpoint_read_training(&cf, &m2, am, av, 0, &st, &err), -1);
    assert_contains(err.msg, "missing group /coordinator");
    bf_checkpoint_close(&cf);
    free(am);
    free(av);
    bf_model_free(&m2);
    fixture_free(&f);
}

static int exists_in(const char *sub, const char *name) {
    char p[2300];
    return access(path_in(p, sizeof p, sub, name), F_OK) == 0;
}

static void touch(const char *sub, const char *name) {
    char p[2300];
    FILE *f = fopen(path_in(p, sizeof p, sub, name), "w");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
}

static void test_rotation(void **state) {
    (void)state;
    make_sub("rot");
    fixture f;
    fixture_init(&f, 2);
    for (long s = 2; s <= 8; s += 2) save_step(&f, "rot", s);
    /* the newest is damaged: it neither counts as kept nor is deleted */
    char p[2300];
    path_in(p, sizeof p, "rot", "step-00000008.h5");
    assert_int_equal(truncate(p, 100), 0);
    touch("rot", ".step-00000005.h5.tmp");        /* left by a killed writer: removed */
    touch("rot", ".step-00000007.h5.sha256.tmp"); /* likewise */
    touch("rot", ".step-00000009.h5.tmp");        /* after the new step: left alone */
    touch("rot", ".step-00000003.h5.sha256");     /* orphan sidecar: removed */
    touch("rot", ".step-00000009.h5.sha256");     /* orphan, but after the new step: left alone */
    touch("rot", "notes.txt");                    /* not ours */
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/rot", g_dir);
    bf_err err = {{0}};
    assert_int_equal(bf_checkpoint_rotate(dir, 2, 8, &err), 1);
    assert_false(exists_in("rot", "step-00000002.h5"));
    assert_false(exists_in("rot", ".step-00000002.h5.sha256"));
    assert_true(exists_in("rot", "step-00000004.h5"));
    assert_true(exists_in("rot", "step-00000006.h5"));
    assert_true(exists_in("rot", "step-00000008.h5"));
    assert_true(exists_in("rot", ".step-00000008.h5.sha256"));
    assert_false(exists_in("rot", ".step-00000005.h5.tmp"));
    assert_false(exists_in("rot", ".step-00000007.h5.sha256.tmp"));
    assert_true(exists_in("rot", ".step-00000009.h5.tmp"));
    assert_false(exists_in("rot", ".step-00000003.h5.sha256"));
    assert_true(exists_in("rot", ".step-00000009.h5.sha256"));
    assert_true(exists_in("rot", "notes.txt"));
    /* keep = 1: the newest VALID one (6) stays, whatever is newer and broken */
    assert_int_equal(bf_checkpoint_rotate(dir, 1, 8, &err), 1);
    assert_false(exists_in("rot", "step-00000004.h5"));
    assert_true(exists_in("rot", "step-00000006.h5"));
    assert_true(exists_in("rot", "step-00000008.h5"));
    /* nothing more to delete; and keep = 0 still keeps the newest valid one */
    assert_int_equal(bf_checkpoint_rotate(dir, 0, 8, &err), 0);
    assert_true(exists_in("rot", "step-00000006.h5"));
    fixture_free(&f);
}

/* Step names past 99,999,999 (train.steps allows 10^9): more digits, ordered by number, old 8-digit names
 * still listed; only the canonical form of a step counts (no second name for one step). */
static void test_large_step_names(void **state) {
    (void)state;
    make_sub("big");
    fixture f;
    fixture_init(&f, 1);
    const long steps[] = {20, 99999999, 100000000, 999999999, 1000000000};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) save_step(&f, "big", steps[i]);
    assert_true(exists_in("big", "step-00000020.h5"));
    assert_true(exists_in("big", "step-100000000.h5"));
    assert_true(exists_in("big", "step-1000000000.h5"));
    touch("big", "step-012345678.h5"); /* 9 digits with a leading zero: not a name this program writes */
    touch("big", "step-1234567.h5");   /* 7 digits: likewise */
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/big", g_dir);
    bf_ckpt_entry *e;
    size_t n;
    bf_err err = {{0}};
    assert_int_equal(bf_checkpoint_list(dir, &e, &n, &err), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) assert_int_equal(e[i].step, steps[4 - i]); /* newest first, by number */
    free(e);
    /* rotation keeps the numerically newest: 10-digit names outrank 8- and 9-digit ones */
    assert_int_equal(bf_checkpoint_rotate(dir, 2, 1000000000, &err), 3);
    assert_true(exists_in("big", "step-1000000000.h5"));
    assert_true(exists_in("big", "step-999999999.h5"));
    assert_false(exists_in("big", "step-100000000.h5"));
    assert_false(exists_in("big", "step-00000020.h5"));
    assert_true(exists_in("big", "step-012345678.h5"));
    fixture_free(&f);
}

/* A state that a load would refuse is never written: nothing appears under the name or as a temporary file. */
static void expect_save_refused(fixture *f, const char *name, const char *words) {
    char p[2300];
    path_in(p, sizeof p, "refuse", name);
    bf_err err = {{0}};
    assert_int_equal(bf_checkpoint_save(p, &f->m, &f->meta, &err), -1);
    assert_contains(err.msg, words);
    assert_false(exists_in("refuse", name));
    char tmp[64], side[64];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    snprintf(side, sizeof side, ".%s.sha256", name);
    assert_false(exists_in("refuse", tmp));
    assert_false(exists_in("refuse", side));
}

static void test_save_refuses_meaningless(void **state) {
    (void)state;
    make_sub("refuse");
    fixture f;
    fixture_init(&f, 9);
    f.meta.step = 9;
    f.adam_v[5] = -1e-6f;
    expect_save_refused(&f, "step-00000009.h5", "/optim/v[5] (AdamW second moment) = -1e-06 is negative");
    f.adam_v[5] = 0.0f;
    char *keep = f.vocab[7];
    f.vocab[7] = f.vocab[6];
    expect_save_refused(&f, "step-00000009.h5", "/vocab (the vocabulary) holds \"w6\" twice (entries 6 and 7)");
    f.vocab[7] = keep;
    f.m.params[3] = 1.0f / 0.0f;
    expect_save_refused(&f, "step-00000009.h5", "non-finite weight");
    f.m.params[3] = 0.5f;
    f.meta.nonfinite_run = 3; /* more than skipped_steps (2) */
    expect_save_refused(&f, "step-00000009.h5", "nonfinite_run = 3 exceeds skipped_steps = 2");
    f.meta.nonfinite_run = 1;
    f.hs.block[4] = -2;
    expect_save_refused(&f, "step-00000009.h5", "/headstats/block[4] = -2");
    f.hs.block[4] = 0;
    /* fixed again, the same state saves and validates */
    char p[2300];
    path_in(p, sizeof p, "refuse", "step-00000009.h5");
    bf_err err = {{0}};
    if (bf_checkpoint_save(p, &f.m, &f.meta, &err)) fail_msg("%s", err.msg);
    if (bf_checkpoint_validate(p, &err)) fail_msg("%s", err.msg);
    fixture_free(&f);
}

static void test_runlog_load(void **state) {
    (void)state;
    make_sub("log");
    char p[2300];
    path_in(p, sizeof p, "log", "log.h5");
    bf_runlog a, b;
    bf_runlog_init(&a, p, 3, 2, 4);
    bf_headstats hs;
    bf_headstats_init(&hs, 3, 2, 4);
    for (int s = 1; s <= 10; s++) {
        float mb[2] = {1.5f + (float)s, 2.25f};
        bf_runlog_append(&a, s, 1.0f / (float)s, 0.01f * (float)s, 0.5f, mb, 100.0f, 2.0f, 0.1f);
        hs.count[0] += 4;
        hs.class_count[s % 3] += 4;
        hs.usage[s % 8] += 3;
        hs.budget[(s + 1) % 8] += 4;
        if (s % 3 == 0) {
            bf_runlog_append_heads(&a, s, &hs);
            bf_headstats_reset(&hs);
        }
    }
    bf_err err = {{0}};
    if (bf_runlog_flush(&a, &err)) fail_msg("%s", err.msg);
    bf_runlog_init(&b, p, 3, 2, 4);
    assert_int_equal(bf_runlog_load(&b, 7, &err), 0);
    assert_int_equal(b.n, 7);
    assert_int_equal(b.nh, 2);
    assert_memory_equal(b.loss, a.loss, 7 * sizeof(float));
    assert_memory_equal(b.mean_budget, a.mean_budget, 7 * 2 * sizeof(float));
    assert_memory_equal(b.h_usage, a.h_usage, 2 * 8 * sizeof(float));
    assert_memory_equal(b.h_class_count, a.h_class_count, 2 * 3 * sizeof(int64_t));
    bf_runlog_free(&b);
    /* another shape is refused; no file is "nothing to load" */
    bf_runlog_init(&b, p, 3, 2, 2);
    assert_int_equal(bf_runlog_load(&b, 7, &err), -1);
    assert_contains(err.msg, "shape");
    bf_runlog_free(&b);
    path_in(p, sizeof p, "log", "absent.h5");
    bf_runlog_init(&b, p, 3, 2, 4);
    assert_int_equal(bf_runlog_load(&b, 7, &err), 1);
    bf_runlog_free(&b);
    bf_runlog_free(&a);
    bf_headstats_free(&hs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_budget_hidden_round_trip),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_large_step_names),
        cmocka_unit_test(test_save_refuses_meaningless),
        cmocka_unit_test(test_runlog_load),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
