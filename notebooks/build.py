# ruff: noqa: E501 - the notebooks' code sits 12 spaces deep in this file; ruff checks its lines in the .ipynb files
"""Build the course notebooks from one source: each lesson's cells are Python data here.

    python notebooks/build.py            # (re)write notebooks/NN_<name>.ipynb and NN_<name>_solutions.ipynb
    python notebooks/build.py --check    # exit 1 if a committed notebook differs from what this file builds

Every lesson renders twice. The student notebook has a ``# TODO`` and a placeholder in each
exercise cell (tag ``exercise``) and an ``assert`` in the cell after it (tag ``check``) that
fails until the exercise is solved; the solutions notebook has the same cells with the
exercise cells filled in. The notebooks are written without outputs, with fixed cell ids, so
that a rebuild gives the same bytes (``tests/test_notebooks.py`` checks it and runs them).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

#: where the notebooks live (this file's folder).
NOTEBOOK_DIR = Path(__file__).resolve().parent
#: tags of the cells a student fills in and of the cells that check them.
EXERCISE_TAG, CHECK_TAG = "exercise", "check"
#: the environment variable that selects small budgets (the test suite sets it to 1).
QUICK_VARIABLE = "RFTGRAD_NOTEBOOK_QUICK"
QUICK_LINE = f'QUICK = os.environ.get("{QUICK_VARIABLE}") == "1"  # small budgets (the test suite sets it)'
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@dataclass(frozen=True)
class Cell:
    """One notebook cell: ``kind`` is ``markdown`` or ``code``."""

    kind: str
    source: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exercise:
    """An exercise: its task (markdown), the student's starter code, the solution, and the check."""

    title: str
    task: str
    starter: str
    solution: str
    check: str


@dataclass(frozen=True)
class Lesson:
    """A lesson: ``slug`` names its files (``NN_name``), ``cells`` its body, then its exercises."""

    slug: str
    title: str
    minutes: int
    summary: str
    cells: tuple[Cell, ...]
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)


def _text(source: str) -> str:
    return textwrap.dedent(source).strip("\n")


def md(source: str) -> Cell:
    """A markdown cell (the text is dedented)."""
    return Cell("markdown", _text(source))


def code(source: str, tags: Sequence[str] = ()) -> Cell:
    """A code cell (the text is dedented)."""
    return Cell("code", _text(source), tuple(tags))


def exercise(title: str, task: str, starter: str, solution: str, check: str) -> Exercise:
    """An exercise with dedented parts."""
    return Exercise(title, _text(task), _text(starter), _text(solution), _text(check))


def header(lesson: Lesson, number: int, solutions: bool) -> Cell:
    """The title cell: lesson number, time, what it covers, and which rendering this is."""
    kind = (
        "**Solutions notebook**: the exercise cells at the end are filled in."
        if solutions
        else "The exercises at the end have a `# TODO` cell and a check cell that passes once you solve it "
        f"(solutions: `{lesson.slug}_solutions.ipynb`)."
    )
    return md(
        f"# Lesson {number} — {lesson.title}\n\n"
        f"*rftgrad course, lesson {number} of {len(LESSONS)}; about {lesson.minutes} minutes to read and run.*\n\n"
        f"{lesson.summary}\n\n{kind} Set `{QUICK_VARIABLE}=1` before starting Jupyter for small budgets "
        "(what the test suite runs)."
    )


def render(lesson: Lesson, solutions: bool) -> nbformat.NotebookNode:
    """The student (``solutions=False``) or solutions notebook of ``lesson``: no outputs, fixed cell ids."""
    number = LESSONS.index(lesson) + 1
    cells = [header(lesson, number, solutions), *lesson.cells]
    if lesson.exercises:
        cells.append(
            md(
                "## Exercises\n\nEach exercise cell (tag `exercise`) is followed by a check cell (tag `check`): "
                "run it after your answer; it raises an `AssertionError` until the answer is right."
            )
        )
    for index, item in enumerate(lesson.exercises, start=1):
        cells.append(md(f"### Exercise {index}: {item.title}\n\n{item.task}"))
        cells.append(code(item.solution if solutions else item.starter, tags=(EXERCISE_TAG,)))
        cells.append(code(item.check, tags=(CHECK_TAG,)))
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for index, cell in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if cell.kind == "markdown" else nbformat.v4.new_code_cell
        node = make(cell.source, id=f"cell-{index:03d}")
        if cell.tags:
            node.metadata["tags"] = list(cell.tags)
        notebook.cells.append(node)
    nbformat.validate(notebook)
    return notebook


