"""fastnn.MLPRegressor and fastnn.MLPClassifier: scikit-learn's estimator checks, its tools
(Pipeline, cross_val_score, GridSearchCV with processes), sample weights, partial_fit,
warm starts, early stopping, pickling, and scikit-learn's own MLP as the yardstick."""

import inspect
import pickle
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import joblib  # noqa: E402  (installed with scikit-learn)
from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def regression_data(n_samples=150, n_outputs=1, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 4))
    y = np.c_[np.sin(X[:, 0]) + 0.5 * X[:, 1], X[:, 2] * X[:, 3]][:, :n_outputs]
    y = y + 0.1 * rng.normal(size=y.shape)
    return X, (y[:, 0] if n_outputs == 1 else y)


def classification_data(n_samples=150, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 4))
    labels = np.array(["low", "mid", "high"])
    return X, labels[(X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.8)]


def same_parameters(a, b):
    np.testing.assert_array_equal(a.model_.get_parameters(), b.model_.get_parameters())


# -- scikit-learn's conventions ------------------------------------------------------------


@parametrize_with_checks([MLPRegressor(), MLPClassifier()])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def test_import_fastnn_does_not_import_sklearn_and_the_classes_load_lazily():
    script = ("import sys, fastnn; assert 'sklearn' not in sys.modules, 'imported sklearn'; "
              "cls = fastnn.MLPClassifier; assert 'sklearn' in sys.modules; "
              "import fastnn.estimators as e; assert cls is e.MLPClassifier and fastnn.MLPRegressor is e.MLPRegressor")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {"MLPRegressor", "MLPClassifier"} <= set(fastnn.__all__)
    with pytest.raises(AttributeError, match="no attribute 'MLPNothing'"):
        fastnn.MLPNothing


@pytest.mark.parametrize("params,match", [
    (dict(solver="newton"), "solver"),
    (dict(activation="softmax"), "activation"),
    (dict(hidden_layer_sizes=(8, 0)), r"hidden_layer_sizes\[1\]"),
    (dict(momentum=1.0, solver="sgd"), "momentum"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate_init=0.0), "learning_rate_init"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(dtype=np.int32), "dtype"),
])
def test_bad_parameters_raise_in_fit_not_in_init(params, match):
    X, y = regression_data(20)
    estimator = MLPRegressor(**params)      # no error here: scikit-learn validates in fit
    with pytest.raises((ValueError, TypeError), match=match):
        estimator.fit(X, y)
    assert not hasattr(estimator, "model_")


# -- scikit-learn's tools ------------------------------------------------------------------


def test_pipeline_cross_val_score_and_grid_search_with_two_processes():
    X, y = make_classification(n_samples=240, n_features=8, n_informative=5, n_classes=3, class_sep=2.0,
                               random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01,
                                                         max_iter=60, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85      # scikit-learn's MLPClassifier: 0.925

    grid = {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__hidden_layer_sizes": [(8,), (16,)]}
    parallel = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    serial = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)
    # Estimators sent to worker processes (pickled there and back) train exactly as here.
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    assert parallel.score(X, y) > 0.8

    X_reg, y_reg = make_regression(n_samples=200, n_features=6, noise=5.0, random_state=0)
    regressor = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                                             max_iter=200, random_state=0))
    assert cross_val_score(regressor, X_reg, y_reg / y_reg.std(), cv=3).mean() > 0.9


def test_pickle_and_joblib_round_trip_predict_and_keep_training_identically(tmp_path):
    X, y = classification_data()
    original = MLPClassifier(hidden_layer_sizes=(12,), max_iter=20, random_state=0).fit(X, y)
    path = tmp_path / "clf.joblib"
    joblib.dump(original, path)
    copies = [joblib.load(path), pickle.loads(pickle.dumps(original))]
    for copy in copies:
        np.testing.assert_array_equal(copy.predict_proba(X), original.predict_proba(X))
        assert list(copy.classes_) == list(original.classes_) and copy.loss_curve_ == original.loss_curve_
    # The optimizer state (Adam's moments) travels too: continuing gives the same parameters.
    for estimator in (original, *copies):
        estimator.partial_fit(X, y)
    for copy in copies:
        same_parameters(copy, original)


# -- the mapping onto fastnn, against scikit-learn's own MLP -------------------------------


