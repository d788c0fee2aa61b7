from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from mmalign.config import apply_overrides, config_from_dict, describe, load_config, option, section
from mmalign.errors import ConfigError


@dataclass
class Inner:
    learning_rate: float = option(1e-3, "Peak learning rate.")
    schedule: Literal["linear", "cosine"] = option("linear", "Decay shape.")
    warmup_steps: int | None = option(None, "Warmup steps (or null).")

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")


@dataclass
class Outer:
    model: str = option(help="Model directory.")
    tags: list[str] = option([], "Free tags.")
    train: Inner = section(Inner, "Training options.")


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ntrain:\n  learning_rate: 0.01\n")
    cfg = load_config(Outer, path, ["train.schedule=cosine", "train.learning_rate=1e-4", "tags=[a, b]"])
    assert cfg.model == "m"
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.train.schedule == "cosine"
    assert cfg.tags == ["a", "b"]


def test_int_accepted_for_float_and_null_for_optional():
    cfg = config_from_dict(Outer, {"model": "m", "train": {"learning_rate": 1, "warmup_steps": None}})
    assert isinstance(cfg.train.learning_rate, float)
    assert cfg.train.warmup_steps is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"model": "m", "trian": {}}, "unknown key 'trian'"),
        ({"model": "m", "train": {"lr": 1}}, "unknown key 'train.lr'"),
        ({"model": "m", "train": {"schedule": "step"}}, "'train.schedule' must be 'linear' | 'cosine'"),
        ({"model": "m", "train": {"warmup_steps": 1.5}}, "'train.warmup_steps' must be int | null"),
        ({"model": 3}, "'model' must be str"),
        ({}, "missing required key 'model'"),
        ({"model": "m", "train": {"learning_rate": -1}}, "learning_rate must be positive"),
    ],
)
def test_bad_configs_name_the_key(data, needle):
    with pytest.raises(ConfigError, match=r"x\.yaml") as err:
        config_from_dict(Outer, data, where="x.yaml")
    assert needle in str(err.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        apply_overrides({}, ["nokey"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)


def test_describe_lists_every_option_with_help():
    rows = {key: (tp, default, helptext) for key, tp, default, helptext in describe(Outer)}
    assert set(rows) == {"model", "tags", "train.learning_rate", "train.schedule", "train.warmup_steps"}
    assert rows["train.learning_rate"] == ("float", "0.001", "Peak learning rate.")
    assert rows["model"][1] == "(required)"
