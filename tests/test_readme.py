"""The README's snippet runs and prints the numbers it promises; CI reads the README's test command."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest
import torch

from rftgrad.cli import main
from tests.tolerances import EXACT_ATOL

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(marker: str, language: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    assert match, f"README.md has no ```{language} block after <!-- {marker} -->"
    return match.group(1)


def quoted(block: str, comment: str) -> str:
    """The number the README's comment ``comment`` ends in, e.g. ``-0.998`` of ``# ... = -0.998``."""
    match = re.search(rf"#.*{re.escape(comment)}\s*(-?[0-9.e+-]+)", block)
    assert match, f"README.md's snippet has no comment {comment!r} quoting a number"
    return match.group(1)


def test_readme_snippet_computes_exact_quantities():
    namespace: dict[str, object] = {}
    block = block_after("readme-snippet", "python")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, "README.md", "exec"), namespace)
    result, policy, env = namespace["result"], namespace["policy"], namespace["env"]
    p0 = 1e-3
    # exact-match reward: V = 2p - 1 and STD = 2 sqrt(p(1-p)) (docs/paper.md §3)
    assert torch.allclose(result.value, torch.full_like(result.value, 2 * p0 - 1), atol=EXACT_ATOL)
    assert torch.allclose(result.std, torch.full_like(result.std, 2 * math.sqrt(p0 * (1 - p0))), atol=EXACT_ATOL)
    assert torch.allclose(result.position_variance.sum(-1), result.std**2, atol=EXACT_ATOL)  # the comment's "~0"
    # the comments quote V and STD rounded to the digits shown
    for values, comment in ((result.value, "2·1e-3 - 1 ="), (result.std, "2·sqrt(p(1-p)) =")):
        number = quoted(block, comment)
        digits = len(number.lstrip("-").lstrip("0.").replace(".", ""))
        assert {f"{v:.{digits}g}" for v in values.flatten().tolist()} == {number}, (comment, values)
    gammas = namespace["gamma"](policy, env)
    # the sharpened bound ||∇V|| <= γ sqrt(L) STD (docs/paper.md §2) holds, and the gradient is not trivially 0
    assert bool((result.grad_norm <= gammas * math.sqrt(env.output_space.length) * result.std).all())
    assert float(result.grad_norm.min()) > 1e-6


@pytest.mark.parametrize("marker", ["main-command", "test-command"])
def test_readme_commands_install_with_constraints(marker):
    command = block_after(marker, "bash")
    assert "python3 -m venv .venv" in command
    assert "pip install -c constraints.txt -e" in command


def test_ci_runs_the_readme_test_command():
    ci_script = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "<!-- test-command -->" in ci_script  # .ci/run extracts and runs that very block
    assert "python -m pytest" in block_after("test-command", "bash")


def test_constraints_pin_torch_2_13():
    constraints = (README.parent / "constraints.txt").read_text(encoding="utf-8").split()
    assert "torch==2.13.0" in constraints


def test_readme_finetune_snippet_shows_rft_stalling_where_sft_succeeds():
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block_after("finetune-snippet", "python"), "README.md", "exec"), namespace)
    final = namespace["final"].set_index("arm")["value"]
    # RFT's logit gradient is 2p(e_y - π) ~ 2e-4: 200 unit steps move p by about 4%
    assert 1e-4 < final["rft:200"] < 1.1e-4
    assert final["sft:200"] > 0.9
    comment = re.search(
        r"# RFT: still ~([0-9.e-]+) \(stalled\); SFT: > ([0-9.]+)", block_after("finetune-snippet", "python")
    )
    assert comment, "the finetune snippet's last comment no longer quotes RFT's and SFT's numbers"
    assert f"{final['rft:200']:.2e}" == f"{float(comment.group(1)):.2e}"  # ~1.05e-4, to the digits quoted
    assert final["sft:200"] > float(comment.group(2))


def test_readme_diagnose_command_prints_the_numbers_the_readme_quotes(tmp_path, capsys):
    """The README's `rftgrad diagnose` line runs on the shipped example and gives the quoted numbers."""
    command = block_after("diagnose-command", "bash").strip().split()
    assert command[:3] == ["rftgrad", "diagnose", "examples/rollouts.jsonl"]
    out = tmp_path / "diagnose"
    assert main(["diagnose", str(README.parent / command[2]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = README.read_text()
    assert "63 of 200 groups (31.5%)" in printed and "31.5% of the groups" in text
    assert "0.405 ± 0.035" in printed and "0.405 ± 0.035" in text
    assert (out / "mean_vs_std.png").exists()
