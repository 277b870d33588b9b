"""Every tolerance the tests compare numbers with, in one table.

Test modules import their tolerances from here and define none of their own
(``tests/test_tolerances.py`` enforces it). Each entry says what it is for and why it has its
value. The values are the ones the tests used before the table existed, unchanged: moving a
constant here never made an assertion weaker or stronger. Where two tests used different values
for the same kind of comparison they keep distinct entries rather than sharing the looser one.

Scale of float64 rounding: the unit round-off is ``u = 2^-53 ≈ 1.1e-16``. A quantity of size
O(1) built from ``n`` operations carries an error of about ``n·u`` (a sum over ``V^L`` outputs,
an autograd pass and a Jacobian product with ``‖J‖ ≤ γ`` each add to ``n`` or multiply the
error). The exact-arithmetic tolerances below sit orders of magnitude above that estimate, so a
different BLAS or thread count does not trip them, and orders of magnitude below the error of a
wrong formula (of the size of the quantity itself). float32 has ``u ≈ 6e-8``. The margins are
estimates from operation counts, not measurements, unless an entry quotes a measured error.

Statistical tolerances (``MC_*``) are in units of the standard error of a Monte Carlo mean, or
are failure probabilities; the test modules' docstrings do the union bound over their checks.

Like neural-tangents' ``_DEFAULT_TOLERANCE``, the per-dtype entry is a dict keyed by dtype:
look it up with the dtype of the tensors under comparison, ``ATOL[result.value.dtype]``.
Inline literals that belong to one assertion (a threshold from an issue, a measured band)
stay next to that assertion, with their reason.
"""

from __future__ import annotations

import torch

# --- exact arithmetic: two computations of the same quantity, no sampling -----------------------

#: Absolute tolerance, per dtype, for the exact engine (``rftgrad.theory.exact``) against an
#: independent exact computation of an O(1) quantity: Python loops over outputs and prefixes,
#: autograd of the enumerated objective, replicas run together vs alone, a reward shift. The
#: engine sums over up to 256 outputs (the property tests' cap) and pulls cotangents back through
#: Jacobians with ``‖J‖ ≤ γ``, which reaches about 10^3 for the random transformers of the property
#: tests, so round-off of ~1e-16 per operation can grow by three to five orders; 1e-10 sits above
#: that. float32 (``u ≈ 6e-8``): 1e-5. Also the martingale identity ``Σ_l Var_l = STD²``.
ATOL = {torch.float64: 1e-10, torch.float32: 1e-5}

#: Absolute tolerance, float64, for two formulas of an O(1) quantity built from a handful of
#: operations: a log-probability by hand vs the policy's, logits divided by T, the sympy-lambdified
#: softmax gradient vs autograd, a closed-form advantage or pass@k value vs the library's code on
#: an enumerated bandit or sequence. Tens of operations, so round-off of order 1e-15.
EXACT_ATOL = 1e-12

#: Relative tolerance, float64, for a closed form of an expected group update
#: (``rftgrad.theory.group_updates``) against its enumerated binomial sum, and for two closed forms
#: of the same update. These values span many decades as p → 0, so the comparison is relative
#: (its absolute floor, 1e-15, stays inline). The binomial sum has at most G − 1 = 63 terms.
EXACT_RTOL = 1e-12

#: Tolerance, float64, absolute and relative, for two expressions of one O(1) quantity of
#: Theorem 2 that involve one softmax over at most 100 logits (``rft_gradient`` vs
#: ``rft_pm1_gradient`` vs autograd, a probability vector summing to 1, the asymptotic constants
#: 2(K−1)/K). Fewer operations than ``EXACT_ATOL`` covers, hence the tighter 1e-14 (about 100 u).
FORMULA_TOL = 1e-14

#: Tolerance, float64, absolute and relative, for spectral norms ``‖J‖₂`` of logit Jacobians
#: (``rftgrad.theory.jacobian_spectral_norms``, behind γ): the tabular and linear closed forms and
#: the generic ``jacrev`` + Gram-matrix path against a brute-force Jacobian from
#: ``torch.autograd.functional.jacobian``. The norms are O(0.1..10) (the test asserts > 0.1, so
#: the relative and the absolute tolerance agree in scale). The same number as ``ATOL[float64]``,
#: kept apart because it bounds a different computation (an eigenvalue problem, not a sum).
SPECTRAL_TOL = 1e-10

#: Absolute tolerance, float64, for the transformer's packed KV-cached prefix tree
#: (``TinyTransformerPolicy.replica_tree_logits``) against the base class's per-level loop, which
#: re-encodes every prefix from scratch: the same logits, VJPs and exact-engine results (values,
#: gradients, per-input gradients), issue 19's bar. Both compute the same sums over the same
#: attention keys in a different order (softmax over concatenated segments, values summed per
#: ancestor level), so they differ by round-off of O(1) quantities through a few layers; measured
#: worst 4e-15 on the property tests' transformers (up to 3 layers, L = 5), so over two orders of margin.
TREE_CACHE_ATOL = 1e-12

