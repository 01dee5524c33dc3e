/* cmd_heads: `budgetformer heads FILE [--json] [--data DATASET.h5] [--n-heads H]`.
 *
 * Summarises head allocation from either
 *   - a run's log.h5 (/metrics and/or /heads, FILES.md): mean budget per layer at the first, middle and last
 *     logged step and over all steps (with eps), head usage of the first and last /heads record, mean budget
 *     per true class and the heads never or always selected in the last record; or
 *   - an evaluation records file (/records): mean budget per layer overall, by true class, by input length
 *     bucket and for correct vs wrong predictions, head usage, and the heads never or always selected.
 * --data names the prepared dataset whose /label_names give the class names. A records file does not store
 * H; it is taken from --n-heads, else an integer attribute n_heads of /records or /, else inferred as
 * max(largest budget, highest selected head + 1).
 *
 * --json prints one object instead of the tables; docs/LOGS.md lists its keys:
 *   log:     file, kind = "log", n_layers, n_heads, n_classes, class_names,
 *            metrics {n_steps, first, middle, last: {row, step, eps, mean_budget[L]}, mean: {eps, mean_budget[L]}},
 *            heads {n_records, first, last: {step, count, usage[L][H]},
 *                   class_budget: [{class, name, count, mean_budget[L]}], never[L][], always[L][]},
 *            lambda {first, middle, last, mean} (null without /metrics/budget_lambda),
 *            diagnostics {first, last: {step, count, khat, logit, mass: [L] {n, mean, q1, median, q3}}}
 *            (null without the /heads diagnostics histograms)
 *   records: file, kind = "records", n, n_layers, n_heads, n_heads_from, n_classes, class_names, accuracy,
 *            mean_budget[L], by_class [{class, name, n, mean_budget}], by_length [{bucket, min_tokens,
 *            max_tokens, n, mean_budget}], by_correct {correct, wrong: {n, mean_budget}}, usage[L][H],
 *            never[L][], always[L][]
 * Values that do not exist (a mean over no inputs, an empty log) are null.
 * Exit status: 0 success, 1 unreadable or malformed file, 2 usage error. */
#include <hdf5.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "budgetformer/cli.h"
#include "budgetformer/h5io.h"
#include "budgetformer/util.h"

#define MAX_HEADS 32
#define MAX_LABEL_WIDTH 24
#define N_BUCKETS 6

/* Input-length buckets in tokens; an upper end of 0 means unbounded. */
static const int bucket_min[N_BUCKETS] = {1, 9, 17, 33, 65, 129};
static const int bucket_max[N_BUCKETS] = {8, 16, 32, 64, 128, 0};
static const char *const bucket_name[N_BUCKETS] = {"1-8", "9-16", "17-32", "33-64", "65-128", "129+"};

typedef struct {
    const char *file, *data;
    int json;
    int n_heads; /* 0 = not given */
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer heads FILE [--json] [--data DATASET.h5] [--n-heads H]\n"
               "  FILE         a run's log.h5 (/metrics, /heads) or an eval --records file (/records)\n"
               "  --json       print one JSON object (keys in docs/LOGS.md) instead of tables\n"
               "  --data F     prepared dataset whose /label_names name the classes (default: class indices)\n"
               "  --n-heads H  heads per layer of a records file (default: its n_heads attribute, else inferred)\n");
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "budgetformer heads: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    usage(stderr);
    return 2;
}

/* ---- output helpers ------------------------------------------------------------------------------ */

static void json_str(const char *s) { bf_json_str(stdout, s); }

static void json_num(double v) { printf("%.9g", v); }

static void json_vec(const double *v, size_t n) {
    if (!v) {
        printf("null");
        return;
    }
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (i) printf(", ");
        json_num(v[i]);
    }
    putchar(']');
}

/* usage[L][H] as nested arrays */
static void json_matrix_f32(const float *m, size_t L, size_t H) {
    putchar('[');
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        for (size_t h = 0; h < H; h++) {
            if (h) printf(", ");
            json_num((double)m[l * H + h]);
        }
        putchar(']');
    }
    putchar(']');
}

/* For each layer, the list of heads whose flag is set: flags [L][H]. */
static void json_head_lists(const unsigned char *flags, size_t L, size_t H) {
    putchar('[');
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        int first = 1;
        for (size_t h = 0; h < H; h++)
            if (flags[l * H + h]) {
                printf("%s%zu", first ? "" : ", ", h);
                first = 0;
            }
        putchar(']');
    }
    putchar(']');
}

static void json_class_names(char *const *names, size_t C) {
    if (!names) {
        printf("null");
        return;
    }
    putchar('[');
    for (size_t c = 0; c < C; c++) {
        if (c) printf(", ");
        json_str(names[c]);
    }
    putchar(']');
}

static const char *class_label(char *const *names, size_t c, char *buf, size_t len) {
    if (names) return names[c];
    snprintf(buf, len, "%zu", c);
    return buf;
}

/* Width of the first column of a budget table: the longest label, within [min, MAX_LABEL_WIDTH]. */
static int label_width(char *const *names, size_t C, int min) {
    int w = min;
    for (size_t c = 0; names && c < C; c++) {
        int n = (int)strlen(names[c]);
        if (n > w) w = n;
    }
    return w > MAX_LABEL_WIDTH ? MAX_LABEL_WIDTH : w;
}

/* Right-aligned "layer l" column titles, 8 wide like the values below them, and the end of the line. */
static void print_layer_columns(size_t L) {
    char t[32];
    for (size_t l = 0; l < L; l++) {
        snprintf(t, sizeof t, "layer %zu", l);
        printf("  %8s", t);
    }
    printf("\n");
}

static void print_budget_header(const char *first, int w, size_t L) {
    printf("%-*s  %7s", w, first, "inputs");
    print_layer_columns(L);
}

