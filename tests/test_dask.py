"""fastnn on Dask: the scikit-learn estimators under ``joblib.parallel_backend("dask")`` and in
dask-ml's ``Incremental``, and ``fastnn.dask.fit_ensemble``, each on a real ``LocalCluster`` of two
worker processes on 127.0.0.1 that this module starts and stops itself, compared with the same work
done serially in this process.

Skipped where dask or distributed is absent (CI installs them in a step of its own: pyproject's
``dask`` extra); the ``Incremental`` tests also need dask-ml.
"""

import copy
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
sklearn = pytest.importorskip("sklearn")

import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_validate  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.dask import fit_ensemble  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    """A Client of two single-threaded worker processes on 127.0.0.1, closed after the module.

    The module runs fastnn's fixed plan (FASTNN_PLAN=fixed), here and in the workers, which inherit
    the environment: every process then computes with the same walker build, where measuring could
    pick another build in another process (on a CPU with more than one) and part the results in the
    last bit."""
    previous = os.environ.get("FASTNN_PLAN")
    os.environ["FASTNN_PLAN"] = "fixed"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        if previous is None:
            del os.environ["FASTNN_PLAN"]
        else:
            os.environ["FASTNN_PLAN"] = previous


def worker_addresses(client):
    return set(client.scheduler_info()["workers"])


def parameters(estimator):
    return estimator.model_.get_parameters()


# -- the estimators under joblib's dask backend ---------------------------------------------------


def test_grid_search_on_the_cluster_equals_the_serial_search(client):
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3, random_state=0)
    search = GridSearchCV(MLPClassifier(max_iter=15, random_state=0),
                          {"hidden_layer_sizes": [(4,), (8,)], "learning_rate_init": [1e-3, 1e-2]}, cv=3)
    serial = clone(search).fit(X, y)
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        parallel = clone(search).set_params(n_jobs=-1).fit(X, y)
    # The fits ran in the worker processes, on both of them.
    assert {task["worker"] for task in stream.data} == worker_addresses(client)
    for key in ("mean_test_score", "std_test_score", "split0_test_score", "rank_test_score"):
        np.testing.assert_array_equal(parallel.cv_results_[key], serial.cv_results_[key])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(parameters(parallel.best_estimator_), parameters(serial.best_estimator_))


def test_estimators_fitted_on_the_workers_come_back_identical(client):
    X, y = make_regression(n_samples=120, n_features=5, noise=1.0, random_state=0)
    y = y / y.std()
    regressor = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", momentum=0.9, max_iter=12, random_state=0)
    serial = cross_validate(regressor, X, y, cv=4, return_estimator=True)
    with joblib.parallel_backend("dask"):
        parallel = cross_validate(regressor, X, y, cv=4, return_estimator=True, n_jobs=-1)
    np.testing.assert_array_equal(parallel["test_score"], serial["test_score"])
    for remote, local in zip(parallel["estimator"], serial["estimator"]):
        np.testing.assert_array_equal(parameters(remote), parameters(local))
        assert remote.loss_curve_ == local.loss_curve_ and remote.n_iter_ == local.n_iter_
        # The optimizer state (SGD's momentum) came back too: one more epoch stays identical.
        remote.partial_fit(X, y)
        local.partial_fit(X, y)
        np.testing.assert_array_equal(parameters(remote), parameters(local))


# -- dask-ml's Incremental: partial_fit block by block, on the workers --------------------------------


def incremental():
    return pytest.importorskip("dask_ml.wrappers").Incremental


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_incremental_partial_fit_on_dask_blocks_equals_partial_fit_in_a_loop(client, kind):
    Incremental = incremental()
    if kind == "classifier":
        X, y = make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=3, random_state=1)
        estimator, fit_kwargs = MLPClassifier(hidden_layer_sizes=(8,), random_state=0), {"classes": [0, 1, 2]}
    else:
        X, y = make_regression(n_samples=200, n_features=6, noise=1.0, random_state=1)
        y = y / y.std()
        estimator, fit_kwargs = MLPRegressor(hidden_layer_sizes=(8,), random_state=0), {}
    X_dask, y_dask = da.from_array(X, chunks=(50, 6)), da.from_array(y, chunks=50)
    wrapped = Incremental(clone(estimator), shuffle_blocks=False)
    with distributed.get_task_stream(client) as stream:
        wrapped.fit(X_dask, y_dask, **fit_kwargs)
    assert stream.data                                 # the partial_fit calls ran on the cluster
    local = clone(estimator)
    for start in range(0, 200, 50):                    # the same blocks, in the same order
        local.partial_fit(X[start:start + 50], y[start:start + 50], **fit_kwargs)
    np.testing.assert_array_equal(parameters(wrapped.estimator_), parameters(local))
    assert wrapped.estimator_.loss_curve_ == local.loss_curve_
    np.testing.assert_array_equal(wrapped.predict(X_dask).compute(), local.predict(X))
    if kind == "classifier":
        # (dask-ml 2025.1's r2_score fails on the Dask arrays of unknown chunk sizes predict gives, with
        # dask 2026: the regressor's score is its predictions', compared above.)
        assert wrapped.score(X_dask, y_dask) == local.score(X, y)


