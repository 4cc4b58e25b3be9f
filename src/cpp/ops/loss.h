// Softmax cross-entropy fused with its gradient: one pass over the logits instead of NumPy's
// dozen (max, shift, exp, sum, log, gather, mask, scale...), for the output layer of a training
// step.
#pragma once
#include <cstdint>

#include "runtime/types.h"

namespace rnnfast {

// For each row r of the logits z [rows, classes] (row stride `classes`) that `counted` marks
// (nonzero), loss_r = logsumexp(z_r) - z_r[targets[r]] and grad_r = (softmax(z_r) -
// onehot(targets[r])) * scale; rows not counted get grad_r = 0 and count for nothing (their
// targets are not read). Targets of counted rows must be in [0, classes). Returns the sum of the
// counted rows' losses, accumulated in double in row order (the same for any thread count).
// NaN or inf logits propagate as NumPy's formula would.
template <typename T>
double softmax_cross_entropy(index_t rows, index_t classes, const T* z, const int64_t* targets,
                             const uint8_t* counted, T scale, T* grad);

}  // namespace rnnfast
