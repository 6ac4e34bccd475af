"""fastnn's MLPRegressor and MLPClassifier as a drop-in for scikit-learn's: dtypes, fitted
attributes, sparse input, multilabel / string / boolean targets, the Poisson loss, stratified
early stopping, scikit-learn's messages, and fastnn's extensions (class_weight, one activation
per layer, an explicit validation set, the validation loss curve). Where the two should agree
they run side by side.

Tolerances: with ``solver="sgd"``, ``alpha=0`` and the same ``random_state`` both start from the
same weights, visit the same batches and take the same steps, computed in another order (fastnn's
compiled kernels against NumPy's BLAS): their loss curves agree to a relative 1e-9 after ten
epochs in float64. Adam differs in where epsilon enters (tests/test_estimators.py), so Adam runs
are compared by score only.
"""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
sparse = pytest.importorskip("scipy.sparse")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor, ops, reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SGD = dict(solver="sgd", alpha=0.0, learning_rate_init=0.02, batch_size=32, max_iter=10, random_state=3)


def regression_data(n_samples=160, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 5))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n_samples)


def count_data(n_samples=200, n_outputs=1, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 4))
    rates = np.exp(0.4 * X[:, :n_outputs] + 0.3)
    y = rng.poisson(rates).astype(float)
    return X, (y[:, 0] if n_outputs == 1 else y)


def binary_data(n_samples=200, seed=0):
    X, y = make_classification(n_samples, 6, n_informative=4, random_state=seed)
    return X, y


def multilabel_data(n_samples=200, seed=0):
    X, y = binary_data(n_samples, seed)
    return X, np.c_[y, X[:, 0] > 0, (X[:, 1] + X[:, 2]) > 0.5].astype(int)


def both(cls_name, X, y, fit_params=None, **params):
    """The fitted fastnn estimator and scikit-learn's, same parameters and data."""
    fit_params = fit_params or {}
    ours = getattr(fastnn, cls_name)(**params).fit(X, y, **fit_params)
    theirs = getattr(neural_network, cls_name)(**params).fit(X, y, **fit_params)
    return ours, theirs


# -- dtype as scikit-learn keeps it -----------------------------------------------------


@pytest.mark.parametrize("x_dtype,expected", [(np.float32, np.float32), (np.float64, np.float64),
                                              (np.int64, np.float64)])
@pytest.mark.parametrize("cls_name", ["MLPRegressor", "MLPClassifier"])
def test_the_network_takes_the_dtype_scikit_learn_would(cls_name, x_dtype, expected):
    X, y = regression_data() if cls_name == "MLPRegressor" else binary_data()
    X = (X * 4).astype(x_dtype)
    ours, theirs = both(cls_name, X, y, hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    for estimator in (ours, theirs):
        assert [W.dtype for W in estimator.coefs_ + estimator.intercepts_] == [expected] * 4
    assert ours.model_.dtype == expected
    output = ours.predict(X) if cls_name == "MLPRegressor" else ours.predict_proba(X)
    assert output.dtype == expected == (theirs.predict(X) if cls_name == "MLPRegressor"
                                        else theirs.predict_proba(X)).dtype


def test_an_explicit_dtype_overrides_the_rule():
    X, y = regression_data()
    estimator = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, dtype=np.float32, random_state=0).fit(X, y)
    assert estimator.coefs_[0].dtype == np.float32 and estimator.predict(X).dtype == np.float32
    estimator = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, dtype=np.float64, random_state=0)
    assert estimator.fit(X.astype(np.float32), y).coefs_[0].dtype == np.float64
    # A warm start keeps the network's dtype, whatever the new data's.
    warm = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0)
    warm.fit(X.astype(np.float32), y).fit(X, y)
    assert warm.coefs_[0].dtype == np.float32


# -- fitted attributes --------------------------------------------------------------------

