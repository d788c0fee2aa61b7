"""VideoHallucer from files: ``mmalign eval score --task videohallucer``.

Reads either the official prediction files (``evaluation_utils.py`` writes one JSON list per sub-task,
``<qa_type>_<model>.json``, each pair ``{"basic": {"video", "question", "answer", "predict"}, "hallucination":
{...}, "type": ...}``; ``--answers`` is one such file or a folder of them) or, with ``--questions``, mmalign
evaluation items carrying ``meta.pair_id``, ``meta.role`` (``basic`` / ``hallucination``) and ``meta.subtask``
(what the shapes world's ``video_hallucer`` task writes) with their answer lines. The metrics are
:mod:`mmalign.eval.metrics.videohallucer`'s, equal to the official code's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.data.io import read_json
from mmalign.errors import DataError
from mmalign.eval.metrics.official import match_answers, read_answers
from mmalign.eval.metrics.videohallucer import SUBTASKS, Pair, bias_stats, overall, subtask_scores
from mmalign.eval.scoring.task_score import TaskScore
from mmalign.eval.tasks.items import read_eval_items

SUMMARY_SUFFIX = "_evaluation_results.json"
"""The name ending of ``evaluation.py``'s own summary file, skipped in a folder of prediction files."""


def subtask_of(path: Path) -> str:
    """The sub-task a prediction file holds, from its name ``<qa_type>_<model>.json`` (else the file's stem)."""
    stem = path.stem
    known = [t for t in SUBTASKS if stem == t or stem.startswith(t + "_")]
    return max(known, key=len) if known else stem


def _side(row: dict[str, Any], key: str, where: dict[str, Any]) -> tuple[str, str]:
    side = row.get(key)
    if not isinstance(side, dict):
        raise DataError("missing or not an object", field=key, **where)
    for field in ("answer", "predict"):
        if not isinstance(side.get(field), str):
            raise DataError("missing or not a string", field=f"{key}.{field}", **where)
    return side["answer"], side["predict"]


