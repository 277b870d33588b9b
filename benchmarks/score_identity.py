"""Every experiment's ``score.json`` at its TESTING budget, written to one file or compared with one.

A refactor that moves code without changing behaviour must leave these numbers identical.
Run it once before the change and once after, on the same machine and thread count::

    python benchmarks/score_identity.py --write /tmp/before.json      # on the old commit
    python benchmarks/score_identity.py --compare /tmp/before.json    # on the new one: exit 1 on a difference

Each experiment (every named variant of those that have variants) runs through the
command line, ``rftgrad run NAME --variant V --set ...``, at the experiment's ``TESTING``
budget, with one torch thread (float32 reductions depend on the thread count). Scores are
compared exactly: ``--rtol`` defaults to 0.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
from pathlib import Path

import torch


def budgets() -> dict[str, tuple[str, str | None, dict]]:
    """``label -> (experiment, variant, TESTING values)`` for every experiment and variant."""
    from rftgrad.experiments import EXPERIMENTS

    found: dict[str, tuple[str, str | None, dict]] = {}
    for name in EXPERIMENTS:
        module = importlib.import_module(f"rftgrad.experiments.{name}.config")
        testing = getattr(module, "TESTING", None)
        if testing is None:
            raise SystemExit(f"experiment {name} has no TESTING budget")
        variants = getattr(module, "VARIANTS", None)
        if variants and all(isinstance(v, dict) for v in testing.values()) and set(testing) == set(variants):
            for variant, values in testing.items():
                found[f"{name}/{variant}"] = (name, variant, dict(values))
        elif variants:
            for variant in variants:
                found[f"{name}/{variant}"] = (name, variant, dict(testing))
        else:
            found[name] = (name, None, dict(testing))
    return found


def scores(only: list[str] | None = None) -> dict[str, dict]:
    """Run every TESTING budget and return ``label -> score``."""
    from rftgrad.cli import main
    from rftgrad.configs import as_sets

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, variant, values) in budgets().items():
            if only and label not in only and name not in only:
                continue
            out = Path(tmp) / label.replace("/", "-")
            sets = [arg for item in as_sets(values) for arg in ("--set", item)]
            argv = ["run", name, "--out", str(out), "--no-progress", *sets]
            if variant is not None:
                argv += ["--variant", variant]
            print("+ rftgrad " + " ".join(argv), file=sys.stderr, flush=True)
            if main(argv) != 0:
                raise SystemExit(f"{label}: rftgrad run failed")
            results[label] = json.loads((out / "score.json").read_text())
    return results


def differences(before: object, after: object, rtol: float, path: str = "") -> list[str]:
    """Where two JSON values differ (numbers beyond ``rtol``), as ``path: before != after`` lines."""
    if isinstance(before, dict) and isinstance(after, dict):
        lines = [f"{path}/{key}: only in one" for key in sorted(set(before) ^ set(after), key=str)]
        for key in sorted(set(before) & set(after), key=str):
            lines += differences(before[key], after[key], rtol, f"{path}/{key}")
        return lines
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path}: lengths {len(before)} != {len(after)}"]
        return [line for i, (b, a) in enumerate(zip(before, after, strict=True)) for line in
                differences(b, a, rtol, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(before, numbers) and isinstance(after, numbers) and not isinstance(before, bool):
        same = (math.isnan(before) and math.isnan(after)) or math.isclose(before, after, rel_tol=rtol, abs_tol=0.0)
        return [] if same else [f"{path}: {before!r} != {after!r}"]
    return [] if before == after else [f"{path}: {before!r} != {after!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, help="write every score to this JSON file")
    action.add_argument("--compare", type=Path, help="compare every score with this JSON file (exit 1 on a change)")
    parser.add_argument("--only", nargs="+", default=None, help="experiments (or experiment/variant labels)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of the comparison (default 0)")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW", help="experiments renamed since")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a script, not the library: the numbers must not depend on the core count
    current = scores(args.only)
    if args.write:
        args.write.write_text(json.dumps(current, indent=2, sort_keys=True, default=float) + "\n")
        print(f"wrote {len(current)} scores to {args.write}")
        return 0
    saved = json.loads(args.compare.read_text())
    renames = dict(item.split("=", 1) for item in args.rename)
    saved = {renames.get(k.split("/")[0], k.split("/")[0]) + k[len(k.split("/")[0]):]: v for k, v in saved.items()}
    if args.only:
        saved = {k: v for k, v in saved.items() if k in current}
    lines = differences(saved, json.loads(json.dumps(current, default=float)), args.rtol)
    for line in lines:
        print(line)
    print(f"{len(current)} scores compared: {'identical' if not lines else f'{len(lines)} difference(s)'}")
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
