"""Saving and loading models: one documented, versioned ``.npz`` file, never pickle.

:func:`save` writes a :class:`~fastnn.Sequential` (and, if given, an
optimizer with the state the model keeps for it) to one file; :func:`load`
reads it back into a new model that predicts bit for bit as the saved one
did and, with its optimizer, resumes training exactly where the saved one
stopped. Saving lives in :mod:`fastnn._savefile`, which imports no model,
so that :meth:`Sequential.save` can call it; loading builds a model and
lives here::

    model.save("net.npz", optimizer=opt)            # or fastnn.save(model, "net.npz", opt)
    model = fastnn.load("net.npz")
    model, opt = fastnn.load("net.npz", with_optimizer=True)

File format: name ``"fastnn"``, format version 1
-------------------------------------------------

A zip archive as ``numpy.savez`` writes it: one ``.npy`` member per entry,
and no pickled object anywhere (the reader loads it with
``allow_pickle=False``). The entries:

``architecture``
    A 0-d unicode array (``numpy.str_``) holding one JSON object::

        {"format": "fastnn", "format_version": 1, "fastnn_version": "0.1.0",
         "dtype": "float64",
         "layers": [{"type": "Dense", "in_features": 1, "out_features": 16},
                    {"type": "LeakyReLU", "negative_slope": 0.01},
                    {"type": "Dense", "in_features": 16, "out_features": 1},
                    {"type": "ReLU"}]}

    ``dtype`` is ``"float32"`` or ``"float64"`` (the model's). A layer is
    ``{"type": "Dense", "in_features": int, "out_features": int}``,
    ``{"type": "LeakyReLU", "negative_slope": float}``, or ``{"type": T}``
    with T one of ``"ReLU"``, ``"Tanh"``, ``"Sigmoid"``, ``"Identity"``.
    ``fastnn_version`` records the writer; it is informative only.
``parameters``
    A 1-D array of the model's dtype holding every parameter, layer by
    layer: each Dense layer's ``W`` (in_features x out_features, row-major)
    then its ``b``; what :meth:`Sequential.get_parameters` returns.
``optimizer`` (only in a file saved with an optimizer)
    A 0-d unicode array holding a JSON object
    ``{"type": T, "hyperparameters": {...}}``: ``"SGD"`` with ``lr``,
    ``momentum``, ``nesterov`` (a boolean) and ``weight_decay``; ``"Adam"``
    or ``"AdamW"`` with ``lr``, ``beta1``, ``beta2``, ``eps`` and
    ``weight_decay``.
``optimizer.step`` (with ``optimizer``)
    A 0-d int64 array: the number of updates applied (Adam's bias
    correction depends on it).
``optimizer.momentum_buffer`` (SGD with momentum), ``optimizer.exp_avg`` and ``optimizer.exp_avg_sq`` (Adam, AdamW)
    The state buffers the model keeps for the optimizer: 1-D arrays of the
    model's dtype, laid out as ``parameters``. Absent before the model's
    first step with the optimizer (the state then starts at zeros) and for
    plain SGD, which has none.

An :class:`~fastnn.Ensemble`'s file (:meth:`Ensemble.save <fastnn.Ensemble.save>`) has one more
key in its architecture, ``"n_members": K`` (a positive integer), and its
``parameters`` hold the K members' parameters one after the other (what
``Ensemble.get_parameters().reshape(-1)`` returns, K times the size
above); it holds no optimizer entries. :func:`load` returns an Ensemble
for it. A reader that predates ensembles refuses such a file (an
unexpected architecture key).

Gradients are not saved (each training step recomputes them): a loaded
model's ``dW`` and ``db`` are zeros. Floats in the JSON are written with
Python's shortest round-trip repr, so hyperparameters come back exactly.

Versions. Any change to this layout increments ``FORMAT_VERSION``. This
module reads format version 1; a file from a newer fastnn (a higher
version) is refused with a ``ValueError`` that says which version this
fastnn supports.

Loading checks everything before it builds anything: that the file is a
zip archive holding exactly the entries above, as ``.npy`` members, none
larger than its contents need; the format name and version; the JSON's
structure, keys and types (no NaN or infinity, no duplicate keys); that
the Dense sizes are positive integers that chain; that ``parameters`` is a
1-D float array of the model's dtype (either byte order), of exactly the
size the architecture needs, all finite; the optimizer's type,
hyperparameters, step and buffers (same checks as ``parameters``). A file
that is truncated, corrupted, not a zip archive, holds an object array
(which would need pickle), wrong shapes, missing or extra entries or keys,
or comes from a newer format version raises ``ValueError``, and nothing in
it is executed; a file that cannot be read at all raises ``OSError``.
Members stored compressed (``numpy.savez_compressed``) are read too.

Writing is atomic: the archive goes to a temporary file in the target's
directory (named ``.<name>.<random>.tmp``), is flushed and fsynced, and
replaces the target with ``os.replace``; the directory is then fsynced
where the platform allows. A failure at any point (an exception, a full
disk, ``KeyboardInterrupt``) leaves a previous file at ``path`` intact and
removes the temporary file (a process killed outright may leave that hidden
temporary file behind, never a partial file at ``path``). A replaced file keeps its permission bits; a
new one gets those of ``open(path, "w")`` (0o666 less the umask). If
``path`` is a symbolic link, the file it points to is replaced.

File names. ``path`` is a ``str`` or an ``os.PathLike``, and the file is
written at exactly that name: unlike ``numpy.savez``, which appends
``.npz`` to a name without it, :func:`save` adds nothing (``save(model,
"net")`` writes ``net``, and ``load("net")`` reads it). Use the ``.npz``
suffix so that NumPy and zip tools recognise the file.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import Any, TypeGuard

import numpy as np

from fastnn._savefile import (
    ACTIVATIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    HYPERPARAMETERS,
    OPTIMIZERS,
    STATE_NAMES,
    check_path,
    write_ensemble,
    write_model,
)
from fastnn._version import __version__
from fastnn.layers import Dense, Layer, LeakyReLU
from fastnn.ensemble import Ensemble
from fastnn.model import Sequential
from fastnn.optimizers import SGD, Adam, AdamW, Optimizer
from fastnn.validation import check_bool

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION"]

_ARCHITECTURE_KEYS = ("format", "format_version", "fastnn_version", "dtype", "layers")
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}

#: Entries of a version-1 file; every one is a ``<name>.npy`` member of the zip archive.
_REQUIRED = ("architecture", "parameters")
_OPTIMIZER_ENTRIES = ("optimizer", "optimizer.step") + tuple(f"optimizer.{name}" for name in STATE_NAMES)

#: Largest JSON entry accepted (bytes of its .npy member): far above any real model.
_MAX_JSON_BYTES = 1 << 24
#: Room for the .npy header of an array entry (NumPy reads headers up to 10000 bytes).
_HEADER_BYTES = 1 << 14
#: The optimizer's step is a C long in the compiled update.
_MAX_STEP = 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1
#: The first bytes of a zip archive that starts with a member (what numpy.savez writes).
_ZIP_MAGIC = b"PK\x03\x04"


# -- saving ------------------------------------------------------------------------


def save(model, path, optimizer=None) -> None:
    """Write ``model`` (and optionally the state it keeps for ``optimizer``) to ``path``, atomically.

    Parameters
    ----------
    model : Sequential or Ensemble
        An Ensemble is written with its members' parameters (no optimizer).
    path : str or os.PathLike
        Written at exactly this name (no suffix is added; ``.npz`` is
        recommended). A previous file there is replaced only once the new
        one is complete.
    optimizer : SGD, Adam or AdamW, optional
        An optimizer ``model`` trains (or will train) with: its type and
        hyperparameters are saved with the model, and so is the state the
        model keeps for it (step count and buffers; a step count of 0 and
        no buffers if the model has not trained with it), so that
        ``load(path, with_optimizer=True)`` resumes training exactly.

    The format is described in the docstring of :mod:`fastnn.io`; the
    writing is :mod:`fastnn._savefile`'s, which :meth:`Sequential.save`
    calls too.

    Returns
    -------
    None
        The file at ``path`` is written.

    Raises
    ------
    TypeError
        If ``model`` is not a Sequential, ``optimizer`` not a fastnn
        optimizer, a layer or the optimizer of a type the format does not
        describe (a subclass), or ``path`` not a path.
    OSError
        If the file cannot be written; a previous file is then left intact.
    """
    if isinstance(model, Ensemble):
        if optimizer is not None:
            raise TypeError("optimizer must be None for an Ensemble: an ensemble's file holds its members' "
                            "parameters only")
        write_ensemble(model, path)
        return
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn.Sequential or a fastnn.Ensemble, got {type(model).__name__}")
    write_model(model, path, optimizer)


# -- loading -----------------------------------------------------------------------


def load(path, *, with_optimizer: bool = False):
    """Read a model saved by :func:`save`, checking the whole file first.

    Parameters
    ----------
    path : str or os.PathLike
        Read at exactly this name.
    with_optimizer : bool, default False
        Also return the saved optimizer (its hyperparameters). The returned
        model keeps the saved state for it (step count and buffers), so that
        its next step with it continues exactly as the saved training would
        have. ``None`` if the file holds no optimizer.

    Returns
    -------
    Sequential, or (Sequential, Optimizer or None) with ``with_optimizer=True``
        An :class:`~fastnn.Ensemble` for a file an ensemble wrote (with
        ``with_optimizer=True``, (Ensemble, None)).

    Raises
    ------
    ValueError
        If the file is not a valid fastnn file of a format version this
        fastnn reads (see :mod:`fastnn.io`). Nothing in it is executed.
    OSError
        If the file cannot be read (missing, a directory, no permission).
    """
    import zipfile
    import zlib

    check_bool(with_optimizer, "with_optimizer")
    path = check_path(path)
    where = f"{path!r}"
    broken = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, OverflowError,
              NotImplementedError, RuntimeError, KeyError, IndexError, TypeError)
    with open(path, "rb") as file:
        magic = file.read(len(_ZIP_MAGIC))
        if magic != _ZIP_MAGIC:
            what = "it is empty" if not magic else "it does not start like a zip archive"
            raise ValueError(f"{where} is not a fastnn file (a .npz zip archive): {what}")
        file.seek(0)
        try:
            archive = np.load(file, allow_pickle=False)
        except broken as exc:
            raise ValueError(f"{where} is not a readable .npz archive (truncated or corrupted?): {exc}") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):     # pragma: no cover - the magic says zip
            raise ValueError(f"{where} is not a .npz archive")
        with archive:
            try:
                model, optimizer = _read(archive, where, os.fstat(file.fileno()).st_size)
            except ValueError:
                raise
            except broken as exc:
                raise ValueError(f"{where} is not a valid fastnn file (truncated or corrupted?): "
                                 f"{type(exc).__name__}: {exc}") from exc
    return (model, optimizer) if with_optimizer else model


def _read(archive, where: str, file_size: int):
    members = archive.zip.namelist()
    if len(set(members)) != len(members):
        raise ValueError(f"{where}: the archive holds the same member twice")
    for info in archive.zip.infolist():
        # A corrupted central directory can point outside the file (zipfile would seek there).
        if not 0 <= info.header_offset <= file_size - len(_ZIP_MAGIC):
            raise ValueError(f"{where}: the archive is corrupted: member {info.filename!r} points outside the file")
    names = set()
    for member in members:
        if not member.endswith(".npy"):
            raise ValueError(f"{where}: the archive holds {member!r}, which is not a .npy array entry")
        names.add(member[:-len(".npy")])
    if "architecture" not in names:
        raise ValueError(f"{where} is not a fastnn file: it has no 'architecture' entry")

    # The format and its version first, so that a newer file is named as such.
    architecture = _read_json(archive, "architecture", where)
    dtype, specs = _check_architecture(architecture, where)

    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise ValueError(f"{where}: missing entries {missing}")
    allowed = set(_REQUIRED) | (set(_OPTIMIZER_ENTRIES) if "optimizer" in names else set())
    extra = sorted(names - allowed)
    if extra:
        raise ValueError(f"{where}: unexpected entries {extra} (a format version {FORMAT_VERSION} file holds "
                         f"{sorted(_REQUIRED + _OPTIMIZER_ENTRIES)})")

    n_parameters = sum(spec["in_features"] * spec["out_features"] + spec["out_features"]
                       for spec in specs if spec["type"] == "Dense")
    n_members = architecture.get("n_members")
    if n_members is not None and "optimizer" in names:
        raise ValueError(f"{where}: an ensemble's file holds no optimizer entries")
    params = _read_float_array(archive, "parameters", where, dtype,
                               n_parameters if n_members is None else n_members * n_parameters)

    optimizer, state = None, None
    if "optimizer" in names:
        optimizer, state = _read_optimizer(archive, names, where, dtype, n_parameters)

    # Everything is checked: build.
    layers: list[Layer] = []
    for spec in specs:
        if spec["type"] == "Dense":
            layers.append(Dense(spec["in_features"], spec["out_features"], seed=0))
        elif spec["type"] == "LeakyReLU":
            layers.append(LeakyReLU(spec["negative_slope"]))
        else:
            layers.append(ACTIVATIONS[spec["type"]]())
    if n_members is not None:
        ensemble = Ensemble(layers, n_members, dtype=dtype, seed=0)
        ensemble.set_parameters(params.reshape(n_members, n_parameters))
        return ensemble, None
    model = Sequential(layers, dtype=dtype)
    model.set_parameters(params)
    if optimizer is not None:
        model.set_optimizer_state(optimizer, state)
    return model, optimizer


def _member_size(archive, name: str) -> int:
    return archive.zip.getinfo(name + ".npy").file_size


def _read_array(archive, name: str, where: str, max_bytes: int) -> np.ndarray:
    size = _member_size(archive, name)
    if size > max_bytes:
        raise ValueError(f"{where}: entry {name!r} is {size} bytes, more than the {max_bytes} its contents "
                         f"can need")
    try:
        array = archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{where}: entry {name!r} is an object array, which needs pickle to load; "
                             f"fastnn files never hold one and fastnn never unpickles") from exc
        raise ValueError(f"{where}: entry {name!r} cannot be read (truncated or corrupted?): {exc}") from exc
    if not isinstance(array, np.ndarray):       # pragma: no cover - only .npy members get here
        raise ValueError(f"{where}: entry {name!r} is not an array")
    return array


def _read_json(archive, name: str, where: str):
    import json

    array = _read_array(archive, name, where, _MAX_JSON_BYTES)
    if array.ndim != 0 or array.dtype.kind != "U":
        raise ValueError(f"{where}: entry {name!r} must be a 0-d unicode array holding JSON, "
                         f"got an array of dtype {array.dtype} and shape {array.shape}")

    def unique_keys(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"duplicate key {key!r}")
            obj[key] = value
        return obj

    def finite_float(text):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"number {text} is not finite")
        return value

    def no_constant(text):
        raise ValueError(f"{text} is not a number")

    try:
        return json.loads(str(array[()]), object_pairs_hook=unique_keys, parse_float=finite_float,
                          parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: entry {name!r} is not valid JSON: {exc}") from None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_keys(obj, expected, what: str, where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: {what} must be a JSON object, got {type(obj).__name__}")
    keys = set(obj)
    if keys != set(expected):
        detail = []
        if set(expected) - keys:
            detail.append(f"missing {sorted(set(expected) - keys)}")
        if keys - set(expected):
            detail.append(f"unexpected {sorted(keys - set(expected))}")
        raise ValueError(f"{where}: {what} must have the keys {list(expected)}: {', '.join(detail)}")


def _check_architecture(architecture, where: str):
    if not isinstance(architecture, dict):
        raise ValueError(f"{where}: the architecture must be a JSON object, got {type(architecture).__name__}")
    if architecture.get("format") != FORMAT_NAME:
        raise ValueError(f"{where} is not a fastnn file: its architecture's format is "
                         f"{architecture.get('format')!r}, not {FORMAT_NAME!r}")
    version = architecture.get("format_version")
    if not _is_int(version) or version < 1:
        raise ValueError(f"{where}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{where} was written in fastnn file format version {version} (by fastnn "
                         f"{architecture.get('fastnn_version')!r}); this fastnn ({__version__}) supports format "
                         f"version {FORMAT_VERSION} only: upgrade fastnn to load it")
    _check_keys(architecture, _ARCHITECTURE_KEYS + (("n_members",) if "n_members" in architecture else ()),
                "the architecture", where)
    if "n_members" in architecture and (not _is_int(architecture["n_members"]) or architecture["n_members"] < 1):
        raise ValueError(f"{where}: n_members must be a positive integer, got {architecture['n_members']!r}")
    if not isinstance(architecture["fastnn_version"], str):
        raise ValueError(f"{where}: fastnn_version must be a string, got {architecture['fastnn_version']!r}")
    dtype = _DTYPES.get(architecture["dtype"]) if isinstance(architecture["dtype"], str) else None
    if dtype is None:
        raise ValueError(f"{where}: dtype must be 'float32' or 'float64', got {architecture['dtype']!r}")
    layers = architecture["layers"]
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{where}: layers must be a non-empty JSON list, got {layers!r:.60}")
    previous = None
    for i, spec in enumerate(layers):
        what = f"layers[{i}]"
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "Dense":
            _check_keys(spec, ("type", "in_features", "out_features"), what, where)
            for key in ("in_features", "out_features"):
                if not _is_int(spec[key]) or spec[key] <= 0:
                    raise ValueError(f"{where}: {what}.{key} must be a positive integer, got {spec[key]!r}")
            if previous is not None and spec["in_features"] != previous["out_features"]:
                raise ValueError(f"{where}: the layers do not chain: {what} has in_features="
                                 f"{spec['in_features']} after a Dense with out_features={previous['out_features']}")
            previous = spec
        elif kind == "LeakyReLU":
            _check_keys(spec, ("type", "negative_slope"), what, where)
            slope = spec["negative_slope"]
            if not _is_number(slope) or not slope >= 0:
                raise ValueError(f"{where}: {what}.negative_slope must be a finite number >= 0, got {slope!r}")
        elif kind in ACTIVATIONS:
            _check_keys(spec, ("type",), what, where)
        else:
            raise ValueError(f"{where}: {what} must be a JSON object whose type is one of "
                             f"{['Dense', *ACTIVATIONS]}, got {spec!r:.80}")
    if previous is None:
        raise ValueError(f"{where}: layers must hold at least one Dense layer")
    return dtype, layers


def _read_float_array(archive, name: str, where: str, dtype: np.dtype, size: int) -> np.ndarray:
    array = _read_array(archive, name, where, size * dtype.itemsize + _HEADER_BYTES)
    if array.dtype.kind != "f" or array.dtype.itemsize != dtype.itemsize:
        raise ValueError(f"{where}: entry {name!r} must be a {dtype.name} array (the model's dtype), "
                         f"got dtype {array.dtype}")
    if array.shape != (size,):
        raise ValueError(f"{where}: entry {name!r} must have shape ({size},) for this architecture, "
                         f"got {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype)        # native byte order
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: entry {name!r} holds NaN or infinity")
    return array


def _read_optimizer(archive, names: set, where: str, dtype: np.dtype,
                    n_parameters: int) -> tuple[Optimizer, dict[str, Any]]:
    """The optimizer the file describes, and the state to install on the loaded model for it."""
    spec = _read_json(archive, "optimizer", where)
    _check_keys(spec, ("type", "hyperparameters"), "the optimizer", where)
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in OPTIMIZERS:
        raise ValueError(f"{where}: the optimizer's type must be one of {list(OPTIMIZERS)}, got {kind!r:.60}")
    hyper = spec["hyperparameters"]
    _check_keys(hyper, HYPERPARAMETERS[kind], f"the {kind} optimizer's hyperparameters", where)
    for key, value in hyper.items():
        ok = isinstance(value, bool) if key == "nesterov" else _is_number(value)
        if not ok:
            expected = "true or false" if key == "nesterov" else "a number"
            raise ValueError(f"{where}: the optimizer's {key} must be {expected}, got {value!r:.60}")
    optimizer: Optimizer
    try:
        if kind == "SGD":
            optimizer = SGD(lr=hyper["lr"], momentum=hyper["momentum"], nesterov=hyper["nesterov"],
                            weight_decay=hyper["weight_decay"])
        else:
            adam: type[Adam] = AdamW if kind == "AdamW" else Adam      # kind is "Adam" or "AdamW" here
            optimizer = adam(lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                             eps=hyper["eps"], weight_decay=hyper["weight_decay"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the optimizer's hyperparameters are invalid: {exc}") from None

    if "optimizer.step" not in names:
        raise ValueError(f"{where}: missing entry 'optimizer.step'")
    step_array = _read_array(archive, "optimizer.step", where, _HEADER_BYTES)
    if step_array.ndim != 0 or step_array.dtype.kind not in "iu":
        raise ValueError(f"{where}: entry 'optimizer.step' must be a 0-d integer array, "
                         f"got dtype {step_array.dtype} and shape {step_array.shape}")
    step = int(step_array[()])
    if not 0 <= step <= _MAX_STEP:
        raise ValueError(f"{where}: entry 'optimizer.step' must be in [0, {_MAX_STEP}], got {step}")
    state: dict[str, Any] = {"step": step}
    buffers = optimizer.state_names
    for name in sorted(n[len("optimizer."):] for n in names if n.startswith("optimizer.") and n != "optimizer.step"):
        if name not in buffers:
            raise ValueError(f"{where}: entry 'optimizer.{name}' is not state of {optimizer!r}, whose state is "
                             f"{[f'optimizer.{b}' for b in buffers] or 'none'}")
        state[name] = _read_float_array(archive, f"optimizer.{name}", where, dtype, n_parameters)
    return optimizer, state
