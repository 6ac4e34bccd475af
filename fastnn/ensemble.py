"""Many small networks trained together: :class:`Ensemble`.

An ensemble holds K *members*, networks of one architecture with their own
parameters, trained by one :meth:`Ensemble.fit` call: deep ensembles (K
seeds), bagging (K bootstrap weightings), cross-validation (K 0/1 masks), a
hyperparameter sweep (K optimizers), or one model per entity (K data sets).

Layout. The members' parameters live in one stacked ``(K, P)`` buffer and
their gradients in a second; the state of an optimizer (momentum, Adam's
moments) in stacked ``(K, P)`` buffers too, allocated once, when a fit first
uses that optimizer. Member k is a :class:`~fastnn.Sequential` built on row
k of those buffers (its compiled network walks that row in place), so that
``ens[k]`` is a copy of that row in a model of its own.

Training. One compiled call (``train_members`` of the walker) trains a
share of the members without the GIL, one epoch, or every epoch of the fit
when nothing needs Python between epochs (no validation data, no early
stopping, no progress report); ``n_jobs`` threads each take a contiguous
share of the members. Each member is trained exactly as
:meth:`Sequential.fit` trains it alone (same step, same order of
operations), so member k after ``ens.fit`` equals ``ens[k]`` trained by
``Sequential.fit`` with member k's optimizer settings, shuffle seed, sample
weights and validation data, to rounding; and the result does not depend
on ``n_jobs``.

Members side by side. When a fit is the common case (every layer a Dense
with identity, ReLU, LeakyReLU, tanh or sigmoid, MSE without sample
weights, SGD without momentum, and no layer large enough for BLAS), the
members are trained in groups of one vector register's width instead
(``train_members_lanes`` of the walker: 4 float64 or 8 float32 members per
group with AVX2), lane t of every vector holding member t, each with its
own data, order, learning rate and weight decay, and the walker's own
arithmetic per member (the same bits as the member-by-member loop).
"""

from __future__ import annotations

import copy
import numbers
import operator
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from fastnn._savefile import write_ensemble
from fastnn.callbacks import EarlyStopping, History
from fastnn.layers import Dense, Layer
from fastnn.losses import Loss
from fastnn.model import Sequential
from fastnn.optimizers import LBFGS, SGD, Optimizer
from fastnn.validation import (
    as_numeric_array,
    check_array,
    check_float_dtype,
    check_labels,
    check_option,
    check_positive_int,
    check_sample_weight,
    check_seed,
    check_target,
    describe,
)

__all__ = ["Ensemble", "MemberHistory"]

#: Largest number of permutation entries drawn ahead of the compiled call (8 bytes each).
_MAX_ORDER_ENTRIES = 1 << 22

#: Whether fit trains its common case side by side in SIMD lanes: True where they pay
#: (the walker's lanes_pay), "always" wherever they can (lanes_cover), False never (the tests
#: compare the two ways).
_USE_LANES = True


@dataclass
class MemberHistory(History):
    """What :meth:`Ensemble.fit` records for one member: a :class:`~fastnn.History`, and
    whether the member's training diverged.

    Parameters
    ----------
    diverged_epoch : int or None, default None
        The attribute of the same name (the other parameters are History's).
    message : str or None, default None
        The attribute of the same name.

    Attributes
    ----------
    diverged_epoch : int or None
        The epoch (1-based) in which a step of this member was refused because
        its loss or an updated parameter was not finite; the member stopped
        there, its parameters and optimizer state those from before that step
        (what :meth:`Sequential.fit` leaves when it raises FloatingPointError).
        None when it did not diverge.
    message : str or None
        What went wrong, as the FloatingPointError of ``Sequential.fit`` says it.
    """

    diverged_epoch: int | None = None
    message: str | None = None

    @property
    def diverged(self) -> bool:
        """Whether this member's training diverged (``diverged_epoch`` is set)."""
        return self.diverged_epoch is not None


@dataclass
class _MemberData:
    """fit's data of every member, checked: per member (lists of length K) X, y, w,
    and validation X, y, w (lists of None without validation data). A shared array
    appears K times (the same object)."""

    X: list
    y: list
    w: list
    X_val: list
    y_val: list
    w_val: list
    n_samples: int


@dataclass
class _FitRun:
    """fit's arguments, checked: what the epochs need."""

    loss: Loss
    optimizers: list
    epochs: int
    data: _MemberData
    batch_size: int
    shuffle: bool
    streams: list
    stream_of: list
    early_stopping: bool
    patience: int
    min_delta: float
    every: int
    n_jobs: int


