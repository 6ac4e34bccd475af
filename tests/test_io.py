"""fastnn.save / fastnn.load: the versioned .npz format, exact round trips, hostile files, atomic writes."""

import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import io as fio


def make_model(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return fastnn.Sequential([
        fastnn.Dense(3, 16, seed=rng), fastnn.LeakyReLU(0.2),
        fastnn.Dense(16, 16, seed=rng), fastnn.Tanh(),        # 16 x 16: the BLAS path
        fastnn.Dense(16, 8, seed=rng), fastnn.Sigmoid(), fastnn.Identity(),
        fastnn.Dense(8, 2, seed=rng), fastnn.ReLU(),
    ], dtype=dtype)


def make_data(n=64, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.stack([X[:, 0] * X[:, 1], np.abs(X[:, 2])], axis=1)


def entries_of(path):
    """Every entry of an .npz, as arrays (no pickle)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def architecture_of(path):
    return json.loads(str(entries_of(path)["architecture"][()]))


def write_entries(path, entries, **kwargs):
    """Write ``entries`` with numpy.savez at exactly ``path``."""
    with open(path, "wb") as file:
        np.savez(file, **entries, **kwargs)


def is_fresh(state):
    """An optimizer state before any step: step 0, and buffers (if any) all zeros."""
    return state["step"] == 0 and not any(np.any(value) for name, value in state.items() if name != "step")


def with_json(entries, name, change):
    spec = json.loads(str(entries[name][()]))
    change(spec)
    return {**entries, name: np.array(json.dumps(spec))}


@pytest.fixture
def saved(tmp_path):
    """A file holding a trained model and its Adam state, and the model and optimizer."""
    model, opt = make_model(), fastnn.Adam(lr=0.01)
    X, y = make_data()
    for _ in range(3):
        model.train_step(X, y, optimizer=opt)
    path = tmp_path / "model.npz"
    fastnn.save(model, path, optimizer=opt)
    return path, model, opt


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loaded_model_predicts_bit_for_bit(tmp_path, dtype):
    model = make_model(dtype)
    X, _ = make_data(200)
    path = tmp_path / "net.npz"
    fastnn.save(model, path)
    loaded = fastnn.load(path)
    assert isinstance(loaded, fastnn.Sequential)
    assert loaded.dtype == model.dtype
    assert repr(loaded) == repr(model)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.layers[1].negative_slope == 0.2
    assert loaded.get_parameters().tobytes() == model.get_parameters().tobytes()
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    for mine, theirs in zip(loaded.layers, model.layers):
        if isinstance(mine, fastnn.Dense):
            assert np.array_equal(mine.W, theirs.W) and np.array_equal(mine.b, theirs.b)


def test_activation_first_and_in_a_row_and_the_tutorial_network(tmp_path):
    model = fastnn.Sequential([fastnn.Tanh(), fastnn.ReLU(), fastnn.Dense(2, 3, seed=0), fastnn.Sigmoid(),
                               fastnn.LeakyReLU(0.5), fastnn.Dense(3, 1, seed=1)])
    fastnn.save(model, tmp_path / "a.npz")
    X = np.random.default_rng(0).normal(size=(9, 2))
    assert fastnn.load(tmp_path / "a.npz").predict(X).tobytes() == model.predict(X).tobytes()
    tutorial = fastnn.datasets.tutorial_network()
    tutorial.save(tmp_path / "t.npz")
    X = np.linspace(0, 3, 301).reshape(-1, 1)
    assert np.array_equal(fastnn.load(tmp_path / "t.npz").predict(X), fastnn.datasets.tutorial_curve(X).reshape(-1, 1))


def test_the_file_layout_is_the_documented_one(saved):
    path, model, opt = saved
    entries = entries_of(path)
    assert set(entries) == {"architecture", "parameters", "optimizer", "optimizer.step",
                            "optimizer.exp_avg", "optimizer.exp_avg_sq"}
    assert all(array.dtype != object for array in entries.values())
    assert entries["architecture"].shape == () and entries["architecture"].dtype.kind == "U"
    assert architecture_of(path) == {
        "format": "fastnn", "format_version": 1, "fastnn_version": fastnn.__version__, "dtype": "float64",
        "layers": [
            {"type": "Dense", "in_features": 3, "out_features": 16}, {"type": "LeakyReLU", "negative_slope": 0.2},
            {"type": "Dense", "in_features": 16, "out_features": 16}, {"type": "Tanh"},
            {"type": "Dense", "in_features": 16, "out_features": 8}, {"type": "Sigmoid"}, {"type": "Identity"},
            {"type": "Dense", "in_features": 8, "out_features": 2}, {"type": "ReLU"},
        ],
    }
    assert fio.FORMAT_NAME == "fastnn" and fio.FORMAT_VERSION == 1
    assert entries["parameters"].dtype == np.float64 and entries["parameters"].ndim == 1
    assert np.array_equal(entries["parameters"], model.get_parameters())
    assert json.loads(str(entries["optimizer"][()])) == {
        "type": "Adam", "hyperparameters": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08,
                                            "weight_decay": 0.0}}
    assert entries["optimizer.step"].shape == () and entries["optimizer.step"].dtype == np.int64
    assert int(entries["optimizer.step"]) == 3
    state = model.optimizer_state(opt)
    assert np.array_equal(entries["optimizer.exp_avg"], state["exp_avg"])
    assert np.array_equal(entries["optimizer.exp_avg_sq"], state["exp_avg_sq"])
    assert zipfile.ZipFile(path).namelist() == [name + ".npy" for name in entries_of(path)]


def test_the_module_docstring_documents_every_entry():
    for name in ("architecture", "parameters", "optimizer", "optimizer.step", "optimizer.momentum_buffer",
                 "optimizer.exp_avg", "optimizer.exp_avg_sq", "format_version", "allow_pickle", "os.replace"):
        assert name in fio.__doc__, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_optimizer", [
    lambda: fastnn.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.001),
    lambda: fastnn.AdamW(lr=0.003),
    lambda: fastnn.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: fastnn.SGD(lr=0.05, momentum=0.5),
    lambda: fastnn.SGD(lr=0.05),
], ids=["adam", "adamw", "sgd-nesterov", "sgd-momentum", "sgd"])
def test_resumed_training_is_identical_to_uninterrupted_training(tmp_path, dtype, make_optimizer):
    X, y = make_data()
    straight, straight_opt = make_model(dtype), make_optimizer()
    for _ in range(6):
        straight.train_step(X, y, optimizer=straight_opt)

    model, opt = make_model(dtype), make_optimizer()
    for _ in range(3):
        model.train_step(X, y, optimizer=opt)
    saved_state = model.optimizer_state(opt)
    model.save(tmp_path / "ckpt.npz", optimizer=opt)
    del model, opt
    resumed, resumed_opt = fastnn.load(tmp_path / "ckpt.npz", with_optimizer=True)
    assert type(resumed_opt) is type(straight_opt) and repr(resumed_opt) == repr(straight_opt)
    loaded_state = resumed.optimizer_state(resumed_opt)
    assert loaded_state.keys() == saved_state.keys() == {"step", *resumed_opt.state_names}
    for key in saved_state:
        assert np.array_equal(loaded_state[key], saved_state[key]), key
    for _ in range(3):
        resumed.train_step(X, y, optimizer=resumed_opt)
    assert resumed.get_parameters().tobytes() == straight.get_parameters().tobytes()
    mine, theirs = resumed.optimizer_state(resumed_opt), straight.optimizer_state(straight_opt)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert np.array_equal(mine[key], theirs[key]), key


def test_resumed_fit_is_identical(tmp_path):
    X, y = make_data(100)
    straight, straight_opt = make_model(), fastnn.Adam(lr=0.01)
    straight.fit(X, y, optimizer=straight_opt, epochs=2, batch_size=16, seed=0)
    straight.fit(X, y, optimizer=straight_opt, epochs=2, batch_size=16, seed=1)
    model, opt = make_model(), fastnn.Adam(lr=0.01)
    model.fit(X, y, optimizer=opt, epochs=2, batch_size=16, seed=0)
    fastnn.save(model, tmp_path / "m.npz", opt)
    model, opt = fastnn.load(tmp_path / "m.npz", with_optimizer=True)
    model.fit(X, y, optimizer=opt, epochs=2, batch_size=16, seed=1)
    assert model.get_parameters().tobytes() == straight.get_parameters().tobytes()


def test_changed_lr_and_unused_optimizer_round_trip(tmp_path):
    model, opt = make_model(), fastnn.SGD(lr=0.1, momentum=0.9)
    fastnn.save(model, tmp_path / "fresh.npz", opt)          # before any step: no buffers yet
    assert "optimizer.momentum_buffer" not in entries_of(tmp_path / "fresh.npz")
    loaded_model, loaded = fastnn.load(tmp_path / "fresh.npz", with_optimizer=True)
    assert is_fresh(loaded_model.optimizer_state(loaded))
    X, y = make_data()
    model.train_step(X, y, optimizer=opt)
    opt.lr = 0.1 / 3                                         # a schedule
    fastnn.save(model, tmp_path / "m.npz", opt)
    _, loaded = fastnn.load(tmp_path / "m.npz", with_optimizer=True)
    assert loaded.lr == opt.lr and loaded.momentum == 0.9 and loaded.nesterov is False


def test_with_optimizer_and_without(saved, tmp_path):
    path, model, _ = saved
    assert isinstance(fastnn.load(path), fastnn.Sequential)      # the optimizer is checked, not returned
    fastnn.save(model, tmp_path / "bare.npz")
    loaded, opt = fastnn.load(tmp_path / "bare.npz", with_optimizer=True)
    assert opt is None and isinstance(loaded, fastnn.Sequential)
    with pytest.raises(TypeError, match="with_optimizer"):
        fastnn.load(path, with_optimizer="yes")


def test_loaded_model_is_independent_and_picklable(saved):
    import copy
    import pickle

    path, model, _ = saved
    first, second = fastnn.load(path), fastnn.load(path)
    first.layers[0].W[...] = 0
    assert not np.array_equal(second.layers[0].W, first.layers[0].W)
    assert np.array_equal(second.get_parameters(), model.get_parameters())
    X, _ = make_data()
    assert np.array_equal(pickle.loads(pickle.dumps(second)).predict(X), model.predict(X))
    assert np.array_equal(copy.deepcopy(second).predict(X), model.predict(X))


def test_exported_names():
    assert fastnn.save is fio.save and fastnn.load is fio.load
    assert "save" in fastnn.__all__ and "load" in fastnn.__all__
    assert callable(fastnn.Sequential.save)


# -- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model", "model.bin", "model.npz", "ünïcode name.npz"])
@pytest.mark.parametrize("kind", [str, pathlib.Path])
def test_the_file_is_written_at_exactly_the_name_given(tmp_path, name, kind):
    model = make_model()
    fastnn.save(model, kind(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == [name]                  # no ".npz" appended, no temp file left
    assert np.array_equal(fastnn.load(kind(tmp_path / name)).get_parameters(), model.get_parameters())


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_model().save("here.npz")
    assert os.listdir(".") == ["here.npz"]
    fastnn.load("here.npz")


def test_bad_paths_and_arguments(tmp_path):
    model = make_model()
    for path in (None, 3, [str(tmp_path / "x")]):
        with pytest.raises(TypeError, match="path"):
            fastnn.save(model, path)
        with pytest.raises(TypeError, match="path"):
            fastnn.load(path)
    with pytest.raises(ValueError, match="path"):
        fastnn.save(model, "")
    with pytest.raises(TypeError, match="model"):
        fastnn.save([model], tmp_path / "x.npz")
    with pytest.raises(TypeError, match="optimizer"):
        fastnn.save(model, tmp_path / "x.npz", optimizer="adam")
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError if os.name != "nt" else OSError):
        fastnn.load(tmp_path)
    with pytest.raises(OSError):
        fastnn.save(model, tmp_path / "no such folder" / "x.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions and symbolic links")
def test_permissions_and_symbolic_links(tmp_path):
    model = make_model()
    target = tmp_path / "target.npz"
    fastnn.save(model, target)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask          # as open(path, "w") would
    target.chmod(0o640)
    fastnn.save(model, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640                  # a replaced file keeps its mode
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    model.layers[0].b[...] = 7
    fastnn.save(model, link)
    assert link.is_symlink()
    assert np.all(fastnn.load(target).layers[0].b == 7)
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "target.npz"]


# -- what save refuses ------------------------------------------------------------------------


def test_save_refuses_what_the_format_cannot_describe(tmp_path):
    class MyReLU(fastnn.ReLU):
        pass

    class MyAdam(fastnn.Adam):
        pass

    with pytest.raises(TypeError, match=r"layers\[1\] is a MyReLU"):
        fastnn.save(fastnn.Sequential([fastnn.Dense(1, 2), MyReLU()]), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="MyAdam"):
        fastnn.save(make_model(), tmp_path / "x.npz", optimizer=MyAdam())
    assert os.listdir(tmp_path) == []


def test_save_writes_the_state_the_model_keeps_for_the_optimizer(tmp_path):
    X, y = make_data()
    model, other, opt = make_model(), make_model(), fastnn.Adam()
    other.train_step(X, y, optimizer=opt)
    other.train_step(X, y, optimizer=opt)
    fastnn.save(model, tmp_path / "x.npz", optimizer=opt)          # model has not trained with opt
    entries = entries_of(tmp_path / "x.npz")
    assert int(entries["optimizer.step"]) == 0 and "optimizer.exp_avg" not in entries
    fastnn.save(other, tmp_path / "y.npz", optimizer=opt)          # other has, twice
    entries = entries_of(tmp_path / "y.npz")
    assert int(entries["optimizer.step"]) == 2
    assert np.array_equal(entries["optimizer.exp_avg"], other.optimizer_state(opt)["exp_avg"])
    loaded, loaded_opt = fastnn.load(tmp_path / "x.npz", with_optimizer=True)
    assert is_fresh(loaded.optimizer_state(loaded_opt))


def test_a_state_set_on_the_model_is_saved_and_loaded(tmp_path):
    model, opt = make_model(), fastnn.Adam()
    rng = np.random.default_rng(0)
    state = {"step": 7, "exp_avg": rng.normal(size=model.n_parameters),
             "exp_avg_sq": rng.uniform(size=model.n_parameters)}
    model.set_optimizer_state(opt, state)
    fastnn.save(model, tmp_path / "x.npz", optimizer=opt)
    loaded, loaded_opt = fastnn.load(tmp_path / "x.npz", with_optimizer=True)
    loaded_state = loaded.optimizer_state(loaded_opt)
    assert loaded_state["step"] == 7
    for name in ("exp_avg", "exp_avg_sq"):
        assert loaded_state[name].tobytes() == state[name].tobytes()
    X, y = make_data()
    model.train_step(X, y, optimizer=opt)
    loaded.train_step(X, y, optimizer=loaded_opt)
    assert loaded.get_parameters().tobytes() == model.get_parameters().tobytes()


# -- atomic writes -----------------------------------------------------------------------------


def files_in(folder):
    return sorted(os.listdir(folder))


def failing_savez(real_savez):
    def savez(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)
        file.seek(0)
        file.truncate(100)                          # half-written...
        raise OSError(28, "No space left on device")  # ...and the disk is full
    return savez


@pytest.mark.parametrize("where", ["savez", "fsync", "replace", "interrupt"])
def test_a_crash_in_the_middle_of_save_leaves_the_previous_file_intact(saved, monkeypatch, where):
    path, model, opt = saved
    before, listing = path.read_bytes(), files_in(path.parent)
    if where == "savez":
        monkeypatch.setattr(np, "savez", failing_savez(np.savez))
        error = OSError
    elif where == "fsync":
        def fsync(fd):
            raise OSError(5, "Input/output error")
        monkeypatch.setattr(os, "fsync", fsync)
        error = OSError
    elif where == "replace":
        def replace(src, dst):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(os, "replace", replace)
        error = PermissionError
    else:
        def savez(file, *args, **kwargs):
            file.write(b"PK\x03\x04 partial")
            raise KeyboardInterrupt
        monkeypatch.setattr(np, "savez", savez)
        error = KeyboardInterrupt
    model.layers[0].W[...] = 0
    with pytest.raises(error):
        fastnn.save(model, path, optimizer=opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert files_in(path.parent) == listing                     # no temporary file left behind
    fastnn.load(path, with_optimizer=True)


def test_a_crash_on_the_first_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", failing_savez(np.savez))
    with pytest.raises(OSError, match="space"):
        make_model().save(tmp_path / "new.npz")
    assert files_in(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_process_killed_in_the_middle_of_save_leaves_the_previous_file_intact(saved):
    path, _, _ = saved
    before = path.read_bytes()
    script = f"""
import os, signal, numpy as np, fastnn
real = np.savez
def savez(file, *args, **kwargs):
    real(file, *args, **kwargs)
    file.flush()
    file.truncate(200)
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez
fastnn.save(fastnn.Sequential([fastnn.Dense(3, 4)]), {str(path)!r})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert path.read_bytes() == before
    # A killed process cannot clean up: at most its hidden temporary file is left, never a partial model.
    leftovers = [name for name in files_in(path.parent) if name != path.name]
    assert all(name.startswith("." + path.name + ".") and name.endswith(".tmp") for name in leftovers)
    fastnn.load(path)


# -- hostile and broken files -----------------------------------------------------------------


def test_every_truncation_is_refused(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    broken = tmp_path / "broken.npz"
    for n in list(range(0, 600)) + list(range(600, len(data), 97)) + [len(data) - 1]:
        broken.write_bytes(data[:n])
        with pytest.raises(ValueError):
            fastnn.load(broken)


def test_corrupted_bytes_give_a_value_error_or_a_valid_model(saved, tmp_path):
    path, model, _ = saved
    data = path.read_bytes()
    broken = tmp_path / "broken.npz"
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(1500):
        corrupted = bytearray(data)
        for i in rng.integers(0, len(data), size=rng.integers(1, 4)):
            corrupted[i] = rng.integers(0, 256)
        broken.write_bytes(bytes(corrupted))
        try:
            loaded, _ = fastnn.load(broken, with_optimizer=True)
        except ValueError:
            refused += 1
        else:   # the bytes hit something unchecked (a timestamp): the model is whole
            assert np.array_equal(loaded.get_parameters(), model.get_parameters())
    assert refused > 1000


def test_not_a_zip_archive(tmp_path):
    cases = {
        "empty.npz": b"",
        "text.npz": b"hello, I am not a model\n",
        "pickle.npz": __import__("pickle").dumps({"a": 1}),
        "random.npz": np.random.default_rng(0).bytes(4096),
        "zip-magic-only.npz": b"PK\x03\x04",
        "empty-zip.npz": b"PK\x05\x06" + bytes(18),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="not a"):
            fastnn.load(tmp_path / name)
    np.save(tmp_path / "array.npy", np.zeros(3))                        # a .npy, not a .npz
    with pytest.raises(ValueError, match="not a fastnn file"):
        fastnn.load(tmp_path / "array.npy")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:       # a zip, but not a fastnn file
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="readme.txt"):
        fastnn.load(tmp_path / "other.zip")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))                     # a .npz, but not a fastnn file
    with pytest.raises(ValueError, match="not a fastnn file"):
        fastnn.load(tmp_path / "plain.npz")


