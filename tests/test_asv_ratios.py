"""benchmarks/asv_ratios.py pairs asv's fastnn and reference timings row by row."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

# The same on every build, ISA, plan and wheel: run once per tree (tests/conftest.py).
pytestmark = pytest.mark.source_only

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "asv_ratios.py"


@pytest.fixture(scope="module")
def asv_ratios():
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not beside the tests (an installed-wheel run)")
    spec = importlib.util.spec_from_file_location("asv_ratios", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_results(tmp_path: pathlib.Path) -> pathlib.Path:
    """A results file as asv 0.6 writes it: one time benchmark over (config, dtype, impl),
    one missing timing (a failed run), and a benchmark without impl."""
    params = [["'a'", "'b'"], ["'float32'"], ["'fastnn'", "'reference'"]]
    benchmarks = {
        "bench.K.time_x": {"type": "time", "param_names": ["config", "dtype", "impl"], "params": params},
        "bench.K.time_y": {"type": "time", "param_names": ["config"], "params": [["'a'"]]},
    }
    results = {
        "commit_hash": "0123456789abcdef",
        "result_columns": ["result", "params", "version"],
        # product order: (a, f32, fastnn), (a, f32, reference), (b, f32, fastnn), (b, f32, reference)
        "results": {"bench.K.time_x": [[1e-6, 4e-6, 2e-6, None], params, "v"],
                    "bench.K.time_y": [[1.0], [["'a'"]], "v"]},
    }
    machine = tmp_path / "results" / "m"
    machine.mkdir(parents=True)
    (tmp_path / "results" / "benchmarks.json").write_text(json.dumps(benchmarks))
    (machine / "machine.json").write_text("{}")
    path = machine / "0123-env.json"
    path.write_text(json.dumps(results))
    return path


def test_rows_pair_fastnn_with_the_reference(asv_ratios, tmp_path):
    path = write_results(tmp_path)
    rows = asv_ratios.paired_rows(json.loads(path.read_text()),
                                  json.loads((tmp_path / "results" / "benchmarks.json").read_text()))
    assert rows == [{"benchmark": "bench.K.time_x", "params": "a, float32", "fastnn": 1e-6,
                     "reference": 4e-6, "ratio": 4.0}]


def test_main_prints_the_table_and_fails_below_the_floor(asv_ratios, tmp_path, capsys):
    write_results(tmp_path)
    out = tmp_path / "table.md"
    assert asv_ratios.main(["--results-dir", str(tmp_path / "results"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| bench.K.time_x | a, float32 | 1 us | 4 us | 4.00 |" in printed
    assert "1 rows, 0 below 1.0" in printed and out.read_text().startswith("| benchmark |")
    assert asv_ratios.main(["--results-dir", str(tmp_path / "results"), "--floor", "5"]) == 1
    assert "bench.K.time_x [a, float32]: 4.00" in capsys.readouterr().out


def test_json_writes_the_rows_in_the_results_envelope(asv_ratios, tmp_path, capsys):
    write_results(tmp_path)
    out = tmp_path / "docs" / "asv_ratios.json"
    argv = ["--results-dir", str(tmp_path / "results"), "--json", str(out)]
    assert asv_ratios.main(argv) == 0
    assert "| bench.K.time_x | a, float32 | 1 us | 4 us | 4.00 |" in capsys.readouterr().out  # markdown kept
    data = json.loads(out.read_text())
    assert data["command"] == "python benchmarks/asv_ratios.py " + " ".join(argv)
    assert data["commit"] == "0123456"
    assert data["date"].endswith("Z") and data["date"][4] == "-"
    assert set(data["machine"]) == {"cpu", "isa", "blas", "python", "numpy", "threads"}
    assert data["machine"]["threads"] == 1 and data["machine"]["numpy"]
    assert data["rows"] == [{"benchmark": "bench.K.time_x", "params": "a, float32", "fastnn_s": 1e-6,
                             "reference_s": 4e-6, "ratio": 4.0}]


def test_every_benchmarks_module_imports_as_asv_discovers_it():
    """asv's discovery imports each module of benchmarks/ as ``benchmarks.NAME`` (one that imports
    a sibling as a top-level module fails there, and `asv run` with it); the optional packages
    the scripts time (PyTorch, Dask, scikit-learn) are imported only inside their functions."""
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not beside the tests (an installed-wheel run)")
    code = ("import importlib, pkgutil, sys, benchmarks\n"
            "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
            "    importlib.import_module('benchmarks.' + m.name)\n"
            "print(sorted(n for n in ('torch', 'dask', 'distributed', 'sklearn') if n in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=SCRIPT.parent.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_smoke_configs_give_every_suite_parameters():
    """CI's asv smoke check (FASTNN_ASV_SMOKE=1) runs every benchmark on one config of each kind:
    no suite may lose all its configs there."""
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not beside the tests (an installed-wheel run)")
    code = ("import importlib, inspect, pkgutil, benchmarks\n"
            "from benchmarks import common\n"
            "print(len(common.CONFIG_NAMES), len(common.CONFIGS))\n"
            "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
            "    if m.name.startswith('bench_'):\n"
            "        module = importlib.import_module('benchmarks.' + m.name)\n"
            "        for name, cls in inspect.getmembers(module, inspect.isclass):\n"
            "            if cls.__module__ == module.__name__ and getattr(cls, 'params', None):\n"
            "                assert all(len(values) for values in cls.params), (m.name, name)\n")
    env = dict(os.environ, FASTNN_ASV_SMOKE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=SCRIPT.parent.parent, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    smoke, every = map(int, done.stdout.split())
    assert 0 < smoke < every
