"""Sequential.epoch_trainer: fit's epoch, one at a time, in orders the caller draws (the loop
of fastnn's estimators). Held to Sequential.fit on the rows copied in that order (the same
bits), to fastnn.reference's fit_epoch, and to fit's checks and divergence rules."""

import copy

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn.reference import ReferenceMLP


def make_model(dtype, n_out=3, seed=0):
    return fastnn.Sequential([fastnn.Dense(5, 16, seed=seed), fastnn.ReLU(), fastnn.Dense(16, n_out, seed=seed + 1)],
                             dtype=dtype)


def make_data(n_samples=70, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 5))
    return X, rng.normal(size=(n_samples, 3)), rng.randint(0, 3, n_samples), rng.rand(n_samples)


CASES = [
    (fastnn.MSELoss(), fastnn.SGD(lr=0.05, momentum=0.9), False),
    (fastnn.MSELoss(), fastnn.Adam(lr=0.01), True),
    (fastnn.CrossEntropyLoss(), fastnn.Adam(lr=0.01, weight_decay=1e-3), False),
    (fastnn.CrossEntropyLoss(), fastnn.SGD(lr=0.1, momentum=0.5, nesterov=True), True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss, optimizer, weighted", CASES)
def test_an_epoch_in_an_order_equals_fit_on_the_rows_copied_in_that_order(dtype, loss, optimizer, weighted):
    X, Y, labels, weights = make_data()
    y = labels if loss.kind == "cross_entropy" else Y
    w = weights if weighted else None
    trained, fitted = make_model(dtype), make_model(dtype)
    other = copy.deepcopy(optimizer)
    train = trained.epoch_trainer(X, y, loss=loss, optimizer=optimizer, batch_size=16, sample_weight=w)
    orders = np.random.RandomState(1)
    for epoch in range(4):
        order = None if epoch == 2 else orders.permutation(len(X))    # None: the rows as they are
        rows = slice(None) if order is None else order
        value = train(order)
        history = fitted.fit(X[rows], y[rows], loss=loss, optimizer=other, batch_size=16, shuffle=False,
                             sample_weight=None if w is None else w[rows])
        assert value == history.loss[0]
        np.testing.assert_array_equal(trained.get_parameters(), fitted.get_parameters())
    assert trained.optimizer_state(optimizer)["step"] == fitted.optimizer_state(other)["step"] == 4 * 5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_epochs_follow_the_reference_fit_epoch(dtype):
    X, _, labels, weights = make_data(53)
    model = make_model(dtype)
    ref = ReferenceMLP.from_model(model)
    loss, optimizer = fastnn.CrossEntropyLoss(), fastnn.Adam(lr=0.02)
    train = model.epoch_trainer(X, labels, loss=loss, optimizer=optimizer, batch_size=10, sample_weight=weights)
    orders = np.random.RandomState(4)
    for _ in range(3):
        order = orders.permutation(len(X))
        expected = ref.fit_epoch(X, labels, optimizer, 10, order=order, loss=loss, sample_weight=weights)
        np.testing.assert_allclose(train(order), expected, **TOLERANCE[np.dtype(dtype)])
    np.testing.assert_allclose(model.get_parameters(), ref.get_parameters(), rtol=100 * TOLERANCE[np.dtype(dtype)]["rtol"],
                               atol=100 * TOLERANCE[np.dtype(dtype)]["atol"])


def test_defaults_are_fits_mse_sgd_and_the_full_batch():
    X, Y, _, _ = make_data()
    trained, fitted = make_model(np.float64), make_model(np.float64)
    value = trained.epoch_trainer(X, Y)()
    assert value == fitted.fit(X, Y, shuffle=False).loss[0]
    np.testing.assert_array_equal(trained.get_parameters(), fitted.get_parameters())


def test_input_is_checked_once_when_made_and_orders_at_each_epoch():
    X, Y, _, _ = make_data()
    model = make_model(np.float64)
    with pytest.raises(ValueError, match="X"):
        model.epoch_trainer(X[:, :4], Y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X"):
        model.epoch_trainer(bad, Y)
    with pytest.raises(TypeError, match="optimizer"):
        model.epoch_trainer(X, Y, optimizer=fastnn.LBFGS())
    with pytest.raises(ValueError, match="batch_size"):
        model.epoch_trainer(X, Y, batch_size=0)
    # Read-only, Fortran-ordered, float32 input: converted once, the same numbers.
    readonly = np.asfortranarray(X)
    readonly.setflags(write=False)
    twin = make_model(np.float64)
    assert model.epoch_trainer(readonly, Y)() == twin.epoch_trainer(X, Y)()
    train = model.epoch_trainer(X, Y, batch_size=8)
    before = model.get_parameters()
    for order, error, match in [
        (np.arange(len(X) - 1), ValueError, r"order must have one row index per sample, shape \(70,\)"),
        (np.r_[np.arange(len(X) - 1), len(X)], ValueError, r"order must hold row indices in \[0, 70\)"),
        (-np.arange(len(X)), ValueError, "order must hold row indices"),
        (np.arange(len(X), dtype=float), TypeError, "order must hold integer row indices"),
        (np.ones(len(X), dtype=bool), TypeError, "order must hold integer row indices"),
    ]:
        with pytest.raises(error, match=match):
            train(order)
        np.testing.assert_array_equal(model.get_parameters(), before)
    # Any integer type and a list are row indices.
    same = make_model(np.float64)
    same.set_parameters(before)
    order = np.random.RandomState(0).permutation(len(X))
    assert train(order.astype(np.int32)) == same.epoch_trainer(X, Y, batch_size=8)(list(order))


def test_a_diverging_epoch_raises_as_fit_does_and_a_first_refused_step_leaves_no_state():
    X, Y, _, _ = make_data()
    model = make_model(np.float64)
    before = model.get_parameters()
    optimizer = fastnn.Adam(lr=0.01)
    train = model.epoch_trainer(X * 1e300, Y * 1e300, optimizer=optimizer, batch_size=8)
    with pytest.raises(FloatingPointError, match="training diverged in this epoch: the loss is not finite"):
        train()
    np.testing.assert_array_equal(model.get_parameters(), before)
    assert model.optimizer_state(optimizer) == {"step": 0}      # not one update applied: no state kept
