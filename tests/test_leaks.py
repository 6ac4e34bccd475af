"""No leaks: memory stays flat over many calls after warm-up.

100,000 ``train_step`` calls and 1,000 ``fit`` calls on small models, with the
batch sizes fixed after the warm-up, measured two ways at once:

* ``tracemalloc``: every Python allocation and every NumPy data buffer
  (NumPy reports its buffers to tracemalloc) still alive after the calls;
  it may grow by less than ``MAX_TRACED_GROWTH`` (64 KiB);
* the process's resident set size, from ``/proc/self/statm`` (the peak from
  ``resource.getrusage`` where there is no /proc), which also sees memory
  that C code allocates behind tracemalloc's back (a workspace malloc'd and
  never freed, a leaked reference to a buffer); it may grow by less than
  ``MAX_RSS_GROWTH`` (1 MiB).

Each measurement runs in a fresh interpreter (``python -X faulthandler
tests/test_leaks.py SCENARIO``): memory that earlier tests freed but the
allocator kept resident would otherwise absorb a leak without the resident
size growing (``test_the_measurement_sees_a_leak`` checks that it does not).

The calls go through every path of the boundary: the compiled fast path
(exact C-contiguous ndarrays of the model's dtype), the validating slow path
(other dtypes, Fortran order, strided views, lists, a 1-D ``y``), rejected
input (``ValueError`` raised) and divergence (``FloatingPointError`` raised),
in float32 and float64 models. Each call's outcome is checked: a call that
should succeed and raises, or one that should raise and does not, or raises
another error, fails the measurement.
"""

import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastnn

N_TRAIN_STEPS = 100_000
N_FITS = 1_000
MAX_TRACED_GROWTH = 64 * 1024
MAX_RSS_GROWTH = 1024 * 1024

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The process's resident set size now (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def memory_growth(run, n_calls: int, n_warmup: int) -> tuple[int, int]:
    """Run ``run(i)`` for ``n_warmup`` calls, then ``n_calls`` more; return the
    growth of (tracemalloc's traced memory, resident set size) over the latter.

    tracemalloc runs through the warm-up too, so that its own tables are
    grown before the resident size is taken.
    """
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(n_warmup):
            run(i)
        gc.collect()
        traced_before, rss_before = tracemalloc.get_traced_memory()[0], resident_bytes()
        for i in range(n_calls):
            run(i)
        gc.collect()
        traced_after, rss_after = tracemalloc.get_traced_memory()[0], resident_bytes()
    finally:
        tracemalloc.stop()
    return traced_after - traced_before, rss_after - rss_before


def assert_flat(traced_growth: int, rss_growth: int, what: str) -> None:
    assert traced_growth < MAX_TRACED_GROWTH, (
        f"{what}: tracemalloc's traced memory grew by {traced_growth} bytes (limit {MAX_TRACED_GROWTH})")
    assert rss_growth < MAX_RSS_GROWTH, (
        f"{what}: the resident set size grew by {rss_growth} bytes (limit {MAX_RSS_GROWTH})")


def small_model(dtype, seed=0):
    return fastnn.Sequential([fastnn.Dense(3, 8, seed=seed), fastnn.ReLU(), fastnn.Dense(8, 1, seed=seed + 1)],
                             dtype=dtype)


def batches(dtype, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, 3)).astype(dtype)
    y = (np.sin(X.sum(axis=1, keepdims=True)) / 2).astype(dtype)
    return X, y


def train_step_calls():
    """``call(i)`` cycling through every path of train_step, on two small models."""
    model64, model32 = small_model(np.float64), small_model(np.float32, seed=2)
    X64, y64 = batches(np.float64, 16)
    X32, y32 = batches(np.float32, 16, seed=1)
    loss = fastnn.MSELoss()
    optimizer = fastnn.SGD(0.01)
    huge = fastnn.SGD(1e300)
    X_fortran = np.asfortranarray(X64)
    X_strided = np.repeat(X64, 2, axis=0)[::2]
    X_nan = X64.copy()
    X_nan[3, 1] = np.nan
    y_list = y64.ravel().tolist()
    y_1d = y32.ravel()
    X_wide = np.ones((16, 4))
    X_overflow = X64 * 1e300
    calls = [
        (None, lambda: model64.train_step(X64, y64, loss, optimizer)),          # fast path
        (None, lambda: model32.train_step(X32, y32, loss, optimizer)),          # fast path, float32
        (None, lambda: model64.train_step(X64, y64)),                           # defaults
        (None, lambda: model32.train_step(X32, y_1d, loss, optimizer)),         # 1-D y, fast path
        (None, lambda: model64.train_step(X32, y32, loss, optimizer)),          # converted
        (None, lambda: model64.train_step(X_fortran, y_list, loss, optimizer)),  # Fortran X, list y
        (None, lambda: model32.train_step(X_strided, y64, loss, optimizer)),    # strided float64 into float32
        (ValueError, lambda: model64.train_step(X_nan, y64, loss, optimizer)),  # rejected: NaN
        (ValueError, lambda: model32.train_step(X_wide, y32, loss, optimizer)),  # rejected: shape
        (FloatingPointError, lambda: model64.train_step(X_overflow, y64, loss, huge)),  # diverges
    ]
    return cycling(calls)


