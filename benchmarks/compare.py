"""Time fastnn against NumPy, PyTorch and scikit-learn, side by side, in one process.

Run from a checkout (fastnn installed, or built in place)::

    python benchmarks/compare.py                       # every config, float64 and float32
    python benchmarks/compare.py --dtype float64 --configs tiny medium --repeat 50

For each configuration of ``benchmarks/common.py`` and each dtype it prints the
median microseconds of one training step (forward, loss, backward, update on
one batch; MSE and plain SGD, except "tiny-adam": MSE and Adam, and "digits":
cross-entropy on integer labels and Adam) of

* fastnn (``Sequential.train_step``),
* NumPy: ``fastnn.reference.ReferenceMLP``, the same network layer by layer
  (``ReferenceMLP.train_step``: ``reference.sgd_update``, or
  ``reference.adam_update`` for the Adam configs, per W and b),
* PyTorch, when installed: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``,
  ``F.mse_loss`` or ``nn.CrossEntropyLoss``, ``optim.SGD`` (no momentum) or
  ``optim.Adam``, a hand-written step,
* scikit-learn, when installed: ``MLPRegressor(solver="sgd", momentum=0,
  alpha=0, activation="relu")``, or ``MLPRegressor``/``MLPClassifier`` with
  ``solver="adam"`` for the Adam configs, and ``partial_fit`` on one batch,

all starting from the same weights, and the speed-ups (other's time / fastnn's
time). For the "demo fit" configuration the unit is a whole 20-epoch ``fit``
(shuffled mini-batches) instead of a step.

As a check that every contender runs the same computation, the losses of the
first two steps from the starting weights (before and after one update) are
compared with fastnn's, where the computation is the same (the table's notes
say where it is not).

Everything runs in this one process, one configuration after another, with
BLAS and OpenMP limited to ``--threads`` threads (default 1): the thread
variables are set before NumPy is imported, threadpoolctl (when installed)
limits the loaded libraries again and reports which BLAS it sees, and
``torch.set_num_threads`` does the same for PyTorch. Each time is the median
over ``--repeat`` timed blocks (``time.perf_counter``) after a warm-up; a block
runs the step as many times as it takes to last at least ``--min-time``
seconds, from the same starting weights (and, for Adam, the same optimizer
state) every block.

The table on stdout is markdown; progress goes to stderr. ``--json PATH``
also writes the measurements as JSON (the results file the documentation
renders, ``docs/results/compare.json``): the command, the commit, the date,
the machine and one row per config and dtype, with ``--estimators`` the
estimator table too.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_ROOT = Path(__file__).resolve().parent.parent


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description="Median time per training step of fastnn, the NumPy reference, PyTorch and "
                    "scikit-learn, side by side in one process; prints a markdown table.")
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                        help="dtypes to measure (default: float64 float32)")
    parser.add_argument("--configs", nargs="+", default=None, metavar="NAME",
                        help="configs to measure, by name, space- or comma-separated (default: all of "
                             "benchmarks/common.py: tutorial-1000 tutorial-1 tiny medium large demo-fit "
                             "tiny-adam digits)")
    parser.add_argument("--repeat", type=int, default=25,
                        help="timed blocks per measurement; the median is reported (default: 25)")
    parser.add_argument("--min-time", type=float, default=0.005, metavar="SECONDS",
                        help="shortest duration of one timed block (default: 0.005)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP/PyTorch threads (default: 1)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn out even if installed")
    parser.add_argument("--estimators", action="store_true",
                        help="also time fastnn's estimators against scikit-learn's, same data and settings: "
                             "digits with solver='adam' and 'lbfgs', Friedman #1 with 'lbfgs' (ESTIMATOR_TASKS; "
                             "fit time and test score)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the results as JSON to PATH (docs/results/compare.json)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be a positive integer, got {args.repeat}")
    if not args.min_time > 0:
        parser.error(f"--min-time must be a positive number of seconds, got {args.min_time}")
    if args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    if args.configs is not None:
        args.configs = [name for item in args.configs for name in item.split(",") if name]
    return args, parser


def _import_common():
    try:
        from . import common  # imported as benchmarks.compare (asv discovery)
    except ImportError:
        import common  # run as a script: benchmarks/ is sys.path[0]
    return common


def _optional(name):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - missing, or broken: either way, leave it out
        return None


# -- timing -------------------------------------------------------------------------


def _measure(step, reset, repeat: int, min_time: float) -> float:
    """Median seconds per call of ``step()``: ``repeat`` blocks, each run from ``reset()``."""
    clock = time.perf_counter
    reset()
    step()
    step()                                   # warm-up: caches, lazily built buffers
    number = 1
    while True:                              # calibrate: calls per block
        reset()
        loop = range(number)
        start = clock()
        for _ in loop:
            step()
        elapsed = clock() - start
        if elapsed >= min_time or number >= 1 << 24:
            break
        number = max(number * 2, int(number * min_time * 1.2 / max(elapsed, 1e-9)))
    times = []
    for _ in range(repeat):
        reset()
        loop = range(number)
        start = clock()
        for _ in loop:
            step()
        times.append((clock() - start) / number)
    return statistics.median(times)


# -- the contenders -----------------------------------------------------------------
#
# Each ``_make_*`` returns (step, reset, checks): step() runs one measured
# unit (a training step, or the demo's whole fit); reset() puts the starting
# weights back, and the optimizer state as it was after the checks (not
# timed); checks are the losses of the first two steps from those weights
# (before and after one update), for a sanity check that every contender
# runs the same network and update rule (None where it cannot be compared).


def _restore(arrays, saved):
    for array, value in zip(arrays, saved):
        array[...] = value


def _make_fastnn(fastnn, common, config, X, y, dtype):
    model = common.make_model(config, dtype)
    saved = [p.copy() for p in common.parameters_of(model)]
    loss, optimizer = common.make_loss(config), common.make_optimizer(config)
    n = config.batch_size
    checks = [model.train_step(X[:n], y[:n], loss, optimizer) for _ in range(2)]
    state = model.optimizer_state(optimizer)    # the model keeps the optimizer's state

    def reset():
        _restore(common.parameters_of(model), saved)
        model.set_optimizer_state(optimizer, state)
    if config.measure == "fit":
        step = functools.partial(model.fit, X, y, loss=loss, optimizer=optimizer, epochs=config.fit_epochs,
                                 batch_size=n, shuffle=True, seed=0)
    else:
        step = functools.partial(model.train_step, X[:n], y[:n], loss, optimizer)
    return step, reset, checks


def _make_numpy(fastnn, common, config, X, y, dtype):
    np = sys.modules["numpy"]
    ref = common.make_reference(common.make_model(config, dtype))
    optimizer = common.reference_optimizer(config)      # a learning rate for plain SGD: no state
    saved = [p.copy() for p in common.parameters_of(ref)]
    n = config.batch_size
    checks = [ref.train_step(X[:n], y[:n], optimizer, config.loss) for _ in range(2)]
    state = ref.optimizer_state(optimizer)

    def reset():
        _restore(common.parameters_of(ref), saved)
        ref.set_optimizer_state(optimizer, state)
    if config.measure == "fit":
        rng = np.random.default_rng(0)

        def step():
            for _ in range(config.fit_epochs):
                ref.fit_epoch(X, y, optimizer, n, rng.permutation(len(X)), config.loss)
    else:
        step = functools.partial(ref.train_step, X[:n], y[:n], optimizer, config.loss)
    return step, reset, checks


def _make_torch(fastnn, common, config, X, y, dtype):
    torch = sys.modules["torch"]
    nn, F = torch.nn, torch.nn.functional
    model = common.make_model(config, dtype)
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    layers = []
    for layer in model.layers:
        if isinstance(layer, fastnn.Dense):
            linear = nn.Linear(layer.in_features, layer.out_features, dtype=torch_dtype)
            with torch.no_grad():   # nn.Linear keeps W as (out_features, in_features)
                linear.weight.copy_(torch.from_numpy(layer.W.T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.b.copy()))
            layers.append(linear)
        else:       # the config's activation (and the tutorial's ReLU on the output)
            layers.append({fastnn.ReLU: nn.ReLU, fastnn.Tanh: nn.Tanh, fastnn.Sigmoid: nn.Sigmoid}[type(layer)]())
    net = nn.Sequential(*layers)
    params = list(net.parameters())
    saved = [p.detach().clone() for p in params]

    if config.optimizer == "adam":        # defaults otherwise: on the CPU, the single-tensor loop
        optimizer = torch.optim.Adam(params, lr=config.lr, betas=common.ADAM_BETAS, eps=common.ADAM_EPS)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr)   # momentum=0, no weight decay
    loss_fn = nn.CrossEntropyLoss() if config.loss == "cross_entropy" else F.mse_loss
    X_all, y_all = torch.from_numpy(X), torch.from_numpy(y)     # labels: int64, as CrossEntropyLoss wants
    n = config.batch_size
    X_batch, y_batch = X_all[:n], y_all[:n]

    def train_step(X_batch=X_batch, y_batch=y_batch):
        optimizer.zero_grad()
        loss = loss_fn(net(X_batch), y_batch)
        loss.backward()
        optimizer.step()
        return loss.item()

    checks = [train_step() for _ in range(2)]
    state = copy.deepcopy(optimizer.state_dict()) if config.optimizer != "sgd" else None

    def reset():
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)
        if state is not None:      # a copy each time: load_state_dict may keep the tensors it is given
            optimizer.load_state_dict(copy.deepcopy(state))

    if config.measure == "fit":
        generator = torch.Generator().manual_seed(0)
        n_samples = len(X)

        def step():
            for _ in range(config.fit_epochs):
                order = torch.randperm(n_samples, generator=generator)
                total = 0.0
                for start in range(0, n_samples, n):
                    rows = order[start:start + n]
                    total += train_step(X_all[rows], y_all[rows]) * len(rows)
                epoch_loss = total / n_samples  # noqa: F841 - the epoch's mean loss, as fastnn's History records
    else:
        step = train_step
    return step, reset, checks


def _make_sklearn(fastnn, common, config, X, y, dtype):
    np = sys.modules["numpy"]
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    model = common.make_model(config, dtype)
    fit = config.measure == "fit"
    activation = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}[config.activation]
    shared = dict(hidden_layer_sizes=config.hidden, activation=activation, alpha=0.0,   # alpha: no L2 penalty
                  batch_size=config.batch_size, shuffle=fit, random_state=0, max_iter=config.fit_epochs,
                  tol=0.0, n_iter_no_change=2**31, early_stopping=False, warm_start=True)  # never stop early
    if config.optimizer == "adam":
        # Adam ignores the scale of the gradient (but for eps), so scikit-learn's
        # half-MSE needs no rescaled learning rate; its eps convention differs (notes).
        shared.update(solver="adam", learning_rate_init=config.lr, beta_1=common.ADAM_BETAS[0],
                      beta_2=common.ADAM_BETAS[1], epsilon=common.ADAM_EPS)
    else:
        # scikit-learn's squared error is half the MSE, and its gradient is
        # (yhat - y) / n_samples whatever the number of outputs: this learning
        # rate makes its update equal to SGD(lr) on fastnn's MSE.
        shared.update(solver="sgd", learning_rate="constant", learning_rate_init=config.lr * 2 / config.out_features,
                      momentum=0.0, nesterovs_momentum=False)
    n = config.batch_size
    if config.classification:
        mlp = MLPClassifier(**shared)
        target = y
        X_batch, y_batch = X[:n], target[:n]
        # every class, in label order (the batch may miss some): the outputs then line up with fastnn's
        mlp.partial_fit(X_batch, y_batch, classes=np.arange(config.out_features))
    else:
        mlp = MLPRegressor(**shared)
        target = y.ravel() if config.out_features == 1 else y
        X_batch, y_batch = X[:n], target[:n]
        mlp.partial_fit(X_batch, y_batch)              # allocates coefs_ and intercepts_
    weights = [(layer.W, layer.b) for layer in model.layers if isinstance(layer, fastnn.Dense)]
    saved = [W.copy() for W, _ in weights] + [b.copy() for _, b in weights]
    _restore(mlp.coefs_ + mlp.intercepts_, saved)
    optimizer = getattr(mlp, "_optimizer", None) if config.optimizer == "adam" else None
    if optimizer is not None:                           # a fresh Adam state, as the others start with
        optimizer.t = 0
        optimizer.ms = [np.zeros_like(m) for m in optimizer.ms]
        optimizer.vs = [np.zeros_like(v) for v in optimizer.vs]
    losses = []
    for _ in range(2):
        mlp.partial_fit(X_batch, y_batch)
        losses.append(mlp.loss_ if config.classification else 2 * mlp.loss_)   # its squared error is MSE / 2
    # comparable when the output layer is the same: scikit-learn has no ReLU on the output; after an
    # Adam update, not quite the same computation (eps; the notes)
    checks = [None if config.relu_output else losses[0],
              None if config.relu_output or config.optimizer == "adam" else losses[1]]
    if optimizer is not None:
        state = (optimizer.t, [m.copy() for m in optimizer.ms], [v.copy() for v in optimizer.vs])

    def reset():
        _restore(mlp.coefs_ + mlp.intercepts_, saved)
        if optimizer is not None:           # its update replaces ms and vs: give it copies
            optimizer.t = state[0]
            optimizer.ms = [m.copy() for m in state[1]]
            optimizer.vs = [v.copy() for v in state[2]]

    if fit:
        def step():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # ConvergenceWarning: max_iter reached, by design
                mlp.fit(X, target)
    else:
        step = functools.partial(mlp.partial_fit, X_batch, y_batch)
    return step, reset, checks


# -- the machine --------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _numpy_blas(np) -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - numpy < 1.26, or a layout change
        return "unknown"


def _threadpools(threadpoolctl) -> list[str]:
    if threadpoolctl is None:
        return ["not installed, so the loaded BLAS was not inspected (the thread variables were set to --threads)"]
    lines = []
    for pool in threadpoolctl.threadpool_info():
        arch = f" {pool['architecture']}" if pool.get("architecture") else ""
        threads = pool.get("num_threads")
        path = Path(pool.get("filepath") or "?")
        what = " ".join(str(part) for part in (pool.get("internal_api"), pool.get("version")) if part)
        lines.append(f"{pool.get('user_api')}: {what}{arch}, {threads} thread{'s' if threads != 1 else ''} "
                     f"({path.parent.name}/{path.name})")
    return lines or ["threadpoolctl sees no BLAS or OpenMP library"]


def _git_commit(where: Path) -> str | None:
    """The commit of the checkout ``where`` is in (None for an installed package)."""
    try:
        top = subprocess.run(["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        if Path(top).resolve() != where.resolve().parent:
            return None
        out = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except Exception:  # noqa: BLE001 - not a checkout, or no git
        return None


# -- the table ----------------------------------------------------------------------


def _us(seconds) -> str:
    if seconds is None:
        return "—"
    us = seconds * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:,.0f}"


def _ratio(other, mine) -> str:
    if other is None or mine is None:
        return "—"
    ratio = other / mine
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def main(argv=None) -> int:
    args, parser = _parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    json_commit = _git_commit(_ROOT / "fastnn") if args.json else None     # the checkout as the run starts

    # Before NumPy (and its BLAS) is loaded: the thread variables are read then.
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = str(args.threads)
    if not _has_fastnn():
        sys.path.append(str(_ROOT))        # a checkout built in place (setup.py build_ext --inplace)

    import numpy as np

    import fastnn

    common = _import_common()
    names = args.configs or list(common.CONFIGS)
    unknown = [name for name in names if name not in common.CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(common.CONFIGS)}")

    threadpoolctl = _optional("threadpoolctl")
    torch = None if args.no_torch else _optional("torch")
    sklearn = None if args.no_sklearn else _optional("sklearn")
    if sklearn is not None and _optional("sklearn.neural_network") is None:
        sklearn = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(args.threads)
        except RuntimeError:
            pass                                # already set; it does not matter for these loops

    contenders = [("fastnn", _make_fastnn), ("NumPy", _make_numpy)]
    if torch is not None:
        contenders.append(("PyTorch", _make_torch))
    if sklearn is not None:
        contenders.append(("scikit-learn", _make_sklearn))

    def limit_threads():
        if threadpoolctl is not None:    # again before each config: a library may have been loaded lazily
            threadpoolctl.threadpool_limits(limits=args.threads)

    rows, warnings_seen = [], []
    for name in names:
        config = common.CONFIGS[name]
        for dtype in args.dtype:
            X, y = common.make_data(config, dtype)
            limit_threads()
            times, losses = {}, {}
            for label, make in contenders:
                print(f"{config.name:>14} {dtype}  {label:<13}", end="", file=sys.stderr, flush=True)
                try:
                    step, reset, losses[label] = make(fastnn, common, config, X, y, dtype)
                    limit_threads()
                    times[label] = _measure(step, reset, args.repeat, args.min_time)
                    print(f"{_us(times[label]):>10} µs", file=sys.stderr, flush=True)
                except Exception as exc:  # noqa: BLE001 - report, and go on with the others
                    times[label] = None
                    print(f"  failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    warnings_seen.append(f"{label} failed on {config.name} {dtype}: {type(exc).__name__}: {exc}")
            tolerance = 1e-4 if dtype == "float32" else 1e-9
            for i, which in enumerate(("first", "second")):
                mine = losses.get("fastnn", [None, None])[i]
                for label, checks in losses.items():
                    value = checks[i]
                    if label != "fastnn" and value is not None and mine is not None \
                            and abs(value - mine) > tolerance * max(1.0, abs(mine)):
                        warnings_seen.append(f"{label}'s {which} loss on {config.name} {dtype} is {value:.9g}, "
                                             f"fastnn's {mine:.9g}: not the same computation?")
            rows.append((config, dtype, times))

    labels = [label for label, _ in contenders]
    others = labels[1:]
    fit_configs = [common.CONFIGS[name] for name in names if common.CONFIGS[name].measure == "fit"]
    out = []
    out.append("Median µs per training step (one forward + loss + backward + update on one batch; MSE and "
               "plain SGD unless the config names its loss and optimizer)"
               + ("; for " + ", ".join(f"{c.name}, µs per whole {c.fit_epochs}-epoch fit" for c in fit_configs)
                  if fit_configs else "")
               + f". Speed-up = other's time / fastnn's time. {args.threads} thread"
               + ("s" if args.threads != 1 else "") + f", median of {args.repeat} blocks.")
    out.append("")
    header = ["config", "dtype"] + [f"{label} µs" for label in labels] + [f"vs {label}" for label in others]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
    for config, dtype, times in rows:
        cells = [config.title, dtype] + [_us(times.get(label)) for label in labels]
        cells += [_ratio(times.get(label), times.get("fastnn")) for label in others]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")

    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}",
                f"fastnn {getattr(fastnn, '__version__', '?')}"]
    if torch is not None:
        versions.append(f"torch {torch.__version__}")
    if sklearn is not None:
        versions.append(f"scikit-learn {sklearn.__version__}")
    commit = _git_commit(Path(fastnn.__file__).resolve().parent)
    out.append(f"- Machine: {_cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}")
    out.append(f"- Software: {', '.join(versions)}" + (f"; fastnn checkout {commit}" if commit else ""))
    out.append(f"- NumPy's BLAS: {_numpy_blas(np)}")
    from fastnn import _ops, _walker

    out.append(f"- fastnn's walker: the {_walker.ISA} build (the CPU has AVX2: "
               f"{'yes' if _ops.cpu_has_avx2() else 'no'}, AVX-512: {'yes' if _ops.cpu_has_avx512() else 'no'});"
               f" a Dense layer uses BLAS on a batch of 8 rows or more from {_walker.BLAS_MIN_WEIGHTS_TILED} weights")
    if load is not None:
        out.append(f"- Load average (1 min) before the run: {load:.2f} (other work on the machine perturbs the times)")
    for line in _threadpools(threadpoolctl):
        out.append(f"- threadpoolctl: {line}")
    missing = [name for name, module in (("PyTorch", torch), ("scikit-learn", sklearn)) if module is None]
    if missing:
        out.append(f"- Not measured (not installed, or left out): {', '.join(missing)}")
    chosen = [common.CONFIGS[name] for name in names]
    with_sgd = any(c.optimizer == "sgd" for c in chosen)
    with_adam = [c.name for c in chosen if c.optimizer == "adam"]
    with_ce = [c.name for c in chosen if c.classification]
    if "PyTorch" in labels:
        if with_sgd:
            out.append("- PyTorch: nn.Linear/nn.ReLU, F.mse_loss, optim.SGD (no momentum), zero_grad/backward/step "
                       "and loss.item() per step; demo fit: randperm and index per epoch.")
        if with_adam:
            out.append(f"- PyTorch on {', '.join(with_adam)}: optim.Adam(lr, betas={common.ADAM_BETAS}, "
                       f"eps={common.ADAM_EPS:g}) with its other defaults (on the CPU, its single-tensor loop: "
                       "neither foreach nor fused)"
                       + (f"; {', '.join(with_ce)}: nn.CrossEntropyLoss on int64 labels" if with_ce else "") + ".")
    if "scikit-learn" in labels:
        if with_sgd:
            out.append("- scikit-learn: MLPRegressor(solver='sgd', momentum=0, alpha=0, activation='relu'), "
                       "partial_fit on one batch per step, fit(max_iter=20, warm_start) for the demo fit. "
                       "Its output layer is always linear (no ReLU on the tutorial's output), and its "
                       "learning rate is scaled so that its update equals SGD on the MSE.")
        if with_adam:
            kinds = " and ".join(kind for kind, used in (
                ("MLPRegressor", any(c.optimizer == "adam" and not c.classification for c in chosen)),
                ("MLPClassifier", bool(with_ce))) if used)
            out.append(f"- scikit-learn on {', '.join(with_adam)}: {kinds}(solver='adam', alpha=0, "
                       f"beta_1={common.ADAM_BETAS[0]}, beta_2={common.ADAM_BETAS[1]}, "
                       f"epsilon={common.ADAM_EPS:g}, learning_rate_init=lr, activation='relu'), partial_fit on "
                       "one batch per step (which validates its input, and for the classifier one-hot encodes "
                       "the labels, on every call). Not quite the same computation: its Adam adds epsilon to "
                       "sqrt(v) before the bias correction, lr*sqrt(1-beta2^t)/(1-beta1^t) * m/(sqrt(v)+eps), "
                       "where PyTorch and fastnn compute lr/(1-beta1^t) * m/(sqrt(v)/sqrt(1-beta2^t)+eps), so "
                       "its eps is in effect PyTorch's eps/sqrt(1-beta2^t) (32x at step 1, 1.3x at step 1000)"
                       + ("; MLPRegressor's gradient is that of half the MSE (1/2 the scale for one output, "
                          "which Adam's step ignores but for eps, so the learning rate is not rescaled)"
                          if "MLPRegressor" in kinds else "")
                       + ("; MLPClassifier takes the log of clipped softmax probabilities, not a log-sum-exp"
                          if with_ce else "")
                       + ". alpha=0 turns its L2 penalty off (the default 1e-4 would add alpha*W/n_samples "
                       "to the gradient). Its first-step loss is compared; its second, after an update, is not.")
    out.append("- Reproduce: `python benchmarks/compare.py" + (" " + " ".join(argv) if argv else
                                                                "" if len(sys.argv) < 2 else
                                                                " " + " ".join(sys.argv[1:])) + "`")
    if not any(" loss on " in warning for warning in warnings_seen):
        skipped = []
        if "scikit-learn" in labels and any(c.relu_output for c in chosen):
            skipped.append("scikit-learn's linear output on the tutorial")
        if "scikit-learn" in labels and with_adam:
            skipped.append("scikit-learn's second step with Adam")
        out.append("- Check: every contender's losses at the first two steps (before and after one update) "
                   "equal fastnn's: same network, same weights, same update"
                   + (f" (not compared: {'; '.join(skipped)})" if skipped else "") + ".")
    for warning in warnings_seen:
        out.append(f"- WARNING: {warning}")
    print("\n".join(out))
    estimators = None
    if args.estimators:
        print()
        if importlib.util.find_spec("sklearn") is None:
            print("--estimators: scikit-learn is not installed (pip install scikit-learn); no estimator table.")
            return 1
        estimators = estimator_rows(args.repeat)
        print(_estimator_table(estimators))
    if args.json:
        _write_json(args.json, argv, json_commit, rows, estimators, args.threads, load)
    return 0


#: The estimator tasks of --estimators: (task, solver, estimator settings, fastnn's own
#: settings). Each runs fastnn's estimator and scikit-learn's on the same data with the same
#: settings; the float32 rows give fastnn's estimator dtype=float32 besides (scikit-learn's
#: network computes in float64 on this float64 data).
_DIGITS = dict(hidden_layer_sizes=(64,), max_iter=200, random_state=0)
_FRIEDMAN = dict(hidden_layer_sizes=(64, 64), max_iter=200, random_state=0)
ESTIMATOR_TASKS = (
    ("digits", "adam", dict(hidden_layer_sizes=(64,), solver="adam", max_iter=50, random_state=0), {}),
    ("digits", "lbfgs", dict(_DIGITS, solver="lbfgs"), {}),
    ("friedman1", "lbfgs", dict(_FRIEDMAN, solver="lbfgs"), {}),
    ("digits", "lbfgs", dict(_DIGITS, solver="lbfgs"), {"dtype": "float32"}),
    ("friedman1", "lbfgs", dict(_FRIEDMAN, solver="lbfgs"), {"dtype": "float32"}),
)


def _estimator_data(task: str):
    """(X_train, X_test, y_train, y_test, classifier?) of a task: the digits scaled to [0, 1]
    (stratified 75/25 split), or Friedman #1 with 2,000 samples, noise 1 (75/25 split)."""
    from sklearn.datasets import load_digits, make_friedman1
    from sklearn.model_selection import train_test_split

    if task == "digits":
        X, y = load_digits(return_X_y=True)
        return (*train_test_split(X / 16, y, random_state=0, stratify=y), True)
    X, y = make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    return (*train_test_split(X, y, random_state=0), False)


