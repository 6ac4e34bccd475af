"""The documentation: it builds with warnings as errors, and the built site is whole.

The site is built once per session (``python -m sphinx -W -b html docs``) into
a temporary folder; the tests then check that every public name has its
page, that every picture the gallery drew is a real, non-blank PNG, that no
internal link is broken, and that the performance page says for every
results file either how it was made or that it is absent. The results
directive's rendering is also tested on its own, with and without files.
Skipped without the ``docs`` extra. ``FASTNN_DOCS_SITE=docs/_build/html``
checks a tree built beforehand instead of building one.
"""

import html.parser
import importlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest

for _name in ("sphinx", "sphinx_gallery", "numpydoc", "pydata_sphinx_theme", "sphinx_copybutton", "matplotlib"):
    pytest.importorskip(_name)

import matplotlib.image  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
if not (DOCS / "conf.py").exists():
    pytest.skip("docs/ is not in this tree (the sdist's tests, run against an installed wheel)", allow_module_level=True)


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The built site's folder: one build per session, or the tree $FASTNN_DOCS_SITE names (already built)."""
    if os.environ.get("FASTNN_DOCS_SITE"):
        return pathlib.Path(os.environ["FASTNN_DOCS_SITE"])
    pytest.importorskip("sklearn")          # the estimators' pages and the pipeline example
    out = tmp_path_factory.mktemp("html")
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"sphinx -W failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return out


@pytest.fixture(scope="session")
def results():
    return load_module("fastnn_results", DOCS / "_ext" / "fastnn_results.py")


# -- the API reference ------------------------------------------------------------------


def documented_names():
    """Every public name the API reference must have a page for, from the modules' __all__."""
    import fastnn

    names = [f"fastnn.{name}" for name in fastnn.__all__
             if not name.startswith("__") and not isinstance(getattr(fastnn, name), type(fastnn))]
    modules = ["fastnn.ops", "fastnn.reference", "fastnn.datasets", "fastnn.plot", "fastnn.callbacks",
               "fastnn.estimators", "fastnn.io", "fastnn.export", "fastnn.dask"]
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            assert module_name == "fastnn.export", f"{module_name} does not import"
            continue
        names += [f"{module_name}.{name}" for name in getattr(module, "__all__", []) if not name.startswith("__")]
    return names


def test_every_public_name_has_a_page(site):
    names = documented_names()
    assert "fastnn.Sequential" in names and "fastnn.ops.dense_forward" in names and "fastnn.plot.hidden_units" in names
    missing = [name for name in names if not (site / "api" / "generated" / f"{name}.html").exists()]
    assert not missing, f"no API page for {missing}"
    index = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert f"generated/{name}.html" in index, name


def test_api_pages_show_the_numpydoc_sections(site):
    page = (site / "api" / "generated" / "fastnn.ops.dense_forward.html").read_text(encoding="utf-8")
    assert "Parameters" in page and "Returns" in page
    page = (site / "api" / "generated" / "fastnn.plot.hidden_contributions.html").read_text(encoding="utf-8")
    assert "n_samples" in page and "Raises" in page


# -- the gallery --------------------------------------------------------------------------


def test_every_gallery_image_is_a_real_picture(site):
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    images = sorted((site / "_images").glob("sphx_glr_plot_*.png"))
    for example in examples:
        drawn = [image for image in images if image.name.startswith(f"sphx_glr_{example.stem}_")
                 and "thumb" not in image.name]
        assert drawn, f"{example.name} drew no picture in the gallery"
    for image in images:
        pixels = matplotlib.image.imread(image)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 50, image.name
        colours = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
        assert colours > 20, f"{image.name} is blank ({colours} colours)"


def test_gallery_pages_hold_the_examples_output(site):
    page = (site / "auto_examples" / "plot_tutorial.html").read_text(encoding="utf-8")
    assert "max |error| = 0" in page
    assert "The tutorial, figure by figure" in page


# -- links --------------------------------------------------------------------------------


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and key == "href" and "preload" in (attrs.get("rel") or "")):
                self.links.append(attrs[key])


def parsed(path, cache={}):
    if path not in cache:
        parser = Links()
        parser.feed(path.read_text(encoding="utf-8"))
        cache[path] = parser
    return cache[path]


def test_no_internal_link_is_broken(site):
    broken = []
    for page in site.rglob("*.html"):
        if "_static" in page.relative_to(site).parts:     # the theme's templates, not pages
            continue
        for link in parsed(page).links:
            url = urllib.parse.urlsplit(link)
            if url.scheme or url.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in parsed(target).ids:
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])


# -- the performance pages and the results files ------------------------------------------


