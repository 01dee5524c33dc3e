/* runlog: log.h5 written by whole-file replacement (see runlog.h). */
#include "budgetformer/runlog.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/durable.h"
#include "h5io.h"

void bf_runlog_init(bf_runlog *lg, const char *path, int n_classes, int n_layers, int n_heads) {
    memset(lg, 0, sizeof *lg);
    snprintf(lg->path, sizeof lg->path, "%s", path);
    lg->n_classes = n_classes;
    lg->n_layers = n_layers;
    lg->n_heads = n_heads;
    lg->khat_bins = BF_KHAT_PER_UNIT * (n_heads > 1 ? n_heads - 1 : 1);
    lg->lambda_now = 0.0f;
}

/* Diagnostics bins per layer of each record: logit, k^, gate mass. */
static size_t diag_row(const bf_runlog *lg, size_t which) {
    size_t L = (size_t)lg->n_layers;
    return L * (which == 0 ? (size_t)BF_LOGIT_BINS : which == 1 ? (size_t)lg->khat_bins : (size_t)BF_MASS_BINS);
}

static void resize_heads(bf_runlog *lg, size_t cap) {
    size_t C = (size_t)lg->n_classes, LH = (size_t)lg->n_layers * (size_t)lg->n_heads;
    lg->h_step = bf_xrealloc(lg->h_step, cap * sizeof(int64_t));
    lg->h_count = bf_xrealloc(lg->h_count, cap * sizeof(int64_t));
    lg->h_class_count = bf_xrealloc(lg->h_class_count, cap * C * sizeof(int64_t));
    lg->h_usage = bf_xrealloc(lg->h_usage, cap * LH * sizeof(float));
    lg->h_budget_hist = bf_xrealloc(lg->h_budget_hist, cap * LH * sizeof(float));
    lg->h_class_usage = bf_xrealloc(lg->h_class_usage, cap * C * LH * sizeof(float));
    lg->h_logit_hist = bf_xrealloc(lg->h_logit_hist, cap * diag_row(lg, 0) * sizeof(int64_t));
    lg->h_khat_hist = bf_xrealloc(lg->h_khat_hist, cap * diag_row(lg, 1) * sizeof(int64_t));
    lg->h_mass_hist = bf_xrealloc(lg->h_mass_hist, cap * diag_row(lg, 2) * sizeof(int64_t));
    lg->cap_h = cap;
}

static void grow_heads(bf_runlog *lg) { resize_heads(lg, lg->cap_h ? 2 * lg->cap_h : 64); }

void bf_runlog_append_heads(bf_runlog *lg, int64_t step, const bf_headstats *s) {
    size_t C = (size_t)lg->n_classes, LH = (size_t)lg->n_layers * (size_t)lg->n_heads;
    if (lg->nh == lg->cap_h) grow_heads(lg);
    size_t r = lg->nh++;
    int64_t n = s->count[0];
    lg->h_step[r] = step;
    lg->h_count[r] = n;
    memcpy(lg->h_class_count + r * C, s->class_count, C * sizeof(int64_t));
    for (size_t i = 0; i < LH; i++) {
        lg->h_usage[r * LH + i] = n ? (float)((double)s->usage[i] / (double)n) : 0.0f;
        lg->h_budget_hist[r * LH + i] = n ? (float)((double)s->budget[i] / (double)n) : 0.0f;
    }
    for (size_t c = 0; c < C; c++) {
        int64_t nc = s->class_count[c];
        for (size_t i = 0; i < LH; i++)
            lg->h_class_usage[(r * C + c) * LH + i] =
                nc ? (float)((double)s->class_usage[c * LH + i] / (double)nc) : 0.0f; /* 0: class absent */
    }
    memcpy(lg->h_logit_hist + r * diag_row(lg, 0), s->logit_hist, diag_row(lg, 0) * sizeof(int64_t));
    memcpy(lg->h_khat_hist + r * diag_row(lg, 1), s->khat_hist, diag_row(lg, 1) * sizeof(int64_t));
    memcpy(lg->h_mass_hist + r * diag_row(lg, 2), s->mass_hist, diag_row(lg, 2) * sizeof(int64_t));
}

