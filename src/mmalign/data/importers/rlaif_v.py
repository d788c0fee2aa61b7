"""RLAIF-V-Dataset (openbmb; Yu et al., 2024, "RLAIF-V: Aligning MLLMs through Open-Source AI Feedback").

The published layout (parquet shards ``RLAIF-V-Dataset_*.parquet``): ``ds_name``, ``image`` (a
``{"bytes", "path"}`` struct), ``question``, ``chosen``, ``rejected``, ``origin_dataset``, ``origin_split``
(the answering and labelling models, the question type), ``idx`` and ``image_path``.

Cached reference log-probs. RLAIF-V's training recipe first runs its reference model over the data
(``data_engine/logps_calculator.py`` in RLHF-V/RLAIF-V) and writes ``RLAIF-V-Dataset-withlogp_*.parquet``
with a ``logps`` column: JSON of ``[win_logp, win_avg_logp, win_per_token_logp, rej_logp, rej_avg_logp,
rej_per_token_logp]`` (or ``{"logps": [...]}``), which its dataset class unpacks into ``ref_win_logp``,
``ref_win_avg_logp``, ``ref_win_per_token_logp``, ``ref_rej_logp``, ``ref_rej_avg_logp`` and
``ref_rej_per_token_logp``. Those numbers are only valid for the model, chat template and tokenisation that
made them (RLAIF-V's LLaVA-1.5 / OmniLMM prompts, not mmalign's collator), and mmalign's reference cache is
keyed on the dataset fingerprint and the reference weights' hash (:mod:`mmalign.train.reference_cache`), which a
foreign column cannot match. So they are recognised and dropped, with one line in the import summary; use
``reference.mode: precomputed`` to cache mmalign's own.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmalign.data.importers.base import Importer, content_id, maybe_json, pair_record, string, user_message

META = ("ds_name", "origin_dataset", "origin_split", "idx", "image_path")
LOGPS_REASON = (
    "RLAIF-V's cached reference log-probs, computed by its own reference model, prompt template and tokenisation; "
    "mmalign computes its own (reference.mode: precomputed caches them)"
)
LOGPS_FIELDS = (
    "logps",
    *(f"ref_{side}_{kind}" for side in ("win", "rej") for kind in ("logp", "avg_logp", "per_token_logp")),
)


class RLAIFVImporter(Importer):
    name: ClassVar[str] = "rlaif-v"
    fields: ClassVar[tuple[str, ...]] = ("ds_name", "image", "question", "chosen", "rejected", *META[1:])
    required: ClassVar[tuple[str, ...]] = ("image", "question", "chosen", "rejected")
    drop_fields: ClassVar[dict[str, str]] = dict.fromkeys(LOGPS_FIELDS, LOGPS_REASON)

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        question = string(row, "question", allow_empty=True)
        chosen, rejected = string(row, "chosen"), string(row, "rejected")
        image = self.image(row["image"], "image")
        message, _ = user_message(question, 1, "question")
        record_id = f"{self.name}-{row_id}" if row_id is not None else content_id(self.name, question, chosen, rejected)
        meta = {key: maybe_json(row[key]) for key in META if row.get(key) is not None}
        return [pair_record(record_id, [message], chosen, rejected, [image], self.name, meta)]
