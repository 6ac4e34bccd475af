"""The ``fastnn-results`` directive: a table (and a chart) drawn from ``docs/results/<name>.json``.

::

    .. fastnn-results:: compare
       :table: steps
       :chart:

Each results file (written by a benchmark script with ``--json``) holds the
command that made it, the commit, the date, the machine and its rows; the
directive prints that provenance above the table, so that no figure in the
documentation is typed by hand. A file that is absent gives one sentence
("not measured in this build") and the command that makes it, not an error.
The functions below take the parsed file and return reStructuredText lines,
so that they can be tested without Sphinx.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
GENERATED = Path(__file__).resolve().parent.parent / "_generated"

#: How each results file is made (said when it is absent).
COMMANDS = {
    "compare": "python benchmarks/compare.py --estimators --json docs/results/compare.json",
    "asv_ratios": "python benchmarks/asv_ratios.py --json docs/results/asv_ratios.json",
    "planner": "python benchmarks/planner.py --json docs/results/planner.json",
    "export": "python benchmarks/export_latency.py --json docs/results/export.json",
    "crossover": "taskset -c 1 python benchmarks/crossover.py --json docs/results/crossover.json",
    "dask_search": "python benchmarks/dask_search.py --json docs/results/dask_search.json",
    "ensemble": "python benchmarks/ensemble.py --json docs/results/ensemble.json",
    "loss_ratios": "OPENBLAS_NUM_THREADS=1 taskset -c 1 python benchmarks/loss_ratios.py "
                   "--json docs/results/loss_ratios.json",
    "stream_floor": "OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/stream_floor.py "
                    "--json docs/results/stream_floor.json",
    "activation_steps": "OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/activation_steps.py "
                        "--json docs/results/activation_steps.json",
}


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _fixed(value) -> str:
    """A ratio with two decimals (so that a column reads at a glance), or — when not measured."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.2f}"


def _ratio(other, mine) -> str:
    if other is None or mine is None or not mine:
        return "—"
    return f"{other / mine:.3g}x"


