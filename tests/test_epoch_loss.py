"""fit's epoch loss: the weighted mean of the batches' losses, finite wherever every batch's loss is."""

import numpy as np
import pytest

import fastnn
from fastnn import reference


def test_epoch_loss_stays_finite_where_loss_times_weights_overflows(dtype):
    """fit's epoch loss is the weighted mean of finite batch losses, even where a batch's loss times
    its weights' sum passes the largest double; the reference's fit_epoch agrees."""
    X = np.linspace(-1, 1, 8, dtype=dtype).reshape(-1, 1)
    y = np.full((8, 1), 1e18 if dtype == np.float64 else 1e17, dtype=dtype)
    w = np.full(8, 1e290 if dtype == np.float64 else 1e36, dtype=dtype)
    model = fastnn.Sequential([fastnn.Dense(1, 1, seed=0)], dtype=dtype)
    ref = reference.ReferenceMLP.from_model(model)
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=1e-30), epochs=1, batch_size=4, shuffle=False,
                        sample_weight=w)
    expected = ref.fit_epoch(X, y, 1e-30, 4, None, "mse", w)
    loss = history.loss[0]
    assert np.isfinite(loss) and np.isfinite(expected)
    plain = float(np.mean((model.predict(X).astype(np.float64) - y.astype(np.float64)) ** 2))
    np.testing.assert_allclose(loss, plain, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(expected, plain, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_epoch_loss_is_the_plain_quotient_without_overflow():
    """Without overflow the epoch loss is sum(loss_b * wsum_b) / sum(wsum_b), for fit and the reference
    (to rounding: the batch losses come from NumPy's sums, whose order may differ between its versions)."""
    rng = np.random.default_rng(3)
    X, y, w = rng.standard_normal((50, 3)), rng.standard_normal((50, 1)), rng.uniform(0.1, 3, 50)
    model = fastnn.Sequential([fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 1, seed=1)])
    ref = reference.ReferenceMLP.from_model(model)
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=1e-30), epochs=1, batch_size=7, shuffle=False, sample_weight=w)
    losses = [ref.gradients(X[i:i + 7], y[i:i + 7], "mse", w[i:i + 7])[0] for i in range(0, 50, 7)]
    weights = [float(np.sum(w[i:i + 7])) for i in range(0, 50, 7)]
    quotient = sum(l * s for l, s in zip(losses, weights)) / sum(weights)
    assert history.loss[0] == pytest.approx(quotient, rel=1e-13)
    assert ref.fit_epoch(X, y, 1e-30, 7, None, "mse", w) == pytest.approx(quotient, rel=1e-13)
