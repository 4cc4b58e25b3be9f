// Array checks of the binding: every refusal names the argument, what was expected and what came.
// Inputs are taken as they are (the Python layer has converted them); nothing here copies.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
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

// Expected shapes are short lists given in place (or vectors, for whatever shape an operation
// takes): the checks allocate nothing unless they fail (they run on every call, and a step of a
// small model costs a few microseconds in all).
class Shape {  // up to 4 dimensions, by value: nothing allocated
 public:
  Shape(std::initializer_list<index_t> dims) : n_(dims.size()) {
    if (n_ > 4) throw std::logic_error("Shape: at most 4 dimensions");
    std::copy(dims.begin(), dims.end(), dims_);
  }
  size_t size() const { return n_; }
  const index_t* begin() const { return dims_; }
  const index_t* end() const { return dims_ + n_; }
  std::vector<py::ssize_t> to_vector() const { return {begin(), end()}; }

 private:
  index_t dims_[4] = {0, 0, 0, 0};
  size_t n_;
};

template <typename Dims>
bool has_shape(const py::array& a, const Dims& shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t i = 0;
  for (index_t n : shape)
    if (a.shape(i++) != n) return false;
  return true;
}

template <typename T, typename Dims>
void check_array_impl(const char* name, const py::array& a, const Dims& shape) {
  if (!a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  }
  if (!has_shape(a, shape)) {
    throw std::invalid_argument(std::string(name) + ": expected shape " +
                                shape_text(std::vector<index_t>(shape.begin(), shape.end())) +
                                ", got " + shape_text(shape_of(a)));
  }
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + ": expected a C-contiguous array");
}

template <typename T>
void check_array(const char* name, const py::array& a, Shape shape) {
  check_array_impl<T>(name, a, shape);
}
template <typename T>
void check_array(const std::string& name, const py::array& a, const std::vector<index_t>& shape) {
  check_array_impl<T>(name.c_str(), a, shape);
}

// An input: the right dtype, shape and layout, read in place.
template <typename T>
const T* input(const char* name, const py::array& a, Shape shape) {
  check_array<T>(name, a, shape);
  return static_cast<const T*>(a.data());
}
template <typename T>
const T* input(const std::string& name, const py::array& a, const std::vector<index_t>& shape) {
  check_array<T>(name, a, shape);
  return static_cast<const T*>(a.data());
}

template <typename T>
const T* input_or_null(const char* name, const py::object& o, Shape shape) {
  return o.is_none() ? nullptr : input<T>(name, o.cast<py::array>(), shape);
}

// An array written in place: it must already be what the kernel needs, and writeable.
template <typename T>
T* writeable(const char* name, py::array& a) {
  if (!a.writeable())
    throw std::invalid_argument(std::string(name) + ": expected a writeable array");
  return static_cast<T*>(a.mutable_data());
}
template <typename T>
T* output(const char* name, py::array& a, Shape shape) {
  check_array<T>(name, a, shape);
  return writeable<T>(name, a);
}
template <typename T>
T* output(const std::string& name, py::array& a, const std::vector<index_t>& shape) {
  check_array<T>(name, a, shape);
  return writeable<T>(name.c_str(), a);
}

template <typename T>
py::array_t<T> new_array(Shape shape) {
  return py::array_t<T>(shape.to_vector());
}

// A new array of `shape` when `wanted`, its values at *data; else None, *data null.
template <typename T>
py::object new_array_if(bool wanted, Shape shape, T** data) {
  *data = nullptr;
  if (!wanted) return py::none();
  auto a = new_array<T>(shape);
  *data = a.mutable_data();
  return std::move(a);
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
