"""Property-based fuzzing of every public entry point of fastnn (issue 6, items 2 and 3).

Hypothesis draws the input of every public call: ``fastnn.ops.*``, ``Dense``
(constructor, ``W``/``b`` setters, ``forward``/``backward``), ``ReLU``,
``MSELoss``, ``SGD`` (constructor, ``lr`` setter, ``update``) and
``Sequential`` (constructor, ``predict``, ``train_step``, ``fit``,
``set_parameters``), with

* shapes with 0 and 1 in every dimension, 0-d arrays, wrong numbers of
  dimensions and mismatched sizes;
* dtypes: bool, signed and unsigned integers, float16/32/64, longdouble,
  complex, object, strings, bytes, datetimes, structured; and non-arrays
  (None, ragged lists, dicts, scalars);
* memory layouts: C, Fortran, strided and negatively strided views,
  read-only, byte-swapped, unaligned, ndarray subclasses, nested lists,
  huge strides (a view every 1000 elements, and strides of +-2**40 on axes
  of length 0 or 1) and stride-0 broadcast views (``as_strided``);
* values: NaN, +-inf, huge (up to the dtype's max, 1e308), subnormal, -0.0.

The oracle
----------
Each call must either

* return what :mod:`fastnn.reference` returns on the equivalent clean input
  (``np.ascontiguousarray(x, dtype=<the dtype fastnn computes in>)``),
  within a tolerance derived from the magnitudes of the terms involved
  (``tolerance_bound``: no comparison of values where a bound overflows the
  computing dtype), and *exactly* what fastnn itself returns on that clean
  input: the layout of an input never changes a result; or
* raise ``TypeError`` (a dtype or kind of object is wrong) or ``ValueError``
  (a shape or a value is wrong) whose message names an argument that is
  wrong (``Blame``).

Training may also raise ``FloatingPointError`` where the reference diverges
(or where the magnitudes come within 2**8 of overflowing), never elsewhere.
A call that raises leaves the model's parameters and gradients
byte-identical (item 3), the layers given to a rejected ``Sequential``
untouched, and the inputs of every call unmodified.

Sizes of ``Dense`` whose parameter count cannot even be represented must be
refused with a ``ValueError`` naming the size; sizes that are representable
but cannot be allocated (here 2**45 and more values) may raise ``MemoryError``.

Running
-------
The suite runs under faulthandler, so that a crash is reported::

    python -X faulthandler -m pytest tests/test_fuzz.py

uses the deterministic "ci" profile (200 derandomized examples per test, no
example database, about a minute). A developer hunting for bugs runs the
long, random profile (5000 examples per test, failures stored in
``.hypothesis/`` and replayed first next time)::

    FASTNN_FUZZ_PROFILE=long python -X faulthandler -m pytest tests/test_fuzz.py

(``FASTNN_FUZZ_PROFILE=smoke``, 30 examples per test, is the short seeded
run CI uses for its second and third passes over the suite.)

A failure prints the drawn specs (``ArraySpec``...) and notes with the exact
arrays (dtype, shape, strides, flags) that were passed.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import numbers
import operator
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import fastnn
from fastnn import ops, reference

# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None,
                          database=None, print_blob=True, suppress_health_check=_HEALTH)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=_HEALTH)
#: The same seeded search, shorter: CI's second and third passes over the suite
#: (baseline walker build, bounds-checked build) use it.
settings.register_profile("smoke", max_examples=30, derandomize=True, deadline=None,
                          database=None, print_blob=True, suppress_health_check=_HEALTH)
#: Applied to each test of this module only (loading it globally would change
#: the settings of the other test modules' property tests).
FUZZ = settings.get_profile(os.environ.get("FASTNN_FUZZ_PROFILE", "ci"))

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# ---------------------------------------------------------------------------
# Arrays: values, then a memory layout
# ---------------------------------------------------------------------------

#: Dtypes fastnn converts (bool, integers, floats).
ACCEPTED_DTYPES = ["float64", "float32", "float16", "longdouble", "bool", "int8", "uint8",
                   "int16", "int32", "int64", "uint64", ">f8", ">f4"]
#: Dtypes fastnn refuses with a TypeError.
REJECTED_DTYPES = ["complex128", "complex64", "object", "U8", "S8", "M8[s]", "m8[s]", "structured"]

#: Values injected into float arrays (cast to the array's dtype, where the
#: large ones may become inf).
SPECIAL_VALUES = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 3e38, -3e38,
                  65504.0, 2.2250738585072014e-308, 5e-324, -5e-324, 1e-45, 1.2e-38, 6e-8, 1e-300]

#: Regimes of float values: exact small dyadic numbers (every sum is exact),
#: normal numbers of moderate scale, subnormal/tiny, huge.
REGIMES = ["dyadic", "moderate", "tiny", "huge"]


class NdSubclass(np.ndarray):
    """An ndarray subclass: the compiled fast paths must not take it for an exact ndarray."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How an array's values are laid out in memory (see ``build``)."""

    order: str = "C"                 # "C" or "F" buffer
    steps: tuple = ()                # slicing step per axis (negative: reversed view)
    huge_step_axis: int | None = None  # this axis gets a step of 1000 (arrays of up to 4096 elements)
    unaligned: bool = False          # buffer starts one byte off alignment
    swapped: bool = False            # non-native byte order
    readonly: bool = False
    broadcast_axis: int | None = None  # this axis gets stride 0 (as_strided)
    odd_unit_strides: bool = False   # axes of length 0 or 1 get a stride of +-2**40
    subclass: bool = False           # an NdSubclass view
    as_list: bool = False            # passed as nested lists (or a scalar for 0-d)


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """A reproducible array: ``spec.values()`` is the contiguous array of values,
    ``build(spec)`` the object passed to fastnn."""

    shape: tuple
    dtype: str
    regime: str = "moderate"
    seed: int = 0
    specials: tuple = ()             # (flat index, value) pairs, indices taken modulo the size
    layout: Layout = Layout()

    def values(self) -> np.ndarray:
        return make_values(self.shape, self.dtype, self.regime, self.seed, self.specials)


def _float_values(shape, dtype, regime, rng) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    finfo = np.finfo(dtype)
    if regime == "dyadic":
        raw = rng.integers(-16, 17, size=size) / 8.0
    elif regime == "moderate":
        raw = rng.normal(0.0, 10.0 ** rng.integers(-2, 3), size=size)
    elif regime == "tiny":
        raw = rng.integers(-1000, 1001, size=size) * float(finfo.smallest_subnormal)
        raw = np.where(rng.random(size) < 0.7, raw, rng.normal(size=size))
    else:  # huge
        raw = rng.uniform(-1.0, 1.0, size=size) * float(finfo.max) / 2.0 ** rng.integers(0, 4)
        raw = np.where(rng.random(size) < 0.6, raw, rng.normal(size=size))
    with np.errstate(all="ignore"):
        return raw.astype(dtype).reshape(shape)


