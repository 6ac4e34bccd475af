"""What a call must accept, whom it must blame, and how close to the reference it must be.

``Blame`` collects the errors a call may raise (type and argument name);
the ``blame_*`` functions add to it what fastnn's checks refuse, and
``call`` runs the call and holds it to the blame. ``assert_close`` compares
with :mod:`fastnn.reference` within a tolerance scaled by the magnitudes of
the terms (``tolerance_bound``), and compares nothing in the overflow zone.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
import warnings

import numpy as np
import pytest
from hypothesis import event, note

from fuzzing.arrays import F32, F64


class Blame:
    """The errors a call may raise: (exception type, argument name) pairs.

    Empty means the call must succeed. A raised error must be one of the
    types and its message must name the matching argument as a whole word.
    """

    def __init__(self):
        self.entries: set = set()

    def add(self, exc_type, *names) -> None:
        for name in names:
            self.entries.add((exc_type, name))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def check(self, error: BaseException) -> None:
        message = str(error)
        for exc_type, name in self.entries:
            as_a_word = rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])"
            if isinstance(error, exc_type) and re.search(as_a_word, message):
                return
        raise AssertionError(
            f"{type(error).__name__}({message!r}) matches none of the expected errors "
            f"{sorted((t.__name__, n) for t, n in self.entries)}") from error

    def __repr__(self) -> str:
        return f"Blame({sorted((t.__name__, n) for t, n in self.entries)})"


def blame_of(exc_type, *names) -> Blame:
    blame = Blame()
    blame.add(exc_type, *names)
    return blame


def quiet_asarray(value, dtype=None):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(value, dtype=dtype)


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def inspect_array(blame: Blame, value, name: str, ndims, allow_empty: bool = False):
    """The numeric ndarray fastnn will see for ``value``, or None after blaming ``name``."""
    if value is None:
        blame.add(TypeError, name)
        return None
    try:
        array = quiet_asarray(value)
    except (ValueError, TypeError):
        blame.add(ValueError, name)
        return None
    if array.dtype.kind not in "biuf":
        blame.add(TypeError, name)
        return None
    if array.ndim not in ndims:
        blame.add(ValueError, name)
    if not allow_empty and array.size == 0:
        blame.add(ValueError, name)
    return array


def computing_dtype(*arrays) -> np.dtype:
    """float32 when every input is float16/float32, else float64 (fastnn.ops' rule)."""
    if all(a.dtype.kind == "f" and a.dtype.itemsize <= 4 for a in arrays):
        return F32
    return F64


def clean(array, dtype) -> np.ndarray:
    """The equivalent clean input: a C-contiguous, native copy in ``dtype``."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.array(array, dtype=dtype, order="C", copy=True)


def blame_nonfinite(blame: Blame, array, name: str, dtype) -> None:
    if array is not None and array.size and not np.all(np.isfinite(clean(array, dtype))):
        blame.add(ValueError, name)


def blame_activation_args(blame: Blame, Z, dA, backward: bool) -> tuple:
    """What an activation's forward(Z) or backward(Z, dA) must refuse: Z and dA
    arrays of numbers of any number of dimensions, finite, dA shaped like Z.
    Returns the arrays as inspect_array made them (None where refused) and the
    dtype they compute in (None unless both are arrays)."""
    ndims = tuple(range(1, 33))
    dtype = None
    arrays = [inspect_array(blame, Z, "Z", ndims)]
    if backward:
        arrays.append(inspect_array(blame, dA, "dA", ndims))
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        blame_nonfinite(blame, arrays[0], "Z", dtype)
        if backward:
            blame_nonfinite(blame, arrays[1], "dA", dtype)
            if arrays[1].shape != arrays[0].shape:
                blame.add(ValueError, "dA")
    return arrays, dtype


def blame_learning_rate(blame: Blame, lr, name: str = "lr") -> None:
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        blame.add(TypeError, name)
        return
    try:
        value = float(lr)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        blame.add(ValueError, name)


def blame_positive_int(blame: Blame, value, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        blame.add(TypeError, name)
    elif operator.index(value) <= 0:
        blame.add(ValueError, name)


def blame_number(blame, value, name, *, low, high=math.inf, low_open=False, high_open=False):
    """What fastnn.optimizers._check_number accepts: a real (not bool) finite number in the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        blame.add(TypeError, name)
        return None
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    ok = (math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high))
    if not ok:
        blame.add(ValueError, name)
        return None
    return v


def blame_bool(blame, value, name):
    if not isinstance(value, (bool, np.bool_)):
        blame.add(TypeError, name)


def call(blame: Blame, function, *args, **kwargs):
    """Call ``function``; it must raise as ``blame`` says, or succeed when it says nothing."""
    if not blame:
        event("accepted")
        return function(*args, **kwargs)
    event("rejected")
    with pytest.raises((TypeError, ValueError)) as info:
        function(*args, **kwargs)
    note(f"raised as expected: {info.value!r}")
    blame.check(info.value)
    return None


def snapshot(buffers) -> list:
    """Bytes of each buffer (None stays None): inputs must come out unmodified."""
    return [None if b is None else np.array(b, copy=True) for b in buffers]


def assert_unmodified(before, buffers) -> None:
    for old, buffer in zip(before, buffers):
        if buffer is not None:
            assert old.tobytes() == np.ascontiguousarray(buffer).tobytes(), "fastnn modified an input"


#: No comparison of values where a magnitude bound comes within this factor of
#: the computing dtype's largest number (the two sides may overflow differently).
OVERFLOW_MARGIN = 2.0 ** 8


