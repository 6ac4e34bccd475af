"""Property-based fuzzing of the entry points tests/test_fuzz.py does not cover.

LeakyReLU/tanh/sigmoid ops, the MAE/Huber/BCE-with-logits/cross-entropy losses
(ops and Loss objects, with ``sample_weight``), ``sgd_momentum_update`` and
``adam_update``, the Adam/AdamW/SGD(momentum, nesterov, weight_decay)
constructors and ``Sequential.train_step``/``fit`` with those losses and
optimizers. Same oracle, strategies and profiles as test_fuzz.py (imported
from it): a call returns what fastnn.reference returns on the clean input
(within a magnitude-scaled tolerance, no comparison near overflow) or raises
TypeError/ValueError naming the argument, and a rejected call changes nothing.

    python -X faulthandler -m pytest tests/test_fuzz_more.py
    FASTNN_FUZZ_PROFILE=long python -X faulthandler -m pytest tests/test_fuzz_more.py
"""

from __future__ import annotations

import dataclasses
import math
import re
import numbers
import warnings

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import fastnn
from fastnn import ops, reference
from test_fuzz import (F32, F64, FUZZ, GOOD_LRS, LRS, ODDBALLS, SIZES, ArraySpec, Blame, absolute,
                       any_shapes, array_args, array_specs, assert_close, assert_unmodified, call, clean,
                       computing_dtype, describe, in_overflow_zone, inspect_array, loss_pairs, make_model,
                       make_values, materialize, model_specs, optimizer_state, parameters_bytes,
                       gradients_bytes, blame_activation_args, draw_activation_args, blame_nonfinite, blame_learning_rate, snapshot)

# ---------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------

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
#: Learning rates: mostly good (test_fuzz.LRS is a third bad, too many for calls with eight hyperparameters).
MOSTLY_GOOD_LRS = st.integers(0, 5).flatmap(lambda k: LRS if k == 0 else GOOD_LRS)


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


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Elementwise losses and sample_weight
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Cross-entropy: labels
# ---------------------------------------------------------------------------

LABEL_KINDS = ["int64", "int64", "int64", "int64", "float64", "int32", "uint8", "float64", "float32", "list", "column", "bool",
               "nonintegral", "out of range", "negative", "wrong length", "2-D", "oddball", "nan", "strided"]


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


# ---------------------------------------------------------------------------
# In-place optimizer updates
# ---------------------------------------------------------------------------

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


OPT_KINDS = ["momentum", "adam"]


@FUZZ
@given(kind=st.sampled_from(OPT_KINDS), shape=any_shapes(), data=st.data(), lr=MOSTLY_GOOD_LRS, momentum=MOMENTA,
       nesterov=BOOLS, weight_decay=NONNEG, beta1=UNIT, beta2=UNIT, eps=EPS, step=STEPS, decoupled=BOOLS)
