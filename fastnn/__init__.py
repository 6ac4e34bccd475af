"""fastnn: small dense neural networks trained on the CPU, fast.

Dense layers, activations, losses and optimizer updates are typed Cython
loops over memoryviews that run without the GIL; :class:`Sequential` walks
a whole network in one compiled call per step (and per epoch).

>>> import numpy as np, fastnn
>>> model = fastnn.Sequential([fastnn.Dense(1, 16, seed=0), fastnn.ReLU(), fastnn.Dense(16, 1, seed=1)])
>>> X, y = fastnn.datasets.tutorial_samples(256, seed=0)
>>> history = model.fit(X, y, optimizer=fastnn.SGD(lr=0.1), epochs=5, batch_size=16, seed=0)
"""

from fastnn._version import __version__

try:
    from fastnn import _ops, _walker, _walker_baseline  # noqa: F401  (compiled extensions)
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "fastnn's compiled extensions (fastnn._ops, fastnn._walker_*) could not be "
        "imported. Build them: `pip install .` (or `pip install -e .` in a checkout). "
        f"Original error: {exc}"
    ) from exc

from fastnn import datasets, ops, reference  # noqa: E402
from fastnn._config import show_config  # noqa: E402
from fastnn.layers import Activation, Dense, Identity, Layer, LeakyReLU, ReLU, Sigmoid, Tanh  # noqa: E402
from fastnn.losses import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, Loss, MAELoss, MSELoss, PoissonLoss  # noqa: E402
from fastnn.model import Callback, History, Sequential  # noqa: E402
from fastnn.ensemble import Ensemble  # noqa: E402
from fastnn.optimizers import LBFGS, SGD, Adam, AdamW, Optimizer  # noqa: E402
from fastnn.io import load, save  # noqa: E402


def tune(models=()):
    """Measure, now, how this machine runs networks fastest, and remember it.

    fastnn picks for each network the build of its compiled walker (AVX-512,
    AVX2 or the baseline) and, per Dense layer, BLAS or its own register
    tiles, by timing them on first need (when a ``Sequential`` is built) and
    keeping the choice in the user's cache directory (``FASTNN_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/fastnn`` or ``~/.cache/fastnn``). ``tune()`` times
    again, at once, the networks of ``models`` (a sequence of
    :class:`Sequential`), or without models those of fastnn's benchmarks,
    in float64 and float32, replacing what the cache held; models built
    afterwards use the new choices. ``FASTNN_PLAN=fixed`` switches measuring
    off (the fixed plan: the same path on every machine). Returns the plan's
    report, as ``fastnn.show_config(mode="dicts")["runtime"]["plan"]``.

    Parameters
    ----------
    models : sequence of Sequential, default ()
        The models whose networks (layer shapes and dtype) to time; empty
        times the benchmark networks (8-32-32-1, 64-256-256-1,
        784-512-512-10, 1-3-1 and 1-16-1, each in float64 and float32).
        Each model keeps the plan it has; models built afterwards take
        the new one.

    Returns
    -------
    dict
        The plan's report, as ``show_config(mode="dicts")["runtime"]["plan"]``.
    """
    from fastnn import _planner

    return _planner.tune(list(models))

__all__ = [
    "__version__",
    "Dense",
    "Layer",
    "ReLU",
    "Activation",
    "Identity",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "Loss",
    "MSELoss",
    "MAELoss",
    "HuberLoss",
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "PoissonLoss",
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LBFGS",
    "Sequential",
    "Ensemble",
    "History",
    "Callback",
    "datasets",
    "ops",
    "reference",
    "show_config",
    "tune",
    "save",
    "load",
    "MLPRegressor",
    "MLPClassifier",
]


def __getattr__(name):
    # The scikit-learn estimators import scikit-learn (optional): load them on first use only.
    if name in ("MLPRegressor", "MLPClassifier"):
        from fastnn import estimators

        return getattr(estimators, name)
    # fastnn.export (C, ONNX, PyTorch, scikit-learn) is loaded on first use too: ``fastnn.export.to_c``.
    if name == "export":
        import importlib

        return importlib.import_module("fastnn.export")
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
