"""Where the C API's files are installed: beside the extension module (an editable install keeps
the Python sources elsewhere, so the extension, not this file, is the anchor)."""

from __future__ import annotations

from pathlib import Path

from . import _core


def _root() -> Path:
    return Path(_core.__file__).resolve().parent


def get_include() -> str:
    """The directory holding rnnfast.h (the C API), for compilers: `-I$(...)`, or a setuptools
    Extension's include_dirs when a Cython module does `cimport rnnfast`."""
    return str(_root() / "include")


def get_cmake_dir() -> str:
    """The directory holding rnnfastConfig.cmake: `-Drnnfast_DIR=...` for find_package(rnnfast)
    (target rnnfast::rnnfast, librnnfast and rnnfast.h)."""
    return str(_root() / "cmake")


def get_library_dir() -> str:
    """The directory holding librnnfast (the C API's shared library)."""
    return str(_root() / "lib")


__all__ = ["get_cmake_dir", "get_include", "get_library_dir"]
