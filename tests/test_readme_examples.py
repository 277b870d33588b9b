"""Every example of README.md is executed by a test, or listed here as not executed verbatim, with the reason.

What counts as an example is read from README.md itself, so an example added later is picked up:

* every fenced ```` ```python ```` block: exec'd in a fresh namespace (the marked ones by
  ``tests/test_readme.py``, which also checks the numbers their comments quote, see ``CHECKED_IN_TEST_README``);
* every command of every fenced ```` ```bash ```` block: each line, ``# comment`` stripped, split on ``&&``
  and quoted as the shell would (``shlex``). ``rftgrad ...`` runs in-process as ``rftgrad.cli.main(args)`` in a
  temporary working folder, the lines of one block in README order in one folder (a line may read what an
  earlier one wrote: ``--config runs/compare/config.toml``), and must exit with 0;
* every concrete ``rftgrad ...`` in backticks in the prose and tables (``rftgrad run estimators``): run alone
  the same way. One with a placeholder (``EXPERIMENT``, ``NAME``, ``FILE``, ``<name>``, ``[...]``) is a synopsis,
  not an example: its subcommand and options must exist in the parser, nothing runs;
* any other fenced or indented block must be listed in ``NOT_CODE`` with what it is.

A command runs verbatim unless it is a key of one of two tables:

* ``SUBSTITUTED``: README command -> ``Substitute(args, reason, slow_verbatim)``: run with ``args`` instead (a
  smaller budget, outputs kept in the temporary folder), because verbatim it takes longer than the default run
  can spend (CI is a 2-core CPU) or would write into the checkout; ``slow_verbatim`` says whether
  ``pytest -m slow`` runs it verbatim as well;
* ``NOT_EXECUTED``: README command -> reason (install steps and the test suite itself).

``test_every_readme_example_is_executed_or_listed`` fails when a command is neither an ``rftgrad`` command
(run) nor a key of a table, when a table entry no longer appears in README.md, and when a block has a language
this file does not execute. No test writes into the checkout: each command runs in its own temporary folder
with a temporary ``$RFTGRAD_CACHE``, and the checkout's ``paper_figures/``, ``examples/`` and ``runs/`` are
compared before and after each command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rftgrad import configs
from rftgrad.cli import build_parser, main
from rftgrad.experiments.base import experiment_module
from tests import test_readme

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Files of the checkout that a command reads; they are copied into its working folder (never linked, so a
#: command writing next to its input writes into the copy).
COPIED_INTO_WORKSPACE = ("examples",)

#: Parts of the checkout no test may change; each command is checked against a snapshot of them.
GUARDED = ("paper_figures", "examples", "runs")


# --- the README's examples -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced (```` ``` ````) or indented code block: its language (``indented`` for the latter), the README
    line of its first body line, its body and the marker comment (``<!-- name -->``) right above it, if any."""

    language: str
    line: int
    body: str
    marker: str | None = None


@dataclass(frozen=True)
class Command:
    """One shell command of the README: its text (comment stripped, one ``&&`` segment) and README line."""

    text: str
    line: int

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block, in README order."""
    blocks = []
    for match in re.finditer(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S):
        before = text[: match.start()].rstrip().splitlines()
        marker = re.fullmatch(r"<!--\s*(\S+)\s*-->", before[-1].strip()) if before else None
        line = text.count("\n", 0, match.start()) + 2
        blocks.append(Block(match.group(1) or "none", line, match.group(2).rstrip("\n"), marker and marker.group(1)))
    return blocks


def prose(text: str) -> str:
    """README.md with its fenced blocks blanked out (line numbers kept)."""
    return re.sub(r"^```.*?^```[ \t]*$", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)


def indented_blocks(text: str) -> list[Block]:
    """Markdown's indented code blocks (4+ spaces after a blank line, outside fences and lists)."""
    lines, blocks, i = prose(text).splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            blocks.append(Block("indented", start + 1, "\n".join(lines[start:i]).strip("\n")))
        i += 1
    return blocks


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell ``# comment`` (a ``#`` outside quotes, at the start or after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_and(line: str) -> list[str]:
    """The ``&&``-separated commands of one line (outside quotes)."""
    parts, quote, start = [], None, 0
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif line.startswith("&&", i):
            parts.append(line[start:i])
            start = i + 2
    return [part.strip() for part in [*parts, line[start:]] if part.strip()]


