"""Many instances of one shape as the replicas of one evaluation (``rftgrad check``'s batches).

The exact engine (:mod:`rftgrad.theory.exact`) and γ (:func:`rftgrad.theory.gamma`) run the ``R``
replicas of a policy on one environment. :class:`ReplicaEnvs` gives every replica an environment of
its own: replica ``r`` reads environment ``r``'s inputs ``x`` and its reward table ``r_r(x, y)``,
so that with :func:`stack_replicas` (policies of one architecture -> one policy whose replica ``r`` is
policy ``r``: parameters, seed, temperature) ``B`` instances of one shape become one evaluation of
``R = B`` replicas. Every per-input quantity of replica ``r`` (``V``, ``STD``, the martingale terms,
``||∇_θ V(x_n;θ)||``, ``γ(x_n;θ)``; Theorem 1 of Razin et al., ICLR 2024, docs/paper.md §2) is then
that of instance ``r`` evaluated alone, to rounding: the computation is the same per replica, only
the tensor programs are shared (one program of a few hundred small ops for the whole batch instead
of one per instance, which is what a check of tiny instances spends its time on).

Environments of one shape share the output space (``V``, ``L``); their numbers of inputs may differ
for policies that read features or prompts: the shorter ones are padded to the largest ``N`` by
repeating their last input (and its rewards), and :meth:`ReplicaEnvs.input_weights` gives the padded
inputs weight 0 in the mean objective, so ``mean_grad`` is each instance's own. The padded inputs'
per-input rows are computed and meaningless: read ``input_counts``. Tabular policies (one logit table
per input) need equal ``N``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.errors import ShapeMismatchError
from rftgrad.models.base import SoftmaxPolicy

__all__ = ["ReplicaEnvs", "stack_replicas", "engine_inputs"]


class ReplicaEnvs:
    """One environment per replica, all of one output space: replica ``r`` acts in ``envs[r]``.

    Pass it where :func:`~rftgrad.theory.exact.evaluate`, :func:`~rftgrad.theory.exact.mean_gradient`,
    :func:`~rftgrad.theory.exact.exact`, :func:`~rftgrad.theory.gamma.gamma` and
    :func:`~rftgrad.theory.bounds.bound_columns` take an environment, with a policy of ``R = len(envs)``
    replicas (e.g. :func:`stack_replicas`). See the module docstring for padding.

    Args:
        * ``envs``: the ``R >= 1`` environments, one output space (``V``, ``L``).

    Raises:
        * :exc:`ShapeMismatchError`: no environment, or two output spaces.
    """

    def __init__(self, envs: Sequence[RewardEnv]) -> None:
        self.envs = tuple(envs)
        if not self.envs:
            raise ShapeMismatchError("ReplicaEnvs needs at least one environment (one per replica)")
        self.output_space: OutputSpace = self.envs[0].output_space
        for env in self.envs:
            if env.output_space != self.output_space:
                raise ShapeMismatchError(
                    f"{env.name} has V={env.output_space.vocab_size}, L={env.output_space.length} but "
                    f"{self.envs[0].name} has V={self.output_space.vocab_size}, L={self.output_space.length}; "
                    "batch only environments of one output space"
                )
        self.input_counts = [env.num_inputs for env in self.envs]  # N_r, the real inputs of replica r
        self.num_inputs = max(self.input_counts)  # N, with padding
        self.name = f"{len(self.envs)} replica environments ({self.envs[0].name}, ...)"

    @property
    def num_replicas(self) -> int:
        """``R``, one environment per replica."""
        return len(self.envs)

    def _padded(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(N_r, ...) -> (N, ...)``: the last row repeated."""
        missing = self.num_inputs - tensor.shape[0]
        return torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])]) if missing else tensor

    def check_policy(self, policy: SoftmaxPolicy) -> None:
        """Raise :class:`ShapeMismatchError` unless ``policy`` has one replica per environment (and, if it
        indexes its inputs, the environments one ``N``)."""
        if policy.num_replicas != self.num_replicas:
            raise ShapeMismatchError(
                f"{self.num_replicas} replica environments for a policy of R={policy.num_replicas} replicas; "
                "give one environment per replica"
            )
        if policy.input_kind == "index" and len(set(self.input_counts)) > 1:
            raise ShapeMismatchError(
                f"a {policy.name} policy indexes its inputs, so its replica environments need one N, got "
                f"{sorted(set(self.input_counts))}; batch environments of equal N"
            )

    def inputs_for(self, policy: SoftmaxPolicy) -> torch.Tensor:
        """Every replica's inputs as ``policy`` reads them (:meth:`~rftgrad.models.SoftmaxPolicy.inputs_from`):
        ``(R, N, ...)``."""
        self.check_policy(policy)
        return torch.stack([self._padded(policy.inputs_from(env)) for env in self.envs])

    def reward_table(self, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> torch.Tensor:
        """Every replica's reward table: float64 ``(R, N, V**L)`` on the CPU."""
        return torch.stack([self._padded(env.reward_table(max_outputs)) for env in self.envs])

    def input_weights(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(R, N)`` weights of the mean objective ``Σ_n w_n V(x_n;θ)``: ``1/N_r`` on replica ``r``'s
        inputs, 0 on its padding."""
        counts = torch.tensor(self.input_counts, dtype=dtype, device=device)  # (R,)
        real = torch.arange(self.num_inputs, device=device)[None, :] < counts[:, None]  # (R, N)
        return real.to(dtype) / counts[:, None]


def engine_inputs(policy: SoftmaxPolicy, env: RewardEnv | ReplicaEnvs) -> tuple[torch.Tensor, bool]:
    """``(x, per_replica)``: the inputs the engine feeds ``policy``, ``(N, ...)`` shared by every replica
    (an environment, or replica environments of input indices, which are the same ``0..N-1`` for all) or
    ``(R, N, ...)`` one set per replica (``per_replica``)."""
    if not isinstance(env, ReplicaEnvs):
        return policy.inputs_from(env), False
    if policy.input_kind == "index":
        env.check_policy(policy)
        return policy.inputs_from(env.envs[0]), False
    return env.inputs_for(policy), True


def stack_replicas(policies: Sequence[SoftmaxPolicy]) -> SoftmaxPolicy:
    """One policy whose replica ``r`` is ``policies[r]`` (its parameters, seed and temperature).

    The policies must be of one class with parameters of one shape (one architecture); their
    initialisation scales may differ (they only shaped the draw). The result is a shallow copy of
    the first policy with the replicas' parameters concatenated along the replica axis (in the first
    policy's memory layout, e.g. the tabular table's state-major one), ``seeds`` and ``temperature``
    likewise; the given policies are left as they are.

    Raises:
        * :exc:`ShapeMismatchError`: no policy, two classes, or parameters of other names or shapes.
    """
    if not policies:
        raise ShapeMismatchError("stack_replicas needs at least one policy")
    first = policies[0]
    for policy in policies:
        shapes = {key: tuple(p.shape[1:]) for key, p in policy.params.items()}
        if type(policy) is not type(first) or shapes != {k: tuple(p.shape[1:]) for k, p in first.params.items()}:
            raise ShapeMismatchError(
                f"cannot stack {policy!r} onto {first!r}: give policies of one class and architecture"
            )
    stacked = copy.copy(first)
    stacked.seeds = [seed for policy in policies for seed in policy.seeds]
    stacked.params = {key: _concat_like(first.params[key], [p.params[key] for p in policies]) for key in first.params}
    stacked.temperature = torch.cat([policy.temperature for policy in policies])  # (R,)
    return stacked


def _concat_like(reference: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
    """``parts`` concatenated along axis 0, stored in ``reference``'s axis order (memory layout)."""
    order = sorted(range(reference.ndim), key=lambda dim: reference.stride(dim), reverse=True)  # outermost first
    joined = torch.cat([part.permute(order) for part in parts], dim=order.index(0))  # contiguous in that order
    return joined.permute([order.index(dim) for dim in range(reference.ndim)])
