"""SimPO (Meng et al., 2024): a reference-free margin loss on length-normalised log-probs.

−log σ(β/|y_w|·log π(y_w|x) − β/|y_l|·log π(y_l|x) − γ)   (Eq. 6)

The reward is the mean per-token log-prob scaled by β; γ is a target margin between the two rewards, in reward
units here (the authors' code sets the ratio γ/β instead: γ = β·``gamma_beta_ratio``). Equal to TRL 1.16's
``CPOTrainer`` with ``loss_type="simpo"``, ``cpo_alpha=0`` and ``simpo_gamma=γ`` (TRL writes it as β·(Δ − γ/β)).

**Defaults: β = 2, γ = 1 (γ/β = 0.5), which are not the authors' code defaults.** What the authors released
(princeton-nlp/SimPO): ``scripts/simpo_config.py`` defaults to β = 2, γ/β = 0.25 (γ = 0.5); the per-model
recipes in ``training_configs/`` use

* ``llama-3-8b-base-simpo.yaml``: β 2, γ/β 0.5 (γ 1): the same as ours;
* ``mistral-7b-base-simpo.yaml``: β 2, γ/β 0.8 (γ 1.6);
* ``llama-3-8b-instruct-simpo.yaml``: β 2.5, γ/β 0.55 (γ 1.375); ``mistral-7b-instruct-simpo.yaml``: β 2.5,
  γ/β 0.1 (γ 0.25);
* ``llama-3-8b-instruct-simpo-v2.yaml``: β 10, γ/β 0.3 (γ 3); ``gemma-2-9b-it-simpo.yaml``: β 10, γ/β 0.5 (γ 5).

Ours are the Llama-3-Base recipe: the setting closest to ours (preference training straight after an SFT
stage of a base model, as the demo's tiny-llava SFT baseline), and the one the shipped ``simpo.yaml`` and the
demo's results were run with. The right pair depends on the model and data (the authors tune both per model);
set both. TRL's CPOConfig defaults (β = 0.1, ``simpo_gamma`` = 0.5) are CPO's, not SimPO's: set both when
comparing.
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
    logs_mean_logps: ClassVar[bool] = True  # TRL 1.16 CPOTrainer (loss_type="simpo") logs per-token means

    beta: float = option(
        2.0,
        help="β: scale of the reward β·(mean log-prob per token). 2 as the authors' Llama-3-Base recipe and code "
        "default; their instruct recipes use 2.5 or 10.",
    )
    gamma: float = option(
        1.0,
        help="γ: target reward margin between chosen and rejected, in reward units (>= 0). 1 (γ/β 0.5) as the "
        "authors' Llama-3-Base recipe; their code default is γ/β 0.25 (γ 0.5 at β 2).",
    )

    def validate(self) -> None:
        check_positive(self, "beta")
        check_non_negative(self, "gamma")

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        chosen_rewards = self.beta * policy.chosen_mean
        rejected_rewards = self.beta * policy.rejected_mean
        losses = -F.logsigmoid(chosen_rewards - rejected_rewards - self.gamma)
        return LossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())
