"""POVID (Zhou et al., 2024, "Aligning Modalities in Vision Large Language Models via Preference
Fine-tuning"): the preference file its DPO stage trains on (``POVID_preference_data_for_VLLMs.json``).

A JSON list of LLaVA-style rows: ``id``, ``image`` (a path under the COCO image folder),
``conversations`` (the human turn, with ``<image>``, then the preferred gpt answer) and
``rejected_conversations`` (the same human turns, then the hallucinated gpt answer). POVID's second
source of dispreference, a noised image, is made on the fly by its trainer; build it here with
``mmalign data build --strategy corrupt-image`` (mode ``noise``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmalign.data.importers.base import Importer, content_id, conversation_prompt, pair_record
from mmalign.errors import DataError


class POVIDImporter(Importer):
    name: ClassVar[str] = "povid"
    fields: ClassVar[tuple[str, ...]] = ("id", "image", "conversations", "rejected_conversations")
    required: ClassVar[tuple[str, ...]] = ("conversations", "rejected_conversations")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        images = [self.image(row["image"], "image")] if row.get("image") is not None else []
        prompt, chosen = conversation_prompt(row["conversations"], "conversations", len(images))
        rejected_prompt, rejected = conversation_prompt(
            row["rejected_conversations"], "rejected_conversations", len(images)
        )
        if rejected_prompt != prompt:
            raise DataError("the turns before the answer differ from 'conversations'", field="rejected_conversations")
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, prompt, chosen, rejected)
        meta = {"image_path": row.get("image")} if row.get("image") is not None else {}
        return [pair_record(record_id, prompt, chosen, rejected, images, self.name, meta)]
