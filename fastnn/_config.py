"""``fastnn.show_config()`` and ``python -m fastnn info``: how this fastnn was built, and what it runs on.

The build facts (Cython version, compiler, flags, directives, whether it is
the bounds-checked build) are the ones ``setup.py``'s ``build_ext`` recorded
in ``fastnn/_build_info.py`` when it compiled the extensions; the tests hold
them to the compiled modules themselves (``fastnn._ops.DEBUG_BUILD``, the
Cython runtime the extensions carry, which walker builds exist). The runtime
facts are looked up when asked: which build of the network walker this CPU
got (``fastnn._walker.ISA``), which BLAS fastnn calls for large layers
(``fastnn._blas.find_blas()``) and with how many threads (from
``threadpoolctl``, when it is installed).

Nothing here is imported by ``import fastnn`` beyond this module itself.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Literal, overload

from fastnn._version import __version__

__all__ = ["show_config"]


def _build_info() -> dict[str, Any] | None:
    """What ``setup.py`` recorded (``fastnn/_build_info.py``), or None for a build made without it."""
    try:
        module = importlib.import_module("fastnn._build_info")
    except ImportError:
        return None
    info: dict[str, Any] = dict(module.INFO)
    return info


def _cython_runtime() -> str | None:
    """The Cython version the compiled extensions carry (their shared ``_cython_X_Y_Z`` types)."""
    from fastnn import _ops

    module = type(_ops.cpu_has_avx2).__module__
    prefix = "_cython_"
    return module[len(prefix):].replace("_", ".") if module.startswith(prefix) else None


def _blas_threads(library: str | None, kind: int) -> dict[str, Any]:
    """Threads of the BLAS at ``library``, as threadpoolctl reports them (if installed)."""
    try:
        import threadpoolctl
    except ImportError:
        return {"num_threads": None, "note": "threadpoolctl is not installed"}
    from fastnn import _blas

    entries = [entry for entry in threadpoolctl.threadpool_info() if entry.get("user_api") == "blas"]
    wanted = os.path.realpath(library) if library else None
    match = [entry for entry in entries if wanted and os.path.realpath(entry["filepath"]) == wanted]
    if not match and kind == _blas.KIND_FORTRAN32:
        # scipy.linalg.cython_blas is a wrapper: the BLAS itself is SciPy's
        # bundled OpenBLAS, in scipy.libs/ (Linux, Windows) or scipy/.dylibs/.
        import scipy

        root = os.path.dirname(os.path.dirname(os.path.realpath(scipy.__file__)))
        places = (os.path.join(root, "scipy.libs"), os.path.join(root, "scipy", ".dylibs"))
        match = [entry for entry in entries if os.path.realpath(entry["filepath"]).startswith(places)]
    if not match:
        return {"num_threads": None, "note": f"threadpoolctl does not list {library}"}
    entry = match[0]
    return {
        "num_threads": entry.get("num_threads"),
        "note": "{} {}, {} threading".format(
            entry.get("internal_api"), entry.get("version"), entry.get("threading_layer")
        ),
    }


def _facts() -> dict[str, Any]:
    """Everything :func:`show_config` prints, as nested dicts."""
    import platform

    import numpy

    from fastnn import _blas, _ops, _planner, _walker

    build = _build_info()
    blas = _blas.find_blas()
    threads = _blas_threads(blas.library, blas.kind) if blas.kind else {"num_threads": None, "note": "no BLAS"}
    # The rule of Dense products (BLAS or own loops): the walker build's, and fastnn.ops' (_ops).
    names = ("BLAS_MIN_WEIGHTS", "BLAS_MIN_WIDTH", "BLAS_MIN_WEIGHTS_TILED")
    thresholds = {name.lower(): getattr(_walker, name) for name in names}
    ops_thresholds = {name.lower(): getattr(_ops, name) for name in names}
    return {
        "fastnn": {
            "version": __version__,
            "location": os.path.dirname(os.path.abspath(__file__)),
        },
        "build": {
            "recorded": build is not None,
            "debug_build": bool(_ops.DEBUG_BUILD),
            "cython_runtime": _cython_runtime(),
            **(build or {}),
        },
        "runtime": {
            "python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.platform})",
            "machine": platform.machine(),
            "numpy": numpy.__version__,
            "walker": {
                "isa": _walker.ISA,
                "module": _walker.Network.__module__,
                "cpu_has_avx2": bool(_ops.cpu_has_avx2()),
                "cpu_has_avx512": bool(_ops.cpu_has_avx512()),
                "FASTNN_ISA": os.environ.get("FASTNN_ISA", "auto"),
            },
            "blas": {
                "source": blas.source,
                "library": blas.library,
                "FASTNN_BLAS": os.environ.get("FASTNN_BLAS", "auto"),
                "model_thresholds": thresholds,
                "ops_thresholds": ops_thresholds,
                **threads,
            },
            "plan": _planner.describe(),
        },
    }


def _yes_no(value: object) -> str:
    return "yes" if value else "no"


def _format(facts: dict[str, Any]) -> str:
    """The report :func:`show_config` prints."""
    lines = [
        f"fastnn {facts['fastnn']['version']}",
        f"  location: {facts['fastnn']['location']}",
        "",
        "Build:",
        f"  bounds-checked build (FASTNN_DEBUG=1): {_yes_no(facts['build']['debug_build'])}",
    ]
    lines += _format_build(facts["build"], facts["fastnn"]["version"])
    lines += ["", "Runtime:"]
    lines += _format_runtime(facts["runtime"])
    return "\n".join(lines)


def _format_build(build: dict[str, Any], version: str) -> list[str]:
    """What setup.py recorded, with a warning wherever the record disagrees with the compiled modules."""
    if not build["recorded"]:
        return [
            "  (no fastnn/_build_info.py: these extensions were not built by fastnn's setup.py build_ext,",
            "   so their Cython version and flags were not recorded)",
            f"  Cython runtime in the extensions: {build['cython_runtime']}",
        ]
    lines = []
    disagree = [
        ("bounds-checked build", build["debug"], build["debug_build"]),
        ("version", build["version"], version),
        ("Cython", build["cython_version"], build["cython_runtime"]),
    ]
    for what, recorded, compiled in disagree:
        if recorded != compiled:
            lines.append(f"  WARNING: fastnn/_build_info.py records {what} {recorded!r} but the compiled "
                         f"extensions say {compiled!r}: it is stale, rebuild fastnn")
    directives = ", ".join(f"{key}={value}" for key, value in build["cython_directives"].items())
    lines += [
        f"  Cython: {build['cython_version']}",
        f"  Cython directives: {directives}",
        f"  NumPy headers: {build['numpy_version']}",
        f"  built on: Python {build['python_version']}, {build['platform']} ({build['machine']})",
        f"  compiler: {build['compiler'] or build['compiler_type']}",
        f"  compiler command: {' '.join(build['compiler_command'])}",
        "  extensions (extra flags, macros):",
    ]
    for name, ext in build["extensions"].items():
        macros = " ".join(f"-D{key}={value}" for key, value in ext["define_macros"])
        lines.append(f"    {name}: {' '.join(ext['extra_compile_args'])}  {macros}")
    return lines


def _format_runtime(runtime: dict[str, Any]) -> list[str]:
    """Python, NumPy, the walker's build and the BLAS, with the layer sizes each BLAS path takes."""
    walker, blas = runtime["walker"], runtime["blas"]
    lines = [
        f"  Python: {runtime['python']}, {runtime['machine']}",
        f"  NumPy: {runtime['numpy']}",
        f"  network walker: {walker['isa']} build ({walker['module']}); CPU has AVX2: "
        f"{_yes_no(walker['cpu_has_avx2'])}, AVX-512: {_yes_no(walker['cpu_has_avx512'])}; "
        f"FASTNN_ISA={walker['FASTNN_ISA']}",
        f"  BLAS for large layers: {blas['source']}; FASTNN_BLAS={blas['FASTNN_BLAS']}",
    ]
    if blas["library"]:
        lines += [f"    used by {text}" for text in _blas_uses(blas)]
        lines.append(f"    library: {blas['library']}")
    threads = blas["num_threads"] if blas["num_threads"] is not None else "unknown"
    lines.append(f"    threads: {threads} ({blas['note']})")
    lines.append("  fastnn's own loops: one thread per call, without the GIL")
    lines += _format_plan(runtime["plan"])
    return lines


