"""A finished task of ``mmalign eval run`` scored from its files, with the metric core's own code.

:func:`rescore` scores the files a run wrote (:mod:`.answers`: ``predictions/<task>.jsonl`` and the questions
or annotations) exactly as ``mmalign eval score`` does (:func:`score_command` is that command line), so the
command gives the same numbers line by line and ``mmalign eval compare`` can re-pair two runs item by item.
Dialogue is scored from the judge's ratings (:func:`dialogue_score`).

CHAIR on the shapes world adds the demo's headline hallucination measure: how often a caption names an
*absent co-occurring partner* of a present object, against how often it names any other absent object.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.eval.metrics.official import match_answers, read_answers, read_jsonl
from mmalign.eval.scoring import rewardbench
from mmalign.eval.scoring.task_score import TaskScore, ratio
from mmalign.eval.scoring.video import score_video_chair
from mmalign.eval.scoring.videohallucer import score_videohallucer
from mmalign.eval.tasks.specs import TaskSpec
from mmalign.objects.mentions import objects_in
from mmalign.objects.vocabulary import shapes_vocabulary


def score_command(spec: TaskSpec, files: dict[str, str], out: Path) -> str | None:
    """The ``mmalign eval score`` command line that reproduces a task's metrics from its files."""
    path = {k: str(out / v) for k, v in files.items()}
    if spec.scorer == "dialogue":
        return None
    if spec.scorer == "preference":
        return f"mmalign eval score --task preference --answers {path['battles']} --anchor reference"
    ground = f"--annotations {files['annotations']}" if "annotations" in files else f"--questions {path['questions']}"
    if spec.scorer in ("safety", "reward") or spec.kind == "rm_bench":
        ground = ""
    return " ".join(f"mmalign eval score --task {spec.scorer} {ground} --answers {path['predictions']}".split())


def rescore(task: str, files: dict[str, str], run_dir: Path, *, n_rounds: int = 1000, seed: int = 0) -> TaskScore:
    """Score a finished task from its files (paths relative to ``run_dir``), as ``mmalign eval score`` does."""
    from mmalign.eval.scoring import alignment as al
    from mmalign.eval.scoring import general as gen
    from mmalign.eval.scoring import hallucination as hal

    path = {k: run_dir / v for k, v in files.items()}
    questions, answers = path.get("questions"), path["predictions"]
    if task.startswith("pope_") or task == "video_pope":
        return hal.score_pope(questions, answers)
    if task == "video_hallucer":
        return score_videohallucer(questions, answers)
    if task == "video_chair":
        return score_video_chair(questions, answers)
    if task == "chair":
        if "annotations" in files:
            return hal.score_chair(None, answers, annotations=Path(files["annotations"]))
        return with_absent_partners(hal.score_chair(questions, answers), questions, answers)  # type: ignore[arg-type]
    if task == "consistency":
        return hal.score_consistency(questions, answers)
    if task == "mme":
        return gen.score_mme(questions, answers)
    if task == "mc":
        return gen.score_mc(questions, answers)
    if task == "safety":
        return al.score_safety(None, answers)
    if task == "reward":
        return al.score_reward(answers)
    if task == "preference":
        return al.score_preference(path["battles"], anchor="reference", n_rounds=n_rounds, seed=seed)
    if task in rewardbench.SCORERS:  # every sample counts (no --k), as `mmalign eval score` without --k
        return rewardbench.load(task, answers, None)
    return dialogue_score(path["judgments"])


def with_absent_partners(result: TaskScore, questions: Path, answers: Path) -> TaskScore:
    """Add the absent-partner measures to a shapes-world CHAIR score (needs ``meta.absent_partners`` and
    ``meta.absent_objects``, which the shapes world's caption items carry)."""
    from mmalign.eval.tasks.items import read_eval_items

    items = read_eval_items(questions)
    if not all("absent_partners" in i.meta and "absent_objects" in i.meta for i in items):
        return result
    texts = match_answers([i.id for i in items], read_answers(answers), answers)
    vocab = shapes_vocabulary()
    cols: dict[str, list[int]] = defaultdict(list)
    for item, text in zip(items, texts, strict=True):
        named = objects_in(text, vocab)
        partners = set(item.meta["absent_partners"])
        others = set(item.meta["absent_objects"]) - partners
        cols["partner_named"].append(len(named & partners))
        cols["partner_absent"].append(len(partners))
        cols["other_named"].append(len(named & others))
        cols["other_absent"].append(len(others))
    for key, values in cols.items():
        result.columns[key] = np.array(values)
    headline = {
        "absent_partner_mention_rate": lambda c: ratio(int(c["partner_named"].sum()), int(c["partner_absent"].sum())),
        "other_absent_mention_rate": lambda c: ratio(int(c["other_named"].sum()), int(c["other_absent"].sum())),
        "absent_partner_caption_rate": lambda c: ratio(
            int(((c["partner_named"] > 0) & (c["partner_absent"] > 0)).sum()), int((c["partner_absent"] > 0).sum())
        ),
        "other_absent_caption_rate": lambda c: ratio(int((c["other_named"] > 0).sum()), len(c["other_named"])),
    }
    result.headline.update(headline)
    result.metrics["absent_partner"] = {
        **{name: metric(result.columns) for name, metric in headline.items()},
        "captions": len(items),
        "captions_with_absent_partner": int((result.columns["partner_absent"] > 0).sum()),
        "absent_partners": int(result.columns["partner_absent"].sum()),
        "absent_partners_named": int(result.columns["partner_named"].sum()),
        "other_absent": int(result.columns["other_absent"].sum()),
        "other_absent_named": int(result.columns["other_named"].sum()),
    }
    return result


def dialogue_score(judgments: Path) -> TaskScore:
    """LLaVA-Bench's relative score (100 × mean answer score / mean reference score) from the judge's ratings,
    over the items the judge scored (``n_scored`` of ``n``: ``n_failed`` requests failed, ``n_unreadable``
    replies could not be read). No item scored is an error, never a score of 0."""
    from mmalign.errors import DataError
    from mmalign.judge import ScoreJudgment, relative_score

    rows = [obj for _, obj in read_jsonl(judgments)]
    judged = [ScoreJudgment(r["id"], r["score"], r["reference_score"]) for r in rows]
    both = [r for r in rows if r["score"] is not None and r["reference_score"] is not None]
    relative = relative_score(judged)
    if relative is None:
        raise DataError(f"no judgment has both scores ({len(rows)} rows): nothing to score", file=judgments)
    failed = sum(1 for r in rows if r.get("error"))
    metrics: dict[str, Any] = {
        "relative_score": relative,
        "mean_score": float(np.mean([r["score"] for r in both])),
        "mean_reference_score": float(np.mean([r["reference_score"] for r in both])),
        "n": len(rows),
        "n_scored": len(both),
        "n_failed": failed,
        "n_unreadable": len(rows) - len(both) - failed,
    }
    categories = sorted({r.get("category", "") for r in rows} - {""})
    if categories:
        metrics["categories"] = {
            c: relative_score([j for j, r in zip(judged, rows, strict=True) if r.get("category") == c])
            for c in categories
        }
    columns = {
        "score": np.array([r["score"] for r in both], dtype=float),
        "reference": np.array([r["reference_score"] for r in both], dtype=float),
    }
    headline = {"relative_score": lambda c: 100 * ratio(float(c["score"].sum()), float(c["reference"].sum()))}
    return TaskScore("dialogue", metrics, [r["id"] for r in both], columns, headline, rows)
