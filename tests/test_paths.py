"""Every compiled path of the network walker agrees with fastnn.reference.

A Dense product in ``fastnn._walker.Network`` runs either on fastnn's own
loops or on a BLAS ``gemm`` (NumPy's OpenBLAS, CBLAS with 64-bit integers,
or SciPy's ``cython_blas``, Fortran with 32-bit integers), chosen per layer
and per batch by the Network's ``blas_min_*`` thresholds. Each *mode*
below pins that choice, and every mode must give the reference's numbers
for ``predict``, ``train_step`` and ``fit``, in both dtypes, on networks
that exercise the plan's corners: no ReLU at all, a ReLU after the last
Dense, stand-alone ReLUs (first in the network, or following a folded one),
layers one unit wide, odd widths, and one wide enough that the automatic
choice mixes BLAS and loops inside one step. Also: predictions longer than
one ``PREDICT_CHUNK``, ``FASTNN_BLAS`` in a fresh process, the walker's
builds (baseline, AVX2, AVX-512) bit for bit, and the reuse of the workspace.
"""

import gc
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn import _blas, _walker
from fastnn.reference import ReferenceMLP

# -- networks ------------------------------------------------------------------------------

#: name -> layers, "relu" or (in_features, out_features) for a Dense.
ARCHS = {
    "dense-only-5-7-3": [(5, 7), (7, 3)],
    "single-dense-6-3": [(6, 3)],
    "relu-last-3-1-4-2": [(3, 1), "relu", (1, 4), "relu", (4, 2), "relu"],
    "relu-first-4-6-2": ["relu", (4, 6), "relu", (6, 2)],
    "two-relus-3-5-2": [(3, 5), "relu", "relu", (5, 2)],
    "two-relus-first-3-4-1": ["relu", "relu", (3, 4), "relu", "relu", (4, 1), "relu"],
    "width-1-1-1-1": [(1, 1), "relu", (1, 1)],
    "odd-5-7-3": [(5, 7), "relu", (7, 3)],
    "mixed-64-128-8-1": [(64, 128), "relu", (128, 8), "relu", (8, 1)],
}
BIG = "mixed-64-128-8-1"

#: The thresholds a mode sets on the Network (a Dense product uses BLAS when
#: in * out >= blas_min_weights, min(in, out) >= blas_min_width and, for a
#: batch of 8 rows or more, in * out >= blas_min_weights_tiled); "auto"
#: keeps the walker build's own.
FORCE_LOOPS = dict(blas_min_weights=2**62)
FORCE_BLAS = dict(blas_min_weights=0, blas_min_width=0, blas_min_weights_tiled=0)
#: BLAS for the products with at least 1000 weights, and on a batch of 8 rows
#: or more with at least 8192 (the 64x128 layer always, the 128x8 one only
#: on batches of fewer than 8 rows), loops for the rest: a mix inside one
#: step, and across the batches of an epoch whose last batch is short.
MIXED = dict(blas_min_weights=1000, blas_min_width=0, blas_min_weights_tiled=8192)
MODES = ["loops", "blas", "auto", "mixed", "scipy"]
THRESHOLDS = ("blas_min_weights", "blas_min_width", "blas_min_weights_tiled")


def _layers(arch, seed):
    rng = np.random.default_rng(seed)
    return [fastnn.ReLU() if spec == "relu" else fastnn.Dense(*spec, seed=rng) for spec in ARCHS[arch]]


def thresholds_of(net):
    """The BLAS thresholds this Network has (the knobs it does not have count as 0)."""
    return {name: getattr(net, name) for name in THRESHOLDS if hasattr(net, name)}


def set_thresholds(net, **values):
    for name, value in values.items():
        if hasattr(net, name):
            setattr(net, name, value)
        else:
            assert value == 0, f"this Network has no {name}"


def _rebuild(model, blas, network_class=None, **values):
    """Replace the model's Network by one on ``blas`` (a BlasInfo), with the model's
    thresholds overridden by ``values``."""
    net = model._net
    network_class = network_class or _walker.Network
    model._net = network_class(net.plan, model._params, model._grads, blas=blas)
    set_thresholds(model._net, **{**thresholds_of(net), **values})
    return model


