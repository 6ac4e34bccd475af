"""fastnn.Ensemble: K members trained together equal K Sequential.fit calls.

The oracle is :meth:`Sequential.fit` itself: member k after ``ens.fit`` must
equal ``ens[k]`` (taken before) trained alone with member k's optimizer
settings, shuffle seed, sample weights and validation data, for every layer,
loss and optimizer, in both dtypes; results must not depend on ``n_jobs``;
bad input is refused by name with nothing changed.
"""

from __future__ import annotations

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn.ensemble import MemberHistory

from fuzzing.profiles import FUZZ

#: Member k against Sequential.fit: the contract's 1e-10 relative in float64.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}

LOSSES = {
    "mse": fastnn.MSELoss,
    "mae": fastnn.MAELoss,
    "huber": lambda: fastnn.HuberLoss(0.5),
    "cross_entropy": fastnn.CrossEntropyLoss,
    "bce_with_logits": fastnn.BCEWithLogitsLoss,
    "poisson": fastnn.PoissonLoss,
}

OPTIMIZERS = {
    "sgd": lambda lr=0.05: fastnn.SGD(lr),
    "sgd_momentum": lambda lr=0.05: fastnn.SGD(lr, momentum=0.9, weight_decay=1e-3),
    "sgd_nesterov": lambda lr=0.05: fastnn.SGD(lr, momentum=0.8, nesterov=True),
    "adam": lambda lr=0.01: fastnn.Adam(lr),
    "adamw": lambda lr=0.01: fastnn.AdamW(lr, weight_decay=0.05),
}


def layers_for(loss_kind: str, n_in: int = 3, hidden: int = 5) -> list:
    """Every activation kind between Dense layers; outputs as the loss needs them."""
    n_out = 3 if loss_kind == "cross_entropy" else 1
    return [fastnn.Dense(n_in, hidden), fastnn.Tanh(), fastnn.Dense(hidden, hidden), fastnn.LeakyReLU(0.1),
            fastnn.Dense(hidden, hidden), fastnn.Sigmoid(), fastnn.Dense(hidden, hidden), fastnn.ReLU(),
            fastnn.Identity(), fastnn.Dense(hidden, n_out)]


def targets(loss_kind: str, X: np.ndarray, rng) -> np.ndarray:
    """Targets of the right kind for ``loss_kind`` from X (..., n_samples, n_in)."""
    s = X.sum(axis=-1)
    if loss_kind == "cross_entropy":
        return (np.floor(np.abs(s) * 2) % 3).astype(np.intp)
    if loss_kind == "bce_with_logits":
        return (s > 0).astype(np.float64)
    if loss_kind == "poisson":
        return rng.poisson(np.exp(0.3 * s)).astype(np.float64)
    return np.sin(s) + 0.1 * rng.normal(size=s.shape)


def solo_fits(before: list, X, y, *, per_member_data=False, optimizers, seeds, sample_weight=None,
              validation=None, **kwargs) -> tuple:
    """Each member trained alone by Sequential.fit: (parameters (K, P), histories, errors)."""
    params, histories, errors = [], [], []
    for k, model in enumerate(before):
        Xk = X[k] if per_member_data else X
        yk = y[k] if per_member_data else y
        wk = None if sample_weight is None else (sample_weight[k] if np.ndim(sample_weight) == 2 else sample_weight)
        vk = None if validation is None else validation(k)
        try:
            histories.append(model.fit(Xk, yk, optimizer=optimizers[k], seed=seeds[k], sample_weight=wk,
                                       validation_data=vk, **kwargs))
            errors.append(None)
        except FloatingPointError as exc:
            histories.append(None)
            errors.append(exc)
        params.append(model.get_parameters())
    return np.array(params), histories, errors


def assert_members_equal(ens, expected: np.ndarray, dtype) -> None:
    np.testing.assert_allclose(ens.get_parameters(), expected, rtol=RTOL[np.dtype(dtype)], atol=0)


def snapshot(ens, optimizer=None) -> tuple:
    state = [] if optimizer is None else [ens.optimizer_state(k, optimizer) for k in range(len(ens))]
    return ens.get_parameters(), copy.deepcopy(state)


def assert_unchanged(ens, before: tuple, optimizer=None) -> None:
    params, state = snapshot(ens, optimizer)
    np.testing.assert_array_equal(params, before[0])
    for now, then in zip(state, before[1]):
        assert now.keys() == then.keys()
        for key in now:
            np.testing.assert_array_equal(now[key], then[key])


# -- construction ----------------------------------------------------------------


def test_construction_seeds_and_members():
    layers = [fastnn.Dense(1, 16), fastnn.ReLU(), fastnn.Dense(16, 1)]
    ens = fastnn.Ensemble(layers, 4, seed=7)
    assert len(ens) == ens.n_members == 4
    assert ens.n_parameters == 16 + 16 + 16 + 1
    # Member k draws its layers, in order, from default_rng(SeedSequence(seed).spawn(K)[k]).
    for k, child in enumerate(np.random.SeedSequence(7).spawn(4)):
        rng = np.random.default_rng(child)
        expected = fastnn.Sequential([fastnn.Dense(1, 16, seed=rng), fastnn.ReLU(), fastnn.Dense(16, 1, seed=rng)])
        np.testing.assert_array_equal(ens[k].get_parameters(), expected.get_parameters())
    np.testing.assert_array_equal(fastnn.Ensemble(layers, 4, seed=7).get_parameters(), ens.get_parameters())
    assert not np.array_equal(ens.get_parameters()[0], ens.get_parameters()[1])
    # The given layers are not used: they stay free for a Sequential.
    fastnn.Sequential(layers)
    # ens[k] and members are copies.
    member = ens[-1]
    assert isinstance(member, fastnn.Sequential)
    member.layers[0].W[...] = 0
    assert np.all(ens[3].layers[0].W != 0) or not np.array_equal(ens[3].layers[0].W, member.layers[0].W)
    assert [m.get_parameters().tolist() for m in ens.members] == ens.get_parameters().tolist()


def test_from_models_copies_parameters():
    models = [fastnn.Sequential([fastnn.Dense(2, 3, seed=s), fastnn.Tanh(), fastnn.Dense(3, 1, seed=s + 10)],
                                dtype=np.float32) for s in range(3)]
    ens = fastnn.Ensemble.from_models(models)
    assert ens.dtype == np.float32
    np.testing.assert_array_equal(ens.get_parameters(), np.stack([m.get_parameters() for m in models]))
    models[0].layers[0].W[...] = 5
    assert not np.any(ens.get_parameters()[0] == 5)
    with pytest.raises(ValueError, match=r"models\[1\] does not have the architecture of models\[0\]"):
        fastnn.Ensemble.from_models([models[0], fastnn.Sequential([fastnn.Dense(2, 3)], dtype=np.float32)])
    with pytest.raises(ValueError, match=r"models\[1\] has dtype float64"):
        fastnn.Ensemble.from_models([models[0], fastnn.Sequential(
            [fastnn.Dense(2, 3), fastnn.Tanh(), fastnn.Dense(3, 1)])])
    with pytest.raises(ValueError, match="at least one Sequential"):
        fastnn.Ensemble.from_models([])
    with pytest.raises(TypeError, match=r"models\[0\] must be a fastnn.Sequential, got int"):
        fastnn.Ensemble.from_models([1])