def test_optimizer_updates(kind, shape, data, lr, momentum, nesterov, weight_decay, beta1, beta2, eps, step,
                           decoupled):
    """ops.sgd_momentum_update and ops.adam_update: torch's rules on clean copies, in place
    through the caller's views; a rejected or overflowing update changes nothing."""
    pdtype = data.draw(st.sampled_from(["float64", "float32", ">f8", ">f4"]), "param dtype")
    param_arg = data.draw(state_args(shape, pdtype), "param")
    shape = param_arg.shape if param_like(param_arg) else shape
    names = ["momentum_buffer"] if kind == "momentum" else ["exp_avg", "exp_avg_sq"]
    state_specs = {name: data.draw(state_args(shape, pdtype), name) for name in names}
    grad_arg = data.draw(array_args(shape), "grad")
    param, param_buf = materialize(param_arg)
    grad, grad_buf = materialize(grad_arg)
    states = {}
    state_bufs = {}
    for name, spec in state_specs.items():
        states[name], state_bufs[name] = materialize(spec)
    if kind == "adam" and isinstance(states["exp_avg_sq"], np.ndarray) and states["exp_avg_sq"].dtype.kind == "f" \
            and states["exp_avg_sq"].flags.writeable:
        quiet(np.abs, states["exp_avg_sq"], out=states["exp_avg_sq"])   # a second moment is >= 0
    note(f"param: {describe(param)}\ngrad: {describe(grad)}\n"
         + "\n".join(f"{k}: {describe(v)}" for k, v in states.items()))
    all_bufs = [param_buf] + [state_bufs[n] for n in names]
    before_grad = snapshot([grad_buf])
    before = snapshot(all_bufs)

    blame = Blame()
    if kind == "momentum":
        if isinstance(nesterov, (bool, np.bool_)) and nesterov and momentum == 0:
            nesterov = False       # (momentum 0 with nesterov: the constructor test covers it)
        blame_learning_rate(blame, lr)
        m = blame_number(blame, momentum, "momentum", low=0.0, high=1.0, high_open=True)
        blame_bool(blame, nesterov, "nesterov")
        if m == 0 and isinstance(nesterov, (bool, np.bool_)) and nesterov:
            blame.add(ValueError, "nesterov", "momentum")
        wd = blame_number(blame, weight_decay, "weight_decay", low=0.0)
        hyper = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        function = ops.sgd_momentum_update
    else:
        blame_positive_int_(blame, step)
        blame_learning_rate(blame, lr)
        b1 = blame_number(blame, beta1, "beta1", low=0.0, high=1.0, high_open=True)
        b2 = blame_number(blame, beta2, "beta2", low=0.0, high=1.0, high_open=True)
        e = blame_number(blame, eps, "eps", low=0.0, low_open=True)
        wd = blame_number(blame, weight_decay, "weight_decay", low=0.0)
        blame_bool(blame, decoupled, "decoupled")
        hyper = dict(step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                     decoupled=decoupled)
        function = ops.adam_update
    grad_array = in_place_blame(blame, param, grad, states)
    note(repr(blame))
    args = [param, grad] + [states[n] for n in names]
    if blame:
        quiet(call, blame, function, *args, **hyper)
        assert_unmodified(before_grad, [grad_buf])
        assert_unmodified(before, all_bufs)
        return

    dtype = param.dtype.newbyteorder("=")
    p, g = clean(param, dtype), clean(grad_array, dtype)
    cs = {n: clean(states[n], dtype) for n in names}
    if kind == "momentum":
        quiet(reference.sgd_momentum_update, p, g, cs["momentum_buffer"], float(lr), m, bool(nesterov), wd)
        G = absolute(g) + wd * absolute(clean(param, dtype))
        B = m * absolute(cs_before := clean(states["momentum_buffer"], dtype)) + G
        Gn = G + m * B if nesterov else B
        bounds = {"param": absolute(clean(param, dtype)) + float(lr) * Gn, "momentum_buffer": B}
        comparable = True
    else:
        quiet(reference.adam_update, p, g, cs["exp_avg"], cs["exp_avg_sq"], int(step), float(lr), b1, b2, e,
              wd, bool(decoupled))
        p0, m0, v0 = (absolute(clean(a, dtype)) for a in (param, states["exp_avg"], states["exp_avg_sq"]))
        G = absolute(g) + (0 if decoupled else wd * p0)
        M = m0 + G
        V = v0 + G * G
        ratio = quiet(lambda: M / (np.sqrt(absolute(cs["exp_avg_sq"])) / math.sqrt(1 - b2 ** int(step)) + e))
        P = p0 * (1 + float(lr) * wd) + float(lr) / (1 - b1 ** int(step)) * ratio
        bounds = {"param": P, "exp_avg": M, "exp_avg_sq": V}
        # The ratio m / (sqrt(v) + eps) is ill-conditioned where g*g underflows in one
        # precision and not the other: compare values only away from underflow.
        tiny = 1e-15 if dtype == F32 else 1e-150
        comparable = bool(np.all((g == 0) | (np.abs(g) > tiny))) and bool(np.all((v0 == 0) | (v0 > tiny * tiny)))
    results = {"param": p, **cs}
    finite = all(np.all(np.isfinite(v)) for v in results.values())
    near_overflow = any(in_overflow_zone(quiet(lambda: b + 0.0), dtype) for b in bounds.values())
    event("accepted")
    try:
        quiet(function, *args, **hyper)
    except FloatingPointError as error:
        note(f"FloatingPointError: {error}")
        assert (not finite) or near_overflow, "FloatingPointError where the reference is finite and far from overflow"
        assert_unmodified(before, all_bufs)
        assert_unmodified(before_grad, [grad_buf])
        return
    assert_unmodified(before_grad, [grad_buf])
    for name, target in [("param", param)] + [(n, states[n]) for n in names]:
        got = clean(target, dtype)
        assert np.all(np.isfinite(got)), f"{kind}: {name} became non-finite without FloatingPointError"
        self_overlapping = any(stride == 0 and size > 1 for stride, size in zip(target.strides, target.shape))
        if self_overlapping:       # a stride-0 view: its elements are one memory location; no value oracle
            event("self-overlapping buffer: not compared")
        elif comparable and finite and not near_overflow:
            event("compared")
            assert_close(got, results[name], bounds[name] + 1e-300, dtype, 12, f"{kind} update of {name}")


