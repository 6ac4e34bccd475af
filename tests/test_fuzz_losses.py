"""Fuzzing the losses: ``ops.*_loss``/``*_grad`` and the Loss objects (MSE, MAE,
Huber, BCE with logits, cross-entropy on integer labels), with ``sample_weight``.

A loss returns the reference's value on the clean input (within a
magnitude-scaled tolerance) or refuses an argument by name; weights are
finite, non-negative, with a positive sum, and only their ratios count (so
subnormal weights give the unweighted result). Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, note
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
    blame_labels,
    blame_nonfinite,
    blame_number,
    blame_sample_weight,
    call,
    clean,
    computing_dtype,
    in_overflow_zone,
    inspect_array,
    quiet,
    snapshot,
)
from fuzzing.profiles import FUZZ
from fuzzing.strategies import (
    DELTAS,
    LABEL_KINDS,
    SIZES,
    array_args,
    loss_pairs,
    make_labels,
    make_weight,
    materialize,
    sample_weights,
)


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


ELEMENTWISE = ["mae", "huber", "bce_with_logits", "mse"]


@FUZZ
@given(shapes=loss_pairs(), kind=st.sampled_from(ELEMENTWISE), gradient=st.booleans(),
       through_loss=st.booleans(), delta=DELTAS, data=st.data())
def test_elementwise_losses(shapes, kind, gradient, through_loss, delta, data):
    """ops.{mae,huber,bce_with_logits,mse}_{loss,grad} and the Loss objects, with sample_weight."""
    yhat_arg = data.draw(array_args(shapes[0]), "yhat")
    y_arg = data.draw(array_args(shapes[1]), "y")
    w_arg = data.draw(sample_weights(shapes[0][0]), "sample_weight")
    (yhat, yhat_buf), (y, y_buf), (w, w_buf) = materialize(yhat_arg), materialize(y_arg), make_weight(w_arg)
    note(f"yhat: {describe(yhat)}\ny: {describe(y)}\nsample_weight: {describe(w)}")
    before = snapshot([yhat_buf, y_buf, w_buf])
    yname = "logits" if kind == "bce_with_logits" and not through_loss else "yhat"
    blame = Blame()
    delta_value = 1.0
    if kind == "huber":
        delta_value = blame_number(blame, delta, "delta", low=0.0, low_open=True)
    if through_loss:
        loss_class = {"mae": fastnn.MAELoss, "huber": fastnn.HuberLoss, "mse": fastnn.MSELoss,
                      "bce_with_logits": fastnn.BCEWithLogitsLoss}[kind]
        loss_object = call(blame if kind == "huber" else Blame(), loss_class, *((delta,) if kind == "huber" else ()))
        if loss_object is None:
            return
        function = loss_object.grad if gradient else loss_object
        args = (yhat, y)
    else:
        function = getattr(ops, f"{kind}_{'grad' if gradient else 'loss'}")
        args = (yhat, y, delta) if kind == "huber" else (yhat, y)
    arrays = [inspect_array(blame, yhat, yname, (1, 2)), inspect_array(blame, y, "y", (1, 2))]
    weights = None
    if all(a is not None for a in arrays):
        dtype = computing_dtype(*arrays)
        blame_nonfinite(blame, arrays[0], yname, dtype)
        blame_nonfinite(blame, arrays[1], "y", dtype)
        yhat_a, y_a = arrays
        paired = (y_a.shape == yhat_a.shape
                  or (y_a.ndim == 1 and yhat_a.ndim == 2 and yhat_a.shape == (y_a.shape[0], 1)))
        if yhat_a.ndim in (1, 2) and y_a.ndim in (1, 2) and not paired:
            blame.add(ValueError, "y", yname)
        if not blame and yhat_a.ndim in (1, 2):
            weights = blame_sample_weight(blame, w, yhat_a.shape[0], dtype)
            if weights is not None and not blame:
                event(f"weighted: {w_arg if isinstance(w_arg, str) else 'array'}")
    note(repr(blame))
    out = quiet(call, blame, function, *args, sample_weight=w)
    assert_unmodified(before, [yhat_buf, y_buf, w_buf])
    if blame:
        return
    yhat_c, y_c = (clean(a, dtype) for a in arrays)
    n = yhat_c.shape[0]
    y_p = y_c.reshape(yhat_c.shape)
    A = absolute(yhat_c) + absolute(y_p)
    if kind == "mae":
        elem, gelem = A, np.ones_like(A)
    elif kind == "mse":
        elem, gelem = A * A, 2 * A
    elif kind == "huber":
        elem, gelem = A * np.minimum(A, delta_value) + delta_value * delta_value, np.minimum(A, delta_value)
    else:
        elem, gelem = absolute(yhat_c) * (1 + absolute(y_p)) + 1.0, 1.0 + absolute(y_p)
    per = elem.reshape(n, -1)
    ww = np.ones(n) if weights is None else weights.astype(np.float64)
    wsum = ww.sum()
    if not np.isfinite(wsum) or in_overflow_zone(ww, dtype) or in_overflow_zone([wsum], dtype):
        event("weights near overflow: no comparison")
        return
    extra = (delta_value,) if kind == "huber" else ()
    ref = getattr(reference, f"{kind}_{'grad' if gradient else 'loss'}")
    expected = quiet(ref, yhat_c, y_c, *extra, sample_weight=weights)
    if gradient:
        scale = (ww / (per.shape[1] * wsum)).reshape((n,) + (1,) * (yhat_c.ndim - 1))
        assert out.dtype == dtype and out.shape == yhat_c.shape
        assert_close(out, expected, quiet(lambda: gelem * scale + 1e-300), dtype, 8, f"{kind}_grad")
    else:
        assert isinstance(out, float)
        bound = quiet(lambda: np.sum(ww * per.mean(axis=1)) / wsum + 1e-300)
        assert_close(out, expected, bound, dtype, yhat_c.size + 8, f"{kind}_loss")


@FUZZ
@given(n=SIZES, c=SIZES, label_kind=st.sampled_from(LABEL_KINDS), seed=st.integers(0, 2**16),
       gradient=st.booleans(), through_loss=st.booleans(), data=st.data())
def test_cross_entropy(n, c, label_kind, seed, gradient, through_loss, data):
    logits_arg = data.draw(array_args((n, c)), "logits")
    w_arg = data.draw(sample_weights(n), "sample_weight")
    (logits, l_buf), (w, w_buf) = materialize(logits_arg), make_weight(w_arg)
    labels = make_labels(label_kind, n, c, seed)
    note(f"logits: {describe(logits)}\nlabels: {describe(labels)}\nsample_weight: {describe(w)}")
    before = snapshot([l_buf, w_buf, labels if isinstance(labels, np.ndarray) else None])
    lname = "yhat" if through_loss else "logits"
    blame = Blame()
    array = inspect_array(blame, logits, lname, (2,))
    labels_c = weights = None
    if array is not None:
        dtype = computing_dtype(array)
        blame_nonfinite(blame, array, lname, dtype)
        if not blame:
            labels_c = blame_labels(blame, labels, array.shape[0], array.shape[1])
        if not blame:
            weights = blame_sample_weight(blame, w, array.shape[0], dtype)
    if through_loss:
        # the Loss object forwards to ops, whose messages name logits/labels
        blame.entries |= {(t, {"yhat": "logits"}.get(k, k)) for t, k in blame.entries}
        loss = fastnn.CrossEntropyLoss()
        function = loss.grad if gradient else loss
    else:
        function = ops.cross_entropy_grad if gradient else ops.cross_entropy_loss
    note(repr(blame))
    out = quiet(call, blame, function, logits, labels, sample_weight=w)
    assert_unmodified(before, [l_buf, w_buf, labels if isinstance(labels, np.ndarray) else None])
    if blame:
        return
    z = clean(array, dtype)
    ww = np.ones(z.shape[0]) if weights is None else weights.astype(np.float64)
    wsum = ww.sum()
    if not np.isfinite(wsum) or in_overflow_zone([wsum], dtype):
        return
    zmax = absolute(z).max(axis=1)
    if gradient:
        expected = quiet(reference.cross_entropy_grad, z, labels_c, weights)
        bound = np.broadcast_to((2 * ww / wsum)[:, None], z.shape) + 1e-300
        assert out.dtype == dtype and out.shape == z.shape
        assert_close(out, expected, bound, dtype, z.shape[1] + 8, "cross_entropy_grad")
    else:
        expected = quiet(reference.cross_entropy_loss, z, labels_c, weights)
        bound = quiet(lambda: np.sum(ww * (4 * zmax + math.log(z.shape[1]) + 1)) / wsum)
        assert isinstance(out, float)
        assert_close(out, expected, bound, dtype, z.shape[1] + z.shape[0] + 8, "cross_entropy_loss")


@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits"])
def test_subnormal_sample_weight(kind):
    """Positive subnormal weights are valid (finite, non-negative, positive sum); only
    their ratios count, so the result is the unweighted one."""
    yhat, y, w = np.array([0.5, -1.0]), np.array([0.25, 0.5]), np.array([1e-310, 1e-310])
    got = getattr(ops, f"{kind}_grad")(yhat, y, sample_weight=w)
    np.testing.assert_allclose(got, getattr(reference, f"{kind}_grad")(yhat, y, sample_weight=w), rtol=1e-12)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(
        getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w), rel=1e-12)


@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits"])
def test_subnormal_float32_sample_weight(kind):
    """A float32 subnormal weight carries few bits, but only the weights' ratios count:
    the loss of one sample is that sample's loss, in the kernel and in the reference."""
    yhat, y = np.array([0.625], dtype=np.float32), np.array([0.0], dtype=np.float32)
    w = np.array([3.84e-43], dtype=np.float32)
    unweighted = getattr(reference, f"{kind}_loss")(yhat, y)
    assert getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-6)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-6)
    np.testing.assert_allclose(getattr(ops, f"{kind}_grad")(yhat, y, sample_weight=w),
                               getattr(reference, f"{kind}_grad")(yhat, y), rtol=1e-6)


@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits", "cross_entropy"])
def test_deep_subnormal_float64_sample_weight(kind):
    """A weight of a few ulps of the smallest float64 is still valid, and the loss of
    one sample is that sample's loss: each sample is weighted by its share w_i / sum(w)."""
    w = np.array([1.354e-321])
    if kind == "cross_entropy":
        yhat, y = np.array([[0.3, -1.2, 0.1]]), np.array([2])
    else:
        yhat, y = np.array([[-1.0, -0.75, -1.875]]), np.array([[0.3, -0.75, -1.0]])
    unweighted = getattr(reference, f"{kind}_loss")(yhat, y)
    assert getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-14)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-14)


@pytest.mark.parametrize("function", ["bce_with_logits_loss", "bce_with_logits_grad"])
def test_bce_with_logits_messages_name_logits(function):
    """ops.bce_with_logits_loss(logits, y): an invalid first argument is refused by its name, logits."""
    with pytest.raises(TypeError, match=r"\blogits\b"):
        getattr(ops, function)(None, np.zeros(2))
    with pytest.raises(ValueError, match=r"\blogits\b"):
        getattr(ops, function)(np.array([math.nan, 0.0]), np.zeros(2))
