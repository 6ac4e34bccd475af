"""asv suites for the kernels of ``fastnn.ops``, against ``fastnn.reference``.

Every benchmark is parameterised over (config, dtype, impl). ``impl`` is the
last parameter, so asv prints ``fastnn`` and ``reference`` as two columns
side by side. A kernel runs on the arguments it sees during one training
step of the config's network (``common.trace``): ``dense_forward`` and
``dense_backward`` once per Dense layer, the ReLU kernels once per ReLU, the
config's loss kernels on the output (MSE, or cross-entropy on the logits and
integer labels; a loss suite runs on the configs trained with its loss; MAE,
Huber, BCE with logits and Poisson on the MSE configs' output, with targets
made from their y), ``sgd_update``, ``sgd_momentum_update`` and
``adam_update`` once per W and b. ``tanh_forward`` and
``sigmoid_forward`` run on the inputs of the ReLUs (the hidden layers'
pre-activations), as they would in a network built with Tanh or Sigmoid.
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
    make_model,
    make_reference,
    trace,
)

IMPLS = {"fastnn": ops, "reference": reference}


def _trained_with(loss: str) -> list:
    """The names of the configs trained with ``loss`` (a loss suite's configs)."""
    return [name for name in CONFIG_NAMES if CONFIGS[name].loss == loss]


class _KernelSuite(WarmSetup):
    params = (CONFIG_NAMES, DTYPE_NAMES, list(IMPLS))
    param_names = ("config", "dtype", "impl")
    timeout = 300

    def setup(self, config, dtype, impl):
        self.config = CONFIGS[config]
        model = make_model(config, dtype)
        X, y = make_data(config, dtype)
        n = self.config.batch_size
        self.kernels = IMPLS[impl]
        self.step = trace(make_reference(model), X[:n], y[:n], self.config.loss)


class Dense(_KernelSuite):
    """``dense_forward`` and ``dense_backward`` over every Dense layer."""

    def time_forward(self, *params):
        for X, W, b, _ in self.step["dense"]:
            self.kernels.dense_forward(X, W, b)

    def peakmem_forward(self, *params):
        for X, W, b, _ in self.step["dense"]:
            self.kernels.dense_forward(X, W, b)

    def time_backward(self, *params):
        for X, W, _, dY in self.step["dense"]:
            self.kernels.dense_backward(X, W, dY)

    def peakmem_backward(self, *params):
        for X, W, _, dY in self.step["dense"]:
            self.kernels.dense_backward(X, W, dY)


class ReLU(_KernelSuite):
    """``relu_forward`` and ``relu_backward`` over every ReLU."""

    def setup(self, config, dtype, impl):
        super().setup(config, dtype, impl)
        if not self.step["relu"]:
            raise NotImplementedError("no ReLU in this network")   # asv: skipped

    def time_forward(self, *params):
        for Z, _ in self.step["relu"]:
            self.kernels.relu_forward(Z)

    def peakmem_forward(self, *params):
        for Z, _ in self.step["relu"]:
            self.kernels.relu_forward(Z)

    def time_backward(self, *params):
        for Z, dA in self.step["relu"]:
            self.kernels.relu_backward(Z, dA)

    def peakmem_backward(self, *params):
        for Z, dA in self.step["relu"]:
            self.kernels.relu_backward(Z, dA)


class Activations(_KernelSuite):
    """``tanh_forward``/``_backward`` and ``sigmoid_forward``/``_backward`` on the
    inputs (and incoming gradients) of every activation of the network."""

    def setup(self, config, dtype, impl):
        super().setup(config, dtype, impl)
        self.inputs = self.step["relu"] + [(Z, dA) for _, Z, dA in self.step["activation"]]

    def time_tanh_forward(self, *params):
        for Z, _ in self.inputs:
            self.kernels.tanh_forward(Z)

    def time_tanh_backward(self, *params):
        for Z, dA in self.inputs:
            self.kernels.tanh_backward(Z, dA)

    def time_sigmoid_forward(self, *params):
        for Z, _ in self.inputs:
            self.kernels.sigmoid_forward(Z)

    def time_sigmoid_backward(self, *params):
        for Z, dA in self.inputs:
            self.kernels.sigmoid_backward(Z, dA)


class _ElementwiseLoss(_KernelSuite):
    """``<loss>_loss`` and ``<loss>_grad`` on the network's output and a target made
    from its y (``target``), on the configs trained with MSE (regression outputs)."""

    params = (_trained_with("mse"), DTYPE_NAMES, list(IMPLS))
    loss = "mse"
    extra = ()      # arguments after (prediction, target): Huber's delta

    def setup(self, config, dtype, impl):
        super().setup(config, dtype, impl)
        yhat, y = self.step["loss"]
        self.args = (yhat, self.target(y), *self.extra)
        self.loss_call = getattr(self.kernels, f"{self.loss}_loss")
        self.grad_call = getattr(self.kernels, f"{self.loss}_grad")

    @staticmethod
    def target(y):
        return y

    def time_loss(self, *params):
        self.loss_call(*self.args)

    def peakmem_loss(self, *params):
        self.loss_call(*self.args)

    def time_grad(self, *params):
        self.grad_call(*self.args)

    def peakmem_grad(self, *params):
        self.grad_call(*self.args)


class MSE(_ElementwiseLoss):
    """``mse_loss`` and ``mse_grad`` on the network's output (the MSE configs)."""


class MAE(_ElementwiseLoss):
    """``mae_loss`` and ``mae_grad`` on the network's output (the MSE configs)."""

    loss = "mae"


class Huber(_ElementwiseLoss):
    """``huber_loss`` and ``huber_grad`` (delta 1) on the network's output (the MSE configs)."""

    loss = "huber"
    extra = (1.0,)


class BCEWithLogits(_ElementwiseLoss):
    """``bce_with_logits_loss`` and ``_grad``: the network's output as the logits of the
    binary label ``y > 0`` (the MSE configs)."""

    loss = "bce_with_logits"

    @staticmethod
    def target(y):
        return (y > 0).astype(y.dtype)


class Poisson(_ElementwiseLoss):
    """``poisson_loss`` and ``poisson_grad``: the network's output as the log-mean of the
    counts ``round(exp(y))`` (the MSE configs)."""

    loss = "poisson"

    @staticmethod
    def target(y):
        return np.round(np.exp(y))


class CrossEntropy(_KernelSuite):
    """``cross_entropy_loss`` and ``cross_entropy_grad`` on the logits and integer labels
    (the classification configs)."""

    params = (_trained_with("cross_entropy"), DTYPE_NAMES, list(IMPLS))

    def time_loss(self, *params):
        self.kernels.cross_entropy_loss(*self.step["loss"])

    def peakmem_loss(self, *params):
        self.kernels.cross_entropy_loss(*self.step["loss"])

    def time_grad(self, *params):
        self.kernels.cross_entropy_grad(*self.step["loss"])

    def peakmem_grad(self, *params):
        self.kernels.cross_entropy_grad(*self.step["loss"])


class SGD(_KernelSuite):
    """``sgd_update`` of every W and b (in place, on copies owned by the benchmark)."""

    lr = 1e-6   # the same gradient is applied again and again: keep the drift small

    def time_update(self, *params):
        for param, grad in self.step["update"]:
            self.kernels.sgd_update(param, grad, self.lr)

    def peakmem_update(self, *params):
        for param, grad in self.step["update"]:
            self.kernels.sgd_update(param, grad, self.lr)


class SGDMomentum(_KernelSuite):
    """``sgd_momentum_update`` (momentum 0.9) of every W and b, with its velocity (in
    place, on copies owned by the benchmark)."""

    lr = 1e-6   # the same gradient is applied again and again: keep the drift small
    momentum = 0.9

    def setup(self, config, dtype, impl):
        super().setup(config, dtype, impl)
        self.states = [(param, grad, np.zeros_like(param)) for param, grad in self.step["update"]]

    def time_update(self, *params):
        for param, grad, velocity in self.states:
            self.kernels.sgd_momentum_update(param, grad, velocity, self.lr, self.momentum)

    def peakmem_update(self, *params):
        for param, grad, velocity in self.states:
            self.kernels.sgd_momentum_update(param, grad, velocity, self.lr, self.momentum)


class Adam(_KernelSuite):
    """``adam_update`` of every W and b, with its two moments (in place, on copies
    owned by the benchmark); the step number counts up as in training."""

    lr = 1e-6   # the same gradient is applied again and again: keep the drift small

    def setup(self, config, dtype, impl):
        super().setup(config, dtype, impl)
        self.states = [(param, grad, np.zeros_like(param), np.zeros_like(param))
                       for param, grad in self.step["update"]]
        self.t = 0

    def _update(self):
        self.t += 1
        for param, grad, exp_avg, exp_avg_sq in self.states:
            self.kernels.adam_update(param, grad, exp_avg, exp_avg_sq, self.t, self.lr,
                                     ADAM_BETAS[0], ADAM_BETAS[1], ADAM_EPS)

    def time_update(self, *params):     # no peakmem_: it allocates what sgd_update does, a few temporaries
        self._update()
