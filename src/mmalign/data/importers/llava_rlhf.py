"""LLaVA-RLHF human preference data (Sun et al., 2023, "Aligning Large Multimodal Models with Factually
Augmented RLHF"; ``LLaVA-Human-Preference-10K``, ``llava_7b_v1_preference.json``).

A JSON list of rows: ``id``, ``image`` (a COCO file name), ``conversations`` (LLaVA turns; the last gpt turn
is a placeholder that each output replaces), ``output_1`` and ``output_2`` (``{"from", "value"}``),
``preference`` (1 or 2: which output the annotator preferred) and ``hallucination`` (true or false, in every
row: whether the annotator decided on hallucination, the first criterion, or, both outputs being equally
truthful, on helpfulness; the authors' answer in llava-rlhf/LLaVA-RLHF issue #23). It goes to
``meta["hallucination"]``. The authors' reward-model loader (``RLHF/data_utils/data_utils_rm.py``) reads the
same fields and also accepts ``conversations`` wrapped in a one-element list; so does this importer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmalign.data.importers.base import Importer, content_id, conversation_prompt, pair_record
from mmalign.errors import DataError


class LLaVARLHFImporter(Importer):
    name: ClassVar[str] = "llava-rlhf"
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "image",
        "conversations",
        "output_1",
        "output_2",
        "preference",
        "hallucination",
    )
    required: ClassVar[tuple[str, ...]] = ("conversations", "output_1", "output_2", "preference")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        images = [self.image(row["image"], "image")] if row.get("image") is not None else []
        turns = row["conversations"]
        if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], list):
            turns = turns[0]  # the loader's "hack for V1": one conversation wrapped in a list
        prompt, _ = conversation_prompt(turns, "conversations", len(images))
        preference = row["preference"]
        if isinstance(preference, bool) or preference not in (1, 2):
            raise DataError(f"must be 1 or 2 (the preferred output), got {preference!r}", field="preference")
        hallucination = row.get("hallucination")
        if hallucination is not None and not isinstance(hallucination, bool):
            raise DataError(f"must be true or false, got {hallucination!r}", field="hallucination")
        outputs = []
        for key in ("output_1", "output_2"):
            value = row[key]
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                raise DataError("must be {'from': ..., 'value': string}", field=key)
            outputs.append(value["value"])
        chosen, rejected = (outputs[0], outputs[1]) if preference == 1 else (outputs[1], outputs[0])
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, prompt, *outputs)
        meta: dict[str, Any] = {"preference": preference}
        if hallucination is not None:
            meta["hallucination"] = hallucination
        if row.get("image") is not None:
            meta["image_path"] = row["image"]
        return [pair_record(record_id, prompt, chosen, rejected, images, self.name, meta)]
