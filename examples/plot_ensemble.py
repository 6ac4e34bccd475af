"""
A deep ensemble's mean and spread
=================================

A deep ensemble is several networks of one architecture, each initialised
and shuffled with its own seed, trained on the same data; where they agree
the prediction is trustworthy, where they spread apart it is not.
``fastnn.Ensemble`` trains all of them in one call (the members side by
side in compiled loops, on every core), and each member ends exactly as
``Sequential.fit`` would have trained it alone.

Here 16 members of a 1-16-1 network learn the tutorial's curve from noisy
samples on [0, 3]; outside that range (up to 4) there is no data, and the
members' spread shows it.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastnn
import fastnn.plot

X, y = fastnn.datasets.tutorial_samples(256, noise=0.05, seed=0)
layers = [fastnn.Dense(1, 16), fastnn.ReLU(), fastnn.Dense(16, 1)]
ens = fastnn.Ensemble(layers, 16, seed=0)
histories = ens.fit(X, y, optimizer=fastnn.SGD(lr=0.05, momentum=0.9), epochs=150, batch_size=16,
                    seed=list(range(16)))

# Member 3 is what Sequential.fit makes of the same start, seed and data.
alone = fastnn.Ensemble(layers, 16, seed=0)[3]
alone.fit(X, y, optimizer=fastnn.SGD(lr=0.05, momentum=0.9), epochs=150, batch_size=16, seed=3)
print("member 3 equals Sequential.fit:", np.allclose(ens[3].get_parameters(), alone.get_parameters(), rtol=1e-10))

# %%
# Every member's curve, their mean, and two standard deviations around it,
# on the tutorial's figure (``fastnn.plot.fit_1d`` draws the data, the target
# curve and one model: here member 0).

grid = np.linspace(0.0, 4.0, 400).reshape(-1, 1)
outputs = ens.predict(grid)                     # (16, 400)
mean, spread = outputs.mean(axis=0), outputs.std(axis=0)

ax = fastnn.plot.fit_1d(ens[0], X, y, curve=fastnn.datasets.tutorial_curve)
for member in outputs:
    ax.plot(grid[:, 0], member, color="tab:orange", lw=0.5, alpha=0.3)
ax.plot(grid[:, 0], mean, color="tab:red", lw=2, label="ensemble mean")
ax.fill_between(grid[:, 0], mean - 2 * spread, mean + 2 * spread, color="tab:red", alpha=0.2,
                label="mean ± 2 std")
ax.axvspan(3.0, 4.0, color="0.9", zorder=-1)
ax.set_xlim(0.0, 4.0)
ax.set_title("16-member deep ensemble on the tutorial's curve")
ax.legend(loc="upper left")
print(f"spread inside the data: {spread[grid[:, 0] <= 3].mean():.3f}, beyond it: {spread[grid[:, 0] > 3].mean():.3f}")
plt.show()
