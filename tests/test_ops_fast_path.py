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


def _mse_grad_plain(yhat, y):
    return _ops.loss_grad_plain(_ops.LOSS_CODES["mse"], 0.0, yhat, y)


def _mse_loss_plain(yhat, y):
    return _ops.loss_plain(_ops.LOSS_CODES["mse"], 0.0, yhat, y)


def _not_plain(a):
    """The same values in a Fortran-ordered array (2-D and up) or a strided view
    (1-D): an argument the common case hands back to the validating path."""
    if a.ndim >= 2:
        return np.asfortranarray(a)
    doubled = np.zeros(2 * a.size, a.dtype)
    doubled[::2] = a
    return doubled[::2]


def _walker_builds():
    """Every walker build this CPU runs, imported, and None (fastnn._ops' own loops)."""
    import importlib

    modules = [None]
    for build, ok in {"baseline": True, "avx2": _ops.cpu_has_avx2(), "avx512": _ops.cpu_has_avx512()}.items():
        if ok:
            try:
                modules.append(importlib.import_module(f"fastnn._walker_{build}"))
            except ImportError:
                pass
    return modules


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
    build's copy (and fastnn._ops' own) gives the same bits, but for tanh and the
    sigmoid in the builds that fuse multiply-adds (MATH_FUSED: the AVX2 and AVX-512
    walkers), which give the same bits as each other and agree with the rest to
    within their ulp bounds (tests/test_transcendentals.py)."""
    import importlib

    from fastnn import _walker

    modules = _walker_builds()
    Z = np.concatenate([rng.normal(0, 5, 4099), [0.0, -0.0, 1e-300, 40.0, -40.0, 800.0]]).astype(dtype)
    dA = rng.normal(size=Z.shape).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    results = {}
    try:
        for module in modules:
            _ops.use_kernels_of(module)
            got = {}
            for name in FORWARD:
                got[name, "forward"] = FORWARD[name](Z)
                got[name, "backward"] = BACKWARD[name](Z, dA)
            results[module] = (module is not None and module.MATH_FUSED, got)
    finally:
        _ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))
    assert len(results) >= 2
    first_fused, first = results[None]
    assert not first_fused
    eps = np.finfo(dtype).eps
    for fused, got in list(results.values())[1:]:
        for key, value in got.items():
            if fused and key[0] in ("tanh", "sigmoid"):
                np.testing.assert_allclose(value, first[key], rtol=8 * eps, atol=8 * eps * np.abs(dA).max(),
                                           err_msg=str(key))
            else:
                np.testing.assert_array_equal(value.view(bits), first[key].view(bits), err_msg=str(key))
    family = [got for fused, got in results.values() if fused]
    for got in family[1:]:
        for key, value in got.items():
            np.testing.assert_array_equal(value.view(bits), family[0][key].view(bits), err_msg=str(key))


@pytest.mark.parametrize("shape", [(1,), (7,), (1, 1), (5, 3), (300, 2)])
def test_mse_grad_common_case_gives_the_validating_paths_bits(shape, dtype, rng):
    yhat = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    fast = _mse_grad_plain(yhat, y)
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
        assert _mse_grad_plain(*args) is None
        with pytest.raises(ValueError, match=f"{name} must contain only finite values"):
            ops.mse_grad(*args)


@pytest.mark.parametrize("where", [0, 2047, 2048, 4100, 6143])
def test_loss_gradients_are_checked_in_every_block(where, dtype, rng):
    # loss_grad_checked computes and checks blocks of 2048 values: a non-finite value
    # in any block (and at either side of a block's edge) hands the call back, and a
    # gradient over several blocks has the bits of the unblocked formula.
    yhat = rng.normal(size=(3, 2048)).astype(dtype)
    y = rng.normal(size=(3, 2048)).astype(dtype)
    fast = _mse_grad_plain(yhat, y)
    kind = np.dtype(dtype).type
    scale = kind(2) * kind(1 / yhat.size)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(fast.view(bits), (scale * (yhat - y)).view(bits))
    for code in (_code("mse"), _code("mae"), _code("huber")):
        broken = yhat.copy()
        broken.reshape(-1)[where] = np.nan
        assert _ops.loss_grad_plain(code, 1.0, broken, y) is None
        assert _ops.loss_grad_plain(code, 1.0, yhat, y) is not None
    huge = np.full_like(yhat, np.finfo(dtype).max)
    huge.reshape(-1)[where] = -np.finfo(dtype).max        # an overflowing difference in one block
    assert _mse_grad_plain(huge, -huge) is None
    with pytest.raises(ValueError, match="finite"):
        ops.mse_grad(broken, y)


def test_mse_grad_hands_back_shapes_it_does_not_take(dtype):
    assert _mse_grad_plain(np.zeros((2, 2, 2), dtype), np.zeros((2, 2, 2), dtype)) is None
    assert _mse_grad_plain(np.zeros((3, 1), dtype), np.zeros(3, dtype)) is None
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


@pytest.mark.parametrize("regime", ["exact", "logged", "log full"])
@pytest.mark.parametrize("bad_block", [0, 1, 3, 5])
@pytest.mark.parametrize("where", ["param", "grad"])
def test_sgd_update_undoes_the_blocks_it_wrote_bit_for_bit(regime, bad_block, where, dtype, rng):
    """sgd_update_checked checks a block and updates it, block after block; a bad value
    undoes the blocks before it: each step added back where the check found that exact,
    the logged old values restored (a step that crosses a power of two, p = -0); with
    more of those than the log holds, it checks the rest before updating it. Whatever
    the regime and wherever the bad value, param keeps its bits, and a good call gives
    the bits of ``param - lr * grad``."""
    block, log = _ops.SGD_BLOCK_VALUES, _ops.SGD_LOG_ENTRIES
    n = 5 * block + 17
    kind = np.dtype(dtype).type
    lr = 0.3 if regime == "log full" else 1e-6
    param = (rng.uniform(1.1, 1.9, size=n) * rng.choice([-1, 1], size=n)).astype(dtype)
    grad = rng.normal(size=n).astype(dtype)
    if regime == "logged":
        param[block // 3:: block // 2] = -0.0          # -0 - 0 * lr is -0; adding 0 back gives +0
        grad[block // 3:: block // 2] = 0.0
        param[block // 5:: block] = kind(2) - kind(2) ** -20     # just under 2, stepped over it
        grad[block // 5:: block] = -1
    bits = np.uint32 if dtype == np.float32 else np.uint64
    bad = min(bad_block * block + block // 2, n - 1)
    with np.errstate(over="ignore"):
        step = kind(lr) * grad
        moved = int(np.count_nonzero(((param - step) + step).view(bits) != param.view(bits)))
    assert {"exact": moved == 0, "logged": 0 < moved <= log, "log full": moved > log}[regime], moved
    good = param.copy()
    assert _ops.sgd_update_plain(good, grad, lr)
    np.testing.assert_array_equal(good.view(bits), (param - step).view(bits))
    p, g = param.copy(), grad.copy()
    (p if where == "param" else g)[bad] = np.nan if where == "param" else -np.inf
    before = p.copy()
    assert not _ops.sgd_update_plain(p, g, lr)
    np.testing.assert_array_equal(p.view(bits), before.view(bits))
    with pytest.raises(ValueError, match=f"{where} must contain only finite values"):
        ops.sgd_update(p, g, lr)
    np.testing.assert_array_equal(p.view(bits), before.view(bits))


def test_sgd_update_a_step_that_overflows_gives_numpys_inf(dtype):
    # The common case hands an overflowing step back (its undo check would not be
    # finite), with nothing written; the converting path then gives NumPy's result.
    big = np.finfo(dtype).max
    param = np.full(3 * _ops.SGD_BLOCK_VALUES, 1.0, dtype)
    param[-1] = -big
    grad = np.ones_like(param)
    before = param.copy()
    assert not _ops.sgd_update_plain(param, grad, float(big) / 2)
    np.testing.assert_array_equal(param, before)
    expected = before.copy()
    with np.errstate(over="ignore"):
        expected -= float(big) / 2 * grad
        ops.sgd_update(param, grad, float(big) / 2)
    assert np.isneginf(param[-1])
    np.testing.assert_array_equal(param, expected)


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
    fast = _mse_loss_plain(yhat, y)
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
        assert _mse_loss_plain(*args) is None
        with pytest.raises(ValueError, match=f"{name} must contain only finite values"):
            ops.mse_loss(*args)


def test_mse_loss_that_overflows_goes_to_the_converting_path(dtype):
    big = np.finfo(dtype).max
    yhat = np.array([big, -big], dtype)
    y = np.array([-big, big], dtype)
    assert _mse_loss_plain(yhat, y) is None
    assert ops.mse_loss(yhat, y) == np.inf


# ---------------------------------------------------------------------------
# Dense and Adam: the common case against the converting path and the reference
# ---------------------------------------------------------------------------

def _bits(dtype):
    return np.uint32 if dtype == np.float32 else np.uint64


# (n, k, m): one output (a dot per row), narrow layers (transposed loops, the register
# tiles), one input, and sizes where BLAS takes over (when one was found).
DENSE_SHAPES = [(1, 1, 1), (1, 3, 1), (1000, 1, 3), (32, 8, 32), (2048, 16, 4), (7, 5, 9), (64, 64, 32),
                (256, 64, 256)]


@pytest.mark.parametrize("n,k,m", DENSE_SHAPES)
def test_dense_common_case_gives_the_converting_paths_bits(n, k, m, dtype, rng):
    from fastnn import reference

    X = rng.normal(size=(n, k)).astype(dtype)
    W = rng.normal(size=(k, m)).astype(dtype)
    b = rng.normal(size=m).astype(dtype)
    dY = rng.normal(size=(n, m)).astype(dtype)
    bits = _bits(dtype)
    fast = _ops.dense_forward_plain(X, W, b)
    assert fast is not None and fast.shape == (n, m) and fast.dtype == dtype
    slow = ops.dense_forward(np.asfortranarray(X), W, b)          # Fortran X: the converting path
    np.testing.assert_array_equal(slow.view(bits), fast.view(bits))
    np.testing.assert_array_equal(ops.dense_forward(X, W, b).view(bits), fast.view(bits))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast, reference.dense_forward(X, W, b), rtol=tol, atol=tol * k)
    grads = _ops.dense_backward_plain(X, W, dY)
    assert grads is not None
    slow = ops.dense_backward(X, np.asfortranarray(W), dY)
    for got, want, expected in zip(grads, slow, reference.dense_backward(X, W, dY)):
        assert got.dtype == dtype and got.shape == expected.shape
        np.testing.assert_array_equal(want.view(bits), got.view(bits))
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(n, m))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["X", "W", "b"])
@pytest.mark.parametrize("n,k,m", [(40, 6, 5), (50, 20, 1), (64, 64, 32), (1, 1, 1), (1, 64, 32), (256, 512, 10),
                                   (9, 16, 300)])
@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_dense_forward_common_case_refuses_non_finite_values_by_name(blas_check, bad, which, n, k, m, zeros, where,
                                                                     dtype, rng):
    """This module's loops (checked by their outputs) and BLAS (checked by the inputs
    first, or by the output: ``blas_check``), with zeros where a product of the bad
    value would be 0 * inf (refused too)."""
    args = {"X": rng.normal(size=(n, k)).astype(dtype), "W": rng.normal(size=(k, m)).astype(dtype),
            "b": rng.normal(size=m).astype(dtype)}
    if zeros:
        for name in ("X", "W"):
            if name != which:
                args[name][...] = 0
    size = args[which].size
    args[which].flat[{"first": 0, "middle": size // 2, "last": size - 1}[where]] = bad
    keep = {k: v.copy() for k, v in args.items()}
    assert _ops.dense_forward_plain(args["X"], args["W"], args["b"]) is None
    with pytest.raises(ValueError, match=f"{which} must contain only finite values"):
        ops.dense_forward(args["X"], args["W"], args["b"])
    for k, v in args.items():
        np.testing.assert_array_equal(v, keep[k])


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("which", ["X", "W", "dY"])
@pytest.mark.parametrize("n,k,m", [(40, 6, 5), (50, 20, 1), (1, 1, 1), (64, 64, 32), (1, 64, 32), (256, 512, 10)])
@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_dense_backward_common_case_refuses_non_finite_values_by_name(blas_check, bad, which, n, k, m, zeros,
                                                                      where, dtype, rng):
    """Checked by the outputs' first rows and columns (this module's loops, a BLAS
    that propagates) or the inputs first (``blas_check``), with the bad value
    anywhere and zeros where its products would be 0 * inf: refused by name,
    nothing modified."""
    args = {"X": rng.normal(size=(n, k)).astype(dtype), "W": rng.normal(size=(k, m)).astype(dtype),
            "dY": rng.normal(size=(n, m)).astype(dtype)}
    if zeros:
        for name in args:
            if name != which:
                args[name][...] = 0
    size = args[which].size
    args[which].flat[{"first": 0, "middle": size // 2, "last": size - 1}[where]] = bad
    keep = {k: v.copy() for k, v in args.items()}
    assert _ops.dense_backward_plain(args["X"], args["W"], args["dY"]) is None
    with pytest.raises(ValueError, match=f"{which} must contain only finite values"):
        ops.dense_backward(args["X"], args["W"], args["dY"])
    for k, v in args.items():
        np.testing.assert_array_equal(v, keep[k])


@pytest.mark.parametrize("n,k,m", [(2, 3, 1), (9, 4, 5), (64, 64, 32)])
def test_dense_forward_that_overflows_goes_to_the_converting_path(n, k, m, dtype):
    big = np.finfo(dtype).max
    X, W, b = np.full((n, k), big, dtype), np.full((k, m), 2.0, dtype), np.zeros(m, dtype)
    expected = np.full((n, m), np.inf, dtype)
    fast = _ops.dense_forward_plain(X, W, b)
    if (n, k, m) != (64, 64, 32):
        assert fast is None     # this module's loops: the non-finite output hands the call back
    if fast is not None:        # BLAS (when found): the finite inputs were checked first
        np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(ops.dense_forward(X, W, b), expected)
    np.testing.assert_array_equal(ops.dense_forward(np.asfortranarray(X), W, b), expected)


def test_dense_hands_back_what_it_does_not_take(dtype):
    X, W, b = np.ones((4, 3), dtype), np.ones((3, 2), dtype), np.ones(2, dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    for args in ((X, W.astype(other), b), (X[:, :2], W, b), (X, W, np.ones(3, dtype)), (X.ravel(), W, b),
                 (X, W, b.reshape(1, 2)), (X.tolist(), W, b), (X, np.ones((0, 2), dtype), b)):
        assert _ops.dense_forward_plain(*args) is None
    for args in ((X, W, np.ones((4, 3), dtype)), (X, W, np.ones((5, 2), dtype)), (X, W, b)):
        assert _ops.dense_backward_plain(*args) is None
    with pytest.raises(ValueError, match="b must have shape"):
        ops.dense_forward(X, W, np.ones(3, dtype))
    with pytest.raises(ValueError, match="dY must have shape"):
        ops.dense_backward(X, W, np.ones((5, 2), dtype))


@pytest.mark.parametrize("n,k", [(1, 1), (3, 7), (1000, 3), (256, 32), (17, 64), (256, 256), (5, 1001)])
def test_one_output_dense_gives_the_same_bits_in_every_build(n, k, dtype, rng):
    """The one-output product (a dot per row) runs from the widest walker build
    (_dense_rows.pxi): every build, and fastnn._ops' own copy, give the same bits,
    on the common case and the converting path, close to the reference."""
    import importlib

    from fastnn import _walker, reference

    X = rng.normal(size=(n, k)).astype(dtype)
    W = rng.normal(size=(k, 1)).astype(dtype)
    b = rng.normal(size=1).astype(dtype)
    bits = _bits(dtype)
    results = []
    try:
        for module in _walker_builds():
            _ops.use_kernels_of(module)
            fast = _ops.dense_forward_plain(X, W, b)
            assert fast is not None
            results.append(fast.view(bits).copy())
            np.testing.assert_array_equal(ops.dense_forward(np.asfortranarray(X), W, b).view(bits), results[-1])
    finally:
        _ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))
    assert len(results) >= 2
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ops.dense_forward(X, W, b), reference.dense_forward(X, W, b), rtol=tol,
                               atol=tol * k)


@pytest.mark.parametrize("n,k", [(4, 16), (9, 64), (257, 100), (8, 1001)])
def test_one_output_dense_gives_each_row_the_bits_it_gets_alone(n, k, dtype, rng):
    """Four rows at a time (where a row fills the lanes), or one at a time: each row's
    sum is the same, in the same order."""
    X = rng.normal(size=(n, k)).astype(dtype)
    W = rng.normal(size=(k, 1)).astype(dtype)
    b = rng.normal(size=1).astype(dtype)
    bits = _bits(dtype)
    together = _ops.dense_forward_plain(X, W, b)
    alone = np.concatenate([_ops.dense_forward_plain(X[i:i + 1].copy(), W, b) for i in range(n)])
    np.testing.assert_array_equal(together.view(bits), alone.view(bits))


@pytest.fixture(params=[False, True], ids=["inputs-first", "output-check"])
def blas_check(request):
    """dense_forward_plain checking BLAS products by their inputs first, then by their
    output (set_blas's check_output); the probed choice restored afterwards (as it was
    read, not probed again: set_blas's probe is test_the_blas_probe_trusts_openblas_...'s)."""
    from fastnn._blas import find_blas

    info = find_blas()
    probed = _ops.blas_checks_output()
    _ops.set_blas(info, check_output=request.param)   # no BLAS found: fastnn's own loops either way
    yield request.param
    _ops.set_blas(info, check_output=probed)


def test_the_blas_probe_trusts_openblas_with_the_output_check():
    """OpenBLAS computes every product (inf * 0 is NaN): set_blas's probe finds so, and
    dense_forward_plain then checks a BLAS product by its output alone."""
    from fastnn._blas import find_blas

    info = find_blas()
    if "openblas" not in info.source.lower():
        pytest.skip(f"the BLAS found is not OpenBLAS: {info}")
    assert _ops.blas_checks_output() is True
    _ops.set_blas(info, check_output=False)
    try:
        assert _ops.blas_checks_output() is False
    finally:
        _ops.set_blas(info)
    assert _ops.blas_checks_output() is True
    _ops.set_blas(None)
    try:
        assert _ops.blas_checks_output() is False
    finally:
        _ops.set_blas(info)


@pytest.mark.parametrize("n,k,m", [(1, 64, 32), (256, 512, 10), (64, 64, 32)])
def test_dense_forward_on_blas_gives_the_same_bits_either_check(blas_check, n, k, m, dtype, rng):
    """The check is all that differs: the same product (bias rows, then gemm with beta 1),
    the converting path's bits; an overflowing product of finite inputs is inf either way."""
    from fastnn import reference
    from fastnn._blas import find_blas

    X = rng.normal(size=(n, k)).astype(dtype)
    W = rng.normal(size=(k, m)).astype(dtype)
    b = rng.normal(size=m).astype(dtype)
    bits = _bits(dtype)
    fast = _ops.dense_forward_plain(X, W, b)
    assert fast is not None
    np.testing.assert_array_equal(ops.dense_forward(np.asfortranarray(X), W, b).view(bits), fast.view(bits))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast, reference.dense_forward(X, W, b), rtol=tol, atol=tol * k)
    big = np.finfo(dtype).max
    X, W, b = np.full((n, k), big, dtype), np.full((k, m), 2.0, dtype), np.zeros(m, dtype)
    fast = _ops.dense_forward_plain(X, W, b)
    if blas_check or not find_blas().kind:
        assert fast is None             # the output check hands the overflow to the converting path
    else:
        np.testing.assert_array_equal(fast, np.full((n, m), np.inf, dtype))
    np.testing.assert_array_equal(ops.dense_forward(X, W, b), np.full((n, m), np.inf, dtype))


