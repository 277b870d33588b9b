"""`rftgrad figures`: every figure script draws a valid image on a tiny budget, and the committed gallery in
paper_figures/ matches its scripts and manifest one to one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rftgrad.cli import main
from rftgrad.errors import ConfigError
from rftgrad.gallery import PaperFigure, choose_figures, load_figures, summary_table
from tests.experiments.test_theorem1_experiments import assert_valid_png

ROOT = Path(__file__).resolve().parents[1]
FIGURES_DIR = ROOT / "paper_figures"
FIGURES = load_figures(FIGURES_DIR)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One output folder and one runs folder for every tiny figure (figures sharing a run reuse it)."""
    root = tmp_path_factory.mktemp("figures")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RFTGRAD_CACHE", str(root / "cache"))
        yield root


@pytest.mark.parametrize("name", list(FIGURES))
def test_each_figure_draws_a_valid_image_on_a_tiny_budget(name, workspace, capsys):
    out, runs = workspace / "out", workspace / "runs"
    args = ["figures", "--tiny", "--only", name, "--figures-dir", str(FIGURES_DIR), "--out", str(out)]
    assert main([*args, "--runs", str(runs), "--no-progress"]) == 0
    assert_valid_png(out / f"{name}.png")
    assert (out / f"{name}.pdf").stat().st_size > 1000
    record = json.loads((out / f"{name}.json").read_text())
    assert record["budget"] == "tiny" and record["key_number"].strip()
    assert name in capsys.readouterr().out  # the closing summary table names the figure
    assert f"[`{name}.png`]" in (out / "README.md").read_text()


def test_committed_gallery_matches_scripts_and_manifest():
    """No figure without a row, no row without a figure; every row names its claim and a measured number."""
    manifest = (FIGURES_DIR / "README.md").read_text(encoding="utf-8")
    rows = [line for line in manifest.splitlines() if line.startswith("| [`")]
    named = [re.match(r"\| \[`([^`]+)\.png`\]", row).group(1) for row in rows]
    assert sorted(named) == sorted(FIGURES), "manifest rows and figure scripts differ"
    assert sorted(path.stem for path in FIGURES_DIR.glob("*.png")) == sorted(FIGURES), "PNGs and scripts differ"
    for name, row in zip(named, rows, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 6, row
        assert FIGURES[name].claim in cells[3]
        assert re.search(r"\d", cells[5]) and "(quick budget)" in cells[5], (
            f"{name}: no measured number at quick budget"
        )
        record = json.loads((FIGURES_DIR / f"{name}.json").read_text(encoding="utf-8"))
        assert record["budget"] == "quick"
        assert_valid_png(FIGURES_DIR / f"{name}.png")


def test_every_figure_names_its_claim_and_paper_counterpart():
    for figure in FIGURES.values():
        assert isinstance(figure, PaperFigure)
        assert figure.claim and figure.shows and figure.paper
        assert figure.paper.startswith("past the paper") or re.search(r"Section|Theorem|Figure", figure.paper)


def test_unknown_figure_and_missing_folder_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown figure"):
        choose_figures(FIGURES, ["nope"])
    assert main(["figures", "--only", "nope", "--figures-dir", str(FIGURES_DIR), "--out", str(tmp_path)]) == 2
    assert "unknown figure(s) nope" in capsys.readouterr().err
    assert main(["figures", "--figures-dir", str(tmp_path / "missing")]) == 2
    assert "no paper_figures folder" in capsys.readouterr().err


def test_summary_table_totals_the_seconds():
    from rftgrad.gallery import FigureResult

    results = [
        FigureResult("a", Path("a.png"), 1.0, 0.5, False, "x 1"),
        FigureResult("b", Path("b.png"), 2.0, 0.5, True, "y"),
    ]
    table = summary_table(results)
    assert "4.0" in table.splitlines()[-1] and "*" in table.splitlines()[2]



def test_manifest_rebuild_keeps_the_hand_written_part_below_the_marker(tmp_path):
    from rftgrad.gallery import MANIFEST_KEPT, write_manifest

    figure = FIGURES["tightness"]
    (tmp_path / "tightness.json").write_text(json.dumps({"key_number": "ratio 0.7", "budget": "full"}))
    hand = f"{MANIFEST_KEPT}\n\n## At the full budget\n\n| figure | seconds |\n| --- | --- |\n| tightness | 12 |\n"
    (tmp_path / "README.md").write_text("old table\n\n" + hand)
    text = write_manifest({"tightness": figure}, tmp_path).read_text()
    assert text.endswith(hand) and "old table" not in text
    assert "| [`tightness.png`](tightness.png) |" in text and "ratio 0.7 (full budget)" in text
    assert write_manifest({"tightness": figure}, tmp_path).read_text() == text  # rebuilt again: unchanged
