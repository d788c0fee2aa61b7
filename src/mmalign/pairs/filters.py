"""Cleaning preference data: deduplication and filters, each dropped record counted by reason.

* ``duplicate``: same images, same prompt and same pair (chosen, rejected and rejected images) as an earlier
  record; images compare by path, or by file content with ``image_key="content"``;
* ``identical``: chosen and rejected say the same thing once case, spacing and punctuation are ignored,
  and both sides see the same images (so nothing is preferred);
* ``empty``: a response with no letter or digit, or a prompt with neither text nor image;
* ``length_ratio``: the longer response has more than ``max_length_ratio`` times the words of the shorter
  (length is what a preference model learns first; see Park et al., 2024, "Disentangling Length from
  Quality in DPO").

Records are streamed; the first occurrence of a duplicate is kept. Only preference records are accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from mmalign.config import check_ranges, option
from mmalign.data.images import encode_png, resolve_image
from mmalign.data.io import default_out_root, default_root, nonempty, read_records, write_jsonl, write_records
from mmalign.data.records import ImageBlob, ImageRef, PreferenceRecord, Record, prompt_text
from mmalign.errors import ConfigError, DataError

REASONS: tuple[str, ...] = ("duplicate", "identical", "empty", "length_ratio")
IMAGE_KEYS: tuple[str, ...] = ("path", "content")


@dataclass(frozen=True)
class FilterConfig:
    dedup: bool = True
    """Drop records repeating an earlier one (same images, prompt and pair)."""
    image_key: str = "path"
    """How images compare for dedup: ``path`` (their reference) or ``content`` (the file's bytes)."""
    drop_identical: bool = True
    """Drop pairs whose chosen and rejected are the same text (ignoring case, spacing, punctuation)."""
    drop_empty: bool = True
    """Drop pairs with a response that has no word, or a prompt with no text and no image."""
    max_length_ratio: float | None = option(None, ge=1)
    """Drop pairs whose longer response has more than this many times the words of the shorter (None: off)."""

    def __post_init__(self) -> None:
        if self.image_key not in IMAGE_KEYS:
            raise ConfigError(f"unknown image key {self.image_key!r}; choose one of {', '.join(IMAGE_KEYS)}")
        check_ranges(self, name=lambda key: "--" + key.replace("_", "-"))  # set by `mmalign data filter`


@dataclass
class FilterReport:
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": {r: self.dropped[r] for r in REASONS}}


def normalise(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: what ``identical`` compares."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))


class ImageKeys:
    """Identity of an image for dedup: its path, or a hash of its bytes (files read once each)."""

    def __init__(self, mode: str, root: Path | None) -> None:
        self.mode, self.root = mode, root
        self._cache: dict[str, str] = {}

    def __call__(self, ref: ImageRef, field: str) -> str:
        if isinstance(ref, ImageBlob):
            return "sha256:" + hashlib.sha256(ref.data).hexdigest()
        if isinstance(ref, Image.Image):
            return "sha256:" + hashlib.sha256(encode_png(ref)).hexdigest()
        if self.mode == "path":
            return "path:" + ref
        if ref not in self._cache:
            if self.root is None:
                raise DataError(f"image path {ref!r} needs a data root to be hashed", field=field)
            self._cache[ref] = "sha256:" + hashlib.sha256(resolve_image(self.root, ref, field).read_bytes()).hexdigest()
        return self._cache[ref]


def pair_key(record: PreferenceRecord, image_key: Callable[[ImageRef, str], str]) -> str:
    """What makes two records duplicates: images, prompt, chosen, rejected, rejected images."""
    parts = {
        "images": [image_key(ref, f"images[{i}]") for i, ref in enumerate(record.images)],
        "rejected_images": None
        if record.rejected_images is None
        else [image_key(ref, f"rejected_images[{i}]") for i, ref in enumerate(record.rejected_images)],
        "prompt": record.prompt,
        "chosen": record.chosen_text,
        "rejected": record.rejected_text,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def drop_reason(record: PreferenceRecord, cfg: FilterConfig) -> str | None:
    """Why a filter (not dedup) drops ``record``, or None."""
    chosen, rejected = record.chosen_text, record.rejected_text
    if cfg.drop_empty and (
        not re.search(r"\w", chosen)
        or not re.search(r"\w", rejected)
        or (not prompt_text(record.prompt).strip() and not record.images)
    ):
        return "empty"
    same_images = record.rejected_images is None or record.rejected_images == record.images
    if cfg.drop_identical and same_images and normalise(chosen) == normalise(rejected):
        return "identical"
    if cfg.max_length_ratio is not None:
        short, long = sorted((word_count(chosen), word_count(rejected)))
        if long > cfg.max_length_ratio * max(short, 1):
            return "length_ratio"
    return None


def filter_records(
    records: Iterator[Record], cfg: FilterConfig, root: Path | None = None
) -> Iterator[tuple[PreferenceRecord, str | None]]:
    """Each record with the reason it is dropped (None: kept), in input order."""
    keys = ImageKeys(cfg.image_key, root)
    seen: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, PreferenceRecord):
            raise DataError(
                f"filters take preference records, got a {record.kind} record", index=index, record_id=record.id
            )
        reason = drop_reason(record, cfg)
        if reason is None and cfg.dedup:
            try:
                key = pair_key(record, keys)
            except DataError as err:
                raise err.located(index=index, record_id=record.id) from None
            if key in seen:
                reason = "duplicate"
            seen.add(key)
        yield record, reason


def filter_file(
    src: str | Path,
    dst: str | Path,
    cfg: FilterConfig,
    *,
    root: str | Path | None = None,
    out_root: str | Path | None = None,
    dropped: str | Path | None = None,
) -> FilterReport:
    """Filter ``src`` into ``dst`` (any format); ``dropped`` (JSONL) gets each dropped record's id and reason."""
    src, dst = Path(src), Path(dst)
    src_root = Path(root) if root is not None else default_root(src)
    report = FilterReport()
    removed: list[dict[str, Any]] = []

    def kept() -> Iterator[Record]:
        for record, reason in filter_records(read_records(src, root=src_root), cfg, src_root):
            report.read += 1
            if reason is None:
                report.kept += 1
                yield record
            else:
                report.dropped[reason] += 1
                removed.append({"id": record.id, "reason": reason})

    def why() -> str:
        dropped = ", ".join(f"{reason} {n}" for reason, n in report.dropped.items() if n)
        return f"{src}: no record kept of {report.read} read (dropped: {dropped or 'none'}): {dst} not written"

    write_records(
        dst,
        nonempty(kept(), why),
        root=out_root if out_root is not None else _out_root(dst, src_root),
        src_root=src_root,
        kind="preference",
    )
    if dropped is not None:
        write_jsonl(dropped, removed)
    return report


def _out_root(dst: Path, src_root: Path) -> Path:
    """Inside the source's data root: keep it (no image copied); elsewhere: the output's folder."""
    return default_out_root(dst, src_root)
