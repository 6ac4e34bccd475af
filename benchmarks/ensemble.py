"""fastnn.Ensemble.fit against a loop of Sequential.fit calls (and PyTorch, scikit-learn).

Run from a checkout (fastnn installed, or built in place)::

    python benchmarks/ensemble.py
    python benchmarks/ensemble.py --repeat 7 --json docs/results/ensemble.json

Scenarios (each member has its own data set of ``n_samples`` rows, its own
shuffle seed; plain SGD):

``demo``
    64 members of the demo's 1-16-1 network (ReLU), 256 samples each,
    batch 16, 50 epochs (issue 13's first target: 4x a loop of
    ``Sequential.fit``).
``tiny``
    16 members of 8-32-32-1 (ReLU), 1024 samples each, batch 32, 10 epochs
    (the second target: 1.8x, both cores busy).

For each, the wall-clock time of ``Ensemble.fit`` (``n_jobs`` 1 and the
default, every core this process may use) against a loop of K
``Sequential.fit`` calls on models built beforehand (not timed), from the
same starting weights each time; the median of ``--repeat`` interleaved
runs. The runs are checked to end with the same parameters (the exit status
is 1 if not). When installed, also PyTorch's ``torch.func.stack_module_state``
+ ``vmap`` ensemble trained the same way (one optimizer over the stacked
parameters, the same batches) and a loop of scikit-learn ``MLPRegressor``
fits (solver "sgd", no momentum, the same epochs; timed on a few members
and scaled to K).

Memory: the peak (``tracemalloc``, which NumPy reports its buffers to) of
building an ensemble of 10,000 members of 1-16-1 and training it one epoch
on 256 shared samples, beside the size of its stacked buffers.

A *control* per scenario (``control_speedup``) times SHA-256 of 1 MiB, which
holds no GIL, in two threads against one after the other: the parallelism
the machine gives at that moment (2.0 on two free cores), to read the
``n_jobs`` column against.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before NumPy is imported: one thread for BLAS and OpenMP
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                      "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[_variable] = "1"

import argparse
import datetime
import json
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

__all__ = ["SCENARIOS", "Scenario", "make_ensemble", "make_data", "fit_ensemble", "fit_loop", "peak_memory"]


@dataclass(frozen=True)
class Scenario:
    name: str
    sizes: tuple
    n_members: int
    n_samples: int
    batch_size: int
    epochs: int
    lr: float
    title: str


SCENARIOS = {
    "demo": Scenario("demo", (1, 16, 1), 64, 256, 16, 50, 0.1,
                     "64 members of 1-16-1, 256 samples each, batch 16, 50 epochs, SGD"),
    "tiny": Scenario("tiny", (8, 32, 32, 1), 16, 1024, 32, 10, 0.01,
                     "16 members of 8-32-32-1, 1024 samples each, batch 32, 10 epochs, SGD"),
}


def layers_of(sizes: tuple) -> list:
    import fastnn

    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fastnn.Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(fastnn.ReLU())
    return layers


def make_ensemble(scenario: Scenario, dtype=np.float64):
    import fastnn

    return fastnn.Ensemble(layers_of(scenario.sizes), scenario.n_members, dtype=dtype, seed=0)


def make_data(scenario: Scenario, dtype=np.float64, seed: int = 0) -> tuple:
    """Per-member data sets: X (K, n, in), y (K, n): the tutorial's curve (1 input) or a random tanh."""
    rng = np.random.default_rng(seed)
    K, n, n_in = scenario.n_members, scenario.n_samples, scenario.sizes[0]
    if n_in == 1:
        X = rng.uniform(0.0, 3.0, size=(K, n, 1))
        relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
        y = relu(relu(X) - relu(2 * X - 2) + relu(2 * X - 4))[..., 0] + rng.normal(0, 0.05, size=(K, n))
    else:
        X = rng.standard_normal((K, n, n_in))
        y = np.tanh(X @ (rng.standard_normal(n_in) / np.sqrt(n_in)))
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def fit_ensemble(ens, start: np.ndarray, scenario: Scenario, X, y, n_jobs) -> float:
    import fastnn

    ens.set_parameters(start)
    begin = time.perf_counter()
    ens.fit(X, y, optimizer=fastnn.SGD(scenario.lr), epochs=scenario.epochs, batch_size=scenario.batch_size,
            seed=list(range(scenario.n_members)), n_jobs=n_jobs)
    return time.perf_counter() - begin


