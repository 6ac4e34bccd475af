"""Optimizers: the update rules of ``torch.optim.SGD``, ``Adam`` and ``AdamW``.

An optimizer is a description: the rule and its hyperparameters, checked
once at construction. It holds no state and knows no model. The state a
rule needs (momentum buffer, moment estimates, step count) is laid out like
the model's flat parameter buffer, so it is the model's data: a model keeps
one state per optimizer it trains with, carries it across ``train_step`` and
``fit`` calls with the same optimizer (a warm start), and exposes it through
``Sequential.optimizer_state`` and ``Sequential.set_optimizer_state``. The
model's compiled step then applies the rule in one fused loop over all
parameters.

The rules, with g the gradient and p a parameter (PyTorch's, with
``dampening=0`` and ``amsgrad=False``):

* SGD: ``g += weight_decay * p``; with momentum, ``buf = momentum * buf + g``
  and ``g = g + momentum * buf`` (Nesterov) or ``g = buf``; ``p -= lr * g``.
* Adam: ``g += weight_decay * p``; ``m += (1 - beta1) * (g - m)``;
  ``v = beta2 * v + (1 - beta2) * g * g``;
  ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
* AdamW: ``p *= 1 - lr * weight_decay``, then Adam without the L2 term.
"""

from __future__ import annotations

from fastnn import ops
from fastnn.validation import (
    check_adam_hyperparameters,
    check_int,
    check_learning_rate,
    check_number,
    check_sgd_hyperparameters,
    describe,
)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LBFGS"]


