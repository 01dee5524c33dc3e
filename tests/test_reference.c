/* test_reference: the C model against the PyTorch reference (tests/reference/bf_reference.py).
 *
 * The group setup runs tests/reference/make_fixture.py, which writes small random models, one batch with its
 * exploration draws and the reference's float32 outputs and gradients. Each test loads one fixture into a
 * bf_model through the tensor table (stored names of docs/MODEL.md), runs forward and backward and compares:
 *   logits, khat, ce_sum, loss   |a - b| <= 1e-5 + 1e-4 |b| per element
 *   budget, head_mask            exactly (the fixture keeps every discrete choice away from ties)
 *   every gradient tensor        max |a - b| <= 1e-4 + 1e-3 max |b| over the tensor
 * The largest difference of each quantity is printed; any mismatch fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "h5io.h" /* src/files: internal to the files layer */
#include "budgetformer/model.h"

#define VAL_ATOL 1e-5
#define VAL_RTOL 1e-4
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3

static char g_fixture_dir[1024];

static int group_setup(void **state) {
    (void)state;
    const char *py = getenv("BF_PYTHON"), *src = getenv("BF_SOURCE_DIR"), *work = getenv("BF_WORK");
    if (!py || !src || !work) {
        fprintf(stderr, "test_reference: BF_PYTHON, BF_SOURCE_DIR and BF_WORK must be set (run through ctest)\n");
        return -1;
    }
    snprintf(g_fixture_dir, sizeof g_fixture_dir, "%s/ref", work);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/make_fixture.py' '%s'", py, src, g_fixture_dir);
    fprintf(stderr, "test_reference: %s\n", cmd);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "test_reference: the fixture generator failed (status %d)\n", rc);
        return -1;
    }
    return 0;
}

static double read_attr_double(hid_t f, const char *obj, const char *name) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) fail_msg("missing attribute %s of %s", name, obj);
    double v = 0.0;
    herr_t rc = H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    if (rc < 0) fail_msg("cannot read attribute %s of %s", name, obj);
    return v;
}

static int read_attr_int(hid_t f, const char *obj, const char *name) {
    bf_err err;
    long long v = 0;
    if (bf_h5_read_attr_int(f, obj, name, &v, &err) != 0) fail_msg("%s", err.msg);
    return (int)v;
}

static void read_into(hid_t f, const char *path, hid_t type, int rank, unsigned long long d0,
                      unsigned long long d1, void *buf) {
    bf_err err;
    unsigned long long dims[2] = {d0, d1};
    if (bf_h5_read_into(f, path, type, rank, dims, buf, &err) != 0) fail_msg("%s", err.msg);
}

/* Largest |a-b| and whether every element passes |a-b| <= atol + rtol |b|. */
static int compare_values(const char *what, const float *a, const float *b, size_t n, double atol, double rtol) {
    double worst = 0.0;
    size_t bad = 0, where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) bad++;
        if (!(d <= worst)) {
            worst = d;
            where = i;
        }
    }
    printf("  %-10s max |diff| %.3g (at %zu: C %.7g, reference %.7g)%s\n", what, worst, where, (double)a[where],
           (double)b[where], bad ? "  MISMATCH" : "");
    return bad == 0;
}

