"""Builds capi_demo, a Cython extension on rnnfast's C API: `python setup.py build_ext --inplace`
(needs cython and setuptools). No library to link: the functions come from rnnfast's capsule."""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

import rnnfast

# Cython finds rnnfast's .pxd in the installed package (its parent directory is on the path).
package_parent = str(Path(rnnfast.__file__).resolve().parent.parent)

setup(
    name="capi_demo",
    ext_modules=cythonize(
        [Extension("capi_demo", ["capi_demo.pyx"], include_dirs=[rnnfast.get_include()])],
        include_path=[package_parent],
    ),
)