# The tables: a title and (header, cell(row)) per column; a column whose cells are all "—" is left out.
TABLES = {
    ("compare", "steps"): [
        ("config", lambda r: r.get("title") or r.get("config")), ("dtype", lambda r: r.get("dtype")),
        ("unit", lambda r: r.get("unit")),
        ("fastnn µs", lambda r: _number(r.get("fastnn_us"))), ("NumPy µs", lambda r: _number(r.get("numpy_us"))),
        ("PyTorch µs", lambda r: _number(r.get("torch_us"))),
        ("scikit-learn µs", lambda r: _number(r.get("sklearn_us"))),
        ("vs NumPy", lambda r: _ratio(r.get("numpy_us"), r.get("fastnn_us"))),
        ("vs PyTorch", lambda r: _ratio(r.get("torch_us"), r.get("fastnn_us"))),
        ("vs scikit-learn", lambda r: _ratio(r.get("sklearn_us"), r.get("fastnn_us"))),
    ],
    ("compare", "estimators"): [
        ("task", lambda r: r.get("task")), ("estimator", lambda r: r.get("estimator")),
        ("solver", lambda r: r.get("solver")),
        ("fastnn fit s", lambda r: _number(r.get("fastnn_s"))),
        ("scikit-learn fit s", lambda r: _number(r.get("sklearn_s"))),
        ("fit speed-up", lambda r: _ratio(r.get("sklearn_s"), r.get("fastnn_s"))),
        ("fastnn score", lambda r: _number(r.get("fastnn_score"), 4)),
        ("scikit-learn score", lambda r: _number(r.get("sklearn_score"), 4)),
    ],
    ("asv_ratios", "rows"): [
        ("benchmark", lambda r: r.get("benchmark")), ("params", lambda r: r.get("params")),
        ("fastnn s", lambda r: _number(r.get("fastnn_s"))), ("reference s", lambda r: _number(r.get("reference_s"))),
        ("reference / fastnn", lambda r: _number(r.get("ratio"))),
        ("side by side (rows below 1.0, rerun)", lambda r: _number(r.get("rerun_ratio"))),
    ],
    ("loss_ratios", "rows"): [
        ("loss", lambda r: r.get("loss")), ("dtype", lambda r: r.get("dtype")), ("shape", lambda r: r.get("shape")),
        ("fastnn µs", lambda r: _number(r.get("fastnn_us"))), ("reference µs", lambda r: _number(r.get("reference_us"))),
        ("reference / fastnn", lambda r: _number(r.get("ratio"))),
    ],
    ("stream_floor", "rows"): [
        ("kernel", lambda r: r.get("kernel")), ("dtype", lambda r: r.get("dtype")), ("shape", lambda r: r.get("shape")),
        ("fastnn µs", lambda r: _number(r.get("fastnn_us"))), ("reference µs", lambda r: _number(r.get("reference_us"))),
        ("reference / fastnn", lambda r: _fixed(r.get("ratio"))), ("copy µs", lambda r: _number(r.get("copy_us"))),
        ("fastnn's passes at copy speed µs", lambda r: _number(r.get("floor_us"))),
        ("reference / that", lambda r: _fixed(r.get("best_ratio"))),
        ("reference / one unchecked pass at copy speed", lambda r: _fixed(r.get("best_ratio_one_pass"))),
    ],
    ("activation_steps", "rows"): [
        ("activation", lambda r: r.get("activation")), ("dtype", lambda r: r.get("dtype")),
        ("step µs", lambda r: _number(r.get("step_us"))), ("ReLU step µs", lambda r: _number(r.get("relu_step_us"))),
        ("step / ReLU step (median)", lambda r: _fixed(r.get("ratio"))),
        ("lowest round", lambda r: _fixed(r.get("ratio_min"))), ("highest round", lambda r: _fixed(r.get("ratio_max"))),
    ],
    ("planner", "rows"): [
        ("config", lambda r: r.get("config")), ("dtype", lambda r: r.get("dtype")),
        ("planned", lambda r: r.get("planned")), ("planned µs", lambda r: _number(r.get("planned_us"))),
        ("best fixed", lambda r: r.get("best_fixed")), ("best fixed µs", lambda r: _number(r.get("best_fixed_us"))),
        ("planned / best fixed", lambda r: _number(r.get("ratio"))),
    ],
    ("export", "rows"): [
        ("model", lambda r: r.get("model")), ("dtype", lambda r: r.get("dtype")), ("what", lambda r: r.get("what")),
        ("C µs", lambda r: _number(r.get("c_us"))), ("predict µs", lambda r: _number(r.get("predict_us"))),
        ("onnxruntime µs", lambda r: _number(r.get("onnxruntime_us"))),
    ],
    ("dask_search", "rows"): [
        ("backend", lambda r: r.get("backend")), ("workers", lambda r: r.get("workers")),
        ("median s", lambda r: _number(r.get("median_s"))), ("first run s", lambda r: _number(r.get("first_s"))),
        ("cluster start s", lambda r: _number(r.get("startup_s"))),
        ("speed-up vs serial", lambda r: _fixed(r.get("speedup"))),
        ("best score", lambda r: _number(r.get("best_score"), 4)),
        ("scores equal serial's", lambda r: None if r.get("same_scores") is None else
         ("yes" if r.get("same_scores") else "no")),
    ],
    ("ensemble", "rows"): [
        ("scenario", lambda r: r.get("title") or r.get("scenario")),
        ("loop of Sequential.fit ms", lambda r: _number(None if r.get("loop_s") is None else r["loop_s"] * 1e3)),
        ("Ensemble.fit n_jobs=1 ms", lambda r: _number(None if r.get("ensemble_1_s") is None
                                                       else r["ensemble_1_s"] * 1e3)),
        ("Ensemble.fit ms (all cores)", lambda r: _number(None if r.get("ensemble_s") is None
                                                          else r["ensemble_s"] * 1e3)),
        ("speed-up, 1 thread", lambda r: _fixed(r.get("speedup_1"))),
        ("speed-up, all cores", lambda r: _fixed(r.get("speedup"))),
        ("vs PyTorch vmap", lambda r: _ratio(r.get("torch_vmap_s"), r.get("ensemble_s"))),
        ("vs scikit-learn loop", lambda r: _ratio(r.get("sklearn_loop_s"), r.get("ensemble_s"))),
        ("control: 2 threads / 1", lambda r: _fixed(r.get("control_speedup"))),
    ],
    ("ensemble", "memory"): [
        ("members", lambda r: r.get("n_members")),
        ("peak MB, building", lambda r: _number(r.get("build_peak_mb"))),
        ("peak MB, one epoch", lambda r: _number(r.get("fit_peak_mb"))),
        ("stacked parameters + gradients MB", lambda r: _number(r.get("stacked_buffers_mb"))),
    ],
    # Not a column per key: the ratio pivoted, a row per dtype and layer shape, a column per batch size
    # (crossover_lines), and the chart a heat map (heatmap).
    ("crossover", "rows"): None,
}


