"""Build the Cython extensions of fastnn.

Compiler directives are set once, here. ``FASTNN_DEBUG=1`` at build time
turns bounds checking, negative indexing and initialisation checks back on
(and drops ``-O3`` for ``-O0 -g``), for a build that fails loudly on an
out-of-range index instead of corrupting memory.
"""

import os
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTNN_DEBUG", "0").strip().lower() not in ("", "0", "false", "no")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

if os.name == "nt":
    extra_compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2"]
else:
    # No -march=native: the wheel must run on any x86-64 (or aarch64) CPU.
    extra_compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

define_macros = [
    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
    ("FASTNN_DEBUG_BUILD", "1" if DEBUG else "0"),
]


def extension(name, extra=()):
    return Extension(
        f"fastnn.{name}",
        [f"fastnn/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args + list(extra),
        depends=["fastnn/_loops.pxi", "fastnn/_network.pxi"],
    )


extensions = [extension("_kernels"), extension("_network_baseline")]
# The walker again with AVX2 (not FMA: both builds give the same bits), for
# CPUs that have it; fastnn/_network.py chooses at import. GCC/Clang on x86-64.
if os.name != "nt" and platform.machine().lower() in ("x86_64", "amd64") and not os.environ.get("ARCHFLAGS"):
    extensions.append(extension("_network_avx2", ["-mavx2"]))

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
    ),
)
