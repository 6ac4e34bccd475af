"""The hypothesis profiles of the fuzz tests, chosen by ``FASTNN_FUZZ_PROFILE``.

* ``ci`` (the default): 200 derandomized examples per test, no example
  database; the in-tree run.
* ``smoke``: the same seeded search, 30 examples per test; CI's second and
  third passes over the suite (baseline walker build, bounds-checked build)
  and the wheel runs.
* ``long``: 5000 random examples per test, failures stored in
  ``.hypothesis/`` and replayed first next time; for hunting bugs.

``FUZZ`` is applied to each fuzz test as a decorator rather than loaded
globally, so that the other test modules' property tests keep their own
settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ"]

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None,
                          database=None, print_blob=True, suppress_health_check=_HEALTH)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=_HEALTH)
settings.register_profile("smoke", max_examples=30, derandomize=True, deadline=None,
                          database=None, print_blob=True, suppress_health_check=_HEALTH)

#: The settings every fuzz test runs with.
FUZZ = settings.get_profile(os.environ.get("FASTNN_FUZZ_PROFILE", "ci"))