def escape(text) -> str:
    """``text`` as reStructuredText that reads as itself (no emphasis, references or substitutions)."""
    text = str(text)
    for char in "\\*_`|":
        text = text.replace(char, "\\" + char)
    return text


def load(name: str, where: Path = RESULTS):
    """The parsed ``<where>/<name>.json``, or None when it is absent."""
    path = where / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def provenance(record: dict) -> list[str]:
    """The sentence that says how, when and where a results file was made."""
    machine = {key: escape(value) for key, value in (record.get("machine") or {}).items()}
    commit = escape(record.get("commit") or "an unknown commit")
    if record.get("dirty"):
        commit += " (with uncommitted changes)"
    details = [f"CPU: {machine.get('cpu', 'unknown')}", f"fastnn's walker build: {machine.get('isa', 'unknown')}",
               f"BLAS: {machine.get('blas', 'unknown')}", f"Python {machine.get('python', '?')}",
               f"NumPy {machine.get('numpy', '?')}", f"{machine.get('threads', '?')} thread(s)"]
    if record.get("load_average") is not None:
        details.append(f"load average {record['load_average']} before the run (the times grow with it)")
    return [f"Measured with ``{record.get('command', '?')}`` at commit {commit}, {escape(record.get('date', '?'))}; "
            + "; ".join(details) + ".", ""]


def absent(name: str) -> list[str]:
    return [f"Not measured in this build: ``docs/results/{name}.json`` is absent "
            f"(``{COMMANDS.get(name, 'its benchmark script with --json')}`` makes it).", ""]


def table_lines(name: str, table: str, record: dict | None) -> list[str]:
    """reStructuredText for one table of a results file: provenance and a list-table, or one sentence."""
    if record is None:
        return absent(name)
    rows = record.get(table if table in ("estimators", "memory") else "rows") or []
    if not rows:
        return [f"``docs/results/{name}.json`` holds no {table} rows.", ""]
    if name == "crossover":
        return provenance(record) + crossover_lines(rows)
    columns = TABLES[(name, table)]
    cells = [[escape(cell(row)) if cell(row) is not None else "—" for _, cell in columns] for row in rows]
    keep = [i for i in range(len(columns)) if any(row[i] != "—" for row in cells)]
    lines = provenance(record) + [".. list-table::", "   :header-rows: 1", ""]
    for row in [[columns[i][0] for i in keep]] + [[row[i] for i in keep] for row in cells]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def _crossover_grid(rows: list) -> tuple[list, list, dict]:
    """The crossover rows as (layer shapes, batch sizes, {dtype: {(shape, batch): ratio}}), in the rows' order."""
    shapes, batches, grid = [], [], {}
    for row in rows:
        shape, batch = (row.get("in_features"), row.get("out_features")), row.get("batch")
        if shape not in shapes:
            shapes.append(shape)
        if batch not in batches:
            batches.append(batch)
        grid.setdefault(row.get("dtype"), {})[shape, batch] = row.get("ratio")
    return shapes, sorted(batches, key=lambda b: (b is None, b)), grid