def in_overflow_zone(bound, dtype) -> bool:
    bound = np.asarray(bound, dtype=np.float64)
    return bool(bound.size) and not (np.all(np.isfinite(bound))
                                     and bound.max() <= float(np.finfo(dtype).max) / OVERFLOW_MARGIN)


def tolerance_bound(bound, dtype, terms: int) -> np.ndarray:
    """Largest allowed |fastnn - reference| for results whose terms sum to at most ``bound``.

    Both sides round each of ``terms`` operations by at most eps relative to
    the running magnitude; a subnormal result is off by a few units of the
    smallest subnormal.
    """
    finfo = np.finfo(dtype)
    bound = np.asarray(bound, dtype=np.float64)
    return 8.0 * (terms + 2) * (float(finfo.eps) * bound + float(finfo.smallest_subnormal))


def assert_close(got, expected, bound, dtype, terms: int, what: str) -> None:
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, reference {expected.shape}"
    if in_overflow_zone(bound, dtype):
        return
    got64 = got.astype(np.float64)
    expected64 = expected.astype(np.float64)
    assert np.all(np.isfinite(expected64)), f"{what}: reference not finite below the overflow zone"
    allowed = tolerance_bound(bound, dtype, terms)
    error = np.abs(got64 - expected64)
    bad = ~(error <= allowed)
    allowed = np.broadcast_to(allowed, bad.shape)
    assert not np.any(bad), (
        f"{what}: fastnn differs from the reference beyond the tolerance at {np.argwhere(bad)[:5].tolist()}: "
        f"fastnn {got64[bad][:5]}, reference {expected64[bad][:5]}, allowed {allowed[bad][:5]}")


def assert_identical(got, expected, what: str) -> None:
    """Same dtype, shape and bits (the layout of an input must not change a result)."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (
        f"{what}: {got.dtype}{got.shape} vs {expected.dtype}{expected.shape}")
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), (
        f"{what}: differs from the result on the clean input:\n{got}\n{expected}")


def absolute(array) -> np.ndarray:
    return np.abs(np.asarray(array, dtype=np.float64))


def blame_sgd_update(param, grad, lr):
    """``(blame, grad as an ndarray)`` for ``sgd_update(param, grad, lr)``."""
    blame = Blame()
    if not isinstance(param, np.ndarray) or param.dtype.kind != "f" or param.dtype.itemsize not in (4, 8):
        blame.add(TypeError, "param")
    else:
        if not param.flags.writeable or param.ndim > 32:
            blame.add(ValueError, "param")
        blame_nonfinite(blame, param, "param", param.dtype.newbyteorder("="))
    blame_learning_rate(blame, lr)
    grad_array = inspect_array(blame, grad, "grad", tuple(range(0, 33)), allow_empty=True)
    if isinstance(param, np.ndarray) and param.dtype.kind == "f" and grad_array is not None:
        blame_nonfinite(blame, grad_array, "grad", param.dtype.newbyteorder("="))
        if grad_array.shape != param.shape:
            blame.add(ValueError, "grad")
    return blame, grad_array


def blame_sample_weight(blame, w, n_samples, dtype):
    """The weights as fastnn will use them (a clean array of dtype), or None."""
    if w is None:
        return None
    array = inspect_array(blame, w, "sample_weight", (1,))
    if array is None or array.ndim != 1 or array.size == 0:
        return None
    c = clean(array, dtype)
    if not np.all(np.isfinite(c)):
        blame.add(ValueError, "sample_weight")
        return None
    if c.shape[0] != n_samples:
        blame.add(ValueError, "sample_weight")
        return None
    if np.any(c < 0) or not quiet(c.sum) > 0:
        blame.add(ValueError, "sample_weight")
        return None
    return c


def blame_labels(blame, labels, n, c):
    if labels is None:
        blame.add(TypeError, "labels")
        return None
    try:
        array = quiet(np.asarray, labels)
    except (ValueError, TypeError):
        blame.add(ValueError, "labels")
        return None
    if array.dtype.kind not in "biuf":
        blame.add(TypeError, "labels")
        return None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    if array.ndim != 1 or array.shape[0] != n:
        blame.add(ValueError, "labels")
        return None
    if array.dtype.kind == "b":
        blame.add(TypeError, "labels")
        return None
    if array.dtype.kind == "f" and not (np.all(np.isfinite(array)) and np.all(array == np.round(array))):
        blame.add(ValueError, "labels")
        return None
    if array.size and (array.min() < 0 or array.max() >= c):
        blame.add(ValueError, "labels")
        return None
    return array.astype(np.intp)


def blame_param(blame, param, name, ref_dtype=None):
    ok = isinstance(param, np.ndarray) and param.dtype.kind == "f" and param.dtype.itemsize in (4, 8)
    if not ok:
        blame.add(TypeError, name)
        return False
    if not param.flags.writeable:
        blame.add(ValueError, name)
    return True


def in_place_blame(blame, param, grad, states):
    """fastnn.ops._in_place_update's checks, after the hyperparameters'."""
    if not blame_param(blame, param, "param"):
        return None
    for name, state in states.items():
        if blame_param(blame, state, name):
            if state.shape != param.shape:
                blame.add(ValueError, name)
            if state.dtype != param.dtype:
                blame.add(TypeError, name)
    dtype = param.dtype.newbyteorder("=")
    grad_array = inspect_array(blame, grad, "grad", tuple(range(0, 33)), allow_empty=True)
    if grad_array is not None:
        blame_nonfinite(blame, grad_array, "grad", dtype)
        if grad_array.shape != param.shape:
            blame.add(ValueError, "grad")
    blame_nonfinite(blame, param, "param", dtype)
    for name, state in states.items():
        if isinstance(state, np.ndarray) and state.dtype.kind == "f":
            blame_nonfinite(blame, state, name, dtype)
    return grad_array
