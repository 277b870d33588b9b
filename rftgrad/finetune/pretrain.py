"""Pretraining to a target distribution: cross-entropy toward a few outputs per input.

The controlled experiments (PAPER.md section 4, step 1) pretrain the policy to spread its
probability uniformly over a *set* of outputs per input (the k-label set of its class, or
the output set of its prompt group), so the finetuning start is uncertain, like a language
model, rather than near-deterministic. The loss of replica ``r`` is

    ℓ_r(θ) = −(1/N) Σ_n Σ_s q_ns · log p_θ(y_ns | x_n),      Σ_s q_ns = 1,

minimised full batch with Adam (one state per replica). It is deterministic: the same
policy and arguments give the same parameters.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.finetune.optim import Adam
from rftgrad.models.base import SoftmaxPolicy


def pretrain(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    outputs: torch.Tensor,
    weights: torch.Tensor | None = None,
    steps: int = 300,
    lr: float = 0.01,
    progress: bool = False,
) -> torch.Tensor:
    """Fit ``policy`` in place to the distribution ``q`` on ``outputs``; returns the final loss ``(R,)``.

    Args:
        policy: the policy (all ``R`` replicas are trained, each with its own Adam state).
        env: supplies the inputs.
        outputs: ``(N, S, L)`` the outputs each input's target distribution puts mass on.
        weights: ``(N, S)`` their probabilities ``q`` (rows sum to 1); default uniform.
        steps: Adam steps (full batch).
        lr: Adam learning rate.
        progress: show a progress bar.
    """
    outputs = torch.as_tensor(outputs).long()
    if outputs.ndim != 3 or outputs.shape[0] != env.num_inputs:
        raise ShapeMismatchError(f"outputs must be (N={env.num_inputs}, S, L), got {tuple(outputs.shape)}")
    env.output_space.check_outputs(outputs)
    if weights is None:
        weights = torch.full(outputs.shape[:2], 1.0 / outputs.shape[1], dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.shape != outputs.shape[:2] or not torch.allclose(weights.sum(-1), torch.ones((), dtype=torch.float64)):
        raise ShapeMismatchError(f"weights must be (N, S) = {tuple(outputs.shape[:2])} with rows summing to 1")
    if steps < 0 or not lr > 0:
        raise ConfigError(f"pretraining needs steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    ids = torch.arange(env.num_inputs, device=policy.device)
    x = policy.inputs_from(env)
    outputs = outputs.to(policy.device)
    weights = weights.to(policy.device, policy.dtype)
    optimizer = Adam(torch.full((policy.num_replicas,), float(lr), dtype=policy.dtype, device=policy.device))

    def loss_of(params: dict[str, torch.Tensor]) -> torch.Tensor:
        log_prob = policy.log_prob(ids, x, outputs, params)  # (R, N, S)
        return -(weights * log_prob).sum(-1).mean(-1)  # (R,)

    for _ in tqdm(range(steps), desc="pretrain", disable=not progress, leave=False):
        params = {key: value.detach().requires_grad_(True) for key, value in policy.params.items()}
        grads = torch.autograd.grad(loss_of(params).sum(), list(params.values()))
        optimizer.step(policy.params, {key: -grad for key, grad in zip(params, grads, strict=True)})
    with torch.no_grad():
        return loss_of(policy.params)
