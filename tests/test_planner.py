"""The planner (fastnn._planner): which walker build runs a network and, per Dense layer, BLAS or own loops.

No test here depends on timing: the measurements are injected (the one
function that times, ``_planner.time_networks``, is replaced by a table), or
the plan is forced. What is checked: the plan follows the measurements, is
remembered in the cache file and read back, degrades to memory when the
cache cannot be written or read, is the fixed plan under FASTNN_PLAN=fixed,
is shown by ``python -m fastnn info``, and never changes results beyond
rounding.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _planner, _walker, reference
from conftest import TOLERANCE

BLAS, TILES = _planner.BLAS, _planner.TILES


@pytest.fixture(autouse=True)
def measuring(monkeypatch, tmp_path):
    """Each test measures (FASTNN_PLAN unset) into a cache directory of its own."""
    monkeypatch.delenv("FASTNN_PLAN", raising=False)
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path / "cache"))
    yield


class FakeTimer:
    """time_networks from a table: a layer (one-row network) costs ``layer(build, in, out, choice, batch)``,
    a whole network ``network(build)``; every spec timed is recorded."""

    def __init__(self, layer=None, network=None):
        self.layer = layer or (lambda build, n_in, n_out, choice, batch: 1.0 if choice == TILES else 2.0)
        self.network = network or (lambda build: {"baseline": 3.0, "avx2": 2.0, "avx512": 1.0}[build])
        self.calls = []

    def __call__(self, specs):
        return [self.one(*spec) for spec in specs]

    def one(self, build, rows, dtype, row_tiled, batch):
        self.calls.append((build, tuple(map(tuple, rows)), None if row_tiled is None else tuple(row_tiled), batch))
        assert build in _walker.BUILDS
        if len(rows) == 1 and row_tiled is not None:
            return self.layer(build, int(rows[0][1]), int(rows[0][2]), row_tiled[0], batch)
        # A whole network: the build's factor times the sum of its Dense layers' costs, each on
        # the side row_tiled (or the build's rule) gives it at this batch.
        module, total = _walker.build(build), 0.0
        for i, (kind, n_in, n_out) in enumerate(np.asarray(rows)[:, :3].tolist()):
            if kind == _walker.KIND_DENSE:
                if row_tiled is None:
                    on_blas = n_in * n_out >= module.BLAS_MIN_WEIGHTS_TILED
                else:
                    on_blas = batch >= row_tiled[i]
                eligible = _planner._eligible(n_in, n_out, module) and _planner._blas_found()
                total += self.layer(build, n_in, n_out, BLAS if on_blas and eligible else TILES, batch)
        return self.network(build) * total


def medium(dtype=np.float64, seed=0):
    return fastnn.Sequential([fastnn.Dense(16, 64, seed=seed), fastnn.ReLU(), fastnn.Dense(64, 64, seed=seed + 1),
                              fastnn.Tanh(), fastnn.Dense(64, 1, seed=seed + 2)], dtype=dtype)


def dense_choices(model):
    return model._plan.layer_choices(model._net.plan)


def test_fixed_plan_under_FASTNN_PLAN_fixed(monkeypatch):
    monkeypatch.setenv("FASTNN_PLAN", "fixed")
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert model._plan == _planner.Plan(_walker.ISA, None, "fixed")
    assert type(model._net).__module__ == f"fastnn._walker_{_walker.ISA}"
    assert model._net.row_blas_min_batch is None
    assert model._net.blas_min_weights_tiled == _walker.BLAS_MIN_WEIGHTS_TILED
    assert timer.calls == []
    assert not os.path.exists(os.environ["FASTNN_CACHE_DIR"])


def test_measured_plan_follows_the_measurements_and_is_cached(monkeypatch):
    # BLAS wins the 64x64 layer only; the AVX2 build wins the network (where it runs).
    timer = FakeTimer(layer=lambda build, n_in, n_out, choice, batch: (1.0 if choice == BLAS else 2.0)
                      if (n_in, n_out) == (64, 64) else (1.0 if choice == TILES else 2.0),
                      network=lambda build: 1.0 if build == "avx2" else 2.0)
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    builds = _planner._candidate_builds()
    expected_build = "avx2" if "avx2" in builds else builds[-1]
    assert model._plan.build == expected_build and model._plan.source == "measured"
    assert type(model._net).__module__ == f"fastnn._walker_{expected_build}"
    eligible = _planner._blas_found()
    if eligible:
        # 16x64 and 64x64 may take BLAS (64x1 is narrower than BLAS_MIN_WIDTH): only those were timed.
        assert dense_choices(model) == ["tiles", "blas", "tiles"]
        assert list(model._net.row_blas_min_batch) == [TILES, BLAS, TILES]
        timed_layers = {(c[0], c[1][0][1], c[1][0][2]) for c in timer.calls if len(c[1]) == 1}
        assert timed_layers == {(b, 16, 64) for b in builds} | {(b, 64, 64) for b in builds}
        # 256 rows, then 128 and 32 rows where BLAS won at the larger batch.
        assert (sorted(c[3] for c in timer.calls if len(c[1]) == 1 and c[1][0][1] == 64)
                == sorted([32, 32, 128, 128, 256, 256] * len(builds)))
        assert sorted(c[3] for c in timer.calls if len(c[1]) == 1 and c[1][0][1] == 16) == [256, 256] * len(builds)
    with open(_planner.cache_path()) as f:
        saved = json.load(f)
    assert saved["key"] == _planner.cache_key()
    assert saved["choices"][f"net:{_planner._shape_key(model._net.plan, np.dtype(np.float64))}"] == expected_build
    assert _planner.cache_path().startswith(os.environ["FASTNN_CACHE_DIR"])
    assert not _planner.cache_path().startswith(os.path.dirname(fastnn.__file__))

    # A second model of the same shapes: from memory, nothing timed again.
    before = len(timer.calls)
    again = medium(seed=5)
    assert again._plan.build == expected_build and again._plan.source == "cache"
    assert len(timer.calls) == before
    # A new process (a fresh store) reads the file: nothing timed.
    monkeypatch.setattr(_planner, "_store", _planner._Store())
    third = medium(seed=6)
    assert third._plan.source == "cache" and third._plan.build == expected_build
    assert len(timer.calls) == before


@pytest.mark.skipif(not _planner._blas_found(), reason="no BLAS: every layer runs on fastnn's loops")
def test_blas_from_the_batch_where_it_wins(monkeypatch):
    """BLAS wins at 128 rows but not at 32: the layer takes it from 64 rows on, the tiles below."""
    timer = FakeTimer(layer=lambda build, n_in, n_out, choice, batch:
                      (1.0 if choice == BLAS else 2.0) if batch >= 128 else (1.0 if choice == TILES else 2.0))
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert list(model._net.row_blas_min_batch) == [64, 64, TILES]
    assert dense_choices(model) == ["blas from 64 rows", "blas from 64 rows", "tiles"]
    # The results of both sides of the crossover agree with the reference.
    ref = reference.ReferenceMLP.from_model(model)
    for n in (9, 63, 64, 200):
        X = np.random.default_rng(n).standard_normal((n, 16))
        np.testing.assert_allclose(model.predict(X), ref.predict(X), **TOLERANCE[np.dtype(np.float64)])


def test_other_dtype_and_shapes_are_planned_apart(monkeypatch):
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    medium(np.float64)
    count = len(timer.calls)
    assert medium(np.float32)._plan.source == "measured"
    assert len(timer.calls) > count or len(_planner._candidate_builds()) == 1


@pytest.mark.parametrize("damage", ["not json", json.dumps({"key": {"cpu": "another"}, "choices": {"x": 1}}),
                                    json.dumps([1, 2])])
def test_damaged_or_foreign_cache_file_is_measured_anew(monkeypatch, damage):
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    path = _planner.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(damage)
    model = medium()
    assert model._plan.source == "measured"
    with open(path) as f:
        assert json.load(f)["key"] == _planner.cache_key()   # replaced by a good one


def test_unwritable_cache_directory_degrades_to_memory(monkeypatch, tmp_path):
    # A cache "directory" under a regular file can be neither made nor written (even by root).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(blocker / "cache"))
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert model._plan.source == "measured"
    assert "measuring in memory" in _planner.describe()["cache"]
    count = len(timer.calls)
    assert medium(seed=3)._plan.source == "cache"    # remembered in memory
    assert len(timer.calls) == count
    X = np.random.default_rng(0).standard_normal((4, 16))
    assert model.predict(X).shape == (4, 1)


def test_cache_directory_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path / "explicit"))
    assert _planner.cache_dir() == str(tmp_path / "explicit")
    monkeypatch.delenv("FASTNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _planner.cache_dir() == str(tmp_path / "xdg" / "fastnn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _planner.cache_dir() == str(tmp_path / "home" / ".cache" / "fastnn")


def test_cache_key_names_cpu_version_and_blas():
    key = _planner.cache_key()
    assert key["fastnn"] == fastnn.__version__
    assert key["cpu"] and "numpy " + np.__version__ in key["blas"]


def test_tune_measures_again_and_replaces_the_cache(monkeypatch):
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    first = len(timer.calls)
    assert first > 0 or len(_planner._candidate_builds()) == 1
    report = fastnn.tune([model])
    assert len(timer.calls) == 2 * first
    assert report["mode"] == "measure" and report["cache_file"] == _planner.cache_path()
    assert f"net:{_planner._shape_key(model._net.plan, np.dtype(np.float64))}" in report["choices"]


def test_tune_without_models_plans_the_benchmark_networks(monkeypatch):
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    report = fastnn.tune()
    nets = [k for k in report["choices"] if k.startswith("net:")]
    assert len(nets) == 10     # five networks, two dtypes
    assert any("784x512" in k for k in nets) and any(k.startswith("net:float32") for k in nets)


def test_import_measures_nothing(tmp_path):
    env = dict(os.environ, FASTNN_CACHE_DIR=str(tmp_path / "c"))
    code = ("import fastnn, sys; from fastnn import _planner; "
            "assert _planner._store.path is None, _planner._store.path; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("plan", ["fixed", "measure"])
def test_info_shows_the_plan(tmp_path, plan):
    env = dict(os.environ, FASTNN_CACHE_DIR=str(tmp_path / "c"), FASTNN_PLAN=plan)
    out = subprocess.run([sys.executable, "-m", "fastnn", "info"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert f"plan: {plan} (FASTNN_PLAN={plan})" in out
    assert f"fixed plan: the {_walker.ISA} build" in out
    if plan == "measure":
        assert f"cache: no cache file yet ({tmp_path / 'c'}" in out
    else:
        assert "cache:" not in out
    facts = fastnn.show_config(mode="dicts")["runtime"]["plan"]
    assert facts["builds"] == list(_walker.BUILDS)


def test_forced_plan_and_plan_validation(monkeypatch):
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    plan = _planner.Plan(_walker.BUILDS[0], (BLAS, BLAS, BLAS), "forced")
    with _planner.forced(plan):
        model = medium()
    assert model._plan is plan and timer.calls == []
    assert list(model._net.row_blas_min_batch) == [BLAS] * 3
    with pytest.raises(ValueError, match="one int per plan row"):
        model._net.row_blas_min_batch = [0]
    with pytest.raises(ValueError, match=">= 0"):
        model._net.row_blas_min_batch = [0, -1, 0]
    model._net.row_blas_min_batch = None
    assert model._net.row_blas_min_batch is None
    with pytest.raises(ValueError, match="is not one this CPU runs"):
        _walker.build("sse9")


def _plans():
    """Every build with every layer on BLAS, every layer on the tiles, and the build's rule."""
    for build in _walker.BUILDS:
        for rows in (None, (BLAS,) * 3, (TILES,) * 3):
            yield _planner.Plan(build, rows, "forced")


