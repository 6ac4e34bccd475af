"""The model: :class:`Sequential` describes a network and composes kernels.

A model keeps

* one flat parameter buffer in its dtype, of which every Dense layer's ``W``
  and ``b`` are views, and one gradient buffer with the same layout;
* the state of every optimizer it trains with (momentum buffer, Adam's
  moments, step count), in buffers of that layout: an optimizer is only a
  description (its rule and hyperparameters), the model owns the state,
  and only the model writes it (:meth:`Sequential.optimizer_state`,
  :meth:`Sequential.set_optimizer_state`);
* a compiled *plan*, one row of plain integers per layer, that
  :mod:`fastnn._walker` walks without the GIL: a whole ``predict``,
  ``train_step`` or training epoch is one compiled call;
* one workspace for activations and their gradients, sized for the largest
  batch seen so far and reused between calls.

Input is validated once per call, at the boundary; nothing is modified
until it has passed, so a call that raises leaves the model as it was.
Layers are descriptions too, but for one thing: a Dense layer's ``W``,
``b``, ``dW`` and ``db`` are views into this model's buffers (the layer
reads and writes them; the model owns them).
"""

from __future__ import annotations

import numbers
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

from fastnn import _lbfgs, _planner, _walker, ops
from fastnn._blas import find_blas
from fastnn._savefile import write_model
from fastnn.callbacks import Callback, EarlyStopping, History, progress_callback
from fastnn.layers import Activation, Dense, Layer
from fastnn.losses import CrossEntropyLoss, Loss, MSELoss
from fastnn.optimizers import LBFGS, SGD, Optimizer
from fastnn.validation import (
    check_array,
    check_float_dtype,
    check_labels,
    check_number,
    check_optimizer_state,
    check_order,
    check_positive_int,
    check_sample_weight,
    check_seed,
    check_target,
)

__all__ = ["Sequential", "History", "Callback"]   # History and Callback: from fastnn.callbacks

_MSE = MSELoss()
# The walker's status codes, bound once (train_step tests one on every call).
_OK, _SLOW, _BAD_INPUT = _walker.OK, _walker.SLOW, _walker.BAD_INPUT


_H = TypeVar("_H", bound=History)


