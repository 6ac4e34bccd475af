"""A training step with Tanh or Sigmoid hidden layers against the same step with ReLU, side by side.

The network is asv's "tiny-256", "tiny-tanh" and "tiny-sigmoid" configs (benchmarks/common.py:
8-32-32-1, batch 256, MSE, SGD): the same Dense layers, data and loss, so the difference
between the steps is the activation's forward and backward (two hidden layers of 256 x 32
values). Each round times every step (the fastest of three batches of calls, the steps'
batches interleaved, in one process) and takes the ratio to the ReLU step of that round;
a row gives the median of those per-round ratios, their range, and the median time per
step. A round lasts a fraction of a second, so that a shared virtual machine changing
speed (which this one does) moves few rounds' ratios, and the median little (on the
machine of docs/results, the median of 41 rounds moved by up to 0.04 between runs).

Run with one BLAS thread on a quiet core::

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/activation_steps.py --json docs/results/activation_steps.json
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

try:
    from .common import make_data, make_loss, make_model, make_optimizer    # as benchmarks.activation_steps
    from .loss_ratios import announce, side_by_side_parser, write_record
except ImportError:
    from common import make_data, make_loss, make_model, make_optimizer     # run as a script
    from loss_ratios import announce, side_by_side_parser, write_record

#: activation -> asv's config of the 8-32-32-1 network at batch 256 with it.
CONFIGS = {"relu": "tiny-256", "tanh": "tiny-tanh", "sigmoid": "tiny-sigmoid"}
BATCH = 256


def stepper(config: str, dtype):
    """A function ``f(number)`` that runs ``number`` training steps of ``config`` on one
    batch and returns the seconds per step."""
    X, y = make_data(config, dtype)
    model, loss, optimizer = make_model(config, dtype), make_loss(config), make_optimizer(config)
    X, y = X[:BATCH], y[:BATCH]

    def run(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            model.train_step(X, y, loss, optimizer)
        return (time.perf_counter() - start) / number

    run(50)     # warm up (and plan)
    return run


def main(argv: list[str] | None = None) -> int:
    args = side_by_side_parser(__doc__.split("\n\n")[0], rounds=21, target=0.005).parse_args(argv)
    load = announce()
    rows = []
    for dtype in (np.float32, np.float64):
        steps = {name: stepper(config, dtype) for name, config in CONFIGS.items()}
        number = max(1, int(args.target / steps["relu"](20)))
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            best = dict.fromkeys(steps, float("inf"))
            for _ in range(3):      # the steps' batches interleaved: each step's fastest in the round
                for name, run in steps.items():
                    best[name] = min(best[name], run(number))
            for name, seconds in best.items():
                times[name].append(seconds)
        for name in ("tanh", "sigmoid"):
            ratios = [mine / relu for mine, relu in zip(times[name], times["relu"])]
            row = {"activation": name, "dtype": np.dtype(dtype).name, "config": CONFIGS[name],
                   "step_us": statistics.median(times[name]) * 1e6,
                   "relu_step_us": statistics.median(times["relu"]) * 1e6,
                   "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                   "rounds": args.rounds}
            rows.append(row)
            print(f"{name:8s} {row['dtype']:8s} step {row['step_us']:7.1f} µs  ReLU step {row['relu_step_us']:7.1f} µs  "
                  f"ratio (median of {args.rounds} rounds) {row['ratio']:.3f}  "
                  f"[{row['ratio_min']:.3f}, {row['ratio_max']:.3f}]", flush=True)
    if args.json:
        write_record(args.json, "python benchmarks/activation_steps.py", argv, rows, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
