"""The walker's two builds (baseline and AVX2) give the same bits."""

import json
import os
import subprocess
import sys

import numpy as np

import fastnn
from fastnn import _kernels, _network

SCRIPT = r"""
import json, sys
import numpy as np
import fastnn
out = []
rng = np.random.default_rng(0)
for sizes, batch in [((1, 3, 1), 1000), ((8, 32, 32, 1), 32), ((5, 7, 3), 13), ((64, 128, 1), 64)]:
    for dtype in (np.float32, np.float64):
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers += [fastnn.Dense(n_in, n_out, seed=i), fastnn.ReLU()]
        model = fastnn.Sequential(layers[:-1], dtype=dtype)
        X = rng.normal(size=(100, sizes[0]))
        y = rng.normal(size=(100, sizes[-1]))
        model.fit(X, y, epochs=3, batch_size=batch, seed=0, optimizer=fastnn.SGD(0.01))
        out += model.get_parameters().astype(float).tolist() + model.predict(X).astype(float).ravel().tolist()
print(json.dumps({"isa": fastnn._network.ISA, "values": out}))
"""


def run(isa):
    env = dict(os.environ, FASTNN_ISA=isa)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cpu_gets_the_avx2_build_when_it_has_avx2():
    import importlib.util

    has_build = importlib.util.find_spec("fastnn._network_avx2") is not None
    expected = "avx2" if (_kernels.cpu_has_avx2() and has_build and os.environ.get("FASTNN_ISA") != "baseline") else "baseline"
    assert _network.ISA == expected
    assert fastnn.Sequential([fastnn.Dense(1, 1)])._net.__class__.__module__ == f"fastnn._network_{expected}"


def test_baseline_and_avx2_builds_agree_bit_for_bit():
    baseline = run("baseline")
    auto = run("auto")
    assert baseline["isa"] == "baseline"
    assert len(baseline["values"]) == len(auto["values"]) > 1000
    assert np.array_equal(np.array(baseline["values"]), np.array(auto["values"]))
