/* checkpoint: HDF5 checkpoints with a SHA-256 sidecar, atomic commit, rotation (see checkpoint.h and
 * docs/CHECKPOINTS.md). */
#include "budgetformer/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "budgetformer/config.h"
#include "budgetformer/durable.h"
#include "h5io.h"
#include "ckpt_internal.h"

/* bf_ckpt_file.file holds a hid_t without checkpoint.h naming HDF5. */
_Static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t is not 64-bit (HDF5 >= 1.10 expected)");
#include "budgetformer/headstats.h"

/* ---- names ------------------------------------------------------------------------------------- */

/* "<dir>/.<base><suffix>.tmp": the temporary name of a file being written (never matches step-*.h5). */
static void tmp_name_for(char *buf, size_t len, const char *path) {
    char d[BF_CKPT_PATH_LEN + 64], b[BF_CKPT_PATH_LEN + 64];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    snprintf(buf, len, "%s/.%s.tmp", dirname(d), basename(b));
}

int bf_checkpoint_is_temp_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    return base[0] == '.' && n > 5 && !strcmp(base + n - 4, ".tmp");
}

/* "<dir>/.<name>.sha256": hidden like the temporary files, so a listing of checkpoints/ shows checkpoints only. */
void bf_checkpoint_sidecar_name(char *buf, size_t len, const char *path) {
    char d[BF_CKPT_PATH_LEN + 64], b[BF_CKPT_PATH_LEN + 64];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    const char *base = basename(b);
    if (strchr(path, '/')) snprintf(buf, len, "%s/.%s.sha256", dirname(d), base);
    else snprintf(buf, len, ".%s.sha256", base);
}

const char *bf_digest_status_name(bf_digest_status s) {
    switch (s) {
    case BF_DIGEST_VALID: return "valid";
    case BF_DIGEST_MISSING: return "missing";
    case BF_DIGEST_CORRUPT: return "corrupt";
    }
    return "?";
}

/* ---- writing ----------------------------------------------------------------------------------- */

/* Random draws have no counter state: every draw is splitmix64 of (seed, epoch, input index, layer, stream,
 * head) and the data order of (seed, epoch), so the seed and the step determine every later draw. */
static const char kRngNote[] =
    "counter-free: draws are splitmix64(seed, epoch, input index, layer, stream, head) and the data order is "
    "a pure function of (seed, epoch); seed and step determine every later draw";

static int write_coordinator(hid_t f, const bf_coordinator *co, long step, bf_err *err) {
    const char *g = "/coordinator";
    if (bf_h5_create_group(f, g, err)) return -1;
    return bf_h5_write_attr_int(f, g, "shape", co->shape, err) ||
                   bf_h5_write_attr_str(f, g, "shape_name", bf_explore_shape_name(co->shape), err) ||
                   bf_h5_write_attr_f64(f, g, "eps_start", co->eps_start, err) ||
                   bf_h5_write_attr_f64(f, g, "eps_end", co->eps_end, err) ||
                   bf_h5_write_attr_int(f, g, "steps", co->steps, err) ||
                   bf_h5_write_attr_int(f, g, "window", co->window, err) ||
                   bf_h5_write_attr_int(f, g, "anneal_steps", co->anneal_steps, err) ||
                   bf_h5_write_attr_f64(f, g, "threshold", co->threshold, err) ||
                   bf_h5_write_attr_int(f, g, "anneal_from", co->anneal_from, err) ||
                   bf_h5_write_attr_f64(f, g, "window_sum", co->window_sum, err) ||
                   bf_h5_write_attr_int(f, g, "window_n", co->window_n, err) ||
                   bf_h5_write_attr_f64(f, g, "prev_mean", co->prev_mean, err) ||
                   bf_h5_write_attr_f64(f, g, "eps_next", bf_coordinator_eps(co, step + 1), err) ||
                   bf_h5_write_attr_f64(f, g, "budget_lambda", co->lambda, err) ||
                   bf_h5_write_attr_f64(f, g, "budget_lambda_i", co->lambda_i, err)
               ? -1
               : 0;
}