static int check_fixture(const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.h5", g_fixture_dir, name);
    printf("fixture %s\n", path);
    bf_err err;
    hid_t f = bf_h5_open_read(path, &err);
    if (f < 0) fail_msg("%s", err.msg);

    bf_model_config cfg = {
        .vocab_size = read_attr_int(f, "/model", "vocab_size"),
        .max_len = read_attr_int(f, "/model", "max_len"),
        .d_model = read_attr_int(f, "/model", "d_model"),
        .n_heads = read_attr_int(f, "/model", "n_heads"),
        .n_layers = read_attr_int(f, "/model", "n_layers"),
        .d_ff = read_attr_int(f, "/model", "d_ff"),
        .n_classes = read_attr_int(f, "/model", "n_classes"),
        .full_heads = read_attr_int(f, "/model", "full_heads"),
        .fixed_budget = read_attr_int(f, "/model", "fixed_budget"),
        /* an added option (docs/MODEL.md): absent = 0 */
        .gate_norm = H5Aexists_by_name(f, "/model", "gate_norm", H5P_DEFAULT) > 0 ? read_attr_int(f, "/model", "gate_norm")
                                                                                 : 0,
        .budget_hidden = H5Aexists_by_name(f, "/model", "budget_hidden", H5P_DEFAULT) > 0
                             ? read_attr_int(f, "/model", "budget_hidden")
                             : 0,
    };
    /* an added option: fixed_budget = -1 is a fixed budget per layer, read from the array layer_budgets */
    if (cfg.fixed_budget == BF_FIXED_PER_LAYER &&
        bf_h5_read_attr_ints(f, "/model", "layer_budgets", cfg.layer_budgets, cfg.n_layers, &err))
        fail_msg("%s", err.msg);
    char msg[256];
    if (bf_model_config_check(&cfg, msg, sizeof msg) != 0) fail_msg("fixture config rejected: %s", msg);
    unsigned long long bdim[1];
    int32_t *lengths = NULL;
    if (bf_h5_read_alloc(f, "/input/lengths", H5T_NATIVE_INT32, 1, bdim, (void **)&lengths, &err) != 0)
        fail_msg("%s", err.msg);
    const int B = (int)bdim[0];
    const size_t T = (size_t)cfg.max_len, L = (size_t)cfg.n_layers, H = (size_t)cfg.n_heads;
    const size_t C = (size_t)cfg.n_classes;

    bf_model m;
    bf_model_init(&m, &cfg, B);
    /* Every tensor of docs/MODEL.md is in the table (6 global + 16 per layer, 3 more per layer with the added
     * budget hidden layer) and is read by its stored name. */
    assert_int_equal(m.n_tensors, 6 + (16 + (cfg.budget_hidden ? 3 : 0)) * cfg.n_layers);
    for (int i = 0; i < m.n_tensors; i++) {
        const bf_tensor_info *t = &m.tensors[i];
        char ds[128];
        snprintf(ds, sizeof ds, "/model/%s", t->name);
        read_into(f, ds, H5T_NATIVE_FLOAT, t->ndim, (unsigned long long)t->shape[0],
                  t->ndim > 1 ? (unsigned long long)t->shape[1] : 0, m.params + t->offset);
    }

    int32_t *tokens = bf_xmalloc((size_t)B * T * sizeof *tokens);
    int32_t *labels = bf_xmalloc((size_t)B * sizeof *labels);
    float *gumbel = bf_xmalloc((size_t)B * L * H * sizeof *gumbel);
    int32_t *k_random = bf_xmalloc((size_t)B * L * sizeof *k_random);
    read_into(f, "/input/tokens", H5T_NATIVE_INT32, 2, (unsigned long long)B, T, tokens);
    read_into(f, "/input/labels", H5T_NATIVE_INT32, 1, (unsigned long long)B, 0, labels);
    unsigned long long gd[3] = {(unsigned long long)B, L, H};
    if (bf_h5_read_into(f, "/explore/gumbel", H5T_NATIVE_FLOAT, 3, gd, gumbel, &err) != 0) fail_msg("%s", err.msg);
    read_into(f, "/explore/k_random", H5T_NATIVE_INT32, 2, (unsigned long long)B, L, k_random);
    double eps = read_attr_double(f, "/explore", "eps"), tau = read_attr_double(f, "/explore", "tau");
    double ce_scale = read_attr_double(f, "/explore", "ce_scale");
    double cost_scale = read_attr_double(f, "/explore", "cost_scale");
    /* The training options of the case (docs/MODEL.md "Training options"); absent = off. */
    int k_force = H5Aexists_by_name(f, "/explore", "k_force", H5P_DEFAULT) > 0 ? read_attr_int(f, "/explore", "k_force")
                                                                               : 0;
    double sup_scale =
        H5Aexists_by_name(f, "/explore", "sup_scale", H5P_DEFAULT) > 0 ? read_attr_double(f, "/explore", "sup_scale") : 0;
    int sup_center = H5Aexists_by_name(f, "/explore", "sup_center", H5P_DEFAULT) > 0
                         ? read_attr_int(f, "/explore", "sup_center")
                         : 0;
    double spread_sd = H5Aexists_by_name(f, "/explore", "spread_sd", H5P_DEFAULT) > 0
                           ? read_attr_double(f, "/explore", "spread_sd")
                           : 0;
    double spread_scale = H5Aexists_by_name(f, "/explore", "spread_scale", H5P_DEFAULT) > 0
                              ? read_attr_double(f, "/explore", "spread_scale")
                              : 0;
    float *soft = NULL, *k_target = NULL;
    if (H5Lexists(f, "/input/soft_targets", H5P_DEFAULT) > 0) {
        soft = bf_xmalloc((size_t)B * C * sizeof(float));
        read_into(f, "/input/soft_targets", H5T_NATIVE_FLOAT, 2, (unsigned long long)B, C, soft);
    }
    if (H5Lexists(f, "/explore/k_target", H5P_DEFAULT) > 0) {
        k_target = bf_xmalloc((size_t)B * sizeof(float));
        read_into(f, "/explore/k_target", H5T_NATIVE_FLOAT, 1, (unsigned long long)B, 0, k_target);
    }

    float *want_logits = bf_xmalloc((size_t)B * C * sizeof(float));
    float *want_khat = bf_xmalloc((size_t)B * L * sizeof(float));
    int32_t *want_budget = bf_xmalloc((size_t)B * L * sizeof(int32_t));
    uint32_t *want_mask = bf_xmalloc((size_t)B * L * sizeof(uint32_t));
    float *want_ce = bf_xmalloc((size_t)B * sizeof(float));
    double want_ce_sum = 0.0, want_loss = 0.0;
    read_into(f, "/expect/logits", H5T_NATIVE_FLOAT, 2, (unsigned long long)B, C, want_logits);
    read_into(f, "/expect/khat", H5T_NATIVE_FLOAT, 2, (unsigned long long)B, L, want_khat);
    read_into(f, "/expect/budget", H5T_NATIVE_INT32, 2, (unsigned long long)B, L, want_budget);
    read_into(f, "/expect/head_mask", H5T_NATIVE_UINT32, 2, (unsigned long long)B, L, want_mask);
    read_into(f, "/expect/ce", H5T_NATIVE_FLOAT, 1, (unsigned long long)B, 0, want_ce);
    read_into(f, "/expect/ce_sum", H5T_NATIVE_DOUBLE, 0, 0, 0, &want_ce_sum);
    read_into(f, "/expect/loss", H5T_NATIVE_DOUBLE, 0, 0, 0, &want_loss);

    /* With eps = 0 the exploration arrays are ignored and may be NULL (model.h): pass NULL. */
    bf_batch batch = {.n = B, .tokens = tokens, .lengths = lengths, .labels = labels, .soft_targets = soft};
    bf_explore ex = {.eps = (float)eps, .tau = (float)tau, .gumbel = eps != 0.0 ? gumbel : NULL,
                     .k_random = eps != 0.0 ? k_random : NULL, .k_force = k_force, .k_target = k_target,
                     .sup_scale = (float)sup_scale, .sup_center = sup_center, .spread_sd = (float)spread_sd,
                     .spread_scale = (float)spread_scale};
    printf("  config V=%d T=%d D=%d H=%d L=%d F=%d C=%d full_heads=%d fixed_budget=%d gate_norm=%d B=%d eps=%g "
           "tau=%g k_force=%d soft_targets=%s sup_scale=%g\n",
           cfg.vocab_size, cfg.max_len, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.n_classes,
           cfg.full_heads, cfg.fixed_budget, cfg.gate_norm, B, eps, tau, k_force, soft ? "yes" : "no", sup_scale);

    int ok = 1;
    double ce_sum = bf_model_forward(&m, &batch, &ex);
    ok &= compare_values("logits", m.logits, want_logits, (size_t)B * C, VAL_ATOL, VAL_RTOL);
    ok &= compare_values("khat", m.khat, want_khat, (size_t)B * L, VAL_ATOL, VAL_RTOL);
    ok &= compare_values("ce", m.ce, want_ce, (size_t)B, VAL_ATOL, VAL_RTOL);
    int budget_bad = 0, mask_bad = 0;
    for (size_t i = 0; i < (size_t)B * L; i++) {
        if (m.budget[i] != want_budget[i]) {
            printf("  budget of input %zu layer %zu: C %d, reference %d  MISMATCH\n", i / L, i % L, m.budget[i],
                   want_budget[i]);
            budget_bad++;
        }
        if (m.head_mask[i] != want_mask[i]) {
            printf("  head_mask of input %zu layer %zu: C 0x%x, reference 0x%x  MISMATCH\n", i / L, i % L,
                   m.head_mask[i], want_mask[i]);
            mask_bad++;
        }
    }
    printf("  budget     %d of %zu differ\n  head_mask  %d of %zu differ\n", budget_bad, (size_t)B * L, mask_bad,
           (size_t)B * L);
    ok &= budget_bad == 0 && mask_bad == 0;
    /* The loss value as the reference computes it (with a forced budget the cost's value is still counted,
     * though k^ gets no gradient from it on either side). */
    double first = ce_sum;
    if (soft) {
        first = 0.0;
        for (size_t i = 0; i < (size_t)B * C; i++) first -= (double)soft[i] * log((double)m.probs[i]);
    }
    double loss = ce_scale * first + cost_scale * bf_model_budget_sum(&m, B);
    if (k_target && !k_force && !cfg.full_heads && !cfg.fixed_budget)
        for (size_t i = 0; i < (size_t)B * L; i++) {
            double d = (double)m.khat[i] - (double)k_target[i / L];
            if (sup_center) { /* both sides less their mean over the inputs, in this layer */
                double mk = 0.0, mt = 0.0;
                for (size_t b = 0; b < (size_t)B; b++) {
                    mk += m.khat[b * L + i % L];
                    mt += k_target[b];
                }
                d -= (mk - mt) / (double)B;
            }
            loss += sup_scale * d * d / (double)((H - 1) * (H - 1));
        }
    if (spread_sd > 0.0 && !k_force && !cfg.full_heads && !cfg.fixed_budget)
        for (size_t l = 0; l < (size_t)L; l++) { /* train.budget_spread: the variance over the inputs, per layer */
            double mk = 0.0, v = 0.0;
            for (size_t b = 0; b < (size_t)B; b++) mk += m.khat[b * L + l] / (double)B;
            for (size_t b = 0; b < (size_t)B; b++) v += pow(m.khat[b * L + l] - mk, 2) / (double)B;
            double gap = fmax(0.0, 1.0 - v / (spread_sd * spread_sd));
            loss += spread_scale * (double)B * gap * gap;
        }
    double d_ce = fabs(ce_sum - want_ce_sum), d_loss = fabs(loss - want_loss);
    int scal_ok = d_ce <= VAL_ATOL + VAL_RTOL * fabs(want_ce_sum) && d_loss <= VAL_ATOL + VAL_RTOL * fabs(want_loss);
    printf("  ce_sum     C %.8g reference %.8g |diff| %.3g\n  loss       C %.8g reference %.8g |diff| %.3g%s\n",
           ce_sum, want_ce_sum, d_ce, loss, want_loss, d_loss, scal_ok ? "" : "  MISMATCH");
    ok &= scal_ok;

    bf_model_zero_grad(&m);
    bf_model_backward(&m, &batch, &ex, (float)ce_scale, (float)cost_scale);
    double worst_rel = 0.0;
    for (int i = 0; i < m.n_tensors; i++) {
        const bf_tensor_info *t = &m.tensors[i];
        char ds[160];
        snprintf(ds, sizeof ds, "/expect/grad/%s", t->name);
        float *want = bf_xmalloc(t->numel * sizeof(float));
        read_into(f, ds, H5T_NATIVE_FLOAT, t->ndim, (unsigned long long)t->shape[0],
                  t->ndim > 1 ? (unsigned long long)t->shape[1] : 0, want);
        const float *got = m.grads + t->offset;
        double maxb = 0.0, maxd = 0.0;
        size_t where = 0;
        for (size_t j = 0; j < t->numel; j++) {
            double d = fabs((double)got[j] - (double)want[j]);
            if (fabs((double)want[j]) > maxb) maxb = fabs((double)want[j]);
            if (!(d <= maxd)) {
                maxd = d;
                where = j;
            }
        }
        int good = maxd <= GRAD_ATOL + GRAD_RTOL * maxb;
        if (maxb > 0.0 && maxd / maxb > worst_rel) worst_rel = maxd / maxb;
        printf("  grad %-26s max|ref| %.3e max|diff| %.3e (at %zu: C %.6g, ref %.6g)%s\n", t->name, maxb, maxd,
               where, (double)got[where], (double)want[where], good ? "" : "  MISMATCH");
        ok &= good;
        free(want);
    }
    printf("  worst gradient |diff| / max|ref| over tensors: %.3g\n", worst_rel);

    bf_model_free(&m);
    free(soft);
    free(k_target);
    free(want_logits);
    free(want_khat);
    free(want_budget);
    free(want_mask);
    free(want_ce);
    free(tokens);
    free(labels);
    free(lengths);
    free(gumbel);
    free(k_random);
    bf_h5_close(f, path, NULL);
    printf("fixture %s: %s\n", name, ok ? "agrees with the reference" : "MISMATCH");
    return ok;
}

