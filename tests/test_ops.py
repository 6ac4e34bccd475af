"""fastnn.ops, each kernel tested four ways.

1. against its NumPy twin in :mod:`fastnn.reference`, in float32 and float64,
   with per-dtype tolerances, over shapes with one sample / feature / output
   and odd sizes (and against naive Python loops for a whole training step);
2. against central finite differences (float64);
3. across memory layouts: read-only, Fortran-ordered, strided, negative
   strides, byte-swapped and plain lists give exactly the contiguous result;
4. against bad input: the right exception, with a message naming the argument.

Hypothesis property tests (derandomized) draw shapes and dtypes at the end.
"""

import inspect
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from fastnn import ops, reference

# ---------------------------------------------------------------------------
# Constants and helpers
# ---------------------------------------------------------------------------

OP_NAMES = [
    "dense_forward",
    "dense_backward",
    "relu_forward",
    "relu_backward",
    "mse_loss",
    "mse_grad",
    "sgd_update",
]

DTYPES = [np.float32, np.float64]

#: Per-dtype tolerances; ``atol`` is multiplied by the scale of the data (the
#: largest sum of absolute terms that went into one output element).
TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-5),
    np.float64: dict(rtol=1e-12, atol=1e-12),
}

#: (n_samples, in_features, out_features): one sample, one feature, one
#: output, odd sizes and a larger batch.
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (13, 9, 1), (32, 33, 17), (64, 256, 10)]

LR = 0.05


def dtype_id(dtype):
    return np.dtype(dtype).name


def tolerance(dtype, scale=1.0):
    """The assert_allclose keywords for ``dtype``, atol scaled to the data."""
    tol = TOL[np.dtype(dtype).type]
    return dict(rtol=tol["rtol"], atol=tol["atol"] * float(scale))


def assert_close(actual, expected, dtype, scale=1.0):
    """assert_allclose with the per-dtype tolerance."""
    np.testing.assert_allclose(actual, expected, **tolerance(dtype, scale))


def approx(expected, dtype, scale=0.0):
    """pytest.approx with the per-dtype tolerance, for scalars."""
    tol = tolerance(dtype, scale)
    return pytest.approx(expected, rel=tol["rtol"], abs=tol["atol"])


def with_zeros(a):
    """``a`` with every fifth element set to exactly 0 (ReLU's kink)."""
    a = a.copy()
    a.flat[::5] = 0
    return a


def make_args(name, shape, dtype, seed=0):
    """Valid keyword arguments for ``ops.<name>`` built from (n_samples, in_features, out_features)."""
    n_samples, in_features, out_features = shape
    rng = np.random.default_rng(seed)

    def normal(*size):
        return rng.normal(size=size).astype(dtype)

    if name == "dense_forward":
        return dict(X=normal(n_samples, in_features), W=normal(in_features, out_features), b=normal(out_features))
    if name == "dense_backward":
        return dict(X=normal(n_samples, in_features), W=normal(in_features, out_features),
                    dY=normal(n_samples, out_features))
    if name == "relu_forward":
        return dict(Z=with_zeros(normal(n_samples, out_features)))
    if name == "relu_backward":
        return dict(Z=with_zeros(normal(n_samples, out_features)), dA=normal(n_samples, out_features))
    if name in ("mse_loss", "mse_grad"):
        return dict(yhat=normal(n_samples, out_features), y=normal(n_samples, out_features))
    if name == "sgd_update":
        return dict(param=normal(in_features, out_features), grad=normal(in_features, out_features), lr=LR)
    raise AssertionError(name)


def array_names(name):
    """The (required) array arguments of ``ops.<name>``, in order."""
    parameters = inspect.signature(getattr(ops, name)).parameters.values()
    return [p.name for p in parameters if p.name != "lr" and p.default is inspect.Parameter.empty]


def call(module, name, args):
    """Run ``module.<name>(**args)`` and return its results as a tuple.

    ``sgd_update`` runs on a copy of ``param`` and returns it updated.
    """
    func = getattr(module, name)
    if name == "sgd_update":
        param = np.array(args["param"], copy=True)
        assert func(param, args["grad"], args["lr"]) is None
        return (param,)
    out = func(**args)
    return out if isinstance(out, tuple) else (out,)


def output_scales(name, args):
    """For each output of ``name``, the largest sum of absolute terms in one element."""
    a = {k: np.abs(np.asarray(v, dtype=np.float64)) for k, v in args.items() if k != "lr"}
    if name == "dense_forward":
        return (np.max(a["X"] @ a["W"] + a["b"]),)
    if name == "dense_backward":
        return (np.max(a["dY"] @ a["W"].T), np.max(a["X"].T @ a["dY"]), np.max(a["dY"].sum(axis=0)))
    if name in ("relu_forward", "relu_backward"):
        return (np.max(a[array_names(name)[-1]]),)
    if name == "mse_loss":
        return (np.mean((a["yhat"] + a["y"]) ** 2),)
    if name == "mse_grad":
        return (2 * np.max(a["yhat"] + a["y"]) / a["yhat"].size,)
    if name == "sgd_update":
        return (np.max(a["param"] + args["lr"] * a["grad"]),)
    raise AssertionError(name)


def assert_raises_naming(exc, arg, func, *args, **kwargs):
    """``func`` raises ``exc`` whose message names ``arg`` and says what it got."""
    with pytest.raises(exc, match=rf"\b{re.escape(arg)}\b") as info:
        func(*args, **kwargs)
    assert "got" in str(info.value), f"message does not say what was given: {info.value}"
    return info


# Memory layouts. Each returns an array-like holding the same values as ``a``.

def readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def strided(a, step=(2, 3, 2, 3)):
    """A view with steps ``step`` into a bigger NaN-filled buffer, holding ``a``."""
    steps = step[:a.ndim]
    big = np.full([s * k for s, k in zip(a.shape, steps)], np.nan, dtype=a.dtype)
    view = big[tuple(slice(None, None, k) for k in steps)]
    view[...] = a
    return view


def negative_strides(a):
    """A view with negative strides along every axis, holding ``a``."""
    flip = tuple(slice(None, None, -1) for _ in range(a.ndim))
    return a[flip].copy()[flip]


def strided_negative(a):
    """Strided and reversed, like ``big[::-2, ::-3]``, holding ``a``."""
    flip = tuple(slice(None, None, -1) for _ in range(a.ndim))
    return strided(a[flip])[flip]


def fortran_block(a):
    """A non-contiguous block of a bigger NaN-filled Fortran-ordered buffer, holding ``a``."""
    big = np.full([s + 2 for s in a.shape], np.nan, dtype=a.dtype, order="F")
    view = big[tuple(slice(1, -1) for _ in a.shape)]
    view[...] = a
    return view


def byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


def byteswapped_readonly_fortran(a):
    return readonly(np.asfortranarray(byteswapped(a)))


def as_list(a):
    return a.tolist()


LAYOUTS = {
    "readonly": readonly,
    "fortran": np.asfortranarray,
    "strided": strided,
    "negative_strides": negative_strides,
    "strided_negative": strided_negative,
    "byteswapped": byteswapped,
    "byteswapped_readonly_fortran": byteswapped_readonly_fortran,
    "list": as_list,
}

#: For the "mixed" layout: a different layout for each argument.
MIXED = [np.asfortranarray, byteswapped_readonly_fortran, strided_negative]


def relayout(args, layout, names):
    """``args`` with the arrays ``names`` put in ``layout`` ("mixed": one each)."""
    out = dict(args)
    for i, key in enumerate(names):
        transform = MIXED[i % len(MIXED)] if layout == "mixed" else LAYOUTS[layout]
        out[key] = transform(args[key])
    return out


# ---------------------------------------------------------------------------
# 1. Against fastnn.reference
# ---------------------------------------------------------------------------

def test_ops_and_reference_have_the_same_names_and_signatures():
    """Every public op has a reference twin with the same signature."""
    assert set(OP_NAMES) <= set(ops.__all__)
    assert set(ops.__all__) <= set(reference.__all__)
    for name in ops.__all__:
        assert inspect.signature(getattr(ops, name)).parameters.keys() == \
            inspect.signature(getattr(reference, name)).parameters.keys(), name


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", OP_NAMES)
def test_matches_reference(name, shape, dtype):
    """ops == reference within tolerance; output dtype == input dtype; inputs untouched."""
    args = make_args(name, shape, dtype, seed=sum(shape))
    before = {k: np.copy(v) for k, v in args.items()}
    got = call(ops, name, args)
    expected = call(reference, name, args)
    assert len(got) == len(expected)
    for g, e, scale in zip(got, expected, output_scales(name, args)):
        if name == "mse_loss":
            assert type(g) is float
            assert g == approx(e, dtype)
            continue
        assert isinstance(g, np.ndarray)
        assert g.dtype == np.dtype(dtype)
        assert g.shape == np.shape(e)
        assert g.flags.c_contiguous and g.flags.writeable
        assert_close(g, e, dtype, scale)
        for v in args.values():
            if isinstance(v, np.ndarray):
                assert not np.shares_memory(g, v), "an output aliases an input"
    for k, v in args.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{name} modified its input {k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(7,), (1,), (2, 3, 4), (3, 1, 2, 5)], ids=str)
def test_relu_any_ndim_matches_reference_exactly(shape, dtype):
    """ReLU forward/backward accept any ndim >= 1 and are exact (Z == 0 gives 0)."""
    rng = np.random.default_rng(3)
    Z = with_zeros(rng.normal(size=shape).astype(dtype))
    dA = rng.normal(size=shape).astype(dtype)
    A = ops.relu_forward(Z)
    dZ = ops.relu_backward(Z, dA)
    assert A.shape == dZ.shape == shape
    assert A.dtype == dZ.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(A, reference.relu_forward(Z))
    np.testing.assert_array_equal(dZ, reference.relu_backward(Z, dA))
    assert np.all(dZ[Z == 0] == 0)


def expected_dtype(dtypes):
    """The contract: float32 when every input is float16/float32, else float64."""
    if all(np.dtype(d) in (np.dtype(np.float16), np.dtype(np.float32)) for d in dtypes):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


INPUT_DTYPES = [
    (np.float32,),
    (np.float64,),
    (np.float32, np.float64),
    (np.float64, np.float32),
    (np.float32, np.float32, np.float64),
    (np.int64,),
    (np.int32, np.float32),
    (np.uint8,),
    (np.bool_,),
    (np.bool_, np.float32),
    (np.float16,),
    (np.float16, np.float32),
]


@pytest.mark.parametrize("in_dtypes", INPUT_DTYPES, ids=lambda ds: "+".join(np.dtype(d).name for d in ds))
@pytest.mark.parametrize("name", [n for n in OP_NAMES if n != "sgd_update"])
def test_output_dtype_follows_inputs(name, in_dtypes):
    """float32 in -> float32 out; mixed -> float64; int/bool -> float64 (float16 -> float32)."""
    names = array_names(name)
    base = make_args(name, (6, 4, 3), np.float64, seed=1)
    rng = np.random.default_rng(2)
    args, used = {}, []
    for i, key in enumerate(names):
        d = np.dtype(in_dtypes[i % len(in_dtypes)])
        used.append(d)
        if d.kind == "b":
            args[key] = rng.random(base[key].shape) < 0.5
        elif d.kind == "u":
            args[key] = rng.integers(0, 4, size=base[key].shape).astype(d)
        else:   # small integers: exact in every dtype
            args[key] = rng.integers(-3, 4, size=base[key].shape).astype(d)
    want = expected_dtype(used)
    got = call(ops, name, args)
    expected = call(reference, name, {k: v.astype(want) for k, v in args.items()})
    for g, e, scale in zip(got, expected, output_scales(name, args)):
        if name == "mse_loss":
            assert type(g) is float
            assert g == approx(e, want)
        else:
            assert g.dtype == want, f"{[d.name for d in used]} gave {g.dtype}, expected {want}"
            assert_close(g, e, want, scale)


