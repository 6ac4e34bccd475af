"""PyTorch as the oracle of "PyTorch-exact": fastnn against torch.optim and torch.nn.

The rest of the suite holds the kernels to ``fastnn.reference``; a formula
transcribed wrongly into both would pass it. Here the numbers come from
PyTorch itself:

* every optimizer rule (SGD, with momentum, Nesterov, L2 weight decay;
  Adam with and without its L2 term; AdamW), 30 steps of ``fastnn.ops``'
  updates on fixed gradients: the parameters after several steps and the
  final state buffers against ``torch.optim``'s;
* every loss, with and without sample weights: value and gradient against
  ``torch.nn.functional`` and autograd;
* every activation: forward and backward against ``torch.nn.functional``;
* whole ``train_step`` and ``fit`` trajectories of small networks with each
  optimizer and loss: every loss returned and the final parameters against
  a ``torch.nn`` network trained by ``torch.optim`` on the same batches.

Each case runs two ways. ``test_*_against_torch`` runs PyTorch now (skipped
where it is not installed) and also checks that the pinned values are still
PyTorch's. ``test_*_against_pinned_torch_values`` compares with values
PyTorch produced once, committed in ``tests/data/torch_pins.py`` by
``tests/data/make_torch_pins.py``, so every wheel's test run checks fastnn
against PyTorch too. The inputs are small integers over powers of two,
exact in both dtypes on every platform; their digest is pinned as well.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import ops

PINS_PATH = Path(__file__).parent / "data" / "torch_pins.py"
#: The PyTorch the pins were made with (``pip install torch==2.13.0``, the CPU build).
TORCH_VERSION = "2.13.0"

#: fastnn against PyTorch, per dtype: the suite's tolerances (tests/conftest.py).
#: The two libraries round differently (summation order, vectorised tanh and
#: exp), but over these short trajectories they agree ten times closer.
TOLERANCE = {
    "float64": dict(rtol=1e-12, atol=1e-13),
    "float32": dict(rtol=1e-5, atol=1e-6),
}
DTYPES = ["float64", "float32"]


# -- inputs ------------------------------------------------------------------------------------

def grid(seed: int, shape, low: int, high: int, scale: int) -> np.ndarray:
    """Integers in [low, high] over ``scale`` (a power of two): exact in float32 and float64."""
    return np.random.default_rng(seed).integers(low, high + 1, size=shape).astype(np.float64) / scale


# -- cases -------------------------------------------------------------------------------------

N_PARAMS, N_OPT_STEPS = 10, 30
#: steps after which the parameters are compared (the first ones see any bias-correction slip)
CHECKED_STEPS = (1, 2, 3, 10, 30)

#: name: (rule, hyperparameters); rule "sgd" runs ops.sgd_momentum_update, "adam"/"adamw" ops.adam_update
OPTIMIZER_CASES = {
    "sgd": ("sgd", dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)),
    "sgd_weight_decay": ("sgd", dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.2)),
    "sgd_momentum": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0)),
    "sgd_momentum_weight_decay": ("sgd", dict(lr=0.05, momentum=0.8, nesterov=False, weight_decay=0.1)),
    "sgd_nesterov": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0)),
    "sgd_nesterov_weight_decay": ("sgd", dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05)),
    "adam": ("adam", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)),
    "adam_weight_decay": ("adam", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=0.1)),
    "adamw": ("adamw", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)),
    "adamw_strong_decay": ("adamw", dict(lr=0.05, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.3)),
}


def optimizer_inputs(name):
    seed = 100 + list(OPTIMIZER_CASES).index(name)
    return {"param": grid(seed, N_PARAMS, -32, 32, 16),
            "grads": grid(seed + 50, (N_OPT_STEPS, N_PARAMS), -64, 64, 32)}


#: name: (loss kind, its parameter, weighted)
LOSS_CASES = {
    f"{kind}{'' if param is None else f'_{param}'}{'_weighted' if weighted else ''}": (kind, param, weighted)
    for kind, param in [("mse", None), ("mae", None), ("huber", 1.0), ("huber", 0.7), ("huber", 2.5),
                        ("cross_entropy", None), ("bce_with_logits", None)]
    for weighted in (False, True)
}
N_LOSS_SAMPLES, N_LOSS_OUTPUTS = 6, 4


def loss_inputs(name):
    kind, _, weighted = LOSS_CASES[name]
    seed = 200 + list(LOSS_CASES).index(name)
    shape = (N_LOSS_SAMPLES, N_LOSS_OUTPUTS)
    yhat = grid(seed, shape, -96, 96, 32)
    if kind == "cross_entropy":
        y = grid(seed + 1, N_LOSS_SAMPLES, 0, N_LOSS_OUTPUTS - 1, 1)
    elif kind == "bce_with_logits":
        y = grid(seed + 1, shape, 0, 8, 8)                     # targets in [0, 1], 0 and 1 among them
    else:
        y = grid(seed + 1, shape, -96, 96, 32) + 1 / 64        # yhat - y never 0 nor a Huber delta
    inputs = {"yhat": yhat, "y": y}
    if weighted:
        inputs["sample_weight"] = np.array([0.0, 1.0, 0.25, 3.0, 0.5, 1.5])   # a zero weight drops a sample
    return inputs


#: name: (activation, its parameter)
ACTIVATION_CASES = {
    "identity": ("identity", None),
    "relu": ("relu", None),
    "leaky_relu": ("leaky_relu", None),
    "leaky_relu_0.2": ("leaky_relu", 0.2),
    "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None),
}


def activation_inputs(name):
    seed = 300 + list(ACTIVATION_CASES).index(name)
    Z = grid(seed, (5, 4), -48, 48, 8)
    Z[0, :2] = 0.0                                              # the kink, where the gradients differ
    return {"Z": Z, "dA": grid(seed + 1, (5, 4), -32, 32, 16)}


#: Networks: ("dense", in, out) or an activation with its parameter.
NETWORKS = {
    "tanh_leaky": [("dense", 3, 6), ("tanh",), ("dense", 6, 4), ("leaky_relu", 0.1), ("dense", 4, 2)],
    "sigmoid_relu": [("dense", 3, 5), ("sigmoid",), ("dense", 5, 5), ("relu",), ("dense", 5, 2)],
    "relu_classes": [("dense", 3, 7), ("relu",), ("dense", 7, 4), ("identity",)],
}
#: the optimizers of the trajectories: (kind, hyperparameters as fastnn's constructors take them)
OPTIMIZERS = {
    "sgd": ("sgd", dict(lr=0.1)),
    "momentum": ("sgd", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    "nesterov": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("adam", dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
    "adamw": ("adamw", dict(lr=0.03, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.2)),
}
N_SAMPLES, BATCH, N_TRAIN_STEPS, N_EPOCHS = 20, 8, 12, 5

#: name: (entry "train_step" or "fit", network, loss kind, loss parameter, optimizer, weighted)
TRAJECTORY_CASES = {
    "train_step_sgd_mse": ("train_step", "tanh_leaky", "mse", None, "sgd", False),
    "train_step_momentum_mae": ("train_step", "sigmoid_relu", "mae", None, "momentum", True),
    "train_step_nesterov_huber": ("train_step", "tanh_leaky", "huber", 0.5, "nesterov", True),
    "train_step_adam_cross_entropy": ("train_step", "relu_classes", "cross_entropy", None, "adam", True),
    "train_step_adamw_bce": ("train_step", "sigmoid_relu", "bce_with_logits", None, "adamw", False),
    "train_step_adamw_mse": ("train_step", "tanh_leaky", "mse", None, "adamw", False),
    "fit_nesterov_mse": ("fit", "tanh_leaky", "mse", None, "nesterov", False),
    "fit_adam_huber": ("fit", "sigmoid_relu", "huber", 1.0, "adam", True),
    "fit_adamw_cross_entropy": ("fit", "relu_classes", "cross_entropy", None, "adamw", False),
    "fit_momentum_bce": ("fit", "sigmoid_relu", "bce_with_logits", None, "momentum", False),
}


def trajectory_inputs(name):
    _, network, kind, _, _, weighted = TRAJECTORY_CASES[name]
    seed = 400 + list(TRAJECTORY_CASES).index(name)
    layers = NETWORKS[network]
    n_in, n_out = layers[0][1], [layer for layer in layers if layer[0] == "dense"][-1][2]
    inputs = {"X": grid(seed, (N_SAMPLES, n_in), -32, 32, 16)}
    for i, layer in enumerate(layers):
        if layer[0] == "dense":
            inputs[f"W{i}"] = grid(seed + 10 + i, (layer[1], layer[2]), -32, 32, 64)
            inputs[f"b{i}"] = grid(seed + 30 + i, layer[2], -16, 16, 64)
    if kind == "cross_entropy":
        inputs["y"] = grid(seed + 1, N_SAMPLES, 0, n_out - 1, 1)
    elif kind == "bce_with_logits":
        inputs["y"] = grid(seed + 1, (N_SAMPLES, n_out), 0, 4, 4)
    else:
        inputs["y"] = grid(seed + 1, (N_SAMPLES, n_out), -32, 32, 16) + 1 / 128
    if weighted:
        inputs["sample_weight"] = grid(seed + 2, N_SAMPLES, 0, 8, 4)
    return inputs


def step_rows(k: int) -> np.ndarray:
    """Rows of train_step number k: batches of BATCH rows, wrapping around the data."""
    return np.arange(k * BATCH, (k + 1) * BATCH) % N_SAMPLES


#: group: (cases, their inputs)
GROUPS = {
    "optimizer": (OPTIMIZER_CASES, optimizer_inputs),
    "loss": (LOSS_CASES, loss_inputs),
    "activation": (ACTIVATION_CASES, activation_inputs),
    "trajectory": (TRAJECTORY_CASES, trajectory_inputs),
}
ALL_CASES = [(group, name) for group, (cases, _) in GROUPS.items() for name in cases]


def case_inputs(group: str, name: str) -> dict:
    return GROUPS[group][1](name)


def inputs_digest(group: str, name: str) -> str:
    """sha256 of a case's inputs (float64 bytes, in key order): the pins hold it too."""
    digest = hashlib.sha256()
    for key, value in sorted(case_inputs(group, name).items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value, dtype="<f8").tobytes())
    return digest.hexdigest()


