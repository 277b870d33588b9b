"""Upper bounds on the expected gradient (docs/paper.md §2; proofs in docs/theorem1.md).

For an input ``x`` with reward std ``STD`` under the policy, output length ``L`` and
``γ = max_l max_{y_<l} ||J_l||_2`` (:func:`rftgrad.theory.gamma`):

* paper (Razin et al., ICLR 2024, Theorem 1):   ``||∇_θ V|| <= 6 · L · γ · STD^(2/3)``;
* sharpened (past the paper):                   ``||∇_θ V|| <= γ · sqrt(L) · STD``;
* martingale (the step before Cauchy-Schwarz):  ``||∇_θ V|| <= γ · Σ_l sqrt(Var_l)``,
  with ``Var_l = E_{y<l}[Var(Q_l | y_<l)]`` and ``Σ_l Var_l = STD²``;
* tight (past the paper, docs/theorem1.md §3-5):  ``||∇_θ V|| <= γ · Σ_l sqrt(Var_l / 2)``
  ``<= γ · sqrt(L/2) · STD``, because ``Σ_a π_a² d_a² <= ½ Σ_a π_a d_a²`` whenever
  ``Σ_a π_a d_a = 0``; the shared-softmax witness attains it with equality;
* logit space / per prefix:                     ``sqrt(Σ_u ||g_u||²) <= sqrt(max_a π_∅(a)) · STD``,
  where ``g_u`` is the gradient with respect to the tempered logits at prefix ``u``. For
  ``L = 1`` this is ``||p ⊙ (r - V)|| <= sqrt(max_y p(y)) · STD``; for a tabular policy
  ``||∇_θ V|| = sqrt(Σ_u ||g_u||²) / T``.

Ordering: tight <= martingale <= sharpened <= paper whenever ``STD <= 1`` (rewards in [-1, 1]).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.models.base import SoftmaxPolicy
from rftgrad.theory.batched import ReplicaEnvs
from rftgrad.theory.exact import ExactResult, exact
from rftgrad.theory.gamma import gamma as gamma_of

__all__ = [
    "FAR_FRACTION",
    "PAPER_CONSTANT",
    "REL_SLACK",
    "ABS_SLACK",
    "GAMMA_SLACK",
    "rounding_slack",
    "BOUNDS",
    "stalled",
    "paper_bound",
    "sharpened_bound",
    "martingale_bound",
    "tight_bound",
    "logit_bound",
    "ratio",
    "bound_columns",
    "columns_as_arrays",
    "bound_table",
]

T = TypeVar("T")  # a tensor, an array or a Series

#: "far from optimal": a reward more than this share of the input's reward range below its best.
FAR_FRACTION = 0.5


def stalled(
    mean: T,
    std: T,
    best: T | float,
    worst: T | float | None,
    std_threshold: float,
    far_fraction: float = FAR_FRACTION,
    *,
    gap: T | float | None = None,
) -> T:
    r"""The vanishing-gradient regime of an input (docs/paper.md §2), elementwise:

    .. math::

        \mathrm{STD} < \mathtt{std\_threshold} \quad\text{and}\quad V < \mathtt{best} - \mathtt{gap},
        \qquad \mathtt{gap} = \mathtt{far\_fraction} \cdot (\mathtt{best} - \mathtt{worst}) \text{ by default}

    (by Theorem 1's bound :math:`\lVert \nabla V \rVert \le 6 L \gamma\, \mathrm{STD}^{2/3}`, Razin et al.,
    ICLR 2024, and the sharpened :math:`\gamma \sqrt{L}\, \mathrm{STD}`,
    :math:`\lVert \nabla V \rVert` is then small although :math:`V` is far from optimal). Give either ``worst`` (the
    input's worst reward; the gap is ``far_fraction`` of the reward range) or an absolute
    ``gap`` with ``worst=None`` (``rftgrad diagnose``'s ``--gap``). Works on torch tensors,
    numpy arrays and pandas Series alike; returns booleans of the same kind.

    Args:
        * ``mean``: ``V(x;θ)`` (or a sample mean), any shape.
        * ``std``: ``STD(x;θ)``, same shape.
        * ``best``: the best reward reachable, broadcastable to ``mean``.
        * ``worst``: the worst reward, broadcastable; ``None`` when ``gap`` is given.
        * ``std_threshold``: STD below which the gradient counts as vanishing.
        * ``far_fraction``: the share of ``best - worst`` a mean must lie below ``best``.
        * ``gap``: how far below ``best`` a mean must lie (replaces ``far_fraction · (best - worst)``).

    Raises:
        * :exc:`ConfigError`: both or neither of ``worst`` and ``gap`` given.
    """
    if (worst is None) == (gap is None):
        raise ConfigError("stalled needs exactly one of worst (gap = far_fraction · (best - worst)) and gap")
    below = best - far_fraction * (best - worst) if gap is None else best - gap
    return (std < std_threshold) & (mean < below)


#: the paper's constant in ``6 L γ STD^(2/3)``.
PAPER_CONSTANT = 6.0
#: a gradient counts as violating a bound when ``grad > bound · (1 + rel) + floor`` with the rounding
#: floor ``abs + per_gamma · L · γ`` (``γ = 1`` for the logit gradient; :func:`rounding_slack`). These are
#: the float64 values, and the least any dtype gets: in float64 the spreads ``Q(u·a) - Q(u)`` carry
#: ~L(V+1)·u <= 2.3e-15 of rounding (u = 1.1e-16) and ``J^T`` multiplies it by up to γ, so a gradient
#: below that floor is rounding noise, not a violation (seen: ||∇V|| = 1.2e-13 for a transformer with
#: STD = 3.5e-72 and γ = 4380).
REL_SLACK, ABS_SLACK, GAMMA_SLACK = 1e-9, 1e-12, 1e-14


def rounding_slack(dtype: torch.dtype, length: int, vocab_size: int) -> tuple[float, float, float]:
    """``(rel, abs, per_gamma)`` of the violation test ``grad > bound·(1 + rel) + abs + per_gamma·L·γ`` in ``dtype``.

    With ``ε = torch.finfo(dtype).eps``:

    * ``per_gamma = max(GAMMA_SLACK, 2ε (V + 1 + ln(1/ε)))``. Rewards lie in [-1, 1], so every value
      ``Q(u)`` and spread ``Q(u·a) - Q(u)`` is O(1) and carries ~ε·(V + 1) of rounding from the sum over
      the V children; the tempered log-probabilities add ``ε·|f/T - max f/T|`` each, which matters only
      where a token's probability is above ε, i.e. where ``|f/T - max f/T| <= ln(1/ε)`` (tokens past that
      weigh less than ε, so the logit scale itself, ×1e4 or more, does not enter). A spread error δ
      reaches the logit gradient as ``||π ⊙ δ|| <= δ`` per prefix and ``||∇_θ V||`` through ``J^T`` times
      γ, summed over the L positions: ``L γ δ``; the factor 2 is margin.
    * ``abs = max(ABS_SLACK, 16ε)``: the reward mean and STD are O(1) quantities known to ~ε.
    * ``rel = max(REL_SLACK, 4 (L + 2) ε)``: the bounds are products and sums of L + 2 rounded factors.

    float64 (ε = 2.2e-16) keeps ``REL_SLACK`` and ``ABS_SLACK`` and gets ``per_gamma`` about 1.7e-14
    (V = 2) to 2.4e-14 (V = 16); float32 (ε = 1.2e-7) gets ``per_gamma`` about 4.5e-6 (V = 2),
    ``abs`` 1.9e-6 and ``rel`` 1.4e-6 at L = 1: a float32 gradient of size ~6e-8 (rounding of an STD
    of 2^-24) is then not a violation, while one 1% above a bound of size 1e-3 still is.
    """
    eps = torch.finfo(dtype).eps
    per_gamma = max(GAMMA_SLACK, 2.0 * eps * (vocab_size + 1 + math.log(1.0 / eps)))
    return max(REL_SLACK, 4.0 * (length + 2) * eps), max(ABS_SLACK, 16.0 * eps), per_gamma


#: bound name -> (gradient column it bounds, bound column).
BOUNDS: dict[str, tuple[str, str]] = {
    "paper": ("grad_norm", "paper_bound"),
    "sharpened": ("grad_norm", "sharpened_bound"),
    "martingale": ("grad_norm", "martingale_bound"),
    "tight": ("grad_norm", "tight_bound"),
    "logit": ("logit_grad_norm", "logit_bound"),
}


def paper_bound(gamma: torch.Tensor, std: torch.Tensor, length: int) -> torch.Tensor:
    r"""Theorem 1 of Razin et al. (2024): ``6 · L · γ · STD^(2/3)``.

    .. math::

        \lVert \nabla_\theta V(x;\theta) \rVert \le 6\, L\, \gamma(x;\theta)\, \mathrm{STD}(x;\theta)^{2/3}

    (Razin et al., ICLR 2024, Theorem 1; docs/paper.md §2), elementwise over ``gamma`` and ``std``
    (a negative STD from rounding counts as 0); ``length`` is :math:`L`.
    """
    return PAPER_CONSTANT * length * gamma * std.clamp_min(0).pow(2.0 / 3.0)


def sharpened_bound(gamma: torch.Tensor, std: torch.Tensor, length: int) -> torch.Tensor:
    r"""``γ · sqrt(L) · STD`` (martingale decomposition, Jensen, Cauchy-Schwarz; docs/theorem1.md).

    .. math::

        \lVert \nabla_\theta V(x;\theta) \rVert \le \gamma(x;\theta)\, \sqrt{L}\, \mathrm{STD}(x;\theta)

    Theorem 1 of Razin et al. (ICLR 2024) sharpened (past the paper, docs/paper.md §2): linear in STD
    instead of the power 2/3, and never above :func:`paper_bound` since :math:`\mathrm{STD} \le 1`.
    """
    return gamma * math.sqrt(length) * std


def martingale_bound(gamma: torch.Tensor, position_variance: torch.Tensor) -> torch.Tensor:
    r"""``γ · Σ_l sqrt(Var_l)``; ``position_variance``: ``(..., L)``.

    .. math::

        \lVert \nabla_\theta V(x;\theta) \rVert \le \gamma(x;\theta) \sum_{l=1}^{L} \sqrt{\mathrm{Var}_l},
        \qquad \mathrm{Var}_l = \mathbb{E}_{y_{<l}}\big[\mathrm{Var}(Q_l \mid y_{<l})\big],
        \quad \sum_l \mathrm{Var}_l = \mathrm{STD}^2

    The step of :func:`sharpened_bound` before Cauchy-Schwarz (past the paper, sharpening Theorem 1
    of Razin et al., ICLR 2024; docs/paper.md §2).
    """
    return gamma * position_variance.clamp_min(0).sqrt().sum(-1)


def tight_bound(gamma: torch.Tensor, position_variance: torch.Tensor) -> torch.Tensor:
    r"""``γ · Σ_l sqrt(Var_l / 2)``: the martingale bound with the factor ½ of
    ``||π ⊙ d||² <= ½ Σ_a π_a d_a²`` (``Σ_a π_a d_a = 0``); equality for the witness at p = ½.

    .. math::

        \lVert \nabla_\theta V(x;\theta) \rVert \le \gamma(x;\theta) \sum_{l=1}^{L} \sqrt{\mathrm{Var}_l / 2}
        \le \gamma(x;\theta) \sqrt{L/2}\; \mathrm{STD}(x;\theta),
        \qquad \text{since } \sum_a \pi_a^2 d_a^2 \le \tfrac{1}{2} \sum_a \pi_a d_a^2
        \text{ whenever } \sum_a \pi_a d_a = 0

    Past the paper (sharpening Theorem 1 of Razin et al., ICLR 2024; docs/paper.md §2,
    docs/theorem1.md §3-5): the shared-softmax witness (:func:`tightness_witness`) attains it.
    """
    return martingale_bound(gamma, position_variance) / math.sqrt(2.0)


def logit_bound(max_first_token_prob: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    r"""``sqrt(max_a π_∅(a)) · STD``, bounding the gradient with respect to the logits of every prefix.

    .. math::

        \Big(\sum_u \lVert g_u \rVert^2\Big)^{1/2} \le \sqrt{\max_a \pi_\varnothing(a)}\; \mathrm{STD}(x;\theta),

    with :math:`g_u` the gradient of :math:`V` with respect to the tempered logits at prefix :math:`u` and
    :math:`\pi_\varnothing` the first token's distribution; for :math:`L = 1` this is
    :math:`\lVert p \odot (r - V) \rVert \le \sqrt{\max_y p(y)}\, \mathrm{STD}`, and for a tabular policy
    :math:`\lVert \nabla_\theta V \rVert = (\sum_u \lVert g_u \rVert^2)^{1/2} / T`. Past the paper (the
    logit-space form of Theorem 1 of Razin et al., ICLR 2024; docs/paper.md §2, docs/theorem1.md §4).
    """
    return max_first_token_prob.sqrt() * std


def ratio(grad_norm: torch.Tensor, bound: torch.Tensor, floor: torch.Tensor | float = ABS_SLACK) -> torch.Tensor:
    """``grad / bound``; where the bound is below the rounding ``floor`` (e.g. STD = 0 up to rounding)
    the ratio is 0 if the gradient is below the floor too, and ``inf`` otherwise."""
    tiny = bound <= floor
    safe = torch.where(tiny, torch.ones_like(bound), bound)
    return torch.where(tiny, torch.where(grad_norm <= floor, 0.0, math.inf), grad_norm / safe)


def bound_columns(
    policy: SoftmaxPolicy,
    env: RewardEnv | ReplicaEnvs,
    result: ExactResult | None = None,
    gamma: torch.Tensor | None = None,
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
) -> dict[str, torch.Tensor]:
    """Every bound for every replica and input, as tensors: name -> ``(R, N)``.

    The columns of :func:`bound_table` without ``replica`` and ``input``: ``reward_mean`` (V),
    ``reward_std`` (STD), ``grad_norm`` (||∇_θ V||), ``logit_grad_norm``, ``gamma`` (γ),
    ``<name>_bound`` and ``ratio_<name>`` (gradient / bound) for each name in ``BOUNDS`` (Theorem 1
    of Razin et al., ICLR 2024, and its sharpened forms; module docstring), and ``violation``
    (bool: a gradient exceeds its bound by more than the rounding slack of the policy's dtype,
    ``grad > bound·(1 + rel) + abs + per_gamma · L · γ``, :func:`rounding_slack`). ``result``
    (:func:`~rftgrad.theory.exact.exact`) and ``gamma`` are computed when not given. ``env`` may be one
    environment per replica (:class:`~rftgrad.theory.batched.ReplicaEnvs`, how ``rftgrad check`` evaluates
    instances of one shape together). No pandas:
    ``rftgrad check`` and the property tests use it per example.
    """
    result = exact(policy, env, max_outputs=max_outputs) if result is None else result
    gamma = gamma_of(policy, env, max_outputs=max_outputs) if gamma is None else gamma
    length = env.output_space.length
    columns: dict[str, torch.Tensor] = {
        "reward_mean": result.value,
        "reward_std": result.std,
        "grad_norm": result.grad_norm,
        "logit_grad_norm": result.logit_grad_norm,
        "gamma": gamma,
        "paper_bound": paper_bound(gamma, result.std, length),
        "sharpened_bound": sharpened_bound(gamma, result.std, length),
        "martingale_bound": martingale_bound(gamma, result.position_variance),
        "tight_bound": tight_bound(gamma, result.position_variance),
        "logit_bound": logit_bound(result.max_first_token_prob, result.std),
    }
    rel, absolute, per_gamma = rounding_slack(policy.dtype, length, env.output_space.vocab_size)
    floors = {  # rounding floor of each gradient column (see rounding_slack)
        "grad_norm": absolute + per_gamma * length * gamma,
        "logit_grad_norm": absolute + per_gamma * length * torch.ones_like(gamma),
    }
    violation = torch.zeros_like(result.std, dtype=torch.bool)
    for name, (grad_key, bound_key) in BOUNDS.items():
        columns[f"ratio_{name}"] = ratio(columns[grad_key], columns[bound_key], floors[grad_key])
        violation |= columns[grad_key] > columns[bound_key] * (1 + rel) + floors[grad_key]
    columns["violation"] = violation
    return {key: value.detach() for key, value in columns.items()}


def columns_as_arrays(columns: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """:func:`bound_columns` flattened to numpy, the rows of :func:`bound_table` (replica-major):
    ``replica`` and ``input`` first, ``reward_mean``/``reward_std`` in the policy's dtype, the
    other numbers as float64, ``violation`` as bool."""
    num_replicas, num_inputs = columns["reward_std"].shape
    arrays: dict[str, np.ndarray] = {
        "replica": np.repeat(np.arange(num_replicas), num_inputs),
        "input": np.tile(np.arange(num_inputs), num_replicas),
    }
    for key, value in columns.items():
        keep_dtype = key in ("reward_mean", "reward_std", "violation")
        arrays[key] = (value if keep_dtype else value.double()).cpu().reshape(-1).numpy()
    return arrays


def bound_table(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    result: ExactResult | None = None,
    gamma: torch.Tensor | None = None,
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
) -> pd.DataFrame:
    """Every bound for every replica and input, as one tidy table.

    :func:`bound_columns` as a DataFrame, ``replica`` and ``input`` in front, one row per (replica, input):
    ``replica, input, reward_mean, reward_std, grad_norm, logit_grad_norm, gamma``, ``<name>_bound`` and
    ``ratio_<name>`` for each name in ``BOUNDS``, and ``violation`` (the slack of :func:`rounding_slack`: in
    float64 ``REL_SLACK``, ``ABS_SLACK``, about ``GAMMA_SLACK``; in float32 scaled with its ε); see
    :func:`bound_columns` for what each column holds. ``result`` and ``gamma`` are computed when not given.
    """
    return pd.DataFrame(columns_as_arrays(bound_columns(policy, env, result, gamma, max_outputs)))