/* One table row: label, inputs, the mean budget of each layer ("-" when v is NULL). */
static void print_budget_row(const char *label, int w, long long n, const double *v, size_t L) {
    printf("%-*.*s  %7lld", w, w, label, n);
    for (size_t l = 0; l < L; l++) {
        if (v) printf("  %8.3f", v[l]);
        else printf("  %8s", "-");
    }
    printf("\n");
}

static void print_head_header(const char *first, size_t H) {
    char t[32];
    printf("%s", first);
    for (size_t h = 0; h < H; h++) {
        snprintf(t, sizeof t, "h%zu", h);
        printf("  %7s", t);
    }
    printf("\n");
}

/* The heads whose flag is set, as "0,3", or "-" for none; width pads to a column (0: no padding). */
static void print_head_list(const unsigned char *flags, size_t H, int width) {
    char buf[4 * MAX_HEADS + 2] = "";
    size_t k = 0;
    for (size_t h = 0; h < H; h++)
        if (flags[h]) k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%zu", k ? "," : "", h);
    printf("%-*s", width, k ? buf : "-");
}

static void print_never_always(const unsigned char *never, const unsigned char *always, size_t L, size_t H) {
    int w = H < 3 ? 5 : 3 * (int)H - 1; /* room for every head of a layer, "0,1,...,H-1" up to H = 10 */
    printf("layer  %-*s  always\n", w, "never");
    for (size_t l = 0; l < L; l++) {
        printf("%5zu  ", l);
        print_head_list(never + l * H, H, w);
        printf("  ");
        print_head_list(always + l * H, H, 0);
        printf("\n");
    }
}

/* ---- reading helpers ----------------------------------------------------------------------------- */

static int expect_rows(const char *file, const char *ds, unsigned long long have, const char *ref,
                       unsigned long long want, bf_err *err) {
    if (have == want) return 0;
    return bf_fail(err, "%s: dataset %s has %llu rows but %s has %llu (expected one row per entry of %s)", file,
                   ds, have, ref, want, ref);
}

static int load_class_names(const char *data, size_t C, const char *file, char ***names, bf_err *err) {
    hid_t f = bf_h5_open_read(data, err);
    if (f < 0) return -1;
    size_t n = 0;
    int rc = bf_h5_read_strings(f, "/label_names", names, &n, err);
    H5Fclose(f);
    if (rc) return -1;
    if (n != C) {
        bf_h5_free_strings(*names, n);
        *names = NULL;
        return bf_fail(err, "%s: /label_names has %zu class names but %s has %zu classes (use the dataset the "
                            "run was trained or evaluated on)", data, n, file, C);
    }
    return 0;
}

/* ---- log.h5 -------------------------------------------------------------------------------------- */

typedef struct {
    int has_metrics, has_heads;
    size_t S, R, C, L, H;                     /* H and C are 0 without /heads */
    int64_t *m_step;                          /* [S] */
    float *m_eps, *m_budget;                  /* [S], [S,L] */
    int64_t *h_step, *h_count, *h_class_count; /* [R], [R], [R,C] */
    float *h_usage, *h_class_usage;           /* [R,L,H], [R,C,L,H] */
    float *m_lambda;                          /* [S] or NULL (a log without /metrics/budget_lambda) */
    int has_diag;                             /* the three diagnostics histograms below are present */
    size_t KB;                                /* k^ bins per layer */
    int64_t *h_logit, *h_khat, *h_mass;       /* [R,L,24], [R,L,KB], [R,L,20] */
} log_data;

static void log_free(log_data *lg) {
    free(lg->m_step);
    free(lg->m_eps);
    free(lg->m_budget);
    free(lg->h_step);
    free(lg->h_count);
    free(lg->h_class_count);
    free(lg->h_usage);
    free(lg->h_class_usage);
    free(lg->m_lambda);
    free(lg->h_logit);
    free(lg->h_khat);
    free(lg->h_mass);
    memset(lg, 0, sizeof *lg);
}

static int load_metrics(hid_t f, const char *file, log_data *lg, bf_err *err) {
    unsigned long long d[2];
    void *p = NULL;
    if (bf_h5_read_alloc(f, "/metrics/step", H5T_NATIVE_INT64, 1, d, &p, err)) return -1;
    lg->m_step = p;
    lg->S = (size_t)d[0];
    unsigned long long s = d[0];
    lg->m_eps = bf_xmalloc(lg->S * sizeof(float));
    if (bf_h5_read_into(f, "/metrics/eps", H5T_NATIVE_FLOAT, 1, &s, lg->m_eps, err)) return -1;
    if (bf_h5_read_alloc(f, "/metrics/mean_budget", H5T_NATIVE_FLOAT, 2, d, &p, err)) return -1;
    lg->m_budget = p;
    if (expect_rows(file, "/metrics/mean_budget", d[0], "/metrics/step", s, err)) return -1;
    if (d[1] < 1 || d[1] > 100000)
        return bf_fail(err, "%s: dataset /metrics/mean_budget has shape [%llu,%llu] (expected [S, L] with L >= 1 "
                            "layers)", file, d[0], d[1]);
    lg->L = (size_t)d[1];
    if (bf_h5_exists(f, "/metrics/budget_lambda")) {
        lg->m_lambda = bf_xmalloc((lg->S ? lg->S : 1) * sizeof(float));
        if (bf_h5_read_into(f, "/metrics/budget_lambda", H5T_NATIVE_FLOAT, 1, &s, lg->m_lambda, err)) return -1;
    }
    return 0;
}

/* Optional diagnostics histogram [R, L, bins] (bins 0 = any >= 1, returned in *bins). */
static int load_diag(hid_t f, const char *file, const char *ds, const log_data *lg, size_t *bins, int64_t **out,
                     bf_err *err) {
    unsigned long long d[3];
    void *p = NULL;
    if (bf_h5_read_alloc(f, ds, H5T_NATIVE_INT64, 3, d, &p, err)) return -1;
    *out = p;
    if (expect_rows(file, ds, d[0], "/heads/step", lg->R, err)) return -1;
    if (d[1] != lg->L || d[2] < 1 || (*bins && d[2] != *bins))
        return bf_fail(err, "%s: dataset %s has shape [%llu,%llu,%llu] (expected [R, %zu, %zu])", file, ds, d[0], d[1],
                       d[2], lg->L, *bins ? *bins : (size_t)d[2]);
    *bins = (size_t)d[2];
    for (size_t i = 0; i < lg->R * lg->L * *bins; i++)
        if ((*out)[i] < 0) return bf_fail(err, "%s: dataset %s holds a negative count", file, ds);
    return 0;
}

