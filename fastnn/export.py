"""Take a trained network anywhere: a C header, ONNX, PyTorch; and bring networks in from scikit-learn and PyTorch.

::

    from fastnn import export

    export.to_c(model, "net.h", name="net")          # one dependency-free C99 header
    export.to_c(model, "q.h", weights="int8")        # int8 weights; quantize_int8(model) is what it computes
    export.to_onnx(model, "net.onnx")                # standard ai.onnx operators
    module = export.to_torch(model)                  # a torch.nn.Sequential
    model = export.from_torch(module)                # and back
    model = export.from_sklearn(estimator)           # a fitted MLPRegressor / MLPClassifier

``model`` is a :class:`fastnn.Sequential`, or a fitted estimator with
scikit-learn's MLP attributes (``coefs_``, ``intercepts_``, ``activation``,
``out_activation_``, and ``classes_`` for a classifier): fastnn's own
:class:`~fastnn.MLPRegressor` / :class:`~fastnn.MLPClassifier` or
scikit-learn's. For a classifier the exports add its probabilities
(softmax, or the logistic of scikit-learn's single binary output) and its
class: C functions ``NAME_predict_proba`` and ``NAME_argmax``, ONNX outputs
``label`` and ``probabilities``.

Optional dependencies are imported inside the function that needs them:
``onnx`` (``pip install fastnn[onnx]``) for :func:`to_onnx`, ``torch`` for
:func:`to_torch` and :func:`from_torch`; :func:`from_sklearn` reads
attributes and needs nothing.

Files are written atomically: the whole text is made first, written to a
temporary file in the target's directory and renamed over the target, so an
error never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

from fastnn._savefile import check_path
from fastnn._version import __version__
from fastnn.layers import Activation, Dense, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from fastnn.model import Sequential
from fastnn.validation import check_float_dtype, check_int, check_option

__all__ = ["to_c", "to_onnx", "to_torch", "from_torch", "from_sklearn", "quantize_int8",
           "ONNX_DEFAULT_OPSET", "ONNX_MIN_OPSET"]

#: The opset :func:`to_onnx` writes by default (IR version 8): run by onnxruntime 1.13 and later.
ONNX_DEFAULT_OPSET = 17
#: The oldest opset :func:`to_onnx` writes: Softmax's per-row semantics (``axis=-1``) start at 13.
ONNX_MIN_OPSET = 13

#: scikit-learn's names of the hidden activations, and fastnn's layer for each (None: no layer).
_SKLEARN_ACTIVATIONS = {"identity": None, "relu": ReLU, "tanh": Tanh, "logistic": Sigmoid}
_SKLEARN_OUTPUTS = ("identity", "softmax", "logistic")

#: Words a C99 or C++ compiler reserves: not allowed as the name of an exported model.
_C_RESERVED = frozenset("""
    auto break case char const continue default do double else enum extern float for goto if inline int long
    register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while
    _Bool _Complex _Imaginary alignas alignof and and_eq asm bitand bitor bool catch char16_t char32_t class compl
    concept consteval constexpr constinit const_cast co_await co_return co_yield decltype delete dynamic_cast
    explicit export false friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private
    protected public reinterpret_cast requires static_assert static_cast template this thread_local throw true
    try typeid typename using virtual wchar_t xor xor_eq
""".split())
#: The longest model name: the generated names add up to 20 characters, and C99 promises 63 significant ones.
_MAX_NAME_LENGTH = 40


# -- the network, read once -------------------------------------------------------------


@dataclass
class _Network:
    """What every export reads: the steps, the dtype, and a classifier's head.

    ``steps`` holds ``("dense", W, b)`` with W (n_in, n_out) and
    ``("act", function, param)`` with fastnn's activation names. ``head`` is
    ``"none"``, ``"softmax"`` (one logit per class), ``"sigmoid"`` (one
    output, its probability) or ``"binary"`` (scikit-learn's one logistic
    output of two classes: probabilities ``[1 - p, p]``).
    """

    steps: list
    dtype: np.dtype
    n_inputs: int
    n_outputs: int
    head: str = "none"
    classes: np.ndarray | None = field(default=None)

    @property
    def n_classes(self) -> int:
        return 2 if self.head == "binary" else self.n_outputs

    @property
    def functions(self) -> set:
        return {step[1] for step in self.steps if step[0] == "act"}


def _steps(model: Sequential) -> list:
    steps: list = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            steps.append(("dense", np.array(layer.W), np.array(layer.b)))
        else:
            steps.append(("act", layer.function, float(layer.function_param)))
    return steps


def _network(model, proba: bool = False) -> _Network:
    """``model`` (a Sequential or a fitted MLP estimator) as a :class:`_Network`."""
    if isinstance(model, Sequential):
        head = "none" if not proba else ("softmax" if model.out_features > 1 else "sigmoid")
        return _Network(_steps(model), model.dtype, model.in_features, model.out_features, head)
    sequential = from_sklearn(model)
    net = _Network(_steps(sequential), sequential.dtype, sequential.in_features, sequential.out_features)
    out = model.out_activation_
    if out == "identity":
        return net
    classes = np.asarray(model.classes_)
    if out == "softmax":
        net.head = "softmax"
    elif net.n_outputs == 1 and classes.shape == (2,):
        net.head = "binary"
    else:
        raise ValueError(f"model is a multilabel classifier ({net.n_outputs} logistic outputs): its labels are "
                         f"not one argmax; export from_sklearn(model), the network of its logits, instead")
    if classes.shape != (net.n_classes,):
        raise ValueError(f"model.classes_ must hold {net.n_classes} labels for its {net.n_outputs} outputs, "
                         f"got shape {classes.shape}")
    net.classes = classes
    return net


def _write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path)[:100] + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        with contextlib.suppress(OSError):
            os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _file_mode(path: str) -> int:
    """The permission bits a file written at ``path`` gets: an existing file's, else 0o644."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o644


