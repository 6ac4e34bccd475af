"""SGD with momentum/Nesterov/weight decay, Adam and AdamW: held to the reference's
written-out formulas (which are PyTorch's), in the kernels and in whole training steps."""

import copy
import pickle

import numpy as np
import pytest
from conftest import TOLERANCE

import fastnn
from fastnn import ops, reference
from fastnn.reference import ReferenceMLP

SGD_CASES = [dict(momentum=0.9), dict(momentum=0.5, nesterov=True), dict(momentum=0.9, weight_decay=0.01),
             dict(weight_decay=0.1), dict(momentum=0.8, nesterov=True, weight_decay=0.05)]
ADAM_CASES = [dict(), dict(beta1=0.8, beta2=0.99, eps=1e-6), dict(weight_decay=0.1),
              dict(weight_decay=0.1, decoupled=True), dict(beta1=0.0, beta2=0.5, decoupled=True, weight_decay=0.01)]


def tolerance(dtype, factor=10):
    tol = TOLERANCE[np.dtype(dtype)]
    return dict(rtol=tol["rtol"] * factor, atol=tol["atol"] * factor)


# -- the kernels, five steps against the reference -------------------------------------------------

@pytest.mark.parametrize("case", SGD_CASES)
@pytest.mark.parametrize("shape", [(1,), (7,), (4, 3), (33, 5)])
def test_sgd_momentum_update_matches_reference(case, shape, dtype, rng):
    param = rng.normal(size=shape).astype(dtype)
    buffer = np.zeros_like(param)
    expected, expected_buffer = param.copy(), buffer.copy()
    for _ in range(5):
        grad = rng.normal(size=shape).astype(dtype)
        kwargs = {"momentum": 0.0, **case}
        assert ops.sgd_momentum_update(param, grad, buffer, 0.1, **kwargs) is None
        reference.sgd_momentum_update(expected, grad, expected_buffer, 0.1, case.get("momentum", 0.0),
                                      case.get("nesterov", False), case.get("weight_decay", 0.0))
    np.testing.assert_allclose(param, expected, **tolerance(dtype))
    np.testing.assert_allclose(buffer, expected_buffer, **tolerance(dtype))
    assert param.dtype == dtype and buffer.dtype == dtype


@pytest.mark.parametrize("case", ADAM_CASES)
@pytest.mark.parametrize("shape", [(1,), (6,), (5, 4)])
def test_adam_update_matches_reference(case, shape, dtype, rng):
    param = rng.normal(size=shape).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    expected, em, ev = param.copy(), m.copy(), v.copy()
    for step in range(1, 6):
        grad = rng.normal(size=shape).astype(dtype)
        ops.adam_update(param, grad, m, v, step, 0.01, **case)
        reference.adam_update(expected, grad, em, ev, step, 0.01, **case)
    for mine, theirs in ((param, expected), (m, em), (v, ev)):
        np.testing.assert_allclose(mine, theirs, **tolerance(dtype))


