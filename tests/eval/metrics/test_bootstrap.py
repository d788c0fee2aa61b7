"""Percentile bootstrap intervals and paired deltas."""

from __future__ import annotations

import numpy as np
import pytest

from mmalign.eval.metrics.bootstrap import bootstrap_interval, mean_interval, paired_difference


def test_constant_values_give_a_point_interval():
    iv = mean_interval([1.0] * 10, n_resamples=50)
    assert (iv.estimate, iv.low, iv.high, iv.n) == (1.0, 1.0, 1.0, 10)


def test_mean_interval_covers_and_narrows_with_n():
    small = mean_interval([0, 1] * 10, n_resamples=500, seed=1)
    large = mean_interval([0, 1] * 500, n_resamples=500, seed=1)
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3  # width ~ 1/sqrt(n): 7x narrower
    # normal approximation for n=1000, p=0.5: half-width 1.96 * 0.5 / sqrt(1000) = 0.031
    assert (large.high - large.low) / 2 == pytest.approx(0.031, abs=0.006)


def test_ratio_metric_is_recomputed_per_resample():
    cols = {"num": np.array([1, 0, 2, 1]), "den": np.array([2, 1, 2, 3])}
    iv = bootstrap_interval(cols, lambda c: c["num"].sum() / c["den"].sum(), n_resamples=200)
    assert iv.estimate == pytest.approx(4 / 8)  # ratio of sums, not mean of ratios (0.5625)
    assert 0 <= iv.low <= iv.estimate <= iv.high <= 1


def test_paired_difference():
    before = {"correct": np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 1])}
    after = {"correct": np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1])}  # three items fixed, none broken
    d = paired_difference(before, after, lambda c: float(c["correct"].mean()), n_resamples=300)
    assert d.estimate == pytest.approx(0.3)
    assert d.low >= 0.0 and d.share_above_zero > 0.9  # pairing: a difference can never be negative here
    with pytest.raises(ValueError, match="same items"):
        paired_difference(before, {"correct": np.array([1, 0])}, lambda c: 0.0)
    with pytest.raises(ValueError, match="zero items"):
        mean_interval([])