@pytest.mark.parametrize("args, kwargs, error, message", [
    (([fastnn.Dense(1, 2)], 0), {}, ValueError, "n_members"),
    (([fastnn.Dense(1, 2)], 2.5), {}, TypeError, "n_members"),
    ((fastnn.Dense(1, 2), 2), {}, TypeError, "single layer"),
    (([fastnn.Dense(1, 2), fastnn.Dense(3, 1)], 2), {}, ValueError, "do not chain"),
    (([fastnn.Dense(1, 2), "relu"], 2), {}, TypeError, r"layers\[1\] must be a fastnn layer"),
    (([fastnn.Dense(1, 2)], 2), {"dtype": np.int32}, TypeError, "dtype"),
    (([fastnn.Dense(1, 2)], 2), {"seed": -1}, ValueError, "seed"),
])
def test_construction_refuses(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fastnn.Ensemble(*args, **kwargs)


# -- the equivalence ---------------------------------------------------------------


@pytest.mark.parametrize("loss_kind", sorted(LOSSES))
@pytest.mark.parametrize("opt_kind", sorted(OPTIMIZERS))
def test_member_equals_sequential_fit(loss_kind, opt_kind, dtype):
    rng = np.random.default_rng(1)
    ens = fastnn.Ensemble(layers_for(loss_kind), 3, dtype=dtype, seed=2)
    X = rng.normal(size=(23, 3))
    y = targets(loss_kind, X, rng)
    opt = OPTIMIZERS[opt_kind]()
    before = ens.members
    histories = ens.fit(X, y, loss=LOSSES[loss_kind](), optimizer=opt, epochs=4, batch_size=5, seed=3, n_jobs=1)
    expected, solo, errors = solo_fits(before, X, y, optimizers=[copy.deepcopy(opt)] * 3, seeds=[3] * 3,
                                       loss=LOSSES[loss_kind](), epochs=4, batch_size=5)
    assert errors == [None] * 3
    assert_members_equal(ens, expected, dtype)
    for history, alone in zip(histories, solo):
        assert isinstance(history, MemberHistory) and not history.diverged
        np.testing.assert_allclose(history.loss, alone.loss, rtol=RTOL[dtype])


def test_per_member_data_weights_optimizers_and_seeds(dtype):
    """A learning-rate sweep on per-member data, bootstrap weights and seeds."""
    rng = np.random.default_rng(4)
    K = 4
    ens = fastnn.Ensemble([fastnn.Dense(2, 8), fastnn.ReLU(), fastnn.Dense(8, 2)], K, dtype=dtype, seed=1)
    X = rng.normal(size=(K, 30, 2))
    y = np.stack([X[..., 0] * X[..., 1], X[..., 0] - X[..., 1]], axis=-1)
    w = rng.poisson(1.0, size=(K, 30)).astype(float)
    w[:, 0] = 1.0
    optimizers = [fastnn.SGD(lr, momentum=0.5) for lr in (0.01, 0.03, 0.1, 0.2)]
    seeds = [11, 12, 13, 14]
    before = ens.members
    solo_opts = copy.deepcopy(optimizers)
    ens.fit(X, y, optimizer=optimizers, epochs=6, batch_size=7, seed=seeds, sample_weight=w, n_jobs=2)
    expected, _, errors = solo_fits(before, X, y, per_member_data=True, optimizers=solo_opts, seeds=seeds,
                                    sample_weight=w, epochs=6, batch_size=7)
    assert errors == [None] * K
    assert_members_equal(ens, expected, dtype)


def test_zero_weight_removes_a_sample_and_shared_weights():
    rng = np.random.default_rng(5)
    ens = fastnn.Ensemble([fastnn.Dense(1, 4), fastnn.Tanh(), fastnn.Dense(4, 1)], 3, seed=0)
    X = rng.normal(size=(12, 1))
    y = X[:, 0] ** 2
    mask = (np.arange(12) % 3 != 0).astype(float)
    before = ens.members
    ens.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=3, batch_size=12, sample_weight=mask, shuffle=False)
    for k, model in enumerate(before):
        model.fit(X[mask > 0], y[mask > 0], optimizer=fastnn.Adam(0.01), epochs=3, shuffle=False)
        np.testing.assert_allclose(ens.get_parameters()[k], model.get_parameters(), rtol=1e-12)


def test_validation_and_early_stopping_per_member(dtype):
    rng = np.random.default_rng(6)
    K = 3
    ens = fastnn.Ensemble([fastnn.Dense(2, 6), fastnn.Tanh(), fastnn.Dense(6, 1)], K, dtype=dtype, seed=3)
    X = rng.normal(size=(40, 2))
    y = np.sin(X.sum(axis=1))
    X_val = rng.normal(size=(K, 15, 2))
    y_val = np.sin(X_val.sum(axis=2)) + rng.normal(scale=0.5, size=(K, 15))
    optimizers = [fastnn.Adam(lr) for lr in (0.3, 0.05, 0.01)]
    before = ens.members
    solo_opts = copy.deepcopy(optimizers)
    histories = ens.fit(X, y, optimizer=optimizers, epochs=40, batch_size=8, seed=[1, 2, 3],
                        validation_data=(X_val, y_val), early_stopping=True, patience=3, n_jobs=2)
    expected, solo, errors = solo_fits(before, X, y, optimizers=solo_opts, seeds=[1, 2, 3],
                                       validation=lambda k: (X_val[k], y_val[k]), epochs=40, batch_size=8,
                                       early_stopping=True, patience=3)
    assert errors == [None] * K
    assert_members_equal(ens, expected, dtype)
    for history, alone in zip(histories, solo):
        np.testing.assert_allclose(history.val_loss, alone.val_loss, rtol=RTOL[dtype])
        np.testing.assert_allclose(history.loss, alone.loss, rtol=RTOL[dtype])
        assert (history.best_epoch, history.stopped_epoch) == (alone.best_epoch, alone.stopped_epoch)
    assert any(h.stopped_epoch is not None for h in histories)    # early stopping did stop someone
    assert len({h.epochs for h in histories}) > 1                   # ... and not everyone at once


def test_weighted_validation_loss():
    rng = np.random.default_rng(7)
    ens = fastnn.Ensemble([fastnn.Dense(1, 3), fastnn.Dense(3, 1)], 2, seed=0)
    X = rng.normal(size=(10, 1))
    y = 2 * X[:, 0]
    w_val = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 1, 1]], dtype=float)
    X_val = X[:5]
    histories = ens.fit(X, y, epochs=2, validation_data=(X_val, y[:5], w_val))
    for k in range(2):
        expected = fastnn.MSELoss().loss(ens[k].predict(X_val), y[:5].reshape(-1, 1), w_val[k])
        assert histories[k].val_loss[-1] == pytest.approx(expected, rel=1e-12)