def test_performance_page_says_how_each_result_was_made_or_that_it_is_absent(site, results):
    page = (site / "guide" / "performance.html").read_text(encoding="utf-8")
    for name in results.COMMANDS:
        record = results.load(name)
        if record is None:
            assert f"docs/results/{name}.json</span></code> is absent" in page or \
                f"docs/results/{name}.json</code> is absent" in page, name
        else:
            assert "Measured with" in page and (record.get("commit") or "an unknown commit") in page, name
    assert "Not measured" not in page or any(results.load(name) is None for name in results.COMMANDS)


ENVELOPE = {"command": "python benchmarks/x.py --json out.json", "commit": "abc1234", "date": "2026-12-02T03:00:00+00:00",
            "load_average": 1.5,
            "machine": {"cpu": "AMD EPYC, family 25 model 1", "isa": "avx2", "blas": "openblas 0.3 (lib_x.so)",
                        "python": "3.11.7", "numpy": "2.4.6", "threads": 1}}
ROWS = {
    "compare": {"rows": [{"config": "tiny", "title": "tiny 8-32-32-1", "dtype": "float64", "unit": "step",
                          "fastnn_us": 4.0, "numpy_us": 40.0, "torch_us": None, "sklearn_us": 400.0}],
                "estimators": [{"task": "digits", "estimator": "fastnn.MLPClassifier", "solver": "adam",
                                "fastnn_s": 0.5, "sklearn_s": 1.0, "fastnn_score": 0.96, "sklearn_score": 0.95}]},
    "asv_ratios": {"rows": [{"benchmark": "bench_model.TrainStep.time_train_step", "params": "tiny, float64",
                             "fastnn_s": 2e-5, "reference_s": 8e-5, "ratio": 4.0}]},
    "loss_ratios": {"rows": [{"loss": "mae", "dtype": "float32", "shape": "256x512", "fastnn_us": 30.0,
                              "reference_us": 300.0, "ratio": 10.0, "an_unknown_key": 1}]},
    "stream_floor": {"rows": [{"kernel": "sgd_update", "dtype": "float64", "shape": "784x512", "fastnn_us": 200.0,
                               "reference_us": 240.0, "ratio": 1.2, "copy_us": 100.0, "floor_us": 200.0,
                               "best_ratio": 1.2, "best_ratio_one_pass": 1.8, "an_unknown_key": 1}]},
    "activation_steps": {"rows": [{"activation": "tanh", "dtype": "float64", "config": "tiny-tanh", "step_us": 80.0,
                                   "relu_step_us": 64.0, "ratio": 1.25, "ratio_min": 1.2, "ratio_max": 1.3,
                                   "rounds": 21, "an_unknown_key": 1}]},
    "planner": {"rows": [{"config": "tiny", "dtype": "float64", "planned": "avx2 tiles", "planned_us": 5.0,
                          "best_fixed": "avx2 blas", "best_fixed_us": 4.9, "ratio": 1.02}]},
    "export": {"rows": [{"model": "tiny", "dtype": "float32", "what": "one sample", "c_us": 0.2, "predict_us": 2.0,
                         "onnxruntime_us": None, "an_unknown_key": 1}]},
    "crossover": {"rows": [{"dtype": dtype, "batch": batch, "in_features": k, "out_features": m,
                            "loops_us": 2.0 * k * m * batch, "blas_us": 1.0 + k * m * batch, "an_unknown_key": 1,
                            "ratio": 2.0 * k * m * batch / (1.0 + k * m * batch)}
                           for dtype in ("float64", "float32") for k, m in ((1, 1), (64, 64), (256, 1))
                           for batch in (1, 32)]},
    "dask_search": {"rows": [{"backend": "serial", "workers": 1, "median_s": 10.0, "first_s": 10.5, "startup_s": None,
                              "speedup": 1.0, "best_score": 0.95, "same_scores": True, "an_unknown_key": 1},
                             {"backend": "dask", "workers": 2, "median_s": 6.0, "first_s": 7.0, "startup_s": 2.5,
                              "speedup": 10.0 / 6.0, "best_score": 0.95, "same_scores": True}]},
}


@pytest.mark.parametrize("name,table", [("compare", "steps"), ("compare", "estimators"), ("asv_ratios", "rows"),
                                        ("planner", "rows"), ("export", "rows"), ("crossover", "rows"),
                                        ("dask_search", "rows"), ("loss_ratios", "rows"), ("stream_floor", "rows"),
                                        ("activation_steps", "rows")])
