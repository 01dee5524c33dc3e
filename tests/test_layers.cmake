# ctest test_layers: the kernels library cannot see MPI or HDF5. Builds three object files with exactly the
# kernels library's include directories, definitions and options (tests/CMakeLists.txt: layer_probe_*):
#   plain  src/kernels/ops.c as it is                   must compile (so the test can fail)
#   mpi    the same after #include <mpi.h>              must fail, naming mpi.h
#   hdf5   the same after #include <hdf5.h>             must fail, naming hdf5.h
# and checks that the layer check of the build (cmake/check_layers.cmake) rejects a call across the rule.
#   cmake -DBUILD=build-dir -DSRC=source-dir -DNM=nm -P test_layers.cmake
cmake_minimum_required(VERSION 3.18)
set(failed 0)
foreach(probe plain mpi hdf5)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD} --target layer_probe_${probe}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(probe STREQUAL "plain")
    if(rc EQUAL 0)
      message("ok   a kernel source compiles with the kernels library's flags")
    else()
      message("FAIL a kernel source does not compile with the kernels library's flags:\n${out}")
      set(failed 1)
    endif()
  elseif(NOT rc EQUAL 0 AND out MATCHES "${probe}\\.h")
    message("ok   #include <${probe}.h> in a kernel source fails the build")
  else()
    message("FAIL #include <${probe}.h> in a kernel source: exit ${rc}, expected a failure naming ${probe}.h:\n${out}")
    set(failed 1)
  endif()
endforeach()

# The link-level rule (the build runs cmake/check_layers.cmake over the real libraries, so it passes there):
# the training library (which calls dist) presented as a layer that links only util must be rejected.
execute_process(COMMAND ${CMAKE_COMMAND} -DNM=${NM}
                        "-DLAYERS=bfkernels,bfutil=${BUILD}/libbftraining.a|bfdist,bfutil=${BUILD}/libbfdist.a|bfutil=${BUILD}/libbfutil.a"
                        -DOUT=${BUILD}/layer-check.ok -P ${SRC}/cmake/check_layers.cmake
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0 AND out MATCHES "calls bf_dist_[a-z_0-9]* of bfdist, which bfkernels does not link")
  message("ok   the build's layer check rejects a library that calls a layer it does not link")
else()
  message("FAIL the layer check accepted a library calling dist without linking it (exit ${rc}):\n${out}")
  set(failed 1)
endif()
if(failed)
  message(FATAL_ERROR "test_layers: some checks failed")
endif()
message("all checks passed")