def make_values(shape, dtype_name, regime="moderate", seed=0, specials=()) -> np.ndarray:
    """C-contiguous values of ``dtype_name`` and ``shape``, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape, dtype=np.int64))
    if dtype_name == "structured":
        out = np.zeros(shape, dtype=[("a", "f8"), ("b", "i4")])
        out["a"] = _float_values(shape, F64, "moderate", rng)
        return out
    base = _float_values(shape, F64, regime if regime != "huge" else "moderate", rng)
    if dtype_name in ("complex128", "complex64"):
        return (base + 0.5j).astype(dtype_name)
    if dtype_name == "object":
        return base.astype(object)
    if dtype_name == "U8":
        return base.round(2).astype("U8")
    if dtype_name == "S8":
        return base.round(2).astype("S8")
    if dtype_name in ("M8[s]", "m8[s]"):
        return rng.integers(-10**6, 10**6, size=size).astype(dtype_name).reshape(shape)
    dtype = np.dtype(dtype_name)
    if dtype.kind == "b":
        return (rng.random(size) < 0.5).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if regime == "huge":
            out = rng.integers(info.min, info.max, size=size, dtype=dtype, endpoint=True)
        else:
            out = rng.integers(max(info.min, -20), min(info.max, 20), size=size, endpoint=True).astype(dtype)
        out = out.reshape(-1)
        for index, value in specials:
            if size:
                out[index % size] = info.max if value > 0 else info.min
        return out.reshape(shape).astype(dtype)
    native = dtype.newbyteorder("=")
    out = _float_values(shape, native, regime, rng).reshape(-1)
    with np.errstate(all="ignore"):
        for index, value in specials:
            if size:
                out[index % size] = np.array(value).astype(native)
    return out.reshape(shape).astype(dtype)


def build(spec: ArraySpec):
    """Return ``(passed, buffer)``: the object handed to fastnn and the ndarray
    whose memory holds it (None for lists and scalars), laid out as ``spec.layout``."""
    values = spec.values()
    layout = spec.layout
    ndim = values.ndim
    dtype = values.dtype
    if layout.swapped and dtype.byteorder != "|":
        dtype = dtype.newbyteorder("S")
    steps = [(layout.steps[axis] if axis < len(layout.steps) else 1) for axis in range(ndim)]
    if layout.huge_step_axis is not None and ndim and values.size <= 4096:
        steps[layout.huge_step_axis % ndim] = 1000 if steps[layout.huge_step_axis % ndim] > 0 else -1000
    buffer_shape = tuple(size * abs(step) for size, step in zip(values.shape, steps))
    n_items = int(np.prod(buffer_shape, dtype=np.int64))
    if layout.unaligned and dtype.kind != "O" and dtype.alignment > 1:
        raw = np.zeros(n_items * dtype.itemsize + 1, dtype=np.uint8)[1:]
        buffer = raw.view(dtype).reshape(buffer_shape, order=layout.order)
    else:
        buffer = np.zeros(buffer_shape, dtype=dtype, order=layout.order)
    view = buffer[tuple(slice(None, None, step) for step in steps)] if ndim else buffer[...]
    assert view.shape == values.shape
    view[...] = values
    strides = list(view.strides)
    if layout.broadcast_axis is not None and ndim and dtype.kind != "O":
        strides[layout.broadcast_axis % ndim] = 0
    if layout.odd_unit_strides and dtype.kind != "O":
        for axis, size in enumerate(view.shape):
            if size <= 1:
                strides[axis] = 2**40 if axis % 2 else -(2**40)
    if tuple(strides) != view.strides:
        view = np.lib.stride_tricks.as_strided(view, view.shape, strides, writeable=True)
    if layout.readonly:
        view.flags.writeable = False
    if layout.subclass:
        view = view.view(NdSubclass)
    if layout.as_list:
        return (view.tolist() if ndim else view[()]), None
    return view, buffer


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (f"{type(value).__name__} dtype={value.dtype} shape={value.shape} strides={value.strides} "
                f"C={flags.c_contiguous} F={flags.f_contiguous} aligned={flags.aligned} "
                f"writeable={flags.writeable} values={np.array2string(np.asarray(value), threshold=60)}")
    return f"{type(value).__name__} {value!r:.300}"


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

#: Sizes: 1 first, so that shrinking heads for it; 0 in every dimension; 8 and
#: 17 reach the BLAS paths of the ops and of the models.
SIZES = st.sampled_from([1, 2, 3, 1, 2, 0, 4, 5, 8, 17, 1, 2, 3])

ODDBALLS = [None, "text", 3.0, True, 7, [[1.0, 2.0], [3.0]], {"a": 1}, b"abc", 1j, [[1j]],
            [[None]], object(), [["1", "2"]], [], [[]]]


@st.composite
def layouts(draw) -> Layout:
    if draw(st.integers(0, 3)) == 0:
        return Layout()
    return Layout(
        order=draw(st.sampled_from(["C", "F"])),
        steps=tuple(draw(st.lists(st.sampled_from([1, 2, -1, -2, 3]), max_size=4))),
        huge_step_axis=draw(st.none() | st.integers(0, 3)),
        unaligned=draw(st.booleans()),
        swapped=draw(st.booleans()),
        readonly=draw(st.booleans()),
        broadcast_axis=draw(st.none() | st.none() | st.integers(0, 3)),
        odd_unit_strides=draw(st.booleans()),
        subclass=draw(st.booleans()),
        as_list=draw(st.integers(0, 7)) == 0,
    )


@st.composite
def dtypes_(draw, accepted_only=False) -> str:
    choice = draw(st.integers(0, 39))
    if choice < 22:
        return draw(st.sampled_from(["float64", "float32"]))
    if choice < 38 or accepted_only:
        return draw(st.sampled_from(ACCEPTED_DTYPES))
    return draw(st.sampled_from(REJECTED_DTYPES))


@st.composite
def array_specs(draw, shape, dtype=None) -> ArraySpec:
    """An ArraySpec of ``shape`` (or, now and then, of another shape)."""
    if draw(st.integers(0, 14)) == 0:
        shape = tuple(draw(st.lists(SIZES, max_size=4)))
    regime_draw = draw(st.integers(0, 9))
    regime = REGIMES[0] if regime_draw < 4 else REGIMES[1] if regime_draw < 7 else draw(st.sampled_from(REGIMES))
    specials = ()
    if draw(st.integers(0, 5)) == 0:
        specials = tuple(draw(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(SPECIAL_VALUES)),
                                       min_size=1, max_size=3)))
    return ArraySpec(
        shape=tuple(shape),
        dtype=dtype if dtype is not None else draw(dtypes_()),
        regime=regime,
        seed=draw(st.integers(0, 2**16)),
        specials=specials,
        layout=draw(layouts()),
    )


@st.composite
def array_args(draw, shape, dtype=None):
    """An ArraySpec, or now and then something that is not an array at all."""
    if draw(st.integers(0, 39)) == 0:
        return draw(st.sampled_from(ODDBALLS))
    return draw(array_specs(shape, dtype))


def materialize(arg):
    """``(passed, buffer)`` for an ArraySpec, ``(arg, None)`` for anything else."""
    if isinstance(arg, ArraySpec):
        passed, buffer = build(arg)
    else:
        passed, buffer = arg, None
    return passed, buffer


GOOD_LRS = st.sampled_from([0.01, 0.1, 0.5, 1e-4, 1.0, 2.0, 5e-324, 1e-30])
BAD_LRS = st.sampled_from([0, 0.0, -0.1, math.nan, math.inf, -math.inf, "0.1", None, True, 1j,
                           np.array(0.1), [0.1], 10**400, -(10**400)])
ODD_GOOD_LRS = st.sampled_from([np.float32(0.25), np.float64(0.125), np.float16(0.5), 1, np.int64(2)])
LRS = GOOD_LRS | GOOD_LRS | ODD_GOOD_LRS | BAD_LRS


# ---------------------------------------------------------------------------
# The oracle: what fastnn must accept, and whom it must blame
# ---------------------------------------------------------------------------

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


def quiet_asarray(value, dtype=None):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(value, dtype=dtype)


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


def draw_activation_args(data, shape, backward: bool) -> tuple:
    """Draw Z (and dA for a backward pass) of ``shape``: (Z, dA, their buffers, a snapshot of them)."""
    Z_arg = data.draw(array_args(shape), "Z")
    dA_arg = data.draw(array_args(shape), "dA") if backward else None
    (Z, Z_buf), (dA, dA_buf) = materialize(Z_arg), materialize(dA_arg)
    note(f"Z: {describe(Z)}\ndA: {describe(dA)}")
    return Z, dA, [Z_buf, dA_buf], snapshot([Z_buf, dA_buf])


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


# ---------------------------------------------------------------------------
# Comparing with the reference
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# fastnn.ops, ReLU and MSELoss
# ---------------------------------------------------------------------------

@st.composite
def dense_shapes(draw):
    return draw(SIZES), draw(SIZES), draw(SIZES)


@FUZZ
@given(sizes=dense_shapes(), data=st.data())
def test_dense_forward(sizes, data):
    n_samples, n_in, n_out = sizes
    X_arg = data.draw(array_args((n_samples, n_in)), "X")
    W_arg = data.draw(array_args((n_in, n_out)), "W")
    b_arg = data.draw(array_args((n_out,)), "b")
    (X, X_buf), (W, W_buf), (b, b_buf) = map(materialize, (X_arg, W_arg, b_arg))
    note(f"X: {describe(X)}\nW: {describe(W)}\nb: {describe(b)}")
    before = snapshot([X_buf, W_buf, b_buf])

    blame = Blame()
    arrays = [inspect_array(blame, X, "X", (2,)), inspect_array(blame, W, "W", (2,)),
              inspect_array(blame, b, "b", (1,))]
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        for array, name in zip(arrays, "XWb"):
            blame_nonfinite(blame, array, name, dtype)
        X_a, W_a, b_a = arrays
        if X_a.ndim == 2 and W_a.ndim == 2 and X_a.shape[1] != W_a.shape[0]:
            blame.add(ValueError, "X", "W")
        if W_a.ndim == 2 and b_a.ndim == 1 and b_a.shape[0] != W_a.shape[1]:
            blame.add(ValueError, "b")
    note(repr(blame))
    Y = call(blame, ops.dense_forward, X, W, b)
    assert_unmodified(before, [X_buf, W_buf, b_buf])
    if blame:
        return
    X_c, W_c, b_c = (clean(a, dtype) for a in arrays)
    assert Y.dtype == dtype
    assert_identical(Y, ops.dense_forward(X_c, W_c, b_c), "dense_forward")
    with np.errstate(all="ignore"):
        expected = reference.dense_forward(X_c, W_c, b_c)
        bound = absolute(X_c) @ absolute(W_c) + absolute(b_c)
    assert_close(Y, expected, bound, dtype, n_in, "dense_forward")


@FUZZ
@given(sizes=dense_shapes(), data=st.data())
def test_dense_backward(sizes, data):
    n_samples, n_in, n_out = sizes
    X_arg = data.draw(array_args((n_samples, n_in)), "X")
    W_arg = data.draw(array_args((n_in, n_out)), "W")
    dY_arg = data.draw(array_args((n_samples, n_out)), "dY")
    (X, X_buf), (W, W_buf), (dY, dY_buf) = map(materialize, (X_arg, W_arg, dY_arg))
    note(f"X: {describe(X)}\nW: {describe(W)}\ndY: {describe(dY)}")
    before = snapshot([X_buf, W_buf, dY_buf])

    blame = Blame()
    arrays = [inspect_array(blame, X, "X", (2,)), inspect_array(blame, W, "W", (2,)),
              inspect_array(blame, dY, "dY", (2,))]
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        for array, name in zip(arrays, ("X", "W", "dY")):
            blame_nonfinite(blame, array, name, dtype)
        X_a, W_a, dY_a = arrays
        if X_a.ndim == 2 and W_a.ndim == 2 and X_a.shape[1] != W_a.shape[0]:
            blame.add(ValueError, "X", "W")
        if (X_a.ndim == 2 and W_a.ndim == 2 and dY_a.ndim == 2
                and dY_a.shape != (X_a.shape[0], W_a.shape[1])):
            blame.add(ValueError, "dY")
    note(repr(blame))
    result = call(blame, ops.dense_backward, X, W, dY)
    assert_unmodified(before, [X_buf, W_buf, dY_buf])
    if blame:
        return
    X_c, W_c, dY_c = (clean(a, dtype) for a in arrays)
    for got, again, name in zip(result, ops.dense_backward(X_c, W_c, dY_c), ("dX", "dW", "db")):
        assert got.dtype == dtype, name
        assert_identical(got, again, f"dense_backward {name}")
    with np.errstate(all="ignore"):
        expected = reference.dense_backward(X_c, W_c, dY_c)
        bounds = (absolute(dY_c) @ absolute(W_c).T, absolute(X_c).T @ absolute(dY_c), absolute(dY_c).sum(axis=0))
    for got, want, bound, terms, name in zip(result, expected, bounds, (n_out, n_samples, n_samples),
                                             ("dX", "dW", "db")):
        assert_close(got, want, bound, dtype, terms, f"dense_backward {name}")


@st.composite
def any_shapes(draw):
    return tuple(draw(st.lists(SIZES, min_size=0, max_size=4)))


@FUZZ
@given(shape=any_shapes(), data=st.data(), backward=st.booleans(), through_layer=st.booleans())
def test_relu(shape, data, backward, through_layer):
    """ops.relu_forward/relu_backward and ReLU().forward/backward: exact, no arithmetic."""
    Z, dA, buffers, before = draw_activation_args(data, shape, backward)
    Z_buf, dA_buf = buffers

    blame = Blame()
    arrays, dtype = blame_activation_args(blame, Z, dA, backward)
    note(repr(blame))
    layer = fastnn.ReLU()
    if backward:
        function = layer.backward if through_layer else ops.relu_backward
        out = call(blame, function, Z, dA)
    else:
        function = layer.forward if through_layer else ops.relu_forward
        out = call(blame, function, Z)
    assert_unmodified(before, [Z_buf, dA_buf])
    if blame:
        return
    cleaned = [clean(a, dtype) for a in arrays]
    expected = reference.relu_backward(*cleaned) if backward else reference.relu_forward(*cleaned)
    assert out.dtype == dtype and out.shape == cleaned[0].shape
    np.testing.assert_array_equal(out, expected)
    again = ops.relu_backward(*cleaned) if backward else ops.relu_forward(*cleaned)
    assert_identical(out, again, "relu")


@st.composite
def loss_pairs(draw):
    n_samples, n_outputs = draw(SIZES), draw(SIZES)
    kind = draw(st.integers(0, 3))
    if kind == 0:            # 1-D yhat and y
        return (n_samples,), (n_samples,)
    if kind == 1:            # (n, 1) yhat and 1-D y
        return (n_samples, 1), (n_samples,)
    return (n_samples, n_outputs), (n_samples, n_outputs)


@FUZZ
@given(shapes=loss_pairs(), data=st.data(), gradient=st.booleans(), through_loss=st.booleans())
def test_mse(shapes, data, gradient, through_loss):
    """ops.mse_loss/mse_grad and MSELoss()(...)/.grad(...)."""
    yhat_arg = data.draw(array_args(shapes[0]), "yhat")
    y_arg = data.draw(array_args(shapes[1]), "y")
    (yhat, yhat_buf), (y, y_buf) = materialize(yhat_arg), materialize(y_arg)
    note(f"yhat: {describe(yhat)}\ny: {describe(y)}")
    before = snapshot([yhat_buf, y_buf])

    blame = Blame()
    arrays = [inspect_array(blame, yhat, "yhat", (1, 2)), inspect_array(blame, y, "y", (1, 2))]
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        blame_nonfinite(blame, arrays[0], "yhat", dtype)
        blame_nonfinite(blame, arrays[1], "y", dtype)
        yhat_a, y_a = arrays
        paired = (y_a.shape == yhat_a.shape
                  or (y_a.ndim == 1 and yhat_a.ndim == 2 and yhat_a.shape == (y_a.shape[0], 1)))
        if yhat_a.ndim in (1, 2) and y_a.ndim in (1, 2) and not paired:
            blame.add(ValueError, "y", "yhat")
    note(repr(blame))
    loss = fastnn.MSELoss()
    if gradient:
        function = loss.grad if through_loss else ops.mse_grad
    else:
        function = loss if through_loss else ops.mse_loss
    out = call(blame, function, yhat, y)
    assert_unmodified(before, [yhat_buf, y_buf])
    if blame:
        return
    yhat_c, y_c = (clean(a, dtype) for a in arrays)
    size = yhat_c.size
    y_paired = y_c.reshape(yhat_c.shape)
    with np.errstate(all="ignore"):
        if gradient:
            expected = reference.mse_grad(yhat_c, y_c)
            bound = 2.0 * (absolute(yhat_c) + absolute(y_paired)) / size
            assert out.dtype == dtype
            assert_identical(out, ops.mse_grad(yhat_c, y_c), "mse_grad")
            assert_close(out, expected, bound, dtype, 4, "mse_grad")
        else:
            expected = reference.mse_loss(yhat_c, y_c)
            bound = np.mean((absolute(yhat_c) + absolute(y_paired)) ** 2)
            assert isinstance(out, float)
            assert out == ops.mse_loss(yhat_c, y_c)
            assert_close(out, expected, bound, dtype, size + 4, "mse_loss")


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


@st.composite
def sgd_params(draw):
    """A param spec: mostly float32/float64 (any layout), sometimes anything."""
    shape = draw(any_shapes())
    if draw(st.integers(0, 5)) == 0:
        return draw(array_args(shape))
    return draw(array_specs(shape, dtype=draw(st.sampled_from(["float64", "float32", ">f8", ">f4"]))))


@FUZZ
@given(param_arg=sgd_params(), data=st.data(), lr=LRS, through_optimizer=st.booleans())
def test_sgd_update(param_arg, data, lr, through_optimizer):
    """ops.sgd_update and SGD(lr).update: in place, through the caller's view,
    nothing outside the view touched; numpy's ``param -= lr * grad`` on clean copies."""
    shape = param_arg.shape if isinstance(param_arg, ArraySpec) else ()
    grad_arg = data.draw(array_args(shape), "grad")
    param, param_buf = materialize(param_arg)
    grad, grad_buf = materialize(grad_arg)
    note(f"param: {describe(param)}\ngrad: {describe(grad)}\nlr: {lr!r}")
    before_grad = snapshot([grad_buf])
    before_param = snapshot([param_buf])

    blame, grad_array = blame_sgd_update(param, grad, lr)
    note(repr(blame))

    expected_buffer = None
    if not blame:
        # The reference on clean copies, written back through the same view
        # of a second, identical buffer.
        dtype = param.dtype.newbyteorder("=")
        param_clean, grad_clean = clean(param, dtype), clean(grad_array, dtype)
        with np.errstate(all="ignore"):
            reference.sgd_update(param_clean, grad_clean, float(lr))
        twin, expected_buffer = materialize(param_arg)
        with np.errstate(all="ignore"):
            twin[...] = param_clean

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if through_optimizer:
            optimizer = call(Blame() if blame.entries.isdisjoint({(TypeError, "lr"), (ValueError, "lr")})
                             else blame, fastnn.SGD, lr)
            if optimizer is not None:
                call(blame, optimizer.update, param, grad)
        else:
            call(blame, ops.sgd_update, param, grad, lr)
    assert_unmodified(before_grad, [grad_buf])
    if blame:
        assert_unmodified(before_param, [param_buf])     # a rejected update changes nothing
        return
    np.testing.assert_array_equal(param_buf, expected_buffer,
                                  err_msg="sgd_update: the buffer differs from numpy's param -= lr * grad")


