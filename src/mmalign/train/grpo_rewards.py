"""GRPO's reward calls and rollout metrics: every reward function called once on a step's completions with TRL's
``reward_funcs`` signature, its values checked, and the metrics TRL logs for them (:mod:`mmalign.train.grpo`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mmalign.errors import ConfigError
from mmalign.losses.advantages import nanstd
from mmalign.models.rollout import Rollouts
from mmalign.train.prompts import Prompt

RewardFunction = Callable[..., Sequence[float | None]]
"""TRL's ``reward_funcs`` signature: ``f(prompts, completions, completion_ids, **columns) -> [float | None]``."""


def call_rewards(
    reward_funcs: list[tuple[str, RewardFunction, float]], prompts: list[Prompt], rollouts: Rollouts, state: Any
) -> torch.Tensor:
    """(B·G, F) the reward functions' values (NaN for None), checked: one number or None per completion. Called as
    TRL calls them: ``prompts``, ``completions`` (conversational), ``completion_ids``, ``trainer_state`` and each
    prompt column as a keyword list (one value per completion)."""
    rows = rollouts.prompt_index.tolist()
    names = sorted({name for p in prompts for name in p.columns})
    columns = {name: [prompts[r].columns.get(name) for r in rows] for name in names}
    completions = [[{"role": "assistant", "content": text}] for text in rollouts.texts]
    ids = [r[m.bool()].tolist() for r, m in zip(rollouts.completion_ids, rollouts.completion_mask, strict=True)]
    out = torch.full((len(rows), len(reward_funcs)), float("nan"), dtype=torch.float32)
    for j, (name, fn, _) in enumerate(reward_funcs):
        values = fn(
            prompts=[prompts[r].prompt for r in rows],
            completions=completions,
            completion_ids=ids,
            trainer_state=state,
            **columns,
        )
        if len(values) != len(rows):
            raise ConfigError(f"reward {name!r} returned {len(values)} values for {len(rows)} completions")
        for i, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"reward {name!r} returned {value!r} for a completion: expected a number or None")
            out[i, j] = float(value)
    return out


def rollout_metrics(
    rollouts: Rollouts,
    per_function: torch.Tensor,
    total: torch.Tensor,
    advantages: Any,
    reward_funcs: list[tuple[str, RewardFunction, float]],
    group_size: int,
) -> dict[str, float]:
    """TRL's metric names: ``reward``, ``reward_std``, ``frac_reward_zero_std``, ``completions/*`` and each
    function's ``rewards/<name>/mean`` and ``/std`` (the mean within-group std); NaN values left out."""
    lengths = rollouts.completion_mask.sum(-1).float()
    out = {
        "reward": _nanmean(total),
        "reward_std": _nanmean(advantages.reward_std),
        "frac_reward_zero_std": advantages.zero_std_fraction,
        "completions/mean_length": lengths.mean().item(),
        "completions/min_length": lengths.min().item(),
        "completions/max_length": lengths.max().item(),
        "completions/clipped_ratio": 1.0 - rollouts.finished.float().mean().item(),
    }
    for j, (name, _, _) in enumerate(reward_funcs):
        values = per_function[:, j]
        out[f"rewards/{name}/mean"] = _nanmean(values)
        out[f"rewards/{name}/std"] = _nanmean(nanstd(values.view(-1, group_size), dim=1))
    return {k: v for k, v in out.items() if not math.isnan(v)}


def _nanmean(t: torch.Tensor) -> float:
    return float(torch.nanmean(t.float())) if t.numel() else float("nan")
