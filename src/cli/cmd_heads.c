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
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads_print.h"
#include "jsonout.h"
#include "budgetformer/cli.h"
#include "budgetformer/dataset.h"
#include "budgetformer/model.h"
#include "budgetformer/records.h"
#include "budgetformer/runlog.h"
#include "budgetformer/util.h"

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
static hist_summary diag_summary(const bf_runlog_view *lg, int which, size_t r, size_t l) {
    if (which == 0) return hist_summarise(lg->h_khat + (r * lg->L + l) * lg->KB, lg->KB, 1.0, (double)lg->H);
    if (which == 1) return hist_summarise(lg->h_logit + (r * lg->L + l) * 24, 24, -6.0, 6.0);
    return hist_summarise(lg->h_mass + (r * lg->L + l) * 20, 20, 0.0, 1.0);
}

static const char *const diag_key[3] = {"khat", "logit", "mass"};
static const char *const diag_label[3] = {"k^", "budget logit", "gate mass"};

static void json_diag_record(const bf_runlog_view *lg, size_t r) {
    printf("{\"step\": %lld, \"count\": %lld", (long long)lg->h_step[r], (long long)lg->h_count[r]);
    for (int w = 0; w < 3; w++) {
        printf(", \"%s\": [", diag_key[w]);
        for (size_t l = 0; l < lg->L; l++) {
            hist_summary h = diag_summary(lg, w, r, l);
            printf("%s{\"n\": %lld, ", l ? ", " : "", h.n);
            if (h.n) {
                printf("\"mean\": ");
                bf_heads_json_num(h.mean);
                printf(", \"q1\": ");
                bf_heads_json_num(h.q[0]);
                printf(", \"median\": ");
                bf_heads_json_num(h.q[1]);
                printf(", \"q3\": ");
                bf_heads_json_num(h.q[2]);
            } else {
                printf("\"mean\": null, \"q1\": null, \"median\": null, \"q3\": null");
            }
            printf("}");
        }
        printf("]");
    }
    printf("}");
}

