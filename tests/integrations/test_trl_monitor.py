"""GroupMonitor inside real TRL runs (tiny random models on the CPU, tests/integrations/trl_tiny.py).

Every number is checked against TRL's own output: the monitor's logged ``rftgrad/*`` metrics are
recomputed here, with numpy and math only, from TRL's ``completions/completions_{step:05d}.parquet``
files at every step; its rollout log has exactly the parquet files' rows; and TRL's ``advantage``
column is rftgrad's :func:`rftgrad.finetune.advantages.advantages` of those rewards (GRPO with
``scale_rewards`` group, batch and none, and RLOO).
"""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from trl import RLOOTrainer

from rftgrad.errors import ConfigError
from rftgrad.finetune.advantages import advantages
from rftgrad.integrations.trl import GroupMonitor, MonitorError
from tests.integrations.trl_tiny import (
    chat_prompts,
    contains_char,
    half_or_none_reward,
    maybe_none_reward,
    run_grpo,
    vowel_reward,
)
from tests.tolerances import TRL_ATOL

GROUP_SIZES = (2, 4, 8, 16, 32, 64)


async def vowel_async(completions: list, **kwargs) -> list[float]:
    """An async reward function (TRL gathers these on its event loop)."""
    return vowel_reward(completions)


#: name -> (run_grpo arguments, GroupMonitor reward_range, rftgrad advantage kind, scale_rewards)
RUNS = {
    # two functions with None, weights, unscorable rows, two groups with one prompt text in every batch
    "group": (
        dict(
            prompts=["same q", "same q"],
            reward_funcs=[maybe_none_reward, half_or_none_reward],
            reward_weights=[1.0, 0.5],
            scale_rewards="group",
            max_steps=4,
        ),
        (0.0, 1.25),
        "grpo",
        "group",
    ),
    # a function whose name has no "reward" in it, three groups of 3 per batch
    "batch": (
        dict(
            prompts=["ab c", "hello", "xyz", "q"],
            reward_funcs=[vowel_reward, contains_char],
            reward_weights=[1.0, 0.5],
            scale_rewards="batch",
            num_generations=3,
            prompts_per_step=3,
            max_steps=3,
        ),
        (0.0, 1.5),
        "grpo",
        "batch",
    ),
    # chat prompts, one async function passed alone (not in a list)
    "none": (
        dict(prompts=chat_prompts(["hi", "yo", "ok"]), reward_funcs=vowel_async, scale_rewards="none", max_steps=3),
        (0.0, 1.0),
        "dr_grpo",
        "none",
    ),
    "rloo": (
        dict(prompts=["ab c", "hello"], reward_funcs=[maybe_none_reward, contains_char], trainer_cls=RLOOTrainer),
        (0.0, 2.0),
        "rloo",
        None,
    ),
}


