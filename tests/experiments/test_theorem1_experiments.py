"""The `bound` and `tightness` experiments on tiny budgets: records, numbers, figures."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from PIL import Image

from rftgrad.cli import main
from rftgrad.configs import load_config
from rftgrad.errors import ConfigError
from rftgrad.experiments.tightness.config import FULL, Config


def assert_valid_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


def test_tightness_witness_matches_sqrt_L_over_2_and_search_stays_below_the_tight_constant(tmp_path):
    out = tmp_path / "tightness"
    sets = ["steps=20", "restarts=3", "gamma_every=5", "probs=0.5,0.2"]
    assert main(["run", "tightness", "--out", str(out), "--no-progress", *sum((["--set", s] for s in sets), [])]) == 0
    witness = pd.read_csv(out / "witness.csv")
    half = witness[witness["prob"] == 0.5]
    assert sorted(half["length"]) == list(range(1, 9))
    # Done-when: the witness ratio matches sqrt(L/2) to 1e-6 for L = 1..8
    assert (half["ratio_gamma_std"] - (half["length"] / 2) ** 0.5).abs().max() < 1e-6
    assert (witness["ratio_gamma_std"] - witness["expected"]).abs().max() < 1e-12
    assert (half["ratio_tight"] - 1.0).abs().max() < 1e-12  # the tight bound is attained
    best = pd.read_csv(out / "search_best.csv")
    assert set(best["kind"]) == {"tabular", "linear", "mlp", "transformer"}
    assert not best["violation"].any()
    # proved in docs/theorem1.md: ratio to γ√L·STD is at most 1/√2 for every policy
    assert (best["ratio_sharpened"] <= 1 / math.sqrt(2) + 1e-9).all()
    assert (best["ratio_sharpened"] > 0.1).all()  # the search found non-trivial gradients
    score = json.loads((out / "score.json").read_text())
    assert score["violations"] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 20 and config["experiment"] == "tightness"
    assert_valid_png(out / "tightness.png")


def test_bound_experiment_finds_no_violation(tmp_path):
    out = tmp_path / "bound"
    assert (
        main(
            [
                "run",
                "bound",
                "--out",
                str(out),
                "--no-progress",
                "--set",
                "examples_per_kind=6",
                "--set",
                "max_length=3",
            ]
        )
        == 0
    )
    rows = pd.read_csv(out / "bound_rows.csv")
    assert rows.groupby("kind")["example"].nunique().to_dict() == {
        k: 6 for k in ("linear", "mlp", "tabular", "transformer")
    }
    assert not rows["violation"].any()
    ordered = rows["tight_bound"] <= rows["martingale_bound"] + 1e-12
    ordered &= rows["martingale_bound"] <= rows["sharpened_bound"] + 1e-12
    assert ordered.all() and (rows["sharpened_bound"] <= rows["paper_bound"] + 1e-12).all()
    assert_valid_png(out / "bound_ratios.png")


def test_config_loading_rejects_bad_keys_and_values(tmp_path):
    assert load_config(Config, FULL).steps == FULL["steps"]
    assert load_config(Config, sets=["lengths=1,2"]).lengths == (1, 2)
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        load_config(Config, sets=["bogus=1"])
    with pytest.raises(ConfigError, match="config key 'steps' expects an integer, got 'many'"):
        load_config(Config, sets=["steps=many"])
    with pytest.raises(ConfigError, match="expects key=value"):
        load_config(Config, sets=["steps"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Config, config_file=bad)


def test_run_cli_errors_exit_2(tmp_path, capsys):
    assert main(["run", "tightness", "--set", "steps=x", "--out", str(tmp_path / "r")]) == 2
    assert "config key 'steps' expects an integer, got 'x'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_check_command_reports_zero_violations(tmp_path, capsys):
    assert main(["check", "--examples", "12", "--max-len", "3", "--no-progress", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "0 violation(s) in 12 examples" in out
    summary = pd.read_csv(tmp_path / "c" / "check_summary.csv")
    overall = summary[summary["kind"] == "all"].iloc[0]
    assert overall["examples"] == 12 and overall["violations"] == 0
    assert 0 < overall["max_ratio_sharpened"] <= 1 / math.sqrt(2) + 1e-9
    assert main(["check", "--policy", "tabular,bogus"]) == 2