def cycling(calls):
    """``call(i)``: the ``i % len(calls)``-th of ``calls``, pairs of (the exception it must raise,
    or None, and a callable). Any other outcome is an error that ends the measurement."""
    def call(i):
        expected, run = calls[i % len(calls)]
        if expected is None:
            run()
            return
        try:
            run()
        except expected:
            return
        raise AssertionError(f"call {i % len(calls)} did not raise {expected.__name__}")

    return call


def fit_calls():
    """``call(i)`` cycling through fit's paths: batch sizes, shuffling, dtypes, rejected and diverging."""
    model64, model32 = small_model(np.float64), small_model(np.float32, seed=2)
    X64, y64 = batches(np.float64, 40)
    X32, y32 = batches(np.float32, 40, seed=1)
    optimizer = fastnn.SGD(0.01)
    X_fortran = np.asfortranarray(X64)
    X_nan = X64.copy()
    X_nan[0, 0] = np.inf
    calls = [
        (None, lambda: model64.fit(X64, y64, optimizer=optimizer, epochs=2, batch_size=8, seed=0)),
        (None, lambda: model32.fit(X32, y32.ravel(), optimizer=optimizer, epochs=2, batch_size=8, seed=1)),
        (None, lambda: model64.fit(X_fortran, y32, optimizer=optimizer, batch_size=16, shuffle=False)),
        (None, lambda: model32.fit(X64, y64, optimizer=optimizer, epochs=1, batch_size=8, seed=2)),
        (None, lambda: model64.fit(X64, y64, epochs=1)),                              # defaults, full batch
        (ValueError, lambda: model64.fit(X_nan, y64, optimizer=optimizer)),           # rejected
        (ValueError, lambda: model32.fit(X32, y32, optimizer=optimizer, batch_size=0)),  # rejected
        (FloatingPointError,                                                          # diverges
         lambda: model64.fit(X64 * 1e300, y64, optimizer=fastnn.SGD(1e300), batch_size=8, seed=0)),
    ]
    return cycling(calls)


def predict_calls():
    model = small_model(np.float64)
    X, _ = batches(np.float64, 16)
    X32 = X.astype(np.float32)
    calls = [lambda: model.predict(X), lambda: model.predict(X32), lambda: model.predict(X.tolist())]
    return lambda i: calls[i % len(calls)]()


def leaking_calls(kind):
    """A deliberate leak of 10,000 blocks of 1 KiB: Python objects or NumPy buffers."""
    kept = []
    if kind == "python objects":
        return lambda i: kept.append(bytearray(1024))
    return lambda i: kept.append(np.ones(128))


#: name: (calls, number of measured calls, number of warm-up calls)
SCENARIOS = {
    "train_step": (train_step_calls, N_TRAIN_STEPS, 5_000),
    "fit": (fit_calls, N_FITS, 200),
    "predict": (predict_calls, 30_000, 3_000),
    "leak of python objects": (lambda: leaking_calls("python objects"), 10_000, 100),
    "leak of numpy buffers": (lambda: leaking_calls("numpy buffers"), 10_000, 100),
}


def measure_in_fresh_interpreter(scenario: str) -> tuple[int, int]:
    """(traced growth, resident growth) of ``scenario``, measured in a new ``python -X faulthandler``."""
    result = subprocess.run([sys.executable, "-X", "faulthandler", __file__, scenario],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the measurement of {scenario} failed:\n{result.stdout}\n{result.stderr}"
    growth = json.loads(result.stdout.strip().splitlines()[-1])
    return growth["traced"], growth["rss"]


@pytest.mark.parametrize("scenario,what", [
    ("train_step", f"{N_TRAIN_STEPS} train_step calls"),
    ("fit", f"{N_FITS} fit calls"),
    ("predict", "30000 predict calls"),
])
def test_no_leak(scenario, what):
    traced, rss = measure_in_fresh_interpreter(scenario)
    assert_flat(traced, rss, what)


@pytest.mark.parametrize("scenario", ["leak of python objects", "leak of numpy buffers"])
def test_the_measurement_sees_a_leak(scenario):
    """The same measurement flags a leak of 10,000 blocks of 1 KiB (the limits are not too loose)."""
    traced, rss = measure_in_fresh_interpreter(scenario)
    assert traced >= MAX_TRACED_GROWTH and rss >= MAX_RSS_GROWTH, (traced, rss)


if __name__ == "__main__":
    make_calls, n_calls, n_warmup = SCENARIOS[sys.argv[1]]
    traced_growth, rss_growth = memory_growth(make_calls(), n_calls, n_warmup)
    print(json.dumps({"traced": traced_growth, "rss": rss_growth}))
