"""docs/own_model.md: its worked example on a random GPT-2 runs as written and shows what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason='the "your own model" page needs the trl extra (installed by .[dev])')

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own_model.md"


def test_worked_example_runs_and_shows_the_bound_and_the_vanishing_regime():
    block = re.search(r"<!-- own-model-example -->\s*```python\n(.*?)\n```", PAGE.read_text(encoding="utf-8"), re.S)
    assert block, "docs/own_model.md has no example block after <!-- own-model-example -->"
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block.group(1), str(PAGE), "exec"), namespace)
    table, cold = namespace["table"], namespace["cold"]
    assert len(table) == 6 and not table["violation"].any()  # 2 replicas x 3 prompts, Theorem 1 holds
    assert bool((table["grad_norm"] <= table["sharpened_bound"]).all())
    # at T = 0.02: the replica-0 prompt with the smallest STD has a gradient far below the largest one's
    std, grad = cold.std[0], cold.grad_norm[0]
    assert float(std.min()) < 0.01 and float(std.max()) > 0.9
    assert float(grad[torch.argmin(std)]) < 1e-3 * float(grad[torch.argmax(std)])
