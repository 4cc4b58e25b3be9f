// _core's array operations: the GEMM and activations (for tests and the peak measurement), and
// the fused optimiser updates, one typed entry point each.
#include <algorithm>
#include <string>

#include "kernels/gemm.h"
#include "kernels/table.h"
#include "ops/loss.h"
#include "ops/optim.h"
#include "python/arrays.h"
#include "runtime/threads.h"

namespace rnnfast::python {
namespace {

template <typename T>
py::array activation_typed(const std::string& name, const py::array& x) {
  const auto& kt = kernels::active_kernels<T>();
  auto fn = name == "exp"       ? kt.exp
            : name == "tanh"    ? kt.tanh
            : name == "sigmoid" ? kt.sigmoid
                                : nullptr;
  if (!fn)
    throw std::invalid_argument("name: expected 'exp', 'tanh' or 'sigmoid', got '" + name + "'");
  const T* src = input<T>("x", x, shape_of(x));
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  T* dst = y.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release release;
    fn(n, src, dst);
  }
  return y;
}

// op(a) @ op(b), into a new array or added to `out`.
template <typename T>
py::object matmul_typed(const py::array& a, const py::array& b, bool transpose_a, bool transpose_b,
                        const py::object& out) {
  if (a.ndim() != 2 || b.ndim() != 2) throw std::invalid_argument("a, b: expected 2-D arrays");
  const index_t m = transpose_a ? a.shape(1) : a.shape(0),
                k = transpose_a ? a.shape(0) : a.shape(1);
  const index_t bk = transpose_b ? b.shape(1) : b.shape(0),
                n = transpose_b ? b.shape(0) : b.shape(1);
  if (bk != k)
    throw std::invalid_argument("b: expected " + std::to_string(k) + " rows (a's columns), got " +
                                std::to_string(bk));
  const T* pa = input<T>("a", a, shape_of(a));
  const T* pb = input<T>("b", b, shape_of(b));
  py::array c = out.is_none() ? py::array(new_array<T>({m, n})) : out.cast<py::array>();
  T* pc = out.is_none() ? static_cast<T*>(c.mutable_data()) : output<T>("out", c, {m, n});
  {
    py::gil_scoped_release release;
    const CallTeam team(static_cast<index_t>(std::min(
        9.0e18, static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k))));
    namespace k_ = kernels;
    const k_::PackedB<T> packed(transpose_b ? k_::Trans::Yes : k_::Trans::No, k, n, pb, b.shape(1));
    k_::gemm(transpose_a ? k_::Trans::Yes : k_::Trans::No, m, n, k, pa, a.shape(1), packed,
             !out.is_none(), pc, n);
  }
  return out.is_none() ? py::object(c) : py::object(py::none());
}

template <typename T>
py::tuple cross_entropy_typed(const py::array& z, const py::array& targets,
                              const py::array& counted, double scale) {
  if (z.ndim() != 2)
    throw std::invalid_argument("logits: expected 2 dimensions (rows, classes), got " +
                                std::to_string(z.ndim()));
  const index_t rows = z.shape(0), classes = z.shape(1);
  if (classes < 1) throw std::invalid_argument("logits: expected at least one class");
  const T* pz = input<T>("logits", z, {rows, classes});
  const int64_t* pt = input<int64_t>("targets", targets, {rows});
  if (!counted.dtype().equal(py::dtype::of<bool>()))
    throw py::type_error("counted: expected dtype bool, got " +
                         std::string(py::str(counted.dtype())));
  if (!has_shape(counted, Shape{rows}) || !(counted.flags() & py::array::c_style))
    throw std::invalid_argument("counted: expected a C-contiguous array of shape (" +
                                std::to_string(rows) + ",)");
  const auto* pc = static_cast<const uint8_t*>(counted.data());
  for (index_t r = 0; r < rows; ++r) {
    if (pc[r] && (pt[r] < 0 || pt[r] >= classes)) {
      throw std::invalid_argument("targets: expected values in [0, " + std::to_string(classes) +
                                  "), got " + std::to_string(pt[r]) + " at row " +
                                  std::to_string(r));
    }
  }
  auto grad = new_array<T>({rows, classes});
  T* pg = grad.mutable_data();
  double total;
  {
    py::gil_scoped_release release;
    total = softmax_cross_entropy(rows, classes, pz, pt, pc, static_cast<T>(scale), pg);
  }
  return py::make_tuple(total, grad);
}

