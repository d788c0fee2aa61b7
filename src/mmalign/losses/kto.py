"""Losses for unpaired binary feedback (thumbs up / down): KTO and unpaired APO-zero.

Each record is one response with a label (desirable or not), not a pair. The forward pass fills an
:class:`UnpairedLogps` (summed log-probs of each response under the policy and the reference); the loss returns an
:class:`UnpairedLossOutput`. With r = log π(y|x) − log π_ref(y|x):

KTO (Ethayarajh et al., 2024, Sec. 4; Eq. 7 as TRL cites it), per example
    desirable:   λ_D·(1 − σ(β·(r − z0)))        undesirable:   λ_U·(1 − σ(β·(z0 − r)))
(the paper's λ_y − v(x, y) with the constant λ_y dropped, as TRL does). z0 is the reference point, an estimate
of KL(π ‖ π_ref) from *mismatched* pairs: prompt x_i with the response y_{i−1} of its neighbour in the batch
(:func:`mismatched_pairs`). :func:`mismatched_kl` gives the batch mean of log π(y'|x) − log π_ref(y'|x) over
those pairs; the loss clamps it at 0 and detaches it (no gradient flows through z0).

APO-zero, unpaired (D'Oosterlinck et al., 2024, "Anchored Preference Optimization", Eq. 7 unpaired as in TRL):
    desirable:   λ_D·(1 − σ(β·r))               undesirable:   λ_U·σ(β·r)
which needs no z0 (it is KTO with z0 = 0): push desirable responses up and undesirable ones down.

**Equal to TRL 1.16's ``KTOTrainer._compute_loss``** with ``loss_type`` "kto" / "apo_zero_unpaired" on the same
log-probs: loss, ``kl``, ``rewards/*`` and ``logps/*`` (trl/trainer/kto_trainer.py, loss: lines 1442-1482 and
1548, metrics: 1484-1546; TRL 1.16 has no separate ``kto_loss``; tests/losses/test_kto.py runs TRL's code).
How TRL gets z0 there: ``kl = (KL_logps - ref_KL_logps).mean().detach()`` over the process's batch, then
``kl = accelerator.gather_for_metrics(kl).mean().clamp(min=0)``: the mean of the per-process means, clamped after
averaging. Its KL responses are the batch's own responses rotated by one (``[y_n, y_1, …, y_{n−1}]``) within each
block of ``per_device_train_batch_size`` records, hence its demands for sequential sampling and a batch of >= 2.

Conditions: on one process, with the KL pairs built as :func:`mismatched_pairs` says, the loss here computes z0
from the batch itself and equals TRL's. On several, pass ``batch_kl`` = the mean over processes of each one's
:func:`mismatched_kl`, as TRL does; that is the mean over *all* KL pairs only when every process holds the same
number of records (TRL averages per-process means, unweighted; accelerate pads the last, uneven batch of an epoch
with repeated records, which TRL's z0 then includes). TRL's loss is ``nanmean`` over the batch; ours is the mean,
equal when no loss is NaN.

Shapes: ``N`` is the number of records in the batch (desirable and undesirable together, in any order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError


@dataclass
class UnpairedLogps:
    """Log-probs of a batch of labelled single responses, under the policy and the reference model."""

    policy: Tensor
    """(N,) summed log-probs of each response under the policy (gradients flow through these)."""
    reference: Tensor
    """(N,) summed log-probs of each response under the reference model (detached by the loss)."""
    label: Tensor
    """(N,) bool: True for a desirable (thumbs-up) response, False for an undesirable one."""
    policy_kl: Tensor | None = None
    """(N,) summed log-probs under the policy of the mismatched pairs (x_i, y_{mismatched_pairs(N)[i]}), for z0
    (detached by the loss). Needed by KTO unless ``batch_kl`` is given."""
    reference_kl: Tensor | None = None
    """(N,) summed log-probs of the same mismatched pairs under the reference model."""
    weight: Tensor | None = None
    """(N,) per-record weight multiplying that record's loss (the record's own weight); None: all 1 (as TRL)."""


@dataclass
class UnpairedLossOutput:
    """What an unpaired loss returns: per-record losses (with gradients), detached rewards, and z0."""

    losses: Tensor
    """(N,) per-record losses, weighted by λ_D / λ_U (and the record weight), in input order."""
    rewards: Tensor
    """(N,) implicit reward β·(log π − log π_ref) of each response (detached)."""
    label: Tensor
    """(N,) bool, as given: which rewards belong to desirable responses."""
    kl: Tensor
    """() the reference point z0 used (detached, >= 0); 0 for losses that use none."""
    metrics: dict[str, Tensor] = field(default_factory=dict)

    @property
    def loss(self) -> Tensor:
        """The scalar to back-propagate: the mean of ``losses`` over all N records (TRL's ``losses.nanmean()``)."""
        return self.losses.mean()


def mismatched_pairs(n: int) -> list[int]:
    """For prompt i of a batch of n, the index of the response that forms its KL pair: ``[n−1, 0, 1, …, n−2]``.

    TRL 1.16 rotates the batch's responses by one (``[completions[-1]] + completions[:-1]``), so the mismatched
    responses are the batch's own responses (the paper's advice) and no prompt is paired with its own response
    when n >= 2.
    """
    if n < 2:
        raise ConfigError(f"KTO needs at least 2 records per batch to form mismatched KL pairs, got {n}")
    return [n - 1, *range(n - 1)]


def mismatched_kl(policy_kl: Tensor, reference_kl: Tensor) -> Tensor:
    """() the batch mean of log π(y'|x) − log π_ref(y'|x) over the mismatched pairs: TRL's per-process ``kl``.

    Detached and not clamped; average it over processes before the loss clamps it (see the module docstring).
    """
    if policy_kl.shape != reference_kl.shape or policy_kl.dim() != 1:
        raise ValueError(
            f"KL log-probs must both be (N,), got {tuple(policy_kl.shape)} and {tuple(reference_kl.shape)}"
        )
    return (policy_kl.detach() - reference_kl.detach()).mean()


@dataclass(frozen=True)
class UnpairedLoss:
    """Base of the unpaired losses: β, λ_D, λ_U, and the per-side formula in ``desirable``/``undesirable``."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    needs_kl: ClassVar[bool] = False
    """The loss reads z0: the trainer must score the mismatched pairs (``policy_kl``, ``reference_kl``)."""
    needs_reference: ClassVar[bool] = True
    """Every unpaired loss compares the policy with a reference (as the pairwise losses declare it)."""

    beta: float = option(0.1, help="β: how far the policy may move from the reference (higher: less).", gt=0)
    desirable_weight: float = option(
        1.0,
        help="λ_D > 0: weight of desirable records' losses. With n_D desirable and n_U undesirable records the "
        "paper (Eq. 8) advises λ_D·n_D / (λ_U·n_U) in [1, 4/3].",
        gt=0,
    )
    undesirable_weight: float = option(1.0, help="λ_U > 0: weight of undesirable records' losses.", gt=0)

    def __post_init__(self) -> None:
        check_ranges(self, name=lambda option_name: f"loss {self.name!r}: {option_name}")

    def desirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        raise NotImplementedError

    def undesirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        raise NotImplementedError

    def reference_point(self, logps: UnpairedLogps, batch_kl: Tensor | None) -> Tensor:
        """z0: ``batch_kl`` (or this batch's :func:`mismatched_kl`) clamped at 0 and detached; 0 if not needed."""
        if not self.needs_kl:
            return logps.policy.new_zeros(())
        if batch_kl is None:
            if logps.policy_kl is None or logps.reference_kl is None:
                raise ConfigError(
                    f"loss {self.name!r} needs log-probs of mismatched pairs for its KL reference point "
                    "(UnpairedLogps.policy_kl and reference_kl) or a precomputed batch_kl"
                )
            mismatched_pairs(logps.policy_kl.shape[0])  # at least 2 records, or z0 would be r itself
            batch_kl = mismatched_kl(logps.policy_kl, logps.reference_kl)
        return batch_kl.detach().clamp(min=0)

    def __call__(self, logps: UnpairedLogps, batch_kl: Tensor | None = None) -> UnpairedLossOutput:
        """Per-record losses of ``logps``. ``batch_kl``: the mismatched-pair KL already averaged over processes
        (unclamped); None: computed from ``logps.policy_kl`` and ``logps.reference_kl``."""
        _check_shapes(logps)
        z0 = self.reference_point(logps, batch_kl)
        label = logps.label.bool()
        logratio = logps.policy - logps.reference.detach()
        losses = torch.where(
            label,
            self.desirable_weight * self.desirable(logratio, z0),
            self.undesirable_weight * self.undesirable(logratio, z0),
        )
        if logps.weight is not None:
            losses = losses * logps.weight
        return UnpairedLossOutput(losses, self.beta * logratio.detach(), label, z0)


@dataclass(frozen=True)
class KTOLoss(UnpairedLoss):
    """KTO (Ethayarajh et al., 2024): Kahneman–Tversky value of each response relative to z0. TRL ``"kto"``."""

    name: ClassVar[str] = "kto"
    paper: ClassVar[str] = "KTO, Ethayarajh et al. 2024"
    needs_kl: ClassVar[bool] = True

    def desirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        return 1 - torch.sigmoid(self.beta * (logratio - z0))

    def undesirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        return 1 - torch.sigmoid(self.beta * (z0 - logratio))


@dataclass(frozen=True)
class APOZeroUnpairedLoss(UnpairedLoss):
    """APO-zero, unpaired (D'Oosterlinck et al., 2024): no reference point. TRL ``"apo_zero_unpaired"``.

    For data whose desirable responses are better than what the policy would write itself.
    """

    name: ClassVar[str] = "apo_zero_unpaired"
    paper: ClassVar[str] = "APO, D'Oosterlinck et al. 2024"

    def desirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        return 1 - torch.sigmoid(self.beta * logratio)

    def undesirable(self, logratio: Tensor, z0: Tensor) -> Tensor:
        return torch.sigmoid(self.beta * logratio)


UNPAIRED_LOSSES: dict[str, type[UnpairedLoss]] = {cls.name: cls for cls in (KTOLoss, APOZeroUnpairedLoss)}
"""The losses of binary-feedback records by name (TRL's ``loss_type`` names); ``build_loss`` finds them too."""


def unpaired_metrics(output: UnpairedLossOutput, logps: UnpairedLogps) -> dict[str, float]:
    """TRL 1.16 ``KTOTrainer``'s logged values on one batch: ``kl`` (z0), ``rewards/chosen`` and
    ``logps/chosen`` (means over desirable records), ``rewards/rejected`` and ``logps/rejected`` (over
    undesirable ones), and ``rewards/margins`` (their difference). A side with no records is left out, as in TRL.
    """
    label = output.label
    out = {"kl": output.kl.item()}
    for side, mask in (("chosen", label), ("rejected", ~label)):
        if mask.any():
            out[f"rewards/{side}"] = output.rewards[mask].mean().item()
            out[f"logps/{side}"] = logps.policy.detach()[mask].mean().item()
    if "rewards/chosen" in out and "rewards/rejected" in out:
        out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out


def _check_shapes(logps: UnpairedLogps) -> None:
    shape = tuple(logps.policy.shape)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"UnpairedLogps.policy must have shape (N,) with N >= 1, got {shape}")
    for name in ("reference", "label", "policy_kl", "reference_kl", "weight"):
        value = getattr(logps, name)
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"UnpairedLogps.{name} has shape {tuple(value.shape)}; expected {shape}")