def _check_output_path(path):
    """``path`` checked (a str or os.PathLike, not a directory), or None."""
    if path is None:
        return None
    path = check_path(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a directory; give a file name")
    return path


# -- C -----------------------------------------------------------------------------------


def check_c_name(name) -> str:
    """``name`` if it is a valid C and C++ identifier fit to prefix the generated names, else raise.

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If it is not an identifier (letters, digits, underscores, not
        starting with a digit), is a C or C++ keyword, is reserved to the
        implementation (``__x``, ``_X``), or is longer than 40 characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a C identifier), got {type(name).__name__} {name!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a valid C identifier (letters, digits and underscores, not starting "
                         f"with a digit), got {name!r}")
    if name in _C_RESERVED or name.startswith("__") or re.match(r"_[A-Z]", name):
        raise ValueError(f"name must not be a C/C++ keyword or a name reserved to the compiler, got {name!r}")
    if len(name) > _MAX_NAME_LENGTH:
        raise ValueError(f"name must be at most {_MAX_NAME_LENGTH} characters long, got {len(name)}")
    return name


class _CWriter:
    """Writes one network as C99: the literals, the helpers, the functions."""

    def __init__(self, net: _Network, name: str, dtype: np.dtype, int8: bool = False):
        self.net, self.name, self.dtype, self.int8 = net, name, dtype, int8
        self.upper = name.upper()
        self.ctype = "float" if dtype == np.float32 else "double"
        self.suffix = "f" if dtype == np.float32 else ""

    def literal(self, value: float) -> str:
        # str() of a NumPy scalar is its shortest round-trip repr: the compiler reads back the same value.
        text = str(self.dtype.type(value))
        return text + self.suffix

    def array(self, name: str, values: np.ndarray, comment: str) -> str:
        items = [self.literal(v) for v in values.ravel()]
        rows = [", ".join(items[i:i + 8]) for i in range(0, len(items), 8)]
        body = ",\n    ".join(rows)
        return f"/* {comment} */\nstatic const {self.ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"

    def math(self, function: str) -> str:
        return function + ("f" if self.dtype == np.float32 else "")

    def header(self) -> str:
        net = self.net
        layers = " -> ".join(_describe_step(step) for step in net.steps)
        needs_math = bool(net.functions & {"tanh", "sigmoid"}) or net.head != "none"
        lines = [
            f"/* {self.name}.h: a fastnn network as plain C99 ({self.ctype}), generated by fastnn {__version__}",
            " * (fastnn.export.to_c). Self-contained: no allocation, no state that changes, thread-safe.",
            f" * Network: {layers}",
            f" * {self.name}_predict(x, y): x[{self.upper}_N_INPUTS] -> y[{self.upper}_N_OUTPUTS];",
            f" * {self.name}_predict_batch(n, x, y): n row-major samples.",
        ]
        if net.head != "none":
            lines.append(f" * {self.name}_predict_proba(x, proba): proba[{self.upper}_N_CLASSES]; "
                         f"{self.name}_argmax(x): the index of the most probable class.")
        if net.classes is not None:
            lines.append(" * Class labels by index: " + ", ".join(repr(c) for c in net.classes.tolist())[:2000])
        lines += [" */", f"#ifndef {self.upper}_H", f"#define {self.upper}_H", "", "#include <stddef.h>"]
        if needs_math:
            lines.append("#include <math.h>")
        lines += ["", f"#define {self.upper}_N_INPUTS {net.n_inputs}", f"#define {self.upper}_N_OUTPUTS {net.n_outputs}",
                  f"#define {self.upper}_MAX_WIDTH {self._max_width()}"]
        if net.head != "none":
            lines.append(f"#define {self.upper}_N_CLASSES {net.n_classes}")
        return "\n".join(lines) + "\n"

    def _max_width(self) -> int:
        widths = [step[1].shape[1] for step in self.net.steps if step[0] == "dense"]
        return max([self.net.n_inputs, *widths])

    def weights(self) -> str:
        parts, index = [], 0
        for step in self.net.steps:
            if step[0] == "dense":
                W, b = step[1], step[2]
                what = f"layer {index}: W, {W.shape[0]} rows (inputs) of {W.shape[1]} (outputs)"
                if self.int8:
                    quantized, scale = _quantize_int8(W, self.dtype)
                    items = ", ".join(str(int(v)) for v in quantized.ravel())
                    parts.append(f"/* {what}, int8: W = {self.name}_W{index} * {self.dtype.type(scale)} (off by at most "
                                 f"{scale / 2:.3g}) */\nstatic const signed char {self.name}_W{index}"
                                 f"[{quantized.size}] = {{\n    {items}\n}};\n")
                else:
                    parts.append(self.array(f"{self.name}_W{index}", W, what))
                parts.append(self.array(f"{self.name}_b{index}", b, f"layer {index}: b, {b.shape[0]} values"))
                index += 1
        return "\n".join(parts)

    def helpers(self) -> str:
        T, n, functions = self.ctype, self.name, self.net.functions
        # Input by input over the rows of W: the inner loop updates n_out independent sums (it
        # vectorises), each summed in the same order as a dot product b + x0 W0j + x1 W1j + ...
        weight, scale, scaled = ("signed char", f", {T} scale", " * scale") if self.int8 else (T, "", "")
        parts = [f"""static inline void {n}_dense(size_t n_in, size_t n_out, const {weight} *W{scale}, const {T} *b,
        const {T} *x, {T} *y)
{{
    size_t i, j;
    for (j = 0; j < n_out; ++j)
        y[j] = b[j];
    for (i = 0; i < n_in; ++i) {{
        const {T} xi = x[i]{scaled};
        const {weight} *row = W + i * n_out;
        for (j = 0; j < n_out; ++j)
            y[j] += xi * row[j];
    }}
}}
"""]
        first = next(step for step in self.net.steps if step[0] == "dense" or step[1] != "identity")
        if first[0] == "act":       # an activation of the input: on a copy (x is const)
            parts.append(f"static inline void {n}_copy(size_t n, const {T} *x, {T} *y)\n{{\n    size_t i;\n"
                         f"    for (i = 0; i < n; ++i)\n        y[i] = x[i];\n}}\n")
        if "relu" in functions:
            parts.append(f"static inline void {n}_relu(size_t n, {T} *v)\n{{\n    size_t i;\n"
                         f"    for (i = 0; i < n; ++i)\n        if (v[i] < 0)\n            v[i] = 0;\n}}\n")
        if "leaky_relu" in functions:
            parts.append(f"static inline void {n}_leaky_relu(size_t n, {T} slope, {T} *v)\n{{\n    size_t i;\n"
                         f"    for (i = 0; i < n; ++i)\n        if (v[i] < 0)\n            v[i] *= slope;\n}}\n")
        if "tanh" in functions:
            parts.append(f"static inline void {n}_tanh(size_t n, {T} *v)\n{{\n    size_t i;\n"
                         f"    for (i = 0; i < n; ++i)\n        v[i] = {self.math('tanh')}(v[i]);\n}}\n")
        if "sigmoid" in functions or self.net.head in ("sigmoid", "binary"):
            exp, one = self.math("exp"), self.literal(1.0)
            # exp of a non-positive number only: no overflow for inputs of any size.
            parts.append(f"""static inline void {n}_sigmoid(size_t n, {T} *v)
{{
    size_t i;
    for (i = 0; i < n; ++i) {{
        if (v[i] >= 0) {{
            v[i] = {one} / ({one} + {exp}(-v[i]));
        }} else {{
            {T} e = {exp}(v[i]);
            v[i] = e / ({one} + e);
        }}
    }}
}}
""")
        return "\n".join(parts)

    def predict(self) -> str:
        n, T, net = self.name, self.ctype, self.net
        last = sum(step[0] == "dense" for step in net.steps) - 1
        lines, used, current, index, width = [], [], "x", 0, net.n_inputs
        for step in net.steps:
            if step[0] == "dense":
                target = "y" if index == last else ("h1" if current == "h0" else "h0")
                width = step[1].shape[1]
                scale = f", {self.literal(_quantize_int8(step[1], self.dtype)[1])}" if self.int8 else ""
                lines.append(f"{n}_dense({step[1].shape[0]}, {width}, {n}_W{index}{scale}, {n}_b{index}, "
                             f"{current}, {target});")
                current, index = target, index + 1
            elif step[1] != "identity":
                if current == "x":
                    lines.append(f"{n}_copy({width}, x, h0);")
                    current = "h0"
                slope = f"{self.literal(step[2])}, " if step[1] == "leaky_relu" else ""
                lines.append(f"{n}_{step[1]}({width}, {slope}{current});")
            used.append(current)
        buffers = [f"h{i}[{self.upper}_MAX_WIDTH]" for i in range(2) if f"h{i}" in used]
        declare = [f"    {T} {', '.join(buffers)};"] if buffers else []
        body = "\n".join(declare + ["    " + line for line in lines])
        return (f"/* One sample: x[{self.upper}_N_INPUTS] -> y[{self.upper}_N_OUTPUTS]. */\n"
                f"static inline void {n}_predict(const {T} *x, {T} *y)\n{{\n{body}\n}}\n\n"
                f"/* n samples, row-major: x[n * {self.upper}_N_INPUTS] -> y[n * {self.upper}_N_OUTPUTS]. */\n"
                f"static inline void {n}_predict_batch(size_t n, const {T} *x, {T} *y)\n{{\n    size_t k;\n"
                f"    for (k = 0; k < n; ++k)\n"
                f"        {n}_predict(x + k * {self.upper}_N_INPUTS, y + k * {self.upper}_N_OUTPUTS);\n}}\n")

    def classifier(self) -> str:
        n, T, head, N = self.name, self.ctype, self.net.head, f"{self.upper}_N_OUTPUTS"
        if head == "none":
            return ""
        if head == "softmax":
            exp = self.math("exp")
            # Shifted by the largest logit: exp of non-positive numbers, a sum >= 1; no overflow.
            proba = (f"    size_t j;\n    {T} top, sum = 0;\n    {n}_predict(x, proba);\n    top = proba[0];\n"
                     f"    for (j = 1; j < {N}; ++j)\n        if (proba[j] > top)\n            top = proba[j];\n"
                     f"    for (j = 0; j < {N}; ++j) {{\n        proba[j] = {exp}(proba[j] - top);\n"
                     f"        sum += proba[j];\n    }}\n    for (j = 0; j < {N}; ++j)\n        proba[j] /= sum;\n")
            argmax = (f"    {T} logits[{N}];\n    size_t j, best = 0;\n    {n}_predict(x, logits);\n"
                      f"    for (j = 1; j < {N}; ++j)\n        if (logits[j] > logits[best])\n            best = j;\n"
                      f"    return best;\n")
        elif head == "sigmoid":
            proba = f"    {n}_predict(x, proba);\n    {n}_sigmoid(1, proba);\n"
            argmax = f"    {T} z[1];\n    {n}_predict(x, z);\n    return z[0] > 0 ? 1 : 0;\n"
        else:
            proba = (f"    {T} p[1];\n    {n}_predict(x, p);\n    {n}_sigmoid(1, p);\n"
                     f"    proba[0] = {self.literal(1.0)} - p[0];\n    proba[1] = p[0];\n")
            argmax = f"    {T} z[1];\n    {n}_predict(x, z);\n    return z[0] > 0 ? 1 : 0;\n"
        return (f"/* The class probabilities of one sample: proba[{self.upper}_N_CLASSES]. */\n"
                f"static inline void {n}_predict_proba(const {T} *x, {T} *proba)\n{{\n{proba}}}\n\n"
                f"/* The index of the most probable class of one sample (the first, on a tie). */\n"
                f"static inline size_t {n}_argmax(const {T} *x)\n{{\n{argmax}}}\n")

    def source(self) -> str:
        parts = [self.header(), self.weights(), self.helpers(), self.predict(), self.classifier()]
        return "\n".join(part for part in parts if part) + f"\n#endif /* {self.upper}_H */\n"


def _quantize_int8(W: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, float]:
    """``W`` as integers in [-127, 127] and one scale (in ``dtype``): ``W ~ quantized * scale``.

    The scale maps the largest ``|W|`` to 127 (1 for an all-zero W); each
    weight is rounded to the nearest multiple of it, off by at most half.
    """
    largest = float(np.max(np.abs(W)))
    scale = float(dtype.type(largest / 127.0)) if largest > 0 else 1.0
    if scale == 0.0:          # largest / 127 underflows the dtype: the weights round to zero
        scale = 1.0
    quantized = np.clip(np.rint(W.astype(np.float64) / scale), -127, 127).astype(np.int8)
    return quantized, scale


def quantize_int8(model) -> Sequential:
    """The float model that ``to_c(model, weights="int8")`` computes: each W rounded to int8 steps.

    Each Dense layer's ``W`` becomes ``quantized * scale`` with one scale
    per layer (the largest ``|W|`` maps to 127), the biases stay as they
    are. Compare its predictions with ``model``'s to see what int8 weights
    cost on your data: each weight moves by at most ``scale / 2``, so an
    output moves by at most ``scale / 2 * sum(|x|)`` per layer, passed on
    through the later layers.

    Parameters
    ----------
    model : Sequential or fitted MLPRegressor / MLPClassifier

    Returns
    -------
    Sequential
        A new model in ``model``'s dtype (a classifier estimator: its logits).
    """
    sequential = model if isinstance(model, Sequential) else from_sklearn(model)
    layers: list = []
    for step in _steps(sequential):
        if step[0] == "dense":
            quantized, scale = _quantize_int8(step[1], sequential.dtype)
            layers.append(_dense(quantized.astype(np.float64) * scale, step[2]))
        elif step[1] == "leaky_relu":
            layers.append(LeakyReLU(step[2]))
        else:
            layers.append(_FASTNN_ACTIVATIONS[_TORCH_ACTIVATIONS[step[1]]]())
    return Sequential(layers, dtype=sequential.dtype)


def _describe_step(step) -> str:
    if step[0] == "dense":
        return f"Dense({step[1].shape[0]}, {step[1].shape[1]})"
    if step[1] == "leaky_relu":
        return f"LeakyReLU({step[2]!r})"
    return {"identity": "Identity", "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}[step[1]]


def _check_finite(net: _Network, dtype: np.dtype) -> None:
    """Refuse weights that are not finite in ``dtype`` (a C literal cannot hold them)."""
    for index, W, b in ((i, s[1], s[2]) for i, s in enumerate(s for s in net.steps if s[0] == "dense")):
        with np.errstate(over="ignore"):
            finite = np.isfinite(W.astype(dtype)).all() and np.isfinite(b.astype(dtype)).all()
        if not finite:
            raise ValueError(f"model: the weights of Dense layer {index} are not all finite in {dtype}; "
                             f"an exported network needs finite weights")


def to_c(model, path=None, *, name: str = "fastnn_model", dtype=None, proba: bool | None = None,
         weights: str = "float") -> str:
    """The network as one self-contained C99 header; written to ``path`` if given.

    The header holds the weights as ``static const`` arrays, ``#define``s
    ``NAME_N_INPUTS``, ``NAME_N_OUTPUTS`` and ``NAME_MAX_WIDTH``, and

    * ``void NAME_predict(const T *x, T *y)``: one sample;
    * ``void NAME_predict_batch(size_t n, const T *x, T *y)``: ``n``
      samples, row-major;
    * for a classifier, ``void NAME_predict_proba(const T *x, T *proba)``
      (softmax, or the logistic of a single output, both computed without
      overflow) and ``size_t NAME_argmax(const T *x)`` (the index of the
      most probable class, into ``classes_``), with ``NAME_N_CLASSES``.

    Every function is ``static inline``: the header can be included in any
    number of C or C++ translation units. It includes ``<stddef.h>`` and,
    only where tanh or exp are needed, ``<math.h>`` (link with ``-lm``);
    it allocates nothing and has no state that changes (thread-safe), and
    compiles cleanly with ``cc -std=c99 -Wall -Wextra -Werror -pedantic``
    and with a C++ compiler. The weights are written as the shortest
    decimals that read back as the same values: the C network has exactly
    the model's weights. Its results agree with ``model.predict`` to
    rounding, not bit for bit: it sums in plain order where fastnn uses
    fused multiply-adds and blocked sums, and calls libm's ``tanh``/``exp``
    where fastnn has its own vectorised ones (within 3 ulp).

    Parameters
    ----------
    model : Sequential or fitted MLPRegressor / MLPClassifier
        fastnn's or scikit-learn's estimators (read through
        :func:`from_sklearn`).
    path : str or os.PathLike, optional
        Where to write the header (atomically: no partial file on error).
    name : str, default "fastnn_model"
        The prefix of every generated name (``NAME_predict``, ``NAME_W0``,
        ``NAME_N_INPUTS`` upper-cased, the include guard ``NAME_H``): a C
        identifier, not a keyword, at most 40 characters.
    dtype : numpy.float32 or numpy.float64, optional
        ``T``: ``float`` or ``double``. Default: the model's dtype (weights
        of a float64 model exported as float are rounded to float).
    proba : bool, optional
        Add ``NAME_predict_proba`` and ``NAME_argmax``. Default: for a
        classifier estimator only. ``True`` for a Sequential adds them as
        :meth:`Sequential.predict_proba` computes: softmax of two or more
        outputs, the sigmoid of one.
    weights : {"float", "int8"}, default "float"
        ``"int8"`` stores each W as ``signed char`` with one scale per layer
        (the largest ``|W|`` maps to 127; a quarter of the float32 size,
        for small flash): the computation stays in ``T``, each weight off by
        up to half a scale step. :func:`quantize_int8` gives the float model
        that this header computes, to measure the error against ``model``.

    Returns
    -------
    str
        The header's text.

    Raises
    ------
    TypeError
        If ``model`` is neither a Sequential nor an MLP estimator, ``name``
        not a str, ``dtype`` not float32/float64, ``path`` not a path.
    ValueError
        If ``name`` is not a valid C identifier, the estimator is not
        fitted, or a weight is not finite in ``dtype``.
    OSError
        If ``path`` cannot be written (nothing is left there).
    """
    name = check_c_name(name)
    path = _check_output_path(path)
    if proba is not None and not isinstance(proba, (bool, np.bool_)):
        raise TypeError(f"proba must be True, False or None, got {type(proba).__name__} {proba!r}")
    net = _network(model, proba=bool(proba))
    if proba is False:
        net.head, net.classes = "none", None
    dtype = net.dtype if dtype is None else check_float_dtype(dtype, "dtype")
    weights = check_option(weights, "weights", ("float", "int8"))
    _check_finite(net, dtype)
    source = _CWriter(net, name, dtype, int8=weights == "int8").source()
    if path is not None:
        _write_atomically(path, source.encode("utf-8"))
    return source


# -- ONNX --------------------------------------------------------------------------------

_ONNX_ACTIVATIONS = {"identity": "Identity", "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                     "leaky_relu": "LeakyRelu"}


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this export needs {module.split('.')[0]}, an optional dependency: "
                          f"pip install {extra}. Original error: {exc}") from exc


def _check_opset(opset, onnx) -> int:
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return ONNX_DEFAULT_OPSET
    opset = check_int(opset, "opset", low=ONNX_MIN_OPSET)
    if opset > newest:
        raise ValueError(f"opset must be at most {newest}, the newest the installed onnx "
                         f"{onnx.__version__} knows, got {opset}")
    return opset


def _onnx_network(net: _Network, helper, numpy_helper) -> tuple[list, list, str]:
    """The nodes and initializers of the network itself, from input ``X``, and the name of its output."""
    nodes, initializers, current, index = [], [], "X", 0
    for k, step in enumerate(net.steps):
        output = f"h{k}"
        if step[0] == "dense":
            initializers += [numpy_helper.from_array(step[1].astype(net.dtype), f"W{index}"),
                             numpy_helper.from_array(step[2].astype(net.dtype), f"b{index}")]
            nodes.append(helper.make_node("Gemm", [current, f"W{index}", f"b{index}"], [output],
                                          name=f"dense{index}"))
            index += 1
        elif step[1] == "leaky_relu" and net.dtype == np.float64 and float(np.float32(step[2])) != step[2]:
            # LeakyRelu's alpha is a float32 attribute: a slope it cannot hold goes in as PRelu's tensor.
            initializers.append(numpy_helper.from_array(np.array([step[2]], np.float64), f"slope{k}"))
            nodes.append(helper.make_node("PRelu", [current, f"slope{k}"], [output], name=f"act{k}"))
        elif step[1] == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", [current], [output], alpha=step[2], name=f"act{k}"))
        else:
            nodes.append(helper.make_node(_ONNX_ACTIVATIONS[step[1]], [current], [output], name=f"act{k}"))
        current = output
    return nodes, initializers, current


def _onnx_labels(classes: np.ndarray, numpy_helper, TensorProto):
    """``classes`` as an initializer named ``classes`` and the label's element type."""
    if classes.dtype.kind in "iub":
        return numpy_helper.from_array(classes.astype(np.int64), "classes"), TensorProto.INT64
    if classes.dtype.kind == "f":
        return numpy_helper.from_array(classes.astype(np.float64), "classes"), TensorProto.DOUBLE
    strings = np.array([str(c) for c in classes.tolist()], dtype=object)
    return numpy_helper.from_array(strings, "classes"), TensorProto.STRING


