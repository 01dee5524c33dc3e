/* checkpoint: HDF5 save and load of a model and its training state (see checkpoint.h). */
#include "budgetformer/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/h5io.h"

int bf_commit_file(const char *tmp, const char *path, bf_err *err) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return bf_fail(err, "%s: cannot reopen to sync: %s", tmp, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return bf_fail(err, "%s: fsync failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) return bf_fail(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    char dir[BF_ERR_LEN];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd); /* makes the rename durable; some file systems refuse fsync on directories */
        close(dfd);
    }
    return 0;
}

static void tmp_name_for(char *buf, size_t len, const char *path) {
    char d[BF_ERR_LEN], b[BF_ERR_LEN];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    snprintf(buf, len, "%s/.%s.tmp", dirname(d), basename(b));
}

static const char *const model_attrs[] = {"vocab_size", "max_len", "d_model", "n_heads", "n_layers",
                                          "d_ff", "n_classes", "full_heads", "fixed_budget"};

static int *model_attr_ptr(bf_model_config *c, int i) {
    int *p[] = {&c->vocab_size, &c->max_len, &c->d_model, &c->n_heads, &c->n_layers,
                &c->d_ff, &c->n_classes, &c->full_heads, &c->fixed_budget};
    return p[i];
}

static int write_contents(hid_t f, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err) {
    bf_model_config c = m->cfg;
    char name[128];
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *t = &m->tensors[i];
        unsigned long long dims[2] = {(unsigned long long)t->shape[0], (unsigned long long)t->shape[1]};
        snprintf(name, sizeof name, "/model/%s", t->name);
        if (bf_h5_write(f, name, H5T_NATIVE_FLOAT, t->ndim, dims, m->params + t->offset, err)) return -1;
    }
    for (int i = 0; i < (int)(sizeof model_attrs / sizeof *model_attrs); i++)
        if (bf_h5_write_attr_int(f, "/model", model_attrs[i], *model_attr_ptr(&c, i), err)) return -1;
    if (bf_h5_write_strings(f, "/vocab", meta->vocab, meta->vocab_size, err)) return -1;
    if (bf_h5_write_strings(f, "/label_names", meta->label_names, meta->n_classes, err)) return -1;
    if (meta->adam_m && meta->adam_v) {
        unsigned long long n = m->n_params;
        if (bf_h5_write(f, "/optim/m", H5T_NATIVE_FLOAT, 1, &n, meta->adam_m, err)) return -1;
        if (bf_h5_write(f, "/optim/v", H5T_NATIVE_FLOAT, 1, &n, meta->adam_v, err)) return -1;
    }
    hid_t g = H5Gcreate2(f, "/state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return bf_fail(err, "cannot create group /state");
    H5Gclose(g);
    if (bf_h5_write_attr_int(f, "/state", "format_version", BF_CHECKPOINT_FORMAT, err) ||
        bf_h5_write_attr_int(f, "/state", "step", meta->step, err) ||
        bf_h5_write_attr_int(f, "/state", "seed", (long long)meta->seed, err) ||
        bf_h5_write_attr_int(f, "/state", "world_size", meta->world_size, err) ||
        bf_h5_write_attr_str(f, "/state", "config", meta->config_text ? meta->config_text : "", err))
        return -1;
    g = H5Gcreate2(f, "/provenance", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return bf_fail(err, "cannot create group /provenance");
    H5Gclose(g);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char h5v[64];
    snprintf(h5v, sizeof h5v, "%u.%u.%u", maj, min, rel);
    if (bf_h5_write_attr_str(f, "/provenance", "budgetformer_version", BF_VERSION, err) ||
        bf_h5_write_attr_str(f, "/provenance", "hdf5_version", h5v, err))
        return -1;
    return 0;
}

int bf_checkpoint_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err) {
    char tmp[BF_ERR_LEN];
    tmp_name_for(tmp, sizeof tmp, path);
    hid_t f = bf_h5_create(tmp, err);
    if (f < 0) return -1;
    int rc = write_contents(f, m, meta, err);
    if (bf_h5_close(f, tmp, rc ? NULL : err)) rc = -1;
    if (rc == 0) rc = bf_commit_file(tmp, path, err);
    if (rc) {
        unlink(tmp);
        /* prefix the message with the checkpoint being written */
        char msg[BF_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        bf_fail(err, "saving checkpoint %s failed: %s", path, msg);
    }
    return rc;
}

int bf_checkpoint_read_config(const char *path, bf_model_config *cfg, bf_err *err) {
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    memset(cfg, 0, sizeof *cfg);
    int rc = 0;
    if (!bf_h5_exists(f, "/model")) rc = bf_fail(err, "%s: no /model group: not a budgetformer checkpoint", path);
    for (int i = 0; rc == 0 && i < (int)(sizeof model_attrs / sizeof *model_attrs); i++) {
        long long v;
        if (bf_h5_read_attr_int(f, "/model", model_attrs[i], &v, err)) rc = -1;
        else if (v < 0 || v > 1000000000LL) rc = bf_fail(err, "%s: /model attribute %s = %lld is out of range", path, model_attrs[i], v);
        else *model_attr_ptr(cfg, i) = (int)v;
    }
    H5Fclose(f);
    char msg[256];
    if (rc == 0 && bf_model_config_check(cfg, msg, sizeof msg))
        rc = bf_fail(err, "%s: /model attributes describe an invalid model: %s", path, msg);
    return rc;
}

int bf_checkpoint_load_model(const char *path, bf_model *m, char ***vocab, size_t *vocab_size, char ***label_names,
                             size_t *n_classes, bf_err *err) {
    bf_model_config fc;
    if (bf_checkpoint_read_config(path, &fc, err)) return -1;
    if (memcmp(&fc, &m->cfg, sizeof fc) != 0)
        return bf_fail(err, "%s: the checkpoint's model shape differs from the one expected", path);
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    char name[128];
    int rc = 0;
    for (int i = 0; rc == 0 && i < m->n_tensors; i++) {
        const bf_tensor_info *t = &m->tensors[i];
        unsigned long long dims[2] = {(unsigned long long)t->shape[0], (unsigned long long)t->shape[1]};
        snprintf(name, sizeof name, "/model/%s", t->name);
        rc = bf_h5_read_into(f, name, H5T_NATIVE_FLOAT, t->ndim, dims, m->params + t->offset, err);
    }
    if (rc == 0 && vocab) {
        rc = bf_h5_read_strings(f, "/vocab", vocab, vocab_size, err);
        if (rc == 0 && *vocab_size != (size_t)m->cfg.vocab_size)
            rc = bf_fail(err, "%s: /vocab has %zu entries but /model says vocab_size %d", path, *vocab_size, m->cfg.vocab_size);
    }
    if (rc == 0 && label_names) {
        rc = bf_h5_read_strings(f, "/label_names", label_names, n_classes, err);
        if (rc == 0 && *n_classes != (size_t)m->cfg.n_classes)
            rc = bf_fail(err, "%s: /label_names has %zu entries but /model says n_classes %d", path, *n_classes, m->cfg.n_classes);
    }
    H5Fclose(f);
    /* A weight that is not finite means a damaged or diverged checkpoint: refuse it rather than predict NaN. */
    for (size_t i = 0; rc == 0 && i < m->n_params; i++)
        if (!(m->params[i] - m->params[i] == 0.0f)) rc = bf_fail(err, "%s: the model holds a non-finite weight", path);
    return rc;
}
