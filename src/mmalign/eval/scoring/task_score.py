"""What scoring a task from files returns: its metrics plus per-item rows, so runs can be compared.

``columns`` hold one row per resampling unit (a question, a caption, an MME image, a question group), in
``ids`` order, and each ``headline`` metric recomputes a headline number from (resampled) columns. That is
what :mod:`mmalign.eval.metrics.bootstrap` needs for intervals and for paired before/after deltas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Metric = Callable[[Mapping[str, np.ndarray]], float]


@dataclass
class TaskScore:
    task: str
    metrics: dict[str, Any]
    """Everything reported: rates with their counts, per split or category where the task has them."""
    ids: list[str] = field(default_factory=list)
    """Row ids (what pairs two runs)."""
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    headline: dict[str, Metric] = field(default_factory=dict)
    """Headline metric name → function of the columns."""
    details: list[dict[str, Any]] = field(default_factory=list)
    """Per-item details (parsed answers, hallucinated words...) for the JSON report."""


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def binary_headline() -> dict[str, Metric]:
    """Accuracy, precision, recall, F1 and yes-ratio from columns ``pred`` (1 yes, 0 no, −1 unparsed) and ``label``."""

    def counts(c: Mapping[str, np.ndarray]) -> tuple[int, int, int, int]:
        pred, label = c["pred"], c["label"]
        tp = int(((pred == 1) & (label == 1)).sum())
        fp = int(((pred == 1) & (label == 0)).sum())
        tn = int(((pred == 0) & (label == 0)).sum())
        return tp, fp, tn, len(label)

    def f1(c: Mapping[str, np.ndarray]) -> float:
        tp, fp, _, _ = counts(c)
        p, r = ratio(tp, tp + fp), ratio(tp, int((c["label"] == 1).sum()))
        return ratio(2 * p * r, p + r)

    return {
        "accuracy": lambda c: ratio(counts(c)[0] + counts(c)[2], counts(c)[3]),
        "precision": lambda c: ratio(counts(c)[0], counts(c)[0] + counts(c)[1]),
        "recall": lambda c: ratio(counts(c)[0], int((c["label"] == 1).sum())),
        "f1": f1,
        "yes_ratio": lambda c: ratio(int((c["pred"] == 1).sum()), len(c["pred"])),
    }
