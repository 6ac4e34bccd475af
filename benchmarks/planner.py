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

Choices that run the same code at the config's batch size (the same
build, and each Dense layer on BLAS or on fastnn's loops alike: with no
layer BLAS may take, every threshold is one path) are one *path*, timed
once: the "best fixed choice" is the fastest path (named by one of its
choices; ``--all`` lists them), the pick's time is its path's, and the
ratio pick / best is 1.00 where the planner picked the best path. The
planner's own model is timed too ("pick's model µs": against the pick's
path, the run's noise). Each time is the fastest (``--stat median``: the
median) of ``--repeat`` blocks of calls, each block at least
``--min-time`` seconds, the paths interleaved round-robin so that a
neighbour's load falls on all alike: on a shared core other work only adds
time, and the fastest short block is the least disturbed; and a block
counts the process's CPU time where that is less than the wall-clock time
(``--clock wall``: the wall clock only), so that time spent descheduled by
other work does not count at all. BLAS runs on
``--threads`` threads (default 1, as in ``compare.py``), the planner's own
timings included. The last line sums the planner's own cost (building the
planned models, from an empty cache). ``--json PATH`` writes the rows
(``docs/results/planner.json``)::

    taskset -c 0 python benchmarks/planner.py [--all] [--dtype float64] [--configs tiny medium] [--json PATH]
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


def _block(run, min_time, clock="least"):
    """Seconds per call of a block of calls lasting at least ``min_time``: by the wall clock, or
    (``"least"``) by the process's CPU time where that is less (a process descheduled by other
    work spends less CPU time than wall time; BLAS on several threads more)."""
    number = 1
    while True:
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(number):
            run()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if elapsed >= min_time:
            return (min(elapsed, cpu) if clock == "least" else elapsed) / number
        number *= 2


def _path(model, batch):
    """What a model runs at ``batch`` rows: its walker build and, per Dense row, BLAS or own loops.

    fastnn's rule (``use_blas`` of ``_kernels.pxi``): BLAS takes a Dense row of
    k inputs and m outputs when a BLAS was found, k * m >= blas_min_weights and
    min(k, m) >= blas_min_width and, at 8 rows or more, the row's
    row_blas_min_batch is reached (else, without one, k * m >=
    blas_min_weights_tiled). Two choices of one path run the same code."""
    net = model._net
    per_row = net.row_blas_min_batch
    on_blas = []
    for i, (kind, k, m) in enumerate(net.plan[:, :3].tolist()):
        if kind != 0:       # an activation row
            continue
        blas = net.uses_blas and k * m >= net.blas_min_weights and min(k, m) >= net.blas_min_width
        if blas and batch >= 8:
            blas = batch >= per_row[i] if per_row is not None else k * m >= net.blas_min_weights_tiled
        on_blas.append("blas" if blas else "own")
    return (model._plan.build, *on_blas)


def _machine(threads):
    """The results files' "machine" record."""
    import platform

    from fastnn import _planner, _walker

    blas = _planner.describe()["cache_key"]["blas"]
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            blas = f"{pools[0]['internal_api']} {pools[0]['version']} ({pools[0].get('architecture')})"
    except ImportError:
        pass
    return {"cpu": _planner.cpu_model(), "isa": _walker.ISA, "blas": blas, "python": platform.python_version(),
            "numpy": np.__version__, "threads": threads}


def _write_json(path, argv, rows, threads):
    import datetime
    import json
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        commit = None
    data = {"command": " ".join(["python", "benchmarks/planner.py", *argv]), "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(threads), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=common.DTYPE_NAMES, nargs="+", default=list(common.DTYPE_NAMES))
    parser.add_argument("--configs", nargs="+", default=list(common.CONFIG_NAMES))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.002)
    parser.add_argument("--stat", choices=("median", "min"), default="min",
                        help="per path, the fastest block (default: on a shared machine, the least disturbed "
                             "by other work) or the median one")
    parser.add_argument("--clock", choices=("least", "wall"), default="least",
                        help="per block, the lesser of wall-clock and process CPU time (default: time spent "
                             "descheduled by other work does not count), or the wall clock")
    parser.add_argument("--rerun", type=int, default=0, metavar="N",
                        help="where the pick is more than 5%% slower than the best path, time every path of that "
                             "row again (--repeat more blocks each, pooled with the first), up to N times")
    parser.add_argument("--keep-cache", action="store_true", help="use the user's plan cache (default: a fresh one)")
    parser.add_argument("--all", action="store_true", help="print every path's time and the choices running it")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (threadpoolctl), for the planner's timing too (default 1, as compare.py)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH (docs/results/planner.json)")
    return parser.parse_args(argv)


