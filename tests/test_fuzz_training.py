"""Fuzzing training: ``Sequential.train_step`` and ``fit``, with every loss and optimizer.

A step or an epoch on valid input gives the loss and parameters of
:class:`fastnn.reference.ReferenceMLP` trained the same way (the same
batches in the same order, within magnitude-scaled tolerances), and exactly
what training on the clean input gives; invalid input is refused by name. A
call that raises (refused input, or FloatingPointError where training
diverges) leaves the parameters, the gradients (for train_step) and the
optimizer's state as they were. Profiles: ``fuzzing.profiles``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import fastnn
from fastnn import reference

from fuzzing.arrays import describe, make_values
from fuzzing.models import (
    BATCH_SIZES,
    FIT_OPTIONS,
    LOSS_ARGS,
    LOSS_KINDS,
    OPTIMIZER_ARGS,
    OPTIMIZER_KINDS,
    assert_parameters_close,
    blame_fit,
    blame_set_parameters,
    blame_setter,
    blame_train_step,
    fit_kwargs,
    fit_options,
    flat,
    gradients_bytes,
    loss_of_kind,
    make_loss,
    make_model,
    make_optimizer,
    model_args,
    model_specs,
    optimizer_of_kind,
    optimizer_state,
    parameters_bytes,
    reference_fit,
    reference_layers,
    reference_step,
)
from fuzzing.oracle import (
    Blame,
    absolute,
    assert_close,
    assert_identical,
    assert_unmodified,
    blame_labels,
    blame_learning_rate,
    blame_nonfinite,
    blame_of,
    blame_sample_weight,
    blame_sgd_update,
    call,
    clean,
    computing_dtype,
    in_overflow_zone,
    inspect_array,
    quiet,
    snapshot,
)
from fuzzing.profiles import FUZZ
from fuzzing.valid import assert_mostly_compared, compared, valid_only
from fuzzing.strategies import (
    BAD_LRS,
    GOOD_DELTAS,
    LABEL_KIND_ARGS,
    SIZES,
    array_args,
    bad_array_args,
    make_labels,
    make_weight,
    materialize,
    sample_weights,
    seed_value,
)


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
    compared("sensitive: loss compared" if expected.sensitive else "loss, gradients and parameters compared")
    if not expected.sensitive:
        gradients = np.concatenate([part for layer in model.layers if isinstance(layer, fastnn.Dense)
                                    for part in (layer.dW.ravel(), layer.db)])
        assert_close(gradients, expected.gradients, expected.gradient_bound, dtype, expected.terms,
                     "train_step gradients")
        assert_parameters_close(model, flat(expected.layers), p0, lr * expected.gradient_bound, dtype,
                                expected.terms, "train_step parameters")


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
    compared("sensitive: losses compared" if expected.sensitive else "losses and parameters compared")
    if not expected.sensitive:
        assert_parameters_close(model, flat(expected.layers), p0, expected.update_bound, dtype,
                                expected.terms, "fit parameters")


def test_sequential_train_step_on_valid_input_compares_values():
    """test_sequential_train_step with valid input only: most examples compare loss, gradients
    and parameters with the reference (the test itself mostly draws refusals)."""
    assert_mostly_compared(test_sequential_train_step)


def test_sequential_fit_on_valid_input_compares_values():
    """test_sequential_fit with valid input only (and a seeded order): most examples compare
    losses and parameters with the reference."""
    assert_mostly_compared(test_sequential_fit)


def test_diverged_train_step_keeps_the_gradients():
    """A train_step whose update would overflow raises FloatingPointError and
    leaves the gradients (not only the parameters) as they were."""
    model = fastnn.Sequential([fastnn.ReLU(), fastnn.Dense(1, 1, seed=0)])
    params, grads = parameters_bytes(model), gradients_bytes(model)
    with pytest.raises(FloatingPointError):
        model.train_step(np.array([[6.4042265e150]]), np.array([[0.33043708]]), fastnn.MSELoss(), fastnn.SGD(1e100))
    assert parameters_bytes(model) == params
    assert gradients_bytes(model) == grads, "the refused step's gradients were kept"


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
    params, state = parameters_bytes(model), optimizer_state(model, optimizer)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(X, y, optimizer=optimizer, epochs=1)
    assert parameters_bytes(model) == params
    assert optimizer_state(model, optimizer) == state
    dense = model.layers[1]
    assert np.all(np.isfinite(expected[1][0])) and np.any(expected[1][0] != 0)
    np.testing.assert_allclose(dense.dW, expected[1][0], rtol=1e-12)
    np.testing.assert_allclose(dense.db, expected[1][1], rtol=1e-12)


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
            Blame.check(blame_of(ValueError, "X"), error)
            assert parameters_bytes(model) == params and gradients_bytes(model) == grads


@pytest.mark.parametrize("entry", ["train_step", "fit"])
@pytest.mark.parametrize("make_optimizer", [lambda: fastnn.Adam(1e-3), lambda: fastnn.SGD(1e-3, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_a_step_that_diverges_leaves_the_optimizer_state_as_it_was(entry, make_optimizer):
    """A step that diverges applies no update: before any good step the model keeps no
    state for the optimizer (step 0), after one it keeps that step's state. Each model
    keeps its own state for an optimizer, so the optimizer trains other models meanwhile."""
    model, optimizer = fastnn.Sequential([fastnn.Dense(1, 1, seed=0)]), make_optimizer()
    X, y = np.array([[1e300]]), np.array([[0.0]])
    with pytest.raises(FloatingPointError, match="the loss is not finite"):
        if entry == "fit":
            model.fit(X, y, optimizer=optimizer, epochs=3)
        else:
            model.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert model.optimizer_state(optimizer) == {"step": 0}
    other = fastnn.Sequential([fastnn.Dense(1, 1, seed=1)])
    assert np.isfinite(other.train_step(np.ones((2, 1)), np.zeros((2, 1)), fastnn.MSELoss(), optimizer))
    assert other.optimizer_state(optimizer)["step"] == 1
    assert model.optimizer_state(optimizer) == {"step": 0}
    state = optimizer_state(other, optimizer)
    with pytest.raises(FloatingPointError):
        other.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert optimizer_state(other, optimizer) == state
    assert np.isfinite(model.train_step(np.ones((2, 1)), np.zeros((2, 1)), fastnn.MSELoss(), optimizer))
    assert model.optimizer_state(optimizer)["step"] == 1
    assert optimizer_state(other, optimizer) == state


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
    if kind in ("train_step", "fit") and data.draw(st.booleans(), "momentum"):
        optimizer = fastnn.SGD(0.05, momentum=0.9)
        try:
            model.train_step(good_X, good_y, fastnn.MSELoss(), optimizer)    # the optimizer now has state
        except FloatingPointError:
            pass
    params, grads, state = parameters_bytes(model), gradients_bytes(model), optimizer_state(model, optimizer)

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
    assert optimizer_state(model, optimizer) == state, f"a rejected {kind} changed the optimizer's state"


@pytest.mark.parametrize("opt", ["Adam", "AdamW", "SGD momentum"])
def test_rejected_train_step_leaves_no_optimizer_state(opt):
    """A train_step refused for its input keeps no state for the optimizer (step 0, no
    buffers), and the next model the optimizer trains starts from a fresh state."""
    optimizer = fastnn.SGD(0.1, momentum=0.9) if opt == "SGD momentum" else getattr(fastnn, opt)()
    first = fastnn.Sequential([fastnn.Dense(2, 1, seed=0)])
    second = fastnn.Sequential([fastnn.Dense(2, 1, seed=1)])
    state = optimizer_state(first, optimizer)
    with pytest.raises(ValueError, match=r"\bX\b"):
        first.train_step(np.array([[math.nan, 1.0]]), np.array([1.0]), fastnn.MSELoss(), optimizer)
    assert optimizer_state(first, optimizer) == state, "a rejected train_step changed the optimizer's state"
    assert first.optimizer_state(optimizer) == {"step": 0}
    second.train_step(np.ones((1, 2)), np.array([1.0]), fastnn.MSELoss(), optimizer)
    assert second.optimizer_state(optimizer)["step"] == 1


@FUZZ
@given(model_spec=model_specs(), n_samples=st.sampled_from([1, 2, 3, 5]), loss_kind=st.sampled_from(LOSS_KINDS),
       opt_kind=st.sampled_from(OPTIMIZER_KINDS), lr=st.sampled_from([1e-3, 0.01, 0.1]),
       weight_decay=st.sampled_from([0.0, 0.01]), delta=GOOD_DELTAS, label_kind=LABEL_KIND_ARGS,
       entry=st.sampled_from(["train_step", "fit"]), seed=st.integers(0, 2**16), data=st.data())
def test_sequential_with_losses_and_optimizers(model_spec, n_samples, loss_kind, opt_kind, lr, weight_decay, delta,
                                               label_kind, entry, seed, data):
    """train_step/fit with MAE/Huber/CE/BCE losses, momentum/Adam/AdamW and sample_weight: the
    reference loss on valid input (layout-independent), nothing changed (model nor optimizer) on invalid."""
    model = make_model(model_spec)
    if valid_only() and loss_kind == "cross_entropy" and model.out_features < 2:
        loss_kind = "mse"               # cross-entropy needs two classes
    loss = loss_of_kind(loss_kind, delta)
    optimizer = optimizer_of_kind(opt_kind, lr, weight_decay)
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
    params, grads, state = parameters_bytes(model), gradients_bytes(model), optimizer_state(model, optimizer)

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
        assert optimizer_state(model, optimizer) == state, f"a rejected {entry} changed the optimizer's state"
        return
    dtype = model.dtype
    X_c = clean(X_array, dtype)
    y_c = labels if loss_kind == "cross_entropy" else clean(y_array, dtype)
    ref_model = reference.ReferenceMLP.from_model(model)
    ref_loss, _ = quiet(ref_model.gradients, X_c, y_c, loss_kind, weights, loss.param or 1.0)
    out_bound = np.max(quiet(lambda: absolute(ref_model.predict(X_c))), initial=0.0)
    twin, twin_opt = copy.deepcopy(model), optimizer_of_kind(opt_kind, lr, weight_decay)
    event("accepted")
    try:
        value = quiet(function)
    except FloatingPointError:
        event("diverged")
        assert parameters_bytes(model) == params and optimizer_state(model, optimizer) == state
        if entry == "train_step":   # fit keeps no copy of the gradients (Sequential.fit says so)
            assert gradients_bytes(model) == grads
        return
    finally:
        assert_unmodified(before, [X_buf, y_buf, w_buf])
    if entry == "fit":
        value = value.loss[0]
    ww = np.ones(n) if weights is None else weights.astype(np.float64)
    ymax = 0.0 if loss_kind == "cross_entropy" else float(np.max(absolute(y_c), initial=0.0))
    bound = quiet(lambda: (out_bound + ymax + 1.0) ** 2 + math.log(max(model.out_features, 2)))
    # A step's loss is finite (or the step raises), and so is fit's epoch loss: the weighted
    # mean of finite batch losses, even where a loss times the weights' sum overflows.
    assert isinstance(value, float) and math.isfinite(value), f"{entry} returned the loss {value}"
    assert np.all(np.isfinite(model.get_parameters()))
    assert optimizer_state(model, optimizer) != state or opt_kind == "SGD", "a stateful optimizer took no step"
    # the layout of X, y and sample_weight changes nothing
    clean_w = None if weights is None else weights
    again = quiet(twin.train_step, X_c, y_c, loss, twin_opt, sample_weight=clean_w) if entry == "train_step" else \
        quiet(twin.fit, X_c, y_c, loss=loss, optimizer=twin_opt, sample_weight=clean_w, epochs=1,
              shuffle=False).loss[0]
    assert value == again, f"{entry}: loss differs from the clean input's"
    assert parameters_bytes(model) == parameters_bytes(twin), f"{entry}: parameters differ from the clean input's"
    if not math.isfinite(bound) or in_overflow_zone([bound * 2**20], dtype) or ww.sum() < 1e-200:
        event("overflow zone: not compared")
        return
    terms = 64 * (model.n_parameters + n + 8)
    compared()
    assert_close(value, ref_loss, bound, dtype, terms, f"{entry} loss")


def test_sequential_with_losses_and_optimizers_on_valid_input_compares_values():
    """test_sequential_with_losses_and_optimizers with valid input only: most examples compare the loss with the reference."""
    assert_mostly_compared(test_sequential_with_losses_and_optimizers)


def test_bce_train_step_with_target_outside_unit_interval():
    """A BCEWithLogitsLoss step whose target lies outside [0, 1] returns the (negative) loss
    the reference gives, or refuses y by name; it does not crash."""
    model = fastnn.Sequential([fastnn.Dense(1, 2, seed=0)])
    X, y = np.array([[1.0]]), np.array([[0.0, -1.0]])
    expected, _ = reference.ReferenceMLP.from_model(model).gradients(X, y, "bce_with_logits")
    try:
        value = model.train_step(X, y, fastnn.BCEWithLogitsLoss(), fastnn.SGD(0.001))
    except ValueError as error:
        assert re.search(r"\by\b", str(error))
    else:
        assert value == pytest.approx(expected, rel=1e-12)


#: How far ReferenceMLP's training may stray from Sequential's: the two sum in
#: different orders (BLAS, tiles, feature-major loops), and a few steps compound it.
TRAINING_TOLERANCE = {"float64": dict(rtol=1e-8, atol=1e-10), "float32": dict(rtol=2e-3, atol=1e-4)}


@FUZZ
@given(model_spec=model_specs(), n_samples=st.sampled_from([1, 2, 5, 9]), loss_kind=st.sampled_from(LOSS_KINDS),
       opt_kind=st.sampled_from(OPTIMIZER_KINDS), weight_decay=st.sampled_from([0.0, 0.01]), weighted=st.booleans(),
       batch_size=st.sampled_from([None, 1, 2, 4]), shuffle=st.booleans(), seed=st.integers(0, 2**16))
def test_reference_trains_as_sequential(model_spec, n_samples, loss_kind, opt_kind, weight_decay, weighted,
                                        batch_size, shuffle, seed):
    """ReferenceMLP.train_step and fit_epoch, given fastnn's loss and optimizer descriptions, train as
    Sequential.train_step and fit do: the same losses, parameters and optimizer state (step count and
    buffers), on values where both stay far from overflow."""
    model = make_model(dataclasses.replace(model_spec, params=None))
    if loss_kind == "cross_entropy" and model.out_features < 2:
        loss_kind = "mse"
    loss, optimizer = loss_of_kind(loss_kind, 0.5), optimizer_of_kind(opt_kind, 0.01, weight_decay)
    dtype = model.dtype.name
    # Values from a continuous distribution: no gradient is 0 by cancellation, where one
    # rounding would flip the sign of an Adam step or of MAE's gradient.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, model.in_features)).astype(dtype)
    if loss_kind == "cross_entropy":
        y = make_labels("int64", n_samples, model.out_features, seed)
    else:
        y = rng.normal(size=(n_samples, model.out_features)).astype(dtype)
    w = rng.uniform(0.25, 2.0, size=n_samples) if weighted else None
    note(f"model: {model!r}\nloss: {loss!r}, optimizer: {optimizer!r}\nX: {X}\ny: {y}\nsample_weight: {w}")
    ref = reference.ReferenceMLP.from_model(model)
    tol = TRAINING_TOLERANCE[dtype]
    try:
        value = model.train_step(X, y, loss, optimizer, sample_weight=w)
        history = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=2, batch_size=batch_size, shuffle=shuffle,
                            seed=seed, sample_weight=w)
    except FloatingPointError:          # not with these values and lr=0.01
        raise AssertionError("training diverged on values of unit scale") from None
    np.testing.assert_allclose(value, ref.train_step(X, y, optimizer, loss, w), **tol, err_msg="train_step loss")
    rng = np.random.default_rng(seed)
    batch = n_samples if batch_size is None else min(batch_size, n_samples)
    expected = [ref.fit_epoch(X, y, optimizer, batch, rng.permutation(n_samples) if shuffle else None, loss, w)
                for _ in range(2)]
    np.testing.assert_allclose(history.loss, expected, **tol, err_msg="fit losses")
    np.testing.assert_allclose(model.get_parameters(), ref.get_parameters(), **tol, err_msg="parameters")
    state, expected_state = model.optimizer_state(optimizer), ref.optimizer_state(optimizer)
    assert sorted(state) == sorted(expected_state) == sorted(("step",) + optimizer.state_names)
    assert state["step"] == expected_state["step"]
    for name in optimizer.state_names:
        np.testing.assert_allclose(state[name], expected_state[name], **tol, err_msg=name)
