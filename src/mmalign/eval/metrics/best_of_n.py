"""Best-of-n under a proxy reward, estimated exactly from N ≥ n samples per prompt (no resampling noise).

Best-of-n draws n responses and keeps the one the proxy reward scores highest. With N samples of one prompt
already drawn, the expected value of any quantity v (the gold reward, the proxy itself) at the kept response,
over all C(N, n) equally likely n-subsets, is exact: sort the samples by proxy, ascending, rank j = 1 … N; the
sample of rank j is the subset's best exactly when it is in the subset and the other n − 1 members come from
the j − 1 below it, so

    E[v(best of n)] = Σ_j  C(j − 1, n − 1) / C(N, n) · v_(j)

(the unbiased estimator of Nakano et al., 2021, WebGPT App. I, as Gao et al., 2022, "Scaling Laws for Reward
Model Overoptimization", use for their best-of-n curves). Ties in the proxy are broken uniformly at random:
the tied samples' weights are pooled and shared equally, i.e. each tied sample's v is replaced by the group
mean, which is exact (given that the best lies in a tied group, each of its members is equally likely).

The distance of best-of-n from the sampling policy is Gao et al.'s analytic ``KL_bon = log n − (n − 1) / n``
(nats), the x axis of their curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def kl_best_of_n(n: int) -> float:
    """``log n − (n − 1) / n``: the KL divergence (nats) of best-of-n from the policy (Gao et al., 2022, §2)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return math.log(n) - (n - 1) / n


def rank_weights(n_samples: int, n: int) -> np.ndarray:
    """(N,) the probability that the sample of ascending rank j (j = 1 … N) is the best of a uniformly random
    n-subset: ``C(j − 1, n − 1) / C(N, n)`` (exact integers, then divided); sums to 1."""
    if not 1 <= n <= n_samples:
        raise ValueError(f"best-of-n needs 1 <= n <= N samples, got n={n}, N={n_samples}")
    total = math.comb(n_samples, n)
    return np.array([math.comb(j - 1, n - 1) / total for j in range(1, n_samples + 1)], dtype=float)


def best_of_n(proxy: Sequence[float], values: Sequence[float], n: int) -> float:
    """The expected ``values`` of the sample kept by best-of-n under ``proxy`` over every n-subset of one
    prompt's N samples (see the module docstring; proxy ties broken uniformly at random)."""
    scores = np.asarray(proxy, dtype=float)
    v = np.asarray(values, dtype=float)
    if scores.shape != v.shape or scores.ndim != 1:
        raise ValueError(f"proxy and values must be two equal-length lists, got shapes {scores.shape}, {v.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("the proxy rewards must be finite numbers")
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_values = scores[order], v[order]
    # tied proxies: each member gets its tie group's mean value
    _, group, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    sums = np.bincount(group, weights=sorted_values)
    pooled = (sums / counts)[group]
    return float(rank_weights(len(scores), n) @ pooled)


def best_of_n_curve(proxy: Sequence[float], values: Sequence[float], ns: Sequence[int]) -> dict[int, float]:
    """``{n: best_of_n(proxy, values, n)}`` for each n."""
    return {int(n): best_of_n(proxy, values, int(n)) for n in ns}
