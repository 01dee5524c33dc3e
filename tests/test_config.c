/* Tests of the configuration: defaults, INI files, --set, error messages, validation, write/load round
 * trip, and docs/CONFIG.md in step with the key table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budgetformer/config.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

/* ctest sets BF_WORK; run by hand the files go to $TMPDIR (or /tmp), never into the current directory. */
static const char *work_dir(void) {
    const char *w = getenv("BF_WORK");
    if (w && *w) return w;
    w = getenv("TMPDIR");
    return w && *w ? w : "/tmp";
}

/* Writes text to $BF_WORK/test_config_<name>.ini and puts that path into path[n]. */
static void write_ini(const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/test_config_%s.ini", work_dir(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle)) fail_msg("message \"%s\"\n  does not contain \"%s\"", haystack, needle);
}

/* Loads text from a file and expects an error at `line` whose message contains every string given
 * (NULL-terminated); also checks the configuration was left unchanged. */
static void expect_file_error(const char *name, const char *text, int line, ...) {
    char path[1024], where[1100];
    write_ini(name, text, path, sizeof path);
    bf_config c, before;
    bf_config_defaults(&c);
    before = c;
    bf_err err = {{0}};
    assert_int_equal(bf_config_load(&c, path, &err), -1);
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    assert_contains(err.msg, where);
    va_list ap;
    va_start(ap, line);
    for (const char *s; (s = va_arg(ap, const char *));) assert_contains(err.msg, s);
    va_end(ap);
    assert_memory_equal(&c, &before, sizeof c);
}

/* Applies one --set and expects an error naming "--set ARG" and every string given (NULL-terminated). */
static void expect_set_error(const char *arg, ...) {
    bf_config c, before;
    bf_config_defaults(&c);
    before = c;
    bf_err err = {{0}};
    assert_int_equal(bf_config_set(&c, arg, &err), -1);
    char where[600];
    snprintf(where, sizeof where, "--set %s", arg);
    assert_contains(err.msg, where);
    va_list ap;
    va_start(ap, arg);
    for (const char *s; (s = va_arg(ap, const char *));) assert_contains(err.msg, s);
    va_end(ap);
    assert_memory_equal(&c, &before, sizeof c);
}

static void set_ok(bf_config *c, const char *arg) {
    bf_err err = {{0}};
    if (bf_config_set(c, arg, &err)) fail_msg("--set %s failed: %s", arg, err.msg);
}

static void assert_configs_equal(const bf_config *a, const bf_config *b) {
    assert_string_equal(a->data_train, b->data_train);
    assert_string_equal(a->data_valid, b->data_valid);
    assert_string_equal(a->data_test, b->data_test);
    assert_string_equal(a->run_dir, b->run_dir);
    assert_int_equal(a->d_model, b->d_model);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->d_ff, b->d_ff);
    assert_int_equal(a->full_heads, b->full_heads);
    assert_int_equal(a->fixed_budget, b->fixed_budget);
    assert_int_equal(a->batch_size, b->batch_size);
    assert_int_equal(a->micro_batch, b->micro_batch);
    assert_int_equal(a->steps, b->steps);
    assert_int_equal(a->stop_at, b->stop_at);
    assert_int_equal(a->warmup, b->warmup);
    assert_true(a->lr == b->lr);
    assert_true(a->lr_min == b->lr_min);
    assert_true(a->weight_decay == b->weight_decay);
    assert_true(a->beta1 == b->beta1);
    assert_true(a->beta2 == b->beta2);
    assert_true(a->adam_eps == b->adam_eps);
    assert_true(a->grad_clip == b->grad_clip);
    assert_true(a->budget_cost == b->budget_cost);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->log_every, b->log_every);
    assert_int_equal(a->log_write_every, b->log_write_every);
    assert_int_equal(a->eval_every, b->eval_every);
    assert_true(a->eps_start == b->eps_start);
    assert_true(a->eps_end == b->eps_end);
    assert_int_equal(a->explore_steps, b->explore_steps);
    assert_int_equal(a->explore_shape, b->explore_shape);
    assert_true(a->tau == b->tau);
    assert_int_equal(a->checkpoint_every, b->checkpoint_every);
    assert_int_equal(a->checkpoint_keep, b->checkpoint_keep);
    assert_int_equal(a->heads_every, b->heads_every);
    /* Strings are zero-filled to the end and the struct is zeroed first, so equal means equal bytes. */
    assert_memory_equal(a, b, sizeof *a);
}

