/* A kernel source that includes MPI (tests/test_layers.cmake: must not compile with the kernels' flags). */
#include <mpi.h>
#include "../../src/kernels/ops.c"
