"""The video study's outputs: paired comparisons (``eval compare``), ``results.json`` and ``report.md``.

``results.json`` (keys in this order)::

    schema, mmalign_version, settings, world (its config), pairs (count, clips, kinds), budget {steps, pairs_per_step}
    baseline_config, methods    name → {label, config (paths as OUT/...), last_log}
    models         name → task → metric → {estimate, low, high}                       (bootstrap 95 % intervals)
    items          name → task → items evaluated (every model on the same items)
    comparisons    "dpo_vs_baseline", "dpo_vs_control", "control_vs_baseline"
                   → task → metric → {before, after, delta, low, high, share_above_zero}
    sentences      the same keys → one plain sentence on what the paired intervals show
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mmalign
from mmalign.demo.headline import interval_text, verdict
from mmalign.demo.report import last_log, model_metrics, paired
from mmalign.eval.compare import compare_runs
from mmalign.eval.report import arrow, fmt
from mmalign.eval.results import read_results
from mmalign.files import atomic_path

SCHEMA = "mmalign.demo.video_study/1"
LABELS = {"baseline": "video SFT baseline", "dpo": "DPO", "control": "SFT on chosen (control)"}
COMPARISONS = {
    "dpo_vs_baseline": ("baseline", "dpo", "DPO against the video baseline"),
    "dpo_vs_control": ("control", "dpo", "DPO against the control (SFT on the chosen captions, same budget)"),
    "control_vs_baseline": ("baseline", "control", "The control against the video baseline"),
}
"""key → (before run, after run, what the sentence calls it)."""


def item_counts(results: dict[str, Any]) -> dict[str, int]:
    """task → items scored, from an evaluation run's results.json."""
    return {task: int(entry.get("n_items", entry.get("items", 0))) for task, entry in results["tasks"].items()}


def comparison_sentence(what: str, deltas: dict[str, Any]) -> str:
    """One sentence: where the paired 95 % intervals show the after-run better, worse, or cannot tell."""
    groups: dict[str, list[str]] = {"better": [], "worse": [], "same": []}
    for task, metrics in deltas.items():
        for metric, d in metrics.items():
            kind = verdict(metric, d)
            name = f"{task} {metric}"
            groups[kind].append(name if kind == "same" else f"{name} ({interval_text(metric, d)})")
    parts = []
    if groups["better"]:
        parts.append("better on " + ", ".join(groups["better"]))
    if groups["worse"]:
        parts.append("worse on " + ", ".join(groups["worse"]))
    if groups["same"]:
        other = " other" if parts else ""
        parts.append(f"no change the intervals can show on the {len(groups['same'])}{other} metrics")
    if not parts:
        return f"{what}: no paired comparison."
    return f"{what}: " + "; ".join(parts) + "."