def make_model(arch, dtype, mode, seed=0):
    """The same network (same weights for one seed) on the path that ``mode`` names."""
    model = fastnn.Sequential(_layers(arch, seed), dtype=dtype)
    if mode == "loops":
        set_thresholds(model._net, **FORCE_LOOPS)
    elif mode == "blas":
        assert model._net.uses_blas, "no BLAS was found: the BLAS paths are not tested"
        set_thresholds(model._net, **FORCE_BLAS)
    elif mode == "mixed":
        set_thresholds(model._net, **MIXED)
    elif mode == "scipy":
        _rebuild(model, _blas._scipy_blas(), **FORCE_BLAS)
        assert model._net.uses_blas and "SciPy" in model._net.blas_source
    elif mode == "numpy":
        info = _blas._numpy_openblas()
        if info is None:
            pytest.skip("NumPy is not linked to its scipy-openblas64 here")
        _rebuild(model, info, **FORCE_BLAS)
    else:
        assert mode == "auto"
    return model


def make_data(n_samples, n_in, n_out, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_samples, n_in)).astype(dtype),
            rng.normal(size=(n_samples, n_out)).astype(dtype))


def _io(arch):
    dense = [spec for spec in ARCHS[arch] if spec != "relu"]
    return dense[0][0], dense[-1][1]


def tol(dtype, scale=1):
    return {key: value * scale for key, value in TOLERANCE[np.dtype(dtype)].items()}


def assert_params_match(model, ref, what="", **tolerance):
    """Every W and b of ``model`` against the corresponding arrays of ``ref``."""
    mine = ReferenceMLP.from_model(model).layers
    for i, (layer, ref_layer) in enumerate(zip(mine, ref.layers)):
        for name, got, expected in zip(("W", "b"), layer[1:], ref_layer[1:]):
            np.testing.assert_allclose(got, expected, err_msg=f"{what} layer {i} {name}", **tolerance)


def ref_params(ref):
    """A ReferenceMLP's parameters, flat, laid out as Sequential.get_parameters()."""
    return np.concatenate([np.concatenate([layer[1].ravel(), layer[2]]) for layer in ref.layers if layer[0] == "dense"])


def dense_uses_blas(net, n_samples):
    """For each Dense row of the plan: does the network multiply it on BLAS for this batch?"""
    limits = dict.fromkeys(THRESHOLDS, 0) | thresholds_of(net)
    kinds, ins, outs = net.plan[:, 0], net.plan[:, 1], net.plan[:, 2]
    return [bool(net.uses_blas and k * m >= limits["blas_min_weights"] and min(k, m) >= limits["blas_min_width"]
                 and (n_samples < 8 or k * m >= limits["blas_min_weights_tiled"]))
            for kind, k, m in zip(kinds, ins, outs) if kind == _walker.KIND_DENSE]


# -- the paths are what they say -----------------------------------------------------------

def test_the_modes_take_the_paths_they_name():
    n = 64
    assert dense_uses_blas(make_model(BIG, np.float64, "loops")._net, n) == [False] * 3
    assert dense_uses_blas(make_model(BIG, np.float64, "blas")._net, n) == [True] * 3
    assert dense_uses_blas(make_model(BIG, np.float64, "mixed")._net, n) == [True, False, False]
    assert dense_uses_blas(make_model(BIG, np.float64, "mixed")._net, 1) == [True, True, False]
    # The defaults a model is built with (the walker build's) mix BLAS and
    # loops on this network for one row; from 8 rows on, the build's register
    # tiles keep the layers below its BLAS_MIN_WEIGHTS_TILED.
    auto = make_model(BIG, np.float64, "auto")._net
    assert dense_uses_blas(auto, 1) == [True, True, False]
    tiled = _walker.BLAS_MIN_WEIGHTS_TILED
    assert (auto.blas_min_weights, auto.blas_min_width, auto.blas_min_weights_tiled) == \
        (_walker.BLAS_MIN_WEIGHTS, _walker.BLAS_MIN_WIDTH, tiled)
    assert tiled == {"baseline": 128, "avx2": 4096, "avx512": 131072}[_walker.ISA]
    assert dense_uses_blas(auto, n) == [64 * 128 >= tiled, 128 * 8 >= tiled, False]
    scipy_net = make_model(BIG, np.float32, "scipy")._net
    assert scipy_net.uses_blas and dense_uses_blas(scipy_net, 1) == [True] * 3
    assert _blas._scipy_blas().kind == _blas.KIND_FORTRAN32
    assert make_model(BIG, np.float64, "auto")._net.blas_source == _blas.find_blas().source


