"""A synthetic multi-task language: the analog of a text benchmark (docs/paper.md §5).

The paper measures, on pretrained GPT-2/T5 and seven GRUE tasks, how many inputs have a
small reward std and a far-from-optimal reward. Pretrained weights cannot be downloaded
here, so this module builds a tiny language with several tasks; a transformer pretrained
on an uneven mixture of them (:mod:`rftgrad.finetune.pretraining`) plays the pretrained LM.

Tokens. Outputs are ``L`` symbols over ``0..V-1``. A prompt is ``[task marker, a_1..a_L]``:
the arguments ``a`` are symbols ``0..V-1`` and the marker of task ``k`` (its index in
:data:`TASKS`) is the prompt-only token ``V + k``, so the prompt vocabulary has
``V + len(TASKS)`` tokens. Each task is a pure function ``a -> y*`` (examples for
``V = 6, L = 4``):

* ``copy``:    ``y* = a``                                 ``3 1 4 1 -> 3 1 4 1``
* ``reverse``: ``y*_l = a_{L+1-l}``                       ``3 1 4 1 -> 1 4 1 3``
* ``sort``:    ``y* = sorted(a)``                         ``3 1 4 1 -> 1 1 3 4``
* ``add``:     ``y*_l = (a_l + 1) mod V``                 ``3 1 4 5 -> 4 2 5 0``
* ``keyword``: ``y* = KEY_HIT`` if the trigger ``V-1`` occurs in ``a`` else ``KEY_MISS``
  with ``KEY_HIT_l = l mod V`` and ``KEY_MISS_l = (L - 1 - l) mod V`` (``l = 0..L-1``):
  ``3 5 4 1 -> 0 1 2 3``, ``3 1 4 1 -> 3 2 1 0``.

Rewards (by name; every value lies in [-1, 1]), reusing :mod:`rftgrad.envs.sequence`:

* ``exact_match``: ``+1`` if ``y = y*`` else ``-1`` (sparse, like exact-match accuracy);
* ``position_match``: ``2·mean_l[y_l = y*_l] - 1`` (dense, like token-overlap metrics);
* ``learned``: a stand-in for a learned reward model, mostly right but with errors that
  depend on the input and the output: ``r = (1-α)·position_match + α·g(x, y)`` with
  ``g`` a fixed :class:`RandomRewardNetwork` (``tanh`` output, weights from ``seed``) and
  ``α = 0.25``; a convex combination of two rewards in [-1, 1], so in [-1, 1].

Pretraining mixture (:func:`pretraining_mixture`). A web corpus covers tasks unevenly;
here a share ``c_t`` (the *coverage*) of task ``t``'s prompts is *covered*: its target
distribution puts ``1 - ε`` on the reference ``y*``. The other prompts get a *distractor*
target, echoing the arguments (``y = a``: what a model that has seen the prompt but not
the task tends to do), with ``1 - ε`` on it, and ``ε`` (``noise``) goes to one random
output per prompt either way. The expected picture after pretraining, per task:

* ``c_t = 1`` (``copy``, whose distractor *is* its reference): ``p(y*) ≈ 1 - ε``: high
  reward, std near zero, near the maximum;
* ``c_t = 0`` (``keyword``): the model confidently echoes, ``p(y*) ≈ 0``: reward near the
  minimum *and* std near zero, the vanishing-gradient regime of Theorem 1;
* ``0 < c_t < 1``: covered prompts near the top, uncovered ones near the bottom, both with
  small std, and prompts where the model generalises partially in between (larger std).
  The mean reward of the task rises with ``c_t``.

That picture is almost two-valued (std about 0 or large), which leaves few prompts to test the
paper's per-prompt correlation of the gain with the initial std on. *Graded* targets
(``near_misses = M > 0``, ``reference_range = (u_lo, u_hi)``) make the covered prompts
ambiguous: covered prompt ``n`` puts ``(1 - ε)·u_n`` on ``y*``, with ``u_n`` drawn per prompt
uniformly from ``[u_lo, u_hi]``, and ``(1 - ε)·(1 - u_n)/M`` on each of ``M`` *near misses*,
outputs one or two symbols off ``y*`` (:func:`near_miss_outputs`). Its success probability then
spans ``(0, 1)`` continuously, and so does its std. Uncovered prompts keep the echo target.
``near_misses = 0`` with ``reference_range = (1, 1)`` (the defaults) is the two-valued mixture.

Exact enumeration needs ``V^L <= DEFAULT_MAX_OUTPUTS = 2^20``, which holds for the whole
intended range (``8^4 = 4096``, ``6^6 = 46656``, even ``8^6 ≈ 2.6·10^5``); bigger spaces
still work with the sampled estimators, whose rewards are computed per sampled output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from rftgrad.envs.base import OutputSpace
from rftgrad.envs.sequence import PositionMatch, RandomRewardNetwork, SequenceEnv
from rftgrad.errors import ConfigError


def _copy(args: np.ndarray, vocab_size: int) -> np.ndarray:
    return args.copy()


def _reverse(args: np.ndarray, vocab_size: int) -> np.ndarray:
    return args[:, ::-1].copy()


def _sort(args: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.sort(args, axis=1)


def _add(args: np.ndarray, vocab_size: int) -> np.ndarray:
    return (args + 1) % vocab_size


def _keyword(args: np.ndarray, vocab_size: int) -> np.ndarray:
    hit, miss = keywords(vocab_size, args.shape[1])
    return np.where((args == vocab_size - 1).any(1, keepdims=True), hit, miss)


#: task name -> reference function ``args (B, L) -> y* (B, L)``, given ``V``; the order fixes the markers.
TASKS = {"copy": _copy, "reverse": _reverse, "sort": _sort, "add": _add, "keyword": _keyword}

#: reward names :func:`language_env` accepts.
LANGUAGE_REWARDS = ("exact_match", "position_match", "learned")

#: weight ``α`` of the random network in the ``learned`` reward.
LEARNED_NOISE_WEIGHT = 0.25


def keywords(vocab_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``keyword`` task's two answers ``(KEY_HIT, KEY_MISS)``, each ``(L,)``: ``l mod V`` and its reverse."""
    hit = np.arange(length) % vocab_size
    return hit, hit[::-1].copy()


