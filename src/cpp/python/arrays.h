// Array checks of the binding: every refusal names the argument, what was expected and what came.
// Inputs are taken as they are (the Python layer has converted them); nothing here copies.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/types.h"

namespace rnnfast::python {

namespace py = pybind11;

inline std::string shape_text(const std::vector<index_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}

inline std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

template <typename T>
void check_array(const std::string& name, const py::array& a, const std::vector<index_t>& shape) {
  if (!a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(name + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  if (shape_of(a) != shape) {
    throw std::invalid_argument(name + ": expected shape " + shape_text(shape) + ", got " +
                                shape_text(shape_of(a)));
  }
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(name + ": expected a C-contiguous array");
}

// An input: the right dtype, shape and layout, read in place.
template <typename T>
const T* input(const std::string& name, const py::array& a, const std::vector<index_t>& shape) {
  check_array<T>(name, a, shape);
  return static_cast<const T*>(a.data());
}

template <typename T>
const T* input_or_null(const std::string& name, const py::object& o,
                       const std::vector<index_t>& shape) {
  return o.is_none() ? nullptr : input<T>(name, o.cast<py::array>(), shape);
}

// An array written in place: it must already be what the kernel needs, and writeable.
template <typename T>
T* output(const std::string& name, py::array& a, const std::vector<index_t>& shape) {
  check_array<T>(name, a, shape);
  if (!a.writeable()) throw std::invalid_argument(name + ": expected a writeable array");
  return static_cast<T*>(a.mutable_data());
}

template <typename T>
py::array_t<T> new_array(const std::vector<index_t>& shape) {
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

// float32 or float64, from a name.
enum class Dtype { F32, F64 };
inline Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return Dtype::F32;
  if (name == "float64") return Dtype::F64;
  throw py::type_error("dtype: expected 'float32' or 'float64', got '" + name + "'");
}
inline Dtype dtype_of(const std::string& name, const py::array& a) {
  if (a.dtype().equal(py::dtype::of<float>())) return Dtype::F32;
  if (a.dtype().equal(py::dtype::of<double>())) return Dtype::F64;
  throw py::type_error(name + ": expected dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

}  // namespace rnnfast::python
