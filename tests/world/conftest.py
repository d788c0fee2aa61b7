"""Fixtures for the shapes-world tests: a tiny config and one tiny world generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.world.config import WorldConfig
from mmalign.world.generate import WorldSummary, generate_world

TINY = WorldConfig(train_scenes=300, val_scenes=60, test_scenes=60, image_size=48)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldSummary]:
    out = tmp_path_factory.mktemp("world") / "w"
    return out, generate_world(out, TINY)  # tests read the config back from the summary
