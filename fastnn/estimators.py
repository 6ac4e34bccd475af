"""scikit-learn estimators on fastnn: :class:`MLPRegressor` and :class:`MLPClassifier`.

They take scikit-learn's parameter names where they mean the same thing,
train a :class:`fastnn.Sequential` with fastnn's compiled step, and work
wherever a scikit-learn estimator does (``Pipeline``, ``cross_val_score``,
``GridSearchCV``, ``clone``, pickling, ``check_estimator``). This is the only
module of fastnn that imports scikit-learn, an optional dependency:
``fastnn.MLPRegressor`` and ``fastnn.MLPClassifier`` import it on first use,
so ``import fastnn`` stays light.

How they map onto fastnn
------------------------
The network is ``Dense -> activation`` for each of ``hidden_layer_sizes``
(one activation for all, or a list of one per layer), then a linear
``Dense`` output, as scikit-learn's with its ``out_activation_`` fused into
fastnn's loss:

* regressor, ``loss="squared_error"``: one output per target,
  :class:`fastnn.MSELoss` ("identity");
* regressor, ``loss="poisson"``: one log-mean per target,
  :class:`fastnn.PoissonLoss`, predictions ``exp(output)`` ("exp");
* classifier with more than two classes: one logit per class,
  :class:`fastnn.CrossEntropyLoss` on the indices of ``classes_`` ("softmax");
* classifier with two classes (one logit) or multilabel targets (one logit
  per label): :class:`fastnn.BCEWithLogitsLoss` ("logistic").

The network computes in float32 when ``X`` is float32 and in float64
otherwise (scikit-learn's rule); the ``dtype`` parameter, when given,
overrides it. A SciPy sparse ``X`` (CSR or CSC) is made dense a few whole
mini-batches at a time.

The weights start as scikit-learn's do: Glorot-uniform ``W`` *and* ``b``,
bound ``sqrt(6 / (fan_in + fan_out))`` (``sqrt(2 / ...)`` for "logistic"),
drawn in the same order from ``check_random_state(random_state)``; the
samples are shuffled each epoch with the same random state, as
scikit-learn's ``MLPClassifier``/``MLPRegressor`` do, and cut into the same
mini-batches. With the same ``random_state`` an estimator starts from the
same weights and visits the same batches as scikit-learn's, and
``early_stopping`` holds out the same validation rows (stratified for a
binary classifier, as scikit-learn's; a classifier of more than two classes
fastnn stratifies where every class can be, scikit-learn does not).

scikit-learn minimises, per mini-batch with weights ``w_i`` (all 1 without
``sample_weight``), ``sum_i w_i l_i / S + alpha/2 * ||W||^2 / S`` with
``S = sum_i w_i``, where ``l_i`` is sample i's cross-entropy (classifier) or
half its *summed* squared error over the outputs (regressor; the summed
Poisson half deviance, or binary cross-entropy, for "exp" and "logistic");
fastnn's losses *average* over the outputs, so scikit-learn's gradient is
``c`` times fastnn's, with ``c = n_outputs / 2`` for squared error,
``c = n_outputs`` for "exp" and "logistic", and ``c = 1`` for "softmax". The estimators choose
fastnn's hyperparameters so that each update equals scikit-learn's:

* ``solver="sgd"``: ``fastnn.SGD(lr=c * learning_rate_init,
  momentum=momentum, nesterov=nesterovs_momentum)``. PyTorch's momentum
  rule is scikit-learn's velocity rule rewritten (its buffer is the
  velocity divided by ``-lr``); ``learning_rate="invscaling"`` and
  ``"adaptive"`` change ``lr`` between epochs as scikit-learn does, and
  rescale the buffer with it so that the velocity carries over as in
  scikit-learn;
* ``solver="adam"``: ``fastnn.Adam(lr=learning_rate_init, betas=(beta_1,
  beta_2), eps=epsilon / c)``;
* ``alpha`` becomes ``weight_decay = alpha / (c * batch_size * mean(w))``:
  ``alpha / S`` for every full batch, the L2 term of scikit-learn's
  gradient.

What differs, honestly: fastnn's ``weight_decay`` acts on every parameter,
so the intercepts are decayed too (scikit-learn penalises ``coefs_`` only);
the last, shorter batch of an epoch gets the decay of a full one
(scikit-learn divides by its own, smaller ``S``); and Adam adds ``eps`` to
``sqrt(v)`` after the bias correction (PyTorch) rather than before
(scikit-learn), so scikit-learn's ``epsilon`` acts as ``epsilon / sqrt(1 -
beta_2**t)``, larger in the first steps. Where a gradient is near zero that
shows: with the default ``epsilon=1e-8`` the loss curves part in the 4th
digit after some epochs, with a negligible ``epsilon`` they agree to
rounding.

``solver="lbfgs"`` trains with :class:`fastnn.LBFGS` (SciPy's L-BFGS-B on
the whole data, one compiled loss-and-gradient call per evaluation; see
``_BaseMLP._fit_lbfgs``): ``max_iter`` counts iterations, ``max_fun``
evaluations, ``tol`` is L-BFGS-B's ``gtol`` and ``alpha`` penalises the
weights only, as in scikit-learn. There is no ``loss_curve_`` and no
``partial_fit`` then; ``verbose`` prints a line per iteration; sparse X is
made dense (the whole set: every evaluation reads all of it).

``loss_curve_`` is on scikit-learn's scale, so that ``tol`` means the same:
each entry is the epoch's mean training loss as fastnn reports it
(``History.loss``), **halved for squared error** (scikit-learn's
squared_error is half the mean squared error: ``loss_curve_[i] =
MSE_i / 2``) and times ``n_outputs`` for "exp" and "logistic", plus scikit-learn's penalty ``alpha/2 * ||W||^2 *
n_batches / sum(w)`` computed with the coefficients at the end of the epoch
(scikit-learn adds it batch by batch, with the coefficients before each
update). With ``sample_weight``, an epoch's loss weighs each batch by its
sum of weights (scikit-learn: by its number of samples).

Training that diverges (a non-finite loss or update) raises scikit-learn's
``ValueError`` "Solver produced non-finite parameter weights. ...", except
with ``early_stopping=True``: there the epoch records a NaN loss and
validation score, training stops with a ``ConvergenceWarning``, and the best
epoch's parameters are kept (scikit-learn goes on with NaN weights to
``max_iter``, then restores the same best epoch).

fastnn's extensions, which scikit-learn's MLP refuses (its defaults kept):
``class_weight`` for the classifier, ``activation`` as a list, an explicit
validation set ``fit(X, y, X_val=..., y_val=...)`` and the
``validation_loss_curve_`` beside ``validation_scores_``. The guide "Moving
from scikit-learn" (docs/guide/sklearn.rst) lists every parameter and
attribute.

Warm starts keep the optimizer's state: with ``warm_start=True`` a new
``fit``, and every ``partial_fit``, continues from the current parameters
*and* Adam's moments or SGD's momentum (scikit-learn starts ``fit`` with a
fresh optimizer).
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# scikit-learn ships neither inline types (no py.typed) nor a stub package: its imports are
# untyped, hence the targeted ignores below.
try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin  # type: ignore[import-untyped]
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from sklearn.metrics import r2_score  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
    from sklearn.utils import check_random_state  # type: ignore[import-untyped]
    from sklearn.utils.class_weight import compute_class_weight  # type: ignore[import-untyped]
    from sklearn.utils.metaestimators import available_if  # type: ignore[import-untyped]
    from sklearn.utils.multiclass import check_classification_targets, type_of_target  # type: ignore[import-untyped]
    from sklearn.utils.validation import check_is_fitted, column_or_1d  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - only without scikit-learn
    raise ImportError(
        "fastnn.MLPRegressor and fastnn.MLPClassifier need scikit-learn, an optional dependency: "
        f"pip install scikit-learn. Original error: {exc}"
    ) from exc

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn < 1.6, where it is the estimator's own method
    validate_data = None


from fastnn import ops
from fastnn._lbfgs import LBFGSHistory
from fastnn.layers import Dense, Identity, Layer, ReLU, Sigmoid, Tanh
from fastnn.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, PoissonLoss
from fastnn.model import Sequential
from fastnn.optimizers import LBFGS, SGD, Adam, Optimizer
from fastnn.validation import (
    as_numeric_array,
    check_bool,
    check_float_dtype,
    check_int,
    check_number,
    check_option,
    check_sample_weight,
)

__all__ = ["MLPRegressor", "MLPClassifier"]

_ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
_SOLVERS = ("sgd", "adam", "lbfgs")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
# scikit-learn's words, which its users match on.
_CLASSES_FIRST = "classes must be passed on the first call to partial_fit."


# -- parameter checks (in fit, never in __init__, as scikit-learn asks) -------------------


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_sparse(X) -> bool:
    """A SciPy sparse matrix or array (SciPy is looked up only if something imported it)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and hasattr(X, "tocsr") and bool(sparse.issparse(X))