def test_divergence_stops_one_member_and_warns_once(dtype):
    rng = np.random.default_rng(8)
    ens = fastnn.Ensemble([fastnn.Dense(1, 8), fastnn.ReLU(), fastnn.Dense(8, 1)], 4, dtype=dtype, seed=4)
    X = rng.normal(size=(32, 1))
    y = X[:, 0] ** 2
    optimizers = [fastnn.SGD(1e-2), fastnn.SGD(1e30), fastnn.SGD(1e-3), fastnn.SGD(1e35)]
    before = ens.members
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        histories = ens.fit(X, y, optimizer=optimizers, epochs=5, batch_size=4, seed=0)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1
    assert "members 1, 3" in str(runtime[0].message)
    expected, solo, errors = solo_fits(before, X, y, optimizers=copy.deepcopy(optimizers), seeds=[0] * 4,
                                       epochs=5, batch_size=4)
    assert [e is None for e in errors] == [True, False, True, False]
    assert_members_equal(ens, expected, dtype)
    assert np.all(np.isfinite(ens.get_parameters()))
    assert [h.diverged for h in histories] == [False, True, False, True]
    assert histories[1].diverged_epoch == 1 and "training diverged in epoch 1" in histories[1].message
    assert histories[0].epochs == 5


def test_threads_give_identical_results():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(64, 1))
    y = np.abs(X[:, 0])
    results = []
    for n_jobs in (1, 2, 3, 7):
        ens = fastnn.Ensemble([fastnn.Dense(1, 16), fastnn.ReLU(), fastnn.Dense(16, 1)], 7, seed=0)
        histories = ens.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=5, batch_size=16, seed=list(range(7)),
                            n_jobs=n_jobs)
        results.append((ens.get_parameters(), [h.loss for h in histories]))
    for params, losses in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        assert losses == results[0][1]


def test_state_kept_across_fit_calls(dtype):
    rng = np.random.default_rng(10)
    ens = fastnn.Ensemble([fastnn.Dense(2, 4), fastnn.Tanh(), fastnn.Dense(4, 1)], 3, dtype=dtype, seed=1)
    X = rng.normal(size=(20, 2))
    y = X[:, 0] - X[:, 1]
    opt = fastnn.Adam(0.02)
    before = ens.members
    ens.fit(X, y, optimizer=opt, epochs=2, batch_size=6, seed=1)
    opt.lr = 0.005          # a schedule: the state carries on with the new lr
    ens.fit(X, y, optimizer=opt, epochs=2, batch_size=6, seed=2)
    assert ens.optimizer_state(0, opt)["step"] == 2 * 2 * 4     # 2 fits of 2 epochs of 4 batches
    for k, model in enumerate(before):
        solo = fastnn.Adam(0.02)
        model.fit(X, y, optimizer=solo, epochs=2, batch_size=6, seed=1)
        solo.lr = 0.005
        model.fit(X, y, optimizer=solo, epochs=2, batch_size=6, seed=2)
        np.testing.assert_allclose(ens.get_parameters()[k], model.get_parameters(), rtol=RTOL[dtype])
        np.testing.assert_allclose(ens.optimizer_state(k, opt)["exp_avg"], model.optimizer_state(solo)["exp_avg"],
                                   rtol=RTOL[dtype], atol=1e-30)


def test_lbfgs_refused():
    ens = fastnn.Ensemble([fastnn.Dense(1, 1)], 2)
    with pytest.raises(TypeError, match="LBFGS is a full-batch method that an Ensemble does not run"):
        ens.fit(np.ones((3, 1)), np.ones(3), optimizer=fastnn.LBFGS())


# -- bad input ------------------------------------------------------------------------

K_BAD = 3
_X = np.linspace(-1, 1, 12).reshape(-1, 2)
_Y = _X.sum(axis=1)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"X": np.ones((6, 3))}, ValueError, "X must have 2 features"),
    ({"X": np.ones((K_BAD, 6, 3))}, ValueError, r"X must have shape \(3, n_samples, 2\)"),
    ({"X": np.ones((2, 6, 2))}, ValueError, r"X must have shape \(3, n_samples, 2\)"),
    ({"X": np.ones(6)}, ValueError, "X must be a 2-D array"),
    ({"y": np.ones(5)}, ValueError, "y must have shape"),
    ({"X": np.ones((K_BAD, 6, 2)), "y": np.ones(6)}, ValueError, "y must have one target array per member"),
    ({"X": np.ones((K_BAD, 6, 2)), "y": np.r_[np.ones((2, 6)), [[1, 1, 1, np.nan, 1, 1]]]}, ValueError,
     r"y\[2\] must contain only finite values"),
    ({"X": np.ones((K_BAD, 6, 2)), "y": np.r_[np.ones((1, 6, 1)), np.full((1, 6, 1), np.inf), np.ones((1, 6, 1))]},
     ValueError, r"y\[1\] must contain only finite values"),
    ({"X": np.ones((K_BAD, 6, 2)), "y": np.ones((K_BAD, 6, 2))}, ValueError, r"y\[0\] must have shape \(6, 1\)"),
    ({"validation_data": (np.ones((K_BAD, 4, 2)), np.r_[np.ones((2, 4)), [[1, np.nan, 1, 1]]])}, ValueError,
     r"validation_data\[1\]\[2\] must contain only finite values"),
    ({"sample_weight": -np.ones(6)}, ValueError, "sample_weight must be non-negative"),
    ({"sample_weight": np.ones((K_BAD, 5))}, ValueError, r"sample_weight\[0\] must have shape \(6,\)"),
    ({"sample_weight": np.r_[np.ones((2, 6)), np.zeros((1, 6))]}, ValueError,
     r"sample_weight\[2\] must have a positive sum"),
    ({"sample_weight": np.ones((2, 6))}, ValueError, r"sample_weight must have shape \(6,\) shared or \(3, 6\)"),
    ({"optimizer": [fastnn.SGD(0.1)] * 2}, ValueError, "a list of one per member"),
    ({"optimizer": [fastnn.SGD(0.1), fastnn.Adam(), fastnn.SGD(0.1)]}, TypeError, "of one kind"),
    ({"optimizer": [fastnn.SGD(0.1), "sgd", fastnn.SGD(0.1)]}, TypeError, r"optimizer\[1\]: optimizer must be"),
    ({"seed": [1, 2]}, ValueError, "seed must be one seed or a list of one per member"),
    ({"seed": [1, -2, 3]}, ValueError, r"seed\[1\] must be a non-negative integer"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"n_jobs": 0}, ValueError, "n_jobs"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"patience": 0}, ValueError, "patience"),
    ({"early_stopping": 1}, TypeError, "early_stopping"),
    ({"loss": "mse"}, TypeError, "loss must be a fastnn loss"),
    ({"validation_data": (np.ones((4, 2)),)}, TypeError, "validation_data must be a pair"),
    ({"validation_data": (np.ones((4, 3)), np.ones(4))}, ValueError, r"validation_data\[0\] must have 2 features"),
    ({"validation_data": (np.ones((4, 2)), np.ones(3))}, ValueError, r"validation_data\[1\] must have shape"),
    ({"validation_data": (np.ones((4, 2)), np.ones(4), np.ones((K_BAD, 3)))}, ValueError,
     r"validation_data\[2\]\[0\] must have shape \(4,\)"),
])
def test_bad_input_refused_with_nothing_changed(kwargs, error, message):
    ens = fastnn.Ensemble([fastnn.Dense(2, 3), fastnn.ReLU(), fastnn.Dense(3, 1)], K_BAD, seed=0)
    opt = fastnn.Adam(0.01)
    ens.fit(_X, _Y, optimizer=opt, epochs=2, batch_size=4, seed=0)          # some state to keep
    before = snapshot(ens, opt)
    args = {"X": _X, "y": _Y, "optimizer": opt, **kwargs}
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(error, match=message):
        ens.fit(X, y, **args)
    assert_unchanged(ens, before, opt)


