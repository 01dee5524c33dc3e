/* records: the evaluation records file, written and read (see records.h). */
#include "budgetformer/records.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/durable.h"
#include "budgetformer/model.h"
#include "h5io.h"

void bf_eval_records_alloc(bf_eval_records *r, size_t n, int n_classes, int n_layers) {
    r->label = bf_xcalloc(n, sizeof(int32_t));
    r->pred = bf_xcalloc(n, sizeof(int32_t));
    r->length = bf_xcalloc(n, sizeof(int32_t));
    r->logits = bf_xcalloc(n * (size_t)n_classes, sizeof(float));
    r->budget = bf_xcalloc(n * (size_t)n_layers, sizeof(int32_t));
    r->head_mask = bf_xcalloc(n * (size_t)n_layers, sizeof(uint32_t));
    r->khat = bf_xcalloc(n * (size_t)n_layers, sizeof(float));
    r->sel_mass = bf_xcalloc(n * (size_t)n_layers, sizeof(float));
}

void bf_eval_records_free(bf_eval_records *r) {
    free(r->label);
    free(r->pred);
    free(r->length);
    free(r->logits);
    free(r->budget);
    free(r->head_mask);
    free(r->khat);
    free(r->sel_mass);
    memset(r, 0, sizeof *r);
}

int bf_eval_records_write(const char *path, const bf_eval_records *r, size_t n, int n_classes, int n_layers,
                          int n_heads, bf_err *err) {
    return bf_eval_records_write_control(path, r, n, n_classes, n_layers, n_heads, NULL, 0, err);
}

int bf_eval_records_write_control(const char *path, const bf_eval_records *r, size_t n, int n_classes,
                                  int n_layers, int n_heads, const char *control, long long control_seed,
                                  bf_err *err) {
    char tmp[BF_ERR_LEN + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = bf_h5_create(tmp, err);
    if (f < 0) return -1;
    unsigned long long d1 = n, dc[2] = {n, (unsigned long long)n_classes}, dl[2] = {n, (unsigned long long)n_layers};
    int rc = bf_h5_write(f, "/records/label", H5T_NATIVE_INT32, 1, &d1, r->label, err) ||
             bf_h5_write(f, "/records/pred", H5T_NATIVE_INT32, 1, &d1, r->pred, err) ||
             bf_h5_write(f, "/records/logits", H5T_NATIVE_FLOAT, 2, dc, r->logits, err) ||
             bf_h5_write(f, "/records/length", H5T_NATIVE_INT32, 1, &d1, r->length, err) ||
             bf_h5_write(f, "/records/budget", H5T_NATIVE_INT32, 2, dl, r->budget, err) ||
             bf_h5_write(f, "/records/head_mask", H5T_NATIVE_UINT32, 2, dl, r->head_mask, err) ||
             bf_h5_write(f, "/records/khat", H5T_NATIVE_FLOAT, 2, dl, r->khat, err) ||
             bf_h5_write(f, "/records/sel_mass", H5T_NATIVE_FLOAT, 2, dl, r->sel_mass, err) ||
             bf_h5_write_attr_int(f, "/records", "n_heads", n_heads, err)
                 ? -1
                 : 0;
    if (rc == 0 && control &&
        (bf_h5_write_attr_str(f, "/records", "budget_control", control, err) ||
         (control_seed >= 0 && bf_h5_write_attr_int(f, "/records", "control_seed", control_seed, err))))
        rc = -1;
    if (bf_h5_close(f, tmp, rc ? NULL : err)) rc = -1;
    if (rc == 0) rc = bf_commit_file(tmp, path, err);
    if (rc) unlink(tmp);
    return rc;
}

void bf_records_view_free(bf_records_view *d) {
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

/* Over 80 lines on purpose: one check per dataset and value range, each naming what is wrong in the file. */
static int load_records(hid_t f, const char *file, int n_heads, bf_records_view *d, bf_err *err) {
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
    if (bf_h5_expect_rows(file, "/records/budget", dd[0], "/records/label", n, err)) return -1;
    if (dd[1] < 1 || dd[1] > 100000)
        return bf_fail(err, "%s: dataset /records/budget has shape [%llu,%llu] (expected [N, L] with L >= 1)", file,
                       dd[0], dd[1]);
    d->L = (size_t)dd[1];
    d->mask = bf_xmalloc(d->N * d->L * sizeof(uint32_t));
    if (bf_h5_read_into(f, "/records/head_mask", H5T_NATIVE_UINT32, 2, dd, d->mask, err)) return -1;

    /* H: the option, else an attribute, else inferred from the data. */
    long long attr = 0;
    int found = 0;
    if (n_heads > 0) {
        d->H = (size_t)n_heads;
        d->h_from = "option";
    } else {
        found = read_n_heads_attr(f, "/records", &attr, err);
        if (found == 0) found = read_n_heads_attr(f, "/", &attr, err);
        if (found < 0) return -1;
        if (found) {
            if (attr < 1 || attr > BF_MAX_HEADS)
                return bf_fail(err, "%s: attribute n_heads = %lld is outside 1..%d", file, attr, BF_MAX_HEADS);
            d->H = (size_t)attr;
            d->h_from = "attribute";
        }
    }
    size_t NL = d->N * d->L;
    if (!d->H) {
        int hmax = 1;
        for (size_t i = 0; i < NL; i++) {
            if (d->budget[i] > hmax && d->budget[i] <= BF_MAX_HEADS) hmax = d->budget[i];
            for (int h = BF_MAX_HEADS - 1; h >= hmax; h--)
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

int bf_records_view_read(const char *path, int n_heads, bf_records_view *d, bf_err *err) {
    memset(d, 0, sizeof *d);
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    int rc = load_records(f, path, n_heads, d, err);
    H5Fclose(f);
    return rc;
}