# -- fastnn ----------------------------------------------------------------------------------

def fastnn_optimizer(kind, hyper):
    return {"sgd": fastnn.SGD, "adam": fastnn.Adam, "adamw": fastnn.AdamW}[kind](**hyper)


def fastnn_loss(kind, param):
    if kind == "huber":
        return fastnn.HuberLoss(param)
    return {"mse": fastnn.MSELoss, "mae": fastnn.MAELoss, "cross_entropy": fastnn.CrossEntropyLoss,
            "bce_with_logits": fastnn.BCEWithLogitsLoss}[kind]()


def fastnn_layer(layer):
    if layer[0] == "dense":
        return fastnn.Dense(layer[1], layer[2])
    if layer[0] == "leaky_relu":
        return fastnn.LeakyReLU(*layer[1:])
    return {"identity": fastnn.Identity, "relu": fastnn.ReLU, "tanh": fastnn.Tanh, "sigmoid": fastnn.Sigmoid}[layer[0]]()


def fastnn_parameters(model) -> np.ndarray:
    """W then b of every Dense layer, flattened: the layout of torch_parameters."""
    return np.concatenate([np.concatenate([layer.W.ravel(), layer.b]) for layer in model.layers
                           if isinstance(layer, fastnn.Dense)])


def run_fastnn(group: str, name: str, dtype: str) -> dict:
    inputs = {key: value.astype(dtype) for key, value in case_inputs(group, name).items()}
    return globals()[f"fastnn_{group}_group"](name, inputs, np.dtype(dtype))