def test_bad_input_with_new_optimizer_leaves_no_state():
    ens = fastnn.Ensemble([fastnn.Dense(2, 1)], 2, seed=0)
    opt = fastnn.Adam()
    with pytest.raises(ValueError):
        ens.fit(_X, np.ones(5), optimizer=opt)
    assert ens.optimizer_state(0, opt) == {"step": 0}


# -- predicting, copying, saving --------------------------------------------------------


def test_predict_and_reduce(dtype):
    ens = fastnn.Ensemble([fastnn.Dense(2, 5), fastnn.Tanh(), fastnn.Dense(5, 1)], 5, dtype=dtype, seed=2)
    X = np.random.default_rng(0).normal(size=(2000, 2))       # more than one predict chunk
    out = ens.predict(X)
    assert out.shape == (5, 2000) and out.dtype == dtype
    for k in range(5):
        np.testing.assert_array_equal(out[k], ens[k].predict(X)[:, 0])
    np.testing.assert_allclose(ens.predict(X, reduce="mean"), out.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(ens.predict(X, reduce="median"), np.median(out, axis=0))
    with pytest.raises(ValueError, match="reduce"):
        ens.predict(X, reduce="max")
    with pytest.raises(ValueError, match="X must have 2 features"):
        ens.predict(np.ones((3, 4)))


def test_predict_proba_multiclass():
    ens = fastnn.Ensemble([fastnn.Dense(2, 4), fastnn.ReLU(), fastnn.Dense(4, 3)], 3, seed=1)
    X = np.random.default_rng(1).normal(size=(10, 2))
    proba = ens.predict_proba(X)
    assert proba.shape == (3, 10, 3)
    np.testing.assert_allclose(proba.sum(axis=2), 1.0)
    np.testing.assert_allclose(proba[1], ens[1].predict_proba(X))
    np.testing.assert_allclose(ens.predict_proba(X, reduce="mean"), proba.mean(axis=0))
    assert ens.predict(X).shape == (3, 10, 3)


def test_copies_pickles_and_files_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(11)
    ens = fastnn.Ensemble([fastnn.Dense(1, 6), fastnn.LeakyReLU(0.2), fastnn.Dense(6, 1)], 3, dtype=dtype, seed=5)
    X = rng.normal(size=(16, 1))
    y = X[:, 0] ** 3
    opt = fastnn.SGD(0.05, momentum=0.9)
    ens.fit(X, y, optimizer=opt, epochs=2, batch_size=4, seed=1)
    for other in (copy.deepcopy(ens), pickle.loads(pickle.dumps(ens))):
        np.testing.assert_array_equal(other.get_parameters(), ens.get_parameters())
        np.testing.assert_array_equal(other.predict(X), ens.predict(X))
    # A copy made with its optimizer continues the momentum as the original does.
    twin, twin_opt = copy.deepcopy((ens, opt))
    ens.fit(X, y, optimizer=opt, epochs=2, batch_size=4, seed=2)
    twin.fit(X, y, optimizer=twin_opt, epochs=2, batch_size=4, seed=2)
    np.testing.assert_array_equal(twin.get_parameters(), ens.get_parameters())
    path = tmp_path / "ens.npz"
    ens.save(path)
    loaded = fastnn.load(path)
    assert isinstance(loaded, fastnn.Ensemble) and len(loaded) == 3 and loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.get_parameters(), ens.get_parameters())
    np.testing.assert_array_equal(loaded.predict(X), ens.predict(X))
    fastnn.save(ens, tmp_path / "again.npz")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "again.npz").get_parameters(), ens.get_parameters())
    with pytest.raises(TypeError, match="optimizer must be None for an Ensemble"):
        fastnn.save(ens, tmp_path / "x.npz", optimizer=opt)


def test_ensemble_file_checked(tmp_path):
    ens = fastnn.Ensemble([fastnn.Dense(1, 2)], 2, seed=0)
    path = tmp_path / "ens.npz"
    ens.save(path)
    with np.load(path) as archive:
        entries = dict(archive)
    entries["parameters"] = entries["parameters"][:-1]
    np.savez(tmp_path / "short.npz", **entries)
    with pytest.raises(ValueError, match="parameters"):
        fastnn.load(tmp_path / "short.npz")
    arch = str(entries["architecture"]).replace('"n_members": 2', '"n_members": 0')
    entries["architecture"] = np.array(arch)
    np.savez(tmp_path / "zero.npz", **entries)
    with pytest.raises(ValueError, match="n_members must be a positive integer"):
        fastnn.load(tmp_path / "zero.npz")


# -- fuzzing the equivalence -------------------------------------------------------------