static int load_diagnostics(hid_t f, const char *file, log_data *lg, bf_err *err) {
    int n = bf_h5_exists(f, "/heads/logit_hist") + bf_h5_exists(f, "/heads/khat_hist") +
            bf_h5_exists(f, "/heads/mass_hist");
    if (n == 0) return 0; /* a log from before the diagnostics */
    if (n != 3)
        return bf_fail(err, "%s: /heads holds only some of logit_hist, khat_hist and mass_hist (expected all three "
                            "or none)", file);
    size_t lb = 24, mb = 20;
    lg->KB = 4 * (lg->H > 1 ? lg->H - 1 : 1);
    if (load_diag(f, file, "/heads/logit_hist", lg, &lb, &lg->h_logit, err) ||
        load_diag(f, file, "/heads/khat_hist", lg, &lg->KB, &lg->h_khat, err) ||
        load_diag(f, file, "/heads/mass_hist", lg, &mb, &lg->h_mass, err))
        return -1;
    lg->has_diag = 1;
    return 0;
}

static int load_heads(hid_t f, const char *file, log_data *lg, bf_err *err) {
    unsigned long long d[3], r;
    void *p = NULL;
    if (bf_h5_read_alloc(f, "/heads/step", H5T_NATIVE_INT64, 1, &r, &p, err)) return -1;
    lg->h_step = p;
    lg->R = (size_t)r;
    lg->h_count = bf_xmalloc(lg->R * sizeof(int64_t));
    if (bf_h5_read_into(f, "/heads/count", H5T_NATIVE_INT64, 1, &r, lg->h_count, err)) return -1;
    if (bf_h5_read_alloc(f, "/heads/class_count", H5T_NATIVE_INT64, 2, d, &p, err)) return -1;
    lg->h_class_count = p;
    if (expect_rows(file, "/heads/class_count", d[0], "/heads/step", r, err)) return -1;
    if (d[1] < 1 || d[1] > 1000000)
        return bf_fail(err, "%s: dataset /heads/class_count has shape [%llu,%llu] (expected [R, C] with C >= 1 "
                            "classes)", file, d[0], d[1]);
    lg->C = (size_t)d[1];
    if (bf_h5_read_alloc(f, "/heads/usage", H5T_NATIVE_FLOAT, 3, d, &p, err)) return -1;
    lg->h_usage = p;
    if (expect_rows(file, "/heads/usage", d[0], "/heads/step", r, err)) return -1;
    if (d[1] < 1 || d[1] > 100000 || d[2] < 1 || d[2] > MAX_HEADS)
        return bf_fail(err, "%s: dataset /heads/usage has shape [%llu,%llu,%llu] (expected [R, L, H] with L >= 1 "
                            "and 1 <= H <= %d)", file, d[0], d[1], d[2], MAX_HEADS);
    if (lg->has_metrics && d[1] != lg->L)
        return bf_fail(err, "%s: dataset /heads/usage has %llu layers but /metrics/mean_budget has %zu", file,
                       d[1], lg->L);
    lg->L = (size_t)d[1];
    lg->H = (size_t)d[2];
    unsigned long long rclh[4] = {r, lg->C, lg->L, lg->H};
    lg->h_class_usage = bf_xmalloc(lg->R * lg->C * lg->L * lg->H * sizeof(float)); /* 0 bytes is fine */
    if (bf_h5_read_into(f, "/heads/class_usage", H5T_NATIVE_FLOAT, 4, rclh, lg->h_class_usage, err)) return -1;
    return load_diagnostics(f, file, lg, err);
}

/* ---- budget diagnostics: summaries of a fixed-bin histogram ------------------------------------ */

typedef struct {
    long long n;
    double mean, q[3]; /* quartiles 1/4, 1/2, 3/4 */
} hist_summary;

/* Mean (bin centres) and quartiles (linear within a bin) of counts c[bins] over [lo, hi]. */
static hist_summary hist_summarise(const int64_t *c, size_t bins, double lo, double hi) {
    hist_summary r = {0, 0.0, {0.0, 0.0, 0.0}};
    double w = (hi - lo) / (double)bins, sum = 0.0;
    for (size_t b = 0; b < bins; b++) {
        r.n += c[b];
        sum += (double)c[b] * (lo + ((double)b + 0.5) * w);
    }
    if (r.n == 0) return r;
    r.mean = sum / (double)r.n;
    for (int k = 0; k < 3; k++) {
        double t = (double)r.n * (double)(k + 1) / 4.0, cum = 0.0;
        size_t b = 0;
        while (b + 1 < bins && cum + (double)c[b] < t) cum += (double)c[b++];
        r.q[k] = lo + ((double)b + (c[b] ? (t - cum) / (double)c[b] : 0.0)) * w;
    }
    return r;
}

/* which: 0 k^, 1 budget logit, 2 gate mass; record r, layer l. */
static hist_summary diag_summary(const log_data *lg, int which, size_t r, size_t l) {
    if (which == 0) return hist_summarise(lg->h_khat + (r * lg->L + l) * lg->KB, lg->KB, 1.0, (double)lg->H);
    if (which == 1) return hist_summarise(lg->h_logit + (r * lg->L + l) * 24, 24, -6.0, 6.0);
    return hist_summarise(lg->h_mass + (r * lg->L + l) * 20, 20, 0.0, 1.0);
}

static const char *const diag_key[3] = {"khat", "logit", "mass"};
static const char *const diag_label[3] = {"k^", "budget logit", "gate mass"};

