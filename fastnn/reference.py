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

:class:`ReferenceMLP` runs a whole network on these functions, layer by
layer in Python, and trains it as a hand-written NumPy training loop would:
any loss, sample weights, SGD (momentum, Nesterov, weight decay), Adam and
AdamW with their state, a step and an epoch in a given order. It is the
one NumPy training loop of the project: the oracle of the model tests and
the baseline of the benchmarks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
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
    "poisson_loss",
    "poisson_grad",
    "softmax",
    "sgd_update",
    "sgd_momentum_update",
    "adam_update",
    "optimizer_rule",
    "state_names",
    "ReferenceMLP",
    "train_members_lanes",
]


def dense_forward(X: np.ndarray, W: np.ndarray, b: ArrayLike) -> np.ndarray:
    """Return ``X @ W + b``: (n_samples, in_features) -> (n_samples, out_features).

    Parameters
    ----------
    X : ndarray of shape (n_samples, in_features)
    W : ndarray of shape (in_features, out_features)
    b : array-like of shape (out_features,)

    Returns
    -------
    Y : ndarray of shape (n_samples, out_features)
        ``X @ W + b``, in the dtype NumPy's promotion gives.
    """
    return X @ W + b


def dense_backward(X: np.ndarray, W: np.ndarray, dY: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(dX, dW, db) = (dY @ W.T, X.T @ dY, dY.sum(axis=0))``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, in_features)
        The layer's input in the forward pass.
    W : ndarray of shape (in_features, out_features)
    dY : ndarray of shape (n_samples, out_features)
        The gradient of the loss with respect to the layer's output.

    Returns
    -------
    dX : ndarray of shape (n_samples, in_features)
        ``dY @ W.T``.
    dW : ndarray of shape (in_features, out_features)
        ``X.T @ dY``.
    db : ndarray of shape (out_features,)
        ``dY.sum(axis=0)``.
    """
    return dY @ W.T, X.T @ dY, dY.sum(axis=0)


def relu_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``max(Z, 0)`` elementwise.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, the dtype NumPy's promotion gives.
    """
    return np.maximum(Z, 0)