@st.composite
def ensemble_cases(draw):
    loss_kind = draw(st.sampled_from(sorted(LOSSES)))
    opt_kind = draw(st.sampled_from(sorted(OPTIMIZERS)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_members = draw(st.integers(1, 4))
    n_in = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(1, 9), min_size=0, max_size=2))
    acts = draw(st.lists(st.sampled_from(["ReLU", "Tanh", "Sigmoid", "LeakyReLU", "Identity"]),
                         min_size=len(widths), max_size=len(widths)))
    n_out = 3 if loss_kind == "cross_entropy" else draw(st.integers(1, 2))
    if loss_kind == "bce_with_logits":
        n_out = 1
    layers, prev = [], n_in
    for width, act in zip(widths, acts):
        layers += [fastnn.Dense(prev, width), fastnn.LeakyReLU(0.05) if act == "LeakyReLU" else getattr(fastnn, act)()]
        prev = width
    layers.append(fastnn.Dense(prev, n_out))
    n_samples = draw(st.integers(1, 20))
    batch_size = draw(st.one_of(st.none(), st.integers(1, 25)))
    epochs = draw(st.integers(1, 4))
    per_member = draw(st.booleans())
    weights = draw(st.sampled_from([None, "shared", "per_member"]))
    lrs = draw(st.lists(st.sampled_from([1e-3, 1e-2, 5e-2]), min_size=n_members, max_size=n_members))
    seeds = draw(st.one_of(st.integers(0, 2**32), st.lists(st.integers(0, 100), min_size=n_members,
                                                           max_size=n_members)))
    validation = draw(st.booleans())
    early = validation and draw(st.booleans())
    shuffle = draw(st.booleans())
    n_jobs = draw(st.integers(1, 3))
    data_seed = draw(st.integers(0, 2**16))
    return dict(loss_kind=loss_kind, opt_kind=opt_kind, dtype=dtype, n_members=n_members, n_in=n_in, layers=layers,
                n_samples=n_samples, batch_size=batch_size, epochs=epochs, per_member=per_member, weights=weights,
                lrs=lrs, seeds=seeds, validation=validation, early=early, shuffle=shuffle, n_jobs=n_jobs,
                data_seed=data_seed)


@FUZZ
@given(case=ensemble_cases())
def test_fuzz_member_equals_sequential_fit(case):
    rng = np.random.default_rng(case["data_seed"])
    K, n = case["n_members"], case["n_samples"]
    dtype = np.dtype(case["dtype"])
    ens = fastnn.Ensemble(case["layers"], K, dtype=dtype, seed=case["data_seed"])
    n_out = ens.out_features
    X = rng.normal(size=(K, n, case["n_in"]) if case["per_member"] else (n, case["n_in"]))
    y = targets(case["loss_kind"], X, rng)
    if n_out == 2:
        y = np.stack([y, np.flip(y, axis=-1)], axis=-1)     # valid targets for every loss
    w = None
    if case["weights"] is not None:
        w = rng.integers(0, 3, size=(K, n) if case["weights"] == "per_member" else (n,)).astype(float)
        w[..., 0] = 1.0
    optimizers = [OPTIMIZERS[case["opt_kind"]](lr) for lr in case["lrs"]]
    seeds = case["seeds"] if isinstance(case["seeds"], list) else [case["seeds"]] * K
    val = None
    if case["validation"]:
        X_val = rng.normal(size=(K, 5, case["n_in"]))
        y_val = targets(case["loss_kind"], X_val, rng)
        if n_out == 2:
            y_val = np.stack([y_val, np.flip(y_val, axis=-1)], axis=-1)
        val = (X_val, y_val)
    kwargs = dict(loss=LOSSES[case["loss_kind"]](), epochs=case["epochs"], batch_size=case["batch_size"],
                  shuffle=case["shuffle"], early_stopping=case["early"], patience=2)
    before = ens.members
    solo_opts = copy.deepcopy(optimizers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        histories = ens.fit(X, y, optimizer=optimizers, seed=case["seeds"], sample_weight=w, validation_data=val,
                            n_jobs=case["n_jobs"], **kwargs)
    expected, solo, errors = solo_fits(before, X, y, per_member_data=case["per_member"], optimizers=solo_opts,
                                       seeds=seeds, sample_weight=w,
                                       validation=None if val is None else (lambda k: (val[0][k], val[1][k])),
                                       **kwargs)
    assert_members_equal(ens, expected, dtype)
    for history, alone, error in zip(histories, solo, errors):
        assert history.diverged == (error is not None)
        if alone is not None:
            np.testing.assert_allclose(history.loss, alone.loss, rtol=RTOL[dtype])
            np.testing.assert_allclose(history.val_loss, alone.val_loss, rtol=RTOL[dtype])
            assert (history.best_epoch, history.stopped_epoch) == (alone.best_epoch, alone.stopped_epoch)


class _PCG64Subclass(np.random.PCG64):
    """NumPy's PCG64 under another type: the compiled loop draws from it through its bitgen_t's
    function pointers (only exactly numpy.random.PCG64 is drawn inline)."""


#: Bit generators the compiled permutations must follow: PCG64 (drawn inline), the same numbers
#: through the function pointers, and NumPy's other bit generators.
BIT_GENERATORS = {
    "pcg64": np.random.PCG64,
    "pcg64_pointers": _PCG64Subclass,
    "pcg64dxsm": np.random.PCG64DXSM,
    "sfc64": np.random.SFC64,
    "philox": np.random.Philox,
    "mt19937": np.random.MT19937,
}


def _same_state(a: np.random.Generator, b: np.random.Generator) -> None:
    """The two generators' whole states are equal (counters, keys, a kept half of a 64-bit draw)."""
    sa, sb = a.bit_generator.state, b.bit_generator.state
    assert sa.keys() == sb.keys()
    for key in set(sa) - {"bit_generator"}:     # the type's name: a subclass has its own
        if isinstance(sa[key], dict):
            for inner in sa[key]:
                np.testing.assert_array_equal(sa[key][inner], sb[key][inner])
        else:
            np.testing.assert_array_equal(sa[key], sb[key])


@pytest.mark.parametrize("kind", sorted(BIT_GENERATORS))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9, 16, 17, 255, 256, 257, 1000, 4097])
def test_compiled_permutations_are_numpys(n, kind):
    """Members with seeds of their own draw their orders in the compiled loop: the numbers, and the
    whole state left behind (a kept half of a 64-bit draw too), of Generator.permutation, whatever
    the number of epochs drawn at once, from a generator with or without a half kept."""
    from fastnn import _walker

    for seed in (0, 1, 12345):
        ours = np.random.Generator(BIT_GENERATORS[kind](seed))
        numpys = np.random.Generator(BIT_GENERATORS[kind](seed))
        if seed == 1:                   # one 32-bit draw first: half of a 64-bit one is kept
            assert ours.integers(1 << 31) == numpys.integers(1 << 31)
        drawn = _walker.permutations(ours, n, 3)
        again = _walker.permutations(ours, n, 2)
        np.testing.assert_array_equal(drawn, np.stack([numpys.permutation(n) for _ in range(3)]))
        np.testing.assert_array_equal(again, np.stack([numpys.permutation(n) for _ in range(2)]))
        _same_state(ours, numpys)
        assert ours.integers(1 << 30) == numpys.integers(1 << 30)
        assert ours.integers(1 << 62) == numpys.integers(1 << 62)


def test_inline_pcg64_equals_the_function_pointers():
    """The inlined PCG64 draws what NumPy's PCG64 draws through its function pointers (a subclass
    takes those), over many permutations of the demo's size, and leaves the same state."""
    from fastnn import _walker

    inline = np.random.Generator(np.random.PCG64(7))
    pointers = np.random.Generator(_PCG64Subclass(7))
    np.testing.assert_array_equal(_walker.permutations(inline, 256, 200), _walker.permutations(pointers, 256, 200))
    _same_state(inline, pointers)


