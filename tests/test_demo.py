"""`python -m fastnn demo`: the tutorial network, then learning its curve."""

import re
import subprocess
import sys

import numpy as np
import pytest

from fastnn.__main__ import TARGET_MSE, main


def run_demo(capsys, *args):
    assert main(["demo", *args]) == 0
    return capsys.readouterr().out


def test_demo_reproduces_the_tutorial_and_learns_the_curve(capsys):
    out = run_demo(capsys)
    assert "max |error| = 0\n" in out
    losses = [float(v) for v in re.findall(r"^epoch \d+/500  loss (\S+)$", out, flags=re.M)]
    assert len(losses) == 11                      # epoch 1, every 50th, and 500
    assert losses[-1] < losses[0] / 10
    final = float(re.search(r"final MSE against the true curve: (\S+)", out).group(1))
    assert final < TARGET_MSE


def test_demo_float32_and_options(capsys):
    out = run_demo(capsys, "--dtype", "float32", "--epochs", "40", "--every", "20", "--seed", "3")
    assert re.findall(r"^epoch (\d+)/40", out, flags=re.M) == ["1", "20", "40"]
    assert "float32" in out


def test_demo_plot(tmp_path, capsys):
    image = tmp_path / "demo.png"
    out = run_demo(capsys, "--epochs", "50", "--plot", str(image))
    assert f"plot saved to {image}" in out
    import matplotlib.image   # the plot extra comes with the test extra

    pixels = matplotlib.image.imread(image)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 500
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 50   # not a blank canvas


def test_demo_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
    assert "--epochs" in capsys.readouterr().err


def test_python_dash_m_runs():
    done = subprocess.run([sys.executable, "-m", "fastnn", "demo", "--epochs", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "final MSE against the true curve" in done.stdout