ATTRIBUTES = ["n_layers_", "n_outputs_", "out_activation_", "loss_", "best_loss_", "loss_curve_",
              "validation_scores_", "best_validation_score_", "t_", "n_iter_", "n_features_in_"]


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("task", ["regression", "poisson", "binary", "multiclass", "multilabel"])
def test_fitted_attributes_as_scikit_learn_sets_them(task, solver, early_stopping):
    params = dict(SGD, solver=solver, early_stopping=early_stopping, n_iter_no_change=3)
    if task in ("regression", "poisson"):
        X, y = regression_data() if task == "regression" else count_data()
        ours, theirs = both("MLPRegressor", X, y, loss="squared_error" if task == "regression" else task, **params)
    else:
        X, y = {"binary": binary_data, "multilabel": multilabel_data}.get(task, binary_data)()
        if task == "multiclass":
            y = y + (X[:, 3] > 1)
            # String labels, but not with early stopping: scikit-learn 1.7's own MLPClassifier
            # fails there (its validation score calls np.isnan on the predicted labels).
            y = y if early_stopping else np.array(["cat", "dog", "owl"])[y]
        ours, theirs = both("MLPClassifier", X, y, **params)
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        assert ours.predict(X).shape == theirs.predict(X).shape and ours.predict(X).dtype == theirs.predict(X).dtype
        assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape
    for name in ATTRIBUTES:
        mine, sklearns = getattr(ours, name), getattr(theirs, name)
        assert (mine is None) == (sklearns is None), name
        if name in ("n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
            assert mine == sklearns, name
        if isinstance(sklearns, list):
            assert len(mine) == ours.n_iter_ and len(sklearns) == theirs.n_iter_, name
    assert [W.shape for W in ours.coefs_] == [W.shape for W in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert (ours.validation_loss_curve_ is None) == (not early_stopping)
    if solver == "sgd" and not (task == "multiclass" and early_stopping):
        # The same steps: the same curves (module docstring). fastnn stratifies the validation
        # split of more than two classes, scikit-learn does not: other splits, other curves.
        assert ours.t_ == theirs.t_ and ours.n_iter_ == theirs.n_iter_
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
        if early_stopping:
            np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)


def numpy_forward(estimator, X):
    """What a reader of scikit-learn's fitted attributes computes (emlearn's C export, for one):
    coefs_, intercepts_, the hidden activation and out_activation_ only."""
    hidden = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
              "logistic": lambda z: 1 / (1 + np.exp(-z))}[estimator.activation]
    output = {"identity": lambda z: z, "exp": np.exp, "logistic": lambda z: 1 / (1 + np.exp(-z)),
              "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)}[estimator.out_activation_]
    A = X
    for i, (W, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        Z = A @ W + b
        A = hidden(Z) if i < estimator.n_layers_ - 2 else output(Z)
    return A


@pytest.mark.parametrize("task", ["regression", "poisson", "binary", "multiclass", "multilabel"])
def test_coefs_from_scikit_learn_assigned_to_fastnn_predict_the_same(task):
    # A from_sklearn-style copy: assign scikit-learn's fitted coefs_ and intercepts_ to a fastnn
    # estimator fitted on the same kind of data; both then predict the same, and a reader of the
    # attributes computes fastnn's predictions.
    params = dict(hidden_layer_sizes=(7, 5), max_iter=20, random_state=1, activation="tanh")
    if task in ("regression", "poisson"):
        X, y = regression_data() if task == "regression" else count_data()
        loss = "squared_error" if task == "regression" else "poisson"
        ours, theirs = both("MLPRegressor", X, y, loss=loss, **params)
        ours.set_params(max_iter=1)
    else:
        X, y = multilabel_data() if task == "multilabel" else binary_data()
        y = y + (X[:, 3] > 1) if task == "multiclass" else y
        ours, theirs = both("MLPClassifier", X, y, **params)
    ours.coefs_ = theirs.coefs_
    ours.intercepts_ = theirs.intercepts_
    for mine, sklearns in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_array_equal(mine, sklearns)
        assert not np.shares_memory(mine, sklearns)     # copied into the network
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-10, atol=1e-12)
    if task in ("binary", "multiclass", "multilabel"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-10, atol=1e-12)
    expected = numpy_forward(ours, X)
    np.testing.assert_allclose(expected.ravel() if task in ("regression", "poisson") else expected,
                               ours.predict(X) if task in ("regression", "poisson") else
                               ours.predict_proba(X)[:, 1:] if task == "binary" else ours.predict_proba(X),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_emlearn_exports_fastnns_classifier_to_c(n_classes, tmp_path, monkeypatch):
    # emlearn's convert reads coefs_, intercepts_, activation, out_activation_ and n_layers_,
    # generates C and compiles it (in ./tmp: here, tmp_path): its predictions are fastnn's.
    monkeypatch.chdir(tmp_path)
    settings = np.geterr()
    try:
        emlearn = pytest.importorskip("emlearn")
        X, y = binary_data(300)
        y = y + (X[:, 3] > 1) if n_classes == 3 else y
        X = X.astype(np.float32)
        estimator = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, y)
        compiled = emlearn.convert(estimator, method="inline")
        np.testing.assert_array_equal(compiled.predict(X), estimator.predict(X))
    finally:
        np.seterr(**settings)       # importing emlearn sets NumPy to raise on every floating-point error


def test_assigning_coefs_checks_everything_before_changing_anything():
    X, y = regression_data()
    estimator = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(AttributeError, match="fit it first"):
        estimator.coefs_ = [np.zeros((5, 4)), np.zeros((4, 1))]
    estimator.fit(X, y)
    before = estimator.model_.get_parameters()
    for bad, match in (([np.zeros((5, 4))], "list of 2 arrays"), (np.zeros((5, 4)), "list of 2"),
                       ([np.ones((5, 4)), np.zeros((4, 2))], r"coefs_\[1\] must have shape \(4, 1\)"),
                       ([np.ones((5, 4)), np.array([["a"] * 1] * 4)], r"coefs_\[1\]")):
        with pytest.raises((ValueError, TypeError), match=match):
            estimator.coefs_ = bad
        np.testing.assert_array_equal(estimator.model_.get_parameters(), before)
    with pytest.raises(ValueError, match=r"intercepts_\[0\] must have shape \(4,\)"):
        estimator.intercepts_ = [np.zeros(3), np.zeros(1)]
    estimator.intercepts_ = [np.arange(4.0), np.array([7.0])]
    np.testing.assert_array_equal(estimator.model_.layers[0].b, np.arange(4.0))


# -- inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "csr_array"])
@pytest.mark.parametrize("cls_name", ["MLPRegressor", "MLPClassifier"])
def test_sparse_input_trains_as_the_dense_data_would(fmt, cls_name):
    X, y = regression_data(300) if cls_name == "MLPRegressor" else binary_data(300)
    X = np.where(np.random.RandomState(5).rand(*X.shape) < 0.6, 0.0, X)
    X_sparse = sparse.csr_array(X) if fmt == "csr_array" else getattr(sparse, f"{fmt}_matrix")(X)
    params = dict(SGD, early_stopping=True, n_iter_no_change=100, hidden_layer_sizes=(6,))
    estimator = getattr(fastnn, cls_name)
    dense = estimator(**params).fit(X, y)
    sparse_fit = estimator(**params).fit(X_sparse, y)
    np.testing.assert_allclose(sparse_fit.loss_curve_, dense.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(sparse_fit.validation_scores_, dense.validation_scores_, rtol=1e-12)
    np.testing.assert_allclose(sparse_fit.predict(X_sparse), dense.predict(X), rtol=1e-12)
    theirs = getattr(neural_network, cls_name)(**params).fit(X_sparse, y)       # and as scikit-learn's
    np.testing.assert_allclose(sparse_fit.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_sparse_input_is_made_dense_a_few_batches_at_a_time(monkeypatch):
    from fastnn import estimators

    monkeypatch.setattr(estimators, "_DENSE_CHUNK", 64)     # 64 elements: one batch of 32 x 2 per part
    X, y = regression_data(100)
    X = X[:, :2]
    seen = []
    original = fastnn.Sequential.fit

    def recording(self, X, *args, **kwargs):
        seen.append(X.shape[0])
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(fastnn.Sequential, "fit", recording)
    chunked = MLPRegressor(hidden_layer_sizes=(4,), **dict(SGD, max_iter=2)).fit(sparse.csr_matrix(X), y)
    assert seen == [32, 32, 32, 4] * 2
    monkeypatch.setattr(fastnn.Sequential, "fit", original)
    whole = MLPRegressor(hidden_layer_sizes=(4,), **dict(SGD, max_iter=2)).fit(X, y)
    np.testing.assert_allclose(chunked.loss_curve_, whole.loss_curve_, rtol=1e-12)


def test_string_and_boolean_labels_as_scikit_learn():
    X, y = binary_data()
    for labels in (np.array([False, True])[y], np.array(["no", "yes"])[y], np.array([-1, 1])[y]):
        ours, theirs = both("MLPClassifier", X, labels, **SGD)
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        assert ours.classes_.dtype == theirs.classes_.dtype
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        assert ours.predict(X).dtype == theirs.predict(X).dtype
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_multilabel_targets_predict_the_indicator_matrix():
    X, Y = multilabel_data()
    ours, theirs = both("MLPClassifier", X, Y, **dict(SGD, max_iter=30))
    assert ours.out_activation_ == theirs.out_activation_ == "logistic" and ours.n_outputs_ == 3
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    assert ours.score(X, Y) == theirs.score(X, Y)               # subset accuracy
    # partial_fit as scikit-learn: classes are required on the first call; the labels are the
    # indicator's columns.
    for Estimator in (MLPClassifier, neural_network.MLPClassifier):
        with pytest.raises(ValueError, match="^classes must be passed on the first call to partial_fit.$"):
            Estimator(hidden_layer_sizes=(8,)).partial_fit(X, Y)
    streamed = MLPClassifier(hidden_layer_sizes=(8,), random_state=0).partial_fit(X, Y, classes=[0, 1, 2])
    np.testing.assert_array_equal(streamed.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        streamed.partial_fit(X, Y[:, :2])


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_loss_follows_scikit_learn(n_outputs, solver):
    X, y = count_data(n_outputs=n_outputs)
    params = dict(SGD, solver=solver, loss="poisson", hidden_layer_sizes=(8,), learning_rate_init=0.01,
                  max_iter=40, epsilon=1e-20)
    ours, theirs = both("MLPRegressor", X, y, **params)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)
    assert np.all(ours.predict(X) > 0)
    assert ours.loss_curve_[-1] < 0.8 * ours.loss_curve_[0]


def test_poisson_refuses_negative_targets_with_scikit_learns_message():
    X, y = count_data()
    y[3] = -1.0
    estimator = MLPRegressor(loss="poisson", max_iter=2)
    with pytest.raises(ValueError, match="Some value\\(s\\) of y are negative which is not allowed for Poisson"):
        estimator.fit(X, y)
    assert not hasattr(estimator, "model_")
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, np.abs(y))


def test_binary_early_stopping_split_is_stratified_with_scikit_learns_error():
    X, y = binary_data(100)
    ours, theirs = both("MLPClassifier", X, y, **dict(SGD, early_stopping=True, validation_fraction=0.2))
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
    y_lonely = np.zeros(100, dtype=int)
    y_lonely[7] = 1
    messages = []
    for cls in (MLPClassifier, neural_network.MLPClassifier):
        with pytest.raises(ValueError, match="least populated class") as info:
            cls(early_stopping=True, max_iter=2).fit(X, y_lonely)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_divergence_raises_scikit_learns_message():
    X, y = regression_data()
    for cls in (MLPRegressor, neural_network.MLPRegressor):
        with warnings.catch_warnings(), np.errstate(all="ignore"):    # scikit-learn's NumPy overflows
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(ValueError, match="^Solver produced non-finite parameter weights. The input data "
                                                 "may contain large values and need to be preprocessed."):
                cls(solver="sgd", learning_rate_init=1e3, max_iter=30, hidden_layer_sizes=(8,),
                    random_state=0).fit(X * 1e3, y * 1e6)


def test_a_diverging_epoch_with_early_stopping_keeps_the_best_epoch():
    X, y = regression_data(300)
    params = dict(solver="sgd", learning_rate_init=0.01, hidden_layer_sizes=(16,), batch_size=16, tol=0.0,
                  n_iter_no_change=1000, max_iter=40, early_stopping=True, random_state=0)
    X_bad = X.copy()
    X_bad[::37] *= 12          # a few large rows: SGD with momentum diverges in the 4th epoch
    with pytest.warns(ConvergenceWarning, match="diverged in epoch"):
        estimator = MLPRegressor(**params).fit(X_bad, y)
    scores = estimator.validation_scores_
    assert np.isnan(scores[-1]) and np.isnan(estimator.loss_curve_[-1]) and estimator.n_iter_ == len(scores)
    assert estimator.n_iter_ == 4 and np.all(np.isfinite(scores[:-1]))
    assert estimator.best_validation_score_ == np.nanmax(scores)
    assert np.all(np.isfinite(estimator.model_.get_parameters()))
    best_epoch = int(np.nanargmax(scores)) + 1
    cut = MLPRegressor(**dict(params, max_iter=best_epoch, n_iter_no_change=1000)).fit(X_bad, y)
    np.testing.assert_array_equal(estimator.model_.get_parameters(), cut.model_.get_parameters())
    # Sequential.fit itself still raises.
    model = fastnn.Sequential([fastnn.Dense(5, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 1, seed=1)])
    with pytest.raises(FloatingPointError):
        model.fit(X_bad * 1e100, y, optimizer=fastnn.SGD(lr=0.05), epochs=5, batch_size=16)


# -- what scikit-learn refuses: fastnn's extensions ------------------------------------------


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5}, {1: 2.0}])
def test_class_weight_is_a_sample_weight_per_class(class_weight):
    X, y = binary_data()
    y = np.where(np.arange(200) % 3 == 0, 1, y)
    base = np.linspace(0.5, 2.0, 200)
    weighted = MLPClassifier(class_weight=class_weight, **SGD).fit(X, y, sample_weight=base)
    expected = compute_sample_weight(class_weight, y) * base
    plain = MLPClassifier(**SGD).fit(X, y, sample_weight=expected)
    np.testing.assert_array_equal(weighted.model_.get_parameters(), plain.model_.get_parameters())
    assert MLPClassifier().class_weight is None         # scikit-learn's default kept
    unweighted = MLPClassifier(**SGD).fit(X, y, sample_weight=base)
    assert not np.allclose(weighted.model_.get_parameters(), unweighted.model_.get_parameters())


