"""asv suite: an Ensemble's fit against a loop of Sequential.fit calls, and its memory.

The scenarios of ``benchmarks/ensemble.py`` (run that script for the ratios
side by side, PyTorch and scikit-learn): ``demo`` (64 members of 1-16-1, 256
samples each, batch 16, 50 epochs) and ``tiny`` (16 members of 8-32-32-1,
1024 samples each, batch 32, 10 epochs), plain SGD, a seed per member.
``mode="loop"`` trains K Sequential models built beforehand, one after the
other; ``mode="ensemble"`` one Ensemble.fit on one thread, ``"threads"`` on
every core. Every sample trains from the same weights (``setup`` resets them).
"""

import numpy as np

from .ensemble import SCENARIOS, fit_ensemble, fit_loop, make_data, make_ensemble, peak_memory


class EnsembleFit:
    params = (list(SCENARIOS), ["loop", "ensemble", "threads"])
    param_names = ("scenario", "mode")
    number = 1
    repeat = (3, 10, 20.0)
    warmup_time = 0
    timeout = 300

    def setup(self, scenario, mode):
        self.scenario = SCENARIOS[scenario]
        self.ens = make_ensemble(self.scenario)
        self.start = self.ens.get_parameters()
        self.models = self.ens.members if mode == "loop" else None
        self.X, self.y = make_data(self.scenario)

    def time_fit(self, scenario, mode):
        if mode == "loop":
            fit_loop(self.models, self.start, self.scenario, self.X, self.y)
        else:
            fit_ensemble(self.ens, self.start, self.scenario, self.X, self.y, 1 if mode == "ensemble" else None)


class EnsembleMemory:
    """Peak memory of 10,000 members of 1-16-1: built, then one epoch on 256 shared samples."""

    timeout = 300

    def track_peak_mb(self):
        return peak_memory(10_000)["fit_peak_mb"]

    track_peak_mb.unit = "MB"

    def peakmem_build_and_fit(self):
        import fastnn

        X = np.linspace(0, 3, 256).reshape(-1, 1)
        ens = fastnn.Ensemble([fastnn.Dense(1, 16), fastnn.ReLU(), fastnn.Dense(16, 1)], 10_000, seed=0)
        ens.fit(X, np.sin(X[:, 0]), epochs=1, batch_size=16, seed=0, n_jobs=1)
