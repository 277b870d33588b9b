"""The ``rftgrad`` command line.

Commands::

    rftgrad list                 environments, policies and experiments
    rftgrad exact [options]      exact V, STD, ||∇V|| and γ for a policy on an environment
    rftgrad check [options]      Theorem 1's bounds on many random policies; exit 1 on a violation
    rftgrad run NAME [options]   run an experiment: records, score and figures in --out
                                 (--config FILE.toml, --set key=value, --device, --seeds, --show-config)
    rftgrad sweep NAME [options] one run per point of --grid KEY=V1,V2,... (--executor ray): sweep.csv, sweep.png
    rftgrad figures [options]    run what is missing and draw every figure (--only, --full; --gallery: into
                                 the checkout's paper_figures/, else runs/figures/<budget>/gallery/)
    rftgrad diagnose FILE        which prompts of a rollout log (JSONL/CSV) are in the vanishing-gradient
                                 regime: per-prompt reward mean/STD, frac_reward_zero_std, a scatter in --out
    rftgrad preflight [options]  before RFT: per-prompt reward mean/STD under a local model (exact where the
                                 outputs enumerate, else sampled), the stalled share, frac_reward_zero_std at G

Bad input ends with a one-line ``rftgrad: error: ...`` message and exit code 2 (numbers are checked
for range and finiteness as the command line is parsed; output folders are claimed before any work,
:func:`rftgrad.results.claim_run_dir`); any other error is a bug of rftgrad's and shows its traceback,
a line asking for a report, and exit code 1.

Threads: ``exact``, ``check``, ``run``, ``sweep``, ``figures`` and ``preflight`` take ``--threads N``; without it a
command runs with ``OMP_NUM_THREADS`` intra-op threads if that is set, else one (:func:`rftgrad.runtime.choose_threads`
says why), and every ``environment.json`` records the count and its source.

Executors: ``sweep``, ``figures`` and ``check`` split their work into units (a grid point, a figure's run, a chunk
of instances) that run in this process (``--executor serial``, the default) or as Ray tasks (``--executor ray``,
a local Ray instance, or the cluster at ``--address``), each with the command's thread count
(:mod:`rftgrad.executors`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pandas as pd
import torch

from rftgrad import __version__
from rftgrad.configs import describe_config
from rftgrad.diagnose import (
    DEFAULT_SAMPLES,
    EXPORT_NOTE,
    GROUP_SIZES,
    PREFLIGHT_MAX_OUTPUTS,
    SCALE_REWARDS,
    TO_LABEL_SUFFIX,
    diagnose,
    format_preflight,
    format_summary,
    run_preflight,
    to_label_path,
)
from rftgrad.envs import ENV_SETTINGS, ENVIRONMENTS, REWARDS, RewardEnv, build_env
from rftgrad.errors import ConfigError, RftgradError, first_line
from rftgrad.executors import EXECUTORS, Executor, make_executor
from rftgrad.experiments import EXPERIMENTS, default_run_dir, experiment_module, run_experiment
from rftgrad.models import FEATURE_MAPS, POLICIES, SoftmaxPolicy, build_policy
from rftgrad.results import claim_output_dir, claim_run_dir, config_fingerprint, write_run
from rftgrad.runtime import DEFAULT_CPU_THREADS, choose_threads, use_threads
from rftgrad.theory import exact, gamma
from rftgrad.theory.check import CHECK_CHUNK, run_check
from rftgrad.theory.instances import HF_POLICY_KINDS, POLICY_KINDS, draw_specs

__all__ = [
    "BUG_REPORT",
    "build_parser",
    "main",
]


#: the ``exact`` options that set an environment, by the :func:`rftgrad.envs.build_env` argument each one sets.
ENV_ARGUMENTS: dict[str, str] = {
    "inputs": "num_inputs", "vocab": "vocab_size", "length": "length", "reward": "reward", "rewards": "bandit_rewards",
}  # fmt: skip
#: the ``exact`` options each policy reads.
POLICY_OPTIONS: dict[str, frozenset[str]] = {
    "tabular": frozenset(),
    "linear": frozenset({"features"}),
    "mlp": frozenset({"hidden"}),
    "transformer": frozenset({"d_model", "layers"}),
}
#: what ``exact`` uses for an option its environment or policy reads when it is not given.
EXACT_DEFAULTS: dict[str, object] = {
    "inputs": 4, "vocab": 4, "length": 3, "reward": "exact_match", "rewards": (1.0, -1.0, -1.0, 0.5),
    "features": "input_last_token", "hidden": (64,), "d_model": 32, "layers": 2,
}  # fmt: skip


def _exact_options(args: argparse.Namespace) -> dict[str, object]:
    """The environment and policy options of ``exact``, defaults filled in; an option given explicitly that
    the chosen ``--env`` / ``--policy`` does not read raises :class:`ConfigError` (it would be ignored)."""
    env_reads = {option for option, argument in ENV_ARGUMENTS.items() if argument in ENV_SETTINGS[args.env]}
    used = env_reads | POLICY_OPTIONS[args.policy]
    ignored = [name for name in EXACT_DEFAULTS if getattr(args, name) is not None and name not in used]
    if ignored:
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise ConfigError(f"{flags} not used by --env {args.env} with --policy {args.policy}; drop it")
    return {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in EXACT_DEFAULTS.items()}  # fmt: skip


def _build_env(args: argparse.Namespace) -> RewardEnv:
    """The training environment named by ``--env`` with the size options that apply to it."""
    opts = _exact_options(args)
    return build_env(args.env, opts["inputs"], opts["vocab"], opts["length"], opts["reward"], args.seed,
                     list(opts["rewards"]))[0]  # fmt: skip


def _build_policy(args: argparse.Namespace, env: RewardEnv) -> SoftmaxPolicy:
    """The policy named by ``--policy``, sized for ``env``, optionally set to ``--p0`` on the targets."""
    opts = _exact_options(args)
    policy = build_policy(
        args.policy,
        env,
        args.seed,
        device=args.device,
        dtype=args.dtype,
        temperature=args.temperature,
        features=opts["features"],
        hidden=tuple(opts["hidden"]),
        d_model=opts["d_model"],
        num_layers=opts["layers"],
        num_replicas=args.replicas,
        max_outputs=args.max_outputs,
    )
    if args.p0 is not None:
        policy.set_output_probability(env, args.p0)
    return policy


#: options that say where and how to write, not what to compute (left out of a run's fingerprint).
NOT_IN_FINGERPRINT = ("handler", "out", "overwrite", "no_progress", "executor", "address", "chunk_size")


def _run_config(args: argparse.Namespace) -> dict[str, object]:
    """The command's options, as stored in a run directory's config.json."""
    return {key: value for key, value in vars(args).items() if key != "handler"}


def _fingerprint(args: argparse.Namespace) -> str:
    return config_fingerprint({k: v for k, v in vars(args).items() if k not in NOT_IN_FINGERPRINT})


def _cmd_list(args: argparse.Namespace) -> int:
    sections = {
        "environments": ENVIRONMENTS,
        "policies": {name: desc for name, (_, desc) in POLICIES.items()},
        "experiments": EXPERIMENTS,
    }
    for title, entries in sections.items():
        print(f"{title}:")
        if not entries:
            print("  (none yet)")
        for name, desc in entries.items():
            print(f"  {name:<12} {desc}")
    return 0


def _cmd_exact(args: argparse.Namespace) -> int:
    env = _build_env(args)
    env.output_space.check_enumerable(args.max_outputs)  # refuse before allocating a policy for it
    claim = None if args.out is None else claim_run_dir(args.out, "exact", _fingerprint(args), overwrite=args.overwrite)
    with claim or contextlib.nullcontext():
        policy = _build_policy(args, env)
        result = exact(policy, env, max_outputs=args.max_outputs)
        table = result.to_frame(gamma=gamma(policy, env, max_outputs=args.max_outputs))
        print(env.describe())
        print(policy.describe())
        with pd.option_context("display.width", 120, "display.max_rows", 40, "display.float_format", "{:.4g}".format):
            print(table.drop(columns=[c for c in table if c.startswith("var_pos_")]).to_string(index=False))
        if claim is not None:
            records = table.melt(id_vars=["replica", "input"], var_name="metric", value_name="value")
            write_run(claim.path, _run_config(args), {"exact": records}, policy.device)
            claim.finish()
            print(f"wrote {claim.path}/config.json, environment.json, exact.csv")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    kinds = tuple(k.strip() for k in args.policy.split(","))
    known = POLICY_KINDS + HF_POLICY_KINDS  # the HF kinds need transformers (random_instance says so)
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise ConfigError(f"unknown policy kind(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    executor = _executor(args)
    claim = None
    if args.out is not None:  # resumable: the finished chunks of an interrupted check are kept and not redone
        claim = claim_run_dir(args.out, "check", _fingerprint(args), overwrite=args.overwrite, resumable=True)
    with claim or contextlib.nullcontext():
        specs = draw_specs(args.examples, seed=args.seed, kinds=kinds, max_length=args.max_len)
        rows, summary = run_check(
            specs,
            progress=not args.no_progress,
            executor=executor,
            chunk_size=args.chunk_size,
            checkpoint_dir=None if claim is None else claim.path / "checkpoints",
        )
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            print(summary.to_string(index=False))
        violations = int(summary.loc[summary["kind"] == "all", "violations"].iloc[0])
        if claim is not None:
            write_run(claim.path, _run_config(args), {"check_rows": rows, "check_summary": summary}, "cpu")
            shutil.rmtree(claim.path / "checkpoints", ignore_errors=True)
            claim.finish()
            print(f"wrote {claim.path}/check_rows.csv, check_summary.csv")
    print(f"{violations} violation(s) in {len(specs)} examples ({len(rows)} inputs)")
    if violations:
        worst = rows[rows["violation"]].iloc[0]
        fields = ("kind", "vocab_size", "length", "logit_scale", "reward_kind", "temperature", "feature_map", "seed",
                  "full_vocab")  # fmt: skip
        print("first violating spec: InstanceSpec(" + ", ".join(f"{k}={worst[k]!r}" for k in fields) + ")")
    return 1 if violations else 0


def _experiment_sets(args: argparse.Namespace) -> list[str]:
    """The ``--set`` values of ``run`` and ``sweep``, ``--device`` and ``--seeds`` as the ``--set``s they stand for."""
    sets = list(args.set)
    if args.device is not None:
        sets.append(f"device={args.device}")
    if args.seeds is not None:
        sets.append(f"seeds={args.seeds}")
    return sets


def _cmd_run(args: argparse.Namespace) -> int:
    if args.show_config:
        module = experiment_module(args.experiment, "config")
        print(f"{args.experiment} config (key, type, default, meaning); set with --set key=value or --config FILE:")
        print(describe_config(module.Config))
        for variant, overrides in getattr(module, "VARIANTS", {}).items():
            print(f"--variant {variant}: " + ", ".join(f"{key}={value}" for key, value in overrides.items()))
        return 0
    sets = _experiment_sets(args)
    out = args.out  # a string until claimed: Path("") would be "."
    if out is None:
        out = default_run_dir(args.experiment, args.config, sets, args.full, args.variant)
    _, score, figures = run_experiment(
        args.experiment, out, args.config, sets, args.full, not args.no_progress, args.variant, overwrite=args.overwrite
    )
    print(json.dumps(score, indent=2, default=float))
    print(f"wrote {out}: config.json, environment.json, records, score.json, " + ", ".join(p.name for p in figures))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rftgrad.sweep import run_sweep

    sets = _experiment_sets(args)
    executor = _executor(args)
    result = run_sweep(
        args.experiment,
        args.grid,
        args.out,
        args.config,
        sets,
        args.full,
        args.variant,
        executor,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.float_format", "{:.4g}".format):
        print(result.table.to_string(index=False))
    print(f"{result.points} points: {result.reused} already finished, {result.points - result.reused} computed")
    print(f"wrote {result.out_dir}: points/, sweep.json, sweep.csv, " + ", ".join(p.name for p in result.figures))
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from rftgrad import gallery as paper

    found = paper.load_figures(args.figures_dir)
    if args.list:
        for figure in found.values():
            print(f"{figure.name:<14} {figure.experiment:<12} {figure.paper}: {figure.shows}")
        return 0
    chosen = paper.choose_figures(found, args.only)
    budget = "full" if args.full else "tiny" if args.tiny else "quick"
    if args.gallery and args.out is not None:
        raise ConfigError("--gallery and --out both say where the figures go; give one of them")
    if args.gallery:
        out = paper.figures_dir(args.figures_dir)
    else:
        out = Path(args.runs) / budget / "gallery" if args.out is None else args.out
    executor = _executor(args)
    start = time.perf_counter()
    with claim_output_dir(out) as claim:
        out = claim.path
        results = paper.make_figures(
            chosen, budget, out, args.runs, args.device, not args.no_progress, args.overwrite, executor, found
        )
    print(paper.summary_table(results, time.perf_counter() - start))
    print(f"wrote {out}: " + ", ".join(f"{r.name}.png" for r in results) + ", README.md")
    return 0


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"takes an integer >= {minimum}, got {value}")
        return value

    return parse


def _number(minimum: float = -math.inf, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= ``minimum`` (> it when ``strict``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"takes a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"takes a number {'>' if strict else '>='} {minimum:g}, got {text}")
        return value

    return parse


def _list_of(item: Callable[[str], float]) -> Callable[[str], tuple]:
    """An argparse type: comma-separated values of type ``item``.

    ``diagnose``'s options are only parsed here (``float``): :func:`rftgrad.diagnose.diagnose` checks
    their values, for the API and the command line alike.
    """

    def parse(text: str) -> tuple:
        try:
            return tuple(item(part.strip()) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes comma-separated numbers, got {text!r}") from None

    return parse


def _cmd_diagnose(args: argparse.Namespace) -> int:
    diagnosis, written = diagnose(
        args.file,
        args.out,  # None: diagnose_<file stem>, numbered if taken
        fmt=args.format,
        prompt_col=args.prompt_col,
        reward_col=args.reward_col,
        reward_weights=args.reward_weights,
        step_col=args.step_col,
        reward_range=args.reward_range,
        max_reward=args.max_reward,
        std_threshold=args.std_threshold,
        gap=args.gap,
        group_sizes=args.group_sizes,
        skip_singletons=args.skip_singletons,
        group_size=args.group_size,
        scale_rewards=args.scale_rewards,
        reference_col=args.reference_col,
        group_col=args.group_col,
        export_stalled_to=args.export_stalled,
        overwrite=args.overwrite,
    )
    print(format_summary(diagnosis))
    _print_export(args.export_stalled, written)
    return 0


def _print_export(export_stalled: str | None, written: list[Path]) -> None:
    """Name the report's files and the exported stalled prompts (``diagnose`` and ``preflight``)."""
    export_files = set()
    if export_stalled is not None:
        export_files = {Path(f).resolve() for f in (export_stalled, to_label_path(export_stalled))}
    exported = [p for p in written if p.resolve() in export_files]  # may lie inside --out too
    report = [p for p in written if p.resolve() not in export_files]
    figure = " (+ .pdf)" if any(p.suffix == ".png" for p in report) else ""
    print(f"wrote {report[0].parent}/: " + ", ".join(p.name for p in report) + figure)
    if export_stalled is not None and not exported:
        print(f"--export-stalled: no prompt is in the vanishing regime; nothing written to {export_stalled}")
    for path in exported:
        rows = path.read_text(encoding="utf-8").count("\n")  # one JSON object a line
        what = (
            "stalled prompts without a reference, to label (add a 'completion' to each)"
            if path.name.endswith(TO_LABEL_SUFFIX)
            else "stalled prompts with their reference: a prompt-completion dataset for TRL's SFTTrainer"
        )
        print(f"exported {rows} {what}: {path}")
    if exported:
        print(f"  {EXPORT_NOTE}")


