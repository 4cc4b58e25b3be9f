// How a layer direction's recurrence is shared among threads: each thread owns rows of the batch
// (no synchronisation: every row is independent) or, when the batch is too small to split, groups
// of hidden units (all rows), and the team meets at a StepBarrier every step.
#pragma once
#include "rnn/cell.h"

namespace rnnfast {

struct RecurrencePlan {
  int threads = 1;
  bool by_rows = true;
};

// `steps` and `input`: the whole call's work decides whether a team is worth starting at all.
// `value_bytes`: the size of an element of the recurrent weights as computed with (4 for float).
// `tile_rows`: the rows of the recurrent product's tiles when it runs on matrix tiles whose cost
// does not shrink with fewer rows (AMX: kernels::kAmxRows), else 1 (vector kernels).
RecurrencePlan plan_recurrence(Cell cell, index_t steps, index_t batch, index_t input,
                               index_t hidden, index_t width, index_t value_bytes,
                               index_t tile_rows);

// The rows of the recurrent product's tiles for `precision` on the active ISA: bf16 products run
// on AMX tiles under avx512_amx (kernels/recurrent_impl.h), else 1.
index_t recurrent_tile_rows(Precision precision);

// Rows [first, last) or groups [first, last) of thread `member` of `team`: contiguous, balanced.
struct Share {
  index_t first, last;
};
inline Share share_of(index_t count, int member, int team) {
  return {count * member / team, count * (member + 1) / team};
}

}  // namespace rnnfast
