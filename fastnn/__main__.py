"""``python -m fastnn demo``: the tutorial, run; ``python -m fastnn info``: how fastnn was built; ``export``.

``demo`` first rebuilds the tutorial's hand-made network and checks it reproduces
the curve exactly; then trains a fresh 1-16-1 ReLU network on noisy
samples of the curve with mini-batch SGD, printing the loss as it falls,
and reports the final MSE against the true curve.

``info`` prints :func:`fastnn.show_config` (``--json`` for the same facts as JSON).

``export MODEL.npz --to c|onnx -o OUT`` reads a model saved by :func:`fastnn.save`
and writes it as one C99 header (:func:`fastnn.export.to_c`; ``--name``,
``--dtype``, ``--weights int8``) or an ONNX file (:func:`fastnn.export.to_onnx`; ``--opset``).
An error is printed on one line, exit status 1, and no file is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

import fastnn
from fastnn.datasets import TUTORIAL_X_RANGE, tutorial_curve, tutorial_network, tutorial_samples
from fastnn.plot import save_fit_figure
from fastnn.validation import check_learning_rate, check_positive_int

#: The demo's target: MSE against the true curve after training.
TARGET_MSE = 5e-3


def _positive_int(text: str) -> int:
    try:
        return check_positive_int(int(text), "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        return check_learning_rate(float(text), "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="rebuild the tutorial's network, then learn its curve from data")
    demo.add_argument("--hidden", type=_positive_int, default=16, help="hidden units (default 16)")
    demo.add_argument("--samples", type=_positive_int, default=256, help="noisy samples of the curve (default 256)")
    demo.add_argument("--noise", type=float, default=0.05, help="noise standard deviation (default 0.05)")
    demo.add_argument("--epochs", type=_positive_int, default=500, help="epochs (default 500)")
    demo.add_argument("--lr", type=_positive_float, default=0.1, help="SGD learning rate (default 0.1)")
    demo.add_argument("--batch-size", type=_positive_int, default=16, help="mini-batch size (default 16)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, weights and shuffling (default 0)")
    demo.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    demo.add_argument("--every", type=_positive_int, default=50, help="print the loss every N epochs (default 50)")
    demo.add_argument("--plot", metavar="FILE.png", help="save the data, target and model curves (needs fastnn[plot])")
    info = commands.add_parser("info", help="how this fastnn was built and what it runs on (fastnn.show_config())")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    export = commands.add_parser("export", help="write a saved model as a C header or an ONNX file")
    export.add_argument("model", metavar="MODEL.npz", help="a model saved by fastnn.save")
    export.add_argument("--to", choices=("c", "onnx"), required=True, help="the format")
    export.add_argument("-o", "--output", metavar="OUT", required=True, help="the file to write")
    export.add_argument("--name", default="fastnn_model", help="C: the prefix of the generated names")
    export.add_argument("--dtype", choices=("float32", "float64"), help="C: float or double (default: the model's)")
    export.add_argument("--weights", choices=("float", "int8"), default="float",
                        help="C: int8 weights with a scale per layer (default float)")
    export.add_argument("--opset", type=_positive_int, help="ONNX: the ai.onnx opset (default 17)")
    return parser


def demo(args: argparse.Namespace) -> int:
    dtype = np.dtype(args.dtype)
    grid = np.linspace(*TUTORIAL_X_RANGE, 1001).reshape(-1, 1)
    truth = tutorial_curve(grid)

    print(f"fastnn {fastnn.__version__}: the tutorial's network, Yhat = R(R(X) - R(2X - 2) + R(2X - 4))")
    hand_built = tutorial_network(dtype=dtype)
    error = np.max(np.abs(hand_built.predict(grid) - truth))
    print(hand_built)
    print(f"hand-built weights reproduce the curve on {grid.shape[0]} points: max |error| = {error:.3g}\n")

    rng = np.random.default_rng(args.seed)
    X, y = tutorial_samples(args.samples, noise=args.noise, seed=rng, dtype=dtype)
    model = fastnn.Sequential(
        [fastnn.Dense(1, args.hidden, seed=rng), fastnn.ReLU(), fastnn.Dense(args.hidden, 1, seed=rng)],
        dtype=dtype,
    )
    print(f"learning it from {args.samples} noisy samples (noise {args.noise}) with a fresh "
          f"1-{args.hidden}-1 ReLU network: SGD lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs")
    start = time.perf_counter()
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=args.lr), epochs=args.epochs,
                        batch_size=args.batch_size, seed=rng, verbose=args.every)
    seconds = time.perf_counter() - start
    final = float(np.mean((model.predict(grid).astype(np.float64) - truth) ** 2))
    verdict = "below" if final < TARGET_MSE else "NOT below"
    print(f"\ntrained in {seconds:.3f} s; loss {history.loss[0]:.4g} -> {history.loss[-1]:.4g}")
    print(f"final MSE against the true curve: {final:.3g} ({verdict} the target {TARGET_MSE:g})")

    if args.plot:
        save_fit_figure(args.plot, model, X, y, history, curve=tutorial_curve,
                        title=f"1-{args.hidden}-1 ReLU network, final MSE {final:.2g}")
        print(f"plot saved to {args.plot}")
    return 0


def info(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(fastnn.show_config(mode="dicts"), indent=2))
    else:
        fastnn.show_config()
    return 0


def export(args: argparse.Namespace) -> int:
    from fastnn import export as exporting

    try:
        model = fastnn.load(args.model)
        if args.to == "c":
            exporting.to_c(model, args.output, name=args.name, dtype=args.dtype, weights=args.weights)
        else:
            exporting.to_onnx(model, args.output, opset=args.opset)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"python -m fastnn export: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo(args)
    if args.command == "info":
        return info(args)
    if args.command == "export":
        return export(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