def _onnx_classifier(net: _Network, logits: str, helper, numpy_helper, TensorProto) -> tuple[list, list, list]:
    """Nodes, initializers and outputs (label, probabilities) of a classifier's head on ``logits``."""
    assert net.classes is not None          # a classifier estimator's head (to_onnx asks no proba of a Sequential)
    classes, label_type = _onnx_labels(net.classes, numpy_helper, TensorProto)
    initializers = [classes]
    if net.head == "softmax":
        nodes = [helper.make_node("Softmax", [logits], ["probabilities"], axis=-1, name="softmax"),
                 helper.make_node("ArgMax", [logits], ["index"], axis=1, keepdims=0, name="argmax")]
    else:   # binary: [1 - p, p] with p the logistic of the one output
        initializers.append(numpy_helper.from_array(np.ones((1, 1), dtype=net.dtype), "one"))
        nodes = [helper.make_node("Sigmoid", [logits], ["p"], name="logistic"),
                 helper.make_node("Sub", ["one", "p"], ["q"], name="complement"),
                 helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1, name="concat"),
                 helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0, name="argmax")]
    nodes.append(helper.make_node("Gather", ["classes", "index"], ["label"], axis=0, name="label"))
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    outputs = [helper.make_tensor_value_info("label", label_type, ["N"]),
               helper.make_tensor_value_info("probabilities", elem, ["N", net.n_classes])]
    return nodes, initializers, outputs