def test_class_weight_refusals():
    X, y = binary_data()
    with pytest.raises(ValueError, match="class_weight must be"):
        MLPClassifier(class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight="balanced").fit(*multilabel_data())
    MLPClassifier(class_weight={0: 2.0}, max_iter=1).partial_fit(X, y, classes=[0, 1])


def test_activation_as_a_list_one_per_hidden_layer():
    X, y = regression_data()
    same = MLPRegressor(hidden_layer_sizes=(6, 4), activation=["tanh", "tanh"], **SGD).fit(X, y)
    string = MLPRegressor(hidden_layer_sizes=(6, 4), activation="tanh", **SGD).fit(X, y)
    np.testing.assert_array_equal(same.model_.get_parameters(), string.model_.get_parameters())
    mixed = MLPRegressor(hidden_layer_sizes=(6, 4), activation=("logistic", "relu"), **SGD).fit(X, y)
    kinds = [type(layer).__name__ for layer in mixed.model_.layers]
    assert kinds == ["Dense", "Sigmoid", "Dense", "ReLU", "Dense"]
    # Glorot's bound of a layer before a logistic activation is scikit-learn's sqrt(2 / fan sum).
    first = MLPRegressor(hidden_layer_sizes=(6, 4), activation=("logistic", "relu"), **dict(SGD, max_iter=1))
    assert np.abs(first.fit(X, y).coefs_[0]).max() < np.sqrt(2 / 11) + 0.05
    for bad, match in ((["tanh"], "one name per hidden layer"), (["tanh", "swish"], r"activation\[1\]"),
                       (3, "activation")):
        with pytest.raises(ValueError, match=match):
            MLPRegressor(hidden_layer_sizes=(6, 4), activation=bad).fit(X, y)