def blame_positive_int_(blame, value, name="step"):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        blame.add(TypeError, name)
    elif int(value) <= 0:
        blame.add(ValueError, name)


# ---------------------------------------------------------------------------
# Optimizer and loss constructors
# ---------------------------------------------------------------------------

BETAS = (st.tuples(GOOD_UNIT, GOOD_UNIT) | st.tuples(UNIT, UNIT)
         | st.sampled_from([None, 0.9, (0.9,), (0.9, 0.99, 0.5), "ab", [0.9, 0.999], np.array([0.5, 0.5])]))


@FUZZ
@given(which=st.sampled_from(["SGD", "Adam", "AdamW", "HuberLoss", "MAELoss", "CrossEntropyLoss",
                              "BCEWithLogitsLoss"]),
       lr=LRS, momentum=UNIT, nesterov=BOOLS, weight_decay=NONNEG | st.none(), betas=BETAS, eps=EPS, delta=DELTAS,
       use=st.sets(st.sampled_from(["lr", "momentum", "nesterov", "weight_decay", "betas", "eps", "delta"])))
def test_constructors(which, lr, momentum, nesterov, weight_decay, betas, eps, delta, use):
    blame = Blame()
    kwargs = {}
    if which == "SGD":
        if "lr" in use:
            kwargs["lr"] = lr
            blame_learning_rate(blame, lr)
        m = 0.0
        if "momentum" in use:
            kwargs["momentum"] = momentum
            m = blame_number(blame, momentum, "momentum", low=0.0, high=1.0, high_open=True)
        if "nesterov" in use:
            kwargs["nesterov"] = nesterov
            blame_bool(blame, nesterov, "nesterov")
            if m == 0 and isinstance(nesterov, (bool, np.bool_)) and nesterov:
                blame.add(ValueError, "nesterov", "momentum")
        if "weight_decay" in use and weight_decay is not None:
            kwargs["weight_decay"] = weight_decay
            blame_number(blame, weight_decay, "weight_decay", low=0.0)
    elif which in ("Adam", "AdamW"):
        if "lr" in use:
            kwargs["lr"] = lr
            blame_learning_rate(blame, lr)
        if "betas" in use:
            kwargs["betas"] = betas
            try:
                b1, b2 = betas
            except (TypeError, ValueError):
                blame.add(TypeError, "betas")
            else:
                blame_number(blame, b1, "betas[0]", low=0.0, high=1.0, high_open=True)
                blame_number(blame, b2, "betas[1]", low=0.0, high=1.0, high_open=True)
                blame.entries |= {(t, "betas") for t, k in blame.entries if k.startswith("betas[")}
        if "eps" in use:
            kwargs["eps"] = eps
            blame_number(blame, eps, "eps", low=0.0, low_open=True)
        if "weight_decay" in use:
            kwargs["weight_decay"] = weight_decay
            if weight_decay is not None:
                blame_number(blame, weight_decay, "weight_decay", low=0.0)
    elif which == "HuberLoss":
        if "delta" in use:
            kwargs["delta"] = delta
            blame_number(blame, delta, "delta", low=0.0, low_open=True)
    note(f"{which}({kwargs}) {blame!r}")
    obj = call(blame, getattr(fastnn, which), **kwargs)
    if blame:
        return
    if which == "SGD":
        assert obj.lr == float(kwargs.get("lr", 0.01)) and obj.momentum == float(kwargs.get("momentum", 0.0))
        assert obj.nesterov == bool(kwargs.get("nesterov", False))
        assert obj.weight_decay == float(kwargs.get("weight_decay", 0.0))
        assert optimizer_state(obj) == optimizer_state(eval(repr(obj), vars(fastnn)))
    elif which in ("Adam", "AdamW"):
        default_wd = 0.01 if which == "AdamW" else 0.0
        wd = kwargs.get("weight_decay")
        assert obj.weight_decay == (default_wd if wd is None else float(wd))
        assert obj.betas == tuple(float(b) for b in kwargs.get("betas", (0.9, 0.999)))
        assert obj.eps == float(kwargs.get("eps", 1e-8))
    elif which == "HuberLoss":
        assert obj.delta == float(kwargs.get("delta", 1.0))


# ---------------------------------------------------------------------------
# Sequential.train_step / fit with the new losses and optimizers
# ---------------------------------------------------------------------------

