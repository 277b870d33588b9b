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
# # Lesson 3 — Theorem 2: RFT is slow exactly where SFT is fast
#
# *rftgrad course, lesson 3 of 5; about 30 minutes to read and run.*
#
# Gradient flow of RFT and SFT on a linear softmax model with orthonormal inputs: the time RFT needs
# grows like $1/\mathrm{STD}_0^2$, SFT's like $\ln(1/\mathrm{STD}_0)$. Closed-form hitting times
# (sympy) against the ODE (scipy), gradient descent, Adam, and the library's trainer.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from rftgrad.envs import orthonormal
from rftgrad.finetune import ReplicaSettings, TrainConfig, train
from rftgrad.models import TabularPolicy
from rftgrad.theory import (
    asymptotic_constant,
    asymptotic_hitting_time,
    closed_form_hitting_time,
    discrete_hitting_steps,
    exact,
    expected_reward,
    hitting_time_ode,
    loglog_slope,
    pm1_rewards,
    rft_pm1_gradient,
    sft_gradient,
    solve_flow,
    std_from_p0,
    symmetric_logits,
    symmetric_reduction,
)

QUICK = os.environ.get("RFTGRAD_NOTEBOOK_QUICK") == "1"  # small budgets (the test suite sets it)

# %% [markdown]
# ## The setting of Theorem 2
#
# A linear softmax model $f_W(x) = Wx$, orthonormal training inputs, one output token among $K$, one
# correct label $y^*$ per input with reward $+1$ (and $-1$ for every other label). With
# $p = \pi(y^*)$: $V = 2p - 1$ and $\mathrm{STD} = 2\sqrt{p(1-p)}$. Orthonormal inputs decouple: each
# input's logits $z = Wx$ follow their own gradient flow,
#
# $$\text{RFT: } \frac{dz}{dt} = \nabla_z V = 2p\,(e_{y^*} - \pi), \qquad
#   \text{SFT: } \frac{dz}{dt} = \nabla_z \log p = e_{y^*} - \pi .$$
#
# The RFT velocity is SFT's times $2p$: where the model gives the right label a small probability,
# RFT crawls. The two velocities, checked against the exact engine on a one-input tabular policy:

# %%
num_labels, p0 = 10, 1e-3
z0 = symmetric_logits(p0, num_labels)  # π(y* = 0) = p0, the wrong labels share 1 - p0 equally
rft_velocity, sft_velocity = rft_pm1_gradient(z0), sft_gradient(z0)
print("RFT dz/dt:", rft_velocity.round(6))
print("SFT dz/dt:", sft_velocity.round(6))
print("ratio:", (rft_velocity / sft_velocity).round(6), "= 2p0 =", 2 * p0)

one_input = orthonormal(num_inputs=1, num_classes=num_labels, labels=np.array([0]))
tabular = TabularPolicy.for_env(one_input, dtype="float64")
tabular.params["logits"][0, 0, 0] = torch.from_numpy(z0)
exact_grad = exact(tabular, one_input, grads="full").grads["logits"][0, 0, 0, 0].numpy()
assert np.allclose(exact_grad, rft_velocity, atol=1e-15)

# %% [markdown]
# ## 1. Solving both flows
#
# `solve_flow` integrates the full $K$-dimensional logit flow with scipy's stiff solver and reports when
# the expected reward crosses a target. From $p_0 = 10^{-3}$ SFT reaches $V = 0$ around $t \approx 7$,
# RFT only around $t \approx 450$.

# %%
times = np.logspace(-2, 4, 200)
fig, ax = plt.subplots(figsize=(7, 4))
for objective in ("sft", "rft"):
    solution = solve_flow(z0, objective, target=0.0, terminal=False, t_eval=times)
    value = expected_reward(solution.logits[:, 0], pm1_rewards(num_labels))
    ax.semilogx(solution.times, value, label=f"{objective.upper()}: V = 0 at t = {solution.hit_time:.1f}")
