"""The plan of a ``Sequential``: which walker build runs it, and for each Dense layer, BLAS or fastnn's own loops.

The fastest choice depends on the CPU (a 512-bit vector is twice a 256-bit
one on a Zen 5 or a Sapphire Rapids, the same two halves on a Zen 4, and
lowers the clock on a Skylake-X) and on the BLAS NumPy or SciPy brings, so
the planner measures it on the machine at hand, as FFTW, ATLAS and cuDNN's
benchmark mode do, and remembers it:

- **layers**: for each Dense layer that BLAS may take (``in * out`` reaches
  ``BLAS_MIN_WEIGHTS`` and both widths ``BLAS_MIN_WIDTH``, and a BLAS was
  found), a training step of that layer alone on fastnn's register tiles
  and on BLAS, in each build, at the batch sizes of :data:`MEASURE_BATCHES`
  (256, 128 and 32 rows, the largest first, the next only where BLAS won):
  if BLAS wins at 32 rows it takes the layer from 8 rows on; if only from
  128, from 64 rows on; if only at 256, from 192 rows on; else never (the
  batch-size classes of 8 rows or more, where the tiles run; below 8 rows
  the build's fixed rule holds: there the tiles do not run, and the
  builds' loops were within 5% of each other at batch 1 on a Zen 3). Layers
  of :data:`ALWAYS_BLAS` weights or more take BLAS unmeasured. Then, in
  each class where the layers' choices differ from the build's fixed rule,
  the rows around those that differ are timed together both ways, and
  the layers' choices are kept only if faster (:func:`_checked`).
- **the build**: a training step of the whole network in each build this
  CPU runs (within ``FASTNN_ISA``'s cap), with its layers' choices, at
  :data:`SMALL_BATCH` rows and at up to :data:`MEASURE_BATCH` rows (fewer
  for large networks, to stay within a few hundred milliseconds); the
  build with the smallest geometric mean of the two runs the model.

The baseline build is measured only where it is the only one: on a CPU
that runs AVX2 its 128-bit tiles were 1.5x to 4x slower in every layer
timed (README, "Choosing the build"), and leaving it out keeps planning a
large network within a few hundred milliseconds. The candidates of each
choice (tiles and BLAS; the builds) are timed side by side, interleaved,
and each counts the least disturbed of its rounds (:func:`side_by_side`);
a choice departs from the fixed plan's only when faster by :data:`MARGIN`.
Nothing is measured at ``import fastnn``: a model
is planned when it is built (``Sequential(...)``, ``copy``, ``load``), and a
choice once made is reused by every model of the same shapes and dtype.

The choices are kept in memory and in a JSON file in the user's cache
directory (``$FASTNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastnn``, else
``~/.cache/fastnn``; never inside the installed package), one file per
(CPU model, fastnn version, NumPy's BLAS and the BLAS fastnn calls): a new
CPU, release or BLAS measures again. A cache directory that is missing and
cannot be made, unreadable, read-only or holding a damaged file degrades to
measuring in memory, never to an error.

``FASTNN_PLAN=fixed`` switches measuring off: every model then runs the
*fixed plan*, the same everywhere: the widest build the CPU runs (within
``FASTNN_ISA``) and that build's own thresholds (``BLAS_MIN_WEIGHTS``,
``BLAS_MIN_WIDTH``, ``BLAS_MIN_WEIGHTS_TILED`` of ``fastnn._walker``).
``FASTNN_PLAN=measure`` (the default) measures. :func:`tune` measures all at
once (again), and :func:`forced` fixes a plan for a block of code (tests,
benchmarks). A plan changes how a product is computed, not what: results
agree to rounding whatever the plan (within one build, a layer on BLAS or
on the tiles sums in a different order).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastnn import _walker
from fastnn._version import __version__

# json, hashlib and platform are imported where used: a planner that has not
# planned yet costs ``import fastnn`` nothing but this module.

__all__ = ["Plan", "walker_rows", "plan_for", "tune", "forced", "mode", "cache_path", "describe"]

#: The batch sizes a layer is timed at, and from which batch BLAS takes it if it wins there
#: (and at every larger one timed).
MEASURE_BATCHES = ((32, 8), (128, 64), (256, 192))
#: The layout of the cache file's choices (part of its key: another layout is measured anew).
CACHE_FORMAT = 1
#: A choice departs from the fixed plan's only when it is faster by this factor (a layer's
#: BLAS-or-tiles, at each batch timed; the build): closer than that, the timings of a
#: shared or busy machine cannot tell them apart, and the fixed plan stands.
MARGIN = 0.95
#: The small batch the whole network is timed at (the demo's and the tiny nets' class).
SMALL_BATCH = 16
#: The largest batch the whole network is timed at.
MEASURE_BATCH = 128
#: Layers of this many weights or more take BLAS without being timed (the tiles lost at
#: 131072 and more on every CPU measured, the Zen 5's full-width AVX-512 included; timing
#: a 512 x 512 layer at 128 rows costs tens of milliseconds).
ALWAYS_BLAS = 1 << 18
#: Candidates timed side by side (:func:`side_by_side`) go round until this many seconds have
#: passed, at least MIN_ROUNDS and at most MAX_ROUNDS times.
MEASURE_SECONDS = 0.015
MIN_ROUNDS = 3
MAX_ROUNDS = 9
#: A sample of a short step repeats it until it takes this long (the timer's and the call's jitter).
SAMPLE_SECONDS = 50e-6
#: The whole network is timed at a batch of at most this many multiply-adds per step.
NETWORK_BUDGET = 4_000_000
#: The layers' choices are checked together (:func:`_checked`) at a batch of at most this many multiply-adds per step.
CHECK_BUDGET = 24_000_000
#: The batch from which a row the plan keeps on the tiles takes BLAS: never.
TILES = int(np.iinfo(np.intp).max)
#: ... and of a row the plan gives to BLAS at every batch of 8 rows or more.
BLAS = 0


@dataclass(frozen=True)
class Plan:
    """How one network runs: its walker build, and per plan row the BLAS rule.

    ``row_batch`` holds, per row of the walker's plan, the batch size from
    which BLAS takes the row at 8 rows or more (:data:`BLAS`: always;
    :data:`TILES`: never), the walker's ``Network.row_blas_min_batch``; or
    is None for the build's thresholds.
    ``source`` says where it came from: ``"fixed"`` (FASTNN_PLAN=fixed),
    ``"measured"`` (timed now), ``"cache"`` (timed before, remembered),
    ``"forced"`` (:func:`forced`) or ``"fallback"`` (measuring failed: the
    fixed plan, with a warning once per process).
    """

    build: str
    row_batch: tuple[int, ...] | None
    source: str

    def layer_choices(self, rows: np.ndarray) -> list[str]:
        """Per Dense row, ``"blas"``, ``"tiles"``, ``"blas from N rows"`` or ``"rule"`` (the build's thresholds)."""
        choices = []
        for i, row in enumerate(rows):
            if row[0] != _walker.KIND_DENSE:
                continue
            if self.row_batch is None:
                choices.append("rule")
            else:
                batch = self.row_batch[i]
                choices.append("blas" if batch <= 8 else "tiles" if batch == TILES else f"blas from {batch} rows")
        return choices


def mode() -> str:
    """``"fixed"`` or ``"measure"``, from FASTNN_PLAN (unknown values measure)."""
    wanted = os.environ.get("FASTNN_PLAN", "measure").strip().lower()
    return "fixed" if wanted == "fixed" else "measure"


def fixed_plan() -> Plan:
    """The fixed plan: the widest build (``fastnn._walker.ISA``) with its own thresholds."""
    return Plan(_walker.ISA, None, "fixed")


def walker_rows(layers: Sequence[Any]) -> tuple[np.ndarray, list[float]]:
    """The walker's plan rows of a validated layer list, and each row's activation parameter.

    One row per Dense layer or stand-alone activation (``PLAN_FIELDS`` of
    ``fastnn._walker``); an activation right after a Dense is folded into
    its row (computed in the Dense's output pass). Parameters are laid out
    Dense by Dense, W (row-major) then b, as ``Sequential`` keeps them.
    """
    from fastnn.layers import Dense

    rows: list[list[int]] = []
    fn_params: list[float] = []
    offset = act = 0
    width = next(layer for layer in layers if isinstance(layer, Dense)).in_features
    identity = _walker.FN_CODES["identity"]
    for layer in layers:
        if isinstance(layer, Dense):
            n_in, n_out = layer.in_features, layer.out_features
            rows.append([_walker.KIND_DENSE, n_in, n_out, offset, offset + n_in * n_out, act, identity])
            fn_params.append(0.0)
            offset += layer.n_parameters
        elif rows and rows[-1][0] == _walker.KIND_DENSE and rows[-1][6] == identity:
            rows[-1][6] = _walker.FN_CODES[layer.function]
            fn_params[-1] = layer.function_param
            continue
        else:
            rows.append([_walker.KIND_ACT, width, width, -1, -1, act, _walker.FN_CODES[layer.function]])
            fn_params.append(layer.function_param)
        act += rows[-1][2]
        width = rows[-1][2]
    return np.array(rows, dtype=np.intp), fn_params


# -- where the choices are remembered -------------------------------------------------------

@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name, family and model (``/proc/cpuinfo``), else what platform knows."""
    import platform

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if fields.get("model name"):
        return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    return platform.processor() or platform.machine() or "unknown"


def _numpy_blas() -> str:
    """NumPy's BLAS (name and version, from numpy.show_config) and the BLAS fastnn calls."""
    return _blas_names(os.environ.get("FASTNN_BLAS", "auto"))


@functools.lru_cache(maxsize=None)
def _blas_names(fastnn_blas: str) -> str:
    from fastnn._blas import find_blas

    name = "unknown"
    try:
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no mode="dicts"
        pass
    found = find_blas()
    return f"numpy {np.__version__}: {name}; fastnn calls {found.source}"


def cache_key() -> dict[str, str]:
    """What a remembered choice depends on."""
    import platform

    return {"cpu": cpu_model(), "fastnn": __version__, "blas": _numpy_blas(), "machine": platform.machine(),
            "format": str(CACHE_FORMAT)}


def cache_dir() -> str:
    """The directory of the plan's cache file (it may not exist)."""
    explicit = os.environ.get("FASTNN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn")


def cache_path() -> str:
    """The cache file of this (CPU, fastnn version, BLAS)."""
    return _cache_path(cache_dir(), os.environ.get("FASTNN_BLAS", "auto"))


@functools.lru_cache(maxsize=None)
def _cache_path(directory: str, fastnn_blas: str) -> str:
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(cache_key(), sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(directory, f"plan-{digest}.json")


class _Store:
    """The choices, in memory and (where it can) in the cache file."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded = False
        self.path: str | None = None         # None: no cache file (its path could not be worked out)
        self.choices: dict[str, Any] = {}
        self.plans: dict[str, Plan] = {}     # the plans made from the choices, by network
        self.note = "not loaded"
        self.failure: str | None = None      # why measuring last failed (the fixed plan ran instead)

    def load(self) -> None:
        """Read the cache file once (per path: FASTNN_CACHE_DIR may change, in tests)."""
        try:
            path: str | None = cache_path()
        except Exception as exc:  # the key could not be made (a broken NumPy or BLAS query)
            path, why = None, f"no cache file ({type(exc).__name__}: {exc}): measuring in memory"
        if self.loaded and path == self.path:
            return
        self.loaded, self.path, self.choices, self.plans = True, path, {}, {}
        if path is None:
            self.note = why
        else:
            self.choices, self.note = _read_choices(path)

    def save(self) -> None:
        """Write the choices (atomically); on any failure keep them in memory only."""
        import json

        if self.path is None:
            return
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"key": cache_key(), "choices": self.choices}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
            self.note = f"saved to {self.path}"
        except Exception as exc:  # read-only, full, missing or not a directory; anything else alike
            self.note = f"cache file not writable ({type(exc).__name__}: {exc}): measuring in memory"
            with contextlib.suppress(OSError):
                os.remove(tmp)


def _valid_choice(key: Any, value: Any) -> bool:
    """Whether a remembered choice is one this planner could have made (a build name, or a batch)."""
    if isinstance(key, str) and key.startswith("net:"):
        return value in _walker.ALL_BUILDS
    if isinstance(key, str) and key.startswith("layer:"):
        return type(value) is int and BLAS <= value <= TILES
    if isinstance(key, str) and key.startswith("rows:"):
        return isinstance(value, list) and all(_valid_choice("layer:", v) for v in value)
    return False


def _read_choices(path: str) -> tuple[dict[str, Any], str]:
    """The valid choices of the cache file at ``path`` (none if it is missing, damaged or
    another key's), and a note saying which."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}, f"no cache file yet ({path})"
    except Exception as exc:  # unreadable, a directory, not UTF-8, not JSON, nested too deep
        return {}, f"cache file {path} not usable ({type(exc).__name__}): measuring anew"
    if not isinstance(data, dict) or data.get("key") != cache_key() or not isinstance(data.get("choices"), dict):
        return {}, f"{path} is damaged or for another CPU, version or BLAS: measuring anew"
    choices = {key: value for key, value in data["choices"].items() if _valid_choice(key, value)}
    dropped = len(data["choices"]) - len(choices)
    return choices, f"read from {path}" + (f" ({dropped} damaged choices dropped)" if dropped else "")


_store = _Store()
_warned = False     # whether a failure to measure has been warned about (once per process)
_forced: list[Plan | Callable[[np.ndarray, np.dtype], Plan]] = []


# -- timing -----------------------------------------------------------------------------------

def _sample(step: Callable[[], object], number: int) -> float:
    """Seconds per call of ``number`` calls of ``step``: the wall-clock time, or the process's CPU
    time where that is less (and the clock fine enough): a process descheduled by other work on a
    shared core spends less CPU time than wall time, while a BLAS on several threads spends more
    CPU time than wall time, so the smaller of the two is the work's own time in both cases."""
    c0, t0 = _cpu_clock(), time.perf_counter()
    for _ in range(number):
        step()
    wall, cpu = time.perf_counter() - t0, _cpu_clock() - c0
    return min(wall, cpu) / number if _CPU_CLOCK_FINE else wall / number


_cpu_clock = time.process_time
#: Whether the process's CPU clock resolves microseconds (Linux, macOS; not Windows' 15.6 ms).
_CPU_CLOCK_FINE = time.get_clock_info("process_time").resolution <= 1e-6


def side_by_side(steps: Sequence[Callable[[], object]]) -> list[float]:
    """The time of each step, timed side by side: the min over rounds of each round's median sample.

    Each round takes, of every step in turn, the median of 3 samples (1 for a
    step of a millisecond or more), a sample being as many calls as take
    :data:`SAMPLE_SECONDS`; rounds go on until :data:`MEASURE_SECONDS` have
    passed (at least :data:`MIN_ROUNDS`, at most :data:`MAX_ROUNDS`). The
    candidates interleave, so that a neighbour's load falls on all of them
    alike, and the least disturbed round counts: on a shared core other work
    only ever adds time (a median over the whole run put identical paths 6%
    and more apart), while the median within a round keeps one lucky call
    from counting. Each sample counts the process's CPU time where that is
    less than the wall-clock time (:func:`_sample`).
    """
    numbers, per_round = [], []
    for step in steps:
        step()  # warm up (workspace, caches, BLAS buffers)
        once = _sample(step, 1)
        numbers.append(max(1, int(SAMPLE_SECONDS / max(once, 1e-9))))
        per_round.append(3 if once < 1e-3 else 1)
    best = [float("inf")] * len(steps)
    start = time.perf_counter()
    for round_ in range(MAX_ROUNDS):
        for i, step in enumerate(steps):
            samples = sorted(_sample(step, numbers[i]) for _ in range(per_round[i]))
            best[i] = min(best[i], samples[len(samples) // 2])
        if round_ + 1 >= MIN_ROUNDS and time.perf_counter() - start > MEASURE_SECONDS:
            break
    return best


def _network(build: str, rows: np.ndarray, dtype: np.dtype, row_batch: Sequence[int] | None) -> Any:
    """A walker Network of ``build`` over ``rows``, with random parameters."""
    from fastnn._blas import find_blas

    module = _walker.build(build)
    n_params = int(max((row[4] + row[2] for row in rows if row[0] == _walker.KIND_DENSE), default=0))
    rng = np.random.default_rng(0)
    params = (rng.standard_normal(n_params) * 0.1).astype(dtype)
    grads = np.zeros(n_params, dtype=dtype)
    net = module.Network(np.ascontiguousarray(rows, dtype=np.intp), params, grads, blas=find_blas())
    if row_batch is not None:
        net.row_blas_min_batch = list(row_batch)
    return net


#: What :func:`time_networks` times: (build, plan rows, dtype, row_blas_min_batch or None, batch).
Spec = tuple[str, np.ndarray, np.dtype, "Sequence[int] | None", int]


def _step(build: str, rows: np.ndarray, dtype: np.dtype, row_batch: Sequence[int] | None,
          batch: int) -> Callable[[], object]:
    """One SGD training step (MSE, learning rate 0) of ``rows`` at ``batch`` rows, as a call."""
    net = _network(build, rows, dtype, row_batch)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((batch, net.n_in)).astype(dtype)
    y = rng.standard_normal((batch, net.n_out)).astype(dtype)
    update = net.make_update("sgd", 0.0)
    return lambda: net.train_step(X, y, update)


def time_networks(specs: Sequence[Spec]) -> list[float]:
    """Seconds of one training step of each spec, timed side by side (:func:`side_by_side`).

    The tests replace this function (and nothing else) to plan without timing."""
    return side_by_side([_step(*spec) for spec in specs])


def _layer_rows(n_in: int, n_out: int) -> np.ndarray:
    return np.array([[_walker.KIND_DENSE, n_in, n_out, 0, n_in * n_out, 0, _walker.FN_CODES["identity"]]],
                    dtype=np.intp)


def _eligible(n_in: int, n_out: int, module: Any) -> bool:
    """Whether BLAS may take this layer at all (the build's size floor)."""
    return n_in * n_out >= module.BLAS_MIN_WEIGHTS and min(n_in, n_out) >= module.BLAS_MIN_WIDTH


def _blas_found() -> bool:
    from fastnn._blas import find_blas

    return find_blas().kind != 0


# -- planning ---------------------------------------------------------------------------------

def _candidate_builds() -> tuple[str, ...]:
    """The builds the planner times: every one this CPU runs but the baseline, if another runs."""
    return _walker.BUILDS[1:] if len(_walker.BUILDS) > 1 else _walker.BUILDS


def _shape_key(rows: np.ndarray, dtype: np.dtype) -> str:
    return f"{np.dtype(dtype).name}:" + ",".join(f"{r[0]}/{r[1]}x{r[2]}" for r in np.asarray(rows)[:, :3].tolist())


def _layer_key(build: str, n_in: int, n_out: int, dtype: np.dtype) -> str:
    return f"layer:{build}:{np.dtype(dtype).name}:{n_in}x{n_out}"


def _layer_choice(build: str, n_in: int, n_out: int, dtype: np.dtype, measured: list[bool]) -> int:
    """From which batch BLAS takes one layer in one build (remembered, else timed).

    At each batch timed (the largest first), the side faster by MARGIN wins;
    closer than that, the build's fixed rule decides (BLAS_MIN_WEIGHTS_TILED)."""
    key = _layer_key(build, n_in, n_out, dtype)
    if not isinstance(_store.choices.get(key), int):
        choice = TILES
        rule_blas = n_in * n_out >= _walker.build(build).BLAS_MIN_WEIGHTS_TILED
        if n_in * n_out >= ALWAYS_BLAS:
            choice = BLAS
        else:
            rows = _layer_rows(n_in, n_out)
            for batch, blas_from in reversed(MEASURE_BATCHES):
                tiles, blas = time_networks([(build, rows, dtype, [TILES], batch), (build, rows, dtype, [BLAS], batch)])
                if not (blas < tiles * MARGIN or (rule_blas and tiles >= blas * MARGIN)):
                    break
                choice = blas_from
        _store.choices[key] = BLAS if choice <= 8 else choice
        measured[0] = True
    return int(_store.choices[key])


def _row_batch(build: str, rows: np.ndarray, dtype: np.dtype, measured: list[bool]) -> tuple[int, ...] | None:
    """Per plan row, from which batch BLAS takes it in ``build`` (remembered, else measured and checked);
    None where no layer may take BLAS."""
    if not _blas_found():
        return None
    module = _walker.build(build)
    key = f"rows:{build}:{_shape_key(rows, dtype)}"
    if isinstance(_store.choices.get(key), list) and len(_store.choices[key]) == len(rows):
        return tuple(_store.choices[key])
    layer, rule, any_choice = [], [], False
    for row in rows:
        n_in, n_out = int(row[1]), int(row[2])
        if row[0] == _walker.KIND_DENSE and _eligible(n_in, n_out, module):
            layer.append(_layer_choice(build, n_in, n_out, dtype, measured))
            rule.append(BLAS if n_in * n_out >= module.BLAS_MIN_WEIGHTS_TILED else TILES)
            any_choice = True
        else:
            layer.append(TILES)
            rule.append(TILES)
    if not any_choice:
        return None
    _store.choices[key] = _checked(build, rows, dtype, layer, rule)
    measured[0] = True
    return tuple(_store.choices[key])


def _sub_rows(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Plan rows ``start:stop`` as a network of their own (activation offsets from 0; the
    parameter offsets kept: :func:`_network` makes room up to the largest)."""
    sub = np.array(rows[start:stop], dtype=np.intp)
    sub[:, 5] = np.concatenate([[0], np.cumsum(sub[:-1, 2])])
    return sub


def _checked(build: str, rows: np.ndarray, dtype: np.dtype, layer: list[int], rule: list[int]) -> list[int]:
    """Per batch class, the layers' own choices if the network runs faster with them, by
    MARGIN, than with the build's fixed rule; else the rule's (a layer timed alone can mislead:
    the next layer's product and the loss follow it, in the same caches).

    In each class where the two differ, the rows from the one before the first that differs
    to the one after the last are timed as a network of their own, at the class's batch of
    :data:`MEASURE_BATCHES` (fewer rows, not below the class's first, beyond CHECK_BUDGET
    multiply-adds a step; not at all where even the class's first batch would pass it)."""
    on_blas: dict[int, list[bool]] = {}
    for batch, first in MEASURE_BATCHES:
        mine, theirs = [b <= first for b in layer], [b <= first for b in rule]
        on_blas[first] = mine
        if mine != theirs:
            differ = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
            start, stop = max(0, differ[0] - 1), min(len(rows), differ[-1] + 2)
            sub = _sub_rows(rows, start, stop)
            weights = sum(int(r[1]) * int(r[2]) for r in sub if r[0] == _walker.KIND_DENSE)
            if first * weights > CHECK_BUDGET:
                continue        # too large to time within the budget: the layers' own choices
            n = max(first, min(batch, CHECK_BUDGET // max(weights, 1)))
            t_mine, t_rule = time_networks([(build, sub, dtype, layer[start:stop], n),
                                            (build, sub, dtype, rule[start:stop], n)])
            on_blas[first] = mine if t_mine < t_rule * MARGIN else theirs
    choices = []
    for i in range(len(rows)):
        first_blas = TILES      # BLAS from the first class from which it holds in every larger one
        for _, first in reversed(MEASURE_BATCHES):
            if not on_blas[first][i]:
                break
            first_blas = first
        choices.append(BLAS if first_blas <= MEASURE_BATCHES[0][1] else first_blas)
    return choices


def _network_batch(rows: np.ndarray) -> int:
    weights = sum(int(r[1]) * int(r[2]) for r in rows if r[0] == _walker.KIND_DENSE)
    return int(max(8, min(MEASURE_BATCH, NETWORK_BUDGET // max(weights, 1))))


def _measure(rows: np.ndarray, dtype: np.dtype, *, again: bool = False) -> Plan:
    """The measured (or remembered) plan of ``rows`` in ``dtype``; the fixed plan (source
    ``"fallback"``, with a warning, once) if measuring fails."""
    with _store.lock:
        key = f"net:{_shape_key(rows, dtype)}"
        try:
            _store.load()
            if not again and key in _store.plans:
                return _store.plans[key]
            return _measure_network(key, rows, dtype, again)
        except Exception as exc:  # a build that fails to load or run, no memory, a BLAS error...
            plan = _fall_back(exc)
            _store.plans[key] = plan     # not measured again in this process (but by tune())
            return plan


def _fall_back(exc: Exception) -> Plan:
    """The fixed plan, after measuring failed with ``exc``: remembered for describe(), warned once."""
    global _warned
    _store.failure = f"{type(exc).__name__}: {exc}"
    if not _warned:
        _warned = True
        warnings.warn(f"fastnn could not measure the fastest way to run this network ({_store.failure}); "
                      "it runs the fixed plan instead (set FASTNN_PLAN=fixed to skip measuring)",
                      RuntimeWarning, stacklevel=6)   # the user's Sequential(...)
    return Plan(_walker.ISA, None, "fallback")


def _measure_network(key: str, rows: np.ndarray, dtype: np.dtype, again: bool) -> Plan:
    """Measure what the store does not hold yet (all of it, ``again``), remember and save it."""
    measured = [False]
    if again:
        for build in _walker.BUILDS:
            for row in rows:
                _store.choices.pop(_layer_key(build, int(row[1]), int(row[2]), dtype), None)
            _store.choices.pop(f"rows:{build}:{_shape_key(rows, dtype)}", None)
        _store.choices.pop(key, None)
    candidates: dict[str, tuple[int, ...] | None] = {}
    for build in _candidate_builds():
        try:
            candidates[build] = _row_batch(build, rows, dtype, measured)
        except ImportError:  # that build was not compiled
            continue
    chosen = _store.choices.get(key)
    if chosen not in candidates:
        if len(candidates) == 1:
            chosen = next(iter(candidates))
        else:
            batches = sorted({SMALL_BATCH, _network_batch(rows)})
            specs = [(build, rows, dtype, tiled, batch) for build, tiled in candidates.items() for batch in batches]
            timed = iter(time_networks(specs))
            times = {build: float(np.prod([next(timed) for _ in batches])) for build in candidates}
            chosen = min(times, key=lambda build: times[build])
            if _walker.ISA in times and times[chosen] >= times[_walker.ISA] * MARGIN ** len(batches):
                chosen = _walker.ISA    # not clearly faster: the fixed plan's build
        _store.choices[key] = chosen
        measured[0] = True
    if measured[0]:
        _store.save()
    _store.plans[key] = Plan(chosen, candidates[chosen], "cache")
    return Plan(chosen, candidates[chosen], "measured" if measured[0] else "cache")


def plan_for(rows: np.ndarray, dtype: np.dtype) -> Plan:
    """The plan a network of walker plan ``rows`` in ``dtype`` runs: forced, fixed, or measured."""
    if _forced:
        force = _forced[-1]
        return force(rows, np.dtype(dtype)) if callable(force) else force
    if mode() == "fixed":
        return fixed_plan()
    return _measure(np.asarray(rows), np.dtype(dtype))


@contextlib.contextmanager
def forced(plan: Plan | Callable[[np.ndarray, np.dtype], Plan]) -> Iterator[None]:
    """Within the block, every model built runs ``plan`` (or ``plan(rows, dtype)``), unmeasured."""
    _forced.append(plan)
    try:
        yield
    finally:
        _forced.remove(plan)


def tune(models: Sequence[Any] = ()) -> dict[str, Any]:
    """Measure now, and remember: the plans of ``models`` (Sequential), or of the benchmark shapes.

    Every choice these models need is timed again (replacing what the cache
    held); with no models, the networks of ``benchmarks/common.py``'s configs
    (tiny 8-32-32-1, medium 64-256-256-1, large 784-512-512-10, the tutorial's
    1-3-1 and the demo's 1-16-1) in float64 and float32. Returns
    :func:`describe`'s report afterwards. Each model's current ``Sequential``
    keeps its plan; models built afterwards take the new one.
    """
    from fastnn.layers import Dense, ReLU

    shapes: list[tuple[np.ndarray, np.dtype]] = []
    if models:
        shapes = [(walker_rows(model.layers)[0], np.dtype(model.dtype)) for model in models]
    else:
        for widths in ((8, 32, 32, 1), (64, 256, 256, 1), (784, 512, 512, 10), (1, 3, 1), (1, 16, 1)):
            layers: list[Any] = []
            for a, b in zip(widths, widths[1:]):
                layers += [Dense(a, b, seed=0), ReLU()]
            for name in ("float64", "float32"):
                shapes.append((walker_rows(layers[:-1])[0], np.dtype(name)))
    for rows, dtype in shapes:
        _measure(rows, dtype, again=True)
    return describe()


def choice_text(value: Any) -> str:
    """A remembered layer choice (the batch from which BLAS takes it), in words."""
    if not isinstance(value, int):
        return str(value)
    return "blas" if value <= 8 else "tiles" if value == TILES else f"blas from {value} rows"


def describe() -> dict[str, Any]:
    """The plan in force and where it comes from (for ``python -m fastnn info``)."""
    with _store.lock:
        if mode() == "measure" and not _forced:
            _store.load()
        choices = dict(_store.choices) if mode() == "measure" else {}
        return {
            "mode": "forced" if _forced else mode(),
            "FASTNN_PLAN": os.environ.get("FASTNN_PLAN", "measure"),
            "fixed_plan": {
                "build": _walker.ISA,
                "blas_min_weights": _walker.BLAS_MIN_WEIGHTS,
                "blas_min_width": _walker.BLAS_MIN_WIDTH,
                "blas_min_weights_tiled": _walker.BLAS_MIN_WEIGHTS_TILED,
            },
            "builds": list(_walker.BUILDS),
            "cache_key": cache_key(),
            "cache_file": cache_path(),
            "cache": _store.note,
            "choices": choices,
            "measure_error": _store.failure,
        }
