#include "runtime/arena.h"

#include <algorithm>
#include <new>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define RNNFAST_HAVE_MMAP 1
#endif

namespace rnnfast {
namespace {

constexpr std::align_val_t kAlign{64};
constexpr size_t kPage = 4096;

}  // namespace

size_t map_size(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  return bytes >= kMapFrom ? (bytes + kPage - 1) / kPage * kPage : bytes;
}

void* map_block(size_t bytes) {
#ifdef RNNFAST_HAVE_MMAP
  if (bytes >= kMapFrom) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }
#endif
  return ::operator new(bytes, kAlign);
}

void unmap_block(void* block, size_t bytes) {
#ifdef RNNFAST_HAVE_MMAP
  if (bytes >= kMapFrom) {
    munmap(block, bytes);
    return;
  }
#endif
  (void)bytes;
  ::operator delete(block, kAlign);
}

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
      note_taken(*size);
      return block;
    }
  }
  *size = map_size(bytes);
  void* block = map_block(*size);
  const std::lock_guard<std::mutex> lock(mutex_);
  note_taken(*size);
  return block;
}

void BufferPool::note_taken(size_t size) {
  in_use_ += size;
  peak_in_use_ = std::max(peak_in_use_, in_use_);
}

void BufferPool::give(void* block, size_t size) {
  std::vector<std::pair<size_t, void*>> evicted;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(size, block);
    in_use_ -= size;
    // The oldest blocks go while there are too many, or while they hold more than the most
    // the pool ever had out at once: a loop of one shape keeps all it needs, calls of varying
    // shapes do not pile up blocks of every size.
    size_t total = 0;
    for (const auto& f : free_) total += f.first;
    while (free_.size() > kMaxCached || (total > peak_in_use_ && free_.size() > 1)) {
      total -= free_.front().first;
      evicted.push_back(free_.front());
      free_.erase(free_.begin());
    }
  }
  for (const auto& f : evicted) unmap_block(f.second, f.first);
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
  for (const auto& f : blocks) unmap_block(f.second, f.first);
}

}  // namespace rnnfast