def estimator_rows(repeat: int) -> list[dict]:
    """Median fit times and test scores (accuracy, or R^2) of fastnn's estimators and
    scikit-learn's, one row per task: the rows of the "estimators" list of compare.json.

    The two fits alternate, ``max(3, min(repeat, 7))`` times each, so that a change in the
    machine's load falls on both alike. Besides the wall-clock medians of the schema
    (``fastnn_s``, ``sklearn_s``), each row holds the medians of the process's CPU time
    (``fastnn_cpu_s``, ``sklearn_cpu_s``: one thread, so the time the fit ran on a core),
    which a loaded machine disturbs less."""
    import statistics
    import time
    import warnings

    import fastnn
    from sklearn import neural_network
    from sklearn.exceptions import ConvergenceWarning

    rows = []
    for task, solver, settings, own in ESTIMATOR_TASKS:
        X_train, X_test, y_train, y_test, classifier = _estimator_data(task)
        kind = "MLPClassifier" if classifier else "MLPRegressor"
        makers = {"fastnn": functools.partial(getattr(fastnn, kind), **own),
                  "sklearn": getattr(neural_network, kind)}
        times: dict = {"fastnn": [], "sklearn": []}
        cpu_times: dict = {"fastnn": [], "sklearn": []}
        scores = {}
        for _ in range(max(3, min(repeat, 7))):
            for who, make in makers.items():
                estimator = make(**settings)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    start, cpu_start = time.perf_counter(), time.process_time()
                    estimator.fit(X_train, y_train)
                    times[who].append(time.perf_counter() - start)
                    cpu_times[who].append(time.process_time() - cpu_start)
                scores[who] = float(estimator.score(X_test, y_test))
        name = kind + "".join(f", fastnn {key}={value}" for key, value in own.items())
        rows.append({"task": task, "estimator": name, "solver": solver, "settings": repr(settings),
                     "fastnn_s": statistics.median(times["fastnn"]), "sklearn_s": statistics.median(times["sklearn"]),
                     "fastnn_score": scores["fastnn"], "sklearn_score": scores["sklearn"],
                     "fastnn_cpu_s": statistics.median(cpu_times["fastnn"]),
                     "sklearn_cpu_s": statistics.median(cpu_times["sklearn"])})
    return rows


