"""The demo's plots (matplotlib, Agg): POPE per split, CHAIR with partner naming, and training curves.

Bars carry their bootstrap 95 % intervals as error bars; the curves are the training logs' reward margin and
KL estimate to the reference (``rewards/margins``, ``kl/chosen``: methods without a reference log no KL, the
control no margin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.demo.headline import PARTNER
from mmalign.eval.report import _figure, _save

CURVES = (
    ("rewards/margins", "reward margin (chosen − rejected)"),
    ("kl/chosen", "KL to the reference (k1 on chosen, per token)"),
)


def _grouped(ax: Any, groups: list[str], series: dict[str, list[dict[str, float] | None]], title: str) -> None:
    """Bars: one group per entry of ``groups``, one bar per series (model), with interval error bars."""
    width = 0.8 / max(len(series), 1)
    for j, (label, values) in enumerate(series.items()):
        xs = [k + j * width for k, v in enumerate(values) if v is not None]
        ivs = [v for v in values if v is not None]
        ax.bar(xs, [v["estimate"] for v in ivs], width, label=label, capsize=2,
               yerr=[[v["estimate"] - v["low"] for v in ivs], [v["high"] - v["estimate"] for v in ivs]])  # fmt: skip
    ax.set_xticks([k + width * (len(series) - 1) / 2 for k in range(len(groups))])
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title(title, fontsize=10)


def plot_pope(models: dict[str, Any], labels: dict[str, str], path: Path) -> None:
    """Accuracy and F1 per POPE split, one bar per model."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    splits = ["random", "popular", "adversarial"]
    for ax, metric in zip(axes, ("accuracy", "f1"), strict=True):
        series = {labels[n]: [tasks.get(f"pope_{s}", {}).get(metric) for s in splits] for n, tasks in models.items()}
        _grouped(ax, splits, series, f"POPE {metric} by split (higher is better)")
    axes[0].set_ylim(0, 1.05)
    axes[1].legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_chair(models: dict[str, Any], labels: dict[str, str], path: Path) -> None:
    """CHAIR-i, CHAIR-s and recall; and how often captions name absent partners against other absent objects."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    left = [("chair_i", "CHAIR-i ↓"), ("chair_s", "CHAIR-s ↓"), ("recall", "recall ↑")]
    right = [(PARTNER, "captions naming\nan absent partner ↓"),
             ("absent_partner_mention_rate", "absent partners\nnamed ↓"),
             ("other_absent_mention_rate", "other absent\nobjects named ↓")]  # fmt: skip
    for ax, metrics, title in ((axes[0], left, "CHAIR on held-out captions"),
                               (axes[1], right, "Co-occurrence hallucination")):  # fmt: skip
        series = {labels[n]: [tasks.get("chair", {}).get(m) for m, _ in metrics] for n, tasks in models.items()}
        _grouped(ax, [name for _, name in metrics], series, title)
    axes[0].set_ylim(0, 1.05)
    axes[1].legend(fontsize=7, loc="upper right")
    _save(fig, path)


def read_curves(train_dirs: dict[str, Path]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """method → curve key → [(step, value)] from each training directory's metrics.jsonl."""
    from mmalign.train.callbacks import METRICS_FILE, read_metrics

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name, directory in train_dirs.items():
        rows = [r for r in read_metrics(directory / METRICS_FILE) if "loss" in r]
        out[name] = {key: [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), int | float)]
                     for key, _ in CURVES}  # fmt: skip
    return out


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], labels: dict[str, str], path: Path) -> None:
    """Reward margin and KL to the reference against the optimiser step, one line per method that logs them."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (key, title) in zip(axes, CURVES, strict=True):
        drawn = 0
        for name, series in curves.items():
            points = series.get(key, [])
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=labels.get(name, name))
                drawn += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step")
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged by these methods", ha="center", va="center", transform=ax.transAxes)
    _save(fig, path)