EXECUTED = []


def _run_me(marker):  # what a malicious pickle would call
    EXECUTED.append(marker)
    pathlib.Path(marker).write_text("executed")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_run_me, (self.marker,))


@pytest.mark.parametrize("entry", ["architecture", "parameters", "optimizer", "optimizer.step", "optimizer.exp_avg"])
def test_an_object_array_is_refused_and_never_unpickled(saved, tmp_path, entry):
    path, _, _ = saved
    marker = tmp_path / "executed"
    entries = entries_of(path)
    entries[entry] = np.array([Payload(str(marker))] * 3, dtype=object)
    hostile = tmp_path / "hostile.npz"
    write_entries(hostile, entries, allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        fastnn.load(hostile)
    assert not marker.exists() and str(marker) not in EXECUTED
    # The payload is live: pickle would have run it.
    with np.load(hostile, allow_pickle=True) as archive:
        archive[entry]
    assert marker.exists()


def test_a_file_from_a_future_format_version(saved, tmp_path):
    path, _, _ = saved
    entries = entries_of(path)

    def future(spec):
        spec["format_version"] = 2
        spec["fastnn_version"] = "9.0.0"
        spec["layers"] = {"new": "layout"}              # whatever it may hold
        spec["compression"] = "zstd"

    entries = with_json(entries, "architecture", future)
    entries["something_new"] = np.zeros(3)
    write_entries(tmp_path / "future.npz", entries)
    with pytest.raises(ValueError, match=r"format version 2.*supports format version 1"):
        fastnn.load(tmp_path / "future.npz")


def hostile_variants(entries):
    """(name, entries, message) of files that break one rule each."""
    n = entries["parameters"].size
    arch = lambda change: with_json(entries, "architecture", change)     # noqa: E731
    optim = lambda change: with_json(entries, "optimizer", change)       # noqa: E731

    def setter(*keys, value):
        def change(spec):
            target = spec
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
        return change

    def deleter(*keys):
        def change(spec):
            target = spec
            for key in keys[:-1]:
                target = target[key]
            del target[keys[-1]]
        return change

    def without(*names):
        return {k: v for k, v in entries.items() if k not in names}

    params = entries["parameters"]
    yield "parameters 2-D", {**entries, "parameters": params.reshape(1, -1)}, r"shape \(%d,\)" % n
    yield "parameters one short", {**entries, "parameters": params[:-1]}, r"more than|shape"
    yield "parameters one long", {**entries, "parameters": np.append(params, 0.0)}, r"shape"
    yield "parameters 0-d", {**entries, "parameters": np.array(1.0)}, r"shape"
    yield "parameters float32", {**entries, "parameters": params.astype(np.float32)}, "float64"
    yield "parameters float16", {**entries, "parameters": params.astype(np.float16)}, "float64"
    yield "parameters int", {**entries, "parameters": params.astype(np.int64)}, "float64"
    yield "parameters complex", {**entries, "parameters": params.astype(np.complex128)}, "float64"
    yield "parameters strings", {**entries, "parameters": params.astype(str)}, "float64|more than"
    yield "parameters structured", {**entries, "parameters": np.zeros(n, dtype=[("a", "f8")])}, "float64"
    nan = params.copy()
    nan[5] = np.nan
    yield "parameters NaN", {**entries, "parameters": nan}, "NaN or infinity"
    inf = params.copy()
    inf[-1] = -np.inf
    yield "parameters inf", {**entries, "parameters": inf}, "NaN or infinity"
    yield "no parameters", without("parameters"), "missing entries"
    yield "no architecture", without("architecture"), "no 'architecture'"
    yield "extra entry", {**entries, "junk": np.zeros(2)}, r"unexpected entries \['junk'\]"
    yield "architecture 1-D", {**entries, "architecture": np.array([str(entries["architecture"][()])])}, "0-d"
    yield "architecture bytes", {**entries, "architecture": np.array(b"{}")}, "0-d unicode"
    yield "architecture not JSON", {**entries, "architecture": np.array("{'format': 'fastnn'")}, "not valid JSON"
    yield "architecture a list", {**entries, "architecture": np.array("[1, 2]")}, "JSON object"
    yield "architecture NaN", {**entries, "architecture": np.array('{"format": "fastnn", "x": NaN}')}, "JSON"
    yield "architecture 1e999", {**entries, "architecture": np.array('{"format": "fastnn", "x": 1e999}')}, "JSON"
    yield "duplicate key", {**entries, "architecture": np.array(
        str(entries["architecture"][()]).replace('"dtype"', '"dtype": "float32", "dtype"'))}, "duplicate key"
    yield "deep JSON", {**entries, "architecture": np.array("[" * 100000 + "]" * 100000)}, "JSON"
    yield "huge integer", {**entries, "architecture": np.array(
        str(entries["architecture"][()]).replace('"in_features": 3', '"in_features": 1' + "0" * 5000))}, "JSON"
    yield "other format", arch(setter("format", value="keras")), "not a fastnn file"
    yield "version 0", arch(setter("format_version", value=0)), "format_version"
    yield "version string", arch(setter("format_version", value="1")), "format_version"
    yield "version float", arch(setter("format_version", value=1.0)), "format_version"
    yield "version bool", arch(setter("format_version", value=True)), "format_version"
    yield "missing dtype", arch(deleter("dtype")), r"missing \['dtype'\]"
    yield "extra key", arch(setter("pickle", value="cos\nsystem")), r"unexpected \['pickle'\]"
    yield "dtype float16", arch(setter("dtype", value="float16")), "dtype"
    yield "dtype object", arch(setter("dtype", value="object")), "dtype"
    yield "dtype float32", arch(setter("dtype", value="float32")), "float32 array"
    yield "fastnn_version int", arch(setter("fastnn_version", value=1)), "fastnn_version"
    yield "layers empty", arch(setter("layers", value=[])), "non-empty"
    yield "layers object", arch(setter("layers", value={"0": {"type": "ReLU"}})), "non-empty JSON list"
    yield "layer not object", arch(setter("layers", 1, value="ReLU")), r"layers\[1\]"
    yield "layer unknown", arch(setter("layers", 1, "type", value="Softmax")), r"layers\[1\]"
    yield "layer lowercase", arch(setter("layers", 0, "type", value="dense")), r"layers\[0\]"
    yield "layer no type", arch(deleter("layers", 3, "type")), r"layers\[3\]"
    yield "layer extra key", arch(setter("layers", 8, "inplace", value=True)), r"layers\[8\].*unexpected"
    yield "dense missing size", arch(deleter("layers", 0, "out_features")), r"layers\[0\].*missing"
    yield "dense size string", arch(setter("layers", 0, "in_features", value="3")), "positive integer"
    yield "dense size float", arch(setter("layers", 0, "in_features", value=3.0)), "positive integer"
    yield "dense size bool", arch(setter("layers", 0, "in_features", value=True)), "positive integer"
    yield "dense size 0", arch(setter("layers", 0, "in_features", value=0)), "positive integer"
    yield "dense size negative", arch(setter("layers", 0, "out_features", value=-16)), "positive integer"
    yield "sizes do not chain", arch(setter("layers", 2, "in_features", value=15)), "do not chain"
    yield "sizes chain but wrong count", arch(setter("layers", 0, "in_features", value=4)), r"more than|shape"
    yield "no Dense", arch(setter("layers", value=[{"type": "ReLU"}])), "at least one Dense"
    yield "slope missing", arch(deleter("layers", 1, "negative_slope")), "missing"
    yield "slope negative", arch(setter("layers", 1, "negative_slope", value=-0.1)), "negative_slope"
    yield "slope string", arch(setter("layers", 1, "negative_slope", value="0.1")), "negative_slope"
    yield "optimizer unknown", optim(setter("type", value="RMSprop")), "optimizer's type"
    yield "optimizer extra key", optim(setter("state", value=[])), "unexpected"
    yield "optimizer missing hyper", optim(deleter("hyperparameters", "eps")), r"missing \['eps'\]"
    yield "optimizer extra hyper", optim(setter("hyperparameters", "amsgrad", value=False)), "unexpected"
    yield "optimizer SGD hyper for Adam", optim(setter("type", value="SGD")), "hyperparameters"
    yield "optimizer lr negative", optim(setter("hyperparameters", "lr", value=-1)), "lr"
    yield "optimizer lr string", optim(setter("hyperparameters", "lr", value="0.1")), "lr"
    yield "optimizer beta 1", optim(setter("hyperparameters", "beta1", value=1)), "betas"
    yield "optimizer hyper null", optim(setter("hyperparameters", "weight_decay", value=None)), "weight_decay"
    yield "optimizer a string", {**entries, "optimizer": np.array('"Adam"')}, "JSON object"
    yield "no optimizer.step", without("optimizer.step"), "optimizer.step"
    yield "step negative", {**entries, "optimizer.step": np.array(-1)}, "optimizer.step"
    yield "step float", {**entries, "optimizer.step": np.array(3.0)}, "optimizer.step"
    yield "step 1-D", {**entries, "optimizer.step": np.array([3])}, "optimizer.step"
    yield "step huge", {**entries, "optimizer.step": np.array(2 ** 64 - 1, dtype=np.uint64)}, "optimizer.step"
    yield "buffer short", {**entries, "optimizer.exp_avg": entries["optimizer.exp_avg"][:-1]}, "exp_avg"
    yield "buffer 2-D", {**entries, "optimizer.exp_avg_sq": entries["optimizer.exp_avg_sq"].reshape(-1, 1)}, "shape"
    yield "buffer float32", {**entries, "optimizer.exp_avg": entries["optimizer.exp_avg"].astype(np.float32)}, "float64"
    nan_state = entries["optimizer.exp_avg_sq"].copy()
    nan_state[0] = np.nan
    yield "buffer NaN", {**entries, "optimizer.exp_avg_sq": nan_state}, "NaN"
    yield "buffer of another optimizer", {**entries, "optimizer.momentum_buffer": params.copy()}, "not state"
    yield "optimizer state without optimizer", without("optimizer"), "unexpected entries"
    yield "state names outside the format", {**entries, "optimizer.velocity": params.copy()}, "unexpected entries"


def test_every_hostile_variant_is_refused_with_a_clear_message(saved, tmp_path):
    path, _, _ = saved
    entries = entries_of(path)
    names = []
    for i, (name, variant, message) in enumerate(hostile_variants(entries)):
        names.append(name)
        hostile = tmp_path / f"hostile{i}.npz"
        write_entries(hostile, variant)
        with pytest.raises(ValueError, match=message) as raised:
            fastnn.load(hostile, with_optimizer=True)
        assert str(hostile) in str(raised.value), name            # the message names the file
    assert len(names) == len(set(names)) > 70


def test_plain_sgd_carries_no_buffers(tmp_path):
    model = make_model()
    X, y = make_data()
    model.train_step(X, y, optimizer=fastnn.SGD(lr=0.1))
    fastnn.save(model, tmp_path / "m.npz", optimizer=fastnn.SGD(lr=0.1))
    entries = entries_of(tmp_path / "m.npz")
    assert "optimizer.momentum_buffer" not in entries
    entries["optimizer.momentum_buffer"] = entries["parameters"].copy()
    write_entries(tmp_path / "bad.npz", entries)
    with pytest.raises(ValueError, match="not state of SGD"):
        fastnn.load(tmp_path / "bad.npz")


def test_zip_level_tricks(saved, tmp_path):
    path, _, _ = saved
    entries = entries_of(path)
    # A member that is not .npy (numpy would hand back its raw bytes).
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as archive:
        for name, array in entries.items():
            if name != "parameters":
                with archive.open(name + ".npy", "w") as member:
                    np.lib.format.write_array(member, array)
        archive.writestr("parameters", entries["parameters"].tobytes())
    with pytest.raises(ValueError, match="not a .npy"):
        fastnn.load(tmp_path / "raw.npz")
    # The same member twice.
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        for name, array in list(entries.items()) + [("parameters", entries["parameters"] * 0)]:
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, array)
    with pytest.raises(ValueError, match="twice"):
        fastnn.load(tmp_path / "twice.npz")
    # A compression bomb: a tiny file whose parameters would expand to 80 MB.
    bomb = dict(entries, parameters=np.zeros(10_000_000))
    with open(tmp_path / "bomb.npz", "wb") as file:
        np.savez_compressed(file, **bomb)
    assert (tmp_path / "bomb.npz").stat().st_size < 1_000_000
    with pytest.raises(ValueError, match="more than"):
        fastnn.load(tmp_path / "bomb.npz")
    # A huge architecture entry.
    with open(tmp_path / "big.npz", "wb") as file:
        np.savez_compressed(file, **dict(entries, architecture=np.array(" " * 5_000_000)))
    with pytest.raises(ValueError, match="more than"):
        fastnn.load(tmp_path / "big.npz")


