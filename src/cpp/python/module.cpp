// The extension module rnnfast._core: the one place pybind11 meets the core. C++ exceptions become
// Python ones (std::invalid_argument -> ValueError, std::runtime_error -> RuntimeError,
// py::type_error -> TypeError); every long call releases the GIL.
#include "capi/rnnfast.h"
#include "python/arrays.h"
#include "runtime/isa.h"

namespace rnnfast::python {
void init_runtime(py::module_& m);
void init_rnn(py::module_& m);
void init_ops(py::module_& m);
}  // namespace rnnfast::python

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnfast's C++ core: recurrent stacks, forward and backward, and their kernels.";
  rnnfast::active_isa();  // RNNFAST_ISA is read here: a bad value fails the import
  m.attr("__version__") = RNNFAST_VERSION;
  rnnfast::python::init_runtime(m);
  rnnfast::python::init_rnn(m);
  rnnfast::python::init_ops(m);
  // The C API's function table, for extensions that cimport rnnfast (capi/rnnfast.h).
  m.attr("_C_API") =
      pybind11::capsule(const_cast<rnnfast_api*>(rnnfast_get_api()), "rnnfast._core._C_API");
}