def relu_backward(Z: np.ndarray, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * (Z > 0)``: the gradient passes where the input was positive.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : ndarray of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, the dtype NumPy's promotion gives.
    """
    return dA * (Z > 0)


def leaky_relu_forward(Z: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Return ``Z if Z > 0 else negative_slope * Z`` elementwise.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input.
    negative_slope : float, default 0.01
        The slope for ``Z <= 0``, at least 0.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, the dtype NumPy's promotion gives.
    """
    return np.where(Z > 0, Z, Z * negative_slope)


def leaky_relu_backward(Z: np.ndarray, dA: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Return ``dA if Z > 0 else negative_slope * dA``.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : ndarray of the shape of Z
        The gradient of the loss with respect to the activation's output.
    negative_slope : float, default 0.01
        The slope for ``Z <= 0``, at least 0.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, the dtype NumPy's promotion gives.
    """
    return np.where(Z > 0, dA, dA * negative_slope)


def tanh_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``tanh(Z)``.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, the dtype NumPy's promotion gives.
    """
    return np.tanh(Z)


def tanh_backward(Z: ArrayLike, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * (1 - tanh(Z) ** 2)``.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : ndarray of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, the dtype NumPy's promotion gives.
    """
    A = np.tanh(Z)
    return dA * (1 - A * A)


def sigmoid_forward(Z: ArrayLike) -> np.ndarray:
    """Return ``1 / (1 + exp(-Z))``, as ``exp(Z) / (1 + exp(Z))`` for negative Z (no overflow).

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, the dtype NumPy's promotion gives.
    """
    Z = np.asarray(Z)
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(Z: ArrayLike, dA: np.ndarray) -> np.ndarray:
    """Return ``dA * s * (1 - s)`` with ``s = sigmoid(Z)``.

    Parameters
    ----------
    Z : ndarray of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : ndarray of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, the dtype NumPy's promotion gives.
    """
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
    """Return ``mean((yhat - y) ** 2)`` as a Python float (weighted by sample).

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    yhat, y = _paired(yhat, y)
    if sample_weight is None:
        return float(np.mean((yhat - y) ** 2))
    return _weighted((yhat - y) ** 2, 2 * (yhat - y), sample_weight)[0]


def mse_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``2 * (yhat - y) / yhat.size``, the gradient of :func:`mse_loss`.

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, the dtype NumPy's promotion gives.
    """
    yhat, y = _paired(yhat, y)
    if sample_weight is None:
        return 2 * (yhat - y) / yhat.size
    return _weighted((yhat - y) ** 2, 2 * (yhat - y), sample_weight)[1]


def mae_loss(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return ``mean(|yhat - y|)``.

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    yhat, y = _paired(yhat, y)
    return _weighted(np.abs(yhat - y), np.sign(yhat - y), sample_weight)[0]


def mae_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``sign(yhat - y) / yhat.size`` (0 where equal), the gradient of :func:`mae_loss`.

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, the dtype NumPy's promotion gives.
    """
    yhat, y = _paired(yhat, y)
    return _weighted(np.abs(yhat - y), np.sign(yhat - y), sample_weight)[1]


def _huber(yhat: np.ndarray, y: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    d = yhat - y
    small = np.abs(d) < delta
    return np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)), np.where(small, d, delta * np.sign(d))


def huber_loss(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> float:
    """Return the mean Huber loss: ``0.5 d**2`` if ``|d| < delta`` else ``delta (|d| - delta / 2)``.

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, greater than 0.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    yhat, y = _paired(yhat, y)
    return _weighted(*_huber(yhat, y, delta), sample_weight)[0]


def huber_grad(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``clip(yhat - y, -delta, delta) / yhat.size``, the gradient of :func:`huber_loss`.

    Parameters
    ----------
    yhat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : ndarray of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, greater than 0.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, the dtype NumPy's promotion gives.
    """
    yhat, y = _paired(yhat, y)
    return _weighted(*_huber(yhat, y, delta), sample_weight)[1]


def _bce(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = logits
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), sigmoid_forward(z) - y


def bce_with_logits_loss(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return ``mean(max(z, 0) - z * y + log(1 + exp(-|z|)))`` for logits z.

    Parameters
    ----------
    logits : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Unnormalised scores.
    y : ndarray of the shape of logits
        Targets in ``[0, 1]``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    logits, y = _paired(logits, y)
    return _weighted(*_bce(logits, y), sample_weight)[0]


def bce_with_logits_grad(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``(sigmoid(z) - y) / z.size``, the gradient of :func:`bce_with_logits_loss`.

    Parameters
    ----------
    logits : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Unnormalised scores.
    y : ndarray of the shape of logits
        Targets in ``[0, 1]``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of logits
        The gradient of the loss with respect to ``logits``, the dtype NumPy's promotion gives.
    """
    logits, y = _paired(logits, y)
    return _weighted(*_bce(logits, y), sample_weight)[1]


def softmax(logits: ArrayLike) -> np.ndarray:
    """Return ``exp(z - max z) / sum(exp(z - max z))`` along the last axis.

    Parameters
    ----------
    logits : array-like of any shape
        Scores; the softmax runs along the last axis.

    Returns
    -------
    ndarray of the shape of logits
        Probabilities, non-negative, summing to 1 along the last axis.
    """
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
    """Return the mean over samples of ``logsumexp(logits[i]) - logits[i, labels[i]]``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Unnormalised scores (the network's output).
    labels : ndarray of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    per_sample, _ = _cross_entropy(logits, labels)
    if sample_weight is None:
        return float(np.mean(per_sample))
    w = np.asarray(sample_weight, dtype=np.float64)       # in float64, as _weighted
    return float(np.sum((w / np.sum(w)) * per_sample))


def cross_entropy_grad(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``(softmax(logits) - onehot(labels)) / n_samples``, or weighted by ``w_i / sum(w)``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Unnormalised scores (the network's output).
    labels : ndarray of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of logits
        The gradient of the loss with respect to ``logits``, the dtype NumPy's promotion gives.
    """
    per_sample, grad = _cross_entropy(logits, labels)
    if sample_weight is None:
        return grad / per_sample.shape[0]
    w = np.asarray(sample_weight, dtype=np.float64)
    return grad * (w / np.sum(w)).astype(grad.dtype)[:, None]


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """``param -= lr * grad``, in place. Returns None.

    Parameters
    ----------
    param : ndarray, float32 or float64
        The parameters, updated in place.
    grad : ndarray of the shape of param
        Their gradient.
    lr : float
        The learning rate.

    Returns
    -------
    None
        ``param`` is updated in place.
    """
    param -= lr * grad


def sgd_momentum_update(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray, lr: float, momentum: float,
                        nesterov: bool = False, weight_decay: float = 0.0) -> None:
    """``torch.optim.SGD`` with momentum (dampening 0), in place on param and momentum_buffer.

    Parameters
    ----------
    param : ndarray, float32 or float64
        The parameters, updated in place.
    grad : ndarray of the shape of param
        Their gradient.
    momentum_buffer : ndarray of the shape and dtype of param
        The velocity (zeros before the first step), updated in place.
    lr : float
        The learning rate, greater than 0.
    momentum : float
        The momentum factor, in ``[0, 1)``.
    nesterov : bool, default False
        Nesterov's momentum.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, at least 0.

    Returns
    -------
    None
        ``param`` and ``momentum_buffer`` are updated in place.
    """
    g = grad + weight_decay * param if weight_decay else np.array(grad, dtype=param.dtype)
    if momentum:                      # PyTorch keeps no buffer without momentum
        momentum_buffer *= momentum
        momentum_buffer += g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g


def adam_update(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int, lr: float,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One ``torch.optim.Adam`` (or AdamW, ``decoupled``) step number ``step`` (t >= 1), in place.

    Plain NumPy, no checks: the arguments are trusted.

    Parameters
    ----------
    param : ndarray of float, any shape
        Updated in place.
    grad : ndarray, shape of ``param``
    exp_avg, exp_avg_sq : ndarray of float, shape of ``param``
        First and second moment estimates, updated in place (zeros before
        the first step).
    step : int
        The number of this update, t >= 1.
    lr : float
    beta1, beta2 : float, default 0.9 and 0.999
    eps : float, default 1e-8
    weight_decay : float, default 0
        An L2 term added to the gradient (Adam), or, with ``decoupled``,
        ``param *= 1 - lr * weight_decay`` first (AdamW).
    decoupled : bool, default False

    Returns
    -------
    None
        ``param``, ``exp_avg`` and ``exp_avg_sq`` are updated in place.
    """
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


def _poisson(log_mean: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.exp(log_mean)
    safe = np.where(y > 0, y, 1)        # xlogy(y, y): 0 at y = 0
    return mean - y * log_mean + np.where(y > 0, y * np.log(safe), 0) - y, mean - y


def poisson_loss(log_mean: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Return half the Poisson deviance ``mean(exp(z) - y z + xlogy(y, y) - y)`` for log-means z.

    Parameters
    ----------
    log_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predicted log-means z (the mean is ``exp(z)``).
    y : ndarray of the shape of log_mean
        The counts, >= 0 (not checked); a 1-D ``y`` of length n_samples also pairs with a
        (n_samples, 1) ``log_mean``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.
    """
    log_mean, y = _paired(log_mean, y)
    return _weighted(*_poisson(log_mean, y), sample_weight)[0]


def poisson_grad(log_mean: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Return ``(exp(z) - y) / z.size``, the gradient of :func:`poisson_loss`.

    Parameters
    ----------
    log_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The predicted log-means z (the mean is ``exp(z)``).
    y : ndarray of the shape of log_mean
        The counts, >= 0 (not checked); a 1-D ``y`` of length n_samples also pairs with a
        (n_samples, 1) ``log_mean``.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of log_mean
        The gradient of the loss with respect to ``log_mean`` (NumPy's dtype rules).
    """
    log_mean, y = _paired(log_mean, y)
    return _weighted(*_poisson(log_mean, y), sample_weight)[1]


_ACTIVATIONS = {
    "identity": (lambda Z: Z, lambda Z, dA: dA),
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
}

_LOSSES: dict[str, tuple[Callable[..., float], Callable[..., np.ndarray]]] = {
    "mse": (mse_loss, mse_grad),
    "mae": (mae_loss, mae_grad),
    "huber": (huber_loss, huber_grad),
    "bce_with_logits": (bce_with_logits_loss, bce_with_logits_grad),
    "poisson": (poisson_loss, poisson_grad),
    "cross_entropy": (cross_entropy_loss, cross_entropy_grad),
}


def optimizer_rule(optimizer: Any) -> tuple[str, float, dict[str, Any]]:
    """``(kind, lr, hyperparameters)`` of an optimizer description, or of a bare learning rate.

    A number is plain SGD with that learning rate. Anything else is read
    through the public face of fastnn's optimizers: ``kind`` ("sgd", "adam"
    or "adamw"), ``lr`` and ``hyperparameters`` (SGD: momentum, nesterov,
    weight_decay; Adam and AdamW: beta1, beta2, eps, weight_decay).

    Parameters
    ----------
    optimizer : SGD, Adam, AdamW, real number, or any object with ``kind``, ``lr`` and ``hyperparameters``
        A bool is not taken as a number.

    Returns
    -------
    kind : str
        ``"sgd"``, ``"adam"`` or ``"adamw"``.
    lr : float
    hyperparameters : dict
        A new dict.

    Raises
    ------
    AttributeError
        If ``optimizer`` is not a number and lacks one of the attributes.
    """
    if isinstance(optimizer, numbers.Real) and not isinstance(optimizer, (bool, np.bool_)):
        return "sgd", float(optimizer), {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    return str(optimizer.kind), float(optimizer.lr), dict(optimizer.hyperparameters)


def state_names(kind: str, hyperparameters: dict[str, Any]) -> tuple[str, ...]:
    """The state buffers a rule keeps, in order: none for SGD without momentum,
    ``("momentum_buffer",)`` with it, ``("exp_avg", "exp_avg_sq")`` for Adam and AdamW.

    Parameters
    ----------
    kind : str
        ``"sgd"``, or anything else for Adam and AdamW (not checked).
    hyperparameters : dict
        For ``"sgd"``, its ``"momentum"`` (missing means 0) decides.

    Returns
    -------
    tuple of str
    """
    if kind == "sgd":
        return ("momentum_buffer",) if hyperparameters.get("momentum", 0.0) else ()
    return ("exp_avg", "exp_avg_sq")


def _loss_rule(loss: Any, delta: float) -> tuple[str, float]:
    """``(kind, delta)`` of a loss name, or of a fastnn loss description (``kind``, ``param``)."""
    if isinstance(loss, str):
        return loss, delta
    kind = str(loss.kind)
    return kind, (float(loss.param) if kind == "huber" else delta)


class ReferenceMLP:
    """A network of Dense layers and activations, trained in plain NumPy.

    The specification of a :class:`fastnn.Sequential` and of its training
    loop, written as a hand-written NumPy loop would be: one function of
    this module per layer, loss and update, called layer by layer in Python.
    It is the oracle of the model tests and the baseline of the benchmarks.

    A step (:meth:`train_step`) is a forward pass, the loss and its gradient
    (any loss of this module, with sample weights: each sample weighted by
    its share ``w_i / sum(w)``; a batch whose weights sum to 0 has loss 0
    and zero gradients), the backward pass, and one update of every W and b
    by the optimizer's rule: plain SGD (``param -= lr * grad``), SGD with
    momentum, Nesterov momentum and weight decay, Adam or AdamW, as
    ``torch.optim`` defines them. An epoch (:meth:`fit_epoch`) is a step
    per mini-batch of ``batch_size`` rows taken in a given order; its loss is
    the mean of the batches' losses weighted by their weight sums (their
    sizes without weights), as ``Sequential.fit`` records it.

    Like a model, the network keeps the state of each optimizer it has
    trained with (the step count and buffers laid out like the parameters:
    :meth:`optimizer_state`), so that training continues where it stopped.

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
        #: The last step's gradients, ``(dW, db)`` per Dense layer (None per activation).
        self.grads: list[tuple[np.ndarray, np.ndarray] | None] = [
            (np.zeros_like(layer[1]), np.zeros_like(layer[2])) if layer[0] == "dense" else None
            for layer in self.layers]
        # id(optimizer) -> (optimizer, {"step": int, name: flat buffer}, {name: views per parameter})
        self._states: dict[int, tuple[Any, dict[str, Any], dict[str, list[np.ndarray]]]] = {}

    @classmethod
    def from_model(cls, model: Sequential) -> ReferenceMLP:
        """A copy of a :class:`fastnn.Sequential`'s layers and parameters."""
        from fastnn.layers import Activation, Dense

        layers: list[tuple[Any, ...]] = []
        for layer in model.layers:
            if isinstance(layer, Dense):
                layers.append(("dense", layer.W, layer.b))
            elif isinstance(layer, Activation):
                leaky = layer.function == "leaky_relu"
                layers.append((layer.function, layer.function_param) if leaky else (layer.function,))
            else:
                raise TypeError(f"ReferenceMLP cannot run {type(layer).__name__}")
        return cls(layers, dtype=model.dtype)

    # -- parameters and state ------------------------------------------------------

    def parameters(self) -> list[np.ndarray]:
        """``[W1, b1, W2, b2, ...]``: the live arrays, in the order of ``Sequential.get_parameters``."""
        return [array for layer in self.layers if layer[0] == "dense" for array in layer[1:]]

    @property
    def n_parameters(self) -> int:
        return sum(array.size for array in self.parameters())

    def get_parameters(self) -> np.ndarray:
        """All parameters, flat, laid out as ``Sequential.get_parameters()`` (a copy)."""
        return np.concatenate([array.ravel() for array in self.parameters()])

    def get_gradients(self) -> np.ndarray:
        """The last step's gradients, flat, laid out as the parameters (a copy)."""
        return np.concatenate([array.ravel() for pair in self.grads if pair is not None for array in pair])

    def _state(self, optimizer: Any, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
        """The state kept for ``optimizer`` (zeros, step 0, the first time), and views of
        its flat buffers shaped like each parameter."""
        entry = self._states.get(id(optimizer))
        if entry is None or entry[0] is not optimizer:
            state: dict[str, Any] = {"step": 0}
            state.update({name: np.zeros(self.n_parameters, dtype=self.dtype) for name in names})
            entry = (optimizer, state, self._views(state, names))
            self._states[id(optimizer)] = entry
        return entry[1], entry[2]

    def _views(self, state: dict[str, Any], names: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
        views: dict[str, list[np.ndarray]] = {name: [] for name in names}
        offset = 0
        for param in self.parameters():
            for name in names:
                views[name].append(state[name][offset:offset + param.size].reshape(param.shape))
            offset += param.size
        return views

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """``{"step": int, <name>: flat buffer, ...}`` for ``optimizer`` (copies), as
        ``Sequential.optimizer_state``; ``{"step": 0}`` before its first step."""
        entry = self._states.get(id(optimizer))
        if entry is None or entry[0] is not optimizer:
            return {"step": 0}
        return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in entry[1].items()}

    def set_optimizer_state(self, optimizer: Any, state: dict[str, Any]) -> None:
        """Install a state for ``optimizer`` (copied; buffers missing from it are zeros)."""
        kind, _, hyperparameters = optimizer_rule(optimizer)
        names = state_names(kind, hyperparameters)
        if not names:
            return                       # a stateless rule: nothing to keep
        mine, _ = self._state(optimizer, names)
        mine["step"] = int(state["step"])
        for name in names:
            mine[name][...] = state[name] if name in state else 0

    # -- computing -----------------------------------------------------------------

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

    def gradients(self, X: ArrayLike, y: ArrayLike, loss: Any = "mse", sample_weight: ArrayLike | None = None,
                  delta: float = 1.0) -> tuple[float, list[tuple[np.ndarray, np.ndarray] | None]]:
        """Return ``(loss, [(dW, db) or None per layer])`` for one batch.

        ``loss`` is "mse", "mae", "huber" (with ``delta``), "cross_entropy"
        (y: class labels) or "bce_with_logits", or a fastnn loss description
        (its ``kind`` and ``param``).
        """
        kind, delta = _loss_rule(loss, delta)
        X = np.asarray(X, dtype=self.dtype)
        yhat, inputs = self.forward(X)
        if kind == "cross_entropy":
            y = np.asarray(y).reshape(-1)
        else:
            y = np.asarray(y, dtype=self.dtype).reshape(yhat.shape)
        loss_of, grad_of = _LOSSES[kind]
        extra = (delta,) if kind == "huber" else ()
        if sample_weight is not None and not np.sum(np.asarray(sample_weight, dtype=np.float64)) > 0:
            value, grad = 0.0, np.zeros_like(yhat)          # no weight: nothing to learn from
        else:
            value = loss_of(yhat, y, *extra, sample_weight=sample_weight)
            grad = grad_of(yhat, y, *extra, sample_weight=sample_weight).astype(self.dtype)
        grads: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer[0] == "dense":
                grad, dW, db = dense_backward(inputs[i], layer[1], grad)
                grads[i] = (dW, db)
            else:
                grad = _ACTIVATIONS[layer[0]][1](inputs[i], grad, *layer[1:])
        return value, grads

    def loss_gradient(self, X: ArrayLike, y: ArrayLike, *, loss: Any = "mse", sample_weight: ArrayLike | None = None,
                      l2: float = 0.0, delta: float = 1.0) -> float:
        """The loss over the whole of X and y plus ``l2 / 2 * sum(W ** 2)`` over the Dense
        weights (not the biases), as ``Sequential.loss_gradient`` computes it in one
        compiled call; its gradient (``l2 * W`` added to each ``dW``) is kept in
        :attr:`grads`. The full batch at once: the compiled call's chunks agree with it
        to rounding."""
        value, grads = self.gradients(X, y, loss, sample_weight, delta)
        for layer, pair in zip(self.layers, grads):
            if pair is not None and l2:
                W = layer[1]
                value += 0.5 * l2 * float(np.sum(W.astype(np.float64) ** 2))
                pair[0][...] += (l2 * W).astype(self.dtype)
        self.grads = grads
        return value

    def update(self, grads: list[tuple[np.ndarray, np.ndarray] | None], optimizer: Any = 0.01, *,
               check_finite: bool = False) -> None:
        """One step of ``optimizer``'s rule on every W and b, with the gradients of :meth:`gradients`.

        ``optimizer`` is a learning rate (plain SGD) or an optimizer
        description (:func:`optimizer_rule`); its state, kept by this
        network, advances by one step. With ``check_finite``, an update that
        would make a parameter or a state value non-finite is refused as
        ``Sequential.train_step`` refuses it: FloatingPointError, and the
        parameters and the state are left as they were.
        """
        if optimizer.__class__ is float and not check_finite:
            # Plain SGD from a bare learning rate: no state, no rule to look up.
            for layer, pair in zip(self.layers, grads):
                if pair is not None:
                    sgd_update(layer[1], pair[0], optimizer)
                    sgd_update(layer[2], pair[1], optimizer)
            return
        kind, lr, hyper = optimizer_rule(optimizer)
        flat_grads = [array for pair in grads if pair is not None for array in pair]
        names = state_names(kind, hyper)
        params = self.parameters()
        if not names and not check_finite:
            self._apply(kind, lr, hyper, 1, params, flat_grads, [])
            return
        # A stateless rule checked for finiteness works on a throwaway state.
        created = id(optimizer) not in self._states
        state, views = self._state(optimizer, names) if names else ({"step": 0}, {})
        if check_finite:
            # The rule on copies first: nothing is written unless every new value is finite.
            targets = [param.copy() for param in params]
            buffers = {name: state[name].copy() for name in names}
            target_views = self._views(buffers, names)
        else:
            targets, buffers, target_views = params, state, views
        self._apply(kind, lr, hyper, state["step"] + 1, targets, flat_grads, [target_views[name] for name in names])
        if check_finite:
            if not all(np.all(np.isfinite(array)) for array in targets + [buffers[name] for name in names]):
                if created and names:
                    del self._states[id(optimizer)]     # a refused first step leaves no state
                raise FloatingPointError("the update would make a parameter non-finite")
            for param, new in zip(params, targets):
                param[...] = new
            for name in names:
                state[name][...] = buffers[name]
        state["step"] += 1

    @staticmethod
    def _apply(kind: str, lr: float, hyper: dict[str, Any], step: int, params: list[np.ndarray],
               grads: list[np.ndarray], buffers: list[list[np.ndarray]]) -> None:
        """Update each parameter array in place by the rule ``kind`` (step ``step``,
        counted from 1), with its gradient and its views of the state buffers."""
        if kind != "sgd":
            beta1, beta2, eps, weight_decay = hyper["beta1"], hyper["beta2"], hyper["eps"], hyper["weight_decay"]
            for param, grad, exp_avg, exp_avg_sq in zip(params, grads, *buffers):
                adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                            decoupled=kind == "adamw")
        elif buffers:
            momentum, nesterov, weight_decay = hyper["momentum"], bool(hyper["nesterov"]), hyper["weight_decay"]
            for param, grad, momentum_buffer in zip(params, grads, *buffers):
                sgd_momentum_update(param, grad, momentum_buffer, lr, momentum, nesterov, weight_decay)
        else:
            for param, grad in zip(params, grads):
                sgd_update(param, grad + hyper["weight_decay"] * param if hyper["weight_decay"] else grad, lr)

    def train_step(self, X: ArrayLike, y: ArrayLike, optimizer: Any = 0.01, loss: Any = "mse",
                   sample_weight: ArrayLike | None = None, delta: float = 1.0, *, check_finite: bool = False) -> float:
        """One forward + backward + update on one batch; returns the loss before the update.

        ``optimizer`` is a learning rate (plain SGD) or an optimizer
        description; ``loss``, ``sample_weight`` and ``delta`` as in
        :meth:`gradients`. The gradients are kept in :attr:`grads`. With
        ``check_finite``, a step whose loss or update would not be finite
        raises FloatingPointError and changes nothing (gradients included),
        as ``Sequential.train_step``.
        """
        value, grads = self.gradients(X, y, loss, sample_weight, delta)
        if check_finite and not math.isfinite(value):
            raise FloatingPointError("the loss is not finite")
        self.update(grads, optimizer, check_finite=check_finite)
        self.grads = grads
        return value

    def fit_epoch(self, X: ArrayLike, y: ArrayLike, optimizer: Any, batch_size: int, order: np.ndarray | None = None,
                  loss: Any = "mse", sample_weight: ArrayLike | None = None, delta: float = 1.0, *,
                  check_finite: bool = False, on_batch: Callable[[np.ndarray], Any] | None = None) -> float:
        """One epoch of mini-batch training over the rows in ``order`` (None: in order).

        A :meth:`train_step` per batch of ``batch_size`` rows (the last may
        be shorter); ``on_batch(rows)``, if given, is called before each.
        Returns the mean of the batches' losses weighted by their weight sums
        (their sizes without weights), as ``History.loss`` records it. With
        ``check_finite``, a step that would diverge raises FloatingPointError
        and leaves the parameters and the state as before it, but the
        gradients are that step's (as in ``Sequential.fit``).
        """
        kind, _ = _loss_rule(loss, delta)
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y) if kind == "cross_entropy" else np.asarray(y, dtype=self.dtype)
        weights = None if sample_weight is None else np.asarray(sample_weight)
        n_samples = X.shape[0]
        if order is None:
            order = np.arange(n_samples)
        total = total_weight = 0.0
        # The running weighted mean, for when the plain sum overflows (weights
        # rescaled by 2**-64 whenever their total passes 1e300), as the walker.
        running = scaled_weight = 0.0
        scale = 1.0
        for start in range(0, n_samples, batch_size):
            rows = order[start:start + batch_size]
            if on_batch is not None:
                on_batch(rows)
            batch_weights = None if weights is None else weights[rows]
            value, grads = self.gradients(X[rows], y[rows], loss, batch_weights, delta)
            if check_finite and not math.isfinite(value):
                raise FloatingPointError("the loss is not finite")
            self.grads = grads
            self.update(grads, optimizer, check_finite=check_finite)
            batch_weight = len(rows) if batch_weights is None else float(np.sum(batch_weights, dtype=np.float64))
            total += value * batch_weight
            total_weight += batch_weight
            if batch_weight > 0:
                scaled_weight += batch_weight * scale
                running += (value - running) * (batch_weight * scale / scaled_weight)
                if scaled_weight > 1e300:
                    scaled_weight *= 2.0**-64
                    scale *= 2.0**-64
        if math.isfinite(total) and math.isfinite(total_weight):
            return total / total_weight if total_weight > 0 else 0.0
        return running


#: Plan fields and codes of the walker (fastnn/_walker.pxi), as the twin below reads a plan.
_PLAN_KIND, _PLAN_IN, _PLAN_OUT, _PLAN_W, _PLAN_B, _PLAN_FN = 0, 1, 2, 3, 4, 6
_STATUS_OK, _STATUS_SLOW, _STATUS_BAD_LOSS, _STATUS_BAD_UPDATE = 0, -1, -3, -4


def _plan_activation(fn: int, param: float) -> tuple[Callable, Callable]:
    """The forward function of a plan's activation code and its derivative through the output A."""
    if fn == 1:
        return relu_forward, lambda A, dA: dA * (A > 0)
    if fn == 2:
        return (lambda Z: np.where(Z > 0, Z, Z * Z.dtype.type(param)),
                lambda A, dA: np.where(A > 0, dA, dA * A.dtype.type(param)))
    if fn == 3:
        return np.tanh, lambda A, dA: dA * (1 - A * A)
    if fn == 4:
        return (lambda Z: 1 / (1 + np.exp(-Z))), lambda A, dA: dA * (A * (1 - A))
    return (lambda Z: Z), lambda A, dA: dA


def train_members_lanes(net: Any, members: ArrayLike, params: np.ndarray, grads: np.ndarray, Xs: list,
                        ys: list, orders: list, rngs: list, lrs: ArrayLike, weight_decays: ArrayLike,
                        batch_size: int, epochs: int, losses: np.ndarray, status: np.ndarray,
                        epochs_done: np.ndarray, done: np.ndarray) -> int:
    """Several members of one network trained with MSE and SGD, one after the other in NumPy:
    the twin of the walker's ``train_members_lanes`` (which trains them side by side in SIMD lanes).

    Member i is row ``members[i]`` of ``params`` and ``grads`` (a network laid out by
    ``net.plan``: Dense rows with their activation folded in), trained ``epochs`` epochs on
    ``Xs[i]``, ``ys[i]`` in batches of ``batch_size`` rows, epoch e in the order
    ``orders[i][e]``, else ``rngs[i].permutation(n)``, else in order: each batch a forward
    pass, ``mse_grad``, the backward pass, and ``p -= lr * (g + weight_decay * p)``.

    Parameters
    ----------
    net : the walker's Network
        Only its ``plan`` and ``fn_params`` are read.
    members : int array (m,)
    params, grads : (K, P) arrays, updated in place
    Xs, ys : lists of m arrays, (n, n_in) and (n, n_out) or (n,)
    orders, rngs : lists of m, (epochs, n) int arrays / numpy Generators / None
    lrs, weight_decays : (m,) floats
    batch_size, epochs : int
    losses : float64 (m, >= epochs)
        Out: each epoch's mean batch loss (weighted by the batch's rows).
    status : int (m,)
        Out: 0, or -3 (a loss not finite) / -4 (an update not finite), after which
        the member stopped with its parameters from before that step (its gradients
        the last good step's after -3, the refused step's after -4).
    epochs_done, done : int (m,)
        Out: epochs completed; rows used in the epoch that stopped the member (n if none did).

    Returns
    -------
    int
        0; or -1 (nothing done) for a plan with a row that is not a Dense layer.
    """
    plan = np.asarray(net.plan)
    if np.any(plan[:, _PLAN_KIND] != 0):
        return _STATUS_SLOW
    rules = [_plan_activation(int(rec[_PLAN_FN]), float(param)) for rec, param in zip(plan, net.fn_params)]
    lrs, weight_decays = np.asarray(lrs, dtype=np.float64), np.asarray(weight_decays, dtype=np.float64)
    for i, row in enumerate(np.asarray(members)):
        X = np.asarray(Xs[i])
        n = X.shape[0]
        y = np.asarray(ys[i]).reshape(n, -1)
        p, g = params[row], grads[row]
        lr, wd = float(lrs[i]), float(weight_decays[i])
        status[i], epochs_done[i], done[i] = _STATUS_OK, 0, 0
        for e in range(epochs):
            if orders[i] is not None:
                order = np.asarray(orders[i][e])
            elif rngs[i] is not None:
                order = rngs[i].permutation(n)
            else:
                order = np.arange(n)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start:start + batch_size]
                inputs, outputs = [], []
                A = X[rows]
                for rec, (forward, _) in zip(plan, rules):
                    k, m, w_off, b_off = (int(rec[f]) for f in (_PLAN_IN, _PLAN_OUT, _PLAN_W, _PLAN_B))
                    inputs.append(A)
                    A = forward(dense_forward(A, p[w_off:w_off + k * m].reshape(k, m), p[b_off:b_off + m]))
                    outputs.append(A)
                loss = mse_loss(A, y[rows])
                if not np.isfinite(loss):
                    status[i], epochs_done[i], done[i] = _STATUS_BAD_LOSS, e, start
                    break
                dA = mse_grad(A, y[rows])
                for rec, (_, backward), inp, out in reversed(list(zip(plan, rules, inputs, outputs))):
                    k, m, w_off, b_off = (int(rec[f]) for f in (_PLAN_IN, _PLAN_OUT, _PLAN_W, _PLAN_B))
                    dX, dW, db = dense_backward(inp, p[w_off:w_off + k * m].reshape(k, m), backward(out, dA))
                    g[w_off:w_off + k * m] = dW.ravel()
                    g[b_off:b_off + m] = db
                    dA = dX
                updated = p - lr * (g + wd * p)
                if not np.all(np.isfinite(updated)):
                    status[i], epochs_done[i], done[i] = _STATUS_BAD_UPDATE, e, start
                    break
                p[...] = updated
                total += loss * len(rows)
            if status[i] != _STATUS_OK:
                break
            losses[i, e] = total / n
            epochs_done[i], done[i] = e + 1, n
    return _STATUS_OK
