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

// Below this many multiply-adds for the whole call and thread, starting a team (waking libgomp's
// threads, meeting them at the end) costs more than the thread saves. Measured with step()
// (T = 1, B = 1) on a 2-core Zen 4, us a call, 1 vs 2 threads: RNN H=256 (131K) 9.5 vs 15.5,
// LSTM H=128 (131K) 9.9 vs 14.6, RNN H=384 (295K) 19.8 vs 21.6; LSTM H=256 (524K) 32.6 vs 26.6.
constexpr index_t kMinCallWorkPerThread = 200'000;

// Rows a thread needs before splitting rows beats splitting units: enough for two of the
// product's row tiles, so that each thread's tiles stay full.
constexpr index_t kMinRowsPerThread = 12;

}  // namespace

RecurrencePlan plan_recurrence(Cell cell, index_t steps, index_t batch, index_t input,
                               index_t hidden, index_t width) {
  const index_t g = cell_info(cell).gates;
  const index_t work = batch * g * hidden * hidden;
  const index_t call_work = steps * batch * g * hidden * (input + hidden);
  const index_t groups = ceil_div(hidden, width);
  RecurrencePlan plan;
  const index_t wanted =
      std::min({static_cast<index_t>(get_num_threads()), work / kMinStepWorkPerThread,
                call_work / kMinCallWorkPerThread});
  if (wanted <= 1) return plan;
  plan.by_rows = batch >= wanted * kMinRowsPerThread;
  // Splitting units: no more threads than groups of units.
  plan.threads = static_cast<int>(plan.by_rows ? wanted : std::min(wanted, groups));
  if (plan.threads <= 1) plan = RecurrencePlan{};
  return plan;
}

}  // namespace rnnfast