def _estimator_table(rows: list[dict]) -> str:
    """The markdown table of :func:`estimator_rows`'s rows."""
    lines = ["Estimators, fastnn against scikit-learn (same data, same settings, random_state=0; digits: X/16, "
             "stratified 75/25 split, test accuracy; friedman1: make_friedman1(2000, noise=1), 75/25 split, "
             "test R^2; median fit time, fits alternating; CPU: the process's CPU time):", "",
             "| task | estimator | settings | fastnn fit s | scikit-learn fit s | speed-up | speed-up (CPU) "
             "| fastnn score | scikit-learn score |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['task']} | {row['estimator']} | {row['settings']} | {row['fastnn_s']:.3f} | "
                     f"{row['sklearn_s']:.3f} | {row['sklearn_s'] / row['fastnn_s']:.2f}x | "
                     f"{row['sklearn_cpu_s'] / row['fastnn_cpu_s']:.2f}x | "
                     f"{row['fastnn_score']:.4f} | {row['sklearn_score']:.4f} |")
    return "\n".join(lines)


# -- the results file (--json) -----------------------------------------------------


def _json_machine(threads: int) -> dict:
    """The results files' "machine" record: CPU, walker build, NumPy's BLAS, versions."""
    import numpy as np

    from fastnn import _walker

    cpu, family, model = _cpu_model(), None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            fields = dict(line.split(":", 1) for line in cpuinfo if ":" in line)
        family, model = fields.get("cpu family\t", "").strip(), fields.get("model\t\t", "").strip()
    except OSError:
        pass
    if family and model:
        cpu += f", family {family} model {model}"
    threadpoolctl = _optional("threadpoolctl")
    blas = [line for line in _threadpools(threadpoolctl) if line.startswith("blas")]
    blas = [line for line in blas if "numpy" in line] or blas        # NumPy's, not SciPy's (scikit-learn loads it)
    return {"cpu": cpu, "isa": _walker.ISA, "blas": blas[0].split(": ", 1)[1] if blas else _numpy_blas(np),
            "python": platform.python_version(), "numpy": np.__version__, "threads": threads}


def _write_json(path, argv, commit, rows, estimators, threads: int, load) -> None:
    """Write the results file: the envelope of docs/results/*.json and one row per config and dtype."""
    import datetime
    import json

    keys = {"fastnn": "fastnn_us", "NumPy": "numpy_us", "PyTorch": "torch_us", "scikit-learn": "sklearn_us"}
    words = ["python", "benchmarks/compare.py"] + list(sys.argv[1:] if argv is None else argv)
    record = {
        "command": " ".join(words),
        "commit": commit.split()[0] if commit else None,
        "dirty": bool(commit and " " in commit),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": _json_machine(threads),
        "load_average": None if load is None else round(load, 2),     # 1 minute, before the run
        "rows": [dict({"config": config.name, "title": config.title, "dtype": dtype, "unit": config.measure},
                      **{key: (times.get(label) * 1e6 if times.get(label) is not None else None)
                         for label, key in keys.items()})
                 for config, dtype, times in rows],
    }
    if estimators is not None:
        record["estimators"] = estimators
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _has_fastnn() -> bool:
    return importlib.util.find_spec("fastnn") is not None


if __name__ == "__main__":
    sys.exit(main())
