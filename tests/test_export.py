"""fastnn.export: the C header compiled and run, the ONNX graph run by onnxruntime, from_sklearn, the CLI.

Tolerance. The exports compute what ``model.predict`` does in another order
and with other transcendentals: the C sums each dot product in plain order
(fastnn: fused multiply-adds, blocked sums or BLAS) and calls libm's
``tanh``/``exp`` (within about 1-2 ulp) where fastnn has its own vectorised
ones (within 3 ulp, tests/test_transcendentals.py). So the two agree to
rounding, and :func:`error_bound` says how far, sample by sample: a running
first-order bound of forward error analysis. A dot product of length n in
either order is within ``(n + 2) * eps * |W|^T |x|`` (+ |b|) of the exact one
(Higham, Accuracy and Stability of Numerical Algorithms, 3.1), doubled for
two implementations; errors already there pass through ``|W|^T`` and through
each activation's Lipschitz constant (1 for ReLU, Tanh and Identity, the slope
for LeakyReLU when it exceeds 1, 1/4 for Sigmoid), and each transcendental
adds its own error (``TRANSCENDENTAL_ULPS`` ulps of its result, bounded by
eps per ulp). eps is the dtype's: 2**-23 for float32, 2**-52 for float64, so
the bound is about 1e-6 relative for float32 networks and 1e-15 for float64.
onnxruntime's float32 Tanh and Sigmoid are MLAS's own approximations, without
a published bound: they get ``ORT_TRANSCENDENTAL_ULPS``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import export

# Short fits of the estimators (a few epochs are enough to export): their ConvergenceWarning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer")

#: Ulps of its result each export's tanh/exp-based activation may be off, both sides counted (libm about
#: 1-2 and fastnn 2.5).
TRANSCENDENTAL_ULPS = 8
#: onnxruntime's float32 Tanh/Sigmoid (MLAS approximations) are allowed more.
ORT_TRANSCENDENTAL_ULPS = 64

ACTIVATIONS = {
    "relu": fastnn.ReLU,
    "leaky_relu": lambda: fastnn.LeakyReLU(0.1),
    "steep_leaky_relu": lambda: fastnn.LeakyReLU(3.0),
    "tanh": fastnn.Tanh,
    "sigmoid": fastnn.Sigmoid,
    "identity": fastnn.Identity,
}

C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
CXX_FLAGS = ["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]

# Runs the header on n samples read from a file; writes predict_batch's outputs, then (for a
# classifier) each sample's predict_proba and argmax. The second translation unit includes the
# header too and calls nothing: unused functions must compile cleanly, and two units must link.
HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(int argc, char **argv)
{
    long n;
    REAL *x, *y;
    FILE *file;
    if (argc != 4)
        return 2;
    n = atol(argv[1]);
    x = (REAL *)malloc((size_t)n * NET_N_INPUTS * sizeof(REAL));
    y = (REAL *)malloc((size_t)n * NET_N_OUTPUTS * sizeof(REAL));
    file = fopen(argv[2], "rb");
    if (!x || !y || !file || fread(x, sizeof(REAL), (size_t)n * NET_N_INPUTS, file) != (size_t)n * NET_N_INPUTS)
        return 3;
    fclose(file);
    net_predict_batch((size_t)n, x, y);
    file = fopen(argv[3], "wb");
    fwrite(y, sizeof(REAL), (size_t)n * NET_N_OUTPUTS, file);
#ifdef NET_N_CLASSES
    {
        long k;
        REAL proba[NET_N_CLASSES];
        for (k = 0; k < n; ++k) {
            REAL index = (REAL)net_argmax(x + k * NET_N_INPUTS);
            net_predict_proba(x + k * NET_N_INPUTS, proba);
            fwrite(proba, sizeof(REAL), NET_N_CLASSES, file);
            fwrite(&index, sizeof(REAL), 1, file);
        }
    }
#endif
    fclose(file);
    free(x);
    free(y);
    return 0;
}
"""
OTHER_UNIT = '#include "model.h"\nint other_unit(void);\nint other_unit(void)\n{\n    return NET_N_INPUTS;\n}\n'


