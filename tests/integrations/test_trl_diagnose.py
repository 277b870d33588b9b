"""`rftgrad diagnose` on the output of a real TRL ``GRPOTrainer`` run: TRL's own numbers, reproduced.

Each run trains a tiny random Llama for a few steps on the CPU (:mod:`tests.integrations.trl_tiny`,
about 0.3 s a run) with ``log_completions=True`` and ``logging_steps=1``, so TRL writes one
completions parquet file per step and logs ``reward``, ``reward_std`` and ``frac_reward_zero_std``
for the same generation batch. The cases of the issue, one run each:

* ``weighted``: two reward functions with weights 1 and 0.5, one returning ``None`` on some
  completions, the other named without "reward" (``contains_char``); two groups of one prompt
  text in one step; ``scale_rewards="group"``; a reference column logged with ``log_extra``;
* ``chat``: conversational prompts, ``scale_rewards="batch"``;
* ``unscorable``: every reward function ``None`` on some completions, ``scale_rewards="none"``;
* ``single``: one reward function named ``contains_char``, groups of 2.

Tolerances: TRL computes in float32 and rftgrad reproduces its operations in float32
(:func:`rftgrad.diagnose.trl_metrics`), so the logged values agree to float32 rounding, far inside
the 1e-6 asked for.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rftgrad.cli import main
from rftgrad.diagnose import read_rollouts
from rftgrad.finetune.advantages import advantages
from tests.integrations.trl_tiny import (
    chat_prompts,
    contains_char,
    half_or_none_reward,
    make_model,
    make_tokenizer,
    maybe_none_reward,
    run_grpo,
    vowel_reward,
)
from tests.tolerances import TRL_ATOL

#: the reference answer of each prompt (logged into TRL's table by a reward function, via log_extra).
SOLUTIONS = {"ab": "ba", "cd": "dc", "zz": "zz!", "ef": "fe"}


def stalled_on_z(prompts: list, completions: list, log_extra, **kwargs) -> list[float]:
    """0 on prompts starting with "z" (stalled: all rewards 0), else :func:`vowel_reward`; logs the solution."""
    texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    log_extra("solution", [SOLUTIONS[text] for text in texts])
    vowels = vowel_reward(completions)
    return [0.0 if text.startswith("z") else v for text, v in zip(texts, vowels, strict=True)]


#: name: (run_grpo options, diagnose options)
RUNS = {
    "weighted": (
        dict(
            prompts=["ab", "ab", "zz", "cd", "ef", "zz", "cd", "ab"],
            reward_funcs=[maybe_none_reward, contains_char, stalled_on_z],
            reward_weights=[1.0, 0.5, 1.0],
            scale_rewards="group",
            max_steps=4,
            extra_args={"shuffle_dataset": False},  # steps 1 ("ab", "ab") and 4 ("cd", "ab") as listed
        ),
        ["--reward-weights", "1,0.5,1", "--scale-rewards", "group"],
    ),
    "chat": (
        dict(
            prompts=chat_prompts(["ab", "cd", "zz", "ef", "ab", "zz"]),
            reward_funcs=[stalled_on_z, half_or_none_reward],
            reward_weights=[1.0, 2.0],
            scale_rewards="batch",
            max_steps=3,
        ),
        ["--reward-weights", "1,2", "--scale-rewards", "batch"],
    ),
    "unscorable": (
        dict(
            prompts=["ab", "cd", "ef", "zz", "ab", "cd"],
            reward_funcs=[maybe_none_reward, half_or_none_reward],
            scale_rewards="none",
            max_steps=3,
            seed=1,
        ),
        ["--scale-rewards", "none"],
    ),
    "single": (
        dict(prompts=["ab", "cd", "ef", "zz"], reward_funcs=[contains_char], num_generations=2, max_steps=3),
        [],
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, list[dict], dict]]:
    """name -> (TRL's output_dir, TRL's logged dicts of the training steps, the run's options)."""
    done = {}
    for name, (options, _) in RUNS.items():
        out, logs = run_grpo(tmp_path_factory.mktemp(name) / "trl", **options)
        done[name] = (out, [log for log in logs if "reward" in log], options)
    return done


def diagnose_run(out: Path, name: str, report: Path, *extra: str) -> dict:
    assert main(["diagnose", str(out), *RUNS[name][1], "--out", str(report), *extra]) == 0
    return json.loads((report / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(RUNS))
def test_diagnose_reproduces_trls_logged_metrics_at_every_step(runs, name, tmp_path, capsys):
    out, logs, options = runs[name]
    summary = diagnose_run(out, name, tmp_path / "report")
    assert summary["layout"] == "trl" and summary["files"] == options["max_steps"] == len(logs)
    assert summary["grouping"] == {
        "by": "blocks",
        "group_size": options.get("num_generations", 4),
        "group_size_source": "inferred",
    }
    assert summary["columns"]["reward"] == [f.__name__ for f in options["reward_funcs"]]  # every function
    steps = {row["step"]: row for row in summary["per_step"]}
    assert sorted(steps) == [log["_global_step"] for log in logs]
    for log in logs:
        ours = steps[log["_global_step"]]
        for metric in ("reward", "reward_std", "frac_reward_zero_std"):
            where = (name, log["_global_step"], metric)
            assert ours[f"trl_{metric}"] == pytest.approx(log[metric], abs=TRL_ATOL), where
    printed = capsys.readouterr().out
    assert "as TRL logs them" in printed
    if options.get("scale_rewards", "group") == "batch":  # TRL's metric is about the whole batch: 0 or 1
        assert {log["frac_reward_zero_std"] for log in logs} <= {0.0, 1.0}
        assert "under scale_rewards='batch'" in printed


def test_two_groups_of_one_prompt_text_stay_two_groups(runs, tmp_path):
    out, _, _ = runs["weighted"]
    log = read_rollouts(out, reward_weights=[1.0, 0.5, 1.0])
    first = log.samples[log.samples["step"] == 1]
    assert set(first["prompt"]) == {"ab"} and sorted(set(first["group"])) == [0, 1]  # 8 rows: 2 blocks of 4
    summary = diagnose_run(out, "weighted", tmp_path / "report")
    assert summary["groups"] == 2 * 4 and summary["prompts"] == 4


def test_unscorable_completions_are_left_out_as_trl_does(runs, tmp_path):
    out, _, _ = runs["unscorable"]
    table = pd.concat(pd.read_parquet(f) for f in sorted((out / "completions").iterdir()))
    unscorable = table[["maybe_none_reward", "half_or_none_reward"]].isna().all(axis=1)
    assert unscorable.any(), "the run should have completions every function returned None for"
    assert (table.loc[unscorable, "advantage"] == 0).all()  # TRL gives them no signal
    summary = diagnose_run(out, "unscorable", tmp_path / "report")
    assert summary["unscorable_samples"] == int(unscorable.sum())
    assert summary["samples"] == len(table) - int(unscorable.sum())


def trl_rewards(table: pd.DataFrame, columns: list[str], weights: list[float]) -> torch.Tensor:
    """``(S,)`` float32 total reward of a TRL table, as TRL forms it (weighted nansum; NaN: unscorable)."""
    per_func = torch.tensor(table[columns].to_numpy(dtype=np.float64), dtype=torch.float32)  # (S, K)
    total = (per_func * torch.tensor(weights, dtype=torch.float32)).nansum(dim=1)
    total[torch.isnan(per_func).all(dim=1)] = torch.nan
    return total


@pytest.mark.parametrize("name", ["weighted", "chat", "unscorable", "single"])
def test_rftgrads_advantages_equal_trls_advantage_column(runs, name):
    """Every group at once where all its completions are scorable; else (TRL's nan-aware mean and std
    over the scorable ones) rftgrad's estimator on the group's scorable completions, and 0 for the others."""
    out, _, options = runs[name]
    columns = [f.__name__ for f in options["reward_funcs"]]
    weights = options.get("reward_weights") or [1.0] * len(columns)
    group = options.get("num_generations", 4)
    scale = options.get("scale_rewards", "group")
    kind = "dr_grpo" if scale == "none" else "grpo"
    compared = partial = 0
    for file in sorted((out / "completions").iterdir()):
        table = pd.read_parquet(file)
        rewards = trl_rewards(table, columns, weights).view(1, -1, group)  # (1, N, G)
        logged = torch.tensor(table["advantage"].to_numpy(), dtype=torch.float32).view(1, -1, group)
        whole = ~torch.isnan(rewards).any(dim=-1)[0]  # (N,) groups without an unscorable completion
        if not whole.all():
            assert scale != "batch"  # one batch std over a ragged batch: not what the estimator takes
        ones = torch.ones(1, int(whole.sum()))
        mine = advantages(rewards[:, whole], kind, ones, scale, std_eps=1e-4)  # (1, N', G)
        torch.testing.assert_close(mine, logged[:, whole], atol=TRL_ATOL, rtol=0)
        compared += int(whole.sum())
        for n in torch.nonzero(~whole).flatten().tolist():
            scorable = ~torch.isnan(rewards[0, n])  # (G,)
            assert (logged[0, n, ~scorable] == 0).all()  # TRL: no signal for an unscorable completion
            if scorable.sum() >= 2:
                kept = rewards[0, n, scorable].view(1, 1, -1)  # (1, 1, G')
                mine = advantages(kept, kind, torch.ones(1, 1), scale, std_eps=1e-4)
                torch.testing.assert_close(mine[0, 0], logged[0, n, scorable], atol=TRL_ATOL, rtol=0)
                partial += 1
    assert compared + partial >= 4
    if name == "unscorable":
        assert partial >= 2


def test_the_output_dir_and_its_completions_folder_read_the_same(runs, tmp_path):
    out, _, _ = runs["single"]
    by_output_dir = diagnose_run(out, "single", tmp_path / "a")
    by_folder = diagnose_run(out / "completions", "single", tmp_path / "b")
    assert by_output_dir["per_step"] == by_folder["per_step"]
    one_file = diagnose_run(out / "completions" / "completions_00002.parquet", "single", tmp_path / "c")
    assert one_file["per_step"] == [row for row in by_folder["per_step"] if row["step"] == 2]


@pytest.mark.parametrize("name", ["weighted", "chat"])
def test_export_stalled_gives_a_dataset_sft_trainer_trains_on(runs, name, tmp_path, capsys):
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    out, _, options = runs[name]
    export = tmp_path / "stalled.jsonl"
    diagnose_run(out, name, tmp_path / "report", "--reward-range", "0,3", "--export-stalled", str(export))
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    chat = name == "chat"
    table = pd.read_csv(tmp_path / "report" / "prompts.csv")
    vanishing = set(table.loc[table["vanishing"], "prompt"])  # prompts.csv keys chat prompts by their JSON
    assert rows and {json.dumps(row["prompt"], sort_keys=True) if chat else row["prompt"] for row in rows} == vanishing
    for row in rows:
        text = row["prompt"][-1]["content"] if chat else row["prompt"]
        expected = [{"role": "assistant", "content": SOLUTIONS[text]}] if chat else SOLUTIONS[text]
        assert set(row) == {"prompt", "completion"} and row["completion"] == expected
    assert f"exported {len(rows)} stalled prompts with their reference" in printed
    tokenizer = make_tokenizer(chat=chat)
    trainer = SFTTrainer(
        model=make_model(tokenizer),
        args=SFTConfig(
            output_dir=str(tmp_path / "sft"),
            max_steps=2,
            per_device_train_batch_size=2,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            max_length=32,
        ),
        train_dataset=load_dataset("json", data_files=str(export), split="train"),
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)


def test_export_without_references_writes_prompts_to_label(runs, tmp_path, capsys):
    out, _, _ = runs["unscorable"]
    export = tmp_path / "stalled.jsonl"
    assert (
        main(
            ["diagnose", str(out), "--out", str(tmp_path / "r"), "--reward-range", "0,2", "--std-threshold", "0.5"]
            + ["--gap", "0", "--max-reward", "2", "--export-stalled", str(export)]
        )
        == 0
    )
    assert not export.exists()  # TRL's table holds no reference here
    to_label = [json.loads(line) for line in (tmp_path / "stalled.to_label.jsonl").read_text().splitlines()]
    assert to_label and {"prompt", "reward_mean", "reward_std", "n", "step", "first_row"} == set(to_label[0])
    assert all(row["reward_std"] < 0.5 for row in to_label)
    assert "to label" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--group-size", "1"], r"--group-size takes a whole number >= 2"),
        (["--group-size", "3"], r"are not blocks of --group-size 3"),
        (["--reward-weights", "1,2"], r"2 --reward-weights for 1 reward column\(s\) \['contains_char'\]"),
        (["--scale-rewards", "batchy"], r"argument --scale-rewards: invalid choice"),
        (["--export-stalled", "x.csv"], r"--export-stalled writes JSON Lines: name the file \*\.jsonl"),
    ],
)
def test_bad_options_on_trl_output_are_one_line_exit_2(runs, argv, message, tmp_path, capsys):
    out, _, _ = runs["single"]
    assert main(["diagnose", str(out), "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_a_closed_pipe_ends_diagnose_quietly(runs, tmp_path):
    out, _, _ = runs["single"]
    script = f"{sys.executable} -m rftgrad.cli diagnose {out} --out {tmp_path / 'r'} | head -1"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert (tmp_path / "r" / "summary.json").exists()  # the report was written before the pipe closed


def test_the_monitors_rollout_log_diagnoses_like_trls_own_files(tmp_path):
    """GroupMonitor's per-sample log and TRL's completions files give one diagnosis; its logged
    rftgrad/* numbers are diagnose's per-step numbers (no None rewards here, so no group shrinks)."""
    from rftgrad.integrations.trl import GroupMonitor

    monitor = GroupMonitor(reward_range=(0.0, 1.5))
    out, logs = run_grpo(
        tmp_path / "trl",
        prompts=["ab", "ab", "zz", "cd", "ef", "gh"],
        reward_funcs=monitor.wrap([vowel_reward, contains_char]),
        reward_weights=[1.0, 0.5],
        callbacks=[monitor],
        max_steps=3,
        extra_args={"shuffle_dataset": False},
    )
    options = ["--reward-range", "0,1.5"]
    assert main(["diagnose", str(out / "rftgrad_rollouts.jsonl"), *options, "--out", str(tmp_path / "m")]) == 0
    assert main(["diagnose", str(out), *options, "--reward-weights", "1,0.5", "--out", str(tmp_path / "t")]) == 0
    by_monitor, by_trl = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("m", "t"))
    assert by_monitor["layout"] == "monitor" and by_monitor["grouping"]["by"] == "column"
    assert by_monitor["groups"] == by_trl["groups"] == 6  # the two "ab" groups of step 1 stay two
    for mine, theirs in zip(by_monitor["per_step"], by_trl["per_step"], strict=True):
        assert mine == pytest.approx(theirs, abs=TRL_ATOL)
    logged = {log["_global_step"]: log for log in logs if "reward" in log}
    for row in by_trl["per_step"]:
        log = logged[row["step"]]
        assert log["rftgrad/vanishing_share"] == pytest.approx(row["vanishing_share"], abs=TRL_ATOL)
        assert log["rftgrad/frac_zero_std_groups"] == pytest.approx(row["zero_std_groups_share"], abs=TRL_ATOL)
        assert log["rftgrad/group_std/mean"] == pytest.approx(row["group_reward_std_mean"], abs=TRL_ATOL)
