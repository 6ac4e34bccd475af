"""Facts about the build the tests run against."""

import os

from fastnn import _ops


def test_debug_build_matches_the_build_switch():
    # .ci/run builds twice: FASTNN_DEBUG unset (release) and FASTNN_DEBUG=1
    # (boundscheck, wraparound and initializedcheck on), and runs the suite
    # against each with the same variable set, so this checks that the suite
    # ran against the build CI meant to test.
    wanted = os.environ.get("FASTNN_DEBUG", "0").strip().lower() not in ("", "0", "false", "no")
    assert _ops.DEBUG_BUILD is wanted


def test_version_is_defined_once():
    import fastnn
    from fastnn._version import __version__

    assert fastnn.__version__ == __version__
    assert __version__.count(".") == 2