# -- predict --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_predict_matches_reference(arch, mode, dtype):
    model = make_model(arch, dtype, mode)
    ref = ReferenceMLP.from_model(model)
    n_in, n_out = _io(arch)
    for n_samples in (1, 3, 64):
        X, _ = make_data(n_samples, n_in, n_out, dtype, seed=n_samples)
        out = model.predict(X)
        assert out.dtype == dtype and out.shape == (n_samples, n_out)
        np.testing.assert_allclose(out, ref.predict(X), err_msg=f"{n_samples} rows", **tol(dtype))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", ["relu-first-4-6-2", "relu-last-3-1-4-2", BIG])
@pytest.mark.parametrize("n_samples", [_walker.PREDICT_CHUNK, _walker.PREDICT_CHUNK + 1, 2500])
def test_predict_more_rows_than_a_chunk(arch, mode, n_samples, dtype):
    model = make_model(arch, dtype, mode)
    n_in, n_out = _io(arch)
    X, _ = make_data(n_samples, n_in, n_out, dtype)
    out = model.predict(X)
    assert out.shape == (n_samples, n_out)
    np.testing.assert_allclose(out, ReferenceMLP.from_model(model).predict(X), **tol(dtype))
    # Each chunk's rows land where they belong: the tail agrees with predicting it alone.
    tail = slice(n_samples - 7, None)
    np.testing.assert_allclose(out[tail], model.predict(X[tail]), **tol(dtype))


# -- train_step -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("n_samples", [1, 17, 64])
def test_train_step_matches_reference(arch, mode, n_samples, dtype):
    model = make_model(arch, dtype, mode)
    ref = ReferenceMLP.from_model(model)
    X, y = make_data(n_samples, *_io(arch), dtype)
    for step in range(3):
        loss = model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.05))
        ref_loss = ref.train_step(X, y, 0.05)
        assert loss == pytest.approx(ref_loss, rel=tol(dtype, 10)["rtol"], abs=tol(dtype, 10)["atol"]), step
    assert_params_match(model, ref, **tol(dtype, 10))


# -- fit ------------------------------------------------------------------------------------

#: (n_samples, batch_size): one full batch; batches that divide n; a last
#: short batch of one row; of five rows; batch_size 1; a batch larger than
#: n (the full batch); and, on the wide network, a full-batch size above the
#: mixed mode's BLAS threshold with a last batch of one row below it.
FITS = [(40, 40), (40, 8), (41, 8), (40, 7), (7, 1), (10, 100), (41, 20)]


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_fit_matches_reference(arch, mode, shuffle, dtype):
    n_in, n_out = _io(arch)
    for n_samples, batch_size in FITS:
        model = make_model(arch, dtype, mode)
        ref = ReferenceMLP.from_model(model)
        X, y = make_data(n_samples, n_in, n_out, dtype)
        lr = 0.01 if arch == BIG else 0.05
        history = model.fit(X, y, optimizer=fastnn.SGD(lr=lr), epochs=2, batch_size=batch_size,
                            shuffle=shuffle, seed=3)
        rng = np.random.default_rng(3)
        expected = [ref.fit_epoch(X, y, lr, min(batch_size, n_samples),
                                  order=rng.permutation(n_samples) if shuffle else None)
                    for _ in range(2)]
        what = f"n_samples={n_samples}, batch_size={batch_size}"
        np.testing.assert_allclose(history.loss, expected, err_msg=what, **tol(dtype, 100))
        assert_params_match(model, ref, what, **tol(dtype, 100))