# -- fastnn.dask.fit_ensemble: chunks of members on the workers, equal to the local fit -------------

LOSSES = {"mse": fastnn.MSELoss, "huber": lambda: fastnn.HuberLoss(0.5), "mae": fastnn.MAELoss,
          "cross_entropy": fastnn.CrossEntropyLoss, "bce_with_logits": fastnn.BCEWithLogitsLoss,
          "poisson": fastnn.PoissonLoss}
OPTIMIZERS = {"sgd": lambda lr: fastnn.SGD(lr), "momentum": lambda lr: fastnn.SGD(lr, momentum=0.9),
              "nesterov": lambda lr: fastnn.SGD(lr, momentum=0.8, nesterov=True, weight_decay=1e-3),
              "adam": lambda lr: fastnn.Adam(lr), "adamw": lambda lr: fastnn.AdamW(lr, weight_decay=0.05)}


def network(n_in=3, hidden=6, n_out=1):
    return [fastnn.Dense(n_in, hidden), fastnn.Tanh(), fastnn.Dense(hidden, hidden), fastnn.ReLU(),
            fastnn.Dense(hidden, n_out)]


def targets(loss_kind, X, rng):
    s = X.sum(axis=-1)
    if loss_kind == "cross_entropy":
        return (np.floor(np.abs(s) * 2) % 3).astype(np.intp)
    if loss_kind == "bce_with_logits":
        return (s > 0).astype(np.float64)
    if loss_kind == "poisson":
        return rng.poisson(np.exp(0.3 * s)).astype(np.float64)
    return np.sin(s) + 0.1 * rng.normal(size=s.shape)


def assert_same(ens, local, histories, expected):
    assert len(histories) == len(expected) == len(ens)
    np.testing.assert_allclose(ens.get_parameters(), local.get_parameters(), rtol=1e-12, atol=0)
    for got, want in zip(histories, expected):
        np.testing.assert_allclose(got.loss, want.loss, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got.val_loss, want.val_loss, rtol=1e-12, atol=0)
        assert (got.best_epoch, got.stopped_epoch, got.diverged_epoch, got.message) == (
            want.best_epoch, want.stopped_epoch, want.diverged_epoch, want.message)