def _check_hidden_layer_sizes(value) -> tuple:
    sizes = (value,) if isinstance(value, numbers.Integral) and not _is_bool(value) else value
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                        f"{type(value).__name__} {value!r}") from None
    return tuple(check_int(size, f"hidden_layer_sizes[{i}]", low=1) for i, size in enumerate(sizes))


def _check_activation(value, n_hidden: int) -> tuple:
    """One activation name per hidden layer: a name for all, or a list of names (fastnn's extension)."""
    names = tuple(_ACTIVATIONS)
    if isinstance(value, str):
        return (check_option(value, "activation", names),) * n_hidden
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"activation must be one of {names} or a list of them, one per hidden layer, "
                         f"got {value!r}")
    if len(value) != n_hidden:
        raise ValueError(f"activation as a list needs one name per hidden layer ({n_hidden}), got {len(value)}: "
                         f"{value!r}")
    return tuple(check_option(name, f"activation[{i}]", names) for i, name in enumerate(value))


def _check_batch_size(value):
    """``"auto"`` or an int >= 1 (ValueError for anything else, as scikit-learn)."""
    if isinstance(value, str) and value == "auto":
        return value
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {value!r}")
    return int(value)


def _check_n_iter_no_change(value):
    """An int >= 1, or ``numpy.inf`` (never stop early)."""
    if isinstance(value, numbers.Real) and value == math.inf:
        return value
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"n_iter_no_change must be an integer >= 1 or numpy.inf, got {value!r}")
    return int(value)


def _check_verbose(value) -> int:
    if not (_is_bool(value) or isinstance(value, numbers.Integral)):
        raise TypeError(f"verbose must be a bool or an int, got {type(value).__name__} {value!r}")
    return int(value)


def _check_sample_weight(sample_weight, n_samples: int, dtype) -> np.ndarray | None:
    """None, or the weights as a (n_samples,) array of ``dtype``: finite, >= 0, some > 0.

    A scalar weighs every sample alike, as scikit-learn accepts; the rest is
    :func:`fastnn.validation.check_sample_weight`.
    """
    if sample_weight is None:
        return None
    weights = as_numeric_array(sample_weight, "sample_weight")
    if weights.ndim == 0:
        weights = np.full(n_samples, weights)
    return check_sample_weight(weights, n_samples, dtype)


def _rows(X, part) -> np.ndarray:
    """Rows ``part`` of X as a dense C-contiguous array (a sparse X is made dense only there)."""
    rows = X[part]
    return rows.toarray() if _is_sparse(rows) else rows


#: Elements of a sparse X made dense at once: whole mini-batches up to about this many.
_DENSE_CHUNK = 1 << 18

#: fastnn's loss for each of scikit-learn's output activations.
_OUTPUT_LOSSES: dict[str, Loss] = {"identity": MSELoss(), "exp": PoissonLoss(), "softmax": CrossEntropyLoss(),
                                   "logistic": BCEWithLogitsLoss()}

_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and "
               "need to be preprocessed.")


def _stochastic_solver(estimator) -> bool:
    """``partial_fit`` is there for "sgd" and "adam" only, as in scikit-learn."""
    if estimator.solver not in ("sgd", "adam"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {estimator.solver} "
                             "is not stochastic.")
    return True


class _LBFGSProgress:
    """``verbose`` for solver="lbfgs": a line per iteration with the loss on scikit-learn's
    scale (``to_loss`` of fastnn's objective)."""

    def __init__(self, to_loss):
        self.to_loss = to_loss

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        print(f"Iteration {epoch}, loss = {self.to_loss(logs['loss']):.8f}", flush=True)


@dataclass
class _Run:
    """What one call of ``fit`` or ``partial_fit`` trains on, fixed for all its epochs."""

    X: Any
    y: np.ndarray
    sample_weight: np.ndarray | None
    #: (X, y, sample_weight) on which validation_scores_ are measured, or three Nones
    validation: tuple
    batch_size: int
    optimizer: Optimizer
    #: scikit-learn's L2 term of an epoch's loss, alpha/2 * n_batches / sum(w), times ||W||^2
    penalty: float
    #: one epoch over the rows of a dense X in a given order (Sequential.epoch_trainer:
    #: the data checked once for the whole run); None for a sparse X
    train: Callable[..., float] | None = None


