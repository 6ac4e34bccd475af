"""Sequential, Dense, ReLU, MSELoss and SGD, held to fastnn.reference and to finite differences."""

import copy
import gc
import pickle
import tracemalloc

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn.reference import ReferenceMLP


def make_model(sizes, dtype=np.float64, seed=0, relu_out=False):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(fastnn.Dense(n_in, n_out, seed=rng))
        if i < len(sizes) - 2 or relu_out:
            layers.append(fastnn.ReLU())
    return fastnn.Sequential(layers, dtype=dtype)


def make_data(n_samples, n_in, n_out, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_in)).astype(dtype)
    y = rng.normal(size=(n_samples, n_out)).astype(dtype)
    return X, y


SIZES = [(1, 3, 1), (1, 16, 1), (8, 32, 32, 1), (5, 7, 3), (4, 1, 4, 2)]


# -- the tutorial ---------------------------------------------------------------------

def test_tutorial_network_reproduces_the_curve_exactly():
    model = fastnn.datasets.tutorial_network()
    X = np.linspace(-2, 5, 701).reshape(-1, 1)
    expected = np.maximum(np.maximum(X, 0) - np.maximum(2 * X - 2, 0) + np.maximum(2 * X - 4, 0), 0)
    np.testing.assert_allclose(model.predict(X), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fastnn.datasets.tutorial_curve(X), expected, rtol=0, atol=0)
    # The tutorial's three kinks: 0 -> 1 (slope 1), 1 -> 0 (slope -1), 0 -> 1 again.
    np.testing.assert_array_equal(model.predict([[0.0], [1.0], [2.0], [3.0]]).ravel(), [0, 1, 0, 1])


def test_tutorial_network_weights_and_float32():
    model = fastnn.datasets.tutorial_network(dtype=np.float32)
    first, second = model.layers[0], model.layers[2]
    np.testing.assert_array_equal(first.W, [[1, 2, 2]])
    np.testing.assert_array_equal(first.b, [0, -2, -4])
    np.testing.assert_array_equal(second.W, [[1], [-1], [1]])
    np.testing.assert_array_equal(second.b, [0])
    X = np.linspace(0, 3, 31, dtype=np.float32).reshape(-1, 1)
    out = model.predict(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, fastnn.datasets.tutorial_curve(X), rtol=0, atol=1e-6)


def test_tutorial_samples_are_noisy_samples_of_the_curve():
    X, y = fastnn.datasets.tutorial_samples(2000, noise=0.05, seed=3)
    assert X.shape == y.shape == (2000, 1)
    assert np.all(np.diff(X[:, 0]) >= 0) and X.min() >= 0 and X.max() <= 3
    residual = y - fastnn.datasets.tutorial_curve(X)
    assert abs(residual.std() - 0.05) < 0.005 and abs(residual.mean()) < 0.005
    X2, y2 = fastnn.datasets.tutorial_samples(2000, noise=0.05, seed=3)
    np.testing.assert_array_equal(y, y2)


def fit_demo_network(seed):
    rng = np.random.default_rng(seed)
    X, y = fastnn.datasets.tutorial_samples(256, seed=rng)
    model = fastnn.Sequential([fastnn.Dense(1, 16, seed=rng), fastnn.ReLU(), fastnn.Dense(16, 1, seed=rng)])
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=0.1), epochs=500, batch_size=16, seed=rng)
    grid = np.linspace(0, 3, 1001).reshape(-1, 1)
    return history, float(np.mean((model.predict(grid) - fastnn.datasets.tutorial_curve(grid)) ** 2))


def test_learns_the_tutorial_curve():
    history, mse = fit_demo_network(seed=0)
    assert mse < 5e-3
    assert history.epochs == 500
    assert history.loss[-1] < history.loss[0] / 10


def test_learns_the_tutorial_curve_for_most_seeds():
    results = [fit_demo_network(seed)[1] for seed in range(20)]
    assert sum(mse < 5e-3 for mse in results) >= 14, results


# -- predict and train_step against the reference -------------------------------------

