"""The vectorised exp, log, log1p, tanh and sigmoid of fastnn/_kernels.pxi: their error
in ulp against a correctly rounded reference over the whole range, their special
values, and the same bits from every compiled build (fastnn._ops and each walker).

The reference is NumPy's ``np.longdouble`` (x87 extended precision, 64 mantissa
bits, on x86-64 Linux): its functions are within an ulp or so of their own
precision, 2^11 finer than a float64 ulp, so an error measured against them is
exact to about 0.001 ulp. Where ``np.longdouble`` is plain double, the ulp
tests skip.
"""

import importlib

import numpy as np
import pytest

from fastnn import _ops, _walker, ops

EXP, LOG, LOG1P, TANH, SIGMOID = range(5)
NAMES = {EXP: "exp", LOG: "log", LOG1P: "log1p", TANH: "tanh", SIGMOID: "sigmoid"}

#: The stated maximum error in ulp of each function (round to nearest would be 0.5).
BOUNDS = {
    (EXP, np.float32): 1.0, (EXP, np.float64): 1.5,     # float64: 1.006 (dense search; branch_points)
    (LOG, np.float32): 1.0, (LOG, np.float64): 1.0,
    (LOG1P, np.float32): 1.5, (LOG1P, np.float64): 1.5,
    (TANH, np.float32): 2.5, (TANH, np.float64): 3.0,   # float64: 2.54 near 0.22 (below), also before Estrin
    (SIGMOID, np.float32): 2.5, (SIGMOID, np.float64): 2.5,
}

#: The bounds of the array versions in the builds that fuse their multiply-adds (the
#: AVX2 and AVX-512 walkers: exp, tanh and the sigmoid of the activations); log and
#: log1p are not fused.
FUSED_BOUNDS = dict(BOUNDS)
FUSED_BOUNDS[EXP, np.float32] = 1.5     # 1.03 measured

EXTENDED = np.finfo(np.longdouble).nmant >= 63
needs_extended = pytest.mark.skipif(not EXTENDED, reason="np.longdouble is not x87 extended precision here")

_BITS = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def builds():
    """fastnn._ops and every walker build this CPU runs."""
    found = [_ops]
    runs = {"baseline": True, "avx2": _ops.cpu_has_avx2(), "avx512": _ops.cpu_has_avx512()}
    for name, ok in runs.items():
        if ok:
            try:
                found.append(importlib.import_module(f"fastnn._walker_{name}"))
            except ImportError:
                pass
    return found


def fused_build():
    """The first build this CPU runs whose array functions fuse multiply-adds, or None."""
    return next((module for module in builds() if module.MATH_FUSED), None)


def compute(fn, x, module=_ops, scalar=False):
    out = np.empty_like(x)
    module._math(fn, x, out, scalar)
    return out


def reference(fn, x):
    """The function in np.longdouble (NaN and infinities as the IEEE functions give them)."""
    with np.errstate(all="ignore"):
        L = x.astype(np.longdouble)
        if fn == EXP:
            return np.exp(L)
        if fn == LOG:
            return np.log(L)
        if fn == LOG1P:
            return np.log1p(L)
        if fn == TANH:
            return np.tanh(L)
        e = np.exp(-np.abs(L))
        return np.where(L >= 0, 1 / (1 + e), e / (1 + e))


def ulp_errors(y, ref, dtype):
    """|y - ref| in units of the last place of ref in dtype (0 where y is ref rounded,
    NaN for NaN, the same infinity for an infinity; inf for any other mismatch)."""
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype)
        mag = np.abs(rounded)
        # The ulp of ref's own binade: below a power of two that ref rounded up to, the smaller one.
        below = np.nextafter(mag, dtype.type(0))
        ulp = np.where(mag > np.abs(ref), np.spacing(below), np.spacing(mag)).astype(np.longdouble)
        err = np.abs(y.astype(np.longdouble) - ref) / ulp
    same = (y == rounded) | (np.isnan(y) & np.isnan(rounded))
    comparable = np.isfinite(y) & np.isfinite(rounded)
    return np.where(same, 0.0, np.where(comparable, err, np.inf))


