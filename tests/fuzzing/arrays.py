"""Reproducible arrays in any memory layout.

An :class:`ArraySpec` names an array (shape, dtype, value regime, seed,
special values injected, :class:`Layout`); ``spec.values()`` is the
C-contiguous array of its values and ``build(spec)`` the object handed to
fastnn, laid out as the spec says. A failing example prints the specs, so
the exact input can be rebuilt.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


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


def unaligned(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose data starts one byte off alignment
    (as ``np.frombuffer`` at an odd offset or a field of a packed record gives)."""
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)[1:]
    out = raw.view(array.dtype).reshape(array.shape)
    out[...] = array
    assert not out.flags.aligned and out.flags.c_contiguous
    return out
