"""The DPO family: losses of the margin Δ = log(π/π_ref)(chosen) − log(π/π_ref)(rejected).

Each matches TRL 1.16's ``DPOTrainer`` loss of the same name on the same log-probs (see tests/losses), except
``cdpo``, which TRL 1.16 no longer implements (its ``sigmoid`` loss ignores ``label_smoothing``).
Rewards are TRL's: β·log(π/π_ref) of each response, summed over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from mmalign.config import option
from mmalign.losses.base import (
    LossOutput,
    PolicyLogps,
    PreferenceLoss,
    ReferenceLogps,
    check_half_open,
    check_positive,
    dpo_rewards,
    logratios,
)


@dataclass(frozen=True)
class _MarginLoss(PreferenceLoss):
    """A loss of the summed-log-prob margin Δ only: subclasses define ``per_example(Δ)``."""

    beta: float = option(0.1, help="β: strength of the KL penalty keeping the policy near the reference.")

    def validate(self) -> None:
        check_positive(self, "beta")

    def per_example(self, margin: Tensor) -> Tensor:
        raise NotImplementedError

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        assert reference is not None
        chosen_lr, rejected_lr = logratios(policy, reference)
        chosen_rewards, rejected_rewards = dpo_rewards(self.beta, chosen_lr, rejected_lr)
        return LossOutput(self.per_example(chosen_lr - rejected_lr), chosen_rewards, rejected_rewards)


@dataclass(frozen=True)
class SigmoidLoss(_MarginLoss):
    """DPO (Rafailov et al., 2023, Eq. 7): −log σ(β·Δ). TRL ``loss_type="sigmoid"``."""

    name: ClassVar[str] = "sigmoid"
    paper: ClassVar[str] = "DPO, Rafailov et al. 2023, Eq. 7"

    def per_example(self, margin: Tensor) -> Tensor:
        return -F.logsigmoid(self.beta * margin)


@dataclass(frozen=True)
class ConservativeDPOLoss(_MarginLoss):
    """Conservative DPO (Mitchell, 2023, "A note on DPO with noisy preferences"): DPO with label smoothing.

    With probability ε the label is taken as flipped, so the target is the soft label (1 − ε, ε):
    −(1 − ε)·log σ(β·Δ) − ε·log σ(−β·Δ). The loss is minimal at a finite margin (σ(β·Δ) = 1 − ε), so
    the policy stops pushing once it is confident enough.
    """

    name: ClassVar[str] = "cdpo"
    paper: ClassVar[str] = "cDPO, Mitchell 2023"

    label_smoothing: float = option(
        0.1, help="ε in [0, 0.5): probability that a preference label is flipped; the target becomes (1-ε, ε)."
    )

    def validate(self) -> None:
        super().validate()
        check_half_open(self, "label_smoothing", 0.0, 0.5)

    def per_example(self, margin: Tensor) -> Tensor:
        eps = self.label_smoothing
        return -(1 - eps) * F.logsigmoid(self.beta * margin) - eps * F.logsigmoid(-self.beta * margin)


@dataclass(frozen=True)
class RobustDPOLoss(_MarginLoss):
    """Robust DPO (Chowdhury et al., 2024, the rDPO loss): an unbiased loss under labels flipped with rate ε.

    [(1 − ε)·(−log σ(β·Δ)) − ε·(−log σ(−β·Δ))] / (1 − 2ε). Unlike cDPO its expectation under noisy labels
    equals the clean DPO loss. TRL ``loss_type="robust"`` with ``label_smoothing=ε``.
    """

    name: ClassVar[str] = "robust"
    paper: ClassVar[str] = "rDPO, Chowdhury et al. 2024"

    flip_rate: float = option(
        0.1, help="ε in [0, 0.5): assumed rate at which preference labels are flipped (noise level)."
    )

    def validate(self) -> None:
        super().validate()
        check_half_open(self, "flip_rate", 0.0, 0.5)

    def per_example(self, margin: Tensor) -> Tensor:
        eps = self.flip_rate
        clean = -(1 - eps) * F.logsigmoid(self.beta * margin)
        flipped = -eps * F.logsigmoid(-self.beta * margin)
        return (clean - flipped) / (1 - 2 * eps)


@dataclass(frozen=True)
class HingeLoss(_MarginLoss):
    """SLiC hinge loss (Zhao et al., 2023, calibration loss, on the DPO margin): max(0, 1 − β·Δ). TRL ``"hinge"``.

    Here 1/β is the margin the log-ratio difference must reach; beyond it the pair gives no gradient.
    """

    name: ClassVar[str] = "hinge"
    paper: ClassVar[str] = "SLiC-HF, Zhao et al. 2023"

    def per_example(self, margin: Tensor) -> Tensor:
        return (1 - self.beta * margin).relu()


@dataclass(frozen=True)
class IPOLoss(PreferenceLoss):
    """IPO (Azar et al., 2023, Eq. 17): (h − 1/(2τ))², a squared loss that keeps the margin finite.

    h is the difference of the chosen and rejected log-ratios. By default each log-ratio is divided by its
    response's token count (h on mean per-token log-probs), as TRL 1.16 does (its authors confirmed this is
    what the paper's results used); ``length_normalized=false`` gives the paper's formula on summed log-probs,
    whose scale grows with response length. ``beta`` is τ. Rewards stay β·log(π/π_ref) summed, as in TRL.
    """

    name: ClassVar[str] = "ipo"
    paper: ClassVar[str] = "IPO, Azar et al. 2023, Eq. 17"

    beta: float = option(0.1, help="τ: regularisation; the loss drives the log-ratio margin towards 1/(2τ).")
    length_normalized: bool = option(  # type: ignore[misc]
        True,
        help="Divide each log-ratio by its response's token count (TRL 1.16). false: the paper's Eq. 17 on sums.",
    )

    def validate(self) -> None:
        check_positive(self, "beta")

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        assert reference is not None
        chosen_lr, rejected_lr = logratios(policy, reference)
        chosen_rewards, rejected_rewards = dpo_rewards(self.beta, chosen_lr, rejected_lr)
        if self.length_normalized:
            chosen_lr = chosen_lr / policy.chosen_tokens.clamp(min=1)
            rejected_lr = rejected_lr / policy.rejected_tokens.clamp(min=1)
        losses = (chosen_lr - rejected_lr - 1 / (2 * self.beta)) ** 2
        return LossOutput(losses, chosen_rewards, rejected_rewards)
