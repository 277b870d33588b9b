"""``train(..., phase_inputs=...)``: chosen inputs for an arm's first phase, replacing its seeded subset.

The seeded subset given as the mask reproduces the default run bit for bit; a tabular policy's SFT
phase changes exactly the chosen inputs' logits; a checkpoint of another mask is refused; bad masks
raise one-line ConfigErrors.
"""

from __future__ import annotations

import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.finetune import TrainConfig, phase_subset, replica_grid, train
from rftgrad.models import TabularPolicy

ENV = random_sequence_env(num_prompts=10, vocab_size=3, length=2, reward="position_match", seed=3)
ARM = "sft:2@0.3+rft:3"  # the first phase trains on round(0.3 · 10) = 3 inputs per replica
CONFIG = TrainConfig(arms=(ARM, "rft:2"), optimizer="sgd", lr=(0.5,), seeds=2, eval_every=1)


def tabular(settings, device, dtype):
    return TabularPolicy.for_env(ENV, seed=list(settings.seeds), device=device, dtype=dtype,
                                 temperature=list(settings.temperature))  # fmt: skip


def chosen_mask() -> torch.Tensor:
    """(R=2, N=10): replica 0 takes inputs 0-2, replica 1 inputs 7-9."""
    mask = torch.zeros(2, ENV.num_inputs, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, 7:] = True
    return mask


def test_the_seeded_subset_as_mask_reproduces_the_default_run_exactly():
    default = train(tabular, ENV, CONFIG, progress=False)
    seeded = phase_subset(ENV.num_inputs, 0.3, replica_grid(CONFIG).seeds, phase_index=0)  # (R, N)
    given = train(tabular, ENV, CONFIG, progress=False, phase_inputs={ARM: seeded})
    assert default.records.equals(given.records)
    for arm in CONFIG.arms:
        for name, value in default.params[arm].items():
            assert torch.equal(value, given.params[arm][name])


def test_an_sft_phase_on_chosen_inputs_moves_only_their_logits():
    config = TrainConfig(arms=("sft:3@0.3",), optimizer="sgd", lr=(0.5,), seeds=2, eval_every=1)
    start = tabular(replica_grid(config), torch.device("cpu"), torch.float64).params["logits"]  # (R, N, P, V)
    mask = chosen_mask()
    end = train(tabular, ENV, config, progress=False, phase_inputs={"sft:3@0.3": mask}).params["sft:3@0.3"]["logits"]
    moved = (end - start).abs().flatten(2).amax(-1) > 0  # (R, N): inputs whose logits changed
    assert torch.equal(moved, mask)


def test_a_checkpoint_of_another_mask_is_refused(tmp_path):
    mask = chosen_mask()
    train(tabular, ENV, CONFIG, progress=False, checkpoint_dir=tmp_path, phase_inputs={ARM: mask})
    with pytest.raises(ConfigError, match="different config"):
        train(tabular, ENV, CONFIG, progress=False, checkpoint_dir=tmp_path, phase_inputs={ARM: mask.flip(0)})


@pytest.mark.parametrize(
    ("phase_inputs", "message"),
    [
        ({"sft:9+rft:3": chosen_mask()}, "not one of the config's arms"),
        ({ARM: chosen_mask()[:1]}, r"must be a bool tensor \(R, N\) = \(2, 10\), got \(1, 10\)"),
        ({ARM: chosen_mask().double()}, "must be a bool tensor"),
        ({ARM: torch.ones(2, 10, dtype=torch.bool)}, r"holds \[10, 10\] inputs per replica but its first phase"),
    ],
)
def test_bad_masks_raise_one_line_config_errors(phase_inputs, message):
    with pytest.raises(ConfigError, match=message) as error:
        train(tabular, ENV, CONFIG, progress=False, phase_inputs=phase_inputs)
    assert "\n" not in str(error.value)
