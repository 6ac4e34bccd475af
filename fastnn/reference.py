"""Plain-NumPy twins of fastnn's kernels: the specification they are tested against.

Every function here has the name and signature of its compiled counterpart
in :mod:`fastnn.ops` and computes the same math in the most direct NumPy,
line for line with ``DESIGN.md``:

* a Dense layer computes ``Y = X @ W + b`` with ``W`` of shape
  ``(in_features, out_features)``;
* ``MSE = mean((yhat - y) ** 2)`` over all elements, with gradient
  ``2 * (yhat - y) / yhat.size``;
* SGD is ``param -= lr * grad``.

The functions do not validate their input (that is :mod:`fastnn.ops`'s job);
they compute in the dtype NumPy's promotion gives. The one convenience they
share with the kernels is that a 1-D ``y`` pairs with a one-column ``yhat``.

:class:`ReferenceMLP` runs a whole Dense/ReLU network on these functions,
layer by layer in Python, as a hand-written NumPy training loop would: the
baseline of the benchmarks and the oracle of the model tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

if TYPE_CHECKING:
    from fastnn.model import Sequential

__all__ = [
    "dense_forward",
    "dense_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "tanh_forward",
    "tanh_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "mse_loss",
    "mse_grad",
    "mae_loss",
    "mae_grad",
    "huber_loss",
    "huber_grad",
    "cross_entropy_loss",
    "cross_entropy_grad",
    "bce_with_logits_loss",
    "bce_with_logits_grad",
    "softmax",
    "sgd_update",
    "sgd_momentum_update",
    "adam_update",
    "ReferenceMLP",
]


def dense_forward(X: np.ndarray, W: np.ndarray, b: ArrayLike) -> np.ndarray:
    """Return ``X @ W + b``: (n_samples, in_features) -> (n_samples, out_features)."""
    return X @ W + b


def dense_backward(X: np.ndarray, W: np.ndarray, dY: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(dX, dW, db) = (dY @ W.T, X.T @ dY, dY.sum(axis=0))``."""
    return dY @ W.T, X.T @ dY, dY.sum(axis=0)


def relu_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``max(Z, 0)`` elementwise."""
    return np.maximum(Z, 0)


def relu_backward(Z: np.ndarray, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * (Z > 0)``: the gradient passes where the input was positive."""
    return dA * (Z > 0)