def test_compressed_and_byte_swapped_files_are_read(saved, tmp_path):
    path, model, _ = saved
    entries = entries_of(path)
    with open(tmp_path / "compressed.npz", "wb") as file:
        np.savez_compressed(file, **entries)
    swapped = {name: (array.astype(array.dtype.newbyteorder()) if array.dtype.kind in "fi" else array)
               for name, array in entries.items()}
    write_entries(tmp_path / "swapped.npz", swapped)
    X, _ = make_data()
    for name in ("compressed.npz", "swapped.npz"):
        loaded, opt = fastnn.load(tmp_path / name, with_optimizer=True)
        assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
        assert loaded.optimizer_state(opt)["step"] == 3


def test_a_failed_load_builds_nothing_and_leaves_the_file_alone(saved, tmp_path):
    path, _, _ = saved
    entries = entries_of(path)
    bad = dict(entries, parameters=entries["parameters"][:-1])
    write_entries(tmp_path / "bad.npz", bad)
    data = (tmp_path / "bad.npz").read_bytes()
    import gc

    import fastnn.model as model_module
    gc.collect()
    before = sum(isinstance(obj, model_module.Sequential) for obj in gc.get_objects())
    with pytest.raises(ValueError):
        fastnn.load(tmp_path / "bad.npz")
    gc.collect()
    assert sum(isinstance(obj, model_module.Sequential) for obj in gc.get_objects()) == before
    assert (tmp_path / "bad.npz").read_bytes() == data


