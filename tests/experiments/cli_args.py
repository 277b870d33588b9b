"""Config values as ``--set key=value`` command-line arguments (:func:`rftgrad.configs.as_sets`)."""

from __future__ import annotations

from collections.abc import Mapping

from rftgrad.configs import as_sets


def set_args(values: Mapping[str, object]) -> list[str]:
    """``{"lr": (0.1, 0.2), "trainer": {"seeds": 2}}`` -> ``["--set", "lr=0.1,0.2", "--set", "trainer.seeds=2"]``."""
    return [arg for item in as_sets(values) for arg in ("--set", item)]