/* ---- defaults ----------------------------------------------------------------------------------- */

static void test_defaults(void **state) {
    (void)state;
    bf_config c;
    bf_config_defaults(&c);
    assert_string_equal(c.data_train, "");
    assert_string_equal(c.data_valid, "");
    assert_string_equal(c.data_test, "");
    assert_int_equal(c.d_model, 64);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.d_ff, 128);
    assert_int_equal(c.full_heads, 0);
    assert_int_equal(c.fixed_budget, 0);
    assert_int_equal(c.batch_size, 32);
    assert_int_equal(c.micro_batch, 0);
    assert_int_equal(c.steps, 1000);
    assert_int_equal(c.stop_at, 0);
    assert_int_equal(c.warmup, 50);
    assert_true(c.lr == 1e-3f);
    assert_true(c.lr_min == 1e-5f);
    assert_true(c.weight_decay == 0.01f);
    assert_true(c.beta1 == 0.9f);
    assert_true(c.beta2 == 0.999f);
    assert_true(c.adam_eps == 1e-8f);
    assert_true(c.grad_clip == 1.0f);
    assert_true(c.budget_cost == 0.01f);
    assert_true(c.seed == 1);
    assert_int_equal(c.log_every, 10);
    assert_int_equal(c.log_write_every, 1);
    assert_int_equal(c.eval_every, 0);
    assert_true(c.eps_start == 1.0f);
    assert_true(c.eps_end == 0.0f);
    assert_int_equal(c.explore_steps, 500);
    assert_int_equal(c.explore_shape, BF_EXPLORE_LINEAR);
    assert_true(c.tau == 1.0f);
    assert_string_equal(c.run_dir, "runs/default");
    assert_int_equal(c.checkpoint_every, 0);
    assert_int_equal(c.checkpoint_keep, 3);
    assert_int_equal(c.heads_every, 50);

    /* The defaults pass validation once the one required key is given. */
    bf_err err = {{0}};
    assert_int_equal(bf_config_validate(&c, &err), -1);
    assert_contains(err.msg, "data.train");
    set_ok(&c, "data.train=x.h5");
    assert_int_equal(bf_config_validate(&c, &err), 0);
}

static void test_shape_names(void **state) {
    (void)state;
    assert_string_equal(bf_explore_shape_name(BF_EXPLORE_LINEAR), "linear");
    assert_string_equal(bf_explore_shape_name(BF_EXPLORE_COSINE), "cosine");
    assert_string_equal(bf_explore_shape_name(BF_EXPLORE_EXPONENTIAL), "exponential");
    assert_string_equal(bf_explore_shape_name((bf_explore_shape)7), "unknown");
}

/* ---- loading ------------------------------------------------------------------------------------ */

static void test_load_file(void **state) {
    (void)state;
    char path[1024];
    write_ini("good",
              "; a run\n"
              "# another comment style\n"
              "\n"
              "[data]\n"
              "train = data/train.h5\n"
              "valid=data/valid.h5   ; inline comment\n"
              "\n"
              "[model]\n"
              "n_heads = 8\r\n"
              "  d_model = 128\n" /* indented: a key, not a continuation of the previous value */
              "full_heads = true\n"
              "[train]\n"
              "lr = 3e-4\n"
              "seed = 18446744073709551615\n"
              "steps = 2000\n"
              "steps = 3000\n" /* later wins */
              "[explore]\n"
              "shape = cosine\n"
              "[run]\n"
              "dir = runs/a;b\n", /* ';' without a blank before it is part of the value */
              path, sizeof path);
    bf_config c;
    bf_config_defaults(&c);
    bf_err err = {{0}};
    if (bf_config_load(&c, path, &err)) fail_msg("%s", err.msg);
    assert_string_equal(c.data_train, "data/train.h5");
    assert_string_equal(c.data_valid, "data/valid.h5");
    assert_int_equal(c.d_model, 128);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.full_heads, 1);
    assert_true(c.lr == 3e-4f);
    assert_true(c.seed == UINT64_MAX);
    assert_int_equal(c.steps, 3000);
    assert_int_equal(c.explore_shape, BF_EXPLORE_COSINE);
    assert_string_equal(c.run_dir, "runs/a;b");
    assert_int_equal(c.n_layers, 2); /* untouched keys keep their values */
}

