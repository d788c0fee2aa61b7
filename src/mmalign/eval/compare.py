"""``mmalign eval compare RUN...``: runs side by side, the first as the baseline (before/after an alignment run).

Each task the baseline and another run both finished is scored again from both runs' files, items are
matched by id, and every headline metric gets its paired difference (other − baseline) with a paired
percentile-bootstrap 95 % interval (:func:`mmalign.eval.scoring.score.deltas`: each resample draws the same items
for both runs). Runs whose items differ are reported as not comparable for that task. Writes
``compare.md``, ``compare.json``, ``compare.png`` (deltas with intervals) and ``compare_dimensions.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError, DataError
from mmalign.eval.report import COUNTS, _figure, _save, arrow, fmt, plot_dimensions
from mmalign.eval.results import read_results
from mmalign.eval.scoring.rescore import rescore
from mmalign.eval.tasks.specs import DIMENSIONS, TASKS
from mmalign.files import atomic_path


def _names(runs: list[Path]) -> list[str]:
    names: list[str] = []
    for run in runs:
        name = run.resolve().name or str(run)
        while name in names:
            name += "'"
        names.append(name)
    return names


def _evaluated(results: dict[str, Any]) -> dict[str, Any]:
    """What a run evaluated: its model, else its reward model, else its judge (a run of the reward-model benchmarks
    without --model)."""
    found = results.get("model") or results.get("reward_model")
    if found is not None:
        return found
    judge = results["settings"].get("judge") or {}
    return {"path": f"judge {judge.get('model')} at {judge.get('base_url')}", "fingerprint": ""}


def compare_runs(runs: list[Path], out: Path, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Compare ``runs[1:]`` against ``runs[0]``; writes the files above into ``out`` and returns compare.json."""
    from mmalign.eval.scoring.score import ScoreOptions, deltas

    if len(runs) < 2:
        raise ConfigError("compare needs at least two runs (the first is the baseline)")
    if n_resamples < 1:
        raise ConfigError("--bootstrap must be at least 1")
    results = [read_results(run) for run in runs]
    names = _names(runs)
    options = ScoreOptions(n_resamples=n_resamples, seed=seed)
    runs_info = {
        n: {"path": str(p), "model": _evaluated(r)["path"], "fingerprint": _evaluated(r)["fingerprint"]}
        for n, p, r in zip(names, runs, results, strict=True)
    }
    report: dict[str, Any] = {
        "baseline": names[0],
        "runs": runs_info,
        "n_resamples": n_resamples,
        "seed": seed,
        "tasks": {},
    }
    base = results[0]
    for task, entry in base["tasks"].items():
        if entry["status"] != "done":
            continue
        before = rescore(task, entry["files"], runs[0], n_rounds=n_resamples, seed=seed)
        rows: dict[str, Any] = {}
        for name, run, other in zip(names[1:], runs[1:], results[1:], strict=True):
            theirs = other["tasks"].get(task)
            if theirs is None or theirs["status"] != "done":
                rows[name] = {"status": "missing"}
                continue
            if not before.ids:
                rows[name] = {"status": "unpaired", "summary": theirs.get("summary")}
                continue
            after = rescore(task, theirs["files"], run, n_rounds=n_resamples, seed=seed)
            try:
                rows[name] = {
                    "status": "paired",
                    "deltas": deltas(before, after, options, run / theirs["files"]["predictions"]),
                }
            except DataError as err:
                rows[name] = {"status": "not comparable", "reason": err.message}
        report["tasks"][task] = {
            "dimension": TASKS[task].dimension,
            "baseline_summary": entry.get("summary"),
            "runs": rows,
        }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "compare.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    series = {n: {k: v["score"] for k, v in r["dimensions"].items()} for n, r in zip(names, results, strict=True)}
    has_dims = plot_dimensions(series, out / "compare_dimensions.png", "Dimension scores")
    has_deltas = _plot_deltas(report, out / "compare.png")
    _write_markdown(report, series, out / "compare.md", has_dims, has_deltas)
    return report


def _plot_deltas(report: dict[str, Any], path: Path) -> bool:
    bars = [
        (f"{task} {metric} {arrow(metric)}", run, d)
        for task, entry in report["tasks"].items()
        for run, row in entry["runs"].items()
        if row["status"] == "paired"
        for metric, d in row["deltas"].items()
        if metric not in COUNTS  # points, not rates: another scale
    ]
    if not bars:
        return False
    plt = _figure()
    labels = list(dict.fromkeys(label for label, _, _ in bars))
    runs = list(dict.fromkeys(run for _, run, _ in bars))
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.32 * len(labels) * len(runs)))
    height = 0.8 / len(runs)
    for j, run in enumerate(runs):
        picked = [(labels.index(label), d) for label, r, d in bars if r == run]
        ys = [k + j * height for k, _ in picked]
        ax.barh(
            ys,
            [d["delta"] for _, d in picked],
            height,
            xerr=[[d["delta"] - d["low"] for _, d in picked], [d["high"] - d["delta"] for _, d in picked]],
            capsize=2,
            label=run,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks([k + height * (len(runs) - 1) / 2 for k in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"change vs {report['baseline']} (paired bootstrap 95% interval)")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _write_markdown(
    report: dict[str, Any], series: dict[str, dict[str, float]], path: Path, dims: bool, plot: bool
) -> None:
    lines = [
        "# Comparison",
        "",
        f"Baseline: **{report['baseline']}**. Deltas are other − baseline over the same "
        f"items (matched by id), with paired percentile-bootstrap 95 % intervals ({report['n_resamples']} "
        "resamples); P(Δ>0) is the share of resamples where the other run is higher.",
        "",
    ]
    lines += ["| Run | Model | Fingerprint |", "|---|---|---|"]
    lines += [f"| {n} | `{r['model']}` | `{r['fingerprint'][:16]}` |" for n, r in report["runs"].items()]
    lines += ["", "## Dimensions", "", "| Dimension | " + " | ".join(series) + " |", "|---" * (len(series) + 1) + "|"]
    for key, title in DIMENSIONS.items():
        if any(key in s for s in series.values()):
            lines.append(f"| {title} | " + " | ".join(fmt("", s.get(key)) for s in series.values()) + " |")
    if dims:
        lines += ["", "![dimension scores](compare_dimensions.png)"]
    if plot:
        lines += ["", "![deltas](compare.png)"]
    for key, title in DIMENSIONS.items():
        tasks = {t: e for t, e in report["tasks"].items() if e["dimension"] == key}
        if not tasks:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            "| Task | Metric | Run | Baseline | Run value | Δ | 95% CI | P(Δ>0) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task, entry in tasks.items():
            for run, row in entry["runs"].items():
                if row["status"] != "paired":
                    note = row.get("reason", row["status"])
                    lines.append(
                        f"| {task} | – | {run} | {fmt('', entry['baseline_summary'])} | "
                        f"{fmt('', row.get('summary'))} | – | {note} | – |"
                    )
                    continue
                for metric, d in row["deltas"].items():
                    sign = "" if metric in ("total", "perception", "cognition", "relative_score") else " pp"
                    scale = 1 if sign == "" else 100
                    lines.append(
                        f"| {task} | {metric} {arrow(metric)} | {run} | {fmt(metric, d['before'])} | "
                        f"{fmt(metric, d['after'])} | {scale * d['delta']:+.1f}{sign} | "
                        f"[{scale * d['low']:+.1f}, {scale * d['high']:+.1f}] | {100 * d['share_above_zero']:.0f}% |"
                    )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
