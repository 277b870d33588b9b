"""The `dynamics` experiment (Theorem 2) on a tiny budget, through the CLI: records, score, figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from rftgrad.cli import main
from tests.experiments.test_theorem1_experiments import assert_valid_png

TINY = [
    "num_labels=2,10",
    "points_per_decade=1",
    "gd_p0_min=1e-3",
    "gd_step_sizes=1.0,0.25",
    "adam_step_sizes=0.1",
    "correlated_p0=1e-3",
    "trajectory_points=30",
]


def test_dynamics_experiment_records_score_and_figure(tmp_path):
    out = tmp_path / "dynamics"
    assert main(["run", "dynamics", "--out", str(out), "--no-progress", *sum((["--set", s] for s in TINY), [])]) == 0
    flow = pd.read_csv(out / "hitting_times.csv")
    assert set(flow["objective"]) == {"RFT", "SFT"} and set(flow["num_labels"]) == {2, 10}
    assert flow["p0"].min() == 1e-8 and flow["p0"].max() == 0.4  # eight decades of p0
    assert flow["rel_error"].max() < 1e-6  # closed form vs ODE (measured ~3e-10)
    score = json.loads((out / "score.json").read_text())
    assert score["max_rel_error_closed_form_vs_ode"] < 1e-6
    assert score["fit_window_p0"][0] >= 1e-6 and score["fit_window_p0"][1] <= 1e-2
    for slope in score["loglog_slope_in_fit_window"]["RFT"].values():
        assert -2.05 <= slope <= -1.95  # measured −1.988
    for entry in score["sft_time_over_log_inverse_std"].values():
        assert entry["decreasing"] and entry["limit"] < min(entry["ratio"].values()) < 2 * entry["limit"]
    assert score["gd_error_shrinks_with_step"] == {"RFT": True, "SFT": True}
    discrete = pd.read_csv(out / "discrete.csv")
    assert (discrete["steps"] > 0).all()  # every run reached the target
    assert set(discrete["optimizer"]) == {"sgd", "adam"}
    neighbours = score["correlated_inputs"]
    assert neighbours["RFT"]["speedup_same_label"] > 5 and neighbours["RFT"]["slowdown_other_label"] > 2
    assert neighbours["RFT"]["alone_vs_closed_form_rel_error"] < 1e-6
    trajectories = pd.read_csv(out / "correlated_trajectories.csv")
    assert len(trajectories) == 2 * 3 * 30 and np.all(np.abs(trajectories["reward_mean"]) <= 1)
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == "dynamics" and config["num_labels"] == [2, 10]
    assert_valid_png(out / "dynamics.png")


def test_dynamics_experiment_rejects_a_bad_config(tmp_path, capsys):
    assert main(["run", "dynamics", "--set", "p0_min=0", "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "p0=0.0 is outside (0, 1)" in capsys.readouterr().err
    assert main(["run", "dynamics", "--set", "p0_max=0.6", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "is not above the start" in capsys.readouterr().err
    assert main(["run", "dynamics", "--set", "gd_step_sizes=0", "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    assert "gd_step_sizes=(0.0,) needs at least one step size, each positive" in capsys.readouterr().err