static int write_provenance(hid_t f, const bf_ckpt_meta *meta, bf_err *err) {
    const char *g = "/provenance";
    if (bf_h5_create_group(f, g, err)) return -1;
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char h5v[64], when[64] = "", host[256] = "";
    snprintf(h5v, sizeof h5v, "%u.%u.%u", maj, min, rel);
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    const char *blas = meta->blas_config, *mpi = meta->mpi_library_version;
    if (bf_h5_write_attr_str(f, g, "budgetformer_version", BF_VERSION, err) ||
        bf_h5_write_attr_str(f, g, "hdf5_version", h5v, err) ||
        bf_h5_write_attr_str(f, g, "openblas_config", blas ? blas : "", err) ||
        bf_h5_write_attr_str(f, g, "openssl_version", OpenSSL_version(OPENSSL_VERSION), err) ||
        bf_h5_write_attr_str(f, g, "mpi_library_version", mpi ? mpi : "", err) ||
        bf_h5_write_attr_str(f, g, "created_utc", when, err) || bf_h5_write_attr_str(f, g, "hostname", host, err))
        return -1;
#ifdef BF_GIT_COMMIT
    if (bf_h5_write_attr_str(f, g, "git_commit", BF_GIT_COMMIT, err)) return -1;
#endif
    return 0;
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
    /* Added options (docs/MODEL.md) are stored beside MODEL.md's attributes so a checkpoint says which function
     * it computes; readers take an absent one as 0, MODEL.md's default. */
    for (int i = 0; i < BF_MODEL_N_FIELDS; i++)
        if (bf_h5_write_attr_int(f, "/model", bf_model_fields[i].name, bf_model_field_get(&c, i), err)) return -1;
    /* A fixed budget per layer (added option): fixed_budget = -1, which older readers refuse, and the budgets. */
    if (c.fixed_budget == BF_FIXED_PER_LAYER &&
        bf_h5_write_attr_ints(f, "/model", "layer_budgets", c.layer_budgets, c.n_layers, err))
        return -1;
    if (bf_h5_write_strings(f, "/vocab", meta->vocab, meta->vocab_size, err)) return -1;
    if (bf_h5_write_strings(f, "/label_names", meta->label_names, meta->n_classes, err)) return -1;
    if (meta->adam_m && meta->adam_v) {
        unsigned long long n = m->n_params;
        if (bf_h5_write(f, "/optim/m", H5T_NATIVE_FLOAT, 1, &n, meta->adam_m, err)) return -1;
        if (bf_h5_write(f, "/optim/v", H5T_NATIVE_FLOAT, 1, &n, meta->adam_v, err)) return -1;
        if (bf_h5_write_attr_str(f, "/optim", "algorithm", "adamw", err) ||
            bf_h5_write_attr_int(f, "/optim", "t", meta->step, err))
            return -1;
    }
    const char *s = "/state";
    if (bf_h5_create_group(f, s, err)) return -1;
    int64_t pos = (int64_t)meta->step * meta->batch_size;
    int64_t n = meta->n_train > 0 ? meta->n_train : 1;
    if (bf_h5_write_attr_int(f, s, "format_version", BF_CHECKPOINT_FORMAT, err) ||
        bf_h5_write_attr_int(f, s, "step", meta->step, err) || bf_h5_write_attr_u64(f, s, "seed", meta->seed, err) ||
        bf_h5_write_attr_int(f, s, "world_size", meta->world_size, err) ||
        bf_h5_write_attr_int(f, s, "batch_size", meta->batch_size, err) ||
        bf_h5_write_attr_int(f, s, "n_train", meta->n_train, err) ||
        bf_h5_write_attr_int(f, s, "stream_position", pos, err) ||
        bf_h5_write_attr_int(f, s, "epoch", pos / n, err) ||
        bf_h5_write_attr_int(f, s, "epoch_position", pos % n, err) ||
        bf_h5_write_attr_int(f, s, "lr_schedule_step", meta->step, err) ||
        bf_h5_write_attr_f64(f, s, "lr", meta->lr, err) ||
        bf_h5_write_attr_int(f, s, "skipped_steps", meta->skipped_steps, err) ||
        bf_h5_write_attr_int(f, s, "nonfinite_run", meta->nonfinite_run, err) ||
        bf_h5_write_attr_str(f, s, "rng", kRngNote, err) ||
        bf_h5_write_attr_str(f, s, "config", meta->config_text ? meta->config_text : "", err))
        return -1;
    if (meta->coord && write_coordinator(f, meta->coord, meta->step, err)) return -1;
    if (meta->headstats) {
        unsigned long long hn = meta->headstats_len;
        if (bf_h5_write(f, "/headstats/block", H5T_NATIVE_INT64, 1, &hn, meta->headstats, err) ||
            bf_h5_write_attr_int(f, "/headstats", "n_classes", c.n_classes, err) ||
            bf_h5_write_attr_int(f, "/headstats", "n_layers", c.n_layers, err) ||
            bf_h5_write_attr_int(f, "/headstats", "n_heads", c.n_heads, err))
            return -1;
    }
    if (write_provenance(f, meta, err)) return -1;
    /* The precision the run trained in: provenance only, the weights above are fp32 either way, and a run
     * may resume or evaluate in the other precision (docs/CHECKPOINTS.md). */
    return bf_h5_write_attr_str(f, "/provenance", "precision", bf_precision_name(m->precision), err) ||
                   bf_h5_write_attr_str(f, "/provenance", "bf16_backend",
                                        m->precision == BF_PREC_BF16 ? bf_bf16_backend() : "", err)
               ? -1
               : 0;
}