def _adam_state(rng, dtype, shape=(33, 7)):
    return [rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
            (rng.normal(size=shape) * 0.1).astype(dtype), rng.uniform(0, 1, size=shape).astype(dtype)]


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (33, 7), (1000,)])
def test_adam_common_case_gives_the_converting_paths_bits(decoupled, weight_decay, shape, dtype, rng):
    from fastnn import reference

    fast = _adam_state(rng, dtype, shape)
    slow = [a.copy() for a in fast]
    ref = [a.copy() for a in fast]
    assert _ops.adam_update_plain(fast[0], fast[1], fast[2], fast[3], 3, 0.01, 0.9, 0.999, 1e-8,
                                  weight_decay, decoupled)
    # Fortran moments (2-D) or a list gradient: the converting path, with the same rule
    grad = slow[1].tolist()
    ops.adam_update(slow[0], grad, slow[2], slow[3], 3, 0.01, weight_decay=weight_decay, decoupled=decoupled)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.view(_bits(dtype)), b.view(_bits(dtype)))
    reference.adam_update(ref[0], ref[1], ref[2], ref[3], 3, 0.01, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_adam_common_case_writes_nothing_when_a_value_is_not_finite(bad, which, dtype, rng):
    state = _adam_state(rng, dtype)
    state[which].flat[5] = bad
    if which == 3 and bad == -np.inf:
        state[which].flat[5] = np.inf
    keep = [a.copy() for a in state]
    assert not _ops.adam_update_plain(*state, 1, 0.01, 0.9, 0.999, 1e-8, 0.0, False)
    name = ["param", "grad", "exp_avg", "exp_avg_sq"][which]
    with pytest.raises((ValueError, FloatingPointError), match=f"{name}|non-finite"):
        ops.adam_update(*state, 1, 0.01)
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b)