def test_fit_epoch_in_order_equals_full_batch_steps_exactly(dtype):
    """Full-batch fit in order and train_step take the same compiled step: same bits."""
    for mode in MODES:
        stepped, fitted = make_model(BIG, dtype, mode), make_model(BIG, dtype, mode)
        X, y = make_data(64, *_io(BIG), dtype)
        for _ in range(3):
            stepped.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01))
        fitted.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=3, shuffle=False)
        np.testing.assert_array_equal(fitted.get_parameters(), stepped.get_parameters(), err_msg=mode)


# -- the walker's builds (baseline, AVX2, AVX-512) --------------------------------------------

def _walker_builds():
    import importlib

    from fastnn import _ops

    builds = {"baseline": importlib.import_module("fastnn._walker_baseline")}
    for name, runs in (("avx2", _ops.cpu_has_avx2()), ("avx512", _ops.cpu_has_avx512())):
        if runs:
            try:
                builds[name] = importlib.import_module(f"fastnn._walker_{name}")
            except ImportError:
                pass
    return builds


def assert_builds_agree(results, builds, dtype, what):
    """``results[name]`` (arrays) of each build: the same bits as the first build whose
    register tiles round alike (TILE_FMA: fused in the AVX2 and AVX-512 builds, not
    in the baseline's), and the same as the baseline's to the dtype's rounding."""
    for name, got in results.items():
        twin = next(other for other in builds if builds[other].TILE_FMA == builds[name].TILE_FMA)
        for i, (mine, theirs) in enumerate(zip(got, results[twin])):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{what}: {name} build against {twin}, item {i}")
        for i, (mine, theirs) in enumerate(zip(got, results["baseline"])):
            np.testing.assert_allclose(mine, theirs, err_msg=f"{what}: {name} build against baseline, item {i}",
                                       **tol(dtype, 100))


@pytest.mark.parametrize("mode", ["loops", "blas", "mixed"])
@pytest.mark.parametrize("arch", [BIG, "relu-first-4-6-2", "two-relus-first-3-4-1", "relu-last-3-1-4-2"])
def test_walker_builds_are_bit_identical(arch, mode, dtype):
    """Every build of the walker this machine can run gives the same bits as the other builds whose
    tiles round alike (the AVX2 and AVX-512 builds: fused multiply-adds), and the baseline's to rounding."""
    builds = _walker_builds()
    if len(builds) < 2:
        pytest.skip("only the baseline build of the walker runs on this machine")
    X, y = make_data(41, *_io(arch), dtype)
    X_big, _ = make_data(2500, *_io(arch), dtype, seed=9)
    results = {}
    for name, module in builds.items():
        model = make_model(arch, dtype, mode)
        _rebuild(model, _blas.find_blas(), network_class=module.Network)
        assert type(model._net).__module__ == module.__name__
        losses = [model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01)) for _ in range(3)]
        losses += model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=8, seed=0).loss
        results[name] = (losses, model.get_parameters(), model.predict(X_big))
    assert_builds_agree({name: [np.array(r[0]), r[1], r[2]] for name, r in results.items()}, builds, dtype, arch)


#: (in, out) of a Dense layer and batch sizes that, on own loops, reach every
#: case of the register tile (fastnn/_tile.h) in every build: blocks of 4
#: rows and leftover rows, two-vector and one-vector column blocks, and a
#: partly filled last vector of every length up to the widest one (16
#: floats with AVX-512), in the forward product (columns: the batch), dW
#: (columns: the outputs) and dX (columns: the batch).
TILE_LAYERS = [(4, 8), (5, 9), (6, 13), (9, 35), (12, 19), (33, 47), (7, 64)]
TILE_BATCHES = [8, 9, 11, 15, 16, 17, 23, 31, 33, 40, 47, 64]