static void print_diag_text(const bf_runlog_view *lg) {
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

static void json_metrics_point(const bf_runlog_view *lg, size_t row, double *tmp) {
    for (size_t l = 0; l < lg->L; l++) tmp[l] = (double)lg->m_budget[row * lg->L + l];
    printf("{\"row\": %zu, \"step\": %lld, \"eps\": ", row, (long long)lg->m_step[row]);
    bf_heads_json_num((double)lg->m_eps[row]);
    printf(", \"mean_budget\": ");
    bf_heads_json_vec(tmp, lg->L);
    printf("}");
}

static void json_heads_record(const bf_runlog_view *lg, size_t r) {
    printf("{\"step\": %lld, \"count\": %lld, \"usage\": ", (long long)lg->h_step[r], (long long)lg->h_count[r]);
    bf_heads_json_matrix_f32(lg->h_usage + r * lg->L * lg->H, lg->L, lg->H);
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

static void log_summarise(const bf_runlog_view *lg, log_summary *s) {
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

/* Over 80 lines on purpose: the JSON object printed key by key in its documented order (docs/LOGS.md). */
static void log_print_json(const options *o, const bf_runlog_view *lg, const log_summary *s, char *const *names) {
    size_t L = lg->L, H = lg->H, C = lg->C;
    double *tmp = bf_xcalloc(L ? L : 1, sizeof(double));
    printf("{\"file\": ");
    bf_heads_json_str(o->file);
    printf(", \"kind\": \"log\", \"n_layers\": %zu, \"n_heads\": ", L);
    if (lg->has_heads) printf("%zu, \"n_classes\": %zu", H, C);
    else printf("null, \"n_classes\": null");
    printf(", \"class_names\": ");
    bf_heads_json_class_names(names, C);
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
        bf_heads_json_num(s->eps_mean);
        printf(", \"mean_budget\": ");
        bf_heads_json_vec(s->budget_mean, L);
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
            if (names) bf_heads_json_str(names[c]);
            else printf("null");
            printf(", \"count\": %lld, \"mean_budget\": ", (long long)n);
            bf_heads_json_vec(n > 0 ? s->class_budget + c * L : NULL, L);
            printf("}");
        }
        printf("], \"never\": ");
        bf_heads_json_head_lists(s->never, L, H);
        printf(", \"always\": ");
        bf_heads_json_head_lists(s->always, L, H);
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
            bf_heads_json_num((double)lg->m_lambda[s->pt[i]]);
        }
        printf(", \"mean\": ");
        bf_heads_json_num(s->lambda_mean);
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

static void log_print_text(const options *o, const bf_runlog_view *lg, const log_summary *s, char *const *names) {
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
        bf_heads_print_layer_columns(L);
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
    bf_heads_print_head_header("layer  record     step   inputs", H);
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
    int w = bf_heads_label_width(names, C, 5);
    char buf[32];
    bf_heads_print_budget_header("class", w, L);
    for (size_t c = 0; c < C; c++) {
        int64_t n = lg->h_class_count[r * C + c];
        bf_heads_print_budget_row(bf_heads_class_label(names, c, buf, sizeof buf), w, (long long)n,
                         n > 0 ? s->class_budget + c * L : NULL, L);
    }

    printf("\nHeads never / always selected (last record, step %lld: usage exactly 0 / 1)\n",
           (long long)lg->h_step[r]);
    bf_heads_print_never_always(s->never, s->always, L, H);
    if (lg->has_diag) print_diag_text(lg);
}

static int run_log(const options *o, int has_metrics, int has_heads, bf_err *err) {
    bf_runlog_view lg;
    char **names = NULL;
    int rc = bf_runlog_view_read(o->file, has_metrics, has_heads, &lg, err);
    if (rc == 0 && o->data) {
        if (!has_heads) rc = bf_fail(err, "%s: --data gives class names, but this log has no /heads records", o->file);
        else if (bf_dataset_class_names(o->data, lg.C, o->file, &names, err)) rc = -1;
    }
    if (rc == 0) {
        log_summary s;
        log_summarise(&lg, &s);
        if (o->json) log_print_json(o, &lg, &s, names);
        else log_print_text(o, &lg, &s, names);
        log_summary_free(&s);
    }
    bf_free_strings(names, lg.C);
    bf_runlog_view_free(&lg);
    return rc;
}

/* ---- records files ------------------------------------------------------------------------------- */

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

static void records_summarise(const bf_records_view *d, records_summary *s) {
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
    bf_heads_json_vec(group_mean(g), L);
}

static void records_print_json(const options *o, const bf_records_view *d, const records_summary *s,
                               char *const *names) {
    size_t L = d->L, H = d->H, C = d->C;
    printf("{\"file\": ");
    bf_heads_json_str(o->file);
    printf(", \"kind\": \"records\", \"n\": %zu, \"n_layers\": %zu, \"n_heads\": %zu, \"n_heads_from\": \"%s\", "
           "\"n_classes\": %zu, \"class_names\": ", d->N, L, H, d->h_from, C);
    bf_heads_json_class_names(names, C);
    printf(", \"accuracy\": ");
    if (d->N) bf_heads_json_num((double)s->correct.n / (double)d->N);
    else printf("null");
    printf(", \"mean_budget\": ");
    bf_heads_json_vec(group_mean(&s->all), L);
    printf(", \"by_class\": [");
    for (size_t c = 0; c < C; c++) {
        printf("%s{\"class\": %zu, \"name\": ", c ? ", " : "", c);
        if (names) bf_heads_json_str(names[c]);
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
    bf_heads_json_matrix_f32(s->usage, L, H);
    printf(", \"never\": ");
    bf_heads_json_head_lists(s->never, L, H);
    printf(", \"always\": ");
    bf_heads_json_head_lists(s->always, L, H);
    printf("}\n");
}

static void records_print_text(const options *o, const bf_records_view *d, const records_summary *s,
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
    int w = bf_heads_label_width(names, C, 10);
    printf("\nMean budget by class (/records/budget: heads used per layer, of %zu)\n", H);
    bf_heads_print_budget_header("class", w, L);
    bf_heads_print_budget_row("all", w, s->all.n, group_mean(&s->all), L);
    for (size_t c = 0; c < C; c++)
        bf_heads_print_budget_row(bf_heads_class_label(names, c, buf, sizeof buf), w, s->cls[c].n, group_mean(&s->cls[c]), L);

    printf("\nMean budget by input length\n");
    bf_heads_print_budget_header("tokens", w, L);
    for (int b = 0; b < N_BUCKETS; b++)
        if (s->bucket[b].n > 0) bf_heads_print_budget_row(bucket_name[b], w, s->bucket[b].n, group_mean(&s->bucket[b]), L);

    printf("\nMean budget for correct and wrong predictions\n");
    bf_heads_print_budget_header("prediction", w, L);
    bf_heads_print_budget_row("correct", w, s->correct.n, group_mean(&s->correct), L);
    bf_heads_print_budget_row("wrong", w, s->wrong.n, group_mean(&s->wrong), L);

    printf("\nHead usage per layer (/records/head_mask: fraction of inputs that selected the head)\n");
    bf_heads_print_head_header("layer", H);
    for (size_t l = 0; l < L; l++) {
        printf("%5zu", l);
        for (size_t h = 0; h < H; h++) printf("  %7.3f", (double)s->usage[l * H + h]);
        printf("\n");
    }

    printf("\nHeads never / always selected (over all %zu inputs)\n", d->N);
    bf_heads_print_never_always(s->never, s->always, L, H);
}

static int run_records(const options *o, bf_err *err) {
    bf_records_view d;
    char **names = NULL;
    int rc = bf_records_view_read(o->file, o->n_heads, &d, err);
    if (rc == 0 && o->data && bf_dataset_class_names(o->data, d.C, o->file, &names, err)) rc = -1;
    if (rc == 0) {
        records_summary s;
        records_summarise(&d, &s);
        if (o->json) records_print_json(o, &d, &s, names);
        else records_print_text(o, &d, &s, names);
        records_summary_free(&s);
    }
    bf_free_strings(names, d.C);
    bf_records_view_free(&d);
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
    int has_records, has_metrics, has_heads;
    if (bf_h5_groups_of(o.file, &has_records, &has_metrics, &has_heads, &err)) {
        fprintf(stderr, "budgetformer heads: error: %s\n", err.msg);
        return 1;
    }
    int rc;
    if (has_records && (has_metrics || has_heads))
        rc = bf_fail(&err, "%s: holds both /records and a training log (/metrics or /heads); expected one of them",
                     o.file);
    else if (has_records) rc = run_records(&o, &err);
    else if (has_metrics || has_heads) rc = run_log(&o, has_metrics, has_heads, &err);
    else
        rc = bf_fail(&err, "%s: neither a training log (no /metrics or /heads group) nor an evaluation records "
                           "file (no /records group)", o.file);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "budgetformer heads: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