def test_adam_written_out_first_step():
    # After one step from zero moments, m = (1 - b1) g, v = (1 - b2) g^2, and the
    # bias corrections make the step lr * g / (|g| + eps'), i.e. about lr * sign(g).
    param = np.array([1.0, -2.0, 3.0])
    grad = np.array([0.5, -0.25, 2.0])
    m, v = np.zeros(3), np.zeros(3)
    ops.adam_update(param, grad, m, v, 1, 0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_allclose(m, 0.1 * grad, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * grad**2, rtol=1e-15)
    denom = np.sqrt(v) / np.sqrt(0.001) + 1e-8
    np.testing.assert_allclose(param, [1.0, -2.0, 3.0] - (0.1 / 0.1) * (m / denom), rtol=1e-15)
    np.testing.assert_allclose(param, [0.9, -1.9, 2.9], rtol=1e-7)


def test_sgd_momentum_written_out():
    param, buffer = np.array([1.0]), np.zeros(1)
    for grad in (1.0, 1.0, 1.0):
        ops.sgd_momentum_update(param, np.array([grad]), buffer, 0.1, 0.5)
    # buffers 1, 1.5, 1.75; param 1 - 0.1 * (1 + 1.5 + 1.75)
    np.testing.assert_allclose(buffer, [1.75], rtol=1e-15)
    np.testing.assert_allclose(param, [1 - 0.425], rtol=1e-15)


def test_update_layouts_and_failures(rng):
    base = rng.normal(size=(6, 4))
    param = np.asfortranarray(base.copy())
    m = np.zeros((6, 4))
    v = np.zeros((6, 4))[::-1]
    grad = rng.normal(size=(6, 4)).astype(np.float32)
    expected, em, ev = base.copy(), np.zeros((6, 4)), np.zeros((6, 4))
    ops.adam_update(param, grad, m, v, 1, 0.01)
    reference.adam_update(expected, grad.astype(np.float64), em, ev, 1, 0.01)
    np.testing.assert_allclose(param, expected, rtol=1e-12)
    np.testing.assert_allclose(v, ev, rtol=1e-12)
    before = param.copy(), m.copy(), v.copy()
    with pytest.raises(FloatingPointError, match="non-finite"):
        ops.adam_update(param, np.full((6, 4), 1e300), m, v, 2, 1e300)
    for now, then in zip((param, m, v), before):
        np.testing.assert_array_equal(now, then)
    with pytest.raises(ValueError, match="exp_avg"):
        ops.adam_update(param, grad, np.zeros(3), v, 2, 0.01)
    with pytest.raises(TypeError, match="exp_avg_sq"):
        ops.adam_update(param, grad, m, np.zeros((6, 4), dtype=np.float32), 2, 0.01)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(param, grad, m, v, 0, 0.01)
    with pytest.raises(ValueError, match="beta1"):
        ops.adam_update(param, grad, m, v, 2, 0.01, beta1=1.0)
    with pytest.raises(ValueError, match="momentum"):
        ops.sgd_momentum_update(param, grad, m, 0.1, -0.5)
    with pytest.raises(ValueError, match="momentum_buffer"):
        ops.sgd_momentum_update(param, grad, m[:2], 0.1, 0.5)


# -- whole training steps against the reference --------------------------------------------------

def make_model(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return fastnn.Sequential([fastnn.Dense(3, 6, seed=rng), fastnn.ReLU(), fastnn.Dense(6, 2, seed=rng)], dtype=dtype)


def flat_grads(grads):
    return np.concatenate([np.concatenate([g[0].ravel(), g[1]]) for g in grads if g is not None])


def reference_trajectory(model, X, y, rule, steps):
    """Parameters after `steps` steps of `rule` (a function of (params, grads, state, t))."""
    ref = ReferenceMLP.from_model(model)
    params = model.get_parameters().copy()
    state = {}
    for t in range(1, steps + 1):
        ref.layers = rebuild(ref.layers, params)
        _, grads = ref.gradients(X, y)
        rule(params, flat_grads(grads), state, t)
    return params


def rebuild(layers, params):
    out, offset = [], 0
    for layer in layers:
        if layer[0] == "dense":
            W, b = layer[1], layer[2]
            W = params[offset:offset + W.size].reshape(W.shape).copy()
            offset += W.size
            b = params[offset:offset + b.size].copy()
            offset += b.size
            out.append(("dense", W, b))
        else:
            out.append(layer)
    return out


OPTIMIZERS = {
    "sgd-momentum": (lambda: fastnn.SGD(0.05, momentum=0.9),
                     lambda p, g, s, t: reference.sgd_momentum_update(p, g, s.setdefault("b", np.zeros_like(p)), 0.05, 0.9)),
    "nesterov-wd": (lambda: fastnn.SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                    lambda p, g, s, t: reference.sgd_momentum_update(p, g, s.setdefault("b", np.zeros_like(p)), 0.05, 0.8, True, 0.01)),
    "sgd-wd": (lambda: fastnn.SGD(0.05, weight_decay=0.1),
               lambda p, g, s, t: reference.sgd_momentum_update(p, g, s.setdefault("b", np.zeros_like(p)), 0.05, 0.0, False, 0.1)),
    "adam": (lambda: fastnn.Adam(0.01),
             lambda p, g, s, t: reference.adam_update(p, g, s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p)), t, 0.01)),
    "adam-l2": (lambda: fastnn.Adam(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                lambda p, g, s, t: reference.adam_update(p, g, s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p)), t, 0.01, 0.8, 0.99, 1e-6, 0.1)),
    "adamw": (lambda: fastnn.AdamW(0.01),
              lambda p, g, s, t: reference.adam_update(p, g, s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p)), t, 0.01, weight_decay=0.01, decoupled=True)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_train_step_trajectory_matches_reference(name, dtype, rng):
    make, rule = OPTIMIZERS[name]
    model = make_model(dtype)
    X = rng.normal(size=(17, 3)).astype(dtype)
    y = rng.normal(size=(17, 2)).astype(dtype)
    expected = reference_trajectory(model, X, y, rule, 5)
    optimizer = make()
    for _ in range(5):
        model.train_step(X, y, fastnn.MSELoss(), optimizer)
    np.testing.assert_allclose(model.get_parameters(), expected, **tolerance(dtype, 100))
    # Plain SGD keeps no state (and may train several models); the others count their steps.
    assert model.optimizer_state(optimizer)["step"] == (5 if optimizer.state_names else 0)


