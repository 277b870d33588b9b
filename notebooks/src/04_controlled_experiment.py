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
# # Lesson 4 — a controlled experiment: RFT stalls on the small-STD inputs, SFT fits them
#
# *rftgrad course, lesson 4 of 5; about 25 minutes to read and run.*
#
# The paper's Section 4.2 with rftgrad's finetuning API: pretrain a model to spread its probability
# over a few labels per input, move 10% of the labels outside those sets (expected reward
# $\approx -1$, STD $\approx 0$), then finetune with exact-gradient RFT and with SFT, side by side.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from rftgrad.envs import gaussian_clusters, modify_labels, with_label_sets
from rftgrad.finetune import ReplicaSettings, TrainConfig, pretrain, replica_grid, train
from rftgrad.models import LinearSoftmaxPolicy
from rftgrad.theory import Evaluation, evaluate, exact

QUICK = os.environ.get("RFTGRAD_NOTEBOOK_QUICK") == "1"  # small budgets (the test suite sets it)
PER_CLASS = 20 if QUICK else 40  # training points per class (80% of them train, 20% test)
STEPS = 100 if QUICK else 800  # finetuning steps per arm

# %% [markdown]
# ## The protocol (paper Section 4.2; docs/paper.md §4)
#
# 1. **Pretrain.** Each class $c$ gets a set of $k = 5$ labels ($c$ and four random others); the model
#    is trained with cross-entropy toward the uniform distribution over its input's set. Like a language
#    model, it ends up *uncertain*: about $1/k$ on each of $k$ answers.
# 2. **Modify.** For a random 10% of the training inputs the label moves to a label *outside* that
#    input's set. The pretrained model gives it probability $\approx 0$: expected reward $\approx -1$,
#    reward STD $\approx 0$.
# 3. **Finetune** from the pretrained model with exact-expectation RFT (reward $+1$ for the label, $-1$
#    otherwise; no sampling, so no exploration or noise story can explain the result) and with SFT
#    (cross-entropy on the new labels).
#
# Data: ten Gaussian clusters in 512 dimensions (`gaussian_clusters`), a linear softmax model. The
# same protocol runs on scikit-learn's digits with an MLP in `rftgrad run controlled --variant digits-mlp`.

# %%
split = gaussian_clusters(num_classes=10, per_class=PER_CLASS, dim=512, noise=0.1, seed=0)
with_sets = with_label_sets(split.train, 5, seed=0)  # each input carries its class's 5-label set
env = modify_labels(with_sets, fraction=0.1, seed=0)  # groups "modified" / "unmodified"
modified = env.groups["modified"]
print(env.describe(), f"({int(modified.sum())} modified)")
first = int(torch.nonzero(modified)[0])
print(
    f"modified input {first}: pretraining set {env.label_sets[first].tolist()},"
    f" old label {int(split.train.labels[first])}, new label {int(env.labels[first])}"
)

# %% [markdown]
# ## 1. Pretraining, and the state it leaves
#
# `train` builds each arm's starting policy with a *factory* `make_policy(settings, device, dtype)` (one
# replica per seed). Ours pretrains once per set of seeds with `pretrain` and hands every arm a copy, so
# RFT and SFT start from the same weights. (The `controlled` experiment's factory,
# `rftgrad.experiments.controlled.run.PretrainedPolicies`, does the same with more options; lesson 5
# uses it.)

# %%
pretrained: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}


