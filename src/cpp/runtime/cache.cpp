#include "runtime/cache.h"

#include <fstream>
#include <string>

#if defined(__linux__)
#include <unistd.h>
#endif

namespace rnnfast {
namespace {

// "2048K" or "1M" as sysfs writes it; 0 when unreadable.
index_t parse_size(const std::string& text) {
  std::size_t end = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &end);
  } catch (...) {
    return 0;
  }
  const char unit = end < text.size() ? text[end] : ' ';
  const index_t scale = unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : 1;
  return value > 0 ? static_cast<index_t>(value) * scale : 0;
}

index_t query_l2_bytes() {
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
  const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (reported > 0) return static_cast<index_t>(reported);
#endif
  std::ifstream sysfs("/sys/devices/system/cpu/cpu0/cache/index2/size");
  std::string text;
  if (sysfs >> text) {
    if (const index_t bytes = parse_size(text)) return bytes;
  }
  return index_t{1} << 20;
}

}  // namespace

index_t l2_cache_bytes() {
  static const index_t bytes = query_l2_bytes();  // a fact of the machine, read once
  return bytes;
}

}  // namespace rnnfast
