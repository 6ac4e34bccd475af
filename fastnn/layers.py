"""Layers: they describe a network and own their parameters, and hold no math.

A :class:`Dense` layer owns ``W`` (in_features, out_features) and ``b``
(out_features,), and their gradients ``dW`` and ``db``. Standing alone, it
keeps them in a small buffer of its own (float64). Once a
:class:`fastnn.Sequential` takes it, they become views into the model's one
flat parameter buffer (and gradient buffer), in the model's dtype, so that
``layer.W[...] = value`` (or ``layer.W = value``) changes the model in place.

``forward``/``backward`` call the validated kernels of :mod:`fastnn.ops`;
a model does not use them: it walks all its layers in one compiled call.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from fastnn import ops
from fastnn.validation import check_array, check_number, check_positive_int, check_seed

__all__ = ["Layer", "Dense", "Activation", "Identity", "ReLU", "LeakyReLU", "Tanh", "Sigmoid"]

_INITS = ("uniform", "he", "xavier")


class Layer:
    """Base class of fastnn's layers."""

    @property
    def n_parameters(self) -> int:
        """Number of trainable values (W and b) of the layer."""
        return 0

    def forward(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, X, dY):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, X):
        return self.forward(X)


class Dense(Layer):
    """Fully connected layer, ``Y = X @ W + b``.

    Parameters
    ----------
    in_features, out_features : int
        Positive sizes of the input and output.
    init : {"uniform", "he", "xavier"}, default "uniform"
        ``"uniform"`` draws W and b from U(-1/sqrt(in_features),
        1/sqrt(in_features)), as PyTorch's ``nn.Linear`` does (non-zero
        biases spread the ReLU kinks, which a 1-D curve needs). ``"he"``
        draws W from N(0, 2/in_features) and ``"xavier"`` from
        U(-a, a) with a = sqrt(6 / (in_features + out_features)); both set
        b to zero.
    seed : int, numpy.random.Generator or None
        Seed of the initialisation; None draws fresh entropy.

    Attributes
    ----------
    W : ndarray (in_features, out_features)
    b : ndarray (out_features,)
        Writable in place; assigning an array of the same shape copies it in.
    dW, db : ndarray
        Gradients from the last training step or :meth:`backward`.
    """

    def __init__(self, in_features: int, out_features: int, *, init: str = "uniform", seed=None):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if not isinstance(init, str):
            raise TypeError(f"init must be one of {_INITS}, got {type(init).__name__} {init!r}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.init = init
        self.seed = seed if isinstance(seed, (int, np.integer)) or seed is None else None
        rng = check_seed(seed, "seed")
        n_parameters = self.in_features * self.out_features + self.out_features
        if n_parameters * 8 > np.iinfo(np.intp).max:
            raise ValueError(f"in_features * out_features is too large: a Dense({self.in_features}, "
                             f"{self.out_features}) would hold {n_parameters} parameters")
        try:
            W, b = self._draw(rng)
        except MemoryError:
            raise ValueError(f"in_features * out_features is too large: the {n_parameters} parameters of "
                             f"Dense({self.in_features}, {self.out_features}) do not fit in memory") from None
        self._owner: weakref.ReferenceType | None = None
        self.attach(np.concatenate([W.ravel(), b]), np.zeros(self.n_parameters))

    @property
    def n_parameters(self) -> int:
        return self.in_features * self.out_features + self.out_features

    def _draw(self, rng):
        fan_in, fan_out = self.in_features, self.out_features
        shape = (fan_in, fan_out)
        if self.init == "uniform":
            bound = 1.0 / math.sqrt(fan_in)
            W = rng.uniform(-bound, bound, size=shape)
            b = rng.uniform(-bound, bound, size=fan_out)
        elif self.init == "he":
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
            b = np.zeros(fan_out)
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, size=shape)
            b = np.zeros(fan_out)
        return W, b

    # -- storage --------------------------------------------------------------

    def attach(self, params: np.ndarray, grads: np.ndarray, owner=None) -> None:
        """Make W, b, dW, db views into ``params``/``grads``: flat arrays holding this
        layer's slice (W row-major, then b) of its model's buffers.

        :class:`fastnn.Sequential` calls this when it takes the layer in: the
        parameters are then the model's data, and ``owner`` (the model, held
        by weak reference) is the only model the layer may belong to."""
        n_weights = self.in_features * self.out_features
        shape = (self.in_features, self.out_features)
        self._W = params[:n_weights].reshape(shape)
        self._b = params[n_weights:]
        self._dW = grads[:n_weights].reshape(shape)
        self._db = grads[n_weights:]
        self._owner = None if owner is None else weakref.ref(owner)

    @property
    def owner(self):
        """The model whose buffers hold this layer's parameters, or None."""
        return self._owner() if self._owner is not None else None

    def _set_param(self, name: str, target: np.ndarray, value) -> None:
        # Converted to the parameters' dtype first: a value too large for it is refused.
        array = check_array(value, name, ndim=target.ndim, dtype=target.dtype, shape_hint=str(target.shape))
        if array.shape != target.shape:
            raise ValueError(f"{name} must have shape {target.shape}, got {array.shape}")
        target[...] = array

    @property
    def W(self) -> np.ndarray:
        return self._W

    @W.setter
    def W(self, value) -> None:
        self._set_param("W", self._W, value)

    @property
    def b(self) -> np.ndarray:
        return self._b

    @b.setter
    def b(self, value) -> None:
        self._set_param("b", self._b, value)

    @property
    def dW(self) -> np.ndarray:
        return self._dW

    @property
    def db(self) -> np.ndarray:
        return self._db

    # -- math, delegated to fastnn.ops -------------------------------------------

    def forward(self, X) -> np.ndarray:
        """Return ``X @ W + b`` for X of shape (n_samples, in_features)."""
        return ops.dense_forward(X, self._W, self._b)

    def backward(self, X, dY) -> np.ndarray:
        """Store dW and db for input X and output gradient dY; return dX."""
        dX, dW, db = ops.dense_backward(X, self._W, dY)
        self._dW[...] = dW
        self._db[...] = db
        return dX

    # -- copying and pickling ---------------------------------------------------

    def __getstate__(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init,
            "seed": self.seed,
            "W": np.array(self._W),
            "b": np.array(self._b),
            "dW": np.array(self._dW),
            "db": np.array(self._db),
        }

    def __setstate__(self, state):
        self.in_features = state["in_features"]
        self.out_features = state["out_features"]
        self.init = state["init"]
        self.seed = state["seed"]
        dtype = state["W"].dtype
        params = np.concatenate([state["W"].ravel(), state["b"]]).astype(dtype, copy=False)
        grads = np.concatenate([state["dW"].ravel(), state["db"]]).astype(dtype, copy=False)
        self.attach(params, grads)

    def __repr__(self) -> str:
        return f"Dense(in_features={self.in_features}, out_features={self.out_features})"


