"""The L-BFGS objective (``Sequential.loss_gradient``: one compiled call over the whole data)
and ``fastnn.LBFGS`` in ``Sequential.fit``: against the NumPy reference, finite differences and
SciPy driving the reference's objective."""

import sys

import numpy as np
import pytest

import fastnn
from fastnn import _lbfgs
from fastnn.reference import ReferenceMLP

ACTIVATIONS = {"relu": fastnn.ReLU, "leaky_relu": lambda: fastnn.LeakyReLU(0.1), "tanh": fastnn.Tanh,
               "sigmoid": fastnn.Sigmoid, "identity": fastnn.Identity}
LOSSES = {"mse": fastnn.MSELoss(), "mae": fastnn.MAELoss(), "huber": fastnn.HuberLoss(0.5),
          "cross_entropy": fastnn.CrossEntropyLoss(), "bce_with_logits": fastnn.BCEWithLogitsLoss()}


def network(activation, n_out, dtype=np.float64, seed=0):
    return fastnn.Sequential([fastnn.Dense(4, 6, seed=seed), ACTIVATIONS[activation](),
                              fastnn.Dense(6, 5, seed=seed + 1), ACTIVATIONS[activation](),
                              fastnn.Dense(5, n_out, seed=seed + 2)], dtype=dtype)


