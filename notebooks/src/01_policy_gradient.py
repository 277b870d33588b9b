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
# # Lesson 1 — the softmax policy gradient
#
# *rftgrad course, lesson 1 of 5; about 25 minutes to read and run.*
#
# The exact gradient of the expected reward of a softmax policy, $\nabla V = E[(r - V)\nabla \log p]$,
# its covariance form, and why a small reward standard deviation (STD) forces a small gradient, even
# when the expected reward is as bad as it gets.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from rftgrad.envs import BanditEnv
from rftgrad.models import TabularPolicy
from rftgrad.theory import bound_table, evaluate, exact, reinforce_gradient, rft_gradient

QUICK = os.environ.get("RFTGRAD_NOTEBOOK_QUICK") == "1"  # small budgets (the test suite sets it)

# %% [markdown]
# ## 1. One input, four answers
#
# The simplest reinforcement-finetuning problem has one input, $K$ possible outputs (one token,
# $L = 1$: a bandit), a softmax policy $p = \mathrm{softmax}(z)$ over logits $z \in \mathbb{R}^K$ and a
# reward $r(y) \in [-1, 1]$ per output. The quantities of the paper (Razin et al., ICLR 2024) are
#
# * the expected reward $V = \sum_y p(y)\, r(y)$,
# * the reward standard deviation $\mathrm{STD} = \sqrt{\sum_y p(y)\,(r(y) - V)^2}$,
# * the policy gradient $\nabla V = E_{y \sim p}[(r(y) - V)\, \nabla \log p(y)]$.
#
# `BanditEnv` is that environment and `TabularPolicy` gives every (input, prefix) its own logits.
# `exact` enumerates every output, so there is no sampling noise anywhere in this lesson.
# Every policy in rftgrad carries a leading *replica* axis `R` (seeds or settings side by side).

# %%
rewards = [1.0, -1.0, -1.0, 0.5]  # answer 0 is right (+1), answers 1 and 2 are wrong, 3 is half right
env = BanditEnv(rewards)
policy = TabularPolicy.for_env(env, dtype="float64")
print(env.describe())
print(policy.describe())
print("logits shape (R, N, prefix states, K):", tuple(policy.params["logits"].shape))


def set_logits(policy: TabularPolicy, logits: list[float]) -> None:
    """Put the same K logits on every replica (one input, one prefix state: the empty prefix)."""
    policy.params["logits"][:, 0, 0] = torch.tensor(logits, dtype=policy.dtype)


set_logits(policy, [0.0, 1.0, 0.5, -1.0])
result = exact(policy, env, grads="full")  # grads="full": keep ∇V itself, not only its norm
print("p     =", result.probs[0, 0].numpy().round(4))
print("V     =", float(result.value[0, 0]))
print("STD   =", float(result.std[0, 0]))
print("∇_z V =", result.grads["logits"][0, 0, 0, 0].numpy().round(4))

# %% [markdown]
# ## 2. The formula, three lines of numpy
#
# For a softmax, $\partial \log p(y) / \partial z = e_y - p$, so
#
# $$\nabla_z V = \sum_y p(y)\,(r(y) - V)\,(e_y - p) = p \odot (r - V),$$
#
# because $\sum_y p(y)(r(y) - V) = 0$. Here it is by hand, checked against the library
# (`exact` above and the logit velocity `rft_gradient` used in lesson 3):

# %%
z, r = np.array([0.0, 1.0, 0.5, -1.0]), np.array(rewards)
p = np.exp(z) / np.exp(z).sum()  # softmax
grad_by_formula = p * (r - p @ r)  # p ⊙ (r - V)

# grads: (R, N, *parameter shape) and the logits parameter is (N, prefix states, K) per replica
library = result.grads["logits"][0, 0, 0, 0].numpy()
assert np.allclose(grad_by_formula, library, atol=1e-12)
assert np.allclose(rft_gradient(z, r), library, atol=1e-12)
print("formula == rftgrad.theory.exact == rftgrad.theory.dynamics.rft_gradient")

