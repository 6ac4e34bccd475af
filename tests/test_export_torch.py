"""fastnn.export.to_torch and from_torch, against PyTorch itself (skipped where torch is not installed).

The tolerance is tests/test_export.py's :func:`error_bound` (its docstring
says why): PyTorch sums and computes tanh and sigmoid its own way.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import export

torch = pytest.importorskip("torch")

from test_export import ACTIVATIONS, assert_within, error_bound, make_inputs, make_network  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer")



@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_torch_module_agrees_with_predict(activation, dtype):
    model = make_network(activation, dtype)
    module = export.to_torch(model)
    assert isinstance(module, torch.nn.Sequential)
    X = make_inputs(4, dtype)
    with torch.no_grad():
        Y = module(torch.from_numpy(X)).numpy()
    assert Y.dtype == dtype
    assert_within(Y, model.predict(X), error_bound(model, X), f"torch {activation} {dtype}")


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_from_torch_of_to_torch_is_exact(activation, dtype):
    model = make_network(activation, dtype)
    module = export.to_torch(model)
    linear = module[1]
    np.testing.assert_array_equal(linear.weight.detach().numpy(), model.layers[1].W.T)
    np.testing.assert_array_equal(linear.bias.detach().numpy(), model.layers[1].b)
    back = export.from_torch(module)
    assert back.dtype == dtype
    assert [repr(layer) for layer in back.layers] == [repr(layer) for layer in model.layers]
    np.testing.assert_array_equal(back.get_parameters(), model.get_parameters())
    X = make_inputs(4, dtype)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_from_torch_of_a_torch_network_and_training_on():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2, bias=False),
                                 torch.nn.LeakyReLU(0.2))
    model = export.from_torch(module)
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.layers[2].b, np.zeros(2, np.float32))
    X = make_inputs(3, np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(X)).numpy()
    assert_within(model.predict(X), expected, error_bound(model, X), "from_torch")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    before = float(np.mean((model.predict(X) - y) ** 2))
    model.fit(X, y, optimizer=fastnn.Adam(lr=0.01), epochs=20)
    assert float(np.mean((model.predict(X) - y) ** 2)) < before


def test_to_torch_of_an_estimator_gives_its_logits():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X, X[:, 0] > 0)
    with torch.no_grad():
        logits = export.to_torch(clf)(torch.from_numpy(X)).numpy()
    assert_within(logits, clf.model_.predict(X), error_bound(clf.model_, X), "estimator logits")


class MyLinear(torch.nn.Linear):
    pass


@pytest.mark.parametrize("module, error, match", [
    (lambda: torch.nn.Linear(2, 3), TypeError, "module must be a torch.nn.Sequential, got Linear"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Conv1d(1, 1, 1)), TypeError,
     r"module\[1\] is a torch.nn.modules.conv.Conv1d, which fastnn has no layer for"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.GELU()), TypeError, r"module\[1\] is a .*GELU"),
    (lambda: torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 3))), TypeError, r"module\[0\] is a"),
    (lambda: torch.nn.Sequential(MyLinear(2, 3)), TypeError, r"module\[0\] is a .*MyLinear"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=torch.float16)), TypeError, "torch.float16"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1, dtype=torch.float64)), TypeError,
     "same dtype"),
    (lambda: torch.nn.Sequential(torch.nn.ReLU()), ValueError, "at least one nn.Linear"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(4, 1)), ValueError, "do not chain"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LeakyReLU(-0.5)), ValueError, "negative_slope"),
])
def test_from_torch_refuses_what_fastnn_cannot_hold(module, error, match):
    with pytest.raises(error, match=match):
        export.from_torch(module())
