"""Dense DPO (RLHF-V, Yu et al., 2024, Sec. 3.2): DPO where tokens in annotated segments weigh γ times more.

RLHF-V's annotators correct the hallucinated segments of a response; the corrected segments (in the chosen
text) and the hallucinated ones (in the rejected text) carry the preference, the rest is shared. Each response
is scored from its token log-probs with weights w_t = γ inside a segment and 1 elsewhere, the score goes into
DPO for policy and reference alike: −log σ(β·Δ), rewards β·(score − reference score). Two sources, two scores:

* **The paper** (arXiv 2312.00849, Sec. 3.2, Eq. 5) uses the weighted *mean*, N normalising so that a longer
  response does not score higher, with γ = 5 and β = 0.5 in its experiments:

      log π(y|x) = 1/N·[Σ_{y_t ∈ y_u} log p(y_t|x, y_<t) + γ·Σ_{y_t ∈ y_c} log p(y_t|x, y_<t)],  N = |y_u| + γ·|y_c|

  (y_u: unchanged tokens, y_c: corrected segments). This is the default here: ``length_normalized=true``,
  γ = 5, β = 0.5.
* **The authors' released recipe** is the weighted *sum* Σ w_t·log p with γ = 1.1 and β = 0.1: the RLHF-V
  repository's readme ("RLHF-V Training") runs thunlp/Muffin's ``script/train/run_RLHFV.sh`` with
  ``dpo_token_weight 1.1``, ``dpo_beta 0.1``, ``dpo_use_average False``, ``dpo_token_weighted True``, and
  ``compute_weighted_logp`` (Muffin, ``muffin/train/trainers.py``) returns the sum unless ``use_average``.
  Set ``length_normalized=false, gamma=1.1, beta=0.1`` to train that way. (An earlier version of the readme ran
  the script with 5.0, 0.5 and ``dpo_use_average True``: the paper's settings. RLAIF-V's code keeps the
  same options with other defaults, β 0.5 and γ 3, unused by its scripts, which train plain DPO at β 0.1.)

A sum grows with the response length, so β must be smaller for it (hence 0.1 against 0.5): the two settings
are not interchangeable.

The character spans of a record become token masks with :func:`span_token_mask`, given the tokenizer's
``offset_mapping`` for the response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mmalign.config import option
from mmalign.losses.base import LossOutput, PolicyLogps, PreferenceLoss, ReferenceLogps, check_positive

Span = tuple[int, int] | Sequence[int]


def span_token_mask(offsets: Sequence[Sequence[int]], spans: Sequence[Span] | None, offset: int = 0) -> list[bool]:
    """For each token, whether its characters overlap one of the ``spans``.

    ``offsets`` are the tokenizer's ``offset_mapping``: one ``(start, end)`` character range per token.
    ``spans`` are ``[start, end)`` ranges in the response text (the record's ``chosen_spans`` or
    ``rejected_spans``); ``offset`` is where that text starts in the string that was tokenized (0 when the
    response was tokenized alone). A token counts as inside when it shares at least one character with a span,
    so a word tokenized with its leading space, or split into pieces, is caught whole. Zero-width tokens
    (special tokens, offsets ``(0, 0)``) are never inside.
    """
    shifted = [(int(s) + offset, int(e) + offset) for s, e in (spans or [])]
    out = []
    for start, end in offsets:
        inside = end > start and any(start < span_end and span_start < end for span_start, span_end in shifted)
        out.append(inside)
    return out


def span_token_weights(
    offsets: Sequence[Sequence[int]], spans: Sequence[Span] | None, gamma: float, offset: int = 0
) -> list[float]:
    """Per-token weights: ``gamma`` for tokens inside a span (see :func:`span_token_mask`), 1 for the others."""
    return [gamma if inside else 1.0 for inside in span_token_mask(offsets, spans, offset)]


@dataclass(frozen=True)
class DenseDPOLoss(PreferenceLoss):
    """Dense DPO (RLHF-V, Yu et al., 2024, Eq. 5): DPO on token log-probs weighted γ inside annotated segments.

    Defaults are the paper's (weighted mean, γ 5, β 0.5); the authors' released recipe is the weighted sum with
    γ 1.1 and β 0.1 (see the module docstring for where each comes from).
    """

    name: ClassVar[str] = "ddpo"
    paper: ClassVar[str] = "RLHF-V, Yu et al. 2024, Sec. 3.2, Eq. 5 (DDPO)"
    needs_token_weights: ClassVar[bool] = True

    beta: float = option(
        0.5, help="β of the DPO term: 0.5 as in the RLHF-V paper; the authors' released recipe uses 0.1 (weighted sum)."
    )
    gamma: float = option(
        5.0,
        help="γ: weight of tokens inside annotated (corrected/hallucinated) segments: 5 as in the paper; "
        "the released recipe uses 1.1.",
    )
    length_normalized: bool = option(  # type: ignore[misc]
        True,
        help="true: the paper's weighted mean Σ w·log p / Σ w (Eq. 5); false: the weighted sum Σ w·log p of the "
        "authors' released recipe (dpo_use_average False).",
    )

    def validate(self) -> None:
        check_positive(self, "beta", "gamma")

    def token_weights(self, token_mask: Tensor, span_mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, T) weights: γ inside spans, 1 on other response tokens, 0 on padding."""
        token_mask, span_mask = token_mask.to(dtype), span_mask.to(dtype)
        return token_mask * (1 + (self.gamma - 1) * span_mask)

    def score(self, token_logps: Tensor, weights: Tensor) -> Tensor:
        """(B,) the weighted sum (or weighted mean) of token log-probs."""
        total = (torch.where(weights != 0, token_logps, 0.0) * weights).sum(-1)  # padding may hold -inf
        if not self.length_normalized:
            return total
        return total / weights.sum(-1).clamp(min=torch.finfo(weights.dtype).tiny)

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        assert reference is not None
        assert policy.chosen_token_logps is not None and policy.rejected_token_logps is not None
        assert policy.chosen_token_mask is not None and policy.chosen_span_mask is not None
        assert policy.rejected_token_mask is not None and policy.rejected_span_mask is not None
        assert reference.chosen_token_logps is not None and reference.rejected_token_logps is not None
        dtype = policy.chosen_token_logps.dtype
        chosen_w = self.token_weights(policy.chosen_token_mask, policy.chosen_span_mask, dtype)
        rejected_w = self.token_weights(policy.rejected_token_mask, policy.rejected_span_mask, dtype)
        chosen_lr = self.score(policy.chosen_token_logps, chosen_w) - self.score(
            reference.chosen_token_logps.detach(), chosen_w
        )
        rejected_lr = self.score(policy.rejected_token_logps, rejected_w) - self.score(
            reference.rejected_token_logps.detach(), rejected_w
        )
        losses = -F.logsigmoid(self.beta * (chosen_lr - rejected_lr))
        in_span = (policy.chosen_span_mask.bool() & policy.chosen_token_mask.bool()).sum() + (
            policy.rejected_span_mask.bool() & policy.rejected_token_mask.bool()
        ).sum()
        n_tokens = policy.chosen_token_mask.bool().sum() + policy.rejected_token_mask.bool().sum()
        metrics = {"span_token_fraction": in_span / n_tokens.clamp(min=1)}
        return LossOutput(losses, self.beta * chosen_lr.detach(), self.beta * rejected_lr.detach(), metrics)