# %% [markdown]
# ## 3. The expectation, by sampling
#
# RFT algorithms never see $\nabla V$; they average $(r - b)\,\nabla \log p(y)$ over sampled outputs
# (REINFORCE). `reinforce_gradient` draws `num_samples` outputs and returns that average; its error
# shrinks like $1/\sqrt{M}$ around the exact gradient.

# %%
sample_sizes = [10, 100, 1_000] if QUICK else [10, 100, 1_000, 10_000, 100_000]
for num_samples in sample_sizes:
    estimate = reinforce_gradient(policy, env, num_samples=num_samples, seed=0)["logits"][0, 0, 0].numpy()
    error = np.linalg.norm(estimate - library)
    print(f"M = {num_samples:>7}: |estimate - exact| = {error:.4f}   (sqrt(1/M) = {num_samples**-0.5:.4f})")

# %% [markdown]
# ## 4. The covariance form, and why a small STD means a small gradient
#
# Since $E[\nabla \log p(y)] = \nabla \sum_y p(y) = 0$, the policy gradient is a covariance:
#
# $$\nabla V = E[(r - V)\nabla \log p] = \mathrm{Cov}_{y\sim p}\big(r(y),\ \nabla \log p(y)\big),
# \qquad \frac{\partial V}{\partial z_a} = \mathrm{Cov}\big(r(y),\ \mathbf{1}[y = a]\big).$$
#
# A covariance is at most the product of the two standard deviations (Cauchy–Schwarz), so each
# coordinate obeys $|\partial V / \partial z_a| \le \mathrm{STD} \cdot \sqrt{p_a(1-p_a)}$ and the whole
# logit gradient obeys
#
# $$\|\nabla_z V\| = \|p \odot (r - V)\| \le \sqrt{\max_a p_a}\ \cdot \mathrm{STD} \le \mathrm{STD}.$$
#
# *The reward STD under the model caps the gradient*, whatever the expected reward is. rftgrad's
# `bound_table` reports this bound as `logit_bound` next to the gradient it bounds
# (`logit_grad_norm`); lesson 2 covers the bounds for general models and outputs of any length.

# %%
table = bound_table(policy, env)
print(table[["reward_mean", "reward_std", "logit_grad_norm", "logit_bound", "ratio_logit"]].to_string())

covariance = [np.cov(r, (np.arange(4) == a).astype(float), aweights=p, bias=True)[0, 1] for a in range(4)]
assert np.allclose(covariance, library, atol=1e-12)  # ∂V/∂z_a = Cov(r, 1[y = a]) under p
per_coordinate_cap = float(result.std[0, 0]) * np.sqrt(p * (1 - p))
assert np.all(np.abs(library) <= per_coordinate_cap + 1e-12)
print("every |∂V/∂z_a| <= STD·sqrt(p_a(1-p_a)):", np.round(np.abs(library) / per_coordinate_cap, 3))

# %% [markdown]
# ## 5. Move the logits, watch the gradient and the STD
#
# Keep the logits of answers 2 and 3 at 0 and move those of answer 0 (right) and answer 1 (wrong).
# When the policy puts almost all its mass on the *wrong* answer, the expected reward is near its
# worst ($-1$), yet the STD is near 0, and so is the gradient: the exact policy gradient has
# almost nothing to say about this input. With `ipywidgets` installed (and `QUICK` off) you get two
# sliders; otherwise the cell prints a few settings.

# %%
knobs = TabularPolicy.for_env(env, dtype="float64")  # the policy the sliders move


def show(z_right: float = 0.0, z_wrong: float = 0.0) -> None:
    """Print p(right), V, STD, ||∇_z V|| and its bound sqrt(max p)·STD at logits (z_right, z_wrong, 0, 0)."""
    set_logits(knobs, [z_right, z_wrong, 0.0, 0.0])
    row = bound_table(knobs, env).iloc[0]
    p_right = float(evaluate(knobs, env).probs[0, 0, 0])
    print(
        f"p(right) = {p_right:9.3g}   V = {row.reward_mean:7.4f}   STD = {row.reward_std:9.3g}"
        f"   ||∇V|| = {row.logit_grad_norm:9.3g}   bound = {row.logit_bound:9.3g}"
    )


