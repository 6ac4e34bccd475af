"""What hypothesis draws: array specs and non-arrays, sizes, scalars, weights, labels.

Most strategies draw mostly valid values and now and then invalid ones (a
wrong dtype, shape or value, or something that is not an array at all), so
that both the results and the refusals are exercised.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import note
from hypothesis import strategies as st

from fuzzing.arrays import ACCEPTED_DTYPES, REGIMES, REJECTED_DTYPES, SPECIAL_VALUES, ArraySpec, Layout, build, describe
from fuzzing.oracle import snapshot

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


GOOD_NONNEG = st.sampled_from([0, 0.0, 0.01, 0.25, 1, 2.5, np.float32(0.5), np.int64(0), np.float64(0.125)])


BAD_NUMBERS = st.sampled_from([-0.01, -1, math.nan, math.inf, -math.inf, "0.1", None, True, np.bool_(False),
                               1j, [0.1], 10**400, -(10**400)])


NONNEG = st.integers(0, 9).flatmap(lambda k: BAD_NUMBERS if k == 0 else GOOD_NONNEG)


GOOD_DELTAS = st.sampled_from([1.0, 0.5, 2, 1e-3, 100.0, np.float32(1.5)])


DELTAS = st.integers(0, 9).flatmap(lambda k: st.sampled_from([0, 0.0, -1.0]) | BAD_NUMBERS if k == 0 else GOOD_DELTAS)


GOOD_UNIT = st.sampled_from([0.0, 0.5, 0.9, 0.999, 0, np.float64(0.8)])


UNIT = st.integers(0, 9).flatmap(lambda k: st.sampled_from([1.0, 1, 1.5]) | BAD_NUMBERS if k == 0 else GOOD_UNIT)


GOOD_MOMENTA = st.sampled_from([0.5, 0.9, 0.99, np.float64(0.8), 0.0])


MOMENTA = st.integers(0, 9).flatmap(lambda k: st.sampled_from([1.0, 1, 1.5]) | BAD_NUMBERS if k == 0 else GOOD_MOMENTA)


GOOD_EPS = st.sampled_from([1e-8, 1e-3, 1.0, 1e-12])


EPS = st.integers(0, 9).flatmap(lambda k: st.sampled_from([0, 0.0]) | BAD_NUMBERS if k == 0 else GOOD_EPS)


STEPS = st.integers(0, 9).flatmap(
    lambda k: st.sampled_from([0, -1, 1.0, True, "1", None, 2.5, np.float64(2.0)]) if k == 0
    else st.sampled_from([1, 2, 10, 1000, np.int64(3), 10**6]))


BOOLS = st.integers(0, 9).flatmap(lambda k: st.sampled_from([0, 1, "yes", None, 1.0]) if k == 0
                                  else st.sampled_from([False, True, np.bool_(True), np.bool_(False)]))


#: Learning rates: mostly good (LRS is a third bad, too many for calls with eight hyperparameters).
MOSTLY_GOOD_LRS = st.integers(0, 5).flatmap(lambda k: LRS if k == 0 else GOOD_LRS)


BETAS = (st.tuples(GOOD_UNIT, GOOD_UNIT) | st.tuples(UNIT, UNIT)
         | st.sampled_from([None, 0.9, (0.9,), (0.9, 0.99, 0.5), "ab", [0.9, 0.999], np.array([0.5, 0.5])]))


@st.composite
def dense_shapes(draw):
    return draw(SIZES), draw(SIZES), draw(SIZES)


@st.composite
def any_shapes(draw):
    return tuple(draw(st.lists(SIZES, min_size=0, max_size=4)))


@st.composite
def loss_pairs(draw):
    n_samples, n_outputs = draw(SIZES), draw(SIZES)
    kind = draw(st.integers(0, 3))
    if kind == 0:            # 1-D yhat and y
        return (n_samples,), (n_samples,)
    if kind == 1:            # (n, 1) yhat and 1-D y
        return (n_samples, 1), (n_samples,)
    return (n_samples, n_outputs), (n_samples, n_outputs)


@st.composite
def sgd_params(draw):
    """A param spec: mostly float32/float64 (any layout), sometimes anything."""
    shape = draw(any_shapes())
    if draw(st.integers(0, 5)) == 0:
        return draw(array_args(shape))
    return draw(array_specs(shape, dtype=draw(st.sampled_from(["float64", "float32", ">f8", ">f4"]))))


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


@st.composite
def sample_weights(draw, n_samples):
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return None
    if kind <= 6:
        return draw(array_specs((n_samples,), dtype=draw(st.sampled_from(["float64", "float32", "int64", "uint8"]))))
    if kind == 7:
        return draw(st.sampled_from(["neg", "zeros", "nan", "tiny"])) + f":{n_samples}"
    return draw(array_args((n_samples,)))


def make_weight(token):
    if isinstance(token, str) and ":" in token:
        kind, n = token.split(":")
        w = np.ones(int(n))
        if kind == "neg" and w.size:
            w[-1] = -0.5
        elif kind == "zeros":
            w[:] = 0.0
        elif kind == "nan" and w.size:
            w[0] = math.nan
        elif kind == "tiny":         # valid: subnormal weights, sum > 0 (their ratios are what count)
            w[:] = 1e-310
        return w, None
    return materialize(token)


#: Kinds of class labels (``make_labels``): valid ones first and most often, then invalid ones.
LABEL_KINDS = ["int64", "int64", "int64", "int64", "float64", "int32", "uint8", "float64", "float32", "list", "column",
               "bool", "nonintegral", "out of range", "negative", "wrong length", "2-D", "oddball", "nan", "strided"]


def make_labels(kind, n, c, seed):
    rng = np.random.default_rng(seed)
    valid = rng.integers(0, max(c, 1), size=n)
    if kind in ("int64", "int32", "uint8", "float64", "float32"):
        return valid.astype(kind)
    if kind == "list":
        return valid.tolist()
    if kind == "column":
        return valid.reshape(-1, 1)
    if kind == "bool":
        return valid.astype(bool)
    if kind == "nonintegral":
        return valid + 0.5
    if kind == "out of range":
        return np.full(n, c)
    if kind == "negative":
        return -valid - 1
    if kind == "wrong length":
        return rng.integers(0, max(c, 1), size=n + 1)
    if kind == "2-D":
        return np.zeros((n, 2), dtype=np.int64)
    if kind == "nan":
        out = valid.astype(float)
        if n:
            out[0] = math.nan
        return out
    if kind == "strided":
        return np.repeat(valid, 2)[::-2][::-1]
    return ODDBALLS[seed % len(ODDBALLS)]


@st.composite
def state_args(draw, shape, param_dtype):
    """A state buffer: mostly right (any layout), sometimes wrong dtype/shape/read-only/not an array."""
    k = draw(st.integers(0, 9))
    if k == 0:
        return draw(array_args(shape))
    if k == 1:
        return draw(array_specs(tuple(shape) + (2,), dtype=param_dtype))
    dtype = param_dtype if k > 2 else draw(st.sampled_from(["float64", "float32", ">f8", ">f4", "float16"]))
    spec = draw(array_specs(shape, dtype=dtype))
    if draw(st.integers(0, 5)):      # mostly a valid buffer: writable, finite, the right shape
        spec = dataclasses.replace(spec, shape=tuple(shape), specials=(),
                                   layout=dataclasses.replace(spec.layout, readonly=False, as_list=False))
    return spec


def param_like(spec):
    return isinstance(spec, ArraySpec)


def draw_activation_args(data, shape, backward: bool) -> tuple:
    """Draw Z (and dA for a backward pass) of ``shape``: (Z, dA, their buffers, a snapshot of them)."""
    Z_arg = data.draw(array_args(shape), "Z")
    dA_arg = data.draw(array_args(shape), "dA") if backward else None
    (Z, Z_buf), (dA, dA_buf) = materialize(Z_arg), materialize(dA_arg)
    note(f"Z: {describe(Z)}\ndA: {describe(dA)}")
    return Z, dA, [Z_buf, dA_buf], snapshot([Z_buf, dA_buf])
