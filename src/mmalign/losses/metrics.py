"""What a trainer logs about a preference loss: rewards, margins, accuracy, log-probs, and drift from the reference.

Names follow TRL's logs (``rewards/chosen``, ``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``) and
so do the quantities, so curves compare directly: ``logps/chosen`` is the summed log-prob of the response, as
TRL's ``DPOTrainer`` logs it, except for the losses that declare ``logs_mean_logps`` (SimPO, ORPO), where it is
the mean per response token, as TRL's ``CPOTrainer`` (``loss_type="simpo"``) and ``ORPOTrainer`` log it; their
sums are then logged as ``logps/chosen_sum`` and ``logps/rejected_sum``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mmalign.errors import ConfigError
from mmalign.losses.base import LossOutput, PolicyLogps, ReferenceLogps

KLEstimator = Literal["k1", "k3"]


def kl_estimate(
    policy_token_logps: Tensor, reference_token_logps: Tensor, mask: Tensor, estimator: KLEstimator = "k1"
) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref), averaged over the tokens where ``mask`` is 1. Shapes (B, T) → ().

    With r = log π_ref − log π on each token (Schulman, 2020, "Approximating KL Divergence"):
    ``k1`` = −r (the plain log-ratio; unbiased, can be negative), ``k3`` = exp(r) − 1 − r (unbiased, never
    negative, lower variance). Both are unbiased only for tokens sampled from π; on offline preference data
    (responses not sampled from the policy) they measure how far the policy moved from the reference on
    those responses, which is what a DPO run wants to watch.
    """
    if estimator not in ("k1", "k3"):
        raise ConfigError(f"unknown KL estimator {estimator!r}; choose 'k1' or 'k3'")
    mask = mask.to(policy_token_logps.dtype)
    r = torch.where(mask != 0, reference_token_logps.detach() - policy_token_logps.detach(), 0.0)
    per_token = -r if estimator == "k1" else torch.expm1(r) - r
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def sequence_kl(policy: PolicyLogps, reference: ReferenceLogps) -> Tensor:
    """The k1 estimate on the chosen responses from summed log-probs: Σ(log π − log π_ref) / Σ tokens.

    Equals ``kl_estimate(..., "k1")`` on the chosen tokens, and needs no token-level log-probs.
    """
    diff = policy.chosen.detach() - reference.chosen.detach()
    return diff.sum() / policy.chosen_tokens.sum().clamp(min=1)


def preference_metrics(
    output: LossOutput, policy: PolicyLogps, reference: ReferenceLogps | None = None, *, mean_logps: bool = False
) -> dict[str, float]:
    """Batch means for logging: rewards and their margin and accuracy, policy log-probs, KL to the reference.

    ``rewards/accuracies`` is the fraction of pairs whose chosen reward is strictly higher (as TRL).
    ``logps/chosen`` and ``logps/rejected`` are summed log-probs, or with ``mean_logps`` (pass the loss's
    ``logs_mean_logps``) mean log-probs per response token, the sums then under ``logps/chosen_sum`` and
    ``logps/rejected_sum``.
    ``kl/chosen`` (k1, per token, on the chosen responses) and, when token-level log-probs are present,
    ``kl/chosen_k3`` need the reference. The loss's own metrics (``output.metrics``) are included as they are.
    """
    chosen, rejected = output.chosen_rewards.detach(), output.rejected_rewards.detach()
    out = {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
    }
    if mean_logps:
        out["logps/chosen"] = policy.chosen_mean.detach().mean().item()
        out["logps/rejected"] = policy.rejected_mean.detach().mean().item()
        out["logps/chosen_sum"] = policy.chosen.detach().mean().item()
        out["logps/rejected_sum"] = policy.rejected.detach().mean().item()
    else:
        out["logps/chosen"] = policy.chosen.detach().mean().item()
        out["logps/rejected"] = policy.rejected.detach().mean().item()
    if reference is not None:
        out["kl/chosen"] = sequence_kl(policy, reference).item()
        if (
            policy.chosen_token_logps is not None
            and policy.chosen_token_mask is not None
            and reference.chosen_token_logps is not None
        ):
            out["kl/chosen_k3"] = kl_estimate(
                policy.chosen_token_logps, reference.chosen_token_logps, policy.chosen_token_mask, "k3"
            ).item()
    for key, value in output.metrics.items():
        out[key] = float(value.detach().float().mean().item()) if isinstance(value, Tensor) else float(value)
    return out
