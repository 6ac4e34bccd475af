"""The model: :class:`Sequential` describes a network and composes kernels.

A model keeps

* one flat parameter buffer in its dtype, of which every Dense layer's ``W``
  and ``b`` are views (and one gradient buffer with the same layout; an
  optimizer keeps its state in buffers of that layout too);
* a compiled *plan*, one row of plain integers per layer, that
  :mod:`fastnn._network` walks without the GIL: a whole ``predict``,
  ``train_step`` or training epoch is one compiled call;
* one workspace for activations and their gradients, sized for the largest
  batch seen so far and reused between calls.

Input is validated once per call, at the boundary; nothing is modified
until it has passed, so a call that raises leaves the model as it was.
"""

from __future__ import annotations

import numbers
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastnn import _network, ops
from fastnn._blas import find_blas
from fastnn.layers import Activation, Dense, Layer
from fastnn.losses import CrossEntropyLoss, Loss, MSELoss
from fastnn.optimizers import SGD, Optimizer
from fastnn.ops import check_labels, check_sample_weight
from fastnn.validation import (
    check_array,
    check_float_dtype,
    check_positive_int,
    check_seed,
    check_target,
)

__all__ = ["Sequential", "History", "Callback"]

_MSE = MSELoss()


@dataclass
class History:
    """What :meth:`Sequential.fit` records, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean training loss of each epoch: the (weighted) mean over samples of
        each mini-batch's loss before its update.
    val_loss : list of float
        Loss on the validation data after each epoch (empty without one).
    epoch_time : list of float
        Wall-clock seconds each epoch took (training only).
    best_epoch : int or None
        With early stopping: the epoch (1-based) whose parameters were kept.
    stopped_epoch : int or None
        The epoch after which training stopped early (a callback or early
        stopping), or None if it ran all its epochs.
    """

    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.loss)

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        if self.val_loss:
            last += f", last val_loss {self.val_loss[-1]:.6g}"
        return f"History(epochs={self.epochs}{last})"


class Callback:
    """The callback protocol of :meth:`Sequential.fit` (any object with ``on_epoch_end`` will do).

    ``on_epoch_end(epoch, logs)`` is called after every epoch with the epoch
    number (1-based) and a dict holding ``loss``, ``epoch_time`` and, with
    validation data, ``val_loss``; returning ``False`` stops training.
    """

    def on_epoch_end(self, epoch: int, logs: dict):  # pragma: no cover - protocol
        return None


