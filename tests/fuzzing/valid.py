"""Valid input by construction for the value-comparing fuzz tests, and the tally of their comparisons.

Most strategies (``fuzzing.strategies``, ``fuzzing.models``) draw mostly
valid input and now and then invalid input, so that one fuzz test checks
both what a call computes and what it refuses. Over several arguments the
invalid draws add up: most examples of a training test end in a refusal
before any value is compared. So each value-comparing fuzz test has a twin
that runs the same test under ``valid_inputs()``, where every strategy built
with ``either(valid, mixed)`` draws from its valid part only, counts the
examples that reached a comparison of values (the test calls ``compared``
there) and requires more than ``MIN_COMPARED`` of them to have.
"""

from __future__ import annotations

from hypothesis import event
from hypothesis import strategies as st

__all__ = ["MIN_COMPARED", "either", "valid_only", "compared", "compared_fraction", "assert_mostly_compared"]

#: The least fraction of a twin's examples that must reach a comparison of values.
MIN_COMPARED = 0.5


class _State:
    valid_only = False      # the strategies draw valid input only
    examples = 0            # examples run under the tally
    compared = 0            # of which reached a comparison
    this_one = False        # the running example reached one


def valid_only() -> bool:
    """Whether the strategies draw valid input only (the twin of a test is running)."""
    return _State.valid_only


@st.composite
def _either(draw, valid, mixed):
    return draw(valid if _State.valid_only else mixed)


def either(valid, mixed):
    """A strategy that draws from ``valid`` under ``valid_inputs`` and from ``mixed`` otherwise."""
    return _either(valid, mixed)


def compared(label: str = "compared") -> None:
    """Mark the running example as having compared values (and report ``label`` as a hypothesis event)."""
    event(label)
    _State.this_one = True


def compared_fraction(test) -> tuple[int, int]:
    """Run the hypothesis test ``test`` with valid input only; return (examples that compared, examples)."""
    inner = test.hypothesis.inner_test

    def counted(*args, **kwargs):
        _State.this_one = False
        _State.examples += 1
        try:
            return inner(*args, **kwargs)
        finally:
            _State.compared += _State.this_one

    _State.valid_only, _State.examples, _State.compared = True, 0, 0
    test.hypothesis.inner_test = counted
    try:
        test()
    finally:
        test.hypothesis.inner_test = inner
        _State.valid_only = False
    return _State.compared, _State.examples


def assert_mostly_compared(test) -> None:
    """``test`` on valid input only passes, and more than MIN_COMPARED of its examples compare values."""
    n_compared, n_examples = compared_fraction(test)
    fraction = n_compared / n_examples if n_examples else 0.0
    print(f"{test.__name__} on valid input: {n_compared} of {n_examples} examples compared values ({fraction:.0%})")
    assert fraction > MIN_COMPARED, (
        f"{test.__name__} on valid input: only {n_compared} of {n_examples} examples compared values")
