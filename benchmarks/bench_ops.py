"""asv suites for the kernels of ``fastnn.ops``, against ``fastnn.reference``.

Every benchmark is parameterised over (config, dtype, impl). ``impl`` is the
last parameter, so asv prints ``fastnn`` and ``reference`` as two columns
side by side. A kernel runs on the arguments it sees during one training
step of the config's network (``common.trace``): ``dense_forward`` and
``dense_backward`` once per Dense layer, the ReLU kernels once per ReLU, the
MSE kernels on the output, ``sgd_update`` once per W and b.
"""

from fastnn import ops, reference

from .common import CONFIG_NAMES, CONFIGS, DTYPE_NAMES, make_data, make_model, make_reference, trace

IMPLS = {"fastnn": ops, "reference": reference}


class _KernelSuite:
    params = (CONFIG_NAMES, DTYPE_NAMES, list(IMPLS))
    param_names = ("config", "dtype", "impl")
    timeout = 300

    def setup(self, config, dtype, impl):
        model = make_model(config, dtype)
        X, y = make_data(config, dtype)
        n = CONFIGS[config].batch_size
        self.kernels = IMPLS[impl]
        self.step = trace(make_reference(model), X[:n], y[:n])


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


class MSE(_KernelSuite):
    """``mse_loss`` and ``mse_grad`` on the network's output."""

    def time_loss(self, *params):
        self.kernels.mse_loss(*self.step["loss"])

    def peakmem_loss(self, *params):
        self.kernels.mse_loss(*self.step["loss"])

    def time_grad(self, *params):
        self.kernels.mse_grad(*self.step["loss"])

    def peakmem_grad(self, *params):
        self.kernels.mse_grad(*self.step["loss"])


class SGD(_KernelSuite):
    """``sgd_update`` of every W and b (in place, on copies owned by the benchmark)."""

    lr = 1e-6   # the same gradient is applied again and again: keep the drift small

    def time_update(self, *params):
        for param, grad in self.step["update"]:
            self.kernels.sgd_update(param, grad, self.lr)

    def peakmem_update(self, *params):
        for param, grad in self.step["update"]:
            self.kernels.sgd_update(param, grad, self.lr)
