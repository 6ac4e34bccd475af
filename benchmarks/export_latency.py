"""Latency of an exported network: the C header (compiled with -O2) against ``model.predict`` and onnxruntime.

For the tutorial's 1-3-1 network and the tiny 8-32-32-1 ReLU network, in
float32 and float64, times

* one sample: ``NAME_predict`` in C, ``model.predict`` on a (1, n) array,
  ``InferenceSession.run`` on a (1, n) array;
* a batch of ``--batch`` samples (default 1000): ``NAME_predict_batch``,
  ``model.predict``, ``session.run`` on the whole batch.

Each time is the median over ``--repeat`` blocks (each block at least
``--min-time`` seconds of back-to-back calls), the three alternating block
by block so that a neighbour's load on a shared machine falls on all of
them alike. The C is timed by a small harness (``clock_gettime``, inputs
cycling through 64 random rows, outputs summed into a value printed at the
end so that nothing is optimised away), compiled with ``cc -O2`` (no
``-march``: the portable build a user would ship). onnxruntime runs on one
thread (``intra_op_num_threads=1``), NumPy's BLAS on one thread
(threadpoolctl), as ``compare.py``. Run it on one core::

    taskset -c 0 python benchmarks/export_latency.py [--json docs/results/export.json]

Rows (``--json``, the envelope of docs/results): ``model``, ``dtype``, ``what``
(``"one sample"`` or ``"batch N"``), and ``c_us``, ``predict_us``,
``onnxruntime_us``: microseconds per call (per sample, or per whole batch);
null where that runner is missing (no C compiler, no onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastnn  # noqa: E402
from fastnn import export  # noqa: E402

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "net.h"

#define ROWS 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* argv: batch size, minimum seconds per block. Prints: us per one-sample call, us per batch call, a checksum. */
int main(int argc, char **argv)
{
    long batch = argc > 1 ? atol(argv[1]) : 1000, k, calls;
    double min_time = argc > 2 ? atof(argv[2]) : 0.05, start, single_us, batch_us, sum = 0;
    REAL *x = (REAL *)malloc((size_t)(batch > ROWS ? batch : ROWS) * NET_N_INPUTS * sizeof(REAL));
    REAL *y = (REAL *)malloc((size_t)batch * NET_N_OUTPUTS * sizeof(REAL));
    unsigned long state = 12345;
    if (!x || !y)
        return 1;
    for (k = 0; k < (batch > ROWS ? batch : ROWS) * NET_N_INPUTS; ++k) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        x[k] = (REAL)((double)(state >> 11) / 9007199254740992.0 * 4.0 - 1.0);
    }
    calls = 0;
    start = now();
    do {
        for (k = 0; k < 1000; ++k) {
            net_predict(x + (k % ROWS) * NET_N_INPUTS, y);
            sum += (double)y[0];
        }
        calls += 1000;
    } while (now() - start < min_time);
    single_us = (now() - start) / (double)calls * 1e6;
    calls = 0;
    start = now();
    do {
        net_predict_batch((size_t)batch, x, y);
        sum += (double)y[batch * NET_N_OUTPUTS - 1];
        ++calls;
    } while (now() - start < min_time);
    batch_us = (now() - start) / (double)calls * 1e6;
    printf("%.6f %.6f %g\n", single_us, batch_us, sum);
    free(x);
    free(y);
    return 0;
}
"""


def tiny_network(dtype) -> fastnn.Sequential:
    rng = np.random.default_rng(0)
    return fastnn.Sequential([fastnn.Dense(8, 32, seed=rng), fastnn.ReLU(), fastnn.Dense(32, 32, seed=rng),
                              fastnn.ReLU(), fastnn.Dense(32, 1, seed=rng)], dtype=dtype)


MODELS = {"tutorial 1-3-1": fastnn.datasets.tutorial_network, "tiny 8-32-32-1": tiny_network}