@FUZZ
@given(n_elements=st.integers(2, 40), shift=st.integers(1, 3), dtype=st.sampled_from(["float64", "float32"]),
       lr=GOOD_LRS, grad_first=st.booleans(), seed=st.integers(0, 2**16))
def test_sgd_update_with_overlapping_grad(n_elements, shift, dtype, lr, grad_first, seed):
    """grad a view of param's own memory, shifted: the result is numpy's
    ``param -= lr * grad``, i.e. the update computed from grad as it was before the call."""
    shift = min(shift, n_elements - 1)
    buffer = make_values((n_elements,), dtype, "dyadic", seed)
    expected = buffer.copy()
    if grad_first:        # grad starts before param in memory
        param, grad = buffer[shift:], buffer[:-shift]
        expected_param, expected_grad = expected[shift:], expected[:-shift]
    else:
        param, grad = buffer[:-shift], buffer[shift:]
        expected_param, expected_grad = expected[:-shift], expected[shift:]
    reference.sgd_update(expected_param, expected_grad.copy(), lr)
    note(f"buffer before: {make_values((n_elements,), dtype, 'dyadic', seed)}")
    ops.sgd_update(param, grad, lr)
    np.testing.assert_array_equal(buffer, expected, err_msg="sgd_update with grad overlapping param")


# ---------------------------------------------------------------------------
# Dense, SGD and MSELoss objects
# ---------------------------------------------------------------------------

#: Sizes a Dense cannot have. 2**45 and up cannot be allocated (256 TiB and
#: more), so no example ever allocates a huge buffer by accident.
HUGE_SIZES = [2**45, 2**62, 2**63, 2**64, 10**30]
SIZE_ARGS = (st.sampled_from([1, 2, 3, 5, np.int64(4), np.uint8(2)])
             | st.sampled_from([0, -1, -(2**70), 1.0, 2.5, "3", None, True, np.bool_(True), np.float64(2.0), 1j])
             | st.sampled_from(HUGE_SIZES))
INIT_ARGS = st.sampled_from(["uniform", "he", "xavier"]) | st.sampled_from(["normal", "", "UNIFORM", 3, None, b"he"])
SEED_ARGS = (st.sampled_from([None, 0, 1, 2**40, 2**200, np.int64(7), "generator"])
             | st.sampled_from([-1, 1.5, "abc", True, np.float64(1.0), [1]]))


def seed_value(seed):
    """A fresh numpy Generator for the token "generator" (so it can be made twice)."""
    return np.random.default_rng(1234) if isinstance(seed, str) and seed == "generator" else seed


@FUZZ
@given(in_features=SIZE_ARGS, out_features=SIZE_ARGS, init=INIT_ARGS, seed=SEED_ARGS)
def test_dense_constructor(in_features, out_features, init, seed):
    blame = Blame()
    sizes_ok = True
    for value, name in ((in_features, "in_features"), (out_features, "out_features")):
        before = len(blame.entries)
        blame_positive_int(blame, value, name)
        sizes_ok = sizes_ok and len(blame.entries) == before
    may_be_out_of_memory = False
    if sizes_ok:
        n_parameters = int(in_features) * int(out_features) + int(out_features)
        if n_parameters * 8 > np.iinfo(np.intp).max:
            blame.add(ValueError, "in_features", "out_features")     # cannot even be represented
        elif n_parameters >= 2**40:
            may_be_out_of_memory = True
    if not isinstance(init, str):
        blame.add(TypeError, "init")
    elif init not in ("uniform", "he", "xavier"):
        blame.add(ValueError, "init")
    if not (seed is None or (isinstance(seed, str) and seed == "generator")):
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            blame.add(TypeError, "seed")
        elif seed < 0:
            blame.add(ValueError, "seed")
    note(repr(blame))
    if may_be_out_of_memory and not blame:
        with pytest.raises((MemoryError, ValueError)) as info:
            fastnn.Dense(in_features, out_features, init=init, seed=seed_value(seed))
        if isinstance(info.value, ValueError):
            Blame.check(_blame_of(ValueError, "in_features", "out_features"), info.value)
        return
    layer = call(blame, fastnn.Dense, in_features, out_features, init=init, seed=seed_value(seed))
    if blame:
        return
    n_in, n_out = int(in_features), int(out_features)
    assert layer.W.shape == (n_in, n_out) and layer.b.shape == (n_out,)
    assert layer.W.dtype == F64 and layer.b.dtype == F64
    assert np.all(np.isfinite(layer.W)) and np.all(np.isfinite(layer.b))
    assert not np.any(layer.dW) and not np.any(layer.db)
    if init == "uniform":
        bound = 1 / math.sqrt(n_in)
        assert np.all(np.abs(layer.W) <= bound) and np.all(np.abs(layer.b) <= bound)
    elif init == "xavier":
        assert np.all(np.abs(layer.W) <= math.sqrt(6 / (n_in + n_out))) and not np.any(layer.b)
    else:
        assert not np.any(layer.b)
    if seed is not None:
        twin = fastnn.Dense(in_features, out_features, init=init, seed=seed_value(seed))
        assert_identical(layer.W, twin.W, "Dense W from the same seed")
        assert_identical(layer.b, twin.b, "Dense b from the same seed")