def fastnn_optimizer_group(name, inputs, dtype):
    kind, hyper = OPTIMIZER_CASES[name]
    param = inputs["param"].copy()
    buf1, buf2 = np.zeros_like(param), np.zeros_like(param)
    out = {}
    for step, grad in enumerate(inputs["grads"], start=1):
        if kind == "sgd":
            ops.sgd_momentum_update(param, grad, buf1, **hyper)
        else:
            ops.adam_update(param, grad, buf1, buf2, step, decoupled=kind == "adamw", **hyper)
        if step in CHECKED_STEPS:
            out[f"param_{step}"] = param.copy()
    if kind == "sgd" and hyper["momentum"]:
        out["momentum_buffer"] = buf1
    elif kind != "sgd":
        out["exp_avg"], out["exp_avg_sq"] = buf1, buf2
    return out



def fastnn_loss_group(name, inputs, dtype):
    kind, param, _ = LOSS_CASES[name]
    loss = fastnn_loss(kind, 1.0 if param is None else param)
    y = inputs["y"].astype(np.int64) if kind == "cross_entropy" else inputs["y"]
    w = inputs.get("sample_weight")
    return {"loss": np.array(loss.loss(inputs["yhat"], y, w)), "grad": loss.grad(inputs["yhat"], y, w)}


