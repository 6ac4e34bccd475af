"""How long ``import fastnn`` takes, next to PyTorch's and scikit-learn's MLP.

Run from a checkout (fastnn installed, or built in place)::

    python benchmarks/importtime.py                 # best of 7 fresh processes per statement
    python benchmarks/importtime.py --repeat 15 --json

For each statement (``import numpy``, ``import fastnn``, ``import torch``,
``import sklearn.neural_network``; the last two only where installed) it
starts ``python -X importtime -c STATEMENT`` ``--repeat`` times, each in a
fresh interpreter (the statements taking turns), and reports the best of
those runs (the least disturbed by whatever else the machine was doing) for

* **import time**: what ``-X importtime`` measures for the statement, the
  cumulative microseconds of every top-level import it triggers (the
  interpreter's own start-up imports, found by running ``-c pass``, are
  left out);
* **modules**: how many modules it leaves in ``sys.modules`` beyond start-up;
* **process**: the wall-clock time of the whole ``python -c STATEMENT``
  process minus that of ``python -c pass``, without ``-X importtime``.

NumPy is listed because fastnn needs it: most of ``import fastnn`` is
``import numpy``. Below the table, the modules of fastnn's own import that
took longest (self time). The table on stdout is markdown, ready to paste
into the README.

For asv, ``timeraw_import_fastnn`` times the same import in a fresh process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "numpy": "import numpy",
    "fastnn": "import fastnn",
    "torch": "import torch",
    "sklearn.neural_network": "import sklearn.neural_network",
}

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) for each line ``-X importtime`` printed."""
    rows = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    return rows


def run_once(python: str, statement: str, startup: set[str]) -> dict:
    """One fresh interpreter: -X importtime rows, then the plain process time."""
    code = f"{statement}\nimport sys\nprint(len(sys.modules))"
    done = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    rows, own, group = parse_importtime(done.stderr), [], []
    # -X importtime prints each import after the ones it triggered: the rows
    # up to a top-level row are that top-level import's.
    for row in rows:
        group.append(row)
        if row[2] == 0:
            if row[3] not in startup:
                own += group
            group = []
    top = [row for row in own if row[2] == 0]
    start = time.perf_counter()
    subprocess.run([python, "-c", statement], check=True)
    seconds = time.perf_counter() - start
    return {
        "import_us": sum(row[1] for row in top),
        "modules": int(done.stdout.strip()),
        "process_s": seconds,
        "rows": own,
    }


def startup_imports(python: str) -> tuple[set[str], int, float]:
    """Top-level modules the interpreter imports by itself, its module count and its process time."""
    done = subprocess.run([python, "-X", "importtime", "-c", "import sys; print(len(sys.modules))"],
                          capture_output=True, text=True, check=True)
    names = {row[3] for row in parse_importtime(done.stderr) if row[2] == 0}
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return names, int(done.stdout.strip()), min(times)


def measure(python: str, names: list[str], repeat: int) -> dict:
    startup, startup_modules, startup_s = startup_imports(python)
    installed = [name for name in names if name == "fastnn" or importlib.util.find_spec(name.partition(".")[0])]
    runs: dict[str, list[dict]] = {name: [] for name in installed}
    for _ in range(repeat):  # round robin, so that a slow spell of the machine hits every statement alike
        for name in installed:
            runs[name].append(run_once(python, STATEMENTS[name], startup))
    results: dict[str, dict | None] = {}
    for name in names:
        if name not in runs:
            results[name] = None
            continue
        fastest = min(runs[name], key=lambda run: run["import_us"])
        results[name] = {
            "statement": STATEMENTS[name],
            "import_ms": min(run["import_us"] for run in runs[name]) / 1000,
            "modules": statistics.median(run["modules"] for run in runs[name]) - startup_modules,
            "process_ms": (min(run["process_s"] for run in runs[name]) - startup_s) * 1000,
            "slowest_own": sorted(((row[0], row[3]) for row in fastest["rows"]), reverse=True)[:8],
        }
    return results


def report(results: dict, repeat: int) -> str:
    import platform

    lines = [
        f"`python -X importtime -c STATEMENT`, best of {repeat} fresh processes "
        f"(Python {platform.python_version()}, {platform.machine()}):",
        "",
        "| statement | import time (ms) | modules loaded | process time (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, result in results.items():
        if result is None:
            lines.append(f"| `{STATEMENTS[name]}` | not installed | | |")
            continue
        lines.append(f"| `{result['statement']}` | {result['import_ms']:.1f} | {result['modules']:.0f} "
                     f"| {result['process_ms']:.1f} |")
    fastnn = results.get("fastnn")
    if fastnn:
        lines += ["", "Longest single imports under `import fastnn` (self time, fastest run):", ""]
        lines += [f"    {us / 1000:7.2f} ms  {module}" for us, module in fastnn["slowest_own"]]
    return "\n".join(lines)


def timeraw_import_fastnn():
    """asv: ``import fastnn`` in a fresh interpreter."""
    return "import fastnn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per statement (default 7)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure (default: this one)")
    parser.add_argument("--only", nargs="+", choices=list(STATEMENTS), default=list(STATEMENTS),
                        help="statements to time (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = measure(args.python, args.only, args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