def _blame_of(exc_type, *names) -> Blame:
    blame = Blame()
    blame.add(exc_type, *names)
    return blame


@FUZZ
@given(lr=LRS, initial=GOOD_LRS)
def test_sgd_constructor_and_lr_setter(lr, initial):
    blame = Blame()
    blame_learning_rate(blame, lr)
    optimizer = call(blame, fastnn.SGD, lr)
    if not blame:
        assert optimizer.lr == float(lr) and type(optimizer.lr) is float
    existing = fastnn.SGD(initial)
    state = optimizer_state(existing)
    call(blame, setattr, existing, "lr", lr)
    if blame:
        assert optimizer_state(existing) == state, "a rejected lr changed the optimizer's state"
    else:
        assert existing.lr == float(lr)
        clone = copy.deepcopy(existing)
        assert clone.lr == existing.lr


# ---------------------------------------------------------------------------
# Models: specs, and a reference step that knows its error bounds
# ---------------------------------------------------------------------------

WIDTHS = st.sampled_from([1, 2, 3, 1, 4, 8, 17])
#: Batch sizes of predict and train_step: SIZES, and now and then one around
#: predict's chunk of 1024 rows (and the workspace growing for it).
BATCH_SIZES = st.integers(0, 11).flatmap(lambda i: SIZES if i else st.sampled_from([1023, 1024, 1025, 2049]))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A reproducible Sequential: ``make_model(spec)``."""

    architecture: tuple        # ("relu",) or ("dense", in, out) per layer
    dtype: str
    seed: int = 0
    params: ArraySpec | None = None   # values for set_parameters (None: the seeded init)
    warm: bool = True                 # one training step first, so gradients are not all zero


def n_parameters_of(architecture) -> int:
    return sum(layer[1] * layer[2] + layer[2] for layer in architecture if layer[0] == "dense")


@st.composite
def model_specs(draw, dtype=None) -> ModelSpec:
    n_dense = draw(st.integers(1, 3))
    widths = [draw(WIDTHS) for _ in range(n_dense + 1)]
    architecture = [("relu",)] if draw(st.integers(0, 5)) == 0 else []
    for i in range(n_dense):
        architecture.append(("dense", widths[i], widths[i + 1]))
        architecture += [("relu",)] * draw(st.sampled_from([0, 1, 1, 2]))
    params = None
    if draw(st.integers(0, 3)) == 0:
        params = ArraySpec(shape=(n_parameters_of(architecture),), dtype=draw(st.sampled_from(["float64", "float32"])),
                           regime=draw(st.sampled_from(REGIMES)), seed=draw(st.integers(0, 2**16)))
    return ModelSpec(
        architecture=tuple(architecture),
        dtype=dtype if dtype is not None else draw(st.sampled_from(["float64", "float32"])),
        seed=draw(st.integers(0, 2**16)),
        params=params,
        warm=draw(st.booleans()),
    )


def make_model(spec: ModelSpec) -> fastnn.Sequential:
    layers = []
    for k, layer in enumerate(spec.architecture):
        if layer[0] == "dense":
            layers.append(fastnn.Dense(layer[1], layer[2], seed=spec.seed + k))
        else:
            layers.append(fastnn.ReLU())
    model = fastnn.Sequential(layers, dtype=spec.dtype)
    if spec.params is not None:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            values = spec.params.values().astype(spec.dtype)
        values[~np.isfinite(values)] = 1.0
        model.set_parameters(values)
    if spec.warm:
        rng = np.random.default_rng(spec.seed)
        X = rng.integers(-4, 5, size=(3, model.in_features)) / 4
        y = rng.integers(-4, 5, size=(3, model.out_features)) / 4
        try:
            model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(1e-3))
        except FloatingPointError:
            pass
    return model


def parameters_bytes(model) -> bytes:
    return model.get_parameters().tobytes()


def gradients_bytes(model) -> bytes:
    return b"".join(layer.dW.tobytes() + layer.db.tobytes()
                    for layer in model.layers if isinstance(layer, fastnn.Dense))


def reference_layers(model) -> list:
    return [("dense", np.array(layer.W), np.array(layer.b)) if isinstance(layer, fastnn.Dense) else ("relu",)
            for layer in model.layers]


def flat(layers) -> np.ndarray:
    """Parameters of reference layers, laid out as Sequential.get_parameters()."""
    parts = [part for layer in layers if layer[0] == "dense" for part in (layer[1].ravel(), layer[2])]
    return np.concatenate(parts)


@dataclasses.dataclass
class ReferenceStep:
    loss: float
    loss_bound: float
    layers: list             # parameters after the update
    gradients: np.ndarray    # flat, laid out as the parameters
    gradient_bound: np.ndarray
    terms: int               # operations per result, for the tolerance
    sensitive: bool          # a ReLU input within rounding of 0: the masks may differ
    overflow: bool           # a magnitude within OVERFLOW_MARGIN of the dtype's max
    diverged: bool           # the reference's loss or an updated parameter is not finite


def reference_forward(layers, X, dtype):
    """The network on X, with |.| bounds of every activation; ``(out, inputs,
    bounds, terms, sensitive, overflow)``, ``inputs``/``bounds`` of each layer."""
    out, bound = X, absolute(X)
    inputs, bounds = [], []
    terms, sensitive, overflow = 2, False, in_overflow_zone(bound, dtype)
    with np.errstate(all="ignore"):
        for layer in layers:
            inputs.append(out)
            bounds.append(bound)
            if layer[0] == "dense":
                out = reference.dense_forward(out, layer[1], layer[2])
                bound = bound @ absolute(layer[1]) + absolute(layer[2])
                terms += layer[1].shape[0] + 2
                overflow = overflow or in_overflow_zone(bound, dtype)
            else:
                near_zero = (bound > 0) & (absolute(out) <= 4 * tolerance_bound(bound, dtype, terms))
                sensitive = sensitive or bool(np.any(near_zero))
                out = reference.relu_forward(out)
    return out, inputs, bounds, bound, terms, sensitive, overflow


def reference_step(layers, X, y, lr, dtype) -> ReferenceStep:
    """One reference training step (MSE, SGD) on clean X, y, with error bounds."""
    yhat, inputs, bounds, yhat_bound, terms, sensitive, overflow = reference_forward(layers, X, dtype)
    y = y.reshape(yhat.shape)
    with np.errstate(all="ignore"):
        loss = reference.mse_loss(yhat, y)
        loss_bound = float(np.mean((yhat_bound + absolute(y)) ** 2))
        overflow = overflow or in_overflow_zone(loss_bound, dtype)
        grad = reference.mse_grad(yhat, y)
        grad_bound = 2 * (yhat_bound + absolute(y)) / yhat.size
        new_layers, gradients, gradient_bounds = list(layers), [], []
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            if layer[0] == "dense":
                grad, dW, db = reference.dense_backward(inputs[i], layer[1], grad)
                dW_bound = bounds[i].T @ grad_bound
                db_bound = grad_bound.sum(axis=0)
                grad_bound = grad_bound @ absolute(layer[1]).T
                W, b = layer[1].copy(), layer[2].copy()
                reference.sgd_update(W, dW, lr)
                reference.sgd_update(b, db, lr)
                new_layers[i] = ("dense", W, b)
                gradients[:0] = [dW.ravel(), db]
                gradient_bounds[:0] = [dW_bound.ravel(), db_bound]
                overflow = overflow or in_overflow_zone(lr * dW_bound, dtype) or in_overflow_zone(lr * db_bound, dtype)
            else:
                grad = reference.relu_backward(inputs[i], grad)
        new_flat = flat(new_layers)
    terms += X.shape[0] + 4
    return ReferenceStep(
        loss=loss, loss_bound=loss_bound, layers=new_layers,
        gradients=np.concatenate(gradients), gradient_bound=np.concatenate(gradient_bounds),
        terms=terms, sensitive=sensitive, overflow=overflow or in_overflow_zone(absolute(new_flat), dtype),
        diverged=not (math.isfinite(loss) and np.all(np.isfinite(new_flat))),
    )


# -- what a model must accept --------------------------------------------------------------

def blame_X(blame: Blame, model, X):
    array = inspect_array(blame, X, "X", (2,))
    if array is not None:
        blame_nonfinite(blame, array, "X", model.dtype)
        if array.ndim == 2 and array.shape[1] != model.in_features:
            blame.add(ValueError, "X")
    return array


def blame_y(blame: Blame, model, y, X_array):
    array = inspect_array(blame, y, "y", (1, 2))
    if array is not None:
        blame_nonfinite(blame, array, "y", model.dtype)
        n_samples = X_array.shape[0] if X_array is not None and X_array.ndim == 2 else None
        n_outputs = model.out_features
        fits = (array.ndim == 2 and array.shape == (n_samples, n_outputs)) or (
            array.ndim == 1 and n_outputs == 1 and array.shape == (n_samples,))
        if not fits and array.ndim in (1, 2):
            blame.add(ValueError, "y")
    return array


def blame_loss_and_optimizer(blame: Blame, loss, optimizer) -> None:
    if loss is not None and not isinstance(loss, fastnn.MSELoss):
        blame.add(TypeError, "loss")
    if optimizer is not None and not isinstance(optimizer, fastnn.SGD):
        blame.add(TypeError, "optimizer")


def blame_train_step(model, X, y, loss, optimizer):
    blame = Blame()
    blame_loss_and_optimizer(blame, loss, optimizer)
    X_array = blame_X(blame, model, X)
    y_array = blame_y(blame, model, y, X_array)
    return blame, X_array, y_array


GOOD_MODEL_LRS = st.sampled_from([0.01, 0.1, 1e-3, 0.5])
#: Tokens for loss and optimizer arguments (made into objects by make_loss /
#: make_optimizer, so that a failing example prints readably).
LOSS_ARGS = st.sampled_from([None, "MSELoss()", None, "MSELoss()", "mse", 0, "SGD()", "MSELoss class"])
OPTIMIZER_ARGS = st.one_of(st.none(), GOOD_MODEL_LRS.map(lambda lr: ("SGD", lr)),
                           GOOD_MODEL_LRS.map(lambda lr: ("SGD", lr)),
                           st.sampled_from(["sgd", 0.1, "MSELoss()", "SGD class"]))


def make_loss(token):
    objects = {"MSELoss()": fastnn.MSELoss, "SGD()": fastnn.SGD, "MSELoss class": lambda: fastnn.MSELoss}
    return objects[token]() if token in objects else token


def make_optimizer(token):
    if isinstance(token, tuple):
        return fastnn.SGD(token[1])
    objects = {"MSELoss()": fastnn.MSELoss, "SGD class": lambda: fastnn.SGD}
    return objects[token]() if token in objects else token


def model_args(model_spec, n_samples, data):
    """Draw X and y for a model (mostly of fitting shapes)."""
    model = make_model(model_spec)
    X_arg = data.draw(array_args((n_samples, model.in_features)), "X")
    y_shape = (n_samples,) if model.out_features == 1 and data.draw(st.booleans(), "1-D y") else (
        n_samples, model.out_features)
    y_arg = data.draw(array_args(y_shape), "y")
    return model, X_arg, y_arg


def assert_parameters_close(model, expected_flat, p0_flat, update_bound, dtype, terms, what):
    bound = absolute(p0_flat) + update_bound + absolute(expected_flat)
    assert_close(model.get_parameters(), expected_flat, bound, dtype, terms, what)


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------

@FUZZ
@given(model_spec=model_specs(), n_samples=BATCH_SIZES, data=st.data())
def test_sequential_predict(model_spec, n_samples, data):
    model, X_arg, _ = model_args(model_spec, n_samples, data)
    X, X_buf = materialize(X_arg)
    note(f"model: {model!r}\nX: {describe(X)}")
    before, params, grads = snapshot([X_buf]), parameters_bytes(model), gradients_bytes(model)
    blame = Blame()
    X_array = blame_X(blame, model, X)
    note(repr(blame))
    out = call(blame, model.predict, X)
    assert_unmodified(before, [X_buf])
    assert parameters_bytes(model) == params and gradients_bytes(model) == grads, "predict changed the model"
    if blame:
        return
    X_c = clean(X_array, model.dtype)
    assert isinstance(out, np.ndarray) and out.dtype == model.dtype
    assert out.shape == (X_c.shape[0], model.out_features)
    assert_identical(out, model.predict(X_c), "predict")
    expected, _, _, bound, terms, _, overflow = reference_forward(reference_layers(model), X_c, model.dtype)
    if not overflow:
        assert_close(out, expected, bound, model.dtype, terms, "predict")


@FUZZ
@given(model_spec=model_specs(), n_samples=BATCH_SIZES, data=st.data(), loss_token=LOSS_ARGS,
       optimizer_token=OPTIMIZER_ARGS)
def test_sequential_train_step(model_spec, n_samples, data, loss_token, optimizer_token):
    model, X_arg, y_arg = model_args(model_spec, n_samples, data)
    (X, X_buf), (y, y_buf) = materialize(X_arg), materialize(y_arg)
    loss, optimizer = make_loss(loss_token), make_optimizer(optimizer_token)
    note(f"model: {model!r}\nparameters: {model.get_parameters()}\nX: {describe(X)}\ny: {describe(y)}\n"
         f"loss: {loss!r}, optimizer: {optimizer!r}")
    before, params, grads = snapshot([X_buf, y_buf]), parameters_bytes(model), gradients_bytes(model)
    twin = copy.deepcopy(model)

    blame, X_array, y_array = blame_train_step(model, X, y, loss, optimizer)
    note(repr(blame))
    if blame:
        call(blame, model.train_step, X, y, loss, optimizer)
        assert_unmodified(before, [X_buf, y_buf])
        assert parameters_bytes(model) == params, "a rejected train_step changed the parameters"
        assert gradients_bytes(model) == grads, "a rejected train_step changed the gradients"
        return

    dtype = model.dtype
    lr = optimizer.lr if optimizer is not None else 0.01
    X_c, y_c = clean(X_array, dtype), clean(y_array, dtype)
    p0 = model.get_parameters()
    expected = reference_step(reference_layers(model), X_c, y_c, lr, dtype)
    note(f"reference: loss {expected.loss}, diverged {expected.diverged}, overflow {expected.overflow}, "
         f"sensitive {expected.sensitive}")
    event("accepted")
    try:
        value = model.train_step(X, y, loss, optimizer)
    except FloatingPointError as error:
        event("diverged")
        assert expected.diverged or expected.overflow, f"train_step diverged where the reference did not: {error}"
        assert parameters_bytes(model) == params, "a diverged train_step changed the parameters"
        assert gradients_bytes(model) == grads, "a diverged train_step changed the gradients"
        with pytest.raises(FloatingPointError):
            twin.train_step(X_c, y_c, loss, optimizer)
        return
    finally:
        assert_unmodified(before, [X_buf, y_buf])
    assert isinstance(value, float) and math.isfinite(value) and value >= 0
    assert np.all(np.isfinite(model.get_parameters())), "train_step left a non-finite parameter"
    assert expected.overflow or not expected.diverged, "the reference diverged but train_step did not raise"
    # The layout of X and y changes nothing: the same step on clean input, bit for bit.
    assert value == twin.train_step(X_c, y_c, loss, optimizer), "train_step: loss differs from clean input's"
    assert_identical(model.get_parameters(), twin.get_parameters(), "train_step parameters")
    assert gradients_bytes(model) == gradients_bytes(twin), "train_step gradients differ from clean input's"
    if expected.overflow:
        event("overflow zone: not compared")
        return
    assert_close(value, expected.loss, expected.loss_bound, dtype, expected.terms, "train_step loss")
    event("sensitive: loss compared" if expected.sensitive else "loss, gradients and parameters compared")
    if not expected.sensitive:
        gradients = np.concatenate([part for layer in model.layers if isinstance(layer, fastnn.Dense)
                                    for part in (layer.dW.ravel(), layer.db)])
        assert_close(gradients, expected.gradients, expected.gradient_bound, dtype, expected.terms,
                     "train_step gradients")
        assert_parameters_close(model, flat(expected.layers), p0, lr * expected.gradient_bound, dtype,
                                expected.terms, "train_step parameters")


#: fit's keyword arguments: (valid values, invalid values).
FIT_OPTIONS = {
    "epochs": (st.sampled_from([1, 2, 3, np.int64(2)]), st.sampled_from([0, -1, 2.0, None, True, "2"])),
    "batch_size": (st.sampled_from([None, 1, 2, 3, 4, 100, np.int32(2)]),
                   st.sampled_from([0, -1, 1.5, "all", True, np.float64(2)])),
    "shuffle": (st.sampled_from([True, False, np.bool_(True)]), st.sampled_from(["yes", 1, None])),
    "seed": (st.sampled_from([0, 1, 2**40, np.int64(3), "generator"]), st.sampled_from([-1, 1.5, "abc", True])),
    "verbose": (st.sampled_from([False, True, 1, 2, np.bool_(False)]), st.sampled_from([-1, "loud", 1.5])),
}


@st.composite
def fit_options(draw) -> dict:
    """Tokens of fit's keyword arguments (``fit_kwargs`` makes them objects)."""
    options = {}
    for key, (good, bad) in FIT_OPTIONS.items():
        choice = draw(st.integers(0, 19))
        if choice < 6:
            continue
        options[key] = draw(good if choice < 19 else bad)
    if "seed" not in options and draw(st.integers(0, 9)):
        options["seed"] = 0
    loss, optimizer = draw(LOSS_ARGS), draw(OPTIMIZER_ARGS)
    if loss is not None:
        options["loss"] = loss
    if optimizer is not None:
        options["optimizer"] = optimizer
    return options