class _BaseMLP(BaseEstimator):
    """What the regressor and the classifier share: parameters, the network, the training loop."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    # -- parameters -------------------------------------------------------------------------

    def _check_params(self) -> dict:
        """The parameters, checked, as the training loop uses them."""
        unit = dict(low=0.0, high=1.0, high_open=True)      # [0, 1)
        sizes = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        return dict(
            hidden_layer_sizes=sizes,
            activation=_check_activation(self.activation, len(sizes)),
            solver=check_option(self.solver, "solver", _SOLVERS),
            alpha=check_number(self.alpha, "alpha", low=0.0),
            batch_size=_check_batch_size(self.batch_size),
            learning_rate=check_option(self.learning_rate, "learning_rate", _LEARNING_RATES),
            learning_rate_init=check_number(self.learning_rate_init, "learning_rate_init", low=0.0, low_open=True),
            power_t=check_number(self.power_t, "power_t", low=0.0),
            max_iter=check_int(self.max_iter, "max_iter", low=1),
            shuffle=check_bool(self.shuffle, "shuffle"),
            tol=check_number(self.tol, "tol", low=0.0),
            verbose=_check_verbose(self.verbose),
            warm_start=check_bool(self.warm_start, "warm_start"),
            # fastnn's SGD takes momentum in [0, 1): a momentum of 1 never forgets a gradient.
            momentum=check_number(self.momentum, "momentum", **unit),
            nesterovs_momentum=check_bool(self.nesterovs_momentum, "nesterovs_momentum"),
            early_stopping=check_bool(self.early_stopping, "early_stopping"),
            validation_fraction=check_number(self.validation_fraction, "validation_fraction", **unit),
            beta_1=check_number(self.beta_1, "beta_1", **unit),
            beta_2=check_number(self.beta_2, "beta_2", **unit),
            epsilon=check_number(self.epsilon, "epsilon", low=0.0, low_open=True),
            n_iter_no_change=_check_n_iter_no_change(self.n_iter_no_change),
            max_fun=check_int(self.max_fun, "max_fun", low=1),
            dtype=None if self.dtype is None else check_float_dtype(self.dtype, "dtype"),
            **self._check_own_params(),
        )

    def _check_own_params(self) -> dict:
        """The subclass's own parameters, checked."""
        return {}

    # -- fitted network -----------------------------------------------------------------------

    def _dense_layers(self) -> list:
        check_is_fitted(self)
        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]

    def _squared_weights(self) -> float:
        """The sum of every weight squared (not the intercepts): scikit-learn's L2 term over alpha/2.
        Read from model_ directly (not through coefs_, which checks that the estimator is
        fitted): the training loop asks for it after every epoch."""
        return sum(float(np.vdot(layer.W, layer.W)) for layer in self.model_.layers if isinstance(layer, Dense))

    @property
    def coefs_(self) -> list:
        """The weight matrices ``W`` (n_in, n_out) of the layers: live views into ``model_``.

        Assigning a list of arrays of these shapes copies them into the network.
        """
        return [layer.W for layer in self._dense_layers()]

    @coefs_.setter
    def coefs_(self, value) -> None:
        self._assign("coefs_", "W", value)

    @property
    def intercepts_(self) -> list:
        """The bias vectors ``b`` of the layers: live views into ``model_``; assignable as :attr:`coefs_`."""
        return [layer.b for layer in self._dense_layers()]

    @intercepts_.setter
    def intercepts_(self, value) -> None:
        self._assign("intercepts_", "b", value)

    def _assign(self, name: str, field: str, value) -> None:
        """Copy a list of arrays into the layers' ``field`` after checking them all (a failure changes nothing)."""
        if not hasattr(self, "model_"):
            raise AttributeError(f"{name} can be assigned on a fitted {type(self).__name__} only (it is copied "
                                 "into the fitted network): fit it first, for example with max_iter=1")
        layers = self._dense_layers()
        if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)) or len(value) != len(layers):
            raise ValueError(f"{name} must be a list of {len(layers)} arrays, one per layer, got "
                             f"{type(value).__name__}")
        arrays = []
        for i, (layer, array) in enumerate(zip(layers, value)):
            target = getattr(layer, field)
            array = as_numeric_array(array, f"{name}[{i}]")
            if array.shape != target.shape:
                raise ValueError(f"{name}[{i}] must have shape {target.shape}, got {array.shape}")
            arrays.append(array)
        for layer, array in zip(layers, arrays):
            getattr(layer, field)[...] = array

    @staticmethod
    def _architecture(params: dict, n_features: int, n_outputs: int, dtype, out_activation: str) -> tuple:
        return (n_features, params["hidden_layer_sizes"], n_outputs, params["activation"], np.dtype(dtype),
                out_activation)

    def _initialize(self, params: dict, n_features: int, n_outputs: int, dtype, out_activation: str,
                    random_state) -> None:
        """A new network with scikit-learn's initial weights, and fresh bookkeeping."""
        units = [n_features, *params["hidden_layer_sizes"], n_outputs]
        activations = params["activation"]
        layers: list[Layer] = []
        for i in range(len(units) - 1):
            layers.append(Dense(units[i], units[i + 1], seed=0))    # replaced just below
            if i < len(units) - 2:
                layers.append(_ACTIVATIONS[activations[i]]())
        model = Sequential(layers, dtype=dtype)
        # scikit-learn's _init_coef: Glorot uniform for W and b, coefficients then intercepts,
        # layer by layer, from the same random state; the bound of a layer followed by a
        # logistic activation (the output layer: of the last hidden one) is smaller.
        dense = [layer for layer in model.layers if isinstance(layer, Dense)]
        for i, layer in enumerate(dense):
            factor = 2.0 if self._glorot_activation(activations, i) == "logistic" else 6.0
            bound = math.sqrt(factor / (layer.in_features + layer.out_features))
            layer.W[...] = random_state.uniform(-bound, bound, (layer.in_features, layer.out_features))
            layer.b[...] = random_state.uniform(-bound, bound, layer.out_features)
        self.model_ = model
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(units)
        self.out_activation_ = out_activation
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        self._optimizer: Optimizer | None = None
        self._optimizer_spec: tuple | None = None
        self._architecture_ = self._architecture(params, n_features, n_outputs, dtype, out_activation)
        self._best_params = model.get_parameters()
        self.validation_scores_: list[float] | None = None
        self.validation_loss_curve_: list[float] | None = None
        self.best_validation_score_: float | None = None
        self.best_loss_: float | None = None if params["early_stopping"] else np.inf

    def _glorot_activation(self, activations: tuple, i: int) -> str:
        """The activation after Dense layer i (the output layer: the last hidden layer's)."""
        if activations:
            return activations[min(i, len(activations) - 1)]
        return self.activation if isinstance(self.activation, str) else "relu"

    @property
    def _loss(self) -> Loss:
        """fastnn's loss for the output activation."""
        return _OUTPUT_LOSSES[self.out_activation_]

    def _gradient_scale(self) -> float:
        """scikit-learn's gradient over fastnn's (module docstring)."""
        return {"identity": self.n_outputs_ / 2.0, "softmax": 1.0}.get(self.out_activation_, float(self.n_outputs_))

    def _loss_scale(self) -> float:
        """scikit-learn's loss over fastnn's: half the MSE; the sum over the outputs of Poisson's and BCE's means."""
        return {"identity": 0.5, "softmax": 1.0}.get(self.out_activation_, float(self.n_outputs_))

    def _make_optimizer(self, params: dict, weight_decay: float) -> Optimizer:
        """fastnn's optimizer for scikit-learn's update (module docstring).

        The same optimizer while the rule and its hyperparameters stay the
        same; a new one when they change, which continues from the state the
        model keeps for the previous one when both follow the same rule (a
        warm start keeps Adam's moments or SGD's momentum).
        """
        spec: tuple
        if params["solver"] == "sgd":
            momentum = params["momentum"]
            spec = ("sgd", momentum, params["nesterovs_momentum"] and momentum > 0, weight_decay)
        else:
            spec = ("adam", params["beta_1"], params["beta_2"], params["epsilon"] / self._gradient_scale(),
                    weight_decay)
        old, old_spec = self._optimizer, self._optimizer_spec
        optimizer: Optimizer
        if old is not None and spec == old_spec:
            optimizer = old
        else:
            kept = old if old is not None and old_spec is not None and old_spec[0] == spec[0] else None
            lr = kept.lr if kept is not None else self._fastnn_rate(spec[0])
            if spec[0] == "sgd":
                optimizer = SGD(lr=lr, momentum=spec[1], nesterov=spec[2], weight_decay=weight_decay)
            else:
                optimizer = Adam(lr=lr, betas=(spec[1], spec[2]), eps=spec[3], weight_decay=weight_decay)
            if kept is not None:
                state = self.model_.optimizer_state(kept)
                self.model_.set_optimizer_state(optimizer, {
                    name: value for name, value in state.items() if name == "step" or name in optimizer.state_names})
        self._optimizer, self._optimizer_spec = optimizer, spec
        self._set_rate(optimizer)
        return optimizer

    def _fastnn_rate(self, kind: str) -> float:
        # SGD's step is proportional to the gradient, so its rate takes the gradient's scale;
        # Adam's step is not.
        return self._gradient_scale() * self._learning_rate if kind == "sgd" else self._learning_rate

    def _set_rate(self, optimizer: Optimizer) -> None:
        """Give ``optimizer`` the rate of ``self._learning_rate`` (a schedule changes it).

        scikit-learn's momentum holds rate-scaled gradients (``v = momentum * v - lr * g``),
        PyTorch's the gradients (``buf = momentum * buf + g``, step ``lr * buf``): when the
        rate changes, the buffer the model keeps for ``optimizer`` is rescaled by old/new so
        that the velocity carries over, as in scikit-learn.
        """
        rate = self._fastnn_rate(optimizer.kind)
        if rate == optimizer.lr:
            return
        if "momentum_buffer" in optimizer.state_names:
            state = self.model_.optimizer_state(optimizer)
            if "momentum_buffer" in state:
                state["momentum_buffer"] = state["momentum_buffer"] * (optimizer.lr / rate)
                self.model_.set_optimizer_state(optimizer, state)
        optimizer.lr = rate

    # -- training ---------------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, *, incremental=False, classes=None, validation=None):
        params = self._check_params()
        if params["early_stopping"] and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not params["warm_start"] and not incremental)
        dtype = params["dtype"]
        if dtype is None:       # scikit-learn's rule: float32 stays float32, the rest becomes float64
            dtype = (np.float64, np.float32) if first_pass else self.model_.dtype
        X, y, classes = self._validate_input(X, y, dtype, reset=first_pass, incremental=incremental,
                                             classes=classes)
        X = X.tocsr() if _is_sparse(X) else np.ascontiguousarray(X)
        sample_weight = self._sample_weight(sample_weight, y, classes, X.dtype, incremental)
        if validation is not None:
            validation = self._check_validation_set(*validation, X.dtype, classes)
        if classes is not None:     # the input is good: now the classifier takes its classes
            self.classes_ = classes
        shape = (X.shape[1], self._n_outputs(y, classes), X.dtype, self._out_activation_for(params, y))
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(params, *shape, random_state)
            self._learning_rate = params["learning_rate_init"]
        else:
            self._continue(params, *shape, incremental)
        if params["solver"] == "lbfgs":
            self._fit_lbfgs(params, X, y, sample_weight)
        else:
            self._fit_stochastic(params, X, y, sample_weight, random_state, incremental, validation)
        return self

    def _sample_weight(self, sample_weight, y, classes, dtype, incremental: bool) -> np.ndarray | None:
        """``sample_weight`` checked (the classifier multiplies in its ``class_weight``)."""
        return _check_sample_weight(sample_weight, y.shape[0], dtype)

    def _check_validation_set(self, X_val, y_val, dtype, classes) -> tuple:
        """The explicit validation set of ``fit(..., X_val=, y_val=)``, as the training data are checked."""
        if X_val is None or y_val is None:
            raise ValueError("X_val and y_val go together: pass both or neither")
        X_val, y_val, _ = self._validate_input(X_val, y_val, dtype, reset=False, incremental=True, classes=None,
                                               known=classes if classes is not None else getattr(self, "classes_", None))
        return (X_val.tocsr() if _is_sparse(X_val) else np.ascontiguousarray(X_val)), y_val, None

    def _continue(self, params: dict, n_features: int, n_outputs: int, dtype, out_activation: str,
                  incremental: bool) -> None:
        """Check that the fitted network fits these data and parameters; ready its bookkeeping."""
        architecture = self._architecture(params, n_features, n_outputs, dtype, out_activation)
        if architecture != self._architecture_:
            raise ValueError(
                f"{'partial_fit' if incremental else 'fit with warm_start=True'} continues the fitted "
                f"network, whose (n_features, hidden_layer_sizes, n_outputs, activation, dtype, "
                f"out_activation) are {self._architecture_}; these data and parameters ask for {architecture}")
        if not incremental or not hasattr(self, "_learning_rate"):
            self._learning_rate = params["learning_rate_init"]
        # (getattr: after a solver="lbfgs" fit, which keeps none of them)
        if not params["early_stopping"] and getattr(self, "best_loss_", None) is None:
            self.best_loss_ = np.inf
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
        if not hasattr(self, "validation_scores_"):
            self.validation_scores_ = None

    def _fit_stochastic(self, params, X, y, sample_weight, random_state, incremental, validation) -> None:
        """scikit-learn's mini-batch loop: up to ``max_iter`` epochs (one for ``partial_fit``)."""
        run = self._start_run(params, X, y, sample_weight, random_state, validation)
        order = np.arange(run.X.shape[0])
        self.n_iter_ = 0
        for _ in range(params["max_iter"]):
            next_order = self._run_epoch(params, run, order, random_state)
            if next_order is None or self._end_epoch(params, run) or incremental:
                break
            order = next_order
            if self.n_iter_ == params["max_iter"]:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({params['max_iter']}) reached and "
                              "the optimization hasn't converged yet.", ConvergenceWarning, stacklevel=4)
        if params["early_stopping"]:
            self.model_.set_parameters(self._best_params)

    def _fit_lbfgs(self, params, X, y, sample_weight) -> None:
        """scikit-learn's ``solver="lbfgs"``: :class:`fastnn.LBFGS` on the whole data.

        scikit-learn minimises ``F = L + alpha / (2 * S) * ||W||^2`` (``L`` its loss,
        ``S`` the number of samples, or their weight sum) with SciPy's L-BFGS-B and
        ``gtol=tol``, but its gradient is ``c`` times fastnn's (module docstring), so
        fastnn minimises ``F / c`` on fastnn's loss: ``l2 = alpha / (c * S)``,
        ``gtol = tol / c``. ``loss_`` is ``F`` at the end.
        """
        scale = self._gradient_scale()
        if _is_sparse(X):       # every evaluation reads all of X
            X = X.toarray()
        total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
        optimizer = LBFGS(max_iter=params["max_iter"], tol=params["tol"] / scale, max_fun=params["max_fun"],
                          l2=params["alpha"] / (scale * total))

        def to_loss(objective: float) -> float:     # F, from fastnn's objective at the current weights
            squared_norm = self._squared_weights()
            return (self._loss_scale() * (objective - 0.5 * optimizer.l2 * squared_norm)
                    + 0.5 * params["alpha"] / total * squared_norm)

        progress = [_LBFGSProgress(to_loss)] if params["verbose"] else []
        try:
            history = self.model_.fit(X, y, loss=self._loss, optimizer=optimizer, sample_weight=sample_weight,
                                      callbacks=progress)
        except FloatingPointError as exc:      # scikit-learn's message, where its users match on it
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             f"values and need to be preprocessed. ({exc})") from exc
        assert isinstance(history, LBFGSHistory)        # what fit returns for an LBFGS
        for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
            self.__dict__.pop(name, None)      # scikit-learn's lbfgs keeps none of these
        self.n_iter_ = history.n_iter
        self.loss_ = to_loss(history.final_loss)
        if not history.converged:      # scikit-learn's warning (sklearn.utils.optimize._check_optimize_result)
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status={history.status}):\n"
                       f"{history.message}\n")
            if self.n_iter_ == params["max_iter"]:
                message += (f"\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={params['max_iter']}).")
            warnings.warn(message, ConvergenceWarning, stacklevel=3)

    def _start_run(self, params, X, y, sample_weight, random_state, validation) -> _Run:
        """The training data (less the validation split), the batch size and the optimizer."""
        if validation is None and params["early_stopping"]:
            X, X_val, y, y_val, sample_weight, w_val = self._split(X, y, sample_weight, params, random_state)
            if sample_weight is not None and not sample_weight.sum() > 0:
                raise ValueError("the training part of the data has only zero sample weights; "
                                 "change random_state or validation_fraction")
            validation = (X_val, y_val, w_val)
        self._start_validation(params, validation)
        n_samples = X.shape[0]
        batch_size = params["batch_size"]
        if batch_size == "auto":
            batch_size = min(200, n_samples)
        elif batch_size > n_samples:
            warnings.warn(f"batch_size={batch_size} is larger than the {n_samples} training "
                          "samples; it is clipped to their number", UserWarning, stacklevel=4)
            batch_size = n_samples
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        # scikit-learn's alpha * W / S for a full batch, S = its sum of weights (module docstring).
        weight_decay = params["alpha"] / (self._gradient_scale() * batch_size * mean_weight)
        n_batches = -(-n_samples // batch_size)
        optimizer = self._make_optimizer(params, weight_decay)
        train = None if _is_sparse(X) else self.model_.epoch_trainer(
            X, y, loss=self._loss, optimizer=optimizer, batch_size=batch_size, sample_weight=sample_weight)
        return _Run(X, y, sample_weight, validation or (None, None, None), batch_size, optimizer,
                    penalty=0.5 * params["alpha"] * n_batches / (n_samples * mean_weight), train=train)

    def _start_validation(self, params, validation) -> None:
        """Ready validation_scores_, validation_loss_curve_ and best_validation_score_ for this fit."""
        if validation is None:
            self.validation_scores_ = self.validation_loss_curve_ = self.best_validation_score_ = None
        elif self.validation_scores_ is None or not params["warm_start"]:
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_ = -np.inf
            self._best_params = self.model_.get_parameters()

    def _run_epoch(self, params, run: _Run, order: np.ndarray, random_state) -> np.ndarray | None:
        """One epoch over the (shuffled) data; its loss goes to ``loss_curve_``. Returns the order,
        or None when the epoch diverged with ``early_stopping`` (training ends there)."""
        if params["shuffle"]:
            # scikit-learn's sklearn.utils.shuffle(order, random_state=random_state), which
            # draws this permutation of the previous epoch's order; without its overhead.
            order = order[random_state.permutation(order.shape[0])]
        rows = order if params["shuffle"] else None     # (None: as they are)
        try:
            # A dense X is not copied: the compiled epoch reads its rows in this order.
            loss = run.train(rows) if run.train is not None else self._train_sparse_epoch(run, rows)
        except FloatingPointError as exc:
            if not params["early_stopping"]:
                raise ValueError(f"{_NON_FINITE} (fastnn: training diverged in epoch {self.n_iter_ + 1}: {exc} "
                                 "Scale the input, for example with StandardScaler, or lower "
                                 "learning_rate_init.)") from exc
            self._diverged(params)
            return None
        self.loss_ = self._loss_scale() * loss + run.penalty * self._squared_weights()
        self.loss_curve_.append(self.loss_)
        self.n_iter_ += 1
        self.t_ += run.X.shape[0]
        if params["verbose"]:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}", flush=True)
        return order

    def _train_sparse_epoch(self, run: _Run, order: np.ndarray | None) -> float:
        """One epoch of mini-batches over a sparse X in ``order`` (None: as it is); its mean
        loss (fastnn's scale).

        X is made dense a few whole mini-batches at a time; each part's mean loss counts
        with its sum of weights, as the batches' do in one call.
        """
        X, y, sample_weight = run.X, run.y, run.sample_weight
        if order is not None:
            X, y = X[order], y[order]
            sample_weight = None if sample_weight is None else sample_weight[order]
        kwargs: dict[str, Any] = dict(loss=self._loss, optimizer=run.optimizer, epochs=1, batch_size=run.batch_size, shuffle=False)
        rows = run.batch_size * max(1, _DENSE_CHUNK // (run.batch_size * max(X.shape[1], 1)))
        total = weight = 0.0
        for start in range(0, X.shape[0], rows):
            part = slice(start, start + rows)
            w = None if sample_weight is None else sample_weight[part]
            share = float(y[part].shape[0] if w is None else w.sum())
            if share > 0:       # (a part of zero weights would not move the weights but Adam's state)
                total += share * self.model_.fit(_rows(X, part), y[part], sample_weight=w, **kwargs).loss[0]
                weight += share
        return total / weight

    def _diverged(self, params) -> None:
        """scikit-learn's end of a diverged epoch with early stopping: a NaN score, the best epoch kept."""
        self.n_iter_ += 1
        self.loss_ = np.nan
        self.loss_curve_.append(np.nan)
        assert self.validation_scores_ is not None and self.validation_loss_curve_ is not None
        self.validation_scores_.append(np.nan)
        self.validation_loss_curve_.append(np.nan)
        warnings.warn(f"Training diverged in epoch {self.n_iter_} (a non-finite loss or update): its validation "
                      f"score is NaN, training stops and the parameters of the best epoch are kept. "
                      f"{_NON_FINITE}", ConvergenceWarning, stacklevel=5)

    def _end_epoch(self, params, run: _Run) -> bool:
        """scikit-learn's schedules and stopping rule after an epoch; True to stop training."""
        self._update_no_improvement_count(params, *run.validation)
        schedule = params["learning_rate"] if params["solver"] == "sgd" else "constant"
        if schedule == "invscaling":
            self._learning_rate = params["learning_rate_init"] / (self.t_ + 1) ** params["power_t"]
            self._set_rate(run.optimizer)
        if self._no_improvement_count <= params["n_iter_no_change"]:
            return False
        what = "Validation score" if params["early_stopping"] else "Training loss"
        message = (f"{what} did not improve more than tol={params['tol']:f} for "
                   f"{params['n_iter_no_change']} consecutive epochs.")
        if schedule == "adaptive" and self._learning_rate > 1e-6:
            self._learning_rate /= 5.0
            self._set_rate(run.optimizer)
            self._no_improvement_count = 0
            if params["verbose"]:
                print(f"{message} Setting learning rate to {self._learning_rate:f}", flush=True)
            return False
        if params["verbose"]:
            print(f"{message} Stopping.", flush=True)
        return True

    def _split(self, X, y, sample_weight, params, random_state):
        """scikit-learn's validation split: train_test_split with the estimator's random state
        (stratified for a classifier, :meth:`_stratify`)."""
        stratify = self._stratify(y, params["validation_fraction"])
        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        parts = train_test_split(*arrays, random_state=random_state,
                                 test_size=params["validation_fraction"], stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size "
                             "of your dataset.")
        if sample_weight is None:
            parts += [None, None]
        return parts

    def _stratify(self, y, fraction):
        return None

    def _update_no_improvement_count(self, params, X_val, y_val, w_val) -> None:
        """scikit-learn's convergence bookkeeping, after each epoch."""
        tol, score, best = params["tol"], np.nan, self.best_validation_score_
        if X_val is not None:
            score = self._record_validation(X_val, y_val, w_val)
            if params["verbose"]:
                print(f"Validation score: {score:f}", flush=True)
        if params["early_stopping"]:
            assert best is not None     # set with the validation data
            if score < best + tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
        else:
            assert self.best_loss_ is not None      # set by _initialize or _continue without early_stopping
            if self.loss_curve_[-1] > self.best_loss_ - tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _record_validation(self, X_val, y_val, w_val) -> float:
        """The validation score and loss after an epoch, recorded; the best epoch's parameters kept."""
        assert self.validation_scores_ is not None and self.validation_loss_curve_ is not None
        assert self.best_validation_score_ is not None
        raw = self._predict_dense(X_val)
        finite = bool(np.all(np.isfinite(raw)))
        score = self._validation_score(raw, y_val, w_val) if finite else np.nan
        loss = self._loss_scale() * self._loss.loss(raw, y_val, w_val) if finite else np.nan
        self.validation_scores_.append(score)
        self.validation_loss_curve_.append(loss)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self.model_.get_parameters()
        return score

    # -- the scikit-learn API -----------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Fit the network to ``X`` and ``y``: up to ``max_iter`` epochs of mini-batch training.

        Parameters
        ----------
        X : array-like or SciPy sparse matrix (CSR, CSC) of shape (n_samples, n_features)
            float32 data train a float32 network, anything else a float64 one
            (unless ``dtype`` is given).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (regressor) or class labels (classifier; or a label
            indicator matrix for multilabel classification).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a zero weight removes a sample from the loss.
        X_val, y_val : array-like, default=None
            fastnn's extension: an explicit validation set, used instead of a
            split of ``validation_fraction`` when ``early_stopping=True``, and
            measured after every epoch in any case (``validation_scores_``,
            ``validation_loss_curve_``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad parameters or data; or, without ``early_stopping``, training
            that diverged (scikit-learn's "Solver produced non-finite parameter
            weights" message).
        """
        validation = None if X_val is None and y_val is None else (X_val, y_val)
        return self._fit(X, y, sample_weight, validation=validation)

    def _check_data(self, *args, **kwargs):
        """scikit-learn's ``validate_data`` (before scikit-learn 1.6: the inherited ``_validate_data``)."""
        kwargs.setdefault("accept_sparse", ["csr", "csc"])
        if validate_data is None:  # pragma: no cover - scikit-learn < 1.6
            return self._validate_data(*args, **kwargs)
        return validate_data(self, *args, **kwargs)

    def _predict_dense(self, X) -> np.ndarray:
        """The network's raw outputs for checked X, a sparse X made dense a part at a time."""
        if not _is_sparse(X):
            return self.model_.predict(X)
        rows = max(1, _DENSE_CHUNK // max(X.shape[1], 1))
        return np.concatenate([self.model_.predict(_rows(X, slice(start, start + rows)))
                               for start in range(0, X.shape[0], rows)])

    def _predict_raw(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = self._check_data(X, reset=False, dtype=self.model_.dtype)
        return self._predict_dense(X.tocsr() if _is_sparse(X) else X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _init_with(name: str, default):
    """``_BaseMLP.__init__`` with one more keyword-only parameter, ``name=default``, in its signature.

    scikit-learn reads an estimator's parameters from the signature of its
    ``__init__`` (``get_params``, ``clone``, ``check_estimator``), which
    ``inspect.signature`` takes from ``__signature__``: the subclasses share
    the base's list of parameters instead of repeating it.
    """
    def __init__(self, *args, **kwargs):
        setattr(self, name, kwargs.pop(name, default))
        _BaseMLP.__init__(self, *args, **kwargs)

    base = inspect.signature(_BaseMLP.__init__)
    parameters = list(base.parameters.values())
    at = next(i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.KEYWORD_ONLY)
    parameters.insert(at, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
    __init__.__signature__ = base.replace(parameters=parameters)  # type: ignore[attr-defined]
    __init__.__doc__ = f"Set the parameters, ``{name}`` and those of the class docstring (checked in fit)."
    return __init__


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor on fastnn, with scikit-learn's ``MLPRegressor`` API.

    Trains a :class:`fastnn.Sequential` (``hidden_layer_sizes`` Dense layers with
    ``activation``, then a linear output per target) with :class:`fastnn.MSELoss`
    (``loss="squared_error"``) or :class:`fastnn.PoissonLoss` (``loss="poisson"``:
    the outputs are log-means, the predictions their exponential). How each
    parameter maps onto fastnn, and what differs from scikit-learn, is in the
    docstring of :mod:`fastnn.estimators` and in the guide "Moving from
    scikit-learn".

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"} or list of them, default="relu"
        The hidden layers' activation; a list gives one per hidden layer
        (fastnn's extension).
    loss : {"squared_error", "poisson"}, default="squared_error"
        Keyword-only here (scikit-learn >= 1.7 takes it first). "poisson" is
        half the Poisson deviance with a log link; it needs ``y >= 0``.
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "lbfgs": full-batch L-BFGS (module docstring), with ``max_iter``
        iterations and ``max_fun`` evaluations at most.
    alpha : float, default=1e-4
        L2 penalty, as scikit-learn's.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the SGD step (ignored by Adam), as scikit-learn's.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
        Exponent of "invscaling".
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
        Initial weights, shuffling and the validation split.
    tol : float, default=1e-4
        Training stops when ``loss_curve_`` (or the validation score, with
        ``early_stopping``) has not improved by ``tol`` for more than
        ``n_iter_no_change`` consecutive epochs.
    verbose : bool or int, default=False
    warm_start : bool, default=False
        Continue from the fitted network and optimizer state.
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (or use ``fit``'s
        ``X_val``, ``y_val``), stop on its R^2 score and restore the
        parameters of the best epoch.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's.
    n_iter_no_change : int or numpy.inf, default=10
    max_fun : int, default=15000
        The L-BFGS solver's limit of loss evaluations (unused by "adam" and "sgd").
    dtype : None, numpy.float64 or numpy.float32, default=None
        The dtype the network stores its parameters and computes in. None:
        scikit-learn's rule, float32 for float32 ``X``, else float64.

    Attributes
    ----------
    model_ : fastnn.Sequential
        The fitted network.
    loss_ : float
        ``loss_curve_[-1]``.
    loss_curve_ : list of float
        One entry per epoch on scikit-learn's scale (half the mean squared
        error, or the Poisson half deviance summed over the outputs), plus
        the L2 penalty (module docstring).
    best_loss_ : float or None
        The smallest ``loss_curve_`` entry (None with ``early_stopping``).
    validation_scores_ : list of float or None
        R^2 on the validation data after each epoch (with ``early_stopping``
        or ``X_val``).
    validation_loss_curve_ : list of float or None
        fastnn's extension: the loss on the validation data after each epoch,
        on ``loss_curve_``'s scale without the penalty.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``).
    t_ : int
        Training samples seen, over all calls.
    coefs_, intercepts_ : list of ndarray
        Each layer's ``W`` and ``b`` (live views into ``model_``); assigning
        lists of arrays of the same shapes copies them into the network.
    n_features_in_, n_outputs_, n_layers_, out_activation_
        As scikit-learn's (``out_activation_`` is "identity", or "exp" for
        the Poisson loss).
    """

    __init__ = _init_with("loss", "squared_error")

    def _check_own_params(self) -> dict:
        return {"loss": check_option(self.loss, "loss", ("squared_error", "poisson"))}

    @staticmethod
    def _out_activation_for(params: dict, y) -> str:
        return "exp" if params["loss"] == "poisson" else "identity"

    def _validate_input(self, X, y, dtype, *, reset, incremental, classes, known=None):
        X, y = self._check_data(X, y, multi_output=True, y_numeric=True, dtype=dtype, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = np.ascontiguousarray(y, dtype=X.dtype)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return X, y, None

    @staticmethod
    def _n_outputs(y, classes) -> int:
        return 1 if y.ndim == 1 else y.shape[1]

    def _validation_score(self, raw, y, sample_weight) -> float:
        if sample_weight is not None and not sample_weight.sum() > 0:
            sample_weight = None
        prediction = self._from_raw(raw)
        if not np.all(np.isfinite(prediction)):
            return np.nan
        return float(r2_score(y, prediction, sample_weight=sample_weight))

    def _from_raw(self, raw) -> np.ndarray:
        """Predictions from the network's outputs: the mean exp(z) for the Poisson loss, (n,) for one output."""
        if self.out_activation_ == "exp":
            with np.errstate(over="ignore"):
                raw = np.exp(raw)
        return raw.ravel() if self.n_outputs_ == 1 else raw

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X`` and ``y``, continuing from the current network (or a new one)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs), in the network's dtype."""
        return self._from_raw(self._predict_raw(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self):  # pragma: no cover - scikit-learn < 1.6
        return {"multioutput": True}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier on fastnn, with scikit-learn's ``MLPClassifier`` API.

    Trains a :class:`fastnn.Sequential` (``hidden_layer_sizes`` Dense layers with
    ``activation``, then the output layer) as scikit-learn's: one logit per class
    and :class:`fastnn.CrossEntropyLoss` (softmax) for more than two classes; one
    logit per label and :class:`fastnn.BCEWithLogitsLoss` (logistic) for two
    classes (one logit) and for multilabel targets (a label indicator matrix).
    Parameters are :class:`MLPRegressor`'s (without ``loss``), and:

    Parameters
    ----------
    class_weight : None, "balanced" or dict {label: weight}, default=None
        fastnn's extension: each sample's weight is multiplied by its class's
        (``"balanced"``: ``n_samples / (n_classes * count)``, as scikit-learn's
        ``compute_class_weight``; a dict's missing classes weigh 1). Not with
        multilabel targets; ``"balanced"`` not in ``partial_fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted (``arange(n_labels)`` for multilabel targets).
    loss_curve_ : list of float
        The mean log-loss of each epoch plus the L2 penalty (as scikit-learn's).
    validation_scores_ : list of float or None
        Accuracies (subset accuracy for multilabel targets).
    model_, loss_, best_loss_, validation_loss_curve_, best_validation_score_, n_iter_, t_,
    coefs_, intercepts_, n_features_in_, n_outputs_, n_layers_, out_activation_
        As :class:`MLPRegressor`'s; ``out_activation_`` is "softmax" or
        "logistic" and ``n_outputs_`` the number of logits.
    """

    __init__ = _init_with("class_weight", None)

    def _check_own_params(self) -> dict:
        value = self.class_weight
        if not (value is None or isinstance(value, dict) or (isinstance(value, str) and value == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {value!r}")
        return {"class_weight": value}

    @staticmethod
    def _out_activation_for(params: dict, y) -> str:
        return "logistic" if y.ndim == 2 else "softmax"

    def _validate_input(self, X, y, dtype, *, reset, incremental, classes, known=None):
        """X, y as the network's targets (class indices, or a 0/1 matrix for logistic outputs),
        and the classes (set on self by the caller)."""
        X, y = self._check_data(X, y, dtype=dtype, reset=reset, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if type_of_target(y) == "multilabel-indicator":
            if incremental and classes is None and getattr(self, "classes_", None) is None:
                raise ValueError(_CLASSES_FIRST)          # as for other targets, as scikit-learn
            fitted = np.arange(y.shape[1]) if known is None else known
            if (not reset and known is None and getattr(self, "classes_", None) is not None
                    and not np.array_equal(self.classes_, fitted)):
                raise ValueError(f"y has {y.shape[1]} labels, the fitted network {len(self.classes_)}")
        else:
            check_classification_targets(y)
            fitted = known if known is not None else self._fitted_classes(y, reset, incremental, classes)
        return X, self._encode(y, fitted, X.dtype), fitted

    def _fitted_classes(self, y, reset: bool, incremental: bool, classes) -> np.ndarray:
        """The classes this call trains on (scikit-learn's rules for fit, warm starts and partial_fit)."""
        fitted: Any = getattr(self, "classes_", None)
        if incremental and fitted is None:
            if classes is None:
                raise ValueError(_CLASSES_FIRST)
            fitted = np.unique(np.asarray(classes))
        elif incremental and classes is not None:
            if not np.array_equal(np.unique(np.asarray(classes)), fitted):
                raise ValueError(f"classes={classes!r} is not the same as on the first call to partial_fit, "
                                 f"which was {fitted!r}")
        elif reset:
            fitted = np.unique(y)
        elif self.warm_start and not incremental and not np.array_equal(np.unique(y), fitted):
            raise ValueError(f"warm_start can only be used where y has the same classes as in the previous "
                             f"call to fit. Previously got {fitted}, y has {np.unique(y)}")
        if len(fitted) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes to train, y holds "
                             f"only one class: {fitted[0]!r}")
        return fitted

    @staticmethod
    def _encode(y, classes, dtype) -> np.ndarray:
        """The network's targets: class indices (intp) for more than two classes, a (n, 1) 0/1
        column for two, the indicator matrix itself for multilabel y (``dtype`` both)."""
        if y.ndim == 2:
            if y.shape[1] != len(classes):
                raise ValueError(f"y has {y.shape[1]} labels (columns), the classifier {len(classes)}")
            return np.ascontiguousarray(y, dtype=dtype)
        codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
        unknown = classes[codes] != y
        if np.any(unknown):
            raise ValueError(f"y has classes not in classes_ ({classes!r}): {np.unique(np.asarray(y)[unknown])!r}")
        if len(classes) == 2:
            return (codes == 1).astype(dtype).reshape(-1, 1)
        return codes.astype(np.intp)

    @staticmethod
    def _codes(targets) -> np.ndarray:
        """Class indices from single-label targets (:meth:`_encode`)."""
        return targets.ravel().astype(np.intp) if targets.ndim == 2 else targets

    def _sample_weight(self, sample_weight, y, classes, dtype, incremental: bool) -> np.ndarray | None:
        weights = _check_sample_weight(sample_weight, y.shape[0], dtype)
        if self.class_weight is None:
            return weights
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError("class_weight is not supported for multilabel targets")
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' is not supported for partial_fit: the classes' "
                             "frequencies are not known from one batch. Use a dict of weights instead.")
        codes = self._codes(y)
        per_class = compute_class_weight(self.class_weight, classes=classes, y=classes[codes])
        combined = per_class[codes] * (1.0 if weights is None else weights)
        return check_sample_weight(combined, y.shape[0], dtype)

    def _n_outputs(self, y, classes) -> int:
        return y.shape[1] if y.ndim == 2 else len(classes)

    def _stratify(self, y, fraction):
        if y.ndim == 2:
            # scikit-learn stratifies a binary problem by its 0/1 column (train_test_split's
            # error if a class has a single sample) and no multilabel one.
            return y > 0.5 if y.shape[1] == 1 else None
        # More than two classes: scikit-learn does not stratify; fastnn does when every class
        # can be (twice, with a place on both sides), else splits as scikit-learn.
        counts = np.bincount(y, minlength=len(self.classes_))
        n_val = math.ceil(fraction * y.shape[0])
        if counts.min() >= 2 and n_val >= len(counts) and y.shape[0] - n_val >= len(counts):
            return y
        return None

    def _validation_score(self, raw, y, sample_weight) -> float:
        if y.ndim == 2:     # logistic outputs: every label right (subset accuracy)
            hits = np.all((self._probabilities(raw) > 0.5) == (y > 0.5), axis=1).astype(np.float64)
        else:
            hits = (raw.argmax(axis=1) == y).astype(np.float64)
        if sample_weight is None or not sample_weight.sum() > 0:
            return float(hits.mean())
        return float(np.average(hits, weights=sample_weight))

    def _probabilities(self, raw) -> np.ndarray:
        """The output activation of the logits: softmax rows, or each logit's sigmoid."""
        if self.out_activation_ == "logistic":
            return ops.sigmoid_forward(raw)
        shifted = raw - raw.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X`` and ``y``, continuing from the current network (or a new one).

        ``classes`` (all the labels there will be) is required on the first call.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X) -> np.ndarray:
        """Predicted class labels, shape (n_samples,); for multilabel targets the 0/1 indicator
        matrix (n_samples, n_labels), as scikit-learn's."""
        proba = self._probabilities(self._predict_raw(X))
        if self.out_activation_ == "softmax":
            return self.classes_[proba.argmax(axis=1)]
        if self.n_outputs_ == 1:
            return self.classes_[(proba[:, 0] > 0.5).astype(np.intp)]
        return (proba > 0.5).astype(int)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``
        (a binary problem: ``[1 - p, p]``; multilabel: each label's probability)."""
        proba = self._probabilities(self._predict_raw(X))
        if self.n_outputs_ == 1 and self.out_activation_ == "logistic":
            return np.hstack([1 - proba, proba])
        return proba

    def predict_log_proba(self, X) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
