"""An :class:`~fastnn.Ensemble` trained on a Dask cluster: :func:`fit_ensemble`.

The members are cut into chunks of consecutive members; each chunk is one
compiled :meth:`Ensemble.fit` call in a task on a worker of a
``dask.distributed`` cluster, and the chunks' parameters, optimizer states and
histories are gathered back into the same ensemble, which then holds exactly
what ``ensemble.fit`` with the same arguments would have left in it.

Data travels once. A NumPy array shared by every member is scattered once
(the workers that need it fetch it from there); a per-member NumPy array is
cut by chunk and each piece scattered once, to the worker its chunk then runs
on. Data already on the cluster does not pass through the client at all: a
Dask array is computed on the cluster (a per-member one in blocks of the
chunks' members), and per-member data may be given as a list of one
:class:`distributed.Future` per member.

This module is a face of fastnn on Dask, an optional dependency (the
``fastnn[dask]`` extra: ``dask[distributed]``): ``import fastnn`` does not
import it, and it imports Dask only inside the functions that need it.
"""

from __future__ import annotations

import math
import pickle
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastnn.ensemble import Ensemble
from fastnn.losses import Loss
from fastnn.optimizers import Optimizer
from fastnn.validation import check_array, check_positive_int, describe

__all__ = ["fit_ensemble"]

#: The keyword arguments of Ensemble.fit that fit_ensemble passes on (X, y and the data it places itself aside).
_FIT_KEYWORDS = ("loss", "optimizer", "epochs", "batch_size", "shuffle", "seed", "validation_data",
                 "sample_weight", "early_stopping", "patience", "min_delta", "verbose", "n_jobs")


@dataclass
class _Argument:
    """One data argument of the fit: its name, its value, whether it has one entry per member, and
    its shape (the per-member entries' shape, after the member axis, for a list of futures)."""

    name: str
    value: Any
    per_member: bool
    shape: tuple


