"""A batch of binary-feedback records for the unpaired losses (KTO, APO-zero unpaired), and its log-probs.

:class:`FeedbackCollator` turns n :class:`~mmalign.data.records.FeedbackRecord` into a :class:`FeedbackBatch`: one
model-layer :class:`~mmalign.models.collate.Batch` (the same collator as DPO's: tokenization, images, truncation)
of each record's prompt + images + completion and, when the loss estimates KTO's reference point z0, a second
one of the *mismatched* KL pairs: prompt i with its own images and the completion of record
``mismatched_pairs(n)[i]`` (the batch's completions rotated by one, as TRL 1.16's
``DataCollatorForVisionUnpairedPreference`` does: ``completions[-1:] + completions[:-1]``). A batch of one record
gets its own completion as KL row, as TRL's rotation of one gives (``train.batch_size`` >= 2 is required, as TRL
requires it). Records that do not fit ``data.max_length`` (``on_overflow: skip``) are dropped before the KL rows
are formed, so the rotation is over the records kept (the KL rows have the same prompts and images, so they fit
where the responses do; a KL completion longer than the room left is truncated, as TRL truncates).

:func:`feedback_logps` scores a batch with the policy: the responses with gradients, the KL rows under
``torch.no_grad`` (z0 is detached by the loss; TRL computes them the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mmalign.data.records import FeedbackRecord
from mmalign.errors import DataError
from mmalign.losses.kto import mismatched_pairs
from mmalign.models.collate import Batch, Collator
from mmalign.models.examples import Example
from mmalign.models.logps import sequence_logps


@dataclass
class FeedbackBatch:
    """n labelled responses ready for the model, with their mismatched KL rows when the loss needs them."""

    rows: Batch
    """The n responses: record i's prompt, images and completion."""
    ids: list[str]
    """Record id of each response, in order."""
    label: Tensor
    """(n,) bool: True for a desirable response."""
    kl_rows: Batch | None = None
    """The n mismatched KL pairs: record i's prompt and images with the completion of record ``kl_ids[i]``."""
    kl_ids: list[str] = field(default_factory=list)
    """Per record, the id of the record whose completion its KL row holds (empty without KL rows)."""
    split: str = "train"
    """Which data split the records come from (precomputed reference log-probs are looked up by split and id)."""

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FeedbackBatch:
        """A copy on ``device`` (``non_blocking`` is accepted for accelerate's ``send_to_device``)."""
        del non_blocking
        kl_rows = None if self.kl_rows is None else self.kl_rows.to(device)
        return replace(self, rows=self.rows.to(device), kl_rows=kl_rows, label=self.label.to(device))


def kl_partners(n: int) -> list[int]:
    """For each of n records, the index of the record whose completion forms its KL row (one record: itself)."""
    return [0] if n == 1 else mismatched_pairs(n)


@dataclass
class FeedbackCollator:
    """Feedback records -> :class:`FeedbackBatch`, with KL rows when ``needs_kl``."""

    collator: Collator
    """The model layer's collator in train mode (tokenization, images, truncation)."""
    needs_kl: bool = True
    """Add the mismatched KL rows (KTO); False for losses without a reference point (APO-zero unpaired)."""
    split: str = "train"
    """Name of the data split this collator serves (stamped on its batches)."""

    def __call__(self, records: list[FeedbackRecord]) -> FeedbackBatch:
        for record in records:
            if not isinstance(record, FeedbackRecord):
                message = (
                    "unpaired losses (kto, apo_zero_unpaired) train on binary-feedback records (prompt, completion, "
                    "label); make them from pairs with `mmalign data unpair`"
                )
                raise DataError(message, record_id=getattr(record, "id", None))
        rows = self.collator([_example(r, r) for r in records])
        if rows.skipped:  # drop the records that do not fit, then form the KL rows over the ones kept
            skipped = set(rows.skipped)
            records = [r for r in records if r.id not in skipped]
        label = torch.tensor([r.label for r in records], dtype=torch.bool)
        batch = FeedbackBatch(rows, [r.id for r in records], label, split=self.split)
        if self.needs_kl and records:
            partners = kl_partners(len(records))
            # the same prompts and images as the responses, so the KL rows fit wherever the responses do
            batch.kl_rows = self.collator([_example(r, records[j]) for r, j in zip(records, partners, strict=True)])
            batch.kl_ids = [records[j].id for j in partners]
        return batch

    @property
    def n_skipped(self) -> int:
        """Records left out so far because they did not fit ``max_length``."""
        return self.collator.n_skipped

    def settings(self) -> dict[str, Any]:
        """What decides the rows this collator makes (part of the precomputed reference's cache key)."""
        c = self.collator
        return {
            "max_length": c.max_length,
            "on_overflow": c.on_overflow,
            "pad_to_multiple_of": c.pad_to_multiple_of,
            "image_root": None if c.image_root is None else str(c.image_root),
            "kl_rows": self.needs_kl,
        }


def _example(record: FeedbackRecord, completion_of: FeedbackRecord) -> Example:
    """``record``'s prompt and images with ``completion_of``'s completion."""
    return Example(record.id, record.prompt, list(record.images), completion_of.completion, origin=record.origin)


def feedback_inputs(batch: FeedbackBatch) -> dict[str, Any]:
    """The dict ``Trainer`` passes around: the batch, and the token tensors it counts tokens by (the responses')."""
    n = len(batch)
    return {"batch": batch, "input_ids": batch.rows.input_ids[:n], "attention_mask": batch.rows.attention_mask[:n]}


def feedback_logps(model: Any, batch: FeedbackBatch) -> tuple[Tensor, Tensor | None]:
    """(n,) summed response log-probs of the policy (with gradients) and (n,) of its KL rows (computed under
    ``torch.no_grad``, in the model's current mode, as TRL does), or None without KL rows."""
    policy = sequence_logps(model, batch.rows).sum
    if batch.kl_rows is None:
        return policy, None
    with torch.no_grad():
        return policy, sequence_logps(model, batch.kl_rows).sum
