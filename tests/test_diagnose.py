"""`rftgrad diagnose`: per-prompt statistics, the zero-STD estimators, file shapes, and one-line errors.

Known answers come from hand-made files (exact numbers), exact expectations over the binomial
(the estimators' bias, no sampling), and seeded logs whose success probabilities are set, so the
expected zero-STD fraction p^G + (1-p)^G is known and the tolerance follows from the binomial
standard error over prompts.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from rftgrad.cli import main
from rftgrad.diagnose import (
    RolloutLogError,
    diagnose_log,
    plugin_prob_all_equal,
    read_rollouts,
    unbiased_prob_all_equal,
)
from rftgrad.errors import RftgradError
from rftgrad.theory.bounds import stalled
from rftgrad.theory.group_updates import frac_reward_zero_std
from tests.experiments.test_theorem1_experiments import assert_valid_png
from tests.tolerances import MC_Z

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def binary_log(path: Path, probs: np.ndarray, samples: int, seed: int) -> Path:
    """A CSV log, ``samples`` Bernoulli(p) rewards for each prompt with success probability ``p``."""
    rewards = (np.random.default_rng(seed).random((len(probs), samples)) < probs[:, None]).astype(float)  # (P, n)
    frame = pd.DataFrame({"prompt_id": np.repeat(np.arange(len(probs)), samples), "reward": rewards.ravel()})
    frame.to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("group_size", [1, 2, 3, 8, 16])
def test_plugin_reduces_to_the_binary_closed_form(group_size):
    counts = np.array([[k, 8 - k] for k in range(9)])  # k successes of n = 8
    expected = frac_reward_zero_std(counts[:, 0] / 8, group_size)  # (k/n)^G + (1 - k/n)^G
    np.testing.assert_allclose(plugin_prob_all_equal(counts, group_size), expected, rtol=0, atol=1e-14)


def test_unbiased_estimator_is_the_hypergeometric_ratio_and_the_indicator_at_g_equal_n():
    counts = np.array([[3, 4, 0], [7, 0, 0], [1, 1, 5]])  # n = 7 each
    for g in range(1, 8):
        expected = [sum(math.comb(int(c), g) for c in row) / math.comb(7, g) for row in counts]
        np.testing.assert_allclose(unbiased_prob_all_equal(counts, g), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(unbiased_prob_all_equal(counts, 7), [0.0, 1.0, 0.0])  # "all 7 equal"
    assert np.isnan(unbiased_prob_all_equal(counts, 8)).all()  # G > n: undefined


@pytest.mark.parametrize(("n", "p", "group_size"), [(8, 0.1, 2), (8, 0.5, 4), (8, 0.9, 8), (16, 0.02, 5)])
def test_unbiased_estimator_has_expectation_p_to_the_g_exactly(n, p, group_size):
    # E over K ~ Binomial(n, p) of the estimate, summed exactly over k = 0..n (no sampling)
    k = np.arange(n + 1)
    weights = binom.pmf(k, n, p)
    counts = np.stack([k, n - k], axis=1)
    unbiased = float(weights @ unbiased_prob_all_equal(counts, group_size))
    assert unbiased == pytest.approx(p**group_size + (1 - p) ** group_size, abs=1e-12)
    plugin = float(weights @ plugin_prob_all_equal(counts, group_size))
    if group_size >= 2:  # Jensen: the plug-in is biased upwards
        assert plugin > unbiased + 1e-6


def test_unbiased_estimator_three_values_by_enumeration():
    q, n, g = np.array([0.2, 0.3, 0.5]), 4, 3
    mean = 0.0
    for draw in itertools.product(range(3), repeat=n):  # all 3^4 ordered samples
        counts = np.bincount(draw, minlength=3)
        mean += np.prod(q[list(draw)]) * float(unbiased_prob_all_equal(counts, g))
    assert mean == pytest.approx(float((q**g).sum()), abs=1e-12)


# ----------------------------------------------------------------------------- tables on known files


def test_per_prompt_mean_and_std_exact_on_a_hand_made_file(tmp_path):
    # interleaved prompts, a step column given as text (TRL writes str(global_step))
    rows = [("b", 1.0), ("a", 0.2), ("b", 0.0), ("a", 0.2), ("c", -1.0), ("b", 0.0), ("a", 0.2), ("c", 1.0), ("b", 1.0)]
    path = tmp_path / "log.csv"
    pd.DataFrame({"step": "7", "question": [p for p, _ in rows], "score": [r for _, r in rows]}).to_csv(
        path, index=False
    )
    log = read_rollouts(path)
    assert (log.prompt_col, log.reward_cols, log.step_col, log.shape) == ("question", ("score",), "step", "per-sample")
    table = diagnose_log(log).table.set_index("prompt")
    assert list(table.index) == ["b", "a", "c"] and (table["step"] == 7).all()  # first appearance, numeric step
    assert table["n"].to_dict() == {"b": 4, "a": 3, "c": 2}
    np.testing.assert_allclose(table["reward_mean"], [0.5, 0.2, 0.0], atol=1e-15)
    np.testing.assert_allclose(table["reward_std"], [0.5, 0.0, 1.0], atol=1e-15)  # population STD
    assert table["zero_std"].to_dict() == {"b": False, "a": True, "c": False}
    assert table["num_values"].to_dict() == {"b": 2, "a": 1, "c": 2}
    # b: counts (2, 2): plug-in 2·(1/2)^G; unbiased G=2: 2·C(2,2)/C(4,2) = 1/3, G=4: 0, G=8: undefined
    assert table.loc["b", "p_all_equal_G4"] == pytest.approx(0.125, abs=1e-15)
    assert table.loc["b", "p_all_equal_unbiased_G2"] == pytest.approx(1 / 3, abs=1e-15)
    assert table.loc["b", "p_all_equal_unbiased_G4"] == 0.0 and np.isnan(table.loc["b", "p_all_equal_unbiased_G8"])
    assert table.loc["a", "p_all_equal_G64"] == 1.0
    assert table["first_row"].to_dict() == {"b": "row 1", "a": "row 2", "c": "row 5"}


def test_vanishing_share_exact_on_a_constructed_file(tmp_path):
    records = []
    design = {  # name: (number of prompts, rewards of each), rewards in [0, 1]
        "fail": (10, [0.0] * 8),  # STD 0, mean 0: vanishing
        "solved": (5, [1.0] * 8),  # STD 0 but mean at the maximum: not vanishing
        "one_hit": (5, [1.0] + [0.0] * 7),  # STD 0.33 > 0.1: not vanishing
        "flat_low": (4, [0.2, 0.21, 0.19, 0.2]),  # STD 0.007, mean 0.2 < 0.5: vanishing
        "flat_high": (3, [0.6, 0.61, 0.59, 0.6]),  # STD 0.007 but mean 0.6 >= 0.5: not vanishing
    }
    for name, (count, rewards) in design.items():
        records += [{"prompt": f"{name}{i}", "reward": r} for i in range(count) for r in rewards]
    path = write_jsonl(tmp_path / "log.jsonl", records)
    diagnosis = diagnose_log(read_rollouts(path), reward_range=(0.0, 1.0))
    assert (diagnosis.regime.std_threshold, diagnosis.regime.gap, diagnosis.regime.max_reward) == (0.1, 0.5, 1.0)
    assert diagnosis.summary["vanishing"] == {"count": 14, "share": 14 / 27}
    assert diagnosis.summary["zero_std_groups"]["share"] == 15 / 27  # fail + solved
    vanishing = diagnosis.table.loc[diagnosis.table["vanishing"], "prompt"].str.rstrip("0123456789")
    assert set(vanishing) == {"fail", "flat_low"}
    # a stricter STD threshold drops flat_low (STD 0.0071); a wider gap drops flat_low (mean 0.2 > 1 - 0.85)
    assert diagnose_log(read_rollouts(path), std_threshold=0.005).summary["vanishing"]["count"] == 10
    assert diagnose_log(read_rollouts(path), gap=0.85).summary["vanishing"]["count"] == 10
    # one definition of the regime: the table's flags are rftgrad.theory.stalled's at (max_reward, gap)
    regime, table = diagnosis.regime, diagnosis.table
    flags = stalled(table["reward_mean"], table["reward_std"], regime.max_reward, None, regime.std_threshold, gap=0.5)
    assert table["vanishing"].equals(flags)
    assert regime.vanishing(table["reward_mean"], table["reward_std"]).equals(flags)


def test_regime_calls_the_theory_definition(tmp_path, monkeypatch):
    """Regime.vanishing goes through rftgrad.theory.bounds.stalled (not a copy of its inequalities)."""
    import rftgrad.diagnose.stats as stats

    calls = []
    monkeypatch.setattr(stats, "stalled", lambda *args, **kwargs: calls.append(kwargs) or stalled(*args, **kwargs))
    path = write_jsonl(tmp_path / "log.jsonl", [{"prompt": f"p{i % 3}", "reward": float(i % 2)} for i in range(12)])
    diagnose_log(read_rollouts(path), reward_range=(0.0, 1.0), gap=0.25)
    assert calls == [{"gap": 0.25}]


def test_observed_and_predicted_zero_std_fractions_match_the_closed_form(tmp_path):
    probs = np.repeat([0.02, 0.3, 0.5, 0.9], 500)  # P = 2000 prompts, n = 8 samples each
    n = 8
    diagnosis = diagnose_log(read_rollouts(binary_log(tmp_path / "log.csv", probs, n, seed=0)))
    table, summary = diagnosis.table, diagnosis.summary
    # observed: each prompt's group is all-equal with probability π = p^8 + (1-p)^8, independently;
    # the mean of P Bernoulli(π_i) has SE sqrt(Σ π(1-π)) / P (0.0065 here)
    expected = frac_reward_zero_std(probs, n)
    se = math.sqrt(float((expected * (1 - expected)).sum())) / len(probs)
    assert abs(summary["zero_std_groups"]["share"] - expected.mean()) < MC_Z * se
    k = np.arange(n + 1)
    for row in summary["predicted_frac_reward_zero_std"]:
        g = row["group_size"]
        # plug-in: its exact expectation is Σ_k Binom(k; n, p)·((k/n)^G + (1-k/n)^G), not p^G + (1-p)^G
        plugin_mean = np.mean(
            [binom.pmf(k, n, p) @ frac_reward_zero_std(k / n, g) for p in np.unique(probs)]
        )  # equal shares
        plugin_se = table[f"p_all_equal_G{g}"].std() / math.sqrt(len(probs))
        assert abs(row["plugin"] - plugin_mean) < MC_Z * plugin_se + 1e-12
        if g <= n:  # unbiased: expectation p^G + (1-p)^G exactly
            unbiased_se = table[f"p_all_equal_unbiased_G{g}"].std() / math.sqrt(len(probs))
            assert abs(row["unbiased"] - frac_reward_zero_std(probs, g).mean()) < MC_Z * unbiased_se
            assert row["unbiased_groups"] == len(probs)
        else:
            assert row["unbiased"] is None and row["unbiased_groups"] == 0
    # at G = n the unbiased estimate is the observed fraction itself
    at_n = next(r for r in summary["predicted_frac_reward_zero_std"] if r["group_size"] == n)
    assert at_n["unbiased"] == pytest.approx(summary["zero_std_groups"]["share"], abs=1e-12)


# ----------------------------------------------------------------------------- shapes and column detection


def test_per_group_rows_nested_fields_and_per_sample_rows_agree(tmp_path):
    groups = {"q1": [1.0, 0.0, 0.0, 1.0], "q2": [0.0, 0.0, 0.0]}
    per_sample = write_jsonl(tmp_path / "a.jsonl", [{"query": q, "reward": r} for q, rs in groups.items() for r in rs])
    per_group = write_jsonl(
        tmp_path / "b.jsonl", [{"prompt": q, "completions": ["x"] * len(rs), "rewards": rs} for q, rs in groups.items()]
    )
    nested = write_jsonl(
        tmp_path / "c.jsonl", [{"sample": {"prompt": q, "reward": r}} for q, rs in groups.items() for r in rs]
    )
    tables = []
    for path, shape in ((per_sample, "per-sample"), (per_group, "per-group"), (nested, "per-sample")):
        log = read_rollouts(path)
        assert log.shape == shape
        tables.append(diagnose_log(log).table.drop(columns="first_row"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    assert read_rollouts(per_group).samples["where"].tolist()[:2] == ["line 1, element 1", "line 1, element 2"]


def test_trl_per_function_columns_are_summed_like_trl(tmp_path):
    # TRL >= 0.15 completions table: one column per reward function, no total; NaN terms skipped (nansum)
    records = [
        {"step": "5", "prompt": "p", "completion": "c", "accuracy_reward": 1.0, "format_reward": 0.5, "advantage": 1},
        {"step": "5", "prompt": "p", "completion": "c", "accuracy_reward": 0.0, "format_reward": None, "advantage": -1},
    ]
    log = read_rollouts(write_jsonl(tmp_path / "trl.jsonl", records))
    assert log.shape == "per-function" and log.reward_cols == ("accuracy_reward", "format_reward")
    assert log.samples["reward"].tolist() == [1.5, 0.0]
    weighted = read_rollouts(tmp_path / "trl.jsonl", reward_col="accuracy_reward,format_reward", reward_weights=[1, 2])
    assert weighted.samples["reward"].tolist() == [2.0, 0.0]


def test_wandb_table_export_and_pooled_steps(tmp_path):
    table = {"columns": ["step", "prompt", "reward"], "data": [[1, "a", 1], [1, "a", 0], [2, "a", 1], [2, "a", 1]]}
    path = tmp_path / "completions.table.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    by_step = diagnose_log(read_rollouts(path))
    assert by_step.summary["groups"] == 2 and by_step.summary["zero_std_groups"]["share"] == 0.5
    assert [s["zero_std_groups_share"] for s in by_step.summary["per_step"]] == [0.0, 1.0]
    pooled = diagnose_log(read_rollouts(path, step_col="none"))
    assert pooled.summary["groups"] == 1 and pooled.table["reward_mean"].item() == 0.75


# ----------------------------------------------------------------------------- the command on the shipped example


def _load_example_script():
    spec = importlib.util.spec_from_file_location("make_rollouts", EXAMPLES / "make_rollouts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_example_is_what_its_script_generates():
    shipped = pd.read_json(EXAMPLES / "rollouts.jsonl", lines=True)
    pd.testing.assert_frame_equal(_load_example_script().rollouts(), shipped, check_dtype=False)
    assert (EXAMPLES / "rollouts.jsonl").stat().st_size < 200_000


def test_cli_end_to_end_on_the_shipped_example(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["diagnose", str(EXAMPLES / "rollouts.jsonl"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vanishing regime (STD < 0.1 and mean < 0.5)" in printed and f"wrote {out}/" in printed
    for name in ("prompts.csv", "steps.csv", "summary.json", "mean_vs_std.png", "mean_vs_std.pdf"):
        assert (out / name).is_file()
    assert_valid_png(out / "mean_vs_std.png")
    assert not list(out.glob(".*"))  # no temporary files left
    prompts = pd.read_csv(out / "prompts.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(prompts) == summary["groups"] == 200 and (prompts["n"] == 8).all() and summary["steps"] == 4
    assert summary["columns"] == {"prompt": "prompt", "reward": ["reward"], "reward_weights": [1.0], "step": "step"}
    assert summary["vanishing"]["count"] == int(prompts["vanishing"].sum())
    # the design (examples/make_rollouts.py): zero-STD groups expected with probability p^8 + (1-p)^8 per prompt
    probs = _load_example_script().success_probabilities(np.random.default_rng(0))
    expected = frac_reward_zero_std(probs, 8)
    se = math.sqrt(float((expected * (1 - expected)).sum())) / len(probs)  # 0.034
    assert abs(summary["zero_std_groups"]["share"] - expected.mean()) < MC_Z * se
    # the 60 hard prompts (p = 0.001) all fail with probability 0.999^480 = 0.62; at least 57 do with prob. > 0.9999
    assert summary["vanishing"]["count"] >= 57


def test_verl_style_csv_example_gives_the_same_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["diagnose", str(EXAMPLES / "rollouts.csv")]) == 0  # default --out: diagnose_rollouts/
    assert "prompt='input', reward='score', step='step'" in capsys.readouterr().out
    assert main(["diagnose", str(EXAMPLES / "rollouts.jsonl"), "--out", "jsonl"]) == 0
    csv, jsonl = (pd.read_csv(tmp_path / d / "prompts.csv") for d in ("diagnose_rollouts", "jsonl"))
    # the JSONL has TRL's columns, so its groups are blocks of consecutive rows (numbered): the same groups here
    assert "grouped by blocks of 8 consecutive rows per step (inferred)" in capsys.readouterr().out
    pd.testing.assert_frame_equal(csv.drop(columns="first_row"), jsonl.drop(columns=["first_row", "group"]))


# ----------------------------------------------------------------------------- bad files: one line, exit 2, no output

GOOD = '{"prompt": "a", "reward": 1}\n{"prompt": "a", "reward": 0}\n'
BAD_FILES = {
    "missing file": ("absent.jsonl", None, [], r"absent\.jsonl: no such file"),
    "empty file": ("log.jsonl", "\n\n", [], r"the file is empty"),
    "header only": ("log.csv", "prompt,reward\n", [], r"the file is empty"),
    "unknown format": ("log.txt", GOOD, [], r"unknown format '\.txt'.*--format"),
    "missing reward column": (
        "log.jsonl",
        '{"prompt": "a", "completion": "x"}\n',
        [],
        r"no reward column .*columns found: prompt, completion; name it with --reward-col",
    ),
    "named column absent": ("log.jsonl", GOOD, ["--prompt-col", "query"], r"no column 'query' .*found: prompt, reward"),
    "non-numeric reward": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": "abc"}\n',
        [],
        r"line 3: reward 'abc' is not",
    ),
    "null reward": ("log.jsonl", GOOD + '{"prompt": "a", "reward": null}\n', [], r"line 3: reward is missing"),
    "NaN reward": ("log.jsonl", '{"prompt": "a", "reward": NaN}\n' + GOOD, [], r"line 1: reward is missing or NaN"),
    "inf reward": ("log.csv", "prompt,reward\na,1\na,inf\n", [], r"row 2: reward inf is not finite"),
    "out of range": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": 2}\n',
        ["--reward-range", "0,1"],
        r"line 3: reward 2 is outside --reward-range \[0, 1\]",
    ),
    "single sample": (
        "log.jsonl",
        GOOD + '{"prompt": "lonely", "reward": 1}\n',
        [],
        r"line 3: prompt 'lonely' has only 1 sample.*--skip-singletons",
    ),
    "malformed JSON": ("log.jsonl", GOOD + '{"prompt": "a", "reward": 1\n', [], r"line 3 is not valid JSON"),
    "missing prompt": ("log.jsonl", GOOD + '{"prompt": null, "reward": 1}\n', [], r"line 3: no prompt"),
    "reward lists disagree": (
        "log.jsonl",
        '{"prompt": "a", "accuracy_reward": [1, 0], "format_reward": [1]}\n',
        ["--reward-col", "accuracy_reward,format_reward"],
        r"line 1: reward columns disagree on the number of samples",
    ),
    "constant rewards": ("log.jsonl", GOOD.replace(": 0}", ": 1}"), [], r"every reward is 1.*--reward-range"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_line_error_exit_2_and_writes_nothing(case, tmp_path, capsys):
    name, content, options, message = BAD_FILES[case]
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "report"
    assert main(["diagnose", str(path), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rftgrad: error: ") and "\n" not in err, err
    assert re.search(message, err), err
    assert not out.exists()


def test_errors_are_a_specific_type_and_singletons_can_be_skipped(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text(GOOD + '{"prompt": "lonely", "reward": 1}\n', encoding="utf-8")
    with pytest.raises(RolloutLogError) as error:
        diagnose_log(read_rollouts(path))
    assert isinstance(error.value, RftgradError) and isinstance(error.value, ValueError)
    assert main(["diagnose", str(path), "--out", str(tmp_path / "report"), "--skip-singletons"]) == 0
    assert "1 single-sample groups skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["groups"] == 1