@contextlib.contextmanager
def _transformers_progress(enabled: bool) -> Iterator[None]:
    """Run the block with transformers' own progress bars (``Loading weights``) on or off, then restore them."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # preflight names the missing extra itself
        yield
        return
    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def _cmd_preflight(args: argparse.Namespace) -> int:
    with _transformers_progress(not args.no_progress):
        return _run_preflight(args)


def _run_preflight(args: argparse.Namespace) -> int:
    result, written = run_preflight(
        args.model,
        args.prompts,
        args.reward,
        args.out,  # None: preflight_<prompts stem>, numbered if taken
        tokenizer=args.tokenizer,
        answers=None if args.answers is None else args.answers.split(","),
        answer_tokens=args.answer_tokens,
        length=args.length,
        group_size=args.group_size,
        samples=args.samples,
        max_outputs=args.max_outputs,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        reward_range=args.reward_range,
        max_reward=args.max_reward,
        std_threshold=args.std_threshold,
        gap=args.gap,
        export_stalled_to=args.export_stalled,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        config=_run_config(args),
    )
    print(format_preflight(result))
    _print_export(args.export_stalled, written)
    return 0


OVERWRITE_HELP = "replace what --out holds (a finished run, another command's run, other files)"


def _add_executor_options(command: argparse.ArgumentParser) -> None:
    """``--executor serial|ray`` and ``--address ADDR`` (:mod:`rftgrad.executors`)."""
    command.add_argument(
        "--executor",
        choices=sorted(EXECUTORS),
        default="serial",
        help="where the units of work run: serial (this process, default) or ray (a local Ray instance sized to "
        "this machine, or the cluster at --address); needs pip install -e '.[ray]'",
    )
    command.add_argument(
        "--address",
        default=None,
        help="with --executor ray: join this Ray cluster instead of starting one (auto, HOST:PORT, ray://HOST:10001)",
    )


def _executor(args: argparse.Namespace) -> Executor:
    """The executor of ``--executor`` / ``--address``, running every unit with the command's thread choice."""
    return make_executor(args.executor, args.address, choose_threads(getattr(args, "threads", None)))