def bash_commands(block: Block) -> list[Command]:
    """The commands of a bash block, in order (continuation lines ending in ``\\`` joined)."""
    commands, pending, first = [], "", None
    for offset, raw in enumerate(block.body.splitlines()):
        line = strip_comment(raw)
        first = block.line + offset if first is None else first
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        commands += [Command(part, first) for part in split_and(pending + line.strip())]
        pending, first = "", None
    return commands


def inline_commands(text: str) -> list[Command]:
    """Every ```rftgrad ...``` in backticks outside code blocks (README prose and tables), whitespace collapsed;
    the same command twice is run once."""
    body = prose(text)
    return [
        Command(" ".join(match.group(1).split()), body.count("\n", 0, match.start()) + 1)
        for match in re.finditer(r"`(rftgrad\s[^`]+)`", body)
    ]


def is_synopsis(command: str) -> bool:
    """A command with a placeholder (``EXPERIMENT``, ``N``, ``<name>``, ``[--full]``, ``...``), not an example."""
    return any(re.fullmatch(r"[A-Z][A-Z_]*", t) or re.search(r"[<>\[\]|]|\.\.\.", t) for t in command.split())


def program(command: Command) -> tuple[dict[str, str], list[str]]:
    """The leading ``NAME=value`` assignments of a command, and the rest of its words."""
    argv = command.argv
    env = {}
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
        name, value = argv.pop(0).split("=", 1)
        env[name] = value
    return env, argv


TEXT = README.read_text(encoding="utf-8")
BLOCKS = fenced_blocks(TEXT)
BASH_BLOCKS = [block for block in BLOCKS if block.language == "bash"]
PYTHON_BLOCKS = [block for block in BLOCKS if block.language == "python"]
INLINE = inline_commands(TEXT)


# --- the tables: what does not run verbatim, and why ----------------------------------------------------


@dataclass(frozen=True)
class Substitute:
    """What the default run executes instead of a README command, and why."""

    args: tuple[str, ...]  # the arguments of the same program (rftgrad, or python -m pytest)
    reason: str
    slow_verbatim: bool  # `pytest -m slow` runs the README command verbatim too


def budget_of(experiment: str) -> tuple[str, ...]:
    """``rftgrad run EXPERIMENT`` at the budget its own tests use (``TESTING`` of its config.py) as ``--set``s."""
    sets = configs.as_sets(experiment_module(experiment, "config").TESTING)
    return ("run", experiment, *[arg for value in sets for arg in ("--set", value)])


def sweep_budget_of(experiment: str, grid: Sequence[str]) -> tuple[str, ...]:
    """``rftgrad sweep EXPERIMENT`` over ``grid`` (``--grid`` values) at the ``TESTING`` budget of the experiment,
    without the keys the grid sets, on the Ray executor."""
    swept = {item.partition("=")[0] for item in grid}
    testing = {key: value for key, value in experiment_module(experiment, "config").TESTING.items() if key not in swept}
    sets = [arg for value in configs.as_sets(testing) for arg in ("--set", value)]
    return ("sweep", experiment, *sets, *[arg for item in grid for arg in ("--grid", item)], "--executor", "ray")


SWEEP = "rftgrad sweep heuristics --grid output_sizes=10,30,100,300,1000 --grid data_seed=0,1 --seeds 20 --executor ray"

INSTALL = "install step, checked by tests/test_readme.py (test_readme_commands_install_with_constraints); it needs "
INSTALL += "a fresh virtual environment and the network"

