"""Log-probabilities of response tokens: per sequence, and per preference pair from one forward pass.

:class:`LogpOutput` is the one result type of a scoring forward (rows of a batch); :class:`PreferenceLogps` is its
rows read as preference pairs (chosen, rejected and, for mDPO, chosen-under-a-corrupted-image), a view made by
:meth:`LogpOutput.pairs`. What a loss takes is built from these (:mod:`mmalign.losses.base`).

``log p(y | x, images) = sum_t log softmax(logits_{t-1})[y_t]`` over the response tokens y (labels != -100),
the quantity every DPO-family loss compares (Rafailov et al., 2023, Eq. 7). The log-softmax runs in fp32
and only at response positions, so a bf16 model with a large vocabulary never materialises fp32 logits for
its image and prompt tokens; the model is asked for logits from the first response position on only
(``logits_to_keep``), which skips the LM head over long image prompts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmalign.errors import ConfigError
from mmalign.models.collate import IGNORE, Batch


@dataclass
class LogpOutput:
    """Response log-probs of B sequences."""

    sum: Tensor
    """(B,) summed log-prob of the response tokens (fp32)."""
    mean: Tensor
    """(B,) ``sum / n_tokens`` (0 for a sequence with no response token)."""
    n_tokens: Tensor
    """(B,) number of response tokens (long)."""
    token_logps: Tensor | None = None
    """(B, R) log-prob of each response token, response-aligned (column j is the j-th response token), 0 past
    the end; R is the longest response in the batch."""
    token_mask: Tensor | None = None
    """(B, R) True on response tokens."""

    def rows(self, start: int, stop: int) -> LogpOutput:
        """The log-probs of rows ``[start, stop)``."""
        rows = slice(start, stop)
        return LogpOutput(
            sum=self.sum[rows],
            mean=self.mean[rows],
            n_tokens=self.n_tokens[rows],
            token_logps=None if self.token_logps is None else self.token_logps[rows],
            token_mask=None if self.token_mask is None else self.token_mask[rows],
        )

    def pairs(self, n: int, corrupted: bool = False) -> PreferenceLogps:
        """Rows read as n preference pairs: chosen ``[0, n)``, rejected ``[n, 2n)`` and, when ``corrupted``, the
        chosen responses under corrupted images ``[2n, 3n)`` (mDPO)."""
        extra = self.rows(2 * n, 3 * n) if corrupted else None
        return PreferenceLogps(self.rows(0, n), self.rows(n, 2 * n), extra)


@dataclass
class PreferenceLogps:
    """Response log-probs of n preference pairs, from one forward pass."""

    chosen: LogpOutput
    """Chosen responses (rows ``[0, n)`` of the batch)."""
    rejected: LogpOutput
    """Rejected responses (rows ``[n, 2n)``)."""
    corrupted: LogpOutput | None = None
    """Chosen responses given corrupted images (mDPO; rows ``[2n, 3n)``), when the batch has them."""


def unwrap_model(model: Any) -> Any:
    """The ``transformers`` model under DDP / PEFT wrappers (for reading its config and signature)."""
    while isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def logits_temperature(model: Any, temperature: float) -> Iterator[None]:
    """The model's logits divided by ``temperature`` for the duration (a forward hook on its output embeddings), so
    any scoring forward gives log-probs under the tempered distribution the completions were sampled from, as TRL's
    GRPO computes its policy, old and reference log-probs. ``temperature`` 1: nothing changes."""
    if temperature == 1.0:
        yield
        return
    head = unwrap_model(model).get_output_embeddings()
    if head is None:
        raise ConfigError(f"{type(unwrap_model(model)).__name__} has no output embeddings to apply a temperature to")
    handle = head.register_forward_hook(lambda module, args, output: output / temperature)
    try:
        yield
    finally:
        handle.remove()


def tempered(scorer: Callable[..., LogpOutput], temperature: float) -> Callable[..., LogpOutput]:
    """``scorer`` (a row forward: :func:`sequence_logps` or a shared-prefix one) at ``temperature``."""
    if temperature == 1.0:
        return scorer

    def score(model: Any, batch: Batch, token_level: bool = False) -> LogpOutput:
        with logits_temperature(model, temperature):
            return scorer(model, batch, token_level=token_level)

    return score


def weights_sharded(model: Any) -> bool:
    """Whether FSDP (``fully_shard`` or ``FullyShardedDataParallel``) or DeepSpeed ZeRO-3 (parameters with a
    ``ds_id``) shards ``model``'s weights."""
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

        if any(isinstance(m, FSDPModule | FullyShardedDataParallel) for m in model.modules()):
            return True
    return any(hasattr(p, "ds_id") for p in model.parameters())


