"""A task's items: :class:`TaskInput` (what a task evaluates and where it came from) and :func:`read_eval_items`
(mmalign evaluation items from a JSON-lines file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.data.parse import record_from_dict
from mmalign.data.records import EvalItem, Origin, PreferenceRecord
from mmalign.errors import DataError
from mmalign.eval.metrics.official import read_jsonl


@dataclass
class TaskInput:
    """What a task evaluates: its items (evaluation items, or preference pairs for ``reward``)."""

    items: list[EvalItem] | list[PreferenceRecord]
    image_root: Path
    """Where the items' relative image paths are opened."""
    source: str
    """Where the items came from (for results.json)."""
    annotations: Path | None = None
    """CHAIR on COCO: the annotation directory that holds the ground truth."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Items of the file left out, by why (``video``: MM-RLHF-RewardBench's video pairs, no video input yet)."""


def read_eval_items(path: str | Path) -> list[EvalItem]:
    """mmalign evaluation items (JSON lines), each error located by file and line."""
    items = []
    for line, obj in read_jsonl(path):
        try:
            item = record_from_dict(obj, kind="eval")
        except DataError as err:
            raise err.located(file=path, line=line, record_id=obj.get("id")) from None
        item.origin = Origin(str(path), line)
        items.append(item)  # type: ignore[arg-type]
    if not items:
        raise DataError("no evaluation items", file=path)
    return items
