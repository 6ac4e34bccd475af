"""One GridSearchCV of fastnn.MLPClassifier on the digits, serially, on threads, on loky's processes and on Dask.

Run from a checkout (fastnn installed with its ``dask`` extra, and scikit-learn)::

    python benchmarks/dask_search.py
    python benchmarks/dask_search.py --repeat 5 --json docs/results/dask_search.json

The search: 32 candidates (``hidden_layer_sizes`` (32,) or (64,), ``alpha``
1e-4 to 1e-1, ``learning_rate_init`` 1e-3 to 3e-2; Adam, ``max_iter``
``--max-iter``, batches of 200) x 3 folds, 96 fits and the refit, on
scikit-learn's bundled digits (1797 images of 8 x 8 pixels scaled to [0, 1];
no download). It runs

``serial``
    ``GridSearchCV(n_jobs=1)``, in this process;
``threading``
    joblib's ``threading`` backend, two threads in this process: fastnn's
    compiled epochs run without the GIL, so the threads need no pickling and
    no process of their own (the Python around each epoch, and
    GridSearchCV's around each fit, holds it);
``loky``
    joblib's default, two worker processes (the estimator and the data are
    pickled to them; the workers are kept between runs);
``dask``
    joblib's ``dask`` backend on a ``distributed.LocalCluster`` of two
    single-threaded worker processes on 127.0.0.1, started once before the
    timed runs (its start-up time is a column of its own).

Each backend runs once untimed (``first_s``: the cold run, which starts
loky's workers and imports fastnn in them), then ``--repeat`` times; the
median is kept, and the speed-up is serial's median / the backend's. Every
run's ``cv_results_`` scores must equal the serial run's, or the script
exits with status 1. BLAS is limited to one thread in every process, so the
only parallelism measured is the backends'.

Rows: ``backend``, ``workers``, ``median_s``, ``first_s``, ``startup_s``
(the cluster's start, Dask only), ``speedup`` (serial / this), ``best_score``
and ``same_scores`` (the search's scores equal the serial ones).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"           # before NumPy loads its BLAS; inherited by every worker process

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastnn  # noqa: E402

GRID = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-3, 1e-2, 1e-1],
        "learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2]}
BACKENDS = ("serial", "threading", "loky", "dask")


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def search(max_iter: int, n_jobs: int):
    from sklearn.model_selection import GridSearchCV

    estimator = fastnn.MLPClassifier(max_iter=max_iter, batch_size=200, random_state=0)
    return GridSearchCV(estimator, GRID, cv=3, n_jobs=n_jobs)


def run(backend: str, X, y, max_iter: int, workers: int):
    """One fitted search with ``backend`` and its wall time in seconds."""
    import joblib

    if backend == "serial":
        start = time.perf_counter()
        fitted = search(max_iter, 1).fit(X, y)
        return fitted, time.perf_counter() - start
    n_jobs = -1 if backend == "dask" else workers
    with warnings.catch_warnings(), joblib.parallel_backend(backend, n_jobs=n_jobs):
        warnings.simplefilter("ignore")     # ConvergenceWarning: the short max_iter is on purpose
        start = time.perf_counter()
        fitted = search(max_iter, n_jobs).fit(X, y)
        return fitted, time.perf_counter() - start


def start_cluster(workers: int):
    """A LocalCluster of ``workers`` single-threaded processes on 127.0.0.1, its Client and its start-up time."""
    import distributed

    start = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    client.run(lambda: __import__("fastnn").MLPClassifier)     # the workers import fastnn and scikit-learn
    return cluster, client, time.perf_counter() - start


def measure(backend: str, X, y, args, serial_scores):
    """The row of one backend: a cold run, then ``args.repeat`` timed runs."""
    cluster = client = None
    startup = None
    if backend == "dask":
        cluster, client, startup = start_cluster(args.workers)
    try:
        fitted, first = run(backend, X, y, args.max_iter, args.workers)
        times, same = [], True
        scores = fitted.cv_results_["mean_test_score"]
        for _ in range(args.repeat):
            fitted, elapsed = run(backend, X, y, args.max_iter, args.workers)
            times.append(elapsed)
            same &= bool(np.array_equal(fitted.cv_results_["mean_test_score"], scores))
    finally:
        if client is not None:
            client.close()
            cluster.close()
    if serial_scores is not None:
        same &= bool(np.array_equal(scores, serial_scores))
    row = {"backend": backend, "workers": 1 if backend == "serial" else args.workers,
           "median_s": statistics.median(times), "first_s": first, "startup_s": startup,
           "best_score": float(fitted.best_score_), "same_scores": same}
    return row, scores


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backend; the median is kept (default 3)")
    parser.add_argument("--max-iter", type=int, default=20, help="epochs of each fit (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="threads or processes of the parallel backends "
                                                               "(default 2: never more than the cores)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH (docs/results/dask_search.json)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    # The short max_iter is on purpose: scikit-learn's ConvergenceWarning, here and in loky's workers.
    warnings.filterwarnings("ignore", message=".*Maximum iterations")
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    X, y = digits()
    n_candidates = int(np.prod([len(values) for values in GRID.values()]))
    print(f"GridSearchCV of fastnn.MLPClassifier on the digits {X.shape}: {n_candidates} candidates x 3 folds, "
          f"max_iter {args.max_iter}, median of {args.repeat}")
    rows, serial_scores = [], None
    for backend in ["serial"] + [name for name in args.backends if name != "serial"]:
        row, scores = measure(backend, X, y, args, serial_scores)
        if backend == "serial":
            serial_scores = scores
        rows.append(row)
    for row in rows:
        row["speedup"] = rows[0]["median_s"] / row["median_s"]
        startup = f", cluster start {row['startup_s']:.2f} s" if row["startup_s"] is not None else ""
        print(f"{row['backend']:10s} {row['workers']} worker(s): median {row['median_s']:7.2f} s "
              f"(first {row['first_s']:.2f} s{startup}), speed-up {row['speedup']:.2f}x, "
              f"best score {row['best_score']:.4f}, scores equal serial's: {row['same_scores']}")
    if args.json:
        write_json(args.json, argv, rows, load, args.workers)
        print(f"wrote {args.json}")
    return 0 if all(row["same_scores"] for row in rows) else 1


def write_json(path, argv, rows, load, workers: int):
    """The results file: the envelope of docs/results/*.json and the rows."""
    from benchmarks.export_latency import git_commit, machine

    record = {"command": " ".join(["python", "benchmarks/dask_search.py", *argv]), "commit": git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
              "machine": dict(machine(), threads=workers),
              "load_average": None if load is None else round(load, 2), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(record, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    sys.exit(main())