def test_adam_an_update_that_overflows_changes_nothing(dtype):
    big = np.finfo(dtype).max
    param = np.full(4, -big, dtype)
    grad = np.full(4, 1.0, dtype)
    state = [param, grad, np.zeros(4, dtype), np.zeros(4, dtype)]
    keep = [a.copy() for a in state]
    assert not _ops.adam_update_plain(*state, 1, float(big) / 4, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(FloatingPointError, match="non-finite"):
        ops.adam_update(*state, 1, float(big) / 4)
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b)


def _adam_cases(dtype):
    """(name, done, param, grad, exp_avg, exp_avg_sq, lr, eps): Adam steps where
    update_kernel's bound (no square root, no division) proves nothing and the exact
    pass decides; ``done`` says whether every new value is finite."""
    big = float(np.finfo(dtype).max)
    huge_m, small_eps = (1e18, 1e-30) if dtype == np.float32 else (1e150, 1e-300)
    ones = np.ones(6)
    return [
        ("param near the largest value", True, 0.6 * big * ones, ones, 0 * ones, ones, 1e-3, 1e-8),
        # |m| / eps overflows; m / (sqrt(v) / bc2 + eps) does not
        ("exp_avg over eps overflows", True, ones, ones, huge_m * ones, huge_m * huge_m * ones, 1e-3, small_eps),
        # float32: eps rounds to 0; float64: a subnormal eps, whose reciprocal overflows
        ("eps below the dtype's range", True, ones, ones, ones, ones, 1e-3, 1e-320),
        ("0 / (0 + eps), eps as above", dtype == np.float64, ones, 0 * ones, 0 * ones, 0 * ones, 1e-3, 1e-320),
        ("a negative second moment", False, ones, ones, ones, np.array([1, 1, 1, -3, 1, 1.0]), 1e-3, 1e-8),
        ("an update that overflows", False, -0.9 * big * ones, ones, 0 * ones, 0 * ones, 0.2 * big, 1e-8),
    ]


