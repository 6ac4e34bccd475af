"""Type stub of ``fastnn._walker_avx2``: the network walker (``fastnn/_walker.pxi``)
compiled with AVX2, the same source as ``fastnn._walker_baseline``.

Its public names are the baseline build's, with the same types, so this stub
re-exports them (for a type checker the builds' classes are one, as
``fastnn._walker`` uses them). tests/test_packaging.py checks that the
compiled module defines exactly these names.
"""

from fastnn._walker_baseline import BAD_INPUT as BAD_INPUT
from fastnn._walker_baseline import BAD_LOSS as BAD_LOSS
from fastnn._walker_baseline import BAD_UPDATE as BAD_UPDATE
from fastnn._walker_baseline import BLAS_MIN_WEIGHTS as BLAS_MIN_WEIGHTS
from fastnn._walker_baseline import BLAS_MIN_WEIGHTS_TILED as BLAS_MIN_WEIGHTS_TILED
from fastnn._walker_baseline import BLAS_MIN_WIDTH as BLAS_MIN_WIDTH
from fastnn._walker_baseline import FN_CODES as FN_CODES
from fastnn._walker_baseline import KIND_ACT as KIND_ACT
from fastnn._walker_baseline import LANES as LANES
from fastnn._walker_baseline import KIND_DENSE as KIND_DENSE
from fastnn._walker_baseline import LOSS_CODES as LOSS_CODES
from fastnn._walker_baseline import OK as OK
from fastnn._walker_baseline import OPTIMIZER_KINDS as OPTIMIZER_KINDS
from fastnn._walker_baseline import PLAN_FIELDS as PLAN_FIELDS
from fastnn._walker_baseline import PREDICT_CHUNK as PREDICT_CHUNK
from fastnn._walker_baseline import SLOW as SLOW
from fastnn._walker_baseline import TILE_FMA as TILE_FMA
from fastnn._walker_baseline import MATH_FUSED as MATH_FUSED
from fastnn._walker_baseline import Network as Network
from fastnn._walker_baseline import Update as Update
from fastnn._walker_baseline import lanes_cover as lanes_cover
from fastnn._walker_baseline import lanes_pay as lanes_pay
from fastnn._walker_baseline import permutations as permutations
from fastnn._walker_baseline import predict_members as predict_members
from fastnn._walker_baseline import train_members as train_members
from fastnn._walker_baseline import train_members_lanes as train_members_lanes
