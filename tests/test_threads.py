"""fastnn under Python threads: the steps run without the GIL, so threads really overlap.

* Models trained in separate threads end exactly (bit for bit) as they do
  when trained one after the other: nothing is shared between models.
* Threads sharing ONE model are serialised by the model's lock. The check
  that an update was not torn: SGD steps on one fixed batch are a fixed map
  ``p -> step(p)``, so however two threads' calls interleave, 2N serialised
  steps give exactly ``step^(2N)(p0)``, each call returns exactly one of the
  serial run's losses, and every state anyone observes between calls is one
  of the serial run's intermediate states. An unserialised (torn) update
  mixes two steps and breaks all three. The threads must also have met:
  each of these tests requires a minimum number of states observed while
  the other thread was training, so that it cannot pass on threads that ran
  one after the other.
* The GIL is released during a compiled step and a compiled epoch: a
  counter thread advances while ``train_step`` or ``fit`` runs in another.
"""

import sys
import threading
import time

import numpy as np
import pytest

import fastnn

TIMEOUT = 60


def make_model(sizes, dtype, seed, relu_out=False):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(fastnn.Dense(n_in, n_out, seed=rng))
        if i < len(sizes) - 2 or relu_out:
            layers.append(fastnn.ReLU())
    return fastnn.Sequential(layers, dtype=dtype)


def make_data(n_samples, n_in, n_out, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_samples, n_in)).astype(dtype),
            rng.normal(size=(n_samples, n_out)).astype(dtype))


def run_threads(targets):
    """Start one thread per callable, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(target):
        def run():
            try:
                barrier.wait(TIMEOUT)
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(target), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish (deadlock?)"
    if errors:
        raise errors[0]


# -- independent models ---------------------------------------------------------------------

#: (sizes, dtype, relu on the output, n_samples, batch_size): small (own loops)
#: and wide (BLAS) networks, both dtypes.
JOBS = [
    ((1, 16, 1), np.float64, False, 256, 16),
    ((8, 32, 32, 1), np.float32, False, 512, 32),
    ((64, 128, 8, 1), np.float64, True, 256, 64),
    ((5, 7, 3), np.float32, True, 301, 7),
]


def train_job(index):
    """Build job ``index``'s model and data; return (model, a callable that trains it, results)."""
    sizes, dtype, relu_out, n_samples, batch_size = JOBS[index]
    model = make_model(sizes, dtype, seed=index, relu_out=relu_out)
    X, y = make_data(n_samples, sizes[0], sizes[-1], dtype, seed=100 + index)
    results = {}

    def train():
        results["fit"] = model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=30, batch_size=batch_size,
                                   seed=index).loss
        results["steps"] = [model.train_step(X[:batch_size], y[:batch_size], fastnn.MSELoss(),
                                             fastnn.SGD(lr=0.01)) for _ in range(100)]
        results["predict"] = model.predict(X)
        results["params"] = model.get_parameters()

    return model, train, results


def test_independent_models_in_threads_match_serial_training_exactly():
    serial = []
    for index in range(len(JOBS)):
        _, train, results = train_job(index)
        train()
        serial.append(results)
    for _ in range(3):
        jobs = [train_job(index) for index in range(len(JOBS))]
        run_threads([train for _, train, _ in jobs])
        for index, ((_, _, threaded), expected) in enumerate(zip(jobs, serial)):
            for key in ("fit", "steps", "predict", "params"):
                np.testing.assert_array_equal(threaded[key], expected[key], err_msg=f"job {index}, {key}")


def test_copies_of_one_model_train_in_threads_like_the_original():
    import copy

    original = make_model((64, 128, 8, 1), np.float64, seed=7)
    X, y = make_data(128, 64, 1, np.float64, seed=8)
    copies = [copy.deepcopy(original) for _ in range(3)]

    def train(model):
        return lambda: model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=20, batch_size=32, seed=0)

    run_threads([train(model) for model in copies])
    train(original)()
    for model in copies:
        np.testing.assert_array_equal(model.get_parameters(), original.get_parameters())


# -- one model, several threads ----------------------------------------------------------------

N_STEPS = 100
#: The least number of distinct intermediate states (neither the first nor the
#: last) that a test must have observed from another thread while training ran:
#: fewer means the threads barely overlapped and the test proved little.
MIN_OVERLAP = 10
#: How many times a sharing test may run before its threads must have met MIN_OVERLAP times in
#: all: each run checks every value it saw, and the overlaps of the runs add up. On a loaded
#: machine one run's threads may be scheduled one after the other; over many runs, threads that
#: do overlap meet, while a test whose threads never overlap fails.
MAX_ROUNDS = 30