def _fixed_models(config, dtype):
    """Every fixed choice (build x threshold) and the fixed plan: label -> (model, run)."""
    from fastnn import _planner, _walker

    runs = {}
    for build in _walker.BUILDS:
        for label, threshold in THRESHOLDS.items():
            with _planner.forced(_planner.Plan(build, None, "forced")):
                model, run = runs[f"{build} {label}"] = _work(config, dtype)
            model._net.blas_min_weights_tiled = _planner.TILES if threshold is None else threshold
    os.environ["FASTNN_PLAN"] = "fixed"
    runs["fixed plan"] = _work(config, dtype)
    del os.environ["FASTNN_PLAN"]
    return runs


def _time_paths(runs, config, args):
    """Time each distinct path once (choices of one path run the same code), plus the planner's own
    model; interleaved round-robin. Returns (path -> labels, path -> µs, planner's model µs)."""
    paths = {}
    for label, (model, run) in runs.items():
        if label != "planner":
            paths.setdefault(_path(model, config.batch_size), []).append(label)
    paths.setdefault(_path(runs["planner"][0], config.batch_size), ["planner"])  # a mix no threshold makes
    timed = {path: runs[labels[0]][1] for path, labels in paths.items()} | {"planner": runs["planner"][1]}
    for run in timed.values():
        run()
    times = {key: [] for key in timed}
    stat = statistics.median if args.stat == "median" else min
    for attempt in range(1 + args.rerun):
        for _ in range(args.repeat):
            for key, run in timed.items():
                times[key].append(_block(run, args.min_time, args.clock))
        us = {key: stat(values) * 1e6 for key, values in times.items()}
        pick = us[_path(runs["planner"][0], config.batch_size)]
        if pick <= 1.05 * min(t for path, t in us.items() if set(paths.get(path, [])) - {"fixed plan", "planner"}):
            break
    return paths, us, us.pop("planner"), attempt


def _row(config_name, dtype_name, runs, config, args):
    paths, us, planner_model_us, reruns = _time_paths(runs, config, args)
    fixed = {path: t for path, t in us.items() if set(paths[path]) - {"fixed plan", "planner"}}
    best = min(fixed, key=lambda path: fixed[path])
    model = runs["planner"][0]
    pick_path = _path(model, config.batch_size)
    fixed_plan_path = _path(runs["fixed plan"][0], config.batch_size)
    name = lambda path: next(label for label in paths[path] if label not in ("fixed plan", "planner"))  # noqa: E731
    return {"config": config_name, "dtype": dtype_name,
            "planned": f"{model._plan.build} " + "/".join(model._plan.layer_choices(model._net.plan)),
            "planned_us": us[pick_path], "best_fixed": name(best), "best_fixed_us": fixed[best],
            "ratio": us[pick_path] / fixed[best], "fixed_plan_us": us[fixed_plan_path],
            "planned_model_us": planner_model_us, "planned_path": " ".join(pick_path),
            "best_fixed_path": " ".join(best), "same_path": pick_path == best, "reruns": reruns,
            "paths": {" ".join(path): {"us": t, "choices": paths[path]} for path, t in us.items()}}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv)
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

    print(f"CPU: {_planner.cpu_model()}; builds: {', '.join(_walker.BUILDS)}; {_planner.describe()['cache_key']['blas']}")
    print(f"fastnn {fastnn.__version__}; BLAS threads {args.threads}; {args.stat} of {args.repeat} blocks of "
          f">= {args.min_time * 1e3:g} ms per distinct path, paths interleaved; clock: {args.clock}")
    print()
    print("| config | dtype | best fixed choice | best µs | fixed plan µs | planner's pick | pick µs "
          "| pick / best | pick's model µs | planning ms |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---:|")
    rows, planning_total = [], 0.0
    for config_name in args.configs:
        config = common.CONFIGS[config_name]
        for dtype_name in args.dtype:
            runs = _fixed_models(config, np.dtype(dtype_name))
            start = time.perf_counter()
            runs["planner"] = _work(config, np.dtype(dtype_name))
            planning = time.perf_counter() - start
            planning_total += planning
            row = _row(config_name, dtype_name, runs, config, args)
            row["planning_ms"] = planning * 1e3
            rows.append(row)
            same = (" (same path)" if row["same_path"] else "") + (f" [{reruns} reruns]" if (reruns := row["reruns"]) else "")
            print(f"| {config_name} | {dtype_name} | {row['best_fixed']} | {row['best_fixed_us']:.4g} "
                  f"| {row['fixed_plan_us']:.4g} | {row['planned']}{same} | {row['planned_us']:.4g} "
                  f"| {row['ratio']:.2f} | {row['planned_model_us']:.4g} | {planning * 1e3:.0f} |", flush=True)
            if args.all:
                print("|   | paths: " + "; ".join(f"{path} {v['us']:.4g} ({', '.join(v['choices'])})" for path, v in
                                              sorted(row["paths"].items(), key=lambda kv: kv[1]["us"]))
                      + " | | | | | | | |")
    within = sum(row["ratio"] <= 1.05 for row in rows)
    print(f"\nwithin 5% of the best fixed choice: {within} of {len(rows)}; planning all of them took "
          f"{planning_total * 1e3:.0f} ms (model builds included)")
    if args.json:
        _write_json(args.json, argv, rows, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