@pytest.mark.parametrize("case", range(6))
def test_adam_when_the_bound_proves_nothing_the_exact_pass_decides(case, dtype):
    """update_kernel checks an Adam step with a bound that needs no division; where the
    bound fails, the exact check runs: the step is done (the reference's values) when
    every new value is finite, and refused with nothing written when one is not."""
    from fastnn import reference

    name, done, *arrays, lr, eps = _adam_cases(dtype)[case]
    state = [np.array(a, dtype) for a in arrays]
    keep = [a.copy() for a in state]
    with np.errstate(all="ignore"):     # the bound, as _adam_bound_pass computes it (Adam, t = 1)
        p, g, m, v = state
        f = dtype.type
        m = m + f(0.1) * (g - m)
        v = v * f(0.999) + f(0.001) * (g * g)
        step_size, inv_eps = f(lr / 0.1), f(1) / f(eps)
        bound = 2 * (np.abs(p) + step_size * (np.abs(m) * inv_eps)) + (np.abs(m) + v)
    assert not (np.isfinite(bound).all() and (v >= 0).all()), f"{name}: the bound holds"
    assert _ops.adam_update_plain(*state, 1, lr, 0.9, 0.999, eps, 0.0, False) == done, name
    if done:
        ref = [a.copy() for a in keep]
        reference.adam_update(*ref, 1, lr, 0.9, 0.999, eps)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        for a, b in zip(state, ref):
            np.testing.assert_allclose(a, b, rtol=tol, err_msg=name)
        return
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(FloatingPointError, match="non-finite"):
        ops.adam_update(*state, 1, lr, eps=eps)
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_adam_hands_back_what_it_does_not_take(dtype, rng):
    p, g, m, v = _adam_state(rng, dtype)
    read_only = m.copy()
    read_only.flags.writeable = False
    other = np.float64 if dtype == np.float32 else np.float32
    good = (1, 0.01, 0.9, 0.999, 1e-8, 0.0, False)
    for arrays in ((p, g, read_only, v), (p, g.astype(other), m, v), (p, g, m, v[:, :3]), (p, g, m, p),
                   (p, p, m, v), (p, np.asfortranarray(g), m, v)):
        assert not _ops.adam_update_plain(*arrays, *good)
    for i, value in ((0, 0), (0, 1.0), (0, True), (1, 1), (1, 0.0), (1, float("inf")), (2, 1.0), (2, -0.1),
                     (3, 1.0), (4, 0.0), (5, -1.0), (5, float("nan")), (6, 1), (6, None)):
        hyper = list(good)
        hyper[i] = value
        assert not _ops.adam_update_plain(p, g, m, v, *hyper)
    keep = [a.copy() for a in (p, g, m, v)]
    with pytest.raises(ValueError, match="beta1"):
        ops.adam_update(p, g, m, v, 1, 0.01, beta1=1.0)
    with pytest.raises(TypeError, match="step"):
        ops.adam_update(p, g, m, v, 1.0, 0.01)
    for a, b in zip((p, g, m, v), keep):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# The other elementwise losses, cross-entropy and SGD with momentum