def fastnn_activation_group(name, inputs, dtype):
    function, param = ACTIVATION_CASES[name]
    layer = fastnn_layer((function,) if param is None else (function, param))
    Z, dA = inputs["Z"], inputs["dA"]
    if function == "identity":
        return {"A": layer.forward(Z), "dZ": layer.backward(Z, dA)}
    extra = () if param is None else (param,)
    A = getattr(ops, f"{function}_forward")(Z, *extra)
    dZ = getattr(ops, f"{function}_backward")(Z, dA, *extra)
    np.testing.assert_array_equal(layer.forward(Z), A)          # the layer runs the same kernel
    np.testing.assert_array_equal(layer.backward(Z, dA), dZ)
    return {"A": A, "dZ": dZ}


def fastnn_trajectory_group(name, inputs, dtype):
    entry, network, kind, param, optimizer_name, _ = TRAJECTORY_CASES[name]
    layers = [fastnn_layer(layer) for layer in NETWORKS[network]]
    model = fastnn.Sequential(layers, dtype=dtype)
    for i, layer in enumerate(model.layers):
        if isinstance(layer, fastnn.Dense):
            layer.W[...] = inputs[f"W{i}"]
            layer.b[...] = inputs[f"b{i}"]
    loss = fastnn_loss(kind, param)
    optimizer = fastnn_optimizer(*OPTIMIZERS[optimizer_name])
    X, w = inputs["X"], inputs.get("sample_weight")
    y = inputs["y"].astype(np.int64) if kind == "cross_entropy" else inputs["y"]
    if entry == "train_step":
        losses = []
        for k in range(N_TRAIN_STEPS):
            rows = step_rows(k)
            losses.append(model.train_step(X[rows], y[rows], loss, optimizer,
                                           sample_weight=None if w is None else w[rows]))
    else:
        losses = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=N_EPOCHS, batch_size=BATCH,
                           shuffle=False, sample_weight=w).loss
    return {"losses": np.array(losses), "params": fastnn_parameters(model)}


# -- PyTorch -------------------------------------------------------------------------------------

def run_torch(group: str, name: str, dtype: str) -> dict:
    """A case run by PyTorch (imported here: the module imports without it)."""
    import torch

    torch.set_num_threads(1)
    inputs = {key: torch.tensor(value.astype(dtype)) for key, value in case_inputs(group, name).items()}
    out = globals()[f"torch_{group}_group"](torch, name, inputs)
    return {key: value.detach().numpy().copy() for key, value in out.items()}


def torch_optimizer(torch, kind, params, hyper):
    hyper = dict(hyper)
    if kind == "sgd":
        return torch.optim.SGD(params, **hyper)
    if "beta1" in hyper:
        hyper["betas"] = (hyper.pop("beta1"), hyper.pop("beta2"))
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind](params, **hyper)


