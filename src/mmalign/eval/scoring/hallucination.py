"""Scoring hallucination tasks from files: POPE, CHAIR and paired-question consistency.

Questions come in a benchmark's official format or as mmalign evaluation items (``EvalItem`` JSON lines,
what the shapes world writes); answers are JSON lines with an id and the model's text (see
:mod:`mmalign.eval.metrics.official`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.data.coco import read_coco_annotations
from mmalign.data.io import read_json
from mmalign.errors import DataError
from mmalign.eval.metrics.chair import chair_row, coco_ground_truth, summarize_chair
from mmalign.eval.metrics.coco import read_generated_captions
from mmalign.eval.metrics.consistency import PairedItem, consistency_metrics
from mmalign.eval.metrics.official import (
    Answer,
    match_answers,
    order_mismatch,
    read_answers,
    read_jsonl,
    read_pope_questions,
)
from mmalign.eval.metrics.pope import PopeResult, official_script_stops, parse_yes_no, pope_metrics
from mmalign.eval.scoring.task_score import TaskScore, binary_headline, ratio
from mmalign.eval.tasks.items import read_eval_items
from mmalign.objects.vocabulary import coco_vocabulary, shapes_vocabulary


def _first_record(path: str | Path) -> dict[str, Any]:
    rows = read_jsonl(path)
    if not rows:
        raise DataError("empty file", file=path)
    return rows[0][1]


def _require(path: str | Path | None, what: str, task: str) -> Path:
    if path is None:
        from mmalign.errors import ConfigError

        raise ConfigError(f"--task {task} needs {what}")
    return Path(path)


# ------------------------------------------------------------------------------------------------- POPE


def score_pope(questions: str | Path | None, answers: str | Path, strict: bool = False) -> TaskScore:
    """POPE from its official question file (or ``pope_*`` eval items) and an answer file."""
    qpath = _require(questions, "--questions (POPE question file)", "pope")
    if "label" in _first_record(qpath):
        pope = read_pope_questions(qpath)
        ids, labels, splits = [q.question_id for q in pope], [q.label for q in pope], [q.split for q in pope]
    else:
        items = read_eval_items(qpath)
        for item in items:
            if item.answer.strip().lower() not in ("yes", "no"):
                raise DataError("a POPE item's answer must be yes or no", file=qpath, record_id=item.id, field="answer")
        ids, labels = [i.id for i in items], [i.answer.strip().lower() for i in items]
        splits = [i.task.removeprefix("pope_") if i.task.startswith("pope_") else None for i in items]
    rows = read_answers(answers)
    texts = match_answers(ids, rows, answers)
    overall = pope_metrics(texts, labels, strict=strict, ids=ids)
    metrics: dict[str, Any] = overall.metrics()
    split_names = sorted({s for s in splits if s is not None})
    parts: dict[str, PopeResult] = {}
    if len(split_names) > 1 or (split_names and None in splits):
        metrics["splits"] = {}
        for split in split_names:
            keep = [k for k, s in enumerate(splits) if s == split]
            parts[split] = pope_metrics(
                [texts[k] for k in keep], [labels[k] for k in keep], strict, [ids[k] for k in keep]
            )
            metrics["splits"][split] = parts[split].metrics()
    elif split_names:
        metrics["split"] = split_names[0]
    warnings = _pope_warnings(ids, labels, rows, answers, parts or {"all": overall}, metrics)
    if warnings:
        metrics["warnings"] = warnings
    preds = [parse_yes_no(t, strict) for t in texts]
    columns = {
        "pred": np.array([-1 if p is None else int(p == "yes") for p in preds]),
        "label": np.array([int(label == "yes") for label in labels]),
    }
    details = [
        {"id": i, "answer": t, "parsed": p, "label": lab}
        for i, t, p, lab in zip(ids, texts, preds, labels, strict=True)
    ]
    return TaskScore("pope", metrics, ids, columns, binary_headline(), details)


def _pope_warnings(
    ids: list[str],
    labels: list[str],
    rows: list[Answer],
    path: str | Path,
    parts: dict[str, PopeResult],
    metrics: dict[str, Any],
) -> list[str]:
    """Where the official evaluate.py would give other figures or none (see :mod:`mmalign.eval.metrics.pope`); adds
    ``metrics["line_order"]`` (the official script's line-by-line pairing) when the orders differ."""
    warnings = []
    order = order_mismatch(ids, rows, path)
    if order is not None:
        warnings.append(order)
        metrics["line_order"] = pope_metrics([a.text for a in rows], labels).result.metrics()
    differ = [a.line for a in rows if a.other_text is not None]
    if differ:
        warnings.append(
            f"{path}: {len(differ)} line(s) hold different 'text' and 'answer' strings (first: line {differ[0]}); "
            "mmalign and LLaVA's eval_pope.py read 'text', POPE's evaluate.py reads 'answer'"
        )
    for name, part in parts.items():
        official = part.other if part.parser == "strict" else part.result
        reason = official_script_stops(official)
        if reason is not None:
            where = "" if name == "all" else f" on split {name}"
            warnings.append(
                f"the official evaluate.py would stop with ZeroDivisionError{where}: {reason}; "
                "those rates are reported as 0.0 here"
            )
    return warnings


# ------------------------------------------------------------------------------------------------ CHAIR


def _chair_headline() -> dict[str, Any]:
    return {
        "chair_s": lambda c: ratio(int((c["hallucinated_mentions"] > 0).sum()), len(c["mentions"])),
        "chair_i": lambda c: ratio(int(c["hallucinated_mentions"].sum()), int(c["mentions"].sum())),
        "recall": lambda c: ratio(int(c["recalled"].sum()), int(c["gt_objects"].sum())),
    }


def score_chair(
    questions: str | Path | None,
    answers: str | Path,
    annotations: str | Path | None = None,
    caption_key: str | None = None,
) -> TaskScore:
    """CHAIR with COCO ground truth (``annotations`` directory) or from eval items' ``objects`` (shapes world)."""
    rows: list[dict[str, Any]] = []
    if annotations is not None:
        vocab = coco_vocabulary()
        captions = read_generated_captions(answers, caption_key=caption_key)
        coco = read_coco_annotations(annotations)
        for cap in captions:
            if cap.image_id not in coco.image_ids:
                raise DataError(
                    f"image {cap.image_id} is in none of the annotation files in {annotations}",
                    file=cap.file,
                    line=cap.line,
                    index=cap.index,
                    field="image_id",
                )
        truth = coco_ground_truth({c.image_id for c in captions}, coco.instances, coco.captions, vocab)
        unique = len({c.image_id for c in captions}) == len(captions)
        for k, cap in enumerate(captions):
            rid = str(cap.image_id) if unique else f"{k}:{cap.image_id}"  # ids pair runs; repeats keep order
            rows.append({"id": rid, "image_id": cap.image_id, **chair_row(cap.caption, truth[cap.image_id], vocab)})
    else:
        qpath = _require(questions, "--annotations DIR (COCO) or --questions (items with objects)", "chair")
        items = read_eval_items(qpath)
        shapes = shapes_vocabulary()
        known = set(shapes.synonyms)
        vocab = shapes if all(o in known for i in items for o in i.objects) else coco_vocabulary()
        texts = match_answers([i.id for i in items], read_answers(answers), answers)
        for item, text in zip(items, texts, strict=True):
            rows.append({"id": item.id, **chair_row(text, [vocab.synonyms.get(o, o) for o in item.objects], vocab)})
    result = summarize_chair(rows)
    metrics = {"vocabulary": vocab.name, **result.metrics()}
    cols = ("mentions", "hallucinated_mentions", "recalled", "gt_objects")
    columns = {c: np.array([r[c] for r in rows]) for c in cols}
    return TaskScore("chair", metrics, [r["id"] for r in rows], columns, _chair_headline(), result.per_caption)


# ------------------------------------------------------------------------------------------ consistency


def _yes_no_truth(value: Any, where: dict[str, Any], key: str) -> str:
    text = str(value).strip().lower()
    mapped = {"1": "yes", "0": "no", "yes": "yes", "no": "no"}.get(text)
    if mapped is None:
        raise DataError(f"must be yes/no (or HallusionBench's 1/0), got {value!r}", field=key, **where)
    return mapped


def score_consistency(questions: str | Path | None, answers: str | Path, strict: bool = False) -> TaskScore:
    """aAcc / qAcc / fAcc from a HallusionBench result file, or from eval items with ``meta.pair_id``."""
    items: list[PairedItem] = []
    details = []
    apath = Path(answers)
    if questions is None:  # HallusionBench's own result list: gt_answer + model_prediction per record
        data = read_json(apath)
        if not isinstance(data, list):
            raise DataError("expected HallusionBench's JSON list of records", file=apath)
        for k, rec in enumerate(data):
            where = {"file": apath, "index": k}
            if not isinstance(rec, dict):
                raise DataError("expected an object", **where)
            for key in (
                "category",
                "subcategory",
                "set_id",
                "figure_id",
                "question_id",
                "gt_answer",
                "model_prediction",
            ):
                if key not in rec:
                    raise DataError("missing", field=key, **where)
            truth = _yes_no_truth(rec["gt_answer"], where, "gt_answer")
            pred = parse_yes_no(str(rec["model_prediction"]), strict)
            base = f"{rec['category']}/{rec['subcategory']}/{rec['set_id']}"
            rid = f"{base}/{rec['figure_id']}/{rec['question_id']}"
            items.append(PairedItem(rid, f"{base}/q{rec['question_id']}", pred == truth, f"{base}/f{rec['figure_id']}"))
            details.append({"id": rid, "parsed": pred, "label": truth})
    else:
        evals = read_eval_items(questions)
        texts = match_answers([i.id for i in evals], read_answers(answers), answers)
        for item, text in zip(evals, texts, strict=True):
            where = {"file": questions, "record_id": item.id}
            group = item.meta.get("pair_id", item.meta.get("question_group"))
            if group is None:
                raise DataError("needs meta.pair_id (the question shared with its edited twin)", field="meta", **where)
            truth = _yes_no_truth(item.answer, where, "answer")
            pred = parse_yes_no(text, strict)
            figure = item.meta.get("figure_id")
            items.append(PairedItem(item.id, str(group), pred == truth, None if figure is None else str(figure)))
            details.append({"id": item.id, "answer": text, "parsed": pred, "label": truth})
    result = consistency_metrics(items)
    groups: dict[str, list[bool]] = defaultdict(list)
    for it in items:
        groups[it.question_group].append(it.correct)
    gids = sorted(groups)
    columns = {"n": np.array([len(groups[g]) for g in gids]), "correct": np.array([sum(groups[g]) for g in gids])}
    headline = {
        "all_accuracy": lambda c: ratio(int(c["correct"].sum()), int(c["n"].sum())),
        "question_pair_accuracy": lambda c: ratio(int((c["correct"] == c["n"]).sum()), len(c["n"])),
    }
    metrics = {"parser": "strict" if strict else "official", **result.metrics()}
    return TaskScore("consistency", metrics, gids, columns, headline, details)