static void json_diag_record(const log_data *lg, size_t r) {
    printf("{\"step\": %lld, \"count\": %lld", (long long)lg->h_step[r], (long long)lg->h_count[r]);
    for (int w = 0; w < 3; w++) {
        printf(", \"%s\": [", diag_key[w]);
        for (size_t l = 0; l < lg->L; l++) {
            hist_summary h = diag_summary(lg, w, r, l);
            printf("%s{\"n\": %lld, ", l ? ", " : "", h.n);
            if (h.n) {
                printf("\"mean\": ");
                json_num(h.mean);
                printf(", \"q1\": ");
                json_num(h.q[0]);
                printf(", \"median\": ");
                json_num(h.q[1]);
                printf(", \"q3\": ");
                json_num(h.q[2]);
            } else {
                printf("\"mean\": null, \"q1\": null, \"median\": null, \"q3\": null");
            }
            printf("}");
        }
        printf("]");
    }
    printf("}");
}

static void print_diag_text(const log_data *lg) {
    size_t rows[2] = {0, lg->R - 1};
    printf("\nBudget diagnostics per layer (/heads/khat_hist, logit_hist, mass_hist: mean and quartiles estimated "
           "from the fixed bins)\n");
    printf("layer  record     step  %-12s  %7s  %7s  %7s  %7s\n", "quantity", "mean", "q1", "median", "q3");
    for (size_t l = 0; l < lg->L; l++)
        for (int i = 0; i < 2; i++)
            for (int w = 0; w < 3; w++) {
                size_t r = rows[i];
                hist_summary h = diag_summary(lg, w, r, l);
                printf("%5zu  %-6s  %7lld  %-12s", l, i ? "last" : "first", (long long)lg->h_step[r], diag_label[w]);
                if (h.n) printf("  %7.3f  %7.3f  %7.3f  %7.3f\n", h.mean, h.q[0], h.q[1], h.q[2]);
                else printf("  %7s  %7s  %7s  %7s\n", "-", "-", "-", "-");
            }
}

static void json_metrics_point(const log_data *lg, size_t row, double *tmp) {
    for (size_t l = 0; l < lg->L; l++) tmp[l] = (double)lg->m_budget[row * lg->L + l];
    printf("{\"row\": %zu, \"step\": %lld, \"eps\": ", row, (long long)lg->m_step[row]);
    json_num((double)lg->m_eps[row]);
    printf(", \"mean_budget\": ");
    json_vec(tmp, lg->L);
    printf("}");
}

static void json_heads_record(const log_data *lg, size_t r) {
    printf("{\"step\": %lld, \"count\": %lld, \"usage\": ", (long long)lg->h_step[r], (long long)lg->h_count[r]);
    json_matrix_f32(lg->h_usage + r * lg->L * lg->H, lg->L, lg->H);
    printf("}");
}

/* Everything the log tables and the JSON show, computed once. */
typedef struct {
    size_t pt[3];            /* rows of the first, middle and last logged step */
    double *budget_mean;     /* [L] over all logged steps */
    double eps_mean;
    double lambda_mean;      /* over all logged steps (with /metrics/budget_lambda) */
    double *class_budget;    /* [C,L] from the last /heads record */
    unsigned char *never, *always; /* [L,H] in the last record */
} log_summary;

static void log_summarise(const log_data *lg, log_summary *s) {
    size_t L = lg->L, H = lg->H, C = lg->C;
    memset(s, 0, sizeof *s);
    s->budget_mean = bf_xcalloc(L, sizeof(double));
    if (lg->has_metrics && lg->S > 0) {
        s->pt[0] = 0;
        s->pt[1] = (lg->S - 1) / 2;
        s->pt[2] = lg->S - 1;
        for (size_t i = 0; i < lg->S; i++) {
            s->eps_mean += (double)lg->m_eps[i];
            if (lg->m_lambda) s->lambda_mean += (double)lg->m_lambda[i];
            for (size_t l = 0; l < L; l++) s->budget_mean[l] += (double)lg->m_budget[i * L + l];
        }
        s->eps_mean /= (double)lg->S;
        s->lambda_mean /= (double)lg->S;
        for (size_t l = 0; l < L; l++) s->budget_mean[l] /= (double)lg->S;
    }
    if (lg->has_heads && lg->R > 0) {
        size_t r = lg->R - 1;
        s->class_budget = bf_xcalloc(C * L, sizeof(double));
        for (size_t c = 0; c < C; c++)
            for (size_t l = 0; l < L; l++)
                for (size_t h = 0; h < H; h++)
                    s->class_budget[c * L + l] += (double)lg->h_class_usage[((r * C + c) * L + l) * H + h];
        s->never = bf_xcalloc(L * H, 1);
        s->always = bf_xcalloc(L * H, 1);
        for (size_t i = 0; i < L * H; i++) {
            float u = lg->h_usage[r * L * H + i];
            s->never[i] = u == 0.0f;
            s->always[i] = u == 1.0f;
        }
    }
}

static void log_summary_free(log_summary *s) {
    free(s->budget_mean);
    free(s->class_budget);
    free(s->never);
    free(s->always);
}