@pytest.mark.parametrize("early_stopping", [True, False])
def test_an_explicit_validation_set(early_stopping):
    X, y = regression_data(300)
    X_val, y_val = regression_data(80, seed=9)
    params = dict(SGD, hidden_layer_sizes=(12,), max_iter=25, n_iter_no_change=4, tol=1e-3,
                  early_stopping=early_stopping)
    estimator = MLPRegressor(**params).fit(X, y, X_val=X_val, y_val=y_val)
    scores, losses = estimator.validation_scores_, estimator.validation_loss_curve_
    assert len(scores) == len(losses) == len(estimator.loss_curve_) == estimator.n_iter_
    assert estimator.t_ == 300 * estimator.n_iter_          # every row trained on: no split
    assert estimator.best_validation_score_ == max(scores)
    final = estimator.score(X_val, y_val)
    final_loss = 0.5 * np.mean((estimator.predict(X_val) - y_val) ** 2)     # scikit-learn's scale
    if early_stopping:                  # the best epoch's parameters are kept
        best = int(np.argmax(scores))
        assert final == pytest.approx(scores[best], rel=1e-12)
        assert final_loss == pytest.approx(losses[best], rel=1e-10)
        assert estimator.best_loss_ is None
    else:                               # monitoring only: training stops on its own loss
        assert final == pytest.approx(scores[-1], rel=1e-12) and final_loss == pytest.approx(losses[-1], rel=1e-10)
        assert estimator.best_loss_ == min(estimator.loss_curve_)
    with pytest.raises(ValueError, match="X_val and y_val"):
        MLPRegressor(max_iter=1).fit(X, y, X_val=X_val)
    with pytest.raises(ValueError, match="features"):
        MLPRegressor(max_iter=1).fit(X, y, X_val=X_val[:, :3], y_val=y_val)
    X_cls, y_cls = binary_data()
    with pytest.raises(ValueError, match="not in classes_"):
        MLPClassifier(max_iter=1).fit(X_cls, y_cls, X_val=X_cls[:5], y_val=[0, 1, 2, 0, 1])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_validation_loss_curve_is_the_log_loss(n_classes):
    from sklearn.metrics import log_loss

    X, y = binary_data(300)
    y = y + (X[:, 3] > 1) if n_classes == 3 else y
    params = dict(SGD, early_stopping=True, n_iter_no_change=3, max_iter=30)
    estimator = MLPClassifier(**params).fit(X[:240], y[:240], X_val=X[240:], y_val=y[240:])
    best = int(np.argmax(estimator.validation_scores_))
    expected = log_loss(y[240:], estimator.predict_proba(X[240:]))
    assert estimator.validation_loss_curve_[best] == pytest.approx(expected, rel=1e-10)


