"""Time again, side by side, the rows of an asv ratio table below a floor.

asv times each (benchmark, parameters) row in its own pass, minutes apart from
its reference twin; on a shared or frequency-stepping machine a row of a few
microseconds can land below 1.0 by noise alone. This script takes every row of
``docs/results/asv_ratios.json`` (or ``--json PATH``) whose ratio is below
``--floor`` and times the benchmark's fastnn and reference implementations
alternately in one process (``--rounds`` rounds of ``--calls`` calls each),
then prints the median time of each and the median of the per-round ratios
(reference time / fastnn time). With ``--write`` it also stores them in the
rows of that file (``rerun_fastnn_s``, ``rerun_reference_s``, ``rerun_ratio``,
``rerun_rounds``), where the documentation's table shows them beside asv's. Run
it from the repository's root, in the environment fastnn is installed in,
pinned to one core as the asv run was::

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/rerun_rows.py --write
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rerun(benchmark: str, params: str, rounds: int, calls: int) -> tuple[float, float, float]:
    """(fastnn median s, reference median s, median ratio) of one row, alternating."""
    module_name, class_name, method = benchmark.split(".")
    module = importlib.import_module(f"benchmarks.{module_name}")
    suite = getattr(module, class_name)
    args = [part.strip() for part in params.split(",")]
    bound = {}
    for impl in ("fastnn", "reference"):
        instance = suite()
        instance.setup(*args, impl)
        bound[impl] = (getattr(instance, method), (*args, impl))
    times: dict[str, list[float]] = {"fastnn": [], "reference": []}
    for _ in range(rounds):
        for impl, (function, call_args) in bound.items():
            start = time.perf_counter()
            for _ in range(calls):
                function(*call_args)
            times[impl].append((time.perf_counter() - start) / calls)
    ratios = [ref / fast for fast, ref in zip(times["fastnn"], times["reference"])]
    return statistics.median(times["fastnn"]), statistics.median(times["reference"]), statistics.median(ratios)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=str(ROOT / "docs" / "results" / "asv_ratios.json"))
    parser.add_argument("--floor", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="store the reruns in the rows of --json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    path = pathlib.Path(args.json)
    record = json.loads(path.read_text())
    rows = [row for row in record["rows"] if row["ratio"] < args.floor]
    below = 0
    for row in rows:
        fast, ref, ratio = rerun(row["benchmark"], row["params"], args.rounds, args.calls)
        below += ratio < args.floor
        row.update(rerun_fastnn_s=fast, rerun_reference_s=ref, rerun_ratio=ratio, rerun_rounds=args.rounds)
        print(f"{row['benchmark']} [{row['params']}]: asv {row['ratio']:.2f}; side by side fastnn "
              f"{fast * 1e6:.2f} us, reference {ref * 1e6:.2f} us, ratio {ratio:.2f}", flush=True)
    print(f"{len(rows)} rows below {args.floor} in the table; {below} still below side by side")
    if args.write:
        path.write_text(json.dumps(record, indent=1) + "\n")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