def test_members_seeded_by_generators_of_any_bit_generator(monkeypatch):
    """A list of Generators as seeds, of PCG64 (drawn inline), its subclass (function pointers) and
    SFC64: every member ends as Sequential.fit leaves it with that generator, on the lanes and on
    the member-by-member loop."""
    from fastnn import ensemble as ensemble_module

    X = np.random.default_rng(0).uniform(0, 3, size=(37, 1))
    y = np.sin(X[:, 0])
    kinds = [np.random.PCG64, _PCG64Subclass, np.random.SFC64]

    def generators():
        return [np.random.Generator(kinds[k % 3](100 + k)) for k in range(6)]

    for use_lanes in ("always", False):
        monkeypatch.setattr(ensemble_module, "_USE_LANES", use_lanes)
        ens = fastnn.Ensemble(lanes_layers((1, 8, 1), (fastnn.ReLU,)), 6, seed=2)
        before = ens.members
        ens.fit(X, y, optimizer=fastnn.SGD(0.05), epochs=3, batch_size=5, seed=generators(), n_jobs=2)
        assert ens._last_path == ("lanes" if use_lanes else "members")
        for k, (model, rng) in enumerate(zip(before, generators())):
            model.fit(X, y, optimizer=fastnn.SGD(0.05), epochs=3, batch_size=5, seed=rng)
            np.testing.assert_allclose(ens[k].get_parameters(), model.get_parameters(), rtol=RTOL[np.dtype(np.float64)])


def test_orders_are_drawn_with_numpy_where_the_compiled_copy_would_differ(monkeypatch):
    """fit draws each member's orders in the compiled loop only where the walker's copy of
    Generator.permutation was checked to give this NumPy's numbers; otherwise (a NumPy that draws
    otherwise, simulated here) it draws them ahead with NumPy itself: the same members either way."""
    from fastnn import ensemble as ensemble_module

    assert ensemble_module._draws_as_numpy(fastnn.Ensemble(layers_for("mse"), 2)._walker, np.random.default_rng())
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = X.sum(axis=1)

    def trained():
        ens = fastnn.Ensemble(layers_for("mse"), 3, seed=1)
        ens.fit(X, y, optimizer=fastnn.SGD(lr=0.05), epochs=4, batch_size=8, seed=[5, 6, 7])
        return ens.get_parameters()

    compiled = trained()
    walker = fastnn.Ensemble(layers_for("mse"), 2)._walker
    monkeypatch.setattr(ensemble_module, "_SAME_DRAWS", {})
    monkeypatch.setattr(walker, "permutations", lambda rng, n, count: np.zeros((count, n), dtype=np.intp))
    assert not ensemble_module._draws_as_numpy(walker, np.random.default_rng())
    drawn_ahead = trained()
    np.testing.assert_array_equal(drawn_ahead, compiled)
    alone = fastnn.Ensemble(layers_for("mse"), 3, seed=1)[1]
    alone.fit(X, y, optimizer=fastnn.SGD(lr=0.05), epochs=4, batch_size=8, seed=6)
    np.testing.assert_allclose(compiled[1], alone.get_parameters(), rtol=1e-12)


# -- members side by side in SIMD lanes ------------------------------------------------


