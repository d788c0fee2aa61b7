"""RPO: DPO plus a negative log-likelihood term on the chosen response.

−log σ(β·Δ) + α·NLL(chosen). Pang et al. (2024, "Iterative Reasoning Preference Optimization", Eq. 1) add
the length-normalised NLL of the chosen response; HA-DPO (Zhao et al., 2023) adds the same causal-LM loss on
the positive (non-hallucinated) description so the chosen likelihood does not fall while the margin grows.
TRL 1.16 writes it as ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, α]``; its ``sft`` term is the
mean NLL over all chosen tokens of the batch, which is ``nll_reduction="tokens"`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from mmalign.config import option
from mmalign.losses.base import (
    LossOutput,
    NLLReduction,
    PolicyLogps,
    PreferenceLoss,
    ReferenceLogps,
    check_choice,
    check_non_negative,
    check_positive,
    chosen_nll,
    dpo_rewards,
    logratios,
)


@dataclass(frozen=True)
class RPOLoss(PreferenceLoss):
    """DPO + α·NLL on the chosen response (Pang et al., 2024, Eq. 1; HA-DPO's causal-LM term)."""

    name: ClassVar[str] = "rpo"
    paper: ClassVar[str] = "RPO, Pang et al. 2024, Eq. 1; HA-DPO, Zhao et al. 2023"
    needs_chosen_nll: ClassVar[bool] = True

    beta: float = option(0.1, help="β of the DPO term.")
    alpha: float = option(1.0, help="α: weight of the NLL term on the chosen response (0 gives plain DPO).")
    nll_reduction: NLLReduction = option(
        "tokens",
        help="How the NLL averages: 'tokens' = over all chosen tokens in the batch (TRL's sft term), "
        "'sequence' = per response, then over the batch.",
    )

    def validate(self) -> None:
        check_positive(self, "beta")
        check_non_negative(self, "alpha")
        check_choice(self, "nll_reduction")

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        assert reference is not None
        chosen_lr, rejected_lr = logratios(policy, reference)
        dpo = -F.logsigmoid(self.beta * (chosen_lr - rejected_lr))
        nll = chosen_nll(policy, self.nll_reduction)
        chosen_rewards, rejected_rewards = dpo_rewards(self.beta, chosen_lr, rejected_lr)
        metrics = {"nll": nll.detach().mean(), "dpo_loss": dpo.detach().mean()}
        return LossOutput(dpo + self.alpha * nll, chosen_rewards, rejected_rewards, metrics)