# -- the Poisson loss kernel ----------------------------------------------------------------


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_poisson_kernel_against_reference_and_finite_differences(dtype, rtol, weighted):
    rng = np.random.RandomState(0)
    z = rng.normal(size=(7, 3)).astype(dtype)
    y = rng.poisson(2.0, size=(7, 3)).astype(dtype)
    y[0, 0] = 0.0
    w = rng.rand(7).astype(dtype) if weighted else None
    assert ops.poisson_loss(z, y, w) == pytest.approx(reference.poisson_loss(z, y, w), rel=rtol)
    np.testing.assert_allclose(ops.poisson_grad(z, y, w), reference.poisson_grad(z, y, w), rtol=rtol,
                               atol=rtol * 1e-2)
    assert fastnn.PoissonLoss()(z, y, w) == ops.poisson_loss(z, y, w)
    # scikit-learn's half deviance, averaged over the elements.
    mean = np.exp(z.astype(np.float64))
    deviance = np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mean), 0) - y + mean
    expected = np.average(deviance.mean(axis=1), weights=w)
    assert ops.poisson_loss(z, y, w) == pytest.approx(expected, rel=rtol)
    if dtype == np.float64:
        eps, numeric = 1e-6, np.empty_like(z)
        for index in np.ndindex(z.shape):
            up, down = z.copy(), z.copy()
            up[index] += eps
            down[index] -= eps
            numeric[index] = (reference.poisson_loss(up, y, w) - reference.poisson_loss(down, y, w)) / (2 * eps)
        np.testing.assert_allclose(ops.poisson_grad(z, y, w), numeric, rtol=1e-6, atol=1e-10)


