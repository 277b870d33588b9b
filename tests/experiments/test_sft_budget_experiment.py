"""`rftgrad run sft_budget`: on its small budget RFT alone leaves the small-STD family stuck while SFT on
1% of the inputs followed by RFT lifts it (paper Section 5.2, docs/paper.md §6)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rftgrad.cli import main
from rftgrad.errors import ConfigError
from rftgrad.experiments.base import experiment_config
from rftgrad.experiments.sft_budget.analysis import arm_budget
from rftgrad.experiments.sft_budget.config import TESTING
from tests.experiments.cli_args import set_args
from tests.experiments.test_theorem1_experiments import assert_valid_png


@pytest.fixture(scope="module")
def testing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft_budget") / "run"
    assert main(["run", "sft_budget", "--out", str(out), "--no-progress", *set_args(TESTING)]) == 0
    return out, json.loads((out / "score.json").read_text())


def test_rft_alone_stalls_and_one_percent_sft_unlocks_it(testing_run):
    """The issue's thresholds: RFT alone moves the small-STD group by < 0.05; SFT on 1% then RFT lifts it > 0.3."""
    out, score = testing_run
    assert abs(score["rft_alone_small_std_change"]) < 0.05
    assert score["smallest_fraction"] == pytest.approx(0.01)
    assert max(score["smallest_fraction_small_std_change"].values()) > 0.3
    assert score["full_sft_rft_small_std_change"] > 1.5  # from about -1 to about +1
    arms = pd.DataFrame(score["arms"])
    before = arms.loc[arms["role"] == "rft_alone", "stalled_after_sft"].item()
    # 30% of the inputs form the family (3 of 10 classes); all start stalled (STD about 0.04, reward about -1)
    assert before == pytest.approx(0.3, abs=0.02)
    one_percent = arms[arms["fraction"] == 0.01]
    assert (one_percent["stalled_after_sft"] < before / 3).all()  # a few SFT examples un-stall most of the family
    records = pd.read_csv(out / "records.csv")
    assert {"train", "test"} <= set(records["split"])
    for name in ("sft_budget_heatmaps.png", "sft_budget_curves.png"):
        assert_valid_png(out / name)


def test_budget_arms_cover_the_grid():
    config = experiment_config("sft_budget", sets=["sft_fractions=0.01,1", "sft_steps=3,10", "rft_steps=50"])
    arms = config.budget_arms()
    assert arms[0] == "rft:50" and arms[-1] == "sft:300+rft:50"
    assert {arm_budget(arm) for arm in arms[1:-1]} == {(0.01, 3), (0.01, 10), (1.0, 3), (1.0, 10)}
    assert arm_budget("rft:50") == (0.0, 0)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["sft_fractions=0"], "sft_fractions"),
        (["sft_steps=0"], "sft_steps"),
        (["family_size=10"], "family_size"),
        (["policy=mlp"], "unknown config key 'policy'"),
        (["arms=rft:10"], "sft_budget derives trainer.arms"),
    ],
)
def test_bad_settings_are_refused(sets, message):
    with pytest.raises(ConfigError, match=message):
        experiment_config("sft_budget", sets=sets)
