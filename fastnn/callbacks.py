"""What :meth:`fastnn.Sequential.fit` records and calls after each epoch.

:class:`History` is what ``fit`` returns. A *callback* is any object with
``on_epoch_end(epoch, logs)`` (:class:`Callback`); returning ``False`` stops
training. ``fit`` builds its own progress report and early stopping from
the same protocol (:class:`PrintProgress`, :class:`ProgressBar`,
:class:`EarlyStopping`) and calls them before the user's callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["History", "Callback", "EarlyStopping", "PrintProgress", "ProgressBar", "progress_callback"]


@dataclass
class History:
    """What :meth:`Sequential.fit` records, one entry per epoch.

    Parameters
    ----------
    loss, val_loss, epoch_time : list of float, default empty
        The attributes of the same names (``fit`` builds the History and
        appends to them; users seldom construct one).
    best_epoch, stopped_epoch : int or None, default None
        The attributes of the same names.

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
    epochs : int
        Number of epochs recorded, ``len(loss)`` (read-only).
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

    Notes
    -----
    ``on_epoch_end(epoch, logs)``: ``epoch`` is an int, 1-based; ``logs`` a
    dict of str to float with keys ``"loss"``, ``"epoch_time"`` and, with
    validation data, ``"val_loss"``. Return ``False`` to stop training;
    anything else (``None`` included) lets it go on. This base class
    returns None.
    """

    def on_epoch_end(self, epoch: int, logs: dict) -> Any:  # pragma: no cover - protocol
        return None


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by more than ``min_delta``
    for ``patience`` epochs, remembering the parameters of the best epoch.

    The monitored loss is ``val_loss`` when the logs hold one, else ``loss``.
    ``get_parameters`` returns a copy of the model's parameters; after
    training, :attr:`best_parameters` holds those of :attr:`best_epoch` (the
    caller restores them).

    Parameters
    ----------
    get_parameters : callable, no arguments, returning ndarray
        Returns a copy of the model's parameters (``fit`` passes one that
        copies the flat parameter buffer, 1-D of the model's dtype).
    patience : int
        Epochs without improvement after which to stop (taken as given;
        ``fit`` checks its own ``patience`` >= 1).
    min_delta : float
        Improvement needed: the monitored loss must fall below
        ``best - min_delta``.

    Attributes
    ----------
    patience : int
    min_delta : float
    best : float
        Lowest monitored loss so far (``inf`` before the first epoch).
    best_epoch : int or None
        Epoch (1-based) of ``best``; None before the first epoch.
    best_parameters : ndarray or None
        What ``get_parameters`` returned at ``best_epoch``.

    Notes
    -----
    ``on_epoch_end(epoch, logs)`` returns True to go on and False to stop.
    It raises KeyError if ``logs`` has neither ``"val_loss"`` nor ``"loss"``.
    """

    def __init__(self, get_parameters: Callable[[], np.ndarray], patience: int, min_delta: float):
        self._get_parameters = get_parameters
        self.patience = patience
        self.min_delta = min_delta
        self.best = np.inf
        self.best_epoch: int | None = None
        self.best_parameters: np.ndarray | None = None
        self._waited = 0

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        monitored = logs.get("val_loss", logs["loss"])
        if monitored < self.best - self.min_delta:
            self.best, self.best_epoch, self._waited = monitored, epoch, 0
            self.best_parameters = self._get_parameters()
            return True
        self._waited += 1
        return self._waited < self.patience


class PrintProgress(Callback):
    """Print a line every ``every`` epochs, after the first and after the last (of ``epochs``).

    Parameters
    ----------
    every : int
        Print after each epoch whose number is a multiple of ``every``, a
        positive int (not checked: 0 raises ZeroDivisionError at the first
        epoch; :func:`progress_callback` builds no PrintProgress for 0).
    epochs : int
        The number of epochs training runs, shown in each line.

    Attributes
    ----------
    every, epochs : int
        As given.

    Notes
    -----
    ``on_epoch_end(epoch, logs)`` prints ``epoch {epoch}/{epochs}  loss
    ...`` (and ``val_loss`` when ``logs`` holds it) to stdout and returns
    None, so training goes on.
    """

    def __init__(self, every: int, epochs: int):
        self.every = every
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if epoch % self.every == 0 or epoch in (1, self.epochs):
            extra = f"  val_loss {logs['val_loss']:.6g}" if "val_loss" in logs else ""
            print(f"epoch {epoch}/{self.epochs}  loss {logs['loss']:.6g}{extra}", flush=True)


class ProgressBar(Callback):
    """A tqdm progress bar with the running losses; :meth:`close` it after training.

    Parameters
    ----------
    bar : tqdm.tqdm or alike
        The bar, with ``update``, ``set_postfix`` and ``close`` methods
        (:func:`progress_callback` makes one with ``total=epochs``).

    Notes
    -----
    ``on_epoch_end(epoch, logs)`` advances the bar by one and shows every
    entry of ``logs`` but ``epoch_time``; it returns None, so training goes
    on. ``close()`` closes the bar.
    """

    def __init__(self, bar: Any):
        self._bar = bar

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self._bar.update(1)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "epoch_time"})

    def close(self) -> None:
        self._bar.close()


def _tqdm_bar(total: int) -> Any:
    """A tqdm bar if tqdm is installed (imported only now), else None."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="epoch", leave=True)


def progress_callback(every: int, show_bar: bool, epochs: int) -> Callback | None:
    """fit's progress report: a tqdm bar when ``show_bar`` and tqdm is installed,
    else a printed line every ``every`` epochs (none when ``every`` is 0).

    Parameters
    ----------
    every : int
        Print every this many epochs; 0 prints nothing.
    show_bar : bool
        Use a tqdm bar if tqdm can be imported (it is imported only then).
    epochs : int
        The number of epochs training runs.

    Returns
    -------
    ProgressBar, PrintProgress or None
        None when there is no bar and ``every`` is 0.
    """
    bar = _tqdm_bar(epochs) if show_bar else None
    if bar is not None:
        return ProgressBar(bar)
    return PrintProgress(every, epochs) if every else None
