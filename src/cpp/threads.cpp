#include "threads.h"

#include <atomic>

namespace rnnfast {
namespace {

int default_num_threads() {
#ifdef RNNFAST_HAVE_OPENMP
  return std::max(1, omp_get_max_threads());  // honours OMP_NUM_THREADS
#else
  return 1;
#endif
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}

}  // namespace

void set_num_threads(int n) {
  thread_setting().store(std::max(1, n));
}
int get_num_threads() {
  return thread_setting().load();
}

bool have_openmp() {
#ifdef RNNFAST_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace rnnfast
