/* runlog_view: log.h5 read back for reports (budgetformer heads), any shape, checked (see runlog.h). The
 * trainer's own read-back for a resume is bf_runlog_load in runlog.c. */
#include <stdlib.h>
#include <string.h>

#include "budgetformer/model.h"
#include "budgetformer/runlog.h"
#include "h5io.h"

int bf_h5_groups_of(const char *path, int *has_records, int *has_metrics, int *has_heads, bf_err *err) {
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    *has_records = bf_h5_exists(f, "/records");
    *has_metrics = bf_h5_exists(f, "/metrics");
    *has_heads = bf_h5_exists(f, "/heads");
    H5Fclose(f);
    return 0;
}

void bf_runlog_view_free(bf_runlog_view *lg) {
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

static int load_metrics(hid_t f, const char *file, bf_runlog_view *lg, bf_err *err) {
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
    if (bf_h5_expect_rows(file, "/metrics/mean_budget", d[0], "/metrics/step", s, err)) return -1;
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
static int load_diag(hid_t f, const char *file, const char *ds, const bf_runlog_view *lg, size_t *bins, int64_t **out,
                     bf_err *err) {
    unsigned long long d[3];
    void *p = NULL;
    if (bf_h5_read_alloc(f, ds, H5T_NATIVE_INT64, 3, d, &p, err)) return -1;
    *out = p;
    if (bf_h5_expect_rows(file, ds, d[0], "/heads/step", lg->R, err)) return -1;
    if (d[1] != lg->L || d[2] < 1 || (*bins && d[2] != *bins))
        return bf_fail(err, "%s: dataset %s has shape [%llu,%llu,%llu] (expected [R, %zu, %zu])", file, ds, d[0], d[1],
                       d[2], lg->L, *bins ? *bins : (size_t)d[2]);
    *bins = (size_t)d[2];
    for (size_t i = 0; i < lg->R * lg->L * *bins; i++)
        if ((*out)[i] < 0) return bf_fail(err, "%s: dataset %s holds a negative count", file, ds);
    return 0;
}

static int load_diagnostics(hid_t f, const char *file, bf_runlog_view *lg, bf_err *err) {
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

static int load_heads(hid_t f, const char *file, bf_runlog_view *lg, bf_err *err) {
    unsigned long long d[3], r;
    void *p = NULL;
    if (bf_h5_read_alloc(f, "/heads/step", H5T_NATIVE_INT64, 1, &r, &p, err)) return -1;
    lg->h_step = p;
    lg->R = (size_t)r;
    lg->h_count = bf_xmalloc(lg->R * sizeof(int64_t));
    if (bf_h5_read_into(f, "/heads/count", H5T_NATIVE_INT64, 1, &r, lg->h_count, err)) return -1;
    if (bf_h5_read_alloc(f, "/heads/class_count", H5T_NATIVE_INT64, 2, d, &p, err)) return -1;
    lg->h_class_count = p;
    if (bf_h5_expect_rows(file, "/heads/class_count", d[0], "/heads/step", r, err)) return -1;
    if (d[1] < 1 || d[1] > 1000000)
        return bf_fail(err, "%s: dataset /heads/class_count has shape [%llu,%llu] (expected [R, C] with C >= 1 "
                            "classes)", file, d[0], d[1]);
    lg->C = (size_t)d[1];
    if (bf_h5_read_alloc(f, "/heads/usage", H5T_NATIVE_FLOAT, 3, d, &p, err)) return -1;
    lg->h_usage = p;
    if (bf_h5_expect_rows(file, "/heads/usage", d[0], "/heads/step", r, err)) return -1;
    if (d[1] < 1 || d[1] > 100000 || d[2] < 1 || d[2] > BF_MAX_HEADS)
        return bf_fail(err, "%s: dataset /heads/usage has shape [%llu,%llu,%llu] (expected [R, L, H] with L >= 1 "
                            "and 1 <= H <= %d)", file, d[0], d[1], d[2], BF_MAX_HEADS);
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

int bf_runlog_view_read(const char *path, int has_metrics, int has_heads, bf_runlog_view *lg, bf_err *err) {
    memset(lg, 0, sizeof *lg);
    lg->has_metrics = has_metrics;
    lg->has_heads = has_heads;
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    int rc = 0;
    if (has_metrics && load_metrics(f, path, lg, err)) rc = -1;
    if (rc == 0 && has_heads && load_heads(f, path, lg, err)) rc = -1;
    H5Fclose(f);
    return rc;
}
