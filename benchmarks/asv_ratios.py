"""fastnn against its NumPy reference, from one asv run: every row's ratio.

The asv suites time each kernel and each training step twice, with the
last parameter ``impl`` set to ``"fastnn"`` and to ``"reference"``. This
script reads one asv results file, pairs the two timings of every row and
prints ``reference time / fastnn time`` (above 1: fastnn is faster) as a
markdown table, then lists the rows below ``--floor``. With ``--output`` it
also writes the table to a file; with ``--json PATH`` it writes the rows in
the envelope of the documentation's results files (``docs/results/``: the
command, the commit, the date, the machine, then one row per benchmark and
parameters with ``fastnn_s``, ``reference_s`` and ``ratio``).

Run it after an asv run that saved its results, e.g. in the environment
fastnn is installed in::

    asv machine --yes
    asv run --python=same --set-commit-hash $(git rev-parse HEAD)
    python benchmarks/asv_ratios.py --json docs/results/asv_ratios.json

It exits with status 1 when a row is below the floor, so a script can tell.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import datetime
import math
import pathlib
import platform
import sys

IMPL = "impl"


def _newest_results(results_dir: pathlib.Path, machine: str | None) -> pathlib.Path:
    """The most recently written results file (of ``machine`` if given)."""
    machines = [results_dir / machine] if machine else [p for p in results_dir.iterdir() if p.is_dir()]
    files = [f for m in machines for f in m.glob("*.json") if f.name != "machine.json"]
    if not files:
        raise SystemExit(f"no asv results under {results_dir}: run asv with --set-commit-hash first")
    return max(files, key=lambda f: f.stat().st_mtime)


def _unquote(value: str) -> str:
    """asv stores parameter values as their repr (``"'float32'"``)."""
    try:
        return str(ast.literal_eval(value))
    except (ValueError, SyntaxError):
        return value


def paired_rows(results: dict, benchmarks: dict) -> list[dict]:
    """One row per benchmark and parameter set other than ``impl``: the two times and their ratio."""
    rows = []
    columns = results["result_columns"]
    for name, entry in sorted(results["results"].items()):
        spec = benchmarks.get(name, {})
        if spec.get("type") != "time" or IMPL not in spec.get("param_names", []):
            continue
        record = dict(zip(columns, entry))
        params = [[_unquote(v) for v in values] for values in record["params"]]
        names = spec["param_names"]
        times = dict(zip(itertools.product(*params), record["result"]))
        where = names.index(IMPL)
        for key in itertools.product(*(values for i, values in enumerate(params) if i != where)):
            def at(impl: str, key=key):
                full = list(key)
                full.insert(where, impl)
                value = times.get(tuple(full))
                return value if isinstance(value, (int, float)) and math.isfinite(value) else None

            fastnn, reference = at("fastnn"), at("reference")
            if fastnn is None or reference is None:
                continue
            rows.append({"benchmark": name, "params": ", ".join(key), "fastnn": fastnn,
                         "reference": reference, "ratio": reference / fastnn})
    return rows


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def markdown(rows: list[dict]) -> str:
    lines = ["| benchmark | params | fastnn | reference | reference / fastnn |", "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['benchmark']} | {row['params']} | {_time(row['fastnn'])} | "
                     f"{_time(row['reference'])} | {row['ratio']:.2f} |")
    return "\n".join(lines)


def _cpu() -> str:
    """The CPU as ``"<model name>, family F model M"`` (from /proc/cpuinfo), or what platform says."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", platform.machine())
    return f"{name}, family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"


def _blas() -> str | None:
    """NumPy's BLAS as threadpoolctl reports it (None without threadpoolctl)."""
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl looks for)
        import threadpoolctl
    except ImportError:
        return None
    pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')})" for p in pools) or None


def machine() -> dict:
    """The machine facts of a results file: this environment's (asv ran with --python=same)."""
    import numpy

    try:
        import fastnn

        isa = fastnn.show_config("dicts")["runtime"]["walker"]["isa"]
    except Exception:       # noqa: BLE001  (fastnn not importable here: say so, do not fail)
        isa = None
    return {"cpu": _cpu(), "isa": isa, "blas": _blas(), "python": platform.python_version(),
            "numpy": numpy.__version__, "threads": 1}


def envelope(rows: list[dict], results: dict, command: str) -> dict:
    """The rows in the results files' envelope; the date is when the run's last benchmark started."""
    started = [v for v in results.get("started_at", {}).values() if isinstance(v, (int, float))]
    when = (datetime.datetime.fromtimestamp(max(started) / 1000, datetime.timezone.utc) if started
            else datetime.datetime.now(datetime.timezone.utc))
    commit = results.get("commit_hash")
    return {"command": command, "commit": commit[:7] if commit else None,
            "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
            "rows": [{"benchmark": r["benchmark"], "params": r["params"], "fastnn_s": r["fastnn"],
                      "reference_s": r["reference"], "ratio": r["ratio"]} for r in rows]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", type=pathlib.Path, default=pathlib.Path(".asv/results"))
    parser.add_argument("--machine", help="asv machine name (default: the newest results of any)")
    parser.add_argument("--file", type=pathlib.Path, help="one results file (default: the newest)")
    parser.add_argument("--floor", type=float, default=1.0, help="list rows whose ratio is below this")
    parser.add_argument("--output", type=pathlib.Path, help="also write the table to this file")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows as JSON (docs/results/ envelope)")
    args = parser.parse_args(argv)
    path = args.file or _newest_results(args.results_dir, args.machine)
    results = json.loads(path.read_text())
    benchmarks = json.loads((args.results_dir / "benchmarks.json").read_text())
    rows = paired_rows(results, benchmarks)
    if not rows:
        raise SystemExit(f"{path} holds no fastnn/reference pairs")
    table = markdown(rows)
    print(f"asv results: {path} (commit {results.get('commit_hash', '?')[:10]})\n")
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    if args.json:
        command = " ".join(["python benchmarks/asv_ratios.py", *(sys.argv[1:] if argv is None else argv)])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(envelope(rows, results, command), indent=1) + "\n")
    below = [row for row in rows if row["ratio"] < args.floor]
    print(f"\n{len(rows)} rows, {len(below)} below {args.floor}")
    for row in below:
        print(f"  {row['benchmark']} [{row['params']}]: {row['ratio']:.2f}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