# ---------------------------------------------------------------------------

# name: (loss, grad, the first argument's name, the common case's delta)
ELEMENTWISE = {
    "mse": (ops.mse_loss, ops.mse_grad, "yhat", 0.0),
    "mae": (ops.mae_loss, ops.mae_grad, "yhat", 0.0),
    "huber": (lambda a, y, **kw: ops.huber_loss(a, y, 0.5, **kw), lambda a, y, **kw: ops.huber_grad(a, y, 0.5, **kw),
              "yhat", 0.5),
    "bce_with_logits": (ops.bce_with_logits_loss, ops.bce_with_logits_grad, "logits", 0.0),
    "poisson": (ops.poisson_loss, ops.poisson_grad, "log_mean", 0.0),
}


def _reference_pair(name):
    from fastnn import reference

    if name == "huber":
        return (lambda a, y: reference.huber_loss(a, y, 0.5)), (lambda a, y: reference.huber_grad(a, y, 0.5))
    return getattr(reference, f"{name}_loss"), getattr(reference, f"{name}_grad")


def _loss_inputs(name, shape, dtype, rng):
    """A prediction and a target for the loss ``name``, with the points where its
    rule changes branch: d == 0 (MAE), |d| == delta (Huber), y == 0 (Poisson)."""
    a = (rng.normal(size=shape) * 2).astype(dtype)
    if name == "bce_with_logits":
        y = rng.uniform(0, 1, size=shape).astype(dtype)
        y.flat[::3] = 1.0
    elif name == "poisson":
        y = rng.poisson(2.0, size=shape).astype(dtype)
        y.flat[0] = 0.0
    else:
        y = rng.normal(size=shape).astype(dtype)
        y.flat[0] = a.flat[0]                         # d == 0
        if a.size > 1:
            a.flat[-1], y.flat[-1] = 1.0, 0.5         # d == delta, exactly
    return a, y


def _code(name):
    return _ops.LOSS_CODES[name]


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (7,), (1, 1), (5, 3), (300, 2), (1001,), (256, 512)])
def test_elementwise_loss_common_case_gives_the_converting_paths_bits(name, shape, dtype, rng):
    loss, grad, _, delta = ELEMENTWISE[name]
    a, y = _loss_inputs(name, shape, dtype, rng)
    bits = _bits(dtype)
    fast_grad = _ops.loss_grad_plain(_code(name), delta, a, y)
    assert fast_grad is not None and fast_grad.shape == shape and fast_grad.dtype == dtype
    fast_loss = _ops.loss_plain(_code(name), delta, a, y)
    assert type(fast_loss) is float
    # the public call (the common case) and the converting path (a strided or Fortran copy)
    np.testing.assert_array_equal(grad(a, y).view(bits), fast_grad.view(bits))
    np.testing.assert_array_equal(grad(_not_plain(a), y).view(bits), fast_grad.view(bits))
    np.testing.assert_array_equal(grad(a, y, sample_weight=np.ones(shape[0])).view(bits), fast_grad.view(bits))
    assert loss(a, y) == fast_loss
    assert loss(_not_plain(a), _not_plain(y)) == fast_loss
    assert loss(a, y, sample_weight=np.ones(shape[0])) == pytest.approx(fast_loss, rel=1e-14)
    # and the NumPy twin
    ref_loss, ref_grad = _reference_pair(name)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast_grad, ref_grad(a, y), rtol=tol, atol=tol / a.size)
    assert fast_loss == pytest.approx(ref_loss(a, y), rel=tol, abs=tol)


def _exact_terms(name, a, y, delta):
    """Each element's loss as loss_grad_kernel computes it (in the arrays' dtype; MSE's
    square in float64, where NumPy rounds it as the kernel does), as float64."""
    t = a.dtype.type
    d = a - y
    if name == "mse":
        return d.astype(np.float64) * d.astype(np.float64)
    if name == "mae":
        return np.abs(d).astype(np.float64)
    m, h, dl = np.abs(d), t(0.5), t(delta)
    return np.where(m < dl, h * d * d, dl * (m - h * dl)).astype(np.float64)


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
@pytest.mark.parametrize("size", [*range(1, 18), 1001, 256 * 512 + 5])
def test_elementwise_loss_lanes_sum_within_the_stated_bound(name, size, dtype, rng):
    """loss_value_kernel sums the per-element losses in eight double lanes: within
    (ceil(size / 8) + 3) 2^-53 sum|t_i| of their exact sum, and then one rounding of
    the division (its docstring's bound), whatever the tail (size % 8) and the
    alignment (a view one element in)."""
    import math

    a, y = _loss_inputs(name, (size + 1,), dtype, rng)
    a, y = a[1:], y[1:]                        # contiguous, but not at the allocation's alignment
    delta = ELEMENTWISE[name][3]
    terms = _exact_terms(name, a, y, delta)
    exact = math.fsum(terms) / size
    bound = ((math.ceil(size / 8) + 3) * 2.0**-53 + 2.0**-52) * math.fsum(np.abs(terms)) / size
    got = _ops.loss_plain(_code(name), delta, a, y)
    assert abs(got - exact) <= bound
    # every element counts (a lane or the tail left out would be off by far more)
    assert got == ELEMENTWISE[name][0](np.array(a, order="C"), y)


