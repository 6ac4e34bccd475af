"""Fuzzing the layer kernels: ``ops.dense_forward``/``dense_backward``, the
activations' ``*_forward``/``*_backward`` (ReLU, LeakyReLU, tanh, sigmoid) and
``ReLU().forward``/``backward``.

Each call, on hypothesis-drawn input of any dtype, shape, layout and value
(``fuzzing``), returns what :mod:`fastnn.reference` returns on the clean
input (within a magnitude-scaled tolerance) and exactly what it returns on
that clean input itself, or raises TypeError/ValueError naming the argument;
it never modifies its input. Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import fastnn
from fastnn import ops, reference

from fuzzing.arrays import describe
from fuzzing.oracle import (
    Blame,
    absolute,
    assert_close,
    assert_identical,
    assert_unmodified,
    blame_activation_args,
    blame_nonfinite,
    blame_number,
    call,
    clean,
    computing_dtype,
    inspect_array,
    quiet,
    snapshot,
)
from fuzzing.profiles import FUZZ
from fuzzing.strategies import NONNEG, any_shapes, array_args, dense_shapes, draw_activation_args, materialize


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


ACTIVATIONS = ["leaky_relu", "tanh", "sigmoid"]


@FUZZ
@given(shape=any_shapes(), name=st.sampled_from(ACTIVATIONS), backward=st.booleans(), slope=NONNEG,
       default_slope=st.booleans(), data=st.data())
def test_activations(shape, name, backward, slope, default_slope, data):
    Z, dA, buffers, before = draw_activation_args(data, shape, backward)
    Z_buf, dA_buf = buffers
    blame = Blame()
    slope_value = 0.01
    if name == "leaky_relu" and not default_slope:
        slope_value = blame_number(blame, slope, "negative_slope", low=0.0)
    arrays, dtype = blame_activation_args(blame, Z, dA, backward)
    note(repr(blame))
    function = getattr(ops, f"{name}_{'backward' if backward else 'forward'}")
    args = (Z, dA) if backward else (Z,)
    kwargs = {} if name != "leaky_relu" or default_slope else {"negative_slope": slope}
    out = quiet(call, blame, function, *args, **kwargs)
    assert_unmodified(before, [Z_buf, dA_buf])
    if blame:
        return
    cleaned = [clean(a, dtype) for a in arrays]
    ref = getattr(reference, f"{name}_{'backward' if backward else 'forward'}")
    extra = (slope_value,) if name == "leaky_relu" else ()
    expected = quiet(ref, *cleaned, *extra)
    assert out.dtype == dtype and out.shape == cleaned[0].shape
    scale = max(1.0, slope_value) if name == "leaky_relu" else 1.0
    if backward:
        bound = absolute(cleaned[1]) * scale
    else:
        bound = absolute(cleaned[0]) * scale if name == "leaky_relu" else np.ones(cleaned[0].shape)
    assert_close(out, expected, bound, dtype, 6, f"{name} {'backward' if backward else 'forward'}")
