#include "rnn/packing.h"

#include <stdexcept>

#include "kernels/amx.h"
#include "kernels/bf16.h"
#include "kernels/table.h"
#include "runtime/threads.h"

namespace rnnfast {
namespace {

using kernels::PackedB;
using kernels::Trans;

// W(gate, unit, k) = w[(row0 + gate*units + unit) * depth + k] for gate < gates, unit < units,
// k < depth: panel g holds [k][gate][lane] for the units of group g (zero past `units`).
template <typename T>
Panels<T> forward_panels(const T* w, index_t units, index_t depth, index_t row0, index_t gates,
                         index_t width) {
  Panels<T> p;
  const index_t groups = ceil_div(units, width);
  p.stride = depth * gates * width + kernels::kPanelPad;  // (see kPanelPad)
  p.data.resize(static_cast<size_t>(groups * p.stride));
  parallel_for(groups, 1, [&](index_t g0, index_t g1) {
    for (index_t g = g0; g < g1; ++g) {
      T* panel = p.data.data() + g * p.stride;
      for (index_t gate = 0; gate < gates; ++gate) {
        for (index_t lane = 0; lane < width; ++lane) {
          const index_t unit = g * width + lane;
          T* dst = panel + gate * width + lane;
          const T* src = w + (row0 + gate * units + unit) * depth;
          for (index_t k = 0; k < depth; ++k) dst[k * gates * width] = unit < units ? src[k] : T(0);
        }
      }
    }
  });
  return p;
}

// The product out = in * w over rows row0 .. row0+depth of w (row length `units`): panel g holds
// [k][lane] = w[(row0 + k) * units + g*width + lane] (zero past `units`).
template <typename T>
Panels<T> backward_panels(const T* w, index_t units, index_t row0, index_t depth, index_t width) {
  Panels<T> p;
  const index_t groups = ceil_div(units, width);
  p.stride = depth * width + kernels::kPanelPad;
  p.data.resize(static_cast<size_t>(groups * p.stride));
  parallel_for(groups, 1, [&](index_t g0, index_t g1) {
    for (index_t g = g0; g < g1; ++g) {
      T* panel = p.data.data() + g * p.stride;
      const index_t n = std::min(width, units - g * width);
      for (index_t k = 0; k < depth; ++k) {
        const T* src = w + (row0 + k) * units + g * width;
        for (index_t lane = 0; lane < width; ++lane)
          panel[k * width + lane] = lane < n ? src[lane] : T(0);
      }
    }
  });
  return p;
}

// The same panels in bf16 pairs: each panel's rows k and k+1 ([k][cols] values, `cols` per row)
// become one row of words; an odd depth's last row pairs with zeros. The float panels go.
template <typename T>
void to_pairs(Panels<T>& p, index_t depth, index_t cols, index_t groups) {
  if constexpr (sizeof(T) != 4) {
    throw std::invalid_argument("precision: bf16 products need float32 weights");
  } else {
    // Rows of pairs zero padded to whole AMX tiles (kernels/amx.h), which read 16 at a time.
    const index_t half = (depth + 1) / 2, rows = kernels::round_up(half, kernels::kAmxDepth);
    const index_t stride = rows * cols + kernels::kPanelPad;
    p.pairs.assign(static_cast<size_t>(groups * stride), 0u);
    parallel_for(groups, 1, [&](index_t g0, index_t g1) {
      for (index_t g = g0; g < g1; ++g) {
        const T* src = p.data.data() + g * p.stride;
        uint32_t* dst = p.pairs.data() + g * stride;
        for (index_t q = 0; q < half; ++q)
          for (index_t j = 0; j < cols; ++j)
            dst[q * cols + j] = kernels::bf16_pair(
                src[2 * q * cols + j], 2 * q + 1 < depth ? src[(2 * q + 1) * cols + j] : 0.0f);
      }
    });
    p.stride = stride;
    aligned_vector<T>().swap(p.data);
  }
}

template <typename T>
Panels<T> forward_panels(const T* w, index_t units, index_t depth, index_t row0, index_t gates,
                         index_t width, Precision precision) {
  Panels<T> p = forward_panels(w, units, depth, row0, gates, width);
  if (precision == Precision::Bf16) to_pairs(p, depth, gates * width, ceil_div(units, width));
  return p;
}

template <typename T>
Panels<T> backward_panels(const T* w, index_t units, index_t row0, index_t depth, index_t width,
                          Precision precision) {
  Panels<T> p = backward_panels(w, units, row0, depth, width);
  if (precision == Precision::Bf16) to_pairs(p, depth, width, ceil_div(units, width));
  return p;
}

}  // namespace

template <typename T>
std::shared_ptr<const ForwardPacks<T>> pack_forward(Cell cell, index_t input, index_t hidden,
                                                    index_t proj, const LayerWeights<T>& w,
                                                    Precision precision) {
  const CellInfo& info = cell_info(cell);
  const index_t g = info.gates, gh = g * hidden, width = kernels::active_kernels<T>().width;
  const index_t state = proj ? proj : hidden;  // what W_hh multiplies
  const Precision pr = precision;
  auto p = std::make_shared<ForwardPacks<T>>(ForwardPacks<T>{
      pr, PackedB<T>(Trans::Yes, input, gh, w.w_ih, input, {}, pr), {}, {}, {}, {}, {}, {}, 0});
  if (w.w_p) p->peep.assign(w.w_p, w.w_p + 3 * hidden);
  p->groups = ceil_div(hidden, width);
  if (info.two_part) {
    p->rec = forward_panels(w.w_hh, hidden, hidden, 0, 2, width, pr);
    p->rec_n = forward_panels(w.w_hh, hidden, hidden, 2 * hidden, 1, width, pr);
  } else {
    p->rec = forward_panels(w.w_hh, hidden, state, 0, g, width, pr);
  }
  if (proj) p->proj = forward_panels(w.w_hr, proj, hidden, 0, 1, width, pr);
  if (w.b_ih) {
    p->bias.resize(static_cast<size_t>(gh));
    const bool lbr = info.linear_before_reset;
    for (index_t j = 0; j < gh; ++j)
      p->bias[j] = lbr && j >= 2 * hidden ? w.b_ih[j] : w.b_ih[j] + w.b_hh[j];
    if (lbr) p->bias_hn.assign(w.b_hh + 2 * hidden, w.b_hh + 3 * hidden);
  }
  return p;
}

template <typename T>
std::shared_ptr<const BackwardPacks<T>> pack_backward(Cell cell, index_t input, index_t hidden,
                                                      index_t proj, const LayerWeights<T>& w,
                                                      Precision precision) {
  const CellInfo& info = cell_info(cell);
  const index_t gh = info.gates * hidden, width = kernels::active_kernels<T>().width;
  const Precision pr = precision;
  auto p = std::make_shared<BackwardPacks<T>>();
  p->precision = pr;
  // A linear-before-reset GRU's n-gate input gradient lives apart (rnn/layer_backward.cpp).
  if (info.linear_before_reset) {
    p->w_ih.emplace_back(Trans::No, 2 * hidden, input, w.w_ih, input, kernels::PaddingRows{}, pr);
    p->w_ih.emplace_back(Trans::No, hidden, input, w.w_ih + 2 * hidden * input, input,
                         kernels::PaddingRows{}, pr);
  } else {
    p->w_ih.emplace_back(Trans::No, gh, input, w.w_ih, input, kernels::PaddingRows{}, pr);
  }
  if (info.two_part) {
    p->rec = backward_panels(w.w_hh, hidden, 0, 2 * hidden, width, pr);
    p->rec_n = backward_panels(w.w_hh, hidden, 2 * hidden, hidden, width, pr);
  } else {
    p->rec = backward_panels(w.w_hh, proj ? proj : hidden, 0, gh, width, pr);
  }
  if (proj) p->proj = backward_panels(w.w_hr, hidden, 0, proj, width, pr);
  if (w.w_p) p->peep.assign(w.w_p, w.w_p + 3 * hidden);
  return p;
}

#define RNNFAST_INSTANTIATE(T)                                             \
  template std::shared_ptr<const ForwardPacks<T>> pack_forward<T>(         \
      Cell, index_t, index_t, index_t, const LayerWeights<T>&, Precision); \
  template std::shared_ptr<const BackwardPacks<T>> pack_backward<T>(       \
      Cell, index_t, index_t, index_t, const LayerWeights<T>&, Precision);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast
