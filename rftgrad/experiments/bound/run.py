"""Run ``bound``: draw random instances per policy class and tabulate every bound."""

from __future__ import annotations

import pandas as pd

from rftgrad.experiments.base import RunContext
from rftgrad.experiments.bound.config import Config
from rftgrad.theory.check import check_specs
from rftgrad.theory.instances import draw_specs


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """One row per (instance, input): spec fields, STD, gradient norms, γ, bounds and ratios."""
    specs = [
        spec
        for offset, kind in enumerate(config.kinds)
        for spec in draw_specs(
            config.examples_per_kind,
            seed=config.seed + offset,
            kinds=(kind,),
            max_length=config.max_length,
            max_outputs=config.max_outputs,
        )
    ]
    return {"bound_rows": check_specs(specs, progress=context.progress)}
