/* h5io: checked HDF5 helpers. Every failure returns -1 with a message naming the file and the dataset,
 * group or attribute, and what was expected (type, rank, shape), so loaders can refuse bad files clearly.
 *
 * Internal to src/files. Use: bf_h5_create, bf_h5_write per dataset (parent groups are created), bf_h5_close;
 * src/files/runlog.c (bf_runlog_flush) is the compiled example.
 *
 * Memory types are H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, H5T_NATIVE_INT64, H5T_NATIVE_UINT32; they are stored
 * little-endian (float32 IEEE, int32, int64, uint32). Strings are variable-length UTF-8.
 */
#ifndef BUDGETFORMER_H5IO_H
#define BUDGETFORMER_H5IO_H

#include <hdf5.h>
#include <stddef.h>

#include "budgetformer/util.h"

/* Turns off HDF5's own error printing; our messages replace it. Call once at start (idempotent). */
void bf_h5_init(void);

hid_t bf_h5_create(const char *path, bf_err *err);     /* truncates; returns < 0 on error */
hid_t bf_h5_open_read(const char *path, bf_err *err);
/* The same for a file image in memory (copied); `name` is used in messages and must not exist on disk. */
hid_t bf_h5_open_image(const void *buf, size_t len, const char *name, bf_err *err);
/* Datasets larger than this many bytes are read only when the file stores at least 1/1024 of that (a header
 * claiming more is damaged). Default 4 GiB; the fuzz targets lower it to stay within their memory limit. */
void bf_h5_set_trust_limit(size_t bytes);  /* read-only; checks it is an HDF5 file */
hid_t bf_h5_open_rw(const char *path, bf_err *err);
/* Closes and reports a failed flush (e.g. a full disk) as an error. */
int bf_h5_close(hid_t file, const char *path, bf_err *err);
/* The file name of an open object, for messages. */
const char *bf_h5_filename(hid_t loc, char *buf, size_t len);

int bf_h5_exists(hid_t loc, const char *path);  /* 1 if the link path (with all parents) exists */

int bf_h5_write(hid_t loc, const char *path, hid_t memtype, int rank, const unsigned long long *dims,
                const void *data, bf_err *err);
/* Reads a dataset of the given rank whose class matches memtype (integer or float); allocates *out
 * (free with free()) and fills dims. */
int bf_h5_read_alloc(hid_t loc, const char *path, hid_t memtype, int rank, unsigned long long *dims,
                     void **out, bf_err *err);
/* The shape (dims) of a dataset whose type matches memtype, without reading it; refused as bf_h5_read_alloc
 * would refuse it (a size the file cannot back). */
int bf_h5_shape(hid_t loc, const char *path, hid_t memtype, int rank, unsigned long long *dims, bf_err *err);
/* Reads a 2-D dataset block_rows rows at a time into `block` (room for block_rows rows of memtype) and hands
 * each block to take (rows row0 .. row0+rows-1); stops at the first non-zero return of take. Lets a loader
 * convert a large dataset into its own memory without a second whole-size buffer. */
int bf_h5_read_blocks(hid_t loc, const char *path, hid_t memtype, size_t block_rows, void *block,
                      int (*take)(void *ctx, const void *block, size_t row0, size_t rows, bf_err *err), void *ctx,
                      bf_err *err);
/* Reads into buf, requiring exactly the given shape. */
int bf_h5_read_into(hid_t loc, const char *path, hid_t memtype, int rank, const unsigned long long *dims,
                    void *buf, bf_err *err);

int bf_h5_write_strings(hid_t loc, const char *path, const char *const *strs, size_t n, bf_err *err);
/* Allocates an array of n strings (each malloc'd); free with bf_h5_free_strings. */
int bf_h5_read_strings(hid_t loc, const char *path, char ***strs, size_t *n, bf_err *err);
void bf_h5_free_strings(char **strs, size_t n);
/* 0 when dataset ds of file has as many rows as ref (want); else -1 with err saying so. */
int bf_h5_expect_rows(const char *file, const char *ds, unsigned long long have, const char *ref,
                      unsigned long long want, bf_err *err);

int bf_h5_write_attr_int(hid_t loc, const char *obj, const char *name, long long value, bf_err *err);
int bf_h5_read_attr_int(hid_t loc, const char *obj, const char *name, long long *value, bf_err *err);
/* A one-dimensional integer attribute of exactly n values (written as int64; read back from any integer type,
 * -1 with err naming the file, object and attribute when it is missing, not integers or not n of them). */
int bf_h5_write_attr_ints(hid_t loc, const char *obj, const char *name, const int *v, int n, bf_err *err);
int bf_h5_read_attr_ints(hid_t loc, const char *obj, const char *name, int *v, int n, bf_err *err);
int bf_h5_write_attr_str(hid_t loc, const char *obj, const char *name, const char *value, bf_err *err);
/* Allocates *value (free with free()). */
int bf_h5_read_attr_str(hid_t loc, const char *obj, const char *name, char **value, bf_err *err);

/* Scalar attributes of obj beyond the integer and string ones: float64 and uint64 (write and read, with the
 * type checked), an integer read as long within [lo, 1e12], and an empty group. 0 or -1 with err naming the
 * file, object and attribute. */
int bf_h5_write_attr_f64(hid_t loc, const char *obj, const char *name, double v, bf_err *err);
int bf_h5_write_attr_u64(hid_t loc, const char *obj, const char *name, uint64_t v, bf_err *err);
int bf_h5_read_attr_f64(hid_t loc, const char *obj, const char *name, double *v, bf_err *err);
int bf_h5_read_attr_u64(hid_t loc, const char *obj, const char *name, uint64_t *v, bf_err *err);
int bf_h5_read_attr_long(hid_t loc, const char *obj, const char *name, long lo, long *v, bf_err *err);
int bf_h5_create_group(hid_t f, const char *name, bf_err *err);

#endif
