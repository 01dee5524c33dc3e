/* h5io: checked HDF5 helpers (see h5io.h). */
#include "h5io.h"

#include "budgetformer/files.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

void bf_h5_init(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void bf_files_init(void) { bf_h5_init(); }

const char *bf_h5_filename(hid_t loc, char *buf, size_t len) {
    if (H5Fget_name(loc, buf, len) < 0) snprintf(buf, len, "<hdf5 file>");
    return buf;
}

hid_t bf_h5_create(const char *path, bf_err *err) {
    bf_h5_init();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) bf_fail(err, "%s: cannot create HDF5 file (check the directory exists and is writable)", path);
    return f;
}

/* Why HDF5 refused a file: empty, not HDF5 at all (no signature where HDF5 puts it), or HDF5 but damaged. */
static void describe_not_hdf5(const char *path, bf_err *err) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) {
        bf_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return;
    }
    unsigned char buf[8];
    long long size = 0;
    int found = 0;
    /* The signature sits at offset 0, 512, 1024, 2048, ... (a user block may come first). */
    for (long off = 0; off <= (1L << 20) && !found; off = off ? 2 * off : 512) {
        if (fseek(f, off, SEEK_SET) != 0 || fread(buf, 1, 8, f) != 8) break;
        found = !memcmp(buf, sig, 8);
    }
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    fclose(f);
    if (size == 0) bf_fail(err, "%s: an empty file, not HDF5", path);
    else if (found)
        bf_fail(err, "%s: an HDF5 file that HDF5 cannot read (%lld bytes): truncated or damaged?", path, size);
    else
        bf_fail(err, "%s: not an HDF5 file (no HDF5 signature in its %lld bytes: another format, e.g. the CSV "
                     "before `budgetformer prepare`?)", path, size);
}

hid_t bf_h5_open_read(const char *path, bf_err *err) {
    bf_h5_init();
    if (bf_check_input_file(path, err)) return -1;
#if H5_VERSION_GE(1, 12, 0)
    htri_t is_h5 = H5Fis_accessible(path, H5P_DEFAULT);
#else
    htri_t is_h5 = H5Fis_hdf5(path);
#endif
    if (is_h5 <= 0) {
        describe_not_hdf5(path, err);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) bf_fail(err, "%s: cannot open HDF5 file for reading", path);
    return f;
}

hid_t bf_h5_open_image(const void *buf, size_t len, const char *name, bf_err *err) {
    bf_h5_init();
    if (len < 8) {
        bf_fail(err, "%s: %s, not HDF5", name, len ? "too short" : "an empty file");
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = -1;
    void *image; /* HDF5 takes a non-const pointer but only copies from it */
    memcpy(&image, &buf, sizeof image);
    /* The core driver copies the image (H5Pset_file_image); backing_store 0: nothing is written anywhere. */
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 || H5Pset_file_image(fapl, image, len) < 0)
        bf_fail(err, "%s: HDF5 cannot set up an in-memory image", name);
    else if ((f = H5Fopen(name, H5F_ACC_RDONLY, fapl)) < 0)
        bf_fail(err, "%s: not a readable HDF5 file image (%zu bytes): another format, truncated or damaged", name, len);
    if (fapl >= 0) H5Pclose(fapl);
    return f;
}

hid_t bf_h5_open_rw(const char *path, bf_err *err) {
    bf_h5_init();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) bf_fail(err, "%s: cannot open HDF5 file for writing", path);
    return f;
}

int bf_h5_close(hid_t file, const char *path, bf_err *err) {
    if (file < 0) return 0;
    herr_t a = H5Fflush(file, H5F_SCOPE_LOCAL);
    herr_t b = H5Fclose(file);
    if (a < 0 || b < 0)
        return bf_fail(err, "%s: writing the HDF5 file failed (disk full or I/O error?)", path ? path : "?");
    return 0;
}

int bf_h5_exists(hid_t loc, const char *path) {
    /* H5Lexists needs every parent to exist: walk the path one component at a time. */
    char buf[1024];
    size_t n = strlen(path);
    if (n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            buf[i] = c;
        }
    }
    return 1;
}

