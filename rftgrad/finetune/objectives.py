"""What one training step ascends: exact RFT, sampled RFT estimators, or SFT.

An objective works in two stages so that PPO can take several updates on one batch:
:meth:`Objective.prepare` draws what the step needs (samples, rewards, advantages) for
the inputs with weight ``w_n > 0``, and :meth:`Objective.ascent` returns the ascent
direction ``d`` (``θ ← θ + lr·d`` for SGD) at the current parameters, ``batch.updates``
times per step. Every tensor carries the replica axis ``R`` first.

Objectives (Razin et al., ICLR 2024, Section 3; docs/paper.md §1 and §7):

* RFT, exact: ``d = ∇_θ Σ_n w_n E_y[f(x_n, y)]`` from :func:`rftgrad.theory.exact`, with
  ``f = r - β log p_θ - κ (log p_θ - log p_ref)`` (entropy bonus ``β H``, KL penalty
  ``κ KL(p_θ ‖ p_ref)`` to the initial policy; both exact, sequence level).
* RFT, sampled: ``d = ∇_θ Σ_n w_n (1/G) Σ_i [A_i log p_θ(y_i|x_n) + β H_i - κ KL_i]`` with
  advantages from :mod:`rftgrad.finetune.advantages` (PPO: the clipped surrogate), where
  ``H_i = Σ_l H(π_θ(·|y_<l))`` and ``KL_i = Σ_l KL(π_θ(·|y_<l) ‖ π_ref(·|y_<l))`` are summed
  over the sampled prefixes of ``y_i`` (the per-token regularisers production trainers
  use; in expectation they equal the sequence entropy and KL).
* SFT: ``d = ∇_θ Σ_n w_n log p_θ(y*_n | x_n)`` (cross-entropy on the targets).

pass@k (``pass_k = k > 1``; docs/paper.md §7): the objective per input is ``E[max of k
samples]``. For a binary reward (values ``r⁻ < r⁺``, success probability ``p_n = (V_n - r⁻)/(r⁺ - r⁻)``)
it is ``r⁻ + (r⁺ - r⁻)(1 - (1 - p_n)^k)``, whose gradient is ``k (1 - p_n)^(k-1) ∇V_n``: hard inputs
(``p_n → 0``) get ``k`` times their plain gradient, solved ones (``p_n → 1``) almost nothing.

* exact: the reward of input ``n`` is scaled by ``c_n = k (1 - p_n)^(k-1)`` (held fixed in the
  step, ``p_n`` from the enumerated log-probs), so ``∇ Σ_n w_n E[c_n r] = Σ_n w_n c_n ∇V_n``: the
  exact engine's gradient with input weights ``w_n c_n`` (regularisers are not scaled).
* sampled (``rloo``): the unbiased leave-one-out estimator
  :func:`rftgrad.finetune.advantages.pass_k_advantages` (``k = 1`` is RLOO).

Both log the step metric ``pass_at_k`` (exact value, or the unbiased U-statistic of the samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.finetune.advantages import (
    advantages,
    clipped_surrogate,
    dapo_samples_per_input,
    first_informative_group,
    pass_k_advantages,
    pass_k_estimate,
    zero_std_groups,
)
from rftgrad.finetune.config import TrainConfig
from rftgrad.models.base import Params, SoftmaxPolicy
from rftgrad.theory.exact import ExactWorkspace, params_norm, step_gradient


@dataclass
class StepBatch:
    """What :meth:`Objective.prepare` drew for one step (shapes per replica ``R``, input ``N``, sample ``G``)."""

    weights: torch.Tensor  # (R, N) input weights, sum 1 per replica
    updates: int = 1  # optimiser updates on this batch (PPO: ppo_epochs)
    outputs: torch.Tensor | None = None  # (R, N, G, L) sampled outputs
    advantages: torch.Tensor | None = None  # (R, N, G)
    old_log_prob: torch.Tensor | None = None  # (R, N, G) log p at sampling time (PPO)
    ref_logits: torch.Tensor | None = None  # (R, N, G, L, V) reference logits at the sampled prefixes (KL)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (R,)


def weighted(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_n w_n v_n`` per replica: ``(R, N)`` -> ``(R,)``."""
    return (values * weights).sum(-1)


