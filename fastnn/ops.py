"""The validated kernels: one call each, with NumPy twins in :mod:`fastnn.reference`.

Each function accepts array-likes, checks dimensions, shapes, dtypes and
finiteness (raising ``ValueError``/``TypeError`` that name the argument),
converts once to a C-contiguous float32 or float64 array (float32 when all
float inputs are float32 or float16, float64 otherwise), allocates the
output and calls the compiled loop in :mod:`fastnn._ops`, which runs
without the GIL (large Dense products call a BLAS ``gemm``, see
:mod:`fastnn._blas`). Read-only, strided, Fortran-ordered and byte-swapped
arrays are accepted and give the same result as contiguous ones.

Every call first tries the compiled common case (``_ops.*_plain``): plain
float32/float64 arrays are recognised from their flags, dtype and shape and
checked for finiteness in the kernel's own pass (the activations, the
elementwise losses' gradients; the elementwise losses by the loss being
finite; the Dense products by their outputs' first rows and columns), in
one read-only pass before it (sgd_update, the cross-entropy's logits), or in
the update's read-only checking pass (adam_update, sgd_momentum_update);
anything else (or a non-finite value) takes the validating path, once,
which converts or refuses it by name. See docs/guide/kernels.rst.
"""

from __future__ import annotations

import importlib

import numpy as np
from numpy.typing import ArrayLike

from fastnn import _ops, _walker
from fastnn._blas import find_blas
from fastnn.validation import (
    as_numeric_array,
    check_adam_hyperparameters,
    check_array,
    check_bool,
    check_labels,
    check_non_negative,
    check_learning_rate,
    check_number,
    check_option,
    check_positive_int,
    check_sample_weight,
    check_sgd_hyperparameters,
    result_float_dtype,
)

# Large products go to the same BLAS the models use (see fastnn._blas).
_ops.set_blas(find_blas())

_FN_RELU = _ops.FN_CODES["relu"]
_LOSS_MSE, _LOSS_MAE, _LOSS_HUBER, _LOSS_BCE, _LOSS_POISSON = (
    _ops.LOSS_CODES[kind] for kind in ("mse", "mae", "huber", "bce_with_logits", "poisson"))

# The common case runs the checked activation loops of the walker build this
# CPU runs best (the same loops compiled for AVX2 or AVX-512: the same bits).
_ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))

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
    "sgd_update",
    "sgd_momentum_update",
    "adam_update",
]


def _common_dtype(**arrays) -> np.dtype:
    return result_float_dtype(*(as_numeric_array(v, k) for k, v in arrays.items()))


def _check_dense(X: ArrayLike, W: ArrayLike, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    X = check_array(X, "X", ndim=2, dtype=dtype, shape_hint="(n_samples, in_features)")
    W = check_array(W, "W", ndim=2, dtype=dtype, shape_hint="(in_features, out_features)")
    if X.shape[1] != W.shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features (columns) but W has {W.shape[0]} rows; "
            f"expected X.shape[1] == W.shape[0] (in_features), got X.shape={X.shape}, W.shape={W.shape}")
    return X, W