def fit_kwargs(options: dict) -> dict:
    kwargs = dict(options)
    if "seed" in kwargs:
        kwargs["seed"] = seed_value(kwargs["seed"])
    if "loss" in kwargs:
        kwargs["loss"] = make_loss(kwargs["loss"])
    if "optimizer" in kwargs:
        kwargs["optimizer"] = make_optimizer(kwargs["optimizer"])
    return kwargs


def blame_fit(model, X, y, kwargs):
    blame = Blame()
    blame_loss_and_optimizer(blame, kwargs.get("loss"), kwargs.get("optimizer"))
    blame_positive_int(blame, kwargs.get("epochs", 1), "epochs")
    X_array = blame_X(blame, model, X)
    y_array = blame_y(blame, model, y, X_array)
    if kwargs.get("batch_size") is not None:
        blame_positive_int(blame, kwargs["batch_size"], "batch_size")
    if not isinstance(kwargs.get("shuffle", True), (bool, np.bool_)):
        blame.add(TypeError, "shuffle")
    verbose = kwargs.get("verbose", False)
    if not isinstance(verbose, (bool, np.bool_)):
        blame_positive_int(blame, verbose, "verbose")
    seed = kwargs.get("seed")
    if not (seed is None or isinstance(seed, np.random.Generator)):
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            blame.add(TypeError, "seed")
        elif seed < 0:
            blame.add(ValueError, "seed")
    return blame, X_array, y_array


@dataclasses.dataclass
class ReferenceFit:
    losses: list
    layers: list               # after the last step (before the diverging one, if any)
    update_bound: np.ndarray   # sum over steps of lr * gradient bound
    loss_bounds: list          # per epoch, the largest step loss bound
    terms: int
    sensitive: bool = False
    overflow: bool = False
    diverged_epoch: int | None = None


def reference_fit(model, X, y, lr, epochs, batch_size, shuffle, seed) -> ReferenceFit:
    """Sequential.fit in plain NumPy: the same batches in the same order."""
    dtype = model.dtype
    layers = reference_layers(model)
    rng = np.random.default_rng(seed)
    n_samples = X.shape[0]
    batch = n_samples if batch_size is None else min(int(batch_size), n_samples)
    result = ReferenceFit([], layers, np.zeros(model.n_parameters), [], 0)
    n_steps = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_samples) if shuffle else np.arange(n_samples)
        total, loss_bound = 0.0, 0.0
        for start in range(0, n_samples, batch):
            rows = order[start:start + batch]
            step = reference_step(result.layers, X[rows], y[rows], lr, dtype)
            n_steps += 1
            result.sensitive |= step.sensitive
            result.overflow |= step.overflow
            result.terms = max(result.terms, step.terms * n_steps)
            if step.diverged:
                result.diverged_epoch = epoch
                return result
            total += step.loss * len(rows)
            loss_bound = max(loss_bound, step.loss_bound)
            result.update_bound = result.update_bound + lr * step.gradient_bound
            result.layers = step.layers
        result.losses.append(total / n_samples)
        result.loss_bounds.append(loss_bound)
    return result


