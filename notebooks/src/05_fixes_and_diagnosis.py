# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 5 — fixes, group estimators, and diagnosing your own rollouts
#
# *rftgrad course, lesson 5 of 5; about 35 minutes to read and run.*
#
# What does and does not help: common heuristics (learning rate, temperature, entropy bonus) do not; a
# short SFT phase on 1% of the inputs does. Then the group estimators practitioners run (GRPO, RLOO,
# DAPO), `frac_reward_zero_std`, and `rftgrad diagnose` on a rollout log.

# %%
import dataclasses
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display

from rftgrad.diagnose import diagnose_log, format_summary, plot_mean_vs_std, read_rollouts
from rftgrad.experiments import run_experiment
from rftgrad.experiments.controlled import Config as ControlledConfig
from rftgrad.experiments.controlled import make_task, pretrained_policies
from rftgrad.experiments.sft_budget import Config as BudgetConfig
from rftgrad.experiments.sft_budget import budget_task
from rftgrad.finetune import PretrainedPolicies, TrainConfig, monte_carlo_update, phase_subset, replica_grid, train
from rftgrad.theory import (
    asymptotic_update,
    evaluate,
    expected_samples,
    expected_update,
    fit_power,
    frac_reward_zero_std,
)

QUICK = os.environ.get("RFTGRAD_NOTEBOOK_QUICK") == "1"  # small budgets (the test suite sets it)
WORK_DIR = tempfile.TemporaryDirectory(prefix="rftgrad-lesson5-")  # removed when the kernel stops
WORK = Path(WORK_DIR.name)  # run directories of this lesson

# %% [markdown]
# ## 1. Heuristics do not fix it (paper Section 5.1)
#
# On lesson 4's controlled task, turn up one common remedy at a time: the learning rate ($\times 1, 10,
# 100$), the sampling temperature ($T = 1, 1.5, 2$), an entropy bonus ($\beta = 0, 0.01, 0.1$), each
# sweep's values as replicas of one run. The `heuristics` experiment does exactly that;
# `run_experiment` runs it into a directory (config, records, score, figures), with `--set`-style
# overrides for a small budget. Outputs past the 10 classes are answers no input asks for, like most of
# a vocabulary.

# %%
sets = ["num_train=10", "cluster_dim=128", "pretrain_steps=150", "eval_every=10", "seeds=1"]
sets += ["output_sizes=10", "arms=rft:40"] if QUICK else ["output_sizes=10,100", "arms=rft:200"]
tables, score, figures = run_experiment("heuristics", WORK / "heuristics", sets=sets, progress=False)
summary = pd.DataFrame(score["table"])
columns = ["num_outputs", "sweep", "objective", "setting", "modified_start", "modified_end_t1", "modified_std_start"]
print(summary[columns].round(4).to_string(index=False))
display(Image(filename=str(figures[0]), width=700))

# %% [markdown]
# Every RFT setting leaves the modified inputs at $-1$ (SFT at the larger learning rates fits them). The
# mechanism is in the last column: a hotter temperature does raise their reward STD a little, but the
# mass it frees spreads over *every* output outside the pretrained set, the more so the larger the output
# space; an entropy bonus's own gradient on an output of probability $p$ is also proportional to $p$.
#
# ## 2. A short SFT phase does (paper Section 5.2)
#
# A task with shared structure: three classes share a direction and all follow one relabelling rule
# ("answer $\ell^*$", outside their pretraining sets): the `sft_budget` experiment's task. An arm is a
# sequence of phases: `sft:10@0.01+rft:N` is 10 SFT steps on a seeded 1% of the inputs, then $N$ RFT
# steps on all of them.

