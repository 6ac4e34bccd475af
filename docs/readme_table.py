"""The README's speed table, drawn from ``docs/results/compare.json``, and its search table, from
``docs/results/dask_search.json`` (never typed by hand).

    python docs/readme_table.py            # print the table
    python docs/readme_table.py --write    # replace it in README.md, between its two markers

``tests/test_readme.py`` checks that the README holds exactly what this
prints, so after remaking the results file, run it with ``--write``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import fastnn_results  # noqa: E402

BEGIN, END = "<!-- speed table: made by docs/readme_table.py -->", "<!-- end of the speed table -->"
#: The rows shown: (config, dtype); the documentation's performance page has them all.
ROWS = [("tutorial-1000", "float64"), ("tutorial-1", "float64"), ("tiny", "float64"), ("tiny", "float32"),
        ("medium", "float32"), ("large", "float32"), ("demo-fit", "float64"), ("digits", "float32")]
DASK_BEGIN, DASK_END = "<!-- search table (docs/readme_table.py) -->", "<!-- end -->"
CONTENDERS = [("numpy_us", "NumPy"), ("torch_us", "PyTorch"), ("sklearn_us", "scikit-learn")]


def table(record: dict | None) -> str:
    """The README's block: a markdown table of fastnn's speed-ups and the line that says how it was made."""
    if record is None:
        return "Not measured in this build: `docs/results/compare.json` is absent."
    rows = {(row["config"], row["dtype"]): row for row in record["rows"]}
    shown = [rows[key] for key in ROWS if key in rows]
    others = [(key, label) for key, label in CONTENDERS if any(row.get(key) for row in shown)]
    lines = ["| config | dtype | fastnn µs | " + " | ".join(f"vs {label}" for _, label in others) + " |",
             "|---|---|---:|" + "---:|" * len(others)]
    for row in shown:
        cells = [row.get("title") or row["config"], row["dtype"], fastnn_results._number(row["fastnn_us"])]
        cells += [fastnn_results._ratio(row.get(key), row["fastnn_us"]) for key, _ in others]
        lines.append("| " + " | ".join(cells) + " |")
    machine = record.get("machine") or {}
    lines += ["", f"µs per training step (the demo fit: per 20-epoch fit); \"vs X\" = X's time / fastnn's. "
                  f"Made by `{record.get('command')}` at commit {record.get('commit')}, {record.get('date')}, "
                  f"on {machine.get('cpu')} ({machine.get('isa')} build, {machine.get('threads')} thread"
                  + (f"; load average {record['load_average']} before the run" if record.get("load_average") else "")
                  + ")."]
    return "\n".join(lines)


def dask_table(record: dict | None) -> str:
    """The README's search block: per backend the median time and the speed-up, and how they were made."""
    if record is None:
        return "Not measured in this build: `docs/results/dask_search.json` is absent."
    rows = record["rows"]
    lines = ["| | " + " | ".join(row["backend"] for row in rows) + " |", "|---|" + "---:|" * len(rows),
             "| median s | " + " | ".join(fastnn_results._number(row["median_s"]) for row in rows) + " |",
             "| speed-up | " + " | ".join(f"{fastnn_results._fixed(row['speedup'])}x" for row in rows) + " |"]
    machine = record.get("machine") or {}
    return "\n".join(lines + ["", f"`{record.get('command')}`, {record.get('commit')}, {machine.get('cpu')}, load "
                                   f"{record.get('load_average')}."])


def _replace(text: str, begin: str, end: str, block: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    block = table(fastnn_results.load("compare"))
    search = dask_table(fastnn_results.load("dask_search"))
    if "--write" not in argv:
        print(block, search, sep="\n\n")
        return 0
    readme = HERE.parent / "README.md"
    text = _replace(readme.read_text(encoding="utf-8"), BEGIN, END, block)
    readme.write_text(_replace(text, DASK_BEGIN, DASK_END, search), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
