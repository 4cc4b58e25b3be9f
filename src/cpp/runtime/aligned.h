// Heap arrays on cache-line boundaries, for what the kernels stream: packed weights and GEMM
// workspaces. operator new (and so std::vector) aligns to 16 bytes only, and glibc serves a large
// block from mmap 16 bytes past a page: every 64-byte row an AMX tile load or an AVX-512 load read
// then spanned two cache lines (a bf16 recurrent product on tiles ran 3x slower so, a float32
// B = 1 LSTM step 1.2x).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace rnnfast {

inline constexpr std::size_t kCacheLine = 64;

// A block from plain operator new, a line longer, used from its first line boundary; the block's
// own address sits just before it. (Not aligned operator new: glibc's memalign split blocks
// around the aligned part, and threads packing varying shapes grew RSS to twice what was in use.)
inline void* allocate_aligned(std::size_t bytes) {
  if (bytes > SIZE_MAX - kCacheLine) throw std::bad_alloc();
  auto* raw = static_cast<unsigned char*>(::operator new(bytes + kCacheLine));
  const auto at = (reinterpret_cast<std::uintptr_t>(raw) + kCacheLine) & ~(kCacheLine - 1);
  auto* block = reinterpret_cast<unsigned char*>(at);  // at least 16 bytes past raw
  reinterpret_cast<void**>(block)[-1] = raw;
  return block;
}
inline void free_aligned(void* block) noexcept {
  if (block) ::operator delete(static_cast<void**>(block)[-1]);
}

// The first line boundary at or after p (in a block a line longer than what it holds).
template <typename T>
T* line_aligned(T* p) {
  const auto at = (reinterpret_cast<std::uintptr_t>(p) + kCacheLine - 1) & ~(kCacheLine - 1);
  return reinterpret_cast<T*>(at);
}

template <typename T>
struct CacheAligned {
  static_assert(std::is_trivially_destructible_v<T>, "arrays of plain values only");
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) noexcept {}  // NOLINT: rebinding, as std::allocator's
  T* allocate(std::size_t n) { return static_cast<T*>(allocate_aligned(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { free_aligned(p); }
  friend bool operator==(const CacheAligned&, const CacheAligned&) { return true; }
  friend bool operator!=(const CacheAligned&, const CacheAligned&) { return false; }
};

template <typename T>
using aligned_vector = std::vector<T, CacheAligned<T>>;

// An array left uninitialised (its writer fills every element).
struct FreeAligned {
  void operator()(void* p) const noexcept { free_aligned(p); }
};
template <typename T>
using AlignedArray = std::unique_ptr<T[], FreeAligned>;

template <typename T>
AlignedArray<T> aligned_array(std::size_t n) {
  static_assert(std::is_trivial_v<T>, "arrays of plain values only");
  return AlignedArray<T>(static_cast<T*>(allocate_aligned(n * sizeof(T))));
}

}  // namespace rnnfast
