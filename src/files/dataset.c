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

/* Checks everything a trainer relies on; messages start with "FILE: dataset /x ...". */
static int validate(const bf_dataset *d, const char *path, bf_err *err) {
    const size_t T = (size_t)d->max_len, V = d->vocab_size, C = (size_t)d->n_classes;
    if (d->max_len < 1) return bf_fail(err, "%s: attribute max_len is %d: expected >= 1", path, d->max_len);
    if (d->n_classes < 1) return bf_fail(err, "%s: attribute n_classes is %d: expected >= 1", path, d->n_classes);
    if (V < 2 || V > (size_t)INT32_MAX)
        return bf_fail(err, "%s: dataset /vocab has %zu entries: expected at least 2 (\"<pad>\", \"<unk>\")", path, V);
    if (strcmp(d->vocab[0], "<pad>") != 0 || strcmp(d->vocab[1], "<unk>") != 0)
        return bf_fail(err, "%s: dataset /vocab starts with \"%s\", \"%s\": expected \"<pad>\", \"<unk>\"", path,
                       d->vocab[0], d->vocab[1]);
    for (size_t i = 0; i < d->n; i++) {
        const int32_t len = d->lengths[i];
        if (len < 1 || (size_t)len > T)
            return bf_fail(err, "%s: dataset /lengths[%zu] = %d: expected a length in [1, %zu]", path, i, len, T);
        const int32_t *row = d->tokens + i * T;
        for (size_t t = 0; t < T; t++) {
            const int32_t id = row[t];
            if (id < 0 || (size_t)id >= V)
                return bf_fail(err, "%s: dataset /tokens[%zu, %zu] = %d: expected a token id in [0, %zu)", path, i, t,
                               id, V);
            if (t < (size_t)len && id == 0)
                return bf_fail(err,
                               "%s: dataset /tokens[%zu, %zu] is PAD (0) inside the length %d: expected a non-zero "
                               "token id before the length",
                               path, i, t, len);
            if (t >= (size_t)len && id != 0)
                return bf_fail(err, "%s: dataset /tokens[%zu, %zu] = %d after the length %d: expected PAD (0)", path, i,
                               t, id, len);
        }
        if (d->labels[i] < 0 || (size_t)d->labels[i] >= C)
            return bf_fail(err, "%s: dataset /labels[%zu] = %d: expected a class index in [0, %zu)", path, i,
                           d->labels[i], C);
    }
    return 0;
}

void bf_dataset_free(bf_dataset *d) {
    if (!d) return;
    free(d->tokens);
    free(d->lengths);
    free(d->labels);
    free(d->source_line);
    bf_h5_free_strings(d->vocab, d->vocab_size);
    bf_h5_free_strings(d->label_names, (size_t)(d->n_classes > 0 ? d->n_classes : 0));
    free(d->source);
    memset(d, 0, sizeof *d);
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

/* Reads and checks the dataset of an open file (closed here); `path` names it in messages. */
static int load_from(bf_dataset *d, hid_t f, const char *path, bf_err *err) {
    bf_dataset x = {0};
    size_t n_names = 0;
    long long max_len = 0, n_classes = 0;
    unsigned long long dims[2] = {0, 0};
    void *tokens = NULL, *buf = NULL;
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
    if (bf_h5_read_alloc(f, "/tokens", H5T_NATIVE_INT32, 2, dims, &tokens, err) < 0) goto done;
    x.tokens = tokens;
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
    r = read_vec(f, path, "/lengths", H5T_NATIVE_INT32, x.n, &buf, err);
    x.lengths = buf, buf = NULL;
    if (r < 0) goto done;
    r = read_vec(f, path, "/labels", H5T_NATIVE_INT32, x.n, &buf, err);
    x.labels = buf, buf = NULL;
    if (r < 0) goto done;
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
    if (validate(&x, path, err) < 0) goto done;
    rc = 0;
done:
    H5Fclose(f);
    if (rc == 0) *d = x;
    else bf_dataset_free(&x);
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

int bf_dataset_write(const bf_dataset *d, const char *path, bf_err *err) {
    if (validate(d, path, err) < 0) return -1;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return bf_fail(err, "%s: path too long", path);
    hid_t f = bf_h5_create(tmp, err);
    if (f < 0) return -1;
    const unsigned long long n = d->n, T = (unsigned long long)d->max_len;
    const unsigned long long dtok[2] = {n, T}, dvec[1] = {n};
    int rc = -1;
    if (bf_h5_write(f, "/tokens", H5T_NATIVE_INT32, 2, dtok, d->tokens, err) < 0) goto fail;
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
    EVP_DigestUpdate(c, d->tokens, d->n * (size_t)d->max_len * sizeof(int32_t));
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
