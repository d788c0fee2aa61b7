"""Every YAML config shipped under configs/ loads and validates against its trainer's config class.

A config names its trainer with a top-level ``kind`` (``sft``, ``pref``, ...). The class for a kind is the
dataclass in ``mmalign.train`` whose ``kind`` field defaults to it, so a new trainer's configs are checked
as soon as its config class exists, with no change here.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
import yaml

import mmalign.train
from mmalign.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# accelerate's launcher configs are its own format (checked with accelerate's loader in test_pref_cli.py)
SHIPPED = [p for p in sorted(CONFIGS.rglob("*.yaml")) + sorted(CONFIGS.rglob("*.yml")) if p.parent.name != "accelerate"]


def config_classes() -> dict[str, type]:
    """kind -> config dataclass, over every module of mmalign.train."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(mmalign.train.__path__):
        module = importlib.import_module(f"mmalign.train.{info.name}")
        for value in vars(module).values():
            if not (isinstance(value, type) and dataclasses.is_dataclass(value)) or value.__module__ != module.__name__:
                continue
            fields = {f.name: f for f in dataclasses.fields(value)}
            if "kind" in fields and isinstance(fields["kind"].default, str):
                found[fields["kind"].default] = value
    return found


def test_there_are_configs_and_classes():
    assert any(p.parent.name == "sft" for p in SHIPPED), "configs/sft/ should ship generic and per-family recipes"
    assert (CONFIGS / "demo" / "sft.yaml") in SHIPPED
    assert "sft" in config_classes()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_validates(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a mapping"
    kind = data.get("kind")
    classes = config_classes()
    assert kind in classes, f"{path}: top-level kind {kind!r} names no config class (known: {sorted(classes)})"
    config = load_config(classes[kind], path)  # unknown keys, wrong types, contradictions raise ConfigError
    assert config.kind == kind
    if kind == "sft" and path.parent.name == "sft":  # real-family recipes: realistic, not demo-sized
        assert config.data.max_length is not None, f"{path}: a real model needs data.max_length"
        assert config.train.save_steps is not None, f"{path}: long runs should checkpoint"