# %%
rft_steps = 100 if QUICK else 200
budget = BudgetConfig(rft_steps=rft_steps, sft_fractions=(0.01, 0.05, 1.0), sft_steps=(10,), full_sft_steps=100)
budget = dataclasses.replace(budget, trainer=dataclasses.replace(budget.trainer, seeds=2))  # two seeds, not three
trainer = budget.budget_trainer()  # the trainer section with the grid's arms
print("arms:", trainer.arms)
family = budget_task(budget)
family_inputs = family.train.groups["modified"]
print(family.train.describe(), f"({int(family_inputs.sum())} follow the rule)")
for fraction in budget.sft_fractions[:-1]:
    subset = phase_subset(family.train.num_inputs, fraction, replica_grid(trainer).seeds, phase_index=0)
    print(
        f"SFT on {fraction:.0%}: {subset.sum(-1).tolist()} inputs per replica, of which"
        f" {(subset & family_inputs).sum(-1).tolist()} follow the rule"
    )

start_policies = PretrainedPolicies(
    "linear", family.train, family.pretrain_outputs, steps=budget.pretrain_steps, lr=budget.pretrain_lr,
    progress=False,
)
budget_records = train(start_policies, family.train, trainer, eval_envs={"test": family.test}, progress=False).records
rows = budget_records[(budget_records.metric == "reward_mean") & (budget_records.group == "modified")]
last = rows[rows.step == rows.groupby("arm").step.transform("max")]
print(last.groupby(["arm", "split"]).value.mean().unstack().round(3).to_string())

# %% [markdown]
# RFT alone does not move the rule's inputs; ten SFT steps on 1% of the inputs (a handful of examples of
# the rule, since the rule is shared) give RFT a starting STD, and RFT then finishes the job, on the test
# split too.
#
# ## 3. Group estimators and `frac_reward_zero_std` (past the paper)
#
# GRPO, RLOO, Dr. GRPO and DAPO sample $G$ outputs per input and compare them. With a binary reward and
# success probability $p$, a group whose rewards are all equal carries no signal; that happens with
# probability $p^G + (1-p)^G$, which TRL and verl log as `frac_reward_zero_std`.

# %%
p_grid = np.logspace(-4, np.log10(0.5), 60)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for group_size in (2, 4, 8, 16, 64):
    left.semilogx(p_grid, frac_reward_zero_std(p_grid, group_size), label=f"G = {group_size}")
left.set(xlabel="success probability p", ylabel="P(all G rewards equal)", title="frac_reward_zero_std")
left.legend()

estimators = ("reinforce", "rloo", "dr_grpo", "grpo", "dapo")
for estimator in estimators:
    update = expected_update(p_grid, 8, estimator)
    power = fit_power(p_grid[:10], update[:10])
    right.loglog(p_grid, update, label=f"{estimator}: ~ {power.constant:.2f} p^{power.power:.2f}")
right.set(xlabel="success probability p", ylabel="E[update along the right answer's logit]", title="G = 8")
right.legend(fontsize=8)
plt.show()
for estimator in estimators:
    print(f"{estimator:>10}: E u ≈ {asymptotic_update(8, estimator).constant:.3f} · p as p -> 0")

# %% [markdown]
# Every expected update vanishes **linearly** in $p$, like the exact gradient $2p(1-p)$: dividing by the
# group STD (GRPO) rescales the groups that survive but cannot revive the all-equal ones, and DAPO's
# dynamic sampling pays for its larger constant with more samples. The closed forms come from
# `rftgrad.theory`; `monte_carlo_update` runs the training code's own advantage functions on simulated
# groups, and the two agree within a few standard errors:

# %%
draws = 20_000 if QUICK else 200_000
for estimator in ("rloo", "grpo", "dapo"):
    for p in (0.01, 0.1, 0.5):
        mc = monte_carlo_update(p, 8, estimator, num_draws=draws, seed=0)
        closed = float(expected_update(p, 8, estimator))
        z_score = (mc.mean - closed) / mc.sem
        print(
            f"{estimator:>5} p = {p:4}: closed {closed:.5f}, Monte Carlo {mc.mean:.5f} ± {mc.sem:.5f}"
            f" ({z_score:+.1f} SE); zero-STD groups {mc.frac_zero_std:.3f} vs {float(frac_reward_zero_std(p, 8)):.3f}"
        )
        assert abs(z_score) < 5