class Objective:
    """Base: holds the policy, the environment and the per-replica regulariser strengths."""

    def __init__(
        self,
        policy: SoftmaxPolicy,
        env: RewardEnv,
        config: TrainConfig,
        entropy_coef: torch.Tensor,
        kl_coef: torch.Tensor,
        ref_params: Params,
    ) -> None:
        self.policy, self.env, self.config = policy, env, config
        self.entropy_coef = entropy_coef  # (R,)
        self.kl_coef = kl_coef  # (R,)
        self.ref_params = ref_params
        self.ids = torch.arange(env.num_inputs, device=policy.device)
        self.x = policy.inputs_from(env)
        self.has_kl = bool((kl_coef != 0).any())
        self.regularised = self.has_kl or bool((entropy_coef != 0).any())
        self.setup()

    def setup(self) -> None:
        """Objective-specific checks and precomputation, run once at construction (before any step)."""

    def prepare(self, weights: torch.Tensor, seed: int) -> StepBatch:
        """Draw the step's batch for input weights ``(R, N)``; ``seed`` keys its randomness."""
        return StepBatch(weights)

    def ascent(self, batch: StepBatch) -> tuple[Params, dict[str, torch.Tensor]]:
        """The ascent direction at the current parameters and step metrics ``(R,)``."""
        raise NotImplementedError

    def _autograd_ascent(self, objective_fn: Callable[[Params], torch.Tensor]) -> tuple[Params, torch.Tensor]:
        """``∇_θ`` of ``objective_fn(params) -> (R,)`` (replicas are independent, so ∇ of the sum)."""
        params = {key: value.detach().requires_grad_(True) for key, value in self.policy.params.items()}
        value = objective_fn(params)
        grads = torch.autograd.grad(value.sum(), list(params.values()))
        return {key: grad.detach() for key, grad in zip(params, grads, strict=True)}, value.detach()