static void test_load_string(void **state) {
    (void)state;
    bf_config c;
    bf_config_defaults(&c);
    bf_err err = {{0}};
    assert_int_equal(bf_config_load_string(&c, "[train]\nsteps = 7\n[model]\nd_ff = 9", "ckpt", &err), 0);
    assert_int_equal(c.steps, 7);
    assert_int_equal(c.d_ff, 9);
    assert_int_equal(bf_config_load_string(&c, "[train]\n\nsteps = x\n", "ckpt:/run/config", &err), -1);
    assert_contains(err.msg, "ckpt:/run/config:3: train.steps: expected an integer, got 'x'");
    assert_int_equal(c.steps, 7);
}

static void test_unknown_keys(void **state) {
    (void)state;
    expect_file_error("unknown_key", "[model]\nd_model = 64\n\nd_modl = 64\n", 4, "unknown key 'model.d_modl'",
                      "known keys in [model]: d_model, n_heads, n_layers, d_ff, full_heads, fixed_budget, gate_norm, "
                      "layer_budgets, budget_hidden)",
                      NULL);
    expect_file_error("unknown_section", "[train]\nsteps = 5\n[modle]\nd_model = 64\n", 4,
                      "unknown key 'modle.d_model'", "unknown section [modle]", "model", "explore", NULL);
    expect_file_error("no_section", "steps = 5\n", 1, "unknown key 'steps'", "train", NULL);
    /* A key that exists in another section is still unknown in this one. */
    expect_file_error("wrong_section", "[model]\nsteps = 5\n", 2, "unknown key 'model.steps'", NULL);
}

static void test_type_errors(void **state) {
    (void)state;
    expect_file_error("int_abc", "[model]\nd_model = abc\n", 2, "model.d_model: expected an integer, got 'abc'",
                      NULL);
    expect_file_error("int_junk", "[model]\nd_model = 64abc\n", 2, "model.d_model", "'64abc'", NULL);
    expect_file_error("int_frac", "[train]\nsteps = 1.5\n", 2, "train.steps: expected an integer", NULL);
    expect_file_error("int_exp", "[train]\nsteps = 1e3\n", 2, "train.steps: expected an integer", NULL);
    expect_file_error("int_hex", "[train]\nsteps = 0x10\n", 2, "train.steps: expected an integer", NULL);
    expect_file_error("int_empty", "[train]\nsteps =\n", 2, "train.steps: expected an integer, got ''", NULL);
    expect_file_error("float_abc", "[train]\nlr = fast\n", 2, "train.lr: expected a number, got 'fast'", NULL);
    expect_file_error("float_junk", "[train]\nlr = 0.1x\n", 2, "train.lr", "'0.1x'", NULL);
    expect_file_error("float_nan", "[train]\nlr = nan\n", 2, "train.lr: expected a number", NULL);
    expect_file_error("u64_neg", "[train]\nseed = -1\n", 2, "train.seed: expected a non-negative integer", NULL);
    expect_file_error("bool", "[model]\nfull_heads = maybe\n", 2, "model.full_heads", "'maybe'", NULL);
    expect_file_error("enum", "[explore]\nshape = step\n", 2,
                      "explore.shape: expected one of linear, cosine, exponential, adaptive, got 'step'", NULL);
}

