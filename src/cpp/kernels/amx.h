// The bf16 GEMM block on AMX tiles (AMX-TILE, AMX-BF16), used under the avx512_amx ISA
// (runtime/isa.h): C (rows x cols) = (or += with accumulate) A * B in bf16 pairs, the operands
// laid out as the vector kernels' (kernels/table.h gemm_block_bf16), with zero padding the tiles
// need: A readable and zero to a multiple of 16 rows and `pairs` pairs, B's panels `pairs` pair
// rows deep (kAmxDepth divides `pairs`). Each C element is summed over its pairs in ascending
// order from zero, then added to C, as the vector kernels do. Compiled alone with the AMX flags.
#pragma once
#include <cstdint>

#include "runtime/types.h"

namespace rnnfast::kernels {

inline constexpr index_t kAmxRows = 16;   // rows of an A tile
inline constexpr index_t kAmxDepth = 16;  // pairs of an A tile's row (64 bytes)

// (static: each translation unit its own copy, as kernels/bf16.h's helpers.)
static inline index_t round_up(index_t n, index_t to) {
  return (n + to - 1) / to * to;
}

// Whether the bf16 GEMM runs here: the active ISA is avx512_amx (kernels/table.cpp).
bool amx_active();

void amx_gemm_block_bf16(index_t pairs, index_t rows, index_t cols, const uint32_t* a, index_t lda,
                         const uint32_t* b, index_t b_stride, index_t nr, float* c, index_t ldc,
                         bool accumulate);

// The recurrent product on tiles, one chunk of depth: out[r][16 j + n] = (first ? 0 : out) +
// sum over `pairs` (a multiple of kAmxDepth) of A's row r (`rows` <= 16 rows of pairs at a, lda
// words apart, zero padded) times column block j < blocks of B, whose pair row q is at
// w + (j / gates) * w_stride + (j % gates) * 16 + q * gates * 16 (a group's panel of
// kernels/recurrent.h, 16 lanes, bf16 pairs). out: `rows` rows, ldo floats apart.
void amx_panel_product(index_t rows, index_t pairs, const uint32_t* a, index_t lda,
                       const uint32_t* w, index_t w_stride, index_t gates, index_t blocks,
                       bool first, float* out, index_t ldo);

}  // namespace rnnfast::kernels
