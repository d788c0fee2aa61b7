"""The reward-model suite: accuracy per kind of held-out pair, with bootstrap 95 % intervals.

A pair is right when the chosen response's reward is strictly above the rejected one's; a tie is wrong (as the
RM trainer's ``accuracy`` and :func:`mmalign.eval.metrics.reward.reward_accuracy`). Reported per kind of
:data:`mmalign.demo.rm_pairs.KINDS`, for the five hallucination kinds together (``hallucination``), and over
every pair (``all``); each with n, the correct count and a percentile-bootstrap interval over pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.data.records import PreferenceRecord
from mmalign.demo.rm_pairs import HALLUCINATE_KINDS, KINDS, kind_of
from mmalign.eval.metrics.bootstrap import mean_interval
from mmalign.eval.metrics.reward import RewardPair, reward_accuracy

HALLUCINATION = "hallucination"
"""The row of the five hallucination kinds together (the issue's ≥ 0.95 goal is on these)."""
ALL = "all"


def score_pairs(loaded: Any, records: list[PreferenceRecord], root: Path, batch_size: int) -> list[RewardPair]:
    """Each pair's chosen and rejected reward by the RM (``loaded``: :func:`load_reward_model`'s), its suite kind
    as the category; a side with its own ``rejected_images`` is scored on them."""
    from mmalign.models.examples import examples_from
    from mmalign.models.reward import score_examples

    examples = [example for record in records for example in examples_from(record)]
    rewards = score_examples(loaded, examples, batch_size=batch_size, image_root=root)
    return [
        RewardPair(record.id, rewards[2 * i], rewards[2 * i + 1], category=kind_of(record))
        for i, record in enumerate(records)
    ]


def suite_accuracy(pairs: list[RewardPair], *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Rows ``{kind: {n, correct, ties, accuracy, low, high}}`` for every kind present, then ``hallucination``
    and ``all``; ties count as wrong."""
    groups: dict[str, list[RewardPair]] = {k: [p for p in pairs if p.category == k] for k in KINDS}
    groups = {k: v for k, v in groups.items() if v}
    groups[HALLUCINATION] = [p for p in pairs if p.category in HALLUCINATE_KINDS]
    groups[ALL] = list(pairs)
    rows: dict[str, Any] = {}
    for name, group in groups.items():
        if not group:
            continue
        summary = reward_accuracy(group, ties="wrong")
        interval = mean_interval([float(p.chosen > p.rejected) for p in group], n_resamples=n_resamples, seed=seed)
        rows[name] = {
            "n": summary["n"],
            "correct": summary["correct"],
            "ties": summary["ties"],
            "accuracy": summary["accuracy"],
            "low": interval.low,
            "high": interval.high,
            "margin_mean": sum(p.chosen - p.rejected for p in group) / len(group),
        }
    return rows


def suite_table(rows: dict[str, Any]) -> list[str]:
    """The suite as Markdown table lines."""
    lines = [
        "| kind | n | correct | accuracy | 95 % CI | mean margin (chosen − rejected) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, row in rows.items():
        label = f"**{name}**" if name in (HALLUCINATION, ALL) else name
        lines.append(
            f"| {label} | {row['n']} | {row['correct']} | {row['accuracy']:.3f} | "
            f"[{row['low']:.3f}, {row['high']:.3f}] | {row['margin_mean']:+.3f} |"
        )
    return lines
