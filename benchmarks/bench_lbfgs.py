"""asv suite for the L-BFGS objective: the loss and gradient over a whole data set.

``Sequential.loss_gradient`` (one compiled call without the GIL, the data walked
in chunks through the workspace) against its NumPy twin,
``fastnn.reference.ReferenceMLP.loss_gradient`` (the full batch, layer by layer),
on the networks and data of the estimator benchmarks of ``compare.py
--estimators``: the digits network 64-64-10 (cross-entropy on 1,347 rows, the
training split) and Friedman #1's 10-64-64-1 (MSE on 1,500 rows); both with
ReLU and the L2 term that ``solver="lbfgs"`` adds. The data are synthetic, of
those shapes (nothing is downloaded). ``impl`` is the last parameter, so asv
prints ``fastnn`` and ``reference`` side by side.
"""

import numpy as np

import fastnn
from fastnn.reference import ReferenceMLP

from .common import DTYPE_NAMES, DTYPES

#: name -> (layer widths, rows, loss)
PROBLEMS = {
    "digits-64": ((64, 64, 10), 1347, "cross_entropy"),
    "friedman1-64x64": ((10, 64, 64, 1), 1500, "mse"),
}
IMPLS = ("fastnn", "reference")


def _problem(name: str, dtype):
    sizes, n_samples, loss = PROBLEMS[name]
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (n_samples, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], n_samples)
    else:
        y = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 5 * X[:, 2]).astype(dtype)
    layers: list = []
    for i in range(len(sizes) - 1):
        layers.append(fastnn.Dense(sizes[i], sizes[i + 1], seed=i))
        if i < len(sizes) - 2:
            layers.append(fastnn.ReLU())
    model = fastnn.Sequential(layers, dtype=dtype)
    return model, X, y, (fastnn.CrossEntropyLoss() if loss == "cross_entropy" else fastnn.MSELoss())


class LossGradient:
    """The whole data's loss and gradient with L2 on the weights, as L-BFGS evaluates it."""

    params = (list(PROBLEMS), DTYPE_NAMES, list(IMPLS))
    param_names = ("problem", "dtype", "impl")
    timeout = 300

    def setup(self, problem, dtype, impl):
        model, self.X, self.y, self.loss = _problem(problem, DTYPES[dtype])
        self.l2 = 1e-4 / self.X.shape[0]
        if impl == "fastnn":
            self.model = model
            self.run = self._fastnn
        else:
            self.ref = ReferenceMLP.from_model(model)
            self.run = self._reference

    def _fastnn(self):
        return self.model.loss_gradient(self.X, self.y, loss=self.loss, l2=self.l2)

    def _reference(self):
        return self.ref.loss_gradient(self.X, self.y, loss=self.loss, l2=self.l2)

    def time_loss_gradient(self, *params):
        self.run()

    def peakmem_loss_gradient(self, *params):
        self.run()
