"""RLHF-V-Dataset (openbmb; Yu et al., 2023, "RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from
Fine-grained Correctional Human Feedback").

The published layout (``RLHF-V-Dataset.parquet``): ``ds_name``, ``image`` (a ``{"bytes", "path"}`` struct),
``text`` (a JSON string ``{"question", "chosen", "rejected"}``), ``origin_dataset``, ``origin_split`` (JSON
meta: the answering model, the question type), ``idx`` and ``image_path``. The chosen answer is the
annotators' segment-level correction of the rejected one; the corrected segments are recovered as a word
diff of the two (``chosen_spans`` / ``rejected_spans``), which is what dense DPO weights (option ``spans``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.data.importers.base import (
    Importer,
    content_id,
    maybe_json,
    pair_record,
    parse_json_text,
    string,
    user_message,
)
from mmalign.errors import DataError


@dataclass(frozen=True)
class RLHFVOptions:
    spans: bool = option(True, "Mark the corrected segments (a word diff of chosen and rejected) as spans.")


def diff_spans(chosen: str, rejected: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character spans of the words that differ between two texts (difflib over whitespace-split words):
    each changed run becomes one span in the text that has words there."""
    a = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", chosen)]
    b = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", rejected)]
    matcher = difflib.SequenceMatcher(None, [w for *_, w in a], [w for *_, w in b], autojunk=False)
    chosen_spans, rejected_spans = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            chosen_spans.append((a[i1][0], a[i2 - 1][1]))
        if j2 > j1:
            rejected_spans.append((b[j1][0], b[j2 - 1][1]))
    return chosen_spans, rejected_spans


class RLHFVImporter(Importer):
    name: ClassVar[str] = "rlhf-v"
    fields: ClassVar[tuple[str, ...]] = (
        "ds_name",
        "image",
        "text",
        "origin_dataset",
        "origin_split",
        "idx",
        "image_path",
    )
    required: ClassVar[tuple[str, ...]] = ("image", "text")
    options_class: ClassVar[type] = RLHFVOptions

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        text = parse_json_text(row["text"], "text")
        if not isinstance(text, dict):
            raise DataError("must hold an object with question, chosen and rejected", field="text")
        for key, value in text.items():
            if key not in ("question", "chosen", "rejected"):
                self.keep(f"text.{key}", value)
        question = string(text, "question", allow_empty=True, prefix="text.")
        chosen, rejected = string(text, "chosen", prefix="text."), string(text, "rejected", prefix="text.")
        image = self.image(row["image"], "image")
        message, _ = user_message(question, 1, "text.question")
        spans = diff_spans(chosen, rejected) if self.options.spans else (None, None)
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, question, chosen, rejected)
        meta = {
            key: maybe_json(row[key])
            for key in ("ds_name", "origin_dataset", "origin_split", "idx", "image_path")
            if row.get(key) is not None
        }
        return [pair_record(record_id, [message], chosen, rejected, [image], self.name, meta, *spans)]