def compare(out: Path, n_resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Paired deltas of each comparison (``compare/<key>/``), task → metric → delta with its interval."""
    found = {}
    for key, (before, after, _) in COMPARISONS.items():
        report = compare_runs(
            [out / "eval" / before, out / "eval" / after], out / "compare" / key, n_resamples=n_resamples, seed=seed
        )
        found[key] = paired(report, after)
    return found


def write_outputs(out: Path, partial: dict[str, Any], n_resamples: int, seed: int) -> dict[str, Any]:
    """Compare, then write results.json and report.md; returns the results."""
    evals = {name: read_results(out / "eval" / name) for name in LABELS}
    comparisons = compare(out, n_resamples, seed)
    results = {
        "schema": SCHEMA,
        "mmalign_version": mmalign.__version__,
        "settings": partial["settings"],
        "world": partial["world"],
        "pairs": partial["pairs"],
        "budget": partial["budget"],
        "baseline_config": partial["baseline_config"],
        "methods": {
            name: {**info, "last_log": last_log(out / "train" / name)} for name, info in partial["methods"].items()
        },
        "models": {name: model_metrics(r) for name, r in evals.items()},
        "items": {name: item_counts(r) for name, r in evals.items()},
        "comparisons": comparisons,
        "sentences": {key: comparison_sentence(COMPARISONS[key][2], d) for key, d in comparisons.items()},
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_markdown(results, out / "report.md")
    return results


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def metric_rows(results: dict[str, Any]) -> list[str]:
    """Every task and metric, one row each: every model's estimate [95 % interval]."""
    models = results["models"]
    lines = [_row(["Task", "Metric", *(LABELS[n] for n in models)]), "|---" * (2 + len(models)) + "|"]
    for task, metrics in models["baseline"].items():
        for metric in metrics:
            cells = []
            for name in models:
                iv = models[name].get(task, {}).get(metric)
                cells.append(
                    "–"
                    if iv is None
                    else f"{fmt(metric, iv['estimate'])} [{fmt(metric, iv['low'])}, {fmt(metric, iv['high'])}]"
                )
            lines.append(_row([task, f"{metric} {arrow(metric)}", *cells]))
    return lines


def delta_rows(results: dict[str, Any]) -> list[str]:
    """Every task and metric: each comparison's paired change (after − before) [95 % interval]."""
    comparisons = results["comparisons"]
    lines = [_row(["Task", "Metric", *(f"Δ {key}" for key in comparisons)]), "|---" * (2 + len(comparisons)) + "|"]
    for task, metrics in results["models"]["baseline"].items():
        for metric in metrics:
            cells = []
            for d in comparisons.values():
                delta = d.get(task, {}).get(metric)
                cells.append("–" if delta is None else interval_text(metric, delta))
            lines.append(_row([task, f"{metric} {arrow(metric)}", *cells]))
    return lines


COMPETENCE = (
    ("video_pope", "accuracy", "temporal POPE accuracy"),
    ("video_pope", "yes_ratio", "yes-ratio"),
    ("video_hallucer", "accuracy", "VideoHallucer pair accuracy"),
    ("video_chair", "chair_i", "caption CHAIR-i"),
    ("video_chair", "recall", "object recall"),
    ("video_chair", "event_recall", "event recall"),
)
"""What the report says of the baseline's competence: (task, metric, name)."""


def competence_line(models: dict[str, Any]) -> str:
    """The baseline's scores on the test tasks, in one line (chance is 50 % for POPE, 25 % for a pair)."""
    base = models["baseline"]
    parts = [
        f"{name} {fmt(metric, base[task][metric]['estimate'])}"
        for task, metric, name in COMPETENCE
        if metric in base.get(task, {})
    ]
    return (
        "how competent the baseline is on the test clips: "
        + ", ".join(parts)
        + (" (chance: 50 % for POPE, 25 % for a VideoHallucer pair answered at random)")
    )


def reproduce_command(settings: dict[str, Any]) -> str:
    """``mmalign video-study`` with every setting of the run as a flag (the sizes as run: after ``--quick``)."""
    words = ["mmalign video-study"]
    for key, value in settings.items():
        if key == "quick":
            continue  # the sizes below are the quick profile's when it was on
        if key == "baseline_questions":
            words.append("--baseline-questions" if value else "--captions-only")
        else:
            words.append(
                f"--{key.replace('_', '-')} {value:g}"
                if isinstance(value, float)
                else f"--{key.replace('_', '-')} {value}"
            )
    return " ".join(words)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """report.md: the settings, what the comparisons show, every metric with its interval, the paired deltas."""
    s, pairs, budget = results["settings"], results["pairs"], results["budget"]
    world = results["world"]
    items = results["items"]["baseline"]
    kinds = ", ".join(f"{k} {v}" for k, v in pairs["kinds"].items())
    lines = [
        "# mmalign video-study: does video DPO reduce temporal hallucination?",
        "",
        f"- seed {s['seed']} (world seed {world['seed']}); clips: {s['train_clips']} train, {s['test_clips']} test, "
        f"{s['clip_frames']} frames each; intervals: percentile bootstrap 95 %, {s['bootstrap']} resamples"
        + (" (quick profile: a smoke test, numbers meaningless)" if s["quick"] else ""),
        "- baseline: the shipped still-world SFT checkpoint fine-tuned on the training clips' captions"
        + (" and yes/no questions" if s.get("baseline_questions") else "")
        + ", "
        f"{s['baseline_steps']} steps × {s['baseline_batch_size']} (configs/video/baseline.yaml)",
        f"- pairs: {pairs['pairs']} video-hallucinate pairs from the first {pairs['clips']} training clips ({kinds})",
        f"- DPO and the control: {budget['steps']} steps × {budget['pairs_per_step']} pairs each, from the baseline "
        "(configs/video/dpo.yaml, configs/video/control.yaml: same learning rate)",
        f"- {competence_line(results['models'])}",
        "- test items per task (the same for every model): " + ", ".join(f"{t} {n}" for t, n in items.items()),
        "",
        "## What the paired intervals show",
        "",
        *(f"- {sentence}" for sentence in results["sentences"].values()),
        "",
        "A change is claimed only where its paired 95 % interval excludes 0.",
        "",
        "## Every model, every metric",
        "",
        "Estimate [95 % interval]; ↑ higher is better, ↓ lower.",
        "",
        *metric_rows(results),
        "",
        "## Paired changes",
        "",
        "After − before [paired 95 % interval], in percentage points for rates: `dpo_vs_baseline` is DPO − baseline, "
        "`dpo_vs_control` is DPO − control, `control_vs_baseline` is control − baseline. All deltas: "
        "`compare/<comparison>/compare.md`.",
        "",
        *delta_rows(results),
        "",
        "## Reproduce",
        "",
        "```bash",
        reproduce_command(s),
        "```",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