#: Relative tolerance, float64, for γ and ``‖J‖₂`` of the batched generic path (every prefix of every
#: level in one reverse pass, per-state parameter copies; ``rftgrad.theory.gamma``) against a brute-force
#: per-state Jacobian (``torch.autograd.functional.jacobian``, SVD norm), and for ``rftgrad check``'s rows
#: against the per-example ``bound_table`` assembly: the issue's "equal to the old result to 1e-12". The
#: two differ only in summation order (a Gram matrix of V ≤ 6 rows over P ≈ 10^3 parameters): measured
#: worst 9.6e-16 on 40 random MLPs and transformers, so three orders of margin.
GAMMA_RTOL = 1e-12

#: Absolute tolerance, float64, for the exact engine's per-input gradients ``∇_θ V(x_n;θ)`` (one
#: reverse pass over per-(replica, input) parameter copies) against the mean gradient with the
#: one-hot input weights ``w = e_n`` (one VJP of the shared-parameter program): the same sum
#: ``J_n^T g_n`` accumulated in a different order, O(1) gradients; measured worst ~1e-16.
PER_INPUT_GRAD_ATOL = 1e-12

#: Relative tolerance, float64, for the matrix-free γ (``gamma(..., method="lanczos")``: V Lanczos steps
#: with full reorthogonalisation on ``v -> J Jᵀ v``) against the full-Jacobian γ. In exact arithmetic
#: the V steps span R^V and give λ_max exactly; in float64 the projected matrix ``Qᵀ A Q`` carries
#: ~V·u·‖A‖ of rounding per entry plus the loss of orthogonality of Q (kept at ~u by reorthogonalising
#: twice). Measured worst 6.3e-16 on 40 random MLPs and transformers; the stated accuracy is 1e-10.
LANCZOS_RTOL = 1e-10

#: Absolute tolerance, float64, for two layouts of the same ``transformers`` forward pass in
#: :class:`rftgrad.models.HFCausalLM` (``tests/models/test_hf.py``): a left-padded batch against each
#: prompt run alone and unpadded, the packed prefix tree (one pass, custom 4D attention mask) against
#: the per-level reference, vmapped replicas against one-replica policies, the flat and tree methods.
#: Masked keys get weight exactly 0, so the two differ only in the order of the same sums (attention
#: over more keys, matmuls of other sizes) through two layers; measured worst 9e-15 on logits, values
#: and gradients of size up to 10 to 20 (GPT-2 and Llama at weight scale 0.5, float64, with Llama's
#: RMSNorm and rotary run in float64), so two orders of margin. The issue's bar: "equal to the
#: per-level reference to 1e-12". The brute-force enumeration checks use ``ATOL`` (measured 1e-14).
HF_LAYOUT_ATOL = 1e-12

# --- numerical ODE solutions (Theorem 2) -----------------------------------------------------------

#: Absolute tolerance for two ODE solutions of the same flow, both integrated at rtol 1e-12 /
#: atol 1e-14, compared on logits of size 1 to 10: a linear model's weight-space flow read through
#: its inputs against each input's own logit flow (orthonormal inputs) or the Gram flow
#: (correlated inputs). Local error control at those settings keeps each solution far closer than
#: 1e-8; the margin is not measured.
ODE_ATOL = 1e-8

#: Relative tolerance for a closed-form hitting time (``closed_form_hitting_time``) against the
#: ODE's event time. The issue's bar; the measured worst case is 3.4e-10 (LSODA, rtol 1e-12,
#: atol 1e-14), so four orders of margin.
CLOSED_VS_ODE_RTOL = 1e-6

#: Absolute tolerance for rftgrad's numbers against TRL's in real ``GRPOTrainer``/``RLOOTrainer``
#: runs (``tests/integrations/test_trl_monitor.py``, ``test_trl_diagnose.py``): the monitor's logged metrics and
#: diagnose's reproduction of TRL's logged ``reward``, ``reward_std``, ``frac_reward_zero_std`` against their
#: recomputation from TRL's completions files, its rollout log against those files, and TRL's
#: ``advantage`` column against ``rftgrad.finetune.advantages``. TRL holds rewards, advantages and
#: every ``log_metric`` value in float32 (``u ≈ 6e-8``) and the quantities are O(1): measured worst
#: case 2.7e-8, so a margin of about 40.
TRL_ATOL = 1e-6