static hid_t file_type_for(hid_t memtype) {
    if (H5Tequal(memtype, H5T_NATIVE_FLOAT) > 0) return H5T_IEEE_F32LE;
    if (H5Tequal(memtype, H5T_NATIVE_INT32) > 0) return H5T_STD_I32LE;
    if (H5Tequal(memtype, H5T_NATIVE_INT64) > 0) return H5T_STD_I64LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT32) > 0) return H5T_STD_U32LE;
    if (H5Tequal(memtype, H5T_NATIVE_DOUBLE) > 0) return H5T_IEEE_F64LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT8) > 0) return H5T_STD_U8LE;
    return -1;
}

static const char *type_name(hid_t memtype) {
    if (H5Tequal(memtype, H5T_NATIVE_FLOAT) > 0) return "float32";
    if (H5Tequal(memtype, H5T_NATIVE_INT32) > 0) return "int32";
    if (H5Tequal(memtype, H5T_NATIVE_INT64) > 0) return "int64";
    if (H5Tequal(memtype, H5T_NATIVE_UINT32) > 0) return "uint32";
    if (H5Tequal(memtype, H5T_NATIVE_DOUBLE) > 0) return "float64";
    return "?";
}

static hid_t link_creation_plist(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

int bf_h5_write(hid_t loc, const char *path, hid_t memtype, int rank, const unsigned long long *dims,
                const void *data, bf_err *err) {
    char fname[512];
    hid_t ftype = file_type_for(memtype);
    if (ftype < 0) return bf_fail(err, "%s: unsupported memory type for dataset %s", bf_h5_filename(loc, fname, sizeof fname), path);
    hsize_t hd[8];
    for (int i = 0; i < rank && i < 8; i++) hd[i] = (hsize_t)dims[i];
    hid_t space = H5Screate_simple(rank, hd, NULL);
    hid_t lcpl = link_creation_plist();
    hid_t ds = H5Dcreate2(loc, path, ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    int rc = 0;
    if (ds < 0) {
        rc = bf_fail(err, "%s: cannot create dataset %s (does it exist already?)", bf_h5_filename(loc, fname, sizeof fname), path);
    } else {
        if (H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = bf_fail(err, "%s: cannot write dataset %s (disk full?)", bf_h5_filename(loc, fname, sizeof fname), path);
        H5Dclose(ds);
    }
    H5Sclose(space);
    return rc;
}

/* Opens a dataset and checks its type class and rank; fills dims. */
static hid_t open_checked(hid_t loc, const char *path, hid_t memtype, int rank, hsize_t *hd, bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    if (!bf_h5_exists(loc, path)) {
        bf_fail(err, "%s: missing dataset %s (expected %s, rank %d)", fname, path, type_name(memtype), rank);
        return -1;
    }
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) {
        bf_fail(err, "%s: %s is not a dataset (expected %s, rank %d)", fname, path, type_name(memtype), rank);
        return -1;
    }
    hid_t ft = H5Dget_type(ds);
    H5T_class_t want = H5Tget_class(memtype), have = H5Tget_class(ft);
    size_t have_size = H5Tget_size(ft), want_size = H5Tget_size(memtype);
    H5Tclose(ft);
    if (want != have || have_size != want_size) {
        H5Dclose(ds);
        bf_fail(err, "%s: dataset %s has the wrong type (expected %s)", fname, path, type_name(memtype));
        return -1;
    }
    hid_t space = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(space);
    if (r != rank) {
        H5Sclose(space);
        H5Dclose(ds);
        bf_fail(err, "%s: dataset %s has rank %d (expected %d)", fname, path, r, rank);
        return -1;
    }
    H5Sget_simple_extent_dims(space, hd, NULL);
    H5Sclose(space);
    return ds;
}

static size_t g_trust_bytes = (size_t)1 << 32; /* sizes above this must be backed by stored bytes */

void bf_h5_set_trust_limit(size_t bytes) { g_trust_bytes = bytes; }

/* The element count of an open dataset of shape hd, checked before anything is allocated for it: no size
 * overflow, and a shape far larger than the bytes the file stores for it is a damaged header, not data
 * (compressed chunks stay well within the factor). Closes ds on failure. */
static int checked_count(hid_t loc, hid_t ds, const char *path, hid_t memtype, int rank, const hsize_t *hd,
                         size_t *count, bf_err *err) {
    size_t n = 1, esz = H5Tget_size(memtype);
    char fname[512];
    for (int i = 0; i < rank; i++) {
        if (hd[i] != 0 && n > SIZE_MAX / esz / (size_t)hd[i]) {
            H5Dclose(ds);
            return bf_fail(err, "%s: dataset %s claims an impossible size (dimension %d is %llu): a damaged file?",
                           bf_h5_filename(loc, fname, sizeof fname), path, i, (unsigned long long)hd[i]);
        }
        n *= (size_t)hd[i];
    }
    hsize_t stored = H5Dget_storage_size(ds);
    if (n * esz > g_trust_bytes && (double)(n * esz) > 1024.0 * ((double)stored + 1.0)) {
        H5Dclose(ds);
        return bf_fail(err, "%s: dataset %s claims %zu bytes but the file stores %llu for it: a damaged file?",
                       bf_h5_filename(loc, fname, sizeof fname), path, n * esz, (unsigned long long)stored);
    }
    *count = n;
    return 0;
}

int bf_h5_read_alloc(hid_t loc, const char *path, hid_t memtype, int rank, unsigned long long *dims,
                     void **out, bf_err *err) {
    hsize_t hd[8] = {0};
    hid_t ds = open_checked(loc, path, memtype, rank, hd, err);
    if (ds < 0) return -1;
    /* The shape comes from the file: check the size before trusting it with an allocation. */
    size_t n = 0, esz = H5Tget_size(memtype);
    if (checked_count(loc, ds, path, memtype, rank, hd, &n, err)) return -1;
    for (int i = 0; i < rank; i++) dims[i] = hd[i];
    char fname[512];
    void *buf = n ? malloc(n * esz) : bf_xmalloc(1);
    if (!buf) {
        H5Dclose(ds);
        return bf_fail(err, "%s: dataset %s needs %zu bytes, more memory than there is: a damaged file?",
                       bf_h5_filename(loc, fname, sizeof fname), path, n * esz);
    }
    if (H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Dclose(ds);
        return bf_fail(err, "%s: cannot read dataset %s (corrupted file?)", bf_h5_filename(loc, fname, sizeof fname), path);
    }
    H5Dclose(ds);
    *out = buf;
    return 0;
}

int bf_h5_shape(hid_t loc, const char *path, hid_t memtype, int rank, unsigned long long *dims, bf_err *err) {
    hsize_t hd[8] = {0};
    hid_t ds = open_checked(loc, path, memtype, rank, hd, err);
    if (ds < 0) return -1;
    size_t n = 0;
    if (checked_count(loc, ds, path, memtype, rank, hd, &n, err)) return -1;
    for (int i = 0; i < rank; i++) dims[i] = hd[i];
    H5Dclose(ds);
    return 0;
}

int bf_h5_read_blocks(hid_t loc, const char *path, hid_t memtype, size_t block_rows, void *block,
                      int (*take)(void *ctx, const void *block, size_t row0, size_t rows, bf_err *err), void *ctx,
                      bf_err *err) {
    hsize_t hd[2] = {0, 0};
    hid_t ds = open_checked(loc, path, memtype, 2, hd, err);
    if (ds < 0) return -1;
    size_t n = 0;
    if (checked_count(loc, ds, path, memtype, 2, hd, &n, err)) return -1;
    hid_t fspace = H5Dget_space(ds);
    char fname[512];
    int rc = 0;
    for (hsize_t row0 = 0; row0 < hd[0] && rc == 0; row0 += block_rows) {
        hsize_t start[2] = {row0, 0}, count[2] = {hd[0] - row0 < block_rows ? hd[0] - row0 : block_rows, hd[1]};
        hid_t mspace = H5Screate_simple(2, count, NULL);
        if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(ds, memtype, mspace, fspace, H5P_DEFAULT, block) < 0)
            rc = bf_fail(err, "%s: cannot read dataset %s (corrupted file?)", bf_h5_filename(loc, fname, sizeof fname),
                         path);
        H5Sclose(mspace);
        if (rc == 0) rc = take(ctx, block, (size_t)row0, (size_t)count[0], err);
    }
    H5Sclose(fspace);
    H5Dclose(ds);
    return rc;
}

int bf_h5_read_into(hid_t loc, const char *path, hid_t memtype, int rank, const unsigned long long *dims,
                    void *buf, bf_err *err) {
    hsize_t hd[8] = {0};
    hid_t ds = open_checked(loc, path, memtype, rank, hd, err);
    if (ds < 0) return -1;
    char fname[512];
    for (int i = 0; i < rank; i++) {
        if (hd[i] != dims[i]) {
            char want[128] = "", have[128] = "";
            for (int j = 0; j < rank; j++) {
                size_t lw = strlen(want), lh = strlen(have);
                snprintf(want + lw, sizeof want - lw, "%s%llu", j ? "," : "", dims[j]);
                snprintf(have + lh, sizeof have - lh, "%s%llu", j ? "," : "", (unsigned long long)hd[j]);
            }
            H5Dclose(ds);
            return bf_fail(err, "%s: dataset %s has shape [%s] (expected [%s])", bf_h5_filename(loc, fname, sizeof fname), path, have, want);
        }
    }
    if (H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        H5Dclose(ds);
        return bf_fail(err, "%s: cannot read dataset %s (corrupted file?)", bf_h5_filename(loc, fname, sizeof fname), path);
    }
    H5Dclose(ds);
    return 0;
}

static hid_t utf8_vlen_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int bf_h5_write_strings(hid_t loc, const char *path, const char *const *strs, size_t n, bf_err *err) {
    char fname[512];
    hid_t t = utf8_vlen_type();
    hsize_t d = n;
    hid_t space = H5Screate_simple(1, &d, NULL);
    hid_t lcpl = link_creation_plist();
    hid_t ds = H5Dcreate2(loc, path, t, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    int rc = 0;
    if (ds < 0) {
        rc = bf_fail(err, "%s: cannot create string dataset %s", bf_h5_filename(loc, fname, sizeof fname), path);
    } else {
        if (n > 0 && H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs) < 0)
            rc = bf_fail(err, "%s: cannot write string dataset %s (disk full?)", bf_h5_filename(loc, fname, sizeof fname), path);
        H5Dclose(ds);
    }
    H5Sclose(space);
    H5Tclose(t);
    return rc;
}

int bf_h5_read_strings(hid_t loc, const char *path, char ***strs, size_t *n, bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    if (!bf_h5_exists(loc, path)) return bf_fail(err, "%s: missing string dataset %s", fname, path);
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) return bf_fail(err, "%s: %s is not a dataset", fname, path);
    hid_t ft = H5Dget_type(ds);
    int ok = H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0;
    H5Tclose(ft);
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t d = 0;
    if (rank == 1) H5Sget_simple_extent_dims(space, &d, NULL);
    if (!ok || rank != 1) {
        H5Sclose(space);
        H5Dclose(ds);
        return bf_fail(err, "%s: dataset %s must be a 1-D variable-length UTF-8 string dataset", fname, path);
    }
    char **buf = bf_xcalloc((size_t)d + 1, sizeof(char *));
    hid_t t = utf8_vlen_type();
    int rc = 0;
    if (d > 0 && H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        rc = bf_fail(err, "%s: cannot read string dataset %s", fname, path);
    } else {
        /* Copy into malloc'd strings so callers free with free(), not H5free_memory. */
        for (hsize_t i = 0; i < d; i++) {
            char *s = bf_xstrdup(buf[i] ? buf[i] : "");
            if (buf[i]) H5free_memory(buf[i]);
            buf[i] = s;
        }
    }
    H5Tclose(t);
    H5Sclose(space);
    H5Dclose(ds);
    if (rc) {
        free(buf);
        return rc;
    }
    *strs = buf;
    *n = (size_t)d;
    return 0;
}