def _progress_bar(total: int):
    """A tqdm bar if tqdm is installed (imported only now), else None."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="epoch", leave=True)


class Sequential:
    """A stack of layers trained with a loss and an optimizer.

    Parameters
    ----------
    layers : sequence of Layer
        Dense layers and activations; consecutive Dense sizes must chain (the
        ``in_features`` of each Dense equals the ``out_features`` of the one
        before). At least one Dense layer. A layer belongs to one model at a
        time: its ``W`` and ``b`` become views into this model's buffer.
    dtype : numpy.float32 or numpy.float64, default float64
        The dtype the model stores its parameters and computes in; input of
        another dtype is converted once, at the boundary.
    """

    # train_step's cache: the last optimizer, its version then, its compiled update
    _last_optimizer: Any
    _last_version: int
    _last_update: Any

    def __init__(self, layers, *, dtype=np.float64):
        self._lock = threading.RLock()
        self._default_sgd = None
        self._stateless_updates = weakref.WeakKeyDictionary()   # plain SGD objects -> compiled updates
        self._forget_update()
        self._build(self._check_layers(layers), check_float_dtype(dtype, "dtype"))

    # -- construction -------------------------------------------------------------

    def _check_layers(self, layers) -> list:
        if isinstance(layers, Layer):
            raise TypeError("layers must be a list of layers, got a single layer; wrap it in a list")
        try:
            layers = list(layers)
        except TypeError:
            raise TypeError(f"layers must be a list of fastnn layers, got {type(layers).__name__}") from None
        if not layers:
            raise ValueError("layers must hold at least one layer, got an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Dense, Activation)):
                raise TypeError(f"layers[{i}] must be a fastnn layer (Dense, ReLU, LeakyReLU, Tanh, Sigmoid "
                                f"or Identity), got {type(layer).__name__}")
            if isinstance(layer, Dense) and layer._owned_by_other(self):
                raise ValueError(
                    f"layers[{i}] already belongs to another Sequential; pass copy.deepcopy(layer) to use a copy")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("layers must not hold the same layer object twice")
        dense = [layer for layer in layers if isinstance(layer, Dense)]
        if not dense:
            raise ValueError("layers must hold at least one Dense layer")
        for prev, nxt in zip(dense, dense[1:]):
            if nxt.in_features != prev.out_features:
                raise ValueError(
                    f"layers do not chain: {prev!r} gives {prev.out_features} features but the next "
                    f"Dense, {nxt!r}, expects in_features={nxt.in_features}")
        return layers

    def _build(self, layers: list, dtype: np.dtype) -> None:
        width = next(layer for layer in layers if isinstance(layer, Dense)).in_features
        n_params = sum(layer.n_parameters for layer in layers if isinstance(layer, Dense))
        params = np.empty(n_params, dtype=dtype)
        grads = np.zeros(n_params, dtype=dtype)
        rows, fn_params = [], []
        offset = act = 0
        for layer in layers:
            if isinstance(layer, Dense):
                n_in, n_out = layer.in_features, layer.out_features
                stop = offset + layer.n_parameters
                params[offset:offset + n_in * n_out] = layer.W.ravel()
                params[offset + n_in * n_out:stop] = layer.b
                layer._attach(params[offset:stop], grads[offset:stop], owner=self)
                rows.append([_network.KIND_DENSE, n_in, n_out, offset, offset + n_in * n_out, act,
                             _network.FN_CODES["identity"]])
                fn_params.append(0.0)
                offset = stop
            elif rows and rows[-1][0] == _network.KIND_DENSE and rows[-1][6] == _network.FN_CODES["identity"]:
                # An activation right after a Dense is computed in the Dense's output pass.
                rows[-1][6] = _network.FN_CODES[layer._fn]
                fn_params[-1] = layer._fn_param
                continue
            else:
                rows.append([_network.KIND_ACT, width, width, -1, -1, act, _network.FN_CODES[layer._fn]])
                fn_params.append(layer._fn_param)
            act += rows[-1][2]
            width = rows[-1][2]
        self._layers = layers
        self._dtype = dtype
        self._params = params
        self._grads = grads
        # Dense products call BLAS from the walker build's own thresholds (_network.BLAS_MIN_*).
        self._net = _network.Network(np.array(rows, dtype=np.intp), params, grads, blas=find_blas(),
                                     fn_params=fn_params)

    # -- description ---------------------------------------------------------------

    @property
    def layers(self) -> list:
        """The list of layers (a copy of the list: the layers themselves are live)."""
        return list(self._layers)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters and of the computation."""
        return self._dtype

    @property
    def in_features(self) -> int:
        return self._net.n_in

    @property
    def out_features(self) -> int:
        return self._net.n_out

    @property
    def n_parameters(self) -> int:
        """Number of trainable values (all W and b)."""
        return self._params.size

    def get_parameters(self) -> np.ndarray:
        """A copy of all parameters, flat, layer by layer (W row-major, then b).

        Taken under the model's lock, so never half-way through a step."""
        with self._lock:
            return self._params.copy()

    def set_parameters(self, values) -> None:
        """Overwrite all parameters from a flat array laid out as :meth:`get_parameters`."""
        values = check_array(values, "values", ndim=1, dtype=self._dtype)
        if values.shape != self._params.shape:
            raise ValueError(f"values must have shape {self._params.shape}, got {values.shape}")
        with self._lock:
            self._params[...] = values

    def __repr__(self) -> str:
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self._layers)]
        return "Sequential(\n" + "\n".join(lines) + f"\n)  # {self.n_parameters} parameters, {self._dtype.name}"

    # -- input ------------------------------------------------------------------

    def _check_X(self, X, name: str = "X") -> np.ndarray:
        X = check_array(X, name, ndim=2, dtype=self._dtype, shape_hint="(n_samples, in_features)")
        if X.shape[1] != self.in_features:
            raise ValueError(f"{name} must have {self.in_features} features (columns) for this model, got shape {X.shape}")
        return X

    def _check_Xyw(self, X, y, sample_weight, loss: Loss):
        X = self._check_X(X)
        n_samples = X.shape[0]
        if loss._kind == "cross_entropy":
            y = check_labels(y, "y", n_samples, self.out_features, self._dtype)
        else:
            y = check_target(y, "y", n_samples, self.out_features, self._dtype)
        return X, y, check_sample_weight(sample_weight, n_samples, self._dtype)

    def _check_loss(self, loss) -> Loss:
        if loss is None:
            return _MSE
        if not isinstance(loss, Loss) or not loss._kind:
            raise TypeError(f"loss must be a fastnn loss such as fastnn.MSELoss() or "
                            f"fastnn.CrossEntropyLoss(), got {type(loss).__name__}")
        if isinstance(loss, CrossEntropyLoss) and self.out_features < 2:
            raise ValueError(f"loss CrossEntropyLoss() needs a network with at least 2 outputs (one logit "
                             f"per class), this one has {self.out_features}")
        return loss

    @staticmethod
    def _check_optimizer(optimizer) -> Optimizer:
        if not isinstance(optimizer, Optimizer) or not optimizer._kind:
            raise TypeError(f"optimizer must be a fastnn optimizer such as fastnn.SGD(lr=0.01) or "
                            f"fastnn.Adam(), got {type(optimizer).__name__}")
        return optimizer

    # -- computing -----------------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """Return the network's output, shape (n_samples, out_features), in the model's dtype."""
        with self._lock:
            out = self._net.predict(X)          # fast path: X already right
            if out is None:
                out = self._net.predict(self._check_X(X))
        assert isinstance(out, np.ndarray)      # a checked X is always taken
        return out

    def __call__(self, X) -> np.ndarray:
        return self.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from the network's logits, shape (n_samples, out_features).

        The softmax of the outputs (for a model trained with
        CrossEntropyLoss); with a single output, its sigmoid (for
        BCEWithLogitsLoss). Computed without overflow for logits of any size.
        """
        logits = self.predict(X)
        if logits.shape[1] == 1:
            return ops.sigmoid_forward(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted

    def train_step(self, X, y, loss=None, optimizer=None, sample_weight=None) -> float:
        """One forward pass, backward pass and update on one batch.

        Parameters
        ----------
        X : array-like, shape (n_samples, in_features)
        y : array-like, shape (n_samples, out_features), or (n_samples,) for one
            output; integer class labels (n_samples,) for CrossEntropyLoss
        loss : Loss, default MSELoss()
        optimizer : Optimizer, default SGD(lr=0.01)
        sample_weight : array-like (n_samples,), optional
            Non-negative weights: the loss is ``sum(w_i * l_i) / sum(w_i)``.

        Returns
        -------
        float
            The batch loss before the update.

        Raises
        ------
        FloatingPointError
            If the loss or an updated parameter would not be finite; the model
            is then left as it was.
        """
        loss = _MSE if loss is None else self._check_loss(loss)
        if optimizer is None:
            optimizer = self._default_sgd or self._default_optimizer()
        kind, param = loss._kind, loss._param
        with self._lock:
            if optimizer is self._last_optimizer and optimizer._version == self._last_version:
                # The optimizer of the last step, unchanged since (a step costs
                # about a microsecond on a small network: this is worth it).
                update = self._last_update
                binding = None
            else:
                self._check_optimizer(optimizer)
                binding = optimizer._model, optimizer._update, optimizer._pending
                update = optimizer._update_for(self)
                self._last_optimizer, self._last_version, self._last_update = optimizer, optimizer._version, update
            # Fast path: X, y and sample_weight already right (checked finite in the kernel).
            status = self._net.train_step(X, y, update, kind, param, sample_weight)
            if status != _network.OK:
                if status == _network.SLOW or status == _network.BAD_INPUT:
                    try:
                        # Raises on NaN, infinity, bad shapes, bad labels or weights.
                        X, y, w = self._check_Xyw(X, y, sample_weight, loss)
                    except BaseException:
                        if binding is not None:
                            self._unbind(optimizer, binding)
                        raise
                    status = self._net.train_step(X, y, update, kind, param, w)
                if status != _network.OK and binding is not None:
                    self._unbind(optimizer, binding)    # BAD_LOSS or BAD_UPDATE: no update applied
            value = self._net.last_loss
        if status != _network.OK:                   # BAD_LOSS or BAD_UPDATE
            raise FloatingPointError(self._divergence_message(status, "this step", optimizer.lr))
        return value

    def _unbind(self, optimizer: Optimizer, binding: tuple) -> None:
        """Put ``optimizer``'s binding back as it was before this call (``binding``:
        its ``_model``, ``_update`` and ``_pending`` then). A call that is refused,
        or that applies no update, leaves the optimizer as it was: a fresh one
        stays unbound, free to train another model."""
        optimizer._model, optimizer._update, optimizer._pending = binding
        self._forget_update()

    def _forget_update(self) -> None:
        """Drop train_step's cache of the last optimizer and its compiled update."""
        self._last_optimizer = None
        self._last_version = -1
        self._last_update = None

    def _default_optimizer(self) -> Optimizer:
        """SGD(lr=0.01), the default of train_step, one per model (it is stateless)."""
        if self._default_sgd is None:
            self._default_sgd = SGD(lr=0.01)
        return self._default_sgd

    @staticmethod
    def _divergence_message(code: int, where: str, lr: float) -> str:
        what = {
            _network.BAD_LOSS: "the loss is not finite",
            _network.BAD_UPDATE: "the update would make a parameter non-finite",
        }.get(code, f"status {code}")
        return (f"training diverged in {where}: {what}. The parameters were left as they were "
                f"before that step; try a smaller learning rate than lr={lr}.")

    def fit(self, X, y, *, loss=None, optimizer=None, epochs: int = 1, batch_size=None,
            shuffle: bool = True, seed=None, verbose=False, sample_weight=None,
            validation_data=None, validation_split=None, early_stopping: bool = False,
            patience: int = 10, min_delta: float = 0.0, callbacks=None) -> History:
        """Train with mini-batch gradient descent, one compiled call per epoch.

        Parameters
        ----------
        X : array-like, shape (n_samples, in_features)
        y : array-like, shape (n_samples, out_features), or (n_samples,) for one
            output; integer class labels (n_samples,) for CrossEntropyLoss
        loss : Loss, default MSELoss()
        optimizer : Optimizer, default SGD(lr=0.01)
            Its state (momentum, moments) carries over between ``fit`` calls
            with the same optimizer: a warm start.
        epochs : int, default 1
        batch_size : int or None, default None
            Samples per step; None (or a size larger than the data) means
            the full batch. The last batch of an epoch may be shorter.
        shuffle : bool, default True
            Visit the samples in a new random order each epoch.
        seed : int, numpy.random.Generator or None
            Seed of the shuffling, for reproducible runs.
        verbose : bool or int, default False
            True: a progress bar with the running loss (tqdm, if installed;
            else a line per epoch). An int k: a line every k epochs, after
            the first and after the last. False or 0: nothing is printed.
        sample_weight : array-like (n_samples,), optional
            Non-negative weights with a positive sum: each mini-batch's loss
            is ``sum(w_i * l_i) / sum(w_i)`` over its samples.
        validation_data : (X_val, y_val), optional
            Data on which the loss is measured after each epoch (``val_loss``).
        validation_split : float in (0, 1), optional
            Hold out this fraction of the rows, the last ones (before any
            shuffling), as validation data instead.
        early_stopping : bool, default False
            Stop when the monitored loss (``val_loss`` if there is validation
            data, else the training loss) has not improved by more than
            ``min_delta`` for ``patience`` epochs, and restore the parameters
            of the best epoch.
        patience : int, default 10
        min_delta : float, default 0.0
        callbacks : list, optional
            Objects with ``on_epoch_end(epoch, logs)`` (see :class:`Callback`);
            one returning False stops training.

        Returns
        -------
        History
            ``History.loss[i]`` is the mean loss of epoch i (weighted by
            sample_weight when given); ``val_loss`` likewise on the
            validation data.

        Raises
        ------
        FloatingPointError
            If training diverges (a loss or parameter stops being finite). The
            parameters and the optimizer's state are those from before the
            step that diverged; the gradients (``layer.dW``, ``layer.db``)
            are that step's when its update was refused (unlike
            :meth:`train_step`, which keeps a copy of the gradients to
            restore, a fit keeps none: it would cost memory the size of the
            parameters and a copy per step).
        """
        loss = self._check_loss(loss)
        optimizer = self._check_optimizer(SGD() if optimizer is None else optimizer)
        epochs = check_positive_int(epochs, "epochs")
        X, y, w = self._check_Xyw(X, y, sample_weight, loss)
        if validation_data is not None and validation_split is not None:
            raise ValueError("give validation_data or validation_split, not both")
        X_val = y_val = None
        if validation_split is not None:
            from fastnn.optimizers import _check_number

            fraction = _check_number(validation_split, "validation_split", low=0.0, high=1.0,
                                     low_open=True, high_open=True)
            n_val = int(round(X.shape[0] * fraction))
            if not 1 <= n_val < X.shape[0]:
                raise ValueError(f"validation_split={fraction} leaves {X.shape[0] - n_val} training and "
                                 f"{n_val} validation rows of {X.shape[0]}; both need at least one")
            X, X_val = X[:-n_val], X[-n_val:]
            y, y_val = y[:-n_val], y[-n_val:]
            w = None if w is None else check_sample_weight(w[:-n_val], X.shape[0], self._dtype)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}")
            X_val = self._check_X(validation_data[0], "validation_data[0]")
            try:
                _, y_val, _ = self._check_Xyw(X_val, validation_data[1], None, loss)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"validation_data[1]: {exc}") from None
        if not isinstance(early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be True or False, got {type(early_stopping).__name__}")
        patience = check_positive_int(patience, "patience")
        from fastnn.optimizers import _check_number

        min_delta = _check_number(min_delta, "min_delta", low=0.0)
        callbacks = list(callbacks) if callbacks is not None else []
        for i, callback in enumerate(callbacks):
            if not callable(getattr(callback, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] must have an on_epoch_end(epoch, logs) method, "
                                f"got {type(callback).__name__}")
        n_samples = X.shape[0]
        batch_size = n_samples if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n_samples)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {type(shuffle).__name__} {shuffle!r}")
        if isinstance(verbose, (bool, np.bool_)):
            every = 1 if verbose else 0
        elif isinstance(verbose, numbers.Integral) and verbose == 0:
            every = 0                    # verbose=0: silent, as in scikit-learn and Keras
        else:
            every = check_positive_int(verbose, "verbose")
        rng = check_seed(seed, "seed")
        history = History()
        bar = _progress_bar(epochs) if verbose is True else None
        best, best_params, waited = np.inf, None, 0
        try:
            with self._lock:
                binding = optimizer._model, optimizer._update, optimizer._pending
                update = optimizer._update_for(self)
                for epoch in range(1, epochs + 1):
                    start = time.perf_counter()
                    order = rng.permutation(n_samples) if shuffle else None
                    status = self._net.train_epoch(X, y, order, batch_size, update, loss._kind, loss._param, w)
                    if status != _network.OK:
                        if epoch == 1 and self._net.last_done == 0 and not optimizer._stateless():
                            self._unbind(optimizer, binding)     # not one update applied
                        raise FloatingPointError(self._divergence_message(status, f"epoch {epoch}", optimizer.lr))
                    mean_loss = self._net.last_loss
                    history.loss.append(mean_loss)
                    history.epoch_time.append(time.perf_counter() - start)
                    logs = {"loss": mean_loss, "epoch_time": history.epoch_time[-1]}
                    if X_val is not None:
                        logs["val_loss"] = loss.loss(self._net.predict(X_val), y_val)
                        history.val_loss.append(logs["val_loss"])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "epoch_time"})
                    elif every and (epoch % every == 0 or epoch in (1, epochs)):
                        extra = f"  val_loss {logs['val_loss']:.6g}" if "val_loss" in logs else ""
                        print(f"epoch {epoch}/{epochs}  loss {mean_loss:.6g}{extra}", flush=True)
                    stop = False
                    if early_stopping:
                        monitored = logs.get("val_loss", mean_loss)
                        if monitored < best - min_delta:
                            best, best_params, waited = monitored, self._params.copy(), 0
                            history.best_epoch = epoch
                        else:
                            waited += 1
                            stop = waited >= patience
                    for callback in callbacks:
                        if callback.on_epoch_end(epoch, dict(logs)) is False:
                            stop = True
                    if stop and epoch < epochs:
                        history.stopped_epoch = epoch
                        break
                if early_stopping and best_params is not None:
                    self._params[...] = best_params
        finally:
            if bar is not None:
                bar.close()
        return history

    # -- copying and pickling -----------------------------------------------------

    def __getstate__(self):
        # The layers describe the architecture; the parameters and gradients
        # are snapshot under the lock, so a copy taken while another thread
        # trains holds the state between two whole steps.
        with self._lock:
            params, grads = self._params.copy(), self._grads.copy()
        return {"layers": self._layers, "dtype": self._dtype.name, "params": params, "grads": grads}

    def __setstate__(self, state):
        self._lock = threading.RLock()
        self._default_sgd = None
        self._stateless_updates = weakref.WeakKeyDictionary()
        self._forget_update()
        self._build(state["layers"], np.dtype(state["dtype"]))
        self._params[...] = state["params"]
        self._grads[...] = state["grads"]

    def save(self, path, optimizer=None) -> None:
        """Write the model (and ``optimizer``'s state) to ``path`` atomically: :func:`fastnn.io.save`."""
        from fastnn.io import save
        save(self, path, optimizer)
