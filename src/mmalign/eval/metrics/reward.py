"""Reward-model accuracy on held-out preference pairs (MM-RLHF-RewardBench, VL-RewardBench).

A pair is right when the chosen response scores *strictly* higher than the rejected one. A tie is wrong,
as in MM-RLHF-RewardBench (``rewards[0] > rewards[1]``) and RewardBench; ``ties="half"`` gives a tie half
a point instead (reported separately, never the default). VL-RewardBench's generative judges pick one of the
two responses, so ties cannot occur there; an unparseable judgement is a random pick in its script.

Reported: overall accuracy; per category; ``macro_accuracy``, the mean of the category accuracies
(VL-RewardBench's headline "macro average"); and ``acc_plus``, the share of prompt groups whose pairs are
*all* right (MM-RLHF-RewardBench's Acc+; pairs without a group are each their own group).

DPO's implicit reward (Rafailov et al., 2023, Eq. 5): ``r(x, y) = β · (log π(y|x) − log π_ref(y|x))``; the
``β log Z(x)`` term is the same for both responses of a pair and cancels in the comparison.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class RewardPair:
    id: str
    chosen: float
    """Reward of the preferred response."""
    rejected: float
    category: str = ""
    group: str | None = None
    """Pairs sharing a group come from the same prompt (for acc+)."""


def dpo_implicit_reward(policy_logp: float, reference_logp: float, beta: float) -> float:
    """``β · (log π(y|x) − log π_ref(y|x))``: DPO's implicit reward, up to the prompt's log-partition term."""
    return beta * (policy_logp - reference_logp)


def _credit(pair: RewardPair, ties: str) -> float:
    if pair.chosen > pair.rejected:
        return 1.0
    if pair.chosen == pair.rejected and ties == "half":
        return 0.5
    return 0.0


def _summary(pairs: Sequence[RewardPair], ties: str) -> dict[str, Any]:
    credits = [_credit(p, ties) for p in pairs]
    groups: dict[str, list[bool]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        groups[pair.group if pair.group is not None else f"\0{pair.id}\0{i}"].append(pair.chosen > pair.rejected)
    all_right = sum(all(v) for v in groups.values())
    n = len(pairs)
    return {
        "n": n,
        "correct": sum(c == 1.0 for c in credits),
        "ties": sum(p.chosen == p.rejected for p in pairs),
        "accuracy": sum(credits) / n if n else 0.0,
        "n_groups": len(groups),
        "groups_all_correct": all_right,
        "acc_plus": all_right / len(groups) if groups else 0.0,
    }


def reward_accuracy(pairs: Sequence[RewardPair], ties: Literal["wrong", "half"] = "wrong") -> dict[str, Any]:
    """Pairwise accuracy overall and per category, macro accuracy and acc+ (see the module docstring).

    Acc+ always needs strict wins (a tie never completes a group), whatever ``ties`` says.
    """
    if ties not in ("wrong", "half"):
        raise ValueError(f"ties must be 'wrong' or 'half', got {ties!r}")
    by_category: dict[str, list[RewardPair]] = defaultdict(list)
    for pair in pairs:
        by_category[pair.category].append(pair)
    out = _summary(pairs, ties)
    out["ties_policy"] = ties
    if any(pair.category for pair in pairs):
        categories = {c: _summary(ps, ties) for c, ps in sorted(by_category.items())}
        out["categories"] = categories
        out["macro_accuracy"] = sum(c["accuracy"] for c in categories.values()) / len(categories)
    return out