@pytest.mark.parametrize("k,m", TILE_LAYERS)
def test_own_loop_tiles_match_the_reference_in_every_build(k, m, dtype):
    builds = _walker_builds()
    results = {}
    for name, module in builds.items():
        results[name] = []
        for n in TILE_BATCHES:
            rng = np.random.default_rng(n)
            model = fastnn.Sequential([fastnn.Dense(k, m, seed=rng), fastnn.ReLU(), fastnn.Dense(m, 3, seed=rng)],
                                      dtype=dtype)
            _rebuild(model, _blas.find_blas(), network_class=module.Network, **FORCE_LOOPS)
            assert dense_uses_blas(model._net, n) == [False, False]
            ref = ReferenceMLP.from_model(model)
            X, y = make_data(n, k, 3, dtype, seed=n)
            for step in range(2):
                loss = model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.05))
                expected = ref.train_step(X, y, 0.05)
                assert loss == pytest.approx(expected, rel=tol(dtype, 10)["rtol"], abs=tol(dtype, 10)["atol"]), \
                    (name, n, step)
            assert_params_match(model, ref, f"{name} build, batch {n}", **tol(dtype, 10))
            np.testing.assert_allclose(model.predict(X), ref.predict(X), err_msg=f"{name} build, batch {n}",
                                       **tol(dtype, 10))
            results[name].append(model.get_parameters())
    assert_builds_agree(results, builds, dtype, f"Dense({k}, {m}) batches {TILE_BATCHES}")


# -- SciPy's Fortran BLAS against NumPy's OpenBLAS --------------------------------------------

@pytest.mark.parametrize("arch", [BIG, "relu-last-3-1-4-2", "relu-first-4-6-2"])
def test_scipy_fortran_blas_agrees_with_numpy_openblas(arch, dtype):
    scipy_model = make_model(arch, dtype, "scipy")
    numpy_model = make_model(arch, dtype, "numpy")
    assert numpy_model._net.uses_blas and "NumPy" in numpy_model._net.blas_source
    ref = ReferenceMLP.from_model(numpy_model)
    X, y = make_data(41, *_io(arch), dtype)
    for model in (scipy_model, numpy_model):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01))
        model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=8, seed=0)
    ref.train_step(X, y, 0.01)
    rng = np.random.default_rng(0)
    for _ in range(2):
        ref.fit_epoch(X, y, 0.01, 8, order=rng.permutation(41))
    for model in (scipy_model, numpy_model):
        assert_params_match(model, ref, **tol(dtype, 100))
    np.testing.assert_allclose(scipy_model.get_parameters(), numpy_model.get_parameters(), **tol(dtype, 100))
    X_big, _ = make_data(2500, *_io(arch), dtype)
    np.testing.assert_allclose(scipy_model.predict(X_big), numpy_model.predict(X_big), **tol(dtype, 100))
    np.testing.assert_allclose(scipy_model.predict(X_big), ref.predict(X_big), **tol(dtype, 100))


# -- FASTNN_BLAS in a fresh process ---------------------------------------------------------------

_SUBPROCESS_SCRIPT = r"""
import json, sys
import numpy as np
import fastnn
from fastnn.reference import ReferenceMLP

sizes = [(64, 128), "relu", (128, 8), "relu", (8, 1)]
rng = np.random.default_rng(0)
model = fastnn.Sequential([fastnn.ReLU() if s == "relu" else fastnn.Dense(*s, seed=rng) for s in sizes])
ref = ReferenceMLP.from_model(model)
X = np.random.default_rng(1).normal(size=(64, 64))
y = np.random.default_rng(2).normal(size=(64, 1))
for _ in range(3):
    model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01))
    ref.train_step(X, y, 0.01)
model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=20, shuffle=False)
for _ in range(2):
    ref.fit_epoch(X, y, 0.01, 20)
X_big = np.random.default_rng(3).normal(size=(2500, 64))
diff = float(np.max(np.abs(model.predict(X_big) - ref.predict(X_big))))
np.save(sys.argv[1], model.get_parameters())
print(json.dumps({"uses_blas": bool(model._net.uses_blas), "source": model._net.blas_source,
                  "predict_diff": diff}))
"""


