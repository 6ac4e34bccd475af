"""The walker's builds (baseline, AVX2, AVX-512): which one runs, and that they give the same bits."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _ops, _walker

SCRIPT = r"""
import json, sys
import numpy as np
import fastnn
out = []
rng = np.random.default_rng(0)
for sizes, batch in [((1, 3, 1), 1000), ((8, 32, 32, 1), 32), ((5, 7, 3), 13), ((64, 128, 1), 64),
                     ((12, 37, 9, 2), 45)]:
    for dtype in (np.float32, np.float64):
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers += [fastnn.Dense(n_in, n_out, seed=i), fastnn.ReLU()]
        model = fastnn.Sequential(layers[:-1], dtype=dtype)
        # One rule for every build (the baseline's), so that each layer takes
        # the same path (BLAS or own loops) in each.
        model._net.blas_min_weights_tiled = model._net.blas_min_weights
        X = rng.normal(size=(100, sizes[0]))
        y = rng.normal(size=(100, sizes[-1]))
        model.fit(X, y, epochs=3, batch_size=batch, seed=0, optimizer=fastnn.SGD(0.01))
        out += model.get_parameters().astype(float).tolist() + model.predict(X).astype(float).ravel().tolist()
print(json.dumps({"isa": fastnn._walker.ISA, "fma": fastnn._walker.TILE_FMA, "values": out}))
"""


BUILDS = ("baseline", "avx2", "avx512")


def run(isa, **env_vars):
    # The fixed plan: each model runs the build FASTNN_ISA gives (the planner may pick another).
    env = dict(os.environ, FASTNN_ISA=isa, FASTNN_PLAN="fixed", **env_vars)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def expected_build(cap):
    """The widest build up to ``cap`` that is built and that this CPU runs."""
    import importlib.util

    runs = {"baseline": True, "avx2": _ops.cpu_has_avx2(), "avx512": _ops.cpu_has_avx512()}
    allowed = BUILDS if cap == "auto" else BUILDS[: BUILDS.index(cap) + 1]
    usable = [name for name in allowed if runs[name] and importlib.util.find_spec(f"fastnn._walker_{name}")]
    return usable[-1]


def test_the_cpu_gets_the_widest_build_it_runs(monkeypatch):
    expected = expected_build(os.environ.get("FASTNN_ISA", "auto").strip().lower() or "auto")
    assert _walker.ISA == expected
    assert _walker.BUILDS[-1] == expected and _walker.BUILDS[0] == "baseline"
    monkeypatch.setenv("FASTNN_PLAN", "fixed")
    assert fastnn.Sequential([fastnn.Dense(1, 1)])._net.__class__.__module__ == f"fastnn._walker_{expected}"


def test_avx512_implies_avx2():
    assert not _ops.cpu_has_avx512() or _ops.cpu_has_avx2()


@pytest.mark.parametrize("blas", ["auto", "none"])
def test_every_build_gives_the_same_bits(blas):
    """The same bits where the builds take the same paths (each layer on BLAS or on
    own loops by one rule, ``blas="auto"``, or every layer on own loops) and their
    register tiles round alike: the AVX2 and AVX-512 builds fuse each multiply-add
    (TILE_FMA), the baseline's does not, and agrees with them to rounding."""
    results = {cap: run(cap, FASTNN_BLAS=blas)[0] for cap in ("baseline", "avx2", "auto")}
    for cap, result in results.items():
        assert result["isa"] == expected_build(cap), cap
    baseline = np.array(results["baseline"]["values"])
    assert baseline.size > 1000
    assert results["baseline"]["fma"] is False
    for cap, result in results.items():
        values = np.array(result["values"])
        twin = next(other for other in results if results[other]["fma"] == result["fma"])
        assert np.array_equal(values, np.array(results[twin]["values"])), \
            f"FASTNN_ISA={cap} ({result['isa']} build) against FASTNN_ISA={twin}"
        np.testing.assert_allclose(values, baseline, rtol=1e-4, atol=1e-5,
                                   err_msg=f"FASTNN_ISA={cap} ({result['isa']} build)")


def test_an_unknown_fastnn_isa_warns_and_takes_the_widest_build():
    result, stderr = run("sse9")
    assert result["isa"] == expected_build("auto")
    assert "RuntimeWarning: FASTNN_ISA='sse9' is not one of auto, baseline, avx2, avx512: using auto" in stderr
