"""Reference log-probs for the unpaired losses: of each response and of its mismatched KL row.

* :class:`LiveFeedbackReference`: a frozen model, the LoRA base (adapter off) or a separate model, scored batch by
  batch (:class:`~mmalign.train.reference.ModelReference`, :class:`~mmalign.train.reference.AdapterReference`).
* :class:`CachedFeedbackReference`: computed once before training (``reference.mode: precomputed``), saved as
  safetensors and read by (split, record id). It holds each record's response log-prob *and* its KL row's, so the
  KL rows must be the ones it was computed for: the records are scored in blocks of ``train.batch_size`` in file
  order, each block's completions rotated as :func:`~mmalign.train.feedback_batch.kl_partners` says, and training
  then draws those same blocks (:class:`BlockSampler`: the blocks shuffled, each kept whole; held-out data is read
  in order, so its batches are the blocks). A batch whose KL pair is not in the cache (another batch size, or the
  padding accelerate adds to an uneven last batch under several processes) is refused, naming the record.

The cache file is named by, and stores, the dataset fingerprint (records, images, collator settings, block size,
tokenizer) and the weights' hash (:mod:`mmalign.train.reference_cache`); a cache for other data or weights is
recomputed, never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler

from mmalign.data.records import FeedbackRecord
from mmalign.errors import DataError
from mmalign.files import atomic_path
from mmalign.models.logps import sequence_logps
from mmalign.train.feedback_batch import FeedbackBatch, FeedbackCollator
from mmalign.train.reference import eval_mode, unwrap_module
from mmalign.train.reference_cache import dataset_fingerprint, processor_fingerprint, weights_fingerprint

logger = logging.getLogger(__name__)

CACHE_FORMAT = "mmalign.reference.feedback/1"


@dataclass
class LiveFeedbackReference:
    """A reference model scored during training (``inner`` has ``row_logps(policy, rows)``)."""

    inner: Any

    @property
    def description(self) -> str:
        return str(self.inner.description)

    def logps(self, policy: Any, batch: FeedbackBatch) -> tuple[Tensor, Tensor | None]:
        """(n,) reference log-probs of the responses and (n,) of the KL rows (None without KL rows)."""
        responses = self.inner.row_logps(policy, batch.rows).sum.detach()
        kl = None if batch.kl_rows is None else self.inner.row_logps(policy, batch.kl_rows).sum.detach()
        return responses, kl


@dataclass
class CachedFeedbackReference:
    """Precomputed reference log-probs looked up by (split, record id), each with the KL partner it was made for."""

    tensors: dict[str, Tensor]
    """``response`` (N,) and, with KL rows, ``kl`` (N,)."""
    index: dict[tuple[str, str], int]
    kl_ids: list[str]
    """Per row, the id of the record whose completion formed its KL row (empty without KL rows)."""
    description: str = "precomputed log-probs"
    files: list[Path] = field(default_factory=list)

    def logps(self, policy: Any, batch: FeedbackBatch) -> tuple[Tensor, Tensor | None]:
        device = batch.rows.input_ids.device
        rows = []
        for i, record_id in enumerate(batch.ids):
            row = self.index.get((batch.split, record_id))
            if row is None:
                raise DataError(
                    f"no precomputed reference log-probs for this {batch.split} record", record_id=record_id
                )
            if batch.kl_ids and self.kl_ids[row] != batch.kl_ids[i]:
                raise DataError(
                    f"the precomputed KL row of this record pairs it with {self.kl_ids[row]!r}, but the batch pairs it "
                    f"with {batch.kl_ids[i]!r}: precomputed KTO reference log-probs need the batches they were "
                    "computed for (the same train.batch_size, one process or evenly divided data)",
                    record_id=record_id,
                )
            rows.append(row)
        pick = torch.tensor(rows, dtype=torch.long)
        kl = self.tensors["kl"][pick].to(device) if batch.kl_ids else None
        return self.tensors["response"][pick].to(device), kl

    @classmethod
    def merge(cls, parts: Sequence[CachedFeedbackReference]) -> CachedFeedbackReference:
        """One lookup over the caches of several splits (train, eval)."""
        index: dict[tuple[str, str], int] = {}
        base = 0
        for part in parts:
            index.update({key: base + row for key, row in part.index.items()})
            base += len(part.index)
        tensors = {name: torch.cat([p.tensors[name] for p in parts]) for name in parts[0].tensors}
        kl_ids = [i for p in parts for i in p.kl_ids]
        return cls(tensors, index, kl_ids, files=[f for p in parts for f in p.files])


class BlockSampler(Sampler[int]):
    """Indices in blocks of ``block`` consecutive records (file order), the full blocks shuffled each epoch by
    (seed, epoch) and the last, partial one kept last: every batch of ``block`` records is one block."""

    def __init__(self, n: int, block: int, seed: int = 0) -> None:
        self.n, self.block, self.seed, self.epoch = n, block, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        full = self.n // self.block
        order = torch.randperm(full, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        for b in order.tolist():
            yield from range(b * self.block, (b + 1) * self.block)
        yield from range(full * self.block, self.n)


# ------------------------------------------------------------------------------------------ computing


def _compute(
    model: Any, records: Sequence[FeedbackRecord], collator: FeedbackCollator, block: int, adapter_off: bool
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    device = next(model.parameters()).device
    ids: list[str] = []
    kl_ids: list[str] = []
    columns: dict[str, list[Tensor]] = {"response": [], "kl": []}
    off = unwrap_module(model).disable_adapter() if adapter_off else contextlib.nullcontext()
    with off, eval_mode(model):
        for start in range(0, len(records), block):
            batch = collator(list(records[start : start + block]))
            if not len(batch):
                continue
            batch = batch.to(device)
            ids.extend(batch.ids)
            columns["response"].append(sequence_logps(model, batch.rows).sum.float().cpu())
            if batch.kl_rows is not None:
                kl_ids.extend(batch.kl_ids)
                columns["kl"].append(sequence_logps(model, batch.kl_rows).sum.float().cpu())
    return {name: torch.cat(parts) for name, parts in columns.items() if parts}, ids, kl_ids


def precompute_feedback(
    model: Any,
    records: Sequence[FeedbackRecord],
    collator: FeedbackCollator,
    processor: Any,
    cache_dir: str | Path,
    *,
    block: int,
    adapter_off: bool = False,
    name: str = "train",
    weights: str | None = None,
) -> CachedFeedbackReference:
    """Reference log-probs of every record of ``records`` and of its KL row (blocks of ``block`` records), read
    from ``cache_dir`` when made for exactly these records, settings and weights, else computed and saved."""
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            message = "duplicate record id; precomputed reference log-probs are looked up by id"
            raise DataError(message, record_id=record.id, field="id")
        seen.add(record.id)
    settings = {**collator.settings(), "block": block}
    fingerprint = dataset_fingerprint(records, settings, processor_fingerprint(processor))  # type: ignore[arg-type]
    weights = weights or weights_fingerprint(model)
    key = hashlib.sha256(f"{CACHE_FORMAT}|{fingerprint}|{weights}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"reference-feedback-{name}-{key}.safetensors"
    if path.is_file() and (cached := _load(path, fingerprint, weights, name)) is not None:
        logger.info("reference log-probs (%s): %d records read from %s", name, len(cached.index), path)
        cached.description = f"{name}: read from {path}"
        return cached
    start = time.perf_counter()
    tensors, ids, kl_ids = _compute(model, records, collator, block, adapter_off)
    meta = {
        "format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "weights": weights,
        "ids": json.dumps(ids),
        "kl_ids": json.dumps(kl_ids),
    }
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    seconds = time.perf_counter() - start
    logger.info("reference log-probs (%s): %d records in %.1f s, saved to %s", name, len(ids), seconds, path)
    index = {(name, i): row for row, i in enumerate(ids)}
    return CachedFeedbackReference(tensors, index, kl_ids, f"{name}: computed, saved to {path}", [path])


def _load(path: Path, fingerprint: str, weights: str, split: str) -> CachedFeedbackReference | None:
    """The cache at ``path`` if it is complete and made for this fingerprint and these weights; else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        ids, kl_ids = json.loads(meta.get("ids", "null")), json.loads(meta.get("kl_ids", "null"))
    except Exception as err:  # a damaged file is recomputed, never trusted
        logger.warning("reference cache %s is unreadable (%s); recomputing", path, err)
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != fingerprint or meta.get("weights") != weights:
        return None
    n = len(ids) if isinstance(ids, list) else -1
    ok = n >= 0 and isinstance(kl_ids, list) and len(kl_ids) in (0, n) and len(set(ids)) == n
    ok = ok and all(t.shape == (n,) for t in tensors.values()) and ("kl" in tensors) == bool(kl_ids)
    if not ok:
        logger.warning("reference cache %s is inconsistent; recomputing", path)
        return None
    return CachedFeedbackReference(tensors, {(split, i): row for row, i in enumerate(ids)}, kl_ids, files=[path])


def precompute_feedback_splits(
    model: Any,
    splits: Sequence[tuple[str, Sequence[FeedbackRecord], FeedbackCollator]],
    processor: Any,
    cache_dir: Path,
    *,
    block: int,
    adapter_off: bool,
) -> CachedFeedbackReference:
    """Reference log-probs of every split (train, eval); under several processes the main one computes first."""
    from accelerate import PartialState

    weights = weights_fingerprint(model)
    parts = []
    with PartialState().main_process_first():
        for name, records, collator in splits:
            parts.append(
                precompute_feedback(
                    model,
                    records,
                    collator,
                    processor,
                    cache_dir,
                    block=block,
                    adapter_off=adapter_off,
                    name=name,
                    weights=weights,
                )
            )
    merged = CachedFeedbackReference.merge(parts)
    merged.description = "precomputed log-probs (" + "; ".join(p.description for p in parts) + ")"
    return merged