static void test_learned_explore(void **state) {
    (void)state;
    assert_true(check_fixture("learned_explore"));
}

static void test_learned_exploit(void **state) {
    (void)state;
    assert_true(check_fixture("learned_exploit"));
}

static void test_full_heads(void **state) {
    (void)state;
    assert_true(check_fixture("full_heads"));
}

static void test_fixed_budget(void **state) {
    (void)state;
    assert_true(check_fixture("fixed_budget"));
}

static void test_gate_norm_explore(void **state) {
    (void)state;
    assert_true(check_fixture("gate_norm_explore"));
}

static void test_gate_norm_fixed(void **state) {
    (void)state;
    assert_true(check_fixture("gate_norm_fixed"));
}

static void test_forced_k_distill(void **state) {
    (void)state;
    assert_true(check_fixture("forced_k_distill"));
}

static void test_supervised_distill(void **state) {
    (void)state;
    assert_true(check_fixture("supervised_distill"));
}

/* The added budget predictor's hidden layer (budget_hidden = 5), with and without exploration. */
static void test_budget_hidden_explore(void **state) {
    (void)state;
    assert_true(check_fixture("budget_hidden_explore"));
}

static void test_budget_hidden_exploit(void **state) {
    (void)state;
    assert_true(check_fixture("budget_hidden_exploit"));
}

/* Centred budget supervision (train.supervise_center), with exploration and the hidden-layer predictor. */
static void test_supervised_center(void **state) {
    (void)state;
    assert_true(check_fixture("supervised_center"));
}

/* A fixed budget per layer (model.layer_budgets = 3,1) with exploration noise and renormalised gates. */
static void test_layer_budgets(void **state) {
    (void)state;
    assert_true(check_fixture("layer_budgets"));
}

/* The budget spread (train.budget_spread) beside centred supervision. */
static void test_budget_spread(void **state) {
    (void)state;
    assert_true(check_fixture("budget_spread"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learned_explore),
        cmocka_unit_test(test_learned_exploit),
        cmocka_unit_test(test_full_heads),
        cmocka_unit_test(test_fixed_budget),
        cmocka_unit_test(test_gate_norm_explore),
        cmocka_unit_test(test_gate_norm_fixed),
        cmocka_unit_test(test_forced_k_distill),
        cmocka_unit_test(test_supervised_distill),
        cmocka_unit_test(test_budget_hidden_explore),
        cmocka_unit_test(test_budget_hidden_exploit),
        cmocka_unit_test(test_supervised_center),
        cmocka_unit_test(test_budget_spread),
        cmocka_unit_test(test_layer_budgets),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