def leaky_relu_forward(Z: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Return ``Z if Z > 0 else negative_slope * Z`` elementwise."""
    return np.where(Z > 0, Z, Z * negative_slope)


def leaky_relu_backward(Z: np.ndarray, dA: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Return ``dA if Z > 0 else negative_slope * dA``."""
    return np.where(Z > 0, dA, dA * negative_slope)


def tanh_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``tanh(Z)``."""
    return np.tanh(Z)


def tanh_backward(Z: ArrayLike, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * (1 - tanh(Z) ** 2)``."""
    A = np.tanh(Z)
    return dA * (1 - A * A)


def sigmoid_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``1 / (1 + exp(-Z))``, as ``exp(Z) / (1 + exp(Z))`` for negative Z (no overflow)."""
    Z = np.asarray(Z)
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(Z: ArrayLike, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * s * (1 - s)`` with ``s = sigmoid(Z)``."""
    A = sigmoid_forward(Z)
    return dA * (A * (1 - A))


def _paired(yhat: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    yhat = np.asarray(yhat)
    y = np.asarray(y)
    if y.ndim == 1 and yhat.ndim == 2 and yhat.shape[1] == 1:
        y = y.reshape(-1, 1)
    return yhat, y


def _weighted(elements: np.ndarray, grad_elements: np.ndarray,
              sample_weight: ArrayLike | None) -> tuple[float, np.ndarray]:
    """(loss, grad) from elementwise losses and their derivatives, (n_samples, ...) arrays:
    sum(w_i * mean_j e_ij) / sum(w_i), and its gradient (w_i = 1 without weights).

    With weights, the sums are taken in float64, each sample's loss is
    weighted by its share w_i / sum(w) and each sample's gradient scale
    w_i / (n_outputs * sum(w)) is one float64 ratio, rounded to the input's
    dtype: products of tiny (subnormal) weights would lose the precision
    that only the weights' ratios carry.
    """
    n = elements.shape[0]
    per_element = elements.reshape(n, -1)
    n_outputs = per_element.shape[1]
    if sample_weight is None:
        return float(np.mean(elements)), grad_elements / elements.size
    w = np.asarray(sample_weight, dtype=np.float64)
    loss = float(np.sum((w / np.sum(w)) * per_element.mean(axis=1, dtype=np.float64)))
    scale = (w / (n_outputs * np.sum(w))).astype(grad_elements.dtype)
    return loss, grad_elements * scale.reshape((n,) + (1,) * (elements.ndim - 1))


def mse_loss(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return ``mean((yhat - y) ** 2)`` as a Python float (weighted by sample)."""
    yhat, y = _paired(yhat, y)
    if sample_weight is None:
        return float(np.mean((yhat - y) ** 2))
    return _weighted((yhat - y) ** 2, 2 * (yhat - y), sample_weight)[0]


def mse_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``2 * (yhat - y) / yhat.size``, the gradient of :func:`mse_loss`."""
    yhat, y = _paired(yhat, y)
    if sample_weight is None:
        return 2 * (yhat - y) / yhat.size
    return _weighted((yhat - y) ** 2, 2 * (yhat - y), sample_weight)[1]


def mae_loss(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return ``mean(|yhat - y|)``."""
    yhat, y = _paired(yhat, y)
    return _weighted(np.abs(yhat - y), np.sign(yhat - y), sample_weight)[0]


def mae_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``sign(yhat - y) / yhat.size`` (0 where equal), the gradient of :func:`mae_loss`."""
    yhat, y = _paired(yhat, y)
    return _weighted(np.abs(yhat - y), np.sign(yhat - y), sample_weight)[1]


def _huber(yhat: np.ndarray, y: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    d = yhat - y
    small = np.abs(d) < delta
    return np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)), np.where(small, d, delta * np.sign(d))


def huber_loss(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> float:
    """Return the mean Huber loss: ``0.5 d**2`` if ``|d| < delta`` else ``delta (|d| - delta / 2)``."""
    yhat, y = _paired(yhat, y)
    return _weighted(*_huber(yhat, y, delta), sample_weight)[0]


def huber_grad(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``clip(yhat - y, -delta, delta) / yhat.size``, the gradient of :func:`huber_loss`."""
    yhat, y = _paired(yhat, y)
    return _weighted(*_huber(yhat, y, delta), sample_weight)[1]


def _bce(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = logits
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), sigmoid_forward(z) - y


def bce_with_logits_loss(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return ``mean(max(z, 0) - z * y + log(1 + exp(-|z|)))`` for logits z."""
    logits, y = _paired(logits, y)
    return _weighted(*_bce(logits, y), sample_weight)[0]


def bce_with_logits_grad(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``(sigmoid(z) - y) / z.size``, the gradient of :func:`bce_with_logits_loss`."""
    logits, y = _paired(logits, y)
    return _weighted(*_bce(logits, y), sample_weight)[1]


def softmax(logits: ArrayLike) -> np.ndarray:
    """Return ``exp(z - max z) / sum(exp(z - max z))`` along the last axis."""
    z = np.asarray(logits)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cross_entropy(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits)
    labels = np.asarray(labels).astype(np.intp).reshape(-1)
    rows = np.arange(z.shape[0])
    zmax = z.max(axis=1)
    lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
    per_sample = lse - z[rows, labels]
    grad = softmax(z)
    grad[rows, labels] -= 1
    return per_sample, grad


def cross_entropy_loss(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return the mean over samples of ``logsumexp(logits[i]) - logits[i, labels[i]]``."""
    per_sample, _ = _cross_entropy(logits, labels)
    if sample_weight is None:
        return float(np.mean(per_sample))
    w = np.asarray(sample_weight, dtype=np.float64)       # in float64, as _weighted
    return float(np.sum((w / np.sum(w)) * per_sample))


def cross_entropy_grad(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``(softmax(logits) - onehot(labels)) / n_samples``, or weighted by ``w_i / sum(w)``."""
    per_sample, grad = _cross_entropy(logits, labels)
    if sample_weight is None:
        return grad / per_sample.shape[0]
    w = np.asarray(sample_weight, dtype=np.float64)
    return grad * (w / np.sum(w)).astype(grad.dtype)[:, None]


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """``param -= lr * grad``, in place. Returns None."""
    param -= lr * grad


def sgd_momentum_update(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray, lr: float, momentum: float,
                        nesterov: bool = False, weight_decay: float = 0.0) -> None:
    """``torch.optim.SGD`` with momentum (dampening 0), in place on param and momentum_buffer."""
    g = grad + weight_decay * param if weight_decay else np.array(grad, dtype=param.dtype)
    if momentum:                      # PyTorch keeps no buffer without momentum
        momentum_buffer *= momentum
        momentum_buffer += g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g


def adam_update(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int, lr: float,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One ``torch.optim.Adam`` (or AdamW, ``decoupled``) step number ``step`` (t >= 1), in place."""
    if decoupled:
        param *= 1 - lr * weight_decay
    elif weight_decay:
        grad = grad + weight_decay * param
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * (grad * grad)
    step_size = lr / (1 - beta1 ** step)
    denom = np.sqrt(exp_avg_sq) / np.sqrt(1 - beta2 ** step) + eps
    param -= step_size * (exp_avg / denom)


_ACTIVATIONS = {
    "identity": (lambda Z: Z, lambda Z, dA: dA),
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
}


class ReferenceMLP:
    """A Dense/ReLU network trained with MSE and SGD, in plain NumPy.

    Parameters
    ----------
    layers : list of ``("dense", W, b)`` or activation tuples
        ``("relu",)``, ``("leaky_relu", slope)``, ``("tanh",)``,
        ``("sigmoid",)``, ``("identity",)``. ``W`` is (in_features,
        out_features), ``b`` (out_features,). The arrays are copied, in
        ``dtype``.
    dtype : float32 or float64
    """

    def __init__(self, layers: Iterable[Sequence[Any]], dtype: DTypeLike = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self.layers: list[tuple[Any, ...]] = []
        for layer in layers:
            if layer[0] == "dense":
                W = np.array(layer[1], dtype=self.dtype)
                b = np.array(layer[2], dtype=self.dtype)
                self.layers.append(("dense", W, b))
            elif layer[0] in _ACTIVATIONS:
                self.layers.append(tuple(layer))
            else:
                raise ValueError(f"unknown layer kind {layer[0]!r}")

    @classmethod
    def from_model(cls, model: Sequential) -> ReferenceMLP:
        """A copy of a :class:`fastnn.Sequential`'s layers and parameters."""
        from fastnn.layers import Activation, Dense

        layers: list[tuple[Any, ...]] = []
        for layer in model.layers:
            if isinstance(layer, Dense):
                layers.append(("dense", layer.W, layer.b))
            elif isinstance(layer, Activation):
                layers.append((layer.function, layer.function_param) if layer.function == "leaky_relu" else (layer.function,))
            else:
                raise TypeError(f"ReferenceMLP cannot run {type(layer).__name__}")
        return cls(layers, dtype=model.dtype)

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Return the output and every layer's input (for the backward pass)."""
        inputs = []
        out = X
        for layer in self.layers:
            inputs.append(out)
            if layer[0] == "dense":
                out = dense_forward(out, layer[1], layer[2])
            else:
                out = _ACTIVATIONS[layer[0]][0](out, *layer[1:])
        return out, inputs

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Return the network's output for X, (n_samples, out_features)."""
        return self.forward(np.asarray(X, dtype=self.dtype))[0]

    def gradients(self, X, y, loss="mse", sample_weight=None, delta=1.0):
        """Return ``(loss, [(dW, db) or None per layer])`` for one batch.

        ``loss`` is "mse", "mae", "huber" (with ``delta``), "cross_entropy"
        (y: class labels) or "bce_with_logits".
        """
        X = np.asarray(X, dtype=self.dtype)
        yhat, inputs = self.forward(X)
        if loss == "cross_entropy":
            y = np.asarray(y).reshape(-1)
            value = cross_entropy_loss(yhat, y, sample_weight)
            grad = cross_entropy_grad(yhat, y, sample_weight).astype(self.dtype)
        else:
            y = np.asarray(y, dtype=self.dtype).reshape(yhat.shape)
            extra = (delta,) if loss == "huber" else ()
            value = globals()[f"{loss}_loss"](yhat, y, *extra, sample_weight=sample_weight)
            grad = globals()[f"{loss}_grad"](yhat, y, *extra, sample_weight=sample_weight).astype(self.dtype)
        loss = value
        grads = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer[0] == "dense":
                grad, dW, db = dense_backward(inputs[i], layer[1], grad)
                grads[i] = (dW, db)
            else:
                grad = _ACTIVATIONS[layer[0]][1](inputs[i], grad, *layer[1:])
        return loss, grads

    def train_step(self, X, y, lr, loss="mse", sample_weight=None):
        """One forward + backward + SGD update; returns the loss before it."""
        loss, grads = self.gradients(X, y, loss, sample_weight)
        for layer, grad in zip(self.layers, grads):
            if grad is not None:
                sgd_update(layer[1], grad[0], lr)
                sgd_update(layer[2], grad[1], lr)
        return loss

    def fit_epoch(self, X: ArrayLike, y: ArrayLike, lr: float, batch_size: int,
                  order: np.ndarray | None = None) -> float:
        """One epoch of mini-batch SGD over the rows in ``order``; returns the mean loss."""
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y, dtype=self.dtype)
        n_samples = X.shape[0]
        if order is None:
            order = np.arange(n_samples)
        total = 0.0
        for start in range(0, n_samples, batch_size):
            rows = order[start:start + batch_size]
            total += self.train_step(X[rows], y[rows], lr) * len(rows)
        return total / n_samples
