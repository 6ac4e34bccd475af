"""Find a BLAS ``gemm`` for the large layers, without adding a dependency.

fastnn multiplies large matrices with an optimised BLAS and small ones with
its own loops. Rather than link a BLAS of its own into the wheel, it uses
the one already in the process: NumPy's wheels ship OpenBLAS
(``scipy-openblas``, exporting the CBLAS interface with 64-bit integers as
``scipy_cblas_dgemm64_``), and NumPy has loaded it by the time fastnn is
imported. fastnn takes that function's address with ctypes and calls it
from Cython without the GIL. So fastnn adds no import time, no wheel size
and no second BLAS (with a second thread pool) to the process, and
``threadpoolctl`` controls the threads of the BLAS fastnn calls, because it
is NumPy's.

Where NumPy was built against another BLAS (a distribution's, conda's MKL
build), fastnn falls back to SciPy's ``scipy.linalg.cython_blas`` (Fortran
``dgemm`` with 32-bit integers) if SciPy is installed, and otherwise to its
own loops for every size. ``FASTNN_BLAS=none`` in the environment turns
BLAS off (own loops only); ``FASTNN_BLAS=scipy`` skips NumPy's OpenBLAS.

``find_blas`` looks once per process and keeps the answer; ``import
fastnn`` makes that call (``fastnn.ops`` hands the gemm to its compiled
kernels at import), and every model's walker gets the same one.
"""

from __future__ import annotations

import ctypes
import glob
import os

__all__ = ["BlasInfo", "find_blas"]

#: CBLAS interface with 64-bit integers (NumPy's scipy-openblas64).
KIND_CBLAS64 = 1
#: Fortran interface with 32-bit integers (scipy.linalg.cython_blas).
KIND_FORTRAN32 = 2


class BlasInfo:
    """The gemm fastnn calls: ``kind`` (0 when none), the two addresses, and where they come from."""

    def __init__(self, kind=0, dgemm=0, sgemm=0, source="none (fastnn's own loops)", library=None):
        self.kind = kind
        self.dgemm = dgemm
        self.sgemm = sgemm
        self.source = source
        self.library = library

    def __repr__(self) -> str:
        return f"BlasInfo(source={self.source!r}, library={self.library!r})"


def _numpy_openblas() -> BlasInfo | None:
    import numpy

    roots = [os.path.dirname(numpy.__file__), os.path.dirname(os.path.dirname(numpy.__file__))]
    patterns = ["numpy.libs/libscipy_openblas64_*", "numpy/.dylibs/libscipy_openblas64_*",
                ".dylibs/libscipy_openblas64_*"]
    for root in roots:
        for pattern in patterns:
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    lib = ctypes.CDLL(path)
                    dgemm = ctypes.cast(lib.scipy_cblas_dgemm64_, ctypes.c_void_p).value
                    sgemm = ctypes.cast(lib.scipy_cblas_sgemm64_, ctypes.c_void_p).value
                except (OSError, AttributeError):
                    continue
                return BlasInfo(KIND_CBLAS64, dgemm, sgemm, "NumPy's OpenBLAS (scipy_cblas_?gemm64_)", path)
    return None


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _scipy_blas() -> BlasInfo | None:
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    capi = cython_blas.__pyx_capi__
    return BlasInfo(KIND_FORTRAN32, _capsule_pointer(capi["dgemm"]), _capsule_pointer(capi["sgemm"]),
                    "SciPy's scipy.linalg.cython_blas (?gemm)", cython_blas.__file__)


_FOUND: BlasInfo | None = None


def find_blas() -> BlasInfo:
    """The BLAS fastnn uses, looked up once (see the module's docstring)."""
    global _FOUND
    if _FOUND is None:
        choice = os.environ.get("FASTNN_BLAS", "auto").strip().lower()
        found = None
        if choice in ("auto", "numpy", ""):
            found = _numpy_openblas()
        if found is None and choice in ("auto", "scipy", ""):
            found = _scipy_blas()
        _FOUND = found or BlasInfo()
    return _FOUND
