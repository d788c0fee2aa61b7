"""RLAIF-V-Dataset (openbmb; Yu et al., 2024, "RLAIF-V: Aligning MLLMs through Open-Source AI Feedback").

The published layout (parquet shards ``RLAIF-V-Dataset_*.parquet``): ``ds_name``, ``image`` (a
``{"bytes", "path"}`` struct), ``question``, ``chosen``, ``rejected``, ``origin_dataset``, ``origin_split``
(the answering and labelling models, the question type), ``idx`` and ``image_path``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmalign.data.importers.base import Importer, content_id, maybe_json, pair_record, string, user_message

META = ("ds_name", "origin_dataset", "origin_split", "idx", "image_path")


class RLAIFVImporter(Importer):
    name: ClassVar[str] = "rlaif-v"
    fields: ClassVar[tuple[str, ...]] = ("ds_name", "image", "question", "chosen", "rejected", *META[1:])
    required: ClassVar[tuple[str, ...]] = ("image", "question", "chosen", "rejected")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        question = string(row, "question", allow_empty=True)
        chosen, rejected = string(row, "chosen"), string(row, "rejected")
        image = self.image(row["image"], "image")
        message, _ = user_message(question, 1, "question")
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, question, chosen, rejected)
        meta = {key: maybe_json(row[key]) for key in META if row.get(key) is not None}
        return [pair_record(record_id, [message], chosen, rejected, [image], self.name, meta)]
