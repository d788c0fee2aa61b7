"""``report.md`` and its plots (matplotlib, Agg backend) from a run's results.json.

One table per dimension (each task's headline metrics with their bootstrap 95 % intervals), a radar (three
dimensions or more) or bar chart of the dimension summaries (``dimensions.png``), POPE per split
(``pope.png``) and, on the shapes world, how often captions name absent co-occurring partners against other
absent objects (``partners.png``); for each closed task, fast path or generation and the agreement with
generate-and-parse that choice relies on; the judged tasks' failed judgments; the metrics' warnings; failed
tasks (no score) and skipped tasks, and why.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmalign.eval.tasks.specs import DIMENSIONS, TASKS
from mmalign.files import atomic_path

COUNTS = ("total", "perception", "cognition", "relative_score")
"""Metrics reported as numbers; every other headline metric is a rate, shown in percent."""
LOWER_IS_BETTER = (
    "chair_s",
    "chair_i",
    "attack_success_rate",
    "over_refusal_rate",
    "absent_partner",
    "other_absent",
    "yes_ratio",
)
"""Metric names containing one of these read "lower is better" (yes-ratio: closer to 0.5 is better; shown ↓
because a hallucinating model says yes too often)."""


_MODES = {
    "auto": "the log-prob fast path where its measured agreement with generate-and-parse is at least 99 %, "
    "else generation (see Fast path agreement)",
    "fast": "the log-prob fast path (--fast)",
    "generate": "generate-and-parse (--generate)",
}


def fmt(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if name in COUNTS else f"{100 * value:.1f}%"


def arrow(name: str) -> str:
    return "↓" if any(key in name for key in LOWER_IS_BETTER) else "↑"


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _figure().close(fig)


def plot_dimensions(series: dict[str, dict[str, float]], path: Path, title: str) -> bool:
    """Radar (three dimensions or more) or bars of dimension scores; one series per run. False if nothing to plot."""
    names = [d for d in DIMENSIONS if any(d in s for s in series.values())]
    if not names:
        return False
    plt = _figure()
    labels = [DIMENSIONS[d] for d in names]
    if len(names) >= 3:
        angles = [2 * math.pi * k / len(names) for k in range(len(names))]
        fig, ax = plt.subplots(figsize=(5.5, 5.5), subplot_kw={"projection": "polar"})
        for run, scores in series.items():
            values = [scores.get(d, 0.0) for d in names]
            ax.plot(angles + angles[:1], values + values[:1], marker="o", label=run)
            ax.fill(angles + angles[:1], values + values[:1], alpha=0.1)
        ax.set_xticks(angles)
        ax.set_xticklabels(labels)
        ax.set_ylim(0, max(1.0, *(v for s in series.values() for v in s.values())))
    else:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.7 * len(names) * len(series)))
        height = 0.8 / len(series)
        for j, (run, scores) in enumerate(series.items()):
            ax.barh([k + j * height for k in range(len(names))], [scores.get(d, 0.0) for d in names], height, label=run)
        ax.set_yticks([k + height * (len(series) - 1) / 2 for k in range(len(names))])
        ax.set_yticklabels(labels)
        ax.set_xlim(0, 1)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return True


def _bars(
    groups: list[str], metrics: list[str], values: dict[tuple[str, str], dict[str, Any]], title: str, path: Path
) -> None:
    """Grouped bars (a group per split or rate) with bootstrap-interval error bars."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(1.2 + 1.4 * len(groups), 3.6))
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        xs, heights, low, high = [], [], [], []
        for k, group in enumerate(groups):
            iv = values.get((group, metric))
            if iv is None:
                continue
            xs.append(k + j * width)
            heights.append(iv["estimate"])
            low.append(iv["estimate"] - iv["low"])
            high.append(iv["high"] - iv["estimate"])
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=metric.replace("_", " "))
    ax.set_xticks([k + width * (len(metrics) - 1) / 2 for k in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 1.25)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=len(metrics), loc="upper center")
    _save(fig, path)