/* Builds the whole HDF5 file in memory (core driver, no backing store) and returns its bytes. */
static int build_image(const char *name, const bf_model *m, const bf_ckpt_meta *meta, unsigned char **image,
                       size_t *len, bf_err *err) {
    bf_h5_init();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return bf_fail(err, "HDF5: cannot set up an in-memory file");
    }
    hid_t f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return bf_fail(err, "HDF5: cannot create an in-memory file");
    int rc = write_contents(f, m, meta, err);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_LOCAL) < 0) rc = bf_fail(err, "HDF5: flushing the in-memory file failed");
    if (rc == 0) {
        ssize_t n = H5Fget_file_image(f, NULL, 0);
        if (n <= 0) rc = bf_fail(err, "HDF5: cannot get the file image");
        else {
            *image = bf_xmalloc((size_t)n);
            if (H5Fget_file_image(f, *image, (size_t)n) != n) {
                free(*image);
                *image = NULL;
                rc = bf_fail(err, "HDF5: cannot copy the file image");
            } else *len = (size_t)n;
        }
    }
    if (H5Fclose(f) < 0 && rc == 0) rc = bf_fail(err, "HDF5: closing the in-memory file failed");
    if (rc && *image) {
        free(*image);
        *image = NULL;
    }
    return rc;
}

int bf_checkpoint_image(const bf_model *m, const bf_ckpt_meta *meta, unsigned char **image, size_t *len,
                        bf_err *err) {
    *image = NULL;
    *len = 0;
    return bf_ckpt_check_before_save("the checkpoint image", m, meta, err) ||
                   build_image("checkpoint image [in memory]", m, meta, image, len, err)
               ? -1
               : 0;
}