@pytest.mark.parametrize("name", ["adam", "nesterov-wd"])
def test_fit_keeps_optimizer_state_between_calls(name, rng):
    make, _ = OPTIMIZERS[name]
    X, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    once, twice = make_model(np.float64), make_model(np.float64)
    once.fit(X, y, optimizer=make(), epochs=4, batch_size=8, shuffle=False)
    optimizer = make()
    twice.fit(X, y, optimizer=optimizer, epochs=2, batch_size=8, shuffle=False)
    twice.fit(X, y, optimizer=optimizer, epochs=2, batch_size=8, shuffle=False)
    np.testing.assert_array_equal(once.get_parameters(), twice.get_parameters())
    assert twice.optimizer_state(optimizer)["step"] == 16


def test_optimizer_state_round_trip_and_pickle(rng):
    """The model keeps each optimizer's state: it can be read, set on another model,
    and travels with the model and its optimizer when both are copied together."""
    X, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    a, b = make_model(np.float64), make_model(np.float64)
    opt_a = fastnn.Adam(0.01)
    for _ in range(3):
        a.train_step(X, y, fastnn.MSELoss(), opt_a)
    b.set_parameters(a.get_parameters())
    opt_b = fastnn.Adam(0.01)
    b.set_optimizer_state(opt_b, a.optimizer_state(opt_a))
    c, opt_c = pickle.loads(pickle.dumps((a, opt_a)))
    d, opt_d = copy.deepcopy((a, opt_a))
    for _ in range(3):
        for model, optimizer in ((a, opt_a), (b, opt_b), (c, opt_c), (d, opt_d)):
            model.train_step(X, y, fastnn.MSELoss(), optimizer)
    for model in (b, c, d):
        np.testing.assert_array_equal(a.get_parameters(), model.get_parameters())
    state = a.optimizer_state(opt_a)
    assert state["step"] == 6 and set(state) == {"step", "exp_avg", "exp_avg_sq"}
    assert c.optimizer_state(opt_c)["step"] == 6 and a.optimizer_state(opt_c) == {"step": 0}
    fresh = make_model(np.float64)
    before = fresh.optimizer_state(opt_a)
    with pytest.raises(ValueError, match=r"state\['exp_avg'\] must have shape \(38,\)"):
        fresh.set_optimizer_state(opt_a, {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)})
    with pytest.raises(ValueError, match="does not use"):
        fresh.set_optimizer_state(opt_a, {"step": 1, "momentum_buffer": np.zeros(38)})
    with pytest.raises(ValueError, match=r"state\['step'\]"):
        fresh.set_optimizer_state(opt_a, {"step": -1})
    with pytest.raises(TypeError, match="state must be a dict"):
        fresh.set_optimizer_state(opt_a, [1])
    assert fresh.optimizer_state(opt_a) == before


def test_optimizer_state_of_a_state_less_rule(rng):
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    model, optimizer = make_model(np.float64), fastnn.SGD(0.1)
    model.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert optimizer.state_names == () and model.optimizer_state(optimizer) == {"step": 0}
    with pytest.raises(ValueError, match="does not use"):
        model.set_optimizer_state(optimizer, {"step": 0, "momentum_buffer": np.zeros(model.n_parameters)})


def test_plain_sgd_may_train_several_models(rng):
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    shared = fastnn.SGD(0.1)
    a, b, c = make_model(np.float64), make_model(np.float64), make_model(np.float64)
    for model in (a, b):
        model.train_step(X, y, fastnn.MSELoss(), shared)
    c.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))
    np.testing.assert_array_equal(a.get_parameters(), c.get_parameters())
    np.testing.assert_array_equal(b.get_parameters(), c.get_parameters())


def test_one_optimizer_trains_several_models_each_with_its_state(rng):
    """An optimizer is a description: each model keeps its own state for it."""
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    shared, own_a, own_b = fastnn.Adam(0.01), fastnn.Adam(0.01), fastnn.Adam(0.01)
    a, b = make_model(np.float64), make_model(np.float64, seed=1)
    twin_a, twin_b = copy.deepcopy(a), copy.deepcopy(b)
    for _ in range(3):
        a.train_step(X, y, fastnn.MSELoss(), shared)
        b.train_step(X, y, fastnn.MSELoss(), shared)
        twin_a.train_step(X, y, fastnn.MSELoss(), own_a)
    for _ in range(3):
        twin_b.train_step(X, y, fastnn.MSELoss(), own_b)
    np.testing.assert_array_equal(a.get_parameters(), twin_a.get_parameters())
    np.testing.assert_array_equal(b.get_parameters(), twin_b.get_parameters())
    assert a.optimizer_state(shared)["step"] == b.optimizer_state(shared)["step"] == 3


