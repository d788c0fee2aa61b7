"""The GRPO family of policy-gradient losses: pure functions of per-token log-probs and advantages.

A batch of B sampled completions, padded to T tokens, fills a :class:`RolloutLogps`; advantages (B,) come from
:mod:`mmalign.losses.advantages`. Per token, with ratio ρ = exp(log π − log π_old) (PPO's clipped surrogate,
Schulman et al., 2017, Eq. 7, as GRPO uses it: Shao et al., 2024, Eq. 3):

    loss_t = −min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A) + β·KL_t,    KL_t = exp(q) − q − 1,  q = log π_ref − log π

KL_t is Schulman's k3 estimator of KL(π ‖ π_ref) (unbiased, never negative; GRPO Eq. 4). ε_high > ε_low is
DAPO's clip-higher (Yu et al., 2025); ``delta`` caps ρ from above in the unclipped term too (two-sided GRPO,
INTELLECT-2, 2025). With no old log-probs (on-policy: one gradient step per rollout) π_old = π.detach(): ρ = 1 in
value while its gradient is ∇log π, so the loss's gradient is the policy gradient −A·∇log π.

How the per-token losses become one number (``loss_type``, :data:`LOSS_TYPES`), m = the completion mask:
``grpo``     mean over completions of (Σ_t m·loss / Σ_t m): each completion's mean (GRPO, Eq. 3);
``bnpo``     Σ m·loss / Σ m over the batch: the mean over this batch's tokens;
``dr_grpo``  Σ m·loss / (B · max_completion_length): a constant denominator, no length bias (Dr. GRPO, 2025);
``dapo``     Σ m·loss / ``num_tokens``: the tokens of the whole accumulated batch (DAPO, Eq. 8); default this
             batch's, when it equals ``bnpo``;
``cispo``    −clip(ρ, max=ε_high).detach()·A·log π, aggregated as ``dapo`` (MiniMax-M1, 2025);
``sapo``     −(4/τ)·σ(τ(ρ − 1))·A with τ per advantage sign, aggregated as ``grpo`` (SAPO, 2025);
``luspo``    mean over completions of Σ_t m·loss: each completion weighted by its length (LUSPO, 2026);
``rloo``     TRL's ``RLOOTrainer`` loss: one ratio per completion, exp(Σ_t m·(log π − log π_old)), clipped, mean
             over completions; its KL to the reference is a reward penalty, not a loss term
             (:func:`sequence_kl_penalty`, subtracted from the rewards before :func:`~mmalign.losses.advantages.
             rloo_advantages`), so β must be 0 here.
``importance_sampling_level="sequence"`` (GSPO, Zheng et al., 2025) uses one ratio per completion,
exp(mean_t(log π − log π_old)).

**Equal to TRL 1.16's** ``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py lines 3020-3292: loss,
gradient, ``kl``, ``entropy`` and ``clip_ratio/*``), and for ``rloo`` to ``RLOOTrainer._compute_loss``
(rloo_trainer.py lines 1794-1861), on one process with ``current_gradient_accumulation_steps``
and ``steps_per_generation`` 1, no vLLM, ``top_entropy_quantile`` 1, no entropy bonus and no off-policy mask
(tests/losses/test_grpo.py runs TRL's code). Under gradient accumulation TRL divides the ``grpo``, ``bnpo``,
``dr_grpo``, ``sapo`` and ``luspo`` losses by the number of accumulation steps; for ``dapo`` and ``cispo`` it
passes num_tokens = active tokens of the generation batch over all processes / processes × accumulation steps /
steps per generation. Those scalings are the trainer's business, not the loss's. TRL's ``vespo`` is not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError

LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "rloo")
IMPORTANCE_SAMPLING_LEVELS: tuple[str, ...] = ("token", "sequence")
TOKEN_RATIO_ONLY: tuple[str, ...] = ("bnpo", "dr_grpo", "dapo", "cispo", "rloo")
"""Loss types that take no sequence-level (GSPO) ratio, as TRL refuses them."""


@dataclass
class RolloutLogps:
    """Per-token log-probs of B sampled completions padded to T tokens."""

    policy: Tensor
    """(B, T) log π(token) under the policy being trained (gradients flow through these)."""
    mask: Tensor
    """(B, T) 1 on the completion tokens the loss counts, 0 on padding (and on masked-out completions)."""
    old: Tensor | None = None
    """(B, T) under the policy that sampled the completions; None: on-policy, π_old = π.detach() (ratio 1)."""
    reference: Tensor | None = None
    """(B, T) under the reference model; needed when β ≠ 0."""
    entropy: Tensor | None = None
    """(B, T) the policy's entropy at each position, for the ``entropy`` metric only."""