class Activation(Layer):
    """Base class of the elementwise activations; no parameters.

    ``forward(X)`` returns f(X); ``backward(X, dY)`` returns dY * f'(X) for
    the layer's input X. In a model, an activation right after a Dense layer
    is computed in that layer's output pass.
    """

    #: the activation's name in the compiled kernels
    _fn = "identity"

    @property
    def function(self) -> str:
        """The activation's name in the compiled kernels: ``"identity"``, ``"relu"``,
        ``"leaky_relu"``, ``"tanh"`` or ``"sigmoid"``."""
        return self._fn

    @property
    def function_param(self) -> float:
        """The activation's one hyperparameter (LeakyReLU's ``negative_slope``; else 0)."""
        return 0.0

    def forward(self, X) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - each subclass defines it

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.function_param == other.function_param

    def __hash__(self) -> int:
        return hash((type(self), self.function_param))


class Identity(Activation):
    """The identity, ``f(x) = x``: a no-op, usable anywhere an activation is."""

    _fn = "identity"

    def forward(self, X) -> np.ndarray:
        """Return X as a float array (checked like every input)."""
        return check_array(X, "X", ndim=tuple(range(1, 33)))

    def backward(self, X, dY) -> np.ndarray:
        """Return dY (checked against X's shape)."""
        X = check_array(X, "X", ndim=tuple(range(1, 33)))
        dY = check_array(dY, "dY", ndim=X.ndim)
        if dY.shape != X.shape:
            raise ValueError(f"dY must have the shape of X, {X.shape}, got {dY.shape}")
        return dY


class ReLU(Activation):
    """Rectified linear unit, ``max(x, 0)`` elementwise."""

    _fn = "relu"

    def forward(self, X) -> np.ndarray:
        """Return ``max(X, 0)``."""
        return ops.relu_forward(X)

    def backward(self, X, dY) -> np.ndarray:
        """Return ``dY * (X > 0)`` for the layer's input X."""
        return ops.relu_backward(X, dY)


class LeakyReLU(Activation):
    """``x if x > 0 else negative_slope * x``, as ``torch.nn.LeakyReLU``.

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for negative inputs, a finite number >= 0 (fastnn's backward
        pass reads the sign of the input off the output, which a negative
        slope would flip).
    """

    _fn = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):

        self.negative_slope = check_number(negative_slope, "negative_slope", low=0.0)

    @property
    def function_param(self) -> float:
        return self.negative_slope

    def forward(self, X) -> np.ndarray:
        return ops.leaky_relu_forward(X, self.negative_slope)

    def backward(self, X, dY) -> np.ndarray:
        return ops.leaky_relu_backward(X, dY, self.negative_slope)

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope!r})"


class Tanh(Activation):
    """Hyperbolic tangent, elementwise."""

    _fn = "tanh"

    def forward(self, X) -> np.ndarray:
        return ops.tanh_forward(X)

    def backward(self, X, dY) -> np.ndarray:
        return ops.tanh_backward(X, dY)


class Sigmoid(Activation):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, stable for large ``|x|``."""

    _fn = "sigmoid"

    def forward(self, X) -> np.ndarray:
        return ops.sigmoid_forward(X)

    def backward(self, X, dY) -> np.ndarray:
        return ops.sigmoid_backward(X, dY)
