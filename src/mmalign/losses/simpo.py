"""SimPO (Meng et al., 2024): a reference-free margin loss on length-normalised log-probs.

−log σ(β/|y_w|·log π(y_w|x) − β/|y_l|·log π(y_l|x) − γ)   (Eq. 6)

The reward is the mean per-token log-prob scaled by β; γ is a target margin between the two rewards.
Equal to TRL 1.16's ``CPOTrainer`` with ``loss_type="simpo"``, ``cpo_alpha=0`` and ``simpo_gamma=γ``
(TRL writes it as β·(Δ − γ/β)). Defaults β = 2, γ = 1 (γ/β = 0.5) lie in the ranges the paper tunes over;
TRL's CPOConfig defaults (β = 0.1, γ = 0.5) are CPO's, so set both when comparing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from mmalign.config import option
from mmalign.losses.base import (
    LossOutput,
    PolicyLogps,
    PreferenceLoss,
    ReferenceLogps,
    check_non_negative,
    check_positive,
)


@dataclass(frozen=True)
class SimPOLoss(PreferenceLoss):
    """SimPO (Meng et al., 2024, Eq. 6): reference-free, length-normalised, with target margin γ."""

    name: ClassVar[str] = "simpo"
    paper: ClassVar[str] = "SimPO, Meng et al. 2024, Eq. 6"
    needs_reference: ClassVar[bool] = False
    length_normalized: ClassVar[bool] = True

    beta: float = option(2.0, help="β: scale of the reward β·(mean log-prob per token); the paper uses 2 to 2.5.")
    gamma: float = option(1.0, help="γ: target reward margin between chosen and rejected (reward units, >= 0).")

    def validate(self) -> None:
        check_positive(self, "beta")
        check_non_negative(self, "gamma")

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        chosen_rewards = self.beta * policy.chosen_mean
        rejected_rewards = self.beta * policy.rejected_mean
        losses = -F.logsigmoid(chosen_rewards - rejected_rewards - self.gamma)
        return LossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())