def until_met(one_round) -> int:
    """Run ``one_round()`` (which checks what it saw and returns how often the threads met)
    until the meetings add up to MIN_OVERLAP, at most MAX_ROUNDS times; the total."""
    total = 0
    for _ in range(MAX_ROUNDS):
        total += one_round()
        if total >= MIN_OVERLAP:
            break
    return total
SHARED = ((64, 128, 8, 1), 64)    # sizes, batch: BLAS and loops in one step, a long nogil section


def shared_setup(dtype):
    sizes, n_samples = SHARED
    model = make_model(sizes, dtype, seed=3)
    X, y = make_data(n_samples, sizes[0], sizes[-1], dtype, seed=4)
    return model, X, y


def serial_trajectory(dtype, n_steps):
    """Parameters and predictions after 0..n_steps steps on the fixed batch, and the losses."""
    model, X, y = shared_setup(dtype)
    params, outputs, losses = [model.get_parameters()], [model.predict(X)], []
    for _ in range(n_steps):
        losses.append(model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01)))
        params.append(model.get_parameters())
        outputs.append(model.predict(X))
    return params, outputs, losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_two_threads_training_one_model_do_not_tear_updates(dtype):
    params, _, losses = serial_trajectory(dtype, 2 * N_STEPS)
    switches = until_met(lambda: _two_threads_round(dtype, params, losses))
    assert switches >= MIN_OVERLAP, (
        f"the two threads' steps alternated only {switches} times in {MAX_ROUNDS} runs")


def _two_threads_round(dtype, params, losses) -> int:
    """Two threads step one model; every call must see a whole state. How often they alternated."""
    model, X, y = shared_setup(dtype)
    got = [[], []]

    def steps(i):
        def run():
            for _ in range(N_STEPS):
                got[i].append(model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01)))
                time.sleep(0)       # let the other thread take the model's lock
        return run

    run_threads([steps(0), steps(1)])
    np.testing.assert_array_equal(model.get_parameters(), params[-1])
    # Each call saw a whole state of the serial run, and no two calls saw the same one.
    assert sorted(got[0] + got[1]) == sorted(losses)
    assert len(set(losses)) == len(losses)
    # The threads took turns (two threads that ran one after the other would
    # switch once).
    owner = {loss: i for i in (0, 1) for loss in got[i]}
    return sum(owner[a] != owner[b] for a, b in zip(losses, losses[1:])) - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_fit_steps_and_predict_on_one_model_from_three_threads(dtype):
    """fit (full batch, in order: one step per epoch), train_step and predict, concurrently."""
    params, outputs, _ = serial_trajectory(dtype, 2 * N_STEPS)
    met = until_met(lambda: _three_threads_round(dtype, params, outputs))
    assert met >= MIN_OVERLAP, f"predictions saw only {met} states between the first and the last in {MAX_ROUNDS} runs"


def _three_threads_round(dtype, params, outputs) -> int:
    """fit, train_step and predict on one model; every prediction must be one of a whole state.
    How many states between the first and the last the predictions saw."""
    known_outputs = {out.tobytes(): k for k, out in enumerate(outputs)}
    model, X, y = shared_setup(dtype)
    seen = []
    done = threading.Event()

    def fitting():
        model.fit(X, y, optimizer=fastnn.SGD(lr=0.01), epochs=N_STEPS, shuffle=False)

    def stepping():
        for _ in range(N_STEPS):
            model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.01))
            time.sleep(0)       # let the predicting thread take the model's lock

    def predicting():
        while not done.is_set():
            seen.append(model.predict(X).tobytes())
            time.sleep(0)       # hand the GIL back to the training threads at once

    def training():
        try:
            run_threads([fitting, stepping])
        finally:
            done.set()

    run_threads([training, predicting])
    np.testing.assert_array_equal(model.get_parameters(), params[-1])
    torn = [i for i, out in enumerate(seen) if out not in known_outputs]
    assert not torn, f"{len(torn)} of {len(seen)} predictions match no state of the serial run"
    return len({known_outputs[out] for out in seen} - {0, 2 * N_STEPS})


#: Reading parameters from another thread: a wide network on one-row batches,
#: so that the SGD update (a pass over every parameter) is a large part of each step.
READ_SIZES, READ_STEPS = (128, 256, 64, 1), 500


def _whole_states_test(dtype, read):
    """Train READ_STEPS steps in one thread while another calls ``read(model)`` in a loop;
    every value read must be the parameters of one state of the serial run, and the reads
    must have seen states between the first and the last."""
    met = until_met(lambda: _whole_states_round(dtype, read))
    assert met >= MIN_OVERLAP, (
        f"snapshots read during training saw only {met} states between the first and the last "
        f"in {MAX_ROUNDS} runs")