LOSS_KINDS = ["mae", "huber", "cross_entropy", "bce_with_logits", "mse"]
OPTIMIZER_KINDS = ["SGD", "SGD momentum", "SGD nesterov", "Adam", "AdamW"]


def make_new_loss(kind, delta):
    return {"mae": fastnn.MAELoss, "cross_entropy": fastnn.CrossEntropyLoss, "mse": fastnn.MSELoss,
            "bce_with_logits": fastnn.BCEWithLogitsLoss}[kind]() if kind != "huber" else fastnn.HuberLoss(delta)


def make_new_optimizer(kind, lr, weight_decay):
    if kind == "SGD":
        return fastnn.SGD(lr, weight_decay=weight_decay)
    if kind.startswith("SGD"):
        return fastnn.SGD(lr, momentum=0.9, nesterov=kind.endswith("nesterov"), weight_decay=weight_decay)
    return getattr(fastnn, kind)(lr, weight_decay=weight_decay)


@FUZZ
@given(model_spec=model_specs(), n_samples=st.sampled_from([1, 2, 3, 5]), loss_kind=st.sampled_from(LOSS_KINDS),
       opt_kind=st.sampled_from(OPTIMIZER_KINDS), lr=st.sampled_from([1e-3, 0.01, 0.1]),
       weight_decay=st.sampled_from([0.0, 0.01]), delta=GOOD_DELTAS, label_kind=st.sampled_from(LABEL_KINDS),
       entry=st.sampled_from(["train_step", "fit"]), seed=st.integers(0, 2**16), data=st.data())
