"""``results.json``: what ``mmalign eval run`` measured, in a stable, documented layout.

Keys always come in this order (and the file is byte-identical for the same model, data, settings and
seed on the same machine, except under ``timings``)::

    schema            "mmalign.eval.results/1"
    mmalign_version   the package version
    model             {path, fingerprint (SHA-256 of the model directory's files), family, parameters}, or null
                      (no --model: only the reward-model benchmarks ran)
    reference         the same for --reference (reward task), or null
    reward_model      the same for --reward-model (the reward-model benchmarks), or null
    settings          {tasks, suite, data, split, limit, batch_size, mode ("auto" | "fast" | "generate"),
                       agreement_sample, max_new_tokens, max_length, seed, n_resamples, beta,
                       judge ({base_url, model} or null), judge_max_failed, opponents}
    tasks             task name → {
                         dimension, status ("done" | "skipped" | "failed"), reason (skipped and failed),
                         description, judge (judged tasks, below), source (where the items came from),
                         n_items, mode,
                         files {questions, predictions, ...} (relative to the run directory),
                         score_command (the `mmalign eval score` line that reproduces the metrics),
                         metrics (the metric core's report), intervals (headline metric →
                         {estimate, low, high, confidence, n, n_resamples}; percentile bootstrap),
                         fast_path (below), summary (see below)}
    dimensions        dimension → {score, tasks}: the mean of its tasks' summaries
    timings           {total_s, tasks: task → {seconds, items_computed, items_cached, items_per_s}}

A judged task (dialogue, preference) has a *judge* entry: {n (judgments; a battle counts once for its two
orders), n_failed (request failed after its retries, or reply unreadable), failed_fraction,
max_failed_fraction (--judge-max-failed), first_failure}. When more than max_failed_fraction of them failed,
or all did, the task's status is "failed" with the reason, and it has no metrics, intervals or summary: a
score made of the few judgments left is not reported. ``mmalign eval run`` then still writes results.json
and report.md (every other task keeps its score) and exits with code 2, naming the failed tasks.

A task's *fast_path* says how its answers were made and on what agreement that relies: {applies (a closed
task), used, reason, min_agreement (0.99), measured (the agreement measured on the shipped model that decides
the default: {agreement, agree, n, measured_by}, or null)}, and where the fast path was used, this run's own
check on a seeded sample: {n, agree, agreement, disagreements (ids, at most 20), warning (agreement below
min_agreement, or null), generated (items whose greedy answer does not start with an option, so generated),
forwards_per_item, near_ties}.

A task's *summary* is one number in [0, 1] (dialogue may pass 1), higher is better: POPE, multiple-choice
and reward accuracy; CHAIR's object F1 (precision 1 − CHAIR-i and recall; naming nothing scores 0);
consistency's question-pair accuracy (qAcc); MME's total over its maximum (200 a subtask); safety's refusal
rate on harmful prompts, averaged over harmful kinds (1 − attack success rate); dialogue's relative score / 100;
preference, the model's win rate against the reference answers; the reward-model benchmarks (VL-RewardBench,
Multimodal RewardBench, MM-RLHF-RewardBench), their overall accuracy; the video tasks: temporal POPE's
accuracy, the VideoHallucer-style task's pair accuracy, the video captions' object F1 (as CHAIR's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmalign.eval.metrics.safety import HARMFUL_KINDS
from mmalign.eval.tasks.specs import DIMENSIONS, TASKS
from mmalign.files import atomic_path

SCHEMA = "mmalign.eval.results/1"
REWARD_BENCHMARKS = ("vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench")
COMPARED = ("schema", "mmalign_version", "model", "reference", "reward_model", "settings", "tasks", "dimensions")
"""The keys that must be identical between two runs of the same evaluation (everything but timings)."""


def summary(task: str, metrics: dict[str, Any], model_name: str | None = None) -> float | None:
    """The task's number in the dimension summary (see the module docstring); None if it has none."""
    if task.startswith("pope_") or task in ("mc", "reward", "video_pope", "video_hallucer", *REWARD_BENCHMARKS):
        return float(metrics["accuracy"])
    if task in ("chair", "video_chair"):  # object F1: precision 1 − CHAIR-i, recall; naming nothing scores 0, not 1
        precision, recall = 1.0 - float(metrics["chair_i"]), float(metrics["recall"])
        return 2 * precision * recall / (precision + recall) if metrics["n_mentions"] and precision + recall else 0.0
    if task == "consistency":
        return float(metrics["question_pair_accuracy"])
    if task == "mme":
        n = len(metrics["subtasks"])
        return float(metrics["total"]) / (200 * n) if n else None
    if task == "safety":
        rates = [metrics[k]["refusal_rate"] for k in HARMFUL_KINDS if k in metrics]
        return sum(rates) / len(rates) if rates else None
    if task == "dialogue":
        return float(metrics["relative_score"]) / 100
    if task == "preference":
        rows = [r for r in metrics["leaderboard"] if r["model"] == model_name]
        return float(rows[0]["win_rate"]) if rows and "win_rate" in rows[0] else None
    return None


def dimension_scores(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Dimension → mean summary of its finished tasks (dimensions without one are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for dimension in DIMENSIONS:
        values = {
            name: entry["summary"]
            for name, entry in tasks.items()
            if TASKS[name].dimension == dimension and entry.get("summary") is not None
        }
        if values:
            out[dimension] = {"score": sum(values.values()) / len(values), "tasks": values}
    return out


def write_results(path: Path, results: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_results(run_dir: Path) -> dict[str, Any]:
    """A run's ``results.json``, checked for this schema."""
    from mmalign.errors import DataError

    path = run_dir / "results.json"
    if not path.is_file():
        raise DataError("not an evaluation run: results.json is missing (run `mmalign eval run`)", file=path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg})", file=path, line=err.lineno) from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise DataError(f"unknown results schema (expected {SCHEMA!r})", file=path, field="schema")
    return results


def compared_part(results: dict[str, Any]) -> dict[str, Any]:
    """Everything that must not change when the same evaluation is run again (timings left out)."""
    return {k: results[k] for k in COMPARED if k in results}