def test_a_version_1_file_written_by_hand_loads_and_resumes(tmp_path):
    """The documented layout, written with numpy.savez alone (no fastnn writer involved)."""
    rng = np.random.default_rng(5)
    n_parameters = 2 * 3 + 3 + 3 * 1 + 1
    parameters, momentum = rng.normal(size=n_parameters), rng.normal(size=n_parameters)
    architecture = {"format": "fastnn", "format_version": 1, "fastnn_version": "0.1.0", "dtype": "float64",
                    "layers": [{"type": "Dense", "in_features": 2, "out_features": 3}, {"type": "ReLU"},
                               {"type": "Dense", "in_features": 3, "out_features": 1}]}
    optimizer = {"type": "SGD", "hyperparameters": {"lr": 0.05, "momentum": 0.9, "nesterov": False,
                                                    "weight_decay": 0.0}}
    write_entries(tmp_path / "v1.npz", {
        "architecture": np.array(json.dumps(architecture)), "parameters": parameters,
        "optimizer": np.array(json.dumps(optimizer)), "optimizer.step": np.array(4, dtype=np.int64),
        "optimizer.momentum_buffer": momentum})
    model, opt = fastnn.load(tmp_path / "v1.npz", with_optimizer=True)
    assert repr(opt) == "SGD(lr=0.05, momentum=0.9)"
    assert model.get_parameters().tobytes() == parameters.tobytes()
    state = model.optimizer_state(opt)
    assert state["step"] == 4 and state["momentum_buffer"].tobytes() == momentum.tobytes()
    # Its next step continues from the loaded momentum: buf = 0.9 * buf + g; p -= lr * buf, with g the
    # gradient the step leaves in the layers' dW and db.
    X, y = rng.normal(size=(8, 2)), rng.normal(size=(8, 1))
    params = model.get_parameters()
    model.train_step(X, y, optimizer=opt)
    grads = np.concatenate([g.reshape(-1) for layer in model.layers if isinstance(layer, fastnn.Dense)
                            for g in (layer.dW, layer.db)])
    np.testing.assert_allclose(model.get_parameters(), params - 0.05 * (0.9 * momentum + grads), rtol=1e-12,
                               atol=1e-15)