#: README commands that no test runs, with the reason.
NOT_EXECUTED: dict[str, str] = {
    "python3 -m venv .venv": INSTALL,
    ". .venv/bin/activate": INSTALL,
    "pip install -c constraints.txt -e .": INSTALL,
    'pip install -c constraints.txt -e ".[dev]"': INSTALL,
    'pip install -c constraints.txt -e ".[docs]"': INSTALL,
    "sphinx-build -W --keep-going -n -c docs . site": "the docs build: tests/test_docs_site.py runs this command "
    "(read from this very block) into a temporary folder instead of site/",
    "rftgrad diagnose": "the subcommand's name in the Layout table, not a command (it needs a FILE; the README's "
    "`rftgrad diagnose examples/rollouts.jsonl ...` runs)",
    "rftgrad preflight": "the subcommand's name in the command table, not a command (it needs a local model folder "
    "and a prompts file; tests/test_preflight.py runs it on a tiny GPT-2 saved with save_pretrained)",
    "HYPOTHESIS_PROFILE=ci python -m pytest": "the test suite, which this test is part of; CI runs this very block "
    "(tests/test_readme.py, test_ci_runs_the_readme_test_command)",
    "rftgrad sweep": "the subcommand's name in the prose, not a command (it needs an EXPERIMENT and a --grid; the "
    "README's `rftgrad sweep heuristics ...` runs)",
    f"{SWEEP} --address auto": "joins a running Ray cluster (ray start); tests/test_sweep.py runs sweeps whose "
    "driver joins a local Ray instance with --address",
}

DIGITS = "rftgrad run compare --set env=digits --set num_inputs=1000 --set policy=mlp --set p0=0 " + (
    '--set "arms=rft:500,sft:500"'
)
FIGURES_TINY = ("--tiny", "--out", "gallery", "--runs", "runs/figures")

#: README commands the default run executes with other arguments. The times are of the README command verbatim, at
#: one thread (OMP_NUM_THREADS=1), as CPU seconds (about the wall time on an idle machine). The default run
#: executes verbatim what takes under about 15 s.
SUBSTITUTED: dict[str, Substitute] = {
    "rftgrad figures": Substitute(
        ("figures", *FIGURES_TINY, "--only", "bound"),
        "the layout table names the command: quick budget, minutes, into runs/figures/quick/gallery/; --out and "
        "--runs in the working folder, --tiny --only bound draws one figure in seconds",
        slow_verbatim=False,
    ),
    "rftgrad figures --gallery": Substitute(
        ("figures", *FIGURES_TINY, "--only", "bound"),
        "quick budget, about 9 min from a fresh clone (the README); --gallery writes the checkout's "
        "paper_figures/. --out and --runs in the working folder, --tiny --only bound draws one figure in seconds "
        "(tests/test_figures.py draws each figure at --tiny)",
        slow_verbatim=False,
    ),
    DIGITS: Substitute(
        (*shlex.split(DIGITS)[1:], "--set", "arms=rft:30,sft:30"), "27 s; 30 steps per arm", slow_verbatim=True
    ),
    "rftgrad run dynamics": Substitute(budget_of("dynamics"), "18 s; TESTING budget", slow_verbatim=True),
    "rftgrad run heuristics": Substitute(budget_of("heuristics"), "141 s; TESTING budget", slow_verbatim=True),
    "rftgrad run sft_budget": Substitute(budget_of("sft_budget"), "39 s; TESTING budget", slow_verbatim=True),
    "rftgrad run sft_targeting": Substitute(budget_of("sft_targeting"), "80 s; TESTING budget", slow_verbatim=True),
    "rftgrad run reward_teacher": Substitute(budget_of("reward_teacher"), "25 s; TESTING budget", slow_verbatim=True),
    "rftgrad run estimators": Substitute(budget_of("estimators"), "334 s; TESTING budget", slow_verbatim=True),
    "rftgrad run prevalence": Substitute(
        budget_of("prevalence"), "641 s (pretraining cache empty); TESTING budget", slow_verbatim=True
    ),
    SWEEP: Substitute(
        sweep_budget_of("heuristics", ["output_sizes=10,30", "data_seed=0,1"]),
        "10 points of the default budget with 20 seeds each, several minutes on 2 cores; 4 points at the TESTING "
        "budget on Ray",
        slow_verbatim=False,
    ),
    "rftgrad check --examples 2000": Substitute(
        ("check", "--examples", "2000", "--examples", "40"), "49 s; 40 examples", slow_verbatim=True
    ),
    "HYPOTHESIS_PROFILE=thorough python -m pytest tests/theory/test_bound_properties.py -k every_bound_holds": (
        Substitute(
            ("--collect-only", "-q", "tests/theory/test_bound_properties.py", "-k", "every_bound_holds"),
            "10^5 examples, 42 min (the README); collecting shows that the profile loads and -k selects the "
            "property, which the default run runs at the default profile",
            slow_verbatim=False,
        )
    ),
}

