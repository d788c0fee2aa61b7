"""Fixtures for the data tests: small records, image files, JSONL files written line by line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image


def pref_dict(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid preference pair in TRL's conversational layout with one image ``images/red.png``."""
    row: dict[str, Any] = {
        "id": f"p-{i}",
        "images": ["images/red.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A red square."}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "A red square and a star."}]}],
        "source": "test",
    }
    row.update(overrides)
    return row


def save_png(root: Path, rel: str, size: tuple[int, int] = (8, 8), colour: Any = "red") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def write_lines(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSON lines; a ``str`` row is written as it is (for broken lines)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data root holding ``images/red.png`` (8x8) and ``images/blue.png`` (8x8)."""
    root = tmp_path / "data"
    save_png(root, "images/red.png", colour="red")
    save_png(root, "images/blue.png", colour="blue")
    return root


@pytest.fixture
def helpers() -> Any:
    """The module-level helpers, for tests in other files of this folder."""

    class Helpers:
        pref: Callable[..., dict[str, Any]] = staticmethod(pref_dict)
        png: Callable[..., Path] = staticmethod(save_png)
        lines: Callable[[Path, list[Any]], Path] = staticmethod(write_lines)

    return Helpers