def fit_loop(models: list, start: np.ndarray, scenario: Scenario, X, y) -> float:
    import fastnn

    for model, row in zip(models, start):
        model.set_parameters(row)
    begin = time.perf_counter()
    for k, model in enumerate(models):
        model.fit(X[k], y[k], optimizer=fastnn.SGD(scenario.lr), epochs=scenario.epochs,
                  batch_size=scenario.batch_size, seed=k)
    return time.perf_counter() - begin


def fit_torch(scenario: Scenario, start_models: list, X, y) -> float | None:
    """PyTorch's stacked ensemble (stack_module_state + vmap), one SGD over the stacked
    parameters, the same batches as fastnn's members (member k's orders from seed k)."""
    try:
        import torch
        from torch.func import functional_call, stack_module_state
    except ImportError:
        return None
    torch.set_num_threads(1)
    K, n, bs = scenario.n_members, scenario.n_samples, scenario.batch_size
    modules = []
    for model in start_models:
        mods = []
        for layer in model.layers:
            if hasattr(layer, "W"):
                lin = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
                    lin.bias.copy_(torch.from_numpy(layer.b.copy()))
                mods.append(lin)
            else:
                mods.append(torch.nn.ReLU())
        modules.append(torch.nn.Sequential(*mods))
    params, buffers = stack_module_state(modules)
    base = modules[0].to("meta")
    params = {name: p.detach().requires_grad_() for name, p in params.items()}
    optimizer = torch.optim.SGD(list(params.values()), lr=scenario.lr)

    def member_loss(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return torch.mean((out[:, 0] - yb) ** 2)

    batched = torch.vmap(member_loss)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    rngs = [np.random.default_rng(k) for k in range(K)]
    begin = time.perf_counter()
    for _ in range(scenario.epochs):
        orders = torch.from_numpy(np.stack([rng.permutation(n) for rng in rngs]))
        xs = torch.gather(Xt, 1, orders[..., None].expand(-1, -1, Xt.shape[2]))
        ys = torch.gather(yt, 1, orders)
        for s in range(0, n, bs):
            optimizer.zero_grad()
            # The sum of the members' means: each member's gradient is its own mean's.
            batched(params, buffers, xs[:, s:s + bs], ys[:, s:s + bs]).sum().backward()
            optimizer.step()
    return time.perf_counter() - begin


def fit_sklearn(scenario: Scenario, X, y, n_fit: int = 4) -> float | None:
    """A loop of scikit-learn MLPRegressor fits (solver sgd, no momentum, the same epochs), timed on
    ``n_fit`` members and scaled to K."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        return None
    import warnings

    hidden = scenario.sizes[1:-1]
    begin = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(n_fit):
            MLPRegressor(hidden_layer_sizes=hidden, solver="sgd", learning_rate_init=scenario.lr, momentum=0.0,
                         batch_size=scenario.batch_size, max_iter=scenario.epochs, alpha=0.0, tol=0.0,
                         n_iter_no_change=scenario.epochs + 1, random_state=k).fit(X[k], y[k])
    return (time.perf_counter() - begin) * scenario.n_members / n_fit


def peak_memory(n_members: int = 10_000, n_samples: int = 256) -> dict:
    """Peak traced memory of building ``n_members`` 1-16-1 members and one epoch on shared data."""
    import fastnn

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3, size=(n_samples, 1))
    y = np.sin(X[:, 0])
    tracemalloc.start()
    ens = fastnn.Ensemble(layers_of((1, 16, 1)), n_members, seed=0)
    built = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    ens.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=1, batch_size=16, seed=0, n_jobs=1)
    fitted = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stacked = ens._params.nbytes + ens._grads.nbytes
    return {"n_members": n_members, "build_peak_mb": built[1] / 2**20, "fit_peak_mb": fitted[1] / 2**20,
            "stacked_buffers_mb": stacked / 2**20, "per_member_kb": built[1] / n_members / 1024}


def control_speedup(repeat: int = 3, rounds: int = 40) -> float:
    """How much parallelism the machine gives now: SHA-256 of 1 MiB (no GIL held) ``rounds`` times
    twice, in two threads against one after the other (2.0: two free cores)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    data = b"\x5a" * (1 << 20)

    def work(_=None):
        for _ in range(rounds):
            hashlib.sha256(data).digest()

    ratios = []
    for _ in range(repeat):
        begin = time.perf_counter()
        work()
        work()
        serial = time.perf_counter() - begin
        begin = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(work, range(2)))
        ratios.append(serial / (time.perf_counter() - begin))
    return statistics.median(ratios)


