"""Losses. Each is a description the model's compiled step knows how to run,
and callable on its own through the validated kernels of :mod:`fastnn.ops`."""

from __future__ import annotations

import numpy as np

from fastnn import ops

__all__ = ["Loss", "MSELoss"]


class Loss:
    """Base class of fastnn's losses: ``loss(yhat, y) -> float`` and ``.grad(yhat, y)``."""

    def __call__(self, yhat, y) -> float:
        return self.loss(yhat, y)

    def loss(self, yhat, y) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, yhat, y) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class MSELoss(Loss):
    """Mean squared error over all elements, ``mean((yhat - y) ** 2)``.

    Its gradient with respect to ``yhat`` is ``2 * (yhat - y) / yhat.size``.
    A 1-D ``y`` pairs with a one-column ``yhat``.
    """

    def loss(self, yhat, y) -> float:
        """Return the mean squared error as a float."""
        return ops.mse_loss(yhat, y)

    def grad(self, yhat, y) -> np.ndarray:
        """Return the gradient of the loss with respect to ``yhat``."""
        return ops.mse_grad(yhat, y)

    def __repr__(self) -> str:
        return "MSELoss()"
