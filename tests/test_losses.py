"""MAE, Huber, cross-entropy and BCE-with-logits (and MSE) with sample weights:
kernels against the reference and finite differences, stable for extreme logits,
and inside whole training steps; predict_proba; a digits classifier."""

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn import _walker, ops, reference
from fastnn.reference import ReferenceMLP

ELEMENTWISE = {
    "mse": ((ops.mse_loss, ops.mse_grad), (reference.mse_loss, reference.mse_grad), {}),
    "mae": ((ops.mae_loss, ops.mae_grad), (reference.mae_loss, reference.mae_grad), {}),
    "huber": ((ops.huber_loss, ops.huber_grad), (reference.huber_loss, reference.huber_grad), {"delta": 0.7}),
    "bce": ((ops.bce_with_logits_loss, ops.bce_with_logits_grad),
            (reference.bce_with_logits_loss, reference.bce_with_logits_grad), {}),
}


def targets(name, shape, rng, dtype):
    if name == "bce":
        return rng.random(shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (9,), (1, 1), (7, 3), (64, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_elementwise_losses_match_reference(name, shape, weighted, dtype, rng):
    (loss, grad), (ref_loss, ref_grad), extra = ELEMENTWISE[name]
    yhat = (rng.normal(size=shape) * 2).astype(dtype)
    y = targets(name, shape, rng, dtype)
    w = rng.random(shape[0]).astype(dtype) + 0.1 if weighted else None
    tol = TOLERANCE[np.dtype(dtype)]
    value = loss(yhat, y, **extra, sample_weight=w)
    assert type(value) is float
    assert value == pytest.approx(ref_loss(yhat, y, **extra, sample_weight=w), rel=tol["rtol"] * 10, abs=tol["atol"])
    g = grad(yhat, y, **extra, sample_weight=w)
    assert g.dtype == dtype and g.shape == shape
    np.testing.assert_allclose(g, ref_grad(yhat, y, **extra, sample_weight=w), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (64, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_reference(shape, weighted, dtype, rng):
    logits = (rng.normal(size=shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[1], size=shape[0])
    w = rng.random(shape[0]) + 0.1 if weighted else None
    tol = TOLERANCE[np.dtype(dtype)]
    assert ops.cross_entropy_loss(logits, labels, w) == pytest.approx(
        reference.cross_entropy_loss(logits, labels, w), rel=tol["rtol"] * 10)
    np.testing.assert_allclose(ops.cross_entropy_grad(logits, labels, w),
                               reference.cross_entropy_grad(logits, labels, w), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


def numeric_grad(f, x, eps=1e-6):
    out = np.empty_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        out[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return out


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_gradients_match_finite_differences(name, rng):
    (loss, grad), _, extra = ELEMENTWISE[name]
    yhat = rng.normal(size=(6, 3)) * 2
    y = targets(name, (6, 3), rng, np.float64)
    yhat[np.abs(yhat - y) < 1e-3] += 0.01               # away from MAE's kink
    w = rng.random(6) + 0.1
    numeric = numeric_grad(lambda v: loss(v, y, **extra, sample_weight=w), yhat)
    np.testing.assert_allclose(grad(yhat, y, **extra, sample_weight=w), numeric, rtol=1e-5, atol=1e-9)


def test_cross_entropy_gradient_matches_finite_differences(rng):
    logits = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, size=5)
    w = rng.random(5)
    numeric = numeric_grad(lambda v: ops.cross_entropy_loss(v, labels, w), logits)
    np.testing.assert_allclose(ops.cross_entropy_grad(logits, labels, w), numeric, rtol=1e-6, atol=1e-10)


def test_losses_are_stable_for_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    with np.errstate(all="raise"):
        assert ops.cross_entropy_loss(logits, [0, 1]) == 0.0
        assert ops.cross_entropy_loss(logits, [1, 0]) == pytest.approx(2e4)
        np.testing.assert_allclose(ops.cross_entropy_grad(logits, [1, 0]), [[0.5, -0.5, 0], [-0.5, 0.5, 0]], atol=1e-12)
        z = np.array([[-1e4], [1e4], [0.0]])
        assert ops.bce_with_logits_loss(z, [[0.0], [1.0], [1.0]]) == pytest.approx(np.log(2) / 3)
        assert ops.bce_with_logits_loss(z, [[1.0], [0.0], [0.0]]) == pytest.approx((2e4 + np.log(2)) / 3)
    assert np.isfinite(ops.cross_entropy_loss(logits.astype(np.float32), [2, 2]))


def test_zero_weights_remove_samples_exactly(rng):
    yhat, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    w = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    keep = w > 0
    assert ops.mse_loss(yhat, y, w) == pytest.approx(ops.mse_loss(yhat[keep], y[keep], w[keep]), rel=1e-15)
    assert ops.huber_loss(yhat, y, 0.5, w) == pytest.approx(ops.huber_loss(yhat[keep], y[keep], 0.5, w[keep]), rel=1e-15)
    grad = ops.mae_grad(yhat, y, w)
    assert not grad[~keep].any()
    labels = rng.integers(0, 2, size=6)
    assert ops.cross_entropy_loss(yhat, labels, w) == pytest.approx(
        ops.cross_entropy_loss(yhat[keep], labels[keep], w[keep]), rel=1e-15)
    # Unit weights change nothing.
    assert ops.mse_loss(yhat, y, np.ones(6)) == pytest.approx(ops.mse_loss(yhat, y), rel=1e-15)


@pytest.mark.parametrize("w,exc", [([1.0, -1.0, 1.0], ValueError), ([1.0, np.nan, 1.0], ValueError),
                                   ([0.0, 0.0, 0.0], ValueError), ([1.0, 1.0], ValueError),
                                   ([[1.0, 1.0, 1.0]], ValueError), (["a", "b", "c"], TypeError)])
def test_bad_sample_weights_are_rejected(w, exc, rng):
    yhat, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    with pytest.raises(exc, match="sample_weight"):
        ops.mse_loss(yhat, y, w)
    model = fastnn.Sequential([fastnn.Dense(2, 2, seed=0)])
    before = model.get_parameters().tobytes()
    with pytest.raises(exc, match="sample_weight"):
        model.train_step(yhat, y, sample_weight=w)
    with pytest.raises(exc, match="sample_weight"):
        model.fit(yhat, y, sample_weight=w)
    assert model.get_parameters().tobytes() == before


@pytest.mark.parametrize("labels,exc", [([0, 3, 1], ValueError), ([0, -1, 1], ValueError), ([0.5, 1, 2], ValueError),
                                        ([True, False, True], TypeError), ([[0, 1], [1, 0], [0, 0]], ValueError),
                                        ([0, 1], ValueError)])
def test_bad_labels_are_rejected(labels, exc, rng):
    logits = rng.normal(size=(3, 3))
    with pytest.raises(exc, match="labels"):
        ops.cross_entropy_loss(logits, labels)
    model = fastnn.Sequential([fastnn.Dense(2, 3, seed=0)])
    before = model.get_parameters().tobytes()
    with pytest.raises(exc, match=r"\by\b"):
        model.train_step(rng.normal(size=(3, 2)), labels, fastnn.CrossEntropyLoss())
    assert model.get_parameters().tobytes() == before


def test_loss_objects():
    assert fastnn.HuberLoss().delta == 1.0 and repr(fastnn.HuberLoss(0.5)) == "HuberLoss(delta=0.5)"
    with pytest.raises(ValueError, match="delta"):
        fastnn.HuberLoss(0)
    with pytest.raises(ValueError, match="CrossEntropyLoss"):
        fastnn.Sequential([fastnn.Dense(2, 1)]).train_step([[1.0, 2.0]], [0], fastnn.CrossEntropyLoss())
    yhat, y = np.array([[0.5, 2.0]]), np.array([[0.0, 0.0]])
    assert fastnn.MAELoss()(yhat, y) == 1.25
    assert fastnn.HuberLoss(1.0)(yhat, y) == pytest.approx((0.125 + 1.5) / 2)


LOSSES = {
    "mse": (fastnn.MSELoss(), "mse"),
    "mae": (fastnn.MAELoss(), "mae"),
    "huber": (fastnn.HuberLoss(1.0), "huber"),
    "bce": (fastnn.BCEWithLogitsLoss(), "bce_with_logits"),
    "cross_entropy": (fastnn.CrossEntropyLoss(), "cross_entropy"),
}


@pytest.mark.parametrize("weighted", [False, True])
def test_integer_labels_take_the_step_float_labels_take(weighted, dtype, rng):
    """Integer (intp) class labels go into the compiled step as they are, converted on
    the way in; the step is bit for bit the one their float twins give."""
    X = rng.normal(size=(9, 4)).astype(dtype)
    labels = rng.integers(0, 3, size=9).astype(np.intp)
    w = (rng.random(9) + 0.1).astype(dtype) if weighted else None
    a = fastnn.Sequential([fastnn.Dense(4, 5, seed=1), fastnn.ReLU(), fastnn.Dense(5, 3, seed=2)], dtype=dtype)
    b = fastnn.Sequential([fastnn.Dense(4, 5, seed=1), fastnn.ReLU(), fastnn.Dense(5, 3, seed=2)], dtype=dtype)
    opt_a, opt_b, loss = fastnn.Adam(0.01), fastnn.Adam(0.01), fastnn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(X, labels, loss, opt_a, sample_weight=w) == \
            b.train_step(X, labels.astype(dtype), loss, opt_b, sample_weight=w)
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())
    # the integer labels take the fast path (status OK, not SLOW asking for validation)
    update, _ = a._update_for(opt_a)
    assert a._net.train_step(X, labels, update, "cross_entropy", 0.0, w) == _walker.OK
    assert np.isfinite(a._net.last_loss)
    before = a.get_parameters().tobytes()
    for bad in ([0, 3, 1], [0, -1, 1]):
        with pytest.raises(ValueError, match=r"\by\b"):
            a.train_step(X[:3], np.array(bad, dtype=np.intp), loss, opt_a)
    assert a.get_parameters().tobytes() == before


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_training_steps_match_reference(name, weighted, dtype, rng):
    loss, ref_name = LOSSES[name]
    model = fastnn.Sequential([fastnn.Dense(4, 8, seed=1), fastnn.Tanh(), fastnn.Dense(8, 3, seed=2)], dtype=dtype)
    ref = ReferenceMLP.from_model(model)
    X = rng.normal(size=(13, 4)).astype(dtype)
    if name == "cross_entropy":
        y = rng.integers(0, 3, size=13)
    elif name == "bce":
        y = rng.random((13, 3)).astype(dtype)
    else:
        y = rng.normal(size=(13, 3)).astype(dtype)
    w = rng.random(13) + 0.1 if weighted else None
    tol = dict(rtol=TOLERANCE[np.dtype(dtype)]["rtol"] * 100, atol=TOLERANCE[np.dtype(dtype)]["atol"] * 100)
    for _ in range(3):
        value = model.train_step(X, y, loss, fastnn.SGD(0.1), sample_weight=w)
        assert value == pytest.approx(ref.train_step(X, y, 0.1, ref_name, w), rel=tol["rtol"])
    np.testing.assert_allclose(model.predict(X), ref.predict(X), **tol)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fit_with_weights_matches_reference_epochs(name, rng):
    loss, ref_name = LOSSES[name]
    model = fastnn.Sequential([fastnn.Dense(4, 6, seed=1), fastnn.ReLU(), fastnn.Dense(6, 3, seed=2)])
    ref = ReferenceMLP.from_model(model)
    X = rng.normal(size=(23, 4))
    y = rng.integers(0, 3, size=23) if name == "cross_entropy" else (rng.random((23, 3)) if name == "bce" else rng.normal(size=(23, 3)))
    w = rng.random(23)
    w[[3, 7]] = 0.0
    history = model.fit(X, y, loss=loss, optimizer=fastnn.SGD(0.05), epochs=2, batch_size=5, shuffle=False, sample_weight=w)
    for epoch in range(2):
        total = total_w = 0.0
        for start in range(0, 23, 5):
            rows = slice(start, start + 5)
            batch_w = w[rows].sum()
            total += ref.train_step(X[rows], y[rows], 0.05, ref_name, w[rows] if batch_w > 0 else None) * batch_w
            total_w += batch_w
        assert history.loss[epoch] == pytest.approx(total / total_w, rel=1e-10)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-10, atol=1e-12)


def test_predict_proba(rng):
    model = fastnn.Sequential([fastnn.Dense(3, 4, seed=0)])
    X = rng.normal(size=(5, 3)) * 100
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(proba, reference.softmax(model.predict(X)), rtol=1e-12, atol=1e-300)
    binary = fastnn.Sequential([fastnn.Dense(3, 1, seed=0)])
    np.testing.assert_allclose(binary.predict_proba(X), reference.sigmoid_forward(binary.predict(X)), rtol=1e-12)


def test_digits_classifier_reaches_95_percent():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = fastnn.Sequential([fastnn.Dense(64, 32, seed=0), fastnn.ReLU(), fastnn.Dense(32, 10, seed=1)])
    history = model.fit(X_train, y_train, loss=fastnn.CrossEntropyLoss(), optimizer=fastnn.Adam(0.01),
                        epochs=30, batch_size=32, seed=0)
    accuracy = np.mean(model.predict(X_test).argmax(axis=1) == y_test)
    assert accuracy >= 0.95, accuracy
    assert history.loss[-1] < history.loss[0] / 10
    np.testing.assert_array_equal(model.predict_proba(X_test).argmax(axis=1), model.predict(X_test).argmax(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, C", [(1, 2), (7, 3), (300, 10), (129, 4)])
def test_cross_entropy_grad_is_the_softmax_formula_bit_for_bit(n, C, dtype, rng):
    """The compiled cross-entropy (blocks of samples, each exp once, fastnn/_kernels.pxi)
    against its formula in NumPy on the same exp (the scalar one the losses call):
    (exp(z - max z) / sum_j, the sum in class order, in double) minus the one-hot
    label, times 1/n; in C and Fortran order (the network's feature-major layout runs
    the same function, held to the reference by the model tests)."""
    from fastnn import _ops

    Z = (rng.normal(size=(n, C)) * 5).astype(dtype)
    y = rng.integers(0, C, n)
    D = (Z - Z.max(axis=1)[:, None]).astype(dtype)
    E = np.empty_like(D)
    _ops._math(0, D.ravel(), E.reshape(-1), True)
    lse = np.zeros(n)
    for j in range(C):
        lse += E[:, j].astype(np.float64)
    expected = dtype(1.0 / n) * ((E / lse[:, None]).astype(dtype) - (np.arange(C) == y[:, None]).astype(dtype))
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(ops.cross_entropy_grad(Z, y).view(bits), expected.view(bits))
    np.testing.assert_array_equal(ops.cross_entropy_grad(np.asfortranarray(Z), y).view(bits), expected.view(bits))