def default_n_jobs() -> int:
    """The cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Ensemble:
    """K networks of one architecture, with their own parameters, trained together.

    Parameters
    ----------
    layers : sequence of Layer
        The architecture, as :class:`~fastnn.Sequential` takes it. The layers
        themselves are not used (nor their parameters): every member gets
        fresh copies, its Dense layers initialised as the given ones are
        (their ``init``), independently.
    n_members : int
        K, the number of members (>= 1).
    dtype : numpy.float32 or numpy.float64, default float64
    seed : int, numpy.random.SeedSequence or None
        Seed of the initialisation: member k draws its Dense layers' values,
        layer by layer, from ``numpy.random.default_rng(children[k])`` with
        ``children = numpy.random.SeedSequence(seed).spawn(n_members)``. So a
        member's initial values depend only on ``seed`` and ``k``. None draws
        fresh entropy.

    Raises
    ------
    TypeError, ValueError
        For layers Sequential refuses, or an n_members that is not a positive
        integer.

    Notes
    -----
    ``len(ens)`` is K; ``ens[k]`` is a :class:`~fastnn.Sequential` copy of
    member k (its parameters and the optimizer states the member keeps);
    ``ens.members`` the list of all K copies. See :meth:`fit` for training.
    """

    def __init__(self, layers, n_members: int, *, dtype=np.float64, seed=None):
        n_members = check_positive_int(n_members, "n_members")
        dtype = check_float_dtype(dtype, "dtype")
        template = _template_layers(layers)
        if seed is not None and not isinstance(seed, np.random.SeedSequence):
            check_seed(seed, "seed")            # the rule for an int seed (TypeError/ValueError)
            if isinstance(seed, np.random.Generator):
                raise TypeError("seed must be None, a non-negative integer or a numpy SeedSequence, got a Generator")
        children = (seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)).spawn(n_members)
        member_layers = []
        for child in children:
            rng = np.random.default_rng(child)
            member_layers.append([_fresh_layer(layer, rng) for layer in template])
        self._assemble(member_layers, dtype)

    @classmethod
    def from_models(cls, models) -> Ensemble:
        """An ensemble whose members are copies of ``models`` (their parameters, not their
        optimizer states).

        Parameters
        ----------
        models : sequence of Sequential
            At least one; all of one architecture (the same layers, sizes and
            activation parameters) and one dtype.

        Returns
        -------
        Ensemble

        Raises
        ------
        TypeError
            If ``models`` is not a sequence of Sequential.
        ValueError
            If it is empty, or the models differ in architecture or dtype.
        """
        if isinstance(models, Sequential):
            raise TypeError("models must be a list of Sequential models, got a single Sequential; wrap it in a list")
        try:
            models = list(models)
        except TypeError:
            raise TypeError(f"models must be a list of Sequential models, got {describe(models)}") from None
        if not models:
            raise ValueError("models must hold at least one Sequential, got an empty list")
        for i, model in enumerate(models):
            if not isinstance(model, Sequential):
                raise TypeError(f"models[{i}] must be a fastnn.Sequential, got {type(model).__name__}")
        first = _architecture(models[0])
        for i, model in enumerate(models[1:], 1):
            if model.dtype != models[0].dtype:
                raise ValueError(f"models[{i}] has dtype {model.dtype.name}, models[0] {models[0].dtype.name}: "
                                 f"an ensemble's members share one dtype")
            if _architecture(model) != first:
                raise ValueError(f"models[{i}] does not have the architecture of models[0]: {_architecture(model)} "
                                 f"against {first}")
        ens = cls.__new__(cls)
        member_layers = [[_fresh_layer(layer, None) for layer in model.layers] for model in models]
        ens._assemble(member_layers, models[0].dtype)
        for k, model in enumerate(models):
            ens._params[k] = model.get_parameters()
        return ens

    def _assemble(self, member_layers: list, dtype: np.dtype) -> None:
        """Allocate the stacked buffers and build member k on row k (its layers' values copied in)."""
        n_params = sum(layer.n_parameters for layer in member_layers[0] if isinstance(layer, Dense))
        n_members = len(member_layers)
        self._lock = threading.RLock()      # one fit, predict or copy at a time
        self._dtype = dtype
        self._params = np.empty((n_members, n_params), dtype=dtype)
        self._grads = np.zeros((n_members, n_params), dtype=dtype)
        self._members = [Sequential._on_buffers(layers, dtype, self._params[k], self._grads[k])
                         for k, layers in enumerate(member_layers)]
        # The walker build the members' networks come from (one architecture, one plan, one build).
        walkers = {type(member._net).__module__ for member in self._members}
        if len(walkers) != 1:       # pragma: no cover - one architecture, one plan
            raise RuntimeError(f"the members were planned on different walker builds: {sorted(walkers)}")
        self._walker = sys.modules[walkers.pop()]
        self._one_plan: bool | None = None           # whether every member's network has member 0's plan (_lanes_for)
        self._last_path: str | None = None          # "lanes" or "members": how the last block of epochs was trained

    # -- description -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, k) -> Sequential:
        """A :class:`~fastnn.Sequential` copy of member ``k`` (negative k counts from the end)."""
        member = self._members[self._index(k)]
        with self._lock:
            return copy.deepcopy(member)

    @property
    def members(self) -> list:
        """Copies of the K members, as :class:`~fastnn.Sequential` models (``ens[k]`` for one)."""
        return [self[k] for k in range(len(self))]

    @property
    def n_members(self) -> int:
        """K, the number of members."""
        return len(self._members)

    @property
    def layers(self) -> list:
        """Member 0's layers (a copy of the list): the architecture every member shares."""
        return self._members[0].layers

    @property
    def dtype(self) -> np.dtype:
        """The dtype of every member's parameters and computation."""
        return self._dtype

    @property
    def in_features(self) -> int:
        return self._members[0].in_features

    @property
    def out_features(self) -> int:
        return self._members[0].out_features

    @property
    def n_parameters(self) -> int:
        """Trainable values per member (P)."""
        return self._params.shape[1]

    def get_parameters(self) -> np.ndarray:
        """A copy of every member's parameters, shape (K, P): row k is ``ens[k].get_parameters()``."""
        with self._lock:
            return self._params.copy()

    def set_parameters(self, values) -> None:
        """Overwrite every member's parameters from a (K, P) array laid out as :meth:`get_parameters`.

        Parameters
        ----------
        values : array-like, shape (K, P)

        Raises
        ------
        ValueError, TypeError
            If ``values`` is not a finite numeric array of that shape.
        """
        values = check_array(values, "values", ndim=2, dtype=self._dtype, shape_hint="(n_members, n_parameters)")
        if values.shape != self._params.shape:
            raise ValueError(f"values must have shape {self._params.shape}, got {values.shape}")
        with self._lock:
            self._params[...] = values

    def __repr__(self) -> str:
        arch = ", ".join(repr(layer) for layer in self._members[0].layers)
        return f"Ensemble([{arch}], n_members={len(self)})  # {self.n_parameters} parameters each, {self._dtype.name}"

    # -- predicting ---------------------------------------------------------------

    def predict(self, X, *, reduce=None) -> np.ndarray:
        """Every member's output for ``X``, in one compiled call.

        Parameters
        ----------
        X : array-like, shape (n_samples, in_features)
        reduce : None, "mean" or "median", default None
            None: each member's output. "mean" or "median": their mean or
            median over the members.

        Returns
        -------
        ndarray
            (K, n_samples, out_features), or (K, n_samples) for a network with
            one output; without the leading K axis with ``reduce``.

        Raises
        ------
        TypeError, ValueError
            For an X Sequential.predict refuses, or another ``reduce``.
        """
        if reduce is not None:
            reduce = check_option(reduce, "reduce", ("mean", "median"))
        X = self._members[0]._check_X(X)
        out = np.empty((len(self), X.shape[0], self.out_features), dtype=self._dtype)
        nets = [member._net for member in self._members]
        with self._lock:
            status = self._walker.predict_members(nets, [X] * len(nets), out)
        if status != self._walker.OK:       # pragma: no cover - a checked X is finite
            raise ValueError("X must contain only finite values, got NaN or infinity")
        return _reduced(out, reduce)

    def predict_proba(self, X, *, reduce=None) -> np.ndarray:
        """Class probabilities of every member (see :meth:`Sequential.predict_proba`).

        Parameters
        ----------
        X : array-like, shape (n_samples, in_features)
        reduce : None, "mean" or "median", default None
            Reduce the members' probabilities to their mean or median.

        Returns
        -------
        ndarray
            (K, n_samples, out_features), or (K, n_samples) with one output
            (the probability of class 1); without the K axis with ``reduce``.

        Raises
        ------
        TypeError, ValueError
            As :meth:`predict`.
        """
        if reduce is not None:
            reduce = check_option(reduce, "reduce", ("mean", "median"))
        X = self._members[0]._check_X(X)
        return _reduced(np.stack([member.predict_proba(X) for member in self._members]), reduce)

    # -- training -----------------------------------------------------------------

    def fit(self, X, y, *, loss=None, optimizer=None, epochs: int = 1, batch_size=None, shuffle: bool = True,
            seed=None, sample_weight=None, validation_data=None, early_stopping: bool = False,
            patience: int = 10, min_delta: float = 0.0, verbose=False, n_jobs=None) -> list:
        """Train every member with mini-batch gradient descent, members side by side.

        Member k is trained exactly as :meth:`Sequential.fit` would train it
        alone with member k's optimizer, seed, sample weights and validation
        data: it equals ``ens[k]`` (taken before) fitted so, to rounding.

        Parameters
        ----------
        X : array-like, (n_samples, in_features) or (K, n_samples, in_features)
            One data set for all members, or one per member (all of n_samples rows).
        y : array-like
            (n_samples,) or (n_samples, out_features) shared, or (K, n_samples)
            or (K, n_samples, out_features) per member (with a per-member X
            only); integer class labels for CrossEntropyLoss.
        loss : Loss, default MSELoss()
        optimizer : Optimizer or list of K Optimizers, default SGD(lr=0.01)
            One optimizer for every member, or one per member, all of one
            kind, each with its own hyperparameters (a learning-rate sweep is
            a list of ``SGD(lr=...)``). Each member keeps its optimizer's
            state (momentum, moments) across fit calls with the same
            optimizer object, as Sequential does. :class:`fastnn.LBFGS` is
            refused (a full-batch method: fit members with Sequential.fit).
        epochs : int, default 1
        batch_size : int or None, default None
            As in Sequential.fit (None: the full batch).
        shuffle : bool, default True
        seed : int, numpy.random.Generator, None, or a list of K of those
            The shuffling's seed. One seed: every member visits the rows in
            the order ``Sequential.fit(seed=seed)`` would (the same orders for
            every member; None: fresh entropy, still one order shared). A list:
            member k shuffles as ``Sequential.fit(seed=seed[k])``; each member's
            orders are then drawn in the compiled loop, from its own
            Generator (the numbers ``Generator.permutation`` gives). A
            Generator given twice in the list is drawn from in Python instead,
            member after member, a block of epochs at a time.
        sample_weight : array-like, (n_samples,) shared or (K, n_samples) per member, optional
            Non-negative weights with a positive sum per member (a zero weight
            removes a sample exactly): bootstrap counts, 0/1 fold masks.
        validation_data : (X_val, y_val) or (X_val, y_val, w_val), optional
            Shared ((m, in_features), (m[, out])) or per member ((K, m,
            in_features), (K, m[, out])); ``w_val`` (m,) or (K, m) weights the
            validation loss (without it, the loss is Sequential.fit's
            ``val_loss``).
        early_stopping : bool, default False
            Per member, as Sequential.fit's: stop a member when its monitored
            loss (val_loss, else loss) has not improved by more than
            ``min_delta`` for ``patience`` epochs, and restore its best
            epoch's parameters. A stopped member costs nothing afterwards.
        patience : int, default 10
        min_delta : float, default 0.0
        verbose : bool or int, default False
            True or an int k: a line every k epochs with the members still
            training and their mean loss.
        n_jobs : int or None, default None
            Threads, each training a contiguous share of the members in
            compiled loops without the GIL; None: the cores available
            (:func:`os.sched_getaffinity`). The results do not depend on it.

        Returns
        -------
        list of MemberHistory
            One per member: History's ``loss``, ``val_loss``, ``epoch_time``
            (a block of epochs trained in one call shares its time equally),
            ``best_epoch``, ``stopped_epoch``, and ``diverged_epoch``.

        Raises
        ------
        TypeError, ValueError
            For any bad argument, naming it (and the member, for per-member
            arguments), before anything changes.

        Warns
        -----
        RuntimeWarning
            Once, naming every member whose training diverged (a loss or an
            updated parameter not finite): such a member stops with its
            parameters from before the diverging step, its History says so,
            and the other members go on.
        """
        run = self._check_fit(X, y, loss, optimizer, epochs, batch_size, shuffle, seed, sample_weight,
                              validation_data, early_stopping, patience, min_delta, verbose, n_jobs)
        # Everything is checked: nothing below raises for the caller's input.
        with self._lock:
            return self._fit_checked(run)

    def _fit_checked(self, run: _FitRun) -> list:
        """fit, its arguments checked: train, restore the early-stopped members' best epochs, warn."""
        updates = self._updates_for(run.optimizers)
        histories = [MemberHistory() for _ in range(len(self))]
        stoppers = ([EarlyStopping(member.get_parameters, run.patience, run.min_delta) for member in self._members]
                    if run.early_stopping else None)
        diverged = self._epochs(run, updates, histories, stoppers)
        if stoppers is not None:
            for k, stopper in enumerate(stoppers):
                if stopper.best_parameters is not None and histories[k].diverged_epoch is None:
                    histories[k].best_epoch = stopper.best_epoch
                    self._params[k] = stopper.best_parameters
        if diverged:
            warnings.warn(f"training diverged for {len(diverged)} of {len(self)} members ({_name_members(diverged)}): "
                          f"each stopped with its parameters from before the diverging step (see their History's "
                          f"diverged_epoch and message); the others trained on", RuntimeWarning, stacklevel=2)
        return histories

    def _check_fit(self, X, y, loss, optimizer, epochs, batch_size, shuffle, seed, sample_weight, validation_data,
                   early_stopping, patience, min_delta, verbose, n_jobs) -> _FitRun:
        """fit's arguments, every one checked (as Sequential.fit checks its own) and converted."""
        template = self._members[0]
        loss = template._check_loss(loss)
        optimizers = self._check_optimizers(optimizer)
        epochs = check_positive_int(epochs, "epochs")
        data = self._check_data(X, y, sample_weight, validation_data, loss)
        template._check_stopping(early_stopping, patience, min_delta, None)     # the rules, checked
        n_samples = data.n_samples
        batch_size = n_samples if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n_samples)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {type(shuffle).__name__} {shuffle!r}")
        every = template._check_verbose(verbose)
        streams, stream_of = _check_seeds(seed, len(self))
        return _FitRun(loss, optimizers, epochs, data, batch_size, bool(shuffle), streams, stream_of,
                       bool(early_stopping), int(patience), float(min_delta), every, _check_n_jobs(n_jobs))

    def _epochs(self, run: _FitRun, updates: list, histories: list, stoppers) -> list:
        """Train every member for ``run.epochs`` epochs (those that diverge or stop early, fewer),
        recording their histories; the members that diverged."""
        n_members, n_samples = len(self), run.data.n_samples
        per_epoch = run.early_stopping or run.data.X_val[0] is not None or run.every > 0
        block = 1 if per_epoch else run.epochs
        # Members with streams of their own draw each epoch's order in the compiled loop (the numbers
        # rng.permutation(n) gives); one stream shared by the members is drawn here, ahead, at most
        # _MAX_ORDER_ENTRIES at a time.
        own = (run.shuffle and len(run.streams) > 1 and len({id(rng) for rng in run.streams}) == len(run.streams)
               and all(_draws_as_numpy(self._walker, rng) for rng in run.streams))
        rngs = run.streams if own else [None] * n_members
        if run.shuffle and not own:
            block = max(1, min(block, _MAX_ORDER_ENTRIES // max(1, len(run.streams) * n_samples)))
        lanes = self._lanes_for(run, updates)
        active, diverged, epoch = list(range(n_members)), [], 1
        while epoch <= run.epochs and active:
            n_epochs = min(block, run.epochs - epoch + 1)
            orders = None
            if run.shuffle and not own:
                drawn = [np.stack([rng.permutation(n_samples) for _ in range(n_epochs)]) for rng in run.streams]
                orders = [drawn[run.stream_of[k]] for k in range(n_members)]
            start = time.perf_counter()
            losses, status, epochs_done = self._train(active, updates, run.data, orders, rngs, run.batch_size,
                                                      run.loss, n_epochs, run.n_jobs, lanes)
            epoch_time = (time.perf_counter() - start) / n_epochs
            still = []
            for i, k in enumerate(active):
                history = histories[k]
                history.loss.extend(losses[i, :epochs_done[i]].tolist())
                history.epoch_time.extend([epoch_time] * int(epochs_done[i]))
                if status[i] == self._walker.OK:
                    still.append(k)
                    continue
                history.diverged_epoch = epoch + int(epochs_done[i])
                history.message = Sequential._divergence_message(
                    int(status[i]), f"epoch {history.diverged_epoch}", run.optimizers[k].lr)
                diverged.append(k)
            active = still
            if per_epoch:
                active = self._after_epoch(active, epoch, run.epochs, histories, run.data, run.loss, stoppers)
                self._report(epoch, run, histories, len(active))
            epoch += n_epochs
        return diverged

    def _report(self, epoch: int, run: _FitRun, histories: list, n_active: int) -> None:
        """verbose's line after ``epoch``: the members still training, the mean loss of those that trained."""
        if run.every and (epoch % run.every == 0 or epoch == 1 or epoch == run.epochs):
            trained = [history.loss[-1] for history in histories if len(history.loss) == epoch]
            mean = float(np.mean(trained)) if trained else float("nan")
            print(f"epoch {epoch}/{run.epochs}: {n_active} of {len(self)} members training, mean loss {mean:.6g}")

    def _after_epoch(self, active: list, epoch: int, epochs: int, histories: list, data: _MemberData,
                     loss: Loss, stoppers) -> list:
        """The validation loss and early stopping of each member still training after ``epoch``;
        the members that go on."""
        still = []
        for k in active:
            member, history = self._members[k], histories[k]
            logs = {"loss": history.loss[-1], "epoch_time": history.epoch_time[-1]}
            if data.X_val[k] is not None:
                logs["val_loss"] = loss.loss(member._net.predict(data.X_val[k]), data.y_val[k], data.w_val[k])
                history.val_loss.append(logs["val_loss"])
            if stoppers is not None and stoppers[k].on_epoch_end(epoch, logs) is False and epoch < epochs:
                history.stopped_epoch = epoch
                continue
            still.append(k)
        return still

    def _lanes_for(self, run: _FitRun, updates: list):
        """For a fit that ``train_members_lanes`` covers (MSE without sample weights, SGD without
        momentum, a plan of Dense rows on fastnn's own loops at this batch size, one plan for
        every member) and where the lanes pay (``lanes_pay``: no layer on the walker's register
        tile): each member's learning rate and weight decay; else None."""
        if not _USE_LANES or run.loss.kind != "mse" or any(w is not None for w in run.data.w):
            return None
        if not all(isinstance(opt, SGD) and opt.momentum == 0 for opt in run.optimizers):
            return None
        net = self._members[0]._net
        if not self._walker.lanes_cover(net, run.batch_size, run.data.n_samples):
            return None
        if _USE_LANES != "always" and not self._walker.lanes_pay(net, run.batch_size, run.data.n_samples):
            return None
        if self._one_plan is None:
            first = self._members[0]._net
            key = _plan_key(first)
            self._one_plan = all(type(member._net) is type(first) and _plan_key(member._net) == key
                                 for member in self._members)
        if not self._one_plan:      # pragma: no cover - one architecture, one plan
            return None
        return (np.array([update.lr for update in updates], dtype=np.float64),
                np.array([opt.weight_decay for opt in run.optimizers], dtype=np.float64))

    def _train(self, active: list, updates: list, data: _MemberData, orders, rngs: list, batch_size: int,
               loss: Loss, n_epochs: int, n_jobs: int, lanes=None) -> tuple:
        """``n_epochs`` epochs of the members ``active``, in ``n_jobs`` threads (contiguous shares):
        per active member its losses (n_epochs), status and epochs completed. ``lanes`` (from
        _lanes_for): train them side by side in SIMD lanes."""
        if lanes is not None:
            return self._train_lanes(active, updates, data, orders, rngs, batch_size, n_epochs, n_jobs, *lanes)
        self._last_path = "members"
        losses, status, epochs_done, done = _outputs(len(active), n_epochs)
        nets = [self._members[k]._net for k in active]
        ups = [updates[k] for k in active]
        Xs, ys, ws, ords, gens = _shares_data(active, data, orders, rngs)
        train = self._walker.train_members

        def share(lo: int, hi: int) -> None:
            train(nets[lo:hi], ups[lo:hi], Xs[lo:hi], ys[lo:hi], ws[lo:hi], ords[lo:hi], gens[lo:hi], batch_size,
                  loss.kind, loss.param, n_epochs, losses[lo:hi], status[lo:hi], epochs_done[lo:hi], done[lo:hi])

        _in_threads(share, len(active), n_jobs)
        return losses, status, epochs_done

    def _train_lanes(self, active: list, updates: list, data: _MemberData, orders, rngs: list, batch_size: int,
                     n_epochs: int, n_jobs: int, lrs: np.ndarray, weight_decays: np.ndarray) -> tuple:
        """_train on ``train_members_lanes``: the threads' shares are whole groups of lanes;
        each member's update counts the steps it took."""
        self._last_path = "lanes"
        rows = np.array(active, dtype=np.intp)
        losses, status, epochs_done, done = _outputs(len(active), n_epochs)
        Xs, ys, _, ords, gens = _shares_data(active, data, orders, rngs)
        net = self._members[0]._net
        train = self._walker.train_members_lanes

        def share(lo: int, hi: int) -> None:
            code = train(net, rows[lo:hi], self._params, self._grads, Xs[lo:hi], ys[lo:hi], ords[lo:hi],
                         gens[lo:hi], lrs[rows[lo:hi]], weight_decays[rows[lo:hi]], batch_size, n_epochs,
                         losses[lo:hi], status[lo:hi], epochs_done[lo:hi], done[lo:hi])
            if code != self._walker.OK:     # pragma: no cover - _lanes_for asked lanes_cover
                raise RuntimeError("train_members_lanes refused a fit that lanes_cover accepted")

        _in_threads(share, len(active), n_jobs, unit=self._walker.LANES[self._dtype.name])
        n_batches = -(-data.n_samples // batch_size)
        for i, k in enumerate(active):
            steps = int(epochs_done[i]) * n_batches
            if status[i] != self._walker.OK:
                steps += int(done[i]) // batch_size
            updates[k].step += steps
        return losses, status, epochs_done

    # -- checks -------------------------------------------------------------------

    def _check_optimizers(self, optimizer) -> list:
        """One optimizer per member (checked as Sequential checks one; a list of K of one kind)."""
        n_members = len(self)
        if optimizer is None:
            optimizer = SGD()
        if isinstance(optimizer, (list, tuple)):
            if len(optimizer) != n_members:
                raise ValueError(f"optimizer must be one optimizer or a list of one per member ({n_members}), "
                                 f"got a list of {len(optimizer)}")
            optimizers = list(optimizer)
            names = [f"optimizer[{k}]" for k in range(n_members)]
        else:
            optimizers = [optimizer] * n_members
            names = ["optimizer"] * n_members
        for name, opt in zip(names, optimizers):
            if isinstance(opt, LBFGS):
                raise TypeError(f"{name}: fastnn.LBFGS is a full-batch method that an Ensemble does not run; "
                                f"fit each member with Sequential.fit(X, y, optimizer=fastnn.LBFGS()) instead")
            try:
                Sequential._check_optimizer(opt)
            except TypeError as exc:
                raise TypeError(f"{name}: {exc}") from None
        kinds = {type(opt) for opt in optimizers}
        if len(kinds) > 1:
            raise TypeError(f"optimizer must be a list of optimizers of one kind, got "
                            f"{sorted(kind.__name__ for kind in kinds)}")
        return optimizers

    def _check_data(self, X, y, sample_weight, validation_data, loss: Loss) -> _MemberData:
        """The training and validation data of every member, checked and converted."""
        n_members = len(self)
        Xs, ys, n_samples = self._check_Xy(X, y, loss, "X", "y")
        ws = self._check_weights(sample_weight, n_samples, "sample_weight")
        if validation_data is None:
            return _MemberData(Xs, ys, ws, [None] * n_members, [None] * n_members, [None] * n_members, n_samples)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError(f"validation_data must be a pair (X_val, y_val) or a triple (X_val, y_val, w_val), "
                            f"got {describe(validation_data)}")
        X_val, y_val, n_val = self._check_Xy(validation_data[0], validation_data[1], loss,
                                             "validation_data[0]", "validation_data[1]")
        w_val = (self._check_weights(validation_data[2], n_val, "validation_data[2]")
                 if len(validation_data) == 3 else [None] * n_members)
        return _MemberData(Xs, ys, ws, X_val, y_val, w_val, n_samples)

    def _check_Xy(self, X, y, loss: Loss, x_name: str, y_name: str) -> tuple:
        """X and y shared (2-D X) or per member (3-D X): lists of K arrays, and the rows."""
        template, n_members = self._members[0], len(self)
        array = as_numeric_array(X, x_name)
        if array.ndim == 2:
            X = template._check_X(array, x_name)
            n = X.shape[0]
            try:
                if loss.kind == "cross_entropy":
                    y = check_labels(y, y_name, n, template.out_features, self._dtype)
                else:
                    y = check_target(y, y_name, n, template.out_features, self._dtype)
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc).replace("match X", f"match {x_name}")) from None
            return [X] * n_members, [y] * n_members, n
        if array.ndim != 3:
            raise ValueError(f"{x_name} must be a 2-D array (n_samples, in_features) shared by the members or a "
                             f"3-D array (n_members, n_samples, in_features), got {array.ndim}-D shape {array.shape}")
        X = check_array(array, x_name, ndim=3, dtype=self._dtype, shape_hint="(n_members, n_samples, in_features)")
        if X.shape[0] != n_members or X.shape[2] != template.in_features:
            raise ValueError(f"{x_name} must have shape ({n_members}, n_samples, {template.in_features}) for this "
                             f"ensemble of {n_members} members, got {X.shape}")
        n = X.shape[1]
        y_array = as_numeric_array(y, y_name)
        if y_array.ndim < 2 or y_array.shape[0] != n_members:
            raise ValueError(f"{y_name} must have one target array per member, shape ({n_members}, {n}) or "
                             f"({n_members}, {n}, {template.out_features}), since {x_name} is per member; got "
                             f"shape {y_array.shape}")
        out = template.out_features
        if loss.kind != "cross_entropy" and y_array.shape[1:] in ((n,), (n, out)) and (y_array.ndim == 3 or out == 1):
            # Every member's targets at once: converted, and scanned for NaN and infinity, in one
            # pass (what check_target does member by member); refused, they are checked member by
            # member below for the message that names the member.
            try:
                whole = check_array(y_array, y_name, ndim=(2, 3), dtype=self._dtype)
            except (TypeError, ValueError):
                whole = None
            if whole is not None:
                return list(X), list(whole.reshape(n_members, n, out)), n
        ys = []
        for k in range(n_members):
            name = f"{y_name}[{k}]"
            if loss.kind == "cross_entropy":
                ys.append(check_labels(y_array[k], name, n, template.out_features, self._dtype))
            else:
                ys.append(check_target(y_array[k], name, n, template.out_features, self._dtype))
        return list(X), ys, n

    def _check_weights(self, sample_weight, n_samples: int, name: str) -> list:
        """None, (n,) shared or (K, n) per member: a list of K weight arrays (or Nones)."""
        n_members = len(self)
        if sample_weight is None:
            return [None] * n_members
        array = as_numeric_array(sample_weight, name)
        if array.ndim == 1:
            rows, names = [array], [name]
        elif array.ndim == 2:
            if array.shape[0] != n_members:
                raise ValueError(f"{name} must have shape ({n_samples},) shared or ({n_members}, {n_samples}) per "
                                 f"member, got {array.shape}")
            rows, names = list(array), [f"{name}[{k}]" for k in range(n_members)]
        else:
            raise ValueError(f"{name} must have shape ({n_samples},) shared or ({n_members}, {n_samples}) per "
                             f"member, got {array.ndim}-D shape {array.shape}")
        checked = []
        for row, row_name in zip(rows, names):
            try:
                checked.append(check_sample_weight(row, n_samples, self._dtype))
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc).replace("sample_weight", row_name, 1)) from None
        return checked * n_members if len(checked) == 1 else checked

    # -- optimizer state ----------------------------------------------------------

    def _updates_for(self, optimizers: list) -> list:
        """Each member's compiled update for its optimizer, made (with zero state, in rows of
        stacked (K, P) buffers allocated once for these optimizers) on first use."""
        missing = [k for k, (member, opt) in enumerate(zip(self._members, optimizers)) if opt not in member._updates]
        if missing:
            needs = max(_n_state_buffers(optimizers[k]) for k in missing)
            stacked = [np.zeros((len(self), self.n_parameters), dtype=self._dtype) for _ in range(needs)]
            for k in missing:
                opt = optimizers[k]
                rows = [buf[k] for buf in stacked[:_n_state_buffers(opt)]] + [None, None]
                self._members[k]._updates[opt] = self._members[k]._net.make_update(
                    opt.kind, opt.lr, buf1=rows[0], buf2=rows[1], **opt.hyperparameters)
        updates = []
        for member, opt in zip(self._members, optimizers):
            update = member._updates[opt]
            if update.lr != opt.lr:
                update.lr = opt.lr          # a schedule changed it, as Sequential follows it
            updates.append(update)
        return updates

    def optimizer_state(self, k: int, optimizer) -> dict:
        """The state member ``k`` keeps for ``optimizer`` (see :meth:`Sequential.optimizer_state`).

        Parameters
        ----------
        k : int
            The member.
        optimizer : Optimizer

        Returns
        -------
        dict
            ``step`` and copies of the rule's buffers by name.
        """
        return self._members[self._index(k)].optimizer_state(optimizer)

    def _index(self, k) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"an ensemble is indexed by an int, got {describe(k)}")
        index, n = operator.index(k), len(self._members)
        if not -n <= index < n:
            raise IndexError(f"member index {index} out of range for an ensemble of {n} members")
        return index % n

    # -- copying, pickling, saving ------------------------------------------------

    def __getstate__(self):
        # Each optimizer state travels with its optimizer (as Sequential's do), all taken under the
        # lock: a copy made while another thread trains holds the state between two fits.
        with self._lock:
            states = [[(opt, member.optimizer_state(opt)) for opt in list(member._updates.keys()) if opt.state_names]
                      for member in self._members]
            return {"layers": [member.layers for member in self._members], "dtype": self._dtype.name,
                    "params": self._params.copy(), "grads": self._grads.copy(), "optimizer_states": states}

    def __setstate__(self, state):
        member_layers = [[_fresh_layer(layer, None) for layer in layers] for layers in state["layers"]]
        self._assemble(member_layers, np.dtype(state["dtype"]))
        self._params[...] = state["params"]
        self._grads[...] = state["grads"]
        for member, member_states in zip(self._members, state["optimizer_states"]):
            for opt, opt_state in member_states:
                member.set_optimizer_state(opt, opt_state)

    def save(self, path) -> None:
        """Write the ensemble (architecture and every member's parameters) to ``path``
        atomically; :func:`fastnn.load` reads it back. See :mod:`fastnn.io` for the format.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        TypeError, ValueError, OSError
            As :func:`fastnn.save`.
        """
        write_ensemble(self, path)


