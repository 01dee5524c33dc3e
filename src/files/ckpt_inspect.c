/* ckpt_inspect: what `budgetformer inspect` reads of a checkpoint beyond a load: the /provenance strings, the
 * stored shape of a dataset, a /state integer (see checkpoint.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "h5io.h"

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    bf_ckpt_attrs *a = data;
    if (a->n >= 32) return 0;
    char *v = NULL;
    bf_err ignore;
    if (bf_h5_read_attr_str(loc, ".", name, &v, &ignore)) return 0;
    a->name[a->n] = bf_xstrdup(name);
    a->value[a->n++] = v;
    return 0;
}

void bf_checkpoint_provenance(const bf_ckpt_file *cf, bf_ckpt_attrs *a) {
    hid_t f = cf->file;
    memset(a, 0, sizeof *a);
    if (!bf_h5_exists(f, "/provenance")) return;
    hid_t g = H5Gopen2(f, "/provenance", H5P_DEFAULT);
    if (g < 0) return;
    hsize_t idx = 0;
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, a);
    H5Gclose(g);
}

void bf_checkpoint_attrs_free(bf_ckpt_attrs *a) {
    for (size_t i = 0; i < a->n; i++) {
        free(a->name[i]);
        free(a->value[i]);
    }
}

void bf_checkpoint_stored_shape(const bf_ckpt_file *cf, const char *path, char *buf, size_t len, int json) {
    hid_t f = cf->file;
    if (!bf_h5_exists(f, path)) {
        snprintf(buf, len, json ? "null" : "missing");
        return;
    }
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t d[8] = {0};
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (r >= 0 && r <= 8) H5Sget_simple_extent_dims(sp, d, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    if (r < 0 || r > 8) {
        snprintf(buf, len, json ? "null" : "unreadable");
        return;
    }
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < r && k < len; i++) k += (size_t)snprintf(buf + k, len - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

int bf_checkpoint_state_int(const bf_ckpt_file *cf, const char *name, long long *v, bf_err *err) {
    return bf_h5_read_attr_int(cf->file, "/state", name, v, err);
}

int bf_checkpoint_file_names(const bf_ckpt_file *cf, char ***vocab, size_t *nv, char ***labels, size_t *nl,
                             bf_err *err) {
    *vocab = *labels = NULL;
    *nv = *nl = 0;
    int rc = bf_h5_read_strings(cf->file, "/vocab", vocab, nv, err);
    if (rc == 0) rc = bf_h5_read_strings(cf->file, "/label_names", labels, nl, err);
    return rc;
}
