"""Fuzzing ``Dense``: the constructor, the ``W``/``b`` setters and ``forward``/``backward``.

Sizes that cannot be represented are refused by name (sizes that can be
but cannot be allocated may raise MemoryError); an assigned value is stored
in the layer's dtype, where it must still be finite; a layer's forward and
backward pass agree with the reference and change nothing but ``dW``/``db``.
Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import fastnn
from fastnn import ops, reference

from fuzzing.arrays import F32, F64, describe
from fuzzing.models import blame_setter, dense_layers, flat, layer_state, parameters_bytes, reference_layers
from fuzzing.oracle import (
    Blame,
    absolute,
    assert_close,
    assert_identical,
    assert_unmodified,
    blame_nonfinite,
    blame_of,
    blame_positive_int,
    call,
    clean,
    computing_dtype,
    inspect_array,
    snapshot,
)
from fuzzing.profiles import FUZZ
from fuzzing.strategies import INIT_ARGS, SEED_ARGS, SIZE_ARGS, SIZES, array_args, materialize, seed_value


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
            Blame.check(blame_of(ValueError, "in_features", "out_features"), info.value)
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


@pytest.mark.parametrize("sizes", [(2**45, 2**45), (2**62, 2), (2**63, 1), (1, 2**64), (10**30, 1)],
                         ids=["2**45x2**45", "2**62x2", "2**63x1", "1x2**64", "10**30x1"])
def test_dense_sizes_that_cannot_be_represented(sizes):
    """A Dense whose parameter count does not fit in memory's address space is refused by name."""
    with pytest.raises(ValueError, match=r"\b(in_features|out_features)\b"):
        fastnn.Dense(*sizes)


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


@pytest.mark.parametrize("name,value", [("W", np.array([[-4.12594372e307]])), ("b", np.array([1e300]))])
def test_setter_refuses_a_value_that_overflows_the_model_dtype(name, value):
    """A float64 value too large for a float32 model is not finite there: refused, model unchanged."""
    model = fastnn.Sequential([fastnn.ReLU(), fastnn.Dense(1, 1, seed=0)], dtype=np.float32)
    params = parameters_bytes(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            setattr(model.layers[1], name, value)
    assert parameters_bytes(model) == params
    assert np.all(np.isfinite(model.get_parameters()))


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
