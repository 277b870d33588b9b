"""Typed configs: parsing --set strings, checking file values, TOML round trips, field docs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rftgrad.configs import as_sets, coerce, describe_config, field_docs, load_config, to_toml
from rftgrad.errors import ConfigError


@dataclass(frozen=True)
class Example:
    steps: int = 10  # optimisation steps
    lr: tuple[float, ...] = (0.1,)  # learning rates
    name: str = "a"  # a label
    exact: bool = True  # use the exact gradient
    scale: float = 1.0  # a scale


def test_set_strings_are_parsed_by_field_type():
    config = load_config(Example, sets=["steps=3", "lr=0.5,1e-3", "name=x y", "exact=false", "scale=2"])
    assert config == Example(steps=3, lr=(0.5, 1e-3), name="x y", exact=False, scale=2.0)


def test_file_values_are_checked_not_converted():
    assert coerce(Example, "scale", 3) == 3.0  # an integer is a number
    assert coerce(Example, "lr", 0.2) == (0.2,)  # one value for a list
    for key, value in [("steps", 2.5), ("steps", True), ("exact", "yes"), ("name", 3), ("lr", ["x"])]:
        with pytest.raises(ConfigError, match=f"config key '{key}' expects"):
            coerce(Example, key, value)
    with pytest.raises(ConfigError, match="unknown config key 'stepz'; valid keys: steps .an integer., lr"):
        coerce(Example, "stepz", 1)


def test_toml_round_trip_keeps_values_and_writes_docs(tmp_path):
    config = Example(steps=7, lr=(0.5, 2.0), name='quote " and \\ backslash', exact=False, scale=1e-300)
    text = to_toml(config, header="saved by a test")
    assert text.startswith("# saved by a test\n") and "steps = 7  # optimisation steps" in text
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(Example, config_file=path) == config


def test_field_docs_and_description_come_from_the_comments():
    assert field_docs(Example) == {
        "steps": "optimisation steps",
        "lr": "learning rates",
        "name": "a label",
        "exact": "use the exact gradient",
        "scale": "a scale",
    }
    assert "lr                       a list of numbers" in describe_config(Example)


@dataclass(frozen=True)
class Section:
    lr: tuple[float, ...] = (0.1,)  # learning rates
    seeds: int = 2  # seeds


@dataclass(frozen=True)
class Composed:
    DERIVED = ("inner.seeds",)

    steps: int = 10  # optimisation steps
    inner: Section = Section(lr=(0.5,))  # the nested section


def test_a_section_takes_dotted_bare_nested_and_toml_keys(tmp_path):
    assert load_config(Composed).inner == Section(lr=(0.5,))  # the field's default instance
    assert load_config(Composed, sets=["inner.lr=0.2,0.3"]).inner.lr == (0.2, 0.3)
    assert load_config(Composed, sets=["lr=0.2"]).inner.lr == (0.2,)  # a bare key naming one section field
    assert load_config(Composed, {"inner": {"lr": [0.7]}, "steps": 3}) == Composed(steps=3, inner=Section(lr=(0.7,)))
    config = load_config(Composed, sets=["steps=4", "inner.lr=1e-3"])
    text = to_toml(config)
    assert "[inner]\nlr = [0.001]  # learning rates" in text and "seeds" not in text  # derived: not written
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(Composed, config_file=path) == config
    assert [line.split()[0] for line in describe_config(Composed).splitlines()] == ["steps", "inner.lr"]


def test_derived_unknown_and_ill_typed_section_keys_are_refused():
    with pytest.raises(ConfigError, match="derives inner.seeds from its own keys"):
        load_config(Composed, sets=["seeds=3"])
    with pytest.raises(ConfigError, match="derives inner.seeds"):
        load_config(Composed, sets=["inner.seeds=3"])
    with pytest.raises(ConfigError, match="unknown config key 'inner.bogus'"):
        load_config(Composed, sets=["inner.bogus=1"])
    with pytest.raises(ConfigError, match="config key 'inner.lr' expects a list of numbers"):
        load_config(Composed, sets=["lr=fast"])


def test_as_sets_flattens_nested_sections_and_load_config_reads_them_back():
    assert as_sets({"lr": (0.1, 0.2), "seeds": 2}) == ("lr=0.1,0.2", "seeds=2")
    assert as_sets({"num_train": 20, "trainer": {"lr": (0.1,), "seeds": 2}}) == (
        "num_train=20", "trainer.lr=0.1", "trainer.seeds=2",
    )  # fmt: skip
    config = Composed(steps=7, inner=Section(lr=(0.25, 2.0)))
    assert load_config(Composed, sets=as_sets({"steps": 7, "inner": {"lr": (0.25, 2.0)}})) == config