def test_sequential_with_losses_and_optimizers(model_spec, n_samples, loss_kind, opt_kind, lr, weight_decay, delta,
                                               label_kind, entry, seed, data):
    """train_step/fit with MAE/Huber/CE/BCE losses, momentum/Adam/AdamW and sample_weight: the
    reference loss on valid input (layout-independent), nothing changed (model nor optimizer) on invalid."""
    model = make_model(model_spec)
    loss = make_new_loss(loss_kind, delta)
    optimizer = make_new_optimizer(opt_kind, lr, weight_decay)
    X_arg = data.draw(array_args((n_samples, model.in_features)), "X")
    if loss_kind == "cross_entropy":
        y_arg, y_buf = make_labels(label_kind, n_samples, model.out_features, seed), None
        y = y_arg
    else:
        y_shape = (n_samples,) if model.out_features == 1 and data.draw(st.booleans(), "1-D y") else (
            n_samples, model.out_features)
        y, y_buf = materialize(data.draw(array_args(y_shape), "y"))
    X, X_buf = materialize(X_arg)
    w, w_buf = make_weight(data.draw(sample_weights(n_samples), "sample_weight"))
    note(f"model: {model!r}\nloss: {loss!r}, optimizer: {optimizer!r}\nX: {describe(X)}\ny: {describe(y)}\n"
         f"sample_weight: {describe(w)}")
    before = snapshot([X_buf, y_buf, w_buf])
    params, grads, state = parameters_bytes(model), gradients_bytes(model), optimizer_state(optimizer)

    blame = Blame()
    if loss_kind == "cross_entropy" and model.out_features < 2:
        blame.add(ValueError, "loss")
    X_array = inspect_array(blame, X, "X", (2,))
    if X_array is not None:
        blame_nonfinite(blame, X_array, "X", model.dtype)
        if X_array.ndim == 2 and X_array.shape[1] != model.in_features:
            blame.add(ValueError, "X")
    n = X_array.shape[0] if X_array is not None and X_array.ndim == 2 else None
    labels = y_array = None
    if not blame:
        if loss_kind == "cross_entropy":
            labels = blame_labels(blame, y, n, model.out_features)
            if blame:
                blame.entries = {(t, "y") for t, _ in blame.entries}
        else:
            y_array = inspect_array(blame, y, "y", (1, 2))
            if y_array is not None:
                blame_nonfinite(blame, y_array, "y", model.dtype)
                fits = (y_array.ndim == 2 and y_array.shape == (n, model.out_features)) or (
                    y_array.ndim == 1 and model.out_features == 1 and y_array.shape == (n,))
                if not fits:
                    blame.add(ValueError, "y")
    weights = None
    if not blame:
        weights = blame_sample_weight(blame, w, n, model.dtype)
    note(repr(blame))
    if entry == "train_step":
        function = lambda: model.train_step(X, y, loss, optimizer, sample_weight=w)  # noqa: E731
    else:
        function = lambda: model.fit(X, y, loss=loss, optimizer=optimizer, sample_weight=w,  # noqa: E731
                                     epochs=1, batch_size=None, shuffle=False)
    if blame:
        quiet(call, blame, function)
        assert_unmodified(before, [X_buf, y_buf, w_buf])
        assert parameters_bytes(model) == params, f"a rejected {entry} changed the parameters"
        assert gradients_bytes(model) == grads, f"a rejected {entry} changed the gradients"
        assert optimizer_state(optimizer) == state, f"a rejected {entry} changed the optimizer's state"
        return
    dtype = model.dtype
    X_c = clean(X_array, dtype)
    y_c = labels if loss_kind == "cross_entropy" else clean(y_array, dtype)
    ref_model = reference.ReferenceMLP.from_model(model)
    ref_loss, _ = quiet(ref_model.gradients, X_c, y_c, loss_kind, weights, loss._param or 1.0)
    out_bound = np.max(quiet(lambda: absolute(ref_model.predict(X_c))), initial=0.0)
    twin, twin_opt = copy_model(model), make_new_optimizer(opt_kind, lr, weight_decay)
    event("accepted")
    try:
        value = quiet(function)
    except FloatingPointError:
        event("diverged")
        assert parameters_bytes(model) == params and optimizer_state(optimizer) == state
        if entry == "train_step":   # fit keeps no copy of the gradients (Sequential.fit says so)
            assert gradients_bytes(model) == grads
        return
    finally:
        assert_unmodified(before, [X_buf, y_buf, w_buf])
    if entry == "fit":
        value = value.loss[0]
    assert isinstance(value, float) and math.isfinite(value)
    assert np.all(np.isfinite(model.get_parameters()))
    assert optimizer_state(optimizer) != state or opt_kind == "SGD", "a stateful optimizer took no step"
    # the layout of X, y and sample_weight changes nothing
    clean_w = None if weights is None else weights
    again = quiet(twin.train_step, X_c, y_c, loss, twin_opt, sample_weight=clean_w) if entry == "train_step" else \
        quiet(twin.fit, X_c, y_c, loss=loss, optimizer=twin_opt, sample_weight=clean_w, epochs=1,
              shuffle=False).loss[0]
    assert value == again, f"{entry}: loss differs from the clean input's"
    assert parameters_bytes(model) == parameters_bytes(twin), f"{entry}: parameters differ from the clean input's"
    ww = np.ones(n) if weights is None else weights.astype(np.float64)
    ymax = 0.0 if loss_kind == "cross_entropy" else float(np.max(absolute(y_c), initial=0.0))
    bound = quiet(lambda: (out_bound + ymax + 1.0) ** 2 + math.log(max(model.out_features, 2)))
    if not math.isfinite(bound) or in_overflow_zone([bound * 2**20], dtype) or ww.sum() < 1e-200:
        event("overflow zone: not compared")
        return
    terms = 64 * (model.n_parameters + n + 8)
    assert_close(value, ref_loss, bound, dtype, terms, f"{entry} loss")


def copy_model(model):
    import copy
    return copy.deepcopy(model)


# ---------------------------------------------------------------------------
# Regressions: bugs found by this file's fuzzing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits"])
def test_regression_subnormal_sample_weight(kind):
    """Positive subnormal weights are valid (finite, non-negative, positive sum); only
    their ratios count, so the result is the unweighted one.

    Found: ops.mae_grad([0.5], [0.25], sample_weight=[1e-310]) returns [inf]
    (reference: [1.0]); the elementwise losses scale by 1 / sum(w), which overflows."""
    yhat, y, w = np.array([0.5, -1.0]), np.array([0.25, 0.5]), np.array([1e-310, 1e-310])
    got = getattr(ops, f"{kind}_grad")(yhat, y, sample_weight=w)
    np.testing.assert_allclose(got, getattr(reference, f"{kind}_grad")(yhat, y, sample_weight=w), rtol=1e-12)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(
        getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w), rel=1e-12)


@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits"])
def test_regression_subnormal_float32_sample_weight(kind):
    """A float32 subnormal weight carries few bits, but only the weights' ratios count:
    the loss of one sample is that sample's loss, in the kernel and in the reference.

    Found (long fuzz profile): ops.mae_loss([0.625], [0], sample_weight=[3.84e-43]) in
    float32 gave 0.625 and reference.mae_loss 0.62409 (it summed w * l in float32)."""
    yhat, y = np.array([0.625], dtype=np.float32), np.array([0.0], dtype=np.float32)
    w = np.array([3.84e-43], dtype=np.float32)
    unweighted = getattr(reference, f"{kind}_loss")(yhat, y)
    assert getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-6)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-6)
    np.testing.assert_allclose(getattr(ops, f"{kind}_grad")(yhat, y, sample_weight=w),
                               getattr(reference, f"{kind}_grad")(yhat, y), rtol=1e-6)