def branch_points(fn, dtype):
    """Arguments around the points where the approximation changes branch or
    reduction: the clamps, the overflow and underflow thresholds, every
    half-integer multiple of ln2 (where exp's n steps), the binades' sqrt(2)
    (where log's k steps), the subnormal threshold, and 1 + x rounding to 1."""
    f64 = dtype == np.float64
    pts = [0.0, 1.0, -1.0, 0.5, 2.0]
    if fn in (EXP, SIGMOID):
        half_steps = np.arange(-1080, 1030) + 0.5 if f64 else np.arange(-155, 135) + 0.5
        pts += list(half_steps * np.log(2))
        pts += [709.78, 709.8, -745.13, -745.2, -708.4, 88.72, 88.8, -103.97, -104.0, -87.34]
        # The worst float64 exp found by dense searches (40 million points, the
        # minimax polynomial): 1.006 ulp (plain), 1.038 (fused).
        pts += [463.36974940133007, 695.5734926663754]
        pts += [-x for x in pts]
    if fn == TANH:
        pts += list((np.arange(0, 62) + 0.5) * np.log(2) / 2)
        pts += [10.0, 20.0, 9.0, 19.0, 0.55, 0.625]
        # The worst float64 tanh found by dense searches near 0.2 (t = 2 expm1(r) + 1
        # cancels there): 2.54 ulp (Horner's rule, before), 2.53 (Estrin's), 2.64 (fused);
        # with the minimax polynomial (32 million points) 2.55 (plain), 2.65 (fused).
        pts += [0.22052192940401005, 0.21007247605010293, -0.20573999213574964]
        pts += [0.21707464709034868, 0.20495418622837946]
        pts += [-x for x in pts]
    if fn in (LOG, LOG1P):
        binades = np.arange(-1074, 1024) if f64 else np.arange(-149, 128)
        pts += list(np.sqrt(2.0) * np.exp2(binades.astype(float)))
        pts += list(np.exp2(binades.astype(float)))
        eps = np.finfo(dtype).eps
        pts += [eps / 2, -eps / 4, eps, -1.0, -1.0 + eps, 1.0 + eps, float(np.finfo(dtype).tiny)]
    x = np.array([p for p in pts if np.isfinite(np.array(p, dtype))], dtype)
    # Each point and its 32 neighbours on either side.
    steps = np.arange(-32, 33, dtype=np.int64)
    bits = x.view(_BITS[np.dtype(dtype)]).astype(np.int64)
    near = (bits[:, None] + steps[None, :]).ravel()
    near = near[(near >= 0) & (near < np.iinfo(_BITS[np.dtype(dtype)]).max)]
    neg = -near.astype(_BITS[np.dtype(dtype)]).view(dtype)
    return np.concatenate([near.astype(_BITS[np.dtype(dtype)]).view(dtype), neg])


def whole_range(dtype, rng):
    """Every 977th float32 bit pattern (4.4 million: all binades, both signs,
    subnormals, infinities and NaNs); for float64, 3 million random bit patterns.
    Then dense uniform samples where the functions are not flat."""
    dtype = np.dtype(dtype)
    info = np.finfo(dtype)
    if dtype == np.float32:
        patterns = np.arange(0, 2**32, 977, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        patterns = rng.integers(0, 2**64 - 1, size=3_000_000, dtype=np.uint64).view(np.float64)
    dense = [rng.uniform(lo, hi, 300_000).astype(dtype) for lo, hi in
             ((-1, 1), (-30, 30), (-800, 800), (0, 4), (-1e-5, 1e-5))]
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.smallest_subnormal,
                        -info.smallest_subnormal, info.max, -info.max, info.eps, 1.0, -1.0], dtype)
    return np.concatenate([patterns, *dense, special])


