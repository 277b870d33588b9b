"""γ(x;θ): the largest spectral norm of the logits' Jacobian (docs/paper.md §2).

Theorem 1 of Razin et al. (ICLR 2024) bounds ``||∇_θ V(x;θ)|| <= 6 L γ(x;θ) STD^(2/3)``
with ``γ(x;θ) = max_l max_{y_<l} ||J_l||_2`` and ``J_l = ∂ f_θ(x, y_<l) / ∂θ`` (``V x P``).
The maximum runs over *all* prefixes, not only likely ones.

Tabular and linear policies give ``||J||_2`` in closed form
(:meth:`SoftmaxPolicy.closed_form_jacobian_norms`); any other policy gets it from autograd,
``||J||_2 = sqrt(λ_max(J J^T))`` with the ``V x V`` Gram matrix ``J J^T``, by one of
:data:`GAMMA_METHODS`:

* ``"jacobian"`` (the reference, and the default): every state's ``J`` (``V x P``) in one
  batched reverse pass, then ``eigvalsh`` of the ``V x V`` Gram matrices;
* ``"lanczos"`` (matrix-free): ``V`` Lanczos steps on ``v -> J (J^T v)`` through
  ``torch.func.vjp`` / ``torch.func.jvp``, with full reorthogonalisation, never forming ``J``.

Both run every state of every level (all ``Σ_{l<L} V^l`` prefixes of every input and replica)
in one call per chunk of :data:`JACOBIAN_BUDGET` numbers: each state gets its own copy of the
replica's parameters, so the per-state Jacobian is the gradient with respect to that copy.
The temperature is part of the logits (``J/T``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vjp, vmap

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.models.base import Params, SoftmaxPolicy
from rftgrad.theory.batched import ReplicaEnvs, engine_inputs

__all__ = [
    "JACOBIAN_BUDGET",
    "GAMMA_METHODS",
    "jacobian_spectral_norms",
    "gamma",
]

#: numbers (states · V · P, replicas counted in the states) one batched Jacobian call may hold.
JACOBIAN_BUDGET = 2**24

#: how the generic (not closed-form) spectral norms are computed; see the module docstring.
GAMMA_METHODS: tuple[str, ...] = ("jacobian", "lanczos")

#: seed of the Lanczos start vectors (a local generator: no global random state is touched).
LANCZOS_SEED = 0


def _check_method(method: str) -> None:
    if method not in GAMMA_METHODS:
        raise ConfigError(f"unknown gamma method {method!r}; choose one of {', '.join(GAMMA_METHODS)}")


def _scores_positions_at_once(policy: SoftmaxPolicy) -> bool:
    """Whether ``policy`` scores every position of a sequence in one pass (its own
    :meth:`~rftgrad.models.SoftmaxPolicy.replica_sequence_logits`, not the base class's per-position loop)."""
    return type(policy).replica_sequence_logits is not SoftmaxPolicy.replica_sequence_logits


def _state_logits(policy: SoftmaxPolicy) -> Callable[..., torch.Tensor]:
    """``(params, T, input_id, x_n, prefix (l,)) -> f_θ(x_n, prefix) / T`` ``(V,)`` for one state,
    vmapped over states that each carry their own copy of one replica's parameters."""

    def one_state(
        params: Params, temperature: torch.Tensor, input_id: torch.Tensor, x_n: torch.Tensor, prefix: torch.Tensor
    ) -> torch.Tensor:
        logit = policy.replica_prefix_logits(params, input_id[None], x_n[None], prefix[None, None])  # (1, 1, V)
        return logit[0, 0] / temperature  # (V,)

    return vmap(one_state)


def _state_position_logits(policy: SoftmaxPolicy) -> Callable[..., torch.Tensor]:
    """``(params, T, input_id, x_n, outputs (m+1,)) -> f_θ(x_n, outputs_<l) / T`` at every position
    ``l = 0..m``, ``(m+1, V)``, for one state (teacher forcing, one causal pass); vmapped over states
    that each carry their own copy of one replica's parameters."""

    def one_state(
        params: Params, temperature: torch.Tensor, input_id: torch.Tensor, x_n: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor:
        logits = policy.replica_sequence_logits(params, input_id[None], x_n[None], outputs[None, None])  # (1,1,m+1,V)
        return logits[0, 0] / temperature  # (m+1, V)

    return vmap(one_state)


class _StateBatch:
    """States of one prefix length for every replica, replica-major: ``R·S`` rows, each with its own
    parameter copy. ``ids (S,)``, ``x (R, S, ...)`` (each replica's inputs, shared ones expanded),
    ``prefixes (S, l)``."""

    def __init__(self, policy: SoftmaxPolicy, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor) -> None:
        replicas, count = policy.num_replicas, ids.shape[0]
        self.params = {key: p.repeat_interleave(count, dim=0) for key, p in policy.params.items()}  # (R·S, ...)
        self.temperature = policy.temperature.repeat_interleave(count)  # (R·S,)
        self.ids = ids.repeat(replicas)  # (R·S,)
        self.x = x.reshape(replicas * count, *x.shape[2:])  # (R·S, ...)
        self.prefixes = prefixes.repeat(replicas, 1)  # (R·S, l)


def _batched_forward(policy: SoftmaxPolicy, batches: list[_StateBatch]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """``tuple of per-batch parameter copies -> tuple of (R·S_b, V) tempered logits``.

    A policy that scores all positions in one pass (:func:`_scores_positions_at_once`: the
    transformer, HF models) runs every batch, whatever its prefix length ``l_b``, in ONE causal
    forward: each prefix ``u`` is padded with token 0 to the longest length ``m + 1`` (``m = max_b
    l_b``) and its state's logits are read at position ``l_b``, which attends over ``[x, u]`` only
    (causal attention: the padding after it is invisible), so they are ``f_θ(x, u)`` up to
    rounding. One forward (and one reverse pass) instead of one per prefix length. Other policies
    run one forward per batch.
    """
    if not _scores_positions_at_once(policy):
        logits = _state_logits(policy)

        def per_batch(*params: Params) -> tuple[torch.Tensor, ...]:
            return tuple(logits(p, b.temperature, b.ids, b.x, b.prefixes) for p, b in zip(params, batches, strict=True))

        return per_batch

    position_logits = _state_position_logits(policy)
    levels = [b.prefixes.shape[1] for b in batches]
    width = max(levels) + 1  # m + 1 output tokens: position l reads the first l
    rows = [b.ids.shape[0] for b in batches]
    outputs = torch.cat(
        [torch.nn.functional.pad(b.prefixes, (0, width - level)) for b, level in zip(batches, levels, strict=True)]
    )  # (Σ_b R·S_b, m+1), zero-padded
    temperature = torch.cat([b.temperature for b in batches])  # (Σ_b R·S_b,)
    ids = torch.cat([b.ids for b in batches])
    x = torch.cat([b.x for b in batches])

    def joined(*params: Params) -> tuple[torch.Tensor, ...]:
        copies = {key: torch.cat([p[key] for p in params]) for key in params[0]} if len(params) > 1 else params[0]
        logits = position_logits(copies, temperature, ids, x, outputs)  # (Σ_b R·S_b, m+1, V)
        return tuple(part[:, level] for part, level in zip(logits.split(rows), levels, strict=True))

    return joined


def _jacobian_norms(policy: SoftmaxPolicy, batches: list[_StateBatch]) -> list[torch.Tensor]:
    """``||J||_2`` of every row of every batch, ``(R·S_b,)``: all Jacobians by one reverse pass
    vmapped over the ``V`` token basis vectors, then ``sqrt(λ_max(J J^T))`` with
    ``J J^T = Σ_k J_k J_k^T`` summed over the parameter tensors ``k`` (``J`` itself is never
    concatenated)."""
    vocab = policy.vocab_size
    with torch.enable_grad():  # plain autograd: its batched reverse pass skips torch.func's vjp wrapping
        if _scores_positions_at_once(policy) and len(batches) > 1:  # one joined copy: one Jacobian per tensor
            primals = [{key: torch.cat([b.params[key] for b in batches]) for key in batches[0].params}]
        else:
            primals = [b.params for b in batches]
        primals = [{key: p.detach().requires_grad_() for key, p in copy.items()} for copy in primals]
        outputs = _batched_forward(policy, batches)(*primals)
        eye = torch.eye(vocab, dtype=outputs[0].dtype, device=outputs[0].device)  # basis cotangent per token
        basis = [eye[:, None, :].expand(vocab, out.shape[0], vocab) for out in outputs]  # (V, R·S_b, V)
        leaves = [p for copy in primals for p in copy.values()]
        flat = torch.autograd.grad(
            outputs, leaves, basis, is_grads_batched=True, allow_unused=True, materialize_grads=True
        )
    names = list(primals[0])
    jacobians = [dict(zip(names, flat[i : i + len(names)], strict=True)) for i in range(0, len(flat), len(names))]
    gram = 0  # J J^T: (Σ_b R·S_b, V, V); jacobians: per copy, name -> (V, rows, *shape), row a = ∂f_a/∂θ
    for key in policy.params:
        pieces = [jac[key].flatten(2) for jac in jacobians]
        block = (torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]).transpose(0, 1)  # J_k: (Σ_b R·S_b, V, p_k)
        gram = gram + block @ block.transpose(1, 2)
    norms = torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()
    return list(norms.split([out.shape[0] for out in outputs]))


def _orthogonalize(vector: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``vector (B, V)`` minus its projection on the orthonormal rows of ``basis (B, k, V)``, twice (CGS2)."""
    for _ in range(2):
        vector = vector - torch.einsum("bk,bkv->bv", torch.einsum("bkv,bv->bk", basis, vector), basis)
    return vector


def _lanczos_norms(policy: SoftmaxPolicy, batches: list[_StateBatch]) -> list[torch.Tensor]:
    """``||J||_2`` of every row by ``V`` Lanczos steps on ``A = J J^T`` (matrix-free).

    ``A v = J (J^T v)``: ``J^T v`` by the VJP pullback, ``J w`` by a JVP. With full
    reorthogonalisation the ``V`` Lanczos vectors ``Q`` form an orthonormal basis of ``R^V``, so
    ``T = Q^T A Q`` (from the stored ``A q_j``) is similar to ``A`` and ``λ_max(T) = λ_max(A)`` up to
    rounding. A breakdown (``A``'s Krylov space closes early, e.g. a rank-deficient ``J``) continues
    from a fresh random vector orthogonal to ``Q``.
    """
    vocab = policy.vocab_size
    forward = _batched_forward(policy, batches)
    primals = [b.params for b in batches]
    outputs, pullback = vjp(forward, *primals)
    rows = [out.shape[0] for out in outputs]
    gen = torch.Generator(device=outputs[0].device).manual_seed(LANCZOS_SEED)

    def gram_times(vectors: torch.Tensor) -> torch.Tensor:
        """``J J^T v`` for every row: ``(B, V) -> (B, V)`` with ``B = Σ_b R·S_b``."""
        cotangents = tuple(vectors.split(rows))
        tangents = pullback(cotangents)  # J^T v: per batch, name -> (R·S_b, *shape)
        _, products = jvp(forward, tuple(primals), tuple(tangents))
        return torch.cat(products)

    total = sum(rows)
    dtype, device = outputs[0].dtype, outputs[0].device

    def random_unit() -> torch.Tensor:
        vector = torch.rand(total, vocab, generator=gen, dtype=dtype, device=device) + 0.5
        return vector / vector.norm(dim=-1, keepdim=True)

    basis = random_unit()[:, None, :]  # Q, (B, 1, V)
    images = []  # A q_j, each (B, V)
    for step in range(vocab):
        image = gram_times(basis[:, step])
        images.append(image)
        if step == vocab - 1:
            break
        residual = _orthogonalize(image, basis)
        norm = residual.norm(dim=-1, keepdim=True)
        scale = image.norm(dim=-1, keepdim=True)
        broke = norm <= 1e-8 * scale + torch.finfo(dtype).tiny  # Krylov space closed: restart
        residual = torch.where(broke, _orthogonalize(random_unit(), basis), residual)
        basis = torch.cat([basis, (residual / residual.norm(dim=-1, keepdim=True))[:, None, :]], dim=1)
    projected = basis @ torch.stack(images, dim=-1)  # Q^T A Q: (B, V, V)
    projected = (projected + projected.transpose(1, 2)) / 2
    norms = torch.linalg.eigvalsh(projected)[..., -1].clamp_min(0).sqrt()
    return list(norms.split(rows))


def _generic_norms(
    policy: SoftmaxPolicy,
    levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    method: str,
    budget: int,
) -> list[torch.Tensor]:
    """``||J||_2`` for the states of each level ``(ids (S,), x (R, S, ...), prefixes (S, l))``: ``(R, S)`` each,
    in as few calls as ``budget`` numbers per call allow (levels share a call; a level too large is split)."""
    norms_of = _jacobian_norms if method == "jacobian" else _lanczos_norms
    replicas = policy.num_replicas
    chunk = max(1, budget // (replicas * policy.vocab_size * policy.num_parameters))  # states per call
    segments: list[list[tuple[int, int, int]]] = [[]]  # calls, each a list of (level, start, stop)
    room = chunk
    for level, (ids, _, _) in enumerate(levels):
        start = 0
        while start < ids.shape[0]:
            if room == 0:
                segments.append([])
                room = chunk
            stop = min(ids.shape[0], start + room)
            segments[-1].append((level, start, stop))
            room -= stop - start
            start = stop
    pieces: list[list[torch.Tensor]] = [[] for _ in levels]
    for call in segments:
        batches = [
            _StateBatch(policy, ids[start:stop], x[:, start:stop], prefixes[start:stop])
            for level, start, stop in call
            for ids, x, prefixes in [levels[level]]
        ]
        for (level, _, _), norms in zip(call, norms_of(policy, batches), strict=True):
            pieces[level].append(norms.reshape(replicas, -1))
    return [torch.cat(piece, dim=1) for piece in pieces]


def _flat_states(
    ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor, replicas: int, per_replica: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ids (N,)``, ``x`` ``(N, ...)`` shared or ``(R, N, ...)`` ``per_replica``, ``prefixes (N, M, l)`` -> one
    row per state: ``(N·M,)``, ``(R, N·M, ...)`` (shared inputs expanded, not copied), ``(N·M, l)`` (input-major)."""
    num_inputs, num_prefixes, level = prefixes.shape
    x = x if per_replica else x[None].expand(replicas, *x.shape)  # (R, N, ...)
    return (
        ids.repeat_interleave(num_prefixes),
        x.repeat_interleave(num_prefixes, dim=1),
        prefixes.reshape(num_inputs * num_prefixes, level),
    )


def _closed_form_norms(
    policy: SoftmaxPolicy, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor, per_replica: bool
) -> torch.Tensor | None:
    """:meth:`SoftmaxPolicy.closed_form_jacobian_norms` ``(R, N, M)`` (or ``None``) for shared inputs ``x (N, ...)``
    or per-replica inputs ``x (R, N, ...)``. Per replica: the closed form of all ``R·N`` inputs at once (a state's
    norm depends on its own input only), ``(R, R·N, M)``, of which replica ``r`` keeps its own block of ``N``."""
    if not per_replica:
        return policy.closed_form_jacobian_norms(ids, x, prefixes)
    replicas, num_inputs = x.shape[:2]
    all_inputs = torch.arange(replicas * num_inputs, device=ids.device)
    norms = policy.closed_form_jacobian_norms(all_inputs, x.flatten(0, 1), prefixes.repeat(replicas, 1, 1))
    if norms is None:
        return None
    blocks = norms.reshape(replicas, replicas, num_inputs, -1)  # (R, R', N, M): replica r on replica r''s inputs
    return blocks.diagonal(dim1=0, dim2=1).permute(2, 0, 1)  # (R, N, M)


def jacobian_spectral_norms(
    policy: SoftmaxPolicy,
    ids: torch.Tensor,
    x: torch.Tensor,
    prefixes: torch.Tensor,
    method: str = "jacobian",
    budget: int = JACOBIAN_BUDGET,
) -> torch.Tensor:
    """``||∂(f_θ(x_n, u)/T)/∂θ||_2`` for each replica, input and prefix: ``(N, M, l) -> (R, N, M)``.

    ``method``: one of :data:`GAMMA_METHODS` for policies without a closed form (``"lanczos"``
    agrees with ``"jacobian"`` to a relative 1e-10 or better in float64; tests/theory/test_fast_check.py);
    ``budget``: numbers (states · V · P) one batched call may hold.
    """
    _check_method(method)
    closed = policy.closed_form_jacobian_norms(ids, x, prefixes)
    if closed is not None:
        return closed
    num_inputs, num_prefixes, _ = prefixes.shape
    (norms,) = _generic_norms(policy, [_flat_states(ids, x, prefixes, policy.num_replicas, False)], method, budget)
    return norms.reshape(policy.num_replicas, num_inputs, num_prefixes)


def gamma(
    policy: SoftmaxPolicy,
    env: RewardEnv | ReplicaEnvs,
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    method: str = "jacobian",
    budget: int = JACOBIAN_BUDGET,
) -> torch.Tensor:
    r"""``γ(x;θ) = max_l max_{u ∈ [V]^l} ||J_l(x, u)||_2`` for each replica and input: ``(R, N)``.

    .. math::

        \gamma(x;\theta) = \max_{0 \le l < L}\; \max_{u \in [V]^l} \lVert J_l(x, u) \rVert_2, \qquad
        J_l(x, u) = \frac{\partial\, f_\theta(x, u) / T}{\partial \theta} \in \mathbb{R}^{V \times P},

    the Jacobian factor of Theorem 1 (Razin et al., ICLR 2024, Theorem 1; docs/paper.md §2); the
    maximum runs over *all* prefixes :math:`u`, likely or not. ``env`` may be one environment per replica
    (:class:`~rftgrad.theory.batched.ReplicaEnvs`: replica ``r`` on environment ``r``'s inputs). Enumerates
    all ``Σ_{l<L} V^l`` prefixes, so it refuses output spaces past ``max_outputs``. Policies without a closed form run
    every prefix of every level in one batched call (``budget`` permitting: numbers, states · V · P,
    per call). ``method`` (:data:`GAMMA_METHODS`): ``"jacobian"`` (the full Jacobian, reference and
    default: the faster one for the tiny MLPs and transformers of ``rftgrad check``, V <= 6, measured
    in benchmarks/check.py) or ``"lanczos"`` (matrix-free, ``V`` Lanczos steps; equal to the full
    Jacobian's γ to a relative 1e-10 in float64, tested).
    """
    _check_method(method)
    space = env.output_space
    space.check_enumerable(max_outputs)
    x, per_replica = engine_inputs(policy, env)  # (N, ...), or (R, N, ...) per replica
    num_inputs, replicas = env.num_inputs, policy.num_replicas
    ids = torch.arange(num_inputs, device=policy.device)
    prefixes = [space.prefixes(level, policy.device)[None].expand(num_inputs, -1, -1) for level in range(space.length)]
    closed = [_closed_form_norms(policy, ids, x, p, per_replica) for p in prefixes]  # each (R, N, V^l) or None
    if all(c is not None for c in closed):
        return torch.stack([c.amax(-1) for c in closed]).amax(0)
    states = [_flat_states(ids, x, p, replicas, per_replica) for p in prefixes]  # per level: (N·V^l,), x, (N·V^l, l)
    norms = _generic_norms(policy, states, method, budget)  # per level (R, N·V^l)
    per_level = [n.reshape(replicas, num_inputs, -1).amax(-1) for n in norms]  # each (R, N)
    return torch.stack(per_level).amax(0)
