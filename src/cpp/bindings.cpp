// The one Python binding: checks arrays, takes their pointers, releases the GIL, calls the core.
// Inputs are converted to C-contiguous arrays of the kernel's dtype (the Python layer has already
// refused dtype mismatches); outputs written in place are checked, never converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/table.h"
#include "layer.h"
#include "optim.h"
#include "threads.h"

namespace py = pybind11;
using rnnfast::Cell;
using rnnfast::index_t;

namespace {

template <typename T>
using In = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_text(const std::vector<index_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}

void expect_shape(const char* name, const py::array& a, const std::vector<index_t>& shape) {
  std::vector<index_t> got(a.shape(), a.shape() + a.ndim());
  if (got != shape) {
    throw std::invalid_argument(std::string(name) + ": expected shape " + shape_text(shape) +
                                ", got " + shape_text(got));
  }
}

template <typename T>
const T* in_ptr(const char* name, const In<T>& a, const std::vector<index_t>& shape) {
  expect_shape(name, a, shape);
  return a.data();
}

template <typename T>
const T* in_ptr(const char* name, const std::optional<In<T>>& a,
                const std::vector<index_t>& shape) {
  return a ? in_ptr(name, *a, shape) : nullptr;
}

// An array the kernel writes into: it must already be what the kernel needs.
template <typename T>
T* out_ptr(const char* name, py::array& a, const std::vector<index_t>& shape) {
  if (!a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + ": must be writeable");
  expect_shape(name, a, shape);
  return static_cast<T*>(a.mutable_data());
}

template <typename T>
py::array_t<T> new_array(const std::vector<index_t>& shape) {
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

Cell to_cell(int cell) {
  if (cell < 0 || cell > static_cast<int>(Cell::GruResetBefore))
    throw std::invalid_argument("cell: unknown cell code " + std::to_string(cell));
  return static_cast<Cell>(cell);
}

struct Dims {
  index_t steps, batch, input, hidden, gates;
};

template <typename T>
Dims layer_dims(Cell cell, const In<T>& x, const In<T>& w_hh) {
  if (x.ndim() != 3)
    throw std::invalid_argument("x: expected 3 dimensions (T, B, I), got " +
                                std::to_string(x.ndim()));
  if (w_hh.ndim() != 2)
    throw std::invalid_argument("w_hh: expected 2 dimensions, got " + std::to_string(w_hh.ndim()));
  const index_t hidden = w_hh.shape(1), g = rnnfast::gate_count(cell);
  if (hidden < 1) throw std::invalid_argument("w_hh: hidden size must be at least 1");
  return {x.shape(0), x.shape(1), x.shape(2), hidden, g * hidden};
}

const int64_t* lengths_ptr(const std::optional<In<int64_t>>& lengths, const Dims& d) {
  if (!lengths) return nullptr;
  const int64_t* p = in_ptr("lengths", *lengths, {d.batch});
  for (index_t b = 0; b < d.batch; ++b) {
    if (p[b] < 1 || p[b] > d.steps) {
      throw std::invalid_argument("lengths: expected values in [1, " + std::to_string(d.steps) +
                                  "], got " + std::to_string(p[b]) + " at index " +
                                  std::to_string(b));
    }
  }
  return p;
}

template <typename T>
py::tuple forward_impl(Cell cell, bool reverse, const In<T>& x, const In<T>& w_ih,
                       const In<T>& w_hh, const std::optional<In<T>>& b_ih,
                       const std::optional<In<T>>& b_hh, const In<T>& h0,
                       const std::optional<In<T>>& c0, const std::optional<In<int64_t>>& lengths,
                       py::array y, index_t y_offset, bool training) {
  const Dims d = layer_dims(cell, x, w_hh);
  const bool lstm = cell == Cell::Lstm, gru = rnnfast::is_gru(cell);
  if (y.ndim() != 3) throw std::invalid_argument("y: expected 3 dimensions");
  const index_t ldy = y.shape(2);
  if (y_offset < 0 || y_offset + d.hidden > ldy)
    throw std::invalid_argument("y_offset: columns [offset, offset + H) must lie inside y");
  if (b_ih.has_value() != b_hh.has_value())
    throw std::invalid_argument("b_ih, b_hh: give both biases or neither");
  if (lstm && !c0) throw std::invalid_argument("c0: required for LSTM");

  rnnfast::LayerForward<T> a{};
  a.cell = cell;
  a.steps = d.steps;
  a.batch = d.batch;
  a.input = d.input;
  a.hidden = d.hidden;
  a.reverse = reverse;
  a.x = x.data();
  a.w_ih = in_ptr("w_ih", w_ih, {d.gates, d.input});
  a.w_hh = in_ptr("w_hh", w_hh, {d.gates, d.hidden});
  a.b_ih = in_ptr("b_ih", b_ih, {d.gates});
  a.b_hh = in_ptr("b_hh", b_hh, {d.gates});
  a.h0 = in_ptr("h0", h0, {d.batch, d.hidden});
  a.c0 = lstm ? in_ptr("c0", c0, {d.batch, d.hidden}) : nullptr;
  a.lengths = lengths_ptr(lengths, d);
  a.y = out_ptr<T>("y", y, {d.steps, d.batch, ldy}) + y_offset;
  a.ldy = ldy;

  auto h_n = new_array<T>({d.batch, d.hidden});
  a.h_n = h_n.mutable_data();
  py::object c_n = py::none();
  if (lstm) {
    auto c = new_array<T>({d.batch, d.hidden});
    a.c_n = c.mutable_data();
    c_n = c;
  }
  py::object tape = py::none();
  if (training) {
    auto gates = new_array<T>({d.steps, d.batch, d.gates});
    auto hs = new_array<T>({d.steps + 1, d.batch, d.hidden});
    a.gates = gates.mutable_data();
    a.hs = hs.mutable_data();
    py::object cs = py::none(), extra = py::none();
    if (lstm) {
      auto c = new_array<T>({d.steps + 1, d.batch, d.hidden});
      a.cs = c.mutable_data();
      cs = c;
    }
    if (gru) {
      auto e = new_array<T>({d.steps, d.batch, d.hidden});
      a.extra = e.mutable_data();
      extra = e;
    }
    tape = py::make_tuple(gates, hs, cs, extra);
  }
  {
    py::gil_scoped_release release;
    rnnfast::layer_forward(a);
  }
  return py::make_tuple(h_n, c_n, tape);
}

template <typename T>
py::tuple backward_impl(Cell cell, bool reverse, const In<T>& x, const In<T>& w_ih,
                        const In<T>& w_hh, const std::optional<In<int64_t>>& lengths,
                        const py::tuple& tape, const std::optional<In<T>>& dy, index_t dy_offset,
                        const std::optional<In<T>>& dh_n, const std::optional<In<T>>& dc_n,
                        std::optional<py::array> dx, bool accumulate_dx, py::array dw_ih,
                        py::array dw_hh, std::optional<py::array> db_ih,
                        std::optional<py::array> db_hh) {
  const Dims d = layer_dims(cell, x, w_hh);
  const bool lstm = cell == Cell::Lstm, gru = rnnfast::is_gru(cell);
  if (tape.size() != 4) throw std::invalid_argument("tape: expected 4 arrays");
  const In<T> gates = tape[0].cast<In<T>>(), hs = tape[1].cast<In<T>>();
  const std::optional<In<T>> cs = lstm ? std::optional<In<T>>(tape[2].cast<In<T>>()) : std::nullopt;
  const std::optional<In<T>> extra =
      gru ? std::optional<In<T>>(tape[3].cast<In<T>>()) : std::nullopt;
  if (db_ih.has_value() != db_hh.has_value())
    throw std::invalid_argument("db_ih, db_hh: give both bias gradients or neither");

  rnnfast::LayerBackward<T> a{};
  a.cell = cell;
  a.steps = d.steps;
  a.batch = d.batch;
  a.input = d.input;
  a.hidden = d.hidden;
  a.reverse = reverse;
  a.x = x.data();
  a.w_ih = in_ptr("w_ih", w_ih, {d.gates, d.input});
  a.w_hh = in_ptr("w_hh", w_hh, {d.gates, d.hidden});
  a.lengths = lengths_ptr(lengths, d);
  a.gates = in_ptr("tape.gates", gates, {d.steps, d.batch, d.gates});
  a.hs = in_ptr("tape.hs", hs, {d.steps + 1, d.batch, d.hidden});
  a.cs = in_ptr("tape.cs", cs, {d.steps + 1, d.batch, d.hidden});
  a.extra = in_ptr("tape.extra", extra, {d.steps, d.batch, d.hidden});
  if (dy) {
    if (dy->ndim() != 3) throw std::invalid_argument("dy: expected 3 dimensions");
    a.ldy = dy->shape(2);
    if (dy_offset < 0 || dy_offset + d.hidden > a.ldy)
      throw std::invalid_argument("dy_offset: columns [offset, offset + H) must lie inside dy");
    a.dy = in_ptr("dy", *dy, {d.steps, d.batch, a.ldy}) + dy_offset;
  }
  a.dh_n = in_ptr("dh_n", dh_n, {d.batch, d.hidden});
  a.dc_n = lstm ? in_ptr("dc_n", dc_n, {d.batch, d.hidden}) : nullptr;
  a.dx = dx ? out_ptr<T>("dx", *dx, {d.steps, d.batch, d.input}) : nullptr;
  a.accumulate_dx = accumulate_dx;
  a.dw_ih = out_ptr<T>("dw_ih", dw_ih, {d.gates, d.input});
  a.dw_hh = out_ptr<T>("dw_hh", dw_hh, {d.gates, d.hidden});
  if (db_ih) {
    a.db_ih = out_ptr<T>("db_ih", *db_ih, {d.gates});
    a.db_hh = out_ptr<T>("db_hh", *db_hh, {d.gates});
  }
  auto dh0 = new_array<T>({d.batch, d.hidden});
  a.dh0 = dh0.mutable_data();
  py::object dc0 = py::none();
  if (lstm) {
    auto c = new_array<T>({d.batch, d.hidden});
    a.dc0 = c.mutable_data();
    dc0 = c;
  }
  {
    py::gil_scoped_release release;
    rnnfast::layer_backward(a);
  }
  return py::make_tuple(dh0, dc0);
}

bool is_float32(const py::array& x) {
  if (x.dtype().equal(py::dtype::of<float>())) return true;
  if (x.dtype().equal(py::dtype::of<double>())) return false;
  throw py::type_error("x: expected dtype float32 or float64, got " +
                       std::string(py::str(x.dtype())));
}

// pybind11 picks the overload from the arguments; dispatching on x's dtype keeps one Python name.
py::tuple layer_forward(int cell, bool reverse, py::array x, py::object w_ih, py::object w_hh,
                        py::object b_ih, py::object b_hh, py::object h0, py::object c0,
                        py::object lengths, py::array y, index_t y_offset, bool training) {
  auto opt = [](const py::object& o, auto tag) {
    using A = decltype(tag);
    return o.is_none() ? std::optional<A>() : std::optional<A>(o.cast<A>());
  };
  const Cell c = to_cell(cell);
  const auto lens = opt(lengths, In<int64_t>());
  if (is_float32(x)) {
    using A = In<float>;
    return forward_impl<float>(c, reverse, x.cast<A>(), w_ih.cast<A>(), w_hh.cast<A>(),
                               opt(b_ih, A()), opt(b_hh, A()), h0.cast<A>(), opt(c0, A()), lens, y,
                               y_offset, training);
  }
  using A = In<double>;
  return forward_impl<double>(c, reverse, x.cast<A>(), w_ih.cast<A>(), w_hh.cast<A>(),
                              opt(b_ih, A()), opt(b_hh, A()), h0.cast<A>(), opt(c0, A()), lens, y,
                              y_offset, training);
}

py::tuple layer_backward(int cell, bool reverse, py::array x, py::object w_ih, py::object w_hh,
                         py::object lengths, py::tuple tape, py::object dy, index_t dy_offset,
                         py::object dh_n, py::object dc_n, py::object dx, bool accumulate_dx,
                         py::array dw_ih, py::array dw_hh, py::object db_ih, py::object db_hh) {
  auto opt = [](const py::object& o, auto tag) {
    using A = decltype(tag);
    return o.is_none() ? std::optional<A>() : std::optional<A>(o.cast<A>());
  };
  const Cell c = to_cell(cell);
  const auto lens = opt(lengths, In<int64_t>());
  const auto dbi = opt(db_ih, py::array()), dbh = opt(db_hh, py::array());
  const auto dx_out = opt(dx, py::array());
  if (is_float32(x)) {
    using A = In<float>;
    return backward_impl<float>(c, reverse, x.cast<A>(), w_ih.cast<A>(), w_hh.cast<A>(), lens, tape,
                                opt(dy, A()), dy_offset, opt(dh_n, A()), opt(dc_n, A()), dx_out,
                                accumulate_dx, dw_ih, dw_hh, dbi, dbh);
  }
  using A = In<double>;
  return backward_impl<double>(c, reverse, x.cast<A>(), w_ih.cast<A>(), w_hh.cast<A>(), lens, tape,
                               opt(dy, A()), dy_offset, opt(dh_n, A()), opt(dc_n, A()), dx_out,
                               accumulate_dx, dw_ih, dw_hh, dbi, dbh);
}

template <typename T>
py::array_t<T> activation_impl(const std::string& name, const In<T>& x) {
  const auto& kt = rnnfast::kernels::active_kernels<T>();
  auto fn = name == "exp"       ? kt.exp
            : name == "tanh"    ? kt.tanh
            : name == "sigmoid" ? kt.sigmoid
                                : nullptr;
  if (!fn)
    throw std::invalid_argument("name: expected 'exp', 'tanh' or 'sigmoid', got '" + name + "'");
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T* src = x.data();
  T* dst = y.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release release;
    fn(n, src, dst);
  }
  return y;
}

py::array activation(const std::string& name, py::array x) {
  if (is_float32(x)) return activation_impl<float>(name, x.cast<In<float>>());
  return activation_impl<double>(name, x.cast<In<double>>());
}

template <typename T>
py::array_t<T> matmul_impl(const In<T>& a, const In<T>& b, bool transpose_b) {
  if (a.ndim() != 2 || b.ndim() != 2) throw std::invalid_argument("a, b: expected 2-D arrays");
  const index_t m = a.shape(0), k = a.shape(1);
  const index_t bk = transpose_b ? b.shape(1) : b.shape(0),
                n = transpose_b ? b.shape(0) : b.shape(1);
  if (bk != k)
    throw std::invalid_argument("b: expected " + std::to_string(k) + " rows (a's columns), got " +
                                std::to_string(bk));
  py::array_t<T> c(std::vector<py::ssize_t>{m, n});
  const T *pa = a.data(), *pb = b.data();
  T* pc = c.mutable_data();
  {
    py::gil_scoped_release release;
    namespace k_ = rnnfast::kernels;
    const k_::PackedB<T> packed(transpose_b ? k_::Trans::Yes : k_::Trans::No, k, n, pb, b.shape(1));
    k_::gemm(k_::Trans::No, m, n, k, pa, k, packed, false, pc, n);
  }
  return c;
}

py::array matmul(py::array a, py::array b, bool transpose_b) {
  if (is_float32(a))
    return matmul_impl<float>(a.cast<In<float>>(), b.cast<In<float>>(), transpose_b);
  return matmul_impl<double>(a.cast<In<double>>(), b.cast<In<double>>(), transpose_b);
}

// One fused optimiser step on one parameter array (in place). Every array must already be
// C-contiguous, of p's dtype and shape: nothing is converted, since the update is in place.
template <typename T>
void optimizer_update_impl(const std::string& kind, py::array p, py::array g, py::list states,
                           const rnnfast::OptimizerHyper& h) {
  const std::vector<index_t> shape(p.shape(), p.shape() + p.ndim());
  T* pp = out_ptr<T>("param", p, shape);
  if (!g.dtype().equal(py::dtype::of<T>()) || !(g.flags() & py::array::c_style))
    throw std::invalid_argument("grad: expected a C-contiguous array of the parameter's dtype");
  expect_shape("grad", g, shape);
  const T* pg = static_cast<const T*>(g.data());
  std::vector<T*> st;
  for (size_t i = 0; i < states.size(); ++i) {
    py::array a = states[i].cast<py::array>();
    st.push_back(out_ptr<T>("state", a, shape));
  }
  const size_t need = kind == "rmsprop" ? 3 : kind == "adam" ? 2 : 1;
  if (st.size() != need)
    throw std::invalid_argument("states: expected " + std::to_string(need) + " arrays for " + kind);
  const index_t n = p.size();
  py::gil_scoped_release release;
  if (kind == "adagrad") {
    rnnfast::adagrad_update(n, pp, pg, st[0], h);
  } else if (kind == "rmsprop") {
    rnnfast::rmsprop_update(n, pp, pg, st[0], st[1], st[2], h);
  } else {
    rnnfast::adam_update(n, pp, pg, st[0], st[1], h);
  }
}

void optimizer_update(const std::string& kind, py::array p, py::array g, py::list states,
                      const py::dict& hyper) {
  if (kind != "adagrad" && kind != "rmsprop" && kind != "adam")
    throw std::invalid_argument("kind: expected adagrad, rmsprop or adam, got '" + kind + "'");
  auto num = [&](const char* key) { return hyper.contains(key) ? hyper[key].cast<double>() : 0.0; };
  auto flag = [&](const char* key) { return hyper.contains(key) && hyper[key].cast<bool>(); };
  rnnfast::OptimizerHyper h{};
  h.lr = num("lr");
  h.momentum = num("momentum");
  h.weight_decay = num("weight_decay");
  h.eps = num("eps");
  h.alpha = num("alpha");
  h.beta1 = num("beta1");
  h.beta2 = num("beta2");
  h.eps_inside_sqrt = flag("eps_inside_sqrt");
  h.centered = flag("centered");
  h.decoupled = flag("decoupled");
  h.step = hyper.contains("step") ? hyper["step"].cast<long long>() : 1;
  if (p.dtype().equal(py::dtype::of<float>()))
    return optimizer_update_impl<float>(kind, p, g, states, h);
  if (p.dtype().equal(py::dtype::of<double>()))
    return optimizer_update_impl<double>(kind, p, g, states, h);
  throw py::type_error("param: expected dtype float32 or float64, got " +
                       std::string(py::str(p.dtype())));
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnfast's C++ core: one direction of one recurrent layer, forward and backward.";
  namespace k = rnnfast::kernels;
  // RNNFAST_ISA forces an ISA for the life of the process; a bad value fails the import.
  if (const char* forced = std::getenv("RNNFAST_ISA"); forced && *forced)
    k::select_isa(k::parse_isa(forced));
  m.attr("__version__") = RNNFAST_VERSION;
  m.attr("CELL_RNN_TANH") = static_cast<int>(Cell::RnnTanh);
  m.attr("CELL_RNN_RELU") = static_cast<int>(Cell::RnnRelu);
  m.attr("CELL_LSTM") = static_cast<int>(Cell::Lstm);
  m.attr("CELL_GRU") = static_cast<int>(Cell::Gru);
  m.attr("CELL_GRU_RESET_BEFORE") = static_cast<int>(Cell::GruResetBefore);

  m.def("layer_forward", &layer_forward, py::arg("cell"), py::arg("reverse"), py::arg("x"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true), py::arg("b_hh").none(true),
        py::arg("h0"), py::arg("c0").none(true), py::arg("lengths").none(true), py::arg("y"),
        py::arg("y_offset"), py::arg("training"),
        "Runs one direction of one layer; writes y[..., y_offset:y_offset+H]. "
        "Returns (h_n, c_n or None, tape or None).");
  m.def("layer_backward", &layer_backward, py::arg("cell"), py::arg("reverse"), py::arg("x"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("lengths").none(true), py::arg("tape"),
        py::arg("dy").none(true), py::arg("dy_offset"), py::arg("dh_n").none(true),
        py::arg("dc_n").none(true), py::arg("dx").none(true), py::arg("accumulate_dx"),
        py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih").none(true),
        py::arg("db_hh").none(true),
        "BPTT through one direction of one layer. Accumulates weight gradients in place, "
        "writes (or adds to) dx. Returns (dh0, dc0 or None).");
  m.attr("MAX_THREADS") = rnnfast::kMaxThreads;
  m.def("set_num_threads", &rnnfast::set_num_threads, py::arg("n"),
        "Raises ValueError out of [1, MAX_THREADS], RuntimeError if n threads cannot start.");
  m.def("get_num_threads", &rnnfast::get_num_threads, "The setting.");
  m.def("usable_threads", &rnnfast::usable_threads,
        "The team a region may have now (1 in a child forked after a team ran).");
  m.def("have_openmp", &rnnfast::have_openmp);
  m.def(
      "isa", [] { return std::string(k::isa_name(k::active_isa())); },
      "The instruction set the kernels run with.");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> names;
        for (k::Isa isa : {k::Isa::Avx512, k::Isa::Avx2, k::Isa::Neon, k::Isa::Generic})
          if (k::isa_supported(isa)) names.emplace_back(k::isa_name(isa));
        return names;
      },
      "ISAs this build has and this CPU runs, best first.");
  m.def("compiler", &compiler, "The compiler that built the core.");
  m.def("optimizer_update", &optimizer_update, py::arg("kind"), py::arg("param"), py::arg("grad"),
        py::arg("states"), py::arg("hyper"),
        "One fused optimiser step (adagrad, rmsprop, adam) on one parameter array, in place.");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("transpose_b") = false,
        "a @ b (or a @ b.T) with the core's GEMM, b packed first: for tests and peak measurement.");
  m.def(
      "recurrence_plan",
      [](int cell, index_t batch, index_t hidden, bool float32) {
        const index_t mr = float32 ? k::active_kernels<float>().mr : k::active_kernels<double>().mr;
        const auto plan = rnnfast::plan_recurrence(to_cell(cell), batch, hidden, mr);
        return py::make_tuple(plan.threads, plan.by_rows ? "rows" : "units");
      },
      py::arg("cell"), py::arg("batch"), py::arg("hidden"), py::arg("float32"),
      "How the recurrence of such a layer is split now: (threads, 'rows' or 'units').");
  m.def("activation", &activation, py::arg("name"), py::arg("x"),
        "The kernels' vectorised exp, tanh or sigmoid of x (for testing their error bounds).");
}