def fit_ensemble(ensemble: Ensemble, X, y, *, client, chunk_size: int | None = None, **fit_kwargs) -> list:
    """Train ``ensemble`` on a Dask cluster, as ``ensemble.fit(X, y, **fit_kwargs)`` would here.

    The members are split into chunks of ``chunk_size`` consecutive members;
    each chunk is trained by one :meth:`Ensemble.fit` call in a task on a
    worker, on that chunk's members' data only, and the results are written
    back into ``ensemble`` when every chunk has finished: its parameters and
    each member's optimizer state equal those a local ``ensemble.fit`` with
    the same arguments leaves (the members are independent and each chunk
    trains them with the same steps, in the same order).

    Parameters
    ----------
    ensemble : Ensemble
        The ensemble to train; changed in place.
    X : array-like, dask.array.Array or list of distributed.Future
        Shared ``(n_samples, in_features)`` or per member ``(K, n_samples,
        in_features)``, as :meth:`Ensemble.fit` takes it. A NumPy array is
        scattered to the cluster (a per-member one chunk by chunk); a Dask
        array is computed there (a per-member one in blocks of the chunks'
        members); a list of K futures is per-member data already on the
        cluster, future k holding member k's ``(n_samples, in_features)``.
    y : array-like, dask.array.Array or list of distributed.Future
        The targets, shared or per member as ``X`` is, in the same forms.
    client : distributed.Client
        The cluster's client.
    chunk_size : int or None, default None
        Members per task; None: the members shared equally among the
        cluster's worker threads (one chunk per thread).
    **fit_kwargs
        Any keyword argument of :meth:`Ensemble.fit`. ``sample_weight`` and
        the arrays of ``validation_data`` take the same forms as ``X``; a
        list of optimizers or of seeds (one per member) is cut by chunk.
        ``n_jobs`` is the threads of each chunk's fit (default 1: the
        cluster's parallelism is its workers'); ``verbose`` prints on the
        workers. A ``seed`` of None is drawn here once, so that every member
        still shuffles in one shared order; a Generator is copied to each
        chunk (the caller's does not advance).

    Returns
    -------
    list of MemberHistory
        One per member, in member order, as :meth:`Ensemble.fit` returns them.
        Until they are written back (all at once, when every chunk has
        finished), ``ensemble`` is left as it was; use it from no other
        thread meanwhile.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it, before any data or training task is
        sent to the cluster: the ensemble, client, chunk size and keyword
        names, the types of the loss and optimizers, the lengths of
        per-member lists, the shapes of every data argument (a member axis of
        K entries; for a list of futures, their shapes, asked of the cluster)
        and the values of NumPy data (numeric and finite). The rules of
        :meth:`Ensemble.fit` that only its check applies (labels, weights, the
        values of data already on the cluster) are applied on the workers,
        before their training: an error there is raised here, with the
        ensemble left as it was.

    Warns
    -----
    RuntimeWarning
        Once, naming (by their index in ``ensemble``) the members whose
        training diverged, as :meth:`Ensemble.fit` does.

    Examples
    --------
    >>> from distributed import Client, LocalCluster          # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> ens = fastnn.Ensemble([fastnn.Dense(1, 16), fastnn.ReLU(), fastnn.Dense(16, 1)], 64, seed=0)  # doctest: +SKIP
    >>> histories = fastnn.dask.fit_ensemble(ens, X, y, client=client, epochs=50, batch_size=16)  # doctest: +SKIP
    """
    distributed = _import_distributed()
    if not isinstance(ensemble, Ensemble):
        raise TypeError(f"ensemble must be a fastnn.Ensemble, got {describe(ensemble)}")
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, got {describe(client)}")
    unknown = sorted(set(fit_kwargs) - set(_FIT_KEYWORDS))
    if unknown:
        raise TypeError(f"fit_ensemble got unexpected keyword argument(s) {unknown}; it takes those of "
                        f"Ensemble.fit: {list(_FIT_KEYWORDS)}")
    n_members = len(ensemble)
    arguments = _check_data(X, y, fit_kwargs, n_members, ensemble.in_features, distributed)
    per_member_kwargs = _check_scalars(fit_kwargs, n_members)
    bounds = _chunks(n_members, chunk_size, client)
    # Everything the cluster will not check is checked: from here on, data and tasks are sent.
    if fit_kwargs.get("seed") is None:
        # One shared shuffling order for every member, as Ensemble.fit draws it (each chunk a copy).
        fit_kwargs["seed"] = np.random.default_rng()
    placed = {arg.name: _place(client, arg, bounds) for arg in arguments}
    state = ensemble.__getstate__()
    tasks, tables = [], []
    for i, (lo, hi) in enumerate(bounds):
        kwargs = {key: (value[lo:hi] if key in per_member_kwargs else value) for key, value in fit_kwargs.items()
                  if key not in ("sample_weight", "validation_data")}
        chunk_state = _members_of(state, n_members, lo, hi)
        tables.append(_optimizer_table(chunk_state, kwargs))
        blob = pickle.dumps((chunk_state, kwargs, tables[-1]), protocol=pickle.HIGHEST_PROTOCOL)
        data = {name: pieces[i] for name, pieces in placed.items()}
        tasks.append(client.submit(_fit_chunk, blob, data, pure=False))
    distributed.wait(tasks)
    for (lo, hi), task in zip(bounds, tasks):
        if task.status == "error":
            error = task.exception()
            # Ensemble.fit names a chunk's members from 0: say which of the ensemble's they are.
            raise type(error)(f"in the chunk of members {lo} to {hi - 1} (its member i is the ensemble's member "
                              f"{lo} + i): {error}") from error
    return _gather_back(ensemble, state, bounds, client.gather(tasks), tables)


# -- checks ----------------------------------------------------------------------------------


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - only without the dask extra
        raise ImportError("fastnn.dask needs Dask's distributed scheduler: pip install 'fastnn[dask]' "
                          f"(dask[distributed]). Original error: {exc}") from exc
    return distributed


def _is_dask_array(value) -> bool:
    array = sys.modules.get("dask.array")          # imported by whoever made a Dask array
    return array is not None and isinstance(value, array.Array)