def _onnx_graph(net: _Network, onnx):
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    nodes, initializers, current = _onnx_network(net, helper, numpy_helper)
    if net.head == "none":
        nodes[-1].output[0] = "Y"
        outputs = [helper.make_tensor_value_info("Y", elem, ["N", net.n_outputs])]
    else:
        more_nodes, more_initializers, outputs = _onnx_classifier(net, current, helper, numpy_helper, TensorProto)
        nodes += more_nodes
        initializers += more_initializers
    inputs = [helper.make_tensor_value_info("X", elem, ["N", net.n_inputs])]
    return helper.make_graph(nodes, "fastnn", inputs, outputs, initializer=initializers)


def to_onnx(model, path=None, *, opset: int | None = None):
    """The network as an ONNX model of standard ``ai.onnx`` operators; written to ``path`` if given.

    The graph takes ``X`` of shape ``(N, n_inputs)`` (``N`` symbolic) in the
    model's dtype (float32 or float64) and computes each Dense layer as
    ``Gemm`` and each activation as ``Relu``, ``LeakyRelu``, ``Tanh``,
    ``Sigmoid`` or ``Identity`` (a float64 network's LeakyReLU whose slope
    float32 cannot hold as ``PRelu``: LeakyRelu's ``alpha`` is a float32
    attribute). A Sequential or a regressor outputs ``Y``
    ``(N, n_outputs)``; a classifier estimator outputs ``label`` ``(N,)``
    (its ``classes_``: int64, double or string) and ``probabilities``
    ``(N, n_classes)`` (``Softmax``, or ``[1 - p, p]`` with ``p`` the
    ``Sigmoid`` of scikit-learn's single binary output), as skl2onnx names
    them.

    Versions: opset ``ONNX_DEFAULT_OPSET`` (17) by default, with IR version
    8, the oldest IR that holds it: onnxruntime 1.13 and later run it (the
    tests run it with the installed onnxruntime; checked with 1.32.0). Any
    opset from 13 to the installed ``onnx``'s newest can be asked for; the
    IR version is then the oldest that holds that opset.

    Parameters
    ----------
    model : Sequential or fitted MLPRegressor / MLPClassifier
        fastnn's or scikit-learn's estimators (read through :func:`from_sklearn`).
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file (atomically: no partial file on error).
    opset : int, optional
        The ``ai.onnx`` opset, 13 or more (default 17).

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker.check_model(..., full_check=True)``.

    Raises
    ------
    ImportError
        Without the ``onnx`` package (``pip install fastnn[onnx]``).
    TypeError, ValueError
        For a model that is not a Sequential or a fitted MLP estimator, an
        opset out of range, a path that is not one.
    OSError
        If ``path`` cannot be written (nothing is left there).
    """
    path = _check_output_path(path)
    onnx = _import("onnx", "fastnn[onnx]")
    opset = _check_opset(opset, onnx)
    net = _network(model, proba=False)
    _check_finite(net, net.dtype)
    ids = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(_onnx_graph(net, onnx), opset_imports=ids, producer_name="fastnn",
                                   producer_version=__version__)
    proto.ir_version = onnx.helper.find_min_ir_version_for(ids)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        _write_atomically(path, proto.SerializeToString())
    return proto


