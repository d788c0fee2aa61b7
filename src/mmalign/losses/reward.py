"""Reward-model losses and metrics: pure functions of the scalar rewards a reward model gives each pair.

The reward model scores each response with one number (a scalar head on the last response token); the loss maps
the chosen and rejected rewards of B pairs to per-example losses:

    L_i = −log σ(r_c − r_r − m_i) + c·(r_c + r_r)²

Bradley–Terry (Bradley & Terry, 1952; the RLHF reward loss of Ouyang et al., 2022, Eq. 1); m_i is a margin from
the record's preference strength (Llama 2, Touvron et al., 2023, Eq. 2), 0 when records carry none; c is the
reward-centring coefficient (Eisenstein et al., 2023, "Helping or Herding?", Eq. 2), 0 by default.

From binary labels (thumbs up / down: :class:`~mmalign.data.records.FeedbackRecord`), each response alone, the loss
is the binary cross-entropy of σ(r) against the label y (1: desirable, 0: undesirable):

    L_i = −[y_i·log σ(r_i) + (1 − y_i)·log σ(−r_i)]              (:func:`label_loss`)

so σ(r) is the model's probability that the response is desirable: logistic regression on the head's score, which
is Bradley–Terry against a fixed opponent of reward 0 (a desirable response should beat it, an undesirable one
lose). Unlike Bradley–Terry it sees absolute rewards, so there is no shift to pin down (no centring) and no pair to
carry a margin: both options apply to pairs only. TRL 1.16 has no
binary-label reward trainer to compare with.

Equal to TRL 1.16's ``RewardTrainer.compute_loss`` (trl/trainer/reward_trainer.py, lines 786-795) on the same
rewards: it takes ``margin`` from the batch when the records carry one and adds
``center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)``; the mean of our
per-example losses is that sum (see tests/losses/test_reward.py, which runs TRL's own code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mmalign.config import check_ranges, option
from mmalign.losses.base import LossOutput


def bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor, margin: Tensor | None = None) -> Tensor:
    """(B,) −log σ(r_c − r_r − m): the negative log-likelihood that the chosen response wins.

    With a margin (Llama 2, Eq. 2) the chosen reward must exceed the rejected one by m before the loss falls
    below log 2; a margin of 0 is the plain Bradley–Terry loss.
    """
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference)


def reward_centering(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """(B,) (r_c + r_r)²: its mean is TRL's centring term, which pulls the rewards towards mean zero.

    Bradley–Terry only sees differences, so a constant can be added to every reward without changing the loss;
    this term picks the solution whose rewards average zero (Eisenstein et al., 2023, Eq. 2).
    """
    return (chosen_rewards + rejected_rewards) ** 2


@dataclass(frozen=True)
class RewardLoss:
    """Bradley–Terry reward-model loss, with an optional per-pair margin and optional reward centring.

    ``__call__(chosen_rewards, rejected_rewards, margin=None)`` takes (B,) rewards with gradients and an
    optional (B,) margin, and returns a :class:`~mmalign.losses.base.LossOutput` whose rewards are the
    detached inputs. Its ``loss`` equals TRL 1.16's ``RewardTrainer`` loss with
    ``center_rewards_coefficient`` = c (TRL's None is c = 0).
    """

    name: ClassVar[str] = "bradley_terry"
    paper: ClassVar[str] = "Bradley-Terry; margin: Llama 2, Touvron et al. 2023, Eq. 2"

    center_rewards_coefficient: float = option(
        0.0,
        help="c >= 0: weight of the centring term c·mean((r_c + r_r)²) that pulls the rewards towards mean zero "
        "(TRL's center_rewards_coefficient; TRL recommends 0.01). 0: off.",
        ge=0,
    )

    def __post_init__(self) -> None:
        check_ranges(self, name=lambda field: f"loss {self.name!r}: {field}")

    def __call__(self, chosen_rewards: Tensor, rejected_rewards: Tensor, margin: Tensor | None = None) -> LossOutput:
        _check_rewards(chosen_rewards, rejected_rewards, margin)
        losses = bradley_terry(chosen_rewards, rejected_rewards, margin)
        metrics: dict[str, Tensor] = {}
        if self.center_rewards_coefficient:
            centering = reward_centering(chosen_rewards, rejected_rewards)
            losses = losses + self.center_rewards_coefficient * centering
            metrics["centering"] = centering.detach().mean()
        return LossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach(), metrics)


def reward_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, float]:
    """What to log about a reward model on (B,) chosen and rejected rewards (a batch, or a whole held-out set).

    TRL 1.16's ``RewardTrainer`` keys and values: ``accuracy`` is the fraction of pairs whose chosen reward is
    *strictly* higher, so a tie counts as wrong (TRL: ``(rewards_chosen > rewards_rejected).float().mean()``);
    ``margin`` the mean of r_c − r_r; ``min_reward``, ``mean_reward``, ``max_reward`` over all 2B rewards.
    Added here: ``chosen_reward_mean``, ``chosen_reward_std``, ``rejected_reward_mean``, ``rejected_reward_std``
    (population std, so one pair gives 0, not NaN).

    Across processes TRL averages each process's accuracy and margin, which equals these on the gathered rewards
    when every process holds the same number of pairs; its min/mean/max are over the gathered rewards.
    """
    chosen, rejected = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    _check_rewards(chosen, rejected, None)
    both = torch.cat([chosen, rejected])
    return {
        "accuracy": (chosen > rejected).float().mean().item(),
        "margin": (chosen - rejected).mean().item(),
        "min_reward": both.min().item(),
        "mean_reward": both.mean().item(),
        "max_reward": both.max().item(),
        "chosen_reward_mean": chosen.mean().item(),
        "chosen_reward_std": chosen.std(correction=0).item(),
        "rejected_reward_mean": rejected.mean().item(),
        "rejected_reward_std": rejected.std(correction=0).item(),
    }


def label_loss(rewards: Tensor, label: Tensor) -> Tensor:
    """(B,) binary cross-entropy of σ(r) against the label (True: desirable): −log σ(r) or −log σ(−r)."""
    _check_labels(rewards, label)
    return F.binary_cross_entropy_with_logits(rewards, label.to(rewards.dtype), reduction="none")


def label_metrics(rewards: Tensor, label: Tensor) -> dict[str, float]:
    """What to log about a reward model on (B,) rewards of labelled single responses: ``accuracy`` (the sign of r
    agrees with the label: r > 0 for desirable, r < 0 for undesirable; 0 counts as wrong), ``min_reward``,
    ``mean_reward``, ``max_reward``, and ``desirable_reward_mean`` / ``undesirable_reward_mean`` (left out when the
    batch has no response with that label)."""
    r, y = rewards.detach().float(), label.bool()
    _check_labels(r, y)
    out = {
        "accuracy": torch.where(y, r > 0, r < 0).float().mean().item(),
        "min_reward": r.min().item(),
        "mean_reward": r.mean().item(),
        "max_reward": r.max().item(),
    }
    for name, mask in (("desirable", y), ("undesirable", ~y)):
        if mask.any():
            out[f"{name}_reward_mean"] = r[mask].mean().item()
    return out


def _check_labels(rewards: Tensor, label: Tensor) -> None:
    if rewards.dim() != 1 or rewards.shape[0] == 0 or tuple(label.shape) != tuple(rewards.shape):
        raise ValueError(f"rewards and labels must both be (B,), got {tuple(rewards.shape)} and {tuple(label.shape)}")


def _check_rewards(chosen: Tensor, rejected: Tensor, margin: Tensor | None) -> None:
    """(B,) everywhere: broadcasting (B,) against (B, 1) would silently give (B, B) (a caller's bug)."""
    shape = tuple(chosen.shape)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"chosen rewards must have shape (B,) with B >= 1, got {shape}")
    for what, value in (("rejected rewards", rejected), ("margin", margin)):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{what} have shape {tuple(value.shape)}; expected {shape} like the chosen rewards")