def torch_optimizer_group(torch, name, inputs):
    kind, hyper = OPTIMIZER_CASES[name]
    param = inputs["param"].clone().requires_grad_(True)
    optimizer = torch_optimizer(torch, kind, [param], hyper)
    out = {}
    for step, grad in enumerate(inputs["grads"], start=1):
        param.grad = grad.clone()
        optimizer.step()
        if step in CHECKED_STEPS:
            out[f"param_{step}"] = param.detach().clone()
    state = optimizer.state[param]
    for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        if state.get(key) is not None:
            out[key] = state[key]
    return out


def torch_loss(torch, kind, param, yhat, y, w):
    """The mean loss, or ``sum(w_i * l_i) / sum(w_i)`` with l_i sample i's mean loss."""
    F = torch.nn.functional
    if kind == "cross_entropy":
        per_sample = F.cross_entropy(yhat, y.long(), reduction="none")
    else:
        elements = {"mse": lambda: F.mse_loss(yhat, y, reduction="none"),
                    "mae": lambda: F.l1_loss(yhat, y, reduction="none"),
                    "huber": lambda: F.huber_loss(yhat, y, reduction="none", delta=param),
                    "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(yhat, y, reduction="none"),
                    }[kind]()
        per_sample = elements.reshape(elements.shape[0], -1).mean(dim=1)
    if w is None:
        return per_sample.mean()
    return (per_sample * w).sum() / w.sum()


def torch_loss_group(torch, name, inputs):
    kind, param, _ = LOSS_CASES[name]
    yhat = inputs["yhat"].clone().requires_grad_(True)
    value = torch_loss(torch, kind, 1.0 if param is None else param, yhat, inputs["y"], inputs.get("sample_weight"))
    value.backward()
    return {"loss": value, "grad": yhat.grad}


