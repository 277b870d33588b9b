"""`rftgrad run estimators` on its TESTING budget, through the CLI: tables, score numbers, figures."""

from __future__ import annotations

import json

import pandas as pd

from rftgrad.cli import main
from rftgrad.configs import resolve_key
from rftgrad.experiments.base import experiment_config
from rftgrad.experiments.estimators.config import FULL, TESTING, Config
from tests.experiments.cli_args import set_args
from tests.experiments.test_theorem1_experiments import assert_valid_png

FIGURES = ("estimators_zero_std", "estimators_updates", "estimators_curves", "estimators_pass_k")


def test_estimators_experiment_records_score_and_figures(tmp_path):
    out = tmp_path / "estimators"
    assert main(["run", "estimators", "--out", str(out), "--no-progress", *set_args(TESTING)]) == 0
    score = json.loads((out / "score.json").read_text())

    updates = pd.read_csv(out / "updates.csv")
    assert set(updates["estimator"]) == {"reinforce", "rloo", "dr_grpo", "grpo", "dapo"}
    assert set(updates["group_size"]) == {2, 8} and updates["p"].min() == 1e-3 and updates["p"].max() == 0.5
    # about 100 informative groups per point: relative SE ≈ 10%, so every mean lies within 5 SE and 60%
    z = (updates["mc_mean"] - updates["closed_form"]).abs() / updates["mc_sem"].clip(lower=1e-12)
    assert z.max() < 5 and score["max_abs_z_closed_form_vs_mc"] < 5
    assert score["max_rel_error_closed_form_vs_mc"] < 0.6

    power = score["fitted_power"]
    for estimator, by_group in power["closed_form"].items():
        for group, value in by_group.items():
            assert abs(value - 1.0) < 0.05, (estimator, group, value)  # measured 0.975-0.997
            assert power["asymptotic"][estimator][group] == 1.0
            mc, se = power["monte_carlo"][estimator][group], power["monte_carlo_se"][estimator][group]
            assert abs(mc - 1.0) <= 5 * se and se < 0.2, (estimator, group, mc, se)
    constant = score["constant"]["asymptotic"]
    assert constant["rloo"]["2"] == 2.0 and abs(constant["grpo"]["8"] - 7 / 8**0.5) < 1e-3  # (G-1)/√G
    assert abs(constant["dapo"]["8"] - 4 * constant["grpo"]["8"]) < 1e-9  # B = 4 tries: B times GRPO's
    assert score["dapo_unbounded_per_kept_group"]["8"]["power"] == 0.0
    ratios = score["constant"]  # u/p at p = 1e-3: Monte Carlo within 5 SE (≈ 50%: 100 informative groups)
    for estimator, by_group in ratios["closed_form_u_over_p_at_p_min"].items():
        for group, value in by_group.items():
            mc, se = (
                ratios["monte_carlo_u_over_p_at_p_min"][estimator][group],
                ratios["monte_carlo_u_over_p_at_p_min_se"][estimator][group],
            )
            assert abs(mc - value) <= 5 * se, (estimator, group, mc, se, value)

    records = pd.read_csv(out / "records.csv")
    assert set(records["run"]) == {"rloo", "grpo", "dapo", "rloo pass@4"}
    samples = records[records["metric"] == "samples_per_input"]
    assert (samples[samples["run"] != "dapo"]["value"] == 8).all()
    dapo = samples[samples["run"] == "dapo"]["value"]
    assert dapo.min() >= 8 and dapo.max() <= 32 and dapo.mean() > 8  # resampled, up to B·G = 32
    assert score["budget_samples_per_input"] == 6 * 8  # 6 steps of G = 8 outputs (DAPO draws more per step)
    final = score["final_reward"]
    assert final["dapo"]["modified"]["steps_within_budget"] < 6
    for run in ("rloo", "grpo", "dapo"):
        assert final[run]["modified"]["start"] < -0.95  # small STD: p ≈ 0 at the start
        assert final[run]["unmodified"]["at_budget"] > final[run]["unmodified"]["start"]
    assert set(score["pass_k"]["modified"]) == {"pass@4 training", "pass@1 training"}
    assert "pass@4 vs pass@1" in score["summary"]
    for name in FIGURES:
        assert_valid_png(out / f"{name}.png")


def test_full_budget_and_bad_configs(tmp_path, capsys):
    full = experiment_config("estimators", full=True)
    assert full.mc_informative >= 10 * experiment_config("estimators").mc_informative and full.trainer.seeds >= 5
    assert all(resolve_key(Config, key) for key in FULL)  # every FULL key is one of the config's keys
    for setting, message in (
        ("variant=gaussian-linear", "unknown config key 'variant'"),
        ("policy=mlp", "estimators trains a transformer or tabular policy"),
        ("curve_estimators=exact", "curve_estimators needs one or more of"),
        ("group_sizes=1,4", "group_sizes needs values >= 2"),
        ("p_max=0.7", "need 0 < p_min < p_max <= 0.5"),
        ("pass_k=1", "pass_k must be >= 2"),
        ("estimator=grpo", "pass_k > 1 supports estimator exact or rloo"),
    ):
        target = tmp_path / setting.split("=")[0]
        assert main(["run", "estimators", "--set", setting, "--out", str(target), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
        assert not target.exists()
