"""LLaVA-RLHF human preference data (Sun et al., 2023, "Aligning Large Multimodal Models with Factually
Augmented RLHF"; ``LLaVA-Human-Preference-10K``, ``llava_7b_v1_preference.json``).

A JSON list of rows: ``id``, ``image`` (a COCO file name), ``conversations`` (LLaVA turns; the last gpt turn
is a placeholder that each output replaces), ``output_1`` and ``output_2`` (``{"from", "value"}``) and
``preference`` (1 or 2: which output the annotator preferred), as the authors' reward-model loader reads it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmalign.data.importers.base import Importer, content_id, conversation_prompt, pair_record
from mmalign.errors import DataError


class LLaVARLHFImporter(Importer):
    name: ClassVar[str] = "llava-rlhf"
    fields: ClassVar[tuple[str, ...]] = ("id", "image", "conversations", "output_1", "output_2", "preference")
    required: ClassVar[tuple[str, ...]] = ("conversations", "output_1", "output_2", "preference")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        images = [self.image(row["image"], "image")] if row.get("image") is not None else []
        prompt, _ = conversation_prompt(row["conversations"], "conversations", len(images))
        preference = row["preference"]
        if isinstance(preference, bool) or preference not in (1, 2):
            raise DataError(f"must be 1 or 2 (the preferred output), got {preference!r}", field="preference")
        outputs = []
        for key in ("output_1", "output_2"):
            value = row[key]
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                raise DataError("must be {'from': ..., 'value': string}", field=key)
            outputs.append(value["value"])
        chosen, rejected = (outputs[0], outputs[1]) if preference == 1 else (outputs[1], outputs[0])
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, prompt, *outputs)
        meta = {"preference": preference, **({"image_path": row["image"]} if row.get("image") is not None else {})}
        return [pair_record(record_id, prompt, chosen, rejected, images, self.name, meta)]
