"""Plots of a fit (the ``plot`` extra: ``pip install fastnn[plot]``).

The tutorial's figures, for your own models: a one-input model's curve over
its data (:func:`fit_1d`), the loss per epoch (:func:`loss_curve`), each
hidden unit's share of a one-output model's output
(:func:`hidden_contributions`, drawn by :func:`hidden_units`), and the
network drawn as layers of units with their weights and biases
(:func:`network_diagram`). matplotlib is imported only when a drawing
function is called; :func:`hidden_contributions` needs NumPy alone.
"""

from __future__ import annotations

import numpy as np

from fastnn.layers import Activation, Dense
from fastnn.validation import check_array, check_bool, check_positive_int

__all__ = ["fit_1d", "loss_curve", "save_fit_figure", "hidden_contributions", "hidden_units", "network_diagram"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'fastnn[plot]'") from exc
    return plt


def _check_one_in_one_out(model) -> None:
    if model.in_features != 1 or model.out_features != 1:
        raise ValueError(f"model must have one input and one output, got {model.in_features} and {model.out_features}")


def fit_1d(model, X, y, *, curve=None, ax=None, n_points: int = 500):
    """Draw a one-input, one-output model's curve over its data, like the tutorial's figures.

    The data points are grey, the target (``curve``) blue and the model's
    output orange, as in the tutorial.

    Parameters
    ----------
    model : fastnn.Sequential
        A model with ``in_features == out_features == 1``.
    X, y : array-like of shape (n_samples, 1) or (n_samples,)
        The data points, any real dtype.
    curve : callable, optional
        The true function, drawn as the target line (e.g.
        :func:`fastnn.datasets.tutorial_curve`): called with a float64 array
        of shape (n_points, 1), returns n_points values.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axes by default.
    n_points : int, default 500
        Points on the drawn curves, evenly spaced over ``[X.min(), X.max()]``.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the model does not have one input and one output, or ``n_points``
        is not a positive integer.
    ImportError
        Without matplotlib.
    """
    _check_one_in_one_out(model)
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

    Parameters
    ----------
    history : fastnn.History
        What :meth:`fastnn.Sequential.fit` returned; ``history.loss`` (one
        float per epoch) is drawn against the epoch number, from 1.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axes by default.
    log : bool, default True
        A logarithmic loss axis.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If ``log`` is not a bool.
    ImportError
        Without matplotlib.
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

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the PNG (1100 x 400 pixels).
    model, X, y, curve
        As for :func:`fit_1d`.
    history : fastnn.History
        As for :func:`loss_curve`.
    title : str, default ""
        The title of the left panel.

    Returns
    -------
    None
        The PNG is written at ``path``; no figure is returned or left open.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
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


def _last_dense(model) -> int:
    """Index of the model's last Dense layer, checked to have one output (only activations follow it)."""
    if model.out_features != 1:
        raise ValueError(f"model must have one output, got {model.out_features}")
    return max(i for i, layer in enumerate(model.layers) if isinstance(layer, Dense))


def hidden_contributions(model, X) -> np.ndarray:
    """Each unit of the last hidden layer's share of a one-output model's output.

    A one-output model ends with a Dense layer ``Dense(k, 1)`` of weights
    ``w`` (k, 1) and bias ``c``, maybe followed by an activation ``f``: its
    output is ``f(H @ w + c)``, where ``H`` (n_samples, k) is the output of
    the layers before that Dense layer. Unit ``j`` contributes the column
    ``H[:, j] * w[j, 0]``; the columns, summed, plus ``c``, are the output
    before ``f``. For :func:`fastnn.datasets.tutorial_network` they are the
    tutorial's three lines, ``R(X)``, ``-R(2X - 2)`` and ``R(2X - 4)``.

    Parameters
    ----------
    model : fastnn.Sequential
        A model with one output (``out_features == 1``), any depth.
    X : array-like of shape (n_samples, in_features)
        Input, any real dtype; a 1-D array is taken as one column when the
        model has one input.

    Returns
    -------
    ndarray of shape (n_samples, k), the model's dtype
        Column ``j``: unit ``j``'s contribution. ``k`` is the last Dense
        layer's ``in_features`` (the model's input width when it has a
        single Dense layer).

    Raises
    ------
    ValueError
        If the model has more than one output, or ``X`` does not have
        ``in_features`` columns (or is empty, or not finite).
    TypeError
        If ``X`` is not numeric.
    """
    last = _last_dense(model)
    X = check_array(X, "X", ndim=(1, 2), dtype=model.dtype)
    if X.ndim == 1 and model.in_features == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] != model.in_features:
        raise ValueError(f"X must have shape (n_samples, {model.in_features}), got {X.shape}")
    layers = model.layers
    hidden = X
    for layer in layers[:last]:
        hidden = layer.forward(hidden)
    return np.asarray(hidden * layers[last].W[:, 0], dtype=model.dtype)


