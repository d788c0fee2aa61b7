"""Percentile bootstrap intervals for any per-item metric, and for the paired difference between two runs.

Items are the resampling unit (a question, a caption, an image with its two MME questions...). A metric
is a function of *columns*: a dict of equal-length numpy arrays, one row per item, so a metric that is not
a mean (F1, CHAIR-i = hallucinated mentions / mentions) is resampled correctly, by recomputing it on each
resample. The interval is the ``(1 − confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
resampled values (Efron's percentile method, numpy's linear interpolation); the estimate is the metric on
the full data.

For before/after comparisons (:func:`paired_difference`) both runs must hold the same items in the same
order; each resample draws the same item indices for both, so the interval reflects item-level pairing
(much narrower than two independent intervals when the runs agree on most items).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Columns = Mapping[str, np.ndarray]
Metric = Callable[[Columns], float]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    """Items."""
    n_resamples: int
    share_above_zero: float | None = None
    """For a difference: share of resamples where it is > 0 (how often "after" beats "before")."""

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _check(columns: Columns) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns must have one common length, got {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        raise ValueError("cannot bootstrap zero items")
    return n


def _take(columns: Columns, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in columns.items()}


def _as_columns(columns: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in columns.items()}


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(
    columns: Mapping[str, Sequence[float] | np.ndarray],
    metric: Metric,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``metric(columns)``, resampling rows with replacement."""
    cols = _as_columns(columns)
    n = _check(cols)
    rng = np.random.default_rng(seed)
    values = np.array([metric(_take(cols, rng.integers(0, n, n))) for _ in range(n_resamples)])
    low, high = _percentiles(values, confidence)
    return Interval(float(metric(cols)), low, high, confidence, n, n_resamples)


def mean_interval(values: Sequence[float] | np.ndarray, **kwargs: float | int) -> Interval:
    """Interval of the mean of per-item values (e.g. 0/1 correctness)."""
    return bootstrap_interval({"value": np.asarray(values, dtype=float)}, lambda c: float(c["value"].mean()), **kwargs)  # type: ignore[arg-type]


def paired_difference(
    before: Mapping[str, Sequence[float] | np.ndarray],
    after: Mapping[str, Sequence[float] | np.ndarray],
    metric: Metric,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of ``metric(after) − metric(before)`` over the same items, resampled jointly."""
    b, a = _as_columns(before), _as_columns(after)
    n = _check(b)
    if _check(a) != n:
        raise ValueError(f"before has {n} items but after has {_check(a)}: a paired comparison needs the same items")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, n)
        diffs[i] = metric(_take(a, idx)) - metric(_take(b, idx))
    low, high = _percentiles(diffs, confidence)
    return Interval(
        float(metric(a) - metric(b)), low, high, confidence, n, n_resamples, share_above_zero=float((diffs > 0).mean())
    )