@pytest.mark.parametrize("plan", list(_plans()), ids=lambda p: f"{p.build}-{'rule' if p.row_batch is None else 'blas' if p.row_batch[0] == 0 else 'tiles'}")
def test_results_agree_whatever_the_plan(monkeypatch, plan, dtype):
    """The same model and data under the fixed plan and a forced one: the same to the dtype's rounding."""
    monkeypatch.setenv("FASTNN_PLAN", "fixed")
    rng = np.random.default_rng(7)
    X = rng.standard_normal((96, 16)).astype(dtype)
    y = rng.standard_normal((96, 1)).astype(dtype)
    fixed = medium(dtype)
    with _planner.forced(plan):
        other = medium(dtype)
    assert type(other._net).__module__ == f"fastnn._walker_{plan.build}"
    tol = TOLERANCE[np.dtype(dtype)]
    np.testing.assert_allclose(other.predict(X), fixed.predict(X), **tol)
    h1 = fixed.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=32, seed=0)
    h2 = other.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=2, batch_size=32, seed=0)
    np.testing.assert_allclose(h2.loss, h1.loss, **tol)
    np.testing.assert_allclose(other.get_parameters(), fixed.get_parameters(), **tol)
    ref = reference.ReferenceMLP.from_model(other)
    np.testing.assert_allclose(other.predict(X), ref.predict(X), **tol)


