"""Where BLAS starts to pay: fastnn's own loops against the BLAS gemm, per layer shape.

Times ``Sequential.train_step`` of a one-Dense-layer network (k inputs, m
outputs, batch n) with every product forced onto fastnn's own loops, then
forced onto BLAS, single-threaded, and prints the ratio loops/BLAS (above 1:
BLAS is faster), for square layers and for narrow ones, on the walker build
this CPU runs (``FASTNN_ISA=avx2`` or ``baseline`` for a narrower one).
The walker's BLAS_MIN_WEIGHTS, BLAS_MIN_WIDTH and, per build,
BLAS_MIN_WEIGHTS_TILED (fastnn/_tile.h) are chosen from these tables::

    python benchmarks/crossover.py [--dtype float64]
    FASTNN_ISA=avx2 python benchmarks/crossover.py
"""

import argparse
import statistics
import time

import numpy as np

import fastnn


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        print("(threadpoolctl is not installed: BLAS may use several threads)")
    dtype = np.dtype(args.dtype)
    widths = [1, 3, 8, 16, 32, 64, 128, 256, 512]
    batches = [1, 8, 32, 256]
    rng = np.random.default_rng(0)
    model = fastnn.Sequential([fastnn.Dense(1, 1)])
    tiled = fastnn._walker.BLAS_MIN_WEIGHTS_TILED
    print(f"fastnn {fastnn.__version__}, {dtype.name}, walker {fastnn._walker.ISA} "
          f"(BLAS_MIN_WEIGHTS_TILED {tiled}), BLAS: {model._net.blas_source}")
    print("train_step time, own loops / BLAS (> 1: BLAS is faster); rows Dense(k, m), columns batch n\n")
    shapes = [(width, width) for width in widths]
    shapes += [(256, 1), (1, 256), (64, 1), (32, 4), (4, 32), (128, 2), (16, 8), (512, 10), (64, 256), (784, 512)]
    print("| k, m | " + " | ".join(f"n={n}" for n in batches) + " |")
    print("|---:|" + "---:|" * len(batches))
    for k, m in shapes:
        cells = [f"{loops_over_blas(k, m, n, dtype, rng):.2f}" for n in batches]
        print(f"| {k}, {m} | " + " | ".join(cells) + " |")


def loops_over_blas(k, m, n, dtype, rng):
    """train_step time of a Dense(k, m) at batch n: own loops forced / BLAS forced."""
    model = fastnn.Sequential([fastnn.Dense(k, m, seed=0)], dtype=dtype)
    X = rng.normal(size=(n, k)).astype(dtype)
    y = rng.normal(size=(n, m)).astype(dtype)
    model._net.blas_min_weights = 2**62
    loops = median_step_time(model, X, y)
    model._net.blas_min_weights, model._net.blas_min_width = 0, 0
    model._net.blas_min_weights_tiled = 0
    return loops / median_step_time(model, X, y)


if __name__ == "__main__":
    main()