def build_c(model, directory: str) -> str | None:
    """The harness compiled with the model's header (cc -O2); None without a C compiler."""
    cc = next((shutil.which(name) for name in ("cc", "gcc", "clang") if shutil.which(name)), None)
    if cc is None:
        return None
    export.to_c(model, os.path.join(directory, "net.h"), name="net")
    with open(os.path.join(directory, "bench.c"), "w", encoding="utf-8") as file:
        file.write(HARNESS)
    real = "float" if model.dtype == np.float32 else "double"
    binary = os.path.join(directory, "bench")
    subprocess.run([cc, "-std=c99", "-O2", f"-DREAL={real}", "bench.c", "-o", binary, "-lm"], cwd=directory,
                   check=True)
    return binary


def microseconds_per_call(call, min_time: float) -> float:
    """Microseconds per call of ``call()``, over at least ``min_time`` seconds of calls."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            call()
        calls += 10
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls * 1e6


def make_session(model):
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(export.to_onnx(model).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def measure(model, batch: int, repeat: int, min_time: float, directory: str) -> dict:
    """Median microseconds per call of each runner: {(what, runner): us}."""
    binary = build_c(model, directory)
    session = make_session(model)
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(batch, model.in_features)).astype(model.dtype)
    one = X[:1].copy()
    times: dict = {}
    for _ in range(repeat):
        if binary is not None:
            out = subprocess.run([binary, str(batch), str(min_time)], capture_output=True, text=True, check=True)
            single, whole = map(float, out.stdout.split()[:2])
            times.setdefault(("one sample", "c_us"), []).append(single)
            times.setdefault((f"batch {batch}", "c_us"), []).append(whole)
        times.setdefault(("one sample", "predict_us"), []).append(microseconds_per_call(lambda: model.predict(one), min_time))
        times.setdefault((f"batch {batch}", "predict_us"), []).append(
            microseconds_per_call(lambda: model.predict(X), min_time))
        if session is not None:
            times.setdefault(("one sample", "onnxruntime_us"), []).append(
                microseconds_per_call(lambda: session.run(None, {"X": one}), min_time))
            times.setdefault((f"batch {batch}", "onnxruntime_us"), []).append(
                microseconds_per_call(lambda: session.run(None, {"X": X}), min_time))
    return {key: statistics.median(values) for key, values in times.items()}


def machine() -> dict:
    from fastnn import _walker

    cpu = platform.processor() or platform.machine()
    family = model_number = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    cpu = value
                elif key == "cpu family" and family is None:
                    family = value
                elif key == "model" and model_number is None:
                    model_number = value
    except OSError:
        pass
    if family is not None:
        cpu = f"{cpu}, family {family} model {model_number}"
    try:
        import threadpoolctl

        pools = [f"{p['internal_api']} {p['version']}" for p in threadpoolctl.threadpool_info()
                 if p.get("user_api") == "blas"]
        blas = ", ".join(pools) or None
    except ImportError:
        blas = None
    return {"cpu": cpu, "isa": _walker.ISA, "blas": blas, "python": platform.python_version(),
            "numpy": np.__version__, "threads": 1}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="samples of the batch rows (default 1000)")
    parser.add_argument("--repeat", type=int, default=7, help="blocks per runner; the median is kept (default 7)")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per block (default 0.05)")
    parser.add_argument("--json", metavar="PATH", help="write the rows, with the machine, as JSON")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)  # noqa: F841  (kept for the whole run)
    except ImportError:
        pass
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, make in MODELS.items():
            for dtype in ("float32", "float64"):
                times = measure(make(dtype=np.dtype(dtype)), args.batch, args.repeat, args.min_time, directory)
                for what in ("one sample", f"batch {args.batch}"):
                    row = {"model": name, "dtype": dtype, "what": what}
                    row.update({runner: times.get((what, runner)) for runner in
                                ("c_us", "predict_us", "onnxruntime_us")})
                    rows.append(row)
                    print(f"{name:16s} {dtype:8s} {what:11s} " + "  ".join(
                        f"{runner[:-3]} {row[runner]:10.3f} us" if row[runner] is not None else f"{runner[:-3]} -"
                        for runner in ("c_us", "predict_us", "onnxruntime_us")))
    if args.json:
        command = "python " + " ".join([os.path.relpath(__file__)] + (sys.argv[1:] if argv is None else list(argv)))
        envelope = {"command": command, "commit": git_commit(),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine(), "rows": rows}
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(envelope, file, indent=2)
            file.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