@FUZZ
@given(model_spec=model_specs(), n_samples=SIZES, data=st.data(), options=fit_options())
def test_sequential_fit(model_spec, n_samples, data, options):
    model, X_arg, y_arg = model_args(model_spec, n_samples, data)
    (X, X_buf), (y, y_buf) = materialize(X_arg), materialize(y_arg)
    kwargs = fit_kwargs(options)
    note(f"model: {model!r}\nparameters: {model.get_parameters()}\nX: {describe(X)}\ny: {describe(y)}\n"
         f"kwargs: {kwargs!r}")
    before, params, grads = snapshot([X_buf, y_buf]), parameters_bytes(model), gradients_bytes(model)
    twin = copy.deepcopy(model)
    blame, X_array, y_array = blame_fit(model, X, y, kwargs)
    note(repr(blame))
    if blame:
        call(blame, model.fit, X, y, **kwargs)
        assert_unmodified(before, [X_buf, y_buf])
        assert parameters_bytes(model) == params, "a rejected fit changed the parameters"
        assert gradients_bytes(model) == grads, "a rejected fit changed the gradients"
        return

    dtype = model.dtype
    X_c, y_c = clean(X_array, dtype), clean(y_array, dtype)
    y_c = y_c.reshape(X_c.shape[0], -1)
    optimizer = kwargs.get("optimizer")
    lr = optimizer.lr if optimizer is not None else 0.01
    epochs = int(kwargs.get("epochs", 1))
    shuffle = bool(kwargs.get("shuffle", True))
    seed = options.get("seed")
    deterministic = seed is not None or not shuffle
    p0 = model.get_parameters()
    expected = None
    if deterministic:
        expected = reference_fit(model, X_c, y_c, lr, epochs, kwargs.get("batch_size"), shuffle,
                                 seed_value(seed))
        note(f"reference: losses {expected.losses}, diverged in epoch {expected.diverged_epoch}, "
             f"overflow {expected.overflow}, sensitive {expected.sensitive}")
    event("accepted")
    try:
        history = model.fit(X, y, **kwargs)
    except FloatingPointError as error:
        event("diverged")
        assert np.all(np.isfinite(model.get_parameters())), "a diverged fit left a non-finite parameter"
        if expected is None:
            return
        assert expected.diverged_epoch is not None or expected.overflow, (
            f"fit diverged where the reference did not: {error}")
        if expected.overflow:
            return
        assert f"epoch {expected.diverged_epoch}" in str(error), "the error names another epoch"
        if not expected.sensitive:
            assert_parameters_close(model, flat(expected.layers), p0, expected.update_bound, dtype,
                                    expected.terms, "parameters after a diverged fit")
        return
    finally:
        assert_unmodified(before, [X_buf, y_buf])
    assert isinstance(history, fastnn.History)
    assert len(history.loss) == epochs and len(history.epoch_time) == epochs
    assert all(math.isfinite(value) and value >= 0 for value in history.loss)
    assert np.all(np.isfinite(model.get_parameters())), "fit left a non-finite parameter"
    if expected is None:
        return
    assert expected.diverged_epoch is None or expected.overflow, "the reference diverged but fit did not raise"
    # The layout of X and y changes nothing: the same fit on clean input, bit for bit.
    twin_history = twin.fit(X_c, y_c if y_array.ndim == 2 else y_c.reshape(-1), **fit_kwargs(options))
    assert history.loss == twin_history.loss, "fit: losses differ from the clean input's"
    assert_identical(model.get_parameters(), twin.get_parameters(), "fit parameters")
    if expected.overflow:
        event("overflow zone: not compared")
        return
    for epoch, (got, want, bound) in enumerate(zip(history.loss, expected.losses, expected.loss_bounds)):
        assert_close(got, want, bound, dtype, expected.terms, f"fit loss of epoch {epoch + 1}")
    event("sensitive: losses compared" if expected.sensitive else "losses and parameters compared")
    if not expected.sensitive:
        assert_parameters_close(model, flat(expected.layers), p0, expected.update_bound, dtype,
                                expected.terms, "fit parameters")


def blame_set_parameters(model, values):
    blame = Blame()
    array = inspect_array(blame, values, "values", (1,))
    if array is not None:
        blame_nonfinite(blame, array, "values", model.dtype)
        if array.ndim == 1 and array.shape != (model.n_parameters,):
            blame.add(ValueError, "values")
    return blame, array


@FUZZ
@given(model_spec=model_specs(), data=st.data())
def test_sequential_set_parameters(model_spec, data):
    model = make_model(model_spec)
    values, values_buf = materialize(data.draw(array_args((model.n_parameters,)), "values"))
    note(f"model: {model!r}\nvalues: {describe(values)}")
    before, params, grads = snapshot([values_buf]), parameters_bytes(model), gradients_bytes(model)
    blame, array = blame_set_parameters(model, values)
    note(repr(blame))
    call(blame, model.set_parameters, values)
    assert_unmodified(before, [values_buf])
    assert gradients_bytes(model) == grads, "set_parameters changed the gradients"
    if blame:
        assert parameters_bytes(model) == params, "a rejected set_parameters changed the parameters"
        return
    assert_identical(model.get_parameters(), clean(array, model.dtype), "set_parameters")
    assert_identical(flat(reference_layers(model)), model.get_parameters(), "the layers' W and b views")


def blame_setter(layer, name, value):
    """A W/b assignment: converted as fastnn.ops converts, then stored in the layer's dtype,
    where it must still be finite."""
    target = getattr(layer, name)
    blame = Blame()
    array = inspect_array(blame, value, name, (target.ndim,))
    if array is not None:
        blame_nonfinite(blame, array, name, computing_dtype(array))
        blame_nonfinite(blame, clean(array, computing_dtype(array)), name, target.dtype)
        if array.ndim == target.ndim and array.shape != target.shape:
            blame.add(ValueError, name)
    return blame, array


@st.composite
def dense_layers(draw):
    """``(layer, model or None)``: a stand-alone Dense, or one of a model's."""
    if draw(st.booleans()):
        layer = fastnn.Dense(draw(WIDTHS), draw(WIDTHS), seed=draw(st.integers(0, 2**16)))
        return layer, None
    model = make_model(draw(model_specs()))
    dense = [layer for layer in model.layers if isinstance(layer, fastnn.Dense)]
    return draw(st.sampled_from(dense)), model


def layer_state(layer, model) -> bytes:
    if model is not None:
        return parameters_bytes(model) + gradients_bytes(model)
    return b"".join(np.ascontiguousarray(a).tobytes() for a in (layer.W, layer.b, layer.dW, layer.db))


@FUZZ
@given(layer_and_model=dense_layers(), name=st.sampled_from(["W", "b"]), data=st.data())
def test_dense_parameter_setters(layer_and_model, name, data):
    layer, model = layer_and_model
    target_shape = getattr(layer, name).shape
    value, value_buf = materialize(data.draw(array_args(target_shape), "value"))
    note(f"layer: {layer!r} in {model!r}, dtype {layer.W.dtype}\n{name} = {describe(value)}")
    before, state = snapshot([value_buf]), layer_state(layer, model)
    untouched = [np.array(getattr(layer, other)) for other in ("W", "b", "dW", "db") if other != name]
    blame, array = blame_setter(layer, name, value)
    note(repr(blame))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        call(blame, setattr, layer, name, value)
    assert_unmodified(before, [value_buf])
    if blame:
        assert layer_state(layer, model) == state, f"a rejected {name} assignment changed the model"
        return
    expected = clean(clean(array, computing_dtype(array)), getattr(layer, name).dtype)
    assert_identical(getattr(layer, name), expected, f"{name} after assignment")
    for other, old in zip([o for o in ("W", "b", "dW", "db") if o != name], untouched):
        assert_identical(getattr(layer, other), old, f"{other} after assigning {name}")
    if model is not None:
        assert_identical(flat(reference_layers(model)), model.get_parameters(), "the model's parameters")


@FUZZ
@given(layer_and_model=dense_layers(), n_samples=SIZES, backward=st.booleans(), data=st.data())
def test_dense_layer_forward_backward(layer_and_model, n_samples, backward, data):
    layer, model = layer_and_model
    X, X_buf = materialize(data.draw(array_args((n_samples, layer.in_features)), "X"))
    dY, dY_buf = (materialize(data.draw(array_args((n_samples, layer.out_features)), "dY"))
                  if backward else (None, None))
    note(f"layer: {layer!r}, dtype {layer.W.dtype}\nX: {describe(X)}\ndY: {describe(dY)}")
    before, state = snapshot([X_buf, dY_buf]), layer_state(layer, model)
    W, b = np.array(layer.W), np.array(layer.b)
    blame = Blame()
    X_array = inspect_array(blame, X, "X", (2,))
    dY_array = inspect_array(blame, dY, "dY", (2,)) if backward else None
    arrays = [X_array, W, dY_array if backward else b]
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        blame_nonfinite(blame, X_array, "X", dtype)
        if X_array.ndim == 2 and X_array.shape[1] != W.shape[0]:
            blame.add(ValueError, "X")
        if backward:
            blame_nonfinite(blame, dY_array, "dY", dtype)
            if X_array.ndim == 2 and dY_array.ndim == 2 and dY_array.shape != (X_array.shape[0], W.shape[1]):
                blame.add(ValueError, "dY")
    note(repr(blame))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = call(blame, layer.backward if backward else layer.forward, *((X, dY) if backward else (X,)))
    assert_unmodified(before, [X_buf, dY_buf])
    if blame:
        assert layer_state(layer, model) == state, "a rejected Dense call changed the layer"
        return
    X_c = clean(X_array, dtype)
    assert out.dtype == dtype
    if not backward:
        assert layer_state(layer, model) == state, "Dense.forward changed the layer"
        with np.errstate(all="ignore"):
            expected = reference.dense_forward(X_c, clean(W, dtype), clean(b, dtype))
            bound = absolute(X_c) @ absolute(W) + absolute(b)
        assert_identical(out, ops.dense_forward(X_c, clean(W, dtype), clean(b, dtype)), "Dense.forward")
        assert_close(out, expected, bound, dtype, layer.in_features, "Dense.forward")
        return
    dY_c = clean(dY_array, dtype)
    assert np.array_equal(layer.W, W) and np.array_equal(layer.b, b), "Dense.backward changed W or b"
    dX, dW, db = ops.dense_backward(X_c, clean(W, dtype), dY_c)
    assert_identical(out, dX, "Dense.backward dX")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        assert_identical(layer.dW, dW.astype(layer.dW.dtype), "Dense.backward dW")
        assert_identical(layer.db, db.astype(layer.db.dtype), "Dense.backward db")
        expected = reference.dense_backward(X_c, clean(W, dtype), dY_c)
        bounds = (absolute(dY_c) @ absolute(W).T, absolute(X_c).T @ absolute(dY_c), absolute(dY_c).sum(axis=0))
    stored_dtype = F32 if F32 in (dtype, layer.dW.dtype) else F64
    for got, want, bound, terms, what in ((out, expected[0], bounds[0], layer.out_features, "dX"),
                                          (layer.dW, expected[1], bounds[1], n_samples, "dW"),
                                          (layer.db, expected[2], bounds[2], n_samples, "db")):
        assert_close(got, want, bound, stored_dtype, terms, f"Dense.backward {what}")


