"""Evaluation metrics: pure functions (lists in, numbers out) with the official scripts' definitions.

Metric modules: :mod:`.pope`, :mod:`.chair`, :mod:`.mme`, :mod:`.multiple_choice`, :mod:`.consistency`,
:mod:`.safety`, :mod:`.reward`, :mod:`.preference` (Bradley–Terry) and :mod:`.bootstrap` (intervals and
paired deltas). Readers of the official files: :mod:`.official` and :mod:`.coco`. Scoring a task from its
files with these is :mod:`mmalign.eval.scoring`.
"""

from mmalign.eval.metrics.bootstrap import Interval, bootstrap_interval, mean_interval, paired_difference
from mmalign.eval.metrics.chair import chair_metrics
from mmalign.eval.metrics.consistency import PairedItem, consistency_metrics
from mmalign.eval.metrics.mme import mme_parse, mme_subtask, mme_totals
from mmalign.eval.metrics.multiple_choice import mc_metrics, parse_choice
from mmalign.eval.metrics.pope import binary_metrics, official_yes_no, pope_metrics, strict_yes_no
from mmalign.eval.metrics.preference import Battle, bradley_terry, leaderboard
from mmalign.eval.metrics.reward import RewardPair, dpo_implicit_reward, reward_accuracy
from mmalign.eval.metrics.safety import SafetyItem, is_refusal, safety_metrics

__all__ = [
    "Battle",
    "Interval",
    "PairedItem",
    "RewardPair",
    "SafetyItem",
    "binary_metrics",
    "bootstrap_interval",
    "bradley_terry",
    "chair_metrics",
    "consistency_metrics",
    "dpo_implicit_reward",
    "is_refusal",
    "leaderboard",
    "mc_metrics",
    "mean_interval",
    "mme_parse",
    "mme_subtask",
    "mme_totals",
    "official_yes_no",
    "paired_difference",
    "parse_choice",
    "pope_metrics",
    "reward_accuracy",
    "safety_metrics",
    "strict_yes_no",
]
