"""The compiled common case of fastnn.ops' elementwise activations: plain arrays are
recognised from their flags, dtype and shape, checked for finiteness in the kernel's
own pass, and give exactly what the validating path gives; everything else is
handed back (None) to the validating path, which converts or refuses it as before."""

import numpy as np
import pytest

from fastnn import _ops, ops

FORWARD = {
    "relu": ops.relu_forward,
    "leaky_relu": lambda Z: ops.leaky_relu_forward(Z, 0.1),
    "tanh": ops.tanh_forward,
    "sigmoid": ops.sigmoid_forward,
}
BACKWARD = {
    "relu": ops.relu_backward,
    "leaky_relu": lambda Z, dA: ops.leaky_relu_backward(Z, dA, 0.1),
    "tanh": ops.tanh_backward,
    "sigmoid": ops.sigmoid_backward,
}
PARAM = {"relu": 0.0, "leaky_relu": 0.1, "tanh": 0.0, "sigmoid": 0.0}


def _not_plain(a):
    """The same values in a Fortran-ordered array (2-D and up) or a strided view
    (1-D): an argument the common case hands back to the validating path."""
    if a.ndim >= 2:
        return np.asfortranarray(a)
    doubled = np.zeros(2 * a.size, a.dtype)
    doubled[::2] = a
    return doubled[::2]


@pytest.mark.parametrize("name", sorted(FORWARD))
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7,), (5, 3), (2, 3, 4), (64, 33), (1000,)])
def test_the_common_case_gives_the_validating_paths_bits(name, shape, dtype, rng):
    Z = (rng.normal(size=shape) * 4).astype(dtype)
    Z.flat[0] = 0.0
    dA = rng.normal(size=shape).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    fast = _ops.activation_forward_plain(_ops.FN_CODES[name], PARAM[name], Z)
    assert fast is not None and fast.dtype == dtype and fast.shape == shape
    np.testing.assert_array_equal(FORWARD[name](Z).view(bits), fast.view(bits))
    np.testing.assert_array_equal(FORWARD[name](_not_plain(Z)).view(bits), fast.view(bits))
    fast = _ops.activation_backward_plain(_ops.FN_CODES[name], PARAM[name], Z, dA)
    assert fast is not None and fast.dtype == dtype and fast.shape == shape
    np.testing.assert_array_equal(BACKWARD[name](Z, dA).view(bits), fast.view(bits))
    np.testing.assert_array_equal(BACKWARD[name](_not_plain(Z), dA).view(bits), fast.view(bits))


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_the_common_case_writes_a_new_array_and_reads_read_only_input(name, dtype, rng):
    Z = rng.normal(size=(6, 5)).astype(dtype)
    dA = rng.normal(size=(6, 5)).astype(dtype)
    Z.flags.writeable = False
    dA.flags.writeable = False
    keep_Z, keep_dA = Z.copy(), dA.copy()
    A = FORWARD[name](Z)
    dZ = BACKWARD[name](Z, dA)
    assert not np.shares_memory(A, Z) and not np.shares_memory(dZ, Z) and not np.shares_memory(dZ, dA)
    np.testing.assert_array_equal(Z, keep_Z)
    np.testing.assert_array_equal(dA, keep_dA)


@pytest.mark.parametrize("name", sorted(FORWARD))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 3, 999])
def test_a_non_finite_value_is_refused_by_name(name, bad, where, dtype, rng):
    Z = rng.normal(size=1000).astype(dtype)
    dA = rng.normal(size=1000).astype(dtype)
    Z_bad, dA_bad = Z.copy(), dA.copy()
    Z_bad[where] = bad
    dA_bad[where] = bad
    code = _ops.FN_CODES[name]
    assert _ops.activation_forward_plain(code, PARAM[name], Z_bad) is None
    assert _ops.activation_backward_plain(code, PARAM[name], Z_bad, dA) is None
    assert _ops.activation_backward_plain(code, PARAM[name], Z, dA_bad) is None
    with pytest.raises(ValueError, match="Z must contain only finite values"):
        FORWARD[name](Z_bad)
    with pytest.raises(ValueError, match="Z must contain only finite values"):
        BACKWARD[name](Z_bad, dA)
    with pytest.raises(ValueError, match="dA must contain only finite values"):
        BACKWARD[name](Z, dA_bad)


def test_a_large_finite_gradient_is_not_taken_for_a_non_finite_one(dtype):
    big = np.finfo(dtype).max
    Z = np.array([big, -big, 1.0], dtype)
    dA = np.array([big, big, -big], dtype)
    out = _ops.activation_backward_plain(_ops.FN_CODES["relu"], 0.0, Z, dA)
    np.testing.assert_array_equal(out, [big, 0, -big])


class _Sub(np.ndarray):
    pass


