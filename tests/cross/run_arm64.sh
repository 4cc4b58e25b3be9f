#!/usr/bin/env bash
# Cross-compiles the C++ core and its test programs for arm64 and runs them under qemu (ctest):
# GEMM and activation bounds, and a whole stack of every cell with the NEON kernels against the
# portable ones. Needs Debian's g++-aarch64-linux-gnu and qemu-user.
# Exit 0: passed; 1: failed; 77: tools missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null || exit 77
build="$(mktemp -d)"
cmake -S "$root" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
  -DRNNFAST_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target check_kernels -j2 >/dev/null
ctest --test-dir "$build" --output-on-failure -R kernels  # (threads: ISA-neutral, run natively)
