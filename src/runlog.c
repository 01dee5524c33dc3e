/* runlog: log.h5 written by whole-file replacement (see runlog.h). */
#include "budgetformer/runlog.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/h5io.h"

void bf_runlog_init(bf_runlog *lg, const char *path, int n_layers) {
    memset(lg, 0, sizeof *lg);
    snprintf(lg->path, sizeof lg->path, "%s", path);
    lg->n_layers = n_layers;
}

static void grow(bf_runlog *lg) {
    size_t cap = lg->cap ? 2 * lg->cap : 256, L = (size_t)lg->n_layers;
    lg->step = bf_xrealloc(lg->step, cap * sizeof *lg->step);
    lg->loss = bf_xrealloc(lg->loss, cap * sizeof(float));
    lg->lr = bf_xrealloc(lg->lr, cap * sizeof(float));
    lg->eps = bf_xrealloc(lg->eps, cap * sizeof(float));
    lg->mean_budget = bf_xrealloc(lg->mean_budget, cap * L * sizeof(float));
    lg->samples_per_s = bf_xrealloc(lg->samples_per_s, cap * sizeof(float));
    lg->grad_norm = bf_xrealloc(lg->grad_norm, cap * sizeof(float));
    lg->comm_fraction = bf_xrealloc(lg->comm_fraction, cap * sizeof(float));
    lg->cap = cap;
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
}

int bf_runlog_flush(const bf_runlog *lg, bf_err *err) {
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
             bf_h5_write(f, "/metrics/comm_fraction", H5T_NATIVE_FLOAT, 1, &s, lg->comm_fraction, err)
                 ? -1
                 : 0;
    if (bf_h5_close(f, tmp, rc ? NULL : err)) rc = -1;
    if (rc == 0) rc = bf_commit_file(tmp, lg->path, err);
    if (rc) unlink(tmp);
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
    memset(lg, 0, sizeof *lg);
}
