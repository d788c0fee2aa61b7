"""The demo's plots (matplotlib, Agg): POPE per split, CHAIR with partner naming, and training curves.

Evaluation plots are forest plots: one panel per metric, one row per model, the estimate as a dot with its
bootstrap 95 % interval as a bar, the value axis scaled to the data (not 0–1) and the baseline's estimate drawn
as a dashed line. Each title says whether higher or lower is better. Every model keeps its colour in all three
plots, and legends sit outside the panels.

The curves are the training logs' reward margin and KL estimate to the reference, and GRPO's held-out reward
(object F1 of descriptions sampled for the validation scenes, from step 0), one quantity per axis:
methods with a reference share one margin axis (β · log-ratio), each reference-free method (SimPO: β · mean
log-prob per token) gets its own, and the KL panel says which estimator it shows (``kl/chosen_k3``, never
negative, when every method logs it; else ``kl/chosen``, the k1 estimate, which can be < 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.demo.headline import PARTNER
from mmalign.eval.report import _figure, _save

MARGIN = "rewards/margins"
KL_K1 = "kl/chosen"
KL_K3 = "kl/chosen_k3"
EVAL_REWARD = "eval_reward"
CURVE_KEYS = (MARGIN, KL_K1, KL_K3, EVAL_REWARD)
"""What :func:`read_curves` keeps from each training log (``eval_reward``: GRPO's held-out truth reward)."""

POPE_SPLITS = ("random", "popular", "adversarial")
POPE_METRICS = (("accuracy", "accuracy"), ("f1", "F1"))
CHAIR_PANELS = (
    ("chair_i", "CHAIR-i: objects named that are absent", "lower"),
    ("chair_s", "CHAIR-s: captions naming an absent object", "lower"),
    ("recall", "recall: present objects named", "higher"),
    (PARTNER, "partner naming: captions naming\nan absent partner", "lower"),
    ("absent_partner_mention_rate", "absent partners named\n(per absent partner)", "lower"),
    ("other_absent_mention_rate", "other absent objects named\n(per absent object)", "lower"),
)
"""(metric, what it counts, which direction is better)."""


def _colours(labels: dict[str, str]) -> dict[str, Any]:
    """One colour per model, in the order of ``labels``: the same model looks the same in every plot."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(k % 10) for k, name in enumerate(labels)}


def _forest(
    ax: Any,
    models: dict[str, Any],
    labels: dict[str, str],
    colours: dict[str, Any],
    task: str,
    metric: str,
    baseline: str | None,
) -> tuple[float, float] | None:
    """One panel: a row per model (first at the top), dot = estimate, bar = 95 % interval, dashed = baseline.

    The value axis spans the intervals drawn; returns that span (None when nothing is drawn)."""
    names = [n for n in labels if models.get(n, {}).get(task, {}).get(metric) is not None]
    for row, name in enumerate(names):
        iv = models[name][task][metric]
        ax.errorbar(
            iv["estimate"],
            row,
            xerr=[[iv["estimate"] - iv["low"]], [iv["high"] - iv["estimate"]]],
            fmt="o",
            color=colours[name],
            capsize=3,
            markersize=5,
        )
    if baseline in names:
        ax.axvline(models[baseline][task][metric]["estimate"], color="0.35", linestyle="--", linewidth=1, zorder=0)
    lows = [models[n][task][metric]["low"] for n in names]
    highs = [models[n][task][metric]["high"] for n in names]
    if names:
        _span(ax, min(lows), max(highs))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([labels[n] for n in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="0.9")
    return (min(lows), max(highs)) if names else None


def _span(ax: Any, low: float, high: float) -> None:
    """Scale the value axis to [low, high] with a margin: the differences between models fill the panel."""
    from matplotlib.ticker import PercentFormatter

    pad = max((high - low) * 0.08, 1e-3)
    ax.set_xlim(low - pad, high + pad)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0 if high - low >= 0.04 else 1))


def _legend(fig: Any, baseline_label: str) -> None:
    """Below every panel, outside the data: what the dot, the bar and the dashed line are."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="0.2", marker="o", linestyle="-", markersize=5),
        Line2D([], [], color="0.35", linestyle="--", linewidth=1),
    ]
    fig.legend(
        handles,
        ["estimate and bootstrap 95 % interval", f"{baseline_label} estimate"],
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.04),
    )


def plot_pope(models: dict[str, Any], labels: dict[str, str], path: Path, baseline: str = "baseline") -> None:
    """Accuracy (top row) and F1 (bottom row) per POPE split, one row per model; x shared within a metric."""
    plt = _figure()
    colours = _colours(labels)
    fig, axes = plt.subplots(len(POPE_METRICS), len(POPE_SPLITS), figsize=(12, 6.2), sharey=True, sharex="row")
    for row, (metric, name) in enumerate(POPE_METRICS):
        spans = []
        for col, split in enumerate(POPE_SPLITS):
            ax = axes[row][col]
            spans.append(_forest(ax, models, labels, colours, f"pope_{split}", metric, baseline))
            ax.set_title(f"POPE {split}: {name} (higher is better)", fontsize=10)
        drawn = [s for s in spans if s is not None]
        if drawn:  # one scale per metric, so splits compare too
            _span(axes[row][0], min(s[0] for s in drawn), max(s[1] for s in drawn))
    fig.suptitle("POPE: yes/no questions on objects, present or absent", fontsize=11)
    fig.tight_layout()
    _legend(fig, labels.get(baseline, baseline))
    _save(fig, path)


