"""asv suites for whole networks: ``predict``, ``train_step`` and a ``fit`` epoch.

``fastnn.Sequential`` against ``fastnn.reference.ReferenceMLP`` (the same
network, layer by layer in NumPy), parameterised over (config, dtype, impl);
``impl`` is last, so asv prints the two side by side. Each config brings its
loss and optimizer (``common.make_loss``, ``common.make_optimizer``): MSE and
plain SGD, MSE and Adam ("tiny-adam"), cross-entropy on integer labels and
Adam ("digits"); the Tanh and Sigmoid networks ("tiny-tanh", "tiny-sigmoid",
"medium-tanh") against ReLU's ("tiny-256"); the reference trains with ``ReferenceMLP.train_step`` and
``fit_epoch`` (the config's loss, and ``common.reference_optimizer``).
``Agreement`` tracks how far fastnn's results are from the reference's, and
fails when they are further apart than ``common.TOLERANCE`` allows.
"""

import numpy as np

from fastnn import ops, reference

from .common import (
    ADAM_BETAS,
    ADAM_EPS,
    CONFIG_NAMES,
    CONFIGS,
    DTYPE_NAMES,
    WarmSetup,
    make_data,
    make_loss,
    make_model,
    make_optimizer,
    make_reference,
    max_abs_diff,
    parameters_of,
    reference_optimizer,
    trace,
)

IMPLS = ["fastnn", "reference"]


class _NetworkSuite(WarmSetup):
    params = (CONFIG_NAMES, DTYPE_NAMES, IMPLS)
    param_names = ("config", "dtype", "impl")
    timeout = 300

    def setup(self, config, dtype, impl):
        self.config = CONFIGS[config]
        self.impl = impl
        model = make_model(config, dtype)
        self.X, self.y = make_data(config, dtype)
        n = self.config.batch_size
        self.X_batch, self.y_batch = self.X[:n], self.y[:n]
        self.net = model if impl == "fastnn" else make_reference(model)
        self.loss = make_loss(self.config)
        self.optimizer = make_optimizer(self.config) if impl == "fastnn" else reference_optimizer(self.config)
        self.rng = np.random.default_rng(0)


class Predict(_NetworkSuite):
    """``predict`` on one batch of ``batch_size`` rows."""

    def time_predict(self, *params):
        self.net.predict(self.X_batch)

    def peakmem_predict(self, *params):
        self.net.predict(self.X_batch)


class TrainStep(_NetworkSuite):
    """One ``train_step`` (forward, loss, backward, SGD or Adam update) on one batch."""

    def _step(self):
        if self.impl == "fastnn":
            self.net.train_step(self.X_batch, self.y_batch, self.loss, self.optimizer)
        else:
            self.net.train_step(self.X_batch, self.y_batch, self.optimizer, self.config.loss)

    def time_train_step(self, *params):
        self._step()

    def peakmem_train_step(self, *params):
        self._step()


class FitEpoch(_NetworkSuite):
    """One shuffled epoch of mini-batch training (the config's loss and optimizer)
    over the config's ``n_samples`` rows."""

    number = 1      # an epoch is milliseconds to seconds: one per sample

    def _epoch(self):
        if self.impl == "reference":
            order = self.rng.permutation(self.config.n_samples)
            self.net.fit_epoch(self.X, self.y, self.optimizer, self.config.batch_size, order, self.config.loss)
        else:
            self.net.fit(self.X, self.y, loss=self.loss, optimizer=self.optimizer, epochs=1,
                         batch_size=self.config.batch_size, shuffle=True, seed=0)

    def time_fit_epoch(self, *params):
        self._epoch()

    def peakmem_fit_epoch(self, *params):
        self._epoch()


