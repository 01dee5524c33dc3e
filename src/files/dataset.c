/* dataset: read and write the prepared dataset file of FILES.md (see dataset.h). */
#include "budgetformer/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/durable.h"
#include "h5io.h"

int bf_dataset_token_bytes(size_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

int32_t bf_dataset_token(const bf_dataset *d, size_t i, size_t t) {
    size_t k = i * (size_t)d->max_len + t;
    return d->token_bytes == 2 ? (int32_t)((const uint16_t *)d->tokens)[k] : ((const int32_t *)d->tokens)[k];
}

void bf_dataset_rows(const bf_dataset *d, size_t lo, size_t n, int32_t *out) {
    size_t k0 = lo * (size_t)d->max_len, len = n * (size_t)d->max_len;
    if (d->token_bytes == 4) {
        memcpy(out, (const int32_t *)d->tokens + k0, len * sizeof(int32_t));
        return;
    }
    const uint16_t *src = (const uint16_t *)d->tokens + k0;
    for (size_t k = 0; k < len; k++) out[k] = src[k];
}

/* What the header holds that a trainer relies on; messages start with "FILE: ...". */
static int validate_header(const bf_dataset *d, const char *path, bf_err *err) {
    const size_t V = d->vocab_size;
    if (d->max_len < 1) return bf_fail(err, "%s: attribute max_len is %d: expected >= 1", path, d->max_len);
    if (d->n_classes < 1) return bf_fail(err, "%s: attribute n_classes is %d: expected >= 1", path, d->n_classes);
    if (V < 2 || V > (size_t)INT32_MAX)
        return bf_fail(err, "%s: dataset /vocab has %zu entries: expected at least 2 (\"<pad>\", \"<unk>\")", path, V);
    if (strcmp(d->vocab[0], "<pad>") != 0 || strcmp(d->vocab[1], "<unk>") != 0)
        return bf_fail(err, "%s: dataset /vocab starts with \"%s\", \"%s\": expected \"<pad>\", \"<unk>\"", path,
                       d->vocab[0], d->vocab[1]);
    return 0;
}

/* Input i (its T token ids as int32, its length and label): ids in [0, V), PAD exactly from the length on,
 * a length in [1, T], a label in [0, C). Messages start with "FILE: dataset /x ...". */
static int validate_row(const bf_dataset *d, size_t i, const int32_t *row, int32_t len, int32_t label,
                        const char *path, bf_err *err) {
    const size_t T = (size_t)d->max_len, V = d->vocab_size, C = (size_t)d->n_classes;
    if (len < 1 || (size_t)len > T)
        return bf_fail(err, "%s: dataset /lengths[%zu] = %d: expected a length in [1, %zu]", path, i, len, T);
    for (size_t t = 0; t < T; t++) {
        const int32_t id = row[t];
        if (id < 0 || (size_t)id >= V)
            return bf_fail(err, "%s: dataset /tokens[%zu, %zu] = %d: expected a token id in [0, %zu)", path, i, t, id,
                           V);
        if (t < (size_t)len && id == 0)
            return bf_fail(err,
                           "%s: dataset /tokens[%zu, %zu] is PAD (0) inside the length %d: expected a non-zero "
                           "token id before the length",
                           path, i, t, len);
        if (t >= (size_t)len && id != 0)
            return bf_fail(err, "%s: dataset /tokens[%zu, %zu] = %d after the length %d: expected PAD (0)", path, i, t,
                           id, len);
    }
    if (label < 0 || (size_t)label >= C)
        return bf_fail(err, "%s: dataset /labels[%zu] = %d: expected a class index in [0, %zu)", path, i, label, C);
    return 0;
}

int bf_dataset_check(const bf_dataset *d, const char *path, bf_err *err) {
    if (validate_header(d, path, err)) return -1;
    if (d->token_bytes != 2 && d->token_bytes != 4)
        return bf_fail(err, "%s: token_bytes is %d: expected 2 or 4", path, d->token_bytes);
    if (d->token_bytes == 2 && d->vocab_size > 65536)
        return bf_fail(err, "%s: a vocabulary of %zu does not fit uint16 tokens", path, d->vocab_size);
    int32_t *row = bf_xcalloc((size_t)d->max_len, sizeof *row);
    int rc = 0;
    for (size_t i = 0; i < d->n && rc == 0; i++) {
        bf_dataset_rows(d, i, 1, row);
        rc = validate_row(d, i, row, d->lengths[i], d->labels[i], path, err);
    }
    free(row);
    return rc;
}

void bf_dataset_free(bf_dataset *d) {
    if (!d) return;
    if (!d->rows_borrowed) {
        free(d->tokens);
        free(d->lengths);
        free(d->labels);
    }
    free(d->source_line);
    bf_h5_free_strings(d->vocab, d->vocab_size);
    bf_h5_free_strings(d->label_names, (size_t)(d->n_classes > 0 ? d->n_classes : 0));
    free(d->source);
    memset(d, 0, sizeof *d);
}

void bf_dataset_rows_bytes(const bf_dataset *d, size_t out[3]) {
    out[0] = d->n * (size_t)d->max_len * (size_t)d->token_bytes;
    out[1] = out[2] = d->n * sizeof(int32_t);
}

/* Reads a 1-D dataset of length n. */
static int read_vec(hid_t f, const char *path, const char *name, hid_t type, size_t n, void **out, bf_err *err) {
    unsigned long long dims[1] = {0};
    if (bf_h5_read_alloc(f, name, type, 1, dims, out, err) < 0) return -1;
    if (dims[0] != n)
        return bf_fail(err, "%s: dataset %s has shape [%llu]: expected [%zu] (one entry per row of /tokens)", path,
                       name, dims[0], n);
    return 0;
}

/* The shape of a 1-D dataset of one entry per input, checked without reading it. */
static int check_vec_shape(hid_t f, const char *path, const char *name, size_t n, bf_err *err) {
    unsigned long long dims[1] = {0};
    if (bf_h5_shape(f, name, H5T_NATIVE_INT32, 1, dims, err) < 0) return -1;
    if (dims[0] != n)
        return bf_fail(err, "%s: dataset %s has shape [%llu]: expected [%zu] (one entry per row of /tokens)", path,
                       name, dims[0], n);
    return 0;
}

/* Everything but the row arrays, from an open file (left open); `path` names it in messages. */
static int header_from(bf_dataset *d, hid_t f, const char *path, bf_err *err) {
    bf_dataset x = {0};
    size_t n_names = 0;
    long long max_len = 0, n_classes = 0;
    unsigned long long dims[2] = {0, 0};
    void *buf = NULL;
    int rc = -1, r;
    if (bf_h5_read_attr_int(f, "/", "max_len", &max_len, err) < 0) goto done;
    if (bf_h5_read_attr_int(f, "/", "n_classes", &n_classes, err) < 0) goto done;
    if (max_len < 1 || max_len > INT32_MAX) {
        bf_fail(err, "%s: attribute max_len is %lld: expected an integer >= 1", path, max_len);
        goto done;
    }
    if (n_classes < 1 || n_classes > INT32_MAX) {
        bf_fail(err, "%s: attribute n_classes is %lld: expected an integer >= 1", path, n_classes);
        goto done;
    }
    x.max_len = (int)max_len;
    if (bf_h5_read_attr_str(f, "/", "source", &x.source, err) < 0) goto done;
    if (bf_h5_shape(f, "/tokens", H5T_NATIVE_INT32, 2, dims, err) < 0) goto done;
    if (dims[1] != (unsigned long long)max_len) {
        bf_fail(err, "%s: dataset /tokens has shape [%llu, %llu]: expected [N, %lld] (attribute max_len)", path,
                dims[0], dims[1], max_len);
        goto done;
    }
    x.n = (size_t)dims[0];
    if (x.n == 0) {
        bf_fail(err, "%s: dataset /tokens has 0 rows: expected at least one input", path);
        goto done;
    }
    if (check_vec_shape(f, path, "/lengths", x.n, err) || check_vec_shape(f, path, "/labels", x.n, err)) goto done;
    r = read_vec(f, path, "/source_line", H5T_NATIVE_INT64, x.n, &buf, err);
    x.source_line = buf;
    if (r < 0) goto done;
    if (bf_h5_read_strings(f, "/vocab", &x.vocab, &x.vocab_size, err) < 0) goto done;
    if (bf_h5_read_strings(f, "/label_names", &x.label_names, &n_names, err) < 0) goto done;
    if (n_names != (size_t)n_classes) {
        bf_fail(err, "%s: dataset /label_names has %zu entries: expected %lld (attribute n_classes)", path, n_names,
                n_classes);
        bf_h5_free_strings(x.label_names, n_names);
        x.label_names = NULL;
        goto done;
    }
    x.n_classes = (int)n_classes;
    if (validate_header(&x, path, err) < 0) goto done;
    x.token_bytes = bf_dataset_token_bytes(x.vocab_size);
    rc = 0;
done:
    if (rc == 0) *d = x;
    else bf_dataset_free(&x);
    return rc;
}

/* Row blocks of /tokens as read (int32): each row validated with its length and label, then stored at the
 * dataset's width (the check comes first, so a too large id is refused rather than cut to 16 bits). */
typedef struct {
    bf_dataset *d;
    const char *path;
} rows_ctx;

static int take_rows(void *ctx, const void *block, size_t row0, size_t rows, bf_err *err) {
    const rows_ctx *c = ctx;
    bf_dataset *d = c->d;
    const size_t T = (size_t)d->max_len;
    const int32_t *src = block;
    for (size_t r = 0; r < rows; r++) {
        size_t i = row0 + r;
        if (validate_row(d, i, src + r * T, d->lengths[i], d->labels[i], c->path, err)) return -1;
    }
    if (d->token_bytes == 4) {
        memcpy((int32_t *)d->tokens + row0 * T, src, rows * T * sizeof(int32_t));
    } else {
        uint16_t *dst = (uint16_t *)d->tokens + row0 * T;
        for (size_t k = 0; k < rows * T; k++) dst[k] = (uint16_t)src[k];
    }
    return 0;
}

/* Fills d->tokens, lengths, labels (allocated by the caller for d's shape) from an open file. */
static int rows_from(bf_dataset *d, hid_t f, const char *path, bf_err *err) {
    const unsigned long long dvec[1] = {d->n};
    if (bf_h5_read_into(f, "/lengths", H5T_NATIVE_INT32, 1, dvec, d->lengths, err) < 0) return -1;
    if (bf_h5_read_into(f, "/labels", H5T_NATIVE_INT32, 1, dvec, d->labels, err) < 0) return -1;
    /* About 1 MiB of int32 rows at a time: the only copy of the data at the file's width. */
    size_t T = (size_t)d->max_len, block_rows = ((size_t)1 << 18) / T + 1;
    if (block_rows > d->n) block_rows = d->n;
    int32_t *block = bf_xmalloc(block_rows * T * sizeof(int32_t));
    rows_ctx c = {d, path};
    int rc = bf_h5_read_blocks(f, "/tokens", H5T_NATIVE_INT32, block_rows, block, take_rows, &c, err);
    free(block);
    return rc;
}

/* Header, malloc'd rows, rows: the whole load from an open file (closed here). */
static int load_from(bf_dataset *d, hid_t f, const char *path, bf_err *err) {
    int rc = header_from(d, f, path, err);
    if (rc == 0) {
        size_t bytes[3];
        bf_dataset_rows_bytes(d, bytes);
        d->tokens = bf_xmalloc(bytes[0]);
        d->lengths = bf_xmalloc(bytes[1]);
        d->labels = bf_xmalloc(bytes[2]);
        rc = rows_from(d, f, path, err);
        if (rc) bf_dataset_free(d);
    }
    H5Fclose(f);
    return rc;
}

int bf_dataset_load(bf_dataset *d, const char *path, bf_err *err) {
    memset(d, 0, sizeof *d);
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    return load_from(d, f, path, err);
}

int bf_dataset_load_image(bf_dataset *d, const void *buf, size_t len, const char *name, bf_err *err) {
    memset(d, 0, sizeof *d);
    hid_t f = bf_h5_open_image(buf, len, name, err);
    if (f < 0) return -1;
    return load_from(d, f, name, err);
}

int bf_dataset_load_header(bf_dataset *d, const char *path, bf_err *err) {
    memset(d, 0, sizeof *d);
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    int rc = header_from(d, f, path, err);
    H5Fclose(f);
    return rc;
}

int bf_dataset_read_rows(bf_dataset *d, const char *path, bf_err *err) {
    hid_t f = bf_h5_open_read(path, err);
    if (f < 0) return -1;
    int rc = rows_from(d, f, path, err);
    H5Fclose(f);
    return rc;
}

int bf_dataset_write(const bf_dataset *d, const char *path, bf_err *err) {
    if (bf_dataset_check(d, path, err) < 0) return -1;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return bf_fail(err, "%s: path too long", path);
    hid_t f = bf_h5_create(tmp, err);
    if (f < 0) return -1;
    const unsigned long long n = d->n, T = (unsigned long long)d->max_len;
    const unsigned long long dtok[2] = {n, T}, dvec[1] = {n};
    int rc = -1;
    /* The file's /tokens is int32 (FILES.md): uint16 tokens are widened for the write. */
    int32_t *wide = d->token_bytes == 4 ? NULL : bf_xmalloc(d->n * (size_t)d->max_len * sizeof(int32_t));
    if (wide) bf_dataset_rows(d, 0, d->n, wide);
    int wrc = bf_h5_write(f, "/tokens", H5T_NATIVE_INT32, 2, dtok, wide ? wide : d->tokens, err);
    free(wide);
    if (wrc < 0) goto fail;
    if (bf_h5_write(f, "/lengths", H5T_NATIVE_INT32, 1, dvec, d->lengths, err) < 0) goto fail;
    if (bf_h5_write(f, "/labels", H5T_NATIVE_INT32, 1, dvec, d->labels, err) < 0) goto fail;
    if (bf_h5_write(f, "/source_line", H5T_NATIVE_INT64, 1, dvec, d->source_line, err) < 0) goto fail;
    if (bf_h5_write_strings(f, "/vocab", (const char *const *)d->vocab, d->vocab_size, err) < 0) goto fail;
    if (bf_h5_write_strings(f, "/label_names", (const char *const *)d->label_names, (size_t)d->n_classes, err) < 0)
        goto fail;
    if (bf_h5_write_attr_int(f, "/", "n_classes", d->n_classes, err) < 0) goto fail;
    if (bf_h5_write_attr_int(f, "/", "max_len", d->max_len, err) < 0) goto fail;
    if (bf_h5_write_attr_str(f, "/", "source", d->source ? d->source : "", err) < 0) goto fail;
    rc = bf_h5_close(f, tmp, err);
    f = -1;
    if (rc < 0) goto fail;
    if (bf_commit_file(tmp, path, err)) goto fail; /* fsync, rename, fsync of the directory */
    return 0;
fail:
    if (f >= 0) H5Fclose(f);
    unlink(tmp);
    return -1;
}

/* SHA-256 over what training reads: shape, tokens, lengths, labels, vocabulary and class names (each string
 * with its terminating NUL, so boundaries count). */
void bf_dataset_digest(const bf_dataset *d, unsigned char out[32]) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    BF_CHECK(c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1, "OpenSSL SHA-256 init failed");
    int64_t shape[4] = {(int64_t)d->n, d->max_len, d->n_classes, (int64_t)d->vocab_size};
    EVP_DigestUpdate(c, shape, sizeof shape);
    /* As int32 rows, about 64 KiB at a time: the digest does not depend on the width in memory. */
    size_t T = (size_t)d->max_len, block = ((size_t)1 << 14) / T + 1;
    int32_t *wide = bf_xmalloc(block * T * sizeof(int32_t));
    for (size_t i = 0; i < d->n; i += block) {
        size_t n = d->n - i < block ? d->n - i : block;
        bf_dataset_rows(d, i, n, wide);
        EVP_DigestUpdate(c, wide, n * T * sizeof(int32_t));
    }
    free(wide);
    EVP_DigestUpdate(c, d->lengths, d->n * sizeof(int32_t));
    EVP_DigestUpdate(c, d->labels, d->n * sizeof(int32_t));
    for (size_t i = 0; i < d->vocab_size; i++) EVP_DigestUpdate(c, d->vocab[i], strlen(d->vocab[i]) + 1);
    for (int i = 0; i < d->n_classes; i++) EVP_DigestUpdate(c, d->label_names[i], strlen(d->label_names[i]) + 1);
    unsigned int len = 0;
    BF_CHECK(EVP_DigestFinal_ex(c, out, &len) == 1 && len == 32, "OpenSSL SHA-256 failed");
    EVP_MD_CTX_free(c);
}

int bf_dataset_class_names(const char *data, size_t C, const char *file, char ***names, bf_err *err) {
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