static void log_print_json(const options *o, const log_data *lg, const log_summary *s, char *const *names) {
    size_t L = lg->L, H = lg->H, C = lg->C;
    double *tmp = bf_xcalloc(L ? L : 1, sizeof(double));
    printf("{\"file\": ");
    json_str(o->file);
    printf(", \"kind\": \"log\", \"n_layers\": %zu, \"n_heads\": ", L);
    if (lg->has_heads) printf("%zu, \"n_classes\": %zu", H, C);
    else printf("null, \"n_classes\": null");
    printf(", \"class_names\": ");
    json_class_names(names, C);
    printf(", \"metrics\": ");
    if (!lg->has_metrics) {
        printf("null");
    } else if (lg->S == 0) {
        printf("{\"n_steps\": 0, \"first\": null, \"middle\": null, \"last\": null, \"mean\": null}");
    } else {
        static const char *const which[3] = {"first", "middle", "last"};
        printf("{\"n_steps\": %zu", lg->S);
        for (int i = 0; i < 3; i++) {
            printf(", \"%s\": ", which[i]);
            json_metrics_point(lg, s->pt[i], tmp);
        }
        printf(", \"mean\": {\"eps\": ");
        json_num(s->eps_mean);
        printf(", \"mean_budget\": ");
        json_vec(s->budget_mean, L);
        printf("}}");
    }
    printf(", \"heads\": ");
    if (!lg->has_heads) {
        printf("null");
    } else if (lg->R == 0) {
        printf("{\"n_records\": 0, \"first\": null, \"last\": null, \"class_budget\": null, \"never\": null, "
               "\"always\": null}");
    } else {
        size_t r = lg->R - 1;
        printf("{\"n_records\": %zu, \"first\": ", lg->R);
        json_heads_record(lg, 0);
        printf(", \"last\": ");
        json_heads_record(lg, r);
        printf(", \"class_budget\": [");
        for (size_t c = 0; c < C; c++) {
            int64_t n = lg->h_class_count[r * C + c];
            printf("%s{\"class\": %zu, \"name\": ", c ? ", " : "", c);
            if (names) json_str(names[c]);
            else printf("null");
            printf(", \"count\": %lld, \"mean_budget\": ", (long long)n);
            json_vec(n > 0 ? s->class_budget + c * L : NULL, L);
            printf("}");
        }
        printf("], \"never\": ");
        json_head_lists(s->never, L, H);
        printf(", \"always\": ");
        json_head_lists(s->always, L, H);
        printf("}");
    }
    printf(", \"lambda\": ");
    if (!lg->m_lambda || lg->S == 0) {
        printf("null");
    } else {
        static const char *const which[3] = {"first", "middle", "last"};
        printf("{");
        for (int i = 0; i < 3; i++) {
            printf("%s\"%s\": ", i ? ", " : "", which[i]);
            json_num((double)lg->m_lambda[s->pt[i]]);
        }
        printf(", \"mean\": ");
        json_num(s->lambda_mean);
        printf("}");
    }
    printf(", \"diagnostics\": ");
    if (!lg->has_diag || lg->R == 0) {
        printf("null");
    } else {
        printf("{\"first\": ");
        json_diag_record(lg, 0);
        printf(", \"last\": ");
        json_diag_record(lg, lg->R - 1);
        printf("}");
    }
    printf("}\n");
    free(tmp);
}

static void log_print_text(const options *o, const log_data *lg, const log_summary *s, char *const *names) {
    size_t L = lg->L, H = lg->H, C = lg->C;
    printf("%s: training log", o->file);
    if (lg->has_metrics) {
        printf(", %zu logged steps", lg->S);
        if (lg->S) printf(" (%lld..%lld)", (long long)lg->m_step[0], (long long)lg->m_step[lg->S - 1]);
    }
    if (lg->has_heads) {
        printf(", %zu head records", lg->R);
        if (lg->R) printf(" (steps %lld..%lld)", (long long)lg->h_step[0], (long long)lg->h_step[lg->R - 1]);
        printf(", %zu layers x %zu heads, %zu classes", L, H, C);
    } else {
        printf(", %zu layers (no /heads records)", L);
    }
    printf("\n");

    if (lg->has_metrics && lg->S > 0) {
        static const char *const which[3] = {"first", "middle", "last"};
        char label[64];
        printf("\nMean budget per layer (/metrics/mean_budget: mean k over the global batch)\n");
        printf("%-20s  %7s  %6s", "point", "step", "eps");
        print_layer_columns(L);
        for (int i = 0; i < 3; i++) {
            size_t row = s->pt[i];
            printf("%-20s  %7lld  %6.3f", which[i], (long long)lg->m_step[row], (double)lg->m_eps[row]);
            for (size_t l = 0; l < L; l++) printf("  %8.3f", (double)lg->m_budget[row * L + l]);
            printf("\n");
        }
        snprintf(label, sizeof label, "mean of %zu steps", lg->S);
        printf("%-20s  %7s  %6.3f", label, "-", s->eps_mean);
        for (size_t l = 0; l < L; l++) printf("  %8.3f", s->budget_mean[l]);
        printf("\n");
        if (lg->m_lambda)
            printf("budget multiplier lambda (/metrics/budget_lambda): first %.6g, middle %.6g, last %.6g, mean %.6g\n",
                   (double)lg->m_lambda[s->pt[0]], (double)lg->m_lambda[s->pt[1]], (double)lg->m_lambda[s->pt[2]],
                   s->lambda_mean);
    } else if (lg->has_metrics) {
        printf("\nNo logged steps in /metrics yet.\n");
    }

    if (!lg->has_heads) return;
    if (lg->R == 0) {
        printf("\nNo /heads records yet.\n");
        return;
    }
    size_t r = lg->R - 1;
    printf("\nHead usage per layer (/heads/usage: fraction of the interval's inputs that selected the head)\n");
    print_head_header("layer  record     step   inputs", H);
    for (size_t l = 0; l < L; l++) {
        size_t rows[2] = {0, r};
        for (int i = 0; i < 2; i++) {
            size_t q = rows[i];
            printf("%5zu  %-6s  %7lld  %7lld", l, i ? "last" : "first", (long long)lg->h_step[q],
                   (long long)lg->h_count[q]);
            for (size_t h = 0; h < H; h++) printf("  %7.3f", (double)lg->h_usage[(q * L + l) * H + h]);
            printf("\n");
        }
    }

    printf("\nMean budget by class (last record, step %lld: sum over heads of /heads/class_usage; of %zu heads)\n",
           (long long)lg->h_step[r], H);
    int w = label_width(names, C, 5);
    char buf[32];
    print_budget_header("class", w, L);
    for (size_t c = 0; c < C; c++) {
        int64_t n = lg->h_class_count[r * C + c];
        print_budget_row(class_label(names, c, buf, sizeof buf), w, (long long)n,
                         n > 0 ? s->class_budget + c * L : NULL, L);
    }

    printf("\nHeads never / always selected (last record, step %lld: usage exactly 0 / 1)\n",
           (long long)lg->h_step[r]);
    print_never_always(s->never, s->always, L, H);
    if (lg->has_diag) print_diag_text(lg);
}