try:
    import ipywidgets as widgets
except ImportError:
    widgets = None

if widgets is not None and not QUICK:
    sliders = {name: widgets.FloatSlider(value=0.0, min=-12.0, max=12.0, step=0.5) for name in ("z_right", "z_wrong")}
    widgets.interact(show, **sliders)
else:
    for z_right, z_wrong in [(0, 0), (0, 4), (0, 8), (0, 12), (8, 0)]:
        print(f"z_right = {z_right:3}, z_wrong = {z_wrong:3}:", end="  ")
        show(z_right, z_wrong)

# %% [markdown]
# The same sweep as a picture. Instead of a Python loop, every value of the wrong answer's logit is a
# replica of one policy: one call of `exact` evaluates them all.

# %%
z_wrong = np.linspace(-6.0, 14.0, 41 if QUICK else 201)
sweep = TabularPolicy.for_env(env, num_replicas=len(z_wrong), dtype="float64")
sweep.params["logits"][:, 0, 0] = 0.0
sweep.params["logits"][:, 0, 0, 1] = torch.from_numpy(z_wrong)
rows = bound_table(sweep, env)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.plot(z_wrong, rows.reward_mean, label="V (expected reward)")
left.plot(z_wrong, rows.reward_std, label="STD")
left.set(xlabel="logit of the wrong answer", title="reward mean and STD")
left.legend()
right.semilogy(z_wrong, rows.logit_grad_norm, label="||∇_z V||")
right.semilogy(z_wrong, rows.logit_bound, "--", label="sqrt(max p)·STD")
right.set(xlabel="logit of the wrong answer", title="gradient and its bound")
right.legend()
plt.show()
print(
    f"at z_wrong = {z_wrong[-1]:.0f}: V = {rows.reward_mean.iloc[-1]:.4f}, gradient {rows.logit_grad_norm.iloc[-1]:.2e}"
)

# %% [markdown]
# **Takeaway.** The exact expected gradient of an input is at most its reward STD (times model
# factors, lesson 2). A model that is confidently wrong on an input ($V \approx -1$, STD $\approx 0$)
# gets almost no gradient there: not because of sampling noise, but because the expectation itself
# vanishes. Lesson 3 turns this into training time, lesson 4 shows it in a controlled experiment.

# %% [markdown]
# ## Exercises
#
# Each exercise cell (tag `exercise`) is followed by a check cell (tag `check`):
# run it after your answer; it raises an `AssertionError` until the answer is right.

# %% [markdown]
# ### Exercise 1: the covariance form by hand
#
# For logits $z = (0.5, -1, 2, 0)$ and rewards $r = (1, -1, 0.3, -0.2)$, compute the gradient
# $\partial V / \partial z_a$ for every $a$ **from the covariance form**
# $\mathrm{Cov}(r(y), \mathbf{1}[y = a]) = E[r\,\mathbf{1}[y=a]] - E[r]\,E[\mathbf{1}[y=a]]$ with numpy
# (expectations over $y \sim p$). The check compares it with `exact`.

# %% tags=["exercise"]
ex_logits = np.array([0.5, -1.0, 2.0, 0.0])
ex_rewards = np.array([1.0, -1.0, 0.3, -0.2])
### BEGIN STARTER
# TODO: the gradient of V with respect to the logits, from the covariance form: a numpy array of shape (4,)
grad_by_hand = None
### END STARTER
### BEGIN SOLUTION
probs = np.exp(ex_logits) / np.exp(ex_logits).sum()
indicator = np.eye(4)  # row y holds (1[y = a])_a
expect_r_times_indicator = probs @ (ex_rewards[:, None] * indicator)  # E[r 1[y = a]]
grad_by_hand = expect_r_times_indicator - (probs @ ex_rewards) * (probs @ indicator)
### END SOLUTION

