"""rftgrad against a rollout dump and advantages written by verl 0.9.1's own code (no verl needed).

``tests/fixtures/verl/make_fixture.py`` (run in a separate verl venv) scored 3 steps x 4 prompts x
``G = 4`` samples with verl's ``naive`` and ``dapo`` reward managers, ran verl's
``compute_advantage`` and dumped them with ``RayPPOTrainer._log_rollout_data``. Here the recorded
numbers are read with plain ``json`` and compared with :func:`rftgrad.finetune.advantages.advantages`:

* GRPO ``A_i = (r_i - mean(r)) / (std(r) + ε)``, Bessel ``std``, verl's ``ε = 1e-6``;
* Dr. GRPO (``norm_adv_by_std_in_grpo=False``) ``A_i = r_i - mean(r)``;
* RLOO ``A_i = r_i - (1/(G-1)) Σ_{j≠i} r_j``,

all in float32 to 1e-6, each group being the rows of one ``uid``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rftgrad.finetune.advantages import advantages
from tests.tolerances import VERL_ATOL

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "verl"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
RUNS = ("naive", "dapo")
#: rftgrad kind, scale_rewards, verl's key in expected.json
ESTIMATORS = [("grpo", "group", "grpo"), ("dr_grpo", "group", "dr_grpo"), ("rloo", "group", "rloo")]


def groups(run: str) -> list[dict]:
    return [group for step in EXPECTED[run]["steps"] for group in step["groups"]]


def dump_rows(run: str, step: int) -> list[dict]:
    path = FIXTURE / EXPECTED[run]["dir"] / f"{step}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_fixture_has_the_documented_shape():
    assert EXPECTED["verl_version"] == "0.9.1" and EXPECTED["grpo_epsilon"] == 1e-6
    for run in RUNS:
        assert [step["step"] for step in EXPECTED[run]["steps"]] == [1, 2, 3]
        for step in EXPECTED[run]["steps"]:
            assert len(step["groups"]) == 4 and all(len(g["rewards"]) == EXPECTED["group_size"] for g in step["groups"])
            rows = sorted(i for g in step["groups"] for i in g["rows"])
            assert rows == list(range(16))  # every dump row belongs to exactly one uid


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(("kind", "scale", "key"), ESTIMATORS)
def test_rftgrad_advantages_equal_verls(run, kind, scale, key):
    rewards = torch.tensor([g["rewards"] for g in groups(run)], dtype=torch.float32)[None]  # (1, N, G)
    expected = torch.tensor([g[key] for g in groups(run)], dtype=torch.float32)[None]
    weights = torch.ones(rewards.shape[:2], dtype=torch.float32)
    ours = advantages(rewards, kind, weights, scale_rewards=scale, std_eps=EXPECTED["grpo_epsilon"])
    assert (ours - expected).abs().max().item() <= VERL_ATOL


def test_rftgrad_default_epsilon_differs_from_verls():
    """rftgrad's default ε = 1e-4 moves a ±1 GRPO advantage by about 1e-4: pass std_eps=1e-6 to match verl."""
    rewards = torch.tensor([g["rewards"] for g in groups("naive")], dtype=torch.float32)[None]
    expected = torch.tensor([g["grpo"] for g in groups("naive")], dtype=torch.float32)[None]
    ours = advantages(rewards, "grpo", torch.ones(rewards.shape[:2]))
    assert 1e-5 < (ours - expected).abs().max().item() < 1e-3


def test_an_all_equal_group_gets_zero_advantage():
    equal = [g for g in groups("naive") if len(set(g["rewards"])) == 1]
    assert equal and all(a == 0.0 for g in equal for key in ("grpo", "dr_grpo", "rloo") for a in g[key])


def test_dump_score_is_the_trained_reward_with_the_naive_manager():
    for step in EXPECTED["naive"]["steps"]:
        rows = dump_rows("naive", step["step"])
        for group in step["groups"]:
            assert [rows[i]["score"] for i in group["rows"]] == pytest.approx(group["rewards"], abs=1e-6)
            assert {rows[i]["input"] for i in group["rows"]} == {group["input"]}