ax.axhline(0.0, color="0.6", lw=0.8)
ax.set(xlabel="time t (gradient flow)", ylabel="expected reward V", title=f"K = {num_labels}, p0 = {p0}")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Closed forms (sympy) against the ODE (scipy)
#
# Both flows keep the wrong labels equal, so they reduce to one ODE in $p$:
# $\dot p = \frac{2K}{K-1}p^2(1-p)^2$ (RFT) and $\dot p = \frac{K}{K-1}p(1-p)^2$ (SFT).
# `symmetric_reduction` derives them with sympy, integrates $dt = dp/\dot p$ and gives the hitting time
# of $p_1 = (V_{\text{target}} + 1)/2$:
#
# $$T_{\text{RFT}} = \tfrac{K-1}{2K}\Big[\tfrac{p_1-p_0}{p_0p_1} + \tfrac{p_1-p_0}{(1-p_0)(1-p_1)}
#   + 2\ln\tfrac{p_1(1-p_0)}{p_0(1-p_1)}\Big],\qquad
#   T_{\text{SFT}} = \tfrac{K-1}{K}\Big[\ln\tfrac{p_1(1-p_0)}{p_0(1-p_1)}
#   + \tfrac{p_1-p_0}{(1-p_0)(1-p_1)}\Big].$$
#
# `closed_form_hitting_time` evaluates them; `hitting_time_ode` solves the full $K$-dimensional flow
# instead (it does not assume the reduction).

# %%
reduction = symmetric_reduction()
print("dp/dt:", reduction.rate)

p0_grid = np.logspace(-8, -1, 4 if QUICK else 8)
print(f"{'p0':>8} {'T_RFT closed':>14} {'T_RFT ODE':>14} {'rel gap':>8} {'T_SFT closed':>13} {'T_SFT ODE':>10}")
for start in p0_grid:
    closed = {obj: float(closed_form_hitting_time(start, num_labels, 0.0, obj)) for obj in ("rft", "sft")}
    ode = {obj: hitting_time_ode(start, num_labels, 0.0, obj) for obj in ("rft", "sft")}
    gap = abs(ode["rft"] - closed["rft"]) / closed["rft"]
    print(f"{start:8.0e} {closed['rft']:14.6g} {ode['rft']:14.6g} {gap:8.1e} {closed['sft']:13.6g} {ode['sft']:10.6g}")
    assert gap < 1e-8 and abs(ode["sft"] - closed["sft"]) < 1e-8 * closed["sft"]

# %% [markdown]
# ## 3. The separation: $1/\mathrm{STD}_0^2$ against $\ln(1/\mathrm{STD}_0)$
#
# As $\mathrm{STD}_0 \to 0$: $T_{\text{RFT}} \approx c/\mathrm{STD}_0^2$ and
# $T_{\text{SFT}} \approx c'\ln(1/\mathrm{STD}_0)$ with $c = c' = 2(K-1)/K$ (`asymptotic_constant`).
# On log-log axes RFT's time is a line of slope $-2$; SFT's barely moves.

# %%
p0_dense = np.logspace(-8, -1, 40)
std0 = std_from_p0(p0_dense)
fig, ax = plt.subplots(figsize=(7, 4))
for objective in ("rft", "sft"):
    closed = closed_form_hitting_time(p0_dense, num_labels, 0.0, objective)
    ax.loglog(std0, closed, label=f"{objective.upper()} closed form")
    ax.loglog(std0, asymptotic_hitting_time(std0, num_labels, objective), ":", color="0.4")
ax.set(xlabel="initial reward STD", ylabel="time to reach V = 0")
ax.set_title("dotted: the leading terms c/STD0² and c' ln(1/STD0)")
ax.legend()
plt.show()
small = p0_dense <= 1e-2
slope = loglog_slope(std0[small], closed_form_hitting_time(p0_dense[small], num_labels, 0.0, "rft"))
constant = float(asymptotic_constant(num_labels, "rft"))
print(f"log-log slope of T_RFT against STD0 (p0 <= 1e-2): {slope:.3f};  c = c' = {constant:.3f}")