int bf_checkpoint_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err) {
    char tmp[2 * BF_CKPT_PATH_LEN + 160], side[2 * BF_CKPT_PATH_LEN + 160], side_tmp[2 * BF_CKPT_PATH_LEN + 200];
    tmp_name_for(tmp, sizeof tmp, path);
    bf_checkpoint_sidecar_name(side, sizeof side, path);
    snprintf(side_tmp, sizeof side_tmp, "%s.tmp", side); /* hidden already: ".<name>.sha256.tmp" */
    unsigned char *image = NULL;
    size_t len = 0;
    int rc = bf_ckpt_check_before_save(path, m, meta, err);
    if (rc == 0) rc = build_image(tmp, m, meta, &image, &len, err);
    char hex[65] = "";
    if (rc == 0) {
        bf_sha256_hex(image, len, hex);
        rc = bf_write_whole_file(tmp, image, len, 1, err);
    }
    free(image);
    if (rc == 0) {
        char b[BF_CKPT_PATH_LEN], line[BF_CKPT_PATH_LEN + 80];
        snprintf(b, sizeof b, "%s", path);
        int n = snprintf(line, sizeof line, "%s  %s\n", hex, basename(b)); /* sha256sum's format */
        rc = bf_write_whole_file(side_tmp, line, (size_t)n, 0, err);
    }
    /* The sidecar goes into place first, so a file under the checkpoint's name always has its digest. */
    if (rc == 0) rc = bf_commit_file(side_tmp, side, err);
    if (rc == 0) bf_ckpt_crash_point(BF_CKPT_CRASH_BEFORE_RENAME, "before renaming the complete temporary file into place");
    if (rc == 0) rc = bf_commit_file(tmp, path, err);
    if (rc == 0) bf_ckpt_crash_point(BF_CKPT_CRASH_AFTER_RENAME, "after renaming the checkpoint into place");
    bf_ckpt_disarm_fault(); /* one save only */
    if (rc) {
        unlink(tmp);
        unlink(side_tmp);
        char msg[BF_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        bf_fail(err, "saving checkpoint %s failed: %s", path, msg);
    }
    return rc;
}

/* ---- opening ----------------------------------------------------------------------------------- */

/* Reads the first 64 hex digits of a sidecar; 0 or -1 (missing), -2 (malformed). */
static int read_sidecar(const char *path, char hex[65]) {
    char side[2 * BF_CKPT_PATH_LEN + 160];
    bf_checkpoint_sidecar_name(side, sizeof side, path);
    FILE *f = fopen(side, "r");
    if (!f) return -1;
    char line[256] = "";
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got) return -2;
    for (int i = 0; i < 64; i++) {
        char c = line[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return -2;
        hex[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    hex[64] = '\0';
    return (line[64] == ' ' || line[64] == '\n' || line[64] == '\0') ? 0 : -2;
}

void bf_checkpoint_close(bf_ckpt_file *cf) {
    if (cf->file >= 0) H5Fclose(cf->file);
    cf->file = -1;
}

int bf_checkpoint_open_ex(const char *path, bf_digest_policy policy, int open_hdf5, bf_ckpt_file *cf,
                          bf_err *err) {
    memset(cf, 0, sizeof *cf);
    cf->file = -1;
    cf->digest = BF_DIGEST_MISSING;
    snprintf(cf->path, sizeof cf->path, "%s", path);
    bf_h5_init();
    if (bf_checkpoint_is_temp_name(path))
        return bf_fail(err, "%s is a temporary file left by an interrupted save, not a checkpoint; "
                            "checkpoints are named step-NNNNNNNN.h5", path);
    unsigned char *buf = NULL;
    size_t len = 0;
    if (bf_read_whole_file(path, &buf, &len, err)) return -1;
    cf->size = (long long)len;
    bf_sha256_hex(buf, len, cf->sha256);
    char side[2 * BF_CKPT_PATH_LEN + 160];
    bf_checkpoint_sidecar_name(side, sizeof side, path);
    int sc = read_sidecar(path, cf->sidecar_sha256);
    if (sc == -1) {
        cf->digest = BF_DIGEST_MISSING;
        cf->sidecar_sha256[0] = '\0';
    } else if (sc == -2) {
        cf->digest = BF_DIGEST_CORRUPT;
        cf->sidecar_sha256[0] = '\0';
    } else {
        cf->digest = strcmp(cf->sha256, cf->sidecar_sha256) ? BF_DIGEST_CORRUPT : BF_DIGEST_VALID;
    }
    int rc = 0;
    if (policy == BF_DIGEST_REPORT)
        ;
    else if (cf->digest == BF_DIGEST_CORRUPT)
        rc = sc == -2 ? bf_fail(err, "%s: corrupt: its digest file %s is malformed (expected a SHA-256 in hex)", path, side)
                      : bf_fail(err, "%s: corrupt: the SHA-256 of its %zu bytes does not match %s (the file was "
                                     "damaged, truncated or changed after it was written)", path, len, side);
    else if (cf->digest == BF_DIGEST_MISSING && policy == BF_DIGEST_REQUIRED)
        rc = bf_fail(err, "%s: its digest file %s is missing, so its contents cannot be verified (a checkpoint "
                          "copied without it? copy both files)", path, side);
    if (rc == 0 && open_hdf5) {
        /* Only the verified bytes reach HDF5: it parses this memory image, not the file again. */
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 || H5Pset_file_image(fapl, buf, len) < 0)
            rc = bf_fail(err, "%s: HDF5 cannot set up the in-memory image", path);
        else {
            /* The core driver refuses a name that exists on disk when given an image: name the copy. */
            char name[BF_CKPT_PATH_LEN + 16];
            snprintf(name, sizeof name, "%s [in memory]", path);
            cf->file = H5Fopen(name, H5F_ACC_RDONLY, fapl);
            if (cf->file < 0)
                rc = bf_fail(err, "%s: not an HDF5 file (not a budgetformer checkpoint, or truncated)", path);
        }
        if (fapl >= 0) H5Pclose(fapl);
    }
    free(buf);
    return rc;
}

int bf_checkpoint_open(const char *path, bf_digest_policy policy, bf_ckpt_file *cf, bf_err *err) {
    return bf_checkpoint_open_ex(path, policy, 1, cf, err);
}

int bf_checkpoint_file_model_config(const bf_ckpt_file *cf, bf_model_config *cfg, bf_err *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!bf_h5_exists(cf->file, "/model"))
        return bf_fail(err, "%s: no /model group: not a budgetformer checkpoint", cf->path);
    for (int i = 0; i < BF_MODEL_N_FIELDS; i++) {
        const char *name = bf_model_fields[i].name;
        long long v = 0;
        if (bf_model_fields[i].added && H5Aexists_by_name(cf->file, "/model", name, H5P_DEFAULT) <= 0) {
            bf_model_field_set(cfg, i, 0); /* a checkpoint from before the option: MODEL.md's default */
            continue;
        }
        if (bf_h5_read_attr_int(cf->file, "/model", name, &v, err)) return -1;
        if (bf_model_fields[i].added && (v < 0 || v > bf_model_fields[i].max)) /* 0 = MODEL.md's model */
            return bf_fail(err, "%s: /model attribute %s = %lld: expected 0 (MODEL.md's model) to %d (the added "
                                "option, docs/MODEL.md); this file may come from a newer budgetformer",
                           cf->path, name, v, bf_model_fields[i].max);
        int per_layer = !strcmp(name, "fixed_budget") && v == BF_FIXED_PER_LAYER; /* added option */
        if ((v < 0 && !per_layer) || v > 1000000000LL)
            return bf_fail(err, "%s: /model attribute %s = %lld is out of range", cf->path, name, v);
        bf_model_field_set(cfg, i, (int)v);
    }
    if (cfg->fixed_budget == BF_FIXED_PER_LAYER) {
        if (cfg->n_layers < 1 || cfg->n_layers > BF_MAX_LAYERS)
            return bf_fail(err, "%s: /model attribute n_layers = %d: expected 1..%d with a fixed budget per layer",
                           cf->path, cfg->n_layers, BF_MAX_LAYERS);
        if (bf_h5_read_attr_ints(cf->file, "/model", "layer_budgets", cfg->layer_budgets, cfg->n_layers, err)) {
            char msg[BF_ERR_LEN];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            return bf_fail(err, "%s (/model fixed_budget = -1 means a fixed budget per layer, docs/FILES.md)", msg);
        }
    }
    char msg[256];
    if (bf_model_config_check(cfg, msg, sizeof msg))
        return bf_fail(err, "%s: /model attributes describe an invalid model: %s", cf->path, msg);
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------------- */

void bf_ckpt_state_free(bf_ckpt_state *st) {
    free(st->headstats);
    free(st->config_text);
    memset(st, 0, sizeof *st);
}

static int require_group(const bf_ckpt_file *cf, const char *g, const char *what, bf_err *err) {
    if (!bf_h5_exists(cf->file, g))
        return bf_fail(err, "%s: missing group %s (%s): not a resumable budgetformer checkpoint", cf->path, g, what);
    return 0;
}

static int read_coordinator(const bf_ckpt_file *cf, bf_coordinator *co, bf_err *err) {
    hid_t f = cf->file;
    const char *g = "/coordinator";
    if (require_group(cf, g, "the exploration coordinator's state", err)) return -1;
    long shape = 0;
    double eps_start = 0, eps_end = 0, threshold = 0;
    if (bf_h5_read_attr_long(f, g, "shape", 0, &shape, err) || bf_h5_read_attr_f64(f, g, "eps_start", &eps_start, err) ||
        bf_h5_read_attr_f64(f, g, "eps_end", &eps_end, err) || bf_h5_read_attr_long(f, g, "steps", 0, &co->steps, err) ||
        bf_h5_read_attr_long(f, g, "window", 0, &co->window, err) ||
        bf_h5_read_attr_long(f, g, "anneal_steps", 0, &co->anneal_steps, err) ||
        bf_h5_read_attr_f64(f, g, "threshold", &threshold, err) ||
        bf_h5_read_attr_long(f, g, "anneal_from", 0, &co->anneal_from, err) ||
        bf_h5_read_attr_f64(f, g, "window_sum", &co->window_sum, err) ||
        bf_h5_read_attr_long(f, g, "window_n", 0, &co->window_n, err) || bf_h5_read_attr_f64(f, g, "prev_mean", &co->prev_mean, err))
        return -1;
    if (shape > BF_EXPLORE_ADAPTIVE) return bf_fail(err, "%s: /coordinator shape %ld is unknown", cf->path, shape);
    co->shape = (bf_explore_shape)shape;
    co->eps_start = (float)eps_start;
    co->eps_end = (float)eps_end;
    co->threshold = (float)threshold;
    /* The budget multiplier (train.budget_target); files written before it have none: lambda 0. */
    co->lambda = co->lambda_i = 0.0;
    if (H5Aexists_by_name(f, g, "budget_lambda", H5P_DEFAULT) > 0 &&
        (bf_h5_read_attr_f64(f, g, "budget_lambda", &co->lambda, err) ||
         bf_h5_read_attr_f64(f, g, "budget_lambda_i", &co->lambda_i, err)))
        return -1;
    if (!isfinite(co->lambda) || !isfinite(co->lambda_i))
        return bf_fail(err, "%s: /coordinator budget_lambda = %g, budget_lambda_i = %g: expected finite numbers",
                       cf->path, co->lambda, co->lambda_i);
    return 0;
}

int bf_checkpoint_read_state(const bf_ckpt_file *cf, bf_ckpt_state *st, bf_err *err) {
    memset(st, 0, sizeof *st);
    hid_t f = cf->file;
    const char *s = "/state";
    /* The file was opened, so it has /model: without /state it is a model-only file (the Python package's
     * save() of a model made in Python), which eval, predict and inspect read but nothing can continue. */
    if (!bf_h5_exists(f, s))
        return bf_fail(err, "%s: a model-only file (a /model group and no /state: no training state, as the Python "
                            "package's save() writes for a model made in Python): it can be evaluated, not resumed",
                       cf->path);
    long fv = 0, ws = 0, bs = 0;
    if (bf_h5_read_attr_long(f, s, "format_version", 0, &fv, err)) return -1;
    st->format_version = (int)fv;
    if (fv < BF_CHECKPOINT_FORMAT)
        return bf_fail(err, "%s: checkpoint format %ld holds no resumable training state (written before format %d); "
                            "it can be evaluated but not resumed", cf->path, fv, BF_CHECKPOINT_FORMAT);
    if (fv > BF_CHECKPOINT_FORMAT)
        return bf_fail(err, "%s: checkpoint format %ld is newer than this budgetformer reads (%d)", cf->path, fv,
                       BF_CHECKPOINT_FORMAT);
    long tmp[4] = {0, 0, 0, 0};
    if (bf_h5_read_attr_long(f, s, "step", 0, &st->step, err) || bf_h5_read_attr_u64(f, s, "seed", &st->seed, err) ||
        bf_h5_read_attr_long(f, s, "world_size", 1, &ws, err) || bf_h5_read_attr_long(f, s, "batch_size", 1, &bs, err) ||
        bf_h5_read_attr_long(f, s, "n_train", 0, &tmp[0], err) || bf_h5_read_attr_long(f, s, "stream_position", 0, &tmp[1], err) ||
        bf_h5_read_attr_long(f, s, "epoch", 0, &tmp[2], err) || bf_h5_read_attr_long(f, s, "epoch_position", 0, &tmp[3], err) ||
        bf_h5_read_attr_long(f, s, "skipped_steps", 0, &st->skipped_steps, err) ||
        bf_h5_read_attr_long(f, s, "nonfinite_run", 0, &st->nonfinite_run, err) ||
        bf_h5_read_attr_str(f, s, "config", &st->config_text, err)) {
        bf_ckpt_state_free(st);
        return -1;
    }
    int64_t n_train = tmp[0], pos = tmp[1], epoch = tmp[2], epos = tmp[3];
    st->world_size = (int)ws;
    st->batch_size = (int)bs;
    st->n_train = n_train;
    st->stream_position = pos;
    st->epoch = epoch;
    st->epoch_position = epos;
    if (pos != (int64_t)st->step * st->batch_size || (n_train > 0 && (epoch != pos / n_train || epos != pos % n_train))) {
        bf_ckpt_state_free(st);
        return bf_fail(err, "%s: /state data position (stream_position %lld, epoch %lld, epoch_position %lld) "
                            "disagrees with step %ld x batch_size %d", cf->path, (long long)pos, (long long)epoch,
                       (long long)epos, st->step, st->batch_size);
    }
    if (read_coordinator(cf, &st->coord, err)) {
        bf_ckpt_state_free(st);
        return -1;
    }
    return 0;
}

static int read_model_tensors(const bf_ckpt_file *cf, bf_model *m, bf_err *err) {
    bf_model_config fc;
    if (bf_checkpoint_file_model_config(cf, &fc, err)) return -1;
    if (memcmp(&fc, &m->cfg, sizeof fc) != 0)
        return bf_fail(err, "%s: the checkpoint's model shape differs from the one expected", cf->path);
    char name[128];
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *t = &m->tensors[i];
        unsigned long long dims[2] = {(unsigned long long)t->shape[0], (unsigned long long)t->shape[1]};
        snprintf(name, sizeof name, "/model/%s", t->name);
        if (bf_h5_read_into(cf->file, name, H5T_NATIVE_FLOAT, t->ndim, dims, m->params + t->offset, err)) return -1;
    }
    /* A weight that is not finite means a damaged or diverged checkpoint: refuse it rather than predict NaN. */
    return bf_ckpt_check_weights(cf->path, m, err);
}

int bf_checkpoint_read_model(const bf_ckpt_file *cf, bf_model *m, bf_err *err) {
    return read_model_tensors(cf, m, err);
}

static int read_names(const bf_ckpt_file *cf, const bf_model *m, char ***vocab, size_t *vocab_size,
                      char ***label_names, size_t *n_classes, bf_err *err) {
    if (vocab && bf_h5_read_strings(cf->file, "/vocab", vocab, vocab_size, err)) return -1;
    if (label_names && bf_h5_read_strings(cf->file, "/label_names", label_names, n_classes, err)) return -1;
    if (bf_ckpt_check_names(cf->path, &m->cfg, vocab ? (const char *const *)*vocab : NULL, vocab ? *vocab_size : 0,
                    label_names ? (const char *const *)*label_names : NULL, label_names ? *n_classes : 0, err)) {
        if (vocab) {
            bf_h5_free_strings(*vocab, *vocab_size);
            *vocab = NULL;
        }
        if (label_names) {
            bf_h5_free_strings(*label_names, *n_classes);
            *label_names = NULL;
        }
        return -1;
    }
    return 0;
}

/* /optim's step counter and /headstats' shape attributes must agree with /state and /model. */
static int check_attrs(const bf_ckpt_file *cf, const bf_model *m, long step, bf_err *err) {
    long long t = 0;
    if (bf_h5_read_attr_int(cf->file, "/optim", "t", &t, err)) return -1;
    if (t != step)
        return bf_fail(err, "%s: /optim attribute t = %lld but /state step = %ld: the AdamW moments belong to another "
                            "step", cf->path, t, step);
    const char *names[] = {"n_classes", "n_layers", "n_heads"};
    const int want[] = {m->cfg.n_classes, m->cfg.n_layers, m->cfg.n_heads};
    for (int i = 0; i < 3; i++) {
        long long v = 0;
        if (bf_h5_read_attr_int(cf->file, "/headstats", names[i], &v, err)) return -1;
        if (v != want[i])
            return bf_fail(err, "%s: /headstats attribute %s = %lld but /model says %d", cf->path, names[i], v, want[i]);
    }
    return 0;
}

int bf_checkpoint_read_training(const bf_ckpt_file *cf, bf_model *m, float *adam_m, float *adam_v,
                                size_t headstats_len, bf_ckpt_state *st, bf_err *err) {
    if (bf_checkpoint_read_state(cf, st, err)) return -1;
    int rc = read_model_tensors(cf, m, err);
    char **v = NULL, **l = NULL;
    size_t nv = 0, nl = 0;
    if (rc == 0) rc = read_names(cf, m, &v, &nv, &l, &nl, err);
    bf_h5_free_strings(v, nv);
    bf_h5_free_strings(l, nl);
    if (rc == 0) rc = require_group(cf, "/optim", "the AdamW moments", err);
    unsigned long long n = m->n_params;
    if (rc == 0) rc = bf_h5_read_into(cf->file, "/optim/m", H5T_NATIVE_FLOAT, 1, &n, adam_m, err);
    if (rc == 0) rc = bf_h5_read_into(cf->file, "/optim/v", H5T_NATIVE_FLOAT, 1, &n, adam_v, err);
    if (rc == 0) rc = require_group(cf, "/headstats", "head-usage counts since the last /heads record", err);
    if (rc == 0) {
        unsigned long long hd[1] = {0};
        rc = bf_h5_read_alloc(cf->file, "/headstats/block", H5T_NATIVE_INT64, 1, hd, (void **)&st->headstats, err);
        if (rc == 0) st->headstats_len = (size_t)hd[0];
        /* A checkpoint written before the budget diagnostics holds only the counts in front of them: they go
         * on, and the diagnostics histograms of this interval start from zero (docs/LOGS.md). */
        size_t legacy = bf_headstats_legacy_len(m->cfg.n_classes, m->cfg.n_layers, m->cfg.n_heads);
        if (rc == 0 && headstats_len > legacy && st->headstats_len == legacy) {
            bf_warn("%s: /headstats/block has the %zu counts of a checkpoint without the budget diagnostics: they "
                    "are kept, the diagnostics of its /heads interval start from zero here", cf->path, legacy);
            st->headstats = bf_xrealloc(st->headstats, headstats_len * sizeof(int64_t));
            memset(st->headstats + legacy, 0, (headstats_len - legacy) * sizeof(int64_t));
            st->headstats_len = headstats_len;
        }
        if (rc == 0 && headstats_len && st->headstats_len != headstats_len)
            rc = bf_fail(err, "%s: /headstats/block has %zu counts, expected %zu for this model", cf->path,
                         st->headstats_len, headstats_len);
    }
    if (rc == 0) rc = check_attrs(cf, m, st->step, err);
    if (rc == 0)
        rc = bf_ckpt_check_training(cf->path, m, adam_m, adam_v, st->step, st->skipped_steps, st->nonfinite_run, &st->coord,
                            st->headstats, st->headstats_len, err);
    if (rc) bf_ckpt_state_free(st);
    return rc;
}

int bf_checkpoint_validate(const char *path, bf_err *err) {
    bf_ckpt_file cf;
    int rc = bf_checkpoint_open(path, BF_DIGEST_REQUIRED, &cf, err);
    bf_model_config mc;
    if (rc == 0) rc = bf_checkpoint_file_model_config(&cf, &mc, err);
    if (rc == 0) {
        bf_model m;
        bf_model_init(&m, &mc, 1);
        float *am = bf_xmalloc(m.n_params * sizeof(float)), *av = bf_xmalloc(m.n_params * sizeof(float));
        bf_ckpt_state st;
        rc = bf_checkpoint_read_training(&cf, &m, am, av, 0, &st, err);
        if (rc == 0) bf_ckpt_state_free(&st);
        free(am);
        free(av);
        bf_model_free(&m);
    }
    bf_checkpoint_close(&cf);
    return rc;
}

/* ---- model-only loading (eval) ------------------------------------------------------------------ */

/* Opens a checkpoint for reading its model: the digest is checked when a sidecar exists; a missing one is
 * accepted with a warning (files written by other tools have none). */
static int open_for_model(const char *path, bf_ckpt_file *cf, bf_err *err) {
    if (bf_checkpoint_open(path, BF_DIGEST_IF_PRESENT, cf, err)) {
        bf_checkpoint_close(cf);
        return -1;
    }
    if (cf->digest == BF_DIGEST_MISSING) {
        char side[2 * BF_CKPT_PATH_LEN + 160];
        bf_checkpoint_sidecar_name(side, sizeof side, path);
        bf_warn("%s has no digest file beside it (%s): its contents are not verified", path, side);
    }
    return 0;
}

int bf_checkpoint_load_model(const char *path, bf_model *m, char ***vocab, size_t *vocab_size, char ***label_names,
                             size_t *n_classes, bf_err *err) {
    bf_ckpt_file cf;
    if (open_for_model(path, &cf, err)) return -1;
    int rc = read_model_tensors(&cf, m, err);
    if (rc == 0) rc = read_names(&cf, m, vocab, vocab_size, label_names, n_classes, err);
    bf_checkpoint_close(&cf);
    return rc;
}

int bf_checkpoint_open_model(const char *path, int max_batch, bf_model *m, char ***vocab, size_t *vocab_size,
                             char ***label_names, size_t *n_classes, bf_err *err) {
    memset(m, 0, sizeof *m);
    *vocab = *label_names = NULL;
    *vocab_size = *n_classes = 0;
    bf_ckpt_file cf;
    if (open_for_model(path, &cf, err)) return -1; /* one open: the digest is computed once */
    bf_model_config cfg;
    int rc = bf_checkpoint_file_model_config(&cf, &cfg, err);
    if (rc == 0) {
        bf_model_init(m, &cfg, max_batch);
        rc = read_model_tensors(&cf, m, err);
        if (rc == 0) rc = read_names(&cf, m, vocab, vocab_size, label_names, n_classes, err);
        if (rc) bf_model_free(m);
    }
    bf_checkpoint_close(&cf);
    return rc;
}

