"""Losses, as in PyTorch: each is the mean over the batch, takes ``sample_weight``,
and is a description the model's compiled step knows how to run (by its
code) as well as callable on its own through :mod:`fastnn.ops`.

With ``sample_weight`` w (one non-negative weight per sample), a loss is
``sum(w_i * l_i) / sum(w_i)``, where ``l_i`` is sample i's loss (the mean of
its elements' losses, or its cross-entropy); a weight of zero removes a
sample exactly.
"""

from __future__ import annotations

import numpy as np

from fastnn import ops
from fastnn.validation import check_number

__all__ = ["Loss", "MSELoss", "MAELoss", "HuberLoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "PoissonLoss"]


class Loss:
    """Base class of fastnn's losses: ``loss(yhat, y) -> float`` and ``.grad(yhat, y)``."""

    #: The loss's name in the compiled step: "mse", "mae", "huber",
    #: "cross_entropy", "bce_with_logits" or "poisson" (a class constant).
    kind = ""

    @property
    def param(self) -> float:
        """The loss's one hyperparameter for the compiled step (Huber's ``delta``; else 0)."""
        return 0.0

    def __call__(self, yhat, y, sample_weight=None) -> float:
        return self.loss(yhat, y, sample_weight)

    def loss(self, yhat, y, sample_weight=None) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSELoss(Loss):
    """Mean squared error over all elements, ``mean((yhat - y) ** 2)``.

    Its gradient with respect to ``yhat`` is ``2 * (yhat - y) / yhat.size``.
    A 1-D ``y`` pairs with a one-column ``yhat``.
    """

    kind = "mse"

    def loss(self, yhat, y, sample_weight=None) -> float:
        """Return the (weighted) mean squared error as a float."""
        return ops.mse_loss(yhat, y, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        """Return the gradient of the loss with respect to ``yhat``."""
        return ops.mse_grad(yhat, y, sample_weight)


class MAELoss(Loss):
    """Mean absolute error, ``mean(|yhat - y|)`` (``torch.nn.L1Loss``); gradient ``sign(yhat - y) / size``."""

    kind = "mae"

    def loss(self, yhat, y, sample_weight=None) -> float:
        return ops.mae_loss(yhat, y, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        return ops.mae_grad(yhat, y, sample_weight)


class HuberLoss(Loss):
    """Huber loss, as ``torch.nn.HuberLoss``: quadratic within ``delta`` of the target, linear beyond.

    Parameters
    ----------
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, > 0.
    """

    kind = "huber"

    def __init__(self, delta: float = 1.0):

        self.delta = check_number(delta, "delta", low=0.0, low_open=True)

    @property
    def param(self) -> float:
        return self.delta

    def loss(self, yhat, y, sample_weight=None) -> float:
        return ops.huber_loss(yhat, y, self.delta, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        return ops.huber_grad(yhat, y, self.delta, sample_weight)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta!r})"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, as ``torch.nn.CrossEntropyLoss``.

    ``yhat`` holds logits (n_samples, n_classes), ``y`` integer class labels
    (n_samples,). The softmax is fused with the loss and computed through
    log-sum-exp, so logits of any size are safe. Use
    :meth:`fastnn.Sequential.predict_proba` for probabilities.
    """

    kind = "cross_entropy"

    def loss(self, yhat, y, sample_weight=None) -> float:
        return ops.cross_entropy_loss(yhat, y, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        return ops.cross_entropy_grad(yhat, y, sample_weight)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits, as ``torch.nn.BCEWithLogitsLoss``: stable for any logits;
    ``y`` holds targets in [0, 1] of ``yhat``'s shape."""

    kind = "bce_with_logits"

    def loss(self, yhat, y, sample_weight=None) -> float:
        return ops.elementwise_loss(self.kind, yhat, y, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        return ops.elementwise_loss(self.kind, yhat, y, sample_weight, want_grad=True)


class PoissonLoss(Loss):
    """Half the Poisson deviance with a log link, as scikit-learn's ``MLPRegressor(loss="poisson")``.

    ``yhat`` is the log of the predicted mean (a linear output layer), ``y``
    holds counts or rates ``>= 0`` of ``yhat``'s shape. Each element's loss is
    ``exp(z) - y * z + xlogy(y, y) - y`` (0 where the mean ``exp(z)`` equals
    ``y``; ``torch.nn.PoissonNLLLoss(log_input=True)`` up to the term in y
    alone), its gradient ``(exp(z) - y) / yhat.size``. Predict the mean as
    ``numpy.exp(model.predict(X))``.
    """

    kind = "poisson"

    def loss(self, yhat, y, sample_weight=None) -> float:
        return ops.poisson_loss(yhat, y, sample_weight)

    def grad(self, yhat, y, sample_weight=None) -> np.ndarray:
        return ops.poisson_grad(yhat, y, sample_weight)
