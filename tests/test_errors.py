"""Bad input at the model's boundary: the error's type, a message naming the argument,
and a model left exactly as it was."""

import numpy as np
import pytest

import fastnn
from fastnn import validation


def model_and_data():
    model = fastnn.Sequential([fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 2, seed=1)])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(10, 3)), rng.normal(size=(10, 2))


def state(model):
    return model.get_parameters().tobytes()


# -- construction ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,kwargs,exc,name", [
    ((0, 3), {}, ValueError, "in_features"),
    ((-2, 3), {}, ValueError, "in_features"),
    ((3, 0), {}, ValueError, "out_features"),
    ((1.5, 3), {}, TypeError, "in_features"),
    ((3, "4"), {}, TypeError, "out_features"),
    ((True, 3), {}, TypeError, "in_features"),
    ((None, 3), {}, TypeError, "in_features"),
    ((2, 3), {"init": "normal"}, ValueError, "init"),
    ((2, 3), {"init": 3}, TypeError, "init"),
    ((2, 3), {"seed": -1}, ValueError, "seed"),
    ((2, 3), {"seed": 1.5}, TypeError, "seed"),
])
def test_dense_rejects_bad_arguments(args, kwargs, exc, name):
    with pytest.raises(exc, match=rf"\b{name}\b"):
        fastnn.Dense(*args, **kwargs)


def test_dense_accepts_numpy_integers():
    assert fastnn.Dense(np.int64(2), np.int32(3)).W.shape == (2, 3)


@pytest.mark.parametrize("layers,exc,match", [
    ([], ValueError, "layers"),
    ([fastnn.ReLU()], ValueError, "Dense"),
    ([fastnn.Dense(1, 3), fastnn.Dense(2, 1)], ValueError, "chain"),
    ([fastnn.Dense(1, 3), fastnn.ReLU(), fastnn.Dense(4, 1)], ValueError, "in_features=4"),
    ([fastnn.Dense(1, 3), "relu"], TypeError, r"layers\[1\]"),
    ([fastnn.Dense(1, 3), fastnn.MSELoss()], TypeError, r"layers\[1\]"),
    (fastnn.Dense(1, 3), TypeError, "layers"),
    (None, TypeError, "layers"),
    (5, TypeError, "layers"),
])
def test_sequential_rejects_bad_layers(layers, exc, match):
    with pytest.raises(exc, match=match):
        fastnn.Sequential(layers)


def test_sequential_rejects_a_layer_twice():
    relu = fastnn.ReLU()
    with pytest.raises(ValueError, match="same layer"):
        fastnn.Sequential([fastnn.Dense(2, 2), relu, fastnn.Dense(2, 2), relu])


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, "object", "banana", 3])
def test_sequential_rejects_bad_dtype(dtype):
    with pytest.raises(TypeError, match="dtype"):
        fastnn.Sequential([fastnn.Dense(1, 1)], dtype=dtype)


@pytest.mark.parametrize("lr,exc", [(0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                    (float("inf"), ValueError), ("0.1", TypeError), (None, TypeError),
                                    (True, TypeError), (1j, TypeError)])
def test_sgd_rejects_bad_learning_rates(lr, exc):
    with pytest.raises(exc, match=r"\blr\b"):
        fastnn.SGD(lr=lr)
    optimizer = fastnn.SGD(0.1)
    with pytest.raises(exc, match=r"\blr\b"):
        optimizer.lr = lr
    assert optimizer.lr == 0.1


# -- predict, train_step and fit -----------------------------------------------------------------

BAD_X = [
    (np.ones((10, 2)), ValueError, "X"),            # wrong number of features
    (np.ones(10), ValueError, "X"),                 # 1-D
    (np.ones((10, 3, 1)), ValueError, "X"),         # 3-D
    (np.ones((0, 3)), ValueError, "X"),             # empty batch
    (np.full((10, 3), np.nan), ValueError, "X"),    # NaN
    (np.full((10, 3), np.inf), ValueError, "X"),    # infinity
    (np.ones((10, 3), dtype=complex), TypeError, "X"),
    (np.array([["a"] * 3] * 10), TypeError, "X"),
    (np.ones((10, 3), dtype=object), TypeError, "X"),
    ([[1, 2, 3], [4, 5]], ValueError, "X"),         # ragged
    (None, TypeError, "X"),
    ("text", TypeError, "X"),
]

BAD_Y = [
    (np.ones((9, 2)), ValueError, "y"),             # wrong number of samples
    (np.ones((10, 3)), ValueError, "y"),            # wrong number of outputs
    (np.ones(10), ValueError, "y"),                 # 1-D with two outputs
    (np.ones((10, 2, 1)), ValueError, "y"),
    (np.full((10, 2), np.nan), ValueError, "y"),
    (np.ones((10, 2), dtype=complex), TypeError, "y"),
    (None, TypeError, "y"),
]


@pytest.mark.parametrize("X,exc,name", BAD_X)
def test_predict_rejects_bad_X(X, exc, name):
    model, _, _ = model_and_data()
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.predict(X)


@pytest.mark.parametrize("X,exc,name", BAD_X)
def test_train_step_and_fit_reject_bad_X_and_change_nothing(X, exc, name):
    model, _, y = model_and_data()
    before = state(model)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.fit(X, y, epochs=2)
    assert state(model) == before


@pytest.mark.parametrize("y,exc,name", BAD_Y)
def test_train_step_and_fit_reject_bad_y_and_change_nothing(y, exc, name):
    model, X, _ = model_and_data()
    before = state(model)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(0.1))
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.fit(X, y, epochs=2)
    assert state(model) == before


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": -3}, ValueError, "epochs"),
    ({"epochs": 2.0}, TypeError, "epochs"),
    ({"epochs": None}, TypeError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 1.5}, TypeError, "batch_size"),
    ({"batch_size": "all"}, TypeError, "batch_size"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": "abc"}, TypeError, "seed"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"verbose": "loud"}, TypeError, "verbose"),
    ({"loss": "mse"}, TypeError, "loss"),
    ({"loss": fastnn.SGD()}, TypeError, "loss"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
    ({"optimizer": fastnn.MSELoss()}, TypeError, "optimizer"),
])
def test_fit_rejects_bad_arguments_and_changes_nothing(kwargs, exc, name):
    model, X, y = model_and_data()
    before = state(model)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        model.fit(X, y, **kwargs)
    assert state(model) == before