# %% tags=["check"]
assert grad_by_hand is not None, "fill in grad_by_hand"
check_env = BanditEnv(ex_rewards.tolist())
check_policy = TabularPolicy.for_env(check_env, dtype="float64")
set_logits(check_policy, ex_logits.tolist())
expected = exact(check_policy, check_env, grads="full").grads["logits"][0, 0, 0, 0].numpy()
assert np.shape(grad_by_hand) == (4,), np.shape(grad_by_hand)
assert np.allclose(grad_by_hand, expected, atol=1e-10), (grad_by_hand, expected)
print("correct:", expected.round(5))

# %% [markdown]
# ### Exercise 2: half right, and no push toward the right answer
#
# On the four-answer bandit `env` of this lesson (rewards $1, -1, -1, 0.5$), find logits for which
# the reward STD is below 0.01 **and** the expected reward lies between 0.4 and 0.6: far from the
# best reward 1, yet (the check confirms it) with a gradient below $\sqrt{\max_a p_a}\cdot\mathrm{STD}$,
# hence below 0.01. The section 5 sweep only moved answers 0 and 1.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: four logits (a list of floats) with STD < 0.01 and 0.4 < V < 0.6
stuck_logits = None
### END STARTER
### BEGIN SOLUTION
stuck_logits = [0.0, 0.0, 0.0, 12.0]  # almost all mass on the half-right answer: V ≈ 0.5, STD ≈ 0.005
### END SOLUTION

# %% tags=["check"]
assert stuck_logits is not None, "fill in stuck_logits"
stuck = TabularPolicy.for_env(env, dtype="float64")
set_logits(stuck, list(stuck_logits))
row = bound_table(stuck, env).iloc[0]
assert row.reward_std < 0.01, f"STD = {row.reward_std:.4f} is not below 0.01"
assert 0.4 < row.reward_mean < 0.6, f"V = {row.reward_mean:.4f} is not in (0.4, 0.6)"
assert row.logit_grad_norm <= row.logit_bound * (1 + 1e-9)
assert row.logit_grad_norm < 0.01
print(f"V = {row.reward_mean:.4f}, STD = {row.reward_std:.2e}, ||∇V|| = {row.logit_grad_norm:.2e}")

# %% [markdown]
# ### Exercise 3: predict the gradient from the STD
#
# For the **uniform** policy over four answers with rewards $(0.9, -0.3, 0.1, -1.0)$, the bound
# $\|\nabla_z V\| \le \sqrt{\max_a p_a}\cdot\mathrm{STD}$ holds with equality (why?). Predict
# $\|\nabla_z V\|$ from the STD alone, without calling rftgrad, and let the check compare it with
# `exact`.

# %% tags=["exercise"]
uniform_rewards = np.array([0.9, -0.3, 0.1, -1.0])
### BEGIN STARTER
# TODO: the gradient norm of the uniform policy, from the reward STD alone
predicted_norm = None
### END STARTER
### BEGIN SOLUTION
uniform_std = np.sqrt(np.mean((uniform_rewards - uniform_rewards.mean()) ** 2))  # STD under p = 1/4 each
predicted_norm = np.sqrt(1 / 4) * uniform_std  # equality: every p_a equals max p
### END SOLUTION

# %% tags=["check"]
assert predicted_norm is not None, "fill in predicted_norm"
uniform_env = BanditEnv(uniform_rewards.tolist())
uniform = TabularPolicy.for_env(uniform_env, init_scale=0.0, dtype="float64")  # all logits 0
actual = float(exact(uniform, uniform_env).grad_norm[0, 0])
assert abs(predicted_norm - actual) < 1e-10, (predicted_norm, actual)
print(f"||∇V|| = {actual:.12f} = sqrt(1/4)·STD")
