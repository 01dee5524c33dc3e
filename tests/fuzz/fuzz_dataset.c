/* fuzz_dataset: libFuzzer target for the prepared-dataset reader (dataset.h), on HDF5 file images in memory
 * (H5Pset_file_image through bf_dataset_load_image), as `train` and `eval` read data.train.
 *
 * Input: byte 0 picks the base dataset's shape (rows 1..8, max_len 1..8, classes 1..4); the rest is a list of
 * edits of it (fuzz_h5edit.h: elements, attributes, deletions, repeated strings, special values), made
 * through HDF5's writer, so the image stays well formed and the reader's own checks are what is fuzzed.
 * Besides "no crash, leak, hang or undefined behaviour", it checks:
 *   - a refusal has a message that starts with the file's name;
 *   - an accepted dataset has what training relies on: n >= 1, max_len >= 1, n_classes >= 1, a vocabulary
 *     starting "<pad>", "<unk>", n_classes label names, every length in [1, max_len], tokens in [0, V) with
 *     no PAD inside a length and only PAD after it, labels in [0, n_classes);
 *   - its digest (bf_dataset_digest, compared across ranks) is a pure function: twice the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/dataset.h"
#include "h5io.h" /* src/files: internal to the files layer */
#include "fuzz_common.h"
#include "fuzz_h5edit.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bf_h5_init();
    bf_h5_set_trust_limit((size_t)16 << 20);
    H5set_free_list_limits(1 << 20, 1 << 18, 1 << 20, 1 << 18, 1 << 20, 1 << 18); /* HDF5's caches stay small */ /* claims beyond 16 MiB need stored bytes: stay under -rss_limit_mb */
    return 0;
}

static void check_dataset(const bf_dataset *d) {
    BF_FUZZ_REQUIRE(d->n >= 1 && d->max_len >= 1 && d->n_classes >= 1, "shape n %zu T %d C %d", d->n, d->max_len,
                    d->n_classes);
    BF_FUZZ_REQUIRE(d->vocab_size >= 2 && !strcmp(d->vocab[0], "<pad>") && !strcmp(d->vocab[1], "<unk>"),
                    "vocabulary of %zu entries", d->vocab_size);
    for (int c = 0; c < d->n_classes; c++) BF_FUZZ_REQUIRE(d->label_names[c] != NULL, "label name %d missing", c);
    size_t T = (size_t)d->max_len;
    for (size_t i = 0; i < d->n; i++) {
        int32_t len = d->lengths[i];
        BF_FUZZ_REQUIRE(len >= 1 && (size_t)len <= T, "row %zu length %d", i, len);
        BF_FUZZ_REQUIRE(d->labels[i] >= 0 && d->labels[i] < d->n_classes, "row %zu label %d", i, d->labels[i]);
        for (size_t t = 0; t < T; t++) {
            int32_t id = bf_dataset_token(d, i, t);
            BF_FUZZ_REQUIRE(id >= 0 && (size_t)id < d->vocab_size, "token [%zu,%zu] = %d", i, t, id);
            BF_FUZZ_REQUIRE((t < (size_t)len) == (id != 0), "PAD placement at [%zu,%zu]", i, t);
        }
    }
    unsigned char a[32], b[32];
    bf_dataset_digest(d, a);
    bf_dataset_digest(d, b);
    BF_FUZZ_REQUIRE(!memcmp(a, b, 32), "the digest is not a pure function");
}

/* A valid dataset of n rows, max_len T, C classes, built in memory with the project's writers. */
static unsigned char *base_image(unsigned shape, size_t *len) {
    size_t n = 1 + shape % 8, T = 1 + (shape >> 3) % 8, C = 1 + (shape >> 6) % 4, V = 6;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    hid_t f = H5Fcreate("fuzz-base.h5 [in memory]", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    int32_t tokens[64] = {0}, lengths[8], labels[8];
    int64_t lines[8];
    for (size_t i = 0; i < n; i++) {
        lengths[i] = (int32_t)(1 + i % T);
        labels[i] = (int32_t)(i % C);
        lines[i] = (int64_t)i + 1;
        for (size_t t = 0; t < (size_t)lengths[i]; t++) tokens[i * T + t] = (int32_t)(1 + (i + t) % (V - 1));
    }
    const char *vocab[] = {"<pad>", "<unk>", "a", "b", "c", "d"}, *names[] = {"w", "x", "y", "z"};
    unsigned long long d2[2] = {n, T}, d1 = n;
    bf_err err;
    int rc = bf_h5_write_attr_int(f, "/", "max_len", (long long)T, &err) ||
             bf_h5_write_attr_int(f, "/", "n_classes", (long long)C, &err) ||
             bf_h5_write_attr_str(f, "/", "source", "fuzz", &err) ||
             bf_h5_write(f, "/tokens", H5T_NATIVE_INT32, 2, d2, tokens, &err) ||
             bf_h5_write(f, "/lengths", H5T_NATIVE_INT32, 1, &d1, lengths, &err) ||
             bf_h5_write(f, "/labels", H5T_NATIVE_INT32, 1, &d1, labels, &err) ||
             bf_h5_write(f, "/source_line", H5T_NATIVE_INT64, 1, &d1, lines, &err) ||
             bf_h5_write_strings(f, "/vocab", vocab, V, &err) || bf_h5_write_strings(f, "/label_names", names, C, &err);
    BF_FUZZ_REQUIRE(rc == 0 && H5Fflush(f, H5F_SCOPE_LOCAL) >= 0, "cannot build the base dataset");
    ssize_t sz = H5Fget_file_image(f, NULL, 0);
    unsigned char *img = malloc((size_t)sz);
    BF_FUZZ_REQUIRE(img && H5Fget_file_image(f, img, (size_t)sz) == sz, "cannot copy the base image");
    H5Fclose(f);
    *len = (size_t)sz;
    return img;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char name[] = "fuzz-dataset.h5 [in memory]";
    if (size < 1) return 0;
    size_t base_len, len;
    unsigned char *base = base_image(data[0], &base_len), *img;
    /* the base itself must load: the reader accepts what the writer produces */
    bf_dataset d;
    bf_err err = {{0}};
    BF_FUZZ_REQUIRE(bf_dataset_load_image(&d, base, base_len, name, &err) == 0, "base refused: %s", err.msg);
    bf_dataset_free(&d);
    if (bf_fuzz_h5_edit(base, base_len, data + 1, size - 1, &img, &len) == 0) {
        if (bf_dataset_load_image(&d, img, len, name, &err) == 0) {
            check_dataset(&d);
            bf_dataset_free(&d);
        } else {
            BF_FUZZ_REQUIRE(!strncmp(err.msg, name, strlen(name)), "message does not name the file: %s", err.msg);
        }
        free(img);
    }
    free(base);
    return 0;
}