def test_results_tables_with_and_without_their_file(name, table, results, tmp_path):
    record = dict(ENVELOPE, **ROWS[name])
    lines = results.table_lines(name, table, record)
    text = "\n".join(lines)
    assert "``python benchmarks/x.py --json out.json``" in text and "abc1234" in text
    assert "AMD EPYC, family 25 model 1" in text and "lib\\_x.so" in text      # escaped for reST
    assert "load average 1.5 before the run" in text
    assert ".. list-table::" in text
    assert "an_unknown_key" not in text and "onnxruntime" not in text       # unknown keys, empty columns
    assert results.chart(name, table, record, tmp_path / "chart.png")
    pixels = matplotlib.image.imread(tmp_path / "chart.png")
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20
    (tmp_path / f"{name}.json").write_text(json.dumps(record))
    assert results.load(name, tmp_path) == record
    absent = "\n".join(results.table_lines(name, table, results.load(name, tmp_path / "nowhere")))
    assert absent.startswith(f"Not measured in this build: ``docs/results/{name}.json`` is absent")
    assert results.COMMANDS[name] in absent


def test_compare_table_draws_the_speed_ups(results):
    record = dict(ENVELOPE, **ROWS["compare"])
    lines = results.table_lines("compare", "steps", record)
    assert "     - 10x" in lines and "     - 100x" in lines        # NumPy's and scikit-learn's time / fastnn's
    assert not any("PyTorch" in line for line in lines)          # not measured: no column


def test_dask_search_table_says_the_speed_up_and_whether_the_scores_matched(results):
    lines = results.table_lines("dask_search", "rows", dict(ENVELOPE, **ROWS["dask_search"]))
    dask_row = lines[lines.index("   * - dask"):]
    assert dask_row[1:8] == ["     - 2", "     - 6", "     - 7", "     - 2.5", "     - 1.67", "     - 0.95",
                             "     - yes"]
    assert "     - —" in lines[lines.index("   * - serial"):lines.index("   * - dask")]   # no cluster to start


def test_crossover_table_pivots_the_ratio_and_its_chart_is_a_heat_map_per_dtype(results, tmp_path, monkeypatch):
    record = dict(ENVELOPE, **ROWS["crossover"])
    lines = results.table_lines("crossover", "rows", record)
    assert ["     - n=1", "     - n=32"] == [line for line in lines if line.startswith("     - n=")]
    assert lines.count("   * - float64") == 3 and lines.count("   * - float32") == 3   # a row per dtype and shape
    first = lines.index("   * - float64")
    assert lines[first + 1:first + 4] == ["     - 1, 1", "     - 1.00", "     - 1.94"]     # 2/2 and 64/33
    drawn = {}
    monkeypatch.setattr(results, "heatmap", lambda record, path: drawn.setdefault("heatmap", path) is not None)
    assert results.chart("crossover", "rows", record, tmp_path / "chart.png") and "heatmap" in drawn
    monkeypatch.undo()
    import matplotlib.figure

    panels = {}
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, path, **kwargs: (
        panels.setdefault("titles", [ax.get_title() for ax in figure.axes]), savefig(figure, path, **kwargs)))
    assert results.heatmap(record, tmp_path / "heat.png")
    assert panels["titles"][:2] == ["float64", "float32"]                   # one panel per dtype, then the bar
    assert not results.heatmap(dict(ENVELOPE, rows=[]), tmp_path / "none.png")


def test_crossover_script_writes_the_results_envelope(tmp_path, capsys):
    crossover = load_module("crossover", ROOT / "benchmarks" / "crossover.py")
    out = tmp_path / "crossover.json"
    crossover.main(["--dtype", "float32", "--shapes", "4x3", "--batches", "1", "8", "--repeat", "1",
                    "--json", str(out)])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert "python benchmarks/crossover.py --dtype float32 --shapes 4x3 --batches 1 8" in record["command"]
    assert {"commit", "date", "machine"} <= set(record) and record["machine"]["threads"] == 1
    assert [(row["dtype"], row["in_features"], row["out_features"], row["batch"]) for row in record["rows"]] == [
        ("float32", 4, 3, 1), ("float32", 4, 3, 8)]
    for row in record["rows"]:
        assert row["loops_us"] > 0 and row["blas_us"] > 0
        assert row["ratio"] == pytest.approx(row["loops_us"] / row["blas_us"])
    assert "| 4, 3 |" in capsys.readouterr().out


