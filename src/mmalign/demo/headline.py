"""What the demo claims, worked out from its numbers alone: the baseline's checks, each method's goal, how each
method compares with the SFT-on-chosen control, and the headline printed at the end.

Every function here takes plain dicts shaped like ``results.json`` (intervals ``{estimate, low, high}``, paired
deltas ``{before, after, delta, low, high}``), so the logic is tested on hand-made numbers. A claim is made
only where a paired 95 % interval excludes zero; otherwise the sentence says the method is no better (or no
worse) than what it is compared with.
"""

from __future__ import annotations

import re
from typing import Any

from mmalign.eval.report import arrow

PARTNER = "absent_partner_caption_rate"
"""Partner hallucination: of the captions of scenes where a present object's partner is absent, the share that
name such a partner."""

CLAIMED: tuple[tuple[str, str, str], ...] = (
    ("pope_adversarial", "f1", "POPE-adversarial F1"),
    ("pope_adversarial", "accuracy", "POPE-adversarial accuracy"),
    ("chair", "chair_i", "CHAIR-i"),
    ("chair", PARTNER, "partner naming"),
    ("chair", "recall", "object recall"),
    ("mme", "total", "MME total"),
    ("mc", "accuracy", "multiple choice"),
)
"""(task, metric, name) compared between a method and the control, in sentence order."""

WIDTH = 100
"""The headline's widest line, in columns (the terminal and report.md's code block)."""
BASELINE_MIN_ACCURACY = 0.80
BASELINE_MIN_PARTNER = 0.15
BASELINE_MIN_RATIO = 3.0
GOAL_PARTNER_CUT = 0.50
GOAL_CHAIR_I_DROP = 0.03
GOAL_MAX_RECALL_DROP = 0.06


def _check(name: str, value: float | None, passed: bool) -> dict[str, Any]:
    return {"check": name, "value": value, "pass": bool(passed)}


def baseline_checks(models: dict[str, Any]) -> list[dict[str, Any]]:
    """The baseline must be competent (POPE random and adversarial accuracy ≥ 0.80) and still hallucinate
    (absent partners named in ≥ 15 % of captions, ≥ 3× as often as other absent objects)."""
    base = models["baseline"]
    random_acc = base["pope_random"]["accuracy"]["estimate"]
    adversarial_acc = base["pope_adversarial"]["accuracy"]["estimate"]
    chair = base["chair"]
    partner = chair[PARTNER]["estimate"]
    partner_mentions = chair["absent_partner_mention_rate"]["estimate"]
    other_mentions = chair["other_absent_mention_rate"]["estimate"]
    ratio = partner_mentions / other_mentions if other_mentions else None
    return [
        _check("POPE random accuracy ≥ 0.80", random_acc, random_acc >= BASELINE_MIN_ACCURACY),
        _check("POPE adversarial accuracy ≥ 0.80", adversarial_acc, adversarial_acc >= BASELINE_MIN_ACCURACY),
        _check("absent partners named in ≥ 15 % of captions", partner, partner >= BASELINE_MIN_PARTNER),
        _check(
            "absent partners named ≥ 3× as often as other absent objects",
            ratio,
            (ratio is None and partner_mentions > 0) or (ratio is not None and ratio >= BASELINE_MIN_RATIO),
        ),
    ]


def relative_change(delta: dict[str, Any]) -> float | None:
    """(after − before) / before, or None when before is 0."""
    return delta["delta"] / delta["before"] if delta["before"] else None


