"""Shared fixtures; and a guard that the tests run against a compiled fastnn."""

import functools
import importlib.machinery
import os
import sys
import tempfile

import numpy as np
import pytest

import fastnn
from fastnn import _ops, _planner, _walker, _walker_baseline, ops

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


@pytest.fixture(autouse=True)
def _source_only_runs_no_kernel(request, monkeypatch):
    """A test marked ``source_only`` reads fastnn's source or results files and never runs fastnn.

    Such a test gives the same answer on every build (release, bounds-checked, each wheel), walker
    ISA and plan, so .ci/run runs it in the first pass and the newest wheel's only (``-m "not
    source_only"`` elsewhere). To keep the marker true, here every way into the compiled code
    (the planner, which every ``Sequential`` and ``Ensemble`` goes through; a walker build by
    name; each call of ``fastnn.ops``) fails the marked test if it is reached.
    """
    if request.node.get_closest_marker("source_only") is None:
        yield
        return
    reached = []

    def spy(module, name):
        original = getattr(module, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            reached.append(f"{module.__name__}.{name}")
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    spy(_planner, "plan_for")
    spy(_walker, "build")
    for name in ops.__all__:
        spy(ops, name)
    yield
    assert not reached, f"marked source_only, but it ran {sorted(set(reached))}: remove the marker"