def make_network(activation: str, dtype, n_outputs: int = 3, seed: int = 0) -> fastnn.Sequential:
    """in 4 -> 8 -> 8 -> n_outputs, the activation after each hidden layer and on the input too."""
    act = ACTIVATIONS[activation]
    layers = [act(), fastnn.Dense(4, 8, seed=seed), act(), fastnn.Dense(8, 8, seed=seed + 1), act(),
              fastnn.Dense(8, n_outputs, seed=seed + 2)]
    return fastnn.Sequential(layers, dtype=dtype)


def make_inputs(n_features: int, dtype, seed: int = 0) -> np.ndarray:
    """Random rows of ordinary, large, tiny and negative values, and zeros."""
    rng = np.random.default_rng(seed)
    finfo = np.finfo(dtype)
    normal = rng.normal(size=(40, n_features))
    large = rng.normal(size=(10, n_features)) * 1e6
    huge = rng.choice([-1.0, 1.0], size=(5, n_features)) * 1e30 if dtype == np.float64 else \
        rng.choice([-1.0, 1.0], size=(5, n_features)) * 1e15
    tiny = rng.normal(size=(10, n_features)) * float(finfo.tiny) * 8
    negative = -np.abs(rng.normal(size=(10, n_features))) * 50
    return np.concatenate([normal, large, huge, tiny, negative, np.zeros((1, n_features))]).astype(dtype)


def error_bound(model: fastnn.Sequential, X: np.ndarray, ulps: float = TRANSCENDENTAL_ULPS) -> np.ndarray:
    """A per-element bound on |export - model.predict| (the module docstring), shape of the output."""
    eps = float(np.finfo(model.dtype).eps)
    magnitude = np.abs(X.astype(np.float64))
    error = np.zeros_like(magnitude)
    for layer in model.layers:
        if isinstance(layer, fastnn.Dense):
            absW = np.abs(layer.W.astype(np.float64))
            magnitude = magnitude @ absW + np.abs(layer.b.astype(np.float64))
            error = error @ absW + 2 * (layer.in_features + 2) * eps * magnitude
        elif layer.function == "leaky_relu":
            scale = max(1.0, layer.function_param)
            magnitude, error = magnitude * scale, error * scale
        elif layer.function == "tanh":
            magnitude = np.minimum(magnitude, 1.0)
            error = error + ulps * eps * magnitude
        elif layer.function == "sigmoid":
            magnitude = np.ones_like(magnitude)
            error = error / 4 + ulps * eps
    return error + 4 * eps * magnitude


def assert_within(actual, expected, bound, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    excess = np.abs(actual - expected) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert np.all(excess <= 0), (f"{what}: {actual[worst]!r} against {expected[worst]!r} at {worst}, "
                                 f"off by {abs(actual[worst] - expected[worst]):.3g} > bound {bound[worst]:.3g}")


# -- compiling and running the header -------------------------------------------------------------


def compiler(language: str) -> str:
    names = ("gcc", "cc", "clang") if language == "c" else ("g++", "c++", "clang++")
    found = next((shutil.which(name) for name in names if shutil.which(name)), None)
    if found is None:
        pytest.skip(f"no {language} compiler on PATH")
    return found


def run_c(header: str, X: np.ndarray, n_outputs: int, n_classes: int | None, tmp_path, language: str = "c"):
    """Compile ``header`` with the harness (warnings are errors), run it on X; (Y, proba, argmax)."""
    (tmp_path / "model.h").write_text(header)
    (tmp_path / "main.c").write_text(HARNESS)
    (tmp_path / "other.c").write_text(OTHER_UNIT)
    real = "float" if X.dtype == np.float32 else "double"
    flags = C_FLAGS if language == "c" else CXX_FLAGS
    command = [compiler(language), *flags, f"-DREAL={real}", "main.c", "other.c", "-o", "run", "-lm"]
    built = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(command)}\n{built.stderr}"
    X.tofile(tmp_path / "x.bin")
    ran = subprocess.run([str(tmp_path / "run"), str(len(X)), "x.bin", "y.bin"], cwd=tmp_path)
    assert ran.returncode == 0
    out = np.fromfile(tmp_path / "y.bin", dtype=X.dtype)
    Y, rest = out[:len(X) * n_outputs].reshape(len(X), n_outputs), out[len(X) * n_outputs:]
    if n_classes is None:
        assert rest.size == 0
        return Y, None, None
    rest = rest.reshape(len(X), n_classes + 1)
    return Y, rest[:, :n_classes], rest[:, n_classes].astype(np.intp)


