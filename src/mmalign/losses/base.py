"""What every preference loss shares: the containers between forward pass and loss, and the loss base class.

The forward pass fills a :class:`PolicyLogps` (and, for losses that need one, a :class:`ReferenceLogps`); a loss
is a frozen dataclass whose fields are its documented options and whose ``__call__`` maps those containers to a
:class:`LossOutput`. What a loss needs is declared on the loss (``needs_reference``, ``needs_corrupted_image``,
``needs_token_weights``, ``needs_chosen_nll``, ``length_normalized``, ``logs_mean_logps``) so the trainer asks it
instead of comparing names. Read these on the loss *instance*: for IPO and dense DPO, ``length_normalized`` is an
option.

Shapes: ``B`` is the number of preference pairs in the batch, ``T`` the padded response length in tokens.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from torch import Tensor

from mmalign.errors import ConfigError

NLLReduction = Literal["tokens", "sequence"]


@dataclass
class PolicyLogps:
    """Log-probabilities of the responses under the policy being trained (gradients flow through these).

    Build it with :meth:`from_token_logps` when per-token log-probs are at hand; it fills the sums and counts.
    """

    chosen: Tensor
    """(B,) summed log-probs of the chosen response tokens."""
    rejected: Tensor
    """(B,) summed log-probs of the rejected response tokens."""
    chosen_tokens: Tensor
    """(B,) number of chosen response tokens (the denominator of the mean)."""
    rejected_tokens: Tensor
    """(B,) number of rejected response tokens."""
    chosen_nll: Tensor | None = None
    """(B,) per-example NLL term of the chosen side, when the forward pass measures it differently from the
    response log-probs (e.g. over prompt + response, as TRL's ORPO does). None: derived from ``chosen``."""
    chosen_token_logps: Tensor | None = None
    """(B, T) per-token log-probs of the chosen response, 0 at padding (dense DPO)."""
    chosen_token_mask: Tensor | None = None
    """(B, T) 1 on chosen response tokens, 0 on padding."""
    chosen_span_mask: Tensor | None = None
    """(B, T) 1 on chosen tokens inside an annotated (corrected) span: see :func:`span_token_mask`."""
    rejected_token_logps: Tensor | None = None
    """(B, T) per-token log-probs of the rejected response, 0 at padding."""
    rejected_token_mask: Tensor | None = None
    """(B, T) 1 on rejected response tokens."""
    rejected_span_mask: Tensor | None = None
    """(B, T) 1 on rejected tokens inside an annotated (hallucinated) span."""
    corrupted_chosen: Tensor | None = None
    """(B,) summed log-probs of the chosen response given the corrupted image (mDPO)."""

    @property
    def chosen_mean(self) -> Tensor:
        """(B,) mean log-prob per chosen token (``chosen / chosen_tokens``, at least one token)."""
        return self.chosen / self.chosen_tokens.clamp(min=1)

    @property
    def rejected_mean(self) -> Tensor:
        """(B,) mean log-prob per rejected token."""
        return self.rejected / self.rejected_tokens.clamp(min=1)

    @classmethod
    def from_token_logps(
        cls,
        chosen_token_logps: Tensor,
        chosen_token_mask: Tensor,
        rejected_token_logps: Tensor,
        rejected_token_mask: Tensor,
        **extra: Tensor | None,
    ) -> PolicyLogps:
        """Sums and counts from (B, T) per-token log-probs and masks; ``extra`` fills the optional fields."""
        chosen_mask = chosen_token_mask.to(chosen_token_logps.dtype)
        rejected_mask = rejected_token_mask.to(rejected_token_logps.dtype)
        chosen_token_logps = chosen_token_logps * chosen_mask
        rejected_token_logps = rejected_token_logps * rejected_mask
        return cls(
            chosen=chosen_token_logps.sum(-1),
            rejected=rejected_token_logps.sum(-1),
            chosen_tokens=chosen_mask.sum(-1),
            rejected_tokens=rejected_mask.sum(-1),
            chosen_token_logps=chosen_token_logps,
            chosen_token_mask=chosen_mask,
            rejected_token_logps=rejected_token_logps,
            rejected_token_mask=rejected_mask,
            **extra,
        )


@dataclass
class ReferenceLogps:
    """Log-probabilities of the same responses under the frozen reference model (detached by the loss)."""

    chosen: Tensor
    """(B,) summed log-probs of the chosen response tokens."""
    rejected: Tensor
    """(B,) summed log-probs of the rejected response tokens."""
    chosen_token_logps: Tensor | None = None
    """(B, T) per-token log-probs of the chosen response (dense DPO); masks come from the policy side."""
    rejected_token_logps: Tensor | None = None
    """(B, T) per-token log-probs of the rejected response."""
    corrupted_chosen: Tensor | None = None
    """(B,) summed log-probs of the chosen response given the corrupted image (mDPO)."""


@dataclass
class LossOutput:
    """What a loss returns: per-example losses (with gradients) and detached rewards for the metrics."""

    losses: Tensor
    """(B,) per-example losses; the training loss is their mean."""
    chosen_rewards: Tensor
    """(B,) implicit reward of each chosen response (detached)."""
    rejected_rewards: Tensor
    """(B,) implicit reward of each rejected response (detached)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """Loss-specific scalar metrics (detached), e.g. ``nll`` or ``log_odds_ratio``."""

    @property
    def loss(self) -> Tensor:
        """The scalar to back-propagate: the mean of ``losses``."""
        return self.losses.mean()


@dataclass(frozen=True)
class PreferenceLoss:
    """Base of every loss. Subclasses set ``name``, the ``needs_*`` flags, their option fields, and ``compute``.

    Options are checked when the loss is made; bad values raise :class:`~mmalign.errors.ConfigError`.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    """Where the formula comes from (for listings and reports)."""
    needs_reference: ClassVar[bool] = True
    """The loss reads a :class:`ReferenceLogps` (so the trainer must run or cache a reference model)."""
    # Not annotated as a ClassVar on purpose: IPO and dense DPO make it an option field, which then keeps
    # its place after beta in the option listing.
    length_normalized = False
    """The loss compares mean per-token log-probs rather than sums."""
    needs_corrupted_image: ClassVar[bool] = False
    """The loss reads ``corrupted_chosen``: the chosen response scored given a corrupted image."""
    needs_token_weights: ClassVar[bool] = False
    """The loss reads per-token log-probs with response and span masks (``*_token_logps``, ``*_span_mask``)."""
    needs_chosen_nll: ClassVar[bool] = False
    """The loss adds an NLL term on the chosen response (from ``chosen`` unless ``chosen_nll`` is given)."""
    logs_mean_logps: ClassVar[bool] = False
    """The trainer logs ``logps/chosen`` and ``logps/rejected`` as mean log-probs per response token (the sums
    then as ``logps/chosen_sum`` and ``logps/rejected_sum``), as TRL logs the loss it mirrors; else the sums."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check option values; raise ConfigError naming the option. Subclasses extend this."""

    def __call__(self, policy: PolicyLogps, reference: ReferenceLogps | None = None) -> LossOutput:
        self.check_inputs(policy, reference)
        return self.compute(policy, reference)

    def compute(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> LossOutput:
        raise NotImplementedError

    def check_inputs(self, policy: PolicyLogps, reference: ReferenceLogps | None) -> None:
        """Fail clearly when the forward pass did not fill what this loss declares it needs.

        Missing inputs are a configuration problem (ConfigError); inconsistent shapes are a bug in the caller
        (ValueError), caught here because broadcasting (B,) against (B, 1) would silently give (B, B).
        """
        _check_shapes(policy, reference)
        if self.needs_reference and reference is None:
            raise ConfigError(f"loss {self.name!r} needs reference log-probs (a reference model or a cache)")
        missing_corrupted = policy.corrupted_chosen is None or (
            reference is not None and reference.corrupted_chosen is None
        )
        if self.needs_corrupted_image and missing_corrupted:
            raise ConfigError(
                f"loss {self.name!r} needs log-probs of the chosen response given a corrupted image "
                "(PolicyLogps.corrupted_chosen and ReferenceLogps.corrupted_chosen)"
            )
        if self.needs_token_weights:
            fields = (
                "chosen_token_logps",
                "chosen_token_mask",
                "chosen_span_mask",
                "rejected_token_logps",
                "rejected_token_mask",
                "rejected_span_mask",
            )
            missing = [f"PolicyLogps.{f}" for f in fields if getattr(policy, f) is None]
            if reference is not None:
                for f in ("chosen_token_logps", "rejected_token_logps"):
                    if getattr(reference, f) is None:
                        missing.append(f"ReferenceLogps.{f}")
            if missing:
                raise ConfigError(f"loss {self.name!r} needs token-level log-probs; missing: {', '.join(missing)}")


def _check_shapes(policy: PolicyLogps, reference: ReferenceLogps | None) -> None:
    batch = tuple(policy.chosen.shape)
    if len(batch) != 1:
        raise ValueError(f"PolicyLogps.chosen must have shape (B,), got {batch}")
    sources: list[tuple[str, object]] = [("PolicyLogps", policy)]
    if reference is not None:
        sources.append(("ReferenceLogps", reference))
    token_shapes: dict[str, tuple[int, ...]] = {}
    for owner, container in sources:
        for f in dataclasses.fields(container):  # type: ignore[arg-type]
            value = getattr(container, f.name)
            if value is None:
                continue
            shape = tuple(value.shape)
            if "token_" in f.name or f.name.endswith("span_mask"):  # (B, T), the same T on a side
                side = "chosen" if f.name.startswith("chosen") else "rejected"
                expected = token_shapes.setdefault(side, shape)
                ok = len(shape) == 2 and shape[0] == batch[0] and shape == expected
                wanted = f"({batch[0]}, T) like the other {side} token tensors {expected}"
            else:
                ok, wanted = shape == batch, f"({batch[0]},)"
            if not ok:
                raise ValueError(f"{owner}.{f.name} has shape {shape}; expected {wanted}")


# ----------------------------------------------------------------------------------------- shared maths


def logratios(policy: PolicyLogps, reference: ReferenceLogps) -> tuple[Tensor, Tensor]:
    """(B,) log π(y|x) − log π_ref(y|x) for the chosen and the rejected responses (summed over tokens)."""
    return policy.chosen - reference.chosen.detach(), policy.rejected - reference.rejected.detach()


def dpo_rewards(beta: float, chosen_logratio: Tensor, rejected_logratio: Tensor) -> tuple[Tensor, Tensor]:
    """DPO's implicit rewards β·log(π/π_ref) (Rafailov et al., 2023, Sec. 5), detached."""
    return beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


def chosen_nll(policy: PolicyLogps, reduction: NLLReduction) -> Tensor:
    """(B,) per-example NLL of the chosen responses whose batch mean is the NLL term.

    ``tokens``: the batch's total NLL over its total chosen token count (TRL's ``sft`` term and
    ``nn.CrossEntropyLoss``): example i carries ``-chosen_i · B / Σ tokens``, so the mean is exactly that.
    ``sequence``: each example's mean NLL per token, then the batch mean (every response counts the same).
    ``policy.chosen_nll``, when given, is used as it is.
    """
    if policy.chosen_nll is not None:
        return policy.chosen_nll
    if reduction == "tokens":
        total = policy.chosen_tokens.sum().clamp(min=1)
        return -policy.chosen * (policy.chosen.shape[0] / total)
    return -policy.chosen_mean


# ----------------------------------------------------------------------------------------- option checks


def check_positive(loss: PreferenceLoss, *names: str) -> None:
    for name in names:
        value = getattr(loss, name)
        if not _finite(value) or value <= 0:
            raise ConfigError(f"loss {loss.name!r}: {name} must be a positive number, got {value!r}")


def check_non_negative(loss: PreferenceLoss, *names: str) -> None:
    for name in names:
        value = getattr(loss, name)
        if not _finite(value) or value < 0:
            raise ConfigError(f"loss {loss.name!r}: {name} must be a number >= 0, got {value!r}")


def check_finite(loss: PreferenceLoss, *names: str) -> None:
    for name in names:
        value = getattr(loss, name)
        if not _finite(value):
            raise ConfigError(f"loss {loss.name!r}: {name} must be a finite number, got {value!r}")


def check_half_open(loss: PreferenceLoss, name: str, low: float, high: float) -> None:
    value = getattr(loss, name)
    if not _finite(value) or not low <= value < high:
        raise ConfigError(f"loss {loss.name!r}: {name} must lie in [{low}, {high}), got {value!r}")


def check_choice(loss: PreferenceLoss, name: str) -> None:
    """A Literal-typed option must be one of its values (build_loss checks this too; direct use may not)."""
    hint = typing.get_type_hints(type(loss))[name]
    allowed = typing.get_args(hint)
    if getattr(loss, name) not in allowed:
        raise ConfigError(f"loss {loss.name!r}: {name} must be one of {list(allowed)}, got {getattr(loss, name)!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
