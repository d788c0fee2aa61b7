"""A tiny shapes world shared by the builder tests (generated once per session), and small helpers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mmalign.data.parse import record_from_dict
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

TINY = WorldConfig(train_scenes=240, val_scenes=30, test_scenes=30, image_size=32)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build-world") / "w"
    generate_world(out, TINY)
    return out


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The helpers below, for the test modules (conftest cannot be imported under importlib mode)."""
    return SimpleNamespace(read_lines=read_lines, texts=texts, scenes=scenes)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def texts(row: dict[str, Any]) -> tuple[str, str]:
    """Chosen and rejected response text of a written record."""
    record = record_from_dict(row)
    return record.chosen_text, record.rejected_text  # type: ignore[union-attr]


def scenes(world: Path, split: str = "train") -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in read_lines(world / split / "scenes.jsonl")}