# -- PyTorch -----------------------------------------------------------------------------

_TORCH_ACTIVATIONS = {"identity": "Identity", "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}
_FASTNN_ACTIVATIONS = {"Identity": Identity, "ReLU": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid}


def to_torch(model):
    """The network as a ``torch.nn.Sequential`` of ``nn.Linear`` and activation modules.

    Each Dense layer becomes an ``nn.Linear`` whose ``weight`` is ``W.T`` and
    ``bias`` is ``b``, in the model's dtype (``torch.float32`` or
    ``torch.float64``), the same values bit for bit; each activation its
    module (``nn.ReLU``, ``nn.LeakyReLU(negative_slope)``, ``nn.Tanh``,
    ``nn.Sigmoid``, ``nn.Identity``). The module computes what
    ``model.predict`` does, to rounding (PyTorch's sums and transcendentals
    are its own); :func:`from_torch` brings it back exactly.

    Parameters
    ----------
    model : Sequential or fitted MLPRegressor / MLPClassifier
        An estimator gives the network of its outputs (a classifier's logits).

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError, ValueError
        As :func:`from_sklearn` for something that is not a Sequential.
    """
    torch = _import("torch", "torch")
    model = model if isinstance(model, Sequential) else from_sklearn(model)
    dtype = torch.float32 if model.dtype == np.float32 else torch.float64
    modules = []
    for step in _steps(model):
        if step[0] == "dense":
            linear = torch.nn.Linear(step[1].shape[0], step[1].shape[1], dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(step[1].T)))
                linear.bias.copy_(torch.from_numpy(step[2]))
            modules.append(linear)
        elif step[1] == "leaky_relu":
            modules.append(torch.nn.LeakyReLU(step[2]))
        else:
            modules.append(getattr(torch.nn, _TORCH_ACTIVATIONS[step[1]])())
    return torch.nn.Sequential(*modules)