def plot_chair(models: dict[str, Any], labels: dict[str, str], path: Path, baseline: str = "baseline") -> None:
    """CHAIR-i, CHAIR-s and recall (top row); partner naming against other absent objects (bottom row).

    Each metric has its own axis: rates from 1 % to 95 % share none."""
    plt = _figure()
    colours = _colours(labels)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.6), sharey=True)
    for ax, (metric, title, better) in zip(axes.flat, CHAIR_PANELS, strict=True):
        _forest(ax, models, labels, colours, "chair", metric, baseline)
        ax.set_title(f"{title}\n({better} is better)", fontsize=9)
    fig.suptitle("CHAIR on held-out captions (top) and co-occurrence hallucination (bottom)", fontsize=11)
    fig.tight_layout()
    _legend(fig, labels.get(baseline, baseline))
    _save(fig, path)


def read_curves(train_dirs: dict[str, Path]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """method → curve key → [(step, value)] from each training directory's metrics.jsonl."""
    from mmalign.demo.training import training_log

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name, directory in train_dirs.items():
        rows = training_log(directory)
        out[name] = {
            key: [
                (int(r["step"]), float(r[key]))
                for r in rows
                if isinstance(r.get(key), int | float) and ("loss" in r or key == EVAL_REWARD)
            ]
            for key in CURVE_KEYS
        }
    return out


def curve_panels(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> list[tuple[str, list[str], str]]:
    """(key, methods, axis label) per panel, one quantity per axis.

    A method that logs a KL to the reference has a reference: its margin is β · (log-ratio of chosen − of
    rejected), shared by all such methods. A method that logs a margin but no KL is reference-free (SimPO:
    β · mean log-prob per token) and gets its own axis. The KL panel shows k3 (never negative) when every method
    with a KL logs it, else k1 on the chosen tokens (a sample estimate: it can be < 0)."""
    has = {key: [n for n, series in curves.items() if series.get(key)] for key in CURVE_KEYS}
    with_reference = [n for n in has[MARGIN] if n in has[KL_K1] or n in has[KL_K3]]
    panels = []
    if with_reference:
        panels.append((MARGIN, with_reference, "reward margin, β · Δ log(π / π_ref)\n(chosen − rejected)"))
    for name in has[MARGIN]:
        if name not in with_reference:
            panels.append((MARGIN, [name], "reward margin, β · Δ mean log-prob per token\n(chosen − rejected)"))
    k1_only = [n for n in has[KL_K1] if n not in has[KL_K3]]
    if has[KL_K3] and not k1_only:
        panels.append((KL_K3, has[KL_K3], "KL to the reference per token\n(k3 estimate on chosen, ≥ 0)"))
    elif has[KL_K1]:
        panels.append((KL_K1, has[KL_K1], "KL to the reference per token\n(k1 estimate on chosen, can be < 0)"))
    if has[EVAL_REWARD]:
        panels.append(
            (EVAL_REWARD, has[EVAL_REWARD], "held-out reward: object F1 of sampled\ndescriptions of validation scenes")
        )
    return panels


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], labels: dict[str, str], path: Path) -> None:
    """Reward margins and KL to the reference against the optimiser step (see :func:`curve_panels`)."""
    plt = _figure()
    colours = _colours(labels)
    panels = curve_panels(curves)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.8), squeeze=False)
    drawn: dict[str, Any] = {}
    for ax, (key, names, ylabel) in zip(axes[0], panels, strict=False):
        for name in names:
            points = curves[name][key]
            (line,) = ax.plot(
                [s for s, _ in points],
                [v for _, v in points],
                marker=".",
                markersize=4,
                color=colours.get(name),
                label=labels.get(name, name),
            )
            drawn.setdefault(name, line)
        if key != EVAL_REWARD:
            ax.axhline(0, color="0.6", linewidth=0.8, zorder=0)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.tick_params(labelsize=8)
        what = {
            MARGIN: "margin: higher separates the pairs",
            EVAL_REWARD: "reward: higher names the scene's objects better",
        }.get(key, "KL: nearer 0 stays nearer the baseline")
        ax.set_title(", ".join(labels.get(n, n) for n in names) + f"\n({what})", fontsize=9)
    if not panels:
        axes[0][0].text(
            0.5,
            0.5,
            "no reward margin or KL logged by these methods",
            ha="center",
            va="center",
            transform=axes[0][0].transAxes,
        )
    fig.tight_layout()
    if drawn:
        fig.legend(
            list(drawn.values()),
            [labels.get(n, n) for n in drawn],
            loc="lower center",
            ncol=len(drawn),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, -0.08),
        )
    _save(fig, path)
