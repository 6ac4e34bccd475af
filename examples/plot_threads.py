"""
Training models in parallel threads
===================================

fastnn releases the GIL for every training step and epoch, so models train
in parallel threads. Here four networks with different learning rates are
trained one after the other, then in four threads of a
``concurrent.futures.ThreadPoolExecutor``; each thread has its own model and
optimizer, and the threaded runs end with exactly the serial runs'
parameters. (How much faster the threads are depends on the CPUs free;
``benchmarks/thread_speedup.py`` measures it.)
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt
import numpy as np

import fastnn

X, y = fastnn.datasets.tutorial_samples(512, noise=0.05, seed=0)
rates = [0.003, 0.01, 0.03, 0.1]


def train(lr):
    model = fastnn.Sequential([fastnn.Dense(1, 32, seed=1), fastnn.ReLU(), fastnn.Dense(32, 1, seed=2)])
    history = model.fit(X, y, optimizer=fastnn.SGD(lr=lr, momentum=0.9), epochs=200, batch_size=32, seed=0)
    return model, history


start = time.perf_counter()
serial = [train(lr) for lr in rates]
serial_s = time.perf_counter() - start

start = time.perf_counter()
with ThreadPoolExecutor(max_workers=len(rates)) as pool:
    threaded = list(pool.map(train, rates))
threaded_s = time.perf_counter() - start

same = all(np.array_equal(a.get_parameters(), b.get_parameters()) for (a, _), (b, _) in zip(serial, threaded))
print(f"{len(rates)} models on {os.cpu_count()} CPUs: serial {serial_s:.2f} s, threads {threaded_s:.2f} s")
print("the threads' parameters equal the serial runs':", same)

# %%
# The four learning rates' loss curves (from the threaded runs).

fig, ax = plt.subplots(figsize=(7, 4))
for lr, (_, history) in zip(rates, threaded):
    ax.plot(np.arange(1, history.epochs + 1), history.loss, label=f"lr {lr}")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("mean training loss")
ax.set_title("SGD with momentum, four learning rates, four threads")
ax.legend()
plt.show()
