"""The critique-then-score reward loss (MM-RLHF, Zhang et al., 2025, §4.1): Bradley–Terry on the rewards the head
gives the critique-conditioned sequences, plus the language-model loss of the critiques themselves.

    L = mean_i BT_i + w · (Σ_rows Σ_t −log p(c_t | c_<t, ...)) / (number of critique tokens)

BT_i is :class:`~mmalign.losses.reward.RewardLoss`'s per-pair loss (margin and centring included); the second term
is the mean NLL per critique token over both sides of every pair in the micro-batch (labels only on the critique
tokens, end-of-turn included), weighted by w (``rm.critique_weight``). MM-RLHF's trainer
(trl/trainer/reward_trainer.py: ``loss_reward + critic_rewards_weight * (loss_critic_positive +
loss_critic_negative)``) adds the chosen rows' mean token NLL and the rejected rows' one, so its weight w' is
w / 2 here when both sides have as many critique tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100
"""Label of a position that is not a critique token (prompt, response, request, image, padding)."""


def critique_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B,) summed NLL of each row's labelled tokens and (B,) their count: the logits at position t − 1 predict the
    token at t (``logits`` (B, T, V), ``labels`` (B, T) with -100 off the critique). The log-softmax runs in fp32
    and only at labelled positions."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not line up with labels {tuple(labels.shape)}")
    targets = labels[:, 1:].to(logits.device)
    mask = targets != IGNORE
    picked = logits[:, :-1][mask].float().log_softmax(-1).gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
    nll = torch.zeros(targets.shape, dtype=torch.float32, device=logits.device).masked_scatter(mask, -picked)
    return nll.sum(-1), mask.sum(-1)


def critique_loss(pair_losses: Tensor, nll_sum: Tensor, n_tokens: Tensor, weight: float) -> tuple[Tensor, Tensor]:
    """The scalar to back-propagate, ``mean(pair_losses) + weight · Σ nll_sum / Σ n_tokens``, and the mean token
    NLL (detached; 0 when no row has a critique token, e.g. every critique truncated away)."""
    mean_nll = nll_sum.sum() / n_tokens.sum().clamp(min=1)
    return pair_losses.mean() + weight * mean_nll, mean_nll.detach()