def dense_forward(X: ArrayLike, W: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Dense layer forward pass, ``Y = X @ W + b``.

    Parameters
    ----------
    X : array-like, shape (n_samples, in_features)
    W : array-like, shape (in_features, out_features)
    b : array-like, shape (out_features,)

    Returns
    -------
    Y : ndarray, shape (n_samples, out_features), float32 or float64
    """
    out = _ops.dense_forward_plain(X, W, b)
    if out is not None:
        return out
    dtype = _common_dtype(X=X, W=W, b=b)
    X, W = _check_dense(X, W, dtype)
    b = check_array(b, "b", ndim=1, dtype=dtype, shape_hint="(out_features,)")
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b must have shape ({W.shape[1]},) to match W's out_features, got {b.shape}")
    out = np.empty((X.shape[0], W.shape[1]), dtype=dtype)
    _ops.dense_forward(X, W, b, out)
    return out


def dense_backward(X: ArrayLike, W: ArrayLike, dY: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense layer backward pass.

    Parameters
    ----------
    X : array-like, shape (n_samples, in_features)
        The layer's input in the forward pass.
    W : array-like, shape (in_features, out_features)
    dY : array-like, shape (n_samples, out_features)
        Gradient of the loss with respect to the layer's output.

    Returns
    -------
    dX : ndarray, shape (n_samples, in_features), ``dY @ W.T``
    dW : ndarray, shape (in_features, out_features), ``X.T @ dY``
    db : ndarray, shape (out_features,), ``dY.sum(axis=0)``
    """
    grads = _ops.dense_backward_plain(X, W, dY)
    if grads is not None:
        return grads
    dtype = _common_dtype(X=X, W=W, dY=dY)
    X, W = _check_dense(X, W, dtype)
    dY = check_array(dY, "dY", ndim=2, dtype=dtype, shape_hint="(n_samples, out_features)")
    if dY.shape != (X.shape[0], W.shape[1]):
        raise ValueError(
            f"dY must have shape (n_samples, out_features) = ({X.shape[0]}, {W.shape[1]}) "
            f"to match X and W, got {dY.shape}")
    dX = np.empty_like(X)
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype=dtype)
    _ops.dense_backward(X, W, dY, dX, dW, db)
    return dX, dW, db


def relu_forward(Z: ArrayLike) -> np.ndarray:
    """ReLU, ``max(Z, 0)`` elementwise, for an array of any shape (1-D or more).

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, float32 when every input is float32 (or float16),
        else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    out = _ops.activation_forward_plain(_FN_RELU, 0.0, Z)
    if out is not None:
        return out
    dtype = _common_dtype(Z=Z)
    Z = check_array(Z, "Z", ndim=tuple(range(1, 33)), dtype=dtype)
    out = np.empty_like(Z)
    _ops.relu_forward(Z.reshape(-1), out.reshape(-1))
    return out


def relu_backward(Z: ArrayLike, dA: ArrayLike) -> np.ndarray:
    """Gradient of ReLU: ``dA * (Z > 0)``, where ``Z`` is the ReLU's input.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : array-like of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, float32 when every input is float32 (or
        float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    out = _ops.activation_backward_plain(_FN_RELU, 0.0, Z, dA)
    if out is not None:
        return out
    dtype = _common_dtype(Z=Z, dA=dA)
    Z = check_array(Z, "Z", ndim=tuple(range(1, 33)), dtype=dtype)
    dA = check_array(dA, "dA", ndim=Z.ndim, dtype=dtype, shape_hint=str(Z.shape))
    if dA.shape != Z.shape:
        raise ValueError(f"dA must have the shape of Z, {Z.shape}, got {dA.shape}")
    out = np.empty_like(Z)
    _ops.relu_backward(Z.reshape(-1), dA.reshape(-1), out.reshape(-1))
    return out


def _activation(name: str, Z, param: float = 0.0) -> np.ndarray:
    out = _ops.activation_forward_plain(_ops.FN_CODES[name], param, Z)
    if out is not None:
        return out
    dtype = _common_dtype(Z=Z)
    Z = check_array(Z, "Z", ndim=tuple(range(1, 33)), dtype=dtype)
    # Converted, Z is plain: the same compiled loops as the common case (whose tanh and
    # sigmoid fuse multiply-adds in the AVX2 and AVX-512 builds), so the same bits.
    out = _ops.activation_forward_plain(_ops.FN_CODES[name], param, np.ascontiguousarray(Z))
    if out is None:  # pragma: no cover - check_array refused what the plain path would
        raise AssertionError("a checked array did not take the compiled common case")
    return out


