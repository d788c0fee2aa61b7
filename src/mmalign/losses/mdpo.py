"""mDPO (Wang et al., 2024, "mDPO: Conditional Preference Optimization for Multimodal Large Language Models").

Three terms, each a −log σ(·) of a β-scaled log-ratio r(y|m) = log π(y|m, q) − log π_ref(y|m, q):

* L_DPO, standard DPO on the responses:       −log σ(β·[r(y_w|m) − r(y_l|m)])
* L_CoPO, conditional (image) preference:      −log σ(β·[r(y_w|m) − r(y_w|m')]),  m' = corrupted image
  (same chosen text; the policy must prefer it with the real image, so it cannot ignore the image)
* L_AncPO, anchored preference:                −log σ(β·r(y_w|m) − δ)
  (keeps the chosen reward above the anchor δ, so the chosen likelihood does not collapse)

and L = L_DPO + L_CoPO + L_AncPO (the paper's objective; the weights here are options, 1 by default).

The authors' code uses one β (0.1) for all three, weights 1 and δ = 0: those are the defaults. The corrupted
image m' is the record's ``rejected_images`` when it has them (``prefer_record_images``), otherwise it is made
on the fly with :meth:`MDPOLoss.corrupt` (the authors keep a random 1–20 % of the area, resized back).

**Records with rejected images change L_DPO.** In the paper both responses of L_DPO are scored with the same
image m: −log σ(β·[r(y_w|m) − r(y_l|m)]), a preference between texts. The trainer scores a rejected response
with the record's ``rejected_images`` whenever it has them (for every loss: ``examples_from`` in
:mod:`mmalign.models.examples`), so for such a record the first term here is −log σ(β·[r(y_w|m) − r(y_l|m')]):
the text and the image change at once, and the term no longer measures a text preference alone. With
``prefer_record_images`` (default) that m' is also L_CoPO's corrupted image, and for an image-only pair (the
rejected text equal to the chosen text) L_DPO becomes exactly L_CoPO: the image preference counts
1 + ``image_weight`` times and no term compares texts. To train the paper's L_DPO, give the records without
``rejected_images`` (m' is then corrupted on the fly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from mmalign.config import option
from mmalign.corruption import Rng, check_keep_range, corrupt_image
from mmalign.losses.base import (
    LossOutput,
    PolicyLogps,
    PreferenceLoss,
    ReferenceLogps,
    check_choice,
    check_finite,
    check_non_negative,
    check_positive,
    dpo_rewards,
    logratios,
)


@dataclass(frozen=True)
class MDPOLoss(PreferenceLoss):
    """mDPO: DPO + image-conditional preference (real vs corrupted image) + anchor on the chosen reward."""

    name: ClassVar[str] = "mdpo"
    paper: ClassVar[str] = "mDPO, Wang et al. 2024 (L_DPO + L_CoPO + L_AncPO)"
    needs_corrupted_image: ClassVar[bool] = True

    beta: float = option(0.1, help="β shared by the three terms (the authors use 0.1).")
    image_weight: float = option(1.0, help="Weight of the image-conditional term (real vs corrupted image).")
    anchor_weight: float = option(1.0, help="Weight of the anchor term on the chosen reward.")
    anchor: float = option(0.0, help="δ: the value the chosen reward β·log(π/π_ref) is pushed above.")
    corruption: Literal["crop", "mask"] = option(
        "crop", help="How to corrupt the image on the fly: 'crop' (random crop resized back) or 'mask'."
    )
    keep_min: float = option(0.01, help="Smallest fraction of the image area the corrupted image keeps.")
    keep_max: float = option(0.2, help="Largest fraction of the image area the corrupted image keeps.")
    prefer_record_images: bool = option(
        True,
        help="Use a record's rejected_images as the corrupted images when it has them. Either way such a record's "
        "rejected response is scored with its rejected_images, so its DPO term compares chosen|image with "
        "rejected|rejected_images, not the paper's two responses under one image.",
    )

    def validate(self) -> None:
        check_positive(self, "beta")
        check_non_negative(self, "image_weight", "anchor_weight")
        check_finite(self, "anchor")
        check_choice(self, "corruption")
        check_keep_range(self.keep_min, self.keep_max)

    def corrupt(self, image: Image.Image | Tensor, rng: Rng) -> Image.Image | Tensor:
        """The corrupted version of ``image`` this loss is configured for (deterministic given ``rng``)."""
        return corrupt_image(image, self.corruption, rng, self.keep_min, self.keep_max)

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        assert reference is not None and policy.corrupted_chosen is not None
        assert reference.corrupted_chosen is not None
        chosen_lr, rejected_lr = logratios(policy, reference)
        corrupted_lr = policy.corrupted_chosen - reference.corrupted_chosen.detach()
        dpo = -F.logsigmoid(self.beta * (chosen_lr - rejected_lr))
        image = -F.logsigmoid(self.beta * (chosen_lr - corrupted_lr))
        anchored = -F.logsigmoid(self.beta * chosen_lr - self.anchor)
        losses = dpo + self.image_weight * image + self.anchor_weight * anchored
        chosen_rewards, rejected_rewards = dpo_rewards(self.beta, chosen_lr, rejected_lr)
        corrupted_rewards = self.beta * corrupted_lr.detach()
        metrics = {
            "dpo_loss": dpo.detach().mean(),
            "image_loss": image.detach().mean(),
            "anchor_loss": anchored.detach().mean(),
            "rewards/corrupted": corrupted_rewards.mean(),
            "rewards/image_margins": (chosen_rewards - corrupted_rewards).mean(),
            "rewards/image_accuracies": (chosen_rewards > corrupted_rewards).float().mean(),
        }
        return LossOutput(losses, chosen_rewards, rejected_rewards, metrics)