# -- helpers -------------------------------------------------------------------------


#: (walker module, bit generator type) -> whether the walker's copy of Generator.permutation gives this
#: NumPy's numbers for that bit generator (checked once per process).
_SAME_DRAWS: dict = {}


def _draws_as_numpy(walker, rng: np.random.Generator) -> bool:
    """Whether ``walker``'s compiled ``Generator.permutation`` (a copy of NumPy's algorithm, which
    the members' compiled loop draws each epoch's order with) gives the numbers, and leaves the
    state, that this NumPy's gives for ``rng``'s kind of bit generator. Checked once per process
    and kind on fresh generators: a NumPy that draws otherwise makes fit draw the orders ahead
    with NumPy itself (slower, the same results)."""
    kind = type(rng.bit_generator)
    key = (walker.__name__, kind)
    if key not in _SAME_DRAWS:
        same = True
        try:
            for n in (1, 2, 3, 17, 1000):
                ours, numpys = np.random.Generator(kind(20261202)), np.random.Generator(kind(20261202))
                same = same and np.array_equal(walker.permutations(ours, n, 2),
                                               np.stack([numpys.permutation(n) for _ in range(2)]))
                same = same and ours.integers(1 << 62) == numpys.integers(1 << 62)
        except Exception:       # a bit generator that cannot be made from a seed: draw with NumPy
            same = False
        _SAME_DRAWS[key] = same
    return _SAME_DRAWS[key]


