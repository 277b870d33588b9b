"""Pretraining: cross-entropy toward a target distribution, and a pretrained transformer cached on disk.

Part 1, :func:`pretrain`. The controlled experiments (docs/paper.md §4, step 1) pretrain the policy to spread its
probability uniformly over a *set* of outputs per input (the k-label set of its class, or
the output set of its prompt group), so the finetuning start is uncertain, like a language
model, rather than near-deterministic. The loss of replica ``r`` is

    ℓ_r(θ) = −(1/N) Σ_n Σ_s q_ns · log p_θ(y_ns | x_n),      Σ_s q_ns = 1,

minimised full batch with Adam (one state per replica). It is deterministic: the same
policy and arguments give the same parameters.

:class:`PretrainedPolicies` is the policy factory the finetuning experiments share: pretrain once
per set of seeds, then every arm starts from a copy of those weights.

Part 2, a pretrained tiny transformer for the synthetic language, cached on disk.

:func:`pretrained_transformer` fits a :class:`TinyTransformerPolicy` to a pretraining
mixture (:func:`rftgrad.envs.language.pretraining_mixture`) with
:func:`rftgrad.finetune.pretraining.pretrain`: full-batch Adam on

    ℓ(θ) = −(1/N) Σ_n Σ_s q_ns · log p_θ(y_ns | x_n),

deterministic from the seed (on the CPU it runs on one thread, so the weights do not depend on
the machine's thread count, which changes float32 sums). The weights are cached as ``<key>.pt`` with its sha256 in
``<key>.pt.sha256``, where ``key`` hashes everything that determines them: the prompts,
targets and sizes of the environment, the mixture, steps, lr, seed, model sizes, dtype,
device type and the torch version (the reward does not enter: pretraining never reads it).
Both files are written atomically (a temporary file renamed into place). On load the
checksum is verified; a missing checksum, a mismatch or an unreadable file means a
warning and a fresh pretraining, never a crash.

Cache folder: the ``cache_dir`` argument, else ``$RFTGRAD_CACHE``, else
``~/.cache/rftgrad``; files go to its ``pretrained/`` subfolder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rftgrad.envs.base import RewardEnv
from rftgrad.envs.language import Mixture
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.finetune.config import ReplicaSettings, TrainConfig
from rftgrad.finetune.optim import Adam
from rftgrad.finetune.trainer import TrainResult, group_means, per_input_metrics, train
from rftgrad.models.base import Params, SoftmaxPolicy
from rftgrad.models.build import build_policy
from rftgrad.models.transformer import TinyTransformerPolicy
from rftgrad.results import atomic_write_text, config_fingerprint
from rftgrad.runtime import resolve_device, resolve_dtype, torch_threads

#: bump when the cache format or the pretraining recipe changes (invalidates old files).
CACHE_VERSION = 2


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
        * ``policy``: the policy (all ``R`` replicas are trained, each with its own Adam state).
        * ``env``: supplies the inputs.
        * ``outputs``: ``(N, S, L)`` the outputs each input's target distribution puts mass on.
        * ``weights``: ``(N, S)`` their probabilities ``q`` (rows sum to 1); default uniform.
        * ``steps``: Adam steps (full batch).
        * ``lr``: Adam learning rate.
        * ``progress``: show a progress bar.
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


class PretrainedPolicies:
    """Policy factory for :func:`rftgrad.finetune.train`: every arm starts from the same pretrained weights.

    The first call for a set of seeds builds the policy (``policy``, a name of
    :data:`rftgrad.models.POLICIES`, sized for ``env``; linear policies on the input features,
    MLPs with one hidden layer of ``hidden``, which other policies ignore) and pretrains it at
    temperature 1 toward ``pretrain_outputs`` ``(N, k, L)`` (uniform over each input's set) with :func:`pretrain`
    (``steps`` full-batch Adam steps at ``lr``); every call returns a fresh policy holding a copy
    of the cached weights, sampling at the replicas' temperatures (a higher temperature flattens
    the pretrained distribution, as when sampling a pretrained model hotter). ``losses[seeds]``
    holds the final pretraining loss per replica.
    """

    def __init__(
        self,
        policy: str,
        env: RewardEnv,
        pretrain_outputs: torch.Tensor,
        *,
        steps: int,
        lr: float,
        progress: bool,
        hidden: int = 64,
    ) -> None:
        self.policy, self.env, self.pretrain_outputs = policy, env, pretrain_outputs
        self.hidden, self.steps, self.lr, self.progress = hidden, steps, lr, progress
        self.weights: dict[tuple[int, ...], Params] = {}  # seeds -> pretrained params
        self.losses: dict[tuple[int, ...], torch.Tensor] = {}  # seeds -> (R,) final pretraining loss

    def __call__(self, settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        policy = build_policy(self.policy, self.env, settings.seeds, device, dtype, features="input",
                              hidden=(self.hidden,))  # fmt: skip
        key = tuple(settings.seeds)
        if key not in self.weights:
            self.losses[key] = pretrain(
                policy, self.env, self.pretrain_outputs, None, self.steps, self.lr, progress=self.progress
            )
            self.weights[key] = {name: value.clone() for name, value in policy.params.items()}
        policy.params = {name: value.clone() for name, value in self.weights[key].items()}
        policy.set_temperature(settings.temperature)
        return policy

    def finetune(
        self,
        trainer: TrainConfig,
        checkpoint_dir: Path,
        eval_envs: dict[str, RewardEnv] | None = None,
        run_key: Mapping[str, Any] | None = None,
        phase_inputs: Mapping[str, torch.Tensor] | None = None,
    ) -> TrainResult:
        """Train ``trainer``'s arms on the pretraining environment from the cached pretrained weights
        (:func:`rftgrad.finetune.train`). ``run_key`` (default: the trainer config) identifies the run
        whose checkpoints ``checkpoint_dir`` may hold: give the experiment's whole config, so that a
        run of another task never resumes from them. ``phase_inputs`` (arm -> ``(R, N)`` bool) chooses
        the inputs of an arm's first phase (:func:`rftgrad.finetune.train`)."""
        return train(
            self,
            self.env,
            trainer,
            eval_envs=eval_envs,
            checkpoint_dir=checkpoint_dir,
            run_key=dataclasses.asdict(trainer) if run_key is None else run_key,
            progress=self.progress,
            phase_inputs=phase_inputs,
        )

    def pretraining_table(self, settings: ReplicaSettings) -> pd.DataFrame:
        """Per replica: the final pretraining loss next to ln k, the loss of the uniform set."""
        losses = self.losses[tuple(settings.seeds)].double().cpu().numpy()
        uniform_set_loss = np.log(self.pretrain_outputs.shape[1])
        replicas = range(settings.num_replicas)
        return pd.DataFrame({"replica": replicas, "loss": losses, "uniform_set_loss": uniform_set_loss})


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$RFTGRAD_CACHE``, else ``~/.cache/rftgrad``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("RFTGRAD_CACHE") or Path.home() / ".cache" / "rftgrad")