def test_close_timings_keep_the_fixed_plan(monkeypatch):
    """Within MARGIN, neither a layer's side nor another build is 'faster': the fixed plan's rule and build stand."""
    timer = FakeTimer(layer=lambda build, n_in, n_out, choice, batch: 1.0 if choice == TILES else 1.03,
                      network=lambda build: 1.0 if build != _walker.ISA else 1.03)
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert model._plan.build == _walker.ISA
    if _planner._blas_found():
        rule = _walker.BLAS_MIN_WEIGHTS_TILED
        expected = [BLAS if n_in * n_out >= rule else TILES for n_in, n_out in ((16, 64), (64, 64))] + [TILES]
        assert list(model._net.row_blas_min_batch) == expected


# -- robustness: measuring or the cache failing never stops a model from being built -----------

@pytest.fixture
def fresh_warning(monkeypatch):
    """A process that has not warned about a failed measurement yet, with a fresh store."""
    monkeypatch.setattr(_planner, "_warned", False)
    monkeypatch.setattr(_planner, "_store", _planner._Store())


def _boom(*args, **kwargs):
    raise RuntimeError("timer exploded")


def test_failure_while_measuring_falls_back_to_the_fixed_plan_warning_once(monkeypatch, fresh_warning):
    monkeypatch.setattr(_planner, "time_networks", _boom)
    with pytest.warns(RuntimeWarning, match=r"could not measure .*RuntimeError: timer exploded.*fixed plan") as got:
        model = medium()
    assert len([w for w in got if "could not measure" in str(w.message)]) == 1
    assert model._plan == _planner.Plan(_walker.ISA, None, "fallback")
    assert type(model._net).__module__ == f"fastnn._walker_{_walker.ISA}"
    assert model._net.row_blas_min_batch is None
    # Another model (same or other shapes): no second warning, and the model still works.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = medium(np.float32, seed=4)
        other = fastnn.Sequential([fastnn.Dense(8, 32, seed=0), fastnn.ReLU(), fastnn.Dense(32, 1, seed=1)])
    assert again._plan.source == other._plan.source == "fallback"
    X = np.random.default_rng(0).standard_normal((40, 16))
    np.testing.assert_allclose(model.predict(X), reference.ReferenceMLP.from_model(model).predict(X),
                               **TOLERANCE[np.dtype(np.float64)])
    report = _planner.describe()
    assert report["measure_error"] == "RuntimeError: timer exploded"
    from fastnn._config import _format_plan
    assert any("measuring failed (RuntimeError: timer exploded)" in line for line in _format_plan(report))