@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("n_samples", [1, 7, 64])
def test_predict_matches_reference(sizes, n_samples, dtype):
    model = make_model(sizes, dtype)
    X, _ = make_data(n_samples, sizes[0], sizes[-1], dtype)
    out = model.predict(X)
    assert out.dtype == dtype and out.shape == (n_samples, sizes[-1])
    np.testing.assert_allclose(out, ReferenceMLP.from_model(model).predict(X), **TOLERANCE[dtype])


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("n_samples", [1, 5, 33])
def test_train_step_matches_reference(sizes, n_samples, dtype):
    model = make_model(sizes, dtype, relu_out=True)
    ref = ReferenceMLP.from_model(model)
    X, y = make_data(n_samples, sizes[0], sizes[-1], dtype)
    for _ in range(3):
        loss = model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.05))
        ref_loss = ref.train_step(X, y, 0.05)
        assert loss == pytest.approx(ref_loss, rel=TOLERANCE[dtype]["rtol"] * 10)
    expected = ReferenceMLP.from_model(model)
    for layer, ref_layer in zip(expected.layers, ref.layers):
        for mine, theirs in zip(layer[1:], ref_layer[1:]):
            np.testing.assert_allclose(mine, theirs, rtol=TOLERANCE[dtype]["rtol"] * 10, atol=TOLERANCE[dtype]["atol"] * 10)


def test_train_step_returns_loss_before_update_and_stores_gradients():
    model = make_model((3, 4, 2))
    X, y = make_data(6, 3, 2)
    before = model.predict(X)
    loss = model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.1))
    assert loss == pytest.approx(fastnn.reference.mse_loss(before, y), rel=1e-12)
    _, grads = ReferenceMLP.from_model(make_model((3, 4, 2))).gradients(X, y)
    np.testing.assert_allclose(model.layers[0].dW, grads[0][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.layers[2].db, grads[2][1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sizes", [(1, 3, 1), (3, 5, 4, 2), (2, 8, 1)])
def test_whole_network_gradient_matches_finite_differences(sizes):
    model = make_model(sizes, relu_out=False, seed=7)
    X, y = make_data(9, sizes[0], sizes[-1], seed=8)
    p0 = model.get_parameters()

    def loss_at(p):
        model.set_parameters(p)
        return fastnn.reference.mse_loss(model.predict(X), y)

    eps = 1e-6
    numeric = np.empty_like(p0)
    for i in range(p0.size):
        step = np.zeros_like(p0)
        step[i] = eps
        numeric[i] = (loss_at(p0 + step) - loss_at(p0 - step)) / (2 * eps)
    model.set_parameters(p0)
    model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=1e-3))
    analytic = np.concatenate([np.concatenate([layer.dW.ravel(), layer.db])
                               for layer in model.layers if isinstance(layer, fastnn.Dense)])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # ... and the update was p -= lr * grad.
    np.testing.assert_allclose(model.get_parameters(), p0 - 1e-3 * analytic, rtol=1e-14, atol=1e-15)


# -- fit ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples,batch_size", [(40, 40), (40, 8), (41, 8), (10, 3), (5, 100), (7, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_matches_reference_epochs(n_samples, batch_size, shuffle, dtype):
    model = make_model((3, 6, 2), dtype)
    ref = ReferenceMLP.from_model(model)
    X, y = make_data(n_samples, 3, 2, dtype)
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=0.05), epochs=3, batch_size=batch_size,
                        shuffle=shuffle, seed=11)
    rng = np.random.default_rng(11)
    expected = [ref.fit_epoch(X, y, 0.05, min(batch_size, n_samples),
                              order=rng.permutation(n_samples) if shuffle else None) for _ in range(3)]
    tol = dict(rtol=TOLERANCE[dtype]["rtol"] * 100, atol=TOLERANCE[dtype]["atol"] * 100)
    np.testing.assert_allclose(history.loss, expected, **tol)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), **tol)
    assert len(history.epoch_time) == 3


def test_fit_defaults_and_seeded_shuffle_is_reproducible():
    X, y = make_data(50, 2, 1)
    a, b = make_model((2, 5, 1)), make_model((2, 5, 1))
    ha = a.fit(X, y[:, 0], epochs=4, batch_size=8, seed=5)
    hb = b.fit(X, y[:, 0], epochs=4, batch_size=8, seed=5)
    assert ha.loss == hb.loss
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())
    c = make_model((2, 5, 1))
    c.fit(X, y, epochs=4, batch_size=8, seed=6)
    assert not np.array_equal(a.get_parameters(), c.get_parameters())


