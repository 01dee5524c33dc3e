#!/usr/bin/env bash
# The test command: builds the project twice (Release, and Debug with AddressSanitizer + UBSan) and runs the
# whole ctest suite on each build. Exits non-zero if any build or test fails.
#   usage: launch/run-tests.sh [--fast]      (--fast: the Release build only, no fuzzing)
# After the two suites, each libFuzzer target runs for BF_FUZZ_SECONDS (default 30) from its seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== Release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBF_WERROR=ON > /dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" 2>&1 | tee build/ctest-release.log

if [ "${1:-}" != "--fast" ]; then
  echo "== AddressSanitizer + UBSan build and tests"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBF_ASAN=ON -DBF_UBSAN=ON -DBF_WERROR=ON > /dev/null
  cmake --build build-asan -j "$jobs"
  # Open MPI and OpenBLAS keep allocations alive until exit by design: leak checking would only report theirs.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE end-to-end 2>&1 | tee build-asan/ctest-asan.log

  echo "== Short fuzzing runs (libFuzzer, ASan + UBSan)"
  bash launch/run-fuzz.sh "${BF_FUZZ_SECONDS:-30}"

  # Both suites' summaries again, last, so the run ends on the test runner's closing line.
  echo "== Summary"
  grep -h "tests passed" build-asan/ctest-asan.log
  grep -h "tests passed" build/ctest-release.log
fi