#: the update form of rftgrad/update_shrink: GRPO's with group scaling, 4p(1-p) otherwise (batch: one STD for all)
SHRINK_FORM = {"group": "grpo", "batch": "dr_grpo", "none": "dr_grpo", "rloo": "rloo"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each run of :data:`RUNS` once: ``name -> (monitor, output dir, logs, parquet rows, function names)``."""
    done = {}
    for name, (arguments, reward_range, _, _) in RUNS.items():
        monitor = GroupMonitor(reward_range=reward_range)
        arguments = {**arguments, "reward_funcs": monitor.wrap(arguments["reward_funcs"]), "callbacks": [monitor]}
        out, logs = run_grpo(tmp_path_factory.mktemp(name), **arguments)
        funcs = arguments["reward_funcs"]
        names = [f.__name__ for f in (funcs if isinstance(funcs, list) else [funcs])]
        files = sorted((out / "completions").glob("completions_*.parquet"))
        steps = arguments.get("max_steps", 3)
        assert [f.name for f in files] == [f"completions_{s:05d}.parquet" for s in range(1, steps + 1)]
        tables = [pd.read_parquet(f) for f in files]
        done[name] = (monitor, out, [log for log in logs if "loss" in log], tables, names)
    return done


# ----------------------------------------------------------------------------- an independent recomputation
def totals_of(table: pd.DataFrame, names: list[str], weights: list[float] | None) -> np.ndarray:
    """TRL's total: weighted sum over the functions that scored a row, NaN where none did."""
    values = table[names].to_numpy(dtype=np.float64)  # (N, K)
    weights = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = np.where(np.isnan(values), 0.0, values * weights).sum(axis=1)
    return np.where(np.isnan(values).all(axis=1), np.nan, total)


def grpo_update(p: float, size: int, lo: float, hi: float) -> float:
    """Σ_{k=1}^{G-1} C(G,k) p^k (1-p)^(G-k) k(G-k)Δ / (G² (s_k + 1e-4)), s_k the Bessel STD of k successes."""
    delta = hi - lo
    total = 0.0
    for k in range(1, size):
        s_k = delta * math.sqrt(k * (size - k) / (size * (size - 1)))
        total += math.comb(size, k) * p**k * (1 - p) ** (size - k) * k * (size - k) * delta / (size**2 * (s_k + 1e-4))
    return total


def expected_metrics(totals: np.ndarray, size: int, lo: float, hi: float, kind: str) -> dict[str, float]:
    """The monitor's metrics from the totals of one batch, written out again with numpy and math."""
    groups = [g[~np.isnan(g)] for g in totals.reshape(-1, size)]
    groups = [g for g in groups if len(g)]
    means = np.array([g.mean() for g in groups])
    stds = np.array([np.sqrt(((g - g.mean()) ** 2).mean()) for g in groups])
    counts = [np.unique(np.round(g, 12), return_counts=True)[1] for g in groups]
    out = {
        "rftgrad/vanishing_share": np.mean((stds < 0.1 * (hi - lo)) & (means < hi - 0.5 * (hi - lo))),
        "rftgrad/group_std/mean": stds.mean(),
        "rftgrad/group_std/min": stds.min(),
        "rftgrad/group_std/median": np.median(stds),
        "rftgrad/group_std/max": stds.max(),
        "rftgrad/frac_zero_std_groups": np.mean([len(c) == 1 for c in counts]),
    }
    for g in GROUP_SIZES:
        per_group = []
        for c in counts:
            n = int(c.sum())
            if g <= n:
                per_group.append(sum(math.comb(int(m), g) for m in c) / math.comb(n, g))
            else:
                per_group.append(sum((m / n) ** g for m in c))
        out[f"rftgrad/predicted_frac_zero_std/G{g}"] = np.mean(per_group)
    p = np.clip((means - lo) / (hi - lo), 0, 1)
    if kind == "grpo":
        shrink = np.array([grpo_update(q, size, lo, hi) / grpo_update(0.5, size, lo, hi) for q in p])
    else:  # dr_grpo and rloo: ((G-1)/G) Δ p(1-p) and Δ p(1-p), so 4p(1-p) of the value at 1/2
        shrink = 4 * p * (1 - p)
    out["rftgrad/update_shrink"] = shrink.mean()
    out["rftgrad/update_shrink/min"] = shrink.min()
    return out


# ----------------------------------------------------------------------------- the checks
@pytest.mark.parametrize("name", RUNS)
def test_logged_metrics_equal_a_recomputation_from_trls_completions(runs, name):
    monitor, _, logs, tables, names = runs[name]
    arguments, (lo, hi), _, _ = RUNS[name]
    size = arguments.get("num_generations", 4)
    assert monitor.estimator == SHRINK_FORM[name]
    assert len(logs) == len(tables) == monitor.batches
    worst = 0.0
    for log, table in zip(logs, tables, strict=True):
        expected = expected_metrics(
            totals_of(table, names, arguments.get("reward_weights")), size, lo, hi, SHRINK_FORM[name]
        )
        logged = {key: value for key, value in log.items() if key.startswith("rftgrad/")}
        assert set(logged) == set(expected)
        for key, value in expected.items():
            assert logged[key] == pytest.approx(float(value), abs=TRL_ATOL), (log["_global_step"], key)
            worst = max(worst, abs(logged[key] - float(value)))
        assert log["frac_reward_zero_std"] is not None  # TRL's own metrics are still there
    print(f"{name}: largest difference {worst:.2e}")


def test_the_runs_cover_all_equal_mixed_and_unscorable_groups(runs):
    logs = [log for _, _, run_logs, _, _ in runs.values() for log in run_logs]
    assert any(0 < log["rftgrad/frac_zero_std_groups"] < 1 for log in logs)  # all-equal and mixed in one batch
    assert any(log["rftgrad/vanishing_share"] > 0 for log in logs)
    for name in ("group", "rloo"):
        _, _, _, tables, names = runs[name]
        missing = pd.concat(tables)[names].isna()
        assert (missing.any(axis=1) & ~missing.all(axis=1)).any()  # a None from one function only
    missing = pd.concat(runs["group"][3])[runs["group"][4]].isna()
    assert missing.all(axis=1).any()  # unscorable rows


@pytest.mark.parametrize("name", RUNS)
def test_the_rollout_log_has_exactly_trls_rows(runs, name):
    monitor, out, _, tables, names = runs[name]
    arguments = RUNS[name][0]
    size = arguments.get("num_generations", 4)
    assert monitor.log_file == out / "rftgrad_rollouts.jsonl"
    rows = [json.loads(line) for line in monitor.log_file.read_text(encoding="utf-8").splitlines()]
    trl_rows = pd.concat(tables, ignore_index=True)
    assert len(rows) == len(trl_rows)
    totals = np.concatenate([totals_of(t, names, arguments.get("reward_weights")) for t in tables])
    for i, (row, (_, trl)) in enumerate(zip(rows, trl_rows.iterrows(), strict=True)):
        assert set(row) == {"step", "group", "prompt", "completion", "rewards", "reward"}
        assert row["step"] == trl["step"]
        assert row["group"] == (i % len(tables[0])) // size
        assert row["prompt"] == (trl["prompt"] if isinstance(trl["prompt"], str) else list(trl["prompt"]))
        assert row["completion"] == (
            trl["completion"] if isinstance(trl["completion"], str) else list(trl["completion"])
        )
        assert list(row["rewards"]) == names
        for fn in names:
            if math.isnan(trl[fn]):
                assert row["rewards"][fn] is None
            else:
                assert row["rewards"][fn] == pytest.approx(trl[fn], abs=TRL_ATOL)
        if math.isnan(totals[i]):
            assert row["reward"] is None
        else:
            assert row["reward"] == pytest.approx(totals[i], abs=TRL_ATOL)


@pytest.mark.parametrize("name", RUNS)
def test_trls_advantages_are_rftgrads(runs, name):
    """TRL's advantage column is rftgrad's formula of the totals. TRL leaves unscorable samples out
    of a group's mean and STD (RLOO: of its leave-one-out baseline), so a group with some is
    compared on its scorable samples, which must then number 2 or more; the others get 0. With
    ``scale_rewards="batch"`` the batch STD spans every group, so that run must be fully scored."""
    _, _, _, tables, names = runs[name]
    arguments, _, kind, scale = RUNS[name]
    kind = "dr_grpo" if scale == "none" else kind
    size = arguments.get("num_generations", 4)
    compared = partial = 0
    for table in tables:
        totals = totals_of(table, names, arguments.get("reward_weights")).reshape(-1, size)  # (P, G)
        trl = table["advantage"].to_numpy().reshape(-1, size)
        scorable = ~np.isnan(totals)
        assert np.all(trl[~scorable] == 0)  # unscorable: advantage 0
        if scale == "batch":
            assert scorable.all()
            ours = advantages(torch.tensor(totals[None], dtype=torch.float32), kind, torch.ones(1, len(totals)), scale)
            np.testing.assert_allclose(ours[0].numpy(), trl, atol=TRL_ATOL, rtol=0)
            compared += totals.size
            continue
        for group, advantage, keep in zip(totals, trl, scorable, strict=True):
            if keep.sum() < 2:
                assert np.all(advantage == 0)  # one scorable sample: TRL's Bessel STD is NaN, its advantage 0
                continue
            rewards = torch.tensor(group[keep][None, None], dtype=torch.float32)  # (1, 1, n)
            ours = advantages(rewards, kind, torch.ones(1, 1), scale or "group")
            np.testing.assert_allclose(ours[0, 0].numpy(), advantage[keep], atol=TRL_ATOL, rtol=0)
            compared += int(keep.sum())
            partial += int(not keep.all())
    assert compared >= 8
    if name == "group":
        assert partial >= 1  # a group with an unscorable sample was compared


def test_the_rollout_log_reads_in_rftgrad_diagnose(runs):
    from rftgrad.diagnose import read_rollouts

    monitor = runs["batch"][0]
    log = read_rollouts(monitor.log_file)
    assert (log.prompt_col, list(log.reward_cols), log.step_col) == ("prompt", ["reward"], "step")
    assert len(log.samples) == sum(len(t) for t in runs["batch"][3])


def test_the_wrappers_keep_names_values_and_async(runs):
    monitor = GroupMonitor()
    plain, marked = monitor.wrap([contains_char, maybe_none_reward])
    assert (plain.__name__, marked.__name__) == ("contains_char", "maybe_none_reward")
    assert plain.__doc__ == contains_char.__doc__
    assert inspect.iscoroutinefunction(GroupMonitor().wrap(vowel_async))
    assert not inspect.iscoroutinefunction(plain)


# ----------------------------------------------------------------------------- misuse
def test_wrap_refuses_what_it_cannot_monitor():
    with pytest.raises(ConfigError, match="not callable"):
        GroupMonitor().wrap([vowel_reward, 3])
    with pytest.raises(ConfigError, match="reward model"):
        GroupMonitor().wrap(["some/model-id"])
    with pytest.raises(ConfigError, match="non-empty list"):
        GroupMonitor().wrap([])
    monitor = GroupMonitor()
    monitor.wrap([vowel_reward])
    with pytest.raises(MonitorError, match="already wrapped"):
        monitor.wrap([vowel_reward])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reward_range=(1, 0)), r"reward_range needs LO < HI"),
        (dict(reward_range=(0, float("nan"))), r"reward_range must be finite"),
        (dict(reward_range="0,1"), r"reward_range takes two numbers"),
        (dict(group_sizes=(4, 4)), r"group_sizes lists 4 more than once"),
        (dict(group_sizes=(0,)), r"group_sizes takes whole numbers >= 1, got 0"),
        (dict(std_threshold=-1), "std_threshold"),
        (dict(log_path=True), "log_path"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GroupMonitor(**kwargs)


def test_a_monitor_that_is_not_a_callback_says_what_to_do(tmp_path):
    monitor = GroupMonitor()
    with pytest.raises(MonitorError, match=r"callbacks=\[monitor\]"):
        run_grpo(tmp_path, prompts=["ab", "cd"], reward_funcs=monitor.wrap([vowel_reward]), max_steps=1)


def test_a_total_outside_the_range_stops_the_run(tmp_path):
    monitor = GroupMonitor(reward_range=(0.0, 0.5))  # vowel_reward gives 1.0
    with pytest.raises(ConfigError, match="outside GroupMonitor"):
        run_grpo(tmp_path, prompts=["ab", "cd"], reward_funcs=monitor.wrap(vowel_reward), callbacks=[monitor])


@pytest.mark.parametrize(
    "weights, match",
    [([1.0, 1.0], "reward_weights has 2 entries"), (None, "did not wrap \\('contains_char'\\)")],
)
def test_a_partly_wrapped_list_is_refused(tmp_path, weights, match):
    """Found at on_train_begin from reward_weights, else at the first log from TRL's rewards/<name>/mean."""
    monitor = GroupMonitor()
    funcs = [*monitor.wrap([vowel_reward]), contains_char]
    with pytest.raises(MonitorError, match=match):
        run_grpo(
            tmp_path, prompts=["ab", "cd"], reward_funcs=funcs, reward_weights=weights, callbacks=[monitor], max_steps=1
        )


def test_a_custom_or_no_rollout_log(tmp_path):
    custom = tmp_path / "logs" / "mine.jsonl"
    monitor = GroupMonitor(log_path=custom)
    run_grpo(
        tmp_path / "b", prompts=["ab", "cd"], reward_funcs=monitor.wrap(vowel_reward), callbacks=[monitor], max_steps=1
    )
    assert len(custom.read_text().splitlines()) == 8  # one step: 2 groups of 4
    monitor = GroupMonitor(log_path=False)
    out, logs = run_grpo(
        tmp_path / "c", prompts=["ab", "cd"], reward_funcs=monitor.wrap(vowel_reward), callbacks=[monitor], max_steps=1
    )
    assert monitor.log_file is None and not (out / "rftgrad_rollouts.jsonl").exists()
    assert "rftgrad/vanishing_share" in logs[0]


def rollout_totals(monitor: GroupMonitor) -> dict[int, np.ndarray]:
    """step -> the totals of the batch the rollout log holds for it (null -> NaN)."""
    rows = [json.loads(line) for line in monitor.log_file.read_text(encoding="utf-8").splitlines()]
    steps = sorted({row["step"] for row in rows})
    return {
        s: np.array([np.nan if r["reward"] is None else r["reward"] for r in rows if r["step"] == s]) for s in steps
    }


def test_a_logging_window_of_two_batches_logs_their_mean(tmp_path):
    """TRL averages log_metric values over the generation batches of a logging window (and writes
    only the last batch to its completions file), so the check uses the rollout log."""
    monitor = GroupMonitor()
    _, logs = run_grpo(
        tmp_path,
        prompts=["ab", "cd", "ef"],
        reward_funcs=monitor.wrap(vowel_reward),
        callbacks=[monitor],
        max_steps=4,
        extra_args=dict(logging_steps=2),
    )
    logs = [log for log in logs if "loss" in log]
    assert [log["_global_step"] for log in logs] == [2, 4]
    per_batch = {s: expected_metrics(t, 4, 0.0, 1.0, "grpo") for s, t in rollout_totals(monitor).items()}
    assert sorted(per_batch) == [1, 2, 3, 4]
    for log in logs:
        window = [per_batch[log["_global_step"] - 1], per_batch[log["_global_step"]]]
        for key in window[0]:
            assert log[key] == pytest.approx(np.mean([m[key] for m in window]), abs=TRL_ATOL), key


def test_evaluation_batches_are_logged_as_eval_metrics_and_kept_out_of_the_rollout_log(tmp_path):
    """With evaluation at a step, TRL's completions file of that step holds the *evaluation* batch
    (its table keeps the last generation batch, and evaluation logs after training does)."""
    monitor = GroupMonitor()
    out, logs = run_grpo(
        tmp_path,
        prompts=["ab", "cd"],
        eval_prompts=["ef", "gh"],
        reward_funcs=monitor.wrap(vowel_reward),
        callbacks=[monitor],
        max_steps=2,
    )
    train = [log for log in logs if "loss" in log]
    evals = [log for log in logs if "eval_loss" in log]
    assert len(train) == len(evals) == 2 and monitor.batches == 4
    totals = rollout_totals(monitor)
    for log in train:
        for key, value in expected_metrics(totals[log["_global_step"]], 4, 0.0, 1.0, "grpo").items():
            assert log[key] == pytest.approx(value, abs=TRL_ATOL), key
    for log in evals:
        table = pd.read_parquet(out / "completions" / f"completions_{log['_global_step']:05d}.parquet")
        assert set(table["prompt"]) == {"ef", "gh"}
        for key, value in expected_metrics(totals_of(table, ["vowel_reward"], None), 4, 0.0, 1.0, "grpo").items():
            assert log[f"eval_{key}"] == pytest.approx(value, abs=TRL_ATOL), key
    rows = [json.loads(line) for line in monitor.log_file.read_text(encoding="utf-8").splitlines()]
    assert {row["prompt"] for row in rows} == {"ab", "cd"} and len(rows) == 16


@pytest.mark.filterwarnings("ignore")  # TRL's and transformers' own deprecation notes about their defaults
def test_the_code_in_docs_trl_md_runs(tmp_path):
    """docs/trl.md's example, with the tiny model for the hub one, a short run and real data."""
    import re
    from pathlib import Path

    from tests.integrations.trl_tiny import make_model, make_tokenizer

    text = (Path(__file__).resolve().parents[2] / "docs" / "trl.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    swaps = {
        'model="Qwen/Qwen2.5-0.5B-Instruct",': "model=make_model(tokenizer), processing_class=tokenizer,",
        "logging_steps=1)": 'logging_steps=1, max_steps=2, max_completion_length=6, report_to="none", use_cpu=True)',
        '{"prompt": [...], "answer": [...]}': '{"prompt": ["ab", "cd"], "answer": ["x", "y."]}',
        'output_dir="out"': f"output_dir={str(tmp_path / 'out')!r}",
    }
    for old, new in swaps.items():
        assert block.count(old) == 1, old
        block = block.replace(old, new)
    namespace = {"make_model": make_model, "tokenizer": make_tokenizer()}
    exec(compile(block, "docs/trl.md", "exec"), namespace)
    rows = [json.loads(line) for line in namespace["monitor"].log_file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 16 and set(rows[0]["rewards"]) == {"accuracy_reward", "format_reward"}


def test_a_reward_function_returning_an_array_is_monitored(tmp_path):
    """TRL takes any iterable of rewards (it reads them one by one), numpy arrays included."""

    def array_reward(completions, **kwargs):
        return np.array(vowel_reward(completions))

    monitor = GroupMonitor()
    _, logs = run_grpo(
        tmp_path, prompts=["ab", "cd"], reward_funcs=monitor.wrap([array_reward]), callbacks=[monitor], max_steps=2
    )
    assert monitor.batches == 2 and all("rftgrad/vanishing_share" in log for log in logs if "loss" in log)