class Optimizer:
    """Base class: an update rule and its hyperparameters.

    An optimizer is a description, like a loss: it holds its hyperparameters,
    checked once at construction, and no state. The state the rule needs
    (momentum buffer, moment estimates, step count) is laid out like the
    parameters, so the model keeps it, one state per optimizer it trains
    with: read it with :meth:`fastnn.Sequential.optimizer_state`, restore it
    with :meth:`fastnn.Sequential.set_optimizer_state`. One optimizer may
    train several models; each model keeps its own state for it.

    ``lr`` may be changed between steps (a schedule); the other
    hyperparameters are fixed.

    Parameters
    ----------
    lr : float
        Learning rate, a finite positive number (an int or NumPy real is
        taken as its float; a bool is refused).

    Attributes
    ----------
    lr : float
        The learning rate; assigning it checks it as the constructor does.
    kind : str
        The update rule: ``"sgd"``, ``"adam"`` or ``"adamw"``.
    hyperparameters : dict
        The rule's hyperparameters other than ``lr``, by name.
    state_names : tuple of str
        Names of the state buffers the rule keeps per model, in order.

    Raises
    ------
    TypeError
        If ``lr`` is not a real number (or is a bool).
    ValueError
        If ``lr`` is not finite or not > 0.
    """

    #: the compiled rule ("sgd", "adam" or "adamw")
    _kind = ""
    #: names of the state buffers, in the order the compiled step takes them
    _state_names: tuple = ()

    def __init__(self, lr):
        self._lr = check_learning_rate(lr, "lr")

    @property
    def lr(self) -> float:
        """Learning rate; may be changed between steps (a schedule)."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = check_learning_rate(value, "lr")

    @property
    def kind(self) -> str:
        """The update rule: ``"sgd"``, ``"adam"`` or ``"adamw"``."""
        return self._kind

    @property
    def hyperparameters(self) -> dict:
        """The rule's hyperparameters other than ``lr``, by name (a new dict)."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def state_names(self) -> tuple:
        """Names of the state buffers this rule keeps per model, in order (empty: no state)."""
        return self._state_names

    def update(self, param, grad) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate, a finite positive number.
    momentum : float, default 0
        Momentum factor in [0, 1).
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0).
    weight_decay : float, default 0
        L2 penalty added to the gradient, >= 0.
    """

    _kind = "sgd"
    _state_names = ("momentum_buffer",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(lr)
        self._momentum, self._nesterov, self._weight_decay = check_sgd_hyperparameters(
            momentum, nesterov, weight_decay)

    momentum = property(lambda self: self._momentum, doc="Momentum factor.")
    nesterov = property(lambda self: self._nesterov, doc="Nesterov momentum.")
    weight_decay = property(lambda self: self._weight_decay, doc="L2 penalty.")

    @property
    def hyperparameters(self) -> dict:
        return {"momentum": self._momentum, "nesterov": self._nesterov, "weight_decay": self._weight_decay}

    @property
    def state_names(self) -> tuple:
        return self._state_names if self._momentum else ()

    def update(self, param, grad) -> None:
        """Apply plain ``param -= lr * grad`` to one array (no momentum or weight decay)."""
        if self._momentum or self._weight_decay:
            raise ValueError("SGD.update applies plain SGD only; use fastnn.ops.sgd_momentum_update for "
                             "momentum or weight decay")
        ops.sgd_update(param, grad, self._lr)

    def __repr__(self) -> str:
        extra = ""
        if self._momentum:
            extra += f", momentum={self._momentum!r}"
        if self._nesterov:
            extra += ", nesterov=True"
        if self._weight_decay:
            extra += f", weight_decay={self._weight_decay!r}"
        return f"SGD(lr={self._lr!r}{extra})"


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``weight_decay`` is an L2 term added to the gradient).

    Parameters
    ----------
    lr : float, default 0.001
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    weight_decay : float, default 0
    """

    _kind = "adam"
    _state_names = ("exp_avg", "exp_avg_sq")
    _default_weight_decay = 0.0

    def __init__(self, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay=None):
        super().__init__(lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of numbers, got {describe(betas)}") from None
        if weight_decay is None:
            weight_decay = self._default_weight_decay
        self._beta1, self._beta2, self._eps, self._weight_decay = check_adam_hyperparameters(
            beta1, beta2, eps, weight_decay, beta_names=("betas[0]", "betas[1]"))

    betas = property(lambda self: (self._beta1, self._beta2), doc="(beta1, beta2).")
    eps = property(lambda self: self._eps, doc="Denominator term.")
    weight_decay = property(lambda self: self._weight_decay, doc="Weight decay.")

    @property
    def hyperparameters(self) -> dict:
        return {"beta1": self._beta1, "beta2": self._beta2, "eps": self._eps, "weight_decay": self._weight_decay}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lr={self._lr!r}, betas=({self._beta1!r}, {self._beta2!r}), "
                f"eps={self._eps!r}, weight_decay={self._weight_decay!r})")


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: decoupled weight decay, ``p *= 1 - lr * weight_decay``.

    Same parameters as :class:`Adam`, with ``weight_decay=0.01`` by default.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate, a finite positive number.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    weight_decay : float or None, default None
        Decoupled weight decay factor, >= 0; None means 0.01. Each step first
        multiplies every parameter by ``1 - lr * weight_decay``.

    Raises
    ------
    TypeError
        If ``lr``, ``eps``, ``weight_decay`` or a beta is not a real number,
        or ``betas`` is not a pair.
    ValueError
        If ``lr`` is not finite and > 0, a beta not in [0, 1), ``eps`` not
        finite and > 0, or ``weight_decay`` not finite and >= 0.
    """

    _kind = "adamw"
    _default_weight_decay = 0.01


class LBFGS:
    """Full-batch L-BFGS, for :meth:`fastnn.Sequential.fit` (``optimizer=fastnn.LBFGS()``).

    A description, like the other optimizers: its limits and tolerances,
    checked once, and no state. ``fit`` hands the model's whole-data loss
    and gradient (one compiled call without the GIL per evaluation) to
    SciPy's L-BFGS-B (``scipy.optimize.minimize(method="L-BFGS-B",
    jac=True)``), which needs SciPy (``pip install fastnn[lbfgs]``). It is
    not an update rule: ``train_step`` refuses it. The method keeps no
    state between ``fit`` calls: a second ``fit`` starts from the current
    parameters with an empty curvature history.

    Parameters
    ----------
    max_iter : int, default 200
        Most iterations (scikit-learn's ``max_iter`` for ``solver="lbfgs"``).
    tol : float, default 1e-4
        Stop when the largest component of the gradient falls to ``tol``
        (SciPy's ``gtol``, as scikit-learn passes its ``tol``), >= 0.
    history_size : int, default 10
        Correction pairs kept (SciPy's ``maxcor``), >= 1.
    max_fun : int, default 15000
        Most evaluations of the loss and gradient (SciPy's ``maxfun``).
    l2 : float, default 0
        Adds ``l2 / 2 * sum(W ** 2)`` over every Dense layer's weights (not
        the biases) to the loss, and ``l2 * W`` to their gradients, >= 0.
    """

    kind = "lbfgs"

    def __init__(self, max_iter: int = 200, tol: float = 1e-4, history_size: int = 10, max_fun: int = 15000,
                 l2: float = 0.0):
        self._max_iter = check_int(max_iter, "max_iter", low=1)
        self._tol = check_number(tol, "tol", low=0.0)
        self._history_size = check_int(history_size, "history_size", low=1)
        self._max_fun = check_int(max_fun, "max_fun", low=1)
        self._l2 = check_number(l2, "l2", low=0.0)

    max_iter = property(lambda self: self._max_iter, doc="Most iterations.")
    tol = property(lambda self: self._tol, doc="Gradient tolerance (SciPy's gtol).")
    history_size = property(lambda self: self._history_size, doc="Correction pairs kept (SciPy's maxcor).")
    max_fun = property(lambda self: self._max_fun, doc="Most loss-and-gradient evaluations.")
    l2 = property(lambda self: self._l2, doc="L2 factor of the Dense weights.")

    @property
    def hyperparameters(self) -> dict:
        """Every setting, by name (a new dict)."""
        return {"max_iter": self._max_iter, "tol": self._tol, "history_size": self._history_size,
                "max_fun": self._max_fun, "l2": self._l2}

    def __repr__(self) -> str:
        return "LBFGS(" + ", ".join(f"{name}={value!r}" for name, value in self.hyperparameters.items()) + ")"