def hidden_units(model, x_range=(0.0, 3.0), *, curve=None, ax=None, n_points: int = 500):
    """Draw a one-input, one-output model as the sum of its last hidden layer's units.

    Each unit's contribution (:func:`hidden_contributions`) is a thin line,
    the model's output a thick orange one, and the target ``curve`` (if
    given) a blue dashed one: the tutorial's "the target built from three
    lines", for any model.

    Parameters
    ----------
    model : fastnn.Sequential
        A model with ``in_features == out_features == 1``.
    x_range : (float, float), default (0, 3)
        The interval of X drawn.
    curve : callable, optional
        The target, as for :func:`fit_1d`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axes by default.
    n_points : int, default 500
        Points on each line.

    Returns
    -------
    matplotlib.axes.Axes
        Its lines are the units' (labelled ``unit 1`` ... ``unit k``), then
        ``model output``, then ``target output`` when ``curve`` is given.

    Raises
    ------
    ValueError
        If the model does not have one input and one output, ``x_range`` is
        not two increasing finite numbers, or ``n_points`` is not positive.
    ImportError
        Without matplotlib.
    """
    _check_one_in_one_out(model)
    n_points = check_positive_int(n_points, "n_points")
    bounds = check_array(x_range, "x_range", ndim=1, dtype=np.float64)
    if bounds.shape != (2,) or not bounds[0] < bounds[1]:
        raise ValueError(f"x_range must be two finite numbers (low, high) with low < high, got {x_range!r}")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(bounds[0], bounds[1], n_points).reshape(-1, 1)
    parts = hidden_contributions(model, grid)
    for j in range(parts.shape[1]):
        ax.plot(grid[:, 0], parts[:, j], lw=1.2, alpha=0.8, color=f"C{2 + j % 8}", label=f"unit {j + 1}")
    ax.plot(grid[:, 0], model.predict(grid)[:, 0], color="tab:orange", lw=3, label="model output")
    if curve is not None:
        ax.plot(grid[:, 0], np.asarray(curve(grid)).reshape(-1), color="tab:blue", lw=2, ls="--",
                label="target output")
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("X")
    ax.set_ylabel("contribution to the output")
    if parts.shape[1] <= 8:
        ax.legend(fontsize="small")
    return ax


def _diagram_columns(model, max_units: int):
    """The diagram's columns: (units shown, width, activation name below, bias per unit or None)."""
    layers = model.layers
    columns: list[tuple[int, int, str, np.ndarray | None]] = [
        (min(model.in_features, max_units), model.in_features, "input", None)]
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            after = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], Activation) else None
            name = type(after).__name__ if after is not None else "linear"
            columns.append((min(layer.out_features, max_units), layer.out_features, name, layer.b))
    return columns


_DX = 2.0      # the diagram's distance between columns; units are 1 apart in a column


def _unit_y(shown: int) -> np.ndarray:
    return np.arange(shown)[::-1] - (shown - 1) / 2.0


def _draw_edges(ax, model, columns, label_weights: bool) -> None:
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    for c, layer in enumerate(dense):
        (n_from, _, _, _), (n_to, _, _, _) = columns[c], columns[c + 1]
        y_from, y_to = _unit_y(n_from), _unit_y(n_to)
        for i in range(n_from):
            for j in range(n_to):
                weight = float(layer.W[i, j])
                ax.plot([_DX * c, _DX * (c + 1)], [y_from[i], y_to[j]], color="tab:red" if weight < 0 else "tab:blue",
                        lw=0.5 + 2.0 * min(abs(weight), 2.0) / 2.0, alpha=0.6, zorder=1)
                if label_weights:
                    x, y = _DX * (c + 0.3), y_from[i] + 0.3 * (y_to[j] - y_from[i])
                    ax.text(x, y, f"{weight:.3g}", fontsize=8, ha="center", va="center", zorder=3,
                            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))


def network_diagram(model, *, ax=None, weights: bool = True, max_units: int = 10):
    """Draw a network as layers of units, with its weights on the edges and its biases in the units.

    One column per layer of units: the input, then each Dense layer's
    outputs, labelled with the activation that follows it. Edges are blue
    for positive weights and red for negative ones, thicker for larger
    ones; each unit of a Dense layer shows its bias inside. Layers wider than
    ``max_units`` show their first ``max_units`` units only (the column's
    label says how many there are).

    Parameters
    ----------
    model : fastnn.Sequential
        Any model; small ones read best.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axes by default.
    weights : bool, default True
        Write each weight on its edge (only when there are at most 40 edges).
    max_units : int, default 10
        Units drawn per layer at most.

    Returns
    -------
    matplotlib.axes.Axes
        Each unit is a :class:`matplotlib.patches.Circle` in ``ax.patches``.

    Raises
    ------
    TypeError
        If ``weights`` is not a bool.
    ValueError
        If ``max_units`` is not a positive integer.
    ImportError
        Without matplotlib.
    """
    weights = check_bool(weights, "weights")
    max_units = check_positive_int(max_units, "max_units")
    plt = _pyplot()
    from matplotlib.patches import Circle

    columns = _diagram_columns(model, max_units)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * len(columns), 0.8 * max(c[0] for c in columns) + 1.5))
    n_edges = sum(a[0] * b[0] for a, b in zip(columns, columns[1:]))
    _draw_edges(ax, model, columns, weights and n_edges <= 40)
    for c, (shown, width, name, bias) in enumerate(columns):
        for j, y in enumerate(_unit_y(shown)):
            ax.add_patch(Circle((_DX * c, y), 0.3, fc="white" if bias is None else "tab:orange", ec="black", zorder=2))
            if bias is not None:
                ax.text(_DX * c, y, f"{float(bias[j]):.2g}", fontsize=7, ha="center", va="center", zorder=3)
        more = f" (of {width})" if shown < width else ""
        ax.text(_DX * c, _unit_y(shown)[-1] - 0.6, f"{width} {name}{more}", ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.6, _DX * (len(columns) - 1) + 0.6)
    ax.set_ylim(-(max(c[0] for c in columns) + 1) / 2.0 - 0.5, (max(c[0] for c in columns)) / 2.0 + 0.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax
