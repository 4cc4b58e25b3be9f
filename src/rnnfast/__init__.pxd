# cython: language_level=3
# rnnfast's C API for Cython: `cimport rnnfast`, call `rnnfast.import_rnnfast()` once at module
# init (it imports the capsule "rnnfast._core._C_API", as NumPy's import_array), then call the
# functions through `rnnfast.api` (the table of rnnfast.h), with or without the GIL.
# Compile with include_dirs=[rnnfast.get_include()]; no library to link.
from libc.stdint cimport int64_t

cdef extern from "rnnfast.h":
    int RNNFAST_API_VERSION
    enum:
        RNNFAST_OK
        RNNFAST_EINVAL
        RNNFAST_ERUNTIME
        RNNFAST_ENOMEM
        RNNFAST_RNN_TANH
        RNNFAST_RNN_RELU
        RNNFAST_LSTM
        RNNFAST_GRU
        RNNFAST_GRU_RESET_BEFORE
        RNNFAST_FLOAT32
        RNNFAST_FLOAT64
        RNNFAST_PRECISION_NATIVE
        RNNFAST_PRECISION_BF16

    ctypedef struct rnnfast_error:
        int status
        char message[512]

    ctypedef struct rnnfast_spec:
        int cell
        int dtype
        int64_t input_size
        int64_t hidden_size
        int64_t num_layers
        int bidirectional
        int bias
        int64_t proj_size
        int peepholes
        int precision

    ctypedef struct rnnfast_stack:
        pass

    ctypedef struct rnnfast_tape:
        pass

    ctypedef struct rnnfast_api:
        int version
        int (*stack_create)(const rnnfast_spec*, rnnfast_stack**, rnnfast_error*) nogil
        void (*stack_free)(rnnfast_stack*) nogil
        int64_t (*param_count)(const rnnfast_stack*) nogil
        int64_t (*param_size)(const rnnfast_stack*, int64_t) nogil
        int (*set_params)(rnnfast_stack*, const void* const*, int64_t, rnnfast_error*) nogil
        void (*params_changed)(rnnfast_stack*) nogil
        int (*forward)(rnnfast_stack*, int64_t, int64_t, const void*, const void*, const void*,
                       const int64_t*, void*, void*, void*, rnnfast_tape**, rnnfast_error*) nogil
        int (*backward)(rnnfast_stack*, rnnfast_tape*, const void*, const void*, const void*,
                        void*, void*, void*, void* const*, int64_t, rnnfast_error*) nogil
        void (*tape_free)(rnnfast_tape*) nogil
        int (*step)(rnnfast_stack*, int64_t, const void*, void*, void*, void*,
                    rnnfast_error*) nogil
        int (*set_num_threads)(int, rnnfast_error*) nogil
        int (*get_num_threads)() nogil

cdef extern from *:
    """
    #include <Python.h>
    static const rnnfast_api* rnnfast_capi_table = NULL;
    static int rnnfast_capi_import(void) {
      const rnnfast_api* table =
          (const rnnfast_api*)PyCapsule_Import("rnnfast._core._C_API", 0);
      if (!table) return -1;
      if (table->version != RNNFAST_API_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "rnnfast's C API is version %d, this module was built for %d: rebuild it",
                     table->version, RNNFAST_API_VERSION);
        return -1;
      }
      rnnfast_capi_table = table;
      return 0;
    }
    """
    const rnnfast_api* rnnfast_capi_table
    int rnnfast_capi_import() except -1


cdef inline int import_rnnfast() except -1:
    """Imports the C API (call once, at module init): afterwards `api` is the function table."""
    return rnnfast_capi_import()


cdef inline const rnnfast_api* api() noexcept nogil:
    """The function table (NULL before import_rnnfast())."""
    return rnnfast_capi_table