def _template_layers(layers) -> list:
    """``layers`` as a list, checked as Sequential checks them (on copies)."""
    if isinstance(layers, Layer):
        raise TypeError("layers must be a list of layers, got a single layer; wrap it in a list")
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(f"layers must be a list of fastnn layers, got {type(layers).__name__}") from None
    copies = [_fresh_layer(layer, None) if isinstance(layer, Layer) else layer for layer in layers]
    Sequential(copies)          # the rules of a layer list (TypeError/ValueError naming layers[i])
    return layers


def _fresh_layer(layer, rng):
    """A copy of ``layer`` that belongs to no model: a Dense of its sizes and init, drawn from
    ``rng`` (or with ``layer``'s values when rng is None); an activation deep-copied."""
    if isinstance(layer, Dense):
        fresh = Dense(layer.in_features, layer.out_features, init=layer.init, seed=0 if rng is None else rng)
        if rng is None:
            fresh.W[...] = layer.W
            fresh.b[...] = layer.b
        return fresh
    return copy.deepcopy(layer)


def _outputs(n_active: int, n_epochs: int) -> tuple:
    """The compiled training calls' outputs: losses (n_active, n_epochs), status, epochs done, rows done."""
    return (np.zeros((n_active, n_epochs)), np.zeros(n_active, dtype=np.intc), np.zeros(n_active, dtype=np.intp),
            np.zeros(n_active, dtype=np.intp))