@dataclass
class GRPOOutput:
    loss: Tensor
    """() the aggregated loss to backpropagate."""
    per_token_loss: Tensor
    """(B, T), or (B, 1) with sequence-level ratios and β = 0: before masking and aggregation."""
    metrics: dict[str, float] = field(default_factory=dict)
    """TRL's names: ``kl`` (β ≠ 0), ``entropy`` (entropy given), ``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
    ``clip_ratio/region_mean``, ``clip_ratio/low_min``, ``clip_ratio/high_max`` (clipped losses),
    ``cispo_clip_ratio`` (``cispo``). Token means over the mask."""


def k3_kl(policy: Tensor, reference: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(π ‖ π_ref): exp(q) − q − 1 with q = log π_ref − log π (Schulman, 2020).

    Gradients flow through ``policy`` only when the caller passes a detached ``reference``; this is TRL's formula
    (``torch.exp(ref - logp) - (ref - logp) - 1``) term for term, so values and gradients match it exactly.
    """
    q = reference - policy
    return torch.exp(q) - q - 1


def sequence_kl_penalty(old: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """(B,) Σ_t m·(log π_old − log π_ref): RLOO's per-completion KL estimate (k1, Ahmadian et al., 2024), which
    its trainer subtracts from the rewards times β (TRL's ``RLOOTrainer``; it may be negative, unlike k3)."""
    return ((old.detach() - reference.detach()) * mask.to(old.dtype)).sum(-1)


@dataclass(frozen=True)
class GRPOLoss:
    """The clipped policy-gradient loss with a k3 KL penalty, aggregated as ``loss_type`` says (module docstring)."""

    loss_type: str = option("dapo", "How token losses become one number: " + ", ".join(LOSS_TYPES) + ".")
    epsilon: float = option(0.2, "ε_low: the ratio is clipped below at 1 − ε_low.", ge=0)
    epsilon_high: float | None = option(
        None, "ε_high: clipped above at 1 + ε_high (DAPO advises 0.28; for cispo, the cap itself); None: ε_low.", ge=0
    )
    delta: float | None = option(None, "Two-sided GRPO: cap the unclipped ratio at δ (advised > 1 + ε).", gt=0)
    beta: float = option(0.0, "β: weight of the k3 KL to the reference per token; 0: no reference needed.", ge=0)
    importance_sampling_level: str = option("token", "Ratio per token, or per sequence (GSPO).")
    max_completion_length: int | None = option(None, "The constant denominator of dr_grpo (per completion).", ge=1)
    kl_bias_correction: bool = option(False, "Multiply the KL by the ratio ρ (TRL's use_bias_correction_kl).")
    sapo_temperature_pos: float = option(1.0, "SAPO's τ for positive advantages.", gt=0)
    sapo_temperature_neg: float = option(1.05, "SAPO's τ for non-positive advantages.", gt=0)

    def __post_init__(self) -> None:
        check_ranges(self, name=lambda option_name: f"loss 'grpo': {option_name}")
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
            raise ConfigError(
                f"importance_sampling_level must be token or sequence, got {self.importance_sampling_level!r}"
            )
        if self.loss_type == "dr_grpo" and self.max_completion_length is None:
            raise ConfigError("loss_type 'dr_grpo' needs max_completion_length (its constant denominator)")
        if self.loss_type == "luspo" and self.importance_sampling_level != "sequence":
            raise ConfigError("loss_type 'luspo' needs importance_sampling_level 'sequence'")
        if self.loss_type == "rloo" and (self.beta != 0.0 or self.delta is not None):
            raise ConfigError(
                "loss_type 'rloo' takes its KL as a reward penalty (sequence_kl_penalty): set beta 0, no delta"
            )
        if self.importance_sampling_level == "sequence" and self.loss_type in TOKEN_RATIO_ONLY:
            raise ConfigError(
                f"loss_type {self.loss_type!r} takes no sequence-level ratio: use importance_sampling_level token"
            )

    @property
    def epsilon_low(self) -> float:
        return self.epsilon

    @property
    def upper(self) -> float:
        """ε_high (ε_low when not set)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    @property
    def needs_reference(self) -> bool:
        return self.beta != 0.0

    def __call__(self, logps: RolloutLogps, advantages: Tensor, num_tokens: float | Tensor | None = None) -> GRPOOutput:
        """The loss of ``logps`` with one advantage per completion ((B,), or (B, T) per token). ``num_tokens``:
        the ``dapo``/``cispo`` denominator (None: this batch's active tokens)."""
        policy, mask = logps.policy, logps.mask.to(logps.policy.dtype)
        _check(logps, advantages, self.needs_reference)
        adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
        old = policy.detach() if logps.old is None else logps.old.detach()
        log_ratio = policy - old
        if self.importance_sampling_level == "sequence":  # GSPO: the mean token log-ratio of each completion
            log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
        elif self.loss_type == "rloo":  # RLOO: the ratio of the completions' probabilities
            log_ratio = (log_ratio * mask).sum(-1, keepdim=True)
        ratio = torch.exp(log_ratio)

        shown = ratio  # the ratio the clip metrics look at (TRL's coef_1, capped at δ when set)
        if self.loss_type == "cispo":
            per_token = -torch.clamp(ratio, max=self.upper).detach() * adv * policy
        elif self.loss_type == "sapo":
            tau = torch.where(adv > 0, self.sapo_temperature_pos, self.sapo_temperature_neg)
            per_token = -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * adv
        else:
            clipped = torch.clamp(ratio, 1 - self.epsilon_low, 1 + self.upper)
            shown = ratio if self.delta is None else torch.clamp(ratio, max=self.delta)
            per_token = -torch.min(shown * adv, clipped * adv)

        metrics: dict[str, float] = {}
        if self.beta != 0.0:
            kl = k3_kl(policy, logps.reference.detach())
            if self.kl_bias_correction:
                kl = kl * ratio
            per_token = per_token + self.beta * kl
            metrics["kl"] = _masked_mean(kl, mask)
        if logps.entropy is not None:
            metrics["entropy"] = _masked_mean(logps.entropy, mask)
        metrics.update(self.clip_metrics(shown, adv, mask))
        return GRPOOutput(self.aggregate(per_token, mask, num_tokens), per_token, metrics)

    def aggregate(self, per_token: Tensor, mask: Tensor, num_tokens: float | Tensor | None = None) -> Tensor:
        """One number from the per-token losses, as ``loss_type`` says (module docstring)."""
        masked = per_token * mask
        if self.loss_type in ("grpo", "sapo"):
            return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
        if self.loss_type == "bnpo":
            return masked.sum() / mask.sum().clamp(min=1.0)
        if self.loss_type == "dr_grpo":
            return masked.sum() / (per_token.size(0) * self.max_completion_length)
        if self.loss_type == "luspo":
            return masked.sum(-1).mean()
        if self.loss_type == "rloo":  # one loss per completion, (B, 1)
            return per_token.mean()
        denominator = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=mask.dtype)
        return masked.sum() / denominator.clamp(min=1.0)

    def clip_metrics(self, ratio: Tensor, adv: Tensor, mask: Tensor) -> dict[str, float]:
        """How often the clip bound the ratio: ``low`` when ρ < 1 − ε_low with A < 0, ``high`` when ρ > 1 + ε_high
        with A > 0 (the cases where the clipped term wins and the gradient is 0); ``region`` either."""
        ratio = ratio.detach()
        if self.loss_type == "cispo":
            return {"cispo_clip_ratio": _masked_mean(((ratio > self.upper) & (adv > 0)).float(), mask)}
        if self.loss_type == "sapo":
            return {}
        low = ((ratio < 1 - self.epsilon_low) & (adv < 0)).float()
        high = ((ratio > 1 + self.upper) & (adv > 0)).float()
        region = torch.maximum(low, high)
        return {
            "clip_ratio/low_mean": _masked_mean(low, mask),
            "clip_ratio/high_mean": _masked_mean(high, mask),
            "clip_ratio/region_mean": _masked_mean(region, mask),
            "clip_ratio/low_min": _nan_reduce(_sequence_means(low, mask), torch.min),
            "clip_ratio/high_max": _nan_reduce(_sequence_means(high, mask), torch.max),
        }


def _masked_mean(values: Tensor, mask: Tensor) -> float:
    """Token mean over the mask; a (B, 1) tensor (one value per sequence) is a plain mean over sequences."""
    values = values.detach()
    if values.shape[-1] == 1:
        return values.mean().item()
    return ((values * mask).sum() / mask.sum().clamp(min=1.0)).item()


def _sequence_means(values: Tensor, mask: Tensor) -> Tensor:
    if values.shape[-1] == 1:
        return values.squeeze(-1)
    return (values * mask).sum(-1) / mask.sum(-1)


def _nan_reduce(values: Tensor, reduce) -> float:
    """min or max ignoring NaN (a completion with no active token); NaN when all are."""
    kept = values[~torch.isnan(values)]
    return reduce(kept).item() if kept.numel() else float("nan")


def _check(logps: RolloutLogps, advantages: Tensor, needs_reference: bool) -> None:
    shape = tuple(logps.policy.shape)
    if logps.policy.dim() != 2:
        raise ConfigError(f"per-token log-probs must be (B, T), got {shape}")
    for name in ("mask", "old", "reference", "entropy"):
        value = getattr(logps, name)
        if value is not None and tuple(value.shape) != shape:
            raise ConfigError(f"RolloutLogps.{name} has shape {tuple(value.shape)}, the policy's is {shape}")
    if needs_reference and logps.reference is None:
        raise ConfigError("β ≠ 0 needs the reference model's log-probs (RolloutLogps.reference)")
    if tuple(advantages.shape) not in ((shape[0],), shape):
        raise ConfigError(f"advantages must be (B,) or (B, T) for log-probs {shape}, got {tuple(advantages.shape)}")
