"""diagnose on the layouts trainers write: TRL's metric definitions, TRL's groups, verl's keys, the export.

The runs of real TRL are in tests/integrations/test_trl_diagnose.py; these are small hand-made
files whose every number is known in closed form.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from rftgrad.cli import main
from rftgrad.diagnose import diagnose_log, read_rollouts, trl_metrics, trl_nanstd
from rftgrad.errors import ConfigError


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def trl_table(tmp_path, step_rewards, group_size, prompts=None):
    """A TRL-style table: per step, consecutive groups; ``step_rewards[s][g]`` the rewards of group g (None kept)."""
    records = []
    for step, groups in enumerate(step_rewards, start=1):
        for g, rewards in enumerate(groups):
            assert len(rewards) == group_size
            prompt = prompts[g] if prompts else f"p{g}"
            records += [
                {"step": step, "prompt": prompt, "completion": "c", "accuracy": r, "advantage": 0.0} for r in rewards
            ]
    return write_jsonl(tmp_path / "completions.jsonl", records)


def test_trl_metrics_follow_trls_definitions_in_closed_form(tmp_path):
    # step 1: group 0 all equal (std 0: zero), group 1 one scorable reward (std NaN: not zero, TRL's isclose)
    # step 2: every reward 1 (batch std 0); step 3: 0/1 in both groups
    path = trl_table(
        tmp_path,
        [[[1, 1, 1], [0, None, None]], [[1, 1, 1], [1, 1, 1]], [[0, 1, 1], [1, 0, 0]]],
        group_size=3,
        prompts=["a", "b"],
    )
    log = read_rollouts(path)
    assert log.unscorable == 2 and log.grouping == "blocks" and log.group_size == 3
    group = trl_metrics(log, "group").set_index("step")
    batch = trl_metrics(log, "batch").set_index("step")
    step1 = np.array([1, 1, 1, 0.0])  # the scorable rewards of step 1
    assert group.loc[1, "reward"] == pytest.approx(step1.mean(), abs=1e-7)
    assert group.loc[1, "reward_std"] == pytest.approx(step1.std(ddof=1), abs=1e-7)  # Bessel, pooled
    assert group.loc[1, "frac_reward_zero_std"] == 0.5  # 3 of the 6 rows sit in a zero-std group
    assert group.loc[2, "frac_reward_zero_std"] == 1.0 and group.loc[3, "frac_reward_zero_std"] == 0.0
    assert list(batch["frac_reward_zero_std"]) == [0.0, 1.0, 0.0]  # one batch std per step: 0 or 1
    # ours counts groups: step 1 has 2 (group 1 with a single sample is skipped), its zero-std share differs
    table = diagnose_log(log, skip_singletons=True).table
    assert len(table) == 5 and table["zero_std"].sum() == 3


def test_trl_metrics_agree_with_trls_own_nanstd():
    from trl.trainer import utils as trl_utils  # the dev extra installs TRL: never skipped

    generator = torch.Generator().manual_seed(0)
    values = torch.rand(16, 8, generator=generator, dtype=torch.float32)
    values[torch.rand(16, 8, generator=generator) < 0.2] = torch.nan
    values[3] = torch.nan  # a group with no reward
    values[5, 1:] = torch.nan  # a group with one

    torch.testing.assert_close(
        trl_nanstd(values, dim=1), trl_utils.nanstd(values, dim=1), equal_nan=True, atol=0, rtol=0
    )
    assert trl_nanstd(values) == trl_utils.nanstd(values)


def test_a_step_with_one_scorable_reward_has_a_null_reward_std(tmp_path):
    path = trl_table(tmp_path, [[[1, None], [None, None]], [[0, 1], [1, 1]]], group_size=2)
    assert (
        main(["diagnose", str(path), "--out", str(tmp_path / "r"), "--reward-range", "0,1", "--skip-singletons"]) == 0
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["trl_metrics"]["per_step"][0] == {
        "step": 1, "reward": 1.0, "reward_std": None, "frac_reward_zero_std": 0.0
    }  # fmt: skip
    assert summary["unscorable_samples"] == 3 and summary["groups"] == 2  # step 1's single sample skipped


def test_group_size_zero_groups_a_trl_table_by_prompt_text(tmp_path):
    path = trl_table(tmp_path, [[[0, 0], [1, 1]]], group_size=2, prompts=["same", "same"])
    by_block = diagnose_log(read_rollouts(path, group_size=2))
    by_text = diagnose_log(read_rollouts(path, group_size=0))
    # inferred, G is the greatest common divisor of the runs of one prompt: here one run of 4, so say G
    assert read_rollouts(path).group_size == 4
    assert by_block.summary["groups"] == 2 and by_block.summary["zero_std_groups"]["share"] == 1.0
    assert by_text.summary["groups"] == 1 and by_text.summary["zero_std_groups"]["share"] == 0.0
    assert by_text.log.grouping == "prompt"


@pytest.mark.parametrize("bad", [1, -2, 2.5, True, "4", math.nan])
def test_bad_group_sizes_are_refused(tmp_path, bad):
    path = trl_table(tmp_path, [[[0, 1]]], group_size=2)
    with pytest.raises(ConfigError, match=r"--group-size takes a whole number >= 2"):
        read_rollouts(path, group_size=bad)


def test_interleaved_rows_are_not_taken_for_trl_groups(tmp_path):
    records = [
        {"step": 1, "prompt": p, "completion": "c", "r": 1.0, "advantage": 0.0} for p in ["a", "b", "a", "b"]
    ]  # TRL never writes this: each group is a block
    path = write_jsonl(tmp_path / "t.jsonl", records)
    with pytest.raises(ValueError, match=r"runs of one prompt have lengths with no common divisor > 1"):
        read_rollouts(path)
    with pytest.raises(ValueError, match=r"line 1: a block of 2 consecutive rows holds several prompts"):
        read_rollouts(path, group_size=2)
    assert read_rollouts(path, group_size=0).grouping == "prompt"  # by text, as other logs


def test_verl_dump_keys_top_level_input_before_a_nested_question(tmp_path):
    records = [
        {"input": "q1", "output": "o", "gts": {"question": "Q?", "answer": "4"}, "score": s, "step": 1}
        for s in (0.0, 1.0)
    ]
    log = read_rollouts(write_jsonl(tmp_path / "1.jsonl", records))
    assert log.layout == "verl" and log.prompt_col == "input" and log.reward_cols == ("score",)
    assert log.reference_col == "gts.answer" and list(log.samples["reference"]) == ["4", "4"]


def test_export_refuses_an_existing_file_and_the_input(tmp_path, capsys):
    path = trl_table(tmp_path, [[[0, 0], [1, 0]]], group_size=2)
    existing = tmp_path / "stalled.jsonl"
    existing.write_text("keep\n", encoding="utf-8")
    for target, message in (
        (existing, r"stalled\.jsonl: exists; pass --overwrite"),
        (path, r"completions\.jsonl: is the log being read"),
        (tmp_path / "x.txt", r"--export-stalled writes JSON Lines"),
    ):
        assert main(["diagnose", str(path), "--out", str(tmp_path / "r"), "--export-stalled", str(target)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
        assert not (tmp_path / "r").exists()
    assert existing.read_text() == "keep\n"


def test_a_crowded_scatter_draws_few_labels_and_fainter_markers(tmp_path):
    from rftgrad.diagnose import SCATTER_MAX_LABELS, SCATTER_SPARSE, plot_mean_vs_std

    def scatter(groups: int, binary: bool):
        rng = np.random.default_rng(0)
        rewards = rng.integers(0, 2, (groups, 4)) if binary else rng.random((groups, 4)).round(2)
        records = [{"prompt": f"p{g}", "reward": float(r)} for g in range(groups) for r in rewards[g]]
        log = read_rollouts(write_jsonl(tmp_path / f"{groups}.jsonl", records))
        figure = plot_mean_vs_std(diagnose_log(log, reward_range=(0.0, 1.0)))
        (ax,) = figure.axes
        return len(ax.texts), ax.collections[-1].get_alpha(), ax.get_title()

    labels, alpha, title = scatter(60, binary=True)  # 3 distinct points, each shared by many groups: labelled
    assert 0 < labels <= SCATTER_MAX_LABELS and alpha == 0.6 and "×k" in title
    labels, alpha, title = scatter(4 * SCATTER_SPARSE, binary=False)  # continuous: more distinct points
    assert labels == 0 and alpha < 0.6 and "×k" not in title


def test_an_export_inside_the_output_folder_is_reported_as_the_export(tmp_path, capsys):
    records = [{"prompt": "stuck", "solution": "42", "reward": 0.0}] * 4
    records += [{"prompt": "fine", "solution": "7", "reward": float(r)} for r in (0, 1, 1, 0)]
    path = write_jsonl(tmp_path / "log.jsonl", records)
    out = tmp_path / "report"
    argv = ["diagnose", str(path), "--out", str(out), "--reward-range", "0,1", "--export-stalled"]
    assert main([*argv, str(out / "stalled.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/: prompts.csv, summary.json, mean_vs_std.png (+ .pdf)" in printed
    assert (
        f"exported 1 stalled prompts with their reference: a prompt-completion dataset for TRL's SFTTrainer: {out}"
        in printed
    )
    assert [json.loads(line) for line in (out / "stalled.jsonl").read_text().splitlines()] == [
        {"prompt": "stuck", "completion": "42"}
    ]