@pytest.mark.parametrize("kind", ["mae", "mse", "huber", "bce_with_logits", "cross_entropy"])
def test_regression_deep_subnormal_float64_sample_weight(kind):
    """A weight of a few ulps of the smallest float64 is still valid, and the loss of
    one sample is that sample's loss: each sample is weighted by its share w_i / sum(w).

    Found (long fuzz profile): ops.mae_loss([[-1, -0.75, -1.875]], [[0, -0.75, -1.875]],
    sample_weight=[1.354e-321]) gave 1/3 and reference.mae_loss 0.33212 (it formed
    w * mean, a subnormal product with 8 significant bits); the kernel's w * sum kept
    the bits here only because the sum was 1."""
    w = np.array([1.354e-321])
    if kind == "cross_entropy":
        yhat, y = np.array([[0.3, -1.2, 0.1]]), np.array([2])
    else:
        yhat, y = np.array([[-1.0, -0.75, -1.875]]), np.array([[0.3, -0.75, -1.0]])
    unweighted = getattr(reference, f"{kind}_loss")(yhat, y)
    assert getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-14)
    assert getattr(ops, f"{kind}_loss")(yhat, y, sample_weight=w) == pytest.approx(unweighted, rel=1e-14)


@pytest.mark.parametrize("opt", ["Adam", "AdamW", "SGD momentum"])
def test_regression_rejected_train_step_does_not_bind_the_optimizer(opt):
    """A train_step refused for its input leaves a fresh optimizer as it was, free to train another model.

    Found: Sequential.train_step binds the optimizer (optimizer._update_for) before
    checking X, so after a rejected call state_dict() holds zero buffers and the
    optimizer refuses the next model with "optimizer is already training another model"."""
    optimizer = fastnn.SGD(0.1, momentum=0.9) if opt == "SGD momentum" else getattr(fastnn, opt)()
    first = fastnn.Sequential([fastnn.Dense(2, 1, seed=0)])
    second = fastnn.Sequential([fastnn.Dense(2, 1, seed=1)])
    state = optimizer_state(optimizer)
    with pytest.raises(ValueError, match=r"\bX\b"):
        first.train_step(np.array([[math.nan, 1.0]]), np.array([1.0]), fastnn.MSELoss(), optimizer)
    assert optimizer_state(optimizer) == state, "a rejected train_step changed the optimizer's state"
    second.train_step(np.ones((1, 2)), np.array([1.0]), fastnn.MSELoss(), optimizer)


@pytest.mark.parametrize("function", ["bce_with_logits_loss", "bce_with_logits_grad"])
def test_regression_bce_with_logits_messages_name_logits(function):
    """ops.bce_with_logits_loss(logits, y): an invalid first argument is refused by its name, logits.

    Found: TypeError("yhat must be an array of numbers, got None") (and likewise
    for NaN logits): _elementwise_loss checks it under the name yhat."""
    with pytest.raises(TypeError, match=r"\blogits\b"):
        getattr(ops, function)(None, np.zeros(2))
    with pytest.raises(ValueError, match=r"\blogits\b"):
        getattr(ops, function)(np.array([math.nan, 0.0]), np.zeros(2))


def test_regression_bce_train_step_with_target_outside_unit_interval():
    """A BCEWithLogitsLoss step whose target lies outside [0, 1] returns the (negative) loss
    the reference gives, or refuses y by name; it does not crash.

    Found: KeyError(-0.395...) from Sequential._divergence_message: the compiled
    step's negative loss is taken for an error code (value < 0)."""
    model = fastnn.Sequential([fastnn.Dense(1, 2, seed=0)])
    X, y = np.array([[1.0]]), np.array([[0.0, -1.0]])
    expected, _ = reference.ReferenceMLP.from_model(model).gradients(X, y, "bce_with_logits")
    try:
        value = model.train_step(X, y, fastnn.BCEWithLogitsLoss(), fastnn.SGD(0.001))
    except ValueError as error:
        assert re.search(r"\by\b", str(error))
    else:
        assert value == pytest.approx(expected, rel=1e-12)
