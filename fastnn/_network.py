"""The compiled network walker, in the build this CPU runs best.

The walker (``fastnn/_network.pxi``) is compiled twice: for the compiler's
baseline instruction set (SSE2 on x86-64) and, on x86-64 with GCC or
Clang, with AVX2, which makes its vectorised loops twice as wide. Both
builds give bit-identical results (no fused multiply-add; every sum has a
fixed order). ``FASTNN_ISA=baseline`` in the environment forces the
baseline build.
"""

import os

from fastnn import _kernels

ISA = "baseline"
if os.environ.get("FASTNN_ISA", "auto").strip().lower() != "baseline" and _kernels.cpu_has_avx2():
    try:
        from fastnn._network_avx2 import *  # noqa: F401,F403

        ISA = "avx2"
    except ImportError:  # built without the AVX2 variant (not x86-64, or MSVC)
        pass
if ISA == "baseline":
    from fastnn._network_baseline import *  # noqa: F401,F403
