/* A kernel source as the kernels library compiles it (tests/test_layers.cmake: must compile). */
#include "../../src/kernels/ops.c"
