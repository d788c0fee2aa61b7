"""Advantages for online RL: rewards of G completions per prompt → one advantage per completion.

Rollouts come in groups: each prompt is answered ``group_size`` (G) times, and the rewards arrive flat, shape
``(N,)`` with N = B·G, the G completions of a prompt next to each other (``[p0c0, p0c1, …, p1c0, …]``), as
TRL's ``GRPOTrainer`` lays them out. A reward may be NaN: the completion could not be scored (every reward function
returned None). NaN rewards are left out of every mean and std, and their advantage is 0, as in TRL.

GRPO (Shao et al., 2024, "DeepSeekMath", Sec. 4.1.2): A_i = (r_i − mean(r_group)) / (std + 1e-4), where ``scale``
says which std (:data:`SCALE_REWARDS`): ``group`` the std of the completion's group, ``batch`` the std of the whole
batch (PPO Lite, Liu et al., 2025), ``none`` no division (Dr. GRPO, Liu et al., 2025: the division biases towards
too-easy and too-hard questions). The std is the *sample* std (Bessel's correction, n − 1), NaN-aware.

GDPO (Group reward-Decoupled normalization, 2026, TRL's ``multi_objective_aggregation="normalize_then_sum"``):
with several reward functions, normalise each one within its group first, (r_k − mean_k) / (std_k + 1e-4), sum
them with their weights, then normalise the sums over the batch (:func:`gdpo_advantages`).

RLOO (Ahmadian et al., 2024, "Back to Basics", Eq. 2): A_i = r_i − mean of the *other* scorable completions of
the group (leave-one-out); optionally normalised over the batch, (A − mean A) / (std A + 1e-4).

**Equal to TRL 1.16**: :func:`group_advantages` to ``GRPOTrainer._generate_and_score_completions`` with
``multi_objective_aggregation="sum_then_normalize"`` and :func:`gdpo_advantages` with ``"normalize_then_sum"``
(trl/trainer/grpo_trainer.py lines 2753-2810), and
:func:`rloo_advantages` to ``RLOOTrainer._generate_and_score_completions`` (rloo_trainer.py lines 1647-1699; its
KL penalty, β·Σ(log π_old − log π_ref) per sequence, is subtracted from the rewards before, by the trainer);
:func:`combine_rewards` is the weighted sum both apply first. tests/losses/test_advantages.py runs TRL's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mmalign.errors import ConfigError

ScaleRewards = Literal["group", "batch", "none"]
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")
STD_EPS = 1e-4
"""Added to the std before dividing by it (TRL's constant)."""


@dataclass(frozen=True)
class Advantages:
    """One advantage per completion, and the reward std behind it (for logging)."""

    advantages: Tensor
    """(N,) the advantage of each completion; 0 for an unscorable (NaN-reward) completion."""
    reward_std: Tensor
    """(N,) the std of the rewards of each completion's group (``batch`` scaling: of the batch); NaN when the
    group holds fewer than two scorable rewards."""

    @property
    def zero_std_fraction(self) -> float:
        """Share of completions whose group's rewards are all equal (advantage 0: no learning signal); TRL's
        ``frac_reward_zero_std``."""
        return torch.isclose(self.reward_std, torch.zeros_like(self.reward_std)).float().mean().item()


def nanstd(values: Tensor, dim: int | None = None) -> Tensor:
    """Sample std (n − 1 in the denominator) ignoring NaNs; NaN where fewer than two values are not NaN.

    (3, 5, NaN) → mean 4, squared deviations (1, 1), their sum 2 over n − 1 = 1: variance 2, std √2.
    """
    mean = torch.nanmean(values, dim=dim, keepdim=True)
    count = (~torch.isnan(values)).sum(dim=dim, keepdim=True)
    variance = torch.nanmean((values - mean) ** 2, dim=dim, keepdim=True) * count / (count - 1)
    variance = torch.where(count > 1, variance, torch.full_like(variance, float("nan")))
    std = variance.sqrt()
    return std.squeeze() if dim is None else std.squeeze(dim)


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    if rewards.dim() != 1:
        raise ConfigError(f"rewards must be one per completion, shape (N,), got {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ConfigError(f"{rewards.numel()} rewards do not split into groups of {group_size} completions")
    return rewards.view(-1, group_size)


def combine_rewards(per_function: Tensor, weights: Tensor | list[float] | None = None) -> Tensor:
    """(N, K) rewards of K reward functions (NaN where one returned None) → (N,) their weighted sum.

    A None counts as 0 while another function scored the completion; when every function returned None the sum is
    NaN (unscorable), so the advantage functions leave it out. TRL's ``nansum`` with its ``unscorable_mask``.
    """
    if per_function.dim() != 2:
        raise ConfigError(f"rewards per function must be (N, K), got {tuple(per_function.shape)}")
    k = per_function.shape[1]
    w = torch.ones(k) if weights is None else torch.as_tensor(weights, dtype=per_function.dtype)
    if w.shape != (k,):
        raise ConfigError(f"{w.numel()} reward weights for {k} reward functions")
    total = (per_function * w.to(per_function.device, per_function.dtype)).nansum(dim=1)
    return torch.where(torch.isnan(per_function).all(dim=1), float("nan"), total)


def group_advantages(rewards: Tensor, group_size: int, scale: ScaleRewards = "group") -> Advantages:
    """GRPO's advantages: reward minus its group's mean, divided by a std as ``scale`` says (module docstring).

    Group (1, 2, 6), scale ``group``: mean 3, std √((4 + 1 + 9)/2) = √7 → (−2, −1, 3) / (√7 + 1e-4).
    """
    if scale not in SCALE_REWARDS:
        raise ConfigError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {scale!r}")
    grouped = _groups(rewards, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    if scale == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    elif group_size > 1:
        std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    else:
        std = torch.zeros_like(rewards)
    advantages = rewards - mean
    if scale != "none":
        advantages = advantages / (std + STD_EPS)
    return Advantages(torch.nan_to_num(advantages, nan=0.0), std)


def rloo_advantages(rewards: Tensor, group_size: int, normalize: bool = False) -> Advantages:
    """RLOO's advantages: reward minus the mean of the group's *other* scorable rewards (module docstring).

    Group (1, 2, 6): baselines ((2+6)/2, (1+6)/2, (1+2)/2) = (4, 3.5, 1.5) → (−3, −1.5, 4.5). A group with
    one scorable completion has no baseline: advantage 0. ``normalize``: then (A − mean) / (std + 1e-4) over the
    batch's scorable completions.
    """
    grouped = _groups(rewards, group_size)
    std = nanstd(grouped, dim=1) if group_size > 1 else torch.zeros(grouped.shape[0], dtype=rewards.dtype)
    if group_size > 1:
        scorable = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
        baselines = (torch.nansum(grouped, dim=1, keepdim=True) - grouped) / (scorable - 1)
        advantages = rewards - baselines.view(-1)
    else:
        advantages = torch.zeros_like(rewards)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + STD_EPS)
    return Advantages(torch.nan_to_num(advantages, nan=0.0), std.repeat_interleave(group_size))


def gdpo_advantages(per_function: Tensor, group_size: int, weights: Tensor | list[float] | None = None) -> Advantages:
    """GDPO: each reward function's rewards (N, K) normalised within the group, summed with ``weights``, the sums
    normalised over the batch (module docstring). A completion every function left NaN gets advantage 0.

    One group of two completions, function A scoring them (0, 1), B (3, 10): A → (−0.5, 0.5)/(√0.5 + 1e-4),
    B → (−3.5, 3.5)/(√24.5 + 1e-4); sums ±s with s = 1.4140... ; over the batch (mean 0, std s√2) → ±s/(s√2 + 1e-4).
    """
    if per_function.dim() != 2:
        raise ConfigError(f"rewards per function must be (N, K), got {tuple(per_function.shape)}")
    n, k = per_function.shape
    _groups(per_function[:, 0], group_size)  # checks that the rows split into groups
    grouped = per_function.view(-1, group_size, k)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    std = nanstd(grouped, dim=1).unsqueeze(1) if group_size > 1 else torch.zeros_like(mean)
    normalised = ((grouped - mean) / (std + STD_EPS)).view(n, k)
    # a function's NaN (None, or a group with one scorable reward) counts as 0 unless every raw reward is NaN
    rewards = combine_rewards(torch.nan_to_num(normalised, nan=0.0), weights)
    rewards = torch.where(torch.isnan(per_function).all(dim=1), float("nan"), rewards)
    batch_std = nanstd(rewards).expand_as(rewards) if n > 1 else torch.zeros_like(rewards)
    advantages = (rewards - torch.nanmean(rewards)) / (batch_std + STD_EPS)
    return Advantages(torch.nan_to_num(advantages, nan=0.0), batch_std)