def _task_table(name: str, entry: dict[str, Any]) -> list[str]:
    lines = []
    if entry["intervals"]:
        for metric, iv in entry["intervals"].items():
            ci = f"[{fmt(metric, iv['low'])}, {fmt(metric, iv['high'])}]"
            lines.append(f"| {name} | {metric} {arrow(metric)} | {fmt(metric, iv['estimate'])} | {ci} | {iv['n']} |")
    elif name == "preference":
        for row in entry["metrics"]["leaderboard"]:
            wr = f"win rate {fmt('', row.get('win_rate'))}" if "win_rate" in row else ""
            ci = f"[{row['low']:.0f}, {row['high']:.0f}]"
            n = entry["metrics"]["n_battles"]
            lines.append(f"| {name} | {row['model']} rating {wr} | {row['rating']:.0f} | {ci} | {n} battles |")
    return lines


def write_report(results: dict[str, Any], out: Path) -> list[Path]:
    """Write OUT/report.md and its PNGs; returns the files written."""
    tasks, model, settings = results["tasks"], results["model"], results["settings"]
    written = [out / "report.md"]
    judge = settings.get("judge")
    lines = [
        "# Evaluation report",
        "",
        *(
            f"- {role}: `{m['path']}` ({m['family']}, {m['parameters']:,} parameters), "
            f"fingerprint `{m['fingerprint'][:16]}`"
            for role, m in (("model", model), ("reward model", results.get("reward_model")))
            if m is not None
        ),
        *([f"- judge: `{judge['model']}` at {judge['base_url']}"] if judge else []),
        f"- data: {settings['data'] or 'benchmark files'} (split {settings['split']}), item limit "
        f"{settings['limit'] or 'none'}; closed answers by " + _MODES.get(settings["mode"], str(settings["mode"])),
        f"- intervals: percentile bootstrap 95 %, {settings['n_resamples']} resamples, seed {settings['seed']}; "
        "↑ higher is better, ↓ lower is better",
        "",
        "## Summary",
        "",
        "| Dimension | Score | Tasks |",
        "|---|---|---|",
    ]
    for key, dim in results["dimensions"].items():
        parts = ", ".join(f"{t} {fmt('', v)}" for t, v in dim["tasks"].items())
        lines.append(f"| {DIMENSIONS[key]} | {fmt('', dim['score'])} | {parts} |")
    if plot_dimensions(
        {"model": {k: v["score"] for k, v in results["dimensions"].items()}},
        out / "dimensions.png",
        "Dimension scores (higher is better)",
    ):
        lines += ["", "![dimension scores](dimensions.png)"]
        written.append(out / "dimensions.png")
    failed = [(n, e["reason"]) for n, e in tasks.items() if e["status"] == "failed"]
    if failed:
        lines += ["", "## Failed (no score)", ""] + [f"- **{n}**: {reason}" for n, reason in failed]
    for dimension, title in DIMENSIONS.items():
        done = [(n, e) for n, e in tasks.items() if TASKS[n].dimension == dimension and e["status"] == "done"]
        if not done:
            continue
        lines += ["", f"## {title}", "", "| Task | Metric | Value | 95% CI | n |", "|---|---|---|---|---|"]
        for name, entry in done:
            lines += _task_table(name, entry)
        lines += _dimension_extras(dimension, done, out, written)
    lines += _fast_path_lines(tasks)
    lines += _judge_lines(tasks)
    warnings = [(n, w) for n, e in tasks.items() for w in e.get("metrics", {}).get("warnings", [])]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {n}: {w}" for n, w in warnings]
    skipped = [(n, e["reason"]) for n, e in tasks.items() if e["status"] == "skipped"]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {n}: {reason}" for n, reason in skipped]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def _judge_lines(tasks: dict[str, Any]) -> list[str]:
    """The judged tasks that were scored: how many judgments failed, and over how many the score was computed."""
    judged = [(n, e["judge"]) for n, e in tasks.items() if e["status"] == "done" and e.get("judge")]
    if not judged:
        return []
    lines = ["", "## Judge", ""]
    for name, tally in judged:
        line = f"- {name}: {tally['n']} judgments, {tally['n_failed']} failed"
        if tally["n_failed"]:
            line += (
                f" ({fmt('', tally['failed_fraction'])}; at most {fmt('', tally['max_failed_fraction'])} "
                f"allowed): scored over the {tally['n'] - tally['n_failed']} that succeeded; first failure: "
                f"{tally['first_failure']}"
            )
        lines.append(line)
    return lines


