"""Plots of a fit (the ``plot`` extra: ``pip install fastnn[plot]``).

matplotlib is imported only when one of these functions is called.
"""

from __future__ import annotations

import numpy as np

from fastnn.validation import check_bool, check_positive_int

__all__ = ["fit_1d", "loss_curve", "save_fit_figure"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'fastnn[plot]'") from exc
    return plt


def fit_1d(model, X, y, *, curve=None, ax=None, n_points: int = 500):
    """Draw a one-input, one-output model's curve over its data, like the tutorial's figures.

    Parameters
    ----------
    model : fastnn.Sequential with in_features == out_features == 1
    X, y : array-like, the data points, (n_samples, 1) or (n_samples,)
    curve : callable, optional
        The true function, drawn as the target line (e.g.
        :func:`fastnn.datasets.tutorial_curve`).
    ax : matplotlib Axes, optional
    n_points : int
        Points on the drawn curves.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if model.in_features != 1 or model.out_features != 1:
        raise ValueError(f"model must have one input and one output, got {model.in_features} and {model.out_features}")
    n_points = check_positive_int(n_points, "n_points")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    X = np.asarray(X, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    grid = np.linspace(X.min(), X.max(), n_points).reshape(-1, 1)
    ax.scatter(X, y, s=8, alpha=0.5, color="tab:gray", label="data points")
    if curve is not None:
        ax.plot(grid[:, 0], np.asarray(curve(grid)).reshape(-1), color="tab:blue", lw=2, label="target output")
    ax.plot(grid[:, 0], model.predict(grid)[:, 0], color="tab:orange", lw=2, label="model output")
    ax.set_xlabel("X")
    ax.set_ylabel("Y")
    ax.legend()
    return ax


def loss_curve(history, *, ax=None, log: bool = True):
    """Draw the mean loss of each epoch from a :class:`fastnn.History`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    log = check_bool(log, "log")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history.loss) + 1)
    ax.plot(epochs, history.loss, color="tab:orange", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax


def save_fit_figure(path, model, X, y, history, *, curve=None, title: str = "") -> None:
    """Save, side by side, :func:`fit_1d` (titled ``title``) and :func:`loss_curve` as a PNG at ``path``.

    The figure is one of its own, not pyplot's: no display is needed and
    pyplot's current figure and backend are left as they were.
    """
    _pyplot()       # the same ImportError as the other plots without matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    fit_1d(model, X, y, curve=curve, ax=left)
    left.set_title(title)
    loss_curve(history, ax=right)
    right.set_title("mean training loss per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