static void resize(bf_runlog *lg, size_t cap) {
    size_t L = (size_t)lg->n_layers;
    lg->step = bf_xrealloc(lg->step, cap * sizeof *lg->step);
    lg->loss = bf_xrealloc(lg->loss, cap * sizeof(float));
    lg->lr = bf_xrealloc(lg->lr, cap * sizeof(float));
    lg->eps = bf_xrealloc(lg->eps, cap * sizeof(float));
    lg->mean_budget = bf_xrealloc(lg->mean_budget, cap * L * sizeof(float));
    lg->samples_per_s = bf_xrealloc(lg->samples_per_s, cap * sizeof(float));
    lg->grad_norm = bf_xrealloc(lg->grad_norm, cap * sizeof(float));
    lg->comm_fraction = bf_xrealloc(lg->comm_fraction, cap * sizeof(float));
    lg->skipped = bf_xrealloc(lg->skipped, cap * sizeof(int64_t));
    lg->lambda = bf_xrealloc(lg->lambda, cap * sizeof(float));
    lg->cap = cap;
}

static void grow(bf_runlog *lg) { resize(lg, lg->cap ? 2 * lg->cap : 256); }

void bf_runlog_reserve(bf_runlog *lg, size_t rows, size_t head_rows) {
    if (rows > lg->cap) resize(lg, rows);
    if (head_rows > lg->cap_h) resize_heads(lg, head_rows);
}

void bf_runlog_append(bf_runlog *lg, int64_t step, float loss, float lr, float eps, const float *mean_budget,
                      float samples_per_s, float grad_norm, float comm_fraction) {
    if (lg->n == lg->cap) grow(lg);
    size_t i = lg->n++, L = (size_t)lg->n_layers;
    lg->step[i] = step;
    lg->loss[i] = loss;
    lg->lr[i] = lr;
    lg->eps[i] = eps;
    memcpy(lg->mean_budget + i * L, mean_budget, L * sizeof(float));
    lg->samples_per_s[i] = samples_per_s;
    lg->grad_norm[i] = grad_norm;
    lg->comm_fraction[i] = comm_fraction;
    lg->skipped[i] = lg->skipped_now;
    lg->lambda[i] = lg->lambda_now;
}

void bf_runlog_set_memory(bf_runlog *lg, int ranks, const int64_t *kb, int64_t rows_bytes, int shared) {
    lg->mem = bf_xrealloc(lg->mem, (size_t)ranks * 4 * sizeof(int64_t));
    memcpy(lg->mem, kb, (size_t)ranks * 4 * sizeof(int64_t));
    lg->mem_ranks = ranks;
    lg->mem_rows_bytes = rows_bytes;
    lg->mem_shared = shared;
}

/* /memory/peak_rss_kb, rss_kb, pss_kb, private_kb [W] (one column of lg->mem each) and its attributes. */
static int write_memory(hid_t f, const bf_runlog *lg, bf_err *err) {
    static const char *const names[4] = {"/memory/peak_rss_kb", "/memory/rss_kb", "/memory/pss_kb",
                                         "/memory/private_kb"};
    unsigned long long W = (unsigned long long)lg->mem_ranks;
    int64_t *col = bf_xmalloc((size_t)W * sizeof *col);
    int rc = 0;
    for (int k = 0; k < 4 && rc == 0; k++) {
        for (size_t r = 0; r < W; r++) col[r] = lg->mem[r * 4 + (size_t)k];
        rc = bf_h5_write(f, names[k], H5T_NATIVE_INT64, 1, &W, col, err);
    }
    free(col);
    if (rc == 0)
        rc = bf_h5_write_attr_int(f, "/memory", "dataset_rows_bytes", lg->mem_rows_bytes, err) ||
                     bf_h5_write_attr_int(f, "/memory", "shared_dataset", lg->mem_shared, err)
                 ? -1
                 : 0;
    return rc;
}

int bf_runlog_flush(const bf_runlog *lg, bf_err *err) { return bf_runlog_write(lg, 1, err); }

