// _core's process-wide settings and facts: threads, the ISA, the build, the cell table.
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/peak.h"
#include "kernels/table.h"
#include "python/arrays.h"
#include "rnn/cell.h"
#include "rnn/plan.h"
#include "runtime/cache.h"
#include "runtime/isa.h"
#include "runtime/threads.h"

namespace rnnfast::python {
namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

// A probe's time budget: (0, 60] seconds.
void check_seconds(double seconds) {
  if (!(seconds > 0 && seconds <= 60))
    throw std::invalid_argument("seconds: expected a number in (0, 60], got " +
                                std::to_string(seconds));
}

}  // namespace

void init_runtime(py::module_& m) {
  m.attr("MAX_THREADS") = kMaxThreads;
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Raises ValueError out of [1, MAX_THREADS], RuntimeError if n threads cannot start.");
  m.def("get_num_threads", &get_num_threads, "The setting.");
  m.def("usable_threads", &usable_threads,
        "The team a region may have now (1 in a child forked after a team ran).");
  m.def("have_openmp", &have_openmp);
  m.def(
      "isa", [] { return std::string(isa_name(active_isa())); },
      "The instruction set the kernels run with.");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> names;
        for (Isa isa : kIsasBestFirst)
          if (isa_supported(isa)) names.emplace_back(isa_name(isa));
        return names;
      },
      "ISAs this build has and this CPU runs, best first.");
  m.def("compiler", &compiler, "The compiler that built the core.");
  m.def(
      "fma_peak",
      [](double seconds) {
        check_seconds(seconds);
        const int threads = usable_threads();
        py::gil_scoped_release release;
        return kernels::fma_peak_gflops(threads, seconds);
      },
      py::arg("seconds") = 0.2,
      "float32 GFLOP/s of independent FMA chains of the active ISA on the usable threads: the "
      "hardware's peak (best of five runs, about `seconds` in all).");
  m.def(
      "l2_matvec_gbps",
      [](int64_t kib, double seconds) {
        check_seconds(seconds);
        if (kib < 1 || kib > (int64_t{1} << 20))
          throw std::invalid_argument("kib: expected 1 to 1048576 (1 GiB), got " +
                                      std::to_string(kib));
        py::gil_scoped_release release;
        return kernels::l2_matvec_gbps(kib * 1024, seconds);
      },
      py::arg("kib") = 256, py::arg("seconds") = 0.1,
      "GB/s at which one thread multiplies a float32 matrix of `kib` KiB by a vector (the direct "
      "step's kernel): from L2 when the matrix fits there. Best of five runs.");
  m.def(
      "round_trip_ns",
      [](double seconds) {
        check_seconds(seconds);
        if (usable_threads() < 2) return std::numeric_limits<double>::quiet_NaN();
        py::gil_scoped_release release;
        return kernels::round_trip_ns(seconds);
      },
      py::arg("seconds") = 0.1,
      "Nanoseconds for a value to go from one thread to another and back (median of bursts over "
      "about `seconds`); NaN with fewer than two usable threads.");
  m.def(
      "cells",
      [] {
        py::dict out;
        for (Cell cell : kCells) {
          const CellInfo& c = cell_info(cell);
          py::dict d;
          d["gates"] = c.gates;
          d["cell_state"] = c.cell_state;
          d["gate_names"] = std::string(c.gate_names);
          d["projection"] = c.projection;
          std::vector<std::string> tape = {"gates", "hs"};
          if (c.cell_state) tape.emplace_back("cs");
          if (c.extra) tape.emplace_back("extra");
          d["tape"] = tape;
          out[c.name] = d;
        }
        return out;
      },
      "What each cell is: gates, cell state, projection, the arrays a training forward keeps.");
  m.def(
      "contention_state",
      [] {
        const auto s = contention::state();
        return py::make_tuple(s.skip, s.backoff);
      },
      "(regions still to run on one thread, how many the next solo skips): the memory of a busy "
      "machine.");
  m.def("call_runs_alone", &call_runs_alone, py::arg("macs"),
        "Whether a call of `macs` multiply-adds started now from this thread runs on it alone "
        "(a small call after a pause: see runtime/threads.h CallTeam).");
  m.def("set_small_calls_alone", &set_small_calls_alone, py::arg("alone"),
        "For the calling thread: whether calls that would run alone after a pause (under 16M "
        "multiply-adds) run alone even back to back; returns the previous setting "
        "(runtime/threads.h).");
  m.def(
      "recurrence_plan",
      [](const std::string& cell, index_t steps, index_t batch, index_t input, index_t hidden,
         const std::string& dtype, const std::string& precision) {
        const bool f32 = parse_dtype(dtype) == Dtype::F32;
        if (precision != "fp32" && precision != "bf16")
          throw py::value_error("precision: expected 'fp32' or 'bf16', got '" + precision + "'");
        const Precision pr = precision == "bf16" ? Precision::Bf16 : Precision::Native;
        if (pr == Precision::Bf16 && !f32)
          throw py::value_error("precision: bf16 products need float32, got dtype " + dtype);
        const index_t width =
            f32 ? kernels::active_kernels<float>().width : kernels::active_kernels<double>().width;
        const auto plan = plan_recurrence(parse_cell(cell), steps, batch, input, hidden, width,
                                          f32 ? 4 : 8, recurrent_tile_rows(pr));
        return py::make_tuple(plan.threads, plan.by_rows ? "rows" : "units");
      },
      py::arg("cell"), py::arg("steps"), py::arg("batch"), py::arg("input"), py::arg("hidden"),
      py::arg("dtype"), py::arg("precision") = "fp32",
      "How the recurrence of such a layer is split now: (threads, 'rows' or 'units').");
  m.def("l2_cache_bytes", &l2_cache_bytes,
        "The L2 size of one core as the OS reports it (1 MiB when it does not): the recurrence "
        "plan compares W_hh's size with it.");
}

}  // namespace rnnfast::python
