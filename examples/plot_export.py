"""
Exporting a trained network: a C header, PyTorch and ONNX
=========================================================

:mod:`fastnn.export` takes a trained network out of Python. Here the
tutorial's 1-16-1 ReLU network is trained on the tutorial's curve
(:func:`fastnn.datasets.tutorial_samples`), then

* written as one dependency-free C99 header (:func:`fastnn.export.to_c`),
  compiled with the system's C compiler and run on the tutorial's curve, its
  outputs compared with :meth:`fastnn.Sequential.predict`;
* turned into a ``torch.nn.Sequential`` and back
  (:func:`fastnn.export.to_torch`, :func:`fastnn.export.from_torch`), when
  PyTorch is installed;
* written as an ONNX graph (:func:`fastnn.export.to_onnx`) and run by ONNX
  Runtime, when ``onnx`` and ``onnxruntime`` are installed.

Each step that needs something missing says so and is skipped.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastnn
from fastnn import export

X, y = fastnn.datasets.tutorial_samples(256, noise=0.05, seed=0)
model = fastnn.Sequential([fastnn.Dense(1, 16, seed=1), fastnn.ReLU(), fastnn.Dense(16, 1, seed=2)])
history = model.fit(X, y, optimizer=fastnn.Adam(lr=0.01), epochs=60, batch_size=16, seed=0)
print(f"trained: mean training loss {history.loss[-1]:.5f}")

# The tutorial's curve, on 201 points, is what every export is run on.
curve = np.linspace(X.min(), X.max(), 201).reshape(-1, 1)
expected = model.predict(curve)

# %%
# A C header
# ----------
#
# :func:`fastnn.export.to_c` returns the header's text (and writes it when
# given a path). It holds the weights as constant arrays and the functions
# ``net_predict`` (one sample) and ``net_predict_batch``, in the model's
# dtype (``double`` here).

header = export.to_c(model, name="net")
print("\n".join(header.splitlines()[:12]))
print("...")
print(f"header: {len(header.encode())} bytes, {len(header.splitlines())} lines")

# %%
# Compiled with the system's C compiler (when there is one), a small program
# reads the curve's inputs, calls ``net_predict_batch`` and writes the
# outputs, which are compared with :meth:`~fastnn.Sequential.predict`.

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "net.h"

int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    double *x = (double *)malloc((size_t)n * NET_N_INPUTS * sizeof(double));
    double *y = (double *)malloc((size_t)n * NET_N_OUTPUTS * sizeof(double));
    FILE *file = fopen("x.bin", "rb");
    if (!x || !y || !file || fread(x, sizeof(double), (size_t)n * NET_N_INPUTS, file) != (size_t)n * NET_N_INPUTS)
        return 3;
    fclose(file);
    net_predict_batch((size_t)n, x, y);
    file = fopen("y.bin", "wb");
    fwrite(y, sizeof(double), (size_t)n * NET_N_OUTPUTS, file);
    fclose(file);
    return 0;
}
"""

c_outputs = None
cc = shutil.which("cc")
if cc is None:
    print("no C compiler (cc) found: the header is not compiled here")
else:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "net.h").write_text(header)
        (folder / "main.c").write_text(MAIN)
        subprocess.run([cc, "-std=c99", "-O2", "main.c", "-o", "main", "-lm"], cwd=folder, check=True)
        np.ascontiguousarray(curve, dtype=np.float64).tofile(folder / "x.bin")
        subprocess.run([str(folder / "main"), str(len(curve))], cwd=folder, check=True)
        c_outputs = np.fromfile(folder / "y.bin", dtype=np.float64).reshape(expected.shape)
    print(f"C header vs predict on {len(curve)} points: max |difference| = "
          f"{np.max(np.abs(c_outputs - expected)):.3g}")

# %%
# PyTorch, and back
# -----------------

try:
    import torch
except ImportError:
    print("PyTorch is not installed: to_torch/from_torch skipped")
else:
    module = export.to_torch(model)
    print(module)
    with torch.no_grad():
        torch_outputs = module(torch.from_numpy(curve)).numpy()
    print(f"torch module vs predict: max |difference| = {np.max(np.abs(torch_outputs - expected)):.3g}")
    back = export.from_torch(module)
    print("from_torch(to_torch(model)) has the same parameters:",
          np.array_equal(back.get_parameters(), model.get_parameters()))

# %%
# ONNX
# ----

try:
    import onnxruntime
    import onnx  # noqa: F401  (to_onnx needs it)
except ImportError:
    print("onnx or onnxruntime is not installed: to_onnx skipped")
else:
    proto = export.to_onnx(model)
    print("ONNX operators:", sorted({node.op_type for node in proto.graph.node}))
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_outputs,) = session.run(None, {"X": curve})
    print(f"onnxruntime vs predict: max |difference| = {np.max(np.abs(onnx_outputs - expected)):.3g}")

# %%
# The tutorial's curve, the trained network's ``predict`` and the compiled
# header's outputs (which lie on it), and below, their difference.

fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
top.scatter(X[:, 0], y[:, 0], s=6, color="tab:gray", alpha=0.4, label="training points")
top.plot(curve[:, 0], fastnn.datasets.tutorial_curve(curve)[:, 0], color="tab:blue", lw=1, label="tutorial's curve")
top.plot(curve[:, 0], expected[:, 0], color="tab:orange", lw=4, alpha=0.5, label="model.predict")
if c_outputs is not None:
    top.plot(curve[:, 0][::5], c_outputs[::5, 0], "k.", label="the C header's outputs")
    bottom.plot(curve[:, 0], c_outputs[:, 0] - expected[:, 0], color="black")
    bottom.set_ylabel("C - predict")
else:
    bottom.text(0.5, 0.5, "no C compiler: not compiled", ha="center", va="center", transform=bottom.transAxes)
top.set_title("model.predict and the exported C header")
top.legend(fontsize="small")
bottom.set_xlabel("x")
fig.tight_layout()
plt.show()