int bf_runlog_write(const bf_runlog *lg, int durable, bf_err *err) {
    char tmp[BF_ERR_LEN + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", lg->path);
    hid_t f = bf_h5_create(tmp, err);
    if (f < 0) return -1;
    unsigned long long s = lg->n, sl[2] = {lg->n, (unsigned long long)lg->n_layers};
    int rc = bf_h5_write(f, "/metrics/step", H5T_NATIVE_INT64, 1, &s, lg->step, err) ||
             bf_h5_write(f, "/metrics/loss", H5T_NATIVE_FLOAT, 1, &s, lg->loss, err) ||
             bf_h5_write(f, "/metrics/lr", H5T_NATIVE_FLOAT, 1, &s, lg->lr, err) ||
             bf_h5_write(f, "/metrics/eps", H5T_NATIVE_FLOAT, 1, &s, lg->eps, err) ||
             bf_h5_write(f, "/metrics/mean_budget", H5T_NATIVE_FLOAT, 2, sl, lg->mean_budget, err) ||
             bf_h5_write(f, "/metrics/samples_per_s", H5T_NATIVE_FLOAT, 1, &s, lg->samples_per_s, err) ||
             bf_h5_write(f, "/metrics/grad_norm", H5T_NATIVE_FLOAT, 1, &s, lg->grad_norm, err) ||
             bf_h5_write(f, "/metrics/comm_fraction", H5T_NATIVE_FLOAT, 1, &s, lg->comm_fraction, err) ||
             bf_h5_write(f, "/metrics/budget_lambda", H5T_NATIVE_FLOAT, 1, &s, lg->lambda, err)
                 ? -1
                 : 0;
    if (rc == 0 && lg->mem_ranks > 0 && write_memory(f, lg, err)) rc = -1;
    /* The skip counter is cumulative: written once the run has skipped an update, so the log of a healthy
     * run keeps exactly the FILES.md layout. */
    if (rc == 0 && lg->n && lg->skipped[lg->n - 1] > 0 &&
        bf_h5_write(f, "/metrics/skipped", H5T_NATIVE_INT64, 1, &s, lg->skipped, err))
        rc = -1;
    unsigned long long R = lg->nh, C = (unsigned long long)lg->n_classes, L = (unsigned long long)lg->n_layers,
                       H = (unsigned long long)lg->n_heads;
    unsigned long long rc_dims[2] = {R, C}, rlh[3] = {R, L, H}, rclh[4] = {R, C, L, H};
    if (rc == 0)
        rc = bf_h5_write(f, "/heads/step", H5T_NATIVE_INT64, 1, &R, lg->h_step, err) ||
             bf_h5_write(f, "/heads/count", H5T_NATIVE_INT64, 1, &R, lg->h_count, err) ||
             bf_h5_write(f, "/heads/class_count", H5T_NATIVE_INT64, 2, rc_dims, lg->h_class_count, err) ||
             bf_h5_write(f, "/heads/usage", H5T_NATIVE_FLOAT, 3, rlh, lg->h_usage, err) ||
             bf_h5_write(f, "/heads/budget_hist", H5T_NATIVE_FLOAT, 3, rlh, lg->h_budget_hist, err) ||
             bf_h5_write(f, "/heads/class_usage", H5T_NATIVE_FLOAT, 4, rclh, lg->h_class_usage, err)
                 ? -1
                 : 0;
    unsigned long long rlg[3] = {R, L, BF_LOGIT_BINS}, rlk[3] = {R, L, (unsigned long long)lg->khat_bins},
                       rlm[3] = {R, L, BF_MASS_BINS};
    char kbins[128];
    snprintf(kbins, sizeof kbins, "%d bins of 0.25 over [1, %d]; k^ = H counts in the last bin", lg->khat_bins,
             lg->n_heads);
    if (rc == 0)
        rc = bf_h5_write(f, "/heads/logit_hist", H5T_NATIVE_INT64, 3, rlg, lg->h_logit_hist, err) ||
                     bf_h5_write_attr_str(f, "/heads/logit_hist", "bins",
                                          "24 bins of 0.5 over [-6, 6]; values outside count in the end bins", err) ||
                     bf_h5_write(f, "/heads/khat_hist", H5T_NATIVE_INT64, 3, rlk, lg->h_khat_hist, err) ||
                     bf_h5_write_attr_str(f, "/heads/khat_hist", "bins", kbins, err) ||
                     bf_h5_write(f, "/heads/mass_hist", H5T_NATIVE_INT64, 3, rlm, lg->h_mass_hist, err) ||
                     bf_h5_write_attr_str(f, "/heads/mass_hist", "bins",
                                          "20 bins of 0.05 over [0, 1]; a mass of 1 counts in the last bin", err)
                 ? -1
                 : 0;
    if (bf_h5_close(f, tmp, rc ? NULL : err)) rc = -1;
    if (rc == 0) rc = durable ? bf_commit_file(tmp, lg->path, err) : bf_replace_file(tmp, lg->path, err);
    if (rc) unlink(tmp);
    return rc;
}

/* ---- resume: reading an existing log back ------------------------------------------------------- */

/* Reads dataset `name` of the given rank; checks dims[1..] against want[1..] and dims[0] against *rows
 * (or sets *rows when it is SIZE_MAX). Optional datasets that are absent give *out = NULL and 0. */
static int read_part(hid_t f, const char *path, const char *name, hid_t type, int rank, const size_t *want,
                     size_t *rows, int optional, void **out, bf_err *err) {
    *out = NULL;
    if (optional && !bf_h5_exists(f, name)) return 0;
    unsigned long long dims[4] = {0, 0, 0, 0};
    if (bf_h5_read_alloc(f, name, type, rank, dims, out, err)) return -1;
    int ok = *rows == SIZE_MAX || dims[0] == *rows;
    for (int i = 1; i < rank; i++) ok = ok && dims[i] == want[i];
    if (!ok) {
        free(*out);
        *out = NULL;
        return bf_fail(err, "%s: %s has a shape this run cannot continue (another number of records, layers, "
                            "heads or classes): move the old log away or resume into another run.dir", path, name);
    }
    *rows = (size_t)dims[0];
    return 0;
}

/* Over 80 lines on purpose: one read and check per dataset of log.h5 (FILES.md), optional ones included. */
int bf_runlog_load(bf_runlog *lg, int64_t max_step, bf_err *err) {
    if (!bf_path_exists(lg->path)) return 1;
    hid_t f = bf_h5_open_read(lg->path, err);
    if (f < 0) return -1;
    size_t L = (size_t)lg->n_layers, H = (size_t)lg->n_heads, C = (size_t)lg->n_classes, LH = L * H;
    size_t S = SIZE_MAX, R = SIZE_MAX;
    const size_t w_sl[2] = {0, L}, w_rc[2] = {0, C}, w_rlh[3] = {0, L, H}, w_rclh[4] = {0, C, L, H}, w_1[1] = {0};
    int64_t *step = NULL, *h_step = NULL, *h_count = NULL, *h_cc = NULL;
    int64_t *sk = NULL;
    float *loss = NULL, *lr = NULL, *eps = NULL, *mb = NULL, *sps = NULL, *gn = NULL, *cf = NULL;
    float *hu = NULL, *hb = NULL, *hcu = NULL, *lam = NULL;
    int64_t *hlg = NULL, *hkh = NULL, *hms = NULL;
    const size_t w_lg[3] = {0, L, BF_LOGIT_BINS}, w_kh[3] = {0, L, (size_t)lg->khat_bins},
                 w_ms[3] = {0, L, BF_MASS_BINS};
    int rc = read_part(f, lg->path, "/metrics/step", H5T_NATIVE_INT64, 1, w_1, &S, 0, (void **)&step, err) ||
             read_part(f, lg->path, "/metrics/loss", H5T_NATIVE_FLOAT, 1, w_1, &S, 0, (void **)&loss, err) ||
             read_part(f, lg->path, "/metrics/lr", H5T_NATIVE_FLOAT, 1, w_1, &S, 0, (void **)&lr, err) ||
             read_part(f, lg->path, "/metrics/eps", H5T_NATIVE_FLOAT, 1, w_1, &S, 0, (void **)&eps, err) ||
             read_part(f, lg->path, "/metrics/mean_budget", H5T_NATIVE_FLOAT, 2, w_sl, &S, 0, (void **)&mb, err) ||
             read_part(f, lg->path, "/metrics/samples_per_s", H5T_NATIVE_FLOAT, 1, w_1, &S, 1, (void **)&sps, err) ||
             read_part(f, lg->path, "/metrics/grad_norm", H5T_NATIVE_FLOAT, 1, w_1, &S, 1, (void **)&gn, err) ||
             read_part(f, lg->path, "/metrics/comm_fraction", H5T_NATIVE_FLOAT, 1, w_1, &S, 1, (void **)&cf, err) ||
             read_part(f, lg->path, "/metrics/skipped", H5T_NATIVE_INT64, 1, w_1, &S, 1, (void **)&sk, err) ||
             read_part(f, lg->path, "/metrics/budget_lambda", H5T_NATIVE_FLOAT, 1, w_1, &S, 1, (void **)&lam, err)
                 ? -1
                 : 0;
    if (rc == 0 && bf_h5_exists(f, "/heads/step"))
        rc = read_part(f, lg->path, "/heads/step", H5T_NATIVE_INT64, 1, w_1, &R, 0, (void **)&h_step, err) ||
                     read_part(f, lg->path, "/heads/count", H5T_NATIVE_INT64, 1, w_1, &R, 0, (void **)&h_count, err) ||
                     read_part(f, lg->path, "/heads/class_count", H5T_NATIVE_INT64, 2, w_rc, &R, 0, (void **)&h_cc, err) ||
                     read_part(f, lg->path, "/heads/usage", H5T_NATIVE_FLOAT, 3, w_rlh, &R, 0, (void **)&hu, err) ||
                     read_part(f, lg->path, "/heads/budget_hist", H5T_NATIVE_FLOAT, 3, w_rlh, &R, 0, (void **)&hb, err) ||
                     read_part(f, lg->path, "/heads/class_usage", H5T_NATIVE_FLOAT, 4, w_rclh, &R, 0, (void **)&hcu, err) ||
                     read_part(f, lg->path, "/heads/logit_hist", H5T_NATIVE_INT64, 3, w_lg, &R, 1, (void **)&hlg, err) ||
                     read_part(f, lg->path, "/heads/khat_hist", H5T_NATIVE_INT64, 3, w_kh, &R, 1, (void **)&hkh, err) ||
                     read_part(f, lg->path, "/heads/mass_hist", H5T_NATIVE_INT64, 3, w_ms, &R, 1, (void **)&hms, err)
                 ? -1
                 : 0;
    H5Fclose(f);
    if (rc == 0) {
        int64_t skipped_now = lg->skipped_now;
        float lambda_now = lg->lambda_now;
        for (size_t i = 0; i < S; i++)
            if (step[i] <= max_step) {
                lg->skipped_now = sk ? sk[i] : 0;
                lg->lambda_now = lam ? lam[i] : NAN; /* a log from before /metrics/budget_lambda */
                bf_runlog_append(lg, step[i], loss[i], lr[i], eps[i], mb + i * L, sps ? sps[i] : 0.0f,
                                 gn ? gn[i] : 0.0f, cf ? cf[i] : 0.0f);
            }
        lg->skipped_now = skipped_now;
        lg->lambda_now = lambda_now;
        for (size_t i = 0; h_step && i < R; i++) {
            if (h_step[i] > max_step) continue;
            if (lg->nh == lg->cap_h) grow_heads(lg);
            size_t r = lg->nh++;
            lg->h_step[r] = h_step[i];
            lg->h_count[r] = h_count[i];
            memcpy(lg->h_class_count + r * C, h_cc + i * C, C * sizeof(int64_t));
            memcpy(lg->h_usage + r * LH, hu + i * LH, LH * sizeof(float));
            memcpy(lg->h_budget_hist + r * LH, hb + i * LH, LH * sizeof(float));
            memcpy(lg->h_class_usage + r * C * LH, hcu + i * C * LH, C * LH * sizeof(float));
            int64_t *const dst[3] = {lg->h_logit_hist, lg->h_khat_hist, lg->h_mass_hist};
            const int64_t *const src[3] = {hlg, hkh, hms};
            for (size_t w = 0; w < 3; w++) {
                size_t row = diag_row(lg, w);
                if (src[w]) memcpy(dst[w] + r * row, src[w] + i * row, row * sizeof(int64_t));
                else memset(dst[w] + r * row, 0, row * sizeof(int64_t)); /* a log from before the diagnostics */
            }
        }
    }
    free(step);
    free(loss);
    free(lr);
    free(eps);
    free(mb);
    free(sps);
    free(gn);
    free(cf);
    free(sk);
    free(h_step);
    free(h_count);
    free(h_cc);
    free(hu);
    free(hb);
    free(hcu);
    free(lam);
    free(hlg);
    free(hkh);
    free(hms);
    return rc;
}

void bf_runlog_free(bf_runlog *lg) {
    free(lg->step);
    free(lg->loss);
    free(lg->lr);
    free(lg->eps);
    free(lg->mean_budget);
    free(lg->samples_per_s);
    free(lg->grad_norm);
    free(lg->comm_fraction);
    free(lg->skipped);
    free(lg->mem);
    free(lg->h_step);
    free(lg->h_count);
    free(lg->h_class_count);
    free(lg->h_usage);
    free(lg->h_budget_hist);
    free(lg->h_class_usage);
    free(lg->lambda);
    free(lg->h_logit_hist);
    free(lg->h_khat_hist);
    free(lg->h_mass_hist);
    memset(lg, 0, sizeof *lg);
}
