"""The tutorial's network and its curve.

The tutorial builds, by hand, the ReLU network

    Yhat = R(R(X) - R(2X - 2) + R(2X - 4)),      R(x) = max(x, 0)

a piecewise-linear curve: 0 for X <= 0, then slope 1 up to X = 1, slope -1
down to X = 2, and slope 1 again after it. :func:`tutorial_network` is that
network as a :class:`fastnn.Sequential` with its exact weights,
:func:`tutorial_curve` the same function in NumPy, and
:func:`tutorial_samples` noisy samples of it to learn from.
"""

from __future__ import annotations

import numpy as np

from fastnn.layers import Dense, ReLU
from fastnn.model import Sequential
from fastnn.validation import check_array, check_float_dtype, check_number, check_positive_int, check_seed

__all__ = ["TUTORIAL_X_RANGE", "tutorial_network", "tutorial_curve", "tutorial_samples"]

#: The interval the tutorial draws its curve on.
TUTORIAL_X_RANGE = (0.0, 3.0)

# Layer 1: the three lines R(X), R(2X - 2), R(2X - 4) as one Dense(1, 3).
TUTORIAL_W1 = np.array([[1.0, 2.0, 2.0]])
TUTORIAL_b1 = np.array([0.0, -2.0, -4.0])
# Layer 2: line1 - line2 + line3, as one Dense(3, 1).
TUTORIAL_W2 = np.array([[1.0], [-1.0], [1.0]])
TUTORIAL_b2 = np.array([0.0])


def tutorial_network(dtype=np.float64) -> Sequential:
    """The tutorial's hand-built 1-3-1 network, with its exact weights.

    ``Dense(1, 3) -> ReLU -> Dense(3, 1) -> ReLU`` with
    ``W1 = [[1, 2, 2]]``, ``b1 = [0, -2, -4]``, ``W2 = [[1], [-1], [1]]``,
    ``b2 = [0]``: ``predict(X)`` equals :func:`tutorial_curve` exactly.

    Parameters
    ----------
    dtype : numpy.float32 or numpy.float64, default numpy.float64
        The dtype of the model's parameters and computations.

    Returns
    -------
    Sequential
        A new model, 1 input and 1 output: ``predict`` takes X of shape
        ``(n_samples, 1)`` and returns shape ``(n_samples, 1)`` in ``dtype``.

    Raises
    ------
    TypeError
        If ``dtype`` is not float32 or float64.
    """
    first, second = Dense(1, 3), Dense(3, 1)
    model = Sequential([first, ReLU(), second, ReLU()], dtype=dtype)
    first.W, first.b = TUTORIAL_W1, TUTORIAL_b1
    second.W, second.b = TUTORIAL_W2, TUTORIAL_b2
    return model


def tutorial_curve(X) -> np.ndarray:
    """``R(R(X) - R(2X - 2) + R(2X - 4))`` elementwise, in NumPy, same shape as X.

    Parameters
    ----------
    X : array-like of real numbers, any shape (0-D to 32-D)
        Converted to float64; must be non-empty and finite.

    Returns
    -------
    ndarray of float64, the shape of ``X``
        The curve at each value of ``X``.

    Raises
    ------
    TypeError
        If ``X`` is None, complex or not numeric.
    ValueError
        If ``X`` is ragged, empty or holds NaN or infinity.
    """
    X = check_array(X, "X", ndim=tuple(range(0, 33)), dtype=np.float64)
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    return relu(relu(X) - relu(2 * X - 2) + relu(2 * X - 4))


def tutorial_samples(n_samples: int = 256, *, noise: float = 0.05, x_range=TUTORIAL_X_RANGE,
                     seed=None, dtype=np.float64):
    """Noisy samples of the tutorial's curve.

    Parameters
    ----------
    n_samples : int, default 256
    noise : float, default 0.05
        Standard deviation of the Gaussian noise added to the curve.
    x_range : (float, float), default (0, 3)
        X is drawn uniformly from this interval.
    seed : int, numpy.random.Generator or None
    dtype : float32 or float64

    Returns
    -------
    X : ndarray (n_samples, 1), sorted
    y : ndarray (n_samples, 1)
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    dtype = check_float_dtype(dtype)
    noise = check_number(noise, "noise", low=0.0)
    bounds = check_array(x_range, "x_range", ndim=1, dtype=np.float64)
    if bounds.shape != (2,) or not bounds[0] < bounds[1]:
        raise ValueError(f"x_range must be two finite numbers (low, high) with low < high, got {x_range!r}")
    low, high = float(bounds[0]), float(bounds[1])
    rng = check_seed(seed)
    X = np.sort(rng.uniform(low, high, size=(n_samples, 1)), axis=0)
    y = tutorial_curve(X) + rng.normal(0.0, noise, size=X.shape)
    return X.astype(dtype), y.astype(dtype)