def _fast_path_lines(tasks: dict[str, Any]) -> list[str]:
    """The closed tasks: fast path or generation, the measured agreement that decided it, this run's check."""
    closed = [(n, e["fast_path"]) for n, e in tasks.items() if (e.get("fast_path") or {}).get("applies")]
    if not closed:
        return []
    lines = [
        "",
        "## Fast path agreement",
        "",
        "Closed answers come from the log-prob fast path only where its agreement with generate-and-parse (the "
        "task's official parser on both), measured on the shipped model, is at least 99 %; where it is used, items "
        "whose greedy answer does not start with an option are generated, and a seeded sample is also generated "
        "to check the agreement on this model.",
        "",
        "| Task | Answers by | Measured agreement | This run's sample | Generated off the options | Near ties |",
        "|---|---|---|---|---|---|",
    ]
    for name, fp in closed:
        measured = fp.get("measured")
        figure = f"{fmt('', measured['agreement'])} of {measured['n']}" if measured else "not measured"
        sample = f"{fmt('', fp['agreement'])} of {fp['n']}" if fp.get("agreement") is not None else "–"
        by = "fast path" if fp["used"] else "generation"
        extra = f"{fp.get('generated', '–')} | {fp.get('near_ties', '–')}"
        lines.append(f"| {name} | {by} | {figure} | {sample} | {extra} |")
    lines += [""] + [f"- {n}: {fp['reason']}" for n, fp in closed]
    lines += [f"- **warning**: {fp['warning']}" for _, fp in closed if fp.get("warning")]
    measured_by = {fp["measured"]["measured_by"] for _, fp in closed if fp.get("measured")}
    lines += [""] + [f"Agreement measured by {m}." for m in sorted(measured_by)]
    return lines


def _dimension_extras(
    dimension: str, done: list[tuple[str, dict[str, Any]]], out: Path, written: list[Path]
) -> list[str]:
    lines: list[str] = []
    entries = dict(done)
    pope = {n.removeprefix("pope_"): e for n, e in entries.items() if n.startswith("pope_")}
    if pope:
        metrics = ["accuracy", "precision", "recall", "f1"]
        values = {(s, m): e["intervals"][m] for s, e in pope.items() for m in metrics if m in e["intervals"]}
        _bars(list(pope), metrics, values, "POPE by split (95% bootstrap intervals)", out / "pope.png")
        lines += ["", "![POPE by split](pope.png)"]
        written.append(out / "pope.png")
    partner = entries.get("chair", {}).get("metrics", {}).get("absent_partner")
    if partner:
        iv = entries["chair"]["intervals"]
        rates = {k: fmt("", v) for k, v in partner.items() if k.endswith("_rate")}
        lines += [
            "",
            f"Absent co-occurring partners: captions name {rates['absent_partner_mention_rate']} of the absent "
            f"partners of present objects, against {rates['other_absent_mention_rate']} of the other absent objects; "
            f"{rates['absent_partner_caption_rate']} of the captions of scenes with an absent partner name one "
            f"({partner['captions_with_absent_partner']} scenes).",
        ]
        groups = ["absent partner", "other absent"]
        values = {
            ("absent partner", "objects named"): iv["absent_partner_mention_rate"],
            ("other absent", "objects named"): iv["other_absent_mention_rate"],
            ("absent partner", "captions naming one"): iv["absent_partner_caption_rate"],
            ("other absent", "captions naming one"): iv["other_absent_caption_rate"],
        }
        _bars(
            groups,
            ["objects named", "captions naming one"],
            values,
            "Absent objects named in captions",
            out / "partners.png",
        )
        lines += ["", "![absent partners](partners.png)"]
        written.append(out / "partners.png")
    if dimension == "safety" and entries["safety"]["source"].startswith("shapes world"):
        lines += [
            "",
            "Harmful prompts are synthetic; the tiny models are never trained to refuse, so these rates "
            "are measured, not claimed (refusals detected with VLGuard's keyword list).",
        ]
    return lines
