"""`rftgrad run compare`: records, score and figure; TOML configs; bad values exit 2 with no directory."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from rftgrad.cli import main
from rftgrad.configs import load_config, to_toml
from rftgrad.experiments.compare.config import TESTING, Config
from rftgrad.finetune import TrainConfig
from tests.experiments.cli_args import set_args
from tests.experiments.test_theorem1_experiments import assert_valid_png


def budget_sets(**extra):
    return set_args({**TESTING, **extra})


def test_finetune_trains_rft_and_sft_and_rft_stalls_on_small_std_inputs(tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["run", "compare", "--out", str(out), "--no-progress", *budget_sets()]) == 0
    records = pd.read_csv(out / "records.csv")
    assert set(records["arm"]) == {"rft:20", "sft:20"}
    assert set(records["group"]) >= {"all", "small_std", "large_std"}
    final = json.loads((out / "score.json").read_text())["reward_mean"]
    start = records[(records["step"] == 0) & (records["metric"] == "reward_mean") & (records["split"] == "train")]
    small_start = start[start["group"] == "small_std"]["value"].mean()
    assert small_start == pytest.approx(2 * 1e-3 - 1, abs=1e-9)  # p0 = 1e-3 on a quarter of the inputs
    # in 20 Adam steps RFT moves the small-STD targets by < 10%; SFT more than doubles them
    target = records[(records["metric"] == "target_prob") & (records["group"] == "small_std")]
    growth = target[target["step"] == 20].groupby("arm")["value"].mean() / 1e-3
    assert growth["rft:20"] < 1.1 and growth["sft:20"] > 2.0
    assert final["small_std"]["rft:20"] - small_start < 1e-3
    assert final["large_std"]["rft:20"] > start[start["group"] == "large_std"]["value"].mean() + 0.1
    assert_valid_png(out / "compare.png")
    assert not (out / "checkpoints").exists()  # removed once the run finished
    environment = json.loads((out / "environment.json").read_text())
    assert environment["device"] == "cpu" and "torch" in environment["packages"]
    # the stored TOML re-runs the same config
    assert load_config(Config, config_file=out / "config.toml") == load_config(Config, TESTING)


def test_same_config_and_seed_give_the_same_records(tmp_path):
    for name in ("a", "b"):
        sets = budget_sets(estimator="grpo", num_generations=4, arms=("rft:6",))
        assert main(["run", "compare", "--out", str(tmp_path / name), "--no-progress", *sets]) == 0
    first, second = (pd.read_csv(tmp_path / name / "records.csv") for name in ("a", "b"))
    pd.testing.assert_frame_equal(first, second)


def test_toml_config_round_trips_every_field(tmp_path):
    trainer = TrainConfig(lr=(0.1, 0.02), estimator="dapo", arms=("sft:5@0.01+rft:10",), eval_grad_norm=False)
    config = Config(p0=1e-4, trainer=trainer)
    path = tmp_path / "saved.toml"
    path.write_text(to_toml(config))
    assert load_config(Config, config_file=path) == config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lr=-0.01"], "lr must be finite and > 0"),
        (["--set", "arms=sft:10@1.5"], "fraction must lie in (0, 1]"),
        (["--set", "p0_fraction=2"], "p0_fraction must lie in [0, 1]"),
        (["--set", "estimator=grpo", "--set", "num_generations=1"], "num_generations must be >= 2"),
        (["--set", "estimator=a2c"], "unknown estimator 'a2c'"),
        (["--set", "learning_rate=0.1"], "unknown config key 'learning_rate'; valid keys: env (a string)"),
        (["--set", "seeds=two"], "config key 'trainer.seeds' expects an integer"),
        (["--seeds", "0"], "--seeds: takes an integer >= 1, got 0"),
    ],
)
def test_bad_values_exit_2_with_one_line_and_no_directory(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["run", "compare", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rftgrad: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "compare", "--out", str(out), "--device", "cuda", "--no-progress"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()


def test_bad_toml_file_and_ill_typed_file_values_are_refused(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = [0.1,\n")
    assert main(["run", "compare", "--config", str(broken), "--out", str(tmp_path / "x")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    typed = tmp_path / "typed.toml"
    typed.write_text('steps_typo = 3\nlr = "fast"\n')
    assert main(["run", "compare", "--config", str(typed), "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key 'steps_typo'" in capsys.readouterr().err
    typed.write_text('lr = "fast"\n')
    assert main(["run", "compare", "--config", str(typed), "--out", str(tmp_path / "x")]) == 2
    assert "config key 'trainer.lr' expects a list of numbers, got 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_show_config_lists_every_key_with_its_doc(capsys):
    assert main(["run", "compare", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "estimator" in out and "RFT gradient: exact, reinforce" in out
    assert "p0_fraction" in out and "data_seed" in out
