"""fastnn.plot: the tutorial's picture and the loss curve, rendered with Agg."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
from fastnn.plot import fit_1d, loss_curve, save_fit_figure  # noqa: E402


def rendered(ax, path):
    ax.figure.savefig(path, dpi=80)
    plt.close(ax.figure)
    pixels = matplotlib.image.imread(path)
    return pixels.reshape(-1, pixels.shape[-1])


def test_fit_1d_draws_data_target_and_model(tmp_path):
    X, y = fastnn.datasets.tutorial_samples(64, seed=0)
    model = fastnn.datasets.tutorial_network()
    ax = fit_1d(model, X, y, curve=fastnn.datasets.tutorial_curve)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert [line.get_label() for line in ax.get_lines()] == ["target output", "model output"]
    target, fitted = (line.get_ydata() for line in ax.get_lines())
    np.testing.assert_allclose(fitted, target, atol=1e-12)     # the hand-built network is exact
    pixels = rendered(ax, tmp_path / "fit.png")
    assert len(np.unique(pixels, axis=0)) > 20


def test_loss_curve_draws_every_epoch(tmp_path):
    model = fastnn.Sequential([fastnn.Dense(1, 8, seed=0), fastnn.ReLU(), fastnn.Dense(8, 1, seed=1)])
    X, y = fastnn.datasets.tutorial_samples(64, seed=0)
    history = model.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=25, batch_size=16, seed=0)
    ax = loss_curve(history)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), history.loss)
    assert ax.get_yscale() == "log"
    pixels = rendered(ax, tmp_path / "loss.png")
    assert len(np.unique(pixels, axis=0)) > 10


def test_fit_1d_needs_one_input_and_one_output():
    with pytest.raises(ValueError, match="model"):
        fit_1d(fastnn.Sequential([fastnn.Dense(2, 1)]), np.ones((3, 2)), np.ones(3))


def test_save_fit_figure_writes_both_panels_and_leaves_pyplot_alone(tmp_path):
    model = fastnn.datasets.tutorial_network()
    X, y = fastnn.datasets.tutorial_samples(32, seed=0)
    history = fastnn.Sequential([fastnn.Dense(1, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 1, seed=1)]).fit(
        X, y, epochs=3)
    figures, backend = plt.get_fignums(), plt.get_backend()
    save_fit_figure(tmp_path / "fit.png", model, X, y, history, curve=fastnn.datasets.tutorial_curve, title="t")
    assert plt.get_fignums() == figures and plt.get_backend() == backend
    pixels = matplotlib.image.imread(tmp_path / "fit.png")
    assert pixels.shape[:2] == (400, 1100)                      # 11 x 4 inches at 100 dpi
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20


@pytest.mark.parametrize("call,exc,match", [
    (lambda model, X, y: fit_1d(model, X, y, n_points=0), ValueError, "n_points"),
    (lambda model, X, y: loss_curve(fastnn.History(), log="yes"), TypeError, "log must be True or False"),
])
def test_plots_check_their_arguments(call, exc, match):
    model = fastnn.datasets.tutorial_network()
    with pytest.raises(exc, match=match):
        call(model, np.zeros(3), np.zeros(3))