def test_elementwise_losses_every_builds_lanes_give_the_same_bits(dtype, rng):
    """The lanes' order is fixed in the code: the SSE2, baseline, AVX2 and AVX-512
    copies of loss_value_kernel give the same bits."""
    import importlib

    from fastnn import _walker

    modules = _walker_builds()
    inputs = {name: _loss_inputs(name, (257, 13), dtype, rng) for name in ELEMENTWISE}
    results = []
    try:
        for module in modules:
            _ops.use_kernels_of(module)
            results.append([_ops.loss_plain(_code(name), ELEMENTWISE[name][3], *inputs[name])
                            for name in sorted(ELEMENTWISE)])
    finally:
        _ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))
    assert len(results) >= 2
    for other in results[1:]:
        assert other == results[0]


def test_loss_gradients_and_cross_entropy_every_build_gives_the_same_bits(dtype, rng):
    """The elementwise losses' checked gradients (loss_grad_checked) and the
    cross-entropy (the shared loss kernel) run from the widest walker build: its
    copy, every other build's and fastnn._ops' own give the same bits (no fused
    multiply-add, the scalar exp and sigmoid), with the inputs' branch points and
    a row count that is not a multiple of any vector width."""
    import importlib

    from fastnn import _walker

    modules = _walker_builds()
    inputs = {name: _loss_inputs(name, (257, 13), dtype, rng) for name in ELEMENTWISE}
    logits = (rng.normal(size=(131, 7)) * 4).astype(dtype)
    logits[0] = 0.0
    logits[1, 3] = 80.0
    labels = rng.integers(0, 7, size=131)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    results = []
    try:
        for module in modules:
            _ops.use_kernels_of(module)
            grads = [_ops.loss_grad_plain(_code(name), ELEMENTWISE[name][3], *inputs[name])
                     for name in sorted(ELEMENTWISE)]
            assert all(g is not None for g in grads)
            ce_grad = _ops.cross_entropy_plain(logits, labels, True)
            ce_loss = _ops.cross_entropy_plain(logits, labels, False)
            results.append(([g.view(bits) for g in grads], ce_grad.view(bits), ce_loss))
    finally:
        _ops.use_kernels_of(importlib.import_module(_walker.Network.__module__))
    assert len(results) >= 2
    first_grads, first_ce, first_loss = results[0]
    for grads, ce_grad, ce_loss in results[1:]:
        for mine, theirs in zip(grads, first_grads):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(ce_grad, first_ce)
        assert ce_loss == first_loss


class _Sub2(np.ndarray):
    pass


def _not_plain_cases(a):
    """The values of a 2-D array ``a`` in arguments the common case hands back."""
    other = np.float64 if a.dtype == np.float32 else np.float32
    read_only_strided = np.repeat(a, 2, axis=1)[:, ::2]
    read_only_strided.flags.writeable = False
    return {
        "strided": np.repeat(a, 2, axis=1)[:, ::2],
        "read-only strided": read_only_strided,
        "Fortran": np.asfortranarray(a),
        "byte-swapped": a.astype(a.dtype.newbyteorder()),
        "other dtype": a.astype(other),
        "float16": a.astype(np.float16),
        "list": a.tolist(),
        "subclass": a.view(_Sub2),
    }


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_loss_uncommon_arguments_take_the_converting_path(name, dtype, rng):
    loss, grad, _, delta = ELEMENTWISE[name]
    a, y = _loss_inputs(name, (12, 3), dtype, rng)
    a.flags.writeable = False                 # read-only and plain: still the common case
    expected_grad = grad(a, y)
    expected_loss = loss(a, y)
    assert _ops.loss_plain(_code(name), delta, a, y) == expected_loss
    for case, arg in _not_plain_cases(a).items():
        assert _ops.loss_plain(_code(name), delta, arg, y) is None, case
        assert _ops.loss_grad_plain(_code(name), delta, y, arg) is None, case
        got = grad(arg, y)
        if got.dtype != dtype or case in ("other dtype", "float16"):
            # other values (rounded to float32 or float16) or another computing dtype (a list
            # with float32 y computes in float64): the same bits as the common case on the
            # values converted once
            converted = (np.asarray(arg, dtype=got.dtype), y.astype(got.dtype))
            np.testing.assert_array_equal(got, grad(*converted), err_msg=case)
            assert loss(arg, y) == loss(*converted), case
            continue
        np.testing.assert_array_equal(got, expected_grad, err_msg=case)
        assert loss(arg, y) == expected_loss, case


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["prediction", "y"])
def test_elementwise_loss_common_case_refuses_non_finite_values_by_name(name, bad, which, dtype, rng):
    loss, grad, first, delta = ELEMENTWISE[name]
    a, y = _loss_inputs(name, (40, 3), dtype, rng)
    broken = (a if which == "prediction" else y).copy()
    broken[39, 2] = bad
    args = (broken, y) if which == "prediction" else (a, broken)
    keep = [arg.copy() for arg in args]
    assert _ops.loss_plain(_code(name), delta, *args) is None
    assert _ops.loss_grad_plain(_code(name), delta, *args) is None
    label = first if which == "prediction" else "y"
    for call in (loss, grad):
        with pytest.raises(ValueError, match=f"{label} must contain only finite values"):
            call(*args)
    for arg, kept in zip(args, keep):
        np.testing.assert_array_equal(arg, kept)


def test_poisson_common_case_refuses_a_negative_count_by_name(dtype, rng):
    log_mean, y = _loss_inputs("poisson", (20, 2), dtype, rng)
    y[7, 1] = -1.0
    code = _code("poisson")
    assert _ops.loss_plain(code, 0.0, log_mean, y) is None
    assert _ops.loss_grad_plain(code, 0.0, log_mean, y) is None
    for call in (ops.poisson_loss, ops.poisson_grad):
        with pytest.raises(ValueError, match="y must be non-negative for the Poisson loss"):
            call(log_mean, y)


def test_huber_delta_the_common_case_does_not_take_goes_to_the_converting_path(dtype, rng):
    yhat, y = _loss_inputs("huber", (9, 2), dtype, rng)
    code = _code("huber")
    expected = ops.huber_grad(yhat, y, 0.5)
    for delta in (np.float64(0.5), np.float32(0.5)):
        assert _ops.loss_grad_plain(code, delta, yhat, y) is None
        np.testing.assert_array_equal(ops.huber_grad(yhat, y, delta), expected)
    assert _ops.loss_plain(code, 1, yhat, y) is None
    assert ops.huber_loss(yhat, y, 1) == ops.huber_loss(yhat, y, 1.0)
    for delta in (0.0, -1.0, float("nan"), float("inf")):
        assert _ops.loss_plain(code, delta, yhat, y) is None
        assert _ops.loss_grad_plain(code, delta, yhat, y) is None
        with pytest.raises(ValueError, match="delta"):
            ops.huber_loss(yhat, y, delta)
    assert _ops.loss_plain(_ops.LOSS_CODES["cross_entropy"], 0.0, yhat, y) is None
    assert _ops.loss_grad_plain(99, 0.0, yhat, y) is None