def test_divergence_leaves_parameters_and_state_unchanged(rng):
    model = make_model(np.float64)
    X, y = rng.normal(size=(5, 3)) * 1e150, rng.normal(size=(5, 2))
    optimizer = fastnn.SGD(1e100, momentum=0.9)
    before = model.get_parameters().tobytes(), model.optimizer_state(optimizer)
    with pytest.raises(FloatingPointError):
        model.train_step(X, y, fastnn.MSELoss(), optimizer)
    assert model.get_parameters().tobytes() == before[0]
    after = model.optimizer_state(optimizer)
    # No update was applied: the model keeps no state for the optimizer (no buffer yet).
    assert after == before[1] == {"step": 0}
    with pytest.raises(FloatingPointError):
        model.fit(X, y, optimizer=optimizer)
    assert model.get_parameters().tobytes() == before[0] and model.optimizer_state(optimizer) == {"step": 0}


@pytest.mark.parametrize("make,exc,name", [
    (lambda: fastnn.SGD(0.1, momentum=-0.1), ValueError, "momentum"),
    (lambda: fastnn.SGD(0.1, momentum=1.0), ValueError, "momentum"),
    (lambda: fastnn.SGD(0.1, momentum="a"), TypeError, "momentum"),
    (lambda: fastnn.SGD(0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: fastnn.SGD(0.1, momentum=0.5, nesterov=1), TypeError, "nesterov"),
    (lambda: fastnn.SGD(0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda: fastnn.SGD(0.1, weight_decay=float("nan")), ValueError, "weight_decay"),
    (lambda: fastnn.Adam(lr=0), ValueError, "lr"),
    (lambda: fastnn.Adam(betas=(1.0, 0.9)), ValueError, r"betas\[0\]"),
    (lambda: fastnn.Adam(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda: fastnn.Adam(betas=0.9), TypeError, "betas"),
    (lambda: fastnn.Adam(eps=0), ValueError, "eps"),
    (lambda: fastnn.AdamW(weight_decay=-0.01), ValueError, "weight_decay"),
])
def test_optimizers_reject_bad_hyperparameters(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_defaults_and_repr():
    assert fastnn.Adam().lr == 0.001 and fastnn.Adam().betas == (0.9, 0.999) and fastnn.Adam().eps == 1e-8
    assert fastnn.Adam().weight_decay == 0.0 and fastnn.AdamW().weight_decay == 0.01
    assert repr(fastnn.SGD(0.1, momentum=0.9, nesterov=True)) == "SGD(lr=0.1, momentum=0.9, nesterov=True)"
    assert repr(fastnn.AdamW()).startswith("AdamW(lr=0.001")


@pytest.mark.parametrize("make", [lambda: fastnn.SGD(0.1), lambda: fastnn.SGD(0.1, momentum=0.9),
                                  lambda: fastnn.Adam(0.01)], ids=["sgd", "momentum", "adam"])
def test_train_step_sees_every_change_to_its_optimizer(make, rng):
    """train_step caches the last optimizer's compiled update: a new learning rate, a loaded
    state or another optimizer between two steps must take effect all the same."""
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    model, twin = make_model(np.float64), make_model(np.float64)
    opt, twin_opt = make(), make()
    for lr in (0.1, 0.05, 0.05, 0.2):           # a schedule, changed between cached steps
        opt.lr = twin_opt.lr = lr
        model.train_step(X, y, fastnn.MSELoss(), opt)
        twin.fit(X, y, optimizer=twin_opt, epochs=1, shuffle=False)     # fit takes no cache
    np.testing.assert_array_equal(model.get_parameters(), twin.get_parameters())
    saved, params = model.optimizer_state(opt), model.get_parameters()
    model.train_step(X, y, fastnn.MSELoss(), opt)
    model.set_optimizer_state(opt, saved)       # back to the state before that step
    model.set_parameters(params)
    model.train_step(X, y, fastnn.MSELoss(), opt)
    twin.train_step(X, y, fastnn.MSELoss(), twin_opt)
    np.testing.assert_array_equal(model.get_parameters(), twin.get_parameters())
    other, twin_other = make(), make()          # another optimizer between two steps
    other.lr = twin_other.lr = opt.lr
    for model_opt, twin_opt_now in ((other, twin_other), (opt, twin_opt)):
        model.train_step(X, y, fastnn.MSELoss(), model_opt)
        twin.train_step(X, y, fastnn.MSELoss(), twin_opt_now)
    np.testing.assert_array_equal(model.get_parameters(), twin.get_parameters())