def make_policy(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> LinearSoftmaxPolicy:
    """A linear softmax policy, pretrained toward the uniform distribution over each input's label set."""
    policy = LinearSoftmaxPolicy.for_env(env, features="input", seed=list(settings.seeds), device=device, dtype=dtype)
    key = tuple(settings.seeds)
    if key not in pretrained:
        losses = pretrain(policy, env, env.label_sets[:, :, None], steps=300, lr=0.1)  # outputs (N, k, L=1)
        print(f"pretraining loss {losses.numpy().round(3)} (ln 5 = {np.log(5):.3f}: uniform over the set)")
        pretrained[key] = {name: value.clone() for name, value in policy.params.items()}
    policy.params = {name: value.clone() for name, value in pretrained[key].items()}
    return policy


config = TrainConfig(
    arms=(f"rft:{STEPS}", f"sft:{STEPS}"), optimizer="adam", lr=(0.01,), seeds=2, eval_every=max(1, STEPS // 20)
)
start = make_policy(replica_grid(config), torch.device("cpu"), torch.float64)
before = exact(start, env)  # per replica and input: value, std, grad_norm
for name, mask in (("modified", modified), ("unmodified", ~modified)):
    print(
        f"{name:>10}: V = {before.value[:, mask].mean():+.4f}, STD = {before.std[:, mask].mean():.4f},"
        f" ||∇V|| = {before.grad_norm[:, mask].mean():.2e}"
    )


# %% [markdown]
# Every input as a point (expected reward against reward STD, replica 0): the unmodified inputs sit at
# $V \approx 2/k - 1 = -0.6$ with a large STD, the modified ones in the corner $V \approx -1$, STD $\approx 0$,
# where Theorem 1 leaves no room for a gradient.


# %%
def cloud(ax: plt.Axes, result: Evaluation, title: str) -> None:
    """Scatter V against STD of every training input (replica 0), modified inputs in red."""
    for name, mask, color in (("unmodified", ~modified, "tab:blue"), ("modified", modified, "tab:red")):
        ax.scatter(result.std[0, mask], result.value[0, mask], s=12, color=color, alpha=0.6, label=name)
    ax.set(xlabel="reward STD", ylabel="expected reward V", xlim=(-0.03, 1.03), ylim=(-1.08, 1.08), title=title)


fig, ax = plt.subplots(figsize=(5, 4))
cloud(ax, before, "pretrained")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Finetuning: RFT against SFT
#
# One call trains both arms, two seeds each (replicas of one tensor program), with Adam at learning
# rate 0.01, full batch. The records are long-format: one row per (arm, step, replica, split, group,
# metric); groups are the environment's (`modified`, `unmodified`), `all`, and `small_std` / `large_std`
# (STD below / above 0.1 at the start).

# %%
result = train(make_policy, env, config, eval_envs={"test": split.test}, progress=False)
records = result.records
print(records.head(3).to_string())

train_records = records[(records.split == "train") & records.group.isin(["modified", "unmodified"])]
curves = train_records.groupby(["arm", "group", "metric", "step"]).value.mean()  # mean over replicas
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, metric in zip(axes, ("reward_mean", "target_prob", "grad_norm"), strict=True):
    for arm, style in zip(config.arms, ("-", "--"), strict=True):
        for group, color in (("unmodified", "tab:blue"), ("modified", "tab:red")):
            curve = curves[arm, group, metric]
            ax.plot(curve.index, curve.values, style, color=color, label=f"{arm.split(':')[0].upper()}, {group}")
    ax.set(xlabel="step", title=metric)
axes[2].set_yscale("log")
axes[0].legend()
plt.show()

final = records[(records.step == STEPS) & (records.metric == "reward_mean")]
print(final.groupby(["arm", "split", "group"]).value.mean().unstack().round(3).to_string())

# %% [markdown]
# (`grad_norm` is always $\|\nabla_\theta V\|$, the exact RFT gradient, whichever arm trains.) RFT fits
# the unmodified inputs and leaves the modified ones at $V = -1$: their gradient is $10^{-5}$ of the
# others' at the start and only shrinks (fitting the unmodified inputs with shared weights pushes the
# new labels' probability further down). SFT's gradient on the same inputs, $e_{y^*} - \pi$, does not
# carry the factor $p$, and it fits them within a few dozen steps.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
finished = make_policy(replica_grid(config), torch.device("cpu"), torch.float64)
for ax, arm in zip(axes, config.arms, strict=True):
    finished.params = {name: value.clone() for name, value in result.params[arm].items()}
    cloud(ax, evaluate(finished, env), f"after {arm}")
axes[0].legend()
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise cell (tag `exercise`) is followed by a check cell (tag `check`):
# run it after your answer; it raises an `AssertionError` until the answer is right.

# %% [markdown]
# ### Exercise 1: how small is the modified inputs' gradient?
#
# From `before` (the exact quantities of the pretrained policy), compute the mean gradient norm
# $\|\nabla_\theta V\|$ of the modified inputs divided by that of the unmodified inputs, averaged over both
# replicas and the inputs of each group.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: a float, mean ||∇V|| over modified inputs / mean ||∇V|| over unmodified inputs
grad_ratio = None
### END STARTER
### BEGIN SOLUTION
grad_ratio = float(before.grad_norm[:, modified].mean() / before.grad_norm[:, ~modified].mean())
### END SOLUTION

# %% tags=["check"]
assert grad_ratio is not None, "fill in grad_ratio"
expected_ratio = float(before.grad_norm[:, modified].mean() / before.grad_norm[:, ~modified].mean())
assert abs(grad_ratio - expected_ratio) <= 1e-6 * expected_ratio, (grad_ratio, expected_ratio)
assert grad_ratio < 1e-3
print(f"the modified inputs get {grad_ratio:.1e} of the unmodified inputs' gradient")

# %% [markdown]
# ### Exercise 2: the small-STD inputs are the modified ones
#
# Build a boolean tensor `small_std` of shape `(N,)` marking the training inputs whose reward STD under the
# pretrained policy (replica 0 of `before`) is below 0.1, the threshold of the trainer's `small_std` group.
# The check compares it with the modified inputs.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: a bool tensor of shape (N,)
small_std = None
### END STARTER
### BEGIN SOLUTION
small_std = before.std[0] < 0.1
### END SOLUTION

# %% tags=["check"]
assert small_std is not None, "fill in small_std"
assert tuple(small_std.shape) == (env.num_inputs,), tuple(small_std.shape)
assert torch.equal(small_std.bool(), modified), "small_std should mark exactly the modified inputs"
print(f"{int(small_std.sum())} small-STD inputs: exactly the {int(modified.sum())} modified ones")

# %% [markdown]
# ### Exercise 3: high initial reward, still stuck
#
# The paper's second variant: a wrong answer on a modified input earns $0.5$ instead of $-1$
# (`modify_labels(..., wrong_reward=0.5)`). The modified inputs then start with a **high** expected reward
# ($\approx 0.5$) and still an STD $\approx 0$. Build that environment as `high_env` from `with_sets` (same
# fraction and seed) and train both arms of `config` on it with `make_policy`; keep the records as
# `high_records`. The check shows that RFT leaves the modified inputs at 0.5 while SFT lifts them toward 1:
# the stall comes from the small STD, not from a low reward.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: the environment and the records of train(...) on it
high_env = None
high_records = None
### END STARTER
### BEGIN SOLUTION
high_env = modify_labels(with_sets, fraction=0.1, seed=0, wrong_reward=0.5)
high_records = train(make_policy, high_env, config, progress=False).records
### END SOLUTION

# %% tags=["check"]
assert high_env is not None and high_records is not None, "fill in high_env and high_records"
mod = high_records[(high_records.group == "modified") & (high_records.split == "train")]
at = mod.groupby(["arm", "metric", "step"]).value.mean()
rft_arm, sft_arm = config.arms
assert abs(at[rft_arm, "reward_mean", 0] - 0.5) < 0.01, at[rft_arm, "reward_mean", 0]
assert at[rft_arm, "reward_std", 0] < 0.05
assert abs(at[rft_arm, "reward_mean", STEPS] - at[rft_arm, "reward_mean", 0]) < 0.01
assert at[sft_arm, "reward_mean", STEPS] > 0.9
print(
    f"modified inputs: start V = {at[rft_arm, 'reward_mean', 0]:.3f}, after RFT"
    f" {at[rft_arm, 'reward_mean', STEPS]:.3f}, after SFT {at[sft_arm, 'reward_mean', STEPS]:.3f}"
)