SHARDED = (
    "the weights are sharded (FSDP / ZeRO-3): the gradient through the prefix's KV cache reaches weights the "
    "sharding has already released (FSDP2 fails in backward)"
)
"""Why the shared-prefix forward does not train a sharded model (:func:`mmalign.models.prefix.plan_shared`)."""


def _keeps_logits(model: Any) -> bool:
    """Whether the model's forward takes ``logits_to_keep``."""
    return "logits_to_keep" in inspect.signature(unwrap_model(model).forward).parameters


def model_device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def response_logits(model: Any, batch: Batch) -> tuple[Tensor, int]:
    """Logits of the positions that predict response tokens: (B, K, V) for the last K positions, and the
    index of the first kept position. Right-padded training batches only."""
    if batch.labels is None:
        raise ConfigError("log-probs need a training batch (labels); collate with mode='train'")
    if batch.padding_side != "right":
        raise ConfigError("log-probs need a right-padded batch (collate with mode='train')")
    device, dtype = model_device_dtype(model)
    batch = batch.to(device, dtype)
    width = batch.input_ids.shape[1]
    # position t - 1 predicts token t: keep from one before the earliest response token
    first = max(int(batch.prompt_lengths.min()) - 1, 0)
    inputs: dict[str, Any] = {**batch.model_inputs(), "use_cache": False}
    if _keeps_logits(model):
        inputs["logits_to_keep"] = width - first
        logits = model(**inputs).logits
    else:
        logits = model(**inputs).logits[:, first:]
    return logits, first


def sequence_logps(model: Any, batch: Batch, token_level: bool = False) -> LogpOutput:
    """Summed and mean log-prob of each row's response tokens, and their count (one forward pass).

    ``token_level`` also returns the per-token log-probs (response-aligned) and their mask.
    """
    if len(batch) == 0:
        raise ConfigError("empty batch: every record was skipped (see batch.skipped)")
    logits, first = response_logits(model, batch)
    labels = batch.labels.to(logits.device)  # type: ignore[union-attr]
    targets = labels[:, first + 1 :]
    predicting = logits[:, : targets.shape[1]]
    mask = targets != IGNORE
    picked = predicting[mask].float().log_softmax(-1).gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
    token_logps = torch.zeros(targets.shape, dtype=torch.float32, device=logits.device)
    token_logps = token_logps.masked_scatter(mask, picked)
    n_tokens = mask.sum(-1)
    total = token_logps.sum(-1)
    mean = total / n_tokens.clamp(min=1)
    out = LogpOutput(sum=total, mean=mean, n_tokens=n_tokens)
    if token_level:
        out.token_logps, out.token_mask = _response_aligned(token_logps, mask, n_tokens)
    return out


def _response_aligned(token_logps: Tensor, mask: Tensor, n_tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Shift each row so its first response token is column 0 (responses are contiguous)."""
    width = max(int(n_tokens.max()), 1)
    starts = mask.float().argmax(-1)
    columns = torch.arange(width, device=mask.device)
    index = (starts.unsqueeze(-1) + columns).clamp(max=mask.shape[1] - 1)
    aligned_mask = columns.unsqueeze(0) < n_tokens.unsqueeze(-1)
    aligned = token_logps.gather(1, index) * aligned_mask
    return aligned, aligned_mask


def preference_logps(model: Any, batch: Batch, token_level: bool = False) -> PreferenceLogps:
    """Chosen and rejected response log-probs from ONE forward over the 2n rows of a preference batch
    (each side with its own images when the pair has ``rejected_images``)."""
    if batch.n_pairs == 0:
        raise ConfigError("not a preference batch: collate preference records (chosen/rejected) in train mode")
    return sequence_logps(model, batch, token_level=token_level).pairs(batch.n_pairs)