def run_results_script(name: str, argv: list[str], tmp_path, monkeypatch) -> dict:
    """Run benchmarks/<name>.py's main with ``argv`` and --json; the record it wrote,
    whose envelope says the command, the commit, the date and the machine."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = load_module(name, ROOT / "benchmarks" / f"{name}.py")
    out = tmp_path / f"{name}.json"
    module.main([*argv, "--json", str(out)])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert f"python benchmarks/{name}.py {' '.join(argv)}" in record["command"]
    assert {"commit", "date", "machine"} <= set(record)
    return record


def test_stream_floor_script_writes_the_results_envelope(tmp_path, capsys, monkeypatch):
    record = run_results_script("stream_floor", ["--rounds", "1", "--target", "0.0001"], tmp_path, monkeypatch)
    assert [(row["kernel"], row["dtype"]) for row in record["rows"]] == [
        (kernel, dtype) for kernel in ("sgd_update", "relu_backward", "mse_grad") for dtype in ("float32", "float64")]
    for row in record["rows"]:
        transfer = row["copy_us"] / 3
        assert row["floor_us"] == pytest.approx(row["fastnn_transfers"] * transfer)
        assert row["ratio"] == pytest.approx(row["reference_us"] / row["fastnn_us"])
        assert row["best_ratio"] == pytest.approx(row["reference_us"] / row["floor_us"])
        assert row["best_ratio_one_pass"] >= row["best_ratio"]
    assert "relu_backward" in capsys.readouterr().out


def test_activation_steps_script_writes_the_median_of_its_rounds(tmp_path, capsys, monkeypatch):
    record = run_results_script("activation_steps", ["--rounds", "3", "--target", "0.0005"], tmp_path, monkeypatch)
    assert [(row["activation"], row["dtype"]) for row in record["rows"]] == [
        (name, dtype) for dtype in ("float32", "float64") for name in ("tanh", "sigmoid")]
    for row in record["rows"]:
        assert row["rounds"] == 3 and row["step_us"] > 0 and row["relu_step_us"] > 0
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert "sigmoid  float64" in capsys.readouterr().out


def test_rerun_rows_times_the_rows_below_the_floor_and_stores_them(tmp_path, capsys, monkeypatch):
    rerun_rows = load_module("rerun_rows", ROOT / "benchmarks" / "rerun_rows.py")
    rows = [{"benchmark": "bench_ops.ReLU.time_forward", "params": "tutorial-1, float64", "fastnn_s": 2e-6,
             "reference_s": 1e-6, "ratio": 0.5},
            {"benchmark": "bench_ops.ReLU.time_backward", "params": "tutorial-1, float64", "fastnn_s": 1e-6,
             "reference_s": 2e-6, "ratio": 2.0}]
    path = tmp_path / "asv_ratios.json"
    path.write_text(json.dumps(dict(ENVELOPE, rows=rows)))
    rerun_rows.main(["--json", str(path), "--rounds", "3", "--calls", "2"])
    assert json.loads(path.read_text())["rows"] == rows                     # printed, not stored
    assert "bench_ops.ReLU.time_forward [tutorial-1, float64]: asv 0.50" in capsys.readouterr().out
    status = rerun_rows.main(["--json", str(path), "--rounds", "3", "--calls", "2", "--write"])
    below, above = json.loads(path.read_text())["rows"]
    assert below["rerun_rounds"] == 3 and below["rerun_fastnn_s"] > 0 and below["rerun_reference_s"] > 0
    assert status == (1 if below["rerun_ratio"] < 1.0 else 0)
    assert "rerun_ratio" not in above                                        # above the floor: not rerun
    lines = load_module("fastnn_results", ROOT / "docs" / "_ext" / "fastnn_results.py").table_lines(
        "asv_ratios", "rows", json.loads(path.read_text()))
    assert f"     - {below['rerun_ratio']:.3g}" in lines


def test_warm_setup_sets_up_once_per_parameters_and_keeps_the_live_state(monkeypatch):
    # The asv suites' base (benchmarks/common.py): asv re-runs setup before every timed
    # call; a WarmSetup suite's setup runs once per parameters and then restores the
    # same state, a subclass's super().setup included, and keeps no failed setup.
    monkeypatch.syspath_prepend(str(ROOT))
    common = importlib.import_module("benchmarks.common")
    runs = []

    class Base(common.WarmSetup):
        def setup(self, size):
            runs.append(("base", size))
            self.values = np.zeros(size)

    class Suite(Base):
        def setup(self, size):
            if size == 0:
                raise NotImplementedError("nothing to time")
            super().setup(size)
            runs.append(("suite", size))
            self.count = 0

    first = Suite()
    first.setup(3)
    first.values += 1
    first.count += 1
    again = Suite()
    again.setup(3)
    assert runs == [("base", 3), ("suite", 3)]
    assert again.values is first.values and again.count == 1        # the live state, updated
    other = Suite()
    other.setup(4)
    assert runs[-2:] == [("base", 4), ("suite", 4)] and other.values.shape == (4,)
    for _ in range(2):
        with pytest.raises(NotImplementedError):
            Suite().setup(0)
    assert Suite.number == 10 and Suite.setup.__name__ == "setup"
