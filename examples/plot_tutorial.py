"""
The tutorial, figure by figure
==============================

fastnn grew from a tutorial, *Building Neural Networks from Scratch*, that
fits a small ReLU network to a piecewise-linear curve by gradient descent on
the mean squared error. This example follows it section by section, and
draws each of its figures with fastnn itself: the hand-built network's
hidden units give the tutorial's three lines exactly, and the network that
gradient descent learns is drawn the same way.
"""

# %%
# 1. Why do we need a neural network?
# -----------------------------------
#
# Some data points are scattered on a plane, and a regression curve passes
# through them, showing how Y depends on X. We want to find the curve. When
# the relationship is not linear, a neural network can learn the mapping from
# X to Y through layers of units with non-linear activation functions.
#
# The points here are noisy samples of the tutorial's curve
# (:func:`fastnn.datasets.tutorial_samples`), and the curve through them is
# the output of the tutorial's network (built below).

import matplotlib.pyplot as plt
import numpy as np

import fastnn
import fastnn.plot

X, y = fastnn.datasets.tutorial_samples(64, noise=0.05, seed=0)
tutorial_net = fastnn.datasets.tutorial_network()

ax = fastnn.plot.fit_1d(tutorial_net, X, y)
ax.set_title("data points and the regression curve")
plt.show()

# %%
# A neural network is layers of units: each unit of a Dense layer sums its
# inputs with weights, adds a bias, and applies an activation function.
# :func:`fastnn.plot.network_diagram` draws any fastnn model this way; here
# a 1-4-4-1 ReLU network with fresh (random) weights, blue for positive
# weights and red for negative ones, the biases in the units.

network = fastnn.Sequential([fastnn.Dense(1, 4, seed=0), fastnn.ReLU(),
                             fastnn.Dense(4, 4, seed=1), fastnn.ReLU(), fastnn.Dense(4, 1, seed=2)])
ax = fastnn.plot.network_diagram(network, weights=False)
ax.set_title("a neural network: layers of units")
plt.show()

# %%
# 2. What is the goal of a neural network?
# ----------------------------------------
#
# To approximate the target output (blue) by adjusting its parameters until
# its own output (orange) is as close to it as it can be. A fresh network
# is far from it.

fresh = fastnn.Sequential([fastnn.Dense(1, 16, seed=1), fastnn.ReLU(), fastnn.Dense(16, 1, seed=2)])
ax = fastnn.plot.fit_1d(fresh, X, y, curve=fastnn.datasets.tutorial_curve)
ax.set_title("target output (blue) and a fresh network's output (orange)")
plt.show()

# %%
# 3. How to achieve it?
# ---------------------
#
# Build the target from simple pieces. Line 1 starts at the origin with
# slope 1; line 2 joins it at X = 1 with slope -2; line 3 joins at X = 2 with
# slope 2. Their sum is the target: slope 1, then 1 - 2 = -1, then
# -1 + 2 = 1. In the tutorial's network each line is one hidden unit, and
# :func:`fastnn.plot.hidden_units` draws each unit's contribution to the
# output (:func:`fastnn.plot.hidden_contributions` computes them).

ax = fastnn.plot.hidden_units(tutorial_net, (0, 3), curve=fastnn.datasets.tutorial_curve)
for line, name in zip(ax.get_lines(), ["line 1: R(X)", "line 2: -R(2X - 2)", "line 3: R(2X - 4)"]):
    line.set_label(name)
ax.legend(fontsize="small")
ax.set_title("the target built from three lines")
plt.show()

grid = np.linspace(0, 3, 7)
print("X:                 ", grid)
print("the three lines:\n", fastnn.plot.hidden_contributions(tutorial_net, grid).T + 0.0)   # + 0.0: no -0

# %%
# 4. What is an activation function?
# ----------------------------------
#
# It makes a network non-linear. ReLU outputs its input where it is
# positive and zero elsewhere, :math:`R(x) = \max(0, x)`. Scaled inside,
# :math:`R(2x)` doubles the slope of the positive part; shifted and negated,
# :math:`-R(2x - 2)` starts at x = 1 and goes down with slope 2. These are
# fastnn's own ReLU kernel (:func:`fastnn.ops.relu_forward`) on a grid.

x = np.linspace(-2, 3, 201).reshape(-1, 1)
relu = fastnn.ops.relu_forward
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
for ax, values, title in zip(axes, [relu(x), relu(2 * x), -relu(2 * x - 2)], ["R(x)", "R(2x)", "-R(2x - 2)"]):
    ax.plot(x[:, 0], values[:, 0], color="tab:orange", lw=2)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_title(title)
    ax.set_xlabel("x")