def _uncommon_cases(dtype):
    Z = np.arange(12, dtype=dtype).reshape(3, 4) - 5
    other = np.float64 if dtype == np.float32 else np.float32
    swapped = Z.astype(Z.dtype.newbyteorder())
    raw = np.zeros(Z.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(dtype).reshape(3, 4)
    unaligned[...] = Z
    return {
        "list": Z.tolist(),
        "scalar": np.dtype(dtype).type(1.0),
        "0-d": np.array(1.0, dtype),
        "empty": np.zeros((0, 3), dtype),
        "Fortran": np.asfortranarray(Z),
        "strided": Z[:, ::2],
        "byte-swapped": swapped,
        "unaligned": unaligned,
        "float16": Z.astype(np.float16),
        "int": Z.astype(np.int64),
        "subclass": Z.view(_Sub),
        "33-D": np.zeros((1,) * 33, dtype),
        "other dtype": Z.astype(other),
    }


@pytest.mark.parametrize("case", sorted(_uncommon_cases(np.float64)))
def test_uncommon_arguments_go_to_the_validating_path_and_give_the_same_values(case, dtype):
    arg = _uncommon_cases(dtype)[case]
    plain = np.zeros((3, 4), dtype)
    for name in FORWARD:
        code = _ops.FN_CODES[name]
        if case != "other dtype":
            assert _ops.activation_forward_plain(code, PARAM[name], arg) is None
        assert _ops.activation_backward_plain(code, PARAM[name], plain, arg) is None
        assert _ops.activation_backward_plain(code, PARAM[name], arg, plain) is None
    if case in ("empty", "33-D", "0-d", "scalar"):
        with pytest.raises(ValueError):
            ops.tanh_forward(arg)
        return
    expected = np.tanh(np.asarray(arg, dtype=np.float64))
    got = ops.tanh_forward(arg)
    np.testing.assert_allclose(got, expected, rtol=1e-6 if got.dtype == np.float32 else 1e-15)


def test_shapes_that_differ_go_to_the_validating_path_which_refuses_them(dtype):
    Z = np.zeros((3, 4), dtype)
    for dA in (np.zeros((4, 3), dtype), np.zeros(12, dtype), np.zeros((3, 4, 1), dtype)):
        assert _ops.activation_backward_plain(_ops.FN_CODES["tanh"], 0.0, Z, dA) is None
        with pytest.raises(ValueError, match="dA must"):
            ops.tanh_backward(Z, dA)


def test_an_unknown_code_is_handed_back():
    Z = np.zeros(3)
    assert _ops.activation_forward_plain(99, 0.0, Z) is None
    assert _ops.activation_backward_plain(-1, 0.0, Z, Z) is None


def test_every_builds_loops_give_the_same_bits(dtype, rng):
    """fastnn.ops runs the common case on the widest walker build's loops; every
    build's copy (and fastnn._ops' own) gives the same bits."""
    import importlib

    from fastnn import _walker

    runs = {"baseline": True, "avx2": _ops.cpu_has_avx2(), "avx512": _ops.cpu_has_avx512()}
    modules = [None]
    for name, ok in runs.items():
        if ok:
            try:
                modules.append(importlib.import_module(f"fastnn._walker_{name}"))
            except ImportError:
                pass
    Z = np.concatenate([rng.normal(0, 5, 4099), [0.0, -0.0, 1e-300, 40.0, -40.0, 800.0]]).astype(dtype)
    dA = rng.normal(size=Z.shape).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    results = []
    try:
        for module in modules:
            _ops.use_kernels_of(module)
            got = []
            for name in FORWARD:
                got.append(FORWARD[name](Z).view(bits))
                got.append(BACKWARD[name](Z, dA).view(bits))
            results.append(got)
    finally:
        _ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))
    assert len(results) >= 2
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(1,), (7,), (1, 1), (5, 3), (300, 2)])
def test_mse_grad_common_case_gives_the_validating_paths_bits(shape, dtype, rng):
    yhat = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    fast = _ops.mse_grad_plain(yhat, y)
    assert fast is not None and fast.shape == shape and fast.dtype == dtype
    np.testing.assert_array_equal(ops.mse_grad(yhat, y).view(bits), fast.view(bits))
    np.testing.assert_array_equal(ops.mse_grad(_not_plain(yhat), y).view(bits), fast.view(bits))
    np.testing.assert_array_equal(ops.mse_grad(yhat, y, sample_weight=np.ones(shape[0])).view(bits), fast.view(bits))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_mse_grad_common_case_refuses_non_finite_values_by_name(bad, dtype, rng):
    yhat = rng.normal(size=(50, 2)).astype(dtype)
    y = rng.normal(size=(50, 2)).astype(dtype)
    for name, array in (("yhat", yhat), ("y", y)):
        broken = array.copy()
        broken[17, 1] = bad
        args = (broken, y) if name == "yhat" else (yhat, broken)
        assert _ops.mse_grad_plain(*args) is None
        with pytest.raises(ValueError, match=f"{name} must contain only finite values"):
            ops.mse_grad(*args)


