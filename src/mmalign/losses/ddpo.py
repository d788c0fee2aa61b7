"""Dense DPO (RLHF-V, Yu et al., 2024, Sec. 3.2): DPO where tokens in annotated segments weigh γ times more.

RLHF-V's annotators correct the hallucinated segments of a response; the corrected segments (in the chosen
text) and the hallucinated ones (in the rejected text) carry the preference, the rest is shared. The paper
scores a response as a weighted sum of token log-probs (its DDPO equation):

    log π(y|x) = Σ_{unchanged tokens} log p(y_t|x, y_<t) + γ·Σ_{changed tokens} log p(y_t|x, y_<t)

and plugs it into DPO for policy and reference alike. The authors' training code can also divide this sum by
the total weight Σ w_t (``dpo_use_average``), a weighted mean per token that keeps β on the same scale for long
and short responses. What is implemented here: weights w_t = γ inside a span and 1 elsewhere, for both
responses; ``length_normalized=true`` (default) uses Σ w·log p / Σ w, ``false`` the paper's weighted sum.
Then −log σ(β·Δ) on these scores; rewards are β·(score − reference score). Defaults: γ = 5 (the paper) and
β = 0.5 (the default of the authors' training code).

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
    """Dense DPO (RLHF-V, Yu et al., 2024): DPO on token log-probs weighted γ inside annotated segments."""

    name: ClassVar[str] = "ddpo"
    paper: ClassVar[str] = "RLHF-V, Yu et al. 2024, Sec. 3.2 (DDPO)"
    needs_token_weights: ClassVar[bool] = True

    beta: float = option(0.5, help="β of the DPO term (the RLHF-V code defaults to 0.5).")
    gamma: float = option(5.0, help="γ: weight of tokens inside annotated (corrected/hallucinated) segments.")
    length_normalized: bool = option(  # type: ignore[misc]
        True,
        help="Score = weighted mean Σ w·log p / Σ w (the authors' code); false: the paper's weighted sum.",
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
