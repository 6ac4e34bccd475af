"""fit's training loop: validation data, early stopping that keeps the best epoch,
callbacks, progress output."""

import numpy as np
import pytest

import fastnn
from fastnn import reference


def model_and_data(seed=0):
    rng = np.random.default_rng(seed)
    model = fastnn.Sequential([fastnn.Dense(3, 8, seed=1), fastnn.Tanh(), fastnn.Dense(8, 1, seed=2)])
    X = rng.normal(size=(80, 3))
    y = np.sin(X.sum(axis=1)) + 0.3 * rng.normal(size=80)
    return model, X, y


def test_validation_data_gives_val_loss_each_epoch():
    model, X, y = model_and_data()
    X_val, y_val = X[:20] + 0.1, y[:20]
    history = model.fit(X, y, epochs=5, batch_size=16, seed=0, validation_data=(X_val, y_val),
                        optimizer=fastnn.SGD(0.05))
    assert len(history.val_loss) == 5 == history.epochs
    assert history.val_loss[-1] == pytest.approx(reference.mse_loss(model.predict(X_val), y_val), rel=1e-12)


def test_validation_split_holds_out_the_last_rows():
    a, X, y = model_and_data()
    b, _, _ = model_and_data()
    ha = a.fit(X, y, epochs=3, batch_size=10, seed=0, validation_split=0.25)
    hb = b.fit(X[:60], y[:60], epochs=3, batch_size=10, seed=0, validation_data=(X[60:], y[60:]))
    assert ha.loss == hb.loss and ha.val_loss == hb.val_loss
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())


def test_early_stopping_restores_the_best_epoch():
    model, X, y = model_and_data()
    X_val, y_val = X[60:], y[60:]
    # A large learning rate makes the validation loss bounce, so it has a best epoch.
    optimizer = fastnn.SGD(0.3, momentum=0.9)
    history = model.fit(X[:60], y[:60], optimizer=optimizer, epochs=60, batch_size=8, seed=3,
                        validation_data=(X_val, y_val), early_stopping=True, patience=5)
    best = history.best_epoch
    assert best is not None and history.val_loss[best - 1] == min(history.val_loss)
    assert history.stopped_epoch is None or history.stopped_epoch - best >= 5
    # The parameters are those after the best epoch: the same run stopped there.
    again, _, _ = model_and_data()
    again.fit(X[:60], y[:60], optimizer=fastnn.SGD(0.3, momentum=0.9), epochs=best, batch_size=8, seed=3)
    np.testing.assert_array_equal(model.get_parameters(), again.get_parameters())
    assert reference.mse_loss(model.predict(X_val), y_val) == pytest.approx(min(history.val_loss), rel=1e-12)


def test_early_stopping_on_training_loss_with_min_delta():
    model, X, y = model_and_data()
    history = model.fit(X, y, epochs=200, batch_size=80, early_stopping=True, patience=3, min_delta=1.0,
                        optimizer=fastnn.SGD(0.01))
    # No epoch improves by a whole 1.0 on the first: stopped after patience epochs, first epoch kept.
    assert history.best_epoch == 1 and history.stopped_epoch == 4 and history.epochs == 4


class Recorder:
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_epoch_end(self, epoch, logs):
        self.calls.append((epoch, sorted(logs)))
        return False if epoch == self.stop_at else None


def test_callbacks_see_every_epoch_and_can_stop():
    model, X, y = model_and_data()
    watcher, stopper = Recorder(), Recorder(stop_at=3)
    history = model.fit(X, y, epochs=10, callbacks=[watcher, stopper], validation_split=0.2)
    assert [epoch for epoch, _ in watcher.calls] == [1, 2, 3]
    assert watcher.calls[0][1] == ["epoch_time", "loss", "val_loss"]
    assert history.epochs == 3 and history.stopped_epoch == 3


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"validation_split": 1.5}, ValueError, "validation_split"),
    ({"validation_split": 0.001}, ValueError, "validation_split"),
    ({"validation_split": "a"}, TypeError, "validation_split"),
    ({"validation_data": (np.ones((3, 2)), np.ones(3))}, ValueError, r"validation_data\[0\]"),
    ({"validation_data": np.ones((3, 3))}, TypeError, "validation_data"),
    ({"validation_data": (np.ones((3, 3)), np.ones(4))}, ValueError, r"validation_data\[1\]"),
    ({"validation_data": (np.ones((3, 3)), np.ones(3)), "validation_split": 0.1}, ValueError, "validation"),
    ({"early_stopping": "yes"}, TypeError, "early_stopping"),
    ({"patience": 0}, ValueError, "patience"),
    ({"min_delta": -1}, ValueError, "min_delta"),
    ({"callbacks": [print]}, TypeError, r"callbacks\[0\]"),
])
def test_fit_rejects_bad_loop_arguments_and_changes_nothing(kwargs, exc, name):
    model, X, y = model_and_data()
    before = model.get_parameters().tobytes()
    with pytest.raises(exc, match=name):
        model.fit(X, y, **kwargs)
    assert model.get_parameters().tobytes() == before


def test_verbose_output(capsys):
    model, X, y = model_and_data()
    model.fit(X, y, epochs=3)
    model.fit(X, y, epochs=3, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    model.fit(X, y, epochs=4, verbose=2, validation_split=0.1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "4/4"] and "val_loss" in lines[0]
    model.fit(X, y, epochs=3, verbose=True)
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "loss=" in captured.err     # tqdm's bar, on stderr


def test_verbose_without_tqdm_prints_lines(capsys, monkeypatch):
    import fastnn.callbacks

    monkeypatch.setattr(fastnn.callbacks, "_tqdm_bar", lambda total: None)
    model, X, y = model_and_data()
    model.fit(X, y, epochs=2, verbose=True)
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["1/2", "2/2"]


def test_callbacks_may_use_the_model():
    model, X, y = model_and_data()
    seen = []

    class Peek:
        def on_epoch_end(self, epoch, logs):
            seen.append((model.predict(X[:2]).copy(), model.get_parameters().copy()))

    model.fit(X, y, epochs=2, callbacks=[Peek()])
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[-1][1], model.get_parameters())
