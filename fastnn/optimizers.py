"""Optimizers. An optimizer describes an update rule; the model's compiled
step applies it to the model's flat parameter buffer in one fused loop."""

from __future__ import annotations

from fastnn import ops
from fastnn.validation import check_learning_rate

__all__ = ["Optimizer", "SGD"]


class Optimizer:
    """Base class of fastnn's optimizers."""

    def update(self, param, grad) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, ``p -= lr * grad``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate, a finite positive number.
    """

    def __init__(self, lr: float = 0.01):
        self.lr = lr

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = check_learning_rate(value, "lr")

    def update(self, param, grad) -> None:
        """Apply ``param -= lr * grad`` in place to one array."""
        ops.sgd_update(param, grad, self._lr)

    def __repr__(self) -> str:
        return f"SGD(lr={self._lr!r})"