# %% [markdown]
# ### GRPO on the controlled task
#
# The trainer runs sampled estimators too (`estimator="grpo"`, `num_generations=G`). Its step metrics
# (split `batch`) include the measured `frac_reward_zero_std`, which at the first step should match
# $\frac1N\sum_n p_n^G + (1-p_n)^G$ computed exactly from the pretrained policy.

# %%
grpo = ControlledConfig(
    num_train=20,
    trainer=TrainConfig(
        arms=("rft:30",) if QUICK else ("rft:150",),
        estimator="grpo",
        num_generations=8,
        lr=(0.01,),
        seeds=2,
        eval_every=1,
        eval_grad_norm=False,
    ),
)
task = make_task(grpo)
grpo_policies = pretrained_policies(grpo, task, progress=False)
start = grpo_policies(replica_grid(grpo.trainer), torch.device("cpu"), torch.float64)
start_probs = evaluate(start, task.train).probs
success = start_probs[:, torch.arange(task.train.num_inputs), task.train.target_index()].numpy()  # (R, N) p(right)
predicted = frac_reward_zero_std(success, 8).mean()

grpo_records = train(grpo_policies, task.train, grpo.trainer, progress=False).records
zero_std = grpo_records[(grpo_records.split == "batch") & (grpo_records.metric == "frac_reward_zero_std")]
zero_std = zero_std.groupby("step").value.mean()
print(f"step 1: measured frac_reward_zero_std {zero_std.iloc[0]:.3f}, predicted {predicted:.3f}")
rewards = grpo_records[(grpo_records.metric == "reward_mean") & (grpo_records.split == "train")]
rewards = rewards[rewards.group.isin(["modified", "unmodified"])].groupby(["group", "step"]).value.mean()

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
left.plot(zero_std.index, zero_std.values, label="measured (batch)")
left.axhline(predicted, ls="--", color="0.4", label="predicted at the start")
left.set(xlabel="step", title="frac_reward_zero_std under GRPO, G = 8")
left.legend()
for group in ("unmodified", "modified"):
    right.plot(rewards[group].index, rewards[group].values, label=group)
right.set(xlabel="step", title="expected reward (exact)")
right.legend()
plt.show()

# %% [markdown]
# The zero-STD fraction *rises* during training: solved inputs (all rewards $+1$) have zero STD too. The
# number alone cannot tell *stuck* from *solved*; the mean reward of the all-equal groups can, which is
# what `rftgrad diagnose` reports.
#
# ## 4. Diagnosing a rollout log
#
# `rftgrad diagnose FILE` reads a log you already have (JSONL, JSON or CSV; one row per sampled output or
# per group; TRL- and verl-style column names are detected) and reports per prompt the reward mean and
# STD, the share of prompts in the vanishing regime (small STD **and** a mean far from the best), the
# observed `frac_reward_zero_std` and the one predicted for other group sizes. From a shell:
#
# ```bash
# rftgrad diagnose examples/rollouts.jsonl --out runs/diagnose
# ```
#
# The same from Python, on the example log that ships with the repository:

# %%
here = Path.cwd().resolve()
root = next(folder for folder in (here, *here.parents) if (folder / "examples" / "rollouts.jsonl").exists())
log = read_rollouts(root / "examples" / "rollouts.jsonl")
diagnosis = diagnose_log(log)
print(format_summary(diagnosis))
print(
    diagnosis.table[["step", "prompt", "n", "reward_mean", "reward_std", "zero_std", "vanishing"]].head(8).to_string()
)
figure = plot_mean_vs_std(diagnosis)  # a matplotlib figure
display(figure)

# %% [markdown]
# ## Exercises
#
# Each exercise cell (tag `exercise`) is followed by a check cell (tag `check`):
# run it after your answer; it raises an `AssertionError` until the answer is right.

