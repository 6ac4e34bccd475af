"""Every gallery example (examples/plot_*.py) runs, draws, and prints what it claims."""

import contextlib
import functools
import io
import os
import pathlib
import runpy
import shutil
import tempfile

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
if not EXAMPLES.is_dir():
    pytest.skip("examples/ is not in this tree (the sdist's tests, run against an installed wheel)",
                allow_module_level=True)
NEEDS = {"plot_sklearn_pipeline.py": "sklearn"}

#: Lines each example must print (its claims, checked on every run).
PRINTS = {
    "plot_tutorial.py": ["hand-built weights reproduce the curve on 1001 points: max |error| = 0"],
    "plot_save_load.py": ["same predictions: True", "continued exactly: True"],
    "plot_threads.py": ["the threads' parameters equal the serial runs': True"],
    "plot_ensemble.py": ["member 3 equals Sequential.fit: True"],
}


@functools.cache
def run_example(name):
    """Run one example as a script (show() a no-op, in a temporary folder), once per session.

    Returns what it printed, and per figure its axes' titles and how many distinct colours it has.
    """
    path = EXAMPLES / name
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    plt.close("all")
    show, cwd, out = plt.show, os.getcwd(), io.StringIO()
    plt.show = lambda *args, **kwargs: None
    try:
        with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(out):
            os.chdir(folder)
            runpy.run_path(str(path), run_name="__main__")
        figures = []
        for number in plt.get_fignums():
            figure = plt.figure(number)
            figure.canvas.draw()
            pixels = np.asarray(figure.canvas.buffer_rgba()).reshape(-1, 4)
            figures.append(([ax.get_title() for ax in figure.axes], len(np.unique(pixels, axis=0))))
    finally:
        plt.show = show
        os.chdir(cwd)
        plt.close("all")
    return out.getvalue(), figures


def test_there_are_examples():
    names = {path.name for path in EXAMPLES.glob("plot_*.py")}
    assert {"plot_tutorial.py", "plot_classification.py", "plot_sklearn_pipeline.py", "plot_save_load.py",
            "plot_threads.py", "plot_export.py"} <= names


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("plot_*.py")),
                         ids=lambda path: path.name)
def test_example_runs_and_draws(path):
    out, figures = run_example(path.name)
    assert figures, f"{path.name} draws nothing"
    for titles, colours in figures:
        assert colours > 20, f"{path.name}: a blank figure ({titles})"
    for line in PRINTS.get(path.name, []):
        assert line in out.splitlines(), f"{path.name} did not print {line!r}"


def test_tutorial_example_draws_every_figure_the_tutorial_names():
    out, figures = run_example("plot_tutorial.py")
    titles = [title for axes_titles, _ in figures for title in axes_titles]
    for title in ["data points and the regression curve", "a neural network: layers of units",
                  "target output (blue) and a fresh network's output (orange)",
                  "the target built from three lines", "R(x)", "R(2x)", "-R(2x - 2)",
                  "the tutorial's network, with its weights and biases", "the fit improving, epoch by epoch",
                  "the loss falling", "the learned network's 16 units, and their sum"]:
        assert title in titles
    final = float(out.splitlines()[-1].rsplit(":", 1)[1])
    assert final < 5e-3                        # gradient descent learned the curve


def test_classification_example_learns_and_stops_early():
    out, _ = run_example("plot_classification.py")
    accuracy = float(next(line for line in out.splitlines() if line.startswith("held-out accuracy")).split(":")[1])
    assert accuracy > 0.85
    assert "ran 300 of 300 epochs" not in out


def test_ensemble_example_spreads_where_there_is_no_data():
    out, _ = run_example("plot_ensemble.py")
    line = next(line for line in out.splitlines() if line.startswith("spread inside the data"))
    inside, beyond = (float(part.rsplit(" ", 1)[1]) for part in line.split(", beyond it:"))
    assert beyond > 2 * inside


def _difference(out, prefix):
    """The max |difference| the export example printed on the line starting with ``prefix`` (None: absent)."""
    line = next((line for line in out.splitlines() if line.startswith(prefix)), None)
    return None if line is None else float(line.rsplit("=", 1)[1])


def test_export_example_runs_every_export_it_can_and_they_agree():
    out, figures = run_example("plot_export.py")
    lines = out.splitlines()
    assert float(lines[0].rsplit(" ", 1)[1]) < 0.02                       # the network was trained
    assert "#ifndef NET_H" in lines and "..." in lines
    size = next(line for line in lines if line.startswith("header: "))
    assert int(size.split()[1]) > 1000 and "bytes" in size
    c = _difference(out, "C header vs predict on 201 points")
    if shutil.which("cc"):
        assert c is not None and c <= 1e-12
    else:
        assert "no C compiler (cc) found: the header is not compiled here" in lines
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "PyTorch is not installed: to_torch/from_torch skipped" in lines
    else:
        assert _difference(out, "torch module vs predict") <= 1e-12
        assert "from_torch(to_torch(model)) has the same parameters: True" in lines
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        assert "onnx or onnxruntime is not installed: to_onnx skipped" in lines
    else:
        assert "ONNX operators: ['Gemm', 'Relu']" in lines
        assert _difference(out, "onnxruntime vs predict") <= 1e-12
    titles = [title for axes_titles, _ in figures for title in axes_titles]
    assert "model.predict and the exported C header" in titles
