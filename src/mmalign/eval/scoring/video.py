"""Video captions from files: ``mmalign eval score --task video_chair``.

A video caption item (what the shapes world's ``video_chair`` task writes) holds the objects present at some
time in the clip (``objects``: the union of its ``per_frame`` lists) and its ground-truth events
(``meta.events``). Each caption is scored with CHAIR over that union (an object named that is never present in
the clip is hallucinated; :mod:`mmalign.eval.metrics.chair`, the shapes vocabulary) and with event precision
and recall (:mod:`mmalign.eval.metrics.video_events`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmalign.errors import ConfigError, DataError
from mmalign.eval.metrics.chair import chair_row, summarize_chair
from mmalign.eval.metrics.official import match_answers, read_answers
from mmalign.eval.metrics.video_events import event_metrics, event_row
from mmalign.eval.scoring.task_score import TaskScore, ratio
from mmalign.eval.tasks.items import read_eval_items
from mmalign.objects.vocabulary import shapes_vocabulary


def _headline() -> dict[str, Any]:
    def precision(c: Any) -> float:
        return ratio(int(c["events_matched"].sum()), int(c["events_stated"].sum()))

    def recall(c: Any) -> float:
        return ratio(int(c["events_matched"].sum()), int(c["events_true"].sum()))

    return {
        "chair_s": lambda c: ratio(int((c["hallucinated_mentions"] > 0).sum()), len(c["mentions"])),
        "chair_i": lambda c: ratio(int(c["hallucinated_mentions"].sum()), int(c["mentions"].sum())),
        "recall": lambda c: ratio(int(c["recalled"].sum()), int(c["gt_objects"].sum())),
        "event_precision": precision,
        "event_recall": recall,
    }


def score_video_chair(questions: str | Path | None, answers: str | Path) -> TaskScore:
    """CHAIR over each clip's objects and event precision / recall of its caption (items with ``meta.events``)."""
    if questions is None:
        raise ConfigError("--task video_chair needs --questions (video caption items with objects and meta.events)")
    items = read_eval_items(questions)
    vocab = shapes_vocabulary()
    texts = match_answers([i.id for i in items], read_answers(answers), answers)
    rows = []
    for item, text in zip(items, texts, strict=True):
        events = item.meta.get("events")
        if not isinstance(events, list) or not all(
            isinstance(e, dict) and {"type", "object"} <= set(e) for e in events
        ):
            raise DataError(
                "needs meta.events, a list of {type, object, ...}",
                file=questions,
                record_id=item.id,
                field="meta.events",
            )
        unknown = [o for o in item.objects if o not in vocab.synonyms]
        if unknown:
            raise DataError(
                f"objects outside the shapes vocabulary: {unknown}", file=questions, record_id=item.id, field="objects"
            )
        rows.append({"id": item.id, **chair_row(text, item.objects, vocab), **event_row(text, events, vocab)})
    chair = summarize_chair(rows)
    metrics = {"vocabulary": vocab.name, **chair.metrics(), **event_metrics(rows)}
    cols = (
        "mentions",
        "hallucinated_mentions",
        "recalled",
        "gt_objects",
        "events_stated",
        "events_true",
        "events_matched",
    )
    columns = {c: np.array([r[c] for r in rows]) for c in cols}
    return TaskScore("video_chair", metrics, [r["id"] for r in rows], columns, _headline(), rows)


def video_summary(metrics: dict[str, Any]) -> list[str]:
    """The event counts behind the headline event precision and recall."""
    return [
        f"  {'events':<28} stated {metrics['events_stated']}, true {metrics['events_true']}, matched "
        f"{metrics['events_matched']} (F1 {metrics['event_f1']:.4f}); captions with an invented event "
        f"{metrics['captions_with_invented_events']} of {metrics['n_captions']}",
    ]
