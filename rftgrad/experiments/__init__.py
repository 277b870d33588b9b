"""Experiments, one folder each (config.py, run.py, analysis.py); see DESIGN.md.

``EXPERIMENTS`` maps a name to a one-line description; it fills up as experiments land.
"""

EXPERIMENTS: dict[str, str] = {
    "bound": "Theorem 1's bounds vs the exact gradient on thousands of random policies per class",
    "tightness": "the sqrt(L) witness against L, and an adversarial search for the worst-case constant",
    "compare": "RFT (exact or a sampled estimator) and SFT trained side by side on one environment and policy",
    "controlled": "paper Section 4.2: RFT stalls on modified (small-STD) inputs, SFT fits them (4 variants)",
    "heuristics": "paper Section 5.1: larger lr, temperature, entropy bonus vs the stall, as the output space grows",
    "sft_budget": "paper Section 5.2: a short SFT phase on 1-100% of the inputs, then RFT, vs RFT alone and full SFT",
    "dynamics": "Theorem 2: gradient-flow time to a target reward, RFT ~ 1/STD0^2 vs SFT ~ ln(1/STD0)",
    "prevalence": "paper Section 4.1: per-task share of small-STD, far-from-optimal prompts under a pretrained "
    "transformer, and RFT vs SFT gains",
    "estimators": "past the paper: GRPO/RLOO/Dr. GRPO/DAPO updates vanish like p, closed form vs Monte Carlo; pass@k",
}
