"""ORPO (Hong et al., 2024): supervised NLL plus a reference-free odds-ratio preference term.

L = NLL(chosen) + λ·L_OR,   L_OR = −log σ(log odds(y_w|x) − log odds(y_l|x)),   odds(y|x) = P / (1 − P)
(Eqs. 6–7), with P(y|x) = exp(mean log-prob per token) (Eq. 4). log(1 − P) is computed as log(−expm1(·)),
stable near P = 1. Equal to TRL 1.16's ``ORPOTrainer`` (``trl.experimental.orpo``), where λ is called
``beta`` and the rewards are λ·(mean log-prob). TRL measures the NLL over prompt + response; by default the
NLL here is over the chosen response only (the paper's L_SFT): fill ``PolicyLogps.chosen_nll`` to use another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mmalign.config import option
from mmalign.losses.base import (
    LossOutput,
    NLLReduction,
    PolicyLogps,
    PreferenceLoss,
    ReferenceLogps,
    check_choice,
    check_non_negative,
    chosen_nll,
)

_LOG_HALF = -0.6931471805599453


def log1mexp(x: Tensor) -> Tensor:
    """log(1 − exp(x)) for x < 0, accurate on both sides of −log 2 (Mächler, 2012)."""
    return torch.where(x < _LOG_HALF, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


@dataclass(frozen=True)
class ORPOLoss(PreferenceLoss):
    """ORPO (Hong et al., 2024, Eqs. 6–7): NLL on the chosen response + λ·odds-ratio loss; no reference."""

    name: ClassVar[str] = "orpo"
    paper: ClassVar[str] = "ORPO, Hong et al. 2024, Eqs. 6-7"
    needs_reference: ClassVar[bool] = False
    length_normalized: ClassVar[bool] = True
    needs_chosen_nll: ClassVar[bool] = True
    logs_mean_logps: ClassVar[bool] = True  # TRL 1.16 ORPOTrainer logs per-token means (average_log_prob=True)

    odds_ratio_weight: float = option(0.1, help="λ: weight of the odds-ratio term (TRL's ORPOConfig.beta).")
    nll_reduction: NLLReduction = option(
        "tokens",
        help="How the NLL averages: 'tokens' = over all chosen tokens in the batch (TRL, nn.CrossEntropyLoss), "
        "'sequence' = per response, then over the batch (the paper's 1/m per response).",
    )

    def validate(self) -> None:
        check_non_negative(self, "odds_ratio_weight")
        check_choice(self, "nll_reduction")

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        dtype = torch.promote_types(policy.chosen.dtype, torch.float32)  # at least fp32, as TRL
        chosen, rejected = policy.chosen_mean.to(dtype), policy.rejected_mean.to(dtype)
        # A mean log-prob of exactly 0 (P = 1 in floating point) would make the odds infinite.
        tiny = torch.finfo(chosen.dtype).tiny
        chosen, rejected = chosen.clamp(max=-tiny), rejected.clamp(max=-tiny)
        log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
        log_sigmoid = F.logsigmoid(log_odds)
        nll = chosen_nll(policy, self.nll_reduction)
        losses = nll - self.odds_ratio_weight * log_sigmoid
        metrics = {
            "nll": nll.detach().mean(),
            "log_odds_ratio": log_sigmoid.detach().mean(),
            "log_odds_chosen": log_odds.detach().mean(),
        }
        lam = self.odds_ratio_weight
        return LossOutput(losses, lam * policy.chosen_mean.detach(), lam * policy.rejected_mean.detach(), metrics)