static int run_log(const options *o, hid_t f, int has_metrics, int has_heads, bf_err *err) {
    log_data lg;
    memset(&lg, 0, sizeof lg);
    lg.has_metrics = has_metrics;
    lg.has_heads = has_heads;
    char **names = NULL;
    int rc = 0;
    if (has_metrics && load_metrics(f, o->file, &lg, err)) rc = -1;
    if (rc == 0 && has_heads && load_heads(f, o->file, &lg, err)) rc = -1;
    if (rc == 0 && o->data) {
        if (!has_heads) rc = bf_fail(err, "%s: --data gives class names, but this log has no /heads records", o->file);
        else if (load_class_names(o->data, lg.C, o->file, &names, err)) rc = -1;
    }
    if (rc == 0) {
        log_summary s;
        log_summarise(&lg, &s);
        if (o->json) log_print_json(o, &lg, &s, names);
        else log_print_text(o, &lg, &s, names);
        log_summary_free(&s);
    }
    bf_h5_free_strings(names, lg.C);
    log_free(&lg);
    return rc;
}

/* ---- records files ------------------------------------------------------------------------------- */

typedef struct {
    size_t N, C, L, H;
    const char *h_from; /* "option", "attribute" or "inferred" */
    int32_t *label, *pred, *length; /* [N] */
    int32_t *budget;                /* [N,L] */
    uint32_t *mask;                 /* [N,L] */
} records_data;

static void records_free(records_data *d) {
    free(d->label);
    free(d->pred);
    free(d->length);
    free(d->budget);
    free(d->mask);
    memset(d, 0, sizeof *d);
}

/* Reads an integer attribute n_heads of obj when it exists: 1 found, 0 absent, -1 error. */
static int read_n_heads_attr(hid_t f, const char *obj, long long *v, bf_err *err) {
    if (H5Aexists_by_name(f, obj, "n_heads", H5P_DEFAULT) <= 0) return 0;
    return bf_h5_read_attr_int(f, obj, "n_heads", v, err) ? -1 : 1;
}