def test_an_elementwise_loss_that_overflows_goes_to_the_converting_path(dtype):
    big = np.finfo(dtype).max
    yhat, y = np.array([big, -big], dtype), np.array([-big, big], dtype)
    assert _ops.loss_plain(_code("mae"), 0.0, yhat, y) is None
    assert ops.mae_loss(yhat, y) == np.inf
    # the gradient of the same inputs is finite, and the common case gives it
    np.testing.assert_array_equal(ops.mae_grad(yhat, y), np.array([0.5, -0.5], dtype))


def _ce_inputs(shape, dtype, rng, label_dtype=np.int64):
    logits = (rng.normal(size=shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[1], size=shape[0]).astype(label_dtype)
    return logits, labels


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (64, 10), (7, 2), (300, 5)])
def test_cross_entropy_common_case_gives_the_converting_paths_bits(shape, label_dtype, dtype, rng):
    from fastnn import reference

    logits, labels = _ce_inputs(shape, dtype, rng, label_dtype)
    bits = _bits(dtype)
    fast_grad = _ops.cross_entropy_plain(logits, labels, True)
    fast_loss = _ops.cross_entropy_plain(logits, labels, False)
    assert fast_grad is not None and fast_grad.shape == shape and fast_grad.dtype == dtype
    assert type(fast_loss) is float
    np.testing.assert_array_equal(ops.cross_entropy_grad(logits, labels).view(bits), fast_grad.view(bits))
    assert ops.cross_entropy_loss(logits, labels) == fast_loss
    # the converting path: Fortran logits, labels as a list or as floats
    for args in ((np.asfortranarray(logits), labels), (logits, labels.tolist()), (logits, labels.astype(dtype))):
        np.testing.assert_array_equal(ops.cross_entropy_grad(*args).view(bits), fast_grad.view(bits))
        assert ops.cross_entropy_loss(*args) == fast_loss
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast_grad, reference.cross_entropy_grad(logits, labels), rtol=tol, atol=tol)
    assert fast_loss == pytest.approx(reference.cross_entropy_loss(logits, labels), rel=tol, abs=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("at_label", [False, True])
def test_cross_entropy_common_case_refuses_non_finite_logits_by_name(bad, at_label, dtype, rng):
    logits, labels = _ce_inputs((30, 4), dtype, rng)
    labels[11] = 2
    logits[11, 2 if at_label else 0] = bad    # -inf away from the label leaves loss and gradient finite
    keep = logits.copy()
    assert _ops.cross_entropy_plain(logits, labels, False) is None
    assert _ops.cross_entropy_plain(logits, labels, True) is None
    for call in (ops.cross_entropy_loss, ops.cross_entropy_grad):
        with pytest.raises(ValueError, match="logits must contain only finite values"):
            call(logits, labels)
    np.testing.assert_array_equal(logits, keep)


@pytest.mark.parametrize("label", [-1, 4, 2 ** 40])
def test_cross_entropy_common_case_refuses_labels_out_of_range_by_name(label, dtype, rng):
    logits, labels = _ce_inputs((30, 4), dtype, rng)
    labels[29] = label
    for want_grad in (False, True):
        assert _ops.cross_entropy_plain(logits, labels, want_grad) is None
    for call in (ops.cross_entropy_loss, ops.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"labels must hold class indices in \[0, 4\)"):
            call(logits, labels)


def test_cross_entropy_hands_back_what_it_does_not_take(dtype, rng):
    logits, labels = _ce_inputs((12, 3), dtype, rng)
    expected = ops.cross_entropy_grad(logits, labels)
    swapped = labels.astype(labels.dtype.newbyteorder())
    for case, arg in _not_plain_cases(logits).items():
        if case == "other dtype":
            continue            # plain logits of the other float type: the common case in that type
        assert _ops.cross_entropy_plain(arg, labels, True) is None, case
        got = ops.cross_entropy_grad(arg, labels)
        if got.dtype == dtype and case != "float16":
            np.testing.assert_array_equal(got, expected, err_msg=case)
    for arg in (labels.astype(np.uint8), labels.astype(np.int16), labels.astype(dtype), labels.reshape(-1, 1),
                np.repeat(labels, 2)[::2], swapped, labels[:-1], labels.tolist()):
        assert _ops.cross_entropy_plain(logits, arg, True) is None
        if len(arg) == 12:
            np.testing.assert_array_equal(ops.cross_entropy_grad(logits, arg), expected)
    with pytest.raises(ValueError, match="labels must have one label per sample"):
        ops.cross_entropy_grad(logits, labels[:-1])
    assert _ops.cross_entropy_plain(logits.reshape(-1), np.zeros(36, np.int64), True) is None
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        ops.cross_entropy_loss(logits, labels.astype(bool))


def _momentum_state(rng, dtype, shape=(33, 7)):
    return [rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
            (rng.normal(size=shape) * 0.1).astype(dtype)]


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (33, 7), (1000,)])
def test_sgd_momentum_common_case_gives_the_converting_paths_bits(nesterov, weight_decay, shape, dtype, rng):
    from fastnn import reference

    fast = _momentum_state(rng, dtype, shape)
    slow = [a.copy() for a in fast]
    ref = [a.copy() for a in fast]
    assert _ops.sgd_momentum_update_plain(fast[0], fast[1], fast[2], 0.05, 0.9, nesterov, weight_decay)
    # a list gradient: the converting path
    ops.sgd_momentum_update(slow[0], slow[1].tolist(), slow[2], 0.05, 0.9, nesterov, weight_decay)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.view(_bits(dtype)), b.view(_bits(dtype)))
    public = [a.copy() for a in ref]
    ops.sgd_momentum_update(public[0], public[1], public[2], 0.05, 0.9, nesterov, weight_decay)
    for a, b in zip(fast, public):
        np.testing.assert_array_equal(a.view(_bits(dtype)), b.view(_bits(dtype)))
    reference.sgd_momentum_update(ref[0], ref[1], ref[2], 0.05, 0.9, nesterov, weight_decay)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["strided", "Fortran", "byte-swapped", "read-only grad"])
