"""Models for the fuzz tests: drawn architectures, their arguments, and the reference training.

``reference_step`` and ``reference_fit`` train with
:class:`fastnn.reference.ReferenceMLP` (the one NumPy training loop) and
add what the oracle needs besides its values: bounds on the magnitudes of
every result (``tolerance_bound`` turns them into tolerances), whether a
ReLU input lies within rounding of 0 (then the masks may differ and only
the loss is compared), and whether a magnitude comes near overflow.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings

import numpy as np
from hypothesis import strategies as st

import fastnn
from fastnn import reference

from fuzzing.arrays import REGIMES, ArraySpec
from fuzzing.oracle import (
    Blame,
    absolute,
    assert_close,
    blame_nonfinite,
    blame_positive_int,
    clean,
    computing_dtype,
    in_overflow_zone,
    inspect_array,
    tolerance_bound,
)
from fuzzing.strategies import SIZES, array_args, seed_value

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


def description(optimizer) -> str:
    """What an optimizer is: its kind, learning rate and hyperparameters (and its repr)."""
    return repr((optimizer.kind, optimizer.lr, sorted(optimizer.hyperparameters.items()), repr(optimizer)))


def optimizer_state(model, optimizer) -> str:
    """What a rejected call must not change of an optimizer's training of ``model``: the
    optimizer's description and the state the model keeps for it
    (``model.optimizer_state``: step count and buffers, byte for byte)."""
    parts = [description(optimizer)]
    for key, value in sorted(model.optimizer_state(optimizer).items()):
        parts.append(f"{key}={np.asarray(value).tobytes().hex()}")
    return "\n".join(parts)


def reference_layers(model) -> list:
    return [("dense", np.array(layer.W), np.array(layer.b)) if isinstance(layer, fastnn.Dense) else ("relu",)
            for layer in model.layers]


def flat(layers) -> np.ndarray:
    """Parameters of reference layers, laid out as Sequential.get_parameters()."""
    parts = [part for layer in layers if layer[0] == "dense" for part in (layer[1].ravel(), layer[2])]
    return np.concatenate(parts)


@dataclasses.dataclass
class StepBounds:
    """Bounds on the magnitudes in one MSE training step, for the tolerances of the comparison."""

    loss_bound: float
    gradient_bound: np.ndarray   # flat, laid out as the parameters
    terms: int                   # operations per result
    sensitive: bool              # a ReLU input within rounding of 0: the masks may differ
    overflow: bool               # a magnitude within OVERFLOW_MARGIN of the dtype's max


@dataclasses.dataclass
class ReferenceStep:
    loss: float
    loss_bound: float
    layers: list             # parameters after the update (before it, if the step diverged)
    gradients: np.ndarray    # flat, laid out as the parameters (None if the step diverged)
    gradient_bound: np.ndarray
    terms: int               # operations per result, for the tolerance
    sensitive: bool          # a ReLU input within rounding of 0: the masks may differ
    overflow: bool           # a magnitude within OVERFLOW_MARGIN of the dtype's max
    diverged: bool           # the reference refused the step: its loss or an update is not finite


def _forward_bounds(ref, X, dtype):
    """``ref`` on X, with |.| bounds of every activation: ``(out, inputs, bounds,
    out_bound, terms, sensitive, overflow)``, ``inputs``/``bounds`` of each layer."""
    with np.errstate(all="ignore"):
        out, inputs = ref.forward(X)
        bound = absolute(X)
        bounds = []
        terms, sensitive, overflow = 2, False, in_overflow_zone(bound, dtype)
        for layer, layer_input in zip(ref.layers, inputs):
            bounds.append(bound)
            if layer[0] == "dense":
                bound = bound @ absolute(layer[1]) + absolute(layer[2])
                terms += layer[1].shape[0] + 2
                overflow = overflow or in_overflow_zone(bound, dtype)
            else:
                near_zero = (bound > 0) & (absolute(layer_input) <= 4 * tolerance_bound(bound, dtype, terms))
                sensitive = sensitive or bool(np.any(near_zero))
    return out, inputs, bounds, bound, terms, sensitive, overflow


def reference_forward(layers, X, dtype):
    """The network of reference ``layers`` on X (:class:`fastnn.reference.ReferenceMLP`), with
    |.| bounds of every activation: ``(out, inputs, bounds, out_bound, terms, sensitive, overflow)``."""
    return _forward_bounds(reference.ReferenceMLP(layers, dtype), X, dtype)


def step_bounds(ref, X, y, lr, dtype) -> StepBounds:
    """The magnitude bounds of one MSE + SGD step of ``ref`` on X, y (nothing is trained)."""
    yhat, _, bounds, yhat_bound, terms, sensitive, overflow = _forward_bounds(ref, X, dtype)
    y = y.reshape(yhat.shape)
    with np.errstate(all="ignore"):
        loss_bound = float(np.mean((yhat_bound + absolute(y)) ** 2))
        overflow = overflow or in_overflow_zone(loss_bound, dtype)
        grad_bound = 2 * (yhat_bound + absolute(y)) / yhat.size
        gradient_bounds = []
        for i in range(len(ref.layers) - 1, -1, -1):
            layer = ref.layers[i]
            if layer[0] == "dense":
                dW_bound = bounds[i].T @ grad_bound
                db_bound = grad_bound.sum(axis=0)
                grad_bound = grad_bound @ absolute(layer[1]).T
                gradient_bounds[:0] = [dW_bound.ravel(), db_bound]
                overflow = overflow or in_overflow_zone(lr * dW_bound, dtype) or in_overflow_zone(lr * db_bound, dtype)
    return StepBounds(loss_bound, np.concatenate(gradient_bounds), terms + X.shape[0] + 4, sensitive, overflow)


def reference_step(layers, X, y, lr, dtype) -> ReferenceStep:
    """One reference training step (MSE, SGD: ``ReferenceMLP.train_step``) on clean X, y,
    with error bounds. A step the reference refuses (FloatingPointError) has diverged, and
    counts as in the overflow zone: a value in it is not finite."""
    ref = reference.ReferenceMLP(layers, dtype)
    bounds = step_bounds(ref, X, y, lr, dtype)
    with np.errstate(all="ignore"):
        try:
            loss = ref.train_step(X, y, lr, check_finite=True)
        except FloatingPointError:
            return ReferenceStep(math.nan, bounds.loss_bound, ref.layers, None, bounds.gradient_bound, bounds.terms,
                                 bounds.sensitive, overflow=True, diverged=True)
    overflow = bounds.overflow or in_overflow_zone(absolute(ref.get_parameters()), dtype)
    return ReferenceStep(loss, bounds.loss_bound, ref.layers, ref.get_gradients(), bounds.gradient_bound,
                         bounds.terms, bounds.sensitive, overflow, diverged=False)


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
    """Sequential.fit (MSE, SGD) in plain NumPy: ``ReferenceMLP.fit_epoch`` over the same
    batches in the same order, with the error bounds of every step. A diverged epoch (the
    reference refuses a step) counts as in the overflow zone, as in reference_step."""
    dtype = model.dtype
    ref = reference.ReferenceMLP(reference_layers(model), dtype)
    rng = np.random.default_rng(seed)
    n_samples = X.shape[0]
    batch = n_samples if batch_size is None else min(int(batch_size), n_samples)
    result = ReferenceFit([], ref.layers, np.zeros(model.n_parameters), [], 0)
    n_steps = 0
    epoch_loss_bound = 0.0

    def on_batch(rows):
        nonlocal n_steps, epoch_loss_bound
        bounds = step_bounds(ref, X[rows], y[rows], lr, dtype)
        n_steps += 1
        result.sensitive |= bounds.sensitive
        result.overflow |= bounds.overflow or in_overflow_zone(absolute(ref.get_parameters()), dtype)
        result.terms = max(result.terms, bounds.terms * n_steps)
        epoch_loss_bound = max(epoch_loss_bound, bounds.loss_bound)
        result.update_bound = result.update_bound + lr * bounds.gradient_bound

    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_samples) if shuffle else None
        epoch_loss_bound = 0.0
        try:
            with np.errstate(all="ignore"):
                mean_loss = ref.fit_epoch(X, y, lr, batch, order, check_finite=True, on_batch=on_batch)
        except FloatingPointError:
            result.diverged_epoch = epoch
            result.overflow = True
            return result
        result.losses.append(mean_loss)
        result.loss_bounds.append(epoch_loss_bound)
    result.overflow |= in_overflow_zone(absolute(ref.get_parameters()), dtype)
    return result


def assert_parameters_close(model, expected_flat, p0_flat, update_bound, dtype, terms, what):
    bound = absolute(p0_flat) + update_bound + absolute(expected_flat)
    assert_close(model.get_parameters(), expected_flat, bound, dtype, terms, what)


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


def blame_set_parameters(model, values):
    blame = Blame()
    array = inspect_array(blame, values, "values", (1,))
    if array is not None:
        blame_nonfinite(blame, array, "values", model.dtype)
        if array.ndim == 1 and array.shape != (model.n_parameters,):
            blame.add(ValueError, "values")
    return blame, array


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


def tutorial_like_model(dtype):
    return fastnn.Sequential([fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 2, seed=1)], dtype=dtype)


LOSS_KINDS = ["mae", "huber", "cross_entropy", "bce_with_logits", "mse"]


OPTIMIZER_KINDS = ["SGD", "SGD momentum", "SGD nesterov", "Adam", "AdamW"]


def loss_of_kind(kind, delta):
    """A fastnn loss of a LOSS_KINDS name (Huber with ``delta``)."""
    return {"mae": fastnn.MAELoss, "cross_entropy": fastnn.CrossEntropyLoss, "mse": fastnn.MSELoss,
            "bce_with_logits": fastnn.BCEWithLogitsLoss}[kind]() if kind != "huber" else fastnn.HuberLoss(delta)


def optimizer_of_kind(kind, lr, weight_decay):
    """A fastnn optimizer of an OPTIMIZER_KINDS name (momentum 0.9 for the SGD momentum kinds)."""
    if kind == "SGD":
        return fastnn.SGD(lr, weight_decay=weight_decay)
    if kind.startswith("SGD"):
        return fastnn.SGD(lr, momentum=0.9, nesterov=kind.endswith("nesterov"), weight_decay=weight_decay)
    return getattr(fastnn, kind)(lr, weight_decay=weight_decay)