@pytest.mark.parametrize("where", ["_row_batch", "_candidate_builds", "_layer_choice"])
def test_any_failure_inside_the_planner_falls_back(monkeypatch, fresh_warning, where):
    monkeypatch.setattr(_planner, "time_networks", FakeTimer())
    monkeypatch.setattr(_planner, where, lambda *a, **k: (_ for _ in ()).throw(MemoryError("no room")))
    with pytest.warns(RuntimeWarning, match="MemoryError: no room"):
        model = medium()
    assert model._plan.source == "fallback" and model._plan.build == _walker.ISA
    assert model.fit(np.ones((8, 16)), np.ones((8, 1)), epochs=1).loss[0] >= 0


def test_failed_measurement_is_retried_by_tune(monkeypatch, fresh_warning):
    monkeypatch.setattr(_planner, "time_networks", _boom)
    with pytest.warns(RuntimeWarning):
        model = medium()
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    assert medium()._plan.source == "fallback"        # remembered: not measured again by a build
    assert timer.calls == []
    fastnn.tune([model])
    assert medium()._plan.source == "cache"
    assert timer.calls or len(_planner._candidate_builds()) == 1


def test_unusable_cache_key_measures_in_memory(monkeypatch, fresh_warning):
    """NumPy's or the BLAS's description failing: no cache file, the plan measured in memory."""
    monkeypatch.setattr(_planner, "cache_key", _boom)
    monkeypatch.setattr(_planner, "_cache_path", lambda *a: _boom())
    monkeypatch.setattr(_planner, "time_networks", FakeTimer())
    model = medium()
    assert model._plan.source == "measured"
    assert "measuring in memory" in _planner._store.note
    assert medium(seed=2)._plan.source == "cache"
    assert not os.path.exists(os.environ["FASTNN_CACHE_DIR"])