def binary_reward_values(env: RewardEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r⁻, r⁺)`` per input ``(N,)`` from the reward table; :class:`ConfigError` unless every
    input's rewards take at most two values (pass@k's closed form needs a binary reward)."""
    table = env.reward_table()  # (N, Y)
    low, high = table.min(-1).values, table.max(-1).values
    binary = ((table == low[:, None]) | (table == high[:, None])).all(-1)
    if not bool(binary.all()):
        bad = int((~binary).nonzero()[0, 0])
        count = len(torch.unique(table[bad]))
        raise ConfigError(
            f"pass_k > 1 with estimator exact needs a binary reward, but input {bad} of {env.name} has {count} "
            "distinct reward values; use a binary reward (e.g. exact_match) or estimator rloo"
        )
    return low, high


class ExactRFT(Objective):
    """The exact expected RFT gradient (optionally regularised, or of pass@k), by enumeration.

    ``closed_form`` (default ``True``) lets :func:`~rftgrad.theory.exact.step_gradient` use the policy's
    autograd-free prefix tree (tabular, linear); ``False`` runs the generic ``torch.func`` path (the
    reference and benchmark baseline; same numbers). The objective keeps one
    :class:`~rftgrad.theory.ExactWorkspace` for all its steps (the ascent it returns is overwritten
    by the next step's).
    """

    _ref_log_probs: torch.Tensor | None = None
    closed_form: bool = True

    def setup(self) -> None:
        self.workspace = ExactWorkspace()  # the sweep's buffers, allocated at the first step
        self.reward_values: tuple[torch.Tensor, torch.Tensor] | None = None  # (r⁻, r⁺) per input (N,), pass@k
        if self.config.pass_k > 1:
            low, high = binary_reward_values(self.env)  # refuses a non-binary reward before any step
            as_policy = dict(device=self.policy.device, dtype=self.policy.dtype)
            self.reward_values = (low.to(**as_policy), high.to(**as_policy))

    def _success_prob(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``p_n = (V_n - r⁻)/(r⁺ - r⁻)`` ``(R, N)`` (0 where ``r⁺ = r⁻``) and ``(r⁻, r⁺)`` ``(N,)`` (pass@k)."""
        assert self.reward_values is not None
        low, high = self.reward_values
        spread = high - low
        p = torch.where(spread > 0, (value - low) / spread.clamp_min(torch.finfo(value.dtype).tiny), 0.0)
        return p.clamp(0.0, 1.0), low, high

    def _pass_k_value(self, value: torch.Tensor) -> torch.Tensor:
        """pass@k ``r⁻ + (r⁺ - r⁻)(1 - (1 - p)^k)`` per input ``(R, N)``."""
        p, low, high = self._success_prob(value)
        return low + (high - low) * (1.0 - (1.0 - p).pow(self.config.pass_k))

    def _reference_log_probs(self) -> torch.Tensor:
        """``log p_ref(y|x)`` of every output under the initial policy, ``(R, N, Y)`` (computed once)."""
        if self._ref_log_probs is None:
            outputs = self.env.output_space.enumerate(self.policy.device)  # (Y, L)
            expanded = outputs[None].expand(self.env.num_inputs, -1, -1)  # (N, Y, L)
            with torch.no_grad():
                self._ref_log_probs = self.policy.log_prob(self.ids, self.x, expanded, self.ref_params)
        return self._ref_log_probs

    def _shaped(self, log_probs: torch.Tensor) -> torch.Tensor:
        """``f = c r - β log p - κ (log p - log p_ref)``, ``(R, N, Y)``; ``c_n = k (1 - p_n)^(k-1)`` for
        pass@k (held fixed: ``∇ E[c_n r] = c_n ∇V_n``), else 1."""
        rewards = self.env.reward_table().to(log_probs.device, log_probs.dtype)  # (N, Y)
        k = self.config.pass_k
        if k > 1:
            p, _, _ = self._success_prob((log_probs.exp() * rewards).sum(-1))  # (R, N)
            rewards = (k * (1.0 - p).pow(k - 1))[..., None] * rewards  # (R, N, Y)
        shaped = rewards - self.entropy_coef[:, None, None] * log_probs
        if self.has_kl:
            shaped = shaped - self.kl_coef[:, None, None] * (log_probs - self._reference_log_probs())
        return shaped

    def ascent(self, batch: StepBatch) -> tuple[Params, dict[str, torch.Tensor]]:
        result = step_gradient(
            self.policy,
            self.env,
            input_weights=batch.weights,
            reward_fn=self._shaped if self.regularised or self.config.pass_k > 1 else None,
            closed_form=self.closed_form,
            workspace=self.workspace,
        )
        metrics = {
            "reward_mean": weighted(result.value, batch.weights),
            "reward_std": weighted(result.std, batch.weights),
            "grad_norm": result.mean_grad_norm,
        }
        if self.config.pass_k > 1:
            metrics["pass_at_k"] = weighted(self._pass_k_value(result.value), batch.weights)
        return result.mean_grad, metrics


class SampledRFT(Objective):
    """Policy-gradient estimators from ``G`` samples per input (see rftgrad.finetune.advantages)."""

    def prepare(self, weights: torch.Tensor, seed: int) -> StepBatch:
        config, policy = self.config, self.policy
        generations = config.num_generations
        tries = config.max_resample if config.estimator == "dapo" else 1
        length = self.env.output_space.length
        outputs = policy.sample(self.ids, self.x, generations * tries, length, seed=seed)  # (R, N, B*G, L)
        num_replicas, num_inputs = outputs.shape[:2]
        flat_ids = self.ids[None, :, None].expand(num_replicas, -1, generations * tries).reshape(-1)
        rewards = self.env.reward(flat_ids.cpu(), outputs.reshape(-1, length).cpu())
        rewards = rewards.to(policy.device, policy.dtype).reshape(num_replicas, num_inputs, tries, generations)
        in_batch = weights > 0  # (R, N)
        metrics = {
            "reward_mean": weighted(rewards[:, :, 0].mean(-1), weights),
            # the sample STD of each group (correction 1); a group of one (G = 1, plain REINFORCE) has no
            # spread: STD 0, the group frac_reward_zero_std counts as all-equal (not NaN, which drops the row)
            "reward_std": weighted(rewards[:, :, 0].std(-1, correction=1 if generations > 1 else 0), weights),
            "frac_reward_zero_std": weighted(zero_std_groups(rewards[:, :, 0]).to(weights.dtype), weights),
        }
        outputs = outputs.reshape(num_replicas, num_inputs, tries, generations, length)
        if config.estimator == "dapo":
            first, dropped = first_informative_group(rewards)  # (R, N)
            rewards = rewards.gather(2, first[..., None, None].expand(-1, -1, 1, generations))
            outputs = outputs.gather(2, first[..., None, None, None].expand(-1, -1, 1, generations, length))
            metrics["num_resampled_groups"] = ((first > 0) | dropped).logical_and(in_batch).sum(-1).to(weights.dtype)
            metrics["num_dropped_groups"] = dropped.logical_and(in_batch).sum(-1).to(weights.dtype)
            # what real DAPO draws: G per try up to the first informative one (B tries if dropped)
            samples = dapo_samples_per_input(first, dropped, generations, tries).to(weights.dtype)  # (R, N)
            metrics["samples_per_input"] = weighted(samples, weights)
        else:
            metrics["samples_per_input"] = torch.full_like(metrics["reward_mean"], float(generations))
        rewards, outputs = rewards[:, :, 0], outputs[:, :, 0]  # (R, N, G), (R, N, G, L)
        kind = config.ppo_advantage if config.estimator == "ppo" else config.estimator
        if config.pass_k > 1:  # rloo only (TrainConfig checks)
            advantage = pass_k_advantages(rewards, config.pass_k)
            metrics["pass_at_k"] = weighted(pass_k_estimate(rewards, config.pass_k), weights)
        else:
            advantage = advantages(rewards, kind, weights, config.scale_rewards, config.std_eps)
        batch = StepBatch(
            weights,
            updates=config.ppo_epochs if config.estimator == "ppo" else 1,
            outputs=outputs,
            advantages=advantage,
            metrics=metrics,
        )
        with torch.no_grad():
            if config.estimator == "ppo":
                batch.old_log_prob = policy.log_prob(self.ids, self.x, outputs)  # (R, N, G)
            if self.has_kl:
                batch.ref_logits = policy.sequence_logits(self.ids, self.x, outputs, self.ref_params)
        return batch

    def ascent(self, batch: StepBatch) -> tuple[Params, dict[str, torch.Tensor]]:
        assert batch.outputs is not None and batch.advantages is not None
        metrics: dict[str, torch.Tensor] = {}

        def objective(params: Params) -> torch.Tensor:
            logits = self.policy.sequence_logits(self.ids, self.x, batch.outputs, params)  # (R, N, G, L, V)
            token_logp = torch.log_softmax(logits, dim=-1)
            chosen = token_logp.gather(-1, batch.outputs[..., None])[..., 0]  # (R, N, G, L)
            log_prob = chosen.sum(-1)  # (R, N, G)
            if batch.old_log_prob is not None:
                per_sample, clipped = clipped_surrogate(
                    log_prob, batch.old_log_prob, batch.advantages, self.config.clip_eps
                )
                metrics["clip_ratio"] = weighted(clipped.to(log_prob.dtype).mean(-1), batch.weights)
            else:
                per_sample = batch.advantages * log_prob
            if self.regularised:
                probs = token_logp.exp()
                entropy = -(probs * token_logp).sum(-1).sum(-1)  # Σ_l H(π(·|y_<l)), (R, N, G)
                per_sample = per_sample + self.entropy_coef[:, None, None] * entropy
                metrics["entropy"] = weighted(entropy.detach().mean(-1), batch.weights)
                if batch.ref_logits is not None:
                    ref_logp = torch.log_softmax(batch.ref_logits, dim=-1)
                    kl = (probs * (token_logp - ref_logp)).sum(-1).sum(-1)  # Σ_l KL(π ‖ π_ref), (R, N, G)
                    per_sample = per_sample - self.kl_coef[:, None, None] * kl
                    metrics["kl"] = weighted(kl.detach().mean(-1), batch.weights)
            return weighted(per_sample.mean(-1), batch.weights)  # (R,)

        grads, _ = self._autograd_ascent(objective)
        metrics["grad_norm"] = params_norm(grads, 1)
        return grads, {**batch.metrics, **metrics}


class SFT(Objective):
    """Cross-entropy on each input's target output ``y*`` (``env.targets``)."""

    def ascent(self, batch: StepBatch) -> tuple[Params, dict[str, torch.Tensor]]:
        targets = self.env.targets.to(self.policy.device)[:, None, :]  # (N, 1, L)

        def objective(params: Params) -> torch.Tensor:
            log_prob = self.policy.log_prob(self.ids, self.x, targets, params)[..., 0]  # (R, N)
            return weighted(log_prob, batch.weights)

        grads, value = self._autograd_ascent(objective)
        return grads, {"target_nll": -value, "grad_norm": params_norm(grads, 1)}


def make_objective(
    objective: str,
    policy: SoftmaxPolicy,
    env: RewardEnv,
    config: TrainConfig,
    entropy_coef: torch.Tensor,
    kl_coef: torch.Tensor,
    ref_params: Params,
) -> Objective:
    """The objective of a phase: ``sft``, or ``rft`` with ``config.estimator``."""
    if objective == "sft":
        cls: type[Objective] = SFT
    else:
        cls = ExactRFT if config.estimator == "exact" else SampledRFT
    return cls(policy, env, config, entropy_coef, kl_coef, ref_params)
