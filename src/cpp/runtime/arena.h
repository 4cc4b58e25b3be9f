// Memory reused across calls. A module's workspaces and tapes are Buffers taken from its pool
// and given back when they die, so a training loop does not fault in tens of MB of fresh pages
// every call (PyTorch's oneDNN path keeps its workspaces too). Thread-safe.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "runtime/types.h"

namespace rnnfast {

// Memory straight from the OS (mmap) from kMapFrom bytes on, else from operator new (64-byte
// aligned); `bytes` must be given back as it was rounded by map_size. Large blocks freed this
// way return to the OS at once instead of staying in the malloc arena of whichever thread freed
// them (threads calling modules of varying shapes grew RSS to several times what was in use).
inline constexpr size_t kMapFrom = size_t{1} << 20;
size_t map_size(size_t bytes);
void* map_block(size_t bytes);  // throws std::bad_alloc
void unmap_block(void* block, size_t bytes);

class BufferPool {
 public:
  BufferPool() = default;
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A block of at least `bytes` (64-byte aligned), cached or new; *size gets its real size.
  void* take(size_t bytes, size_t* size);
  void give(void* block, size_t size);
  size_t cached_bytes() const;
  void release();  // frees every cached block

 private:
  static constexpr size_t kMaxCached = 24;  // blocks: a few tapes and workspaces' worth
  void note_taken(size_t size);             // under mutex_
  mutable std::mutex mutex_;
  size_t in_use_ = 0, peak_in_use_ = 0;         // bytes handed out now, and at most so far
  std::vector<std::pair<size_t, void*>> free_;  // (size, block), oldest first
};

// An array of n values from a pool, given back on destruction. Not zeroed.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<BufferPool> pool, index_t n) : pool_(std::move(pool)), n_(n) {
    if (n > 0) data_ = static_cast<T*>(pool_->take(static_cast<size_t>(n) * sizeof(T), &bytes_));
  }
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::move(o.pool_);
      data_ = std::exchange(o.data_, nullptr);
      n_ = std::exchange(o.n_, 0);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() const { return data_; }
  index_t size() const { return n_; }
  void reset() {
    if (data_) pool_->give(data_, bytes_);
    data_ = nullptr;
    n_ = 0;
  }

 private:
  std::shared_ptr<BufferPool> pool_;
  T* data_ = nullptr;
  index_t n_ = 0;
  size_t bytes_ = 0;
};

}  // namespace rnnfast
