/* fuzz_h5edit: fuzz-driven edits of a well-formed HDF5 file image (fuzz_dataset, fuzz_checkpoint).
 *
 *   unsigned char *out; size_t n;
 *   bf_fuzz_h5_edit(base, base_len, data, size, &out, &n);   // the base image with the edits applied
 *
 * The input is a list of edits, 8 bytes each: op, object index, element index (2 bytes), value (4 bytes).
 * Objects are found by walking the file (every dataset, every attribute of the root and of every object):
 *   op % 6 == 0  overwrite one element of a numeric dataset with the value's bytes (converted to its type)
 *            1  overwrite a numeric scalar attribute with the value (as int64 or, for floats, as float)
 *            2  delete a dataset            3  delete an attribute
 *            4  copy one element of a string dataset over another (repeated names)
 *            5  overwrite one element of a numeric dataset with a special float (NaN, +-inf, -0, -tiny, huge)
 * Every edit goes through HDF5's own writer, so the image stays a well-formed file: the readers' checks of
 * meaning, shape and presence are fuzzed, not HDF5's parser (Debian's HDF5 1.10.8 has memory errors on
 * damaged files of its own: docs/FUZZING.md). */
#ifndef BF_FUZZ_H5EDIT_H
#define BF_FUZZ_H5EDIT_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0 with a malloc'd image in *out, or -1 when HDF5 could not produce one (not a finding). */
int bf_fuzz_h5_edit(const void *base, size_t base_len, const uint8_t *edits, size_t n_edits, unsigned char **out,
                    size_t *out_len);

#endif
