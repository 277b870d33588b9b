"""`rftgrad run heuristics`: larger learning rate, hotter sampling and an entropy bonus leave the small-STD
inputs stuck under RFT, and a larger output space dilutes the STD a hotter temperature creates (paper
Section 5.1, docs/paper.md §6)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rftgrad.cli import main
from rftgrad.errors import ConfigError
from rftgrad.experiments.base import experiment_config
from rftgrad.experiments.heuristics.analysis import max_drop
from rftgrad.experiments.heuristics.config import TESTING
from rftgrad.experiments.heuristics.run import sweep_config
from tests.experiments.cli_args import set_args
from tests.experiments.test_theorem1_experiments import assert_valid_png


@pytest.fixture(scope="module")
def testing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("heuristics") / "run"
    assert main(["run", "heuristics", "--out", str(out), "--no-progress", *set_args(TESTING)]) == 0
    return out, pd.DataFrame(json.loads((out / "score.json").read_text())["table"])


def test_no_heuristic_lifts_the_small_std_inputs_while_sft_does(testing_run):
    out, table = testing_run
    # 2 output sizes x (3 sweeps x 3 values of RFT + 3 learning rates of SFT)
    assert len(table) == 2 * (9 + 3)
    rft, sft = table[table["objective"] == "RFT"], table[table["objective"] == "SFT"]
    assert (rft["modified_start"] < -0.95).all()  # pretrained: the modified inputs' target has p ≈ 0
    assert (rft["modified_end_t1"] < -0.95).all()  # no heuristic moves them
    assert (rft["unmodified_end_t1"] > 0.5).all()  # while RFT fits the others
    assert (sft.groupby("num_outputs")["modified_end_t1"].max() > 0.5).all()  # SFT fits the modified ones
    for name in ("heuristics_curves.png", "heuristics_mechanism.png"):
        assert_valid_png(out / name)


def test_temperature_creates_std_that_a_larger_output_space_dilutes(testing_run):
    """Sampling at T spreads p^(1/T): the target's STD grows with T, but with C outputs the mass spreads over
    the C - k outputs outside the set, so the same T creates less STD at C = 100 than at C = 10."""
    _, table = testing_run
    temperature = table[(table["sweep"] == "temperature") & (table["objective"] == "RFT")]
    std = temperature.pivot_table(index="setting", columns="num_outputs", values="modified_std_start")
    for num_outputs in std.columns:
        assert std[num_outputs].is_monotonic_increasing and std[num_outputs].iloc[-1] > 3 * std[num_outputs].iloc[0]
    assert std.loc[2.0, 100] < 0.5 * std.loc[2.0, 10]


def test_sweep_config_varies_one_field_at_a_time():
    config = experiment_config("heuristics")
    lr = sweep_config(config, "lr")  # the trainer section of the learning-rate sweep
    assert lr.lr == config.trainer.lr and lr.temperature == (1.0,) and lr.entropy_coef == (0.0,)
    assert lr.arms == ("rft:300", "sft:300")  # the SFT reference rides along the learning-rate sweep
    temperature = sweep_config(config, "temperature")
    assert temperature.lr == config.trainer.lr[:1] and temperature.temperature == (1.0, 1.5, 2.0)
    assert temperature.arms == ("rft:300",)


def test_max_drop_and_bad_settings():
    assert max_drop(pd.Series([0.0, 0.5, 0.2, 0.6, 0.1])) == pytest.approx(0.5)
    assert max_drop(pd.Series([0.0, float("nan")])) == float("inf")
    with pytest.raises(ConfigError, match="output_sizes"):
        experiment_config("heuristics", sets=["output_sizes=5"])
    with pytest.raises(ConfigError, match="variant"):
        experiment_config("heuristics", sets=["variant=sequence"])