def _is_future_list(value, distributed) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(item, distributed.Future) for item in value))


def _describe_array(array) -> tuple:
    """(shape, dtype kind) of a per-member entry already on the cluster: all that comes back of it."""
    array = np.asarray(array)
    return array.shape, array.dtype.kind


def _argument(name: str, value, per_member_ndim: int, n_members: int, distributed) -> _Argument:
    """``value`` checked for its form, with its shape and whether it is per member (its ndim is
    ``per_member_ndim``, or it is a list of futures)."""
    if _is_future_list(value, distributed):
        if len(value) != n_members:
            raise ValueError(f"{name} must be a list of one future per member ({n_members}), got {len(value)}")
        client = value[0].client
        described = client.gather(client.map(_describe_array, list(value), pure=False))
        shapes = {shape for shape, _ in described}
        if len(shapes) != 1:
            raise ValueError(f"{name}: the members' arrays must have one shape, got {sorted(shapes)}")
        for k, (shape, kind) in enumerate(described):
            if kind not in "biuf":
                raise TypeError(f"{name}[{k}] must hold real numbers, got dtype kind {kind!r}")
        return _Argument(name, list(value), True, (n_members, *shapes.pop()))
    if _is_dask_array(value):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got a Dask array of dtype {value.dtype}")
        if any(math.isnan(size) for size in value.shape):
            raise ValueError(f"{name} must be a Dask array of known shape, got {value.shape} (compute_chunk_sizes())")
        return _Argument(name, value, value.ndim == per_member_ndim, tuple(value.shape))
    check_array(value, name, ndim=(1, 2, 3))        # numeric, finite, not empty (the fit converts it)
    array = np.asarray(value)
    return _Argument(name, array, array.ndim == per_member_ndim, array.shape)


def _check_data(X, y, fit_kwargs: dict, n_members: int, in_features: int, distributed) -> list:
    """The data arguments (X, y, sample_weight, validation_data's), checked for their forms and shapes."""
    X_arg = _argument("X", X, 3, n_members, distributed)
    if len(X_arg.shape) not in (2, 3) or X_arg.shape[-1] != in_features:
        raise ValueError(f"X must have shape (n_samples, {in_features}) shared or ({n_members}, n_samples, "
                         f"{in_features}) per member, got {X_arg.shape}")
    y_arg = _argument("y", y, 2 if X_arg.per_member else 99, n_members, distributed)
    if X_arg.per_member:
        y_arg.per_member = True
    arguments = [X_arg, y_arg]
    _check_member_axis(X_arg, n_members)
    _check_rows(y_arg, X_arg, n_members, "X")
    weight = fit_kwargs.get("sample_weight")
    w_arg = _argument("sample_weight", weight, 2, n_members, distributed) if weight is not None else None
    if w_arg is not None:
        _check_rows(w_arg, X_arg, n_members, "X")
        arguments.append(w_arg)
    return arguments + _check_validation(fit_kwargs.get("validation_data"), n_members, in_features, distributed)


def _check_validation(validation, n_members: int, in_features: int, distributed) -> list:
    if validation is None:
        return []
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise TypeError(f"validation_data must be a pair (X_val, y_val) or a triple (X_val, y_val, w_val), "
                        f"got {describe(validation)}")
    X_val = _argument("validation_data[0]", validation[0], 3, n_members, distributed)
    if len(X_val.shape) not in (2, 3) or X_val.shape[-1] != in_features:
        raise ValueError(f"validation_data[0] must have shape (n_samples, {in_features}) shared or ({n_members}, "
                         f"n_samples, {in_features}) per member, got {X_val.shape}")
    _check_member_axis(X_val, n_members)
    y_val = _argument("validation_data[1]", validation[1], 2 if X_val.per_member else 99, n_members, distributed)
    y_val.per_member = X_val.per_member
    _check_rows(y_val, X_val, n_members, "validation_data[0]")
    found = [X_val, y_val]
    if len(validation) == 3 and validation[2] is not None:
        w_val = _argument("validation_data[2]", validation[2], 2, n_members, distributed)
        _check_rows(w_val, X_val, n_members, "validation_data[0]")
        found.append(w_val)
    return found