static int load_records(hid_t f, const options *o, records_data *d, bf_err *err) {
    const char *file = o->file;
    unsigned long long n, dd[2];
    void *p = NULL;
    if (bf_h5_read_alloc(f, "/records/label", H5T_NATIVE_INT32, 1, &n, &p, err)) return -1;
    d->label = p;
    d->N = (size_t)n;
    d->pred = bf_xmalloc(d->N * sizeof(int32_t));
    d->length = bf_xmalloc(d->N * sizeof(int32_t));
    if (bf_h5_read_into(f, "/records/pred", H5T_NATIVE_INT32, 1, &n, d->pred, err)) return -1;
    if (bf_h5_read_into(f, "/records/length", H5T_NATIVE_INT32, 1, &n, d->length, err)) return -1;
    /* C comes from the logits' shape; the logits themselves are not needed. */
    hid_t ds = bf_h5_exists(f, "/records/logits") ? H5Dopen2(f, "/records/logits", H5P_DEFAULT) : -1;
    if (ds < 0) return bf_fail(err, "%s: /records/logits is missing or not a dataset (expected float32 [N, C])", file);
    hid_t ft = H5Dget_type(ds);
    int is_float = H5Tget_class(ft) == H5T_FLOAT;
    H5Tclose(ft);
    if (!is_float) {
        H5Dclose(ds);
        return bf_fail(err, "%s: dataset /records/logits has the wrong type (expected float32)", file);
    }
    hid_t sp = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t ld[2] = {0, 0};
    if (rank == 2) H5Sget_simple_extent_dims(sp, ld, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    if (rank != 2 || ld[0] != n || ld[1] < 1)
        return bf_fail(err, "%s: dataset /records/logits must have shape [%llu, C] with C >= 1 (one row per entry "
                            "of /records/label)", file, n);
    d->C = (size_t)ld[1];
    if (bf_h5_read_alloc(f, "/records/budget", H5T_NATIVE_INT32, 2, dd, &p, err)) return -1;
    d->budget = p;
    if (expect_rows(file, "/records/budget", dd[0], "/records/label", n, err)) return -1;
    if (dd[1] < 1 || dd[1] > 100000)
        return bf_fail(err, "%s: dataset /records/budget has shape [%llu,%llu] (expected [N, L] with L >= 1)", file,
                       dd[0], dd[1]);
    d->L = (size_t)dd[1];
    d->mask = bf_xmalloc(d->N * d->L * sizeof(uint32_t));
    if (bf_h5_read_into(f, "/records/head_mask", H5T_NATIVE_UINT32, 2, dd, d->mask, err)) return -1;

    /* H: the option, else an attribute, else inferred from the data. */
    long long attr = 0;
    int found = 0;
    if (o->n_heads > 0) {
        d->H = (size_t)o->n_heads;
        d->h_from = "option";
    } else {
        found = read_n_heads_attr(f, "/records", &attr, err);
        if (found == 0) found = read_n_heads_attr(f, "/", &attr, err);
        if (found < 0) return -1;
        if (found) {
            if (attr < 1 || attr > MAX_HEADS)
                return bf_fail(err, "%s: attribute n_heads = %lld is outside 1..%d", file, attr, MAX_HEADS);
            d->H = (size_t)attr;
            d->h_from = "attribute";
        }
    }
    size_t NL = d->N * d->L;
    if (!d->H) {
        int hmax = 1;
        for (size_t i = 0; i < NL; i++) {
            if (d->budget[i] > hmax && d->budget[i] <= MAX_HEADS) hmax = d->budget[i];
            for (int h = MAX_HEADS - 1; h >= hmax; h--)
                if (d->mask[i] >> h & 1u) {
                    hmax = h + 1;
                    break;
                }
        }
        d->H = (size_t)hmax;
        d->h_from = "inferred";
    }

    /* Values: every index used below must be in range. */
    for (size_t i = 0; i < d->N; i++) {
        if (d->label[i] < 0 || (size_t)d->label[i] >= d->C)
            return bf_fail(err, "%s: /records/label[%zu] = %d is outside 0..%zu (C from /records/logits)", file, i,
                           d->label[i], d->C - 1);
        if (d->pred[i] < 0 || (size_t)d->pred[i] >= d->C)
            return bf_fail(err, "%s: /records/pred[%zu] = %d is outside 0..%zu (C from /records/logits)", file, i,
                           d->pred[i], d->C - 1);
        if (d->length[i] < 1)
            return bf_fail(err, "%s: /records/length[%zu] = %d (every input has at least one token)", file, i,
                           d->length[i]);
    }
    uint32_t allowed = d->H >= 32 ? UINT32_MAX : (1u << d->H) - 1u;
    for (size_t i = 0; i < NL; i++) {
        if (d->budget[i] < 1 || (size_t)d->budget[i] > d->H)
            return bf_fail(err, "%s: /records/budget[%zu][%zu] = %d is outside 1..%zu (H from %s)", file, i / d->L,
                           i % d->L, d->budget[i], d->H, d->h_from);
        if (d->mask[i] & ~allowed)
            return bf_fail(err, "%s: /records/head_mask[%zu][%zu] = 0x%x selects a head >= H = %zu (H from %s)",
                           file, i / d->L, i % d->L, (unsigned)d->mask[i], d->H, d->h_from);
    }
    return 0;
}

/* Sums and counts of a group of records (a class, a length bucket, correct or wrong). */
typedef struct {
    long long n;
    double *sum; /* [L] budget sums, then means once finished */
} group;

static void group_add(group *g, const int32_t *budget, size_t L) {
    g->n++;
    for (size_t l = 0; l < L; l++) g->sum[l] += budget[l];
}

static void group_finish(group *g, size_t L) {
    for (size_t l = 0; l < L; l++)
        if (g->n > 0) g->sum[l] /= (double)g->n;
}

static const double *group_mean(const group *g) { return g->n > 0 ? g->sum : NULL; }

typedef struct {
    group all, correct, wrong, bucket[N_BUCKETS];
    group *cls;                    /* [C] */
    double *sums;                  /* backing store of every group's sum */
    float *usage;                  /* [L,H] */
    unsigned char *never, *always; /* [L,H] */
} records_summary;

static int length_bucket(int len) {
    for (int b = 0; b < N_BUCKETS - 1; b++)
        if (len <= bucket_max[b]) return b;
    return N_BUCKETS - 1;
}

static void records_summarise(const records_data *d, records_summary *s) {
    size_t L = d->L, H = d->H, C = d->C, ngroups = 3 + N_BUCKETS + C;
    memset(s, 0, sizeof *s);
    s->sums = bf_xcalloc(ngroups * L, sizeof(double));
    s->cls = bf_xcalloc(C, sizeof(group));
    group *all[3 + N_BUCKETS];
    all[0] = &s->all;
    all[1] = &s->correct;
    all[2] = &s->wrong;
    for (int b = 0; b < N_BUCKETS; b++) all[3 + b] = &s->bucket[b];
    for (size_t g = 0; g < 3 + N_BUCKETS; g++) all[g]->sum = s->sums + g * L;
    for (size_t c = 0; c < C; c++) s->cls[c].sum = s->sums + (3 + N_BUCKETS + c) * L;
    int64_t *count = bf_xcalloc(L * H, sizeof(int64_t));
    for (size_t i = 0; i < d->N; i++) {
        const int32_t *b = d->budget + i * L;
        group_add(&s->all, b, L);
        group_add(d->pred[i] == d->label[i] ? &s->correct : &s->wrong, b, L);
        group_add(&s->bucket[length_bucket(d->length[i])], b, L);
        group_add(&s->cls[d->label[i]], b, L);
        for (size_t l = 0; l < L; l++)
            for (size_t h = 0; h < H; h++) count[l * H + h] += d->mask[i * L + l] >> h & 1u;
    }
    for (size_t g = 0; g < 3 + N_BUCKETS; g++) group_finish(all[g], L);
    for (size_t c = 0; c < C; c++) group_finish(&s->cls[c], L);
    s->usage = bf_xcalloc(L * H, sizeof(float));
    s->never = bf_xcalloc(L * H, 1);
    s->always = bf_xcalloc(L * H, 1);
    for (size_t i = 0; i < L * H; i++) {
        s->usage[i] = d->N ? (float)((double)count[i] / (double)d->N) : 0.0f;
        s->never[i] = d->N > 0 && count[i] == 0;
        s->always[i] = d->N > 0 && count[i] == (int64_t)d->N;
    }
    free(count);
}

static void records_summary_free(records_summary *s) {
    free(s->sums);
    free(s->cls);
    free(s->usage);
    free(s->never);
    free(s->always);
}

static void json_group(const group *g, size_t L) {
    printf("\"n\": %lld, \"mean_budget\": ", g->n);
    json_vec(group_mean(g), L);
}

static void records_print_json(const options *o, const records_data *d, const records_summary *s,
                               char *const *names) {
    size_t L = d->L, H = d->H, C = d->C;
    printf("{\"file\": ");
    json_str(o->file);
    printf(", \"kind\": \"records\", \"n\": %zu, \"n_layers\": %zu, \"n_heads\": %zu, \"n_heads_from\": \"%s\", "
           "\"n_classes\": %zu, \"class_names\": ", d->N, L, H, d->h_from, C);
    json_class_names(names, C);
    printf(", \"accuracy\": ");
    if (d->N) json_num((double)s->correct.n / (double)d->N);
    else printf("null");
    printf(", \"mean_budget\": ");
    json_vec(group_mean(&s->all), L);
    printf(", \"by_class\": [");
    for (size_t c = 0; c < C; c++) {
        printf("%s{\"class\": %zu, \"name\": ", c ? ", " : "", c);
        if (names) json_str(names[c]);
        else printf("null");
        printf(", ");
        json_group(&s->cls[c], L);
        printf("}");
    }
    printf("], \"by_length\": [");
    int first = 1;
    for (int b = 0; b < N_BUCKETS; b++) {
        if (s->bucket[b].n == 0) continue;
        printf("%s{\"bucket\": \"%s\", \"min_tokens\": %d, \"max_tokens\": ", first ? "" : ", ", bucket_name[b],
               bucket_min[b]);
        if (bucket_max[b]) printf("%d", bucket_max[b]);
        else printf("null");
        printf(", ");
        json_group(&s->bucket[b], L);
        printf("}");
        first = 0;
    }
    printf("], \"by_correct\": {\"correct\": {");
    json_group(&s->correct, L);
    printf("}, \"wrong\": {");
    json_group(&s->wrong, L);
    printf("}}, \"usage\": ");
    json_matrix_f32(s->usage, L, H);
    printf(", \"never\": ");
    json_head_lists(s->never, L, H);
    printf(", \"always\": ");
    json_head_lists(s->always, L, H);
    printf("}\n");
}

static void records_print_text(const options *o, const records_data *d, const records_summary *s,
                               char *const *names) {
    size_t L = d->L, H = d->H, C = d->C;
    printf("%s: evaluation records, %zu inputs, %zu layers x %zu heads (H %s%s), %zu classes", o->file, d->N, L,
           H, d->h_from, strcmp(d->h_from, "inferred") ? "" : "; --n-heads sets it", C);
    if (d->N) printf(", accuracy %.4f", (double)s->correct.n / (double)d->N);
    printf("\n");
    if (d->N == 0) {
        printf("\nNo inputs in /records.\n");
        return;
    }
    char buf[32];
    int w = label_width(names, C, 10);
    printf("\nMean budget by class (/records/budget: heads used per layer, of %zu)\n", H);
    print_budget_header("class", w, L);
    print_budget_row("all", w, s->all.n, group_mean(&s->all), L);
    for (size_t c = 0; c < C; c++)
        print_budget_row(class_label(names, c, buf, sizeof buf), w, s->cls[c].n, group_mean(&s->cls[c]), L);

    printf("\nMean budget by input length\n");
    print_budget_header("tokens", w, L);
    for (int b = 0; b < N_BUCKETS; b++)
        if (s->bucket[b].n > 0) print_budget_row(bucket_name[b], w, s->bucket[b].n, group_mean(&s->bucket[b]), L);

    printf("\nMean budget for correct and wrong predictions\n");
    print_budget_header("prediction", w, L);
    print_budget_row("correct", w, s->correct.n, group_mean(&s->correct), L);
    print_budget_row("wrong", w, s->wrong.n, group_mean(&s->wrong), L);

    printf("\nHead usage per layer (/records/head_mask: fraction of inputs that selected the head)\n");
    print_head_header("layer", H);
    for (size_t l = 0; l < L; l++) {
        printf("%5zu", l);
        for (size_t h = 0; h < H; h++) printf("  %7.3f", (double)s->usage[l * H + h]);
        printf("\n");
    }

    printf("\nHeads never / always selected (over all %zu inputs)\n", d->N);
    print_never_always(s->never, s->always, L, H);
}

static int run_records(const options *o, hid_t f, bf_err *err) {
    records_data d;
    memset(&d, 0, sizeof d);
    char **names = NULL;
    int rc = load_records(f, o, &d, err);
    if (rc == 0 && o->data && load_class_names(o->data, d.C, o->file, &names, err)) rc = -1;
    if (rc == 0) {
        records_summary s;
        records_summarise(&d, &s);
        if (o->json) records_print_json(o, &d, &s, names);
        else records_print_text(o, &d, &s, names);
        records_summary_free(&s);
    }
    bf_h5_free_strings(names, d.C);
    records_free(&d);
    return rc;
}

/* ---- entry point --------------------------------------------------------------------------------- */

/* Returns 0, 1 for --help, or 2 for a usage error (already printed). */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--data") || !strcmp(a, "--n-heads")) {
            if (i + 1 >= argc) return usage_error("option needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--data")) {
                o->data = v;
            } else {
                char *end = NULL;
                long h = strtol(v, &end, 10);
                if (end == v || *end || h < 1 || h > MAX_HEADS)
                    return usage_error("--n-heads expects an integer in [1, 32], got", v);
                o->n_heads = (int)h;
            }
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option", a);
        } else if (o->file) {
            return usage_error("only one FILE may be given; extra argument", a);
        } else {
            o->file = a;
        }
    }
    if (!o->file) return usage_error("missing FILE (a log.h5 or a records file)", NULL);
    return 0;
}

int bf_cmd_heads(int argc, char **argv) {
    options o;
    int pa = parse_args(argc, argv, &o);
    if (pa == 1) {
        usage(stdout);
        return 0;
    }
    if (pa) return pa;
    bf_err err = {{0}};
    hid_t f = bf_h5_open_read(o.file, &err);
    if (f < 0) {
        fprintf(stderr, "budgetformer heads: error: %s\n", err.msg);
        return 1;
    }
    int has_records = bf_h5_exists(f, "/records"), has_metrics = bf_h5_exists(f, "/metrics"),
        has_heads = bf_h5_exists(f, "/heads");
    int rc;
    if (has_records && (has_metrics || has_heads))
        rc = bf_fail(&err, "%s: holds both /records and a training log (/metrics or /heads); expected one of them",
                     o.file);
    else if (has_records) rc = run_records(&o, f, &err);
    else if (has_metrics || has_heads) rc = run_log(&o, f, has_metrics, has_heads, &err);
    else
        rc = bf_fail(&err, "%s: neither a training log (no /metrics or /heads group) nor an evaluation records "
                           "file (no /records group)", o.file);
    H5Fclose(f);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "budgetformer heads: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