def crossover_lines(rows: list) -> list[str]:
    """The crossover's list-table: own loops / BLAS per dtype and Dense(k, m) (rows) and batch size (columns)."""
    shapes, batches, grid = _crossover_grid(rows)
    lines = ["Own loops' time / BLAS's per training step (above 1: BLAS is faster).", "",
             ".. list-table::", "   :header-rows: 1", "",
             "   * - dtype", "     - Dense(k, m)"] + [f"     - n={escape(batch)}" for batch in batches]
    for dtype, ratios in grid.items():
        for k, m in shapes:
            if not any(((k, m), batch) in ratios for batch in batches):
                continue
            lines += [f"   * - {escape(dtype)}", f"     - {escape(k)}, {escape(m)}"]
            lines += [f"     - {_fixed(ratios.get(((k, m), batch)))}" for batch in batches]
    return lines + [""]


def heatmap(record: dict, path: Path) -> bool:
    """The crossover as a heat map: own loops / BLAS over layer shape x batch, one panel per dtype."""
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    shapes, batches, grid = _crossover_grid(record.get("rows") or [])
    if not grid:
        return False
    values = {dtype: np.array([[ratios.get(((k, m), b)) if ratios.get(((k, m), b)) else np.nan for b in batches]
                               for k, m in shapes], dtype=float) for dtype, ratios in grid.items()}
    logs = np.concatenate([np.log2(v[np.isfinite(v)]) for v in values.values()])
    if logs.size == 0:
        return False
    span = max(float(np.max(np.abs(logs))), 0.1)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    fig = Figure(figsize=(3.2 * len(values) + 1.5, 0.4 * len(shapes) + 1.8))
    axes = fig.subplots(1, len(values), squeeze=False, sharey=True)[0]
    for ax, (dtype, ratio) in zip(axes, values.items()):
        image = ax.imshow(np.log2(ratio), cmap="RdBu_r", norm=norm, aspect="auto")
        for i in range(len(shapes)):
            for j in range(len(batches)):
                if np.isfinite(ratio[i, j]):
                    ax.text(j, i, f"{ratio[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(np.log2(ratio[i, j])) > 0.6 * span else "black")
        ax.set_xticks(range(len(batches)), [f"n={b}" for b in batches])
        ax.set_yticks(range(len(shapes)), [f"Dense({k}, {m})" for k, m in shapes], fontsize=8)
        ax.set_xlabel("batch size")
        ax.set_title(str(dtype))
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9)
    ticks = [t for t in ((-3, -2, -1, 0, 1, 2, 3) if span >= 1 else (-0.5, -0.25, 0, 0.25, 0.5)) if abs(t) <= span]
    bar.set_ticks(ticks, labels=[f"{2.0 ** t:.3g}" for t in ticks])
    bar.set_label("own loops / BLAS (above 1: BLAS faster)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return True


def _speedups(record: dict) -> dict:
    """Per contender, the speed-ups over the rows (label -> list of other / fastnn)."""
    out = {}
    for key, label in (("numpy_us", "NumPy"), ("torch_us", "PyTorch"), ("sklearn_us", "scikit-learn")):
        values = [(row.get(key) / row["fastnn_us"]) if row.get(key) and row.get("fastnn_us") else None
                  for row in record["rows"]]
        if any(value is not None for value in values):
            out[label] = values
    return out


def chart(name: str, table: str, record: dict, path: Path) -> bool:
    """Draw the chart of one table to ``path`` (PNG); False when the table has nothing to draw."""
    from matplotlib.figure import Figure

    if name == "crossover":
        return heatmap(record, path)
    rows = record.get(table if table in ("estimators", "memory") else "rows") or []
    if not rows:
        return False
    labels = [f"{row.get('title') or row.get('config') or row.get('model') or row.get('benchmark')}, "
              f"{row.get('dtype') or row.get('params')}" for row in rows]
    if name in ("loss_ratios", "stream_floor"):
        labels = [f"{row.get('loss') or row.get('kernel')}, {row.get('dtype')}, {row.get('shape')}" for row in rows]
    if (name, table) == ("compare", "steps"):
        series, xlabel = _speedups(record), "speed-up of fastnn (other's time / fastnn's), log scale"
    elif (name, table) == ("compare", "estimators"):
        labels = [row.get("estimator") for row in rows]
        series = {"scikit-learn": [row["sklearn_s"] / row["fastnn_s"] if row.get("sklearn_s") and row.get(
            "fastnn_s") else None for row in rows]}
        xlabel = "fit speed-up of fastnn over scikit-learn"
    elif name == "dask_search":
        labels = [f"{row.get('backend')}, {row.get('workers')} worker(s)" for row in rows]
        series = {"speed-up": [row.get("speedup") for row in rows]}
        xlabel = "speed-up of the search over serial (serial's median / this backend's)"
    elif name == "activation_steps":
        labels = [f"{row.get('activation')}, {row.get('dtype')}" for row in rows]
        series = {"step / ReLU step": [row.get("ratio") for row in rows]}
        xlabel = "time of the step / time of the ReLU step (median of the rounds' ratios)"
    elif name in ("asv_ratios", "planner", "loss_ratios", "stream_floor"):
        series = {"ratio": [row.get("ratio") for row in rows]}
        xlabel = "reference / fastnn (above 1: fastnn faster)" if name != "planner" else \
            "planned / best fixed (1: the planner's pick is the best)"
    else:
        series = {key: [row.get(f"{key}_us") for row in rows] for key in ("c", "predict", "onnxruntime")}
        labels = [f"{row.get('model')}, {row.get('dtype')}, {row.get('what')}" for row in rows]
        xlabel = "µs per call, log scale"
    series = {key: values for key, values in series.items() if any(v is not None for v in values)}
    if not series:
        return False
    fig = Figure(figsize=(8, 0.28 * len(rows) * max(1, len(series)) ** 0.5 + 1.5))
    ax = fig.subplots()
    height = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        y = [i + k * height for i in range(len(rows))]
        ax.barh(y, [v if v is not None else 0 for v in values], height=height, label=label)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], labels, fontsize=7)
    ax.invert_yaxis()
    if (name, table) == ("compare", "steps") or name == "export":
        ax.set_xscale("log")
    if name != "export":
        ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return True


def setup(app):
    from docutils.parsers.rst import Directive, directives
    from docutils.statemachine import StringList
    from docutils import nodes

    class FastnnResults(Directive):
        required_arguments = 1
        option_spec = {"table": directives.unchanged, "chart": directives.flag}

        def run(self):
            name, table = self.arguments[0], self.options.get("table", "rows")
            if (name, table) not in TABLES:
                raise self.error(f"fastnn-results: no table {table!r} for {name!r}; known: {sorted(TABLES)}")
            record = load(name)
            self.state.document.settings.record_dependencies.add(str(RESULTS / f"{name}.json"))
            lines = table_lines(name, table, record)
            if record is not None and "chart" in self.options:
                if chart(name, table, record, GENERATED / f"{name}-{table}.png"):
                    lines += [f".. image:: /_generated/{name}-{table}.png", f"   :alt: {name} {table} chart", ""]
            node = nodes.container()
            self.state.nested_parse(StringList(lines, source=f"docs/results/{name}.json"), self.content_offset, node)
            return node.children

    app.add_directive("fastnn-results", FastnnResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
