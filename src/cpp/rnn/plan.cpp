#include "rnn/plan.h"

#include <algorithm>

#include "kernels/amx.h"
#include "runtime/cache.h"
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

// Fewer rows do, when each thread can keep the whole W_hh in its own L2: then owning rows costs
// no barrier a step and no state, input projection or cell values passing between cores, while
// splitting units pays all three. Measured on a 2-core Sapphire Rapids (2 MiB L2; us a step,
// T = 50, inference / training, units -> rows): LSTM H=128 B=8 14.9 -> 10.6 / 41.1 -> 34.6,
// H=256 B=16 77.8 -> 71.4 / 244 -> 233; GRU H=256 B=16 57.9 -> 49.6 / 181 -> 170; RNN H=128
// B=16 9.0 -> 4.9. With W_hh beyond L2 (LSTM H=512, 4 MiB) rows lose: 155 -> 220 at B=8.
// bf16 weights count at float's size (the layer loops pass sizeof(T)), which suits them: bf16
// LSTM H=256 B=8 lost with rows (AMX tiles of 4 rows), and B=16 won (30.6 -> 23.7).
constexpr index_t kRowsInL2Quarter = 4;  // W_hh within a quarter of L2
constexpr index_t kRowsInL2Half = 8;     // within half of it

// A product on AMX tiles (bf16 under avx512_amx) costs about the same for 1 to 16 rows: a tile is
// 16 rows high whatever the batch fills. Splitting its units between threads pays when each
// thread gets this much work of whole tiles (G H^2 multiply-adds a step per tile of rows).
// Measured on a 2-core Sapphire Rapids with the team on two CPUs (run_team's AwayFromCpu; bf16
// inference, T = 1000, B = 1, us a step, 1 vs 2 threads, units split): LSTM H=96 1.34 vs 1.56,
// H=128 1.95 vs 2.13, H=160 2.92 vs 2.51; GRU H=128 1.55 vs 1.74, H=192 3.02 vs 2.57; RNN
// H=256 1.94 vs 1.98. (Owning rows, from 8 rows, won everywhere: 1.3-2.0x.)
constexpr index_t kMinTileStepWorkPerThread = 48'000;

}  // namespace

index_t recurrent_tile_rows(Precision precision) {
  return precision == Precision::Bf16 && kernels::amx_active() ? kernels::kAmxRows : 1;
}

RecurrencePlan plan_recurrence(Cell cell, index_t steps, index_t batch, index_t input,
                               index_t hidden, index_t width, index_t value_bytes,
                               index_t tile_rows) {
  const index_t g = cell_info(cell).gates;
  const index_t work = batch * g * hidden * hidden;
  const index_t call_work = steps * batch * g * hidden * (input + hidden);
  const index_t groups = ceil_div(hidden, width);
  RecurrencePlan plan;
  const index_t wanted =
      std::min({static_cast<index_t>(get_num_threads()), work / kMinStepWorkPerThread,
                call_work / kMinCallWorkPerThread});
  if (wanted <= 1) return plan;
  const index_t weight_bytes = g * hidden * hidden * value_bytes;
  const index_t l2 = l2_cache_bytes();
  const index_t min_rows = weight_bytes <= l2 / 4   ? kRowsInL2Quarter
                           : weight_bytes <= l2 / 2 ? kRowsInL2Half
                                                    : kMinRowsPerThread;
  plan.by_rows = batch >= wanted * min_rows;
  // Splitting units: no more threads than groups of units, nor than the tiles' work allows.
  index_t units_threads = std::min(wanted, groups);
  if (tile_rows > 1) {
    const index_t tile_work = ceil_div(batch, tile_rows) * g * hidden * hidden;
    units_threads = std::min(units_threads, tile_work / kMinTileStepWorkPerThread);
  }
  plan.threads = static_cast<int>(plan.by_rows ? wanted : units_threads);
  if (plan.threads <= 1) plan = RecurrencePlan{};
  return plan;
}

}  // namespace rnnfast