def test_mse_grad_hands_back_shapes_it_does_not_take(dtype):
    assert _ops.mse_grad_plain(np.zeros((2, 2, 2), dtype), np.zeros((2, 2, 2), dtype)) is None
    assert _ops.mse_grad_plain(np.zeros((3, 1), dtype), np.zeros(3, dtype)) is None
    np.testing.assert_array_equal(ops.mse_grad(np.ones((3, 1), dtype), np.zeros(3, dtype)), np.full((3, 1), 2 / 3, dtype))


@pytest.mark.parametrize("shape", [(1,), (9,), (4, 5), (2, 3, 4)])
def test_sgd_update_common_case_gives_the_validating_paths_bits(shape, dtype, rng):
    param = rng.normal(size=shape).astype(dtype)
    grad = rng.normal(size=shape).astype(dtype)
    slow = np.asfortranarray(param) if len(shape) > 1 else param.copy()
    if len(shape) == 1:
        ops.sgd_update(slow, grad.tolist(), 0.1)   # a list: the converting path
    else:
        ops.sgd_update(slow, grad, 0.1)
    fast = param.copy()
    assert _ops.sgd_update_plain(fast, grad, 0.1)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(np.ascontiguousarray(slow).view(bits), fast.view(bits))
    again = param.copy()
    ops.sgd_update(again, grad, 0.1)
    np.testing.assert_array_equal(again.view(bits), fast.view(bits))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["param", "grad"])
def test_sgd_update_common_case_writes_nothing_when_a_value_is_not_finite(bad, where, dtype, rng):
    param = rng.normal(size=(30, 3)).astype(dtype)
    grad = rng.normal(size=(30, 3)).astype(dtype)
    (param if where == "param" else grad)[29, 2] = bad
    before = param.copy()
    assert not _ops.sgd_update_plain(param, grad, 0.1)
    np.testing.assert_array_equal(param, before)
    with pytest.raises(ValueError, match=f"{where} must contain only finite values"):
        ops.sgd_update(param, grad, 0.1)
    np.testing.assert_array_equal(param, before)


def test_sgd_update_hands_back_what_it_does_not_take(dtype):
    param = np.arange(6, dtype=dtype)
    grad = np.ones(6, dtype)
    for lr in (1, np.float64(0.5), 0.0, -1.0, float("inf"), float("nan"), True, "0.1"):
        assert not _ops.sgd_update_plain(param, grad, lr)
    ro = param.copy()
    ro.flags.writeable = False
    assert not _ops.sgd_update_plain(ro, grad, 0.1)
    assert not _ops.sgd_update_plain(param, grad.reshape(2, 3), 0.1)
    assert not _ops.sgd_update_plain(param, grad.astype(np.float16), 0.1)
    np.testing.assert_array_equal(param, np.arange(6))
    # grad a shifted view of param's buffer: the converting path takes grad as it was.
    buffer = np.arange(7, dtype=dtype)
    p, g = buffer[1:], buffer[:-1]
    assert not _ops.sgd_update_plain(p, g, 1.0)
    expected = np.arange(1, 7, dtype=dtype) - np.arange(0, 6, dtype=dtype)
    ops.sgd_update(p, g, 1.0)
    np.testing.assert_array_equal(p, expected)


@pytest.mark.parametrize("shape", [(1,), (7,), (1, 1), (5, 3), (300, 2)])
def test_mse_loss_common_case_gives_the_validating_paths_value(shape, dtype, rng):
    yhat = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    fast = _ops.mse_loss_plain(yhat, y)
    assert type(fast) is float
    assert ops.mse_loss(yhat, y) == fast
    assert ops.mse_loss(_not_plain(yhat), y) == fast
    assert ops.mse_loss(yhat, y, sample_weight=np.ones(shape[0])) == pytest.approx(fast, rel=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mse_loss_common_case_refuses_non_finite_values_by_name(bad, dtype, rng):
    yhat = rng.normal(size=(40, 3)).astype(dtype)
    y = rng.normal(size=(40, 3)).astype(dtype)
    for name, array in (("yhat", yhat), ("y", y)):
        broken = array.copy()
        broken[39, 2] = bad
        args = (broken, y) if name == "yhat" else (yhat, broken)
        assert _ops.mse_loss_plain(*args) is None
        with pytest.raises(ValueError, match=f"{name} must contain only finite values"):
            ops.mse_loss(*args)


def test_mse_loss_that_overflows_goes_to_the_converting_path(dtype):
    big = np.finfo(dtype).max
    yhat = np.array([big, -big], dtype)
    y = np.array([-big, big], dtype)
    assert _ops.mse_loss_plain(yhat, y) is None
    assert ops.mse_loss(yhat, y) == np.inf
