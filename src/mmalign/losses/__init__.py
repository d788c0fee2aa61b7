"""Preference losses: pure functions of per-sequence log-probs, one family per module.

Usage::

    loss = build_loss("sigmoid", beta=0.1)
    out = loss(PolicyLogps(...), ReferenceLogps(...) if loss.needs_reference else None)
    out.loss.backward(); preference_metrics(out, policy, reference)
"""

from mmalign.losses.base import LossOutput, PolicyLogps, PreferenceLoss, ReferenceLogps, chosen_nll
from mmalign.losses.ddpo import DenseDPOLoss, span_token_mask, span_token_weights
from mmalign.losses.dpo import ConservativeDPOLoss, HingeLoss, IPOLoss, RobustDPOLoss, SigmoidLoss
from mmalign.losses.mdpo import MDPOLoss
from mmalign.losses.metrics import kl_estimate, preference_metrics, sequence_kl
from mmalign.losses.orpo import ORPOLoss
from mmalign.losses.registry import LOSSES, build_loss, loss_class, loss_help
from mmalign.losses.rpo import RPOLoss
from mmalign.losses.simpo import SimPOLoss

__all__ = [
    "LOSSES",
    "ConservativeDPOLoss",
    "DenseDPOLoss",
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
    "SigmoidLoss",
    "SimPOLoss",
    "build_loss",
    "chosen_nll",
    "kl_estimate",
    "loss_class",
    "loss_help",
    "preference_metrics",
    "sequence_kl",
    "span_token_mask",
    "span_token_weights",
]