@dataclass
class _FitData:
    """fit's data, checked: training X, y, sample weights, and validation X, y (or None)."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


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

    # train_step's cache: the optimizer of the last step, its lr then, its compiled update
    _last_optimizer: Any
    _last_lr: Any
    _last_update: Any

    def __init__(self, layers, *, dtype=np.float64):
        self._init_state()
        self._build(self._check_layers(layers), check_float_dtype(dtype, "dtype"))

    def _init_state(self) -> None:
        """The model's lock and optimizer states, empty (at construction and unpickling)."""
        self._lock = threading.RLock()
        # One compiled update per optimizer this model trains with, holding that
        # optimizer's state (laid out like the parameters): the model's data.
        self._updates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._default_sgd = SGD(lr=0.01)        # train_step's default; plain SGD keeps no state
        self._forget_update()

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
            if isinstance(layer, Dense) and layer.owner not in (None, self):
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

    @classmethod
    def _on_buffers(cls, layers, dtype, params: np.ndarray, grads: np.ndarray) -> Sequential:
        """A model of ``layers`` whose parameters and gradients live in ``params`` and
        ``grads`` (1-D, C-contiguous, writable, of ``dtype`` and the model's size;
        the layers' values are copied in): an ensemble's member on a row of its
        stacked buffers."""
        model = cls.__new__(cls)
        model._init_state()
        model._build(model._check_layers(layers), check_float_dtype(dtype, "dtype"), params, grads)
        return model

    def _build(self, layers: list, dtype: np.dtype, params: np.ndarray | None = None,
               grads: np.ndarray | None = None) -> None:
        n_params = sum(layer.n_parameters for layer in layers if isinstance(layer, Dense))
        if params is None or grads is None:
            params = np.empty(n_params, dtype=dtype)
            grads = np.zeros(n_params, dtype=dtype)
        elif not (params.shape == grads.shape == (n_params,) and params.dtype == grads.dtype == dtype
                  and params.flags.c_contiguous and grads.flags.c_contiguous):
            raise ValueError(f"params and grads must be C-contiguous ({n_params},) arrays of {dtype}")
        offset = 0
        for layer in layers:
            if isinstance(layer, Dense):
                n_in, n_out = layer.in_features, layer.out_features
                stop = offset + layer.n_parameters
                params[offset:offset + n_in * n_out] = layer.W.ravel()
                params[offset + n_in * n_out:stop] = layer.b
                layer.attach(params[offset:stop], grads[offset:stop], owner=self)
                offset = stop
        plan_rows, fn_params = _planner.walker_rows(layers)
        self._layers = layers
        self._dtype = dtype
        self._params = params
        self._grads = grads
        # The planner picks the walker build and, per Dense layer, BLAS or own loops
        # (fastnn._planner: measured on this machine, or the fixed plan).
        self._plan = _planner.plan_for(plan_rows, dtype)
        self._net = _walker.build(self._plan.build).Network(plan_rows, params, grads, blas=find_blas(),
                                                             fn_params=fn_params)
        if self._plan.row_batch is not None:
            self._net.row_blas_min_batch = self._plan.row_batch

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
        if loss.kind == "cross_entropy":
            y = check_labels(y, "y", n_samples, self.out_features, self._dtype)
        else:
            y = check_target(y, "y", n_samples, self.out_features, self._dtype)
        return X, y, check_sample_weight(sample_weight, n_samples, self._dtype)

    def _check_loss(self, loss) -> Loss:
        if loss is None:
            return _MSE
        if not isinstance(loss, Loss) or not loss.kind:
            raise TypeError(f"loss must be a fastnn loss such as fastnn.MSELoss() or "
                            f"fastnn.CrossEntropyLoss(), got {type(loss).__name__}")
        if isinstance(loss, CrossEntropyLoss) and self.out_features < 2:
            raise ValueError(f"loss CrossEntropyLoss() needs a network with at least 2 outputs (one logit "
                             f"per class), this one has {self.out_features}")
        return loss

    @staticmethod
    def _check_optimizer(optimizer) -> Optimizer:
        if isinstance(optimizer, LBFGS):
            raise TypeError("fastnn.LBFGS is a full-batch method, not an update rule: train with "
                            "Sequential.fit(X, y, optimizer=fastnn.LBFGS())")
        if not isinstance(optimizer, Optimizer) or not optimizer.kind:
            raise TypeError(f"optimizer must be a fastnn optimizer such as fastnn.SGD(lr=0.01) or "
                            f"fastnn.Adam(), got {type(optimizer).__name__}")
        return optimizer

    # -- computing -----------------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """Return the network's output, shape (n_samples, out_features), in the model's dtype."""
        with self._lock:
            out = self._net.predict(X)          # fast path: X already right
            if out is None:                     # X must be checked (and converted) first
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
            The model keeps this optimizer's state (see :meth:`optimizer_state`)
            and continues from it at the next step with the same optimizer.
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
            (parameters, gradients and optimizer state) is then left as it was.
        """
        loss = _MSE if loss is None else self._check_loss(loss)
        if optimizer is None:
            optimizer = self._default_sgd
        with self._lock:
            if optimizer is self._last_optimizer and optimizer.lr == self._last_lr:
                # The optimizer of the last step, its lr unchanged (a step costs
                # about a microsecond on a small network: the lookup is worth skipping).
                update, created = self._last_update, False
            else:
                update, created = self._update_for(self._check_optimizer(optimizer))
            # Fast path: X, y and sample_weight already right (checked finite in the kernel).
            status = self._net.train_step(X, y, update, loss.kind, loss.param, sample_weight)
            if status != _OK:
                self._step_checked(status, X, y, loss, optimizer, update, created, sample_weight)
            return self._net.last_loss

    def _step_checked(self, status: int, X, y, loss: Loss, optimizer: Optimizer, update, created: bool,
                      sample_weight) -> None:
        """train_step's slow path, after the fast one answered ``status``: check and
        convert the input (which raises on NaN, infinity, bad shapes, labels or
        weights) and step again; raise if the step diverged. A call that applies no
        update leaves no optimizer state behind."""
        if status == _SLOW or status == _BAD_INPUT:
            try:
                X, y, w = self._check_Xyw(X, y, sample_weight, loss)
            except BaseException:
                self._drop_if_created(optimizer, created)
                raise
            status = self._net.train_step(X, y, update, loss.kind, loss.param, w)
        if status != _OK:           # BAD_LOSS or BAD_UPDATE: no update applied
            self._drop_if_created(optimizer, created)
            raise FloatingPointError(self._divergence_message(status, "this step", optimizer.lr))

    # -- optimizer state ---------------------------------------------------------

    def _update_for(self, optimizer: Optimizer) -> tuple:
        """The compiled update that holds ``optimizer``'s state for this model, made
        (with zero state) on first use, with the optimizer's current lr; and whether
        it was made now. It becomes train_step's cached update."""
        update = self._updates.get(optimizer)
        created = update is None
        if update is None:
            update = self._net.make_update(optimizer.kind, optimizer.lr, **optimizer.hyperparameters)
            self._updates[optimizer] = update
        elif update.lr != optimizer.lr:
            update.lr = optimizer.lr        # a schedule changed it
        self._last_optimizer, self._last_lr, self._last_update = optimizer, optimizer.lr, update
        return update, created

    def _drop_if_created(self, optimizer: Optimizer, created: bool) -> None:
        """Forget a state made by a call that applied no update: it leaves no trace."""
        if created:
            del self._updates[optimizer]
            self._forget_update()

    def _forget_update(self) -> None:
        """Drop train_step's cache of the last optimizer and its compiled update."""
        self._last_optimizer = None
        self._last_lr = None
        self._last_update = None

    def optimizer_state(self, optimizer) -> dict:
        """The state this model keeps for ``optimizer``: ``step`` (updates applied) and
        copies of the rule's buffers, by name (``optimizer.state_names``).

        ``{"step": 0}`` when the model has not trained with ``optimizer``, or when
        its rule keeps no state (plain SGD)."""
        optimizer = self._check_optimizer(optimizer)
        with self._lock:
            update = self._updates.get(optimizer)
            if update is None or not optimizer.state_names:
                return {"step": 0}
            state: dict[str, Any] = {"step": int(update.step)}
            for name, buf in zip(optimizer.state_names, (update.buf1, update.buf2)):
                state[name] = np.array(buf)
            return state

    def set_optimizer_state(self, optimizer, state) -> None:
        """Make ``state`` (from :meth:`optimizer_state`, of this model or of one with
        as many parameters) the state that the next step with ``optimizer`` continues
        from. Buffers left out start at zero. Checked whole before anything changes."""
        optimizer = self._check_optimizer(optimizer)
        step, buffers = check_optimizer_state(state, optimizer.state_names, self.n_parameters, self._dtype)
        with self._lock:
            bufs = [buffers.get(name) for name in optimizer.state_names] + [None, None]
            self._updates[optimizer] = self._net.make_update(
                optimizer.kind, optimizer.lr, buf1=bufs[0], buf2=bufs[1], step=step,
                **optimizer.hyperparameters)
            self._forget_update()

    @staticmethod
    def _divergence_message(code: int, where: str, lr: float) -> str:
        what = {
            _walker.BAD_LOSS: "the loss is not finite",
            _walker.BAD_UPDATE: "the update would make a parameter non-finite",
        }.get(code, f"status {code}")
        return (f"training diverged in {where}: {what}. The parameters were left as they were "
                f"before that step; try a smaller learning rate than lr={lr}.")

    # -- fit ---------------------------------------------------------------------

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
        optimizer : Optimizer or LBFGS, default SGD(lr=0.01)
            The model keeps its state (momentum, moments): it carries over
            between ``fit`` and ``train_step`` calls with the same optimizer,
            a warm start. :class:`fastnn.LBFGS` trains on the full batch
            instead: one iteration is one "epoch" of the history and the
            callbacks, ``epochs`` must stay 1 and ``batch_size`` None, and
            the History returned has ``n_evaluations``, ``status``,
            ``converged``, ``message`` and ``final_loss`` besides.
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
        if isinstance(optimizer, LBFGS):
            return self._fit_lbfgs(X, y, loss, optimizer, epochs, batch_size, verbose, sample_weight,
                                   (validation_data, validation_split), (early_stopping, patience, min_delta, callbacks))
        optimizer = self._check_optimizer(SGD() if optimizer is None else optimizer)
        epochs = check_positive_int(epochs, "epochs")
        data = self._check_fit_data(X, y, sample_weight, loss, validation_data, validation_split)
        stopper, user_callbacks = self._check_stopping(early_stopping, patience, min_delta, callbacks)
        n_samples = data.X.shape[0]
        batch_size = n_samples if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n_samples)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {type(shuffle).__name__} {shuffle!r}")
        every = self._check_verbose(verbose)
        rng = check_seed(seed, "seed")
        progress = progress_callback(every, verbose is True, epochs)
        callbacks = [c for c in (progress, stopper) if c is not None] + user_callbacks
        return self._run_fit(
            lambda: self._epochs(data, loss, optimizer, epochs, batch_size, shuffle, rng, callbacks),
            stopper, progress)

    def _epochs(self, data: _FitData, loss: Loss, optimizer: Optimizer, epochs: int, batch_size: int,
                shuffle: bool, rng: np.random.Generator, callbacks: list) -> History:
        """fit's loop over epochs (the caller holds the lock): its History."""
        history = History()
        update, created = self._update_for(optimizer)
        n_samples = data.X.shape[0]
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n_samples) if shuffle else None
            status, logs = self._fit_epoch(data, order, batch_size, update, loss)
            if status != _OK:
                if epoch == 1 and self._net.last_done == 0:
                    self._drop_if_created(optimizer, created)    # not one update applied
                raise FloatingPointError(self._divergence_message(status, f"epoch {epoch}", optimizer.lr))
            history.loss.append(logs["loss"])
            history.epoch_time.append(logs["epoch_time"])
            if "val_loss" in logs:
                history.val_loss.append(logs["val_loss"])
            # Every callback hears of every epoch; any one may stop training.
            stop = False
            for callback in callbacks:
                if callback.on_epoch_end(epoch, dict(logs)) is False:
                    stop = True
            if stop and epoch < epochs:
                history.stopped_epoch = epoch
                break
        return history

    def _run_fit(self, run: Callable[[], _H], stopper: EarlyStopping | None, progress) -> _H:
        """Run a fit's loop ``run()`` (it returns the History) under the model's lock, then put
        back early stopping's best parameters; the progress bar is closed however it ends.

        The one home of how every fit ends, whatever its optimizer."""
        try:
            with self._lock:
                history = run()
                if stopper is not None and stopper.best_parameters is not None:
                    history.best_epoch = stopper.best_epoch
                    self._params[...] = stopper.best_parameters
                return history
        finally:
            if progress is not None and hasattr(progress, "close"):
                progress.close()

    def _fit_lbfgs(self, X, y, loss: Loss, optimizer: LBFGS, epochs, batch_size, verbose, sample_weight,
                   validation: tuple, stopping: tuple) -> _lbfgs.LBFGSHistory:
        """fit with :class:`fastnn.LBFGS`: full batch, up to ``optimizer.max_iter`` iterations.

        ``epochs`` must stay 1 and ``batch_size`` None (L-BFGS counts iterations
        and takes every row at once); ``shuffle`` and ``seed`` do not apply.
        ``History.loss`` holds the objective (loss plus ``optimizer.l2``'s term)
        after each iteration, ``val_loss`` the validation loss there; callbacks
        hear of every iteration, and ``early_stopping`` watches iterations as it
        watches epochs (restoring the best iterate's parameters). ``verbose``
        reports iterations as fit reports epochs. Returns an
        :class:`fastnn._lbfgs.LBFGSHistory` (a History with n_evaluations,
        converged and message). FloatingPointError if the loss stops being
        finite (the parameters are then the last iterate's).
        """
        if check_positive_int(epochs, "epochs") != 1:
            raise ValueError(f"epochs does not apply to fastnn.LBFGS, which counts iterations: leave it 1 and set "
                             f"LBFGS(max_iter=...), got epochs={epochs}")
        if batch_size is not None:
            raise ValueError(f"batch_size does not apply to fastnn.LBFGS, a full-batch method: leave it None, "
                             f"got batch_size={batch_size!r}")
        data = self._check_fit_data(X, y, sample_weight, loss, *validation)
        stopper, user_callbacks = self._check_stopping(*stopping)
        every = self._check_verbose(verbose)
        _lbfgs.scipy_minimize()          # ImportError before anything runs, without SciPy
        progress = progress_callback(every, verbose is True, optimizer.max_iter)
        callbacks = [c for c in (progress, stopper) if c is not None] + user_callbacks
        return self._run_fit(lambda: _lbfgs.minimize(self._net, data, loss, optimizer, callbacks), stopper, progress)

    def loss_gradient(self, X, y, *, loss=None, sample_weight=None, l2: float = 0.0) -> float:
        """The loss over all of X and y, and its gradient, in one compiled call.

        The objective :class:`fastnn.LBFGS` minimises: the data are walked in
        chunks of rows through the model's workspace without the GIL, each
        chunk weighted by its share of the total weight, so that the result
        is the full batch's loss and gradient to rounding.

        Parameters
        ----------
        X : array-like, shape (n_samples, in_features)
        y : array-like, shape (n_samples, out_features), or (n_samples,) for one
            output; integer class labels (n_samples,) for CrossEntropyLoss
        loss : Loss, default MSELoss()
        sample_weight : array-like (n_samples,), optional
            Non-negative weights with a positive sum: the loss is
            ``sum(w_i * l_i) / sum(w_i)``.
        l2 : float, default 0
            Adds ``l2 / 2 * sum(W ** 2)`` over the Dense weights (not the
            biases) to the loss and ``l2 * W`` to their gradients.

        Returns
        -------
        float
            The loss. Its gradient is left in the model's gradient buffer
            (each Dense layer's ``dW`` and ``db``); the parameters are unchanged.

        Raises
        ------
        FloatingPointError
            If the loss is not finite (the gradients are then partial sums).
        """
        loss = self._check_loss(loss)
        l2 = check_number(l2, "l2", low=0.0)
        X, y, w = self._check_Xyw(X, y, sample_weight, loss)
        with self._lock:
            if self._net.loss_grad(X, y, _lbfgs.CHUNK_ROWS, loss.kind, loss.param, w, l2) != _OK:
                raise FloatingPointError("the loss is not finite for these parameters and data")
            return self._net.last_loss

    def _fit_epoch(self, data: _FitData, order, batch_size: int, update, loss: Loss) -> tuple:
        """One training epoch and the validation loss after it: the epoch's status and,
        when it is OK, its logs."""
        start = time.perf_counter()
        status = self._net.train_epoch(data.X, data.y, order, batch_size, update, loss.kind, loss.param, data.w)
        if status != _OK:
            return status, {}
        logs = {"loss": self._net.last_loss, "epoch_time": time.perf_counter() - start}
        if data.X_val is not None:
            logs["val_loss"] = loss.loss(self._net.predict(data.X_val), data.y_val)
        return status, logs

    def epoch_trainer(self, X, y, *, loss=None, optimizer=None, batch_size=None,
                      sample_weight=None) -> Callable[..., float]:
        """Training one epoch at a time, in orders the caller draws: :meth:`fit`'s epoch
        for a loop of one's own (scikit-learn's shuffling and stopping rule, in
        fastnn's estimators).

        ``X``, ``y``, ``sample_weight``, ``loss``, ``optimizer`` and ``batch_size`` are
        :meth:`fit`'s, checked and converted once, here; the function returned trains
        on them without checking them again.

        Returns
        -------
        train(order=None) -> float
            One epoch of mini-batches of ``batch_size`` rows over the rows of X in
            ``order`` (row indices, one per row; None: as they are), in one compiled
            call, with ``optimizer`` at its current ``lr``: the same numbers as
            ``fit(X[order], y[order], epochs=1, shuffle=False, ...)``, without copying
            the rows. Returns the epoch's mean loss, as ``History.loss`` records it;
            raises FloatingPointError as :meth:`fit` does when the epoch diverges.
        """
        loss = self._check_loss(loss)
        optimizer = self._check_optimizer(SGD() if optimizer is None else optimizer)
        data = self._check_fit_data(X, y, sample_weight, loss, None, None)
        n_samples = data.X.shape[0]
        batch_size = n_samples if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n_samples)

        def train(order=None) -> float:
            rows = None if order is None else check_order(order, "order", n_samples)
            with self._lock:
                update, created = self._update_for(optimizer)
                status, logs = self._fit_epoch(data, rows, batch_size, update, loss)
                if status != _OK:
                    if self._net.last_done == 0:
                        self._drop_if_created(optimizer, created)    # not one update applied
                    raise FloatingPointError(self._divergence_message(status, "this epoch", optimizer.lr))
                return logs["loss"]
        return train

    def _check_fit_data(self, X, y, sample_weight, loss: Loss, validation_data, validation_split) -> _FitData:
        """The training and validation data of fit, checked and converted."""
        X, y, w = self._check_Xyw(X, y, sample_weight, loss)
        if validation_data is not None and validation_split is not None:
            raise ValueError("give validation_data or validation_split, not both")
        if validation_split is not None:
            fraction = check_number(validation_split, "validation_split", low=0.0, high=1.0,
                                    low_open=True, high_open=True)
            n_val = int(round(X.shape[0] * fraction))
            if not 1 <= n_val < X.shape[0]:
                raise ValueError(f"validation_split={fraction} leaves {X.shape[0] - n_val} training and "
                                 f"{n_val} validation rows of {X.shape[0]}; both need at least one")
            w = None if w is None else check_sample_weight(w[:-n_val], X.shape[0] - n_val, self._dtype)
            return _FitData(X[:-n_val], y[:-n_val], w, X[-n_val:], y[-n_val:])
        if validation_data is None:
            return _FitData(X, y, w)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}")
        X_val = self._check_X(validation_data[0], "validation_data[0]")
        try:
            _, y_val, _ = self._check_Xyw(X_val, validation_data[1], None, loss)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_data[1]: {exc}") from None
        return _FitData(X, y, w, X_val, y_val)

    def _check_stopping(self, early_stopping, patience, min_delta, callbacks) -> tuple:
        """fit's early stopping (an EarlyStopping callback, or None) and the user's callbacks."""
        if not isinstance(early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be True or False, got {type(early_stopping).__name__}")
        patience = check_positive_int(patience, "patience")
        min_delta = check_number(min_delta, "min_delta", low=0.0)
        callbacks = list(callbacks) if callbacks is not None else []
        for i, callback in enumerate(callbacks):
            if not callable(getattr(callback, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] must have an on_epoch_end(epoch, logs) method, "
                                f"got {type(callback).__name__}")
        stopper = EarlyStopping(self.get_parameters, patience, min_delta) if early_stopping else None
        return stopper, callbacks

    @staticmethod
    def _check_verbose(verbose) -> int:
        """Every how many epochs fit reports progress (0: never)."""
        if isinstance(verbose, (bool, np.bool_)):
            return 1 if verbose else 0
        if isinstance(verbose, numbers.Integral) and verbose == 0:
            return 0                    # verbose=0: silent, as in scikit-learn and Keras
        return check_positive_int(verbose, "verbose")

    # -- copying and pickling -----------------------------------------------------

    def __getstate__(self):
        # The layers describe the architecture; the parameters, gradients and
        # optimizer states are snapshot under the lock, so a copy taken while
        # another thread trains holds the state between two whole steps. Each
        # state travels with its optimizer: copying a model together with its
        # optimizer, as in copy.deepcopy((model, optimizer)), keeps them paired.
        with self._lock:
            params, grads = self._params.copy(), self._grads.copy()
            states = [(optimizer, self.optimizer_state(optimizer)) for optimizer in list(self._updates.keys())
                      if optimizer.state_names]
        return {"layers": self._layers, "dtype": self._dtype.name, "params": params, "grads": grads,
                "optimizer_states": states}

    def __setstate__(self, state):
        self._init_state()
        self._build(state["layers"], np.dtype(state["dtype"]))
        self._params[...] = state["params"]
        self._grads[...] = state["grads"]
        for optimizer, optimizer_state in state.get("optimizer_states", ()):
            self.set_optimizer_state(optimizer, optimizer_state)

    def save(self, path, optimizer=None) -> None:
        """Write the model (and ``optimizer``'s state) to ``path`` atomically: :func:`fastnn.save`."""
        write_model(self, path, optimizer)