def _check_member_axis(arg: _Argument, n_members: int) -> None:
    if arg.per_member and arg.shape[0] != n_members:
        raise ValueError(f"{arg.name} is per member (its first axis), so it must have {n_members} entries for this "
                         f"ensemble of {n_members} members, got shape {arg.shape}")


def _check_rows(arg: _Argument, X_arg: _Argument, n_members: int, x_name: str) -> None:
    """``arg`` (y, or weights) has X's rows, and a member axis of K entries when it is per member."""
    if arg.per_member and not X_arg.per_member and arg.name.startswith("y"):
        raise ValueError(f"{arg.name} is per member but {x_name} is shared")
    _check_member_axis(arg, n_members)
    n_rows = X_arg.shape[1] if X_arg.per_member else X_arg.shape[0]
    rows = arg.shape[1] if arg.per_member else arg.shape[0]
    if rows != n_rows:
        raise ValueError(f"{arg.name} must have {n_rows} rows, as {x_name} has, got shape {arg.shape}")


def _check_scalars(fit_kwargs: dict, n_members: int) -> set:
    """The keyword arguments whose values are lists of one entry per member (cut by chunk), checked for
    their lengths and types; the loss and the optimizers for their types."""
    per_member = set()
    for key in ("optimizer", "seed"):
        value = fit_kwargs.get(key)
        if isinstance(value, (list, tuple)):
            if len(value) != n_members:
                raise ValueError(f"{key} must be one {key} or a list of one per member ({n_members}), got a list "
                                 f"of {len(value)}")
            per_member.add(key)
    optimizer: Any = fit_kwargs.get("optimizer")
    optimizers: list = list(optimizer) if "optimizer" in per_member else [optimizer]
    for k, opt in enumerate(optimizers):
        if opt is not None and not isinstance(opt, Optimizer):
            where = f"optimizer[{k}]" if "optimizer" in per_member else "optimizer"
            raise TypeError(f"{where} must be a fastnn optimizer, got {describe(opt)}")
    loss = fit_kwargs.get("loss")
    if loss is not None and not isinstance(loss, Loss):
        raise TypeError(f"loss must be a fastnn loss, got {describe(loss)}")
    for key in ("epochs", "batch_size", "patience", "n_jobs"):
        if fit_kwargs.get(key) is not None:
            check_positive_int(fit_kwargs[key], key)
    return per_member


def _chunks(n_members: int, chunk_size, client) -> list:
    """(lo, hi) of each chunk of consecutive members."""
    if chunk_size is None:
        threads = sum(worker.get("nthreads", 1) for worker in client.scheduler_info()["workers"].values())
        chunk_size = math.ceil(n_members / max(1, threads))
    else:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    return [(lo, min(lo + chunk_size, n_members)) for lo in range(0, n_members, chunk_size)]


# -- sending ---------------------------------------------------------------------------------


def _place(client, arg: _Argument, bounds: list) -> list:
    """Per chunk, what its task receives of ``arg``: a future (or a list of futures) on the cluster."""
    if isinstance(arg.value, list):                           # futures, one per member
        return [arg.value[lo:hi] for lo, hi in bounds]
    if _is_dask_array(arg.value):
        if not arg.per_member:
            return [client.compute(arg.value)] * len(bounds)
        rechunked = arg.value.rechunk((tuple(hi - lo for lo, hi in bounds),) + tuple(-1 for _ in arg.shape[1:]))
        return client.compute(list(rechunked.to_delayed().ravel()))
    # hash=False: keys of this call's own. With content-hashed keys, a second fit on the same data
    # scatters to the key whose release the first fit's futures just sent, and the scheduler may
    # drop the new data with the old ("lost dependencies").
    if not arg.per_member:
        return [client.scatter(arg.value, hash=False)] * len(bounds)
    return client.scatter([arg.value[lo:hi] for lo, hi in bounds], hash=False)


