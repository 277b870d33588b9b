"""The one table of names: environments, experiments, estimators, objectives, optimisers.

Every name a user types (``--env``, ``rftgrad run NAME``, ``--set trainer.estimator=...``) is
defined here once, with a one-line description where ``rftgrad list`` shows one; the modules
that implement them import these tables rather than spelling the names again. This module
imports nothing of rftgrad's.
"""

from __future__ import annotations

__all__ = [
    "SEQUENCE_REWARDS",
    "ENVIRONMENTS",
    "TRAINING_ENVIRONMENTS",
    "EXPERIMENTS",
    "ESTIMATORS",
    "GROUP_ESTIMATORS",
    "ADVANTAGES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "SCALE_REWARDS",
    "EXECUTORS",
]

#: sequence-environment reward names (formulas in rftgrad.envs.sequence).
SEQUENCE_REWARDS = ("exact_match", "position_match", "contains_token", "random_network")

#: name -> one-line description, for ``rftgrad list`` and ``--env``.
ENVIRONMENTS: dict[str, str] = {
    "bandit": "one input, K actions, a given reward vector (BanditEnv)",
    "orthonormal": "orthonormal inputs with +1/-1 label rewards, Theorem 2's setting (orthonormal)",
    "gaussian": "synthetic Gaussian clusters, seeded train/test split (gaussian_clusters)",
    "digits": "scikit-learn's bundled 8x8 handwritten digits, no download (digits)",
    "sequence": "prompts + whole-output rewards: " + ", ".join(SEQUENCE_REWARDS) + ", table, callable (SequenceEnv)",
}

#: the environments an experiment can train on by name (``rftgrad run compare --set env=...``).
TRAINING_ENVIRONMENTS = ("orthonormal", "gaussian", "digits", "sequence")

#: experiment name -> one-line description (one folder each under rftgrad/experiments/).
EXPERIMENTS: dict[str, str] = {
    "bound": "Theorem 1's bounds vs the exact gradient on thousands of random policies per class",
    "tightness": "the sqrt(L) witness against L, and an adversarial search for the worst-case constant",
    "compare": "RFT (exact or a sampled estimator) and SFT trained side by side on one environment and policy",
    "controlled": "paper Section 4.2: RFT stalls on modified (small-STD) inputs, SFT fits them (4 variants)",
    "heuristics": "paper Section 5.1: larger lr, temperature, entropy bonus vs the stall, as the output space grows",
    "sft_budget": "paper Section 5.2: a short SFT phase on 1-100% of the inputs, then RFT, vs RFT alone and full SFT",
    "sft_targeting": "past the paper: which 1% of the inputs to label for SFT (random vs STD, stalled flag, gap)",
    "dynamics": "Theorem 2: gradient-flow time to a target reward, RFT ~ 1/STD0^2 vs SFT ~ ln(1/STD0)",
    "prevalence": "paper Section 4.1: per-task share of small-STD, far-from-optimal prompts under a pretrained "
    "transformer, and RFT vs SFT gains",
    "estimators": "past the paper: GRPO/RLOO/Dr. GRPO/DAPO updates vanish like p, closed form vs Monte Carlo; pass@k",
    "reward_teacher": "past the paper (Razin et al. 2025): reward-model accuracy vs induced variance as teacher, exact",
}

#: estimator name -> one line (formulas in rftgrad.finetune.advantages).
ESTIMATORS = {
    "exact": "the exact expected gradient ∇V by enumeration (no sampling)",
    "reinforce": "REINFORCE without baseline: A = r",
    "reinforce_baseline": "REINFORCE with the batch-mean reward as baseline: A = r - mean(r over the batch)",
    "rloo": "RLOO, leave-one-out baseline: A_i = r_i - mean_{j≠i} r_j",
    "grpo": "GRPO: A_i = (r_i - mean(r)) / (std(r) + std_eps) over the group (scale_rewards)",
    "dr_grpo": "Dr. GRPO: A_i = r_i - mean(r) over the group, no std division",
    "dapo": "GRPO advantages with DAPO dynamic sampling (resample all-equal groups, max_resample tries)",
    "ppo": "PPO-clip: ppo_epochs updates per batch on min(ρA, clip(ρ, 1±clip_eps)A), A from ppo_advantage",
}
#: the group estimators of :data:`ESTIMATORS`: each samples a group of G outputs per input and
#: centres every reward on its group (RLOO, GRPO, Dr. GRPO, DAPO).
GROUP_ESTIMATORS = ("rloo", "grpo", "dr_grpo", "dapo")
#: the advantage estimators a PPO update can take (``ppo_advantage``), as in :data:`ESTIMATORS`.
ADVANTAGES = ("reinforce", "reinforce_baseline", "rloo", "grpo", "dr_grpo")
#: what a training arm optimises: ``"rft"`` (expected reward) or ``"sft"`` (cross-entropy on the targets).
OBJECTIVES = ("rft", "sft")
#: the optimisers of the trainer: plain gradient steps or Adam.
OPTIMIZERS = ("sgd", "adam")
#: where GRPO takes the reward STD it divides by: the group, the whole batch, or nowhere (as TRL's
#: ``scale_rewards``).
SCALE_REWARDS = ("group", "batch", "none")
#: where the units of work of ``rftgrad sweep``, ``figures`` and ``check`` run (``--executor``):
#: name -> one line (rftgrad.executors).
EXECUTORS = {
    "serial": "in this process, one unit after another (the default and the reference)",
    "ray": "each unit a Ray task: a local Ray instance sized to this machine, or a cluster with --address",
}
