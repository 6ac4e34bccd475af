"""Shared fixtures; and a guard that the tests run against a compiled fastnn."""

import importlib.machinery
import os
import sys
import tempfile

import numpy as np
import pytest

import fastnn
from fastnn import _ops, _walker, _walker_baseline

#: Per-dtype tolerances for comparing fastnn with fastnn.reference.
TOLERANCE = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6), np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13)}

_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def pytest_configure(config):
    # The planner's measurements go to a cache of this session's own, not the user's.
    if not os.environ.get("FASTNN_CACHE_DIR"):
        os.environ["FASTNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastnn-test-cache-")


def pytest_report_header(config):
    from fastnn import _planner

    return [
        f"fastnn {fastnn.__version__} from {fastnn.__file__}",
        f"compiled kernels: {_ops.__file__} (bounds-checked build: {_ops.DEBUG_BUILD})",
        f"network walker: {_walker.ISA} build, {_walker.Network.__module__}",
        f"plan: {_planner.mode()} (FASTNN_PLAN), cache {os.environ.get('FASTNN_CACHE_DIR')}",
    ]


def pytest_sessionstart(session):
    for module in (_ops, _walker_baseline, sys.modules[_walker.Network.__module__]):
        if not module.__file__.endswith(_EXTENSION_SUFFIXES):
            raise pytest.UsageError(f"{module.__name__} is not a compiled extension ({module.__file__}): build fastnn first")


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