def _format_plan(plan: dict[str, Any]) -> list[str]:
    """The plan in force (fastnn._planner): fixed, forced or measured, and what the cache holds."""
    from fastnn import _planner

    fixed = plan["fixed_plan"]
    lines = [f"  plan: {plan['mode']} (FASTNN_PLAN={plan['FASTNN_PLAN']}); builds this CPU runs: "
             f"{', '.join(plan['builds'])}",
             f"    fixed plan: the {fixed['build']} build; BLAS for Dense layers with in*out >= "
             f"{fixed['blas_min_weights']}, min(in, out) >= {fixed['blas_min_width']} and, for a batch of 8 "
             f"rows or more, in*out >= {fixed['blas_min_weights_tiled']}"]
    if plan["mode"] == "measure":
        key = plan["cache_key"]
        lines += [f"    measured per network on this machine: CPU {key['cpu']}; {key['blas']}",
                  f"    cache: {plan['cache']}"]
        if plan.get("measure_error"):
            lines.append(f"    measuring failed ({plan['measure_error']}): those networks run the fixed plan")
        networks = {k: v for k, v in plan["choices"].items() if k.startswith("net:")}
        layers = {k: v for k, v in plan["choices"].items() if k.startswith("layer:")}
        for name, build in sorted(networks.items()):
            lines.append(f"    network {name[4:]}: {build} build")
        for name, choice in sorted(layers.items()):
            lines.append(f"    layer {name[6:]}: {_planner.choice_text(choice)}")
        for name, choice in sorted(plan["choices"].items()):
            if name.startswith("rows:"):
                build, _, shape = name[5:].partition(":")
                lines.append(f"    network {shape} in the {build} build, checked whole: "
                             + ", ".join(_planner.choice_text(value) for value in choice))
    return lines