# -- the Sequential constructor ---------------------------------------------------------------

LAYER_TOKENS = st.sampled_from(["dense", "dense", "dense", "relu", "relu", "unchained dense", "owned dense",
                                "same object again", "'relu'", "None", "MSELoss()"])
CONTAINERS = st.sampled_from(["list", "list", "list", "tuple", "generator", "single layer", "None", "int", "str"])
DTYPE_ARGS = (st.sampled_from([np.float64, np.float32, None, "float32", "f8", float, "d", np.dtype("float32")])
              | st.sampled_from([np.float16, np.int64, complex, "object", "banana", 3, ">f8", np.longdouble]))


@FUZZ
@given(tokens=st.lists(LAYER_TOKENS, max_size=6), container=CONTAINERS, dtype=DTYPE_ARGS,
       widths=st.lists(WIDTHS, min_size=7, max_size=7), seed=st.integers(0, 2**16))
def test_sequential_constructor(tokens, container, dtype, widths, seed):
    donor = fastnn.Sequential([fastnn.Dense(widths[0], widths[1], seed=seed)])
    donor_params = parameters_bytes(donor)
    layers, width, blame = [], widths[0], Blame()
    for i, token in enumerate(tokens):
        if token in ("dense", "unchained dense"):
            n_in = width if token == "dense" else width + 1
            layers.append(fastnn.Dense(n_in, widths[i + 1], seed=seed + i))
            width = widths[i + 1]
        elif token == "owned dense":
            layers.append(donor.layers[0])
            blame.add(ValueError, "layers")
        elif token == "relu":
            layers.append(fastnn.ReLU())
        elif token == "same object again":
            if layers:
                layers.append(layers[-1])
                if isinstance(layers[-1], (fastnn.Dense, fastnn.ReLU)):
                    blame.add(ValueError, "layers")
        else:
            layers.append({"'relu'": "relu", "None": None, "MSELoss()": fastnn.MSELoss()}[token])
            blame.add(TypeError, "layers")
    dense = [layer for layer in layers if type(layer) is fastnn.Dense]
    if not layers:
        blame.add(ValueError, "layers")
    elif not dense:
        blame.add(ValueError, "layers")
    if any(nxt.in_features != prev.out_features for prev, nxt in zip(dense, dense[1:])):
        blame.add(ValueError, "layers")
    argument = {"list": lambda: list(layers), "tuple": lambda: tuple(layers), "generator": lambda: iter(layers),
                "single layer": lambda: fastnn.Dense(2, 2), "None": lambda: None, "int": lambda: 3,
                "str": lambda: "dense"}[container]()
    if container in ("single layer", "None", "int", "str"):
        blame = _blame_of(TypeError, "layers")
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in (F32, F64):
        blame.add(TypeError, "dtype")
    states = [(layer, np.array(layer.W), np.array(layer.b)) for layer in dense]
    note(f"layers: {layers!r}\ncontainer: {container}, dtype: {dtype!r}\n{blame!r}")
    model = call(blame, fastnn.Sequential, argument, dtype=dtype)
    assert parameters_bytes(donor) == donor_params, "Sequential changed another model's parameters"
    if blame:
        for layer, W, b in states:
            assert_identical(layer.W, W, "W of a layer given to a rejected Sequential")
            assert_identical(layer.b, b, "b of a layer given to a rejected Sequential")
        return
    assert model.layers == layers and model.dtype == resolved
    expected = np.concatenate([np.concatenate([W.ravel(), b]) for _, W, b in states]).astype(resolved)
    assert_identical(model.get_parameters(), expected, "the parameters of a new model")
    assert gradients_bytes(model) == bytes(len(gradients_bytes(model))), "a new model's gradients are not zero"
    X = make_values((3, model.in_features), "float64", "dyadic", seed)
    out = model.predict(X)
    want, _, _, bound, terms, _, overflow = reference_forward(reference_layers(model), clean(X, resolved), resolved)
    assert_close(out, want, bound, resolved, terms, "predict of a new model")


# ---------------------------------------------------------------------------
# Item 3: a failed call changes nothing
# ---------------------------------------------------------------------------

@st.composite
def bad_array_args(draw, shape):
    """Something that is not a valid array for ``shape``: wrong dtype, NaN or inf,
    wrong shape, empty, or not an array at all."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(array_specs(shape, dtype=draw(st.sampled_from(REJECTED_DTYPES))))
    if kind == 1:
        spec = draw(array_specs(shape))
        special = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return dataclasses.replace(spec, dtype=draw(st.sampled_from(["float64", "float32", ">f8", "float16"])),
                                   specials=((draw(st.integers(0, 300)), special),))
    if kind == 2:
        other = tuple(draw(st.lists(SIZES, max_size=4)))
        if other == tuple(shape):
            other = tuple(shape) + (1,)
        return draw(array_specs(other))
    if kind == 3:
        return draw(array_specs(tuple(0 if i == 0 else s for i, s in enumerate(shape)) or (0,)))
    return draw(st.sampled_from(ODDBALLS))


def optimizer_state(optimizer) -> str:
    """What a rejected call must not change in an optimizer: its description and,
    where it keeps one, its state (``state_dict()``: step count, buffers)."""
    parts = [repr(optimizer), repr(optimizer.lr)]
    state_dict = getattr(optimizer, "state_dict", None)
    if state_dict is not None:
        for key, value in sorted(state_dict().items()):
            parts.append(f"{key}={np.asarray(value).tobytes().hex()}")
    return "\n".join(parts)


#: SGD with momentum keeps state (a momentum buffer) where fastnn has it.
HAS_MOMENTUM = "momentum" in inspect.signature(fastnn.SGD).parameters

CALL_KINDS = ["train_step", "fit", "set_parameters", "W setter", "b setter", "SGD.update of W",
              "SGD.update of b", "Dense.backward", "SGD lr setter"]


@FUZZ
@given(model_spec=model_specs(), kind=st.sampled_from(CALL_KINDS), n_samples=st.sampled_from([1, 2, 3, 5]),
       data=st.data())
def test_rejected_calls_change_nothing(model_spec, kind, n_samples, data):
    """Hypothesis-drawn bad input to every call that may modify a model: it raises
    TypeError/ValueError naming the argument, and parameters, gradients and the
    optimizer's state stay byte-identical."""
    model = make_model(model_spec)
    dense = [layer for layer in model.layers if isinstance(layer, fastnn.Dense)]
    layer = data.draw(st.sampled_from(dense), "layer")
    good_X = make_values((n_samples, model.in_features), "float64", "dyadic")
    good_y = make_values((n_samples, model.out_features), "float64", "dyadic", 1)
    optimizer = fastnn.SGD(0.05)
    if HAS_MOMENTUM and kind in ("train_step", "fit") and data.draw(st.booleans(), "momentum"):
        optimizer = fastnn.SGD(0.05, momentum=0.9)
        try:
            model.train_step(good_X, good_y, fastnn.MSELoss(), optimizer)    # the optimizer now has state
        except FloatingPointError:
            pass
    params, grads, state = parameters_bytes(model), gradients_bytes(model), optimizer_state(optimizer)

    def maybe_bad(shape, name):
        """A bad array for one argument, the good one for the others."""
        return materialize(data.draw(bad_array_args(shape), name))[0]

    if kind in ("train_step", "fit"):
        target = data.draw(st.sampled_from(["X", "y", "both"] + (["option"] if kind == "fit" else [])), "bad")
        X = maybe_bad(good_X.shape, "X") if target in ("X", "both") else good_X
        y = maybe_bad(good_y.shape, "y") if target in ("y", "both") else good_y
        if kind == "train_step":
            blame, _, _ = blame_train_step(model, X, y, None, optimizer)
            function = lambda: model.train_step(X, y, fastnn.MSELoss(), optimizer)  # noqa: E731
        else:
            options = {"seed": 0}
            if target == "option":
                key = data.draw(st.sampled_from(sorted(FIT_OPTIONS)), "option")
                options[key] = data.draw(FIT_OPTIONS[key][1], key)
            kwargs = dict(fit_kwargs(options), optimizer=optimizer)
            blame, _, _ = blame_fit(model, X, y, kwargs)
            function = lambda: model.fit(X, y, **kwargs)  # noqa: E731
    elif kind == "set_parameters":
        values = maybe_bad((model.n_parameters,), "values")
        blame, _ = blame_set_parameters(model, values)
        function = lambda: model.set_parameters(values)  # noqa: E731
    elif kind in ("W setter", "b setter"):
        name = kind[0]
        value = maybe_bad(getattr(layer, name).shape, name)
        blame, _ = blame_setter(layer, name, value)
        function = lambda: setattr(layer, name, value)  # noqa: E731
    elif kind.startswith("SGD.update"):
        param = layer.W if kind.endswith("W") else layer.b
        grad = maybe_bad(param.shape, "grad")
        blame, _ = blame_sgd_update(param, grad, optimizer.lr)
        function = lambda: optimizer.update(param, grad)  # noqa: E731
    elif kind == "Dense.backward":
        X = maybe_bad((n_samples, layer.in_features), "X")
        dY = make_values((n_samples, layer.out_features), "float64", "dyadic")
        blame = Blame()
        X_array = inspect_array(blame, X, "X", (2,))
        if X_array is not None:
            blame_nonfinite(blame, X_array, "X", computing_dtype(X_array, layer.W, dY))
            if X_array.ndim == 2 and X_array.shape != (n_samples, layer.in_features):
                blame.add(ValueError, "X", "dY")
        function = lambda: layer.backward(X, dY)  # noqa: E731
    else:
        lr = data.draw(BAD_LRS, "lr")
        blame = Blame()
        blame_learning_rate(blame, lr)
        function = lambda: setattr(optimizer, "lr", lr)  # noqa: E731
    note(f"model: {model!r}\ncall: {kind}\n{blame!r}")
    if not blame:
        event("drawn input happened to be valid")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        call(blame, function)
    assert parameters_bytes(model) == params, f"a rejected {kind} changed the parameters"
    assert gradients_bytes(model) == grads, f"a rejected {kind} changed the gradients"
    assert optimizer_state(optimizer) == state, f"a rejected {kind} changed the optimizer's state"


