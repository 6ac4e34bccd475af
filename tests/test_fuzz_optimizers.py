"""Fuzzing the optimizer updates and the constructors of the descriptions.

``ops.sgd_update``, ``SGD.update``, ``ops.sgd_momentum_update`` and
``ops.adam_update`` update in place through the caller's view (any layout,
even overlapping its gradient) exactly as NumPy's expression of the rule on
clean copies, refuse bad input by name, and change nothing when refused or
when an update would overflow. The constructors of SGD, Adam, AdamW and the
losses accept their valid hyperparameters and refuse the others by name.
Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import fastnn
from fastnn import ops, reference

from fuzzing.arrays import F32, ArraySpec, describe, make_values
from fuzzing.models import description
from fuzzing.oracle import (
    Blame,
    absolute,
    assert_close,
    assert_unmodified,
    blame_bool,
    blame_learning_rate,
    blame_number,
    blame_positive_int,
    blame_sgd_update,
    call,
    clean,
    in_overflow_zone,
    in_place_blame,
    quiet,
    snapshot,
)
from fuzzing.profiles import FUZZ
from fuzzing.strategies import (
    BETAS,
    BOOLS,
    DELTAS,
    EPS,
    GOOD_LRS,
    LRS,
    MOMENTA,
    MOSTLY_GOOD_LRS,
    NONNEG,
    STEPS,
    UNIT,
    any_shapes,
    array_args,
    materialize,
    param_like,
    sgd_params,
    state_args,
)


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


def test_sgd_update_with_grad_overlapping_param():
    """``param -= lr * grad`` (numpy, and fastnn.reference) reads grad as it was before the call."""
    buffer = np.arange(1.0, 7.0)
    ops.sgd_update(buffer[1:5], buffer[0:4], 1.0)
    np.testing.assert_array_equal(buffer, [1.0, 1.0, 1.0, 1.0, 1.0, 6.0])


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
        blame_positive_int(blame, step, "step")
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
        B = m * absolute(clean(states["momentum_buffer"], dtype)) + G
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


@FUZZ
@given(lr=LRS, initial=GOOD_LRS)
def test_sgd_constructor_and_lr_setter(lr, initial):
    blame = Blame()
    blame_learning_rate(blame, lr)
    optimizer = call(blame, fastnn.SGD, lr)
    if not blame:
        assert optimizer.lr == float(lr) and type(optimizer.lr) is float
    existing = fastnn.SGD(initial)
    before = description(existing)
    call(blame, setattr, existing, "lr", lr)
    if blame:
        assert description(existing) == before, "a rejected lr changed the optimizer"
    else:
        assert existing.lr == float(lr)
        clone = copy.deepcopy(existing)
        assert clone.lr == existing.lr


@pytest.mark.parametrize("lr", [10**400, -(10**400)], ids=["10**400", "-10**400"])
@pytest.mark.parametrize("entry", ["SGD()", "SGD.lr =", "ops.sgd_update"])
def test_learning_rate_beyond_float_range(entry, lr):
    """An integer learning rate too large for a float is refused by name."""
    with pytest.raises((TypeError, ValueError), match=r"\blr\b"):
        if entry == "SGD()":
            fastnn.SGD(lr)
        elif entry == "SGD.lr =":
            fastnn.SGD(0.1).lr = lr
        else:
            ops.sgd_update(np.ones(2), np.ones(2), lr)


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
        assert description(obj) == description(eval(repr(obj), vars(fastnn)))
    elif which in ("Adam", "AdamW"):
        default_wd = 0.01 if which == "AdamW" else 0.0
        wd = kwargs.get("weight_decay")
        assert obj.weight_decay == (default_wd if wd is None else float(wd))
        assert obj.betas == tuple(float(b) for b in kwargs.get("betas", (0.9, 0.999)))
        assert obj.eps == float(kwargs.get("eps", 1e-8))
    elif which == "HuberLoss":
        assert obj.delta == float(kwargs.get("delta", 1.0))
