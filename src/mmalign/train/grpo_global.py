"""What a ``train grpo`` step computes over every process, so that N processes update as one process would on the
union of their rollouts (``accelerate launch``; tests/train/test_grpo_processes.py).

Each process samples its own prompts' groups (a group never straddles processes), and DDP averages the gradients
of the processes' losses. Averaging is the union's loss for an aggregation that is a mean over a fixed number of
completions per process (``grpo``, ``sapo``, ``luspo``, ``rloo``, ``dr_grpo``), since every process holds the
same number. Three things need the other processes:

* **token-normalised losses** (``dapo``, ``cispo``): the union's loss is Σ over every process's tokens / the
  number of those tokens N. Each process divides its token sum by N / processes (one all-reduce of its count),
  so the average of the processes' losses is exactly Σ / N, TRL's ``num_items_in_batch`` / processes. Alone it
  would divide by its own count: the mean of per-process token means, which weights a token of a process with
  short completions more. ``bnpo`` stays the per-process token mean (as in TRL). With ``train.grad_accum`` > 1
  each micro-batch is sampled when it runs, so N is the micro-batch's tokens over every process and ``Trainer``
  divides by the accumulation steps: the step's loss is the mean over micro-batches of their token means, where
  TRL divides by the tokens of the whole accumulated batch (it samples every micro-batch first);
* **batch-wide reward statistics** (``grpo.scale_rewards: batch``, ``grpo.rloo_normalize``): the rewards are
  gathered from every process, the advantages computed on all of them (as TRL does) and each process keeps its
  rows;
* **extremes** (``completions/min_length``, ``/max_length``, ``clip_ratio/low_min``, ``/high_max``): the min or
  max over every process, so the core's example-weighted mean of the processes' metrics logs TRL's values.

Held-out evaluation stays per process (no collective: its batches need not line up), its metrics averaged by the
core.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mmalign.errors import ConfigError
from mmalign.losses.advantages import Advantages, group_advantages, rloo_advantages
from mmalign.losses.grpo import GRPOLoss

TOKEN_NORMALISED = ("dapo", "cispo")
"""Loss types whose denominator is the tokens of the batch over every process."""

EXTREMES = {
    "completions/min_length": min,
    "completions/max_length": max,
    "clip_ratio/low_min": min,
    "clip_ratio/high_max": max,
}


def _shared(accelerator: Any, training: bool) -> bool:
    return training and accelerator is not None and accelerator.num_processes > 1


def token_denominator(loss: GRPOLoss, mask: Tensor, accelerator: Any, training: bool) -> Tensor | None:
    """``num_tokens`` for ``loss``: the active tokens of this micro-batch over every process / processes, for the
    token-normalised losses in a multi-process training step; None (the loss's own count) otherwise."""
    if loss.loss_type not in TOKEN_NORMALISED or not _shared(accelerator, training):
        return None
    count = mask.detach().sum().reshape(1).to(accelerator.device, torch.float64)
    total = accelerator.reduce(count, reduction="sum")
    return (total / accelerator.num_processes).to(mask.device, mask.dtype).squeeze(0)


def step_advantages(options: Any, total: Tensor, accelerator: Any, training: bool) -> Advantages:
    """The advantages of this process's completions (``options``: ``grpo``'s section): batch-wide statistics over
    every process's rewards in a multi-process training step."""
    g = options.group_size

    def compute(rewards: Tensor) -> Advantages:
        if options.advantage == "rloo":
            return rloo_advantages(rewards, g, normalize=options.rloo_normalize)
        return group_advantages(rewards, g, options.scale_rewards)

    batch_wide = options.rloo_normalize if options.advantage == "rloo" else options.scale_rewards == "batch"
    if not batch_wide or not _shared(accelerator, training):
        return compute(total)
    n = total.numel()
    everyone = accelerator.gather(total.to(accelerator.device)).to(total.device)
    if everyone.numel() != n * accelerator.num_processes:
        raise ConfigError(
            f"batch-wide advantages need as many completions on every process: {n} here, "
            f"{everyone.numel()} over {accelerator.num_processes} processes"
        )
    out = compute(everyone)
    mine = slice(accelerator.process_index * n, (accelerator.process_index + 1) * n)
    return Advantages(out.advantages[mine], out.reward_std[mine])


def global_extremes(metrics: dict[str, float], accelerator: Any, training: bool) -> dict[str, float]:
    """``metrics`` with its min and max metrics (:data:`EXTREMES`) taken over every process in a multi-process
    training step (a metric no process has stays out)."""
    if not _shared(accelerator, training):
        return metrics
    keys = sorted(EXTREMES)
    signs = [1.0 if EXTREMES[k] is max else -1.0 for k in keys]  # min = −max(−x): one all-reduce of maxima
    values = [
        sign * metrics[k] if k in metrics and not math.isnan(metrics[k]) else -math.inf
        for k, sign in zip(keys, signs, strict=True)
    ]
    found = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    torch.distributed.all_reduce(found, op=torch.distributed.ReduceOp.MAX)
    out = {k: v for k, v in metrics.items() if k not in EXTREMES}
    for key, sign, value in zip(keys, signs, found.tolist(), strict=True):
        if value != -math.inf:
            out[key] = sign * value
    return out