@needs_extended
@pytest.mark.parametrize("flavour", ["plain", "fused"])
@pytest.mark.parametrize("fn", sorted(NAMES), ids=NAMES.get)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_error_within_the_stated_ulp_bound_over_the_whole_range(fn, dtype, flavour, rng):
    """``plain``: fastnn._ops (and every build that does not fuse: the same bits,
    below); ``fused``: the widest build's array functions where it fuses."""
    dtype = np.dtype(dtype)
    module, bounds = (_ops, BOUNDS) if flavour == "plain" else (fused_build(), FUSED_BOUNDS)
    if module is None:
        pytest.skip("no walker build this CPU runs fuses multiply-adds (FASTNN_TILE_FMA=0, or no FMA)")
    x = np.concatenate([whole_range(dtype, rng), branch_points(fn, dtype)])
    err = ulp_errors(compute(fn, x, module), reference(fn, x), dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= bounds[fn, dtype.type], (
        f"{NAMES[fn]}({x[worst]!r}) = {compute(fn, x[worst:worst + 1], module)[0]!r}: {err[worst]:.3f} ulp")
    # The bound is not loose: the worst case is within half an ulp of it.
    assert err[np.isfinite(err)].max() > bounds[fn, dtype.type] - 0.5


def test_ulp_errors_measures_a_known_error():
    x = np.array([1.0, 2.0, 0.75, 1e-310], np.float64)
    ref = x.astype(np.longdouble)
    y = np.array([np.nextafter(1.0, 2.0), np.nextafter(2.0, 0.0), 0.75, np.nextafter(1e-310, 1.0)])
    np.testing.assert_array_equal(ulp_errors(y, ref, np.dtype(np.float64)), [1.0, 0.5, 0.0, 1.0])
    assert ulp_errors(np.array([np.inf]), np.array([1.0], np.longdouble), np.dtype(np.float64))[0] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_special_values(dtype):
    inf, nan, tiny = np.inf, np.nan, np.finfo(dtype).smallest_subnormal

    def run(fn, values):
        return compute(fn, np.array(values, dtype))

    np.testing.assert_array_equal(run(EXP, [0.0, -0.0, inf, -inf, nan, 1e4, -1e4]), [1, 1, inf, 0, nan, inf, 0])
    np.testing.assert_array_equal(run(LOG, [1.0, 0.0, -0.0, inf, -inf, -1.0, nan, tiny]),
                                  [0, -inf, -inf, inf, nan, nan, nan, np.log(np.longdouble(tiny)).astype(dtype)])
    np.testing.assert_array_equal(run(LOG1P, [0.0, -1.0, -2.0, inf, -inf, nan]), [0, -inf, nan, inf, nan, nan])
    np.testing.assert_array_equal(run(TANH, [inf, -inf, nan, 1e4, -1e4]), [1, -1, nan, 1, -1])
    np.testing.assert_array_equal(run(SIGMOID, [0.0, -0.0, inf, -inf, nan, 1e4, -1e4]), [0.5, 0.5, 1, 0, nan, 1, 0])
    # Signed zeros: tanh and log1p are odd at 0 and keep the sign; tiny arguments are returned as they are.
    for fn in (TANH, LOG1P):
        out = run(fn, [0.0, -0.0, tiny, -tiny])
        np.testing.assert_array_equal(np.signbit(out), [False, True, False, True])
        np.testing.assert_array_equal(out, [0, 0, tiny, -tiny])
    assert run(EXP, [tiny])[0] == 1 and run(SIGMOID, [tiny])[0] == 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("fn", sorted(NAMES), ids=NAMES.get)
def test_every_build_gives_the_same_bits(fn, dtype, rng):
    """Every build that does not fuse multiply-adds (fastnn._ops, the baseline walker)
    gives the same bits, and every build that does (the AVX2 and AVX-512 walkers with
    FASTNN_TILE_FMA=1) gives the same bits as the others that do."""
    dtype = np.dtype(dtype)
    bits = _BITS[dtype]
    x = np.concatenate([rng.integers(0, np.iinfo(bits).max, 200_000, dtype=bits).view(dtype),
                        rng.normal(0, 10, 100_001).astype(dtype), branch_points(fn, dtype)])
    found = builds()
    assert len([module for module in found if not module.MATH_FUSED]) >= 2
    for fused in (False, True):
        family = [module for module in found if module.MATH_FUSED == fused]
        if not family:
            continue
        expected = compute(fn, x, family[0]).view(bits)
        for module in family[1:]:
            got = compute(fn, x, module).view(bits)
            mismatch = np.flatnonzero(got != expected)
            assert mismatch.size == 0, f"{module.__name__}: {NAMES[fn]}({x[mismatch[0]]!r})"


def test_the_builds_that_fuse_are_those_whose_tiles_fuse():
    for module in builds():
        assert module.MATH_FUSED == (module is not _ops and bool(module.TILE_FMA)), module.__name__


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("fn", sorted(NAMES), ids=NAMES.get)
def test_the_staged_array_loops_give_the_scalar_functions_bits(fn, dtype, rng):
    """Over an array, exp, tanh and the sigmoid run as staged loops over blocks of 128
    (fastnn/_kernels.pxi); the losses call the scalar functions. Same bits in every
    build that does not fuse multiply-adds, at every length (partial blocks, in
    place); the builds that fuse are held to their own bounds above."""
    dtype = np.dtype(dtype)
    bits = _BITS[dtype]
    x = np.concatenate([rng.integers(0, np.iinfo(bits).max, 100_000, dtype=bits).view(dtype),
                        rng.normal(0, 10, 50_001).astype(dtype), branch_points(fn, dtype)])
    for module in [module for module in builds() if not module.MATH_FUSED]:
        expected = compute(fn, x, module, scalar=True).view(bits)
        for n in (x.size, 1, 3, 127, 128, 129, 255, 256, 257, 1000):
            got = compute(fn, x[:n], module).view(bits)
            # A NaN's sign and payload are the compiler's choice of operand order.
            mismatch = np.flatnonzero((got != expected[:n]) & ~np.isnan(x[:n]))
            assert mismatch.size == 0, f"{module.__name__}, n={n}: {NAMES[fn]}({x[mismatch[0]]!r})"
        inplace = x[:777].copy()
        module._math(fn, inplace, inplace)
        np.testing.assert_array_equal(inplace, compute(fn, x[:777], module))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_activations_run_these_functions(dtype, rng):
    Z = np.concatenate([rng.normal(0, 4, 1001), [0.0, -0.0, 30.0, -30.0, 800.0, -800.0]]).astype(dtype)
    bits = _BITS[np.dtype(dtype)]
    # fastnn.ops runs the loops of the walker build the network runs (fastnn/ops.py).
    walker = importlib.import_module(_walker.Network.__module__)
    for got in (ops.tanh_forward(Z), ops.tanh_forward(Z[::-1].copy()[::-1]), ops.tanh_forward(Z.astype(Z.dtype.newbyteorder()))):
        np.testing.assert_array_equal(got.view(bits), compute(TANH, Z, walker).view(bits))
    np.testing.assert_array_equal(ops.sigmoid_forward(Z).view(bits), compute(SIGMOID, Z, walker).view(bits))
    np.testing.assert_array_equal(ops.sigmoid_forward(Z[::-1].copy()[::-1]).view(bits),
                                  compute(SIGMOID, Z, walker).view(bits))


def test_math_refuses_a_size_mismatch_and_an_unknown_code():
    with pytest.raises(ValueError, match="sizes 2 and 3 differ"):
        _ops._math(EXP, np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="unknown function code 7"):
        _ops._math(7, np.zeros(3), np.zeros(3))