def _shares_data(active: list, data: _MemberData, orders, rngs: list) -> tuple:
    """The members ``active``'s X, y, w, orders (None each without) and generators, as lists."""
    ords = [None] * len(active) if orders is None else [orders[k] for k in active]
    return ([data.X[k] for k in active], [data.y[k] for k in active], [data.w[k] for k in active], ords,
            [rngs[k] for k in active])


def _in_threads(share, n_items: int, n_jobs: int, unit: int = 1) -> None:
    """``share(lo, hi)`` over contiguous shares of ``n_items`` (multiples of ``unit`` but the last),
    one per thread of at most ``n_jobs``: the first share in the calling thread (which would
    otherwise only wait), each other in a thread of its own; the first exception a share
    raised, raised here once every share has ended."""
    n_units = -(-n_items // unit)
    n_threads = min(n_jobs, n_units)
    if n_threads <= 1:
        share(0, n_items)
        return
    bounds = [min(n_items, unit * (n_units * t // n_threads)) for t in range(n_threads + 1)]
    errors: list = []

    def run(lo: int, hi: int) -> None:
        try:
            share(lo, hi)
        except BaseException as exc:        # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lo, hi), name="fastnn-ensemble", daemon=True)
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    for thread in threads:
        thread.start()
    try:
        run(bounds[0], bounds[1])
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _plan_key(net) -> tuple:
    """What makes two compiled networks walk alike: plan, activation parameters, BLAS rules."""
    row_batch = net.row_blas_min_batch
    return (net.plan.tobytes(), net.fn_params.tobytes(), None if row_batch is None else row_batch.tobytes(),
            net.uses_blas, net.blas_min_weights, net.blas_min_width, net.blas_min_weights_tiled)


def _architecture(model: Sequential) -> list:
    """What makes two models' architectures one: each layer's type and its description."""
    return [repr(layer) for layer in model.layers]


def _reduced(out: np.ndarray, reduce) -> np.ndarray:
    if out.shape[2] == 1:
        out = out[:, :, 0]
    if reduce == "mean":
        return out.mean(axis=0)
    if reduce == "median":
        return np.median(out, axis=0)
    return out


def _check_seeds(seed, n_members: int) -> tuple:
    """The shuffling's generators, and for each member the index of its own."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != n_members:
            raise ValueError(f"seed must be one seed or a list of one per member ({n_members}), got a list of "
                             f"{len(seed)}")
        return [check_seed(s, f"seed[{k}]") for k, s in enumerate(seed)], list(range(n_members))
    return [check_seed(seed, "seed")], [0] * n_members


def _check_n_jobs(n_jobs) -> int:
    if n_jobs is None:
        return default_n_jobs()
    return check_positive_int(n_jobs, "n_jobs")


def _n_state_buffers(optimizer: Optimizer) -> int:
    """The state buffers the compiled update of ``optimizer`` keeps (as Network.make_update allocates them)."""
    if optimizer.kind == "sgd":
        return 1 if optimizer.hyperparameters.get("momentum", 0.0) != 0 else 0
    return 2


def _name_members(members: list) -> str:
    shown = ", ".join(str(k) for k in members[:20])
    more = f" and {len(members) - 20} more" if len(members) > 20 else ""
    return f"member{'s' if len(members) > 1 else ''} {shown}{more}"
