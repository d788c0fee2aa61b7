"""A preference batch and what a loss needs beyond its chosen and rejected rows; the forward that scores it.

:class:`PreferenceCollator` turns n preference records into a :class:`PreferenceBatch`: one model-layer
:class:`~mmalign.models.collate.Batch` whose rows are every chosen response, then every rejected one, and,
when the loss declares it needs them,

* mDPO's conditional rows (Wang et al., 2024, L_CoPO), appended as rows [2n, 3n): each pair's *chosen*
  response given a corrupted image m'. m' is the record's ``rejected_images`` (``rejected_videos``) when it has
  them (and the loss prefers record images), otherwise each image (each video frame) corrupted on the fly with the
  loss's own options (:meth:`MDPOLoss.corrupt`), seeded by (seed, record id): a record gets the same m' in every
  epoch and every pass, so the policy and the reference (live or precomputed) always score the same corrupted image;
* dense DPO's annotated segments (RLHF-V, Yu et al., 2024) as response-aligned token masks, from the record's
  character spans and the tokenizer's offsets.

:func:`score` runs one model over all rows in one call (the shared-prefix forward computes each distinct
prompt + images once; the plain one runs every row whole); :func:`policy_logps` and :func:`reference_logps`
turn the result into the loss's containers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from mmalign.data.records import PreferenceRecord, VideoRef, locate
from mmalign.data.video_refs import load_videos
from mmalign.errors import DataError
from mmalign.losses import PolicyLogps, PreferenceLoss, ReferenceLogps, span_token_mask
from mmalign.models.collate import IGNORE, Batch, Collator
from mmalign.models.examples import Example, examples_from, open_images
from mmalign.models.logps import LogpOutput, PreferenceLogps, sequence_logps
from mmalign.seeding import record_rng

RowScorer = Callable[..., LogpOutput]
"""``fn(model, batch, token_level=False) -> LogpOutput``: response log-probs of every row of a batch."""


@dataclass
class PreferenceBatch:
    """n preference pairs ready for the model, with the extra rows and masks the loss needs."""

    rows: Batch
    """Chosen responses in rows [0, n), rejected in [n, 2n), mDPO's conditional rows (if any) in [2n, 3n)."""
    ids: list[str]
    """Record id of each pair, in order."""
    chosen_span_mask: Tensor | None = None
    """(n, R) response-aligned: True on chosen tokens inside an annotated span (dense DPO)."""
    rejected_span_mask: Tensor | None = None
    """(n, R) the same for the rejected responses."""
    split: str = "train"
    """Which data split the pairs come from (precomputed reference log-probs are looked up by split and id)."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_corrupted(self) -> bool:
        return len(self.rows) == 3 * len(self.ids) > 0

    @property
    def chosen_tokens(self) -> int:
        """Labelled chosen-response tokens (the denominator of a token-averaged NLL)."""
        if self.rows.labels is None or not self.ids:
            return 0
        return int((self.rows.labels[: len(self.ids)] != IGNORE).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PreferenceBatch:
        """A copy on ``device`` (``non_blocking`` is accepted for accelerate's ``send_to_device``)."""
        del non_blocking
        chosen = None if self.chosen_span_mask is None else self.chosen_span_mask.to(device)
        rejected = None if self.rejected_span_mask is None else self.rejected_span_mask.to(device)
        return replace(self, rows=self.rows.to(device), chosen_span_mask=chosen, rejected_span_mask=rejected)


@dataclass
class PreferenceCollator:
    """Records -> :class:`PreferenceBatch`, with the rows and masks ``loss`` declares it needs."""

    collator: Collator
    """The model layer's collator in train mode (tokenization, images, truncation)."""
    loss: PreferenceLoss
    """The loss being trained: ``needs_corrupted_image`` and ``needs_token_weights`` decide the extras."""
    seed: int = 0
    """Seed of the on-the-fly image corruption (mixed with each record's id)."""
    split: str = "train"
    """Name of the data split this collator serves (stamped on its batches)."""

    def __call__(self, records: list[PreferenceRecord]) -> PreferenceBatch:
        for record in records:
            if not isinstance(record, PreferenceRecord):
                message = "preference training needs preference records (prompt, chosen, rejected)"
                raise DataError(message, record_id=getattr(record, "id", None))
        if self.loss.needs_corrupted_image:
            rows, records = self._with_corrupted(records)
        else:
            rows = self.collator(records)
            skipped = set(rows.skipped)
            records = [r for r in records if r.id not in skipped]
        batch = PreferenceBatch(rows=rows, ids=[r.id for r in records], split=self.split)
        if records and self.loss.needs_token_weights:
            batch.chosen_span_mask, batch.rejected_span_mask = span_masks(rows, records)
        return batch

    def _with_corrupted(self, records: list[PreferenceRecord]) -> tuple[Batch, list[PreferenceRecord]]:
        """Rows chosen | rejected | chosen-under-m', pairs kept or dropped as a unit (``on_overflow: skip``)."""
        while True:
            units = [examples_from(r) for r in records]
            try:
                corrupted = [corrupted_example(r, self.loss, self.seed, self.collator) for r in records]
            except DataError as err:  # an image that will not open: name the record's file and line
                raise locate(err, records).with_traceback(err.__traceback__) from None
            rows = self.collator([u[0] for u in units] + [u[1] for u in units] + corrupted)
            if not rows.skipped:
                rows.n_pairs = len(records)
                return rows, records
            skipped = set(rows.skipped)
            self.collator.n_skipped -= len(rows.skipped) - len([r for r in records if r.id in skipped])
            records = [r for r in records if r.id not in skipped]

    @property
    def n_skipped(self) -> int:
        """Records left out so far because they did not fit ``max_length``."""
        return self.collator.n_skipped

    def settings(self) -> dict[str, Any]:
        """What decides the rows this collator makes (part of the precomputed reference's cache key)."""
        c = self.collator
        out: dict[str, Any] = {
            "max_length": c.max_length,
            "on_overflow": c.on_overflow,
            "pad_to_multiple_of": c.pad_to_multiple_of,
            "image_root": None if c.image_root is None else str(c.image_root),
            "token_level": self.loss.needs_token_weights,
        }
        if c.video_overflow != "error":  # only when set, so caches made before videos keep their key
            out["video_overflow"] = c.video_overflow
        if self.loss.needs_corrupted_image:
            out["corruption"] = {**corruption_options(self.loss), "seed": self.seed}
        return out


def preference_inputs(batch: PreferenceBatch) -> dict[str, Any]:
    """The dict ``Trainer`` passes around (:class:`mmalign.train.trainer.Collate`): the batch, and the token
    tensors it counts tokens by."""
    return {"batch": batch, "input_ids": batch.rows.input_ids, "attention_mask": batch.rows.attention_mask}


def corruption_options(loss: PreferenceLoss) -> dict[str, Any]:
    """The options of an image-conditional loss (mDPO) that decide the corrupted image."""
    names = ("corruption", "keep_min", "keep_max", "prefer_record_images")
    return {name: getattr(loss, name) for name in names if hasattr(loss, name)}


def corrupted_example(record: PreferenceRecord, loss: PreferenceLoss, seed: int, collator: Collator) -> Example:
    """The chosen response under the corrupted image(s) m' of mDPO (Wang et al., 2024, L_CoPO). A video's m' is
    its ``rejected_videos`` (shuffled or dropped frames) when the record has them, else every frame corrupted."""
    has_own = record.rejected_images is not None or record.rejected_videos is not None
    if has_own and getattr(loss, "prefer_record_images", True):
        images = record.images if record.rejected_images is None else record.rejected_images
        videos = record.videos if record.rejected_videos is None else record.rejected_videos
        field = "images" if record.rejected_images is None else "rejected_images"
        example = Example(record.id, record.prompt, list(images), record.chosen, field)
        return replace(example, videos=list(videos), videos_field="rejected_videos")
    source = Example(record.id, record.prompt, list(record.images), record.chosen)
    images = open_images(source, collator.image_root, collator.max_image_pixels)
    rng = record_rng(seed, record.id)
    corrupted = [loss.corrupt(image, rng) for image in images]  # type: ignore[attr-defined]
    frames = load_videos(record.videos, collator.image_root, record_id=record.id, max_pixels=collator.max_image_pixels)
    videos = [VideoRef(frames=tuple(loss.corrupt(f, rng) for f in video)) for video in frames]  # type: ignore[attr-defined]
    return replace(Example(record.id, record.prompt, corrupted, record.chosen), videos=videos)


def span_masks(rows: Batch, records: list[PreferenceRecord]) -> tuple[Tensor, Tensor]:
    """(n, R) chosen and rejected span masks, response-aligned like token-level log-probs."""
    n = len(records)
    masks: list[list[bool]] = []
    for side, attr in ((0, "chosen_spans"), (1, "rejected_spans")):
        for i, record in enumerate(records):
            row = side * n + i
            spans = getattr(record, attr)
            start = rows.response_text_start[row]
            if spans and start < 0:
                raise DataError(
                    "the chat template changed the response text, so its spans cannot be placed on tokens",
                    record_id=record.id,
                    field=attr,
                )
            masks.append(span_token_mask(rows.response_offsets[row], spans, offset=max(start, 0)))
    out = torch.zeros(len(masks), max([len(m) for m in masks] + [1]), dtype=torch.bool)
    for i, mask in enumerate(masks):
        out[i, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
    return out[:n], out[n:]


# ------------------------------------------------------------------------------------------------ scoring


def row_scorer(share_prefix: bool | str) -> tuple[RowScorer, bool]:
    """The forward over a batch's rows: with ``True`` the shared-prefix one (:mod:`mmalign.models.prefix`), with
    ``"auto"`` the shared-prefix one where the sizes make it faster (:func:`~mmalign.models.prefix.auto_prefix_logps`)
    and the plain one elsewhere, with ``False`` (or without the prefix module) the plain one. Returns the function and
    whether it may share prefixes."""
    if share_prefix:
        try:
            from mmalign.models.prefix import auto_prefix_logps, shared_prefix_logps
        except ImportError as err:
            if err.name != "mmalign.models.prefix":
                raise
        else:
            return (auto_prefix_logps if share_prefix == "auto" else shared_prefix_logps), True
    return sequence_logps, False


def score(model: Any, batch: PreferenceBatch, token_level: bool, scorer: RowScorer = sequence_logps) -> PreferenceLogps:
    """Response log-probs of ``model`` on every row of ``batch``, in one call of ``scorer``."""
    out = scorer(model, batch.rows, token_level=token_level)
    return out.pairs(len(batch), corrupted=batch.has_corrupted)


def fit_width(t: Tensor, width: int) -> Tensor:
    """(N, T) cut or zero-padded on the right to ``width`` columns (per-token values lined up with another's)."""
    return t[:, :width] if t.shape[1] >= width else torch.nn.functional.pad(t, (0, width - t.shape[1]))


def policy_logps(scores: PreferenceLogps, batch: PreferenceBatch, chosen_nll: Tensor | None = None) -> PolicyLogps:
    """The loss's :class:`PolicyLogps` from the policy's scores (token-level fields when they were computed)."""
    c, r = scores.chosen, scores.rejected
    corrupted = None if scores.corrupted is None else scores.corrupted.sum
    if c.token_logps is not None and r.token_logps is not None:
        assert c.token_mask is not None and r.token_mask is not None
        extra: dict[str, Tensor | None] = {"corrupted_chosen": corrupted, "chosen_nll": chosen_nll}
        if batch.chosen_span_mask is not None and batch.rejected_span_mask is not None:
            extra["chosen_span_mask"] = fit_width(batch.chosen_span_mask, c.token_logps.shape[1]).to(
                c.token_logps.dtype
            )
            extra["rejected_span_mask"] = fit_width(batch.rejected_span_mask, r.token_logps.shape[1]).to(
                r.token_logps.dtype
            )
        return PolicyLogps.from_token_logps(c.token_logps, c.token_mask, r.token_logps, r.token_mask, **extra)
    return PolicyLogps(
        chosen=c.sum,
        rejected=r.sum,
        chosen_tokens=c.n_tokens.to(c.sum.dtype),
        rejected_tokens=r.n_tokens.to(r.sum.dtype),
        chosen_nll=chosen_nll,
        corrupted_chosen=corrupted,
    )


def reference_logps(scores: PreferenceLogps) -> ReferenceLogps:
    """The loss's :class:`ReferenceLogps` from the reference model's scores (detached)."""

    def detach(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.detach()

    return ReferenceLogps(
        chosen=scores.chosen.sum.detach(),
        rejected=scores.rejected.sum.detach(),
        chosen_token_logps=detach(scores.chosen.token_logps),
        rejected_token_logps=detach(scores.rejected.token_logps),
        corrupted_chosen=None if scores.corrupted is None else scores.corrupted.sum.detach(),
    )