def test_unreadable_cache_file_degrades_to_memory(monkeypatch, fresh_warning):
    """The cache file's path is a directory: neither read nor replaced; the plan lives in memory."""
    os.makedirs(_planner.cache_path())
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert model._plan.source == "measured"
    assert "measuring in memory" in _planner._store.note
    assert os.path.isdir(_planner.cache_path())
    assert not [name for name in os.listdir(os.path.dirname(_planner.cache_path())) if name.endswith(".tmp")]
    count = len(timer.calls)
    assert medium(seed=1)._plan.source == "cache" and len(timer.calls) == count


def test_cache_write_failing_otherwise_degrades_to_memory(monkeypatch, fresh_warning):
    """Any error while writing (here: os.replace refused) keeps the choices in memory, no temporary left."""
    def refuse(src, dst):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(_planner, "time_networks", FakeTimer())
    model = medium()
    assert model._plan.source == "measured"
    assert "not writable (PermissionError: read-only file system): measuring in memory" in _planner._store.note
    directory = os.path.dirname(_planner.cache_path())
    assert os.listdir(directory) == []


@pytest.mark.parametrize("bad", [-3, "tiles", 2 ** 70, True, 1.5, None])
def test_damaged_choices_in_a_good_cache_file_are_dropped(monkeypatch, fresh_warning, bad):
    """A cache file of the right key whose choices were edited or damaged: those are measured anew."""
    layers = [fastnn.Dense(16, 64), fastnn.ReLU(), fastnn.Dense(64, 64), fastnn.Tanh(), fastnn.Dense(64, 1)]
    net_key = f"net:{_planner._shape_key(_planner.walker_rows(layers)[0], np.dtype(np.float64))}"
    layer_keys = [_planner._layer_key(build, n_in, n_out, np.dtype(np.float64))
                  for build in _walker.BUILDS for n_in, n_out in ((16, 64), (64, 64))]
    choices = {key: bad for key in layer_keys} | {net_key: bad if not isinstance(bad, str) else "sse9"}
    path = _planner.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"key": _planner.cache_key(), "choices": choices}, f)
    assert _planner._read_choices(path) == ({}, f"read from {path} ({len(choices)} damaged choices dropped)")
    timer = FakeTimer()
    monkeypatch.setattr(_planner, "time_networks", timer)
    model = medium()
    assert model._plan.source == "measured"
    if model._net.row_blas_min_batch is not None:
        assert all(0 <= b <= TILES for b in model._net.row_blas_min_batch)
    with open(_planner.cache_path()) as f:
        saved = json.load(f)["choices"]
    assert all(_planner._valid_choice(key, value) for key, value in saved.items())
    assert saved[net_key] in _walker.BUILDS


def test_cache_file_not_utf8_is_measured_anew(monkeypatch, fresh_warning):
    path = _planner.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"\xff\xfe\x00{garbage")
    monkeypatch.setattr(_planner, "time_networks", FakeTimer())
    assert medium()._plan.source == "measured"
    with open(path) as f:
        assert json.load(f)["key"] == _planner.cache_key()


def test_side_by_side_interleaves_and_counts_the_least_disturbed_round(monkeypatch):
    """Rounds alternate the candidates; each round's median of 3 samples, the least of them counts."""
    monkeypatch.setattr(_planner, "MEASURE_SECONDS", 0.0)     # exactly MIN_ROUNDS rounds
    log = []
    scripted = {"a": [1e-5, 9e-5, 1e-5, 5e-5, 3e-5, 3e-5, 3e-5, 2e-6, 8e-5, 8e-5],
                "b": [2e-3, 4e-3, 2.5e-3, 3e-3]}        # a slow step: one sample per round
    def sample(step, number):
        log.append((step.__name__, number))
        return scripted[step.__name__].pop(0)
    monkeypatch.setattr(_planner, "_sample", sample)
    def a(): pass
    def b(): pass
    times = _planner.side_by_side([a, b])
    # Calibration (one call each), then per round a's three samples of 5 calls (50 us / 10 us), then b's one.
    assert log == [("a", 1), ("b", 1)] + [("a", 5)] * 3 + [("b", 1)] + [("a", 5)] * 3 + [("b", 1)] \
        + [("a", 5)] * 3 + [("b", 1)]
    assert times == [3e-5, 2.5e-3]       # a: medians 5e-5, 3e-5, 8e-5; b: 4e-3, 2.5e-3, 3e-3