void bf_h5_free_strings(char **strs, size_t n) { bf_free_strings(strs, n); }

int bf_h5_expect_rows(const char *file, const char *ds, unsigned long long have, const char *ref,
                      unsigned long long want, bf_err *err) {
    if (have == want) return 0;
    return bf_fail(err, "%s: dataset %s has %llu rows but %s has %llu (expected one row per entry of %s)", file,
                   ds, have, ref, want, ref);
}

int bf_h5_write_attr_int(hid_t loc, const char *obj, const char *name, long long value, bf_err *err) {
    char fname[512];
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &value) < 0)
        rc = bf_fail(err, "%s: cannot write attribute %s of %s", bf_h5_filename(loc, fname, sizeof fname), name, obj);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

int bf_h5_read_attr_int(hid_t loc, const char *obj, const char *name, long long *value, bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    if (!bf_h5_exists(loc, obj) && strcmp(obj, "/") != 0 && strcmp(obj, ".") != 0)
        return bf_fail(err, "%s: missing group %s (needed for attribute %s)", fname, obj, name);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return bf_fail(err, "%s: missing integer attribute %s of %s", fname, name, obj);
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return bf_fail(err, "%s: cannot open attribute %s of %s", fname, name, obj);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int is_int = H5Tget_class(t) == H5T_INTEGER, one = H5Sget_simple_extent_npoints(sp) == 1;
    H5Sclose(sp);
    H5Tclose(t);
    int rc = 0;
    if (!is_int) rc = bf_fail(err, "%s: attribute %s of %s must be an integer", fname, name, obj);
    else if (!one) rc = bf_fail(err, "%s: attribute %s of %s must be one integer, not an array", fname, name, obj);
    else if (H5Aread(a, H5T_NATIVE_LLONG, value) < 0) rc = bf_fail(err, "%s: cannot read attribute %s of %s", fname, name, obj);
    H5Aclose(a);
    return rc;
}