# %% [markdown]
# ## 4. Discrete steps: gradient descent follows the flow, Adam does not
#
# `discrete_hitting_steps` runs plain gradient ascent $z \leftarrow z + \eta\,g(z)$ (or Adam) on the same
# logits and counts steps to the target. For gradient descent, steps $\times\,\eta$ converges to the flow's
# time as $\eta \to 0$. Adam divides each coordinate by its running RMS, which cancels most of RFT's
# $2p$ factor: its step counts grow like $\ln(1/\mathrm{STD}_0)$, not $1/\mathrm{STD}_0^2$ (a finding past
# the paper; lesson 4 uses Adam on a shared model, where the stall remains).

# %%
flow_time = float(closed_form_hitting_time(p0, num_labels, 0.0, "rft"))
for step_size in [1.0, 0.3, 0.1] if QUICK else [1.0, 0.3, 0.1, 0.03, 0.01]:
    steps = int(discrete_hitting_steps(p0, num_labels, 0.0, "rft", step_size))
    print(f"GD, η = {step_size:5}: {steps:7} steps, steps·η = {steps * step_size:8.2f}  (flow: {flow_time:.2f})")

adam_p0 = np.logspace(-6, -1, 6)
for objective in ("rft", "sft"):
    steps = discrete_hitting_steps(adam_p0, num_labels, 0.0, objective, 0.01, optimizer="adam")
    print(f"Adam (lr 0.01), {objective.upper()} steps for p0 = 1e-6 ... 1e-1:", steps)

# %% [markdown]
# ## 5. The same with the library's trainer
#
# `rftgrad.finetune.train` runs exact-gradient RFT and SFT side by side (arms) from the same policy. With
# one input, a tabular policy and plain SGD with learning rate $\eta$, step $n$ is the flow at
# $t = n\eta$, up to the Euler error of the step.

# %%
start_p, step_size, num_steps = 1e-2, 0.1, 600