def read_prediction_file(path: Path) -> list[Pair]:
    """One official prediction file's pairs (ids ``<sub-task>/<index>``)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError("expected VideoHallucer's JSON list of question pairs", file=path)
    if not data:
        raise DataError("no question pairs (the official code would divide by zero)", file=path)
    subtask = subtask_of(path)
    pairs = []
    for k, row in enumerate(data):
        where = {"file": path, "index": k}
        if not isinstance(row, dict):
            raise DataError("expected an object", **where)
        basic, halluc = _side(row, "basic", where), _side(row, "hallucination", where)
        pairs.append(Pair(f"{subtask}/{k}", subtask, basic[0], basic[1], halluc[0], halluc[1]))
    return pairs


def read_predictions(path: Path) -> list[Pair]:
    """A prediction file, or every ``*.json`` prediction file of a folder (by name; the summary skipped)."""
    if not path.is_dir():
        return read_prediction_file(path)
    files = sorted(p for p in path.glob("*.json") if not p.name.endswith(SUMMARY_SUFFIX))
    if not files:
        raise DataError("no VideoHallucer prediction files (*.json) in this folder", file=path)
    subtasks = [subtask_of(p) for p in files]
    repeated = sorted({s for s in subtasks if subtasks.count(s) > 1})
    if repeated:
        raise DataError(f"several prediction files for sub-task(s) {repeated}: score one model at a time", file=path)
    return [pair for p in files for pair in read_prediction_file(p)]


def pairs_from_items(questions: Path, answers: Path) -> list[Pair]:
    """Pairs from mmalign items (``meta.pair_id``, ``meta.role``, ``meta.subtask``) and their answer lines."""
    items = read_eval_items(questions)
    texts = match_answers([i.id for i in items], read_answers(answers), answers)
    sides: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    subtask: dict[str, str] = {}
    for item, text in zip(items, texts, strict=True):
        where = {"file": questions, "record_id": item.id, "field": "meta"}
        pair_id, role = item.meta.get("pair_id"), item.meta.get("role")
        if pair_id is None or role not in ("basic", "hallucination"):
            raise DataError("needs meta.pair_id and meta.role (basic or hallucination)", **where)
        if role in sides[str(pair_id)]:
            raise DataError(f"pair {pair_id!r} has two {role} questions", **where)
        sides[str(pair_id)][role] = (item.answer, text)
        subtask[str(pair_id)] = str(item.meta.get("subtask", item.task))
    pairs = []
    for pid, got in sides.items():
        if len(got) != 2:
            raise DataError(
                f"pair {pid!r} has no {'hallucination' if 'basic' in got else 'basic'} question", file=questions
            )
        pairs.append(Pair(pid, subtask[pid], *got["basic"], *got["hallucination"]))
    return pairs


def _headline() -> dict[str, Any]:
    def mean_over_subtasks(column: str):
        def metric(c: Mapping[str, np.ndarray]) -> float:
            groups = np.unique(c["subtask"])
            return float(np.mean([c[column][c["subtask"] == g].mean() for g in groups])) if len(groups) else 0.0

        return metric

    return {
        "basic_accuracy": mean_over_subtasks("basic"),
        "halluc_accuracy": mean_over_subtasks("halluc"),
        "accuracy": mean_over_subtasks("both"),
    }


def score_pairs(pairs: list[Pair], strict: bool = False) -> TaskScore:
    """The official numbers of ``pairs`` (per sub-task, ``all``, bias statistics) as a :class:`TaskScore`."""
    by_subtask: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_subtask[pair.subtask].append(pair)
    per = {name: subtask_scores(group, strict) for name, group in by_subtask.items()}
    for name, group in by_subtask.items():
        bias = bias_stats(group, strict)
        if bias is not None:
            per[name]["bias"] = bias
    metrics: dict[str, Any] = {
        **overall(per),
        "parser": "strict (re.match)" if strict else "official (re.search)",
        "pairs": len(pairs),
        "subtasks": per,
    }
    pooled = bias_stats(pairs, strict)
    if pooled is not None:
        metrics["bias"] = pooled
    names = sorted(by_subtask)
    hits = [p.hits(strict) for p in pairs]
    columns = {
        "subtask": np.array([names.index(p.subtask) for p in pairs]),
        "basic": np.array([int(b) for b, _ in hits]),
        "halluc": np.array([int(h) for _, h in hits]),
        "both": np.array([int(b and h) for b, h in hits]),
    }
    details = [
        {
            "id": p.id,
            "subtask": p.subtask,
            "basic_right": b,
            "halluc_right": h,
            "basic": p.basic_predict,
            "hallucination": p.halluc_predict,
        }
        for p, (b, h) in zip(pairs, hits, strict=True)
    ]
    return TaskScore("videohallucer", metrics, [p.id for p in pairs], columns, _headline(), details)


def score_videohallucer(questions: str | Path | None, answers: str | Path, strict: bool = False) -> TaskScore:
    """Official prediction file(s) at ``answers``, or mmalign items (``questions``) with their answer lines."""
    apath = Path(answers)
    pairs = read_predictions(apath) if questions is None else pairs_from_items(Path(questions), apath)
    return score_pairs(pairs, strict)


def summary(metrics: dict[str, Any]) -> list[str]:
    """Lines printed after the headline intervals: each sub-task, the fact score, the bias statistics."""
    lines = []
    for name, row in metrics["subtasks"].items():
        lines.append(
            f"  {name:<28} basic {row['basic_accuracy']:.4f}  hallucinated {row['halluc_accuracy']:.4f}  "
            f"overall {row['accuracy']:.4f}  ({row['both_right']}/{row['pairs']} pairs)"
        )
    if "fact_score" in metrics:
        lines.append(f"  {'fact score':<28} {metrics['fact_score']:.4f}  ((basic + hallucinated) / 2)")
    if "bias" in metrics:
        b = metrics["bias"]
        score = "none" if b["hallucination_score"] is None else f"{b['hallucination_score']:.4f}"
        lines.append(
            f"  {'bias (evaluation_bias.py)':<28} yes difference {b['yes_difference']:+.4f}, no difference "
            f"{b['no_difference']:+.4f}, false-positive ratio {b['false_positive_ratio']:.4f}, "
            f"hallucination score {score}"
        )
    lines.append(f"  {'parser':<28} {metrics['parser']}")
    return lines