def _dense(W: np.ndarray, b: np.ndarray) -> Dense:
    """A stand-alone Dense layer holding ``W`` (n_in, n_out) and ``b`` (n_out,)."""
    dense = Dense(W.shape[0], W.shape[1], seed=0)
    dense.W = W
    dense.b = b
    return dense


def _layer_from_torch(torch, index: int, module, dtypes: set):
    accepted = "nn.Linear, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid and nn.Identity"
    kind = type(module)
    if kind is torch.nn.Linear:
        weight = module.weight.detach().cpu()
        if weight.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"module[{index}] holds {weight.dtype} weights; fastnn takes float32 or float64")
        dtypes.add(np.float32 if weight.dtype == torch.float32 else np.float64)
        W = weight.numpy().T
        b = np.zeros(W.shape[1], W.dtype) if module.bias is None else module.bias.detach().cpu().numpy()
        return _dense(W, b)
    if kind is torch.nn.LeakyReLU:
        return LeakyReLU(module.negative_slope)
    if kind.__module__.startswith("torch.nn") and kind.__name__ in _FASTNN_ACTIVATIONS:
        return _FASTNN_ACTIVATIONS[kind.__name__]()
    raise TypeError(f"module[{index}] is a {kind.__module__}.{kind.__name__}, which fastnn has no layer for; "
                    f"from_torch takes an nn.Sequential of {accepted} only")


