"""Experiment configs compose instead of inherit: own fields, plus a ``trainer`` section where they finetune.

``--show-config`` must list only keys the experiment uses: no field inherited from another experiment's
config, no trainer key the experiment sets itself (``DERIVED``), and every top-level field read by the
experiment's own code.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from rftgrad.cli import main
from rftgrad.configs import field_types, sections
from rftgrad.envs import family_task
from rftgrad.experiments import EXPERIMENTS
from rftgrad.experiments.base import experiment_module
from rftgrad.finetune import TrainConfig

EXPERIMENT_DIR = Path(__file__).resolve().parents[2] / "rftgrad" / "experiments"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_config_declares_its_own_fields_and_inherits_none(name):
    config_cls = experiment_module(name, "config").Config
    assert config_cls.__mro__ == (config_cls, object)  # no base class: composition, not inheritance
    assert set(sections(config_cls)) <= {"trainer"} and all(
        section is TrainConfig for section in sections(config_cls).values()
    )


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_top_level_key_is_read_by_the_experiment(name):
    config_cls = experiment_module(name, "config").Config
    source = "\n".join(path.read_text(encoding="utf-8") for path in (EXPERIMENT_DIR / name).glob("*.py"))
    # family_task_of(config) reads one attribute per keyword parameter of family_task
    read_by_builder = set(inspect.signature(family_task).parameters) if "family_task_of(config)" in source else set()
    unread = [
        field.name
        for field in dataclasses.fields(config_cls)
        if field.name != "trainer"
        and field.name not in read_by_builder
        and not re.search(rf"\b(config|self)\.{field.name}\b", source)
    ]
    assert not unread, f"{name} declares keys its code never reads: {unread}"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_show_config_lists_exactly_the_settable_keys(name, capsys):
    assert main(["run", name, "--show-config"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if not line.startswith("--variant")]
    config_cls = experiment_module(name, "config").Config
    assert shown == list(field_types(config_cls))
    for derived in getattr(config_cls, "DERIVED", ()):
        assert derived not in shown


def test_derived_trainer_keys_are_refused_with_the_keys_to_set_instead(tmp_path, capsys):
    for name, key in (("sft_budget", "arms"), ("prevalence", "trainer.arms"), ("estimators", "trainer.pass_k")):
        out = tmp_path / name
        assert main(["run", name, "--set", f"{key}=1", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{name} derives trainer." in err and "set those instead" in err and err.count("\n") == 1
        assert not out.exists()