/* Creates attribute `name` of `obj` in `space` (closed here) and writes value. */
static int write_attr_in_space(hid_t loc, const char *obj, const char *name, hid_t filetype, hid_t memtype,
                               hid_t space, const void *value, bf_err *err) {
    char fname[512];
    hid_t a = H5Acreate_by_name(loc, obj, name, filetype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, memtype, value) < 0)
        rc = bf_fail(err, "%s: cannot write attribute %s of %s", bf_h5_filename(loc, fname, sizeof fname), name, obj);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

int bf_h5_write_attr_ints(hid_t loc, const char *obj, const char *name, const int *v, int n, bf_err *err) {
    long long buf[64];
    BF_CHECK(n >= 1 && n <= 64, "integer attribute of %d values", n);
    for (int i = 0; i < n; i++) buf[i] = v[i];
    hsize_t dims[1] = {(hsize_t)n};
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    return write_attr_in_space(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, H5Screate_simple(1, dims, NULL), buf,
                               err);
}

int bf_h5_read_attr_ints(hid_t loc, const char *obj, const char *name, int *v, int n, bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    BF_CHECK(n >= 1 && n <= 64, "integer attribute of %d values", n);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return bf_fail(err, "%s: missing integer attribute %s of %s (%d values)", fname, name, obj, n);
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return bf_fail(err, "%s: cannot open attribute %s of %s", fname, name, obj);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int is_int = H5Tget_class(t) == H5T_INTEGER;
    hssize_t have = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    H5Tclose(t);
    long long buf[64];
    int rc = 0;
    if (!is_int || have != n)
        rc = bf_fail(err, "%s: attribute %s of %s must hold %d integers (found %s%lld value%s)", fname, name, obj, n,
                     is_int ? "" : "non-integer, ", (long long)have, have == 1 ? "" : "s");
    else if (H5Aread(a, H5T_NATIVE_LLONG, buf) < 0)
        rc = bf_fail(err, "%s: cannot read attribute %s of %s", fname, name, obj);
    H5Aclose(a);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (buf[i] < INT_MIN || buf[i] > INT_MAX)
            rc = bf_fail(err, "%s: attribute %s of %s: value %lld is out of range", fname, name, obj, buf[i]);
        else v[i] = (int)buf[i];
    }
    return rc;
}