class _Parser(argparse.ArgumentParser):
    """argparse with rftgrad's one-line errors: ``rftgrad: error: <problem> (see `rftgrad CMD --help`)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rftgrad: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rftgrad`` (also used to render ``--help``)."""
    parser = _Parser(
        prog="rftgrad",
        description="Vanishing gradients in reinforcement finetuning, verified (Razin et al., ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"rftgrad {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list environments, policies and experiments")
    listing.set_defaults(handler=_cmd_list)

    ex = commands.add_parser("exact", help="exact V, STD, ||grad V|| and gamma for a policy on an environment")
    ex.add_argument("--env", choices=sorted(ENVIRONMENTS), default="sequence", help="environment (default: sequence)")
    ex.add_argument("--policy", choices=sorted(POLICIES), default="transformer", help="policy (default: transformer)")
    ex.add_argument("--inputs", type=_integer(1), help="number of inputs / prompts / per-class points (default 4)")
    ex.add_argument("--vocab", type=int, help="V: output vocabulary or number of classes (default 4)")
    ex.add_argument("--length", type=int, help="L: output length, sequence env (default 3)")
    ex.add_argument("--reward", choices=REWARDS, help="sequence reward (default exact_match)")
    ex.add_argument(
        "--rewards",
        type=_list_of(_number()),
        help="bandit reward vector, comma-separated, in [-1, 1] (default 1,-1,-1,0.5)",
    )
    ex.add_argument("--features", choices=FEATURE_MAPS, help="linear feature map (default input_last_token)")
    ex.add_argument("--hidden", type=_list_of(_integer(1)), help="MLP hidden widths, comma-separated (default 64)")
    ex.add_argument("--d-model", type=_integer(1), help="transformer width (default 32)")
    ex.add_argument("--layers", type=_integer(1), help="transformer blocks (default 2)")
    ex.add_argument("--replicas", type=_integer(1), default=2, help="R, replicas with seeds seed..seed+R-1 (default 2)")
    ex.add_argument("--seed", type=_integer(0), default=0, help="first seed (default 0)")
    ex.add_argument("--p0", type=_number(), default=None, help="initialise to put this probability on each target")
    ex.add_argument(
        "--temperature", type=_number(0, strict=True), default=1.0, help="sampling temperature T (default 1)"
    )
    ex.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default cpu)")
    ex.add_argument("--dtype", default="float64", help="float32 | float64 (default float64)")
    ex.add_argument("--max-outputs", type=_integer(1), default=2**20, help="enumeration limit on V^L (default 2^20)")
    ex.add_argument("--out", default=None, help="write config.json, environment.json and exact.csv here")
    ex.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ex.set_defaults(handler=_cmd_exact)

    ck = commands.add_parser("check", help="check Theorem 1's bounds on random policies (exit 1 on a violation)")
    ck.add_argument("--examples", type=_integer(1), default=200, help="random instances to check (default 200)")
    ck.add_argument(
        "--policy",
        default=",".join(POLICY_KINDS),
        help=f"policy kinds, comma-separated (default: {','.join(POLICY_KINDS)}; "
        f"{', '.join(HF_POLICY_KINDS)}: transformers causal LMs, need transformers)",
    )
    ck.add_argument("--max-len", type=_integer(1), default=5, help="largest output length L (default 5)")
    ck.add_argument("--seed", type=_integer(0), default=0, help="seed of the instance draw (default 0)")
    ck.add_argument("--out", default=None, help="write config.json, environment.json and the check tables here")
    ck.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ck.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_executor_options(ck)
    ck.add_argument(
        "--chunk-size",
        type=_integer(1),
        default=CHECK_CHUNK,
        help=f"examples per unit of work with --executor ray or --out (default {CHECK_CHUNK}); "
        "with --out the finished chunks of an interrupted check are not redone",
    )
    ck.set_defaults(handler=_cmd_check)

    rn = commands.add_parser("run", help="run an experiment (records, score and figures)")
    rn.add_argument("experiment", choices=sorted(EXPERIMENTS), help="experiment name (see `rftgrad list`)")
    rn.add_argument("--config", default=None, help="TOML (or JSON) file of config values, e.g. a run's config.toml")
    rn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    rn.add_argument("--full", action="store_true", help="the paper-scale budget instead of the quick one")
    rn.add_argument(
        "--out", default=None, help="run directory (default runs/<experiment>, else runs/<experiment>-2, ...)"
    )
    rn.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    rn.add_argument("--variant", default=None, help="named variant of the experiment (see --show-config)")
    rn.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (training experiments)")
    rn.add_argument("--seeds", type=_integer(1), default=None, help="seeds per setting (training experiments)")
    rn.add_argument("--no-progress", action="store_true", help="no progress bars")
    rn.add_argument("--show-config", action="store_true", help="list the config keys, types and defaults, then exit")
    rn.set_defaults(handler=_cmd_run)

    sw = commands.add_parser("sweep", help="run an experiment at every point of a grid of config values")
    sw.add_argument("experiment", choices=sorted(EXPERIMENTS), help="experiment name (see `rftgrad list`)")
    sw.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a config key and its values (one point per combination of every --grid; the first varies slowest)",
    )
    sw.add_argument("--config", default=None, help="TOML (or JSON) file of config values, e.g. a run's config.toml")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    sw.add_argument("--full", action="store_true", help="the paper-scale budget instead of the quick one")
    sw.add_argument("--variant", default=None, help="named variant of the experiment (see run --show-config)")
    sw.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (training experiments)")
    sw.add_argument("--seeds", type=_integer(1), default=None, help="seeds per setting (training experiments)")
    sw.add_argument("--out", default=None, help="sweep directory (default runs/sweep-<experiment>, else ...-2, ...)")
    sw.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_executor_options(sw)
    sw.set_defaults(handler=_cmd_sweep)

    fg = commands.add_parser("figures", help="run what is missing and draw every figure of paper_figures/")
    budget = fg.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="the quick budget (default; under 15 min on 2 CPU cores)")
    budget.add_argument("--full", action="store_true", help="the paper-scale budget of every experiment")
    budget.add_argument("--tiny", action="store_true", help="seconds per figure, for tests (numbers mean nothing)")
    fg.add_argument("--only", nargs="+", default=None, metavar="NAME", help="draw only these figures (see --list)")
    fg.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (training experiments)")
    fg.add_argument("--gallery", action="store_true", help="draw into the checkout's gallery, paper_figures/")
    fg.add_argument(
        "--out", default=None, help="where the figures and the manifest go (default <runs>/<budget>/gallery)"
    )
    fg.add_argument(
        "--overwrite", action="store_true", help=OVERWRITE_HELP + " (a larger budget's or hand-edited figures)"
    )
    fg.add_argument("--runs", default="runs/figures", help="where experiment runs go (default runs/figures)")
    fg.add_argument("--figures-dir", default=None, help="folder of the figure scripts (default ./paper_figures)")
    fg.add_argument("--list", action="store_true", help="list the figures and exit")
    fg.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_executor_options(fg)
    fg.set_defaults(handler=_cmd_figures)

    dg = commands.add_parser("diagnose", help="which prompts of a rollout log are in the vanishing-gradient regime")
    dg.add_argument(
        "file",
        help="rollout log: .jsonl, .json, .csv, .tsv or .parquet, one row per sample or group; or a folder of "
        "per-step logs (TRL's output_dir or its completions/, verl's rollout_data_dir)",
    )
    dg.add_argument(
        "--format",
        default="auto",
        choices=["auto", "jsonl", "json", "csv", "tsv", "parquet"],
        help="file format (default: from the suffix)",
    )
    dg.add_argument("--prompt-col", default=None, help="prompt column (default: prompt_id, prompt, query, ...)")
    dg.add_argument(
        "--reward-col", default=None, help="reward column(s), comma-separated to sum (default: reward, ...)"
    )
    dg.add_argument(
        "--reward-weights",
        type=_list_of(float),
        default=None,
        help="one weight per --reward-col, comma-separated (default 1)",
    )
    dg.add_argument("--step-col", default=None, help="step column, or 'none' to pool steps (default: step, ...)")
    dg.add_argument(
        "--reward-range",
        type=_list_of(float),
        default=None,
        metavar="LO,HI",
        help="rewards lie in [LO, HI] (negative LO: --reward-range=-1,1)",
    )
    dg.add_argument("--max-reward", type=float, default=None, help="best reward (default: HI, else the largest seen)")
    dg.add_argument(
        "--std-threshold",
        type=float,
        default=None,
        help="vanishing if STD < this (default 0.1 x range)",
    )
    dg.add_argument("--gap", type=float, default=None, help="... and mean < max reward - gap (default 0.5 x range)")
    dg.add_argument(
        "--group-sizes",
        type=_list_of(float),
        default=GROUP_SIZES,
        help="G values for the predicted frac_reward_zero_std (default 2,4,8,16,32,64)",
    )
    dg.add_argument("--skip-singletons", action="store_true", help="drop prompts with one sample instead of failing")
    dg.add_argument(
        "--group-size",
        type=float,
        default=None,
        help="rows of a step are consecutive groups of G (TRL's num_generations; inferred for TRL tables); "
        "0: group by prompt text",
    )
    dg.add_argument(
        "--group-col",
        default=None,
        help="a column naming each sample's group within its step (default: 'group' in rftgrad's TRL monitor log)",
    )
    dg.add_argument(
        "--scale-rewards",
        default="group",
        choices=SCALE_REWARDS,
        help="TRL's scale_rewards, for TRL's own frac_reward_zero_std (default group)",
    )
    dg.add_argument(
        "--reference-col",
        default=None,
        help="reference answers for --export-stalled (default: solution, answer, reference, ground_truth, gts, ...)",
    )
    dg.add_argument(
        "--export-stalled",
        default=None,
        metavar="FILE.jsonl",
        help="write the vanishing prompts as a dataset for TRL's SFTTrainer (and FILE.to_label.jsonl)",
    )
    dg.add_argument("--out", default=None, help="output folder (default diagnose_<file stem>, else ...-2, ...)")
    dg.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    dg.set_defaults(handler=_cmd_diagnose)

    pf = commands.add_parser(
        "preflight", help="before RFT: which prompts a local model's rewards leave without gradient (exact or sampled)"
    )
    pf.add_argument("--model", required=True, help="local model folder written by save_pretrained (never downloads)")
    pf.add_argument("--prompts", required=True, metavar="FILE.jsonl", help='one {"prompt", "answer"?, "id"?} per line')
    pf.add_argument(
        "--reward",
        default="exact_match",
        help="exact_match (+1 if the output equals the line's answer, else -1), or module:function or "
        "path/to/file.py:function, a callable (prompt, output) -> float in [-1, 1] (default exact_match)",
    )
    answer_vocab = pf.add_mutually_exclusive_group()
    answer_vocab.add_argument(
        "--answers", default=None, metavar="A,B,C,D", help="the answer vocabulary: single-token strings (default: all)"
    )
    answer_vocab.add_argument(
        "--answer-tokens", type=_list_of(_integer(0)), default=None, metavar="ID,ID", help="... or their token ids"
    )
    pf.add_argument("--tokenizer", default=None, help="local tokenizer folder (default: --model)")
    pf.add_argument("--length", type=_integer(1), default=1, help="L, answer tokens per output (default 1)")
    pf.add_argument(
        "--group-size", type=_integer(1), default=8, help="G, your trainer's group size (num_generations; default 8)"
    )
    pf.add_argument(
        "--samples",
        type=_integer(2),
        default=DEFAULT_SAMPLES,
        help=f"S, outputs sampled per prompt where V^L > --max-outputs (default {DEFAULT_SAMPLES})",
    )
    pf.add_argument(
        "--max-outputs",
        type=_integer(1),
        default=PREFLIGHT_MAX_OUTPUTS,
        help=f"compute exactly up to V^L outputs, else sample (default 2^{PREFLIGHT_MAX_OUTPUTS.bit_length() - 1})",
    )
    pf.add_argument("--seed", type=_integer(0), default=0, help="seed of the sampled outputs (default 0)")
    pf.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default auto)")
    pf.add_argument("--dtype", default="float32", help="float32 | float64 (default float32)")
    pf.add_argument(
        "--reward-range",
        type=_list_of(float),
        default=None,
        metavar="LO,HI",
        help="rewards lie in [LO, HI] (default -1,1; write --reward-range=0,1)",
    )
    pf.add_argument("--max-reward", type=float, default=None, help="best reward (default HI)")
    pf.add_argument("--std-threshold", type=float, default=None, help="stalled if STD < this (default 0.1 x range)")
    pf.add_argument("--gap", type=float, default=None, help="... and mean < max reward - gap (default 0.5 x range)")
    pf.add_argument(
        "--export-stalled",
        default=None,
        metavar="FILE.jsonl",
        help="write the stalled prompts as rftgrad diagnose does: an SFT dataset (and FILE.to_label.jsonl)",
    )
    pf.add_argument("--out", default=None, help="output folder (default preflight_<prompts stem>, else ...-2, ...)")
    pf.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    pf.add_argument("--no-progress", action="store_true", help="no progress bar")
    pf.set_defaults(handler=_cmd_preflight)
    for compute in (ex, ck, rn, sw, fg, pf):
        compute.add_argument(
            "--threads",
            type=_integer(1),
            default=None,
            help=f"intra-op torch threads on the CPU (default: OMP_NUM_THREADS if set, else {DEFAULT_CPU_THREADS}; "
            "recorded in environment.json)",
        )
    return parser


#: the line printed under the traceback of an error that is not one of rftgrad's own (a bug).
BUG_REPORT = (
    "rftgrad: internal error (a bug in rftgrad, not in your input): please report it with the command line "
    "and the traceback above"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rftgrad`` console script; returns the exit code.

    Bad input raises one of rftgrad's own errors (:class:`rftgrad.errors.RftgradError`): one line,
    exit code 2. Any other exception is a bug: its traceback is printed with :data:`BUG_REPORT`,
    exit code 1. The command line, and only it, draws with the file backend ``Agg``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version (0) or a malformed command line (2, one line printed)
        return int(done.code or 0)
    import matplotlib

    matplotlib.use("Agg")  # the CLI writes files; library code never switches the backend
    try:
        with use_threads(choose_threads(getattr(args, "threads", None))):
            code = args.handler(args)
        sys.stdout.flush()  # a reader that went away fails here, inside the handlers below, not at exit
        return code
    except RftgradError as err:
        print(f"rftgrad: error: {first_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rftgrad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`rftgrad ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by it
    except Exception:
        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        return 1


if __name__ == "__main__":
    torch.set_printoptions(precision=4)
    raise SystemExit(main())
