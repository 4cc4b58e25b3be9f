#include "runtime/arena.h"

#include <algorithm>
#include <new>

namespace rnnfast {
namespace {

constexpr std::align_val_t kAlign{64};

void* allocate(size_t bytes) {
  return ::operator new(std::max<size_t>(bytes, 1), kAlign);
}
void deallocate(void* block) {
  ::operator delete(block, kAlign);
}

}  // namespace

BufferPool::~BufferPool() {
  release();
}

void* BufferPool::take(size_t bytes, size_t* size) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    // The smallest cached block that fits, unless it is far larger than asked for (a small
    // request must not pin a tape-sized block).
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->first >= bytes && it->first <= 2 * bytes + (size_t{1} << 20) &&
          (best == free_.end() || it->first < best->first))
        best = it;
    }
    if (best != free_.end()) {
      *size = best->first;
      void* block = best->second;
      free_.erase(best);
      return block;
    }
  }
  *size = bytes;
  return allocate(bytes);
}

void BufferPool::give(void* block, size_t size) {
  void* evicted = nullptr;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(size, block);
    if (free_.size() > kMaxCached) {
      evicted = free_.front().second;
      free_.erase(free_.begin());
    }
  }
  if (evicted) deallocate(evicted);
}

size_t BufferPool::cached_bytes() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  size_t total = 0;
  for (const auto& f : free_) total += f.first;
  return total;
}

void BufferPool::release() {
  std::vector<std::pair<size_t, void*>> blocks;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
  }
  for (const auto& f : blocks) deallocate(f.second);
}

}  // namespace rnnfast