def problem(loss_name, n_samples=37, seed=0):
    """X, y and the network's width for ``loss_name`` (targets away from every kink)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 4))
    if loss_name == "cross_entropy":
        return X, rng.integers(0, 3, n_samples), 3
    if loss_name == "bce_with_logits":
        return X, rng.uniform(0, 1, (n_samples, 2)), 2
    return X, rng.normal(size=(n_samples, 2)) * 2, 2


def finite_differences(model, X, y, loss, sample_weight, l2, h=1e-6):
    start = model.get_parameters()
    grads = np.empty_like(start)
    for i in range(start.size):
        values = []
        for step in (h, -h):
            shifted = start.copy()
            shifted[i] += step
            model.set_parameters(shifted)
            values.append(model.loss_gradient(X, y, loss=loss, sample_weight=sample_weight, l2=l2))
        grads[i] = (values[0] - values[1]) / (2 * h)
    model.set_parameters(start)
    return grads


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_gradient_is_the_loss_derivative(activation, loss_name):
    X, y, n_out = problem(loss_name)
    model = network(activation, n_out)
    loss = LOSSES[loss_name]
    weights = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0])
    value = model.loss_gradient(X, y, loss=loss, sample_weight=weights, l2=0.03)
    grads = gradients_of(model).copy()
    numeric = finite_differences(model, X, y, loss, weights, 0.03)
    # Central differences at h = 1e-6 in float64: errors of about 1e-9 (rounding of the loss
    # over h) plus h**2 times the third derivative; the kinks of ReLU, MAE and Huber are
    # almost surely not within h of any sample for these random data.
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-7)
    assert np.isfinite(value)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("chunk", [1, 7, 36, 37, 1024])
def test_chunks_give_the_reference_full_batch(loss_name, chunk, weighted, dtype, monkeypatch):
    monkeypatch.setattr(_lbfgs, "CHUNK_ROWS", chunk)
    X, y, n_out = problem(loss_name, seed=2)
    model = network("tanh", n_out, dtype=dtype, seed=3)
    ref = ReferenceMLP.from_model(network("tanh", n_out, dtype=np.float64, seed=3))
    weights = np.random.default_rng(5).uniform(0, 3, X.shape[0]) if weighted else None
    value = model.loss_gradient(X, y, loss=LOSSES[loss_name], sample_weight=weights, l2=0.2)
    expected = ref.loss_gradient(X, y, loss=LOSSES[loss_name], sample_weight=weights, l2=0.2)
    # float64: the chunks' shares sum the same terms in another order; float32 against the
    # float64 reference: float32 rounding of the activations and gradients.
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    assert value == pytest.approx(expected, rel=tol["rtol"], abs=tol["atol"])
    np.testing.assert_allclose(gradients_of(model), ref.get_gradients(), **tol)


def gradients_of(model):
    return np.concatenate([a.ravel() for layer in model.layers if isinstance(layer, fastnn.Dense)
                           for a in (layer.dW, layer.db)])


def test_one_chunk_gives_the_bits_of_a_training_step():
    X, y, n_out = problem("mse")
    model = network("relu", n_out)
    value = model.loss_gradient(X, y)
    grads = gradients_of(model).copy()
    params = model.get_parameters()
    step_loss = model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=1.0))
    assert step_loss == value
    np.testing.assert_array_equal(gradients_of(model), grads)
    np.testing.assert_array_equal(model.get_parameters(), params - grads)


def test_l2_penalises_the_weights_not_the_biases():
    X, y, n_out = problem("mse")
    model = network("tanh", n_out)
    plain = model.loss_gradient(X, y)
    plain_grads = gradients_of(model).copy()
    penalised = model.loss_gradient(X, y, l2=0.5)
    squares = sum(float(np.sum(layer.W ** 2)) for layer in model.layers if isinstance(layer, fastnn.Dense))
    assert penalised == pytest.approx(plain + 0.25 * squares, rel=1e-13)
    expected = np.concatenate([a.ravel() for layer in model.layers if isinstance(layer, fastnn.Dense)
                               for a in (0.5 * layer.W, np.zeros_like(layer.b))])
    np.testing.assert_allclose(gradients_of(model) - plain_grads, expected, rtol=1e-12, atol=1e-15)


def test_loss_gradient_checks_its_input_and_leaves_the_parameters():
    X, y, n_out = problem("mse")
    model = network("relu", n_out)
    params = model.get_parameters()
    with pytest.raises(ValueError, match="l2"):
        model.loss_gradient(X, y, l2=-1.0)
    with pytest.raises(ValueError, match="y"):
        model.loss_gradient(X, y[:-1])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X"):
        model.loss_gradient(bad, y)
    with pytest.raises(FloatingPointError):
        model.loss_gradient(X * 1e200, y * 1e200)
    np.testing.assert_array_equal(model.get_parameters(), params)


def test_loss_gradient_takes_any_layout_and_dtype_of_input():
    X, y, n_out = problem("mse")
    X = X.astype(np.float32).astype(np.float64)     # values a float32 array holds exactly
    model = network("sigmoid", n_out)
    value = model.loss_gradient(X, y)
    grads = gradients_of(model).copy()
    readonly = y.copy()
    readonly.setflags(write=False)
    assert model.loss_gradient(np.asfortranarray(X.astype(np.float32)), readonly) == value
    np.testing.assert_array_equal(gradients_of(model), grads)


# -- fastnn.LBFGS in Sequential.fit -----------------------------------------------------------


def regression(n_samples=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 4))
    y = np.sin(X[:, :2].sum(axis=1, keepdims=True)) + 0.1 * X[:, 2:3]
    return X, np.hstack([y, -y])


def test_lbfgs_follows_scipy_on_the_reference_objective():
    """The same L-BFGS-B run on the NumPy reference's objective gives the same iterates."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    X, y = regression()
    model = network("tanh", 2)
    ref = ReferenceMLP.from_model(model)
    start = model.get_parameters()
    history = model.fit(X, y, optimizer=fastnn.LBFGS(max_iter=15, l2=0.01))

    def objective(x):
        offset = 0
        for param in ref.parameters():
            param[...] = x[offset:offset + param.size].reshape(param.shape)
            offset += param.size
        value = ref.loss_gradient(X, y, loss="mse", l2=0.01)
        return value, ref.get_gradients()

    expected = scipy_optimize.minimize(objective, start, method="L-BFGS-B", jac=True,
                                       options={"maxiter": 15, "gtol": 1e-4, "maxcor": 10, "maxfun": 15000})
    assert history.n_iter == expected.nit == 15
    assert history.n_evaluations == expected.nfev
    # Both objectives agree to about 1e-15 relative: 15 iterations of L-BFGS-B amplify that
    # little (a few orders of magnitude at most on a problem this well conditioned).
    np.testing.assert_allclose(model.get_parameters(), expected.x, rtol=1e-7, atol=1e-9)
    assert history.loss[-1] == pytest.approx(expected.fun, rel=1e-10)
    assert history.final_loss == pytest.approx(expected.fun, rel=1e-10)
    assert not history.converged and "ITERATIONS" in history.message.upper()


