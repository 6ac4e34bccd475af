"""Full-batch L-BFGS on a model's flat parameter buffer: :class:`fastnn.LBFGS`'s driver.

Part of the Model: :meth:`fastnn.Sequential.fit` calls :func:`minimize` with
its compiled network and buffers when given ``optimizer=fastnn.LBFGS()``.

The objective is the loss over the whole training set plus
``LBFGS.l2 / 2 * sum(W ** 2)`` over the Dense weights; its value and
gradient come from one compiled call without the GIL
(``Network.loss_grad``), which walks the data ``CHUNK_ROWS`` rows at a time
through the model's workspace and writes the gradient into the model's
flat gradient buffer. SciPy's L-BFGS-B (``scipy.optimize.minimize(method=
"L-BFGS-B", jac=True)``) drives it. SciPy keeps its iterate in float64:
each evaluation copies SciPy's point into the model's parameter buffer
(one copy of the parameters, rounded to float32 for a float32 model) and
hands back a float64 copy of the gradient buffer; no coefficient list is
packed or unpacked. For a float32 model the objective SciPy sees is the
float32 network's (its loss summed in double): SciPy's point is rounded to
float32, and differences of the objective below float32's resolution
(about 1e-7 relative) are noise to its line search; a ``tol`` that asks
for more may end at a failed line search (SciPy's status 2) instead of
converging.

One iteration is one "epoch" for the callbacks and :class:`History`:
``History.loss[i]`` is the objective (loss plus the L2 term) at iterate
i + 1, ``val_loss`` the validation loss there; a callback that returns
False stops the run at that iterate; early stopping watches iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastnn.callbacks import History
from fastnn.losses import Loss
from fastnn.optimizers import LBFGS

__all__ = ["CHUNK_ROWS", "LBFGSHistory", "minimize", "scipy_minimize"]

#: Rows per pass through the workspace in the loss-and-gradient call. On the digits
#: network of compare.py --estimators (1,347 rows) chunks of 128 to 2,048 rows took
#: the same CPU time per evaluation to within 10% (float64) and 25% (float32), with
#: no trend, on a loaded machine: a chunk this size keeps the workspace in L2/L3
#: for wide networks and costs one extra gradient sum per chunk.
CHUNK_ROWS = 1024

# The walker's status code for an evaluation that went through (the same in every build).
_OK = 0


@dataclass
class LBFGSHistory(History):
    """A :class:`History` of an L-BFGS fit: one entry per iteration, and how the run ended.

    Attributes
    ----------
    n_evaluations : int
        Evaluations of the loss and gradient.
    status : int
        SciPy's status (0: converged, 1: a limit reached, 2: stopped otherwise,
        for instance by a failed line search); -1 when a callback stopped the run.
    converged : bool
        True when L-BFGS-B stopped on its own tolerance (SciPy's status 0);
        False at ``max_iter``, ``max_fun``, a failed line search, or a
        callback's stop.
    message : str
        SciPy's message (or why the run stopped otherwise).
    final_loss : float
        The objective at the parameters the run ended with (also when no
        iteration ran: the starting point already met ``tol``).
    """

    n_evaluations: int = 0
    status: int = -1
    converged: bool = False
    message: str = ""
    final_loss: float = float("nan")

    @property
    def n_iter(self) -> int:
        """Iterations run (``len(loss)``)."""
        return len(self.loss)


def scipy_minimize() -> Any:
    """``scipy.optimize.minimize``, imported now; ImportError naming the extra when SciPy is missing."""
    try:
        from scipy.optimize import minimize as found
    except ImportError as exc:
        raise ImportError("fastnn.LBFGS runs on SciPy's L-BFGS-B, an optional dependency: "
                          f"pip install 'fastnn[lbfgs]' (or scipy). Original error: {exc}") from exc
    return found


class _Stop(Exception):
    """Raised in SciPy's callback to end the run (a callback asked for it)."""


class _Objective:
    """The objective SciPy calls: the model's parameters set to its point, then one compiled
    loss-and-gradient call. Remembers its last point and value (the callbacks' iterate is the
    last point evaluated, so the value there is known without another evaluation)."""

    def __init__(self, net: Any, data: Any, loss: Loss, l2: float, chunk: int):
        self.net, self.data, self.loss, self.l2, self.chunk = net, data, loss, l2, chunk
        self.params, self.grads = net.params, net.grads
        self.count = 0
        self.last_x: np.ndarray | None = None
        self.last_value = np.nan

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.params[...] = x
        self.count += 1
        status = self.net.loss_grad(self.data.X, self.data.y, self.chunk, self.loss.kind, self.loss.param,
                                    self.data.w, self.l2)
        if status != _OK:
            raise FloatingPointError(f"the loss is not finite at L-BFGS evaluation {self.count}")
        self.last_x = x.copy()
        self.last_value = self.net.last_loss
        return self.last_value, self.grads.astype(np.float64)

    def value_at(self, x: np.ndarray) -> float:
        """The objective at ``x``, with the parameters set to ``x`` (evaluated again if it is
        not the last point)."""
        if self.last_x is None or not np.array_equal(x, self.last_x):
            self(x)
        else:
            self.params[...] = x
        return self.last_value


class _Iterations:
    """SciPy's per-iteration callback: records the history and runs fit's callbacks."""

    def __init__(self, objective: _Objective, history: LBFGSHistory, callbacks: list, validation: Any):
        self.objective, self.history, self.callbacks, self.validation = objective, history, callbacks, validation
        self.iterate: np.ndarray | None = None
        self.started = time.perf_counter()

    def __call__(self, xk: np.ndarray) -> None:
        self.iterate = np.array(xk, dtype=np.float64)
        logs = {"loss": self.objective.value_at(self.iterate),
                "epoch_time": time.perf_counter() - self.started}
        if self.validation is not None:
            X_val, y_val, loss = self.validation
            logs["val_loss"] = loss.loss(self.objective.net.predict(X_val), y_val)
        self.started = time.perf_counter()
        history = self.history
        history.loss.append(logs["loss"])
        history.epoch_time.append(logs["epoch_time"])
        if "val_loss" in logs:
            history.val_loss.append(logs["val_loss"])
        stop = False
        for callback in self.callbacks:
            if callback.on_epoch_end(history.n_iter, dict(logs)) is False:
                stop = True
        if stop:
            history.stopped_epoch = history.n_iter
            raise _Stop


def minimize(net: Any, data: Any, loss: Loss, optimizer: LBFGS, callbacks: list, *,
             chunk: int | None = None) -> LBFGSHistory:
    """Run L-BFGS-B on ``net``'s parameters (changed in place) for ``loss`` on ``data``.

    Parameters
    ----------
    net : compiled Network (fastnn._walker)
        The model's network: its ``params`` and ``grads`` buffers are the
        model's own.
    data : object with X, y, w, X_val, y_val
        Checked and converted as ``Sequential.fit`` does (X C-contiguous of
        the model's dtype; labels as that dtype for cross-entropy; w None or
        (n_samples,) weights; X_val None without validation data).
    loss : Loss
    optimizer : LBFGS
    callbacks : list
        Objects with ``on_epoch_end(iteration, logs)``, called after each
        iteration; one returning False stops the run there.
    chunk : int, optional
        Rows per pass through the workspace (default: :data:`CHUNK_ROWS`).

    Returns
    -------
    LBFGSHistory

    Raises
    ------
    ImportError
        Without SciPy.
    FloatingPointError
        If the loss is not finite at the starting point, or at a point the
        line search tries (the parameters are then the last iterate's).
    """
    run = scipy_minimize()
    start = net.params.astype(np.float64)
    objective = _Objective(net, data, loss, optimizer.l2, CHUNK_ROWS if chunk is None else chunk)
    history = LBFGSHistory()
    validation = None if data.X_val is None else (data.X_val, data.y_val, loss)
    iterations = _Iterations(objective, history, callbacks, validation)
    options = {"maxiter": optimizer.max_iter, "maxfun": optimizer.max_fun, "gtol": optimizer.tol,
               "maxcor": optimizer.history_size}
    final = start
    try:
        result = run(objective, start, method="L-BFGS-B", jac=True, callback=iterations, options=options)
    except _Stop:
        history.message = f"stopped by a callback after iteration {history.n_iter}"
        final = iterations.iterate
    except FloatingPointError:
        net.params[...] = start if iterations.iterate is None else iterations.iterate
        raise
    else:
        history.message = str(result.message)
        history.status = int(result.status)
        history.converged = history.status == 0
        final = result.x          # SciPy's last iterate (the start when no iteration ran)
    history.final_loss = objective.value_at(final)
    history.n_evaluations = objective.count
    return history