def run(scenario: Scenario, repeat: int, others: bool) -> dict:
    ens = make_ensemble(scenario)
    start = ens.get_parameters()
    models = ens.members
    X, y = make_data(scenario)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    times = {"loop_s": [], "ensemble_1_s": [], "ensemble_s": []}
    for _ in range(repeat):
        times["loop_s"].append(fit_loop(models, start, scenario, X, y))
        times["ensemble_1_s"].append(fit_ensemble(ens, start, scenario, X, y, 1))
        times["ensemble_s"].append(fit_ensemble(ens, start, scenario, X, y, None))
    same = all(np.array_equal(model.get_parameters(), row) for model, row in zip(models, ens.get_parameters()))
    row = {"scenario": scenario.name, "title": scenario.title, "n_jobs": cores, "same_parameters": same,
           "control_speedup": control_speedup()}
    row.update({key: statistics.median(values) for key, values in times.items()})
    row["speedup_1"] = row["loop_s"] / row["ensemble_1_s"]
    row["speedup"] = row["loop_s"] / row["ensemble_s"]
    if others:
        torch_s = fit_torch(scenario, [fastnn_model_at(models[k], start[k]) for k in range(len(models))], X, y)
        sklearn_s = fit_sklearn(scenario, X, y)
        row["torch_vmap_s"] = torch_s
        row["sklearn_loop_s"] = sklearn_s
        row["vs_torch"] = None if torch_s is None else torch_s / row["ensemble_s"]
        row["vs_sklearn"] = None if sklearn_s is None else sklearn_s / row["ensemble_s"]
    return row


def fastnn_model_at(model, params):
    model.set_parameters(params)
    return model


def machine() -> dict:
    import platform

    from fastnn import _walker

    cpu = platform.processor() or platform.machine()
    family = number = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    cpu = value
                elif key == "cpu family" and family is None:
                    family = value
                elif key == "model" and number is None:
                    number = value
    except OSError:
        pass
    if family is not None:
        cpu = f"{cpu}, family {family} model {number}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "isa": _walker.ISA, "blas": None, "python": platform.python_version(),
            "numpy": np.__version__, "threads": cores}


def git_commit() -> tuple:
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here)
    except OSError:
        return None, None
    return (commit.stdout.strip() or None), bool(dirty.stdout.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs; the median is kept (default 5)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append", help="default: all")
    parser.add_argument("--no-others", action="store_true", help="skip PyTorch and scikit-learn")
    parser.add_argument("--memory-members", type=int, default=10_000)
    parser.add_argument("--json", metavar="PATH", help="write the rows, with the machine, as JSON")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for name in args.scenario or list(SCENARIOS):
        row = run(SCENARIOS[name], args.repeat, not args.no_others)
        rows.append(row)
        print(f"{row['title']}:")
        print(f"  loop of Sequential.fit {row['loop_s'] * 1e3:9.1f} ms")
        print(f"  Ensemble.fit n_jobs=1  {row['ensemble_1_s'] * 1e3:9.1f} ms  ({row['speedup_1']:.2f}x)")
        print(f"  Ensemble.fit n_jobs={row['n_jobs']}  {row['ensemble_s'] * 1e3:9.1f} ms  ({row['speedup']:.2f}x)")
        for key, label in (("torch_vmap_s", "PyTorch vmap"), ("sklearn_loop_s", "scikit-learn loop")):
            if row.get(key) is not None:
                print(f"  {label:22} {row[key] * 1e3:9.1f} ms  (Ensemble {row[key] / row['ensemble_s']:.1f}x faster)")
        print(f"  same parameters as the loop: {row['same_parameters']}; the machine's parallelism now "
              f"(two threads of SHA-256 against one): {row['control_speedup']:.2f}x")
    memory = peak_memory(args.memory_members)
    print(f"{memory['n_members']} members of 1-16-1: peak {memory['build_peak_mb']:.1f} MB to build, "
          f"{memory['fit_peak_mb']:.1f} MB during one epoch (stacked parameters and gradients "
          f"{memory['stacked_buffers_mb']:.1f} MB)")
    if args.json:
        commit, dirty = git_commit()
        record = {"command": "python benchmarks/ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "commit": commit, "dirty": dirty,
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                  "machine": machine(), "load_average": None if load is None else round(load, 2),
                  "rows": rows, "memory": [memory]}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
            out.write("\n")
    return 0 if all(row["same_parameters"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