def test_fit_default_optimizer_is_sgd_001_full_batch():
    X, y = make_data(20, 2, 1)
    model = make_model((2, 4, 1))
    ref = ReferenceMLP.from_model(model)
    history = model.fit(X, y)
    assert history.loss == [pytest.approx(ref.fit_epoch(X, y, 0.01, 20), rel=1e-12)]
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-12)


def test_fit_verbose_prints_progress(capsys):
    X, y = make_data(20, 2, 1)
    make_model((2, 4, 1)).fit(X, y, epochs=10, verbose=5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/10", "5/10", "10/10"]
    make_model((2, 4, 1)).fit(X, y, epochs=3)
    assert capsys.readouterr().out == ""


# -- layout and dtype of input --------------------------------------------------------------

def layouts(X):
    yield "list", X.tolist()
    yield "fortran", np.asfortranarray(X)
    readonly = X.copy()
    readonly.setflags(write=False)
    yield "readonly", readonly
    big = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    big[::2, ::3] = X
    yield "strided", big[::2, ::3]
    yield "negative strides", np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1]
    yield "byteswapped", X.astype(X.dtype.newbyteorder())


@pytest.mark.parametrize("kind", ["list", "fortran", "readonly", "strided", "negative strides", "byteswapped"])
def test_every_memory_layout_gives_the_same_result(kind):
    X, y = make_data(12, 3, 1)
    source = dict(layouts(X))[kind]
    target = dict(layouts(y))[kind]
    a, b = make_model((3, 4, 1)), make_model((3, 4, 1))
    np.testing.assert_array_equal(a.predict(source), b.predict(X))
    assert a.train_step(source, target, fastnn.MSELoss(), fastnn.SGD(0.1)) == b.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))
    a.fit(source, target, epochs=2, batch_size=5, seed=1)
    b.fit(X, y, epochs=2, batch_size=5, seed=1)
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())


def test_input_is_converted_to_the_model_dtype():
    model = make_model((2, 3, 1), np.float32)
    assert model.predict(np.ones((4, 2), dtype=np.float64)).dtype == np.float32
    assert model.predict(np.ones((4, 2), dtype=np.int32)).dtype == np.float32
    assert model.layers[0].W.dtype == np.float32
    model64 = make_model((2, 3, 1), np.float64)
    assert model64.predict(np.ones((4, 2), dtype=np.float32)).dtype == np.float64


def test_one_output_accepts_1d_y():
    X, y = make_data(10, 2, 1)
    a, b = make_model((2, 3, 1)), make_model((2, 3, 1))
    assert a.train_step(X, y[:, 0], fastnn.MSELoss(), fastnn.SGD(0.1)) == b.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))


# -- parameters as views ----------------------------------------------------------------------

def test_layer_parameters_are_views_into_the_model():
    model = make_model((1, 3, 1))
    dense = model.layers[0]
    X = np.array([[0.5], [2.0]])
    dense.W[...] = [[1.0, 2.0, 2.0]]
    dense.b[...] = [0.0, -2.0, -4.0]
    model.layers[2].W = [[1.0], [-1.0], [1.0]]
    model.layers[2].b = [0.0]
    np.testing.assert_array_equal(model.predict(X), [[0.5], [0.0]])
    np.testing.assert_array_equal(model.get_parameters(), [1, 2, 2, 0, -2, -4, 1, -1, 1, 0])
    with pytest.raises(ValueError, match="W"):
        dense.W = np.ones((3, 1))
    np.testing.assert_array_equal(dense.W, [[1, 2, 2]])