// One optimiser step on one parameter array, in place: every array must already be C-contiguous,
// of p's dtype and shape (nothing is converted: the update is in place).
template <typename T, typename Update>
void update(py::array p, const py::array& g, std::vector<py::array> states, const Update& run) {
  const auto shape = shape_of(p);
  T* pp = output<T>("param", p, shape);
  const T* pg = input<T>("grad", g, shape);
  std::vector<T*> st;
  for (size_t i = 0; i < states.size(); ++i)
    st.push_back(output<T>("state[" + std::to_string(i) + "]", states[i], shape));
  const index_t n = p.size();
  py::gil_scoped_release release;
  run(n, pp, pg, st);
}

template <typename Update>
void update_any(py::array p, const py::array& g, std::vector<py::array> states, const Update& run) {
  if (dtype_of("param", p) == Dtype::F32) {
    update<float>(p, g, std::move(states),
                  [&](index_t n, float* pp, const float* pg, auto& st) { run(n, pp, pg, st); });
  } else {
    update<double>(p, g, std::move(states),
                   [&](index_t n, double* pp, const double* pg, auto& st) { run(n, pp, pg, st); });
  }
}

}  // namespace

void init_ops(py::module_& m) {
  m.def(
      "activation",
      [](const std::string& name, const py::array& x) {
        return dtype_of("x", x) == Dtype::F32 ? activation_typed<float>(name, x)
                                              : activation_typed<double>(name, x);
      },
      py::arg("name"), py::arg("x"),
      "The kernels' vectorised exp, tanh or sigmoid of x (for testing their error bounds).");
  m.def(
      "matmul",
      [](const py::array& a, const py::array& b, bool transpose_a, bool transpose_b,
         const py::object& out) {
        return dtype_of("a", a) == Dtype::F32
                   ? matmul_typed<float>(a, b, transpose_a, transpose_b, out)
                   : matmul_typed<double>(a, b, transpose_a, transpose_b, out);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("out").none(true) = py::none(),
      "op(a) @ op(b) with the core's GEMM (b packed first): a new array, or None after adding the "
      "product to `out`.");
  m.def(
      "softmax_cross_entropy",
      [](const py::array& z, const py::array& targets, const py::array& counted, double scale) {
        return dtype_of("logits", z) == Dtype::F32
                   ? cross_entropy_typed<float>(z, targets, counted, scale)
                   : cross_entropy_typed<double>(z, targets, counted, scale);
      },
      py::arg("logits"), py::arg("targets"), py::arg("counted"), py::arg("scale"),
      "(sum of the counted rows' losses, (softmax - onehot) * scale, zero on rows not counted).");
  m.def(
      "adagrad_update",
      [](py::array p, const py::array& g, py::array sum, double lr, double eps, double weight_decay,
         bool eps_inside_sqrt) {
        OptimizerHyper h{};
        h.lr = lr, h.eps = eps, h.weight_decay = weight_decay, h.eps_inside_sqrt = eps_inside_sqrt;
        update_any(p, g, {sum}, [&](index_t n, auto* pp, const auto* pg, auto& st) {
          adagrad_update(n, pp, pg, st[0], h);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("sum"), py::arg("lr"), py::arg("eps"),
      py::arg("weight_decay"), py::arg("eps_inside_sqrt"));
  m.def(
      "rmsprop_update",
      [](py::array p, const py::array& g, py::array square_avg, py::array grad_avg,
         py::array momentum_buffer, double lr, double alpha, double eps, double weight_decay,
         double momentum, bool centered) {
        OptimizerHyper h{};
        h.lr = lr, h.alpha = alpha, h.eps = eps, h.weight_decay = weight_decay;
        h.momentum = momentum, h.centered = centered;
        update_any(p, g, {square_avg, grad_avg, momentum_buffer},
                   [&](index_t n, auto* pp, const auto* pg, auto& st) {
                     rmsprop_update(n, pp, pg, st[0], st[1], st[2], h);
                   });
      },
      py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg"),
      py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
      py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"));
  m.def(
      "adam_update",
      [](py::array p, const py::array& g, py::array exp_avg, py::array exp_avg_sq, double lr,
         double beta1, double beta2, double eps, double weight_decay, long long step,
         bool decoupled) {
        if (step < 1)
          throw std::invalid_argument("step: expected >= 1, got " + std::to_string(step));
        OptimizerHyper h{};
        h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps, h.weight_decay = weight_decay;
        h.step = step, h.decoupled = decoupled;
        update_any(p, g, {exp_avg, exp_avg_sq}, [&](index_t n, auto* pp, const auto* pg, auto& st) {
          adam_update(n, pp, pg, st[0], st[1], h);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
      py::arg("decoupled"));
}

}  // namespace rnnfast::python
