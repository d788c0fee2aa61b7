"""Records as a ``torch`` dataset for ``transformers.Trainer``: any record file, held in memory.

Every trainer reads its data through :class:`RecordDataset`: SFT examples for supervised fine-tuning,
preference pairs for preference training, evaluation items (with their reference answers) for held-out
losses. Records are read once with :func:`mmalign.data.io.read_records` (schema and image paths checked at
start, so a bad record fails before the first step, located by file, line and id) and kept in memory;
images stay on disk and are opened by the collator, batch by batch. A record costs about 2 KB of Python
objects, so 100 k records take a few hundred MB: fine for the sizes this project trains on. Larger corpora
would need a streaming dataset, which this is not.

``dataset[i]`` is the record itself; the model's :class:`~mmalign.models.collate.Collator` turns a list of
them into a batch.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from mmalign.data.io import default_root, read_records
from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.records import RECORD_TYPES, ImageBlob, Record
from mmalign.errors import ConfigError, DataError


class RecordDataset(Dataset):
    """Records in memory, in file order, with the data root their image paths are relative to."""

    def __init__(self, records: Sequence[Record], root: str | Path | None = None, source: str = "records") -> None:
        self.records = list(records)
        self.root = None if root is None else Path(root)
        """Data root of the records' image paths (what the collator opens images under)."""
        self.source = source
        """Where the records came from (a file path), for messages."""

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        kinds: Iterable[str] = ("sft",),
        root: str | Path | None = None,
        limit: int | None = None,
        check_images: str = "exists",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> RecordDataset:
        """Read ``path`` (JSONL, Parquet or a ``datasets`` directory), keeping only records of ``kinds``
        (``sft``, ``preference``, ``eval``); a record of another kind is a :class:`DataError`. ``limit`` keeps
        the first N records (and reads no further). ``root`` defaults to the file's folder."""
        allowed = tuple(kinds)
        unknown = [k for k in allowed if k not in RECORD_TYPES]
        if unknown or not allowed:
            raise ConfigError(f"record kinds must be among {sorted(RECORD_TYPES)}, got {list(allowed)}")
        if limit is not None and limit <= 0:
            raise ConfigError(f"limit must be positive, got {limit}")
        path = Path(path)
        root = default_root(path) if root is None else Path(root)
        kind = allowed[0] if len(allowed) == 1 else None
        records: list[Record] = []
        for index, record in enumerate(
            read_records(path, kind=kind, root=root, check_images=check_images, max_pixels=max_pixels)
        ):
            if record.kind not in allowed:
                raise DataError(
                    f"a {record.kind} record where {' or '.join(allowed)} records are expected",
                    file=path,
                    index=index,
                    record_id=record.id,
                )
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
        if not records:
            raise DataError("no records: the file is empty", file=path)
        return cls(records, root, source=str(path))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def kinds(self) -> dict[str, int]:
        """Records per kind, e.g. ``{"sft": 120000}``."""
        return dict(Counter(r.kind for r in self.records))

    def fingerprint(self) -> str:
        """A hex digest of the records' content, in order (images by path, or by bytes when in memory).

        Files on disk are named, not read: a cache keyed on this must also key on anything that may change
        image files in place. Same records, same fingerprint, across processes and machines."""
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(json.dumps(record.to_dict(), sort_keys=True, default=_image_key).encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()


def _image_key(value: Any) -> str:
    """A JSON stand-in for an in-memory image: a hash of its content."""
    if isinstance(value, ImageBlob):
        return f"blob:{value.path}:{hashlib.sha256(value.data).hexdigest()}"
    if isinstance(value, Image.Image):
        content = hashlib.sha256(value.tobytes()).hexdigest()
        return f"pil:{value.mode}:{value.size[0]}x{value.size[1]}:{content}"
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")