def test_dense_init_schemes():
    for init in ("uniform", "he", "xavier"):
        a = fastnn.Dense(64, 32, init=init, seed=0)
        b = fastnn.Dense(64, 32, init=init, seed=0)
        np.testing.assert_array_equal(a.W, b.W)
        assert a.W.shape == (64, 32) and a.b.shape == (32,)
    uniform = fastnn.Dense(64, 500, seed=1)
    assert np.abs(uniform.W).max() <= 1 / 8 and np.abs(uniform.b).max() <= 1 / 8
    assert np.abs(uniform.b).min() > 0 and uniform.W.std() == pytest.approx(1 / 8 / np.sqrt(3), rel=0.05)
    he = fastnn.Dense(64, 500, init="he", seed=1)
    assert he.W.std() == pytest.approx(np.sqrt(2 / 64), rel=0.05) and not he.b.any()
    xavier = fastnn.Dense(64, 500, init="xavier", seed=1)
    assert np.abs(xavier.W).max() <= np.sqrt(6 / 564) and not xavier.b.any()
    assert not np.array_equal(fastnn.Dense(4, 4).W, fastnn.Dense(4, 4).W)


def test_layer_belongs_to_one_model_at_a_time():
    dense = fastnn.Dense(2, 2, seed=0)
    model = fastnn.Sequential([dense])
    with pytest.raises(ValueError, match="another Sequential"):
        fastnn.Sequential([dense])
    other = fastnn.Sequential([copy.deepcopy(dense)])
    np.testing.assert_array_equal(other.layers[0].W, dense.W)
    del model
    gc.collect()
    again = fastnn.Sequential([dense])
    assert np.shares_memory(again.layers[0].W, dense.W)


def test_standalone_layers_compute_with_ops():
    dense = fastnn.Dense(3, 2, seed=0)
    X, dY = make_data(5, 3, 2)
    np.testing.assert_allclose(dense(X), X @ dense.W + dense.b, rtol=1e-12)
    dX = dense.backward(X, dY)
    ref = fastnn.reference.dense_backward(X, dense.W, dY)
    for mine, theirs in zip((dX, dense.dW, dense.db), ref):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)
    relu = fastnn.ReLU()
    np.testing.assert_array_equal(relu(X), np.maximum(X, 0))
    np.testing.assert_array_equal(relu.backward(X, dY[:, :1].repeat(3, 1)), dY[:, :1].repeat(3, 1) * (X > 0))


def test_loss_and_optimizer_objects():
    yhat, y = make_data(6, 2, 2)
    loss = fastnn.MSELoss()
    assert loss(yhat, y) == pytest.approx(np.mean((yhat - y) ** 2), rel=1e-12)
    np.testing.assert_allclose(loss.grad(yhat, y), 2 * (yhat - y) / yhat.size, rtol=1e-12)
    p = yhat.copy()
    fastnn.SGD(lr=0.5).update(p, y)
    np.testing.assert_allclose(p, yhat - 0.5 * y, rtol=1e-15)
    assert fastnn.SGD().lr == 0.01


def test_repr():
    model = make_model((1, 16, 1))
    text = repr(model)
    assert "Dense(in_features=1, out_features=16)" in text and "ReLU()" in text
    assert "49 parameters" in text and "float64" in text
    assert model.n_parameters == 49


# -- copies -------------------------------------------------------------------------------------

@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))], ids=["deepcopy", "pickle"])
def test_copies_train_independently(clone, dtype):
    model = make_model((2, 5, 1), dtype)
    X, y = make_data(16, 2, 1, dtype)
    model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))
    twin = clone(model)
    assert twin.dtype == dtype
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))
    np.testing.assert_array_equal(twin.layers[0].dW, model.layers[0].dW)
    before = model.get_parameters()
    twin.fit(X, y, epochs=3, seed=0)
    np.testing.assert_array_equal(model.get_parameters(), before)
    assert not np.array_equal(twin.get_parameters(), before)
    twin.layers[0].W[...] = 0
    np.testing.assert_array_equal(twin.get_parameters()[:10], 0)
    np.testing.assert_array_equal(model.get_parameters(), before)
    for obj in (fastnn.Dense(2, 3, seed=0), fastnn.ReLU(), fastnn.MSELoss(), fastnn.SGD(0.3)):
        assert repr(pickle.loads(pickle.dumps(obj))) == repr(obj)
    assert pickle.loads(pickle.dumps(fastnn.SGD(0.3))).lr == 0.3


# -- memory -------------------------------------------------------------------------------------

def test_steps_reuse_their_buffers():
    model = make_model((8, 32, 32, 1))
    X, y = make_data(32, 8, 1)
    for _ in range(20):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.01))
    tracemalloc.start()
    try:
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(2000):
            model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.01))
        gc.collect()
        last, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last - first < 10_000