def torch_activation(torch, function, param, Z):
    F = torch.nn.functional
    if function == "leaky_relu":
        return F.leaky_relu(Z, 0.01 if param is None else param)
    return {"identity": lambda z: z, "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[function](Z)


def torch_activation_group(torch, name, inputs):
    function, param = ACTIVATION_CASES[name]
    Z = inputs["Z"].clone().requires_grad_(True)
    A = torch_activation(torch, function, param, Z)
    (A * inputs["dA"]).sum().backward()
    return {"A": A, "dZ": Z.grad}


def torch_parameters(torch, linears):
    return torch.cat([torch.cat([linear.weight.T.reshape(-1), linear.bias]) for linear in linears])


def torch_trajectory_group(torch, name, inputs):
    entry, network, kind, param, optimizer_name, _ = TRAJECTORY_CASES[name]
    modules, linears = [], []
    for i, layer in enumerate(NETWORKS[network]):
        if layer[0] == "dense":
            linear = torch.nn.Linear(layer[1], layer[2], dtype=inputs["X"].dtype)
            with torch.no_grad():
                linear.weight.copy_(inputs[f"W{i}"].T)
                linear.bias.copy_(inputs[f"b{i}"])
            modules.append(linear)
            linears.append(linear)
        else:
            modules.append(lambda z, layer=layer: torch_activation(torch, layer[0], (layer[1:] or (None,))[0], z))
    parameters = [p for linear in linears for p in linear.parameters()]
    kind_, hyper = OPTIMIZERS[optimizer_name]
    optimizer = torch_optimizer(torch, kind_, parameters, hyper)
    X, y, w = inputs["X"], inputs["y"], inputs.get("sample_weight")

    def step(rows):
        out = X[rows]
        for module in modules:
            out = module(out)
        value = torch_loss(torch, kind, param, out, y[rows], None if w is None else w[rows])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return value.detach()

    if entry == "train_step":
        losses = [step(torch.from_numpy(step_rows(k))) for k in range(N_TRAIN_STEPS)]
    else:
        # History.loss: the mean of each epoch's batch losses, weighted by the
        # batches' sizes (or their sums of sample weights).
        losses = []
        for _ in range(N_EPOCHS):
            total = 0.0
            for start in range(0, N_SAMPLES, BATCH):
                rows = torch.arange(start, min(start + BATCH, N_SAMPLES))
                total = total + step(rows) * (len(rows) if w is None else w[rows].sum())
            losses.append(total / (N_SAMPLES if w is None else w.sum()))
    return {"losses": torch.stack(losses), "params": torch_parameters(torch, linears).detach()}


# -- the pins ------------------------------------------------------------------------------------

def load_pins():
    """tests/data/torch_pins.py, whose PINS are {"group/name": {"inputs_sha256": ..., dtype: {key: values}}}."""
    spec = importlib.util.spec_from_file_location("fastnn_torch_pins", PINS_PATH)
    assert spec is not None and spec.loader is not None, f"cannot load {PINS_PATH}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_pins() -> dict:
    """Every case run by PyTorch, in both dtypes (what tests/data/make_torch_pins.py writes)."""
    pins = {}
    for group, name in ALL_CASES:
        entry = {"inputs_sha256": inputs_digest(group, name)}
        for dtype in DTYPES:
            entry[dtype] = {key: value.tolist() for key, value in run_torch(group, name, dtype).items()}
        pins[f"{group}/{name}"] = entry
    return pins


def assert_close(got: dict, expected: dict, dtype: str, what: str) -> None:
    assert sorted(got) == sorted(expected), f"{what}: compared {sorted(got)} with {sorted(expected)}"
    for key in expected:
        np.testing.assert_allclose(np.asarray(got[key], dtype=np.float64),
                                   np.asarray(expected[key], dtype=np.float64),
                                   **TOLERANCE[dtype], err_msg=f"{what}: {key}")


def case_id(case):
    return f"{case[0]}/{case[1]}"


@pytest.fixture(scope="module")
def pins():
    return load_pins().PINS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_fastnn_against_pinned_torch_values(case, dtype, pins):
    group, name = case
    pinned = pins.get(f"{group}/{name}")
    assert pinned is not None, f"no pinned values for {group}/{name}: run tests/data/make_torch_pins.py"
    assert pinned["inputs_sha256"] == inputs_digest(group, name), (
        f"the inputs of {group}/{name} are not those the pins were made from: run tests/data/make_torch_pins.py")
    assert_close(run_fastnn(group, name, dtype), pinned[dtype], dtype, f"{group}/{name} ({dtype}) against the pins")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_fastnn_against_torch(case, dtype, pins):
    pytest.importorskip("torch")
    group, name = case
    expected = run_torch(group, name, dtype)
    assert_close(run_fastnn(group, name, dtype), expected, dtype, f"{group}/{name} ({dtype}) against torch")
    # The pins are still PyTorch's values (to its rounding: another build may round otherwise).
    assert_close(pins[f"{group}/{name}"][dtype], expected, dtype, f"the pins of {group}/{name} ({dtype})")


def test_every_case_is_pinned_and_every_pin_is_a_case(pins):
    assert sorted(pins) == sorted(f"{group}/{name}" for group, name in ALL_CASES)


def test_the_pins_and_the_torch_extra_name_one_torch():
    assert load_pins().TORCH_VERSION.split("+")[0] == TORCH_VERSION
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    assert f'torch = ["torch=={TORCH_VERSION}"]' in pyproject.read_text(encoding="utf-8")


def test_the_pins_tell_the_formulas_apart(pins):
    """The comparison can fail: the pinned trajectories of the rules differ far beyond the tolerance,
    e.g. AdamW's decay ``1 - lr * wd`` from a decay ``1 - wd``, Nesterov from plain momentum."""
    inputs = optimizer_inputs("adamw_strong_decay")
    _, hyper = OPTIMIZER_CASES["adamw_strong_decay"]
    param = inputs["param"] * (1 - hyper["weight_decay"])         # the decay without lr
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    ops.adam_update(param, inputs["grads"][0], exp_avg, exp_avg_sq, 1, decoupled=True,
                    **dict(hyper, weight_decay=0.0))
    pinned = np.asarray(pins["optimizer/adamw_strong_decay"]["float64"]["param_1"])
    assert not np.allclose(param, pinned, **TOLERANCE["float64"])
    nesterov = np.asarray(pins["optimizer/sgd_nesterov"]["float64"]["param_30"])
    momentum = np.asarray(pins["optimizer/sgd_momentum"]["float64"]["param_30"])
    assert not np.allclose(nesterov, momentum, **TOLERANCE["float64"])