def _digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and values (CPU, contiguous)."""
    t = tensor.detach().cpu().contiguous()
    head = f"{t.dtype}{tuple(t.shape)}".encode()
    return hashlib.sha256(head + t.numpy().tobytes()).hexdigest()


def cache_key(env: RewardEnv, mixture: Mixture, **settings: object) -> str:
    """sha256 (hex) of the environment's prompts/targets/sizes, the mixture and ``settings``."""
    spec = {
        "version": CACHE_VERSION,
        "torch": torch.__version__,
        "prompts": _digest(env.prompts),
        "targets": _digest(env.targets),
        "vocab_size": env.output_space.vocab_size,
        "prompt_vocab_size": env.prompt_vocab_size,
        "outputs": _digest(torch.as_tensor(mixture.outputs).long()),
        "weights": _digest(torch.as_tensor(mixture.weights, dtype=torch.float64)),
        **{key: str(value) for key, value in settings.items()},
    }
    return config_fingerprint(spec)


def _load_cached(path: Path, policy: TinyTransformerPolicy) -> bool:
    """Load verified weights from ``path`` into ``policy``; False (with a warning) if unusable."""
    checksum = path.with_name(path.name + ".sha256")
    if not path.exists():
        return False
    try:
        data = path.read_bytes()
        expected = checksum.read_text(encoding="utf-8").strip() if checksum.exists() else None
        if expected != hashlib.sha256(data).hexdigest():
            raise ValueError("missing checksum" if expected is None else "sha256 checksum mismatch")
        params = torch.load(io.BytesIO(data), map_location=policy.device, weights_only=True)
        if set(params) != set(policy.params) or any(params[k].shape != policy.params[k].shape for k in params):
            raise ValueError("parameter names or shapes differ from the model")
    except Exception as error:  # noqa: BLE001 - any unusable cache file means: recompute
        warnings.warn(f"pretrained cache {path} unusable ({error}); pretraining again", RuntimeWarning, stacklevel=3)
        return False
    policy.params = {key: value.to(policy.device, policy.dtype) for key, value in params.items()}
    return True