def from_torch(module) -> Sequential:
    """A :class:`fastnn.Sequential` holding the layers and weights of a ``torch.nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        Of ``nn.Linear`` (with or without bias; float32 or float64, all the
        same dtype), ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.Tanh``,
        ``nn.Sigmoid`` and ``nn.Identity`` modules, at least one Linear.
        The weights are copied (``W = weight.T``), bit for bit.

    Returns
    -------
    Sequential
        In the dtype of the Linear layers; it predicts exactly as the
        network it came from did if that came from :func:`to_torch`.

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError
        If ``module`` is not an ``nn.Sequential``, holds any other module
        (subclasses included: their forward may differ), or weights of
        another dtype or of two dtypes.
    ValueError
        If it holds no Linear layer or the sizes do not chain.
    """
    torch = _import("torch", "torch")
    if type(module) is not torch.nn.Sequential:
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    dtypes: set = set()
    layers = [_layer_from_torch(torch, i, child, dtypes) for i, child in enumerate(module)]
    if not dtypes:
        raise ValueError("module must hold at least one nn.Linear layer")
    if len(dtypes) > 1:
        raise TypeError("module's nn.Linear layers must all have the same dtype, got float32 and float64")
    return Sequential(layers, dtype=dtypes.pop())


# -- scikit-learn ------------------------------------------------------------------------


