#include "rnn/plan.h"

#include <algorithm>

#include "runtime/threads.h"

namespace rnnfast {
namespace {

// Below this many multiply-adds per step and thread, the barrier and the shared state cost more
// than a second thread saves. Measured on a 2-core Zen 3 (B = 1, us a step, 1 vs 2 threads):
// RNN H=96 (9216 a step) 0.95 vs 1.02, H=128 (16384) 1.61 vs 1.44; LSTM H=64 (16384) 1.73 vs
// 2.12, H=96 (36864) 4.29 vs 2.92.
constexpr index_t kMinStepWorkPerThread = 9216;

// Rows a thread needs before splitting rows beats splitting units: enough for two of the
// product's row tiles, so that each thread's tiles stay full.
constexpr index_t kMinRowsPerThread = 12;

}  // namespace

RecurrencePlan plan_recurrence(Cell cell, index_t batch, index_t hidden, index_t width) {
  const index_t g = cell_info(cell).gates;
  const index_t work = batch * g * hidden * hidden;
  const index_t groups = ceil_div(hidden, width);
  RecurrencePlan plan;
  const index_t wanted = std::min<index_t>(get_num_threads(), work / kMinStepWorkPerThread);
  if (wanted <= 1) return plan;
  plan.by_rows = batch >= wanted * kMinRowsPerThread;
  // Splitting units: no more threads than groups of units.
  plan.threads = static_cast<int>(plan.by_rows ? wanted : std::min(wanted, groups));
  if (plan.threads <= 1) plan = RecurrencePlan{};
  return plan;
}

}  // namespace rnnfast
