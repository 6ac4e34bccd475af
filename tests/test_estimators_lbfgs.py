"""solver="lbfgs" of fastnn's estimators, side by side with scikit-learn's MLPRegressor and
MLPClassifier: same starting weights (same random_state), same objective, same SciPy
L-BFGS-B; attributes, warnings, limits, warm starts, bad input."""

import warnings

import numpy as np
import pytest

pytest.importorskip("scipy")
sklearn_nn = pytest.importorskip("sklearn.neural_network")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402


def regression(n_samples=150, n_outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 5))
    y = np.sin(X[:, :2].sum(axis=1)) + 0.5 * X[:, 2] + 0.05 * rng.normal(size=n_samples)
    return X, (y if n_outputs == 1 else np.column_stack([y * (k + 1) for k in range(n_outputs)]))


def classification(n_samples=180, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 4)) * 1.5
    labels = rng.integers(0, n_classes, n_samples)
    return centres[labels] + rng.normal(size=(n_samples, 4)), labels


def fit_both(kind, X, y, sample_weight=None, **settings):
    """fastnn's and scikit-learn's estimator, each fitted with ``settings`` (warnings kept)."""
    fitted = []
    for make in (getattr(fastnn, kind), getattr(sklearn_nn, kind)):
        estimator = make(solver="lbfgs", random_state=0, **settings)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if sample_weight is None:
                estimator.fit(X, y)
            else:
                estimator.fit(X, y, sample_weight=sample_weight)
        fitted.append((estimator, [w for w in seen if issubclass(w.category, ConvergenceWarning)]))
    return fitted


def test_regressor_follows_scikit_learn_iterate_for_iterate():
    """One output: fastnn minimises exactly twice scikit-learn's objective (MSE against half
    the MSE, alpha's term doubled alike), from the same weights, with gtol doubled: the same
    L-BFGS-B path, so the coefficients agree to the rounding the iterations amplify."""
    X, y = regression()
    (ours, our_warnings), (theirs, their_warnings) = fit_both(
        "MLPRegressor", X, y, hidden_layer_sizes=(8,), activation="tanh", alpha=1e-3, max_iter=25)
    assert ours.n_iter_ == theirs.n_iter_ == 25
    assert len(our_warnings) == len(their_warnings) == 1
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    for mine, other in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, other, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-8)


def test_classifier_follows_scikit_learn_with_sample_weight():
    """Three classes (softmax in both): the same objective, weighted by sample_weight."""
    X, y = classification()
    weights = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0])
    pairs = fit_both("MLPClassifier", X, y, sample_weight=weights, hidden_layer_sizes=(6,), alpha=1e-2,
                     max_iter=20)
    (ours, _), (theirs, _) = pairs
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-7)
    for mine, other in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(mine, other, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("kind", ["MLPRegressor", "MLPClassifier"])
def test_converged_fits_score_as_scikit_learn(kind):
    """Run to convergence, the two paths may part after many iterations (rounding grows along
    an L-BFGS path) but land on minima of the same quality: test scores within 0.03 (R^2, or
    3 points of accuracy) on these well-posed problems, each side converged or not alike."""
    X, y = regression(600) if kind == "MLPRegressor" else classification(600)
    (ours, our_warnings), (theirs, their_warnings) = fit_both(kind, X[:400], y[:400], hidden_layer_sizes=(16,),
                                                              max_iter=2000)
    assert len(our_warnings) == len(their_warnings) == 0
    assert ours.score(X[400:], y[400:]) == pytest.approx(theirs.score(X[400:], y[400:]), abs=0.03)
    assert 1 <= ours.n_iter_ < 2000


def test_attributes_are_scikit_learn_s():
    X, y = regression()
    (ours, _), (theirs, _) = fit_both("MLPRegressor", X, y, hidden_layer_sizes=(8,), max_iter=10)
    for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert not hasattr(theirs, name) and not hasattr(ours, name), name
    for name in ("n_iter_", "loss_", "n_layers_", "n_outputs_", "out_activation_", "coefs_", "intercepts_"):
        assert hasattr(theirs, name) and hasattr(ours, name), name
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_


@pytest.mark.parametrize("kind", ["MLPRegressor", "MLPClassifier"])
def test_partial_fit_is_hidden_for_lbfgs(kind):
    """As scikit-learn's MLPClassifier hides it. (Its MLPRegressor means to, but its
    ``available_if(lambda est: est._check_solver)`` never calls the check, so there
    ``hasattr`` is True: fastnn follows the classifier, the intended behaviour.)"""
    makers = [getattr(fastnn, kind)] + ([sklearn_nn.MLPClassifier] if kind == "MLPClassifier" else [])
    for make in makers:
        assert not hasattr(make(solver="lbfgs"), "partial_fit")
        assert hasattr(make(solver="adam"), "partial_fit")
        with pytest.raises(AttributeError, match="partial_fit"):
            make(solver="lbfgs").partial_fit


def test_max_iter_and_max_fun_warn_as_scikit_learn():
    X, y = regression()
    for settings, word in ((dict(max_iter=3), "ITERATIONS"), (dict(max_iter=500, max_fun=10), "F")):
        (ours, our_warnings), (theirs, their_warnings) = fit_both(
            "MLPRegressor", X, y, hidden_layer_sizes=(8,), **settings)
        assert len(our_warnings) == len(their_warnings) == 1
        message = str(our_warnings[0].message)
        assert message.startswith("lbfgs failed to converge") and word in message.upper()
        assert ours.n_iter_ == theirs.n_iter_ <= settings["max_iter"]
        assert ours.n_iter_ <= settings.get("max_fun", 15000)


def test_warm_start_continues_from_the_current_weights_and_switches_solvers():
    X, y = regression()
    once = fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=10, random_state=0,
                               warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once.fit(X, y)
        start = [W.copy() for W in once.coefs_]
        first_loss = once.loss_
        once.fit(X, y)
    assert once.loss_ < first_loss
    # The second fit started where the first ended: a fresh network set to those weights
    # and fitted without warm_start from them gives the same result.
    assert not all(np.array_equal(a, b) for a, b in zip(start, once.coefs_))
    cold = fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold.fit(X, y)
    np.testing.assert_array_equal(cold.coefs_[0], start[0])
    # Switching to a stochastic solver continues too, with a loss curve of its own.
    once.set_params(solver="adam", max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once.fit(X, y)
    assert len(once.loss_curve_) == 3 and hasattr(once, "partial_fit")


def test_verbose_prints_each_iteration(capsys):
    X, y = regression()
    estimator = fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5, random_state=0,
                                    verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"Iteration {i}" for i in range(1, 6)]
    assert float(lines[-1].split("=")[1]) == pytest.approx(estimator.loss_, rel=1e-7)


def test_float32_trains_in_float32():
    X, y = regression()
    estimator = fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=50, random_state=0,
                                    dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    assert estimator.coefs_[0].dtype == np.float32
    assert estimator.score(X, y) > 0.9


def test_a_diverging_fit_says_what_scikit_learn_says():
    X, y = regression()
    estimator = fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        estimator.fit(X, y * 1e200)


@pytest.mark.parametrize("value, error", [(0, ValueError), (1.5, TypeError), ("many", TypeError)])
def test_bad_max_fun_is_refused_by_name(value, error):
    X, y = regression()
    with pytest.raises(error, match="max_fun"):
        fastnn.MLPRegressor(solver="lbfgs", max_fun=value).fit(X, y)


@parametrize_with_checks([fastnn.MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50),
                          fastnn.MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50)])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_check_estimator_with_lbfgs(estimator, check):
    check(estimator)
