"""The compiled network walker, in the build this CPU runs best.

The walker (``fastnn/_walker.pxi``) is compiled up to three times: for the
compiler's baseline instruction set (SSE2 on x86-64) and, on x86-64 with
GCC or Clang, with AVX2 and with AVX-512 (F, VL, DQ, BW), whose vectors are
two and four times as wide. On the same path (each Dense layer on BLAS, or
on fastnn's own loops) every sum has a fixed order, whatever the vector
width: the AVX2 and AVX-512 builds, whose register tiles fuse each
multiply-add (``TILE_FMA``), give each other's bits, the baseline build
(a multiply and an add) its own, equal to theirs to rounding; a build
compiled with ``FASTNN_TILE_FMA=0`` gives the baseline's bits. The point
from which a layer takes BLAS depends on the build (each exports its own
``BLAS_MIN_WEIGHTS_TILED``, the default of its ``Network``).

``FASTNN_ISA`` in the environment caps the choice: ``auto`` (the default)
takes the widest build the CPU runs, ``avx2`` at most the AVX2 build,
``baseline`` the baseline build.

This module's own names are those of that widest build (``ISA``): the
fixed plan's build. Which build runs a given ``Sequential`` is the plan's
choice (``fastnn._planner``): :data:`BUILDS` lists every build this CPU
runs within the cap, narrowest first, and :func:`build` gives one by name
(imported on first use, so that ``import fastnn`` loads only ``ISA``'s).
"""

import importlib
import os
import warnings
from types import ModuleType

from fastnn import _ops

#: The builds, narrowest first: (name, whether this CPU runs it).
_BUILDS = (("baseline", True), ("avx2", _ops.cpu_has_avx2()), ("avx512", _ops.cpu_has_avx512()))
_NAMES = [name for name, _ in _BUILDS]
#: Every build's name, narrowest first, whether this CPU runs it or not.
ALL_BUILDS: tuple[str, ...] = tuple(_NAMES)

_wanted = os.environ.get("FASTNN_ISA", "auto").strip().lower() or "auto"
if _wanted not in _NAMES and _wanted != "auto":
    warnings.warn(f"FASTNN_ISA={_wanted!r} is not one of auto, {', '.join(_NAMES)}: using auto",
                  RuntimeWarning, stacklevel=2)
    _wanted = "auto"
_limit = len(_NAMES) if _wanted == "auto" else _NAMES.index(_wanted) + 1

ISA = "baseline"
for _name, _runs in reversed(_BUILDS[1:_limit]):
    if not _runs:
        continue
    try:
        if _name == "avx512":
            from fastnn._walker_avx512 import *  # noqa: F401,F403
        else:
            from fastnn._walker_avx2 import *  # noqa: F401,F403
    except ImportError:  # built without this variant (not x86-64, or MSVC)
        continue
    ISA = _name
    break
if ISA == "baseline":
    from fastnn._walker_baseline import *  # noqa: F401,F403

#: The builds this CPU runs within FASTNN_ISA's cap, narrowest first; the last is ISA.
BUILDS: tuple[str, ...] = tuple(_NAMES[:_NAMES.index(ISA) + 1])
_RUNS = dict(_BUILDS)


def build(name: str) -> ModuleType:
    """The compiled walker module of build ``name`` (one of :data:`BUILDS`)."""
    if name not in BUILDS:
        raise ValueError(f"walker build {name!r} is not one this CPU runs within FASTNN_ISA: {', '.join(BUILDS)}")
    return importlib.import_module(f"fastnn._walker_{name}")