# %% [markdown]
# ### Exercise 1: pick the group size
#
# An input has success probability $p = 0.05$ under the current policy. What is the **smallest** GRPO
# group size $G$ for which the chance of an all-equal (useless) group, `frac_reward_zero_std`, is below
# $0.5$? Work it out from $p^G + (1-p)^G$.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: an int
smallest_group = None
### END STARTER
### BEGIN SOLUTION
smallest_group = next(g for g in range(2, 1000) if 0.05**g + 0.95**g < 0.5)
### END SOLUTION

# %% tags=["check"]
assert smallest_group is not None, "fill in smallest_group"
assert float(frac_reward_zero_std(0.05, smallest_group)) < 0.5
assert float(frac_reward_zero_std(0.05, smallest_group - 1)) >= 0.5, "a smaller group also works"
print(f"G = {smallest_group}: frac_reward_zero_std = {float(frac_reward_zero_std(0.05, smallest_group)):.3f}")

# %% [markdown]
# ### Exercise 2: what DAPO pays for an informative group
#
# DAPO with unbounded resampling keeps drawing groups of $G$ until one is informative (not all equal).
# At $p = 0.01$ and $G = 8$, how many outputs does it sample per kept group on average? Derive it from
# the all-equal probability $d = p^G + (1-p)^G$ (the number of tries is geometric), then compare with
# `1/p`.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: a float, the expected number of sampled outputs per kept group
samples_per_kept_group = None
### END STARTER
### BEGIN SOLUTION
d = 0.01**8 + 0.99**8
samples_per_kept_group = 8 / (1 - d)  # G outputs per try, 1/(1 - d) tries on average
### END SOLUTION

# %% tags=["check"]
assert samples_per_kept_group is not None, "fill in samples_per_kept_group"
library = float(expected_samples(0.01, 8, "dapo", max_resample=math.inf))
assert abs(samples_per_kept_group - library) < 1e-9 * library, (samples_per_kept_group, library)
print(f"{samples_per_kept_group:.1f} outputs per informative group (1/p = 100)")

# %% [markdown]
# ### Exercise 3: diagnose a log you made
#
# Simulate a rollout log: at least 100 prompts with 8 samples each, where prompt $n$ succeeds (reward 1,
# else 0) with a probability `true_success[n]` of your choice (include some hopeless prompts with
# probability 0). Write it as JSONL with keys `prompt` and `reward` (one line per sample), read it with
# `read_rollouts` and keep `diagnose_log`'s result as `my_diagnosis`. The check compares the observed
# `frac_reward_zero_std` with the mean of $p_n^8 + (1-p_n)^8$ (within 4 standard errors).

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: an array of per-prompt success probabilities, and the diagnosis of your log
true_success = None
my_diagnosis = None
### END STARTER
### BEGIN SOLUTION
rng = np.random.default_rng(0)
true_success = rng.choice([0.0, 0.02, 0.3, 0.7, 1.0], size=200)
samples = [
    {"prompt": f"prompt {n}", "reward": float(reward)}
    for n, p in enumerate(true_success)
    for reward in rng.random(8) < p
]
rollout_path = WORK / "my_rollouts.jsonl"
pd.DataFrame(samples).to_json(rollout_path, orient="records", lines=True)  # one JSON object per line
my_diagnosis = diagnose_log(read_rollouts(rollout_path))
### END SOLUTION

# %% tags=["check"]
assert true_success is not None and my_diagnosis is not None, "fill in true_success and my_diagnosis"
assert my_diagnosis.summary["groups"] >= 100 and len(true_success) == my_diagnosis.summary["groups"]
assert (my_diagnosis.table["n"] == 8).all(), "use 8 samples per prompt"
observed = my_diagnosis.summary["zero_std_groups"]["share"]
standard_error = my_diagnosis.summary["zero_std_groups"]["standard_error"]
expected = float(frac_reward_zero_std(np.asarray(true_success), 8).mean())
assert abs(observed - expected) < 4 * max(standard_error, 0.01), (observed, expected, standard_error)
print(
    f"observed {observed:.3f} ± {standard_error:.3f}, expected {expected:.3f};"
    f" {my_diagnosis.summary['vanishing']['share']:.1%} of the prompts in the vanishing regime"
)