@pytest.mark.parametrize("n_outputs,learning_rate,early_stopping", [
    (1, "constant", False), (2, "constant", False), (2, "invscaling", False), (1, "adaptive", False),
    (1, "constant", True),
])
def test_sgd_regressor_follows_sklearns_updates_exactly(n_outputs, learning_rate, early_stopping):
    # Same initial weights, batches, validation split and updates (SGD with Nesterov momentum and
    # sklearn's rate schedules; alpha=0 because fastnn would decay the intercepts too): equal to
    # rounding, stopping in the same epoch. n_outputs=2 checks the MSE-to-squared-error scale,
    # n_outputs=1 the halving of loss_curve_.
    X, y = regression_data(230, n_outputs)
    params = dict(hidden_layer_sizes=(16, 8), activation="tanh", solver="sgd", alpha=0.0, batch_size=32,
                  learning_rate=learning_rate, learning_rate_init=0.02, max_iter=40, tol=1e-3, n_iter_no_change=3,
                  early_stopping=early_stopping, random_state=3)
    ours = MLPRegressor(**params).fit(X, y)
    theirs = neural_network.MLPRegressor(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)
    if early_stopping:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-10)
    if learning_rate != "constant":
        assert ours._learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
        assert ours._learning_rate < params["learning_rate_init"]


def test_adam_classifier_follows_sklearn_and_alpha_closely():
    X, y = classification_data(230)
    params = dict(hidden_layer_sizes=(16,), solver="adam", batch_size=32, learning_rate_init=0.01,
                  max_iter=15, random_state=3)
    # Adam differs only in where epsilon enters (after the bias correction, as PyTorch): with a
    # negligible epsilon the two are equal to rounding...
    ours = MLPClassifier(alpha=0.0, epsilon=1e-20, **params).fit(X, y)
    theirs = neural_network.MLPClassifier(alpha=0.0, epsilon=1e-20, **params).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-10)
    # ... and close with the default one, where a gradient near zero makes the difference visible.
    ours = MLPClassifier(alpha=0.0, **params).fit(X, y)
    theirs = neural_network.MLPClassifier(alpha=0.0, **params).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-2)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_alpha_is_sklearns_l2_term_applied_to_the_intercepts_too(solver, monkeypatch):
    # fastnn's weight_decay acts on every parameter. Taught to penalise its intercepts as well,
    # scikit-learn's MLP takes the same steps: the mapping of alpha is exact otherwise (224
    # samples make 7 full batches of 32, so no shorter last batch).
    from sklearn.neural_network import _multilayer_perceptron as sklearn_mlp

    original = sklearn_mlp.BaseMultilayerPerceptron._compute_loss_grad
    if list(inspect.signature(original).parameters) != ["self", "layer", "sw_sum", "activations", "deltas",
                                                         "coef_grads", "intercept_grads"]:
        pytest.skip("scikit-learn's MLP internals changed")

    def with_intercepts(self, layer, sw_sum, activations, deltas, coef_grads, intercept_grads):
        original(self, layer, sw_sum, activations, deltas, coef_grads, intercept_grads)
        intercept_grads[layer] += self.alpha * self.intercepts_[layer] / sw_sum

    monkeypatch.setattr(sklearn_mlp.BaseMultilayerPerceptron, "_compute_loss_grad", with_intercepts)
    X, y = classification_data(224)
    params = dict(hidden_layer_sizes=(16,), solver=solver, alpha=1e-2, batch_size=32, learning_rate_init=0.01,
                  epsilon=1e-20, max_iter=15, random_state=3)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = neural_network.MLPClassifier(**params).fit(X, y)
    for mine, sklearns in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, sklearns, rtol=1e-9, atol=1e-12)
    # loss_curve_'s penalty uses the coefficients at the end of each epoch, scikit-learn's those
    # before each batch: close, not equal.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)


def test_digits_accuracy_within_one_point_of_sklearn():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    params = dict(hidden_layer_sizes=(64,), solver="adam", max_iter=50, random_state=0)
    accuracy, seconds = {}, {}
    for name, cls in (("fastnn", MLPClassifier), ("sklearn", neural_network.MLPClassifier)):
        estimator = cls(**params)
        start = time.perf_counter()
        estimator.fit(X_train, y_train)
        seconds[name] = time.perf_counter() - start
        accuracy[name] = estimator.score(X_test, y_test)
    print(f"digits: accuracy {accuracy}, fit seconds {seconds}")
    assert accuracy["sklearn"] > 0.94
    assert abs(accuracy["fastnn"] - accuracy["sklearn"]) <= 0.01