@pytest.mark.parametrize("choice", ["none", "scipy"])
def test_fastnn_blas_environment_variable(choice, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_PLAN", "fixed")
    # The fixed plan there and here: the same build and thresholds, whatever the planner would pick.
    env = dict(os.environ, FASTNN_BLAS=choice, FASTNN_PLAN="fixed")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    saved = tmp_path / "params.npy"
    result = subprocess.run([sys.executable, "-c", _SUBPROCESS_SCRIPT, str(saved)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    params = np.load(saved)
    # The same run here, on the same path, by hand.
    mode = "loops" if choice == "none" else "scipy"
    rng = np.random.default_rng(0)
    layers = [fastnn.ReLU() if s == "relu" else fastnn.Dense(*s, seed=rng) for s in ARCHS[BIG]]
    here = fastnn.Sequential(layers)
    if choice == "none":
        assert report["uses_blas"] is False and report["source"].startswith("none")
        set_thresholds(here._net, **FORCE_LOOPS)
    else:
        assert report["uses_blas"] is True and "SciPy" in report["source"]
        _rebuild(here, _blas._scipy_blas())
    ref = ReferenceMLP.from_model(here)
    X = np.random.default_rng(1).normal(size=(64, 64))
    y = np.random.default_rng(2).normal(size=(64, 1))
    for _ in range(3):
        here.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01))
        ref.train_step(X, y, 0.01)
    here.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=20, shuffle=False)
    for _ in range(2):
        ref.fit_epoch(X, y, 0.01, 20)
    assert report["predict_diff"] < 1e-12, (mode, report)
    np.testing.assert_allclose(params, ref_params(ref), **tol(np.float64, 100))
    # Same code path, same thresholds, same data: the same bits as in this process.
    np.testing.assert_array_equal(params, here.get_parameters())


# -- the workspace ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["loops", "blas", "auto"])
def test_repeated_steps_allocate_nothing(mode):
    model = make_model(BIG, np.float64, mode)
    X, y = make_data(64, *_io(BIG), np.float64)
    sgd, mse = fastnn.SGD(lr=0.001), fastnn.MSELoss()
    workspace = 64 * model._net.workspace_per_sample * 8
    assert workspace > 100_000
    for _ in range(3):
        model.train_step(X, y, mse, sgd)
        model.predict(X)
    gc.collect()
    tracemalloc.start()
    try:
        first, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100):
            model.train_step(X, y, mse, sgd)
        gc.collect()
        last, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            model.predict(X)
        _, predict_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last - first < 10_000
    # Not even for the length of a step: no workspace-sized (or layer-sized) buffer is made.
    assert peak - first < workspace / 10, (peak - first, workspace)
    assert predict_peak - first < workspace / 10, (predict_peak - first, workspace)


@pytest.mark.parametrize("mode", MODES)
def test_a_larger_batch_then_a_smaller_one(mode, dtype):
    model = make_model(BIG, dtype, mode)
    ref = ReferenceMLP.from_model(model)
    X, y = make_data(300, *_io(BIG), dtype)
    lr = 0.005
    for rows in (slice(0, 200), slice(200, 207), slice(207, 208), slice(208, 300)):
        model.train_step(X[rows], y[rows], fastnn.MSELoss(), fastnn.SGD(lr=lr))
        ref.train_step(X[rows], y[rows], lr)
    model.fit(X, y, optimizer=fastnn.SGD(lr=lr), epochs=1, batch_size=150, shuffle=False)
    ref.fit_epoch(X, y, lr, 150)
    model.fit(X[:50], y[:50], optimizer=fastnn.SGD(lr=lr), epochs=1, batch_size=9, shuffle=False)
    ref.fit_epoch(X[:50], y[:50], lr, 9)
    assert_params_match(model, ref, **tol(dtype, 100))
    X_big, _ = make_data(2500, *_io(BIG), dtype, seed=5)
    np.testing.assert_allclose(model.predict(X_big), ref.predict(X_big), **tol(dtype, 100))
    np.testing.assert_allclose(model.predict(X[:3]), ref.predict(X[:3]), **tol(dtype, 100))
    model.train_step(X[:2], y[:2], fastnn.MSELoss(), fastnn.SGD(lr=lr))
    ref.train_step(X[:2], y[:2], lr)
    assert_params_match(model, ref, **tol(dtype, 100))
