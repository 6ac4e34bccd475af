"""Fuzzing ``Sequential``: the constructor, ``predict`` and ``set_parameters``.

A model is built only from layers that chain (and that no other model
owns), computes what the reference computes, and is left unchanged (nor are
the layers given to it) by a call that raises. Any layout of X, unaligned
included, gives the result of the clean input. Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import fastnn

from fuzzing.arrays import F32, F64, describe, make_values, unaligned
from fuzzing.models import (
    BATCH_SIZES,
    WIDTHS,
    blame_set_parameters,
    blame_X,
    flat,
    gradients_bytes,
    make_model,
    model_args,
    model_specs,
    parameters_bytes,
    reference_forward,
    reference_layers,
    tutorial_like_model,
)
from fuzzing.oracle import Blame, assert_close, assert_identical, assert_unmodified, blame_of, call, clean, snapshot
from fuzzing.profiles import FUZZ
from fuzzing.strategies import array_args, materialize

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
        blame = blame_of(TypeError, "layers")
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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry", ["predict", "train_step X", "train_step y", "fit X", "fit y"])
def test_unaligned_input_to_a_model(entry, dtype):
    """An unaligned X or y is valid input and gives the aligned result."""
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
