"""Type stub of the compiled network walker, ``fastnn/_walker.pxi``.

The walker is compiled up to three times, as ``fastnn._walker_baseline``,
``fastnn._walker_avx2`` and ``fastnn._walker_avx512`` (``fastnn._walker``
picks one at import); the other builds' stubs re-export this one's names. Keep it in step with the
``.pxi``: tests/test_packaging.py checks that the compiled modules define
the same public names as the stubs.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

from fastnn._blas import BlasInfo

# A C-contiguous float32 or float64 array: the network's dtype.
_Floats = npt.NDArray[np.floating[Any]]

#: The columns of a plan row.
PLAN_FIELDS: tuple[str, ...]
KIND_DENSE: int
KIND_ACT: int
#: Activation name -> its code in a plan row.
FN_CODES: dict[str, int]
#: Loss name -> its code.
LOSS_CODES: dict[str, int]
#: Optimizer rule name -> its code.
OPTIMIZER_KINDS: dict[str, int]
#: The status train_step and train_epoch return: OK (0), or a negative code.
OK: int
SLOW: int
BAD_INPUT: int
BAD_LOSS: int
BAD_UPDATE: int
#: Rows predicted per pass through the workspace.
PREDICT_CHUNK: int
#: Whether the register tiles fuse each multiply-add (the AVX2 and AVX-512 builds).
TILE_FMA: bool
#: Whether the array exp, tanh and sigmoid (the activations) fuse their multiply-adds, as the tiles.
MATH_FUSED: bool
#: This build's crossover between its own loops and BLAS: the Network's defaults.
BLAS_MIN_WEIGHTS: int
BLAS_MIN_WIDTH: int
BLAS_MIN_WEIGHTS_TILED: int

class Update:
    """An optimizer's rule, hyperparameters and state for one network (``Network.make_update``)."""

    lr: float
    step: int
    @property
    def kind(self) -> int: ...
    @property
    def buf1(self) -> _Floats | None: ...
    @property
    def buf2(self) -> _Floats | None: ...

class Network:
    """A compiled plan with its parameter, gradient and work buffers."""

    blas_min_weights: int
    blas_min_width: int
    blas_min_weights_tiled: int
    def __init__(
        self,
        plan: npt.NDArray[np.intp],
        params: _Floats,
        grads: _Floats,
        blas: BlasInfo | None = None,
        fn_params: npt.ArrayLike | None = None,
        *,
        blas_min_weights: int = ...,
        blas_min_width: int = ...,
        blas_min_weights_tiled: int = ...,
    ) -> None: ...
    @property
    def row_blas_min_batch(self) -> npt.NDArray[np.intp] | None: ...
    @row_blas_min_batch.setter
    def row_blas_min_batch(self, values: npt.ArrayLike | None) -> None: ...
    @property
    def plan(self) -> npt.NDArray[np.intp]: ...
    @property
    def params(self) -> _Floats: ...
    @property
    def grads(self) -> _Floats: ...
    @property
    def fn_params(self) -> npt.NDArray[np.float64]: ...
    @property
    def is_double(self) -> bool: ...
    @property
    def blas_source(self) -> str: ...
    @property
    def n_in(self) -> int: ...
    @property
    def n_out(self) -> int: ...
    @property
    def workspace_per_sample(self) -> int: ...
    @property
    def uses_blas(self) -> bool: ...
    @property
    def last_loss(self) -> float:
        """The loss of the last train_step, or the mean loss of the last train_epoch (NaN after a code)."""
    @property
    def last_done(self) -> int:
        """The samples the last train_epoch used."""
    def predict(self, X: Any) -> _Floats | None:
        """The output for X; None when X must be validated first (wrong type, layout or not finite)."""
    def make_update(
        self,
        kind: str,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        buf1: _Floats | None = None,
        buf2: _Floats | None = None,
        step: int = 0,
    ) -> Update: ...
    def train_step(
        self,
        X: Any,
        y: Any,
        u: Update,
        loss: str = "mse",
        loss_param: float = 0.0,
        sample_weight: Any = None,
    ) -> int: ...
    def train_epoch(
        self,
        X: Any,
        y: Any,
        order: npt.NDArray[np.intp] | None,
        batch_size: int,
        u: Update,
        loss: str = "mse",
        loss_param: float = 0.0,
        sample_weight: Any = None,
    ) -> int: ...
    def loss_grad(
        self,
        X: Any,
        y: Any,
        batch_size: int,
        loss: str = "mse",
        loss_param: float = 0.0,
        sample_weight: Any = None,
        l2: float = 0.0,
    ) -> int:
        """The loss over all of X and y (``last_loss``) and its gradient into ``grads``."""

def train_members(
    networks: list[Network],
    updates: list[Update],
    Xs: list[Any],
    ys: list[Any],
    ws: list[Any],
    orders: list[npt.NDArray[np.intp] | None],
    rngs: list[np.random.Generator | None],
    batch_size: int,
    loss: str,
    loss_param: float,
    epochs: int,
    losses: npt.NDArray[np.float64],
    status: npt.NDArray[np.intc],
    epochs_done: npt.NDArray[np.intp],
    done: npt.NDArray[np.intp],
) -> None:
    """Train several networks (an ensemble's members), ``epochs`` epochs each, in one nogil call."""

#: Members per group of train_members_lanes in this build, by dtype name.
LANES: dict[str, int]

def lanes_cover(net: Network, batch_size: int, n_samples: int) -> bool:
    """Whether train_members_lanes trains networks of ``net``'s plan at this batch size."""

def lanes_pay(net: Network, batch_size: int, n_samples: int) -> bool:
    """Whether the lanes are faster than the member-by-member walk for this plan and batch size."""

def train_members_lanes(
    net: Network,
    members: npt.ArrayLike,
    params: _Floats,
    grads: _Floats,
    Xs: list[Any],
    ys: list[Any],
    orders: list[npt.NDArray[np.intp] | None],
    rngs: list[np.random.Generator | None],
    lrs: npt.ArrayLike,
    weight_decays: npt.ArrayLike,
    batch_size: int,
    epochs: int,
    losses: npt.NDArray[np.float64],
    status: npt.NDArray[np.intc],
    epochs_done: npt.NDArray[np.intp],
    done: npt.NDArray[np.intp],
) -> int:
    """Members of one plan trained with MSE and SGD side by side in SIMD lanes; OK, or SLOW."""

def predict_members(networks: list[Network], Xs: list[Any], out: _Floats) -> int:
    """``out[k]`` = ``networks[k]`` on ``Xs[k]`` for every member, in one nogil call; a status."""

def permutations(rng: np.random.Generator, n: int, count: int) -> npt.NDArray[np.intp]:
    """``count`` orders as ``rng.permutation(n)`` gives them, drawn as train_members draws them."""