int bf_h5_write_attr_str(hid_t loc, const char *obj, const char *name, const char *value, bf_err *err) {
    char fname[512];
    hid_t t = utf8_vlen_type();
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, t, &value) < 0)
        rc = bf_fail(err, "%s: cannot write attribute %s of %s", bf_h5_filename(loc, fname, sizeof fname), name, obj);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
    return rc;
}

int bf_h5_read_attr_str(hid_t loc, const char *obj, const char *name, char **value, bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return bf_fail(err, "%s: missing string attribute %s of %s", fname, name, obj);
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING) {
        rc = bf_fail(err, "%s: attribute %s of %s must be a string", fname, name, obj);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t t = utf8_vlen_type();
        char *s = NULL;
        if (H5Aread(a, t, &s) < 0) rc = bf_fail(err, "%s: cannot read attribute %s of %s", fname, name, obj);
        else {
            *value = bf_xstrdup(s ? s : "");
            H5free_memory(s);
        }
        H5Tclose(t);
    } else {
        size_t sz = H5Tget_size(ft);
        char *s = bf_xcalloc(sz + 1, 1);
        if (H5Aread(a, ft, s) < 0) {
            free(s);
            rc = bf_fail(err, "%s: cannot read attribute %s of %s", fname, name, obj);
        } else *value = s;
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

/* ---- float64, uint64 and ranged integer scalar attributes; groups --------------------------------- */

static int write_attr_num(hid_t loc, const char *obj, const char *name, hid_t filetype, hid_t memtype,
                          const void *value, bf_err *err) {
    return write_attr_in_space(loc, obj, name, filetype, memtype, H5Screate(H5S_SCALAR), value, err);
}

int bf_h5_write_attr_f64(hid_t loc, const char *obj, const char *name, double v, bf_err *err) {
    return write_attr_num(loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

int bf_h5_write_attr_u64(hid_t loc, const char *obj, const char *name, uint64_t v, bf_err *err) {
    return write_attr_num(loc, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, err);
}

static int read_attr_num(hid_t loc, const char *obj, const char *name, H5T_class_t cls, hid_t memtype, void *value,
                         bf_err *err) {
    char fname[512];
    bf_h5_filename(loc, fname, sizeof fname);
    if (!bf_h5_exists(loc, obj)) return bf_fail(err, "%s: missing group %s (needed for attribute %s)", fname, obj, name);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return bf_fail(err, "%s: missing attribute %s of %s", fname, name, obj);
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return bf_fail(err, "%s: cannot open attribute %s of %s", fname, name, obj);
    hid_t t = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    int ok = H5Tget_class(t) == cls && H5Sget_simple_extent_npoints(s) == 1;
    H5Sclose(s);
    H5Tclose(t);
    int rc = 0;
    if (!ok) rc = bf_fail(err, "%s: attribute %s of %s has the wrong type", fname, name, obj);
    else if (H5Aread(a, memtype, value) < 0) rc = bf_fail(err, "%s: cannot read attribute %s of %s", fname, name, obj);
    H5Aclose(a);
    return rc;
}

int bf_h5_read_attr_f64(hid_t loc, const char *obj, const char *name, double *v, bf_err *err) {
    return read_attr_num(loc, obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v, err);
}

int bf_h5_read_attr_u64(hid_t loc, const char *obj, const char *name, uint64_t *v, bf_err *err) {
    return read_attr_num(loc, obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, v, err);
}

int bf_h5_read_attr_long(hid_t loc, const char *obj, const char *name, long lo, long *v, bf_err *err) {
    long long x;
    if (bf_h5_read_attr_int(loc, obj, name, &x, err)) return -1;
    if (x < lo || x > 1000000000000LL) {
        char fname[512];
        return bf_fail(err, "%s: attribute %s of %s = %lld is out of range", bf_h5_filename(loc, fname, sizeof fname),
                       name, obj, x);
    }
    *v = (long)x;
    return 0;
}

int bf_h5_create_group(hid_t f, const char *name, bf_err *err) {
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return bf_fail(err, "cannot create group %s", name);
    H5Gclose(g);
    return 0;
}
