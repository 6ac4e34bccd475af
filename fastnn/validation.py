"""Input checks shared by every public entry point of fastnn.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError``
(right kind, wrong value) with a message that names the argument, says what
was expected and what was given. Checks run before any unchecked loop and
before anything is modified, so a call that raises changes nothing.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fastnn import _ops

__all__ = [
    "FLOAT_DTYPES",
    "describe",
    "as_numeric_array",
    "check_float_dtype",
    "result_float_dtype",
    "check_array",
    "check_target",
    "check_bool",
    "check_option",
    "check_int",
    "check_sgd_hyperparameters",
    "check_adam_hyperparameters",
    "check_positive_int",
    "check_learning_rate",
    "check_seed",
    "check_number",
    "check_sample_weight",
    "check_labels",
    "check_optimizer_state",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_ACCEPTED_KINDS = "biuf"   # bool, signed and unsigned integers, floats


def describe(value) -> str:
    """How ``value`` reads in an error message: an array's dtype and shape, else its type and repr."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``dtype`` as float32 or float64, or raise naming ``name``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {describe(dtype)}") from exc
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {resolved}")
    return resolved


def as_numeric_array(value, name: str) -> np.ndarray:
    """``value`` as a NumPy array of bool, integer or real float dtype, without copying or converting it.

    Errors name the argument: TypeError for None, complex and non-numeric
    dtypes, ValueError for ragged input.
    """
    if value is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be an array of numbers with a regular shape, got {describe(value)}: {exc}") from exc
    if array.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.dtype.kind not in _ACCEPTED_KINDS:
        raise TypeError(f"{name} must be an array of real numbers, got dtype {array.dtype}")
    return array


def result_float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every input is float16/float32, else float64.

    Integers and booleans compute in float64, as NumPy promotes them.
    """
    if all(a.dtype.kind == "f" and a.dtype.itemsize <= 4 for a in arrays):
        return FLOAT_DTYPES[0]
    return FLOAT_DTYPES[1]


def check_array(
    value,
    name: str,
    *,
    ndim: int | tuple[int, ...],
    dtype=None,
    shape_hint: str = "",
    allow_empty: bool = False,
    finite: bool = True,
) -> np.ndarray:
    """Return ``value`` as a C-contiguous, native-order array of a float dtype.

    Parameters
    ----------
    value : array-like
        Anything ``numpy.asarray`` accepts, of bool, integer or float dtype.
    name : str
        The argument's name, for messages.
    ndim : int or tuple of int
        The accepted numbers of dimensions.
    dtype : float32 or float64, optional
        Convert to this dtype; by default float32 input stays float32 and
        everything else becomes float64.
    shape_hint : str
        How the expected shape reads in a message, e.g. "(n_samples, in_features)".
    allow_empty : bool
        Accept arrays with no element.
    finite : bool
        Refuse NaN and infinities.
    """
    array = as_numeric_array(value, name)
    accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if array.ndim not in accepted:
        wanted = " or ".join(f"{d}-D" for d in accepted)
        hint = f" of shape {shape_hint}" if shape_hint else ""
        extra = ""
        if array.ndim == 1 and 2 in accepted:
            extra = " (reshape a single feature with X.reshape(-1, 1))"
        raise ValueError(f"{name} must be a {wanted} array{hint}, got {array.ndim}-D shape {array.shape}{extra}")
    if not allow_empty and array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    target = result_float_dtype(array) if dtype is None else np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):   # values beyond float32 become inf: rejected below
        array = np.asarray(array, dtype=target, order="C")
    if not array.flags.aligned:     # the compiled loops read whole, aligned elements
        array = array.copy()
    if finite and not _ops.all_finite(array.reshape(-1)):
        raise ValueError(f"{name} must contain only finite values, got NaN or infinity")
    return array


def check_target(value, name: str, n_samples: int, n_outputs: int, dtype) -> np.ndarray:
    """Return a target ``y`` as a (n_samples, n_outputs) array of ``dtype``.

    A 1-D ``y`` is accepted when there is one output.
    """
    y = check_array(value, name, ndim=(1, 2), dtype=dtype, shape_hint=f"(n_samples, {n_outputs})")
    if y.ndim == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} must have shape ({n_samples}, {n_outputs}) for a network with {n_outputs} outputs, got 1-D shape {y.shape}")
        y = y.reshape(-1, 1)
    if y.shape != (n_samples, n_outputs):
        raise ValueError(f"{name} must have shape ({n_samples}, {n_outputs}) to match X and the network's outputs, got {y.shape}")
    return y


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool; only ``True``, ``False`` and NumPy booleans are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_option(value, name: str, options) -> str:
    """Return ``value`` if it is one of the strings ``options``, else raise ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def check_int(value, name: str, *, low: int) -> int:
    """Return ``value`` as an int >= ``low``; booleans and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {low}, got {describe(value)}")
    value = operator.index(value)
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_sgd_hyperparameters(momentum, nesterov, weight_decay) -> tuple[float, bool, float]:
    """SGD's ``(momentum, nesterov, weight_decay)``, checked: momentum in [0, 1), nesterov a bool
    (True needs momentum > 0), weight_decay >= 0."""
    momentum = check_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    nesterov = check_bool(nesterov, "nesterov")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
    return momentum, nesterov, check_number(weight_decay, "weight_decay", low=0.0)


def check_adam_hyperparameters(beta1, beta2, eps, weight_decay, *,
                               beta_names=("beta1", "beta2")) -> tuple[float, float, float, float]:
    """Adam's ``(beta1, beta2, eps, weight_decay)``, checked: each beta in [0, 1), eps > 0,
    weight_decay >= 0. ``beta_names`` are the betas' names in messages (``betas[0]``, ...)."""
    return (check_number(beta1, beta_names[0], low=0.0, high=1.0, high_open=True),
            check_number(beta2, beta_names[1], low=0.0, high=1.0, high_open=True),
            check_number(eps, "eps", low=0.0, low_open=True),
            check_number(weight_decay, "weight_decay", low=0.0))


