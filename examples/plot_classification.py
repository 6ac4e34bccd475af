"""
Classification with Adam, a validation set and early stopping
=============================================================

A three-class problem in four dimensions: logits out of a Tanh network,
:class:`fastnn.CrossEntropyLoss` on integer labels (the softmax fused with
the loss), :class:`fastnn.Adam`, a fifth of the rows held out for
validation, and early stopping that restores the parameters of the best
epoch.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastnn

rng = np.random.default_rng(0)
X = rng.normal(size=(1200, 4))
labels = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 1)
X_test, labels_test = X[1000:], labels[1000:]
X, labels = X[:1000], labels[:1000]
print("class counts:", np.bincount(labels))

clf = fastnn.Sequential([fastnn.Dense(4, 32, seed=0), fastnn.Tanh(), fastnn.Dense(32, 3, seed=1)])
history = clf.fit(X, labels, loss=fastnn.CrossEntropyLoss(), optimizer=fastnn.Adam(lr=0.01),
                  epochs=300, batch_size=32, seed=0, validation_split=0.2,
                  early_stopping=True, patience=15)
print(f"ran {history.epochs} of 300 epochs; stopped after epoch {history.stopped_epoch}, "
      f"kept epoch {history.best_epoch} (validation loss {min(history.val_loss):.4f})")

# %%
# ``predict`` returns the logits; ``predict_proba`` their softmax.

proba = clf.predict_proba(X_test)
accuracy = np.mean(proba.argmax(axis=1) == labels_test)
print(f"held-out accuracy: {accuracy:.3f}")
print("first rows' probabilities:\n", np.round(proba[:3], 3))

# %%
# The training and validation loss per epoch, and the epoch that was kept.

fig, ax = plt.subplots(figsize=(7, 4))
epochs = np.arange(1, history.epochs + 1)
ax.plot(epochs, history.loss, color="tab:orange", label="training loss")
ax.plot(epochs, history.val_loss, color="tab:blue", label="validation loss")
ax.axvline(history.best_epoch, color="black", ls="--", lw=1, label=f"best epoch ({history.best_epoch})")
ax.set_xlabel("epoch")
ax.set_ylabel("cross-entropy")
ax.set_yscale("log")
ax.legend()
plt.show()