static void test_range_errors(void **state) {
    (void)state;
    expect_file_error("range_int", "[model]\nd_model = 5000\n", 2,
                      "model.d_model: 5000 is out of range; allowed: [8, 4096]", NULL);
    expect_file_error("range_low", "[model]\nn_heads = 1\n", 2,
                      "model.n_heads: 1 is out of range; allowed: [2, 32]", NULL);
    expect_file_error("range_overflow", "[train]\nsteps = 99999999999999999999999\n", 2, "train.steps",
                      "99999999999999999999999", "[1, 1000000000]", NULL);
    expect_file_error("range_int_overflow", "[model]\nd_ff = 4294967297\n", 2, "model.d_ff", "4294967297",
                      "out of range", NULL);
    expect_file_error("range_nomax", "[train]\nlog_every = 0\n", 2,
                      "train.log_every: 0 is out of range; allowed: at least 1", NULL);
    expect_file_error("range_open_lo", "[train]\nlr = 0\n", 2, "train.lr: 0 is out of range; allowed: (0, 1]", NULL);
    expect_file_error("range_underflow", "[train]\nlr = 1e-60\n", 2,
                      "train.lr: 1e-60 is out of range; allowed: (0, 1]", NULL);
    expect_file_error("range_open_hi", "[train]\nbeta1 = 1\n", 2,
                      "train.beta1: 1 is out of range; allowed: [0, 1)", NULL);
    /* In range as a double, 1.0f once stored: the stored value is what counts. */
    expect_file_error("range_rounds", "[train]\nbeta2 = 0.99999999999\n", 2, "train.beta2", "[0, 1)", NULL);
    expect_file_error("range_inf", "[train]\ngrad_clip = 1e300\n", 2, "train.grad_clip", "[0, 1000000]", NULL);
    expect_file_error("range_u64", "[train]\nseed = 18446744073709551616\n", 2, "train.seed", "out of range",
                      NULL);
    expect_file_error("range_tau", "[explore]\ntau = 101\n", 2,
                      "explore.tau: 101 is out of range; allowed: (0, 100]", NULL);
}

static void test_file_errors(void **state) {
    (void)state;
    /* Syntax errors come from inih, with its line number. */
    expect_file_error("syntax", "[train]\nsteps = 5\nthis line has no equals sign\n", 3, "syntax error", NULL);
    expect_file_error("syntax_section", "[train\nsteps = 5\n", 1, "syntax error", NULL);

    /* A line longer than the parser's buffer is an error, not two lines. */
    size_t n = 3000;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "[data]\ntrain = ");
    size_t len = strlen(text);
    memset(text + len, 'a', n);
    strcpy(text + len + n, "\n");
    expect_file_error("long_line", text, 2, "longer than", NULL);

    /* A string that fits the line but not the field. */
    strcpy(text, "[run]\ndir = ");
    len = strlen(text);
    memset(text + len, 'b', 1100);
    strcpy(text + len + 1100, "\n");
    expect_file_error("long_string", text, 2, "run.dir", "1100 bytes", "1023", NULL);

    /* A full-length path (1023 bytes) is accepted. */
    strcpy(text, "[run]\ndir = ");
    len = strlen(text);
    memset(text + len, 'c', 1023);
    strcpy(text + len + 1023, "\n");
    char path[1024];
    write_ini("max_string", text, path, sizeof path);
    free(text);
    bf_config c;
    bf_config_defaults(&c);
    bf_err err = {{0}};
    if (bf_config_load(&c, path, &err)) fail_msg("%s", err.msg);
    assert_int_equal(strlen(c.run_dir), 1023);

    /* A missing file is named. */
    assert_int_equal(bf_config_load(&c, "/nonexistent/dir/missing.ini", &err), -1);
    assert_contains(err.msg, "/nonexistent/dir/missing.ini");

    /* An error after good lines leaves the whole configuration unchanged. */
    expect_file_error("partial", "[train]\nsteps = 77\n[model]\nd_model = x\n", 4, "model.d_model", NULL);
}

/* ---- --set -------------------------------------------------------------------------------------- */

static void test_set(void **state) {
    (void)state;
    bf_config c;
    bf_config_defaults(&c);
    set_ok(&c, "train.steps=40");
    set_ok(&c, " train.lr = 0.5 ");
    set_ok(&c, "data.train=a=b.h5"); /* only the first '=' splits */
    set_ok(&c, "explore.shape=exponential");
    set_ok(&c, "data.valid=");
    assert_int_equal(c.steps, 40);
    assert_true(c.lr == 0.5f);
    assert_string_equal(c.data_train, "a=b.h5");
    assert_int_equal(c.explore_shape, BF_EXPLORE_EXPONENTIAL);
    assert_string_equal(c.data_valid, "");

    expect_set_error("train.steps", "expected section.key=value", NULL);
    expect_set_error("train.stepz=4", "unknown key 'train.stepz'", "known keys in [train]: batch_size", NULL);
    expect_set_error("steps=4", "unknown key 'steps'", NULL);
    expect_set_error("foo.bar=1", "unknown key 'foo.bar'", "unknown section [foo]", NULL);
    expect_set_error("train.steps=abc", "train.steps: expected an integer, got 'abc'", NULL);
    expect_set_error("model.d_model=4", "model.d_model: 4 is out of range; allowed: [8, 4096]", NULL);
    expect_set_error("explore.shape=Linear", "expected one of linear, cosine, exponential", NULL);
}