def local_fit(ens, X, y, **kwargs):
    """A deep copy of ``ens`` fitted here (the optimizers are the caller's objects), and its histories."""
    local = copy.deepcopy(ens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return local, local.fit(X, y, **kwargs)


def test_shared_data_in_uneven_chunks_equals_the_local_fit_and_keeps_the_optimizer_state(client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.sin(X.sum(axis=1))
    ens = fastnn.Ensemble(network(), 5, seed=1)
    optimizer = fastnn.SGD(0.05, momentum=0.9)
    kwargs = dict(optimizer=optimizer, epochs=4, batch_size=8, seed=3)
    local, expected = local_fit(ens, X, y, **kwargs)
    with distributed.get_task_stream(client) as stream:
        histories = fit_ensemble(ens, X, y, client=client, chunk_size=2, **kwargs)     # chunks of 2, 2, 1
    assert sum(task["key"].startswith("_fit_chunk") for task in stream.data) == 3
    assert_same(ens, local, histories, expected)
    # The members' momentum came back: a second fit (here and there) goes on identically.
    for k in range(len(ens)):
        np.testing.assert_array_equal(ens.optimizer_state(k, optimizer)["momentum_buffer"],
                                      local.optimizer_state(k, optimizer)["momentum_buffer"])
    expected = local.fit(X, y, **kwargs)
    histories = fit_ensemble(ens, X, y, client=client, chunk_size=3, **kwargs)
    assert_same(ens, local, histories, expected)


def per_member_problem(n_members=4, n_samples=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_members, n_samples, 3))
    y = np.sin(X.sum(axis=2)) + 0.1 * rng.normal(size=(n_members, n_samples))
    weights = rng.poisson(1.0, size=(n_members, n_samples)).astype(float)
    weights[:, 0] = 1.0                                  # a positive sum for every member
    return X, y, weights


@pytest.mark.parametrize("form", ["numpy", "dask_array", "futures"])
def test_per_member_data_weights_optimizers_and_seeds_equal_the_local_fit(client, form):
    X, y, weights = per_member_problem()
    ens = fastnn.Ensemble(network(), 4, seed=2)
    optimizers = [fastnn.Adam(lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2)]      # a learning-rate sweep
    kwargs = dict(optimizer=optimizers, epochs=3, batch_size=7, seed=[5, 6, 7, 8])
    local, expected = local_fit(ens, X, y, sample_weight=weights, **kwargs)
    if form == "dask_array":        # blocks of 3 members: rechunked on the cluster to the chunks of 1
        X_in, y_in, w_in = (da.from_array(a, chunks=(3,) + a.shape[1:]) for a in (X, y, weights))
    elif form == "futures":         # each member's data already on the cluster
        X_in, y_in, w_in = (client.scatter(list(a)) for a in (X, y, weights))
    else:
        X_in, y_in, w_in = X, y, weights
    histories = fit_ensemble(ens, X_in, y_in, client=client, chunk_size=1, sample_weight=w_in, **kwargs)
    assert_same(ens, local, histories, expected)
    for k, opt in enumerate(optimizers):
        state, want = ens.optimizer_state(k, opt), local.optimizer_state(k, opt)
        assert state["step"] == want["step"] > 0
        np.testing.assert_array_equal(state["exp_avg_sq"], want["exp_avg_sq"])


def test_early_stopping_on_per_member_validation_data_equals_the_local_fit(client):
    X, y, _ = per_member_problem(n_members=3, n_samples=24, seed=4)
    X_val, y_val, w_val = per_member_problem(n_members=3, n_samples=10, seed=5)
    ens = fastnn.Ensemble(network(), 3, seed=3)
    kwargs = dict(optimizer=fastnn.SGD(0.2, momentum=0.9), epochs=25, batch_size=4, seed=0, early_stopping=True,
                  patience=2, validation_data=(X_val, y_val, w_val))
    local, expected = local_fit(ens, X, y, **kwargs)
    assert any(history.stopped_epoch is not None for history in expected)        # some member stopped early
    histories = fit_ensemble(ens, X, y, client=client, chunk_size=2, **kwargs)
    assert_same(ens, local, histories, expected)


def test_a_diverging_member_stops_is_named_once_and_the_others_train_on(client):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(30, 3)) * 10
    y = X.sum(axis=1) * 100
    ens = fastnn.Ensemble(network(), 4, seed=4)
    kwargs = dict(optimizer=[fastnn.SGD(lr) for lr in (1e-6, 1e-6, 1e-6, 1e3)], epochs=5, batch_size=10, seed=1)
    local, expected = local_fit(ens, X, y, **kwargs)
    assert [history.diverged for history in expected] == [False, False, False, True]
    with pytest.warns(RuntimeWarning, match=r"diverged for 1 of 4 members \(member 3\)"):
        histories = fit_ensemble(ens, X, y, client=client, chunk_size=2, **kwargs)
    assert_same(ens, local, histories, expected)
    assert np.isfinite(ens.get_parameters()).all()


def test_an_error_on_a_worker_is_raised_here_and_changes_nothing(client):
    X, y, _ = per_member_problem(n_members=2)
    ens = fastnn.Ensemble(network(n_out=3), 2, seed=0)
    before = ens.get_parameters()
    # Member 1's labels are class 7 of 3, in a Dask array: only the fit's check, on the worker, sees its values.
    labels = da.from_array(np.array([np.zeros(30, dtype=int), np.full(30, 7)]), chunks=(1, 30))
    with pytest.raises(ValueError, match=r"in the chunk of members 1 to 1 \(its member i is the ensemble's member 1 "
                                         r"\+ i\): y\[0\] must hold class indices in \[0, 3\), got values in \[7, 7\]"):
        fit_ensemble(ens, X, labels, client=client, chunk_size=1, loss=fastnn.CrossEntropyLoss())
    np.testing.assert_array_equal(ens.get_parameters(), before)