@pytest.mark.parametrize("loss_name", LOSSES)
def test_lbfgs_lowers_every_loss_in_both_dtypes(loss_name, dtype):
    pytest.importorskip("scipy")
    X, y, n_out = problem(loss_name, n_samples=200)
    model = network("tanh", n_out, dtype=dtype)
    loss = LOSSES[loss_name]
    before = model.loss_gradient(X, y, loss=loss)
    weights = np.random.default_rng(0).uniform(0.5, 1.5, X.shape[0])
    history = model.fit(X, y, loss=loss, optimizer=fastnn.LBFGS(max_iter=30), sample_weight=weights)
    assert isinstance(history, fastnn.History) and 1 <= history.n_iter <= 30
    assert history.loss[-1] < before
    assert model.loss_gradient(X, y, loss=loss, sample_weight=weights) == pytest.approx(
        history.final_loss, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert model.get_parameters().dtype == dtype


def test_lbfgs_history_has_one_entry_per_iteration_and_stops_at_tol():
    pytest.importorskip("scipy")
    X, y = regression()
    model = network("tanh", 2)
    history = model.fit(X, y, optimizer=fastnn.LBFGS(max_iter=2000, tol=1e-3))
    assert history.converged, history.message
    assert history.n_iter == len(history.epoch_time) < 2000
    # L-BFGS-B's iterates decrease the objective (its line search asks for it).
    assert all(b <= a for a, b in zip(history.loss, history.loss[1:]))
    model.loss_gradient(X, y)
    assert np.max(np.abs(gradients_of(model))) <= 1e-3


def test_max_fun_limits_the_evaluations():
    pytest.importorskip("scipy")
    X, y = regression()
    history = network("tanh", 2).fit(X, y, optimizer=fastnn.LBFGS(max_iter=500, max_fun=20))
    assert not history.converged
    # SciPy checks maxfun between iterations: its last line search may go a little past it.
    assert 20 <= history.n_evaluations <= 40
    assert history.n_iter < 20


def test_a_callback_stops_at_its_iterate_and_early_stopping_keeps_the_best():
    pytest.importorskip("scipy")
    X, y = regression()
    seen = []

    class StopAtFive(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, logs["loss"]))
            return epoch < 5

    model = network("tanh", 2)
    history = model.fit(X, y, optimizer=fastnn.LBFGS(max_iter=100), callbacks=[StopAtFive()])
    assert history.stopped_epoch == 5 == history.n_iter and [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert model.loss_gradient(X, y) == pytest.approx(seen[-1][1], rel=1e-13)

    model = network("tanh", 2)
    history = model.fit(X[:90], y[:90], optimizer=fastnn.LBFGS(max_iter=300, tol=0), early_stopping=True,
                        patience=3, validation_data=(X[90:], y[90:]))
    best = history.best_epoch
    assert best is not None and history.val_loss[best - 1] == min(history.val_loss)
    assert fastnn.MSELoss().loss(model.predict(X[90:]), y[90:]) == pytest.approx(min(history.val_loss), rel=1e-12)


def test_verbose_prints_iterations(capsys):
    pytest.importorskip("scipy")
    X, y = regression()
    network("tanh", 2).fit(X, y, optimizer=fastnn.LBFGS(max_iter=4), verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "4/4"]


def test_lbfgs_refuses_what_does_not_apply():
    X, y = regression()
    model = network("tanh", 2)
    params = model.get_parameters()
    with pytest.raises(ValueError, match="epochs"):
        model.fit(X, y, optimizer=fastnn.LBFGS(), epochs=3)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(X, y, optimizer=fastnn.LBFGS(), batch_size=10)
    with pytest.raises(TypeError, match="full-batch"):
        model.train_step(X, y, optimizer=fastnn.LBFGS())
    np.testing.assert_array_equal(model.get_parameters(), params)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(max_iter=0), ValueError, "max_iter"), (dict(max_iter=2.5), TypeError, "max_iter"),
    (dict(tol=-1.0), ValueError, "tol"), (dict(tol=np.nan), ValueError, "tol"),
    (dict(history_size=0), ValueError, "history_size"), (dict(max_fun=0), ValueError, "max_fun"),
    (dict(l2=-0.1), ValueError, "l2"), (dict(l2="1"), TypeError, "l2"),
])
def test_lbfgs_checks_its_settings(kwargs, error, name):
    with pytest.raises(error, match=name):
        fastnn.LBFGS(**kwargs)


def test_lbfgs_is_a_description():
    import copy
    import pickle

    optimizer = fastnn.LBFGS(max_iter=7, tol=1e-6, history_size=5, max_fun=99, l2=0.5)
    assert optimizer.hyperparameters == dict(max_iter=7, tol=1e-6, history_size=5, max_fun=99, l2=0.5)
    assert repr(optimizer) == "LBFGS(max_iter=7, tol=1e-06, history_size=5, max_fun=99, l2=0.5)"
    assert pickle.loads(pickle.dumps(optimizer)).hyperparameters == optimizer.hyperparameters
    assert copy.deepcopy(optimizer).max_fun == 99 and "LBFGS" in fastnn.__all__


def test_without_scipy_the_error_names_the_extra(monkeypatch):
    X, y = regression()
    model = network("tanh", 2)
    params = model.get_parameters()
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match=r"fastnn\[lbfgs\]"):
        model.fit(X, y, optimizer=fastnn.LBFGS())
    np.testing.assert_array_equal(model.get_parameters(), params)
