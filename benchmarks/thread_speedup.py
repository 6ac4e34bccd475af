"""Two models trained in two Python threads against the same two trained one after the other.

Run from a checkout (fastnn installed, or built in place)::

    python benchmarks/thread_speedup.py
    python benchmarks/thread_speedup.py --dtype float32 --repeat 9 --scale 4

fastnn's steps and epochs run without the GIL, so independent models trained
in separate ``threading.Thread``s can overlap on separate cores. Each
*scenario* trains two models of ``benchmarks/common.py``, about equally long
alone:

``steps``
    ``tiny`` (8-32-32-1) by ``train_step`` on one batch of 32 (one nogil
    call per step, with the Python around it: locking, input checks), and
    ``demo-fit`` (1-16-1) by ``fit``, shuffled mini-batches of 16 (one nogil
    call per epoch);
``fit``
    the same two, both by ``fit`` (``tiny``: 1024 rows, batches of 32).

once one after the other in the main thread ("serial") and once each in its
own thread, started together ("threads"), from the same starting weights
every time. It prints the median wall-clock times (over ``--repeat`` runs,
interleaved), the speed-up (serial / threads) beside the best possible one,
(a + b) / max(a, b) for jobs of a and b seconds alone, and checks that the
threaded runs end with exactly the parameters and losses of the serial ones
(the exit status is 1 if not).

A *control* row runs the same harness on work that holds no GIL at all
(``hashlib.sha256`` of a 1 MiB buffer), to show how much parallelism the
machine gives at that moment: a virtual machine may have two CPUs but a
budget of less than two.

BLAS is limited to one thread (the thread variables are set before NumPy is
imported; threadpoolctl, when installed, limits the loaded libraries again),
so the only parallelism measured is the threads'.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before NumPy is imported: one thread for BLAS and OpenMP
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                      "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[_variable] = "1"

import argparse
import hashlib
import statistics
import sys
import threading
import time

import numpy as np

try:
    from . import common  # imported as benchmarks.thread_speedup (asv discovery, bench_threads)
except ImportError:
    import common  # run as a script: benchmarks/ is sys.path[0]

__all__ = ["SCENARIOS", "Job", "ControlJob", "make_jobs", "run_serial", "run_threaded",
           "same_results", "limit_blas_threads"]

#: scenario -> ((config, train_steps, fit_epochs) per job); each job is about
#: 35 ms alone on one core of a 2-core x86-64 VM (float64).
SCENARIOS = {
    "steps": (("tiny", 5000, 0), ("demo-fit", 0, 4000)),
    "fit": (("tiny", 0, 150), ("demo-fit", 0, 4000)),
}


class Job:
    """One model, its data, and how to train it; ``run()`` trains it and records the losses."""

    def __init__(self, config_name: str, dtype, *, steps: int = 0, epochs: int = 0):
        import fastnn

        if (steps > 0) == (epochs > 0):
            raise ValueError("a Job trains by train_step (steps > 0) or by fit (epochs > 0), not both")
        self.config = common.CONFIGS[config_name]
        self.model = common.make_model(self.config, dtype)
        self.X, self.y = common.make_data(self.config, dtype)
        self.steps, self.epochs = steps, epochs
        self.optimizer = fastnn.SGD(lr=self.config.lr)
        self.loss = fastnn.MSELoss()
        self.losses = None

    def describe(self) -> str:
        how = f"{self.steps} train_steps" if self.steps else f"{self.epochs} fit epochs"
        return f"{self.config.name} {self.config.shape} by {how} (batch {self.config.batch_size})"

    def run(self) -> None:
        model, batch = self.model, self.config.batch_size
        if self.epochs:
            self.losses = model.fit(self.X, self.y, loss=self.loss, optimizer=self.optimizer, epochs=self.epochs,
                                    batch_size=batch, shuffle=True, seed=0).loss
        else:
            X, y = self.X[:batch], self.y[:batch]
            self.losses = [model.train_step(X, y, self.loss, self.optimizer) for _ in range(self.steps)]

    def result(self):
        return self.model.get_parameters(), np.asarray(self.losses)


class ControlJob:
    """Work that runs without the GIL and is not fastnn: SHA-256 of a 1 MiB buffer, ``rounds`` times."""

    _DATA = b"\x5a" * (1 << 20)

    def __init__(self, rounds: int = 70):
        self.rounds = rounds
        self.digest = None

    def describe(self) -> str:
        return f"sha256 of 1 MiB x {self.rounds}"

    def run(self) -> None:
        for _ in range(self.rounds):
            self.digest = hashlib.sha256(self._DATA).digest()

    def result(self):
        return np.frombuffer(self.digest, dtype=np.uint8), np.zeros(0)


def make_jobs(scenario: str = "steps", dtype="float64", scale: float = 1.0) -> list:
    """The scenario's jobs, freshly built (same weights every time); ``scale`` multiplies the work."""
    if scenario == "control":
        return [ControlJob(max(1, round(70 * scale))) for _ in range(2)]
    return [Job(name, dtype, steps=round(steps * scale), epochs=round(epochs * scale))
            for name, steps, epochs in SCENARIOS[scenario]]