def _not_fitted(estimator) -> Exception:
    message = (f"This {type(estimator).__name__} instance is not fitted yet (it has no coefs_): "
               f"call fit before exporting it")
    try:
        from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - an estimator without scikit-learn
        return ValueError(message)
    return NotFittedError(message)


def _read_mlp(estimator) -> tuple[list, list, str]:
    """The checked ``coefs_``, ``intercepts_`` and hidden ``activation`` of a fitted MLP estimator."""
    if not (hasattr(estimator, "hidden_layer_sizes") and hasattr(estimator, "activation")):
        raise TypeError(f"estimator must be a fitted MLPRegressor or MLPClassifier (scikit-learn's or fastnn's) "
                        f"or a fastnn.Sequential, got {type(estimator).__name__}")
    try:
        coefs, intercepts = list(estimator.coefs_), list(estimator.intercepts_)
        out = estimator.out_activation_
    except AttributeError:
        raise _not_fitted(estimator) from None
    if estimator.activation not in _SKLEARN_ACTIVATIONS:
        raise ValueError(f"estimator.activation must be one of {tuple(_SKLEARN_ACTIVATIONS)}, "
                         f"got {estimator.activation!r}")
    if out not in _SKLEARN_OUTPUTS:
        raise ValueError(f"estimator.out_activation_ must be one of {_SKLEARN_OUTPUTS}, got {out!r}")
    if not coefs or len(coefs) != len(intercepts):
        raise ValueError(f"estimator must have as many coefs_ as intercepts_ (at least one), "
                         f"got {len(coefs)} and {len(intercepts)}")
    coefs = [np.asarray(W) for W in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"estimator.coefs_[{i}] and intercepts_[{i}] must have shapes (n_in, n_out) and "
                             f"(n_out,), got {W.shape} and {b.shape}")
    return coefs, intercepts, estimator.activation


def from_sklearn(estimator) -> Sequential:
    """A :class:`fastnn.Sequential` computing a fitted MLP estimator's outputs.

    Reads scikit-learn's standard attributes, so it works on
    ``sklearn.neural_network.MLPRegressor``/``MLPClassifier`` and on
    fastnn's own estimators alike: ``coefs_`` (each ``W``, (n_in, n_out)),
    ``intercepts_`` (each ``b``), ``activation`` (the hidden layers':
    ``"identity"``, ``"relu"``, ``"tanh"``, ``"logistic"``) and
    ``out_activation_``. The network is ``Dense -> activation`` per hidden
    layer and a linear ``Dense`` output (no layer for "identity"): it
    outputs a regressor's predictions and a classifier's logits, whose
    ``predict_proba`` (softmax, or the sigmoid of scikit-learn's single
    binary output) are the estimator's. The weights are copied bit for bit,
    in the estimator's dtype (float32 if all its arrays are, else float64),
    so the new model trains on from where the estimator stopped.

    Parameters
    ----------
    estimator : fitted MLPRegressor or MLPClassifier

    Returns
    -------
    Sequential

    Raises
    ------
    TypeError
        If ``estimator`` is not an MLP estimator.
    sklearn.exceptions.NotFittedError (a ValueError)
        If it is not fitted.
    ValueError
        If its attributes are not an MLP's (an unknown activation, shapes
        that do not chain).
    """
    coefs, intercepts, activation = _read_mlp(estimator)
    float32 = all(array.dtype == np.float32 for array in coefs + intercepts)
    hidden = _SKLEARN_ACTIVATIONS[activation]
    layers: list = []
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        layers.append(_dense(W, b))
        if i < len(coefs) - 1 and hidden is not None:
            layers.append(hidden())
    return Sequential(layers, dtype=np.float32 if float32 else np.float64)