# -- C: every activation, both dtypes, C and C++ --------------------------------------------------


@pytest.mark.parametrize("language", ["c", "c++"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_c_header_agrees_with_predict(activation, dtype, language, tmp_path):
    model = make_network(activation, dtype)
    X = make_inputs(4, dtype)
    header = export.to_c(model, name="net")
    Y, _, _ = run_c(header, X, 3, None, tmp_path, language)
    expected = model.predict(X)
    assert np.all(np.isfinite(expected))
    assert_within(Y, expected, error_bound(model, X), f"C {activation} {dtype}")
    # Not vacuous: the bound is far below the outputs' own scale (1e-3 in float32, 2e-12 in float64).
    assert np.median(error_bound(model, X)) < 1e4 * np.finfo(dtype).eps * np.median(np.abs(expected))


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_c_probabilities_and_argmax_of_a_sequential(n_outputs, dtype, tmp_path):
    model = make_network("tanh", dtype, n_outputs=n_outputs)
    X = make_inputs(4, dtype, seed=1)
    header = export.to_c(model, name="net", proba=True)
    Y, proba, index = run_c(header, X, n_outputs, n_outputs, tmp_path, "c")
    bound = error_bound(model, X)
    assert_within(Y, model.predict(X), bound, "logits")
    expected = model.predict_proba(X)
    # softmax and sigmoid are 1-Lipschitz in the max norm; plus their own rounding.
    proba_bound = bound.max(axis=1, keepdims=True) + 16 * n_outputs * np.finfo(dtype).eps
    assert_within(proba, expected, np.broadcast_to(proba_bound, expected.shape), "probabilities")
    logits = model.predict(X)
    labels = (logits[:, 0] > 0).astype(np.intp) if n_outputs == 1 else logits.argmax(axis=1)
    clear = _clear_margin(logits, bound)
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(index[clear], labels[clear])


def _clear_margin(logits: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Rows whose decision no error within the bound can flip."""
    if logits.shape[1] == 1:
        return np.abs(logits[:, 0]) > 2 * bound[:, 0]
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > 2 * bound.max(axis=1)


def test_c_classifier_estimator_gives_probabilities_and_class_index(tmp_path):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X, y = sklearn_datasets.load_iris(return_X_y=True)
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
    header = export.to_c(clf, name="net")
    assert "#define NET_N_CLASSES 3" in header and "net_argmax" in header
    Y, proba, index = run_c(header, X, 3, 3, tmp_path, "c++")
    bound = error_bound(clf.model_, X)
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-12)
    clear = _clear_margin(Y, bound)
    np.testing.assert_array_equal(clf.classes_[index[clear]], clf.predict(X)[clear])


def test_c_binary_sklearn_classifier(tmp_path):
    neural_network = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] + X[:, 1] ** 2 > 1, "yes", "no")
    clf = neural_network.MLPClassifier(hidden_layer_sizes=(6,), activation="tanh", max_iter=400,
                                       random_state=0).fit(X, y)
    header = export.to_c(clf, name="net")
    assert "#define NET_N_CLASSES 2" in header and "'no', 'yes'" in header
    Y, proba, index = run_c(header, X, 1, 2, tmp_path, "c")
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-12)
    network = export.from_sklearn(clf)
    clear = _clear_margin(Y, error_bound(network, X))
    np.testing.assert_array_equal(clf.classes_[index[clear]], clf.predict(X)[clear])


def test_c_float_header_of_a_float64_model_rounds_the_weights(tmp_path):
    model = make_network("relu", np.float64)
    header = export.to_c(model, name="net", dtype=np.float32)
    assert "static const float net_W0" in header and "double" not in header
    X = make_inputs(4, np.float32)
    Y, _, _ = run_c(header, X, 3, None, tmp_path)
    twin = fastnn.Sequential([_copy_dense(layer) if isinstance(layer, fastnn.Dense) else copy.deepcopy(layer)
                              for layer in model.layers], dtype=np.float32)   # rounds as the header does
    assert_within(Y, twin.predict(X), error_bound(twin, X), "float header of a float64 model")


def _copy_dense(layer):
    dense = fastnn.Dense(layer.in_features, layer.out_features, seed=0)
    dense.W, dense.b = layer.W, layer.b
    return dense


def test_c_weights_are_exact_literals():
    model = make_network("relu", np.float32)
    header = export.to_c(model, name="net")
    body = header.split("static const float net_W0[32] = {")[1].split("}")[0]
    values = np.array([float(text.strip().rstrip("f")) for text in body.split(",")], dtype=np.float32)
    np.testing.assert_array_equal(values, model.layers[1].W.ravel())


def test_c_header_without_transcendentals_needs_no_math_h():
    assert "<math.h>" not in export.to_c(make_network("relu", np.float64), name="net")
    assert "<math.h>" in export.to_c(make_network("tanh", np.float64), name="net")
    assert "<stdlib.h>" not in export.to_c(make_network("tanh", np.float64), name="net", proba=True)


def test_c_header_is_written_and_returned(tmp_path):
    model = make_network("sigmoid", np.float64)
    path = tmp_path / "net.h"
    text = export.to_c(model, path, name="my_net")
    assert path.read_text() == text
    assert "#ifndef MY_NET_H" in text and "my_net_predict_batch" in text
    assert sorted(os.listdir(tmp_path)) == ["net.h"]


# -- C with int8 weights ---------------------------------------------------------------------------


def quantization_bound(model: fastnn.Sequential, quantized: fastnn.Sequential, X: np.ndarray) -> np.ndarray:
    """A per-element bound on |quantized.predict - model.predict| from the weights' rounding alone.

    Each weight moved by at most half its layer's scale (the largest change, measured); that moves
    a Dense layer's output by at most ``max|dW| * sum(|input|)``, and errors already there pass
    through ``|W|^T`` and each activation's Lipschitz constant, as in :func:`error_bound`.
    """
    magnitude = np.abs(X.astype(np.float64))
    error = np.zeros_like(magnitude)
    for layer, twin in zip(model.layers, quantized.layers, strict=True):
        if isinstance(layer, fastnn.Dense):
            step = float(np.max(np.abs(twin.W.astype(np.float64) - layer.W)))
            absW = np.abs(layer.W.astype(np.float64))
            error = error @ absW + step * magnitude.sum(axis=1, keepdims=True)
            magnitude = magnitude @ absW + np.abs(layer.b.astype(np.float64))
        elif layer.function == "leaky_relu":
            scale = max(1.0, layer.function_param)
            magnitude, error = magnitude * scale, error * scale
        elif layer.function == "tanh":
            magnitude = np.minimum(magnitude, 1.0)
        elif layer.function == "sigmoid":
            magnitude, error = np.ones_like(magnitude), error / 4
    return error


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_c_int8_weights(activation, dtype, tmp_path):
    model = make_network(activation, dtype)
    quantized = export.quantize_int8(model)
    for layer, twin in zip(model.layers, quantized.layers):
        if isinstance(layer, fastnn.Dense):
            scale = np.max(np.abs(layer.W)) / 127
            assert np.max(np.abs(twin.W - layer.W)) <= scale / 2 * (1 + 1e-5)
            np.testing.assert_array_equal(twin.b, layer.b)
    header = export.to_c(model, name="net", weights="int8")
    assert "static const signed char net_W0[32]" in header
    X = make_inputs(4, dtype)[:60]
    Y, _, _ = run_c(header, X, 3, None, tmp_path)
    # The header computes the quantized model (to rounding: it scales x, not W) ...
    assert_within(Y, quantized.predict(X), 2 * error_bound(quantized, X), f"int8 C {activation} {dtype}")
    # ... which is within the weights' rounding of the float model, and not equal to it.
    error = np.abs(quantized.predict(X).astype(np.float64) - model.predict(X))
    assert np.all(error <= quantization_bound(model, quantized, X) + error_bound(model, X))
    assert error.max() > 0


def test_unknown_weights_kind_is_refused():
    with pytest.raises(ValueError, match="weights must be one of"):
        export.to_c(make_network("relu", np.float64), weights="int4")


# -- ONNX -----------------------------------------------------------------------------------------


def ort_run(proto, X):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_onnx_graph_agrees_with_predict(activation, dtype):
    pytest.importorskip("onnx")
    model = make_network(activation, dtype)
    X = make_inputs(4, dtype)
    proto = export.to_onnx(model)
    (Y,) = ort_run(proto, X)
    assert Y.dtype == dtype
    ulps = ORT_TRANSCENDENTAL_ULPS if dtype == np.float32 else TRANSCENDENTAL_ULPS
    assert_within(Y, model.predict(X), error_bound(model, X, ulps), f"onnxruntime {activation} {dtype}")


def test_onnx_uses_standard_operators_a_symbolic_batch_and_the_pinned_versions():
    onnx = pytest.importorskip("onnx")
    proto = export.to_onnx(make_network("leaky_relu", np.float32))
    assert {node.op_type for node in proto.graph.node} == {"Gemm", "LeakyRelu"}
    assert all(node.domain == "" for node in proto.graph.node)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", export.ONNX_DEFAULT_OPSET)]
    assert proto.ir_version == 8
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 4
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    (Y,) = ort_run(proto, make_inputs(4, np.float32)[:1])   # any batch size
    assert Y.shape == (1, 3)
    # float64 with a slope float32 cannot hold: PRelu, whose slope is a tensor of the graph's dtype.
    proto64 = export.to_onnx(make_network("leaky_relu", np.float64))
    assert {node.op_type for node in proto64.graph.node} == {"Gemm", "PRelu"}


@pytest.mark.parametrize("opset", [13, 15, 21])
def test_onnx_other_opsets_run(opset):
    pytest.importorskip("onnx")
    model = make_network("tanh", np.float64)
    proto = export.to_onnx(model, opset=opset)
    assert proto.opset_import[0].version == opset
    X = make_inputs(4, np.float64)
    assert_within(ort_run(proto, X)[0], model.predict(X), error_bound(model, X), f"opset {opset}")


def test_onnx_file_is_written(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = make_network("relu", np.float64)
    proto = export.to_onnx(model, tmp_path / "net.onnx")
    assert onnx.load(str(tmp_path / "net.onnx")) == proto
    assert os.listdir(tmp_path) == ["net.onnx"]


def _classification_data(n_classes: int, labels: str):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    codes = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.linspace(-1, 1, n_classes - 1))
    names = np.array(["ant", "bee", "cat"][:n_classes]) if labels == "str" else np.array([3, 7, 11][:n_classes])
    return X, names[codes]


@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("which", ["fastnn", "sklearn"])
def test_onnx_classifier_outputs_label_and_probabilities(which, n_classes, labels):
    pytest.importorskip("onnx")
    neural_network = pytest.importorskip("sklearn.neural_network")
    cls = fastnn.MLPClassifier if which == "fastnn" else neural_network.MLPClassifier
    X, y = _classification_data(n_classes, labels)
    clf = cls(hidden_layer_sizes=(6,), max_iter=300, random_state=0).fit(X, y)
    proto = export.to_onnx(clf)
    assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
    label, proba = ort_run(proto, X)
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-12)
    network = export.from_sklearn(clf)
    clear = _clear_margin(network.predict(X), error_bound(network, X))
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(label[clear], clf.predict(X)[clear])


def test_onnx_regressor_estimator(dtype):
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    reg = fastnn.MLPRegressor(hidden_layer_sizes=(5, 4), activation="tanh", max_iter=50, dtype=dtype,
                              random_state=0).fit(X, X[:, 0] * X[:, 1])
    proto = export.to_onnx(reg)
    (Y,) = ort_run(proto, X.astype(dtype))
    ulps = ORT_TRANSCENDENTAL_ULPS if dtype == np.float32 else TRANSCENDENTAL_ULPS
    assert_within(Y.ravel(), reg.predict(X), error_bound(reg.model_, X.astype(dtype), ulps).ravel(), "regressor")


# -- scikit-learn ---------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("which", ["fastnn", "sklearn"])
def test_from_sklearn_reproduces_the_estimator(which, kind, activation):
    neural_network = pytest.importorskip("sklearn.neural_network")
    owner = fastnn if which == "fastnn" else neural_network
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    if kind == "regressor":
        est = owner.MLPRegressor(hidden_layer_sizes=(7, 5), activation=activation, max_iter=40, random_state=0)
        est.fit(X, np.stack([X[:, 0] * X[:, 1], np.sin(X[:, 2])], axis=1))
    else:
        est = owner.MLPClassifier(hidden_layer_sizes=(7, 5), activation=activation, max_iter=40, random_state=0)
        est.fit(X, np.digitize(X[:, 0], [-0.5, 0.5]))
    model = export.from_sklearn(est)
    dense = [layer for layer in model.layers if isinstance(layer, fastnn.Dense)]
    for layer, W, b in zip(dense, est.coefs_, est.intercepts_, strict=True):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)
    outputs = model.predict(X)
    if which == "fastnn":      # the same weights in the same code: bit for bit
        np.testing.assert_array_equal(outputs, est.model_.predict(X))
        if kind == "classifier":
            np.testing.assert_array_equal(model.predict_proba(X), est.predict_proba(X))
    elif kind == "regressor":  # scikit-learn's own matrix products: to rounding
        np.testing.assert_allclose(outputs, est.predict(X), rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(model.predict_proba(X), est.predict_proba(X), rtol=0, atol=1e-12)
    if kind == "classifier":
        np.testing.assert_array_equal(est.classes_[outputs.argmax(axis=1)], est.predict(X))


def test_from_sklearn_float32_estimator_gives_a_float32_model():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    reg = fastnn.MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, dtype=np.float32, random_state=0)
    reg.fit(X, X[:, 0])
    model = export.from_sklearn(reg)
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.predict(X), reg.model_.predict(X))


def test_from_sklearn_model_trains_on():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    y = X[:, :1] * 2
    reg = fastnn.MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y.ravel())
    model = export.from_sklearn(reg)
    before = float(np.mean((model.predict(X) - y) ** 2))
    model.fit(X, y, optimizer=fastnn.SGD(lr=0.05), epochs=30)
    assert float(np.mean((model.predict(X) - y) ** 2)) < before


# -- bad input: a clear error and no file --------------------------------------------------------


def test_untrained_estimator_is_refused(tmp_path):
    exceptions = pytest.importorskip("sklearn.exceptions")
    neural_network = pytest.importorskip("sklearn.neural_network")
    for est in (fastnn.MLPClassifier(), neural_network.MLPRegressor()):
        with pytest.raises(exceptions.NotFittedError, match="not fitted"):
            export.from_sklearn(est)
        with pytest.raises(exceptions.NotFittedError, match="not fitted"):
            export.to_c(est, tmp_path / "net.h")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["", "2net", "my-net", "net h", "int", "class", "__net", "_Net", "é", "n" * 41])
def test_invalid_c_name_is_refused(name, tmp_path):
    with pytest.raises(ValueError, match="name must"):
        export.to_c(make_network("relu", np.float64), tmp_path / "net.h", name=name)
    assert os.listdir(tmp_path) == []


def test_bad_arguments_are_refused(tmp_path):
    model = make_network("relu", np.float64)
    with pytest.raises(TypeError, match="name must be a str"):
        export.to_c(model, name=3)
    with pytest.raises(TypeError, match="dtype must be"):
        export.to_c(model, dtype=np.int32)
    with pytest.raises(TypeError, match="proba must be"):
        export.to_c(model, proba="yes")
    with pytest.raises(TypeError, match="estimator must be a fitted MLPRegressor"):
        export.to_c(object())
    with pytest.raises(TypeError, match="path must be"):
        export.to_c(model, 3.5)


def test_unwritable_path_leaves_nothing(tmp_path):
    model = make_network("relu", np.float64)
    with pytest.raises(FileNotFoundError):
        export.to_c(model, tmp_path / "missing" / "net.h")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        export.to_c(model, tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.h"
    path.write_text("old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        export.to_c(make_network("relu", np.float64), path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["net.h"]


def test_non_finite_weights_are_refused(tmp_path):
    model = make_network("relu", np.float64)
    model.layers[1].W[0, 0] = 1e300          # finite in float64, not in float32
    with pytest.raises(ValueError, match="not all finite in float32"):
        export.to_c(model, tmp_path / "net.h", dtype=np.float32)
    assert os.listdir(tmp_path) == []


def test_bad_opset_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = make_network("relu", np.float64)
    with pytest.raises(ValueError, match="opset must be an integer >= 13"):
        export.to_onnx(model, tmp_path / "net.onnx", opset=12)
    with pytest.raises(ValueError, match="opset must be at most"):
        export.to_onnx(model, tmp_path / "net.onnx", opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(TypeError, match="opset must be an integer"):
        export.to_onnx(model, opset=17.0)
    assert os.listdir(tmp_path) == []


def test_multilabel_classifier_is_refused_by_name():
    neural_network = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    clf = neural_network.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5).fit(X, X[:, :2] > 0)
    with pytest.raises(ValueError, match="multilabel"):
        export.to_c(clf)
    assert export.from_sklearn(clf).out_features == 2


# -- the command line -----------------------------------------------------------------------------


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_export_c_and_onnx(tmp_path):
    model = make_network("tanh", np.float32)
    fastnn.save(model, tmp_path / "model.npz")
    done = run_cli("export", tmp_path / "model.npz", "--to", "c", "-o", tmp_path / "net.h", "--name", "net")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "net.h").read_text() == export.to_c(model, name="net")
    done = run_cli("export", tmp_path / "model.npz", "--to", "c", "-o", tmp_path / "q.h", "--weights", "int8",
                   "--dtype", "float64")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "q.h").read_text() == export.to_c(model, weights="int8", dtype=np.float64)
    pytest.importorskip("onnx")
    done = run_cli("export", tmp_path / "model.npz", "--to", "onnx", "-o", tmp_path / "net.onnx")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "net.onnx").read_bytes() == export.to_onnx(model).SerializeToString()


def test_cli_export_errors_are_clear_and_write_nothing(tmp_path):
    model = make_network("relu", np.float64)
    fastnn.save(model, tmp_path / "model.npz")
    done = run_cli("export", tmp_path / "model.npz", "--to", "c", "-o", tmp_path / "net.h", "--name", "9lives")
    assert done.returncode == 1 and "name must be a valid C identifier" in done.stderr
    done = run_cli("export", tmp_path / "nothing.npz", "--to", "c", "-o", tmp_path / "net.h")
    assert done.returncode == 1 and "nothing.npz" in done.stderr
    done = run_cli("export", tmp_path / "model.npz", "--to", "java", "-o", tmp_path / "net.h")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert os.listdir(tmp_path) == ["model.npz"]


def test_cli_info_still_works():
    done = run_cli("info", "--json")
    assert done.returncode == 0 and '"runtime"' in done.stdout