class Agreement:
    """Max abs difference between fastnn and the NumPy reference (0 is perfect).

    Each track fails (raises) if the difference exceeds ``common.TOLERANCE``
    relative to the size of the values, so ``asv run`` reports a broken
    kernel as a failed benchmark.
    """

    params = (CONFIG_NAMES, DTYPE_NAMES)
    param_names = ("config", "dtype")
    unit = "max abs diff"
    timeout = 300

    def setup(self, config, dtype):
        self.config = CONFIGS[config]
        self.dtype = dtype
        self.X, self.y = make_data(config, dtype)
        n = self.config.batch_size
        self.X_batch, self.y_batch = self.X[:n], self.y[:n]

    def _pair(self):
        model = make_model(self.config, self.dtype)
        return model, make_reference(model)

    def track_kernels(self, *params):
        """Every kernel of ``fastnn.ops`` on one step's arguments (the config's loss and update)."""
        model, ref = self._pair()
        loss = self.config.loss
        step = trace(ref, self.X_batch, self.y_batch, loss)
        got, expected = [], []

        def both(name, *args):
            got.append(np.asarray(getattr(ops, name)(*args)))
            expected.append(np.asarray(getattr(reference, name)(*args)))

        for X, W, b, dY in step["dense"]:
            both("dense_forward", X, W, b)
            for a, e in zip(ops.dense_backward(X, W, dY), reference.dense_backward(X, W, dY)):
                got.append(a)
                expected.append(e)
        for Z, dA in step["relu"]:
            both("relu_forward", Z)
            both("relu_backward", Z, dA)
        for name, Z, dA in step["activation"]:
            both(f"{name}_forward", Z)
            both(f"{name}_backward", Z, dA)
        both(f"{loss}_loss", *step["loss"])
        both(f"{loss}_grad", *step["loss"])
        for param, grad in step["update"]:
            if self.config.optimizer == "adam":
                # Two steps from zero moments (the second with bias correction at t = 2),
                # comparing the parameter and both moments after them.
                states = []
                for kernels in (ops, reference):
                    state = [param.copy(), np.zeros_like(param), np.zeros_like(param)]
                    for t in (1, 2):
                        kernels.adam_update(state[0], grad, state[1], state[2], t, self.config.lr,
                                            ADAM_BETAS[0], ADAM_BETAS[1], ADAM_EPS)
                    states.append(state)
                got += states[0]
                expected += states[1]
            else:
                mine, theirs = param.copy(), param.copy()
                ops.sgd_update(mine, grad, self.config.lr)
                reference.sgd_update(theirs, grad, self.config.lr)
                got.append(mine)
                expected.append(theirs)
        return max_abs_diff(got, expected, self.dtype, "the kernels")

    def track_predict(self, *params):
        model, ref = self._pair()
        return max_abs_diff([model.predict(self.X)], [ref.predict(self.X)], self.dtype, "predict")

    def track_train_step(self, *params):
        """Three steps on one batch: the losses and the parameters after them."""
        model, ref = self._pair()
        loss, optimizer = make_loss(self.config), make_optimizer(self.config)
        losses = [model.train_step(self.X_batch, self.y_batch, loss, optimizer) for _ in range(3)]
        rule = reference_optimizer(self.config)
        expected = [ref.train_step(self.X_batch, self.y_batch, rule, self.config.loss) for _ in range(3)]
        return max_abs_diff([losses] + parameters_of(model), [expected] + parameters_of(ref),
                            self.dtype, "train_step")

    def track_fit_epoch(self, *params):
        """One epoch in order (no shuffling): the mean loss and the parameters after it."""
        model, ref = self._pair()
        history = model.fit(self.X, self.y, loss=make_loss(self.config), optimizer=make_optimizer(self.config),
                            epochs=1, batch_size=self.config.batch_size, shuffle=False)
        expected = ref.fit_epoch(self.X, self.y, reference_optimizer(self.config), self.config.batch_size,
                                 loss=self.config.loss)
        return max_abs_diff([history.loss] + parameters_of(model), [[expected]] + parameters_of(ref),
                            self.dtype, "a fit epoch")
