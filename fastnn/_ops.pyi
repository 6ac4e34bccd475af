"""Type stub of ``fastnn._ops``, compiled from ``fastnn/_ops.pyx``.

Keep it in step with the ``.pyx``: tests/test_packaging.py checks that both
define the same public names. The array arguments are typed memoryviews in
the ``.pyx``: C-contiguous float32 or float64 arrays, one dtype per call,
inputs ``const`` (read-only arrays are accepted), outputs written in place.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

from fastnn._blas import BlasInfo

# A C-contiguous float32 or float64 array (every array of one call in one dtype).
_Floats = npt.NDArray[np.floating[Any]]

#: True when the extension was compiled with bounds checking (FASTNN_DEBUG=1).
DEBUG_BUILD: bool
#: From which sizes the Dense wrappers call BLAS (the rule of fastnn/_kernels.pxi's use_blas).
BLAS_MIN_WEIGHTS: int
BLAS_MIN_WIDTH: int
BLAS_MIN_WEIGHTS_TILED: int
#: Activation name -> its code in the kernels.
FN_CODES: dict[str, int]
#: Loss name -> its code in the kernels.
LOSS_CODES: dict[str, int]

def cpu_has_avx2() -> bool: ...
def cpu_has_avx512() -> bool: ...
def set_blas(info: BlasInfo | None) -> None: ...
def dense_forward(X: _Floats, W: _Floats, b: _Floats, out: _Floats) -> None: ...
def dense_backward(X: _Floats, W: _Floats, dY: _Floats, dX: _Floats, dW: _Floats, db: _Floats) -> None: ...
def relu_forward(Z: _Floats, out: _Floats) -> None: ...
def relu_backward(Z: _Floats, dA: _Floats, out: _Floats) -> None: ...
def sgd_update(param: _Floats, grad: _Floats, lr: float) -> None: ...
def all_finite(x: _Floats) -> bool: ...
def optimizer_update(
    kind: str,
    param: _Floats,
    grad: _Floats,
    buf1: _Floats,
    buf2: _Floats,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
) -> bool: ...
def activation_forward(fn: int, param: float, Z: _Floats, out: _Floats) -> None: ...
def activation_backward(fn: int, param: float, A: _Floats, dA: _Floats, out: _Floats) -> None: ...
# The common case: a new array, or None when an argument is not a plain, finite
# float32/float64 ndarray (the caller then validates and converts).
def activation_forward_plain(fn: int, param: float, Z: object) -> _Floats | None: ...
def activation_backward_plain(fn: int, param: float, Z: object, dA: object) -> _Floats | None: ...
def mse_grad_plain(yhat: object, y: object) -> _Floats | None: ...
def mse_loss_plain(yhat: object, y: object) -> float | None: ...
def sgd_update_plain(param: object, grad: object, lr: object) -> bool: ...
# Run those loops from a walker build's copy (or this module's, for None).
def use_kernels_of(module: object) -> None: ...
def loss_and_grad(kind: int, param: float, yhat: _Floats, y: _Floats, w: _Floats, grad: _Floats) -> float: ...
