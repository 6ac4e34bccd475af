"""The planner's pick next to every fixed choice, per config of ``benchmarks/common.py``, on this machine.

For each config and dtype, times fastnn's work of that config (one
``train_step`` on a batch, or ``fit_epochs`` epochs of ``fit``, as
``compare.py`` does) under every fixed choice: every walker build this CPU
runs, each with every BLAS threshold (``min_weights_tiled`` of 0: every
layer BLAS may take goes to BLAS; the builds' own 128, 4096 and 131072; and
never: every layer on fastnn's own loops), and under the plan the planner
measures (its cache in a fresh temporary directory unless
``--keep-cache``). Prints, per config, the best fixed choice, the
planner's pick, their times and the ratio pick / best (the issue's target:
at most 1.05 for every config).

Each time is the median (or with ``--stat min`` the fastest) over
``--repeat`` blocks of calls (each block at least ``--min-time`` seconds), the choices interleaved round-robin so that
a neighbour's load on a shared machine falls on all of them alike; rerun it
and compare. BLAS runs on ``--threads`` threads (default 1, as in
``compare.py``), the planner's own timings included::

    python benchmarks/planner.py [--dtype float64] [--configs tiny medium] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

THRESHOLDS = {"blas": 0, "128": 128, "4096": 4096, "131072": 131072, "tiles": None}


def _work(config, dtype):
    """A function doing the config's measured work once, on a fresh model (built under the current plan)."""
    model = common.make_model(config, dtype)
    X, y = common.make_data(config, dtype)
    loss, optimizer = common.make_loss(config), common.make_optimizer(config)
    if config.measure == "fit":
        return model, lambda: model.fit(X, y, loss=loss, optimizer=optimizer, epochs=config.fit_epochs,
                                        batch_size=config.batch_size, seed=0)
    Xb, yb = X[:config.batch_size], y[:config.batch_size]
    return model, lambda: model.train_step(Xb, yb, loss, optimizer)


def _block(run, min_time):
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            run()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / number
        number *= 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=common.DTYPE_NAMES, nargs="+", default=list(common.DTYPE_NAMES))
    parser.add_argument("--configs", nargs="+", default=list(common.CONFIG_NAMES))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.02)
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="per choice, the median block or the fastest (min: on a loaded machine, the "
                             "least disturbed by other work)")
    parser.add_argument("--keep-cache", action="store_true", help="use the user's plan cache (default: a fresh one)")
    parser.add_argument("--all", action="store_true", help="print every fixed choice's time too")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (threadpoolctl), for the planner's timing too (default 1, as compare.py)")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: BLAS runs with its default threads")
    else:
        limits = threadpool_limits(args.threads)  # noqa: F841  (kept for the whole run)
    if not args.keep_cache:
        os.environ["FASTNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastnn-planner-bench-")
    os.environ.pop("FASTNN_PLAN", None)

    import fastnn
    from fastnn import _planner, _walker

    print(f"CPU: {_planner._cpu_model()}; builds: {', '.join(_walker.BUILDS)}; {_planner._numpy_blas()}")
    print(f"fastnn {fastnn.__version__}; BLAS threads {args.threads}; {args.stat} of {args.repeat} blocks of >= {args.min_time * 1e3:g} ms, "
          "choices interleaved")
    print()
    print("| config | dtype | best fixed choice | best fixed µs | fixed plan µs | planner's pick | pick µs "
          "| pick / best | planning ms |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|")
    for config_name in args.configs:
        config = common.CONFIGS[config_name]
        for dtype_name in args.dtype:
            dtype = np.dtype(dtype_name)
            runs = {}
            for build in _walker.BUILDS:
                for label, threshold in THRESHOLDS.items():
                    with _planner.forced(lambda r, d, b=build, t=threshold: _planner.Plan(
                            b, tuple(_planner.TILES if t is None else t for _ in r), "forced")):
                        _, run = _work(config, dtype)
                    runs[f"{build} {label}"] = run
            os.environ["FASTNN_PLAN"] = "fixed"
            _, runs["fixed plan"] = _work(config, dtype)
            del os.environ["FASTNN_PLAN"]
            start = time.perf_counter()
            model, runs["planner"] = _work(config, dtype)
            planning = time.perf_counter() - start
            pick = f"{model._plan.build} " + "/".join(model._plan.layer_choices(model._net.plan))
            for run in runs.values():
                run()
            times: dict[str, list[float]] = {label: [] for label in runs}
            for _ in range(args.repeat):
                for label, run in runs.items():
                    times[label].append(_block(run, args.min_time))
            stat = statistics.median if args.stat == "median" else min
            med = {label: stat(values) * 1e6 for label, values in times.items()}
            fixed_choices = {k: v for k, v in med.items() if k not in ("planner", "fixed plan")}
            best = min(fixed_choices, key=lambda k: fixed_choices[k])
            print(f"| {config_name} | {dtype_name} | {best} | {med[best]:.4g} | {med['fixed plan']:.4g} | {pick} "
                  f"| {med['planner']:.4g} | {med['planner'] / med[best]:.2f} | {planning * 1e3:.0f} |", flush=True)
            if args.all:
                print("|   | all: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(fixed_choices.items(),
                                                                               key=lambda kv: kv[1])) + " | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
