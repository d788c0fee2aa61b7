"""Where a preference loss's reference log-probs come from: a frozen model, the LoRA base, or a cache on disk.

* :class:`ModelReference`: a frozen model (a copy of the policy at the start, or a separate directory); one
  forward per batch, no gradients.
* :class:`AdapterReference`: with LoRA the reference is the same model with the adapter switched off (peft's
  ``disable_adapter()``), so no second copy of the weights is held.
* precomputed: log-probs computed once before training and read by record id, kept on disk
  (:mod:`mmalign.train.reference_cache`).

Reference forwards run in eval mode (no dropout) and under ``torch.no_grad``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError
from mmalign.losses import ReferenceLogps
from mmalign.models.collate import Batch
from mmalign.models.logps import LogpOutput
from mmalign.train.pref_batch import PreferenceBatch, RowScorer, fit_width, reference_logps, score


@dataclass
class ReferenceConfig:
    """Where the reference log-probs come from."""

    mode: Literal["auto", "model", "precomputed", "none"] = option(
        "auto",
        "model: a frozen copy of the starting policy (with LoRA: the same model, adapter disabled) or reference.path; "
        "precomputed: one pass before training, cached on disk; none: reference-free losses only; auto: none for "
        "reference-free losses, else model.",
    )
    path: str | None = option(None, "A separate reference model (directory or preset); null = the starting policy.")
    cache_dir: str | None = option(
        None, "Cache of precomputed log-probs (mode precomputed); null = $MMALIGN_HOME/reference-cache."
    )
    batch_size: int | None = option(None, "Pairs per forward when precomputing; null = train.batch_size.", ge=1)

    def __post_init__(self) -> None:
        check_ranges(self, prefix="reference.")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (dropout off) and no gradients for the duration; the train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def unwrap_module(model: Any) -> Any:
    """The module inside a DDP / accelerate wrapper."""
    while hasattr(model, "module") and not hasattr(model, "disable_adapter"):
        model = model.module
    return model


@dataclass
class ModelReference:
    """A frozen model scored batch by batch (a copy of the starting policy, or a separate model)."""

    model: Any
    token_level: bool
    scorer: RowScorer
    description: str = "frozen copy of the policy"

    def __post_init__(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)

    def logps(self, policy: Any, batch: PreferenceBatch) -> ReferenceLogps:
        device = next(p.device for p in unwrap_module(policy).parameters())
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        with eval_mode(self.model):
            return reference_logps(score(self.model, batch, self.token_level, self.scorer))

    def row_logps(self, policy: Any, rows: Batch) -> LogpOutput:
        """Response log-probs of every row of ``rows`` (unpaired losses: responses and their KL rows)."""
        device = next(p.device for p in unwrap_module(policy).parameters())
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        with eval_mode(self.model):
            return self.scorer(self.model, rows, token_level=self.token_level)


@dataclass
class AdapterReference:
    """The policy with its LoRA adapter disabled: the base model, without a second copy of its weights."""

    token_level: bool
    scorer: RowScorer
    description: str = "the policy with its LoRA adapter disabled"

    def logps(self, policy: Any, batch: PreferenceBatch) -> ReferenceLogps:
        with unwrap_module(policy).disable_adapter(), eval_mode(policy):
            return reference_logps(score(policy, batch, self.token_level, self.scorer))

    def row_logps(self, policy: Any, rows: Batch) -> LogpOutput:
        """Response log-probs of every row of ``rows`` (unpaired losses: responses and their KL rows)."""
        with unwrap_module(policy).disable_adapter(), eval_mode(policy):
            return self.scorer(policy, rows, token_level=self.token_level)


def align_tokens(reference: ReferenceLogps, chosen_width: int | None, rejected_width: int | None) -> ReferenceLogps:
    """Cut or zero-pad the reference's token log-probs to the policy's widths (padding is masked by the loss)."""

    def fit(t: Tensor | None, width: int | None) -> Tensor | None:
        return t if t is None or width is None else fit_width(t, width)

    reference.chosen_token_logps = fit(reference.chosen_token_logps, chosen_width)
    reference.rejected_token_logps = fit(reference.rejected_token_logps, rejected_width)
    return reference


def frozen_copy(model: Any) -> Any:
    """A frozen deep copy of ``model`` (eval mode, no gradients)."""
    if hasattr(model, "disable_adapter"):
        raise ConfigError("a LoRA model's reference is the model with its adapter disabled, not a copy")
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


# ------------------------------------------------------------------------------------------ building


def live_reference(
    source: str, policy: Any, separate: Callable[[], Any] | None, token_level: bool, scorer: RowScorer
) -> ModelReference | AdapterReference | None:
    """The reference scored during training for ``source`` (``copy``, ``adapter``, ``separate``); None for
    ``none`` and ``precomputed`` (see :func:`mmalign.train.reference_cache.precompute_splits`). ``separate``
    loads the separate model."""
    if source == "copy":
        return ModelReference(frozen_copy(policy), token_level, scorer)
    if source == "adapter":
        return AdapterReference(token_level, scorer)
    if source == "separate":
        assert separate is not None
        return ModelReference(separate(), token_level, scorer, "a separate frozen model")
    return None


def load_separate(path: str | Path, policy: Any, **options: Any) -> Any:
    """A separate reference model from ``path``, checked to share the policy's vocabulary."""
    from mmalign.models.loading import load

    ref = load(path, **options).model
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    vocab = [m.config.get_text_config().vocab_size for m in (ref, base)]
    if vocab[0] != vocab[1]:
        raise ConfigError(f"the reference model {path} has a vocabulary of {vocab[0]} tokens, the policy {vocab[1]}")
    return ref