def _activation_grad(name: str, Z, dA, param: float = 0.0) -> np.ndarray:
    out = _ops.activation_backward_plain(_ops.FN_CODES[name], param, Z, dA)
    if out is not None:
        return out
    dtype = _common_dtype(Z=Z, dA=dA)
    Z = check_array(Z, "Z", ndim=tuple(range(1, 33)), dtype=dtype)
    dA = check_array(dA, "dA", ndim=Z.ndim, dtype=dtype, shape_hint=str(Z.shape))
    if dA.shape != Z.shape:
        raise ValueError(f"dA must have the shape of Z, {Z.shape}, got {dA.shape}")
    out = _ops.activation_backward_plain(_ops.FN_CODES[name], param, np.ascontiguousarray(Z),
                                        np.ascontiguousarray(dA))
    if out is None:  # pragma: no cover - check_array refused what the plain path would
        raise AssertionError("checked arrays did not take the compiled common case")
    return out


def _check_slope(negative_slope) -> float:
    return check_number(negative_slope, "negative_slope", low=0.0)


def leaky_relu_forward(Z: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """LeakyReLU, ``Z if Z > 0 else negative_slope * Z`` (``negative_slope >= 0``).

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input.
    negative_slope : float, default 0.01
        The slope for ``Z <= 0``, at least 0.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, float32 when every input is float32 (or float16),
        else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation("leaky_relu", Z, _check_slope(negative_slope))


def leaky_relu_backward(Z: ArrayLike, dA: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """Gradient of LeakyReLU: ``dA if Z > 0 else negative_slope * dA``.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : array-like of the shape of Z
        The gradient of the loss with respect to the activation's output.
    negative_slope : float, default 0.01
        The slope for ``Z <= 0``, at least 0.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, float32 when every input is float32 (or
        float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation_grad("leaky_relu", Z, dA, _check_slope(negative_slope))


def tanh_forward(Z: ArrayLike) -> np.ndarray:
    """``tanh(Z)`` elementwise.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, float32 when every input is float32 (or float16),
        else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation("tanh", Z)


def tanh_backward(Z: ArrayLike, dA: ArrayLike) -> np.ndarray:
    """Gradient of tanh: ``dA * (1 - tanh(Z) ** 2)``.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : array-like of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, float32 when every input is float32 (or
        float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation_grad("tanh", Z, dA)


def sigmoid_forward(Z: ArrayLike) -> np.ndarray:
    """The logistic sigmoid ``1 / (1 + exp(-Z))``, computed without overflow for any Z.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input.

    Returns
    -------
    A : ndarray of the shape of Z
        The activation's output, float32 when every input is float32 (or float16),
        else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation("sigmoid", Z)


def sigmoid_backward(Z: ArrayLike, dA: ArrayLike) -> np.ndarray:
    """Gradient of the sigmoid: ``dA * s * (1 - s)`` with ``s = sigmoid(Z)``.

    Parameters
    ----------
    Z : array-like of any shape (1-D or more)
        The activation's input in the forward pass.
    dA : array-like of the shape of Z
        The gradient of the loss with respect to the activation's output.

    Returns
    -------
    dZ : ndarray of the shape of Z
        The gradient with respect to Z, float32 when every input is float32 (or
        float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _activation_grad("sigmoid", Z, dA)


def _check_pair(yhat, y, name="yhat"):
    """Check a prediction (called ``name`` in messages) and its target y."""
    dtype = _common_dtype(**{name: yhat, "y": y})
    yhat = check_array(yhat, name, ndim=(1, 2), dtype=dtype)
    y = check_array(y, "y", ndim=(1, 2), dtype=dtype)
    if y.shape != yhat.shape:
        if y.ndim == 1 and yhat.ndim == 2 and yhat.shape == (y.shape[0], 1):
            y = y.reshape(-1, 1)
        else:
            raise ValueError(f"y must have the shape of {name}, {yhat.shape}, got {y.shape}")
    return yhat, y


#: The losses :func:`elementwise_loss` computes, each a mean over every element of ``yhat``.
ELEMENTWISE_LOSSES = ("mse", "mae", "huber", "bce_with_logits", "poisson")


def elementwise_loss(kind: str, yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
                     param: float = 0.0, want_grad: bool = False, name: str = "yhat"):
    """The loss ``kind`` of ``yhat`` against ``y``, or its gradient with respect to ``yhat``.

    The one validated call behind :func:`mse_loss`, :func:`mae_loss`,
    :func:`huber_loss`, :func:`bce_with_logits_loss`, :func:`poisson_loss`, their gradients, and
    the losses of :mod:`fastnn.losses` of these kinds. It is public but not
    in ``__all__``, whose names are the kernel calls that
    :mod:`fastnn.reference` mirrors one for one.

    Parameters
    ----------
    kind : {"mse", "mae", "huber", "bce_with_logits", "poisson"}
    yhat : array-like, 1-D or 2-D (rows are samples)
    y : array-like, the shape of ``yhat`` (or 1-D when ``yhat`` is (n_samples, 1))
    sample_weight : array-like (n_samples,), optional
        The loss is then ``sum(w_i * l_i) / sum(w_i)``, with ``l_i`` the
        mean over sample i's elements.
    param : float
        Huber's ``delta`` (> 0); the other kinds have no parameter and ignore it.
    want_grad : bool
        Return the gradient (the shape of ``yhat``) instead of the loss.
    name : str
        What ``yhat`` is called in error messages (``"logits"`` for bce_with_logits).

    Returns
    -------
    float, or ndarray with ``want_grad=True``
    """
    kind = check_option(kind, "kind", ELEMENTWISE_LOSSES)
    param = check_number(param, "delta", low=0.0, low_open=True) if kind == "huber" else 0.0
    want_grad = check_bool(want_grad, "want_grad")
    prediction, target = _check_pair(yhat, y, name)
    if kind == "poisson":
        check_non_negative(target, "y", "for the Poisson loss")
    shape, dtype = prediction.shape, prediction.dtype
    rows = prediction.reshape(shape[0], -1)
    w = check_sample_weight(sample_weight, shape[0], dtype)
    empty = np.empty(0, dtype=dtype)
    grad = np.empty_like(rows) if want_grad else np.empty((0, rows.shape[1]), dtype=dtype)
    loss = _ops.loss_and_grad(_ops.LOSS_CODES[kind], param, rows, target.reshape(-1),
                                  empty if w is None else w, grad)
    return grad.reshape(shape) if want_grad else loss


def _unweighted_loss(kind: str, yhat: ArrayLike, y: ArrayLike, *, param: float = 0.0, name: str = "yhat") -> float:
    """The unweighted elementwise loss ``kind`` of arguments the common case handed back.

    Validates as :func:`elementwise_loss` (the same messages, in the same
    order), converts once to C-contiguous native arrays of the computing dtype
    and runs the common case's loop on them (``_ops.loss_plain``: the value
    alone, summed in lanes), so that a strided, Fortran, byte-swapped, read-only
    copy or a list gives the bits a plain array of the same values gives. A loss
    that is not finite (an overflow of finite inputs) comes from
    :func:`elementwise_loss`.
    """
    kind = check_option(kind, "kind", ELEMENTWISE_LOSSES)
    param = check_number(param, "delta", low=0.0, low_open=True) if kind == "huber" else 0.0
    prediction, target = _check_pair(yhat, y, name)
    if kind == "poisson":
        check_non_negative(target, "y", "for the Poisson loss")
    native = prediction.dtype.newbyteorder("=")
    loss = _ops.loss_plain(_ops.LOSS_CODES[kind], float(param), np.ascontiguousarray(prediction, dtype=native),
                           np.ascontiguousarray(target, dtype=native))
    if loss is not None:
        return loss
    return elementwise_loss(kind, prediction, target, param=param, name=name)


def mse_loss(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean squared error, ``mean((yhat - y) ** 2)`` (weighted by sample).

    ``yhat`` and ``y`` have the same shape, 1-D or 2-D (rows are samples); a
    1-D ``y`` of length n_samples also pairs with a (n_samples, 1) ``yhat``.
    With ``sample_weight`` (n_samples,), the loss is ``sum(w_i * l_i) /
    sum(w_i)`` with ``l_i`` the mean over sample i's outputs. Summed in
    double precision.

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        loss = _ops.loss_plain(_LOSS_MSE, 0.0, yhat, y)
        if loss is not None:
            return loss
        return _unweighted_loss("mse", yhat, y)
    return elementwise_loss("mse", yhat, y, sample_weight)


def mse_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`mse_loss` with respect to ``yhat``: ``2 * (yhat - y) / yhat.size`` unweighted.

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        grad = _ops.loss_grad_plain(_LOSS_MSE, 0.0, yhat, y)
        if grad is not None:
            return grad
    return elementwise_loss("mse", yhat, y, sample_weight, want_grad=True)


def mae_loss(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean absolute error, ``mean(|yhat - y|)`` (shapes and weights as :func:`mse_loss`).

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        loss = _ops.loss_plain(_LOSS_MAE, 0.0, yhat, y)
        if loss is not None:
            return loss
        return _unweighted_loss("mae", yhat, y)
    return elementwise_loss("mae", yhat, y, sample_weight)


def mae_grad(yhat: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`mae_loss`: ``sign(yhat - y) / yhat.size`` unweighted (0 where equal).

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        grad = _ops.loss_grad_plain(_LOSS_MAE, 0.0, yhat, y)
        if grad is not None:
            return grad
    return elementwise_loss("mae", yhat, y, sample_weight, want_grad=True)


def huber_loss(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> float:
    """Huber loss, as ``torch.nn.HuberLoss``: ``0.5 d**2`` where ``|d| < delta``, else
    ``delta * (|d| - 0.5 * delta)``, with ``d = yhat - y``, averaged.

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, greater than 0.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        loss = _ops.loss_plain(_LOSS_HUBER, delta, yhat, y)
        if loss is not None:
            return loss
        return _unweighted_loss("huber", yhat, y, param=delta)
    return elementwise_loss("huber", yhat, y, sample_weight, param=delta)


def huber_grad(yhat: ArrayLike, y: ArrayLike, delta: float = 1.0, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`huber_loss`: ``clip(d, -delta, delta) / yhat.size`` unweighted.

    Parameters
    ----------
    yhat : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predictions.
    y : array-like of the shape of yhat
        The targets; a 1-D ``y`` of length n_samples also pairs with a (n_samples, 1)
        ``yhat``.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, greater than 0.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of yhat
        The gradient of the loss with respect to ``yhat``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        grad = _ops.loss_grad_plain(_LOSS_HUBER, delta, yhat, y)
        if grad is not None:
            return grad
    return elementwise_loss("huber", yhat, y, sample_weight, param=delta, want_grad=True)


def bce_with_logits_loss(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Binary cross-entropy on logits, as ``torch.nn.BCEWithLogitsLoss``:
    ``mean(max(z, 0) - z * y + log(1 + exp(-|z|)))``, stable for any logits.

    Parameters
    ----------
    logits : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Unnormalised scores.
    y : array-like of the shape of logits
        Targets in ``[0, 1]``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        loss = _ops.loss_plain(_LOSS_BCE, 0.0, logits, y)
        if loss is not None:
            return loss
        return _unweighted_loss("bce_with_logits", logits, y, name="logits")
    return elementwise_loss("bce_with_logits", logits, y, sample_weight, name="logits")


def bce_with_logits_grad(logits: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`bce_with_logits_loss`: ``(sigmoid(z) - y) / z.size`` unweighted.

    Parameters
    ----------
    logits : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Unnormalised scores.
    y : array-like of the shape of logits
        Targets in ``[0, 1]``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of logits
        The gradient of the loss with respect to ``logits``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if sample_weight is None:
        grad = _ops.loss_grad_plain(_LOSS_BCE, 0.0, logits, y)
        if grad is not None:
            return grad
    return elementwise_loss("bce_with_logits", logits, y, sample_weight, want_grad=True, name="logits")


def poisson_loss(log_mean: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Half the Poisson deviance of counts ``y >= 0`` at the mean ``exp(log_mean)`` (log link), as
    scikit-learn's: ``mean(exp(z) - y * z + xlogy(y, y) - y)``, 0 where ``exp(z) == y``.

    Parameters
    ----------
    log_mean : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predicted log-means z (the mean is ``exp(z)``).
    y : array-like of the shape of log_mean
        The counts, >= 0; a 1-D ``y`` of length n_samples also pairs with a
        (n_samples, 1) ``log_mean``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value,
        or ``y`` has a negative value (the message names it); nothing is computed.
    """
    if sample_weight is None:
        loss = _ops.loss_plain(_LOSS_POISSON, 0.0, log_mean, y)
        if loss is not None:
            return loss
        return _unweighted_loss("poisson", log_mean, y, name="log_mean")
    return elementwise_loss("poisson", log_mean, y, sample_weight, name="log_mean")


def poisson_grad(log_mean: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`poisson_loss` with respect to ``log_mean``: ``(exp(z) - y) / z.size`` unweighted.

    Parameters
    ----------
    log_mean : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The predicted log-means z (the mean is ``exp(z)``).
    y : array-like of the shape of log_mean
        The counts, >= 0; a 1-D ``y`` of length n_samples also pairs with a
        (n_samples, 1) ``log_mean``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of log_mean
        The gradient of the loss with respect to ``log_mean``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value,
        or ``y`` has a negative value (the message names it); nothing is computed.
    """
    if sample_weight is None:
        grad = _ops.loss_grad_plain(_LOSS_POISSON, 0.0, log_mean, y)
        if grad is not None:
            return grad
    return elementwise_loss("poisson", log_mean, y, sample_weight, want_grad=True, name="log_mean")


def _cross_entropy(logits, labels, sample_weight, want_grad):
    if sample_weight is None:
        result = _ops.cross_entropy_plain(logits, labels, want_grad)
        if result is not None:
            return result
    dtype = _common_dtype(logits=logits)
    logits = check_array(logits, "logits", ndim=2, dtype=dtype, shape_hint="(n_samples, n_classes)")
    labels = check_labels(labels, "labels", logits.shape[0], logits.shape[1], dtype)
    w = check_sample_weight(sample_weight, logits.shape[0], dtype)
    empty = np.empty(0, dtype=dtype)
    grad = np.empty_like(logits) if want_grad else np.empty((0, logits.shape[1]), dtype=dtype)
    loss = _ops.loss_and_grad(_ops.LOSS_CODES["cross_entropy"], 0.0, logits, labels,
                                  empty if w is None else w, grad)
    return grad if want_grad else loss


def cross_entropy_loss(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Softmax cross-entropy, as ``torch.nn.CrossEntropyLoss``: the mean over samples of
    ``logsumexp(logits[i]) - logits[i, labels[i]]``, stable for logits of any size.

    ``logits`` is (n_samples, n_classes); ``labels`` holds integer class
    indices in [0, n_classes), shape (n_samples,).

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Unnormalised scores (the network's output).
    labels : array-like of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    loss : float
        The mean loss, a Python float.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _cross_entropy(logits, labels, sample_weight, False)


def cross_entropy_grad(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Gradient of :func:`cross_entropy_loss`: ``(softmax(logits) - onehot(labels)) / n_samples`` unweighted.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Unnormalised scores (the network's output).
    labels : array-like of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of the samples (rows), not all zero; the loss is then
        ``sum(w_i * l_i) / sum(w_i)`` over the samples' mean losses ``l_i``.

    Returns
    -------
    grad : ndarray of the shape of logits
        The gradient of the loss with respect to ``logits``, float32 when every input is
        float32 (or float16), else float64.

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    return _cross_entropy(logits, labels, sample_weight, True)


def sgd_update(param: np.ndarray, grad: ArrayLike, lr: float) -> None:
    """Plain SGD, ``param -= lr * grad``, in place.

    Parameters
    ----------
    param : ndarray of float32 or float64, any shape, writable
        Updated in place (any memory layout; it keeps its dtype).
    grad : array-like, same shape as ``param``
        Converted to ``param``'s dtype.
    lr : float
        A finite positive learning rate.

    Returns
    -------
    None
        ``param`` is updated in place.

    Raises
    ------
    TypeError
        If ``param`` is not a float32 or float64 ndarray, ``grad`` not real
        numbers, or ``lr`` not a real number.
    ValueError
        If ``param`` is read-only, ``grad`` has another shape or holds NaN
        or infinity, ``param`` holds NaN or infinity, or ``lr`` is not
        finite and > 0.
    """
    if _ops.sgd_update_plain(param, grad, lr):
        return
    _check_param(param)
    lr = check_learning_rate(lr, "lr")
    dtype = np.dtype(param.dtype.name)   # native byte order
    work = check_array(param, "param", ndim=tuple(range(0, 33)), dtype=dtype, allow_empty=True)
    grad = check_array(grad, "grad", ndim=tuple(range(0, 33)), dtype=dtype, allow_empty=True)
    if grad.shape != param.shape:
        raise ValueError(f"grad must have the shape of param, {param.shape}, got {grad.shape}")
    if np.may_share_memory(grad, param):
        # grad overlaps param (a shifted view of the same buffer): take it as it
        # was before the call, as NumPy's ``param -= lr * grad`` does.
        grad = grad.copy()
    # The ignores below: mypy types ``grad.copy()`` above from grad's declared ArrayLike rather than
    # its narrowed ndarray (check_array's result), so grad is an ndarray here whatever mypy says.
    if work is param:
        _ops.sgd_update(param.reshape(-1), grad.reshape(-1), lr)  # type: ignore[union-attr]
    else:
        # Strided, Fortran-ordered or byte-swapped: update a contiguous copy,
        # then write it back through the caller's view.
        if np.shares_memory(work, param):
            work = work.copy()
        _ops.sgd_update(work.reshape(-1), grad.reshape(-1), lr)  # type: ignore[union-attr]
        param[...] = work


def _check_param(param, name: str = "param") -> np.ndarray:
    """``param``, an array an update writes in place: a writable float32 or float64 ndarray."""
    if not isinstance(param, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), got {type(param).__name__}")
    if param.dtype.kind != "f" or param.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must have dtype float32 or float64 (it is updated in place), got {param.dtype}")
    if not param.flags.writeable:
        raise ValueError(f"{name} must be writable (it is updated in place), got a read-only array")
    return param


def _in_place_update(kind, param, grad, states, **hyper) -> None:
    """Validate, run the compiled rule on contiguous copies where needed, write back."""
    _check_param(param)
    dtype = np.dtype(param.dtype.name)
    for name, state in states.items():
        _check_param(state, name)
        if state.shape != param.shape:
            raise ValueError(f"{name} must have the shape of param, {param.shape}, got {state.shape}")
        if state.dtype != param.dtype:
            raise TypeError(f"{name} must have the dtype of param, {param.dtype}, got {state.dtype}")
    grad = check_array(grad, "grad", ndim=tuple(range(0, 33)), dtype=dtype, allow_empty=True)
    if grad.shape != param.shape:
        raise ValueError(f"grad must have the shape of param, {param.shape}, got {grad.shape}")
    targets = {"param": param, **states}
    work = {}
    for name, array in targets.items():
        contiguous = check_array(array, name, ndim=tuple(range(0, 33)), dtype=dtype, allow_empty=True)
        if contiguous is not array or np.shares_memory(contiguous, grad):
            contiguous = np.array(contiguous, dtype=dtype, order="C", copy=True)
        work[name] = contiguous
    empty = np.empty(0, dtype=dtype)
    names = list(states)
    buf1 = work[names[0]].reshape(-1) if len(names) > 0 else empty
    buf2 = work[names[1]].reshape(-1) if len(names) > 1 else empty
    ok = _ops.optimizer_update(kind, work["param"].reshape(-1), grad.reshape(-1), buf1, buf2, **hyper)
    if not ok:
        raise FloatingPointError("the update would make a value non-finite; nothing was changed "
                                 f"(try a smaller learning rate than lr={hyper['lr']})")
    for name, array in targets.items():
        if work[name] is not array:
            array[...] = work[name]


def sgd_momentum_update(param: np.ndarray, grad: ArrayLike, momentum_buffer: np.ndarray, lr: float, momentum: float,
                        nesterov: bool = False, weight_decay: float = 0.0) -> None:
    """SGD with momentum, as ``torch.optim.SGD`` (dampening 0), in place.

    ``g = grad + weight_decay * param``; ``momentum_buffer = momentum *
    momentum_buffer + g``; ``g = g + momentum * momentum_buffer`` (Nesterov)
    or ``g = momentum_buffer``; ``param -= lr * g``. ``param`` and
    ``momentum_buffer`` (start at zeros) are writable float arrays of one
    dtype and shape. Raises FloatingPointError, changing nothing, when a new
    value would not be finite.

    Parameters
    ----------
    param : ndarray, float32 or float64
        The parameters, updated in place.
    grad : array-like of the shape of param
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

    Raises
    ------
    ValueError, TypeError
        If an argument has the wrong shape, a non-numeric dtype or a non-finite value
        (the message names it); nothing is computed.
    """
    if _ops.sgd_momentum_update_plain(param, grad, momentum_buffer, lr, momentum, nesterov, weight_decay):
        return
    lr = check_learning_rate(lr, "lr")
    momentum, nesterov, weight_decay = check_sgd_hyperparameters(momentum, nesterov, weight_decay)
    _in_place_update("sgd", param, grad, {"momentum_buffer": momentum_buffer}, lr=lr, momentum=momentum,
                     nesterov=nesterov, weight_decay=weight_decay, beta1=0.9, beta2=0.999, eps=1e-8, step=0)


def adam_update(param: np.ndarray, grad: ArrayLike, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int, lr: float,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One Adam (or, with ``decoupled=True``, AdamW) step, as ``torch.optim``, in place.

    ``step`` is the number of this update, t >= 1. ``exp_avg`` and
    ``exp_avg_sq`` (start at zeros) are updated in place with ``param``.
    Adam adds ``weight_decay * param`` to the gradient; AdamW first
    multiplies ``param`` by ``1 - lr * weight_decay``. Raises
    FloatingPointError, changing nothing, when a new value would not be finite.

    Parameters
    ----------
    param : ndarray of float32 or float64, any shape, writable
        Updated in place (any memory layout; it keeps its dtype).
    grad : array-like, same shape as ``param``
        Converted to ``param``'s dtype; must be finite.
    exp_avg, exp_avg_sq : ndarray, shape and dtype of ``param``, writable
        First and second moment estimates, updated in place (zeros before
        the first step).
    step : int
        The number of this update, >= 1 (bias correction uses it).
    lr : float
        Learning rate, a finite positive number.
    beta1, beta2 : float, default 0.9 and 0.999
        Decay rates of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    weight_decay : float, default 0
        >= 0: an L2 term (Adam) or the decoupled decay (AdamW).
    decoupled : bool, default False
        True for AdamW.

    Returns
    -------
    None
        ``param``, ``exp_avg`` and ``exp_avg_sq`` are updated in place.

    Raises
    ------
    TypeError
        If ``param``, ``exp_avg`` or ``exp_avg_sq`` is not a float32 or
        float64 ndarray, a state's dtype differs from ``param``'s, ``grad``
        is not real numbers, ``step`` not an int, ``decoupled`` not a bool,
        or a hyperparameter not a real number.
    ValueError
        If an array is read-only or of another shape than ``param``, holds
        NaN or infinity, ``step`` < 1, ``lr`` not finite and > 0, a beta not
        in [0, 1), ``eps`` not > 0, or ``weight_decay`` < 0.
    FloatingPointError
        If the update would make a value non-finite (nothing is changed).
    """
    if _ops.adam_update_plain(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
        return
    step = check_positive_int(step, "step")
    lr = check_learning_rate(lr, "lr")
    beta1, beta2, eps, weight_decay = check_adam_hyperparameters(beta1, beta2, eps, weight_decay)
    decoupled = check_bool(decoupled, "decoupled")
    _in_place_update("adamw" if decoupled else "adam", param, grad,
                     {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}, lr=lr, momentum=0.0,
                     nesterov=False, weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps,
                     step=step - 1)