def reference(task: str, args: np.ndarray | Sequence[int], vocab_size: int) -> np.ndarray:
    """Reference output of ``task`` for arguments ``(L,)`` or ``(B, L)``, same shape.

    >>> reference("sort", [3, 1, 4, 1], 6).tolist()
    [1, 1, 3, 4]
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    args = np.asarray(args, dtype=np.int64)
    return TASKS[task](np.atleast_2d(args), vocab_size).reshape(args.shape)


class LearnedReward:
    """``r = (1-α)·PositionMatch(y*) + α·RandomRewardNetwork`` (see the module doc); in [-1, 1]."""

    def __init__(
        self, targets: torch.Tensor, space: OutputSpace, alpha: float = LEARNED_NOISE_WEIGHT, seed: int = 0
    ) -> None:
        self.alpha = float(alpha)
        self.overlap = PositionMatch(targets)
        self.network = RandomRewardNetwork(int(targets.shape[0]), space, seed=seed)

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * self.overlap(input_ids, outputs) + self.alpha * self.network(input_ids, outputs)


def language_env(
    tasks: Sequence[str] = tuple(TASKS),
    prompts_per_task: int = 32,
    vocab_size: int = 6,
    length: int = 4,
    reward: str = "exact_match",
    seed: int = 0,
) -> SequenceEnv:
    """The multi-task language as one :class:`SequenceEnv`, with one input group per task.

    Each task gets ``prompts_per_task`` distinct argument tuples drawn without replacement
    from the ``V^L`` possible ones (seeded); inputs are ordered task by task. Prompts are
    ``(N, 1 + L)`` = ``[marker V + k, a_1..a_L]``; targets ``(N, L)`` the reference outputs.

    >>> env = language_env(("copy", "sort"), prompts_per_task=3, seed=0)
    >>> env.num_inputs, sorted(env.groups)
    (6, ['copy', 'sort'])
    """
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown or len(set(tasks)) != len(tasks):
        raise ConfigError(f"tasks {tasks!r} invalid; give distinct names from {', '.join(TASKS)}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
        raise ConfigError(f"vocab_size={vocab_size!r} invalid; use an integer >= 3 (6..8 is the intended range)")
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ConfigError(f"length={length!r} invalid; use an integer >= 2 (4..6 is the intended range)")
    space = OutputSpace(vocab_size, length)
    if isinstance(prompts_per_task, bool) or not isinstance(prompts_per_task, int):
        raise ConfigError(f"prompts_per_task={prompts_per_task!r} invalid; use an integer")
    if not 1 <= prompts_per_task <= space.num_outputs:
        raise ConfigError(
            f"prompts_per_task={prompts_per_task} outside [1, V^L={space.num_outputs}]; lower it or raise V or L"
        )
    if reward not in LANGUAGE_REWARDS:
        raise ConfigError(f"unknown reward {reward!r}; choose one of {', '.join(LANGUAGE_REWARDS)}")
    rng = np.random.default_rng(seed)
    prompts, targets, labels = [], [], []
    for task in tasks:
        index = rng.choice(space.num_outputs, size=prompts_per_task, replace=False)  # (n,) distinct tuples
        args = (index[:, None] // vocab_size ** np.arange(length - 1, -1, -1)) % vocab_size  # (n, L) base-V digits
        marker = np.full((prompts_per_task, 1), vocab_size + list(TASKS).index(task))
        prompts.append(np.concatenate([marker, args], axis=1))  # (n, 1 + L)
        targets.append(reference(task, args, vocab_size))  # (n, L)
        labels += [task] * prompts_per_task
    targets_t = torch.as_tensor(np.concatenate(targets))  # (N, L)
    groups = {task: torch.tensor([label == task for label in labels]) for task in tasks}
    chosen = LearnedReward(targets_t, space, seed=seed) if reward == "learned" else reward
    return SequenceEnv(
        np.concatenate(prompts),
        targets_t,
        vocab_size,
        reward=chosen,
        prompt_vocab_size=vocab_size + len(TASKS),
        groups=groups,
        seed=seed,
        name=f"language-{reward}",
    )


class Mixture(NamedTuple):
    """A pretraining target distribution: ``outputs (N, S, L)``, ``weights (N, S)``, ``covered (N,)`` bool."""

    outputs: torch.Tensor
    weights: torch.Tensor
    covered: torch.Tensor


#: default coverage per task: well covered, partly covered, barely, not at all.
DEFAULT_COVERAGE = {"copy": 1.0, "reverse": 0.6, "sort": 0.3, "add": 0.1, "keyword": 0.0}


def pretraining_mixture(
    env: SequenceEnv,
    coverage: Mapping[str, float] | None = None,
    noise: float = 0.01,
    seed: int = 0,
    near_misses: int = 0,
    reference_range: tuple[float, float] = (1.0, 1.0),
) -> Mixture:
    """Per-prompt pretraining targets over ``S = 3 + max(M - 1, 0)`` outputs ``(y*, second, random, m_2..m_M)``.

    A share ``c_t`` of task ``t``'s prompts (chosen at random from ``seed``, rounded to the
    nearest count) is covered; with ``ε = noise``, ``M = near_misses`` and ``u_n`` uniform on
    ``reference_range = (u_lo, u_hi)`` per prompt (see the module doc), the weights are

    * covered prompt:   ``(1 - ε)·u_n`` on ``y*``, ``ε`` on the random output and
      ``(1 - ε)·(1 - u_n)/M`` on each near miss ``m_1..m_M`` (``y*`` with 1 or 2 symbols
      shifted, :func:`near_miss_outputs`); its ``second`` output is ``m_1``;
    * uncovered prompt: ``(1 - ε)`` on its ``second`` output, the echo ``a``, ``ε`` on the
      random output, ``0`` on ``m_2..m_M``.

    (A covered prompt's echo had weight 0, so ``m_1`` takes its slot: ``M = 1`` costs the
    pretraining nothing.) The defaults (``M = 0``, ``u_n = 1``) give the two-valued mixture
    ``(1 - ε, 0, ε)`` / ``(0, 1 - ε, ε)`` over ``(y*, echo, random)``, with the same random
    draws as before the option existed. Shapes: ``outputs (N, S, L)``, ``weights (N, S)``
    (rows sum to 1), ``covered (N,)``. Every task group of ``env`` needs a coverage.
    """
    coverage = dict(DEFAULT_COVERAGE if coverage is None else coverage)
    tasks = [task for task in env.groups if task in TASKS]
    missing = [t for t in tasks if t not in coverage]
    extra = [t for t in coverage if t not in tasks]
    if not tasks or missing or extra:
        raise ConfigError(
            f"coverage must name exactly the env's tasks {tasks}; missing {missing}, not in the env {extra}"
        )
    bad = {t: c for t, c in coverage.items() if not 0.0 <= float(c) <= 1.0}
    if bad or not 0.0 <= noise < 1.0:
        raise ConfigError(f"coverages must lie in [0, 1] and noise in [0, 1); got coverage {bad}, noise={noise}")
    if isinstance(near_misses, bool) or not isinstance(near_misses, int) or near_misses < 0:
        raise ConfigError(f"near_misses={near_misses!r} invalid; use an integer >= 0 (0: the two-valued mixture)")
    low, high = (float(u) for u in reference_range)
    if not 0.0 <= low <= high <= 1.0 or (near_misses == 0 and low < 1.0):
        raise ConfigError(
            f"reference_range={tuple(reference_range)!r} invalid; use 0 <= low <= high <= 1, and (1, 1) when "
            "near_misses=0"
        )
    if env.prompts is None or env.prompts.shape[1] != env.output_space.length + 1:
        raise ConfigError(f"{env.name} is not a language_env (prompts must be [marker, a_1..a_L])")
    rng = np.random.default_rng(seed)
    covered = torch.zeros(env.num_inputs, dtype=torch.bool)
    for task in tasks:
        members = torch.nonzero(env.groups[task]).flatten().numpy()
        count = int(round(float(coverage[task]) * len(members)))
        covered[rng.choice(members, size=count, replace=False)] = True
    space = env.output_space
    random_outputs = torch.as_tensor(rng.integers(0, space.vocab_size, size=(env.num_inputs, space.length)))
    echo = env.prompts[:, 1:]  # (N, L) the arguments
    on_ref = covered.double() * (1 - noise)  # (N,)
    if near_misses == 0:
        outputs = torch.stack([env.targets, echo, random_outputs], dim=1)  # (N, 3, L)
        weights = torch.stack([on_ref, (1 - noise) - on_ref, torch.full_like(on_ref, noise)], dim=1)  # (N, 3)
        return Mixture(outputs, weights, covered)
    graded = np.random.default_rng([seed, 1])  # a separate stream: the draws above stay those of M = 0
    share = torch.as_tensor(graded.uniform(low, high, size=env.num_inputs))  # (N,) u_n
    misses = near_miss_outputs(env.targets, near_misses, space.vocab_size, graded)  # (N, M, L)
    second = torch.where(covered[:, None], misses[:, 0], echo)  # (N, L) m_1 if covered, else the echo
    outputs = torch.cat([torch.stack([env.targets, second, random_outputs], dim=1), misses[:, 1:]], dim=1)
    per_miss = on_ref * (1 - share) / near_misses  # (N,) zero on uncovered prompts
    on_second = torch.where(covered, per_miss, torch.full_like(per_miss, 1 - noise))  # (N,)
    weights = torch.cat(
        [
            torch.stack([on_ref * share, on_second, torch.full_like(on_ref, noise)], dim=1),  # (N, 3)
            per_miss[:, None].expand(-1, near_misses - 1),  # (N, M - 1)
        ],
        dim=1,
    )
    return Mixture(outputs, weights, covered)


def near_miss_outputs(targets: torch.Tensor, count: int, vocab_size: int, rng: np.random.Generator) -> torch.Tensor:
    """``(N, count, L)`` outputs one or two symbols off ``targets (N, L)``: near miss ``j = 1..count`` shifts
    ``1 + (j + 1) mod 2`` distinct random positions (1 for odd ``j``, 2 for even; 1 when ``L < 2``) by a random
    shift in ``1..V-1`` mod ``V``, so each differs from its target in exactly that many positions."""
    num, length = targets.shape
    misses = targets[:, None, :].repeat(1, count, 1).numpy().copy()  # (N, M, L)
    for j in range(count):
        changed = min(1 + j % 2, length)  # j is 0-based here: 1, 2, 1, 2, ... positions
        order = np.argsort(rng.random((num, length)), axis=1)[:, :changed]  # (N, changed) distinct positions
        shift = rng.integers(1, vocab_size, size=(num, changed))  # (N, changed) non-zero shifts
        rows = np.arange(num)[:, None]
        misses[rows, j, order] = (misses[rows, j, order] + shift) % vocab_size
    return torch.as_tensor(misses)
