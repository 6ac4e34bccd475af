"""The figure of docs/guide/lbfgs.rst: training loss against time on the digits, L-BFGS and Adam.

Run from a checkout (fastnn built, scikit-learn, SciPy and matplotlib installed)::

    python benchmarks/lbfgs_figure.py docs/guide/lbfgs_digits.png

A 64-64-10 ReLU network (scikit-learn's initialisation for random_state 0) on scikit-learn's digits (X / 16,
the stratified 75% training split of compare.py --estimators) trained with
``fastnn.LBFGS(max_iter=200)`` in float64 and in float32, and with
``fastnn.Adam(lr=1e-3)``, batches of 200, 50 epochs; the mean cross-entropy
after each iteration (L-BFGS) or epoch (Adam) against the cumulated time
(``History.epoch_time``), one BLAS thread.
"""

from __future__ import annotations

import os
import sys

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"


def _start(fastnn, dtype):
    """A 64-64-10 ReLU network with scikit-learn's starting weights for random_state=0
    (Glorot uniform W and b, drawn layer by layer, as MLPClassifier does)."""
    from sklearn.utils import check_random_state

    layers = [fastnn.Dense(64, 64), fastnn.ReLU(), fastnn.Dense(64, 10)]
    model = fastnn.Sequential(layers, dtype=dtype)
    state = check_random_state(0)
    for layer in (layers[0], layers[2]):
        bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
        layer.W[...] = state.uniform(-bound, bound, (layer.in_features, layer.out_features))
        layer.b[...] = state.uniform(-bound, bound, layer.out_features)
    return model


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "lbfgs_digits.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import fastnn

    X, y = load_digits(return_X_y=True)
    X, _, y, _ = train_test_split(X / 16, y, random_state=0, stratify=y)
    loss = fastnn.CrossEntropyLoss()
    runs = []
    for label, dtype, optimizer, extra in (
            ("L-BFGS, float64", np.float64, fastnn.LBFGS(max_iter=200), {}),
            ("L-BFGS, float32", np.float32, fastnn.LBFGS(max_iter=200), {}),
            ("Adam lr 1e-3, batch 200, float64", np.float64, fastnn.Adam(lr=1e-3),
             dict(epochs=50, batch_size=200, seed=0))):
        model = _start(fastnn, dtype)
        history = model.fit(X, y, loss=loss, optimizer=optimizer, **extra)
        runs.append((label, np.cumsum(history.epoch_time), np.array(history.loss)))
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, seconds, values in runs:
        axes.semilogy(seconds, values, label=label)
    axes.set_xlabel("seconds (cumulated History.epoch_time)")
    axes.set_ylabel("training objective (mean cross-entropy)")
    axes.set_title("digits, 64-64-10 ReLU, one thread")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
