// The AMX GEMM block: compiled with -mamx-tile -mamx-bf16 (as the AVX-512 kernels' file, whose
// recurrent product uses tiles too) and run only under the avx512_amx ISA, which the process
// asked the kernel for: runtime/isa.cpp.
#include "kernels/amx.h"

#include <immintrin.h>

#include <cstring>

namespace rnnfast::kernels {
namespace {

// A 16 x 16 float tile into C, clipped to rows x cols, added when accumulating: a masked vector
// a row (a scalar loop here became a memmove call a row).
void write_tile(const float (&tile)[16][16], index_t rows, index_t cols, float* c, index_t ldc,
                bool accumulate) {
  const auto mask = static_cast<__mmask16>((1u << cols) - 1);
  for (index_t r = 0; r < rows; ++r) {
    __m512 v = _mm512_loadu_ps(tile[r]);
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c + r * ldc));
    _mm512_mask_storeu_ps(c + r * ldc, mask, v);
  }
}

}  // namespace

void amx_gemm_block_bf16(index_t pairs, index_t rows, index_t cols, const uint32_t* a, index_t lda,
                         const uint32_t* b, index_t b_stride, index_t nr, float* c, index_t ldc,
                         bool accumulate) {
  // Tiles 0-3 accumulate C (2 x 2 blocks of 16 x 16 floats), 4-5 hold two A blocks (16 rows x
  // 16 pairs), 6-7 two B blocks (16 pairs x 16 columns).
  static const AmxTileConfig kConfig = amx_tile_config(kAmxRows, 6);
  _tile_loadconfig(&kConfig);
  const auto a_bytes = static_cast<long>(lda * 4), b_bytes = static_cast<long>(nr * 4);
  float out[4][16][16];
  for (index_t i0 = 0; i0 < rows; i0 += 2 * kAmxRows) {
    const bool two_a = rows - i0 > kAmxRows;
    for (index_t j0 = 0; j0 < cols; j0 += 2 * 16) {  // 32 columns: one panel when nr == 32
      const uint32_t* bp = b + (j0 / nr) * b_stride + j0 % nr;
      const bool two_b = cols - j0 > 16;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (index_t k = 0; k < pairs; k += kAmxDepth) {
        _tile_loadd(4, a + i0 * lda + k, a_bytes);
        _tile_loadd(6, bp + k * nr, b_bytes);
        _tile_dpbf16ps(0, 4, 6);
        if (two_b) {
          _tile_loadd(7, bp + k * nr + 16, b_bytes);
          _tile_dpbf16ps(1, 4, 7);
        }
        if (two_a) {
          _tile_loadd(5, a + (i0 + kAmxRows) * lda + k, a_bytes);
          _tile_dpbf16ps(2, 5, 6);
          if (two_b) _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, out[0], 64);
      _tile_stored(1, out[1], 64);
      _tile_stored(2, out[2], 64);
      _tile_stored(3, out[3], 64);
      const index_t r0 = rows - i0 < kAmxRows ? rows - i0 : kAmxRows;
      const index_t c0 = cols - j0 < 16 ? cols - j0 : 16;
      write_tile(out[0], r0, c0, c + i0 * ldc + j0, ldc, accumulate);
      if (two_b)
        write_tile(out[1], r0, cols - j0 - 16 < 16 ? cols - j0 - 16 : 16, c + i0 * ldc + j0 + 16,
                   ldc, accumulate);
      if (two_a) {
        const index_t r1 = rows - i0 - kAmxRows < kAmxRows ? rows - i0 - kAmxRows : kAmxRows;
        write_tile(out[2], r1, c0, c + (i0 + kAmxRows) * ldc + j0, ldc, accumulate);
        if (two_b)
          write_tile(out[3], r1, cols - j0 - 16 < 16 ? cols - j0 - 16 : 16,
                     c + (i0 + kAmxRows) * ldc + j0 + 16, ldc, accumulate);
      }
    }
  }
  _tile_release();
}

}  // namespace rnnfast::kernels
