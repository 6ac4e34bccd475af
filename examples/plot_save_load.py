"""
Saving and loading, and training on where it stopped
====================================================

:func:`fastnn.save` writes a model, and with an optimizer the state the
model keeps for it (here Adam's moments and step count), into one versioned
``.npz`` file without pickle; :func:`fastnn.load` reads it back. Training
the loaded model continues exactly as the uninterrupted training would have.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastnn

X, y = fastnn.datasets.tutorial_samples(256, noise=0.05, seed=0)


def fresh():
    return fastnn.Sequential([fastnn.Dense(1, 16, seed=1), fastnn.ReLU(), fastnn.Dense(16, 1, seed=2)])


# Uninterrupted: 60 epochs.
straight, adam = fresh(), fastnn.Adam(lr=0.01)
whole = straight.fit(X, y, optimizer=adam, epochs=30, batch_size=16, seed=0).loss
whole += straight.fit(X, y, optimizer=adam, epochs=30, batch_size=16, seed=1).loss

# Interrupted: 30 epochs, save, load, 30 more.
model, adam = fresh(), fastnn.Adam(lr=0.01)
first = model.fit(X, y, optimizer=adam, epochs=30, batch_size=16, seed=0).loss
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "net.npz"
    fastnn.save(model, path, optimizer=adam)
    print(f"saved {path.name}: {path.stat().st_size} bytes")
    loaded, loaded_adam = fastnn.load(path, with_optimizer=True)
print("loaded:", loaded.layers, loaded_adam)
print("same predictions:", np.array_equal(loaded.predict(X), model.predict(X)))
print("Adam's step count:", loaded.optimizer_state(loaded_adam)["step"])

second = loaded.fit(X, y, optimizer=loaded_adam, epochs=30, batch_size=16, seed=1).loss
print("continued exactly:", np.array_equal(loaded.get_parameters(), straight.get_parameters()))

# %%
# The two runs' losses, epoch by epoch: the loaded model picks up where the
# saved one stopped.

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(1, 61), whole, color="tab:blue", lw=4, alpha=0.4, label="uninterrupted")
ax.plot(np.arange(1, 31), first, color="tab:orange", label="before saving")
ax.plot(np.arange(31, 61), second, color="tab:red", label="after loading")
ax.axvline(30.5, color="black", ls="--", lw=1)
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("mean training loss")
ax.legend()
plt.show()