def _blas_uses(blas: dict[str, Any]) -> list[str]:
    """Which calls go to the BLAS: the model's and fastnn.ops' size thresholds."""
    used_for = []
    for who, rule in (("Sequential", blas["model_thresholds"]), ("fastnn.ops", blas["ops_thresholds"])):
        used_for.append(f"{who}: Dense layers with in*out >= {rule['blas_min_weights']} and min(in, out) >= "
                        f"{rule['blas_min_width']}, and in*out >= {rule['blas_min_weights_tiled']} for a batch "
                        f"of 8 rows or more")
    return used_for


@overload
def show_config(mode: Literal["stdout"] = ...) -> None: ...
@overload
def show_config(mode: Literal["dicts"]) -> dict[str, Any]: ...


def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """Print how this fastnn was built and what it runs on, like ``numpy.show_config()``.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        ``"stdout"`` prints the report; ``"dicts"`` returns it as nested
        dicts instead (``"fastnn"``, ``"build"``, ``"runtime"``).

    The build facts are those ``setup.py`` recorded when it compiled the
    extensions: the Cython version and directives, the compiler and its
    flags, and whether this is the bounds-checked build (``FASTNN_DEBUG=1``).
    The runtime facts: the network walker's build this CPU runs (baseline
    or AVX2), the BLAS fastnn calls for large layers and its thread count
    (from ``threadpoolctl`` when installed, else "unknown"), and the plan in
    force (``"plan"``: fixed or measured, with the cache file, its key and
    the choices it holds; see ``fastnn.tune``).

    Returns
    -------
    dict or None
        With ``mode="dicts"``, a new dict of dicts: ``"fastnn"`` (version,
        install path), ``"build"`` and ``"runtime"``; with ``"stdout"``,
        None (the report is printed).

    Raises
    ------
    ValueError
        If ``mode`` is neither ``"stdout"`` nor ``"dicts"``.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    facts = _facts()
    if mode == "dicts":
        return facts
    print(_format(facts))
    return None
