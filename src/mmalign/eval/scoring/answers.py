"""A run's question and answer files, written in the benchmarks' own formats (what ``mmalign eval score`` reads).

Each task's predictions are written where ``results.json`` says (``predictions/<task>.jsonl``), in the
format ``mmalign eval score`` reads, and scored from those files (:mod:`.rescore`), so that command gives
the same numbers line by line and ``mmalign eval compare`` can re-pair two runs item by item:

* POPE, MME, multiple choice, consistency: ``{"question_id", "text", "answer"}`` (LLaVA / POPE answer lines);
  MME also as the eval tool's ``predictions/mme/<subtask>.txt`` (image, question, answer, prediction);
* CHAIR: ``{"question_id", "image", "caption", "text"}``, or ``{"image_id", "caption"}`` on COCO;
* safety: ``{"id", "question", "response", "kind", "category"}``;
* dialogue: ``{"question_id", "prompt", "text", "model_id"}`` plus the judge's scores in ``judgments/``;
* reward: ``{"id", "policy_chosen_logp", "policy_rejected_logp", "ref_chosen_logp", "ref_rejected_logp",
  "beta", "category", "group"}``;
* preference: battles ``{"model_a", "model_b", "winner", "question_id"}``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmalign.data.io import write_jsonl
from mmalign.data.records import EvalItem, PreferenceRecord
from mmalign.eval.metrics.official import write_mme_file, write_pope_answers
from mmalign.eval.tasks.specs import TaskSpec


def _one_line(text: str) -> str:
    return " ".join(text.split("\t")).replace("\r", " ").replace("\n", " ")


def write_answers(spec: TaskSpec, items: Sequence[EvalItem], texts: Sequence[str], path: Path, coco: bool) -> None:
    """Write one task's model outputs in its benchmark's answer format (see the module docstring)."""
    if spec.kind in ("yesno", "choice"):
        write_pope_answers(path, [(item.id, text) for item, text in zip(items, texts, strict=True)])
        if spec.name == "mme":
            by_subtask: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
            for item, text in zip(items, texts, strict=True):
                image = str(item.images[0]) if item.images else str(item.meta["group"])
                row = (image, _one_line(item.question), item.answer.capitalize(), _one_line(text))
                by_subtask[str(item.meta.get("subtask", "mme"))].append(row)
            for subtask, rows in by_subtask.items():
                write_mme_file(path.parent / "mme" / f"{subtask}.txt", rows)
    elif spec.kind == "caption":
        if coco:
            rows = [{"image_id": item.meta["image_id"], "caption": t} for item, t in zip(items, texts, strict=True)]
        else:
            rows = [
                {"question_id": item.id, "image": str(item.images[0]) if item.images else "", "caption": t, "text": t}
                for item, t in zip(items, texts, strict=True)
            ]
        write_jsonl(path, rows)
    elif spec.kind == "safety":
        write_jsonl(
            path,
            (
                {
                    "id": item.id,
                    "question": item.question,
                    "response": text,
                    "kind": item.meta["kind"],
                    "category": item.meta.get("category", ""),
                }
                for item, text in zip(items, texts, strict=True)
            ),
        )
    else:
        write_jsonl(
            path,
            (
                {"question_id": item.id, "prompt": item.question, "text": text, "model_id": spec.name}
                for item, text in zip(items, texts, strict=True)
            ),
        )


def question_row(item: EvalItem | PreferenceRecord) -> dict[str, Any]:
    """What ``questions/<task>.jsonl`` holds: the evaluation item, or a preference pair's texts and category."""
    if isinstance(item, PreferenceRecord):
        return {
            "id": item.id,
            "chosen": item.chosen_text,
            "rejected": item.rejected_text,
            "category": item.meta.get("category", item.source),
        }
    return item.to_dict()