# -- sample weights -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_zero_sample_weights_remove_samples(cls):
    X, y = regression_data(120) if cls is MLPRegressor else classification_data(120)
    keep = np.random.RandomState(1).rand(len(X)) < 0.7
    # One full batch ("auto" is min(200, n)) in the given order: the same sums, term for term.
    params = dict(hidden_layer_sizes=(10,), max_iter=30, shuffle=False, random_state=0, alpha=1e-3)
    weighted = cls(**params).fit(X, y, sample_weight=keep.astype(float))
    removed = cls(**params).fit(X[keep], y[keep])
    np.testing.assert_allclose(weighted.loss_curve_, removed.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(weighted.model_.get_parameters(), removed.model_.get_parameters(),
                               rtol=1e-10, atol=1e-13)


def test_sample_weights_change_the_fit_and_bad_ones_raise():
    X, y = classification_data(120)
    plain = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0).fit(X, y)
    ones = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0).fit(X, y, sample_weight=np.ones(120))
    weighted = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0).fit(
        X, y, sample_weight=np.linspace(0.1, 3, 120))
    np.testing.assert_allclose(ones.model_.get_parameters(), plain.model_.get_parameters(), rtol=1e-12)
    assert not np.allclose(weighted.model_.get_parameters(), plain.model_.get_parameters())
    for bad, match in ((-np.ones(120), "non-negative"), (np.zeros(120), "zero"), (np.ones(5), "shape")):
        with pytest.raises(ValueError, match=match):
            MLPClassifier(max_iter=2).fit(X, y, sample_weight=bad)


# -- partial_fit and warm starts ------------------------------------------------------------


def test_partial_fit_one_epoch_per_call_and_classes_on_the_first():
    X, y = classification_data(200)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    classifier = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for start in range(0, 200, 50):           # batches of the data, as a stream
        classifier.partial_fit(X[start:start + 50], y[start:start + 50], classes=["high", "low", "mid"])
    assert classifier.n_iter_ == 1 and classifier.t_ == 200 and len(classifier.loss_curve_) == 4
    with pytest.raises(ValueError, match="not in classes_"):
        classifier.partial_fit(X[:5], np.array(["low", "low", "new", "mid", "high"]))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(*regression_data(20))
    # partial_fit is fit's epoch: one call equals fit(max_iter=1), as in scikit-learn.
    regressor = MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=0.01, random_state=0)
    X_reg, y_reg = regression_data()
    for _ in range(30):
        regressor.partial_fit(X_reg, y_reg)
    assert regressor.loss_curve_[-1] < 0.5 * regressor.loss_curve_[0]
    one = MLPRegressor(hidden_layer_sizes=(8,), random_state=0).partial_fit(X_reg, y_reg)
    same_parameters(one, MLPRegressor(hidden_layer_sizes=(8,), random_state=0, max_iter=1).fit(X_reg, y_reg))


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warm_start_continues_parameters_and_optimizer_state(solver):
    X, y = regression_data()
    params = dict(hidden_layer_sizes=(8,), solver=solver, shuffle=False, random_state=0, batch_size=40)
    straight = MLPRegressor(max_iter=6, **params).fit(X, y)
    warm = MLPRegressor(max_iter=4, warm_start=True, **params).fit(X, y)
    warm.set_params(max_iter=2).fit(X, y)
    # Equal only if the second fit kept Adam's moments / SGD's momentum as well as the weights.
    same_parameters(warm, straight)
    assert warm.loss_curve_ == straight.loss_curve_ and warm.n_iter_ == 2
    # Without warm_start, fit starts over: the same network twice.
    cold = MLPRegressor(max_iter=4, **params).fit(X, y)
    first = cold.model_.get_parameters()
    cold.fit(X, y)
    np.testing.assert_array_equal(cold.model_.get_parameters(), first)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        warm.set_params(hidden_layer_sizes=(9,)).fit(X, y)
    X_cls, y_cls = classification_data()
    classifier = MLPClassifier(max_iter=2, warm_start=True).fit(X_cls, y_cls)
    with pytest.raises(ValueError, match="same classes"):
        classifier.fit(X_cls, np.where(y_cls == "mid", "low", y_cls))


# -- the training loop ---------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("extra", [{}, {"shuffle": False}, {"early_stopping": True}, {"dtype": "float32"},
                                   {"weighted": True}])