def notebook_texts() -> dict[Path, str]:
    """Path -> file content of every notebook this file builds (students' and solutions)."""
    texts = {}
    for lesson in LESSONS:
        for solutions in (False, True):
            name = f"{lesson.slug}_solutions.ipynb" if solutions else f"{lesson.slug}.ipynb"
            texts[NOTEBOOK_DIR / name] = nbformat.writes(render(lesson, solutions)) + "\n"
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    """Write the notebooks, or with ``--check`` report those that differ from this file (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in notebook_texts().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python notebooks/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(("stale: " if args.check else "written: ") + (", ".join(stale) or "none"))
    return 0


# =====================================================================================
# Lesson 1: the softmax policy gradient
# =====================================================================================

LESSON_1 = Lesson(
    slug="01_policy_gradient",
    title="the softmax policy gradient",
    minutes=25,
    summary=(
        "The exact gradient of the expected reward of a softmax policy, $\\nabla V = E[(r - V)\\nabla \\log p]$, "
        "its covariance form, and why a small reward standard deviation (STD) forces a small gradient, "
        "even when the expected reward is as bad as it gets."
    ),
    cells=(
        code(
            f"""
            import os

            import matplotlib.pyplot as plt
            import numpy as np
            import torch

            from rftgrad.envs import BanditEnv
            from rftgrad.models import TabularPolicy
            from rftgrad.theory import bound_table, exact, reinforce_gradient
            from rftgrad.theory.dynamics import rft_gradient

            {QUICK_LINE}
            """
        ),
        md(
            r"""
            ## 1. One input, four answers

            The simplest reinforcement-finetuning problem has one input, $K$ possible outputs (one token,
            $L = 1$: a bandit), a softmax policy $p = \mathrm{softmax}(z)$ over logits $z \in \mathbb{R}^K$ and a
            reward $r(y) \in [-1, 1]$ per output. The quantities of the paper (Razin et al., ICLR 2024) are

            * the expected reward $V = \sum_y p(y)\, r(y)$,
            * the reward standard deviation $\mathrm{STD} = \sqrt{\sum_y p(y)\,(r(y) - V)^2}$,
            * the policy gradient $\nabla V = E_{y \sim p}[(r(y) - V)\, \nabla \log p(y)]$.

            `BanditEnv` is that environment and `TabularPolicy` gives every (input, prefix) its own logits.
            `exact` enumerates every output, so there is no sampling noise anywhere in this lesson.
            Every policy in rftgrad carries a leading *replica* axis `R` (seeds or settings side by side).
            """
        ),
        code(
            """
            rewards = [1.0, -1.0, -1.0, 0.5]  # answer 0 is right (+1), answers 1 and 2 are wrong, 3 is half right
            env = BanditEnv(rewards)
            policy = TabularPolicy.for_env(env, dtype="float64")
            print(env.describe())
            print(policy.describe())
            print("logits shape (R, N, prefix states, K):", tuple(policy.params["logits"].shape))


            def set_logits(policy: TabularPolicy, logits: list[float]) -> None:
                \"\"\"Put the same K logits on every replica (one input, one prefix state: the empty prefix).\"\"\"
                policy.params["logits"][:, 0, 0] = torch.tensor(logits, dtype=policy.dtype)


            set_logits(policy, [0.0, 1.0, 0.5, -1.0])
            result = exact(policy, env, keep_grads=True)  # keep_grads: keep ∇V itself, not only its norm
            print("p     =", result.probs[0, 0].numpy().round(4))
            print("V     =", float(result.value[0, 0]))
            print("STD   =", float(result.std[0, 0]))
            print("∇_z V =", result.grads["logits"][0, 0, 0, 0].numpy().round(4))
            """
        ),
        md(
            r"""
            ## 2. The formula, three lines of numpy

            For a softmax, $\partial \log p(y) / \partial z = e_y - p$, so

            $$\nabla_z V = \sum_y p(y)\,(r(y) - V)\,(e_y - p) = p \odot (r - V),$$

            because $\sum_y p(y)(r(y) - V) = 0$. Here it is by hand, checked against the library
            (`exact` above and the logit velocity `rft_gradient` used in lesson 3):
            """
        ),
        code(
            """
            z, r = np.array([0.0, 1.0, 0.5, -1.0]), np.array(rewards)
            p = np.exp(z) / np.exp(z).sum()  # softmax
            grad_by_formula = p * (r - p @ r)  # p ⊙ (r - V)

            # grads: (R, N, *parameter shape) and the logits parameter is (N, prefix states, K) per replica
            library = result.grads["logits"][0, 0, 0, 0].numpy()
            assert np.allclose(grad_by_formula, library, atol=1e-12)
            assert np.allclose(rft_gradient(z, r), library, atol=1e-12)
            print("formula == rftgrad.theory.exact == rftgrad.theory.dynamics.rft_gradient")
            """
        ),
        md(
            r"""
            ## 3. The expectation, by sampling

            RFT algorithms never see $\nabla V$; they average $(r - b)\,\nabla \log p(y)$ over sampled outputs
            (REINFORCE). `reinforce_gradient` draws `num_samples` outputs and returns that average; its error
            shrinks like $1/\sqrt{M}$ around the exact gradient.
            """
        ),
        code(
            """
            sample_sizes = [10, 100, 1_000] if QUICK else [10, 100, 1_000, 10_000, 100_000]
            for num_samples in sample_sizes:
                estimate = reinforce_gradient(policy, env, num_samples=num_samples, seed=0)["logits"][0, 0, 0].numpy()
                error = np.linalg.norm(estimate - library)
                print(f"M = {num_samples:>7}: |estimate - exact| = {error:.4f}   (sqrt(1/M) = {num_samples**-0.5:.4f})")
            """
        ),
        md(
            r"""
            ## 4. The covariance form, and why a small STD means a small gradient

            Since $E[\nabla \log p(y)] = \nabla \sum_y p(y) = 0$, the policy gradient is a covariance:

            $$\nabla V = E[(r - V)\nabla \log p] = \mathrm{Cov}_{y\sim p}\big(r(y),\ \nabla \log p(y)\big),
            \qquad \frac{\partial V}{\partial z_a} = \mathrm{Cov}\big(r(y),\ \mathbf{1}[y = a]\big).$$

            A covariance is at most the product of the two standard deviations (Cauchy–Schwarz), so each
            coordinate obeys $|\partial V / \partial z_a| \le \mathrm{STD} \cdot \sqrt{p_a(1-p_a)}$ and the whole
            logit gradient obeys

            $$\|\nabla_z V\| = \|p \odot (r - V)\| \le \sqrt{\max_a p_a}\ \cdot \mathrm{STD} \le \mathrm{STD}.$$

            *The reward STD under the model caps the gradient*, whatever the expected reward is. rftgrad's
            `bound_table` reports this bound as `logit_bound` next to the gradient it bounds
            (`logit_grad_norm`); lesson 2 covers the bounds for general models and outputs of any length.
            """
        ),
        code(
            """
            table = bound_table(policy, env)
            print(table[["reward_mean", "reward_std", "logit_grad_norm", "logit_bound", "ratio_logit"]].to_string())

            covariance = [np.cov(r, (np.arange(4) == a).astype(float), aweights=p, bias=True)[0, 1] for a in range(4)]
            assert np.allclose(covariance, library, atol=1e-12)  # ∂V/∂z_a = Cov(r, 1[y = a]) under p
            per_coordinate_cap = float(result.std[0, 0]) * np.sqrt(p * (1 - p))
            assert np.all(np.abs(library) <= per_coordinate_cap + 1e-12)
            print("every |∂V/∂z_a| <= STD·sqrt(p_a(1-p_a)):", np.round(np.abs(library) / per_coordinate_cap, 3))
            """
        ),
        md(
            r"""
            ## 5. Move the logits, watch the gradient and the STD

            Keep the logits of answers 2 and 3 at 0 and move those of answer 0 (right) and answer 1 (wrong).
            When the policy puts almost all its mass on the *wrong* answer, the expected reward is near its
            worst ($-1$), yet the STD is near 0, and so is the gradient: the exact policy gradient has
            almost nothing to say about this input. With `ipywidgets` installed (and `QUICK` off) you get two
            sliders; otherwise the cell prints a few settings.
            """
        ),
        code(
            """
            knobs = TabularPolicy.for_env(env, dtype="float64")  # the policy the sliders move


            def show(z_right: float = 0.0, z_wrong: float = 0.0) -> None:
                \"\"\"Print p(right), V, STD, ||∇_z V|| and its bound sqrt(max p)·STD at logits (z_right, z_wrong, 0, 0).\"\"\"
                set_logits(knobs, [z_right, z_wrong, 0.0, 0.0])
                row = bound_table(knobs, env).iloc[0]
                p_right = float(exact(knobs, env, per_input=False).probs[0, 0, 0])
                print(
                    f"p(right) = {p_right:9.3g}   V = {row.reward_mean:7.4f}   STD = {row.reward_std:9.3g}"
                    f"   ||∇V|| = {row.logit_grad_norm:9.3g}   bound = {row.logit_bound:9.3g}"
                )


            try:
                import ipywidgets as widgets
            except ImportError:
                widgets = None

            if widgets is not None and not QUICK:
                sliders = {name: widgets.FloatSlider(value=0.0, min=-12.0, max=12.0, step=0.5) for name in ("z_right", "z_wrong")}
                widgets.interact(show, **sliders)
            else:
                for z_right, z_wrong in [(0, 0), (0, 4), (0, 8), (0, 12), (8, 0)]:
                    print(f"z_right = {z_right:3}, z_wrong = {z_wrong:3}:", end="  ")
                    show(z_right, z_wrong)
            """
        ),
        md(
            r"""
            The same sweep as a picture. Instead of a Python loop, every value of the wrong answer's logit is a
            replica of one policy: one call of `exact` evaluates them all.
            """
        ),
        code(
            """
            z_wrong = np.linspace(-6.0, 14.0, 41 if QUICK else 201)
            sweep = TabularPolicy.for_env(env, num_replicas=len(z_wrong), dtype="float64")
            sweep.params["logits"][:, 0, 0] = 0.0
            sweep.params["logits"][:, 0, 0, 1] = torch.from_numpy(z_wrong)
            rows = bound_table(sweep, env)

            fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
            left.plot(z_wrong, rows.reward_mean, label="V (expected reward)")
            left.plot(z_wrong, rows.reward_std, label="STD")
            left.set(xlabel="logit of the wrong answer", title="reward mean and STD")
            left.legend()
            right.semilogy(z_wrong, rows.logit_grad_norm, label="||∇_z V||")
            right.semilogy(z_wrong, rows.logit_bound, "--", label="sqrt(max p)·STD")
            right.set(xlabel="logit of the wrong answer", title="gradient and its bound")
            right.legend()
            plt.show()
            print(
                f"at z_wrong = {z_wrong[-1]:.0f}: V = {rows.reward_mean.iloc[-1]:.4f}, gradient {rows.logit_grad_norm.iloc[-1]:.2e}"
            )
            """
        ),
        md(
            r"""
            **Takeaway.** The exact expected gradient of an input is at most its reward STD (times model
            factors, lesson 2). A model that is confidently wrong on an input ($V \approx -1$, STD $\approx 0$)
            gets almost no gradient there: not because of sampling noise, but because the expectation itself
            vanishes. Lesson 3 turns this into training time, lesson 4 shows it in a controlled experiment.
            """
        ),
    ),
    exercises=(
        exercise(
            "the covariance form by hand",
            r"""
            For logits $z = (0.5, -1, 2, 0)$ and rewards $r = (1, -1, 0.3, -0.2)$, compute the gradient
            $\partial V / \partial z_a$ for every $a$ **from the covariance form**
            $\mathrm{Cov}(r(y), \mathbf{1}[y = a]) = E[r\,\mathbf{1}[y=a]] - E[r]\,E[\mathbf{1}[y=a]]$ with numpy
            (expectations over $y \sim p$). The check compares it with `exact`.
            """,
            """
            ex_logits = np.array([0.5, -1.0, 2.0, 0.0])
            ex_rewards = np.array([1.0, -1.0, 0.3, -0.2])
            # TODO: the gradient of V with respect to the logits, from the covariance form: a numpy array of shape (4,)
            grad_by_hand = None
            """,
            """
            ex_logits = np.array([0.5, -1.0, 2.0, 0.0])
            ex_rewards = np.array([1.0, -1.0, 0.3, -0.2])
            probs = np.exp(ex_logits) / np.exp(ex_logits).sum()
            indicator = np.eye(4)  # row y holds (1[y = a])_a
            expect_r_times_indicator = probs @ (ex_rewards[:, None] * indicator)  # E[r 1[y = a]]
            grad_by_hand = expect_r_times_indicator - (probs @ ex_rewards) * (probs @ indicator)
            """,
            """
            assert grad_by_hand is not None, "fill in grad_by_hand"
            check_env = BanditEnv(ex_rewards.tolist())
            check_policy = TabularPolicy.for_env(check_env, dtype="float64")
            set_logits(check_policy, ex_logits.tolist())
            expected = exact(check_policy, check_env, keep_grads=True).grads["logits"][0, 0, 0, 0].numpy()
            assert np.shape(grad_by_hand) == (4,), np.shape(grad_by_hand)
            assert np.allclose(grad_by_hand, expected, atol=1e-10), (grad_by_hand, expected)
            print("correct:", expected.round(5))
            """,
        ),
        exercise(
            "half right, and no push toward the right answer",
            r"""
            On the four-answer bandit `env` of this lesson (rewards $1, -1, -1, 0.5$), find logits for which
            the reward STD is below 0.01 **and** the expected reward lies between 0.4 and 0.6: far from the
            best reward 1, yet (the check confirms it) with a gradient below $\sqrt{\max_a p_a}\cdot\mathrm{STD}$,
            hence below 0.01. The section 5 sweep only moved answers 0 and 1.
            """,
            """
            # TODO: four logits (a list of floats) with STD < 0.01 and 0.4 < V < 0.6
            stuck_logits = None
            """,
            """
            stuck_logits = [0.0, 0.0, 0.0, 12.0]  # almost all mass on the half-right answer: V ≈ 0.5, STD ≈ 0.005
            """,
            """
            assert stuck_logits is not None, "fill in stuck_logits"
            stuck = TabularPolicy.for_env(env, dtype="float64")
            set_logits(stuck, list(stuck_logits))
            row = bound_table(stuck, env).iloc[0]
            assert row.reward_std < 0.01, f"STD = {row.reward_std:.4f} is not below 0.01"
            assert 0.4 < row.reward_mean < 0.6, f"V = {row.reward_mean:.4f} is not in (0.4, 0.6)"
            assert row.logit_grad_norm <= row.logit_bound * (1 + 1e-9)
            assert row.logit_grad_norm < 0.01
            print(f"V = {row.reward_mean:.4f}, STD = {row.reward_std:.2e}, ||∇V|| = {row.logit_grad_norm:.2e}")
            """,
        ),
        exercise(
            "predict the gradient from the STD",
            r"""
            For the **uniform** policy over four answers with rewards $(0.9, -0.3, 0.1, -1.0)$, the bound
            $\|\nabla_z V\| \le \sqrt{\max_a p_a}\cdot\mathrm{STD}$ holds with equality (why?). Predict
            $\|\nabla_z V\|$ from the STD alone, without calling rftgrad, and let the check compare it with
            `exact`.
            """,
            """
            uniform_rewards = np.array([0.9, -0.3, 0.1, -1.0])
            # TODO: the gradient norm of the uniform policy, from the reward STD alone
            predicted_norm = None
            """,
            """
            uniform_rewards = np.array([0.9, -0.3, 0.1, -1.0])
            uniform_std = np.sqrt(np.mean((uniform_rewards - uniform_rewards.mean()) ** 2))  # STD under p = 1/4 each
            predicted_norm = np.sqrt(1 / 4) * uniform_std  # equality: every p_a equals max p
            """,
            """
            assert predicted_norm is not None, "fill in predicted_norm"
            uniform_env = BanditEnv(uniform_rewards.tolist())
            uniform = TabularPolicy.for_env(uniform_env, init_scale=0.0, dtype="float64")  # all logits 0
            actual = float(exact(uniform, uniform_env).grad_norm[0, 0])
            assert abs(predicted_norm - actual) < 1e-10, (predicted_norm, actual)
            print(f"||∇V|| = {actual:.12f} = sqrt(1/4)·STD")
            """,
        ),
    ),
)

# =====================================================================================
# Lesson 2: Theorem 1, its sharpened forms, the tightness witness, property tests
# =====================================================================================

LESSON_2 = Lesson(
    slug="02_theorem1",
    title="Theorem 1: a small reward STD caps the gradient",
    minutes=30,
    summary=(
        "The paper's bound $\\|\\nabla_\\theta V\\| \\le 6L\\gamma\\,\\mathrm{STD}^{2/3}$ for any autoregressive "
        "softmax model, the sharpened bound $\\gamma\\sqrt{L}\\,\\mathrm{STD}$, the witness that shows the "
        "$\\sqrt{L}$ is needed, and property tests you run yourself (and try to break)."
    ),
    cells=(
        code(
            f"""
            import math
            import os

            import matplotlib.pyplot as plt
            import numpy as np
            import torch

            from rftgrad.envs import BanditEnv, random_sequence_env
            from rftgrad.experiments.tightness.config import Config as SearchConfig
            from rftgrad.experiments.tightness.run import search
            from rftgrad.models import TabularPolicy, TinyTransformerPolicy
            from rftgrad.theory import (
                POLICY_KINDS,
                REWARD_KINDS,
                InstanceSpec,
                bound_table,
                draw_specs,
                exact,
                gamma,
                paper_bound,
                random_instance,
                sharpened_bound,
                tightness_witness,
            )
            from rftgrad.theory.check import run_check
            from rftgrad.theory.symbolic import chebyshev_threshold_bound

            {QUICK_LINE}
            """
        ),
        md(
            r"""
            ## The statement

            Outputs $y = (y_1, \dots, y_L)$ are sequences of $L$ tokens over a vocabulary of $V$ tokens, drawn
            token by token from $\pi_{y_{<l}} = \mathrm{softmax}(f_\theta(x, y_{<l}))$; rewards lie in $[-1, 1]$.
            Let $J_l$ be the Jacobian of the logits $f_\theta(x, y_{<l})$ with respect to the parameters $\theta$
            and $\gamma(x;\theta) = \max_l \max_{y_{<l}} \|J_l\|_2$ (over **all** prefixes).

            **Theorem 1** (Razin et al., ICLR 2024). For every input and every $\theta$,
            $\ \|\nabla_\theta V(x;\theta)\| \le 6 \cdot L \cdot \gamma(x;\theta) \cdot \mathrm{STD}(x;\theta)^{2/3}$.

            Nothing about the architecture is assumed. rftgrad also proves and checks sharper forms
            (docs/theorem1.md):

            | bound | formula | `bound_table` column |
            | --- | --- | --- |
            | paper | $6L\gamma\,\mathrm{STD}^{2/3}$ | `paper_bound` |
            | sharpened | $\gamma\sqrt{L}\,\mathrm{STD}$ | `sharpened_bound` |
            | martingale | $\gamma\sum_l \sqrt{\mathrm{Var}_l}$ | `martingale_bound` |
            | tight | $\gamma\sum_l \sqrt{\mathrm{Var}_l/2}$ | `tight_bound` |
            | logit space (lesson 1) | $\sqrt{\max_a \pi_\varnothing(a)}\,\mathrm{STD}$ on the logit gradient | `logit_bound` |

            with $\mathrm{Var}_l = E_{y_{<l}}[\mathrm{Var}(Q_l \mid y_{<l})]$, $Q_l = E[r \mid y_{\le l}]$. Since
            $\mathrm{STD} \le 1$, tight $\le$ martingale $\le$ sharpened $\le$ paper.
            """
        ),
        md(
            r"""
            ## 1. Exact quantities of a tiny transformer

            Four prompts, outputs of $L = 3$ tokens over $V = 4$ (64 outputs), reward $+1$ for each prompt's
            target output and $-1$ otherwise. `set_output_probability` puts probability exactly $p$ on the
            target, so $V = 2p - 1$ and $\mathrm{STD} = 2\sqrt{p(1-p)}$. `gamma` computes $\gamma$ from the
            Jacobians at every prefix.
            """
        ),
        code(
            """
            env = random_sequence_env(num_prompts=4, vocab_size=4, length=3, reward="exact_match", seed=0)
            policy = TinyTransformerPolicy.for_env(env, seed=0, dtype="float64")
            policy.set_output_probability(env, 1e-3)
            result = exact(policy, env)
            gammas = gamma(policy, env)  # (R, N)
            length = env.output_space.length
            print("V     ", result.value.numpy().round(4))
            print("STD   ", result.std.numpy().round(4))
            print("||∇V||", result.grad_norm.numpy().round(5))
            print("γ     ", gammas.numpy().round(2))
            print("paper bound     ", paper_bound(gammas, result.std, length).numpy().round(3))
            print("sharpened bound ", sharpened_bound(gammas, result.std, length).numpy().round(4))
            assert bool((result.grad_norm <= sharpened_bound(gammas, result.std, length)).all())
            """
        ),
        md(
            r"""
            ## 2. Where the 6 and the 2/3 come from

            The proof (docs/theorem1.md, section 2) splits the outputs at a threshold $t$ on $|r - V|$: close
            outputs contribute at most $2L\gamma\,t$, far ones (Chebyshev) at most $4L\gamma\,\mathrm{STD}^2/t^2$.
            `chebyshev_threshold_bound` redoes the algebra with sympy: balancing the two terms gives the exponent
            $2/3$, the threshold $t = \mathrm{STD}^{2/3}$ gives the constant 6, and the best threshold gives
            $3\cdot 4^{1/3} \approx 4.76$, the same exponent.
            """
        ),
        code(
            """
            derivation = chebyshev_threshold_bound()
            print("B(t) =", derivation.bound)
            print("balancing exponent:", derivation.exponent)
            print("constant at t = STD^(2/3):", derivation.balanced_constant)
            print("best constant:", derivation.optimal_constant, "≈", float(derivation.optimal_constant))
            """
        ),
        md(
            r"""
            ## 3. The martingale decomposition and the sharpened bound

            Write $r - V = \sum_l (Q_l - Q_{l-1})$: the increments are orthogonal, so
            $\mathrm{STD}^2 = \sum_l \mathrm{Var}_l$. Position $l$'s score only sees its own increment, which gives
            $\|\nabla V\| \le \gamma \sum_l \sqrt{\mathrm{Var}_l} \le \gamma\sqrt{L}\,\mathrm{STD}$: **linear** in the
            STD, never weaker than the paper's bound. `exact` returns the $\mathrm{Var}_l$ as `position_variance`.
            """
        ),
        code(
            """
            print("Σ_l Var_l - STD² =", (result.position_variance.sum(-1) - result.std**2).abs().max().item())

            probs = np.logspace(-7, -0.5, 6 if QUICK else 14)  # p(target), one replica each
            sweep = TinyTransformerPolicy.for_env(env, num_replicas=len(probs), seed=0, dtype="float64")
            sweep.set_output_probability(env, torch.tensor(probs)[:, None])  # (R, 1) broadcasts to (R, N)
            rows = bound_table(sweep, env)
            over_std = rows.grad_norm / (rows.gamma * rows.reward_std)
            print(f"{len(rows)} (p, prompt) pairs, STD from {rows.reward_std.min():.1e} to {rows.reward_std.max():.2f}:")
            print(
                f"||∇V|| / (γ STD) stays between {over_std.min():.3f} and {over_std.max():.3f}; violations: {rows.violation.sum()}"
            )

            plt.loglog(rows.reward_std, rows.grad_norm, "o", label="||∇V|| (exact), one point per (p, prompt)")
            plt.loglog(rows.reward_std, rows.sharpened_bound, "_", ms=14, label="γ √L STD (sharpened)")
            plt.loglog(rows.reward_std, rows.paper_bound, "x", label="6 L γ STD^(2/3) (paper)")
            plt.xlabel("reward STD")
            plt.legend()
            plt.title("tiny transformer, L = 3: the gradient falls like STD")
            plt.show()
            """
        ),
        md(
            r"""
            ## 4. The $\sqrt{L}$ cannot go: the tightness witness

            Can the bound be $C\gamma\,\mathrm{STD}$ without the $\sqrt{L}$? Not when parameters are shared across
            positions. `tightness_witness(L)` draws every token from **one** softmax over 2 tokens
            ($\gamma = 1$) and rewards the fraction of tokens equal to 0 (rescaled to $[-1, 1]$). With
            $p = \pi(0) = 1/2$: $\mathrm{STD} = 1/\sqrt{L}$, $\|\nabla V\| = 1/\sqrt{2}$, so
            $\|\nabla V\| / (\gamma\,\mathrm{STD}) = \sqrt{L/2}$ grows without limit, and the tight bound is met with
            equality.
            """
        ),
        code(
            """
            lengths = range(1, 9 if QUICK else 13)
            witness = []
            for length_l in lengths:
                witness_env, witness_policy = tightness_witness(length_l, prob=0.5)
                witness.append(bound_table(witness_policy, witness_env).iloc[0])
            over_std = [row.grad_norm / (row.gamma * row.reward_std) for row in witness]
            for length_l, ratio, row in zip(lengths, over_std, witness, strict=True):
                print(
                    f"L = {length_l:2}: ||∇V||/(γ STD) = {ratio:.4f} (sqrt(L/2) = {math.sqrt(length_l / 2):.4f}),"
                    f" /sharpened = {row.ratio_sharpened:.4f}, /tight = {row.ratio_tight:.4f}, /paper = {row.ratio_paper:.4f}"
                )
            assert np.allclose(over_std, np.sqrt(np.array(lengths) / 2), atol=1e-10)
            """
        ),
        md(
            r"""
            ## 5. A property test you run

            A theorem about *every* model and *every* input invites a property test: draw many random
            instances (policy class, $V$, $L$, logit scale up to near-deterministic, sparse, constant and
            near-constant rewards, temperature) and check every bound on each. `draw_specs` draws the
            instances, `run_check` evaluates `bound_table` on each (the engine of `rftgrad check`) and
            summarises the largest ratio gradient/bound per class: all must stay at or below 1.
            """
        ),
        code(
            """
            specs = draw_specs(40 if QUICK else 200, seed=0)
            rows_check, summary = run_check(specs, progress=False)
            columns = ["kind", "examples", "inputs", "max_ratio_paper", "max_ratio_sharpened", "max_ratio_tight", "violations"]
            print(summary[columns].to_string(index=False))
            assert summary.violations.sum() == 0
            """
        ),
        md(
            r"""
            The same property with [Hypothesis](https://hypothesis.readthedocs.io), which also *shrinks* a failing
            example to a minimal one (installed with `.[dev]`; the cell says so and moves on without it).
            """
        ),
        code(
            """
            try:
                from hypothesis import given, settings
                from hypothesis import strategies as st
            except ImportError:
                given = None
                print("hypothesis is not installed (pip install hypothesis); skipping this cell")

            if given is not None:

                @settings(max_examples=15 if QUICK else 60, deadline=None, derandomize=True, database=None)
                @given(
                    kind=st.sampled_from(POLICY_KINDS),
                    vocab=st.integers(2, 4),
                    length=st.integers(1, 3),
                    scale=st.floats(0.1, 60.0),
                    reward=st.sampled_from(REWARD_KINDS),
                    seed=st.integers(0, 2**16),
                )
                def every_bound_holds(kind: str, vocab: int, length: int, scale: float, reward: str, seed: int) -> None:
                    spec = InstanceSpec(
                        kind=kind,
                        vocab_size=vocab,
                        length=1 if kind == "mlp" else length,
                        logit_scale=scale,
                        reward_kind=reward,
                        seed=seed,
                    )
                    instance_env, instance_policy = random_instance(spec)
                    table = bound_table(instance_policy, instance_env)
                    assert not table.violation.any(), (spec, table)

                every_bound_holds()
                print("every bound held on every example Hypothesis drew")
            """
        ),
        md(
            r"""
            ## 6. Try to break it

            Random instances rarely come close to a bound. An adversary does better: `search` (the `tightness`
            experiment's search) runs Adam on $\log(\|\nabla V\| / (\gamma\sqrt{L}\,\mathrm{STD}))$ over the policy's
            parameters **and** the reward table ($V = 3$, $L = 3$; the MLP serves $L = 1$), with several restarts as
            replicas, and re-checks the best one with the exact engine. The ratio to the tight bound climbs toward 1
            and stops there; the ratio to the sharpened bound stays below $1/\sqrt{2}$. The tabular policy, with its
            own parameters for every prefix, stays lower still: it needs no $\sqrt{L}$ at all (docs/theorem1.md,
            section 4).
            """
        ),
        code(
            """
            search_config = SearchConfig(steps=100 if QUICK else 200, restarts=4 if QUICK else 8)
            kinds = ("tabular", "mlp") if QUICK else POLICY_KINDS
            for kind in kinds:
                trajectory, best = search(kind, search_config, progress=False)
                print(
                    f"{kind:12} best /sharpened = {best['ratio_sharpened']:.4f}  /tight = {best['ratio_tight']:.4f}"
                    f"  violation: {best['violation']}"
                )
                assert not best["violation"]
            """
        ),
    ),
    exercises=(
        exercise(
            "reach the sharpened bound's ceiling",
            r"""
            The search above never beats $\|\nabla V\|/(\gamma\sqrt{L}\,\mathrm{STD}) = 1/\sqrt{2} \approx 0.707$.
            Build a bandit (`BanditEnv(rewards)`, $L = 1$) and a `TabularPolicy` on it whose ratio
            `ratio_sharpened` in `bound_table` exceeds 0.7. *Hint:* lesson 1's equality case, and the
            refined bound $\|\pi \odot d\|^2 \le \tfrac12 \sum_a \pi_a d_a^2$.
            """,
            """
            # TODO: rewards (a list in [-1, 1]) and logits (a list of the same length)
            ceiling_rewards = None
            ceiling_logits = None
            """,
            """
            ceiling_rewards = [1.0, -1.0]  # two answers, one right: STD = 1 at p = 1/2
            ceiling_logits = [0.0, 0.0]  # uniform: ∇_z V = (1/2, -1/2), ||∇V|| = 1/√2
            """,
            """
            assert ceiling_rewards is not None and ceiling_logits is not None, "fill in both lists"
            ceiling_env = BanditEnv(ceiling_rewards)
            ceiling_policy = TabularPolicy.for_env(ceiling_env, dtype="float64")
            ceiling_policy.params["logits"][0, 0, 0] = torch.tensor(ceiling_logits, dtype=torch.float64)
            row = bound_table(ceiling_policy, ceiling_env).iloc[0]
            assert not row.violation
            assert row.ratio_sharpened > 0.7, f"ratio {row.ratio_sharpened:.4f} is not above 0.7"
            print(f"ratio to the sharpened bound: {row.ratio_sharpened:.6f} (1/√2 = {1 / math.sqrt(2):.6f})")
            """,
        ),
        exercise(
            "the witness by hand",
            r"""
            For the witness with $L = 4$ and $p = 1/2$, compute from the closed forms of section 4 (no rftgrad)
            the reward STD, the gradient norm $\|\nabla V\| = 2\sqrt{2}\,p(1-p)$ and the paper's bound
            $6L\gamma\,\mathrm{STD}^{2/3}$ (with $\gamma = 1$). The check compares them with `bound_table`.
            """,
            """
            # TODO: three floats from the closed forms (STD = 2 sqrt(p(1-p)/L) for the witness)
            witness_std = None
            witness_grad = None
            witness_paper_bound = None
            """,
            """
            p_zero, length_w = 0.5, 4
            witness_std = 2 * math.sqrt(p_zero * (1 - p_zero) / length_w)
            witness_grad = 2 * math.sqrt(2) * p_zero * (1 - p_zero)
            witness_paper_bound = 6 * length_w * 1.0 * witness_std ** (2 / 3)
            """,
            """
            assert None not in (witness_std, witness_grad, witness_paper_bound), "fill in all three"
            check_env, check_policy = tightness_witness(4, prob=0.5)
            row = bound_table(check_policy, check_env).iloc[0]
            assert abs(witness_std - row.reward_std) < 1e-10, (witness_std, row.reward_std)
            assert abs(witness_grad - row.grad_norm) < 1e-10, (witness_grad, row.grad_norm)
            assert abs(witness_paper_bound - row.paper_bound) < 1e-9, (witness_paper_bound, row.paper_bound)
            print(
                f"STD {row.reward_std:.4f}, ||∇V|| {row.grad_norm:.4f}, paper bound {row.paper_bound:.3f}:"
                f" the gradient is {row.ratio_paper:.3f} of it"
            )
            """,
        ),
        exercise(
            "your own property test: near-deterministic policies",
            r"""
            Near-deterministic policies are the other road to a small STD (besides near-constant rewards).
            Write a property test for them: build at least 30 `InstanceSpec`s with `logit_scale` of 20 or more
            (any policy classes; the MLP needs `length=1`), evaluate them with `run_check`, and keep its first
            return value (one row per example and input) as `near_rows`. The check asserts that no bound is
            violated and that your instances reach an STD below $10^{-3}$.
            """,
            """
            # TODO: near_rows = run_check(<your specs>, progress=False)[0]
            near_rows = None
            """,
            """
            near_specs = [
                InstanceSpec(kind=kind, vocab_size=3, length=1 if kind == "mlp" else 2, logit_scale=40.0, seed=seed)
                for kind in POLICY_KINDS
                for seed in range(8)
            ]
            near_rows = run_check(near_specs, progress=False)[0]
            """,
            """
            assert near_rows is not None, "fill in near_rows"
            assert near_rows["example"].nunique() >= 30, "use at least 30 instances"
            assert (near_rows["logit_scale"] >= 20).all(), "every instance needs logit_scale >= 20"
            assert not near_rows["violation"].any(), near_rows[near_rows["violation"]]
            assert near_rows["reward_std"].min() < 1e-3, near_rows["reward_std"].min()
            print(
                f"{near_rows['example'].nunique()} instances, smallest STD {near_rows['reward_std'].min():.2e},"
                f" largest ratio to the sharpened bound {near_rows['ratio_sharpened'].max():.3f}"
            )
            """,
        ),
    ),
)

# =====================================================================================
# Lesson 3: dynamics, Theorem 2
# =====================================================================================

LESSON_3 = Lesson(
    slug="03_dynamics",
    title="Theorem 2: RFT is slow exactly where SFT is fast",
    minutes=30,
    summary=(
        "Gradient flow of RFT and SFT on a linear softmax model with orthonormal inputs: the time RFT needs "
        "grows like $1/\\mathrm{STD}_0^2$, SFT's like $\\ln(1/\\mathrm{STD}_0)$. Closed-form hitting times "
        "(sympy) against the ODE (scipy), gradient descent, Adam, and the library's trainer."
    ),
    cells=(
        code(
            f"""
            import os

            import matplotlib.pyplot as plt
            import numpy as np
            import torch

            from rftgrad.envs import orthonormal
            from rftgrad.finetune import ReplicaSettings, TrainConfig, train
            from rftgrad.models import TabularPolicy
            from rftgrad.theory import exact
            from rftgrad.theory.dynamics import (
                asymptotic_constant,
                asymptotic_hitting_time,
                closed_form_hitting_time,
                discrete_hitting_steps,
                expected_reward,
                hitting_time_ode,
                loglog_slope,
                pm1_rewards,
                rft_pm1_gradient,
                sft_gradient,
                solve_flow,
                std_from_p0,
                symmetric_logits,
                symmetric_reduction,
            )

            {QUICK_LINE}
            """
        ),
        md(
            r"""
            ## The setting of Theorem 2

            A linear softmax model $f_W(x) = Wx$, orthonormal training inputs, one output token among $K$, one
            correct label $y^*$ per input with reward $+1$ (and $-1$ for every other label). With
            $p = \pi(y^*)$: $V = 2p - 1$ and $\mathrm{STD} = 2\sqrt{p(1-p)}$. Orthonormal inputs decouple: each
            input's logits $z = Wx$ follow their own gradient flow,

            $$\text{RFT: } \frac{dz}{dt} = \nabla_z V = 2p\,(e_{y^*} - \pi), \qquad
              \text{SFT: } \frac{dz}{dt} = \nabla_z \log p = e_{y^*} - \pi .$$

            The RFT velocity is SFT's times $2p$: where the model gives the right label a small probability,
            RFT crawls. The two velocities, checked against the exact engine on a one-input tabular policy:
            """
        ),
        code(
            """
            num_labels, p0 = 10, 1e-3
            z0 = symmetric_logits(p0, num_labels)  # π(y* = 0) = p0, the wrong labels share 1 - p0 equally
            rft_velocity, sft_velocity = rft_pm1_gradient(z0), sft_gradient(z0)
            print("RFT dz/dt:", rft_velocity.round(6))
            print("SFT dz/dt:", sft_velocity.round(6))
            print("ratio:", (rft_velocity / sft_velocity).round(6), "= 2p0 =", 2 * p0)

            one_input = orthonormal(num_inputs=1, num_classes=num_labels, labels=np.array([0]))
            tabular = TabularPolicy.for_env(one_input, dtype="float64")
            tabular.params["logits"][0, 0, 0] = torch.from_numpy(z0)
            exact_grad = exact(tabular, one_input, keep_grads=True).grads["logits"][0, 0, 0, 0].numpy()
            assert np.allclose(exact_grad, rft_velocity, atol=1e-15)
            """
        ),
        md(
            r"""
            ## 1. Solving both flows

            `solve_flow` integrates the full $K$-dimensional logit flow with scipy's stiff solver and reports when
            the expected reward crosses a target. From $p_0 = 10^{-3}$ SFT reaches $V = 0$ around $t \approx 7$,
            RFT only around $t \approx 450$.
            """
        ),
        code(
            """
            times = np.logspace(-2, 4, 200)
            fig, ax = plt.subplots(figsize=(7, 4))
            for objective in ("sft", "rft"):
                solution = solve_flow(z0, objective, target=0.0, terminal=False, t_eval=times)
                value = expected_reward(solution.logits[:, 0], pm1_rewards(num_labels))
                ax.semilogx(solution.times, value, label=f"{objective.upper()}: V = 0 at t = {solution.hit_time:.1f}")
            ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set(xlabel="time t (gradient flow)", ylabel="expected reward V", title=f"K = {num_labels}, p0 = {p0}")
            ax.legend()
            plt.show()
            """
        ),
        md(
            r"""
            ## 2. Closed forms (sympy) against the ODE (scipy)

            Both flows keep the wrong labels equal, so they reduce to one ODE in $p$:
            $\dot p = \frac{2K}{K-1}p^2(1-p)^2$ (RFT) and $\dot p = \frac{K}{K-1}p(1-p)^2$ (SFT).
            `symmetric_reduction` derives them with sympy, integrates $dt = dp/\dot p$ and gives the hitting time
            of $p_1 = (V_{\text{target}} + 1)/2$:

            $$T_{\text{RFT}} = \tfrac{K-1}{2K}\Big[\tfrac{p_1-p_0}{p_0p_1} + \tfrac{p_1-p_0}{(1-p_0)(1-p_1)}
              + 2\ln\tfrac{p_1(1-p_0)}{p_0(1-p_1)}\Big],\qquad
              T_{\text{SFT}} = \tfrac{K-1}{K}\Big[\ln\tfrac{p_1(1-p_0)}{p_0(1-p_1)}
              + \tfrac{p_1-p_0}{(1-p_0)(1-p_1)}\Big].$$

            `closed_form_hitting_time` evaluates them; `hitting_time_ode` solves the full $K$-dimensional flow
            instead (it does not assume the reduction).
            """
        ),
        code(
            """
            reduction = symmetric_reduction()
            print("dp/dt:", reduction.rate)

            p0_grid = np.logspace(-8, -1, 4 if QUICK else 8)
            print(f"{'p0':>8} {'T_RFT closed':>14} {'T_RFT ODE':>14} {'rel gap':>8} {'T_SFT closed':>13} {'T_SFT ODE':>10}")
            for start in p0_grid:
                closed = {obj: float(closed_form_hitting_time(start, num_labels, 0.0, obj)) for obj in ("rft", "sft")}
                ode = {obj: hitting_time_ode(start, num_labels, 0.0, obj) for obj in ("rft", "sft")}
                gap = abs(ode["rft"] - closed["rft"]) / closed["rft"]
                print(f"{start:8.0e} {closed['rft']:14.6g} {ode['rft']:14.6g} {gap:8.1e} {closed['sft']:13.6g} {ode['sft']:10.6g}")
                assert gap < 1e-8 and abs(ode["sft"] - closed["sft"]) < 1e-8 * closed["sft"]
            """
        ),
        md(
            r"""
            ## 3. The separation: $1/\mathrm{STD}_0^2$ against $\ln(1/\mathrm{STD}_0)$

            As $\mathrm{STD}_0 \to 0$: $T_{\text{RFT}} \approx c/\mathrm{STD}_0^2$ and
            $T_{\text{SFT}} \approx c'\ln(1/\mathrm{STD}_0)$ with $c = c' = 2(K-1)/K$ (`asymptotic_constant`).
            On log-log axes RFT's time is a line of slope $-2$; SFT's barely moves.
            """
        ),
        code(
            """
            p0_dense = np.logspace(-8, -1, 40)
            std0 = std_from_p0(p0_dense)
            fig, ax = plt.subplots(figsize=(7, 4))
            for objective in ("rft", "sft"):
                closed = closed_form_hitting_time(p0_dense, num_labels, 0.0, objective)
                ax.loglog(std0, closed, label=f"{objective.upper()} closed form")
                ax.loglog(std0, asymptotic_hitting_time(std0, num_labels, objective), ":", color="0.4")
            ax.set(xlabel="initial reward STD", ylabel="time to reach V = 0")
            ax.set_title("dotted: the leading terms c/STD0² and c' ln(1/STD0)")
            ax.legend()
            plt.show()
            small = p0_dense <= 1e-2
            slope = loglog_slope(std0[small], closed_form_hitting_time(p0_dense[small], num_labels, 0.0, "rft"))
            constant = float(asymptotic_constant(num_labels, "rft"))
            print(f"log-log slope of T_RFT against STD0 (p0 <= 1e-2): {slope:.3f};  c = c' = {constant:.3f}")
            """
        ),
        md(
            r"""
            ## 4. Discrete steps: gradient descent follows the flow, Adam does not

            `discrete_hitting_steps` runs plain gradient ascent $z \leftarrow z + \eta\,g(z)$ (or Adam) on the same
            logits and counts steps to the target. For gradient descent, steps $\times\,\eta$ converges to the flow's
            time as $\eta \to 0$. Adam divides each coordinate by its running RMS, which cancels most of RFT's
            $2p$ factor: its step counts grow like $\ln(1/\mathrm{STD}_0)$, not $1/\mathrm{STD}_0^2$ (a finding past
            the paper; lesson 4 uses Adam on a shared model, where the stall remains).
            """
        ),
        code(
            """
            flow_time = float(closed_form_hitting_time(p0, num_labels, 0.0, "rft"))
            for step_size in [1.0, 0.3, 0.1] if QUICK else [1.0, 0.3, 0.1, 0.03, 0.01]:
                steps = int(discrete_hitting_steps(p0, num_labels, 0.0, "rft", step_size))
                print(f"GD, η = {step_size:5}: {steps:7} steps, steps·η = {steps * step_size:8.2f}  (flow: {flow_time:.2f})")

            adam_p0 = np.logspace(-6, -1, 6)
            for objective in ("rft", "sft"):
                steps = discrete_hitting_steps(adam_p0, num_labels, 0.0, objective, 0.01, optimizer="adam")
                print(f"Adam (lr 0.01), {objective.upper()} steps for p0 = 1e-6 ... 1e-1:", steps)
            """
        ),
        md(
            r"""
            ## 5. The same with the library's trainer

            `rftgrad.finetune.train` runs exact-gradient RFT and SFT side by side (arms) from the same policy. With
            one input, a tabular policy and plain SGD with learning rate $\eta$, step $n$ is the flow at
            $t = n\eta$, up to the Euler error of the step.
            """
        ),
        code(
            """
            start_p, step_size, num_steps = 1e-2, 0.1, 600


            def make_policy(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> TabularPolicy:
                \"\"\"The trainer's policy factory: one replica per seed, all starting at p(label) = start_p.\"\"\"
                policy = TabularPolicy.for_env(one_input, seed=list(settings.seeds), device=device, dtype=dtype)
                policy.set_output_probability(one_input, start_p)  # symmetric start: the wrong labels share 1 - p
                return policy


            config = TrainConfig(
                arms=(f"rft:{num_steps}", f"sft:{num_steps}"), optimizer="sgd", lr=(step_size,), seeds=1, eval_every=20
            )
            records = train(make_policy, one_input, config, progress=False).records
            curves = records[(records.metric == "reward_mean") & (records.group == "all") & (records.split == "train")]

            fig, ax = plt.subplots(figsize=(7, 4))
            for arm, objective in zip(config.arms, ("rft", "sft"), strict=True):
                curve = curves[curves.arm == arm]
                flow = solve_flow(symmetric_logits(start_p, num_labels), objective, t_eval=curve.step.to_numpy() * step_size)
                flow_value = expected_reward(flow.logits[:, 0], pm1_rewards(num_labels))
                ax.plot(curve.step * step_size, curve.value, "o", ms=3, label=f"trainer, {arm}")
                ax.plot(flow.times, flow_value, "-", label=f"flow, {objective.upper()}")
                gap = np.abs(flow_value - curve.value.to_numpy()).max()
                print(f"{arm}: largest gap trainer vs flow {gap:.3f}")
                assert gap < 0.05
            ax.set(xlabel="t = step · η", ylabel="expected reward V")
            ax.legend()
            plt.show()
            """
        ),
    ),
    exercises=(
        exercise(
            "predict a hitting time from the closed form",
            r"""
            For $K = 10$ labels, $p_0 = 10^{-4}$ and the target $V = 0$ (so $p_1 = 1/2$), evaluate
            $T_{\text{RFT}}$ from the formula of section 2 with numpy only. The check compares it with
            `closed_form_hitting_time` and with the ODE.
            """,
            """
            K_ex, p0_ex, p1_ex = 10, 1e-4, 0.5
            # TODO: T_RFT from the closed form (a float)
            t_rft_by_hand = None
            """,
            """
            K_ex, p0_ex, p1_ex = 10, 1e-4, 0.5
            logit_gap = np.log(p1_ex * (1 - p0_ex) / (p0_ex * (1 - p1_ex)))
            t_rft_by_hand = (
                (K_ex - 1)
                / (2 * K_ex)
                * ((p1_ex - p0_ex) / (p0_ex * p1_ex) + (p1_ex - p0_ex) / ((1 - p0_ex) * (1 - p1_ex)) + 2 * logit_gap)
            )
            """,
            """
            assert t_rft_by_hand is not None, "fill in t_rft_by_hand"
            library_time = float(closed_form_hitting_time(1e-4, 10, 0.0, "rft"))
            ode_time = hitting_time_ode(1e-4, 10, 0.0, "rft")
            assert abs(t_rft_by_hand - library_time) < 1e-9 * library_time, (t_rft_by_hand, library_time)
            assert abs(t_rft_by_hand - ode_time) < 1e-8 * ode_time, (t_rft_by_hand, ode_time)
            print(f"T_RFT = {t_rft_by_hand:.4f} (ODE: {ode_time:.4f})")
            """,
        ),
        exercise(
            "how many gradient steps?",
            r"""
            With plain gradient ascent at step size $\eta = 0.05$, how many steps does **SFT** need to lift the
            expected reward of an input from $p_0 = 10^{-3}$ ($K = 10$) to $V = 0.5$? Predict it from the flow's
            hitting time (no `discrete_hitting_steps`); the check runs the steps and wants you within 2%.
            """,
            """
            # TODO: the predicted number of SFT steps (an int)
            predicted_steps = None
            """,
            """
            predicted_steps = int(np.ceil(float(closed_form_hitting_time(1e-3, 10, 0.5, "sft")) / 0.05))
            """,
            """
            assert predicted_steps is not None, "fill in predicted_steps"
            actual_steps = int(discrete_hitting_steps(1e-3, 10, 0.5, "sft", 0.05))
            assert abs(predicted_steps - actual_steps) <= 0.02 * actual_steps, (predicted_steps, actual_steps)
            print(f"predicted {predicted_steps}, gradient ascent took {actual_steps}")
            """,
        ),
        exercise(
            "measure the two laws",
            r"""
            With $K = 10$ and the target $V = 0$, over $p_0$ from $10^{-8}$ to $10^{-4}$: (a) fit the log-log slope of
            $T_{\text{RFT}}$ against $\mathrm{STD}_0$ (use the ODE, `hitting_time_ode`, at a few $p_0$), and (b) fit
            the slope of $T_{\text{SFT}}$ against $\ln(1/\mathrm{STD}_0)$ (a straight-line fit, `np.polyfit`).
            Theorem 2 predicts $-2$ and $c' = 2(K-1)/K = 1.8$.
            """,
            """
            # TODO: two floats
            rft_slope = None
            sft_slope = None
            """,
            """
            p0_fit = np.logspace(-8, -4, 5)
            std_fit = std_from_p0(p0_fit)
            rft_times = np.array([hitting_time_ode(start, 10, 0.0, "rft") for start in p0_fit])
            sft_times = np.array([hitting_time_ode(start, 10, 0.0, "sft") for start in p0_fit])
            rft_slope = loglog_slope(std_fit, rft_times)
            sft_slope = float(np.polyfit(np.log(1 / std_fit), sft_times, 1)[0])
            """,
            """
            assert rft_slope is not None and sft_slope is not None, "fill in both slopes"
            assert abs(rft_slope + 2) < 0.01, rft_slope
            assert abs(sft_slope - float(asymptotic_constant(10, "sft"))) < 0.02, sft_slope
            print(f"RFT slope {rft_slope:.4f} (theory -2), SFT slope {sft_slope:.4f} (theory 1.8)")
            """,
        ),
    ),
)

# =====================================================================================
# Lesson 4: the controlled experiment
# =====================================================================================

LESSON_4 = Lesson(
    slug="04_controlled_experiment",
    title="a controlled experiment: RFT stalls on the small-STD inputs, SFT fits them",
    minutes=25,
    summary=(
        "The paper's Section 4.2 with rftgrad's finetuning API: pretrain a model to spread its probability over "
        "a few labels per input, move 10% of the labels outside those sets (expected reward $\\approx -1$, "
        "STD $\\approx 0$), then finetune with exact-gradient RFT and with SFT, side by side."
    ),
    cells=(
        code(
            f"""
            import os

            import matplotlib.pyplot as plt
            import numpy as np
            import torch

            from rftgrad.envs import gaussian_clusters, modify_labels, with_label_sets
            from rftgrad.finetune import ReplicaSettings, TrainConfig, replica_grid, train
            from rftgrad.finetune.pretraining import pretrain
            from rftgrad.models import LinearSoftmaxPolicy
            from rftgrad.theory import ExactResult, exact

            {QUICK_LINE}
            PER_CLASS = 20 if QUICK else 40  # training points per class (80% of them train, 20% test)
            STEPS = 100 if QUICK else 800  # finetuning steps per arm
            """
        ),
        md(
            r"""
            ## The protocol (paper Section 4.2; docs/paper.md §4)

            1. **Pretrain.** Each class $c$ gets a set of $k = 5$ labels ($c$ and four random others); the model
               is trained with cross-entropy toward the uniform distribution over its input's set. Like a language
               model, it ends up *uncertain*: about $1/k$ on each of $k$ answers.
            2. **Modify.** For a random 10% of the training inputs the label moves to a label *outside* that
               input's set. The pretrained model gives it probability $\approx 0$: expected reward $\approx -1$,
               reward STD $\approx 0$.
            3. **Finetune** from the pretrained model with exact-expectation RFT (reward $+1$ for the label, $-1$
               otherwise; no sampling, so no exploration or noise story can explain the result) and with SFT
               (cross-entropy on the new labels).

            Data: ten Gaussian clusters in 512 dimensions (`gaussian_clusters`), a linear softmax model. The
            same protocol runs on scikit-learn's digits with an MLP in `rftgrad run controlled --variant digits-mlp`.
            """
        ),
        code(
            """
            split = gaussian_clusters(num_classes=10, per_class=PER_CLASS, dim=512, noise=0.1, seed=0)
            with_sets = with_label_sets(split.train, 5, seed=0)  # each input carries its class's 5-label set
            env = modify_labels(with_sets, fraction=0.1, seed=0)  # groups "modified" / "unmodified"
            modified = env.groups["modified"]
            print(env.describe(), f"({int(modified.sum())} modified)")
            first = int(torch.nonzero(modified)[0])
            print(
                f"modified input {first}: pretraining set {env.label_sets[first].tolist()},"
                f" old label {int(split.train.labels[first])}, new label {int(env.labels[first])}"
            )
            """
        ),
        md(
            r"""
            ## 1. Pretraining, and the state it leaves

            `train` builds each arm's starting policy with a *factory* `make_policy(settings, device, dtype)` (one
            replica per seed). Ours pretrains once per set of seeds with `pretrain` and hands every arm a copy, so
            RFT and SFT start from the same weights. (The `controlled` experiment's factory,
            `rftgrad.experiments.controlled.run.PretrainedPolicies`, does the same with more options; lesson 5
            uses it.)
            """
        ),
        code(
            """
            pretrained: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}


            def make_policy(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> LinearSoftmaxPolicy:
                \"\"\"A linear softmax policy, pretrained toward the uniform distribution over each input's label set.\"\"\"
                policy = LinearSoftmaxPolicy.for_env(env, features="input", seed=list(settings.seeds), device=device, dtype=dtype)
                key = tuple(settings.seeds)
                if key not in pretrained:
                    losses = pretrain(policy, env, env.label_sets[:, :, None], steps=300, lr=0.1)  # outputs (N, k, L=1)
                    print(f"pretraining loss {losses.numpy().round(3)} (ln 5 = {np.log(5):.3f}: uniform over the set)")
                    pretrained[key] = {name: value.clone() for name, value in policy.params.items()}
                policy.params = {name: value.clone() for name, value in pretrained[key].items()}
                return policy


            config = TrainConfig(
                arms=(f"rft:{STEPS}", f"sft:{STEPS}"), optimizer="adam", lr=(0.01,), seeds=2, eval_every=max(1, STEPS // 20)
            )
            start = make_policy(replica_grid(config), torch.device("cpu"), torch.float64)
            before = exact(start, env)  # per replica and input: value, std, grad_norm
            for name, mask in (("modified", modified), ("unmodified", ~modified)):
                print(
                    f"{name:>10}: V = {before.value[:, mask].mean():+.4f}, STD = {before.std[:, mask].mean():.4f},"
                    f" ||∇V|| = {before.grad_norm[:, mask].mean():.2e}"
                )
            """
        ),
        md(
            r"""
            Every input as a point (expected reward against reward STD, replica 0): the unmodified inputs sit at
            $V \approx 2/k - 1 = -0.6$ with a large STD, the modified ones in the corner $V \approx -1$, STD $\approx 0$,
            where Theorem 1 leaves no room for a gradient.
            """
        ),
        code(
            """
            def cloud(ax: plt.Axes, result: ExactResult, title: str) -> None:
                \"\"\"Scatter V against STD of every training input (replica 0), modified inputs in red.\"\"\"
                for name, mask, color in (("unmodified", ~modified, "tab:blue"), ("modified", modified, "tab:red")):
                    ax.scatter(result.std[0, mask], result.value[0, mask], s=12, color=color, alpha=0.6, label=name)
                ax.set(xlabel="reward STD", ylabel="expected reward V", xlim=(-0.03, 1.03), ylim=(-1.08, 1.08), title=title)


            fig, ax = plt.subplots(figsize=(5, 4))
            cloud(ax, before, "pretrained")
            ax.legend()
            plt.show()
            """
        ),
        md(
            r"""
            ## 2. Finetuning: RFT against SFT

            One call trains both arms, two seeds each (replicas of one tensor program), with Adam at learning
            rate 0.01, full batch. The records are long-format: one row per (arm, step, replica, split, group,
            metric); groups are the environment's (`modified`, `unmodified`), `all`, and `small_std` / `large_std`
            (STD below / above 0.1 at the start).
            """
        ),
        code(
            """
            result = train(make_policy, env, config, eval_envs={"test": split.test}, progress=False)
            records = result.records
            print(records.head(3).to_string())

            train_records = records[(records.split == "train") & records.group.isin(["modified", "unmodified"])]
            curves = train_records.groupby(["arm", "group", "metric", "step"]).value.mean()  # mean over replicas
            fig, axes = plt.subplots(1, 3, figsize=(15, 4))
            for ax, metric in zip(axes, ("reward_mean", "target_prob", "grad_norm"), strict=True):
                for arm, style in zip(config.arms, ("-", "--"), strict=True):
                    for group, color in (("unmodified", "tab:blue"), ("modified", "tab:red")):
                        curve = curves[arm, group, metric]
                        ax.plot(curve.index, curve.values, style, color=color, label=f"{arm.split(':')[0].upper()}, {group}")
                ax.set(xlabel="step", title=metric)
            axes[2].set_yscale("log")
            axes[0].legend()
            plt.show()

            final = records[(records.step == STEPS) & (records.metric == "reward_mean")]
            print(final.groupby(["arm", "split", "group"]).value.mean().unstack().round(3).to_string())
            """
        ),
        md(
            r"""
            (`grad_norm` is always $\|\nabla_\theta V\|$, the exact RFT gradient, whichever arm trains.) RFT fits
            the unmodified inputs and leaves the modified ones at $V = -1$: their gradient is $10^{-5}$ of the
            others' at the start and only shrinks (fitting the unmodified inputs with shared weights pushes the
            new labels' probability further down). SFT's gradient on the same inputs, $e_{y^*} - \pi$, does not
            carry the factor $p$, and it fits them within a few dozen steps.
            """
        ),
        code(
            """
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            finished = make_policy(replica_grid(config), torch.device("cpu"), torch.float64)
            for ax, arm in zip(axes, config.arms, strict=True):
                finished.params = {name: value.clone() for name, value in result.params[arm].items()}
                cloud(ax, exact(finished, env, per_input=False), f"after {arm}")
            axes[0].legend()
            plt.show()
            """
        ),
    ),
    exercises=(
        exercise(
            "how small is the modified inputs' gradient?",
            r"""
            From `before` (the exact quantities of the pretrained policy), compute the mean gradient norm
            $\|\nabla_\theta V\|$ of the modified inputs divided by that of the unmodified inputs, averaged over both
            replicas and the inputs of each group.
            """,
            """
            # TODO: a float, mean ||∇V|| over modified inputs / mean ||∇V|| over unmodified inputs
            grad_ratio = None
            """,
            """
            grad_ratio = float(before.grad_norm[:, modified].mean() / before.grad_norm[:, ~modified].mean())
            """,
            """
            assert grad_ratio is not None, "fill in grad_ratio"
            expected_ratio = float(before.grad_norm[:, modified].mean() / before.grad_norm[:, ~modified].mean())
            assert abs(grad_ratio - expected_ratio) <= 1e-6 * expected_ratio, (grad_ratio, expected_ratio)
            assert grad_ratio < 1e-3
            print(f"the modified inputs get {grad_ratio:.1e} of the unmodified inputs' gradient")
            """,
        ),
        exercise(
            "the small-STD inputs are the modified ones",
            r"""
            Build a boolean tensor `small_std` of shape `(N,)` marking the training inputs whose reward STD under the
            pretrained policy (replica 0 of `before`) is below 0.1, the threshold of the trainer's `small_std` group.
            The check compares it with the modified inputs.
            """,
            """
            # TODO: a bool tensor of shape (N,)
            small_std = None
            """,
            """
            small_std = before.std[0] < 0.1
            """,
            """
            assert small_std is not None, "fill in small_std"
            assert tuple(small_std.shape) == (env.num_inputs,), tuple(small_std.shape)
            assert torch.equal(small_std.bool(), modified), "small_std should mark exactly the modified inputs"
            print(f"{int(small_std.sum())} small-STD inputs: exactly the {int(modified.sum())} modified ones")
            """,
        ),
        exercise(
            "high initial reward, still stuck",
            r"""
            The paper's second variant: a wrong answer on a modified input earns $0.5$ instead of $-1$
            (`modify_labels(..., wrong_reward=0.5)`). The modified inputs then start with a **high** expected reward
            ($\approx 0.5$) and still an STD $\approx 0$. Build that environment as `high_env` from `with_sets` (same
            fraction and seed) and train both arms of `config` on it with `make_policy`; keep the records as
            `high_records`. The check shows that RFT leaves the modified inputs at 0.5 while SFT lifts them toward 1:
            the stall comes from the small STD, not from a low reward.
            """,
            """
            # TODO: the environment and the records of train(...) on it
            high_env = None
            high_records = None
            """,
            """
            high_env = modify_labels(with_sets, fraction=0.1, seed=0, wrong_reward=0.5)
            high_records = train(make_policy, high_env, config, progress=False).records
            """,
            """
            assert high_env is not None and high_records is not None, "fill in high_env and high_records"
            mod = high_records[(high_records.group == "modified") & (high_records.split == "train")]
            at = mod.groupby(["arm", "metric", "step"]).value.mean()
            rft_arm, sft_arm = config.arms
            assert abs(at[rft_arm, "reward_mean", 0] - 0.5) < 0.01, at[rft_arm, "reward_mean", 0]
            assert at[rft_arm, "reward_std", 0] < 0.05
            assert abs(at[rft_arm, "reward_mean", STEPS] - at[rft_arm, "reward_mean", 0]) < 0.01
            assert at[sft_arm, "reward_mean", STEPS] > 0.9
            print(
                f"modified inputs: start V = {at[rft_arm, 'reward_mean', 0]:.3f}, after RFT"
                f" {at[rft_arm, 'reward_mean', STEPS]:.3f}, after SFT {at[sft_arm, 'reward_mean', STEPS]:.3f}"
            )
            """,
        ),
    ),
)

# =====================================================================================
# Lesson 5: fixes, group estimators, diagnosing a rollout log
# =====================================================================================

LESSON_5 = Lesson(
    slug="05_fixes_and_diagnosis",
    title="fixes, group estimators, and diagnosing your own rollouts",
    minutes=35,
    summary=(
        "What does and does not help: common heuristics (learning rate, temperature, entropy bonus) do not; a "
        "short SFT phase on 1% of the inputs does. Then the group estimators practitioners run (GRPO, RLOO, "
        "DAPO), `frac_reward_zero_std`, and `rftgrad diagnose` on a rollout log."
    ),
    cells=(
        code(
            f"""
            import dataclasses
            import math
            import os
            import tempfile
            from pathlib import Path

            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            import torch
            from IPython.display import Image, display

            from rftgrad.diagnose import diagnose_log, format_summary, plot_mean_vs_std, read_rollouts
            from rftgrad.experiments.base import run_experiment
            from rftgrad.experiments.controlled.config import Config as ControlledConfig
            from rftgrad.experiments.controlled.run import PretrainedPolicies, make_task
            from rftgrad.experiments.sft_budget.config import Config as BudgetConfig
            from rftgrad.experiments.sft_budget.run import family_task
            from rftgrad.finetune import replica_grid, train
            from rftgrad.finetune.advantages import monte_carlo_update
            from rftgrad.finetune.trainer import phase_subset
            from rftgrad.theory import asymptotic_update, exact, expected_samples, expected_update, frac_reward_zero_std
            from rftgrad.theory.group_updates import fit_power

            {QUICK_LINE}
            WORK_DIR = tempfile.TemporaryDirectory(prefix="rftgrad-lesson5-")  # removed when the kernel stops
            WORK = Path(WORK_DIR.name)  # run directories of this lesson
            """
        ),
        md(
            r"""
            ## 1. Heuristics do not fix it (paper Section 5.1)

            On lesson 4's controlled task, turn up one common remedy at a time: the learning rate ($\times 1, 10,
            100$), the sampling temperature ($T = 1, 1.5, 2$), an entropy bonus ($\beta = 0, 0.01, 0.1$), each
            sweep's values as replicas of one run. The `heuristics` experiment does exactly that;
            `run_experiment` runs it into a directory (config, records, score, figures), with `--set`-style
            overrides for a small budget. Outputs past the 10 classes are answers no input asks for, like most of
            a vocabulary. (rftgrad's figure code switches matplotlib to its file backend, Agg; `%matplotlib inline`
            switches the notebook back.)
            """
        ),
        code(
            """
            sets = ["num_train=10", "cluster_dim=128", "pretrain_steps=150", "eval_every=10", "seeds=1"]
            sets += ["output_sizes=10", "arms=rft:40"] if QUICK else ["output_sizes=10,100", "arms=rft:200"]
            tables, score, figures = run_experiment("heuristics", WORK / "heuristics", sets=sets, progress=False)
            %matplotlib inline
            summary = pd.DataFrame(score["table"])
            columns = ["num_outputs", "sweep", "objective", "setting", "modified_start", "modified_end_t1", "modified_std_start"]
            print(summary[columns].round(4).to_string(index=False))
            display(Image(filename=str(figures[0]), width=700))
            """
        ),
        md(
            r"""
            Every RFT setting leaves the modified inputs at $-1$ (SFT at the larger learning rates fits them). The
            mechanism is in the last column: a hotter temperature does raise their reward STD a little, but the
            mass it frees spreads over *every* output outside the pretrained set, the more so the larger the output
            space; an entropy bonus's own gradient on an output of probability $p$ is also proportional to $p$.

            ## 2. A short SFT phase does (paper Section 5.2)

            A task with shared structure: three classes share a direction and all follow one relabelling rule
            ("answer $\ell^*$", outside their pretraining sets): the `sft_budget` experiment's task. An arm is a
            sequence of phases: `sft:10@0.01+rft:N` is 10 SFT steps on a seeded 1% of the inputs, then $N$ RFT
            steps on all of them.
            """
        ),
        code(
            """
            rft_steps = 100 if QUICK else 200
            budget = BudgetConfig(
                seeds=2, rft_steps=rft_steps, sft_fractions=(0.01, 0.05, 1.0), sft_steps=(10,), full_sft_steps=100
            )
            budget = dataclasses.replace(budget, arms=budget.budget_arms())
            print("arms:", budget.arms)
            family = family_task(budget)
            family_inputs = family.train.groups["modified"]
            print(family.train.describe(), f"({int(family_inputs.sum())} follow the rule)")
            for fraction in budget.sft_fractions[:-1]:
                subset = phase_subset(family.train.num_inputs, fraction, replica_grid(budget).seeds, phase_index=0)
                print(
                    f"SFT on {fraction:.0%}: {subset.sum(-1).tolist()} inputs per replica, of which"
                    f" {(subset & family_inputs).sum(-1).tolist()} follow the rule"
                )

            start_policies = PretrainedPolicies(budget, family.train, family.pretrain_outputs, progress=False)
            budget_records = train(start_policies, family.train, budget, eval_envs={"test": family.test}, progress=False).records
            rows = budget_records[(budget_records.metric == "reward_mean") & (budget_records.group == "modified")]
            last = rows[rows.step == rows.groupby("arm").step.transform("max")]
            print(last.groupby(["arm", "split"]).value.mean().unstack().round(3).to_string())
            """
        ),
        md(
            r"""
            RFT alone does not move the rule's inputs; ten SFT steps on 1% of the inputs (a handful of examples of
            the rule, since the rule is shared) give RFT a starting STD, and RFT then finishes the job, on the test
            split too.

            ## 3. Group estimators and `frac_reward_zero_std` (past the paper)

            GRPO, RLOO, Dr. GRPO and DAPO sample $G$ outputs per input and compare them. With a binary reward and
            success probability $p$, a group whose rewards are all equal carries no signal; that happens with
            probability $p^G + (1-p)^G$, which TRL and verl log as `frac_reward_zero_std`.
            """
        ),
        code(
            """
            p_grid = np.logspace(-4, np.log10(0.5), 60)
            fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
            for group_size in (2, 4, 8, 16, 64):
                left.semilogx(p_grid, frac_reward_zero_std(p_grid, group_size), label=f"G = {group_size}")
            left.set(xlabel="success probability p", ylabel="P(all G rewards equal)", title="frac_reward_zero_std")
            left.legend()

            estimators = ("reinforce", "rloo", "dr_grpo", "grpo", "dapo")
            for estimator in estimators:
                update = expected_update(p_grid, 8, estimator)
                power = fit_power(p_grid[:10], update[:10])
                right.loglog(p_grid, update, label=f"{estimator}: ~ {power.constant:.2f} p^{power.power:.2f}")
            right.set(xlabel="success probability p", ylabel="E[update along the right answer's logit]", title="G = 8")
            right.legend(fontsize=8)
            plt.show()
            for estimator in estimators:
                print(f"{estimator:>10}: E u ≈ {asymptotic_update(8, estimator).constant:.3f} · p as p -> 0")
            """
        ),
        md(
            r"""
            Every expected update vanishes **linearly** in $p$, like the exact gradient $2p(1-p)$: dividing by the
            group STD (GRPO) rescales the groups that survive but cannot revive the all-equal ones, and DAPO's
            dynamic sampling pays for its larger constant with more samples. The closed forms come from
            `rftgrad.theory`; `monte_carlo_update` runs the training code's own advantage functions on simulated
            groups, and the two agree within a few standard errors:
            """
        ),
        code(
            """
            draws = 20_000 if QUICK else 200_000
            for estimator in ("rloo", "grpo", "dapo"):
                for p in (0.01, 0.1, 0.5):
                    mc = monte_carlo_update(p, 8, estimator, num_draws=draws, seed=0)
                    closed = float(expected_update(p, 8, estimator))
                    z_score = (mc.mean - closed) / mc.sem
                    print(
                        f"{estimator:>5} p = {p:4}: closed {closed:.5f}, Monte Carlo {mc.mean:.5f} ± {mc.sem:.5f}"
                        f" ({z_score:+.1f} SE); zero-STD groups {mc.frac_zero_std:.3f} vs {float(frac_reward_zero_std(p, 8)):.3f}"
                    )
                    assert abs(z_score) < 5
            """
        ),
        md(
            r"""
            ### GRPO on the controlled task

            The trainer runs sampled estimators too (`estimator="grpo"`, `num_generations=G`). Its step metrics
            (split `batch`) include the measured `frac_reward_zero_std`, which at the first step should match
            $\frac1N\sum_n p_n^G + (1-p_n)^G$ computed exactly from the pretrained policy.
            """
        ),
        code(
            """
            grpo = ControlledConfig(
                num_train=20,
                arms=("rft:30",) if QUICK else ("rft:150",),
                estimator="grpo",
                num_generations=8,
                lr=(0.01,),
                seeds=2,
                eval_every=1,
                eval_grad_norm=False,
            )
            task = make_task(grpo)
            grpo_policies = PretrainedPolicies(grpo, task.train, task.pretrain_outputs, progress=False)
            start = grpo_policies(replica_grid(grpo), torch.device("cpu"), torch.float64)
            start_probs = exact(start, task.train, per_input=False, gradient=False).probs
            success = start_probs[:, torch.arange(task.train.num_inputs), task.train.target_index()].numpy()  # (R, N) p(right)
            predicted = frac_reward_zero_std(success, 8).mean()

            grpo_records = train(grpo_policies, task.train, grpo, progress=False).records
            zero_std = grpo_records[(grpo_records.split == "batch") & (grpo_records.metric == "frac_reward_zero_std")]
            zero_std = zero_std.groupby("step").value.mean()
            print(f"step 1: measured frac_reward_zero_std {zero_std.iloc[0]:.3f}, predicted {predicted:.3f}")
            rewards = grpo_records[(grpo_records.metric == "reward_mean") & (grpo_records.split == "train")]
            rewards = rewards[rewards.group.isin(["modified", "unmodified"])].groupby(["group", "step"]).value.mean()

            fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
            left.plot(zero_std.index, zero_std.values, label="measured (batch)")
            left.axhline(predicted, ls="--", color="0.4", label="predicted at the start")
            left.set(xlabel="step", title="frac_reward_zero_std under GRPO, G = 8")
            left.legend()
            for group in ("unmodified", "modified"):
                right.plot(rewards[group].index, rewards[group].values, label=group)
            right.set(xlabel="step", title="expected reward (exact)")
            right.legend()
            plt.show()
            """
        ),
        md(
            r"""
            The zero-STD fraction *rises* during training: solved inputs (all rewards $+1$) have zero STD too. The
            number alone cannot tell *stuck* from *solved*; the mean reward of the all-equal groups can, which is
            what `rftgrad diagnose` reports.

            ## 4. Diagnosing a rollout log

            `rftgrad diagnose FILE` reads a log you already have (JSONL, JSON or CSV; one row per sampled output or
            per group; TRL- and verl-style column names are detected) and reports per prompt the reward mean and
            STD, the share of prompts in the vanishing regime (small STD **and** a mean far from the best), the
            observed `frac_reward_zero_std` and the one predicted for other group sizes. From a shell:

            ```bash
            rftgrad diagnose examples/rollouts.jsonl --out runs/diagnose
            ```

            The same from Python, on the example log that ships with the repository:
            """
        ),
        code(
            """
            here = Path.cwd().resolve()
            root = next(folder for folder in (here, *here.parents) if (folder / "examples" / "rollouts.jsonl").exists())
            log = read_rollouts(root / "examples" / "rollouts.jsonl")
            diagnosis = diagnose_log(log)
            print(format_summary(diagnosis))
            print(
                diagnosis.table[["step", "prompt", "n", "reward_mean", "reward_std", "zero_std", "vanishing"]].head(8).to_string()
            )
            figure = plot_mean_vs_std(diagnosis)  # a matplotlib figure
            display(figure)
            %matplotlib inline
            """
        ),
    ),
    exercises=(
        exercise(
            "pick the group size",
            r"""
            An input has success probability $p = 0.05$ under the current policy. What is the **smallest** GRPO
            group size $G$ for which the chance of an all-equal (useless) group, `frac_reward_zero_std`, is below
            $0.5$? Work it out from $p^G + (1-p)^G$.
            """,
            """
            # TODO: an int
            smallest_group = None
            """,
            """
            smallest_group = next(g for g in range(2, 1000) if 0.05**g + 0.95**g < 0.5)
            """,
            """
            assert smallest_group is not None, "fill in smallest_group"
            assert float(frac_reward_zero_std(0.05, smallest_group)) < 0.5
            assert float(frac_reward_zero_std(0.05, smallest_group - 1)) >= 0.5, "a smaller group also works"
            print(f"G = {smallest_group}: frac_reward_zero_std = {float(frac_reward_zero_std(0.05, smallest_group)):.3f}")
            """,
        ),
        exercise(
            "what DAPO pays for an informative group",
            r"""
            DAPO with unbounded resampling keeps drawing groups of $G$ until one is informative (not all equal).
            At $p = 0.01$ and $G = 8$, how many outputs does it sample per kept group on average? Derive it from
            the all-equal probability $d = p^G + (1-p)^G$ (the number of tries is geometric), then compare with
            `1/p`.
            """,
            """
            # TODO: a float, the expected number of sampled outputs per kept group
            samples_per_kept_group = None
            """,
            """
            d = 0.01**8 + 0.99**8
            samples_per_kept_group = 8 / (1 - d)  # G outputs per try, 1/(1 - d) tries on average
            """,
            """
            assert samples_per_kept_group is not None, "fill in samples_per_kept_group"
            library = float(expected_samples(0.01, 8, "dapo", max_resample=math.inf))
            assert abs(samples_per_kept_group - library) < 1e-9 * library, (samples_per_kept_group, library)
            print(f"{samples_per_kept_group:.1f} outputs per informative group (1/p = 100)")
            """,
        ),
        exercise(
            "diagnose a log you made",
            r"""
            Simulate a rollout log: at least 100 prompts with 8 samples each, where prompt $n$ succeeds (reward 1,
            else 0) with a probability `true_success[n]` of your choice (include some hopeless prompts with
            probability 0). Write it as JSONL with keys `prompt` and `reward` (one line per sample), read it with
            `read_rollouts` and keep `diagnose_log`'s result as `my_diagnosis`. The check compares the observed
            `frac_reward_zero_std` with the mean of $p_n^8 + (1-p_n)^8$ (within 4 standard errors).
            """,
            """
            # TODO: an array of per-prompt success probabilities, and the diagnosis of your log
            true_success = None
            my_diagnosis = None
            """,
            """
            rng = np.random.default_rng(0)
            true_success = rng.choice([0.0, 0.02, 0.3, 0.7, 1.0], size=200)
            samples = [
                {"prompt": f"prompt {n}", "reward": float(reward)}
                for n, p in enumerate(true_success)
                for reward in rng.random(8) < p
            ]
            rollout_path = WORK / "my_rollouts.jsonl"
            pd.DataFrame(samples).to_json(rollout_path, orient="records", lines=True)  # one JSON object per line
            my_diagnosis = diagnose_log(read_rollouts(rollout_path))
            """,
            """
            assert true_success is not None and my_diagnosis is not None, "fill in true_success and my_diagnosis"
            assert my_diagnosis.summary["groups"] >= 100 and len(true_success) == my_diagnosis.summary["groups"]
            assert (my_diagnosis.table["n"] == 8).all(), "use 8 samples per prompt"
            observed = my_diagnosis.summary["frac_reward_zero_std"]["observed"]
            standard_error = my_diagnosis.summary["frac_reward_zero_std"]["standard_error"]
            expected = float(frac_reward_zero_std(np.asarray(true_success), 8).mean())
            assert abs(observed - expected) < 4 * max(standard_error, 0.01), (observed, expected, standard_error)
            print(
                f"observed {observed:.3f} ± {standard_error:.3f}, expected {expected:.3f};"
                f" {my_diagnosis.summary['vanishing']['share']:.1%} of the prompts in the vanishing regime"
            )
            """,
        ),
    ),
)

LESSONS: list[Lesson] = [LESSON_1, LESSON_2, LESSON_3, LESSON_4, LESSON_5]


if __name__ == "__main__":
    raise SystemExit(main())
