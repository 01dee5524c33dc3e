/* A kernel source that includes HDF5 (tests/test_layers.cmake: must not compile with the kernels' flags). */
#include <hdf5.h>
#include "../../src/kernels/ops.c"