/* ---- validation --------------------------------------------------------------------------------- */

static void expect_invalid(const char *const *sets, const char *needle) {
    bf_config c;
    bf_config_defaults(&c);
    set_ok(&c, "data.train=t.h5");
    for (; *sets; sets++) set_ok(&c, *sets);
    bf_err err = {{0}};
    assert_int_equal(bf_config_validate(&c, &err), -1);
    assert_contains(err.msg, needle);
}

static void test_validate(void **state) {
    (void)state;
    expect_invalid((const char *const[]){"model.d_model=66", NULL}, "model.d_model");
    expect_invalid((const char *const[]){"model.fixed_budget=5", NULL}, "model.fixed_budget");
    expect_invalid((const char *const[]){"model.full_heads=1", "model.fixed_budget=2", NULL}, "model.full_heads");
    expect_invalid((const char *const[]){"train.steps=10", "train.stop_at=11", "train.warmup=0", NULL},
                   "train.stop_at");
    expect_invalid((const char *const[]){"train.steps=10", "train.warmup=10", NULL}, "train.warmup");
    expect_invalid((const char *const[]){"data.train=", NULL}, "data.train");
    expect_invalid((const char *const[]){"train.supervise_center=1", NULL}, "train.supervise_center");
    /* model.layer_budgets: n_layers (default 2) budgets in 1..n_heads (default 4), alone. */
    expect_invalid((const char *const[]){"model.layer_budgets=3", NULL}, "expected model.n_layers = 2 integers");
    expect_invalid((const char *const[]){"model.layer_budgets=3,1,1", NULL}, "model.layer_budgets = '3,1,1'");
    expect_invalid((const char *const[]){"model.layer_budgets=3,5", NULL}, "in 1..model.n_heads = 4");
    expect_invalid((const char *const[]){"model.layer_budgets=3,0", NULL}, "model.layer_budgets");
    expect_invalid((const char *const[]){"model.layer_budgets=3;1", NULL}, "separated by commas");
    expect_invalid((const char *const[]){"model.layer_budgets=3,x", NULL}, "model.layer_budgets");
    expect_invalid((const char *const[]){"model.layer_budgets=3,1", "model.fixed_budget=2", NULL},
                   "model.layer_budgets = 3,1 and model.fixed_budget = 2 exclude each other");
    expect_invalid((const char *const[]){"model.layer_budgets=3,1", "model.full_heads=1", NULL}, "model.full_heads");

    /* Edges that are allowed. */
    bf_config c;
    bf_config_defaults(&c);
    set_ok(&c, "data.train=t.h5");
    set_ok(&c, "model.fixed_budget=4");
    set_ok(&c, "train.steps=10");
    set_ok(&c, "train.stop_at=10");
    set_ok(&c, "train.warmup=9");
    set_ok(&c, "explore.eps_start=0.1");
    set_ok(&c, "explore.eps_end=0.9"); /* a rising schedule is allowed */
    /* The learned-budget keys of a shipped configuration do not stop its fixed-budget and full baselines. */
    set_ok(&c, "model.budget_hidden=32");
    set_ok(&c, "train.budget_target=0.5");
    set_ok(&c, "train.supervise_rank=1");
    set_ok(&c, "train.supervise_center=1");
    bf_err err = {{0}};
    if (bf_config_validate(&c, &err)) fail_msg("%s", err.msg);
    set_ok(&c, "model.fixed_budget=0");
    set_ok(&c, "model.full_heads=1");
    if (bf_config_validate(&c, &err)) fail_msg("%s", err.msg);
    /* A budget per layer, spaces allowed, with the learned-budget keys still set (they do not apply). */
    set_ok(&c, "model.full_heads=0");
    set_ok(&c, "model.layer_budgets= 4 , 1 ");
    if (bf_config_validate(&c, &err)) fail_msg("%s", err.msg);
    int k[2] = {0, 0};
    assert_int_equal(bf_config_layer_budgets(&c, k, &err), 1);
    assert_int_equal(k[0], 4);
    assert_int_equal(k[1], 1);
    set_ok(&c, "model.layer_budgets=");
    assert_int_equal(bf_config_layer_budgets(&c, k, &err), 0);
}

/* ---- writing ------------------------------------------------------------------------------------ */

