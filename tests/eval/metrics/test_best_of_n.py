"""Best-of-n's exact estimator against enumerating every n-subset, by hand on three samples, with ties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mmalign.eval.metrics.best_of_n import best_of_n, best_of_n_curve, kl_best_of_n, rank_weights


def brute_force(proxy: list[float], values: list[float], n: int) -> float:
    """Mean over every n-subset of the kept sample's value; tied best proxies share the choice equally."""
    kept = []
    for subset in itertools.combinations(range(len(proxy)), n):
        top = max(proxy[i] for i in subset)
        best = [values[i] for i in subset if proxy[i] == top]
        kept.append(sum(best) / len(best))
    return sum(kept) / len(kept)


def test_three_samples_by_hand():
    # proxy 0.1, 0.9, 0.5 -> ascending ranks: sample 0 (v=10), sample 2 (v=30), sample 1 (v=20)
    proxy, values = [0.1, 0.9, 0.5], [10.0, 20.0, 30.0]
    assert best_of_n(proxy, values, 1) == pytest.approx(20.0)  # the mean
    # n=2: subsets {0,1}->20, {0,2}->30, {1,2}->20: mean 70/3; weights C(j-1,1)/3 = 0, 1/3, 2/3
    assert rank_weights(3, 2).tolist() == pytest.approx([0, 1 / 3, 2 / 3])
    assert best_of_n(proxy, values, 2) == pytest.approx(70 / 3)
    assert best_of_n(proxy, values, 3) == pytest.approx(20.0)  # always the top-proxy sample


def test_matches_enumeration_of_every_subset():
    rng = np.random.default_rng(0)
    for n_samples in (5, 8):
        proxy = rng.normal(size=n_samples).round(1).tolist()  # rounded: some ties
        proxy[1] = proxy[3]  # at least one tie
        values = rng.uniform(size=n_samples).tolist()
        for n in range(1, n_samples + 1):
            assert best_of_n(proxy, values, n) == pytest.approx(brute_force(proxy, values, n), abs=1e-12), n


def test_weights_sum_to_one_and_curve_and_kl():
    for n in (1, 2, 7, 64):
        weights = rank_weights(64, n)
        assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert rank_weights(64, 64)[-1] == 1.0
    proxy = [3.0, 1.0, 2.0, 0.0]
    curve = best_of_n_curve(proxy, proxy, [1, 2, 4])
    # of the proxy itself: n=1 mean 1.5; n=2 (0·0 + 1·1 + 2·2 + 3·3)/6 = 14/6; n=4: 3
    assert curve == pytest.approx({1: 1.5, 2: 14 / 6, 4: 3.0})
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(64) == pytest.approx(math.log(64) - 63 / 64)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="1 <= n <= N"):
        best_of_n([1.0, 2.0], [1.0, 2.0], 3)
    with pytest.raises(ValueError, match="equal-length"):
        best_of_n([1.0, 2.0], [1.0], 1)
    with pytest.raises(ValueError, match="finite"):
        best_of_n([1.0, float("nan")], [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="at least 1"):
        kl_best_of_n(0)
