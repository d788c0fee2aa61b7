"""Scoring general-knowledge tasks from files: MME yes/no pairs, and multiple choice (MMMU style, with MMMU's open
questions when its output files hold them)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.errors import DataError
from mmalign.eval.metrics.mme import COGNITION, PERCEPTION, mme_parse, mme_subtask, mme_totals
from mmalign.eval.metrics.multiple_choice import LETTERS, mc_metrics
from mmalign.eval.metrics.official import MMMURecord, match_answers, read_answers, read_mme, read_mmmu_outputs
from mmalign.eval.metrics.open_answer import open_candidates, open_correct
from mmalign.eval.scoring.task_score import TaskScore, ratio
from mmalign.eval.tasks.items import read_eval_items

# -------------------------------------------------------------------------------------------------- MME


def score_mme(questions: str | Path | None, answers: str | Path) -> TaskScore:
    """MME from the eval tool's ``<subtask>.txt`` files (``answers``: a directory or one file), or from
    eval items with ``meta.group`` (the image: its two questions) and optional ``meta.subtask`` plus answers."""
    images: dict[str, list[list[tuple[str, str]]]] = {}
    ids: dict[str, list[str]] = {}
    details: list[dict[str, Any]] = []
    if questions is None:
        for subtask, lines in read_mme(answers).items():
            images[subtask] = [[(q.answer, q.prediction) for q in pair] for pair in lines]
            seen: dict[str, int] = defaultdict(int)
            ids[subtask] = []
            for pair in lines:  # ids pair runs, so they must not depend on line numbers
                seen[pair[0].image] += 1
                n = seen[pair[0].image]
                ids[subtask].append(f"{subtask}/{pair[0].image}" + (f"#{n}" if n > 1 else ""))
            details += [
                {
                    "subtask": subtask,
                    "image": q.image,
                    "question": q.question,
                    "answer": q.answer,
                    "prediction": q.prediction,
                    "parsed": mme_parse(q.prediction),
                }
                for pair in lines
                for q in pair
            ]
    else:
        items = read_eval_items(questions)
        texts = match_answers([i.id for i in items], read_answers(answers), answers)
        groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for item, text in zip(items, texts, strict=True):
            if "group" not in item.meta:
                raise DataError(
                    "an MME item needs meta.group (its image)", file=questions, record_id=item.id, field="meta"
                )
            if item.answer.strip().lower() not in ("yes", "no"):
                raise DataError("an MME answer must be yes or no", file=questions, record_id=item.id, field="answer")
            subtask = str(item.meta.get("subtask", item.task))
            groups[(subtask, str(item.meta["group"]))].append((item.answer, text))
            details.append({"id": item.id, "subtask": subtask, "prediction": text, "parsed": mme_parse(text)})
        for (subtask, group), pair in groups.items():
            images.setdefault(subtask, []).append(pair)
            ids.setdefault(subtask, []).append(f"{subtask}/{group}")
    subtasks = {name: mme_subtask(name, imgs) for name, imgs in sorted(images.items())}
    metrics: dict[str, Any] = {
        **mme_totals(subtasks),
        "total": sum(s.score for s in subtasks.values()),
        "subtasks": {name: s.metrics() for name, s in subtasks.items()},
    }
    names = list(subtasks)
    row_ids, sub_col, n_col, right_col = [], [], [], []
    for k, name in enumerate(names):
        for rid, qs in zip(ids[name], images[name], strict=True):
            row_ids.append(rid)
            sub_col.append(k)
            n_col.append(len(qs))
            right_col.append(sum(mme_parse(pred) == truth.lower() for truth, pred in qs))
    columns = {"subtask": np.array(sub_col), "n": np.array(n_col), "correct": np.array(right_col)}

    def total(keep: tuple[str, ...] | None) -> Any:
        def metric(c: Any) -> float:
            score = 0.0
            for k, name in enumerate(names):
                if keep is not None and name not in keep:
                    continue
                mask = c["subtask"] == k
                if mask.any():
                    n, right = c["n"][mask], c["correct"][mask]
                    score += 100 * ratio(int(right.sum()), int(n.sum())) + 100 * float((right == n).mean())
            return score

        return metric

    headline = {"total": total(None)}
    if any(n in PERCEPTION for n in names):
        headline["perception"] = total(PERCEPTION)
    if any(n in COGNITION for n in names):
        headline["cognition"] = total(COGNITION)
    return TaskScore("mme", metrics, row_ids, columns, headline, details)


# ---------------------------------------------------------------------------------------- multiple choice


def score_mc(
    questions: str | Path | None, answers: str | Path, strict: bool = False, random_seed: int | None = None
) -> TaskScore:
    """Multiple choice from MMMU ``output.json`` files, or from eval items with ``choices`` plus answers.

    ``random_seed``: None scores an answer that names no option wrong (the default); a seed draws a letter for
    it, MMMU's rule (42 is MMMU's seed; see :mod:`mmalign.eval.metrics.multiple_choice`). ``accuracy`` is over
    the multiple-choice questions. MMMU files also hold open questions, scored by MMMU's rule
    (:mod:`mmalign.eval.metrics.open_answer`); there ``all_question_accuracy`` is MMMU's headline ("Overall"),
    over every question.
    """
    open_records: list[MMMURecord] = []
    if questions is None:
        records = read_mmmu_outputs(answers)
        choice_records = [r for r in records if r.is_choice]
        open_records = [r for r in records if not r.is_choice]
        ids = [r.id for r in choice_records]
        responses = [r.response for r in choice_records]
        options: list[Any] = [r.options for r in choice_records]
        truths: list[Any] = [r.answer for r in choice_records]
    else:
        items = read_eval_items(questions)
        for item in items:
            if item.choices is None:
                raise DataError(
                    "a multiple-choice item needs choices", file=questions, record_id=item.id, field="choices"
                )
            if item.answer.strip() not in LETTERS[: len(item.choices)]:
                raise DataError(
                    f"answer must be an option letter A-{LETTERS[len(item.choices) - 1]}, got {item.answer!r}",
                    file=questions,
                    record_id=item.id,
                    field="answer",
                )
        ids = [i.id for i in items]
        responses = match_answers(ids, read_answers(answers), answers)
        options = [list(i.choices or []) for i in items]
        truths = [i.answer.strip() for i in items]
    result = mc_metrics(responses, options, truths, strict=strict, random_seed=random_seed)
    correct = [
        int(p is not None and p in ([t] if isinstance(t, str) else t))
        for p, t in zip(result.predictions, truths, strict=True)
    ]
    details: list[dict[str, Any]] = []
    for i, r, found, p, t in zip(ids, responses, result.parsed, result.predictions, truths, strict=True):
        row = {"id": i, "response": r, "parsed": found, "answer": t}
        if found is None and p is not None:
            row["random_choice"] = p
        details.append(row)
    metrics: dict[str, Any] = {
        "parser": "strict" if strict else "mmmu",
        "unparsed_rule": "wrong" if random_seed is None else "random",
        "random_seed": random_seed,
        **result.metrics(),
    }
    headline = {"accuracy": lambda c: ratio(int(c["correct"][c["choice"]].sum()), int(c["choice"].sum()))}
    if questions is not None:
        columns = {"correct": np.array(correct), "choice": np.ones(len(ids), dtype=bool)}
        return TaskScore("mc", metrics, ids, columns, headline, details)
    open_right = [int(open_correct(r.answer, r.response)) for r in open_records]
    details += [
        {
            "id": r.id,
            "question_type": r.question_type,
            "response": r.response,
            "candidates": open_candidates(r.response),
            "answer": r.answer,
            "correct": bool(ok),
        }
        for r, ok in zip(open_records, open_right, strict=True)
    ]
    n_all = len(ids) + len(open_records)
    metrics["all_questions"] = {
        "n": n_all,
        "n_open": len(open_records),
        "n_open_correct": sum(open_right),
        "n_correct": result.n_correct + sum(open_right),
        "accuracy": ratio(result.n_correct + sum(open_right), n_all),
    }
    headline["all_question_accuracy"] = lambda c: float(c["correct"].mean()) if len(c["correct"]) else 0.0
    columns = {
        "correct": np.array(correct + open_right),
        "choice": np.array([True] * len(ids) + [False] * len(open_records)),
    }
    return TaskScore("mc", metrics, ids + [r.id for r in open_records], columns, headline, details)
