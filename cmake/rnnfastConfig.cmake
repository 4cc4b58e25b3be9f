# find_package(rnnfast) for rnnfast's C API: the imported target rnnfast::rnnfast (librnnfast
# and rnnfast.h), from an installed Python package. Point CMake here with
#   cmake -Drnnfast_DIR="$(python -c 'import rnnfast; print(rnnfast.get_cmake_dir())')" ...
get_filename_component(_rnnfast_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT TARGET rnnfast::rnnfast)
  find_library(_rnnfast_library NAMES rnnfast PATHS "${_rnnfast_root}/lib" NO_DEFAULT_PATH)
  if(NOT _rnnfast_library)
    set(rnnfast_FOUND FALSE)
    set(rnnfast_NOT_FOUND_MESSAGE "librnnfast not found in ${_rnnfast_root}/lib")
    return()
  endif()
  add_library(rnnfast::rnnfast SHARED IMPORTED)
  set_target_properties(rnnfast::rnnfast PROPERTIES
    IMPORTED_LOCATION "${_rnnfast_library}"
    INTERFACE_INCLUDE_DIRECTORIES "${_rnnfast_root}/include")
  unset(_rnnfast_library CACHE)
endif()
set(rnnfast_FOUND TRUE)