def test_dense_epochs_read_rows_in_order_as_the_copied_rows_train(solver, extra):
    # A dense X trains through the compiled epoch reading the shuffled rows in place; a
    # sparse X is made dense in the shuffled order and trained in order (by Sequential.fit,
    # one part here: 150 x 4 is below _DENSE_CHUNK). The same numbers, bit for bit.
    from scipy import sparse

    X, y = classification_data(150)
    params = {key: value for key, value in extra.items() if key != "weighted"}
    weights = np.random.RandomState(2).rand(len(X)) if extra.get("weighted") else None
    params.update(hidden_layer_sizes=(16,), solver=solver, batch_size=32, max_iter=12, random_state=0)
    dense = MLPClassifier(**params).fit(X, y, sample_weight=weights)
    made_dense = MLPClassifier(**params).fit(sparse.csr_matrix(X), y, sample_weight=weights)
    same_parameters(dense, made_dense)
    assert dense.loss_curve_ == made_dense.loss_curve_
    assert dense.n_iter_ == made_dense.n_iter_ == len(dense.loss_curve_)
    assert dense.validation_scores_ == made_dense.validation_scores_


def test_dense_training_data_are_checked_once_per_fit_not_per_epoch(monkeypatch):
    from fastnn import model, validation

    X, y = classification_data(150)
    calls = []
    original = validation.check_array

    def counting(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("name"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "check_array", counting)
    counts = []
    for max_iter in (2, 20):
        calls.clear()
        estimator = MLPClassifier(hidden_layer_sizes=(8,), batch_size=16, tol=0.0, max_iter=max_iter,
                                  random_state=0).fit(X, y)
        assert estimator.n_iter_ == max_iter
        counts.append(calls.count("X"))
    assert counts == [1, 1]


# -- convergence ----------------------------------------------------------------------------


def test_stops_when_the_loss_stops_improving_else_warns_at_max_iter():
    X, y = regression_data()
    # Only the first epoch improves on best_loss_=inf by tol=10; then more than n_iter_no_change
    # epochs without: stopped after n_iter_no_change + 2 epochs (as scikit-learn), no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        stopped = MLPRegressor(hidden_layer_sizes=(8,), tol=10.0, n_iter_no_change=3, random_state=0).fit(X, y)
    assert stopped.n_iter_ == 5 and len(stopped.loss_curve_) == 5 and stopped.best_loss_ == min(stopped.loss_curve_)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)


def test_early_stopping_restores_the_best_epoch():
    X, y = regression_data(300, seed=2)
    # A large SGD step makes the validation R^2 bounce, so the best epoch is not the last.
    params = dict(hidden_layer_sizes=(32,), solver="sgd", learning_rate_init=0.2, batch_size=16, tol=0.0,
                  early_stopping=True, validation_fraction=0.2, random_state=0)
    estimator = MLPRegressor(n_iter_no_change=8, max_iter=200, **params).fit(X, y)
    scores = estimator.validation_scores_
    best_epoch = int(np.argmax(scores)) + 1
    assert estimator.best_validation_score_ == max(scores) and estimator.best_loss_ is None
    assert estimator.n_iter_ == len(scores) > best_epoch          # it trained past the best epoch
    # The kept parameters are those after the best epoch: the same run cut there.
    cut = MLPRegressor(n_iter_no_change=1000, max_iter=best_epoch, **params).fit(X, y)
    assert cut.validation_scores_ == scores[:best_epoch]
    same_parameters(estimator, cut)


def test_float32_and_multi_output():
    X, y = regression_data(n_outputs=2)
    regressor = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100, random_state=0,
                             dtype=np.float32).fit(X, y)
    assert regressor.predict(X).shape == (150, 2) and regressor.predict(X).dtype == np.float32
    assert regressor.score(X, y) > 0.8
    assert [W.shape for W in regressor.coefs_] == [(4, 16), (16, 2)]
    X_cls, y_cls = classification_data()
    classifier = MLPClassifier(learning_rate_init=0.01, max_iter=100, random_state=0, dtype=np.float32)
    classifier.fit(X_cls, y_cls)
    proba = classifier.predict_proba(X_cls)
    assert proba.shape == (150, 3) and proba.dtype == np.float32
    np.testing.assert_array_equal(classifier.classes_[proba.argmax(1)], classifier.predict(X_cls))
    assert classifier.score(X_cls, y_cls) > 0.9 and classifier.out_activation_ == "softmax"


def test_clone_gives_an_unfitted_estimator_with_the_same_parameters():
    estimator = MLPClassifier(hidden_layer_sizes=(5, 3), alpha=0.5, dtype=np.float32)
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params()
    copy.set_params(alpha=0.1)
    assert estimator.alpha == 0.5 and copy.alpha == 0.1
