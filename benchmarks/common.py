"""The benchmark configurations, in one place.

Both the asv suites (``benchmarks/bench_*.py``) and the side-by-side
comparison (``benchmarks/compare.py``) import the networks, data and
learning rates from here, so that the numbers they print describe the same
work.

A configuration is a network (the sizes of its Dense layers, ReLU between
them, and optionally on the output), a batch size, a data set of
``n_samples`` rows (a ``fit`` epoch visits all of them; a step uses the
first ``batch_size``) and a learning rate. Everything is drawn from fixed
seeds: two processes build bit-identical models and data.

Only fastnn's public API is used (``Sequential``, ``Dense``, ``ReLU``,
``SGD``, ``MSELoss``, ``fastnn.ops``, ``fastnn.reference``), so the
benchmarks keep working while the internals change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Config",
    "CONFIGS",
    "CONFIG_NAMES",
    "DTYPES",
    "DTYPE_NAMES",
    "TOLERANCE",
    "make_data",
    "make_model",
    "make_reference",
    "trace",
    "max_abs_diff",
    "parameters_of",
]


@dataclass(frozen=True)
class Config:
    """One benchmarked network, its data and its training settings.

    Attributes
    ----------
    name : str
        Short name, used as the asv parameter and the table's row label.
    sizes : tuple of int
        Layer widths, input first: ``(1, 3, 1)`` is Dense(1, 3), ReLU,
        Dense(3, 1).
    batch_size : int
        Rows per training step (and per ``predict`` call).
    n_samples : int
        Rows of the data set; one ``fit`` epoch visits them all in
        mini-batches of ``batch_size``.
    relu_output : bool
        A ReLU after the last Dense layer too (the tutorial's network).
    lr : float
        SGD learning rate.
    data : {"tutorial", "random"}
        ``"tutorial"``: X uniform on [0, 3], y the tutorial's curve plus
        noise. ``"random"``: X standard normal, y a fixed smooth function of
        X (``tanh`` of a random projection), one column per output.
    weights : {"uniform", "tutorial"}
        ``"uniform"``: fastnn's default initialisation, seeded.
        ``"tutorial"``: the tutorial's hand-set weights (sizes 1-3-1 only).
    measure : {"step", "fit"}
        What ``compare.py`` times for this config: one ``train_step`` on a
        batch, or ``fit_epochs`` epochs of ``fit`` over the data set.
    fit_epochs : int
        Epochs of a ``fit`` measurement in ``compare.py``.
    title : str
        Human-readable description for tables.
    """

    name: str
    sizes: tuple
    batch_size: int
    n_samples: int
    title: str
    relu_output: bool = False
    lr: float = 0.01
    data: str = "random"
    weights: str = "uniform"
    measure: str = "step"
    fit_epochs: int = 1

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def out_features(self) -> int:
        return self.sizes[-1]

    @property
    def hidden(self) -> tuple:
        return tuple(self.sizes[1:-1])

    @property
    def shape(self) -> str:
        """``"1-3-1"``-style description of the layer widths."""
        return "-".join(str(size) for size in self.sizes)


CONFIGS = {
    config.name: config
    for config in (
        Config("tutorial-1000", (1, 3, 1), batch_size=1000, n_samples=1000, relu_output=True,
               data="tutorial", weights="tutorial", title="tutorial 1-3-1, batch 1000"),
        Config("tutorial-1", (1, 3, 1), batch_size=1, n_samples=1000, relu_output=True,
               data="tutorial", weights="tutorial", title="tutorial 1-3-1, batch 1"),
        Config("tiny", (8, 32, 32, 1), batch_size=32, n_samples=1024,
               title="tiny 8-32-32-1, batch 32"),
        Config("medium", (64, 256, 256, 1), batch_size=256, n_samples=2048,
               title="medium 64-256-256-1, batch 256"),
        Config("large", (784, 512, 512, 10), batch_size=256, n_samples=2048,
               title="large 784-512-512-10, batch 256"),
        Config("demo-fit", (1, 16, 1), batch_size=16, n_samples=256, lr=0.1, data="tutorial",
               measure="fit", fit_epochs=20, title="demo fit 1-16-1, 256 points, batch 16, 20 epochs"),
    )
}

#: asv parameter values (strings, so that asv's tables read well)
CONFIG_NAMES = list(CONFIGS)
DTYPES = {"float32": np.float32, "float64": np.float64}
DTYPE_NAMES = list(DTYPES)

#: How far fastnn may stray from the NumPy reference, relative to the size
#: of the values compared (``max|a - b| <= tol * max(1, max|b|)``). Loose
#: enough for a different order of summation (loops against BLAS), tight
#: enough that a wrong formula fails by orders of magnitude.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}

# The tutorial's hand-set 1-3-1 network: Yhat = R(R(X) - R(2X - 2) + R(2X - 4)).
_TUTORIAL_WEIGHTS = (
    (np.array([[1.0, 2.0, 2.0]]), np.array([0.0, -2.0, -4.0])),
    (np.array([[1.0], [-1.0], [1.0]]), np.array([0.0])),
)


def _config(config) -> Config:
    return CONFIGS[config] if isinstance(config, str) else config


def _dtype(dtype) -> np.dtype:
    return np.dtype(DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)


def make_data(config, dtype, seed: int = 0):
    """Return ``(X, y)``: C-contiguous arrays of ``dtype``, shapes
    ``(n_samples, in_features)`` and ``(n_samples, out_features)``."""
    config, dtype = _config(config), _dtype(dtype)
    rng = np.random.default_rng(seed)
    n_samples = config.n_samples
    if config.data == "tutorial":
        X = rng.uniform(0.0, 3.0, size=(n_samples, config.in_features))
        relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
        y = relu(relu(X) - relu(2 * X - 2) + relu(2 * X - 4))
        y = y[:, :1].repeat(config.out_features, axis=1) + rng.normal(0.0, 0.05, size=(n_samples, config.out_features))
    elif config.data == "random":
        X = rng.standard_normal((n_samples, config.in_features))
        projection = rng.standard_normal((config.in_features, config.out_features)) / np.sqrt(config.in_features)
        y = np.tanh(X @ projection)
    else:  # pragma: no cover - a typo in CONFIGS
        raise ValueError(f"unknown data kind {config.data!r}")
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def make_model(config, dtype, seed: int = 0):
    """Return a fresh ``fastnn.Sequential`` for ``config``, computing in ``dtype``."""
    import fastnn

    config, dtype = _config(config), _dtype(dtype)
    layers = []
    dense = []
    for i, (n_in, n_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        layer = fastnn.Dense(n_in, n_out, seed=seed + i)
        dense.append(layer)
        layers.append(layer)
        if i < len(config.sizes) - 2 or config.relu_output:
            layers.append(fastnn.ReLU())
    model = fastnn.Sequential(layers, dtype=dtype)
    if config.weights == "tutorial":
        if config.sizes != (1, 3, 1):  # pragma: no cover - a typo in CONFIGS
            raise ValueError("the tutorial's weights need sizes (1, 3, 1)")
        for layer, (W, b) in zip(dense, _TUTORIAL_WEIGHTS):
            layer.W[...] = W
            layer.b[...] = b
    return model


def make_reference(model):
    """The plain-NumPy twin (``fastnn.reference.ReferenceMLP``) of a model, same weights."""
    from fastnn.reference import ReferenceMLP

    return ReferenceMLP.from_model(model)


def parameters_of(model) -> list:
    """``[W1, b1, W2, b2, ...]`` of a fastnn model or a ReferenceMLP (live arrays)."""
    from fastnn.reference import ReferenceMLP

    if isinstance(model, ReferenceMLP):
        return [array for layer in model.layers if layer[0] == "dense" for array in layer[1:]]
    return [array for layer in model.layers if hasattr(layer, "W") for array in (layer.W, layer.b)]


def trace(reference, X, y) -> dict:
    """The arguments every kernel sees during one training step of ``reference``.

    Runs one forward and backward pass with the NumPy reference functions
    (no update) and returns, for the step's batch:

    ``dense``
        one ``(X_in, W, b, dY)`` per Dense layer;
    ``relu``
        one ``(Z, dA)`` per ReLU;
    ``loss``
        ``(yhat, y)``;
    ``update``
        one ``(param, grad)`` per W and b (the params are copies, free to
        be updated in place).
    """
    from fastnn import reference as ref

    yhat, inputs = reference.forward(X)
    y = np.asarray(y, dtype=reference.dtype).reshape(yhat.shape)
    grad = ref.mse_grad(yhat, y)
    dense, relu, update = [], [], []
    for i in range(len(reference.layers) - 1, -1, -1):
        layer = reference.layers[i]
        if layer[0] == "dense":
            W, b = layer[1], layer[2]
            dense.append((inputs[i], W, b, grad))
            grad, dW, db = ref.dense_backward(inputs[i], W, grad)
            update += [(b.copy(), db), (W.copy(), dW)]
        else:
            relu.append((inputs[i], grad))
            grad = ref.relu_backward(inputs[i], grad)
    return {"dense": dense[::-1], "relu": relu[::-1], "loss": (yhat, y), "update": update[::-1]}


def max_abs_diff(got, expected, dtype_name: str, what: str) -> float:
    """Return ``max|got - expected|`` over lists of arrays; raise if beyond :data:`TOLERANCE`."""
    diff = scale = 0.0
    for a, b in zip(got, expected, strict=True):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            a = a.reshape(b.shape)
        diff = max(diff, float(np.max(np.abs(a - b), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(b), initial=0.0)))
    if not np.isfinite(diff) or diff > TOLERANCE[dtype_name] * max(1.0, scale):
        raise AssertionError(
            f"fastnn disagrees with fastnn.reference on {what} ({dtype_name}): max abs difference "
            f"{diff:.3g}, allowed {TOLERANCE[dtype_name]:.0e} x max(1, {scale:.3g})")
    return diff