def test_poisson_loss_refuses_negative_targets_and_trains_a_sequential():
    with pytest.raises(ValueError, match="y must be non-negative"):
        ops.poisson_loss(np.zeros((2, 1)), np.array([[1.0], [-1.0]]))
    X, y = count_data(64)
    model = fastnn.Sequential([fastnn.Dense(4, 6, seed=0), fastnn.Tanh(), fastnn.Dense(6, 1, seed=1)])
    oracle = reference.ReferenceMLP.from_model(model)
    loss = model.train_step(X, y, loss=fastnn.PoissonLoss(), optimizer=fastnn.SGD(lr=0.1))
    expected = oracle.train_step(X, y, 0.1, loss="poisson")
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(model.get_parameters(), oracle.get_parameters(), rtol=1e-12, atol=1e-14)


# -- a script written for scikit-learn, with only the import changed --------------------------

SCRIPT = """
import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
{import_line}

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X.astype(np.float32) / 16, y, random_state=0)
clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, early_stopping=True, random_state=0)
clf.fit(X_train, y_train)
assert clf.coefs_[0].dtype == np.float32 and clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_
print("digits", round(clf.score(X_test, y_test), 2), clf.out_activation_, clf.n_layers_)

Xr, yr = make_regression(n_samples=300, n_features=8, noise=1.0, random_state=0)
reg = make_pipeline(StandardScaler(with_mean=False), MLPRegressor(hidden_layer_sizes=(32,), max_iter=300,
                                                                  learning_rate_init=0.01, random_state=0))
reg.fit(sp.csr_matrix(Xr), yr / yr.std())
print("sparse r2", round(reg.score(sp.csr_matrix(Xr), yr / yr.std()), 1))

counts = np.random.RandomState(0).poisson(np.exp(Xr[:, 0] / 3))
pois = MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=200, random_state=0).fit(Xr, counts)
print("poisson", pois.out_activation_, bool(np.all(pois.predict(Xr) > 0)))

Y = np.c_[y_train % 2, y_train > 4]
multi = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(X_train, Y)
print("multilabel", multi.predict(X_test[:3]).shape, multi.predict(X_test[:3]).dtype)
copy = MLPClassifier(hidden_layer_sizes=(16,), max_iter=1, random_state=1).fit(X_train, Y)
copy.coefs_, copy.intercepts_ = multi.coefs_, multi.intercepts_
print("copied", bool((copy.predict(X_test) == multi.predict(X_test)).all()))
online = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
for start in range(0, len(X_train), 300):
    online.partial_fit(X_train[start:start + 300], y_train[start:start + 300], classes=np.arange(10))
print("online", online.n_iter_, online.t_)
"""


def test_a_scikit_learn_script_runs_with_only_the_import_changed():
    outputs = []
    for import_line in ("from sklearn.neural_network import MLPClassifier, MLPRegressor",
                        "from fastnn import MLPClassifier, MLPRegressor"):
        script = textwrap.dedent(SCRIPT).format(import_line=import_line)
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines())
    # The same kind of results: the same shapes, types and flags; scores within 0.1 (digits'
    # accuracy) or equal when rounded to one digit (the regressions).
    sklearns, ours = outputs
    for theirs_line, our_line in zip(sklearns, ours):
        if theirs_line.startswith("digits"):
            assert abs(float(theirs_line.split()[1]) - float(our_line.split()[1])) <= 0.1
            assert theirs_line.split()[2:] == our_line.split()[2:]
        else:
            assert our_line == theirs_line
