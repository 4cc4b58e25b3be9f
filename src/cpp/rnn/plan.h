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
RecurrencePlan plan_recurrence(Cell cell, index_t steps, index_t batch, index_t input,
                               index_t hidden, index_t width, index_t value_bytes);

// Rows [first, last) or groups [first, last) of thread `member` of `team`: contiguous, balanced.
struct Share {
  index_t first, last;
};
inline Share share_of(index_t count, int member, int team) {
  return {count * member / team, count * (member + 1) / team};
}

}  // namespace rnnfast
