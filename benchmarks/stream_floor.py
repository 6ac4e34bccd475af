"""How far the fused kernels can beat their NumPy twins on large arrays: the memory floor.

On arrays larger than the core's caches, ``sgd_update``, ``relu_backward`` and
``mse_grad`` do a few arithmetic operations per value: their time is the time
to move the arrays through the memory hierarchy. This script measures, side by
side (alternating batches, the minimum over the batches), fastnn's call, the
:mod:`fastnn.reference` twin, and ``numpy.copyto`` of one array of the same
shape and dtype. Count what a pass moves in *transfers* of one array: a read is
one, a write two (the cache reads each line for ownership before it writes it
back), so a copy is three, and a third of the copy's time is the cost of one
transfer. A kernel whose passes move ``t`` transfers takes about ``t`` times
that at the copy's speed (its *floor*, an estimate: reads that stay in a
shared cache can cost less than the copy's mix, and then a kernel beats it);
the twin's time divided by fastnn's floor estimates the largest ratio fastnn
could reach with its passes, and the twin's time divided by the floor of one
pass with no check at all (``best_ratio_one_pass``) the largest any
implementation could.

The transfers, counted from the code (arrays of the kernel's size; a bool array
is 1/8 of a float64 one, 1/4 of a float32 one):

* ``sgd_update`` (in place, nothing written by a failed call): one loop that
  updates a block while it checks the next, the block read again from the
  first-level cache (0), undoing what it wrote when a value is bad (here: the
  steps are small, the undo log never fills): 2 reads, 1 write: 4. The twin
  ``param -= lr * grad``: ``lr * grad`` into a temporary (3), then the
  subtraction in place (4): 7. One pass with no check: 4.
* ``relu_backward``: one pass reading ``Z`` and ``dA`` and writing the output,
  the check folded in: 4. The twin ``dA * (Z > 0)``: ``Z > 0`` (1 + 2 bool),
  the product (3 + 1 bool): 4 + 3 bool. One pass: 4.
* ``mse_grad``: one pass writing the gradient (4); its finiteness is read block
  by block of 2048 values while the block is in the first-level cache (0): 4.
  The twin ``2 * (yhat - y) / n``: 4 + 3 + 3 = 10. One pass with no check: 4.

Run with one BLAS thread on a quiet core::

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/stream_floor.py --json docs/results/stream_floor.json
"""

from __future__ import annotations

import sys

import numpy as np

from fastnn import ops, reference

try:
    from .loss_ratios import announce, side_by_side, side_by_side_parser, write_record   # as benchmarks.stream_floor
except ImportError:
    from loss_ratios import announce, side_by_side, side_by_side_parser, write_record    # run as a script

#: The large configuration's arrays (benchmarks/common.py, "large": 784-512-512-10, batch 256):
#: its biggest weight matrix for the update, a hidden layer's activations for the others.
SHAPES = {"sgd_update": (784, 512), "relu_backward": (256, 512), "mse_grad": (256, 512)}
#: kernel -> (fastnn's transfers, the twin's apart from bool arrays, the twin's of bool arrays,
#: the fewest any one-pass implementation moves).
TRANSFERS = {"sgd_update": (4, 7, 0, 4), "relu_backward": (4, 4, 3, 4), "mse_grad": (4, 10, 0, 4)}
LR = 1e-6       # small: a few thousand sgd_update calls leave the parameters finite


def calls(name: str):
    """(fastnn's call, the twin's call) of kernel ``name``, each taking two arrays."""
    if name == "sgd_update":
        return (lambda p, g: ops.sgd_update(p, g, LR)), (lambda p, g: reference.sgd_update(p, g, LR))
    return getattr(ops, name), getattr(reference, name)


def main(argv: list[str] | None = None) -> int:
    args = side_by_side_parser(__doc__.split("\n\n")[0], rounds=9, target=0.02).parse_args(argv)
    load = announce()
    rng = np.random.default_rng(0)
    rows = []
    for name, shape in SHAPES.items():
        mine, theirs = calls(name)
        ours, twin, bools, fewest = TRANSFERS[name]
        for dtype in (np.float32, np.float64):
            a = rng.normal(size=shape).astype(dtype)
            b = rng.normal(size=shape).astype(dtype)
            t_mine, t_theirs = side_by_side(mine, theirs, a, b, args.rounds, args.target)
            out = np.empty_like(a)
            t_copy, _ = side_by_side(lambda x, y: np.copyto(out, x), lambda x, y: np.copyto(out, y), a, b,
                                     args.rounds, args.target)
            transfer = t_copy / 3
            bool_share = 1 / np.dtype(dtype).itemsize
            row = {"kernel": name, "dtype": np.dtype(dtype).name, "shape": "x".join(map(str, shape)),
                   "fastnn_us": t_mine * 1e6, "reference_us": t_theirs * 1e6, "ratio": t_theirs / t_mine,
                   "copy_us": t_copy * 1e6, "fastnn_transfers": ours, "reference_transfers": twin + bools * bool_share,
                   "floor_us": ours * transfer * 1e6, "reference_floor_us": (twin + bools * bool_share) * transfer * 1e6,
                   "best_ratio": t_theirs / (ours * transfer), "best_ratio_one_pass": t_theirs / (fewest * transfer)}
            rows.append(row)
            print(f"{name:14s} {row['dtype']:8s} {row['shape']:>8s}  fastnn {row['fastnn_us']:8.1f} µs  "
                  f"reference {row['reference_us']:8.1f} µs  ratio {row['ratio']:5.2f}  copy {row['copy_us']:7.1f} µs  "
                  f"floors {row['floor_us']:7.1f} / {row['reference_floor_us']:7.1f} µs  best ratio {row['best_ratio']:5.2f} "
                  f"(one pass, no check: {row['best_ratio_one_pass']:5.2f})", flush=True)
    if args.json:
        write_record(args.json, "python benchmarks/stream_floor.py", argv, rows, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
