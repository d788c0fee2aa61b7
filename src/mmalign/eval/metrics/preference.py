"""Ranking models from pairwise battles: a Bradley–Terry fit with bootstrap intervals, Arena-Hard style.

Arena-Hard (Li et al., 2024; ``show_result.py``, v0.1) fits Elo-scale Bradley–Terry ratings by logistic
regression without intercept on battles: each battle is a row with ``+ln(base)`` for model A and
``−ln(base)`` for model B; the battle list is duplicated, a win for A is ``y = 1`` in both copies, a win for B
``y = 0`` in both, and a tie (``tie`` or ``tie (bothbad)``) is ``y = 1`` in one copy and ``0`` in the other,
i.e. half a win each. Ratings are ``scale · θ + init`` (400, 10, 1000) and the anchor model is shifted to
``init``. Judge verdicts ``A>>B`` / ``B>>A`` count as ``strong_weight`` (3) battles, ``A>B`` / ``B>A`` as one,
``A=B`` as one tie, as in its ``get_battles_from_judgment``.

The fit here is Newton's method on the same likelihood (unpenalised). The likelihood does not change when
every θ moves by the same amount; the fit keeps ``sum θ = 0`` (where scikit-learn's solver, started at 0,
also stays), so without an anchor the ratings average ``init``. A model that wins or loses every battle has
no finite maximum: its rating only says "far above/below" and the fit reports ``converged=False`` (also
when Newton's method did not settle within ``max_iter`` steps).

Intervals: the battles (each weighted battle expanded into copies, as Arena-Hard appends them) are resampled
with replacement ``n_rounds`` times, ratings refitted, and the 2.5 / 97.5 percentiles taken; the point
rating is the fit on all battles. ``win_rate`` against the anchor is ``1 / (1 + base^((R_anchor − R) / scale))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
VERDICTS = {
    "A>>B": ("model_a", True),
    "A>B": ("model_a", False),
    "A=B": ("tie", False),
    "B>A": ("model_b", False),
    "B>>A": ("model_b", True),
}


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    winner: str
    """One of :data:`WINNERS`."""
    weight: int = 1
    """How many identical battles this row stands for."""


def battle_from_verdict(model_a: str, model_b: str, verdict: str, strong_weight: int = 3) -> Battle:
    """A battle from an Arena-Hard judge label (``A>>B``, ``A>B``, ``A=B``, ``B>A``, ``B>>A``)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {list(VERDICTS)}, got {verdict!r}")
    winner, strong = VERDICTS[verdict]
    return Battle(model_a, model_b, winner, strong_weight if strong else 1)


@dataclass
class Ratings:
    ratings: dict[str, float]
    converged: bool
    n_battles: int


def _win_matrix(battles: Sequence[Battle], index: dict[str, int]) -> np.ndarray:
    """``W[i, j]``: wins of model i over model j, ties counting half."""
    wins = np.zeros((len(index), len(index)))
    for b in battles:
        i, j = index[b.model_a], index[b.model_b]
        if b.winner == "model_a":
            wins[i, j] += b.weight
        elif b.winner == "model_b":
            wins[j, i] += b.weight
        elif b.winner in ("tie", "tie (bothbad)"):
            wins[i, j] += b.weight / 2
            wins[j, i] += b.weight / 2
        else:
            raise ValueError(f"winner must be one of {list(WINNERS)}, got {b.winner!r}")
    return wins


def _fit(wins: np.ndarray, log_base: float, max_iter: int, tol: float) -> tuple[np.ndarray, bool]:
    p = wins.shape[0]
    games = wins + wins.T
    theta = np.zeros(p)
    ones = np.ones((p, p)) / p
    for _ in range(max_iter):
        diff = log_base * (theta[:, None] - theta[None, :])
        prob = 1.0 / (1.0 + np.exp(-diff))  # P(i beats j)
        grad = log_base * (wins - games * prob).sum(axis=1)
        weights = games * prob * (1 - prob) * log_base**2
        hessian = np.diag(weights.sum(axis=1)) - weights + ones  # + ones: curvature along the free shift
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]  # min-norm: models never compared stay put
        step = np.clip(step, -1.0, 1.0)  # at most 400 points a step: separable data diverges slowly, not wildly
        theta = theta + step
        theta -= theta.mean()
        if np.max(np.abs(step)) < tol:
            return theta, True
    return theta, False


def bradley_terry(
    battles: Sequence[Battle],
    *,
    anchor: str | None = None,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Ratings:
    """Elo-scale Bradley–Terry ratings of the models in ``battles`` (see the module docstring)."""
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    if len(models) < 2:
        raise ValueError("need battles between at least two models")
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor model {anchor!r} is in no battle")
    index = {m: i for i, m in enumerate(models)}
    wins = _win_matrix(battles, index)
    theta, converged = _fit(wins, math.log(base), max_iter, tol)
    if np.any(wins.sum(axis=1) == 0) or np.any(wins.sum(axis=0) == 0):
        converged = False  # a model won (or lost) every battle: no finite maximum
    ratings = scale * theta + init
    if anchor is not None:
        ratings += init - ratings[index[anchor]]
    return Ratings({m: float(ratings[index[m]]) for m in models}, converged, sum(b.weight for b in battles))


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Per model, best first: rating, low, high and (with an anchor) win rate vs the anchor with its interval."""
    anchor: str | None = None
    n_battles: int = 0
    n_rounds: int = 0
    converged: bool = True


def leaderboard(
    battles: Sequence[Battle],
    *,
    anchor: str | None = None,
    n_rounds: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> Leaderboard:
    """Ratings on all battles plus bootstrap percentile intervals (``n_rounds`` resamples of the battles)."""
    kwargs = {"anchor": anchor, "scale": scale, "base": base, "init": init}
    point = bradley_terry(battles, **kwargs)  # type: ignore[arg-type]
    expanded = [Battle(b.model_a, b.model_b, b.winner) for b in battles for _ in range(b.weight)]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {m: [] for m in point.ratings}
    for _ in range(n_rounds):
        resample = [expanded[i] for i in rng.integers(0, len(expanded), len(expanded))]
        present = {b.model_a for b in resample} | {b.model_b for b in resample}
        if len(present) < len(point.ratings):
            continue  # a model drew no battle: its rating is undefined in this resample
        fitted = bradley_terry(resample, **kwargs)  # type: ignore[arg-type]
        for m, r in fitted.ratings.items():
            samples[m].append(r)
    tail = (1 - confidence) / 2 * 100

    def win_rate(r: float) -> float:
        return 1.0 / (1.0 + base ** ((point.ratings[anchor] - r) / scale))  # type: ignore[index]

    rows = []
    for model, rating in sorted(point.ratings.items(), key=lambda kv: -kv[1]):
        low, high = np.percentile(samples[model], [tail, 100 - tail]) if samples[model] else (rating, rating)
        row: dict[str, Any] = {"model": model, "rating": rating, "low": float(low), "high": float(high)}
        if anchor is not None:
            row.update(
                win_rate=win_rate(rating), win_rate_low=win_rate(float(low)), win_rate_high=win_rate(float(high))
            )
        rows.append(row)
    return Leaderboard(rows, anchor, point.n_battles, n_rounds, point.converged)