@pytest.mark.parametrize("grad_kind", ["float32", "float64", "int64", "bool", "float16", "list"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sgd_update_keeps_param_dtype(dtype, grad_kind):
    """param keeps its dtype whatever grad's dtype; grad is converted to it."""
    rng = np.random.default_rng(4)
    param = rng.normal(size=(5, 3)).astype(dtype)
    grad = rng.integers(-3, 4, size=(5, 3))
    grad = grad.tolist() if grad_kind == "list" else grad.astype(grad_kind)
    expected = param.copy()
    reference.sgd_update(expected, np.asarray(grad, dtype=dtype), LR)
    ops.sgd_update(param, grad, LR)
    assert param.dtype == np.dtype(dtype)
    assert_close(param, expected, dtype, np.max(np.abs(expected)) + 3 * LR)


@pytest.mark.parametrize("lr", [1, 0.25, np.float32(0.5), np.float64(1e-3), np.int64(2)],
                         ids=["int", "float", "np.float32", "np.float64", "np.int64"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sgd_update_accepts_real_learning_rates(dtype, lr):
    """Any finite positive real lr (int, float, NumPy scalars) works."""
    rng = np.random.default_rng(5)
    param = rng.normal(size=(4, 3)).astype(dtype)
    grad = rng.normal(size=(4, 3)).astype(dtype)
    expected = param.copy()
    reference.sgd_update(expected, grad, float(lr))
    assert ops.sgd_update(param, grad, lr) is None
    assert_close(param, expected, dtype, np.max(np.abs(expected)) + float(lr) * np.max(np.abs(grad)))


@pytest.mark.parametrize("shape", [(), (1,), (6,), (3, 4), (2, 3, 4), (2, 1, 3, 2)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sgd_update_any_shape(dtype, shape):
    """sgd_update works for a param of any shape, including a 0-d array."""
    rng = np.random.default_rng(6)
    param = np.asarray(rng.normal(size=shape), dtype=dtype)
    grad = np.asarray(rng.normal(size=shape), dtype=dtype)
    expected = param.copy()
    reference.sgd_update(expected, grad, LR)
    ops.sgd_update(param, grad, LR)
    assert param.shape == shape and param.dtype == np.dtype(dtype)
    assert_close(param, expected, dtype, np.max(np.abs(expected)) + LR * np.max(np.abs(grad)))


def test_sgd_update_empty_param_is_a_no_op():
    """An empty param (no parameters) is updated trivially, not refused."""
    param = np.empty((0, 3))
    assert ops.sgd_update(param, np.empty((0, 3)), LR) is None
    assert param.shape == (0, 3)


# A whole training step against naive Python loops (an oracle independent of NumPy).

def naive_dense_forward(X, W, b):
    return [[b[j] + sum(X[i][k] * W[k][j] for k in range(len(W))) for j in range(len(b))]
            for i in range(len(X))]


def naive_dense_backward(X, W, dY):
    n_samples, in_features, out_features = len(X), len(W), len(W[0])
    dX = [[sum(dY[i][j] * W[k][j] for j in range(out_features)) for k in range(in_features)]
          for i in range(n_samples)]
    dW = [[sum(X[i][k] * dY[i][j] for i in range(n_samples)) for j in range(out_features)]
          for k in range(in_features)]
    db = [sum(dY[i][j] for i in range(n_samples)) for j in range(out_features)]
    return dX, dW, db


def naive_training_step(X, y, W1, b1, W2, b2, lr):
    """Dense -> ReLU -> Dense -> MSE -> backward -> SGD, in Python floats."""
    Z = naive_dense_forward(X, W1, b1)
    A = [[max(z, 0.0) for z in row] for row in Z]
    yhat = naive_dense_forward(A, W2, b2)
    size = len(yhat) * len(yhat[0])
    loss = sum((p - t) ** 2 for prow, trow in zip(yhat, y) for p, t in zip(prow, trow)) / size
    dyhat = [[2 * (p - t) / size for p, t in zip(prow, trow)] for prow, trow in zip(yhat, y)]
    dA, dW2, db2 = naive_dense_backward(A, W2, dyhat)
    dZ = [[g if z > 0 else 0.0 for g, z in zip(grow, zrow)] for grow, zrow in zip(dA, Z)]
    _, dW1, db1 = naive_dense_backward(X, W1, dZ)
    step = lambda p, g: [[pv - lr * gv for pv, gv in zip(pr, gr)] for pr, gr in zip(p, g)]  # noqa: E731
    return loss, step(W1, dW1), [v - lr * g for v, g in zip(b1, db1)], step(W2, dW2), \
        [v - lr * g for v, g in zip(b2, db2)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_training_step_matches_naive_loops(dtype):
    """One step composed from ops equals the same step written as Python loops."""
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(6, 3)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)
    W1, b1 = rng.normal(size=(3, 5)).astype(dtype), rng.normal(size=5).astype(dtype)
    W2, b2 = rng.normal(size=(5, 2)).astype(dtype), rng.normal(size=2).astype(dtype)
    lr = 0.1
    expected = naive_training_step(X.tolist(), y.tolist(), W1.tolist(), b1.tolist(),
                                   W2.tolist(), b2.tolist(), lr)

    Z = ops.dense_forward(X, W1, b1)
    A = ops.relu_forward(Z)
    yhat = ops.dense_forward(A, W2, b2)
    loss = ops.mse_loss(yhat, y)
    dA, dW2, db2 = ops.dense_backward(A, W2, ops.mse_grad(yhat, y))
    _, dW1, db1 = ops.dense_backward(X, W1, ops.relu_backward(Z, dA))
    for param, grad in [(W1, dW1), (b1, db1), (W2, dW2), (b2, db2)]:
        ops.sgd_update(param, grad, lr)

    assert loss == pytest.approx(expected[0], rel=100 * TOL[dtype]["rtol"])
    for got, want in zip([W1, b1, W2, b2], expected[1:]):
        assert got.dtype == np.dtype(dtype)
        assert_close(got, want, dtype, scale=10)


# ---------------------------------------------------------------------------
# 2. Finite differences (float64)
# ---------------------------------------------------------------------------

FD_SHAPES = [(1, 1, 1), (3, 4, 2), (5, 2, 3), (4, 7, 1)]
FD_STEP = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-7)


def numerical_gradient(f, x, h=FD_STEP):
    """Central differences of the scalar ``f()`` with respect to ``x`` (perturbed in place)."""
    grad = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        original = x[index]
        x[index] = original + h
        f_plus = f()
        x[index] = original - h
        f_minus = f()
        x[index] = original
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


@pytest.mark.parametrize("shape", FD_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_finite_differences(shape):
    """dX, dW, db are the gradients of sum(G * dense_forward(X, W, b))."""
    n_samples, in_features, out_features = shape
    rng = np.random.default_rng(8)
    X = rng.normal(size=(n_samples, in_features))
    W = rng.normal(size=(in_features, out_features))
    b = rng.normal(size=out_features)
    G = rng.normal(size=(n_samples, out_features))

    def objective():
        return float(np.sum(G * ops.dense_forward(X, W, b)))

    dX, dW, db = ops.dense_backward(X, W, G)
    np.testing.assert_allclose(dX, numerical_gradient(objective, X), **FD_TOL)
    np.testing.assert_allclose(dW, numerical_gradient(objective, W), **FD_TOL)
    np.testing.assert_allclose(db, numerical_gradient(objective, b), **FD_TOL)


@pytest.mark.parametrize("shape", [(1,), (9,), (4, 3), (2, 3, 2)], ids=str)
def test_relu_backward_finite_differences(shape):
    """relu_backward(Z, G) is the gradient of sum(G * relu_forward(Z)), away from 0."""
    rng = np.random.default_rng(9)
    Z = rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    Z.flat[0] = 0.5    # at least one positive entry
    G = rng.normal(size=shape)

    def objective():
        return float(np.sum(G * ops.relu_forward(Z)))

    np.testing.assert_allclose(ops.relu_backward(Z, G), numerical_gradient(objective, Z), **FD_TOL)


@pytest.mark.parametrize("y_shape,yhat_shape", [((1,), (1,)), ((7,), (7,)), ((4, 3), (4, 3)), ((6,), (6, 1)),
                                                ((1, 1), (1, 1))], ids=str)
def test_mse_grad_finite_differences(y_shape, yhat_shape):
    """mse_grad is the gradient of mse_loss with respect to yhat."""
    rng = np.random.default_rng(10)
    yhat = rng.normal(size=yhat_shape)
    y = rng.normal(size=y_shape)
    grad = ops.mse_grad(yhat, y)
    assert grad.shape == yhat.shape
    np.testing.assert_allclose(grad, numerical_gradient(lambda: ops.mse_loss(yhat, y), yhat), **FD_TOL)


# ---------------------------------------------------------------------------
# 3. Memory layouts
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", [*LAYOUTS, "mixed"])
@pytest.mark.parametrize("name", OP_NAMES)
def test_layouts_give_the_contiguous_result(name, layout, dtype):
    """Any layout of the inputs gives bit for bit the contiguous array's result.

    Lists hold float64 values, so they are compared with the float64 array.
    For sgd_update the layout applies to ``grad`` (``param`` is tested below).
    """
    args = make_args(name, (7, 5, 3), dtype, seed=11)
    names = [k for k in array_names(name) if k != "param"]
    contiguous = args
    if layout == "list":
        contiguous = {k: (v.astype(np.float64) if k in names else v) for k, v in args.items()}
    expected = call(ops, name, contiguous)
    arranged = relayout(args, layout, names)
    got = call(ops, name, arranged)
    for g, e in zip(got, expected):
        if name == "mse_loss":
            assert type(g) is float and g == e
        else:
            assert g.dtype == e.dtype      # native byte order, same precision
            assert g.dtype.isnative
            np.testing.assert_array_equal(g, e)


PARAM_LAYOUTS = {
    "contiguous": np.copy,
    "fortran": np.asfortranarray,
    "strided": strided,
    "negative_strides": negative_strides,
    "strided_negative": strided_negative,
    "byteswapped": byteswapped,
    "byteswapped_fortran": lambda a: np.asfortranarray(byteswapped(a)),
    "fortran_block": fortran_block,
}


def test_layout_helpers_make_what_they_claim():
    """The layout helpers really make read-only, Fortran, strided, reversed, swapped arrays."""
    a = np.arange(12.0).reshape(3, 4)
    assert not readonly(a).flags.writeable
    assert np.asfortranarray(a).flags.f_contiguous and not np.asfortranarray(a).flags.c_contiguous
    assert not strided(a).flags.c_contiguous and strided(a).strides == (2 * 12 * 8, 3 * 8)
    assert all(s < 0 for s in negative_strides(a).strides)
    assert strided_negative(a).strides == (-2 * 12 * 8, -3 * 8)
    assert not fortran_block(a).flags.f_contiguous and fortran_block(a).strides == (8, 5 * 8)
    assert not byteswapped(a).dtype.isnative
    for transform in [*LAYOUTS.values(), *MIXED, *PARAM_LAYOUTS.values()]:
        np.testing.assert_array_equal(np.asarray(transform(a)), a)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", PARAM_LAYOUTS)
def test_sgd_update_writes_through_the_callers_view(layout, dtype):
    """A writable param of any layout is updated in place, keeping its dtype,
    exactly as a contiguous one, and nothing outside the view is touched."""
    rng = np.random.default_rng(12)
    values = rng.normal(size=(6, 5)).astype(dtype)
    grad = rng.normal(size=(6, 5)).astype(dtype)
    contiguous = values.copy()
    ops.sgd_update(contiguous, grad, LR)
    expected = values.copy()
    reference.sgd_update(expected, grad, LR)

    param = PARAM_LAYOUTS[layout](values)
    original_dtype = param.dtype
    ops.sgd_update(param, grad, LR)
    assert param.dtype == original_dtype
    np.testing.assert_array_equal(param, contiguous)
    assert_close(param, expected, dtype, np.max(np.abs(values)) + LR * np.max(np.abs(grad)))
    if param.base is not None and param.base.size > param.size:
        # The strided views live in NaN-filled buffers: the padding must stay NaN.
        assert np.isnan(param.base).sum() == param.base.size - param.size


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sgd_update_param_may_alias_grad(dtype):
    """param -= lr * param works when grad is param itself, contiguous or strided."""
    rng = np.random.default_rng(13)
    for make in (np.copy, strided):
        param = make(rng.normal(size=(4, 3)).astype(dtype))
        expected = np.array(param) * (1 - np.asarray(LR, dtype=dtype))
        ops.sgd_update(param, param, LR)
        assert_close(param, expected, dtype, 4)


# ---------------------------------------------------------------------------
# 4. Bad input
# ---------------------------------------------------------------------------

def valid_args(name):
    """Small valid float64 arguments: 4 samples, 3 features, 2 outputs."""
    return make_args(name, (4, 3, 2), np.float64, seed=14)


def _with(value):
    def put(a):
        a = np.array(a, dtype=np.float64)
        a.flat[a.size // 2] = value
        return a
    return put


def _list_with_none(a):
    """``a`` as a nested list with its first number replaced by None (an object array)."""
    values = a.tolist()
    inner = values
    while isinstance(inner[0], list):
        inner = inner[0]
    inner[0] = None
    return values


#: Bad values for any array argument except sgd_update's param: (id, transform, exception).
BAD_VALUES = [
    ("None", lambda a: None, TypeError),
    ("complex", lambda a: a.astype(np.complex128), TypeError),
    ("complex64_real_values", lambda a: a.astype(np.complex64), TypeError),
    ("object", lambda a: a.astype(object), TypeError),
    ("string", lambda a: a.astype(str), TypeError),
    ("string_list", lambda a: np.asarray(a).astype(str).tolist(), TypeError),
    ("list_with_None", _list_with_none, TypeError),
    ("ragged_list", lambda a: [a.tolist(), a.tolist()[:-1]], ValueError),
    ("nan", _with(np.nan), ValueError),
    ("inf", _with(np.inf), ValueError),
    ("-inf", _with(-np.inf), ValueError),
    ("nan_float32", lambda a: _with(np.nan)(a).astype(np.float32), ValueError),
    ("empty", lambda a: a[:0], ValueError),
]

ARRAY_ARGS = [(name, arg) for name in OP_NAMES for arg in array_names(name) if arg != "param"]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
@pytest.mark.parametrize("name,arg", ARRAY_ARGS, ids=[f"{n}-{a}" for n, a in ARRAY_ARGS])
def test_bad_values_are_refused_naming_the_argument(name, arg, bad):
    """None, complex, non-numeric, ragged, non-finite and empty inputs raise, naming the argument."""
    _, transform, exc = bad
    args = valid_args(name)
    before = {k: np.copy(v) for k, v in args.items()}
    args[arg] = transform(args[arg])
    assert_raises_naming(exc, arg, getattr(ops, name), **args)
    if name == "sgd_update":
        np.testing.assert_array_equal(args["param"], before["param"], err_msg="a failed call changed param")


#: Wrong number of dimensions and mismatched shapes: (op, argument named, replacement, exception).
SHAPE_CASES = [
    # wrong ndim
    ("dense_forward", "X", lambda a: a[0], ValueError),
    ("dense_forward", "X", lambda a: a[None], ValueError),
    ("dense_forward", "W", lambda a: a[:, 0], ValueError),
    ("dense_forward", "W", lambda a: a[..., None], ValueError),
    ("dense_forward", "b", lambda a: a[None], ValueError),
    ("dense_forward", "b", lambda a: a[0], ValueError),
    ("dense_backward", "X", lambda a: a[0], ValueError),
    ("dense_backward", "X", lambda a: a[..., None], ValueError),
    ("dense_backward", "W", lambda a: a[None], ValueError),
    ("dense_backward", "dY", lambda a: a[:, 0], ValueError),
    ("dense_backward", "dY", lambda a: a[None], ValueError),
    ("relu_forward", "Z", lambda a: a[0, 0], ValueError),
    ("relu_backward", "Z", lambda a: a[0, 0], ValueError),
    ("relu_backward", "dA", lambda a: a[0], ValueError),
    ("relu_backward", "dA", lambda a: a[..., None], ValueError),
    ("mse_loss", "yhat", lambda a: a[..., None], ValueError),
    ("mse_loss", "yhat", lambda a: a[0, 0], ValueError),
    ("mse_loss", "y", lambda a: a[..., None], ValueError),
    ("mse_grad", "yhat", lambda a: a[None], ValueError),
    ("mse_grad", "y", lambda a: a[None], ValueError),
    # mismatched shapes
    ("dense_forward", "W", lambda a: np.ones((4, 2)), ValueError),          # X has 3 columns
    ("dense_forward", "b", lambda a: np.ones(3), ValueError),               # W has 2 columns
    ("dense_forward", "b", lambda a: np.ones(1), ValueError),
    ("dense_backward", "W", lambda a: np.ones((2, 2)), ValueError),
    ("dense_backward", "dY", lambda a: np.ones((5, 2)), ValueError),        # X has 4 rows
    ("dense_backward", "dY", lambda a: np.ones((4, 3)), ValueError),        # W has 2 columns
    ("dense_backward", "dY", lambda a: np.ones((2, 4)), ValueError),        # transposed
    ("relu_backward", "dA", lambda a: np.ones((4, 3)), ValueError),         # Z is (4, 2)
    ("relu_backward", "dA", lambda a: a.T, ValueError),
    ("relu_backward", "dA", lambda a: a.ravel(), ValueError),
    ("mse_loss", "y", lambda a: np.ones((4, 3)), ValueError),               # yhat is (4, 2)
    ("mse_loss", "y", lambda a: np.ones(4), ValueError),                    # 1-D y needs one column
    ("mse_loss", "y", lambda a: np.ones(8), ValueError),
    ("mse_loss", "y", lambda a: a.T, ValueError),
    ("mse_grad", "y", lambda a: np.ones((4, 3)), ValueError),
    ("mse_grad", "y", lambda a: np.ones(4), ValueError),
    ("mse_grad", "y", lambda a: a.ravel(), ValueError),
    ("sgd_update", "grad", lambda a: a.T, ValueError),                      # param is (3, 2)
    ("sgd_update", "grad", lambda a: a.ravel(), ValueError),
    ("sgd_update", "grad", lambda a: a[..., None], ValueError),
    ("sgd_update", "grad", lambda a: a[:1], ValueError),
    ("sgd_update", "grad", lambda a: np.float64(1.0), ValueError),
]


@pytest.mark.parametrize("name,arg,replace,exc", SHAPE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(SHAPE_CASES)])
def test_bad_shapes_are_refused_naming_the_argument(name, arg, replace, exc):
    """Wrong ndim and mismatched shapes raise ValueError naming the argument."""
    args = valid_args(name)
    param_before = np.copy(args.get("param"))
    args[arg] = replace(args[arg])
    assert_raises_naming(exc, arg, getattr(ops, name), **args)
    if name == "sgd_update":
        np.testing.assert_array_equal(args["param"], param_before)


@pytest.mark.parametrize("y_shape,yhat_shape", [((4, 1), (4,)), ((5,), (4, 1)), ((4,), (4, 2))], ids=str)
def test_mse_only_pairs_1d_y_with_one_column_yhat(y_shape, yhat_shape):
    """Other 1-D/2-D pairings are mismatches (no silent broadcasting to (n, n))."""
    for func in (ops.mse_loss, ops.mse_grad):
        with pytest.raises(ValueError, match=r"\by\b"):
            func(np.ones(yhat_shape), np.zeros(y_shape))


def test_dense_shape_mismatch_names_both_x_and_w():
    """X's columns vs W's rows: the message names X and W and both shapes."""
    for func, last in [(ops.dense_forward, np.ones(2)), (ops.dense_backward, np.ones((4, 2)))]:
        info = assert_raises_naming(ValueError, "X", func, np.ones((4, 3)), np.ones((5, 2)), last)
        assert re.search(r"\bW\b", str(info.value))
        assert "(4, 3)" in str(info.value) and "(5, 2)" in str(info.value)


BAD_PARAMS = [
    ("None", lambda a: None, TypeError),
    ("list", lambda a: a.tolist(), TypeError),
    ("tuple", lambda a: tuple(map(tuple, a.tolist())), TypeError),
    ("float", lambda a: 1.0, TypeError),
    ("int64", lambda a: a.astype(np.int64), TypeError),
    ("bool", lambda a: a > 0, TypeError),
    ("float16", lambda a: a.astype(np.float16), TypeError),
    ("complex", lambda a: a.astype(np.complex128), TypeError),
    ("object", lambda a: a.astype(object), TypeError),
    ("string", lambda a: a.astype(str), TypeError),
    ("readonly", readonly, ValueError),
    ("readonly_strided", lambda a: readonly(strided(a)), ValueError),
    ("nan", _with(np.nan), ValueError),
    ("inf", _with(np.inf), ValueError),
]


@pytest.mark.parametrize("bad", BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_sgd_update_refuses_bad_param(bad):
    """param must be a writable float32/float64 ndarray of finite values."""
    _, transform, exc = bad
    args = valid_args("sgd_update")
    param = transform(args["param"])
    before = np.copy(param) if isinstance(param, np.ndarray) else None
    assert_raises_naming(exc, "param", ops.sgd_update, param, args["grad"], LR)
    if before is not None:
        np.testing.assert_array_equal(param, before)


BAD_LRS = [
    (0, ValueError), (0.0, ValueError), (-0.0, ValueError), (-1, ValueError), (-1e-3, ValueError),
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (np.float64("nan"), ValueError),
    ("0.1", TypeError), (None, TypeError), (True, TypeError), (False, TypeError),
    (np.bool_(True), TypeError), (0.1j, TypeError), ([0.1], TypeError), (np.array([0.1]), TypeError),
]


@pytest.mark.parametrize("lr,exc", BAD_LRS, ids=[repr(v) for v, _ in BAD_LRS])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sgd_update_refuses_bad_learning_rate(dtype, lr, exc):
    """lr must be a finite positive real number; param is left unchanged."""
    args = make_args("sgd_update", (4, 3, 2), dtype, seed=15)
    before = args["param"].copy()
    assert_raises_naming(exc, "lr", ops.sgd_update, args["param"], args["grad"], lr)
    np.testing.assert_array_equal(args["param"], before)


# ---------------------------------------------------------------------------
# mse_loss / mse_grad specifics
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n_samples", [1, 2, 17])
def test_mse_1d_y_pairs_with_one_column_yhat(n_samples, dtype):
    """A 1-D y with a (n, 1) yhat equals the 2-D case; the gradient has yhat's shape."""
    rng = np.random.default_rng(16)
    yhat = rng.normal(size=(n_samples, 1)).astype(dtype)
    y = rng.normal(size=n_samples).astype(dtype)
    assert ops.mse_loss(yhat, y) == ops.mse_loss(yhat, y[:, None])
    assert ops.mse_loss(yhat, y.tolist()) == ops.mse_loss(yhat.astype(np.float64), y[:, None].astype(np.float64))
    grad = ops.mse_grad(yhat, y)
    assert grad.shape == (n_samples, 1) and grad.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(grad, ops.mse_grad(yhat, y[:, None]))
    assert ops.mse_loss(yhat, y) == approx(reference.mse_loss(yhat, y), dtype)
    assert_close(grad, reference.mse_grad(yhat, y), dtype, np.max(np.abs(grad)))


@pytest.mark.parametrize("dtype", [*DTYPES, np.int64, np.bool_], ids=dtype_id)
def test_mse_loss_returns_a_python_float(dtype):
    """mse_loss returns a built-in float (not a NumPy scalar) with the right value."""
    yhat = np.array([[1, 0], [1, 1]], dtype=dtype)
    y = np.array([[0, 0], [1, 0]], dtype=dtype)
    loss = ops.mse_loss(yhat, y)
    assert type(loss) is float
    assert loss == 0.5
    assert type(ops.mse_loss([3.0], [1.0])) is float and ops.mse_loss([3.0], [1.0]) == 4.0


def test_mse_loss_float32_is_accumulated_in_double():
    """float32 input: the loss equals the float64 mean of the same values."""
    rng = np.random.default_rng(17)
    yhat = (rng.normal(size=(100_000, 1)) + 1e3).astype(np.float32)
    y = (rng.normal(size=100_000) + 1e3).astype(np.float32)
    expected = reference.mse_loss(yhat.astype(np.float64), y.astype(np.float64))
    assert ops.mse_loss(yhat, y) == pytest.approx(expected, rel=1e-12)


def test_mse_grad_known_values():
    """2 * (yhat - y) / yhat.size, by hand."""
    grad = ops.mse_grad([[3.0, 1.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(grad, [[1.0, 0.0], [-0.5, 1.0]])


# ---------------------------------------------------------------------------
# 5. Hypothesis properties
# ---------------------------------------------------------------------------

SIDES = st.integers(1, 20)
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)


def _data(rng, size, dtype, magnitude, zeros):
    """Normal data times 10**magnitude, with a fraction of exact zeros."""
    a = rng.normal(size=size) * 10.0 ** magnitude
    a[rng.random(size) < zeros] = 0
    return a.astype(dtype)


@PROPERTY_SETTINGS
@given(n_samples=SIDES, in_features=SIDES, out_features=SIDES, dtype=st.sampled_from(DTYPES),
       magnitude=st.integers(-3, 3), zeros=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**32 - 1))
def test_property_dense_matches_reference(n_samples, in_features, out_features, dtype, magnitude, zeros, seed):
    """dense_forward and dense_backward == reference for any shape, dtype and magnitude."""
    rng = np.random.default_rng(seed)
    args = dict(X=_data(rng, (n_samples, in_features), dtype, magnitude, zeros),
                W=_data(rng, (in_features, out_features), dtype, magnitude, zeros),
                b=_data(rng, out_features, dtype, magnitude, zeros))
    (Y,) = call(ops, "dense_forward", args)
    assert Y.dtype == np.dtype(dtype) and Y.shape == (n_samples, out_features)
    assert_close(Y, reference.dense_forward(**args), dtype, *output_scales("dense_forward", args))

    back = dict(X=args["X"], W=args["W"], dY=_data(rng, (n_samples, out_features), dtype, magnitude, zeros))
    got = ops.dense_backward(**back)
    for g, e, scale in zip(got, reference.dense_backward(**back), output_scales("dense_backward", back)):
        assert g.dtype == np.dtype(dtype) and g.shape == e.shape
        assert_close(g, e, dtype, scale)


@PROPERTY_SETTINGS
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_property_relu_matches_reference_exactly(data, dtype):
    """relu_forward/relu_backward == reference, bit for bit, on any finite values."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=20), label="shape")
    width = np.dtype(dtype).itemsize * 8
    elements = st.floats(allow_nan=False, allow_infinity=False, width=width)
    Z = data.draw(hnp.arrays(dtype, shape, elements=elements), label="Z")
    dA = data.draw(hnp.arrays(dtype, shape, elements=elements), label="dA")
    A = ops.relu_forward(Z)
    dZ = ops.relu_backward(Z, dA)
    assert A.dtype == dZ.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(A, reference.relu_forward(Z))
    np.testing.assert_array_equal(dZ, reference.relu_backward(Z, dA))


@PROPERTY_SETTINGS
@given(data=st.data(), dtype=st.sampled_from(DTYPES), one_d_y=st.booleans())
def test_property_mse_matches_reference(data, dtype, one_d_y):
    """mse_loss and mse_grad == reference for any shape (and 1-D y with one column)."""
    n_samples = data.draw(SIDES, label="n_samples")
    n_outputs = 1 if one_d_y else data.draw(SIDES, label="n_outputs")
    elements = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8)
    yhat = data.draw(hnp.arrays(dtype, (n_samples, n_outputs), elements=elements), label="yhat")
    y = data.draw(hnp.arrays(dtype, n_samples if one_d_y else (n_samples, n_outputs), elements=elements), label="y")
    args = dict(yhat=yhat, y=y)
    loss = ops.mse_loss(yhat, y)
    assert type(loss) is float
    scale = output_scales("mse_loss", args)[0]
    assert loss == approx(reference.mse_loss(yhat, y), dtype, scale)
    grad = ops.mse_grad(yhat, y)
    assert grad.dtype == np.dtype(dtype) and grad.shape == yhat.shape
    assert_close(grad, reference.mse_grad(yhat, y), dtype, *output_scales("mse_grad", args))


@PROPERTY_SETTINGS
@given(data=st.data(), dtype=st.sampled_from(DTYPES), lr=st.floats(1e-4, 10.0),
       layout=st.sampled_from(sorted(PARAM_LAYOUTS)))
def test_property_sgd_update_matches_reference(data, dtype, lr, layout):
    """sgd_update == reference for any shape, lr and param layout."""
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20), label="shape")
    elements = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8)
    values = data.draw(hnp.arrays(dtype, shape, elements=elements), label="param")
    grad = data.draw(hnp.arrays(dtype, shape, elements=elements), label="grad")
    expected = values.copy()
    reference.sgd_update(expected, grad, lr)
    param = PARAM_LAYOUTS[layout](values)
    ops.sgd_update(param, grad, lr)
    args = dict(param=values, grad=grad, lr=lr)
    assert_close(param, expected, dtype, *output_scales("sgd_update", args))


# ---------------------------------------------------------------------------
# elementwise_loss: the one validated call behind the elementwise losses
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind,param", [("mse", 0.0), ("mae", 0.0), ("huber", 0.7), ("bce_with_logits", 0.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_elementwise_loss_is_each_named_loss_and_gradient(kind, param, weighted):
    rng = np.random.default_rng(3)
    yhat, y = rng.normal(size=(9, 3)), rng.uniform(size=(9, 3))
    w = rng.uniform(0.1, 2.0, size=9) if weighted else None
    extra = {"delta": param} if kind == "huber" else {}
    loss = getattr(reference, f"{kind}_loss")(yhat, y, sample_weight=w, **extra)
    grad = getattr(reference, f"{kind}_grad")(yhat, y, sample_weight=w, **extra)
    assert ops.elementwise_loss(kind, yhat, y, w, param=param) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(ops.elementwise_loss(kind, yhat, y, w, param=param, want_grad=True), grad,
                               rtol=1e-12, atol=1e-15)


def test_elementwise_loss_refuses_bad_arguments_naming_them():
    yhat = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"kind must be one of \('mse', 'mae', 'huber', 'bce_with_logits', 'poisson'\)"):
        ops.elementwise_loss("cross_entropy", yhat, yhat)
    with pytest.raises(ValueError, match=r"delta must be a finite number in \(0.0, inf\]"):
        ops.elementwise_loss("huber", yhat, yhat, param=0.0)
    with pytest.raises(TypeError, match="want_grad must be True or False"):
        ops.elementwise_loss("mse", yhat, yhat, want_grad=1)
    with pytest.raises(ValueError, match="y must have the shape of logits"):
        ops.elementwise_loss("bce_with_logits", yhat, np.zeros((4, 3)), name="logits")
    assert ops.elementwise_loss("mae", yhat, yhat, param=float("nan")) == 0.0     # mae has no parameter


def test_momentum_and_adam_updates_check_their_hyperparameters_as_the_optimizers_do():
    param, grad, buf = np.zeros(3), np.ones(3), np.zeros(3)
    for kwargs, exc, match in [
        (dict(momentum=1.0), ValueError, r"momentum must be a finite number in \[0.0, 1.0\)"),
        (dict(momentum=0.5, nesterov="yes"), TypeError, "nesterov must be True or False, got str 'yes'"),
        (dict(momentum=0.0, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
        (dict(momentum=0.5, weight_decay=-1.0), ValueError, "weight_decay"),
    ]:
        with pytest.raises(exc, match=match) as from_ops:
            ops.sgd_momentum_update(param, grad, buf, lr=0.1, **kwargs)
        with pytest.raises(exc) as from_sgd:
            fastnn.SGD(lr=0.1, **kwargs)
        assert str(from_ops.value) == str(from_sgd.value)
    m, v = np.zeros(3), np.zeros(3)
    for kwargs, exc, match in [
        (dict(beta1=1.0), ValueError, "beta1"), (dict(beta2=-0.1), ValueError, "beta2"),
        (dict(eps=0.0), ValueError, "eps"), (dict(decoupled="no"), TypeError, "decoupled must be True or False"),
        (dict(step=0), ValueError, "step"),
    ]:
        with pytest.raises(exc, match=match):
            ops.adam_update(param, grad, m, v, **{"step": 1, "lr": 0.1, **kwargs})
    assert np.all(param == 0) and np.all(buf == 0) and np.all(m == 0) and np.all(v == 0)