static void test_round_trip(void **state) {
    (void)state;
    static const char *const sets[] = {
        "data.train=/data/with spaces/train.h5", "data.valid=v.h5", "data.test=", "model.d_model=96",
        "model.n_heads=6", "model.n_layers=3", "model.d_ff=65536", "model.full_heads=yes", "model.fixed_budget=0",
        "train.batch_size=999999", "train.micro_batch=7", "train.steps=1000000000", "train.stop_at=12",
        "train.warmup=0", "train.lr=0.123456789", "train.lr_min=0", "train.weight_decay=0.1",
        "train.beta1=0.99999994", "train.beta2=0", "train.adam_eps=1e-45", "train.grad_clip=1000000",
        "train.budget_cost=3.14159265", "train.seed=18446744073709551615", "train.log_every=9223372036854775807",
        "train.eval_every=3", "explore.eps_start=0.3", "explore.eps_end=0.7", "explore.steps=0",
        "explore.shape=exponential", "explore.tau=1.17549435e-38", "run.dir=runs/x;y", "checkpoint.every=11",
        "checkpoint.keep=1000", "heads.every=2",
    };
    bf_config a;
    bf_config_defaults(&a);
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) set_ok(&a, sets[i]);

    char path[1024];
    snprintf(path, sizeof path, "%s/test_config_roundtrip.ini", work_dir());
    bf_err err = {{0}};
    if (bf_config_write(&a, path, &err)) fail_msg("%s", err.msg);
    bf_config b;
    bf_config_defaults(&b);
    if (bf_config_load(&b, path, &err)) fail_msg("%s", err.msg);
    assert_configs_equal(&a, &b);

    /* Defaults round-trip too, and the written text loads from memory the same way. */
    bf_config d, e;
    bf_config_defaults(&d);
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    assert_non_null(mem);
    assert_int_equal(bf_config_write_file(&d, mem, &err), 0);
    fclose(mem);
    memset(&e, 0xff, sizeof e);
    bf_config_defaults(&e);
    set_ok(&e, "train.steps=5");
    if (bf_config_load_string(&e, text, "mem", &err)) fail_msg("%s", err.msg);
    assert_configs_equal(&d, &e);
    assert_non_null(strstr(text, "lr = 0.001\n")); /* shortest exact form, not 0.00100000005 */
    free(text);
}

static void test_write_errors(void **state) {
    (void)state;
    bf_config c;
    bf_config_defaults(&c);
    char path[1024];
    snprintf(path, sizeof path, "%s/test_config_unwritable.ini", work_dir());
    static const char *const bad[] = {"data.train=a ;b", "data.train=;b", "run.dir=x\ny"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bf_config_defaults(&c);
        set_ok(&c, bad[i]);
        bf_err err = {{0}};
        assert_int_equal(bf_config_write(&c, path, &err), -1);
        assert_contains(err.msg, i < 2 ? "data.train" : "run.dir");
        FILE *f = fopen(path, "r");
        assert_null(f); /* nothing half-written left behind */
    }
    bf_err err = {{0}};
    assert_int_equal(bf_config_write(&c, "/nonexistent/dir/x.ini", &err), -1);
    assert_contains(err.msg, "/nonexistent/dir/x.ini");
}

/* ---- docs --------------------------------------------------------------------------------------- */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&buf, &size);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, got, mem);
    fclose(mem);
    fclose(f);
    return buf;
}

static void test_doc_matches_table(void **state) {
    (void)state;
    const char *src = getenv("BF_SOURCE_DIR");
    if (!src) skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/CONFIG.md", src);
    char *doc = read_all(path);
    if (!doc) fail_msg("cannot read %s", path);
    char *help = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&help, &size);
    fputs("<!-- BEGIN bf_config_print_help -->\n", mem);
    bf_config_print_help(mem);
    fputs("<!-- END bf_config_print_help -->\n", mem);
    fclose(mem);
    if (!strstr(doc, help))
        fail_msg("docs/CONFIG.md is out of date: replace the text between the BEGIN and END markers by the "
                 "output of bf_config_print_help");
    free(help);
    free(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_shape_names),
        cmocka_unit_test(test_load_file),     cmocka_unit_test(test_load_string),
        cmocka_unit_test(test_unknown_keys),  cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_range_errors),  cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_set),           cmocka_unit_test(test_validate),
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_doc_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