def lanes_layers(sizes: tuple, activations: tuple) -> list:
    """Dense layers of ``sizes`` with the given activations between them."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fastnn.Dense(n_in, n_out))
        if i < len(activations):
            layers.append(activations[i]())
    return layers


LANE_CASES = {
    # The demo's network, a batch whose last step is short, and members past a whole group.
    "demo": ((1, 16, 1), (fastnn.ReLU,), 9, 50, 16),
    # Rows on the walker's register tiles (fused multiply-adds in the AVX2 and AVX-512 builds).
    "tiles": ((8, 32, 32, 1), (fastnn.ReLU, fastnn.ReLU), 5, 72, 32),
    # Every activation the lanes cover, and two outputs; batches of 1 to 7 rows.
    "activations": ((3, 5, 6, 4, 2), (fastnn.Tanh, lambda: fastnn.LeakyReLU(0.1), fastnn.Sigmoid), 6, 23, 5),
}


def lane_fit(case: str, dtype, use_lanes: bool, monkeypatch, *, n_jobs=1, shuffle=True) -> tuple:
    """The case fitted with the lanes on or off: (ensemble, histories, the members before, data, optimizers)."""
    from fastnn import ensemble as ensemble_module

    sizes, activations, K, n, batch = LANE_CASES[case]
    rng = np.random.default_rng(20)
    X = rng.uniform(-1.5, 1.5, size=(K, n, sizes[0]))
    y = np.sin(X.sum(axis=-1, keepdims=True) * np.arange(1, sizes[-1] + 1))
    if sizes[-1] == 1:
        y = y[..., 0]
    optimizers = [fastnn.SGD(0.02 * (1 + k % 4), weight_decay=1e-3 * (k % 2)) for k in range(K)]
    ens = fastnn.Ensemble(lanes_layers(sizes, activations), K, dtype=dtype, seed=3)
    before = ens.members
    monkeypatch.setattr(ensemble_module, "_USE_LANES", "always" if use_lanes else False)
    ens.used_optimizers = copy.deepcopy(optimizers)
    histories = ens.fit(X, y, optimizer=ens.used_optimizers, epochs=4, batch_size=batch,
                        seed=[30 + k for k in range(K)], shuffle=shuffle, n_jobs=n_jobs)
    # Where a layer takes BLAS in this build (the baseline build's 32x32 layer), the member loop trains.
    covered = ens._walker.lanes_cover(ens._members[0]._net, batch, n)
    assert ens._last_path == ("lanes" if use_lanes and covered else "members")
    assert covered or case != "demo"
    return ens, histories, before, (X, y), optimizers


@pytest.mark.parametrize("case", sorted(LANE_CASES))
def test_lanes_taken_and_equal_to_the_member_loop(case, dtype, monkeypatch):
    """The common case (Dense chain, MSE, SGD) takes the lanes, and every member ends with the bits
    the member-by-member loop gives it (parameters, gradients, losses, the update's step), and equals
    Sequential.fit."""
    ens, histories, before, (X, y), optimizers = lane_fit(case, dtype, True, monkeypatch)
    slow, slow_histories, _, _, _ = lane_fit(case, dtype, False, monkeypatch)
    np.testing.assert_array_equal(ens.get_parameters(), slow.get_parameters())
    np.testing.assert_array_equal(ens._grads, slow._grads)
    for k, (history, other) in enumerate(zip(histories, slow_histories)):
        assert history.loss == other.loss and not history.diverged
    K = len(ens)
    expected, solo, errors = solo_fits(before, X, y, per_member_data=True, optimizers=optimizers,
                                       seeds=[30 + k for k in range(K)], epochs=4,
                                       batch_size=LANE_CASES[case][4])
    assert errors == [None] * K
    assert_members_equal(ens, expected, dtype)
    for k in range(K):
        np.testing.assert_allclose(histories[k].loss, solo[k].loss, rtol=RTOL[np.dtype(dtype)])
        steps = 4 * -(-X.shape[1] // LANE_CASES[case][4])      # (optimizer_state reports none for plain SGD)
        assert ens._members[k]._updates[ens.used_optimizers[k]].step == steps


@pytest.mark.parametrize("shuffle", [True, False])
def test_lanes_for_any_n_jobs(shuffle, monkeypatch):
    """Threads take whole groups of lanes: the same bits for any n_jobs, with or without shuffling."""
    results = [lane_fit("demo", np.float64, True, monkeypatch, n_jobs=n_jobs, shuffle=shuffle)[0].get_parameters()
               for n_jobs in (1, 2, 3)]
    slow = lane_fit("demo", np.float64, False, monkeypatch, shuffle=shuffle)[0].get_parameters()
    for params in results:
        np.testing.assert_array_equal(params, slow)


def test_lanes_divergence_stops_the_lane_alone(dtype, monkeypatch):
    """A member whose step is refused (a loss or an update not finite) stops in its lane with what
    the member loop leaves (parameters, gradients, step count); the other lanes go on."""
    from fastnn import ensemble as ensemble_module

    rng = np.random.default_rng(8)
    X = rng.normal(size=(32, 1))
    y = X[:, 0] ** 2
    optimizers = [fastnn.SGD(1e-2), fastnn.SGD(1e30), fastnn.SGD(1e-3), fastnn.SGD(1e35), fastnn.SGD(3.0)]
    results = []
    for use_lanes in (True, False):
        monkeypatch.setattr(ensemble_module, "_USE_LANES", use_lanes)
        ens = fastnn.Ensemble([fastnn.Dense(1, 8), fastnn.ReLU(), fastnn.Dense(8, 1)], 5, dtype=dtype, seed=4)
        opts = copy.deepcopy(optimizers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            histories = ens.fit(X, y, optimizer=opts, epochs=5, batch_size=4, seed=0)
        assert ens._last_path == ("lanes" if use_lanes else "members")
        results.append((ens.get_parameters(), ens._grads.copy(), [(h.loss, h.diverged_epoch, h.message)
                                                                   for h in histories],
                        [ens._members[k]._updates[opt].step for k, opt in enumerate(opts)]))
    lanes, members = results
    assert [h[1] is not None for h in lanes[2]][:4] == [False, True, False, True]
    np.testing.assert_array_equal(lanes[0], members[0])
    np.testing.assert_array_equal(lanes[1], members[1])
    assert lanes[2] == members[2] and lanes[3] == members[3]


def test_lanes_fall_back_outside_their_case(monkeypatch):
    """Momentum, another loss, sample weights or a layer on BLAS: the member loop trains the fit."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 2))
    y = X.sum(axis=1)
    layers = [fastnn.Dense(2, 4), fastnn.ReLU(), fastnn.Dense(4, 1)]
    for kwargs in ({"optimizer": fastnn.SGD(0.01, momentum=0.9)}, {"optimizer": fastnn.Adam()},
                   {"loss": fastnn.MAELoss()}, {"sample_weight": np.ones(20)}):
        ens = fastnn.Ensemble(layers, 2, seed=0)
        ens.fit(X, y, epochs=1, batch_size=4, **kwargs)
        assert ens._last_path == "members", kwargs
    ens = fastnn.Ensemble(layers, 2, seed=0)
    ens.fit(X, y, epochs=1, batch_size=4)
    assert ens._last_path == "lanes"
    walker = ens._walker
    # The fixed plan: the build's own rule (a measured plan may choose per row, by the machine).
    monkeypatch.setenv("FASTNN_PLAN", "fixed")
    wide = fastnn.Ensemble([fastnn.Dense(2, 64), fastnn.ReLU(), fastnn.Dense(64, 64), fastnn.Dense(64, 1)], 2)
    net = wide._members[0]._net
    if net.uses_blas:
        # BLAS takes the 64x64 layer at a batch of fewer than 8 rows: not the lanes' case; from 8
        # rows on, the register tile takes it where the build's rule says so.
        assert not walker.lanes_cover(net, 4, 20)
        assert walker.lanes_cover(net, 8, 16) == (64 * 64 < net.blas_min_weights_tiled)


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_lanes_kernel_against_its_numpy_twin(dtype_):
    """train_members_lanes against fastnn.reference.train_members_lanes: every member, a partial
    group, orders given, drawn from Generators and none, a member that diverges."""
    from fastnn import reference

    ens = fastnn.Ensemble(lanes_layers((2, 6, 5, 1), (fastnn.Tanh, fastnn.ReLU)), 7, dtype=dtype_, seed=5)
    net = ens._members[0]._net
    rng = np.random.default_rng(3)
    n, epochs, batch = 21, 3, 4
    Xs = [np.ascontiguousarray(rng.normal(size=(n, 2)), dtype=dtype_) for _ in range(7)]
    ys = [np.ascontiguousarray(np.cos(X.sum(axis=1)), dtype=dtype_) for X in Xs]
    orders = [np.stack([rng.permutation(n) for _ in range(epochs)]) if k % 3 == 0 else None for k in range(7)]
    members = np.array([6, 0, 5, 1, 4, 2, 3])
    lrs = np.array([0.05, 0.1, 1e300, 0.02, 0.2, 0.07, 0.01])     # member 2 diverges in its first step
    wds = np.array([0.0, 1e-2, 0.0, 0.0, 1e-3, 0.0, 0.5])
    outputs = []
    for train in (ens._walker.train_members_lanes, reference.train_members_lanes):
        params, grads = ens.get_parameters(), np.zeros_like(ens._grads)
        out = (np.zeros((7, epochs)), np.zeros(7, dtype=np.intc), np.zeros(7, dtype=np.intp), np.zeros(7, dtype=np.intp))
        rngs = [np.random.default_rng(k) if k % 3 == 1 else None for k in range(7)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert train(net, members, params, grads, Xs, ys, orders, rngs, lrs, wds, batch, epochs, *out) == 0
        outputs.append((params, grads, *out))
    rtol = 1e-4 if dtype_ == np.float32 else 1e-9
    (params, grads, losses, status, epochs_done, done), twin = outputs[0], outputs[1]
    assert list(status) == list(twin[3]) and list(epochs_done) == list(twin[4]) and list(done) == list(twin[5])
    assert status[2] in (ens._walker.BAD_LOSS, ens._walker.BAD_UPDATE) and epochs_done[2] == 0
    np.testing.assert_allclose(params, twin[0], rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(grads, twin[1], rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(losses, twin[2], rtol=rtol)


@pytest.mark.parametrize("dtype_", [np.float64, np.float32])
def test_lanes_draw_each_members_orders_as_numpy(dtype_):
    """train_members_lanes with a Generator per member (PCG64s drawn inline, a PCG64 subclass and
    an SFC64 through their function pointers, a partial last group, a member that diverges): the
    same members as with each member's orders drawn ahead by Generator.permutation, and every
    generator left in the state NumPy leaves it; a Generator shared by two lanes of one group is
    drawn lane by lane, epoch by epoch."""
    ens = fastnn.Ensemble(lanes_layers((2, 6, 1), (fastnn.ReLU,)), 11, dtype=dtype_, seed=8)
    net, walker = ens._members[0]._net, ens._walker
    rng = np.random.default_rng(4)
    n, epochs, batch, K = 23, 4, 5, 11
    Xs = [np.ascontiguousarray(rng.normal(size=(n, 2)), dtype=dtype_) for _ in range(K)]
    ys = [np.ascontiguousarray(np.sin(X.sum(axis=1)), dtype=dtype_) for X in Xs]
    lrs = np.full(K, 0.05)
    lrs[3] = 1e300                  # member 3 diverges in its first step: its stream stops there
    wds = np.zeros(K)
    kinds = [np.random.PCG64] * 8 + [_PCG64Subclass, np.random.SFC64, np.random.PCG64]

    def run(orders, rngs):
        params, grads = ens.get_parameters(), np.zeros_like(ens._grads)
        out = (np.zeros((K, epochs)), np.zeros(K, dtype=np.intc), np.zeros(K, dtype=np.intp), np.zeros(K, dtype=np.intp))
        with np.errstate(all="ignore"):
            assert walker.train_members_lanes(net, np.arange(K), params, grads, Xs, ys, orders, rngs, lrs, wds,
                                              batch, epochs, *out) == walker.OK
        return params, grads, out

    def drawn_ahead(rngs, epochs_of):
        return [np.stack([r.permutation(n) for _ in range(epochs_of[k])] +
                         [np.arange(n)] * (epochs - epochs_of[k])) for k, r in enumerate(rngs)]

    ours = [np.random.Generator(kind(50 + k)) for k, kind in enumerate(kinds)]
    params, grads, out = run([None] * K, ours)
    assert out[1][3] != walker.OK and list(out[1][:3]) == [walker.OK] * 3
    # A member draws an order for every epoch it starts (the one it stops in too).
    numpys = [np.random.Generator(kind(50 + k)) for k, kind in enumerate(kinds)]
    started = [min(epochs, int(out[2][k]) + (out[1][k] != walker.OK)) for k in range(K)]
    params_ahead, grads_ahead, out_ahead = run(drawn_ahead(numpys, started), [None] * K)
    np.testing.assert_array_equal(params, params_ahead)
    np.testing.assert_array_equal(grads, grads_ahead)
    for a, b in zip(out, out_ahead):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ours, numpys):
        _same_state(a, b)

    # One Generator for lane 0 and another lane of the first group (the group is as wide as the
    # build's vector: two doubles in the baseline build): drawn for lane 0, then the other, each epoch.
    other = min(2, walker.LANES[np.dtype(dtype_).name] - 1)
    assert other >= 1
    lrs[3] = 0.05
    shared = np.random.default_rng(9)
    rngs = [shared if k in (0, other) else np.random.default_rng(60 + k) for k in range(K)]
    params, _, out = run([None] * K, rngs)
    again, order_0, order_other = np.random.default_rng(9), [], []
    for _ in range(epochs):
        order_0.append(again.permutation(n))
        order_other.append(again.permutation(n))
    orders = []
    for k in range(K):
        own = np.random.default_rng(60 + k)
        orders.append(np.stack([own.permutation(n) for _ in range(epochs)]))
    orders[0], orders[other] = np.stack(order_0), np.stack(order_other)
    params_ahead, _, _ = run(orders, [None] * K)
    np.testing.assert_array_equal(params, params_ahead)
    _same_state(shared, again)


def test_lanes_kernel_refuses_bad_arguments():
    ens = fastnn.Ensemble(lanes_layers((1, 4, 1), (fastnn.ReLU,)), 2, seed=0)
    net, walker = ens._members[0]._net, ens._walker
    X = np.zeros((8, 1))
    out = (np.zeros((2, 1)), np.zeros(2, dtype=np.intc), np.zeros(2, dtype=np.intp), np.zeros(2, dtype=np.intp))
    args = dict(params=ens.get_parameters(), grads=np.zeros_like(ens._grads))
    with pytest.raises(ValueError, match="members\\[1\\] repeats a row"):
        walker.train_members_lanes(net, [0, 0], args["params"], args["grads"], [X, X], [X[:, 0]] * 2, [None] * 2,
                                   [None] * 2, [0.1, 0.1], [0, 0], 4, 1, *out)
    with pytest.raises(ValueError, match="members\\[1\\] is not a row"):
        walker.train_members_lanes(net, [0, 2], args["params"], args["grads"], [X, X], [X[:, 0]] * 2, [None] * 2,
                                   [None] * 2, [0.1, 0.1], [0, 0], 4, 1, *out)
    with pytest.raises(ValueError, match="orders\\[0\\] holds a row index out of range"):
        walker.train_members_lanes(net, [0, 1], args["params"], args["grads"], [X, X], [X[:, 0]] * 2,
                                   [np.full((1, 8), 8, dtype=np.intp), None], [None] * 2, [0.1, 0.1], [0, 0], 4, 1,
                                   *out)
    with pytest.raises(ValueError, match="Xs\\[1\\] and ys\\[1\\]"):
        walker.train_members_lanes(net, [0, 1], args["params"], args["grads"], [X, X[:4]], [X[:, 0]] * 2,
                                   [None] * 2, [None] * 2, [0.1, 0.1], [0, 0], 4, 1, *out)
    np.testing.assert_array_equal(args["params"], ens.get_parameters())


def test_lanes_taken_by_default_for_the_demo_and_not_where_the_tiles_run():
    """The benchmark's demo (64 members of 1-16-1, batch 16, per-member data and seeds, SGD) trains
    in lanes by default; 8-32-32-1 at batch 32, whose layers the walker runs on its register tiles,
    member by member (lanes_pay), still with the same result as the lanes."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 3, size=(64, 256, 1))
    y = np.maximum(X[..., 0] - 1, 0)
    ens = fastnn.Ensemble(lanes_layers((1, 16, 1), (fastnn.ReLU,)), 64, seed=0)
    ens.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=2, batch_size=16, seed=list(range(64)))
    assert ens._last_path == "lanes"
    tiled = fastnn.Ensemble(lanes_layers((8, 32, 32, 1), (fastnn.ReLU, fastnn.ReLU)), 2, seed=0)
    X = rng.normal(size=(64, 8))
    tiled.fit(X, X.sum(axis=1), optimizer=fastnn.SGD(0.01), epochs=1, batch_size=32, seed=[1, 2])
    assert tiled._last_path == "members"
    assert not tiled._walker.lanes_pay(tiled._members[0]._net, 32, 64)