#: rftgrad's advantages against verl's ``compute_grpo_outcome_advantage`` / ``compute_rloo_outcome_advantage``
#: (``tests/integrations/test_verl_parity.py``, ``test_verl_fixture.py``), both float32: the two form
#: ``A`` in a different order of a handful of float32 operations (``u ≈ 6e-8``), so they may differ by
#: a few ``u·|A|``. The check is ``|A_rftgrad - A_verl| <= VERL_ATOL + VERL_RTOL·|A_verl|``: 1e-6, the
#: issue's figure, for ``|A| <= 1``, growing with ``|A|`` (up to about 16 for the σ = 2 continuous
#: rewards there). Measured worst: 9.5e-7 absolute, at ``|A| ≈ 10`` (RLOO), i.e. 1e-7 relative.
VERL_ATOL = 1e-6
#: the relative part of that check (see ``VERL_ATOL``).
VERL_RTOL = 1e-6

# --- Monte Carlo -----------------------------------------------------------------------------------

#: Standard errors a Monte Carlo mean may miss its exact expectation by. For a correct estimator
#: the standardised error of a mean of thousands of i.i.d. bounded draws is about N(0, 1), so one
#: check fails with probability P(|N(0,1)| > 5) ≈ 5.7e-7; with a few hundred checks per module
#: the union bound stays near 1e-4. Seeds are fixed, so the outcome is deterministic.
MC_Z = 5.0

#: Largest Monte Carlo tolerance (``MC_Z`` standard errors) allowed, as a fraction of the size of
#: the expectation it is compared with, in ``tests/finetune/test_advantages.py``: a check whose
#: band is wider than 10% of ``‖E ĝ‖`` (or of ``min(rate, 1 − rate)``) is too weak to catch a
#: wrong estimator and fails as such instead of passing vacuously.
MC_MAX_REL_TOL = 0.1

#: δ, the failure probability, per example, of each of the two bands (Markov on the second and on
#: the fourth moment of the error, both computed exactly) that a seeded REINFORCE estimate must
#: fall in around the exact mean gradient (``tests/theory/test_bound_properties.py``, property 4).
#: With δ = 1e-4 the second-moment band is 100 standard errors wide.
MC_FAILURE = 1e-4

#: Absolute tolerance, float64, for the exact engine's closed-form prefix tree (tabular, linear:
#: ``closed_form=True``) against its generic ``torch.func`` path on the same instance (brief A: "float64
#: to 1e-12"). Both run the same sweep; they differ only in how the logits are formed and pulled back
#: (a transposed copy or a matmul vs vmapped indexing and a VJP), tens of operations per number, so
#: round-off of order 1e-16 (measured: at most 6e-17 on the instances of tests/theory/test_exact_fast.py).
CLOSED_FORM_ATOL = 1e-12

#: |replica r of a batched run - the run of its seed alone| (float64; tests/finetune/test_trainer_records.py).
#: The state-major exact engine sums over the vocabulary and the prefix states across rows of R·N lanes, and
#: torch's summation order for a lane depends on the lane count, so the two runs differ by round-off
#: (about 1e-16 per sum, measured 1.1e-16 on STD), carried through a few optimiser steps.
REPLICA_ROUNDING_ATOL = 1e-12

#: Absolute tolerance, float64, for a row of ``rftgrad check`` evaluated in a batch (instances of one shape as
#: the replicas of one evaluation, ``rftgrad.theory.batched``) against the instance evaluated alone
#: (tests/theory/test_check_batches.py), on the quantities of size O(1) that carry absolute round-off: V, STD,
#: the logit-space gradient norm and its bound; times ``1 + L·γ`` for ``‖∇_θ V‖`` and the bounds linear in
#: STD (the Jacobian multiplies the cotangents' round-off by up to γ per position, as in
#: ``rftgrad.theory.bounds.rounding_slack``); γ itself to ``GAMMA_RTOL``. The two evaluations run the same
#: formulas, but torch's summation order and kernel blocking depend on the batch's lane count (the engine's
#: ``R·N`` columns, the vmapped matmuls), so bits differ: measured worst 1.3e-15 (V, STD), 1e-13 (‖∇V‖ of a
#: transformer with γ in the hundreds). Quantities ill-conditioned at STD -> 0 are compared through it by
#: error propagation: ``STD^(2/3)`` (the paper's bound) moves by at most ``ΔSTD^(2/3)``, a ratio
#: ``grad / bound`` by ``(Δgrad + ratio·Δbound) / bound``.
CHECK_BATCH_ATOL = 1e-12

#: Largest |steps × lr − T_flow| / T_flow of exact gradient ascent with lr = 2 against the teaching flow's
#: time (``reward_teacher``, ``ascent_vs_flow``). Explicit Euler's error on a hitting time is O(lr / T) with
#: T ≥ 85 on the checked proxies (lr / T ≤ 0.024); measured at most 0.017 (lr = 10 gave 0.084); 0.05 leaves ~3x.
TEACHING_ASCENT_REL_GAP = 0.05

#: two selection strategies that pick the same inputs train the same replicas of one tensor program; their
#: mean gains over seeds agree to float64 rounding of the (batched) replica arithmetic.
SAME_CHOICE_ATOL = 1e-9
