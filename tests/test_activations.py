"""Identity, LeakyReLU, Tanh and Sigmoid: kernels against the reference and finite
differences, and inside whole networks (folded after a Dense or on their own)."""

import pickle

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn import ops, reference
from fastnn.reference import ReferenceMLP

PAIRS = {
    "leaky_relu": ((lambda Z: ops.leaky_relu_forward(Z, 0.1), lambda Z, dA: ops.leaky_relu_backward(Z, dA, 0.1)),
                   (lambda Z: reference.leaky_relu_forward(Z, 0.1), lambda Z, dA: reference.leaky_relu_backward(Z, dA, 0.1))),
    "tanh": ((ops.tanh_forward, ops.tanh_backward), (reference.tanh_forward, reference.tanh_backward)),
    "sigmoid": ((ops.sigmoid_forward, ops.sigmoid_backward), (reference.sigmoid_forward, reference.sigmoid_backward)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (2, 3, 4), (64, 33)])
def test_activation_kernels_match_reference(name, shape, dtype, rng):
    (forward, backward), (ref_forward, ref_backward) = PAIRS[name]
    Z = (rng.normal(size=shape) * 3).astype(dtype)
    dA = rng.normal(size=shape).astype(dtype)
    A = forward(Z)
    assert A.dtype == dtype and A.shape == shape
    np.testing.assert_allclose(A, ref_forward(Z), **TOLERANCE[np.dtype(dtype)])
    dZ = backward(Z, dA)
    assert dZ.dtype == dtype
    np.testing.assert_allclose(dZ, ref_backward(Z, dA), **TOLERANCE[np.dtype(dtype)])


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_activation_gradients_match_finite_differences(name, rng):
    (forward, backward), _ = PAIRS[name]
    Z = rng.normal(size=40) * 2
    Z = Z[np.abs(Z) > 1e-3]                     # away from LeakyReLU's kink
    dA = rng.normal(size=Z.shape)
    eps = 1e-6
    numeric = (np.sum(dA * forward(Z + eps)) - np.sum(dA * forward(Z - eps))) / (2 * eps)
    # The directional derivative along dA, and elementwise:
    elementwise = (forward(Z + eps) - forward(Z - eps)) / (2 * eps) * dA
    np.testing.assert_allclose(backward(Z, dA), elementwise, rtol=1e-6, atol=1e-9)
    assert np.sum(backward(Z, dA)) == pytest.approx(np.sum(elementwise), rel=1e-6)
    assert np.isfinite(numeric)


def test_sigmoid_is_stable_for_large_inputs():
    Z = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    with np.errstate(all="raise"):
        A = ops.sigmoid_forward(Z)
    np.testing.assert_allclose(A, [0, 0, np.exp(-50.0), 0.5, 1, 1, 1], rtol=1e-12, atol=0)
    A32 = ops.sigmoid_forward(Z.astype(np.float32))
    assert np.all(np.isfinite(A32)) and A32[3] == 0.5
    assert np.all(np.isfinite(ops.sigmoid_backward(Z, np.ones_like(Z))))
    np.testing.assert_array_equal(ops.tanh_forward([-1e4, 1e4]), [-1.0, 1.0])


def test_leaky_relu_values_and_bad_slope():
    np.testing.assert_array_equal(ops.leaky_relu_forward([-2.0, 0.0, 3.0], 0.5), [-1.0, 0.0, 3.0])
    np.testing.assert_array_equal(ops.leaky_relu_backward([-2.0, 0.0, 3.0], [1.0, 1.0, 1.0], 0.5), [0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="negative_slope"):
        fastnn.LeakyReLU(-0.1)
    with pytest.raises(TypeError, match="negative_slope"):
        fastnn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="negative_slope"):
        ops.leaky_relu_forward([1.0], float("nan"))
    assert fastnn.LeakyReLU().negative_slope == 0.01
    assert repr(fastnn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"


ARCHITECTURES = {
    "dense-tanh": lambda: [fastnn.Dense(3, 6, seed=1), fastnn.Tanh(), fastnn.Dense(6, 2, seed=2)],
    "dense-sigmoid-out": lambda: [fastnn.Dense(3, 6, seed=1), fastnn.LeakyReLU(0.1), fastnn.Dense(6, 2, seed=2), fastnn.Sigmoid()],
    "leading-and-stacked": lambda: [fastnn.Tanh(), fastnn.Dense(3, 5, seed=1), fastnn.Sigmoid(), fastnn.LeakyReLU(0.3),
                                    fastnn.Dense(5, 2, seed=2), fastnn.Identity()],
    "wide-blas": lambda: [fastnn.Dense(3, 64, seed=1), fastnn.Tanh(), fastnn.Dense(64, 32, seed=2), fastnn.Sigmoid(),
                          fastnn.Dense(32, 2, seed=3)],
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_networks_with_activations_match_reference(arch, dtype, rng):
    model = fastnn.Sequential(ARCHITECTURES[arch](), dtype=dtype)
    ref = ReferenceMLP.from_model(model)
    X = rng.normal(size=(21, 3)).astype(dtype)
    y = rng.normal(size=(21, 2)).astype(dtype)
    tol = dict(rtol=TOLERANCE[np.dtype(dtype)]["rtol"] * 100, atol=TOLERANCE[np.dtype(dtype)]["atol"] * 100)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), **tol)
    for _ in range(3):
        assert model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1)) == pytest.approx(ref.train_step(X, y, 0.1), rel=tol["rtol"])
    np.testing.assert_allclose(model.predict(X), ref.predict(X), **tol)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_network_gradients_match_finite_differences(arch, rng):
    model = fastnn.Sequential(ARCHITECTURES[arch]())
    X, y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    p0 = model.get_parameters()

    def loss_at(p):
        model.set_parameters(p)
        return reference.mse_loss(model.predict(X), y)

    eps = 1e-6
    numeric = np.array([(loss_at(p0 + eps * e) - loss_at(p0 - eps * e)) / (2 * eps) for e in np.eye(p0.size)])
    model.set_parameters(p0)
    model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(1e-3))
    analytic = np.concatenate([np.concatenate([layer.dW.ravel(), layer.db])
                               for layer in model.layers if isinstance(layer, fastnn.Dense)])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_activation_layers_standalone_and_pickle(rng):
    X, dY = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for layer, (f, df) in [(fastnn.Tanh(), (np.tanh, None)), (fastnn.Sigmoid(), (reference.sigmoid_forward, None)),
                           (fastnn.Identity(), (lambda Z: Z, None)), (fastnn.LeakyReLU(0.2), (lambda Z: reference.leaky_relu_forward(Z, 0.2), None))]:
        np.testing.assert_allclose(layer(X), f(X), rtol=1e-12)
        assert layer.backward(X, dY).shape == X.shape
        clone = pickle.loads(pickle.dumps(layer))
        assert clone == layer and repr(clone) == repr(layer)
    model = fastnn.Sequential(ARCHITECTURES["dense-sigmoid-out"]())
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    assert "Sigmoid()" in repr(model) and "LeakyReLU(negative_slope=0.1)" in repr(model)