#: Blocks that are not code to run: language (or first line of an indented block) -> what they are.
NOT_CODE: dict[str, str] = {
    "text": "the command-line synopsis (placeholders, options in brackets); its subcommands and options are "
    "checked against the parser by test_readme_synopses_name_real_options",
    "indented:T_RFT = (K−1)/(2K) · [ (p₁−p₀)/(p₀p₁) + (p₁−p₀)/((1−p₀)(1−p₁)) + 2·ln(p₁(1−p₀) / (p₀(1−p₁))) ]": (
        "formulas of Theorem 2's hitting times, not code"
    ),
}

#: Python blocks, by their marker, that tests/test_readme.py runs and checks numbers of (not run again here).
CHECKED_IN_TEST_README: dict[str, str] = {
    "readme-snippet": "test_readme_snippet_computes_exact_quantities",
    "finetune-snippet": "test_readme_finetune_snippet_shows_rft_stalling_where_sft_succeeds",
}

#: README commands whose documented exit code is not 0.
EXIT_CODES: dict[str, int] = {}


# --- running a command -----------------------------------------------------------------------------------


def snapshot() -> dict[str, object]:
    """The names at the top of the checkout, and size and modification time of every file under its guarded parts."""
    files: dict[str, object] = {"top-level names": sorted(path.name for path in ROOT.iterdir())}
    for part in GUARDED:
        for path in sorted((ROOT / part).rglob("*")) if (ROOT / part).exists() else []:
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                files[str(path.relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A temporary working folder holding copies of the files the README's commands read, its own cache."""
    for name in COPIED_INTO_WORKSPACE:
        shutil.copytree(ROOT / name, tmp_path / name)
    monkeypatch.setenv("RFTGRAD_CACHE", str(tmp_path / ".cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_rftgrad(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``rftgrad args`` in-process: exit code (argparse's exit included) and what it printed."""
    try:
        code = main(list(args))
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_pytest(env: dict[str, str], args: Sequence[str]) -> tuple[int, str]:
    """``python -m pytest args`` in the checkout with ``env`` added; no cache, no bytecode written."""
    environ = {**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False)
    return done.returncode, done.stdout + done.stderr


def execute(command: Command, capsys: pytest.CaptureFixture[str], verbatim: bool = False) -> str:
    """Run one README command (its substitute unless ``verbatim``), assert its exit code; returns its output."""
    substitute = None if verbatim else SUBSTITUTED.get(command.text)
    env, argv = program(command)
    before = snapshot()
    if argv[:1] == ["rftgrad"] and not env:
        args = substitute.args if substitute else argv[1:]
        if args[:1] == ["figures"] and ("--out" not in args or "--gallery" in args) and "--list" not in args:
            pytest.fail(f"README.md:{command.line}: `{command.text}` would write the checkout's gallery (--gallery) "
                        "or run minutes outside --out: give it a substitute with --out in the working folder in "
                        "SUBSTITUTED")  # fmt: skip
        code, output = run_rftgrad(args, capsys)
    elif argv[:3] == ["python", "-m", "pytest"]:
        args = substitute.args if substitute else argv[3:]
        code, output = run_pytest(env, args)
    else:
        pytest.fail(f"README.md:{command.line}: no runner for {command.text!r}; list it in NOT_EXECUTED")
    ran = "verbatim" if substitute is None else f"as {shlex.join(args)} (SUBSTITUTED)"
    expected = EXIT_CODES.get(command.text, 0)
    tail = "\n".join(output.strip().splitlines()[-15:])
    assert code == expected, (
        f"README.md:{command.line}: `{command.text}` exited with {code}, expected {expected}; ran {ran}:\n{tail}"
    )
    assert snapshot() == before, f"README.md:{command.line}: `{command.text}` ({ran}) wrote into the checkout"
    return output


def runnable(commands: Sequence[Command]) -> list[Command]:
    return [command for command in commands if command.text not in NOT_EXECUTED]


def block_id(block: Block) -> str:
    return f"README.md:{block.line}"


# --- the tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [b for b in BASH_BLOCKS if runnable(bash_commands(b))], ids=block_id)
def test_readme_bash_block_runs_in_order(block, workspace, capsys):
    """Each command of the block, substitutes from SUBSTITUTED, in README order in one working folder."""
    for command in runnable(bash_commands(block)):
        execute(command, capsys)


def inline_examples() -> list[Command]:
    """The concrete inline commands, each once, leaving out those a bash block runs or NOT_EXECUTED lists."""
    seen = {command.text for block in BASH_BLOCKS for command in bash_commands(block)} | set(NOT_EXECUTED)
    found = []
    for command in INLINE:
        if not is_synopsis(command.text) and command.text not in seen:
            found.append(command)
            seen.add(command.text)
    return found


@pytest.mark.parametrize("command", inline_examples(), ids=lambda c: f"README.md:{c.line}:{c.text}")
def test_readme_inline_command_runs(command, workspace, capsys):
    execute(command, capsys)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=block_id)
def test_readme_python_block_runs(block):
    """A python block runs without error in a fresh namespace (stdout captured); one with its own test in
    tests/test_readme.py, which also checks the numbers its comments quote, is left to that test."""
    if block.marker in CHECKED_IN_TEST_README:
        assert callable(getattr(test_readme, CHECKED_IN_TEST_README[block.marker], None))
        return
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile("\n" * (block.line - 1) + block.body, str(README), "exec"), {"__name__": "__readme__"})


def all_commands() -> list[Command]:
    return [command for block in BASH_BLOCKS for command in bash_commands(block)] + INLINE


def slow_commands() -> list[Command]:
    found = {c.text: c for c in reversed(all_commands()) if getattr(SUBSTITUTED.get(c.text), "slow_verbatim", False)}
    return sorted(found.values(), key=lambda command: command.line)


@pytest.mark.slow
@pytest.mark.parametrize("command", slow_commands(), ids=lambda c: f"README.md:{c.line}:{c.text}")
def test_readme_long_command_runs_verbatim(command, workspace, capsys):
    """The README commands too long for the default run, verbatim (earlier lines of their block first)."""
    block = next((b for b in BASH_BLOCKS if command in bash_commands(b)), None)
    for earlier in runnable(bash_commands(block)) if block else []:
        if earlier == command:
            break
        execute(earlier, capsys)
    execute(command, capsys, verbatim=True)


def not_code_key(block: Block) -> str:
    """A block's key in NOT_CODE: its language, or ``indented:`` and its first line."""
    return f"indented:{block.body.splitlines()[0].strip()}" if block.language == "indented" else block.language


def test_every_readme_example_is_executed_or_listed():
    """Nothing in README.md escapes: each block is run or listed, each command has a runner or a reason, and
    every table entry still names something in README.md."""
    problems = []
    for block in BLOCKS + indented_blocks(TEXT):
        if block.language not in ("python", "bash") and not_code_key(block) not in NOT_CODE:
            problems.append(f"README.md:{block.line}: a ```{block.language} block: run it here or list it in NOT_CODE")
    for command in all_commands():
        env, argv = program(command)
        if command.text in NOT_EXECUTED or is_synopsis(command.text) and command in INLINE:
            continue
        if command.text in SUBSTITUTED and (argv[:1] == ["rftgrad"] or argv[:3] == ["python", "-m", "pytest"]):
            continue
        if argv[:1] != ["rftgrad"] or env:
            problems.append(f"README.md:{command.line}: `{command.text}` is not an rftgrad command: list it in "
                            "NOT_EXECUTED or SUBSTITUTED with the reason")  # fmt: skip
    texts = {command.text for command in all_commands()}
    for table, keys in (("NOT_EXECUTED", NOT_EXECUTED), ("SUBSTITUTED", SUBSTITUTED), ("EXIT_CODES", EXIT_CODES)):
        problems += [f"{table}[{key!r}] is not a command of README.md any more" for key in keys if key not in texts]
    keys = {not_code_key(block) for block in BLOCKS + indented_blocks(TEXT)}
    problems += [f"NOT_CODE[{key!r}] matches no block of README.md any more" for key in NOT_CODE if key not in keys]
    markers = {block.marker for block in PYTHON_BLOCKS}
    for marker, name in CHECKED_IN_TEST_README.items():
        if marker not in markers or not callable(getattr(test_readme, name, None)):
            problems.append(f"CHECKED_IN_TEST_README[{marker!r}]: no such python block, or no test_readme.{name}")
    assert not problems, "README examples neither executed nor listed:\n" + "\n".join(problems)


def subcommand_options() -> dict[str, set[str]]:
    parser = build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return {name: set(sub._option_string_actions) for name, sub in commands.choices.items()}


def synopses() -> list[Command]:
    """The synopsis lines: inline ones with a placeholder and each ``rftgrad`` line of the ```text blocks."""
    found = [command for command in INLINE if is_synopsis(command.text)]
    for block in BLOCKS:
        if block.language == "text":
            entries = re.split(r"\n(?=rftgrad\s)", block.body)
            found += [Command(" ".join(e.split()), block.line + block.body[: block.body.index(e)].count("\n"))
                      for e in entries if e.startswith("rftgrad")]  # fmt: skip
    return found


@pytest.mark.parametrize("command", synopses(), ids=lambda c: f"README.md:{c.line}:{c.text[:40]}")
def test_readme_synopses_name_real_options(command):
    """A synopsis names a real subcommand, and each ``--option`` it shows exists for that subcommand."""
    options = subcommand_options()
    words = command.text.split()
    assert words[1] in options, f"README.md:{command.line}: `rftgrad {words[1]}` is no subcommand of rftgrad"
    shown = {m.group(0) for m in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]*", command.text)}
    unknown = sorted(shown - options[words[1]])
    assert not unknown, f"README.md:{command.line}: `rftgrad {words[1]}` has no option(s) {', '.join(unknown)}"


# --- the collector itself --------------------------------------------------------------------------------


def test_collector_reads_commands_as_the_shell_does():
    block = Block("bash", 10, 'a && b --set "x=1,2"   # note\n# only a comment\nrftgrad run c \\\n  --seeds 1\n')
    assert [(c.text, c.line) for c in bash_commands(block)] == [
        ("a", 10),
        ('b --set "x=1,2"', 10),
        ("rftgrad run c --seeds 1", 12),
    ]
    assert bash_commands(block)[1].argv == ["b", "--set", "x=1,2"]
    assert strip_comment("rftgrad run x --set 'k=#1' # c") == "rftgrad run x --set 'k=#1'"
    assert is_synopsis("rftgrad run EXPERIMENT [--full]") and is_synopsis("rftgrad figures --only <name>")
    assert not is_synopsis("rftgrad check --examples 2000") and not is_synopsis("rftgrad run compare --seeds 4")
    text = "intro `rftgrad list` and `rftgrad run\nx`\n\n```bash\nrftgrad hidden\n```\n\n    T = 1\n"
    assert [(c.text, c.line) for c in inline_commands(text)] == [("rftgrad list", 1), ("rftgrad run x", 1)]
    assert [(b.language, b.line, b.body) for b in fenced_blocks(text)] == [("bash", 5, "rftgrad hidden")]
    assert [(b.line, b.body) for b in indented_blocks(text)] == [(8, "    T = 1")]


def test_readme_has_the_examples_this_file_expects():
    """The collector finds the README's examples (a parse error would otherwise pass vacuously)."""
    texts = [command.text for command in all_commands()]
    assert "rftgrad run compare --config runs/compare/config.toml" in texts
    assert "rftgrad list" in texts and "rftgrad diagnose examples/rollouts.jsonl --out runs/diagnose" in texts
    assert {b.marker for b in PYTHON_BLOCKS} >= set(CHECKED_IN_TEST_README)


def test_a_figures_command_without_out_is_refused_before_it_runs(workspace, capsys):
    """`rftgrad figures` (or `--gallery`) writes the checkout's gallery: it needs a substitute, it never runs as is."""
    for text in ("rftgrad figures --only bound", "rftgrad figures --gallery --out x"):
        with pytest.raises(pytest.fail.Exception, match="would write the checkout's gallery"):
            execute(Command(text, 1), capsys)
