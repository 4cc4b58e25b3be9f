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

// Palette 1's tile configuration (what _tile_loadconfig reads): every tile 64 bytes a row, tiles
// below first_b `rows` high (C and A tiles), the others 16 pair rows (B tiles). Plain data, so
// that the recurrent product (kernels/recurrent_impl.h, compiled in the AVX-512 file with the AMX
// flags) and the GEMM block here share it.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
inline AmxTileConfig amx_tile_config(index_t rows, int first_b) {
  AmxTileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = static_cast<uint8_t>(t < first_b ? rows : kAmxRows);
  }
  return cfg;
}

}  // namespace rnnfast::kernels
