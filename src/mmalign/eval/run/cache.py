"""The resume cache: completed items of one model on one task, kept as they are computed.

Keyed on what it contains: the directory is the model's *fingerprint* (a hash of every file of the model
directory: weights, config, tokenizer, chat template), the file name holds the task, the mode (``fast`` /
``generate`` / ``logps``) and a hash of every setting that changes outputs (generation budget...), and each
line holds an item's *key*, a hash of what the model sees (question, choices, image bytes; prompt and
responses for preference pairs), so an item whose content changed is recomputed even if its id did not.

Lines are appended a batch at a time with one ``write`` and an ``fsync``; a line cut short by a crash (no
final newline) is dropped when the file is next opened, so a killed evaluation resumes from its last
complete batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmalign.data.records import EvalItem, ImageBlob, PreferenceRecord
from mmalign.errors import DataError

CHUNK = 1 << 20


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 over the relative path and bytes of every file in a model directory (hidden files skipped)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        digest.update(rel.encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class ItemKeys:
    """Content keys of items; image files are hashed once each."""

    def __init__(self, image_root: Path | None) -> None:
        self.image_root = image_root
        self._images: dict[str, str] = {}

    def _image(self, ref: Any) -> str:
        if isinstance(ref, ImageBlob):
            return hashlib.sha256(ref.data).hexdigest()
        if not isinstance(ref, str):  # an in-memory image: its pixels
            return hashlib.sha256(ref.tobytes() + str(ref.size).encode()).hexdigest()
        if ref not in self._images:
            path = Path(ref) if self.image_root is None else self.image_root / ref
            self._images[ref] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else f"missing:{ref}"
        return self._images[ref]

    def key(self, item: EvalItem | PreferenceRecord) -> str:
        if isinstance(item, PreferenceRecord):
            seen: Any = [item.prompt, item.chosen, item.rejected]
            images = [self._image(i) for i in item.images + (item.rejected_images or [])]
        else:
            seen = [item.question, item.choices]
            images = [self._image(i) for i in item.images]
        return hashlib.sha256(json.dumps([seen, images], sort_keys=True).encode()).hexdigest()[:16]


class PredictionCache:
    """Item id → stored row, for one model, task, mode and settings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # a batch cut short by a crash: drop its partial line
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for number, line in enumerate(complete.splitlines(), start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(
                    "the resume cache is corrupt (not JSON); delete the file to recompute", file=self.path, line=number
                ) from None
            self.rows[row["id"]] = row

    def get(self, item_id: str, key: str) -> dict[str, Any] | None:
        row = self.rows.get(item_id)
        return row if row is not None and row.get("key") == key else None

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (each with ``id`` and ``key``) in one write, then flush them to disk."""
        rows = list(rows)
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for row in rows:
            self.rows[row["id"]] = row
