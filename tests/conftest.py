"""Shared test settings: Hypothesis profiles (tolerances live in ``tests/tolerances.py``).

Profiles (pick with ``HYPOTHESIS_PROFILE=name``):

* ``default``: fast, for the everyday run (few examples, no deadline);
* ``ci``: derandomized (the same examples every run), used by ``.ci/run``;
* ``thorough``: 10^5 examples per property, for on-demand verification runs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
