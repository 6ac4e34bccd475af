"""fastnn.plot: the tutorial's picture and the loss curve, rendered with Agg."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
import fastnn.plot  # noqa: E402
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


# -- the tutorial's figures for any model: hidden units and the network diagram ----------


def relu(v):
    return np.maximum(v, 0.0)


def test_hidden_contributions_of_the_tutorial_network_are_its_three_lines():
    model = fastnn.datasets.tutorial_network()
    X = np.linspace(-1, 4, 101)
    parts = fastnn.plot.hidden_contributions(model, X)
    np.testing.assert_array_equal(parts, np.column_stack([relu(X), -relu(2 * X - 2), relu(2 * X - 4)]))
    np.testing.assert_array_equal(relu(parts.sum(axis=1)), model.predict(X.reshape(-1, 1))[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hidden_contributions_sum_to_the_output_of_a_deeper_model(dtype):
    last = fastnn.Dense(6, 1, seed=2)
    model = fastnn.Sequential([fastnn.Dense(3, 5, seed=0), fastnn.Tanh(), fastnn.Dense(5, 6, seed=1),
                               fastnn.Sigmoid(), last], dtype=dtype)
    X = np.random.default_rng(0).normal(size=(40, 3))
    parts = fastnn.plot.hidden_contributions(model, X)
    assert parts.shape == (40, 6) and parts.dtype == dtype
    np.testing.assert_allclose(parts.sum(axis=1) + last.b[0], model.predict(X)[:, 0],
                               rtol={np.float32: 1e-5, np.float64: 1e-12}[dtype])


def test_hidden_contributions_check_the_model_and_X():
    with pytest.raises(ValueError, match="model must have one output, got 2"):
        fastnn.plot.hidden_contributions(fastnn.Sequential([fastnn.Dense(1, 2)]), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        fastnn.plot.hidden_contributions(fastnn.Sequential([fastnn.Dense(2, 1)]), np.zeros((3, 3)))
    with pytest.raises(TypeError, match="X"):
        fastnn.plot.hidden_contributions(fastnn.datasets.tutorial_network(), ["a", "b"])


def test_hidden_units_draws_each_unit_and_the_output(tmp_path):
    model = fastnn.datasets.tutorial_network()
    ax = fastnn.plot.hidden_units(model, (0, 3), curve=fastnn.datasets.tutorial_curve, n_points=61)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:5] == ["unit 1", "unit 2", "unit 3", "model output", "target output"]
    grid = np.linspace(0, 3, 61)
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), -relu(2 * grid - 2))
    np.testing.assert_array_equal(ax.get_lines()[3].get_ydata(), fastnn.datasets.tutorial_curve(grid))
    assert len(np.unique(rendered(ax, tmp_path / "units.png"), axis=0)) > 20
    with pytest.raises(ValueError, match="x_range"):
        fastnn.plot.hidden_units(model, (3, 0))


def test_network_diagram_draws_units_weights_and_biases(tmp_path):
    model = fastnn.datasets.tutorial_network()
    ax = fastnn.plot.network_diagram(model)
    assert len(ax.patches) == 1 + 3 + 1                        # input, hidden, output units
    texts = [text.get_text() for text in ax.texts]
    for weight in ["1", "2", "-1"]:                            # W1 = [1, 2, 2], W2 = [1, -1, 1]
        assert weight in texts
    for bias in ["0", "-2", "-4"]:
        assert bias in texts
    assert "3 ReLU" in texts and "1 input" in texts
    assert len(np.unique(rendered(ax, tmp_path / "net.png"), axis=0)) > 20


def test_network_diagram_shows_at_most_max_units_per_layer():
    model = fastnn.Sequential([fastnn.Dense(2, 40, seed=0), fastnn.Tanh(), fastnn.Dense(40, 3, seed=1)])
    ax = fastnn.plot.network_diagram(model, max_units=6)
    assert len(ax.patches) == 2 + 6 + 3
    assert "40 Tanh (of 40)" in [text.get_text() for text in ax.texts]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="max_units"):
        fastnn.plot.network_diagram(model, max_units=0)
    with pytest.raises(TypeError, match="weights"):
        fastnn.plot.network_diagram(model, weights=1)
