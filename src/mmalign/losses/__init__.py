"""Losses: pure functions of log-probs, one family per module.

Preference losses take per-sequence log-probs::

    loss = build_loss("sigmoid", beta=0.1)
    out = loss(PolicyLogps(...), ReferenceLogps(...) if loss.needs_reference else None)
    out.loss.backward(); preference_metrics(out, policy, reference)

Online RL (GRPO family) takes per-token log-probs of sampled completions and their group advantages::

    advantages = group_advantages(rewards, group_size=8, scale="group").advantages
    out = GRPOLoss(loss_type="dapo", beta=0.04)(RolloutLogps(policy, mask, old, reference), advantages)
"""

from mmalign.losses.advantages import Advantages, combine_rewards, gdpo_advantages, group_advantages, rloo_advantages
from mmalign.losses.base import LossOutput, PolicyLogps, PreferenceLoss, ReferenceLogps, chosen_nll
from mmalign.losses.ddpo import DenseDPOLoss, span_token_mask, span_token_weights
from mmalign.losses.dpo import ConservativeDPOLoss, HingeLoss, IPOLoss, RobustDPOLoss, SigmoidLoss
from mmalign.losses.grpo import GRPOLoss, GRPOOutput, RolloutLogps, k3_kl, sequence_kl_penalty
from mmalign.losses.mdpo import MDPOLoss
from mmalign.losses.metrics import kl_estimate, preference_metrics, sequence_kl
from mmalign.losses.orpo import ORPOLoss
from mmalign.losses.registry import LOSSES, build_loss, loss_class, loss_help
from mmalign.losses.rpo import RPOLoss
from mmalign.losses.simpo import SimPOLoss

__all__ = [
    "LOSSES",
    "Advantages",
    "ConservativeDPOLoss",
    "DenseDPOLoss",
    "GRPOLoss",
    "GRPOOutput",
    "HingeLoss",
    "IPOLoss",
    "LossOutput",
    "MDPOLoss",
    "ORPOLoss",
    "PolicyLogps",
    "PreferenceLoss",
    "RPOLoss",
    "ReferenceLogps",
    "RobustDPOLoss",
    "RolloutLogps",
    "SigmoidLoss",
    "SimPOLoss",
    "build_loss",
    "chosen_nll",
    "combine_rewards",
    "gdpo_advantages",
    "group_advantages",
    "k3_kl",
    "kl_estimate",
    "loss_class",
    "loss_help",
    "preference_metrics",
    "rloo_advantages",
    "sequence_kl",
    "sequence_kl_penalty",
    "span_token_mask",
    "span_token_weights",
]
