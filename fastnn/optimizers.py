"""Optimizers: the update rules of ``torch.optim.SGD``, ``Adam`` and ``AdamW``.

An optimizer describes a rule and holds its state (momentum buffer, moment
estimates, step count) as flat buffers laid out like the model's parameter
buffer, so that a model's compiled step applies it in one fused loop over
all parameters. An optimizer binds to the first model it trains and keeps
its state across ``train_step`` and ``fit`` calls (a warm start); use one
optimizer per model, as in PyTorch (plain SGD, which has no state, may be
shared by any number of models). ``state_dict()`` and
``load_state_dict()`` read and restore the state.

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

import numbers
import weakref
from typing import Any

import numpy as np

from fastnn import ops
from fastnn.validation import check_learning_rate, check_number
from fastnn.validation import describe as _describe

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: the rule's name for the compiled step, its hyperparameters and state."""

    #: the compiled rule ("sgd", "adam" or "adamw")
    _kind = ""
    #: names of the state buffers, in the order the compiled step takes them
    _state_names: tuple = ()

    def __init__(self, lr):
        self._lr = check_learning_rate(lr, "lr")
        self._model = None        # weakref to the model this optimizer is bound to
        self._update = None       # the compiled rule and state for that model
        self._pending = None      # state loaded (or unpickled) before binding
        self._version = 0         # bumped whenever lr or the binding changes (models cache on it)

    @property
    def lr(self) -> float:
        """Learning rate; may be changed between steps (a schedule)."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = check_learning_rate(value, "lr")
        self._version += 1
        if self._update is not None:
            self._update.lr = self._lr

    def _hyper(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stateless(self) -> bool:
        """True for a rule without state (plain SGD), which any number of models may share."""
        return False

    def _update_for(self, model):
        """The compiled update for ``model``, binding this optimizer to it on first use."""
        if self._stateless():
            updates = model._stateless_updates       # kept by the model, keyed by optimizer
            update = updates.get(self)
            if update is None or update.lr != self._lr:
                update = updates[self] = model._net.make_update(self._kind, self._lr, **self._hyper())
            return update
        bound = self._model() if self._model is not None else None
        if bound is model:
            return self._update
        if bound is None and self._update is not None:
            # The model it trained is gone: its state carries over to the next
            # model (it must have the same number of parameters), as after a load.
            self._pending, self._update, self._model = self.state_dict(), None, None
        if bound is not None:
            raise ValueError("optimizer is already training another model; use one optimizer per model "
                             "(as in PyTorch), e.g. a new fastnn." + type(self).__name__ + "(...)")
        state = self._pending or {}
        buffers = {}
        for name in self._state_names:
            if name in state:
                buffers[name] = np.array(state[name], dtype=model.dtype, order="C")
                if buffers[name].shape != (model.n_parameters,):
                    raise ValueError(f"optimizer state {name!r} has shape {buffers[name].shape}, "
                                     f"the model has {model.n_parameters} parameters")
        bufs = [buffers.get(name) for name in self._state_names] + [None, None]
        update = model._net.make_update(self._kind, self._lr, buf1=bufs[0], buf2=bufs[1],
                                        step=int(state.get("step", 0)), **self._hyper())
        self._update = update
        self._model = weakref.ref(model)
        self._pending = None
        self._version += 1
        return update

    def state_dict(self) -> dict:
        """The state as plain arrays and numbers: ``step`` and the rule's buffers (copies)."""
        if self._update is None:
            return dict(self._pending or {"step": 0})
        state: dict[str, Any] = {"step": int(self._update.step)}
        for name, buf in zip(self._state_names, (self._update.buf1, self._update.buf2)):
            if buf is not None:
                state[name] = np.array(buf)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`; it is used from the next step on."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        step = state.get("step", 0)
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"state['step'] must be a non-negative integer, got {step!r}")
        clean = {"step": int(step)}
        for name in self._state_names:
            if name in state:
                array = np.asarray(state[name])
                if array.ndim != 1 or array.dtype.kind != "f" or not np.all(np.isfinite(array)):
                    raise ValueError(f"state[{name!r}] must be a finite 1-D float array, got {_describe(array)}")
                clean[name] = array.copy()
        unknown = set(state) - set(clean) - {"step"}
        if unknown:
            raise ValueError(f"state has keys this optimizer does not use: {sorted(unknown)}")
        self._version += 1
        if self._update is not None:
            model = self._model()
            self._update = None
            self._model = None
            self._pending = clean
            if model is not None:
                self._update_for(model)
        else:
            self._pending = clean

    def __getstate__(self):
        return {"lr": self._lr, "hyper": self._hyper(), "state": self.state_dict()}

    def __setstate__(self, data):
        self._lr = data["lr"]
        for key, value in data["hyper"].items():
            setattr(self, "_" + key, value)
        self._model = self._update = None
        self._pending = data["state"]
        self._version = 0

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
        self._momentum = check_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {_describe(nesterov)}")
        if nesterov and self._momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        self._nesterov = bool(nesterov)
        self._weight_decay = check_number(weight_decay, "weight_decay", low=0.0)

    momentum = property(lambda self: self._momentum, doc="Momentum factor.")
    nesterov = property(lambda self: self._nesterov, doc="Nesterov momentum.")
    weight_decay = property(lambda self: self._weight_decay, doc="L2 penalty.")

    def _hyper(self) -> dict:
        return {"momentum": self._momentum, "nesterov": self._nesterov, "weight_decay": self._weight_decay}

    def _stateless(self) -> bool:
        return self._momentum == 0

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
            raise TypeError(f"betas must be a pair of numbers, got {_describe(betas)}") from None
        self._beta1 = check_number(beta1, "betas[0]", low=0.0, high=1.0, high_open=True)
        self._beta2 = check_number(beta2, "betas[1]", low=0.0, high=1.0, high_open=True)
        self._eps = check_number(eps, "eps", low=0.0, low_open=True)
        if weight_decay is None:
            weight_decay = self._default_weight_decay
        self._weight_decay = check_number(weight_decay, "weight_decay", low=0.0)

    betas = property(lambda self: (self._beta1, self._beta2), doc="(beta1, beta2).")
    eps = property(lambda self: self._eps, doc="Denominator term.")
    weight_decay = property(lambda self: self._weight_decay, doc="Weight decay.")

    def _hyper(self) -> dict:
        return {"beta1": self._beta1, "beta2": self._beta2, "eps": self._eps, "weight_decay": self._weight_decay}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lr={self._lr!r}, betas=({self._beta1!r}, {self._beta2!r}), "
                f"eps={self._eps!r}, weight_decay={self._weight_decay!r})")


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: decoupled weight decay, ``p *= 1 - lr * weight_decay``.

    Same parameters as :class:`Adam`, with ``weight_decay=0.01`` by default.
    """

    _kind = "adamw"
    _default_weight_decay = 0.01