def check_order(order, name: str, n_samples: int) -> np.ndarray:
    """Return ``order`` as a C-contiguous intp array of ``n_samples`` row indices in
    [0, n_samples): the rows an epoch visits, in that order (booleans and floats are refused)."""
    array = np.asarray(order)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer row indices, got {describe(order)}")
    if array.shape != (n_samples,):
        raise ValueError(f"{name} must have one row index per sample, shape ({n_samples},), got shape {array.shape}")
    if n_samples and (array.min() < 0 or array.max() >= n_samples):
        raise ValueError(f"{name} must hold row indices in [0, {n_samples}), got values from {array.min()} "
                         f"to {array.max()}")
    return np.ascontiguousarray(array, dtype=np.intp)


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int > 0; booleans and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {describe(value)}")
    value = operator.index(value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def check_learning_rate(value, name: str = "lr") -> float:
    """Return ``value`` as a finite float > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite positive number, got {describe(value)}")
    try:
        value = float(value)
    except OverflowError:               # an int too large for a float
        raise ValueError(f"{name} must be a finite positive number, got {describe(value)}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def check_seed(seed, name: str = "seed") -> np.random.Generator:
    """Return a Generator from None, a non-negative int or a Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, a non-negative integer or a numpy Generator, got {describe(seed)}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return np.random.default_rng(operator.index(seed))


def check_number(value, name: str, *, low: float, high: float = np.inf, low_open=False, high_open=False) -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (each end closed unless
    ``low_open``/``high_open``); TypeError for a non-real or bool, ValueError outside."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    try:
        value = float(value)
    except OverflowError:               # an int too large for a float
        value = np.inf
    ok = np.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {left}{low}, {high}{right}, got {value}")
    return value


def check_sample_weight(sample_weight: ArrayLike | None, n_samples: int, dtype: DTypeLike) -> np.ndarray | None:
    """None, or ``sample_weight`` as a C-contiguous (n_samples,) array of dtype:
    finite, non-negative, with a positive sum."""
    if sample_weight is None:
        return None
    w = check_array(sample_weight, "sample_weight", ndim=1, dtype=dtype, shape_hint="(n_samples,)")
    if w.shape[0] != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per sample, got shape {w.shape}")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative, got a negative weight")
    if not w.sum() > 0:
        raise ValueError("sample_weight must have a positive sum, got all zeros")
    return w


def check_labels(labels: ArrayLike, name: str, n_samples: int, n_classes: int, dtype: DTypeLike) -> np.ndarray:
    """Class labels as a C-contiguous (n_samples,) array of ``dtype``: integers in [0, n_classes)."""
    array = as_numeric_array(labels, name)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, shape (n_samples,), got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} must have one label per sample, ({n_samples},), got {array.shape}")
    if array.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer class indices, got dtype bool")
    if array.dtype.kind == "f" and not (np.all(np.isfinite(array)) and np.all(array == np.round(array))):
        raise ValueError(f"{name} must hold integer class indices, got non-integral values")
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(f"{name} must hold class indices in [0, {n_classes}), got values in "
                         f"[{array.min()}, {array.max()}]")
    return np.ascontiguousarray(array, dtype=dtype)


def check_optimizer_state(state, names: tuple, n_parameters: int, dtype) -> tuple[int, dict]:
    """An optimizer state (a dict as ``Sequential.optimizer_state`` returns) for a
    rule whose buffers are ``names`` and a model of ``n_parameters`` values of
    ``dtype``: its step count and its buffers, converted (C-contiguous copies)."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from optimizer_state(), got {type(state).__name__}")
    step = state.get("step", 0)
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"state['step'] must be a non-negative integer, got {step!r}")
    unknown = set(state) - set(names) - {"step"}
    if unknown:
        raise ValueError(f"state has keys this optimizer does not use: {sorted(unknown)}")
    buffers = {}
    for name in names:
        if name not in state:
            continue
        array = np.asarray(state[name])
        if array.ndim != 1 or array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise ValueError(f"state[{name!r}] must be a finite 1-D float array, got {describe(array)}")
        if array.shape != (n_parameters,):
            raise ValueError(f"state[{name!r}] must have shape ({n_parameters},), one value per "
                             f"parameter of the model, got shape {array.shape}")
        buffers[name] = np.array(array, dtype=dtype, order="C")
    return int(step), buffers


def check_non_negative(values: np.ndarray, name: str, purpose: str = "") -> np.ndarray:
    """``values`` unchanged if none is negative (NaN is left to the finiteness checks), else ValueError."""
    if np.any(values < 0):
        raise ValueError(f"{name} must be non-negative{' ' + purpose if purpose else ''}, got the negative value "
                         f"{values[values < 0].flat[0]!r}")
    return values
