#!/usr/bin/env bash
# Cross-compiles the C++ core for arm64 and runs check_kernels.cpp under qemu user emulation.
# Needs Debian's g++-aarch64-linux-gnu and qemu-user. Exit 0: passed; 1: failed; 77: tools missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../src/cpp"
command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null || exit 77
out="$(mktemp -d)"
flags=(-std=c++17 -O2 -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Werror -fopenmp
       -DRNNFAST_HAVE_OPENMP=1 -I"$src")
aarch64-linux-gnu-g++ "${flags[@]}" -o "$out/check" "$here/check_kernels.cpp" \
  "$src"/kernels/{gemm,table,isa_generic,isa_neon}.cpp "$src"/{threads,cells,layer}.cpp
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/check"