def bad_calls(client):
    X, y, weights = per_member_problem(n_members=3)
    nan = X.copy()
    nan[1, 2, 0] = np.nan
    return [
        (dict(client="tcp://127.0.0.1:8786"), TypeError, "client must be a distributed.Client, got str"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(epoch=3), TypeError, r"unexpected keyword argument\(s\) \['epoch'\]"),
        (dict(X=X[:2], y=y[:2]), ValueError, r"X is per member .* must have 3 entries .* got shape \(2, 30, 3\)"),
        (dict(X=X[..., :2]), ValueError, r"X must have shape \(n_samples, 3\) shared or \(3, n_samples, 3\)"),
        (dict(y=y[:, :20]), ValueError, r"y must have 30 rows, as X has, got shape \(3, 20\)"),
        (dict(X=X[0], y=y), ValueError, "y must have 30 rows"),
        (dict(X=nan), ValueError, "X must contain only finite values"),
        (dict(sample_weight=weights[:2]), ValueError, r"sample_weight is per member .* must have 3 entries"),
        (dict(optimizer=[fastnn.SGD()] * 2), ValueError, r"optimizer must be one optimizer or a list of one per "
                                                         r"member \(3\), got a list of 2"),
        (dict(optimizer="sgd"), TypeError, "optimizer must be a fastnn optimizer, got str"),
        (dict(seed=[1, 2]), ValueError, r"seed must be one seed or a list of one per member \(3\)"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(validation_data=(X[:, :5],)), TypeError, "validation_data must be a pair"),
        (dict(validation_data=(X[:, :5], y[:, :4])), ValueError, r"validation_data\[1\] must have 5 rows"),
        (dict(X=[client.scatter(X[0])] * 2), ValueError, r"X must be a list of one future per member \(3\), got 2"),
    ]


def test_bad_input_is_refused_by_name_before_anything_is_sent(client):
    X, y, _ = per_member_problem(n_members=3)
    ens = fastnn.Ensemble(network(), 3, seed=0)
    before = ens.get_parameters()
    for change, error, match in bad_calls(client):
        arguments = dict(X=X, y=y, client=client, epochs=2)
        arguments.update(change)
        with distributed.get_task_stream(client) as stream, pytest.raises(error, match=match):
            fit_ensemble(ens, arguments.pop("X"), arguments.pop("y"), **arguments)
        assert not [task for task in stream.data if task["key"].startswith("_fit_chunk")], change
        np.testing.assert_array_equal(ens.get_parameters(), before)
    with pytest.raises(TypeError, match="ensemble must be a fastnn.Ensemble, got Sequential"):
        fit_ensemble(fastnn.Sequential(network()), X[0], y[0], client=client)


@st.composite
def cases(draw):
    loss_kind = draw(st.sampled_from(sorted(LOSSES)))
    return dict(loss_kind=loss_kind, opt_kind=draw(st.sampled_from(sorted(OPTIMIZERS))),
                dtype=draw(st.sampled_from(["float32", "float64"])), n_members=draw(st.integers(1, 5)),
                chunk_size=draw(st.integers(1, 5)), per_member=draw(st.booleans()),
                weights=draw(st.sampled_from([None, "shared", "per_member"])),
                n_samples=draw(st.integers(2, 16)), batch_size=draw(st.one_of(st.none(), st.integers(1, 8))),
                epochs=draw(st.integers(1, 3)), seed=draw(st.integers(0, 1000)), shuffle=draw(st.booleans()))


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(case=cases())
def test_fuzz_fit_ensemble_equals_the_local_fit(client, case):
    rng = np.random.default_rng(case["seed"])
    K, n = case["n_members"], case["n_samples"]
    n_out = 3 if case["loss_kind"] == "cross_entropy" else 1
    ens = fastnn.Ensemble(network(n_out=n_out), K, dtype=np.dtype(case["dtype"]), seed=case["seed"])
    X = rng.normal(size=(K, n, 3) if case["per_member"] else (n, 3))
    y = targets(case["loss_kind"], X, rng)
    w = None
    if case["weights"] is not None:
        w = rng.integers(0, 3, size=(K, n) if case["weights"] == "per_member" else (n,)).astype(float)
        w[..., 0] = 1.0
    kwargs = dict(loss=LOSSES[case["loss_kind"]](), optimizer=[OPTIMIZERS[case["opt_kind"]](0.01) for _ in range(K)],
                  epochs=case["epochs"], batch_size=case["batch_size"], shuffle=case["shuffle"], seed=case["seed"],
                  sample_weight=w)
    local, expected = local_fit(ens, X, y, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        histories = fit_ensemble(ens, X, y, client=client, chunk_size=case["chunk_size"], **kwargs)
    assert_same(ens, local, histories, expected)