def goal_checks(deltas: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goal for one method, from its paired deltas against the baseline: partner naming cut by ≥ 50 %
    (relative), CHAIR-i down by ≥ 0.03, object recall down by at most 0.06, POPE-adversarial accuracy not worse
    (its paired 95 % interval reaches 0 or above)."""
    partner, chair_i = deltas["chair"][PARTNER], deltas["chair"]["chair_i"]
    recall, accuracy = deltas["chair"]["recall"], deltas["pope_adversarial"]["accuracy"]
    cut = relative_change(partner)
    return [
        _check("partner naming cut by ≥ 50 % (relative)", cut, cut is not None and cut <= -GOAL_PARTNER_CUT),
        _check("CHAIR-i down by ≥ 0.03", chair_i["delta"], chair_i["delta"] <= -GOAL_CHAIR_I_DROP),
        _check("object recall down by ≤ 0.06", recall["delta"], recall["delta"] >= -GOAL_MAX_RECALL_DROP),
        _check("POPE-adversarial accuracy not worse (interval reaches 0)", accuracy["delta"], accuracy["high"] >= 0),
    ]


def interval_text(metric: str, d: dict[str, Any], unit: bool = True) -> str:
    """``-2.6 [-8.1, +0.4] pp``: a paired change and its interval, in percentage points for a rate and as a plain
    number for a count (MME's total); ``unit=False`` leaves out `` pp``."""
    scale, suffix = (1, "") if metric == "total" else (100, " pp")
    return f"{scale * d['delta']:+.1f} [{scale * d['low']:+.1f}, {scale * d['high']:+.1f}]{suffix if unit else ''}"


def verdict(metric: str, d: dict[str, Any]) -> str:
    """``better``, ``worse`` or ``same``: where the paired interval lies, read in the metric's good direction."""
    lower_is_better = arrow(metric) == "↓"
    if d["low"] > 0 or d["high"] < 0:
        return "better" if (d["high"] < 0) == lower_is_better else "worse"
    return "same"


def control_sentence(label: str, deltas: dict[str, Any]) -> str:
    """One sentence on ``label`` against the control, from its paired deltas (method − control) per task."""
    groups: dict[str, list[str]] = {"better": [], "worse": [], "same": []}
    for task, metric, name in CLAIMED:
        d = deltas.get(task, {}).get(metric)
        if d is None:
            continue
        kind = verdict(metric, d)
        groups[kind].append(name if kind == "same" else f"{name} ({interval_text(metric, d)})")
    parts = []
    if groups["better"]:
        parts.append("beats the control on " + ", ".join(groups["better"]))
    if groups["worse"]:
        parts.append("is worse than the control on " + ", ".join(groups["worse"]))
    if groups["same"]:
        parts.append("is no better than the control on " + ", ".join(groups["same"]))
    return f"{label} " + "; ".join(parts) + "." if parts else f"{label}: no paired comparison with the control."


def partner_text(d: dict[str, Any]) -> str:
    """``10.2% (-71 %)``: the rate after and its change relative to before."""
    cut = relative_change(d)
    return f"{100 * d['after']:.1f}%" + (f" ({100 * cut:+.0f} %)" if cut is not None else "")


def wrap(text: str, width: int = WIDTH, indent: str = "  ", more: str = "    ") -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces outside parentheses (an interval with its
    bounds stays on one line); a single word longer than the width is left whole."""
    words = re.findall(r"(?:[^\s(]|\([^()]*\))+", text)
    lines, line = [], indent
    for word in words:
        if line.strip() and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = more
        line += word if not line.strip() else " " + word
    return [*lines, line] if line.strip() else lines


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def headline_lines(results: dict[str, Any]) -> list[str]:
    """The terminal headline, at most ``WIDTH`` columns: per method, whether the goal is met and Δ POPE-adversarial
    F1, Δ CHAIR-i and Δ partner naming with paired intervals; partner naming before → after; the goal; the
    sentences against the control."""
    methods = results["methods"]
    n_scenes = results["world"]["test_scenes"]
    lines = [
        "",
        f"Headline: change from the SFT baseline on {n_scenes} held-out scenes (seed {results['settings']['seed']})",
        "  Δ: percentage points [paired bootstrap 95 % interval]; ↑ higher is better, ↓ lower",
    ]
    rows = [["method", "goal", "Δ POPE-adv F1 ↑", "Δ CHAIR-i ↓", "Δ partner naming ↓"]]
    after = []
    for name, method in methods.items():
        d = results["vs_baseline"][name]
        goal = "met" if all(c["pass"] for c in results["criteria"]["methods"][name]) else "not met"
        rows.append(
            [
                method["label"],
                goal,
                interval_text("f1", d["pope_adversarial"]["f1"], unit=False),
                interval_text("chair_i", d["chair"]["chair_i"], unit=False),
                interval_text(PARTNER, d["chair"][PARTNER], unit=False),
            ]
        )
        after.append(f"{method['label']} {partner_text(d['chair'][PARTNER])}")
    lines += _columns(rows)
    if after:
        before = 100 * next(iter(results["vs_baseline"].values()))["chair"][PARTNER]["before"]
        lines += wrap(
            f"Partner naming (captions naming an absent partner): baseline {before:.1f}%; " + ", ".join(after) + "."
        )
    met = [
        methods[n]["label"] for n, checks in results["criteria"]["methods"].items() if all(c["pass"] for c in checks)
    ]
    lines += wrap(
        f"Goal (partner naming −50 %, CHAIR-i −0.03, recall −0.06 at most, POPE-adv accuracy not worse): "
        f"{'met by ' + ', '.join(met) if met else 'met by no method'}."
    )
    failed = [c["check"] for c in results["criteria"]["baseline"] if not c["pass"]]
    if failed:
        lines += wrap(f"Warning: the baseline fails {'; '.join(failed)}: the comparison says little.")
    if results["claims"]:
        lines.append("Against the SFT-on-chosen control (same budget of steps × examples; paired intervals):")
        for sentence in results["claims"].values():
            lines += wrap(sentence)
    return lines
