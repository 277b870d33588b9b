"""Shared test settings: Hypothesis profiles (tolerances live in ``tests/tolerances.py``) and the local Ray
instance of the executor tests (``local_ray``).

Profiles (pick with ``HYPOTHESIS_PROFILE=name``):

* ``default``: fast, for the everyday run (few examples, no deadline);
* ``ci``: derandomized (the same examples every run), used by ``.ci/run``;
* ``thorough``: 10^5 examples per property, for on-demand verification runs.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance with 2 CPUs for the whole session (Ray takes seconds to start): the executor tests
    run on it in-process (``RayExecutor`` uses an initialised Ray as it is), and subprocess drivers join it
    with ``--address`` (the fixture's value, the instance's GCS address). Skips where Ray is not installed."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        num_gpus=0,
        object_store_memory=200 * 2**20,  # records are small; keeps a small CI machine's memory free
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