@pytest.mark.skipif(not _planner._blas_found(), reason="no BLAS: every layer runs on fastnn's loops")
def test_layer_choices_are_checked_on_the_whole_network(monkeypatch):
    """BLAS wins every layer timed alone, but the whole network runs slower with the 16x64 layer on
    BLAS: in each batch class the build's rule stands for it (and the choice is remembered)."""
    class Timer(FakeTimer):
        def one(self, build, rows, dtype, row_tiled, batch):
            if len(rows) > 1 and row_tiled is not None and batch >= row_tiled[0]:
                self.calls.append((build, tuple(map(tuple, rows)), tuple(row_tiled), batch))
                return 10.0
            return super().one(build, rows, dtype, row_tiled, batch)

    timer = Timer(layer=lambda build, n_in, n_out, choice, batch: 1.0 if choice == BLAS else 2.0)
    monkeypatch.setattr(_planner, "time_networks", timer)
    monkeypatch.setattr(_planner, "_candidate_builds", lambda: (_walker.ISA,))   # no whole-network build timing
    model = medium()
    for build in _planner._candidate_builds():
        module = _walker.build(build)
        rule = [BLAS if n_in * n_out >= module.BLAS_MIN_WEIGHTS_TILED else TILES for n_in, n_out in ((16, 64), (64, 64))]
        assert _planner._store.choices[_planner._layer_key(build, 16, 64, np.dtype(np.float64))] == BLAS
        expected = rule + [TILES] if rule[0] == TILES else [BLAS, BLAS, TILES]
        key = f"rows:{build}:{_planner._shape_key(model._net.plan, np.dtype(np.float64))}"
        assert _planner._store.choices[key] == expected
        # The 16x64 layer and the next one, as a network of their own.
        checks = sorted(c[3] for c in timer.calls if c[0] == build and len(c[1]) == 2 and c[2] is not None)
        assert checks == ([32, 32, 128, 128, 256, 256] if rule[0] == TILES else [])
    assert list(model._net.row_blas_min_batch) == _planner._store.choices[
        f"rows:{model._plan.build}:{_planner._shape_key(model._net.plan, np.dtype(np.float64))}"]
    count = len(timer.calls)
    assert medium(seed=1)._plan.source == "cache" and len(timer.calls) == count


def test_sub_rows_run_as_a_network_of_their_own():
    """Rows 1:3 of a three-Dense plan: activation offsets from 0, the same parameters, a working walker."""
    layers = [fastnn.Dense(16, 64), fastnn.ReLU(), fastnn.Dense(64, 32), fastnn.Tanh(), fastnn.Dense(32, 3)]
    rows = _planner.walker_rows(layers)[0]
    sub = _planner._sub_rows(rows, 1, 3)
    assert sub[:, 5].tolist() == [0, 32] and sub[:, 3].tolist() == rows[1:3, 3].tolist()
    for row_batch in (None, [TILES, BLAS]):
        step = _planner._step(_walker.BUILDS[0], sub, np.dtype(np.float64), row_batch, 9)
        step()
        assert _planner.side_by_side([step])[0] > 0


@pytest.mark.parametrize("faster", [False, True])
def test_the_build_is_timed_side_by_side_where_several_run(monkeypatch, faster):
    """Every build this CPU runs as a candidate (the baseline included, to run here on any x86-64):
    the whole network timed in each, at SMALL_BATCH rows and at up to MEASURE_BATCH, in one call;
    another build than the fixed plan's only if faster by MARGIN."""
    monkeypatch.setattr(_planner, "_candidate_builds", lambda: _walker.BUILDS)
    other = _walker.BUILDS[0]
    timer = FakeTimer(network=lambda build: (0.5 if faster else 0.99) if build == other else 1.0)
    batches = []
    def time_networks(specs):
        batches.append(sorted({(spec[0], spec[4]) for spec in specs}))
        return timer(specs)
    monkeypatch.setattr(_planner, "time_networks", time_networks)
    model = medium()
    expected = other if faster else _walker.ISA
    assert model._plan.build == expected and model._plan.source == "measured"
    assert type(model._net).__module__ == f"fastnn._walker_{expected}"
    whole = [call for call in batches if len(call) == 2 * len(_walker.BUILDS)]
    assert whole == [sorted((build, batch) for build in _walker.BUILDS
                            for batch in (_planner.SMALL_BATCH, _planner.MEASURE_BATCH))] or len(_walker.BUILDS) == 1