def run_serial(jobs) -> float:
    """Train the jobs one after the other in this thread; the wall-clock seconds."""
    start = time.perf_counter()
    for job in jobs:
        job.run()
    return time.perf_counter() - start


def run_threaded(jobs) -> float:
    """Train each job in its own thread, all started together; the wall-clock seconds."""
    errors = []
    barrier = threading.Barrier(len(jobs) + 1)

    def target(job):
        try:
            barrier.wait()
            job.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    barrier.wait()                 # the clock starts when every thread is ready to go
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def same_results(a, b) -> bool:
    """Exactly (bit for bit) the same parameters and losses, job by job."""
    return all(np.array_equal(x.result()[0], y.result()[0]) and np.array_equal(x.result()[1], y.result()[1])
               for x, y in zip(a, b, strict=True))


def limit_blas_threads(n_threads: int = 1):
    """Limit the loaded BLAS/OpenMP libraries with threadpoolctl; None if it is not installed."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.threadpool_limits(limits=n_threads)


def measure(scenario: str, dtype: str, scale: float, repeat: int) -> dict:
    """Median seconds of each job alone, of the serial and of the threaded run; and whether they agree."""
    run_serial(make_jobs(scenario, dtype, scale))      # warm-up
    alone, serial, threaded, identical = None, [], [], True
    for _ in range(repeat):
        jobs = make_jobs(scenario, dtype, scale)
        times = [run_serial([job]) for job in jobs]
        alone = [[t] for t in times] if alone is None else [a + [t] for a, t in zip(alone, times)]
        serial_jobs = make_jobs(scenario, dtype, scale)
        serial.append(run_serial(serial_jobs))
        threaded_jobs = make_jobs(scenario, dtype, scale)
        threaded.append(run_threaded(threaded_jobs))
        identical &= same_results(serial_jobs, threaded_jobs) and same_results(jobs, threaded_jobs)
    return {
        "jobs": [job.describe() for job in make_jobs(scenario, dtype, scale)],
        "alone": [statistics.median(times) for times in alone],
        "serial": statistics.median(serial),
        "threads": statistics.median(threaded),
        "identical": identical,
    }


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/thread_speedup.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS),
                        help="what to run (default: all)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each; medians are printed (5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job's work (1.0: ~35 ms a job)")
    parser.add_argument("--no-control", action="store_true", help="leave out the GIL-free control row")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be a positive integer, got {args.repeat}")
    if not args.scale > 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    return args


def main(argv=None) -> int:
    args = _parse_args(argv)
    limited = limit_blas_threads(1)
    import fastnn

    print(f"fastnn {fastnn.__version__}, NumPy {np.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {args.dtype}; BLAS limited to 1 thread "
          f"({'threadpoolctl' if limited is not None else 'thread variables only: threadpoolctl not installed'}); "
          f"medians of {args.repeat}")
    print()
    print("| scenario | jobs | job 1 alone | job 2 alone | serial | 2 threads | speed-up | best possible | identical |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    all_identical = True
    scenarios = list(args.scenario) + ([] if args.no_control else ["control"])
    for scenario in scenarios:
        result = measure(scenario, args.dtype, args.scale, args.repeat)
        a, b = result["alone"]
        identical = result["identical"]
        all_identical &= identical
        print(f"| {scenario} | {' + '.join(result['jobs'])} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms "
              f"| {result['serial'] * 1e3:.1f} ms | {result['threads'] * 1e3:.1f} ms "
              f"| {result['serial'] / result['threads']:.2f}x | {(a + b) / max(a, b):.2f}x "
              f"| {'yes' if identical else 'NO'} |", flush=True)
    print()
    print("identical: the threaded runs ended with exactly (np.array_equal) the parameters and losses of "
          "the serial runs" if all_identical else "MISMATCH: a threaded run ended differently from the serial one")
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