fig.tight_layout()
plt.show()

# %%
# 5. The neural network is formed
# -------------------------------
#
# Put together, the three lines are one hidden layer of three ReLU units
# (weights 1, 2, 2 and biases 0, -2, -4) and an output unit that adds them
# with weights 1, -1, 1 (and a last ReLU):
#
# .. math:: \hat{Y} = R(R(X) - R(2X - 2) + R(2X - 4))
#
# :func:`fastnn.datasets.tutorial_network` is that network, a
# ``Dense(1, 3) -> ReLU -> Dense(3, 1) -> ReLU`` with those weights; it
# reproduces the target exactly.

ax = fastnn.plot.network_diagram(tutorial_net)
ax.set_title("the tutorial's network, with its weights and biases")
plt.show()

dense = np.linspace(0, 3, 1001).reshape(-1, 1)
error = np.max(np.abs(tutorial_net.predict(dense) - fastnn.datasets.tutorial_curve(dense)))
print(f"hand-built weights reproduce the curve on 1001 points: max |error| = {error:g}")

# %%
# 6. Loss function
# ----------------
#
# A loss measures how far the model's output :math:`\hat{Y}` is from the
# target :math:`Y`. For regression, the mean squared error,
#
# .. math:: MSE = \frac{1}{n} \sum_{i=1}^{n} (\hat{Y_i} - Y_i)^2
#
# which :class:`fastnn.MSELoss` computes (its gradient too). The fresh
# network is far from the data, the hand-built one only by the noise.

mse = fastnn.MSELoss()
for name, model in [("fresh network", fresh), ("hand-built network", tutorial_net)]:
    print(f"{name}: MSE on the data points = {mse(model.predict(X), y):.5f}")
print(f"the same by hand for the fresh network: {np.mean((fresh.predict(X) - y) ** 2):.5f}")

# %%
# 7. Gradient descent
# -------------------
#
# Gradient descent lowers the loss by moving every weight and bias a small
# step against its gradient, over and over. Here the fresh 1-16-1 network
# learns the curve from 256 noisy samples with SGD (learning rate 0.1,
# mini-batches of 16), one :meth:`fastnn.Sequential.fit` call after another,
# and we keep its output after epochs 1, 10, 50, 150 and 500.

X_train, y_train = fastnn.datasets.tutorial_samples(256, noise=0.05, seed=0)
learner = fastnn.Sequential([fastnn.Dense(1, 16, seed=1), fastnn.ReLU(), fastnn.Dense(16, 1, seed=2)])
optimizer = fastnn.SGD(lr=0.1)
losses, snapshots, done = [], {}, 0
for epoch in [1, 10, 50, 150, 500]:
    history = learner.fit(X_train, y_train, optimizer=optimizer, epochs=epoch - done, batch_size=16, seed=epoch)
    losses += history.loss
    snapshots[epoch] = learner.predict(dense)[:, 0]
    done = epoch
    print(f"epoch {epoch:>3}: mean training loss {history.loss[-1]:.5f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.scatter(X_train[:, 0], y_train[:, 0], s=6, color="tab:gray", alpha=0.4, label="data points")
left.plot(dense[:, 0], fastnn.datasets.tutorial_curve(dense)[:, 0], color="tab:blue", lw=2, label="target output")
for k, (epoch, output) in enumerate(snapshots.items()):
    left.plot(dense[:, 0], output, color=plt.cm.Oranges(0.3 + 0.7 * k / (len(snapshots) - 1)), lw=2,
              label=f"after epoch {epoch}")
left.set_title("the fit improving, epoch by epoch")
left.legend(fontsize="small")
fastnn.plot.loss_curve(fastnn.History(loss=losses), ax=right)
right.set_title("the loss falling")
fig.tight_layout()
plt.show()

# %%
# What did it learn? The trained network is drawn the same way as the
# tutorial's: each of its 16 hidden units is a ReLU line, and their sum is
# its output. Gradient descent found its own pieces, not the tutorial's
# three, and they add up to the same curve.

ax = fastnn.plot.hidden_units(learner, (0, 3), curve=fastnn.datasets.tutorial_curve)
ax.set_title("the learned network's 16 units, and their sum")
plt.show()

ax = fastnn.plot.network_diagram(learner, weights=False, max_units=16)
ax.set_title("the learned 1-16-1 network")
plt.show()

final = np.mean((learner.predict(dense) - fastnn.datasets.tutorial_curve(dense)) ** 2)
print(f"MSE of the learned network against the true curve: {final:.6f}")