def make_policy(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> TabularPolicy:
    """The trainer's policy factory: one replica per seed, all starting at p(label) = start_p."""
    policy = TabularPolicy.for_env(one_input, seed=list(settings.seeds), device=device, dtype=dtype)
    policy.set_output_probability(one_input, start_p)  # symmetric start: the wrong labels share 1 - p
    return policy


config = TrainConfig(
    arms=(f"rft:{num_steps}", f"sft:{num_steps}"), optimizer="sgd", lr=(step_size,), seeds=1, eval_every=20
)
records = train(make_policy, one_input, config, progress=False).records
curves = records[(records.metric == "reward_mean") & (records.group == "all") & (records.split == "train")]

fig, ax = plt.subplots(figsize=(7, 4))
for arm, objective in zip(config.arms, ("rft", "sft"), strict=True):
    curve = curves[curves.arm == arm]
    flow = solve_flow(symmetric_logits(start_p, num_labels), objective, t_eval=curve.step.to_numpy() * step_size)
    flow_value = expected_reward(flow.logits[:, 0], pm1_rewards(num_labels))
    ax.plot(curve.step * step_size, curve.value, "o", ms=3, label=f"trainer, {arm}")
    ax.plot(flow.times, flow_value, "-", label=f"flow, {objective.upper()}")
    gap = np.abs(flow_value - curve.value.to_numpy()).max()
    print(f"{arm}: largest gap trainer vs flow {gap:.3f}")
    assert gap < 0.05
ax.set(xlabel="t = step · η", ylabel="expected reward V")
ax.legend()
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise cell (tag `exercise`) is followed by a check cell (tag `check`):
# run it after your answer; it raises an `AssertionError` until the answer is right.

# %% [markdown]
# ### Exercise 1: predict a hitting time from the closed form
#
# For $K = 10$ labels, $p_0 = 10^{-4}$ and the target $V = 0$ (so $p_1 = 1/2$), evaluate
# $T_{\text{RFT}}$ from the formula of section 2 with numpy only. The check compares it with
# `closed_form_hitting_time` and with the ODE.

# %% tags=["exercise"]
K_ex, p0_ex, p1_ex = 10, 1e-4, 0.5
### BEGIN STARTER
# TODO: T_RFT from the closed form (a float)
t_rft_by_hand = None
### END STARTER
### BEGIN SOLUTION
logit_gap = np.log(p1_ex * (1 - p0_ex) / (p0_ex * (1 - p1_ex)))
t_rft_by_hand = (
    (K_ex - 1)
    / (2 * K_ex)
    * ((p1_ex - p0_ex) / (p0_ex * p1_ex) + (p1_ex - p0_ex) / ((1 - p0_ex) * (1 - p1_ex)) + 2 * logit_gap)
)
### END SOLUTION

# %% tags=["check"]
assert t_rft_by_hand is not None, "fill in t_rft_by_hand"
library_time = float(closed_form_hitting_time(1e-4, 10, 0.0, "rft"))
ode_time = hitting_time_ode(1e-4, 10, 0.0, "rft")
assert abs(t_rft_by_hand - library_time) < 1e-9 * library_time, (t_rft_by_hand, library_time)
assert abs(t_rft_by_hand - ode_time) < 1e-8 * ode_time, (t_rft_by_hand, ode_time)
print(f"T_RFT = {t_rft_by_hand:.4f} (ODE: {ode_time:.4f})")

# %% [markdown]
# ### Exercise 2: how many gradient steps?
#
# With plain gradient ascent at step size $\eta = 0.05$, how many steps does **SFT** need to lift the
# expected reward of an input from $p_0 = 10^{-3}$ ($K = 10$) to $V = 0.5$? Predict it from the flow's
# hitting time (no `discrete_hitting_steps`); the check runs the steps and wants you within 2%.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: the predicted number of SFT steps (an int)
predicted_steps = None
### END STARTER
### BEGIN SOLUTION
predicted_steps = int(np.ceil(float(closed_form_hitting_time(1e-3, 10, 0.5, "sft")) / 0.05))
### END SOLUTION

# %% tags=["check"]
assert predicted_steps is not None, "fill in predicted_steps"
actual_steps = int(discrete_hitting_steps(1e-3, 10, 0.5, "sft", 0.05))
assert abs(predicted_steps - actual_steps) <= 0.02 * actual_steps, (predicted_steps, actual_steps)
print(f"predicted {predicted_steps}, gradient ascent took {actual_steps}")

# %% [markdown]
# ### Exercise 3: measure the two laws
#
# With $K = 10$ and the target $V = 0$, over $p_0$ from $10^{-8}$ to $10^{-4}$: (a) fit the log-log slope of
# $T_{\text{RFT}}$ against $\mathrm{STD}_0$ (use the ODE, `hitting_time_ode`, at a few $p_0$), and (b) fit
# the slope of $T_{\text{SFT}}$ against $\ln(1/\mathrm{STD}_0)$ (a straight-line fit, `np.polyfit`).
# Theorem 2 predicts $-2$ and $c' = 2(K-1)/K = 1.8$.

# %% tags=["exercise"]
### BEGIN STARTER
# TODO: two floats
rft_slope = None
sft_slope = None
### END STARTER
### BEGIN SOLUTION
p0_fit = np.logspace(-8, -4, 5)
std_fit = std_from_p0(p0_fit)
rft_times = np.array([hitting_time_ode(start, 10, 0.0, "rft") for start in p0_fit])
sft_times = np.array([hitting_time_ode(start, 10, 0.0, "sft") for start in p0_fit])
rft_slope = loglog_slope(std_fit, rft_times)
sft_slope = float(np.polyfit(np.log(1 / std_fit), sft_times, 1)[0])
### END SOLUTION

# %% tags=["check"]
assert rft_slope is not None and sft_slope is not None, "fill in both slopes"
assert abs(rft_slope + 2) < 0.01, rft_slope
assert abs(sft_slope - float(asymptotic_constant(10, "sft"))) < 0.02, sft_slope
print(f"RFT slope {rft_slope:.4f} (theory -2), SFT slope {sft_slope:.4f} (theory 1.8)")