def test_dapo_dump_score_is_the_raw_score_and_overlong_reward_restores_the_trained_one():
    """verl's dump writer lets the reward manager's extra key ``score`` (the raw math_dapo score)
    overwrite its own ``score`` (the trained ``token_level_scores`` sum): the trained reward is
    ``score + overlong_reward`` (``--reward-col score,overlong_reward``)."""
    differs = 0
    for step in EXPECTED["dapo"]["steps"]:
        rows = dump_rows("dapo", step["step"])
        for group in step["groups"]:
            raw = [rows[i]["score"] for i in group["rows"]]
            trained = [rows[i]["score"] + rows[i]["overlong_reward"] for i in group["rows"]]
            assert trained == pytest.approx(group["rewards"], abs=1e-6)
            assert set(raw) <= {-1.0, 1.0}
            differs += sum(abs(a - b) > 1e-9 for a, b in zip(raw, group["rewards"], strict=True))
    assert differs > 0


def test_identical_prompt_text_is_two_groups_in_verl_and_one_input_in_the_dump():
    step = EXPECTED["naive"]["steps"][0]
    texts = [g["input"] for g in step["groups"]]
    assert len(texts) == 4 and len(set(texts)) == 3  # two uids share "What is 1 + 1 ?"
    assert "uid" not in dump_rows("naive", 1)[0]  # the legacy dump has no uid column


@pytest.mark.parametrize("run", RUNS)
def test_read_rollouts_reads_the_dump_directory(run):
    from rftgrad.diagnose import read_rollouts

    log = read_rollouts(FIXTURE / EXPECTED[run]["dir"], reward_col="score")
    assert log.layout == "verl" and log.prompt_col == "input" and log.reference_col == "gts"
    assert [f.name for f in log.files] == ["1.jsonl", "2.jsonl", "3.jsonl"]
    assert {"step", "prompt", "reward", "where"} <= set(log.samples.columns)
    assert len(log.samples) == 3 * 16
    means = log.samples.groupby(["step", "prompt"])["reward"].mean()
    expected = {
        (step["step"], text): mean
        for step in EXPECTED[run]["steps"]
        for text, mean in step["dump_score_mean_by_input"].items()
    }
    assert {(int(s), p) for s, p in means.index} == set(expected)
    for (s, p), mean in means.items():
        assert mean == pytest.approx(expected[(int(s), p)], abs=1e-9)


def test_diagnose_takes_the_reward_dapo_trained_on():
    """A legacy DAPO dump's ``score`` is the raw one; diagnose adds ``overlong_reward``, as verl trained."""
    from rftgrad.diagnose import read_rollouts

    log = read_rollouts(FIXTURE / EXPECTED["dapo"]["dir"])
    assert log.reward_cols == ("score", "overlong_reward")
    for step in EXPECTED["dapo"]["steps"]:
        rewards = log.samples.loc[log.samples["step"] == step["step"], "reward"].to_numpy()  # (16,) file order
        for group in step["groups"]:
            assert rewards[group["rows"]] == pytest.approx(group["rewards"], abs=1e-6)  # verl's trained rewards


def test_a_v1_dump_is_grouped_by_verls_uid(tmp_path):
    """verl's v1 trainer dumps a ``uid`` key ``{uid}_{session}_{index}``: its groups, even for one prompt text."""
    from rftgrad.diagnose import diagnose_log, read_rollouts

    step = EXPECTED["naive"]["steps"][0]
    rows = dump_rows("naive", 1)
    for group in step["groups"]:
        for session, row in enumerate(group["rows"]):
            rows[row]["uid"] = f"{group['uid']}_{session}_0"
    order = sorted(range(len(rows)), key=lambda i: rows[i]["uid"])  # v1 sorts its dump by the key
    (tmp_path / "1.jsonl").write_text("".join(json.dumps(rows[i]) + "\n" for i in order), encoding="utf-8")
    diagnosis = diagnose_log(read_rollouts(tmp_path), reward_range=(-1, 1))
    assert diagnosis.log.grouping == "uid" and len(diagnosis.table) == len(step["groups"]) == 4
    by_uid = diagnosis.table.set_index("group")["reward_mean"]
    for group in step["groups"]:
        scores = [rows[r]["score"] for r in group["rows"]]
        assert by_uid[group["uid"]] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
    assert diagnosis.table["prompt"].nunique() == 3  # two uids share the text 'What is 1 + 1 ?'
