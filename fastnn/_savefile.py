"""The writing half of fastnn's file format: its constants and :func:`write_model`.

The format itself is documented in :mod:`fastnn.io`, which reads it (and
builds a :class:`~fastnn.Sequential` from a file). This module writes it and
imports no model: :meth:`Sequential.save <fastnn.Sequential.save>` calls
:func:`write_model` without the model module importing anything that
imports it back. It reads a model only through its public methods
(``dtype``, ``layers``, ``get_parameters``, ``optimizer_state``).
"""

from __future__ import annotations

import contextlib
import os
import stat

import numpy as np

from fastnn._version import __version__
from fastnn.layers import Dense, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from fastnn.optimizers import SGD, Adam, AdamW, Optimizer

__all__ = ["write_model", "write_ensemble", "check_path", "FORMAT_NAME", "FORMAT_VERSION"]

#: The format name every fastnn file records in its architecture.
FORMAT_NAME = "fastnn"
#: The version of the layout this module writes, and the newest :mod:`fastnn.io` reads.
FORMAT_VERSION = 1

#: The activation layers a file describes by their type alone (LeakyReLU adds its slope).
ACTIVATIONS = {"ReLU": ReLU, "LeakyReLU": LeakyReLU, "Tanh": Tanh, "Sigmoid": Sigmoid, "Identity": Identity}
#: The optimizers a file describes, and the hyperparameters it records for each, in order.
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
HYPERPARAMETERS = {
    "SGD": ("lr", "momentum", "nesterov", "weight_decay"),
    "Adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "AdamW": ("lr", "beta1", "beta2", "eps", "weight_decay"),
}
#: Every optimizer state buffer a version-1 file may hold, as ``optimizer.<name>``.
STATE_NAMES = ("exp_avg", "exp_avg_sq", "momentum_buffer")


def write_model(model, path, optimizer=None) -> None:
    """Write ``model`` (a :class:`~fastnn.Sequential`) and ``optimizer``'s state to ``path``, atomically.

    What :func:`fastnn.save` does once it has checked that ``model`` is a
    Sequential; see there for the parameters and errors.
    """
    import json

    path = check_path(path)
    architecture = _architecture(model)
    entries = {"architecture": np.array(json.dumps(architecture, allow_nan=False))}
    if optimizer is not None:
        kind = _optimizer_type(optimizer)
        hyper = {"lr": optimizer.lr, **optimizer.hyperparameters}
        spec = {"type": kind, "hyperparameters": {name: hyper[name] for name in HYPERPARAMETERS[kind]}}
        entries["optimizer"] = np.array(json.dumps(spec, allow_nan=False))
    parameters, state = _snapshot(model, optimizer)
    entries["parameters"] = parameters
    if optimizer is not None and state is not None:
        entries.update(_optimizer_arrays(optimizer, state))
    _write_atomically(path, entries)


def write_ensemble(ensemble, path) -> None:
    """Write ``ensemble`` (a :class:`~fastnn.Ensemble`: its architecture, ``n_members`` and
    every member's parameters, row after row) to ``path``, atomically.

    What :meth:`Ensemble.save <fastnn.Ensemble.save>` and :func:`fastnn.save` do;
    no optimizer state is written.
    """
    import json

    path = check_path(path)
    architecture = _architecture(ensemble)
    architecture["n_members"] = len(ensemble)
    entries = {"architecture": np.array(json.dumps(architecture, allow_nan=False)),
               "parameters": ensemble.get_parameters().reshape(-1)}
    _write_atomically(path, entries)


def _architecture(model) -> dict:
    """The ``architecture`` entry of ``model`` (a Sequential or an Ensemble: its dtype and layers)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "dtype": model.dtype.name,
        "layers": [_describe_layer(layer, i) for i, layer in enumerate(model.layers)],
    }


def check_path(path) -> str:
    """``path`` (a str or an os.PathLike) as a non-empty str; TypeError or ValueError otherwise."""
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path:
            return path
        raise ValueError("path must not be empty")
    raise TypeError(f"path must be a str or an os.PathLike, got {type(path).__name__}")


def _describe_layer(layer, i: int) -> dict:
    if type(layer) is Dense:
        return {"type": "Dense", "in_features": int(layer.in_features), "out_features": int(layer.out_features)}
    if type(layer) is LeakyReLU:
        return {"type": "LeakyReLU", "negative_slope": float(layer.negative_slope)}
    for name, cls in ACTIVATIONS.items():
        if type(layer) is cls:
            return {"type": name}
    raise TypeError(f"layers[{i}] is a {type(layer).__name__}, which a fastnn file cannot describe; it holds "
                    f"the layers Dense, {', '.join(ACTIVATIONS)} (not subclasses of them)")


def _optimizer_type(optimizer) -> str:
    """The file's name for the type of ``optimizer``; TypeError for anything the format does not describe."""
    kind = next((name for name, cls in OPTIMIZERS.items() if type(optimizer) is cls), None)
    if kind is None:
        if isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer is a {type(optimizer).__name__}, which a fastnn file cannot describe; "
                            f"it holds the optimizers {', '.join(OPTIMIZERS)} (not subclasses of them)")
        raise TypeError(f"optimizer must be a fastnn optimizer (SGD, Adam or AdamW) or None, "
                        f"got {type(optimizer).__name__}")
    return kind


def _snapshot(model, optimizer) -> tuple[np.ndarray, dict | None]:
    """The parameters and the state the model keeps for ``optimizer``, as of one moment between steps.

    Each of the two reads takes the model's lock. A step that another thread
    takes between them advances the state's step count, and the pair is then
    read again, so that a file never holds parameters of one step with the
    optimizer state of another.
    """
    if optimizer is None:
        return model.get_parameters(), None
    while True:
        state = model.optimizer_state(optimizer)
        parameters = model.get_parameters()
        if model.optimizer_state(optimizer)["step"] == state["step"]:
            return parameters, state


def _optimizer_arrays(optimizer, state: dict) -> dict:
    """The ``optimizer.*`` array entries: the step count and the buffers the rule keeps (none before
    its first step, and none for plain SGD)."""
    arrays = {"optimizer.step": np.array(int(state["step"]), dtype=np.int64)}
    for name in optimizer.state_names:
        if name in state:
            arrays[f"optimizer.{name}"] = np.asarray(state[name])
    return arrays


def _write_atomically(path: str, entries: dict) -> None:
    """Write ``entries`` as an .npz to a temporary file beside ``path``, fsync it, rename it over ``path``."""
    import secrets

    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(os.path.abspath(target))
    mode = None
    with contextlib.suppress(OSError):
        info = os.stat(target)
        if stat.S_ISREG(info.st_mode):
            mode = stat.S_IMODE(info.st_mode)
    prefix = "." + os.path.basename(target)[:100] + "."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = os.path.join(directory, prefix + secrets.token_hex(8) + ".tmp")
        try:
            fd = os.open(temporary, flags, 0o666)       # the umask applies, as for open(path, "w")
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(f"could not create a temporary file in {directory!r}")
    try:
        with os.fdopen(fd, "wb") as file:
            # A file object, not a name: numpy.savez appends ".npz" to names only.
            np.savez(file, **entries)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where directories can be fsynced (POSIX; not Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