@FUZZ
@given(model_spec=model_specs(), n_samples=st.sampled_from([1, 2, 5]), scale=st.sampled_from([1e150, 1e200, 1e300]),
       lr=st.sampled_from([0.01, 1.0, 1e100, 1e300]), seed=st.integers(0, 2**16))
def test_diverged_train_step_changes_nothing(model_spec, n_samples, scale, lr, seed):
    """A train_step that raises FloatingPointError (the loss or an update would not
    be finite) leaves the parameters and the gradients byte-identical."""
    model = make_model(model_spec)
    X = make_values((n_samples, model.in_features), "float64", "moderate", seed) * scale
    y = make_values((n_samples, model.out_features), "float64", "moderate", seed + 1)
    params, grads = parameters_bytes(model), gradients_bytes(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr))
        except FloatingPointError:
            event("diverged")
            assert parameters_bytes(model) == params, "a diverged train_step changed the parameters"
            assert gradients_bytes(model) == grads, "a diverged train_step changed the gradients"
        except ValueError as error:        # X too large for a float32 model
            event("rejected")
            Blame.check(_blame_of(ValueError, "X"), error)
            assert parameters_bytes(model) == params and gradients_bytes(model) == grads


# ---------------------------------------------------------------------------
# Regressions: inputs the fuzzing found, pinned so that every run tries them
# ---------------------------------------------------------------------------

def unaligned(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose data starts one byte off alignment
    (as ``np.frombuffer`` at an odd offset or a field of a packed record gives)."""
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)[1:]
    out = raw.view(array.dtype).reshape(array.shape)
    out[...] = array
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def tutorial_like_model(dtype):
    return fastnn.Sequential([fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 2, seed=1)], dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry", ["predict", "train_step X", "train_step y", "fit X", "fit y"])
def test_regression_unaligned_input_to_a_model(entry, dtype):
    """An unaligned X or y is valid input and gives the aligned result.

    Found: predict returned None, train_step raised KeyError(-1.0), fit raised
    ValueError("X must be a valid, non-empty C-contiguous array of the
    network's dtype") (the compiled fast path refuses unaligned arrays, and
    the validated slow path hands it the same unaligned array again)."""
    model, twin = tutorial_like_model(dtype), tutorial_like_model(dtype)
    X = make_values((5, 3), dtype, "dyadic", 1)
    y = make_values((5, 2), dtype, "dyadic", 2)
    X_in = unaligned(X) if entry.endswith("X") or entry == "predict" else X
    y_in = unaligned(y) if entry.endswith("y") else y
    if entry == "predict":
        assert_identical(model.predict(X_in), twin.predict(X), "predict of an unaligned X")
    elif entry.startswith("train_step"):
        assert model.train_step(X_in, y_in) == twin.train_step(X, y)
    else:
        assert model.fit(X_in, y_in, epochs=2, batch_size=2, seed=0).loss == twin.fit(
            X, y, epochs=2, batch_size=2, seed=0).loss
    assert_identical(model.get_parameters(), twin.get_parameters(), f"parameters after {entry}")


@pytest.mark.parametrize("name,value", [("W", np.array([[-4.12594372e307]])), ("b", np.array([1e300]))])
def test_regression_setter_refuses_a_value_that_overflows_the_model_dtype(name, value):
    """A float64 value too large for a float32 model is not finite there: refused, model unchanged.

    Found: ``layer.W = [[-4.1e307]]`` in a float32 model stored -inf (with a
    RuntimeWarning from the cast), the finiteness check having run in float64."""
    model = fastnn.Sequential([fastnn.ReLU(), fastnn.Dense(1, 1, seed=0)], dtype=np.float32)
    params = parameters_bytes(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            setattr(model.layers[1], name, value)
    assert parameters_bytes(model) == params
    assert np.all(np.isfinite(model.get_parameters()))


@pytest.mark.parametrize("lr", [10**400, -(10**400)], ids=["10**400", "-10**400"])
@pytest.mark.parametrize("entry", ["SGD()", "SGD.lr =", "ops.sgd_update"])
def test_regression_learning_rate_beyond_float_range(entry, lr):
    """An integer learning rate too large for a float is refused by name.

    Found: OverflowError("int too large to convert to float") from
    ``float(value)`` in check_learning_rate."""
    with pytest.raises((TypeError, ValueError), match=r"\blr\b"):
        if entry == "SGD()":
            fastnn.SGD(lr)
        elif entry == "SGD.lr =":
            fastnn.SGD(0.1).lr = lr
        else:
            ops.sgd_update(np.ones(2), np.ones(2), lr)


@pytest.mark.parametrize("sizes", [(2**45, 2**45), (2**62, 2), (2**63, 1), (1, 2**64), (10**30, 1)],
                         ids=["2**45x2**45", "2**62x2", "2**63x1", "1x2**64", "10**30x1"])
def test_regression_dense_sizes_that_cannot_be_represented(sizes):
    """A Dense whose parameter count does not fit in memory's address space is refused by name.

    Found: ValueError("array is too big; `arr.size * arr.dtype.itemsize` is
    larger than the maximum possible size.") and ValueError("Maximum allowed
    dimension exceeded") from NumPy, naming neither in_features nor out_features."""
    with pytest.raises(ValueError, match=r"\b(in_features|out_features)\b"):
        fastnn.Dense(*sizes)


def test_regression_sgd_update_with_grad_overlapping_param():
    """``param -= lr * grad`` (numpy, and fastnn.reference) reads grad as it was before the call.

    Found: the kernel updates param in place element by element, so where
    grad is param's own memory shifted by one, each update reads the value
    just updated: [1, 2, 3, 4, 5, 6] with param = buf[1:5], grad = buf[:4],
    lr = 1 gave [1, 1, 2, 2, 3, 6] instead of [1, 1, 1, 1, 1, 6]."""
    buffer = np.arange(1.0, 7.0)
    ops.sgd_update(buffer[1:5], buffer[0:4], 1.0)
    np.testing.assert_array_equal(buffer, [1.0, 1.0, 1.0, 1.0, 1.0, 6.0])


@pytest.mark.parametrize("entry", ["train_step", "fit"])
@pytest.mark.parametrize("make_optimizer", [lambda: fastnn.Adam(1e-3), lambda: fastnn.SGD(1e-3, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_regression_a_step_that_diverges_leaves_a_fresh_optimizer_unbound(entry, make_optimizer):
    """Found by the fuzz (test_fuzz_more): a fresh stateful optimizer stayed bound
    to a model (with zero buffers) after its first step diverged, though no
    update was applied; it then refused to train any other model."""
    model, optimizer = fastnn.Sequential([fastnn.Dense(1, 1, seed=0)]), make_optimizer()
    state = optimizer_state(optimizer)
    X, y = np.array([[1e300]]), np.array([[0.0]])
    with pytest.raises(FloatingPointError, match="the loss is not finite"):
        if entry == "fit":
            model.fit(X, y, optimizer=optimizer, epochs=3)
        else:
            model.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert optimizer_state(optimizer) == state
    other = fastnn.Sequential([fastnn.Dense(1, 1, seed=1)])
    assert np.isfinite(other.train_step(np.ones((2, 1)), np.zeros((2, 1)), fastnn.MSELoss(), optimizer))
    # After a good step, a diverging one leaves the optimizer bound, its state as it was.
    state = optimizer_state(optimizer)
    with pytest.raises(FloatingPointError):
        other.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert optimizer_state(optimizer) == state
    with pytest.raises(ValueError, match="already training another model"):
        model.train_step(np.ones((2, 1)), np.zeros((2, 1)), fastnn.MSELoss(), optimizer)


def test_a_diverged_fit_keeps_the_parameters_and_the_refused_steps_gradients():
    """fit keeps no copy of the gradients (train_step does): after an update it
    refused, the parameters and the optimizer's state are those from before that
    step, and dW and db hold the gradients the step computed."""
    model = fastnn.Sequential([fastnn.ReLU(), fastnn.Dense(1, 1, seed=0)])
    optimizer = fastnn.SGD(0.1, momentum=0.9)
    model.fit(np.array([[1.0], [2.0]]), np.array([[0.5], [1.0]]), optimizer=optimizer, epochs=2)
    optimizer.lr = 1e100
    X, y = np.array([[6.4042265e150]]), np.array([[0.33043708]])
    _, expected = reference.ReferenceMLP.from_model(model).gradients(X, y)
    params, state = parameters_bytes(model), optimizer_state(optimizer)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(X, y, optimizer=optimizer, epochs=1)
    assert parameters_bytes(model) == params
    assert optimizer_state(optimizer) == state
    dense = model.layers[1]
    assert np.all(np.isfinite(expected[1][0])) and np.any(expected[1][0] != 0)
    np.testing.assert_allclose(dense.dW, expected[1][0], rtol=1e-12)
    np.testing.assert_allclose(dense.db, expected[1][1], rtol=1e-12)


def test_regression_diverged_train_step_keeps_the_gradients():
    """A train_step whose update would overflow raises FloatingPointError and
    leaves the gradients (not only the parameters) as they were.

    Found: the walker writes the new gradients into the model's gradient
    buffer before it finds the update non-finite (BAD_UPDATE), so dW and db
    hold the gradients of the step that was refused."""
    model = fastnn.Sequential([fastnn.ReLU(), fastnn.Dense(1, 1, seed=0)])
    params, grads = parameters_bytes(model), gradients_bytes(model)
    with pytest.raises(FloatingPointError):
        model.train_step(np.array([[6.4042265e150]]), np.array([[0.33043708]]), fastnn.MSELoss(), fastnn.SGD(1e100))
    assert parameters_bytes(model) == params
    assert gradients_bytes(model) == grads, "the refused step's gradients were kept"
