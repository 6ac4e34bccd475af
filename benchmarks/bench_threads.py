"""asv suite: two independent models trained one after the other, or in two Python threads.

The same jobs as ``benchmarks/thread_speedup.py`` (run that script for the speed-up
and a GIL-free control): ``work="steps"`` trains ``tiny`` (8-32-32-1) by
``train_step`` and ``demo-fit`` (1-16-1) by ``fit``; ``work="fit"`` trains
both by ``fit``. ``mode="serial"`` runs the two jobs in this thread one
after the other, ``mode="threads"`` each in its own ``threading.Thread``,
started together; ``threads`` below ``serial`` is fastnn running without the
GIL. Each timing is one run (about 70 ms of work serially) on models built
afresh in ``setup``, so every sample trains from the same weights.
"""

from .thread_speedup import SCENARIOS, limit_blas_threads, make_jobs, run_serial, run_threaded


class Threads:
    params = (list(SCENARIOS), ["serial", "threads"])
    param_names = ("work", "mode")
    number = 1                 # one run per sample: setup builds fresh models before each
    repeat = (3, 10, 10.0)
    warmup_time = 0
    timeout = 120

    def setup(self, work, mode):
        self._limits = limit_blas_threads(1)      # asv.conf.json sets the thread variables too
        self.jobs = make_jobs(work, "float64")
        self.run = run_serial if mode == "serial" else run_threaded

    def teardown(self, work, mode):
        if self._limits is not None:
            self._limits.restore_original_limits()

    def time_two_models(self, work, mode):
        self.run(self.jobs)