def _members_of(state: dict, n_members: int, lo: int, hi: int) -> dict:
    """The pickled state of an Ensemble cut to members lo..hi-1: every entry with one item per member
    (a list or an array whose first axis has K entries) sliced, the others as they are."""
    return {key: (value[lo:hi] if isinstance(value, (list, np.ndarray)) and len(value) == n_members else value)
            for key, value in state.items()}


def _optimizer_table(chunk_state: dict, kwargs: dict) -> list:
    """The optimizers of a chunk: those its members keep a state for, then those of the fit.

    They travel pickled together with the chunk's state and fit arguments, so that an optimizer keeps
    one identity on the worker (the members' states are keyed by their optimizer object, and fit looks
    them up so); the states come back keyed by their index in this list."""
    seen: dict = {}
    for member_states in chunk_state.get("optimizer_states", []):
        for opt, _ in member_states:
            seen.setdefault(id(opt), opt)
    opts = kwargs.get("optimizer")
    for opt in (opts if isinstance(opts, (list, tuple)) else [opts]):
        if opt is not None:
            seen.setdefault(id(opt), opt)
    return list(seen.values())


def _stacked(piece):
    """A chunk's per-member data from a list of per-member arrays (futures resolved by then), else as it is."""
    return np.stack([np.asarray(item) for item in piece]) if isinstance(piece, list) else piece


def _fit_chunk(blob: bytes, data: dict) -> tuple:
    """On a worker: one Ensemble.fit of a chunk of members. Returns its state, with each optimizer
    replaced by its index in the payload's list, and the members' histories."""
    chunk_state, kwargs, optimizers = pickle.loads(blob)
    chunk = Ensemble.__new__(Ensemble)
    chunk.__setstate__(chunk_state)
    data = {name: _stacked(piece) for name, piece in data.items()}
    validation = tuple(data[name] for name in ("validation_data[0]", "validation_data[1]", "validation_data[2]")
                       if name in data) or None
    kwargs.setdefault("n_jobs", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # fit_ensemble warns once, for every chunk
        histories = chunk.fit(data["X"], data["y"], sample_weight=data.get("sample_weight"),
                              validation_data=validation, **kwargs)
    state = chunk.__getstate__()
    index = {id(opt): i for i, opt in enumerate(optimizers)}
    state["optimizer_states"] = [[(index[id(opt)], opt_state) for opt, opt_state in member_states]
                                 for member_states in state.get("optimizer_states", [])]
    return state, histories


# -- gathering back --------------------------------------------------------------------------


def _gather_back(ensemble: Ensemble, state: dict, bounds: list, results: list, tables: list) -> list:
    """Write every chunk's state into ``ensemble`` (one __setstate__, after every chunk succeeded) and
    return the histories in member order; warn once, naming the members that diverged."""
    n_members = len(ensemble)
    histories: list = []
    for (lo, hi), (chunk_state, chunk_histories), table in zip(bounds, results, tables):
        chunk_state["optimizer_states"] = [[(table[i], opt_state) for i, opt_state in member_states]
                                           for member_states in chunk_state.get("optimizer_states", [])]
        for key, value in chunk_state.items():
            if isinstance(state.get(key), (list, np.ndarray)) and len(state[key]) == n_members:
                state[key][lo:hi] = value
        histories += chunk_histories
    ensemble.__setstate__(state)
    diverged = [k for k, history in enumerate(histories) if getattr(history, "diverged", False)]
    if diverged:
        shown = ", ".join(str(k) for k in diverged[:20]) + (f" and {len(diverged) - 20} more"
                                                            if len(diverged) > 20 else "")
        warnings.warn(f"training diverged for {len(diverged)} of {n_members} members "
                      f"(member{'s' if len(diverged) > 1 else ''} {shown}): each stopped with its parameters from "
                      f"before the diverging step (see their History's diverged_epoch and message); the others "
                      f"trained on", RuntimeWarning, stacklevel=3)
    return histories