def test_sgd_momentum_uncommon_layouts_take_the_converting_path(layout, dtype, rng):
    p, g, m = _momentum_state(rng, dtype, (8, 6))
    expected = [p.copy(), g.copy(), m.copy()]
    ops.sgd_momentum_update(expected[0], expected[1], expected[2], 0.1, 0.5)
    if layout == "strided":
        room = np.zeros((8, 12), dtype)
        room[:, ::2] = p
        p = room[:, ::2]
    elif layout == "Fortran":
        m = np.asfortranarray(m)
    elif layout == "byte-swapped":
        # the buffer must have param's dtype, byte order included
        p, m = p.astype(p.dtype.newbyteorder()), m.astype(m.dtype.newbyteorder())
    else:
        g.flags.writeable = False
    if layout != "read-only grad":
        assert not _ops.sgd_momentum_update_plain(p, g, m, 0.1, 0.5, False, 0.0)
    ops.sgd_momentum_update(p, g, m, 0.1, 0.5)
    np.testing.assert_array_equal(p, expected[0])
    np.testing.assert_array_equal(m, expected[2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_sgd_momentum_common_case_writes_nothing_when_a_value_is_not_finite(bad, which, dtype, rng):
    state = _momentum_state(rng, dtype)
    state[which].flat[5] = bad
    keep = [a.copy() for a in state]
    assert not _ops.sgd_momentum_update_plain(*state, 0.01, 0.9, False, 0.0)
    name = ["param", "grad", "momentum_buffer"][which]
    with pytest.raises(ValueError, match=f"{name} must contain only finite values"):
        ops.sgd_momentum_update(*state, 0.01, 0.9)
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b)


def test_sgd_momentum_an_update_that_overflows_changes_nothing(dtype):
    big = np.finfo(dtype).max
    state = [np.full(4, -big, dtype), np.full(4, 1.0, dtype), np.zeros(4, dtype)]
    keep = [a.copy() for a in state]
    assert not _ops.sgd_momentum_update_plain(*state, float(big) / 4, 0.9, False, 0.0)
    with pytest.raises(FloatingPointError, match="non-finite"):
        ops.sgd_momentum_update(*state, float(big) / 4, 0.9)
    for a, b in zip(state, keep):
        np.testing.assert_array_equal(a, b)


def test_sgd_momentum_hands_back_what_it_does_not_take(dtype, rng):
    p, g, m = _momentum_state(rng, dtype)
    read_only = m.copy()
    read_only.flags.writeable = False
    other = np.float64 if dtype == np.float32 else np.float32
    good = (0.1, 0.9, False, 0.0)
    for arrays in ((p, g, read_only), (p, g.astype(other), m), (p, g, m[:, :3]), (p, g, p), (p, p, m),
                   (p, np.asfortranarray(g), m), (p, g, m.tolist())):
        assert not _ops.sgd_momentum_update_plain(*arrays, *good)
    for i, value in ((0, 1), (0, 0.0), (0, float("inf")), (1, 0.0), (1, 1.0), (1, np.float64(0.9)), (2, 1),
                     (2, None), (3, -0.1), (3, float("nan"))):
        hyper = list(good)
        hyper[i] = value
        assert not _ops.sgd_momentum_update_plain(p, g, m, *hyper)
    keep = [a.copy() for a in (p, g, m)]
    with pytest.raises(ValueError, match="momentum"):
        ops.sgd_momentum_update(p, g, m, 0.1, 1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        ops.sgd_momentum_update(p, g, m, 0.1, 0.0, nesterov=True)
    with pytest.raises(ValueError, match="momentum_buffer must be writable"):
        ops.sgd_momentum_update(p, g, read_only, 0.1, 0.9)
    for a, b in zip((p, g, m), keep):
        np.testing.assert_array_equal(a, b)
    # momentum 0: the buffer is not read, and the converting path still checks it
    broken = m.copy()
    broken.flat[0] = np.nan
    with pytest.raises(ValueError, match="momentum_buffer must contain only finite values"):
        ops.sgd_momentum_update(p, g, broken, 0.1, 0.0)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_grad_keeps_signed_zeros_and_hands_back_an_overflow(name, dtype):
    """The common case carries the inputs' finiteness into the gradient as g - (+0):
    the bits of every finite g, -0 included, stay those of the converting path."""
    _, grad, _, delta = ELEMENTWISE[name]
    a = np.array([-0.0, 0.0, -0.0, 1.0, -3.0, 0.5], dtype)
    y = np.array([0.0, -0.0, -0.0, 1.0, 0.0, 0.5], dtype)
    fast = _ops.loss_grad_plain(_code(name), delta, a, y)
    slow = grad(_not_plain(a), _not_plain(y))
    np.testing.assert_array_equal(fast.view(_bits(dtype)), slow.view(_bits(dtype)))
    if name == "mse":
        assert np.signbit(fast[0]) and not np.signbit(fast[1])     # (-0 - 0) and (0 - -0)
    big = np.finfo(dtype).max
    huge = np.array([big, 1.0], dtype)
    if name in ("mse", "poisson"):      # 2 * (big - -big) / 2 and exp(big) overflow
        other = np.array([-big, 1.0], dtype) if name == "mse" else np.array([1.0, 1.0], dtype)
        assert _ops.loss_grad_plain(_code(name), delta, huge, other) is None
        expected = grad(_not_plain(huge), _not_plain(other))
        assert np.isinf(expected[0])
        np.testing.assert_array_equal(grad(huge, other), expected)


@pytest.mark.parametrize("size", [*range(0, 70), 127, 128, 129, 1000])
def test_the_finiteness_scan_finds_a_bad_value_anywhere(size, dtype):
    # all_finite_kernel sums x * 0 in 128 bytes of lanes, started from the first values
    # and added up in halves: every position of the lanes, the tail and a size below
    # one row of lanes must carry a NaN or an infinity through.
    info = np.finfo(dtype)
    x = np.resize(np.array([1.5, -0.0, 0.0, info.max, -info.max, info.tiny / 4, -3.0], dtype), size)
    assert _ops.all_finite(x)
    for where in sorted({0, size // 3, size // 2, size - 1} if size else set()):
        for bad in (np.nan, np.inf, -np.inf):
            broken = x.copy()
            broken[where] = bad
            assert not _ops.all_finite(broken), (size, where, bad)
