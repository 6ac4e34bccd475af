"""Where BLAS starts to pay: fastnn's own loops against the BLAS gemm, per layer shape.

Times ``Sequential.train_step`` of a one-Dense-layer network (k inputs, m
outputs, batch n) with every product forced onto fastnn's own loops, then
forced onto BLAS, single-threaded, and prints the ratio loops/BLAS (above 1:
BLAS is faster), for square layers and for narrow ones, on the walker build
this CPU runs (``FASTNN_ISA=avx2`` or ``baseline`` for a narrower one).
The walker's BLAS_MIN_WEIGHTS, BLAS_MIN_WIDTH and, per build,
BLAS_MIN_WEIGHTS_TILED (fastnn/_tile.h) are chosen from these tables::

    python benchmarks/crossover.py [--dtype float64 float32]
    FASTNN_ISA=avx2 python benchmarks/crossover.py

``--json PATH`` also writes the rows, in the envelope of ``docs/results/``
(the command, the commit, the date, the machine), which the documentation
draws as a heat map; ``--shapes``, ``--batches`` and ``--repeat`` make a
shorter run. The file the documentation shows was made on one core::

    taskset -c 1 python benchmarks/crossover.py --dtype float64 float32 \
        --shapes 8x8 32x32 64x64 128x128 256x1 16x8 --batches 1 8 32 256 --repeat 3 \
        --json docs/results/crossover.json

Rows: ``dtype``, ``batch``, ``in_features``, ``out_features``, ``loops_us``
and ``blas_us`` (median µs of one train_step on each path) and ``ratio``
(loops_us / blas_us).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastnn  # noqa: E402


def median_step_time(model, X, y, repeat=7, min_time=0.01):
    loss, optimizer = fastnn.MSELoss(), fastnn.SGD(1e-6)
    model.train_step(X, y, loss, optimizer)
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            model.train_step(X, y, loss, optimizer)
        if time.perf_counter() - start >= min_time:
            break
        number *= 2
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            model.train_step(X, y, loss, optimizer)
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


WIDTHS = [1, 3, 8, 16, 32, 64, 128, 256, 512]
SHAPES = [(width, width) for width in WIDTHS] + [(256, 1), (1, 256), (64, 1), (32, 4), (4, 32), (128, 2), (16, 8),
                                                 (512, 10), (64, 256), (784, 512)]
BATCHES = [1, 8, 32, 256]


def _shape(text):
    try:
        k, m = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a layer shape is KxM (in x out features), not {text!r}") from None
    if k < 1 or m < 1:
        raise argparse.ArgumentTypeError(f"a layer shape needs positive sizes, not {text!r}")
    return k, m


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float64"], choices=("float64", "float32"))
    parser.add_argument("--shapes", nargs="+", type=_shape, default=SHAPES, metavar="KxM",
                        help="layer shapes, in x out features (default: square 1..512 and some narrow ones)")
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES, metavar="N",
                        help=f"batch sizes (default {' '.join(map(str, BATCHES))})")
    parser.add_argument("--repeat", type=int, default=7, help="timed blocks per path; the median is kept (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH (docs/results/crossover.json)")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        print("(threadpoolctl is not installed: BLAS may use several threads)")
    rng = np.random.default_rng(0)
    model = fastnn.Sequential([fastnn.Dense(1, 1)])
    tiled = fastnn._walker.BLAS_MIN_WEIGHTS_TILED
    rows = []
    for dtype in map(np.dtype, args.dtype):
        print(f"fastnn {fastnn.__version__}, {dtype.name}, walker {fastnn._walker.ISA} "
              f"(BLAS_MIN_WEIGHTS_TILED {tiled}), BLAS: {model._net.blas_source}")
        print("train_step time, own loops / BLAS (> 1: BLAS is faster); rows Dense(k, m), columns batch n\n")
        print("| k, m | " + " | ".join(f"n={n}" for n in args.batches) + " |")
        print("|---:|" + "---:|" * len(args.batches))
        for k, m in args.shapes:
            cells = []
            for n in args.batches:
                loops, blas = step_times(k, m, n, dtype, rng, args.repeat)
                rows.append({"dtype": dtype.name, "batch": n, "in_features": k, "out_features": m,
                             "loops_us": loops * 1e6, "blas_us": blas * 1e6, "ratio": loops / blas})
                cells.append(f"{loops / blas:.2f}")
            print(f"| {k}, {m} | " + " | ".join(cells) + " |")
        print()
    if args.json:
        write_json(args.json, argv, rows, load)
        print(f"wrote {args.json}")


def step_times(k, m, n, dtype, rng, repeat=7):
    """train_step times (seconds) of a Dense(k, m) at batch n: (own loops forced, BLAS forced)."""
    model = fastnn.Sequential([fastnn.Dense(k, m, seed=0)], dtype=dtype)
    X = rng.normal(size=(n, k)).astype(dtype)
    y = rng.normal(size=(n, m)).astype(dtype)
    model._net.blas_min_weights = 2**62
    loops = median_step_time(model, X, y, repeat=repeat)
    model._net.blas_min_weights, model._net.blas_min_width = 0, 0
    model._net.blas_min_weights_tiled = 0
    return loops, median_step_time(model, X, y, repeat=repeat)


def loops_over_blas(k, m, n, dtype, rng):
    """train_step time of a Dense(k, m) at batch n: own loops forced / BLAS forced."""
    loops, blas = step_times(k, m, n, dtype, rng)
    return loops / blas


def write_json(path, argv, rows, load=None):
    """The results file: the envelope of docs/results/*.json and the rows."""
    from benchmarks.export_latency import git_commit, machine

    words = ["python", "benchmarks/crossover.py", *argv]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) == 1:
        words = ["taskset", "-c", str(cpus[0]), *words]          # the run was pinned to one core
    try:
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip())
    except OSError:
        dirty = False
    record = {"command": " ".join(words), "commit": git_commit(), "dirty": dirty,
              "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
              "machine": machine(), "load_average": None if load is None else round(load, 2), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(record, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    main()