@pytest.mark.parametrize("loss,optimizer,name", [
    ("mse", fastnn.SGD(), "loss"),
    (fastnn.MSELoss(), "sgd", "optimizer"),
    (fastnn.MSELoss(), 0.1, "optimizer"),
])
def test_train_step_rejects_bad_loss_or_optimizer(loss, optimizer, name):
    model, X, y = model_and_data()
    before = state(model)
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        model.train_step(X, y, loss, optimizer)
    assert state(model) == before


def test_divergence_raises_and_leaves_the_model_as_before_the_step():
    model, X, y = model_and_data()
    X = X * 1e150
    before = state(model)
    with pytest.raises(FloatingPointError, match="smaller learning rate"):
        model.train_step(X, y, fastnn.MSELoss(), fastnn.SGD(lr=1e100))
    assert state(model) == before
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(X, y, optimizer=fastnn.SGD(lr=1e100), epochs=3, batch_size=4)
    assert state(model) == before


def test_fit_divergence_keeps_the_steps_before_it():
    model, X, y = model_and_data()
    X = X.copy()
    X[8:] *= 1e200     # the third mini-batch (rows 8 and 9) overflows
    clean = fastnn.Sequential([fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 2, seed=1)])
    clean.fit(X[:8], y[:8], optimizer=fastnn.SGD(0.1), epochs=1, batch_size=4, shuffle=False)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=1, batch_size=4, shuffle=False)
    np.testing.assert_array_equal(model.get_parameters(), clean.get_parameters())
    assert np.all(np.isfinite(model.get_parameters()))


def test_set_parameters_rejects_bad_values_and_changes_nothing():
    model, _, _ = model_and_data()
    before = state(model)
    with pytest.raises(ValueError, match="values"):
        model.set_parameters(np.ones(3))
    with pytest.raises(ValueError, match="values"):
        model.set_parameters(np.full(model.n_parameters, np.nan))
    with pytest.raises(ValueError, match=r"\bb\b"):
        model.layers[0].b = np.ones(5)
    assert state(model) == before


# -- validation's checkers, which every module's checks are made of ------------------------------

@pytest.mark.parametrize("check,args,good,expected", [
    (validation.check_bool, ("flag",), np.bool_(True), True),
    (validation.check_option, ("mode", ("a", "b")), "b", "b"),
    (validation.check_int, ("count",), np.int8(3), 3),
    (validation.check_number, ("rate",), np.float32(0.5), 0.5),
])
def test_checkers_return_plain_python_values(check, args, good, expected):
    kwargs = {"low": 1} if check is validation.check_int else {"low": 0.0} if check is validation.check_number else {}
    value = check(good, *args, **kwargs)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("call,exc,message", [
    (lambda: validation.check_bool(1, "flag"), TypeError, "flag must be True or False, got int 1"),
    (lambda: validation.check_bool(None, "flag"), TypeError, "flag must be True or False, got NoneType None"),
    (lambda: validation.check_option("c", "mode", ("a", "b")), ValueError, "mode must be one of ('a', 'b'), got 'c'"),
    (lambda: validation.check_option(1, "mode", ["a"]), ValueError, "mode must be one of ('a',), got 1"),
    (lambda: validation.check_int(0, "count", low=1), ValueError, "count must be an integer >= 1, got 0"),
    (lambda: validation.check_int(2.0, "count", low=1), TypeError, "count must be an integer >= 1, got float 2.0"),
    (lambda: validation.check_int(True, "count", low=0), TypeError, "count must be an integer >= 0, got bool True"),
    (lambda: validation.check_sgd_hyperparameters(0.0, True, 0.0), ValueError,
     "nesterov=True needs momentum > 0, got momentum=0"),
    (lambda: validation.check_adam_hyperparameters(0.9, 1.0, 1e-8, 0.0, beta_names=("betas[0]", "betas[1]")),
     ValueError, "betas[1] must be a finite number in [0.0, 1.0), got 1.0"),
    (lambda: validation.as_numeric_array(["a"], "X"), TypeError, "X must be an array of real numbers, got dtype <U1"),
])
def test_checkers_say_what_was_expected_and_what_was_given(call, exc, message):
    with pytest.raises(exc) as raised:
        call()
    assert str(raised.value) == message


def test_describe_names_arrays_by_dtype_and_shape_and_shortens_long_values():
    assert validation.describe(np.zeros((2, 3), np.float32)) == "an array of dtype float32 and shape (2, 3)"
    assert validation.describe("x" * 100) == "str '" + "x" * 56 + "..."