def pretrained_transformer(
    env: RewardEnv,
    mixture: Mixture,
    steps: int = 1500,
    lr: float = 0.01,
    seed: int = 0,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> TinyTransformerPolicy:
    """A one-replica transformer pretrained on ``mixture`` (loaded from the cache when present).

    Args:
        * ``env``: a sequence environment (e.g. :func:`rftgrad.envs.language.language_env`).
        * ``mixture``: targets ``outputs (N, S, L)`` and weights ``(N, S)`` of each prompt.
        * ``steps``, ``lr``: full-batch Adam steps and learning rate.
        * ``seed``: initialisation seed (pretraining itself is deterministic).
        * ``d_model``, ``num_layers``, ``num_heads``: model sizes.
        * ``dtype``, ``device``: where the model lives (both enter the cache key).
        * ``cache_dir``: cache folder (default ``$RFTGRAD_CACHE`` or ``~/.cache/rftgrad``).
        * ``progress``: show a progress bar while pretraining.
    """
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    policy = TinyTransformerPolicy.for_env(
        env, d_model=d_model, num_heads=num_heads, num_layers=num_layers, seed=int(seed), dtype=dtype, device=device
    )
    key = cache_key(
        env,
        mixture,
        steps=int(steps),
        lr=float(lr),
        seed=int(seed),
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        dtype=dtype,
        device=device.type,
    )
    path = cache_root(cache_dir) / "pretrained" / f"transformer-{key}.pt"
    if _load_cached(path, policy):
        return policy
    # float32 sums depend on the thread count: one thread gives every CPU the same weights
    with torch_threads(1 if device.type == "cpu" else None):
        pretrain(policy, env, mixture.outputs, mixture.weights, steps=steps, lr=lr, progress=progress)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in policy.params.items()}, buffer)
    data = buffer.getvalue()
    atomic_write_text(path, data)
    atomic_write_text(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest() + "\n")
    return policy


def task_summary(policy: TinyTransformerPolicy, env: RewardEnv, std_threshold: float = 0.1) -> pd.DataFrame:
    """Exact per-group (task) ``reward_mean``, ``reward_std`` and ``frac_stalled`` of replica 0.

    ``frac_stalled`` is the share of inputs with ``STD < std_threshold`` and ``V`` more than
    half the reward range below the input's best reward
    (:func:`rftgrad.finetune.trainer.per_input_metrics`).
    """
    metrics = per_input_metrics(policy, env, with_grad_norm=False, std_threshold=std_threshold)  # (R, N) each
    masks = {name: mask[None, :].to(policy.device) for name, mask in env.group_masks().items()}  # (1, N)
    rows = {
        name: {
            column: float(group_means(metrics[metric], {name: masks[name]})[name][0])
            for column, metric in (
                ("reward_mean", "reward_mean"),
                ("reward_std", "reward_std"),
                ("frac_stalled", "stalled"),
            )
        }
        for name in masks
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group").reset_index()