def _whole_states_round(dtype, read) -> int:
    model = make_model(READ_SIZES, dtype, seed=5)
    X, y = make_data(1, READ_SIZES[0], READ_SIZES[-1], dtype, seed=6)
    known = {hash(model.get_parameters().tobytes()): 0}
    for k in range(1, READ_STEPS + 1):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.001))
        known[hash(model.get_parameters().tobytes())] = k
    final = model.get_parameters()
    model = make_model(READ_SIZES, dtype, seed=5)
    seen = []
    done = threading.Event()

    def stepping():
        try:
            for _ in range(READ_STEPS):
                model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=0.001))
        finally:
            done.set()

    def reading():
        while not done.is_set():
            seen.append(hash(read(model).tobytes()))
            time.sleep(0)       # hand the GIL back to the training thread at once

    run_threads([stepping, reading])
    np.testing.assert_array_equal(model.get_parameters(), final)
    torn = sum(snapshot not in known for snapshot in seen)
    assert torn == 0, f"{torn} of {len(seen)} snapshots read during training match no state of the serial run"
    return len({known[snapshot] for snapshot in seen} - {0, READ_STEPS})


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_get_parameters_during_training_returns_whole_states(dtype):
    _whole_states_test(dtype, lambda model: model.get_parameters())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_copies_made_during_training_hold_whole_states(dtype):
    import copy
    import pickle

    _whole_states_test(dtype, lambda model: copy.deepcopy(model).get_parameters())
    _whole_states_test(dtype, lambda model: pickle.loads(pickle.dumps(model)).get_parameters())


# -- the GIL ----------------------------------------------------------------------------------------

#: Turns of the counter thread that one call must let happen while it runs.
MIN_TURNS = 100
#: How many times the measured call may run before the test gives up.
MAX_CALLS = 20


def turns_during_calls(call) -> list[int]:
    """Run ``call()`` repeatedly while a counter thread turns; return how many times the
    counter turned during each call.

    The GIL's switch interval is raised to a minute for the measurement, so
    that the GIL changes hands only when its holder lets it go, never on a
    timer; each turn of the counter ends in ``time.sleep(0)``, which lets it
    go. A call that keeps the GIL therefore leaves the counter standing
    (bar a turn where the call's own Python code lets the GIL go), however
    long it runs; a call that releases it lets the counter turn freely. The
    calls repeat until one saw MIN_TURNS turns, or MAX_CALLS calls ran.
    """
    state = {"running": False, "turns": 0}
    stop = threading.Event()
    started = threading.Event()

    def counter():
        started.set()
        while not stop.is_set():
            if state["running"]:
                state["turns"] += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    thread = threading.Thread(target=counter, daemon=True)
    per_call: list[int] = []
    sys.setswitchinterval(60.0)
    try:
        thread.start()
        assert started.wait(TIMEOUT), "the counter thread did not start"
        while len(per_call) < MAX_CALLS and max(per_call, default=0) < MIN_TURNS:
            state["turns"] = 0
            state["running"] = True
            call()
            state["running"] = False
            per_call.append(state["turns"])
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        thread.join(TIMEOUT)
    return per_call


def long_job(dtype):
    """A network and data on which one compiled epoch, or one step on all the data, runs long."""
    model = make_model((32, 128, 64, 1), dtype, seed=11)
    X, y = make_data(8192, 32, 1, dtype, seed=12)
    return model, X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("entry", ["fit", "train_step"])
def test_another_thread_runs_while_a_compiled_epoch_or_step_runs(entry, dtype):
    model, X, y = long_job(dtype)
    if entry == "fit":                  # one compiled call per epoch: 512 batches of 16 rows
        def call():
            model.fit(X, y, optimizer=fastnn.SGD(lr=1e-4), epochs=1, batch_size=16, seed=0)
    else:                               # one compiled call: all the rows in one batch
        def call():
            model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=1e-4))
    per_call = turns_during_calls(call)
    assert max(per_call) >= MIN_TURNS, (
        f"another thread turned at most {max(per_call)} times during each of {len(per_call)} {entry} calls: "
        f"the GIL was held")


def test_the_counter_stands_still_while_a_call_keeps_the_gil():
    """The measurement can fail: ``sum`` over a ``range`` (a C loop that keeps the GIL, about as
    long as the calls above) lets the counter turn hardly at all."""
    per_call = turns_during_calls(lambda: sum(range(3_000_000)))
    assert len(per_call) == MAX_CALLS
    assert max(per_call) < 10, f"the counter turned {per_call} times while sum kept the GIL"
