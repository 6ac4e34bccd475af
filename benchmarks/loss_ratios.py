"""Time fastnn.ops' elementwise losses against their NumPy twins, side by side.

For each loss (``mse``, ``mae``, ``huber``, ``bce_with_logits``, ``poisson``),
dtype and shape, the fastnn call and the :mod:`fastnn.reference` call are
timed in alternating batches (fastnn, reference, fastnn, ...), so that a
change in the machine's load hits both; each side's time per call is the
minimum over the batches. The ratio is ``reference / fastnn`` (above 1:
fastnn is faster). The shapes are the network outputs the asv suite's
configurations pass the loss kernels (batch x outputs: 1x1, 16x1, 32x1,
256x1, 1000x1, 256x10) and two large arrays (256x512, 512x512).

Run with one BLAS thread on a quiet core, e.g.::

    OPENBLAS_NUM_THREADS=1 taskset -c 1 python benchmarks/loss_ratios.py --json docs/results/loss_ratios.json

``fastnn`` is whatever this interpreter imports (the script puts no source
tree on ``sys.path``), so another build's interpreter times that build.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

import numpy as np

import fastnn
from fastnn import ops, reference

try:
    from .asv_ratios import machine  # imported as benchmarks.loss_ratios (asv's discovery)
except ImportError:
    from asv_ratios import machine  # run as a script: benchmarks/ is sys.path[0]

SHAPES = [(1, 1), (16, 1), (32, 1), (256, 1), (1000, 1), (256, 10), (256, 512), (512, 512)]
LOSSES = ("mse", "mae", "huber", "bce_with_logits", "poisson")


def inputs(name: str, shape: tuple, dtype, rng) -> tuple[np.ndarray, np.ndarray]:
    """A prediction and a target for the loss ``name`` (valid values: y in [0, 1] for BCE, counts for Poisson)."""
    a = (rng.normal(size=shape) * 2).astype(dtype)
    if name == "bce_with_logits":
        y = rng.uniform(0, 1, size=shape).astype(dtype)
    elif name == "poisson":
        y = rng.poisson(2.0, size=shape).astype(dtype)
    else:
        y = rng.normal(size=shape).astype(dtype)
    return a, y


def calls(name: str):
    """(fastnn's call, the reference's call) of the loss ``name``."""
    if name == "huber":
        return (lambda a, y: ops.huber_loss(a, y, 1.0)), (lambda a, y: reference.huber_loss(a, y, 1.0))
    return getattr(ops, f"{name}_loss"), getattr(reference, f"{name}_loss")


def _batch(fn, a, y, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn(a, y)
    return (time.perf_counter() - start) / number


def side_by_side(mine, theirs, a, y, rounds: int, target_s: float) -> tuple[float, float]:
    """The minimum time per call of ``mine`` and ``theirs`` over ``rounds`` alternating batches."""
    mine(a, y), theirs(a, y)                                   # warm up
    number = max(1, int(target_s / max(_batch(theirs, a, y, 3), 1e-7)))
    best_mine = best_theirs = float("inf")
    for _ in range(rounds):
        best_mine = min(best_mine, _batch(mine, a, y, number))
        best_theirs = min(best_theirs, _batch(theirs, a, y, number))
    return best_mine, best_theirs


def write_record(path: pathlib.Path, script: str, argv: list[str] | None, rows: list[dict], load) -> None:
    """Write ``rows`` to ``path`` in the results files' envelope (the command, the commit and
    whether fastnn/ differs from it, the date, the machine, the load average); ``argv`` the
    script's arguments (None: the command line's)."""
    argv = sys.argv[1:] if argv is None else argv
    record = {"command": " ".join([script, *argv]), "commit": None,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine(), "load_average": None if load is None else round(load, 2), "rows": rows}
    try:
        import subprocess

        root = pathlib.Path(__file__).resolve().parent.parent
        record["commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"],
                                          capture_output=True, text=True, check=True).stdout.strip()
        record["dirty"] = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "fastnn"],
                                              capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


def side_by_side_parser(description: str, rounds: int, target: float) -> argparse.ArgumentParser:
    """The options of a side-by-side timing script: --rounds, --target and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating batches per side")
    parser.add_argument("--target", type=float, default=target, help="seconds per batch (about)")
    parser.add_argument("--json", type=pathlib.Path, help="write the rows as docs/results/ JSON")
    return parser


def announce():
    """Print which fastnn is timed and the load average (returned: None where unknown)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"fastnn from {pathlib.Path(fastnn.__file__).parent}; load average {load}")
    return load


def main(argv: list[str] | None = None) -> int:
    parser = side_by_side_parser(__doc__.split("\n\n")[0], rounds=7, target=0.01)
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=LOSSES)
    args = parser.parse_args(argv)
    load = announce()
    rng = np.random.default_rng(0)
    rows = []
    for name in args.losses:
        mine, theirs = calls(name)
        for dtype in (np.float32, np.float64):
            for shape in SHAPES:
                a, y = inputs(name, shape, dtype, rng)
                t_mine, t_theirs = side_by_side(mine, theirs, a, y, args.rounds, args.target)
                row = {"loss": name, "dtype": np.dtype(dtype).name, "shape": "x".join(map(str, shape)),
                       "fastnn_us": t_mine * 1e6, "reference_us": t_theirs * 1e6, "ratio": t_theirs / t_mine}
                rows.append(row)
                print(f"{name:16s} {row['dtype']:8s} {row['shape']:>8s}  fastnn {row['fastnn_us']:9.2f} µs  "
                      f"reference {row['reference_us']:9.2f} µs  ratio {row['ratio']:6.2f}", flush=True)
    below = [r for r in rows if r["ratio"] < 1.0]
    print(f"\n{len(rows)} rows, {len(below)} below 1.0")
    for r in below:
        print(f"  {r['loss']} {r['dtype']} {r['shape']}: {r['ratio']:.2f}")
    if args.json:
        write_record(args.json, "python benchmarks/loss_ratios.py", argv, rows, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
