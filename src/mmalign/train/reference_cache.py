"""Precomputed reference log-probs: computed once before training, kept on disk, read by record id.

:class:`CachedReference` looks the log-probs up by (split, record id). The cache file is named by, and stores,
the dataset fingerprint (records' content, images by path + size + mtime or by their bytes, collator settings,
tokenizer) and a hash of the reference weights; both are checked before use, so a cache made for other data or
other weights is never read (it is recomputed). Stored as safetensors (no pickle).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmalign.data.images import resolve_image
from mmalign.data.records import ImageBlob, PreferenceRecord
from mmalign.errors import DataError
from mmalign.files import atomic_path
from mmalign.losses import ReferenceLogps
from mmalign.train.pref_batch import PreferenceBatch, PreferenceCollator, RowScorer, score
from mmalign.train.reference import eval_mode, unwrap_module

logger = logging.getLogger(__name__)

CACHE_FORMAT = "mmalign.reference/1"


@dataclass
class CachedReference:
    """Precomputed log-probs looked up by record id (see :func:`precompute_reference`)."""

    tensors: dict[str, Tensor]
    index: dict[tuple[str, str], int]
    """(split, record id) -> row of the tensors."""
    description: str = "precomputed log-probs"
    files: list[Path] = field(default_factory=list)

    def logps(self, policy: Any, batch: PreferenceBatch) -> ReferenceLogps:
        device = batch.rows.input_ids.device
        try:
            rows = [self.index[batch.split, i] for i in batch.ids]
        except KeyError as err:
            message = f"no precomputed reference log-probs for this {batch.split} record"
            raise DataError(message, record_id=str(err.args[0][1])) from None
        pick = torch.tensor(rows, dtype=torch.long)

        def column(name: str) -> Tensor | None:
            return self.tensors[name][pick].to(device) if name in self.tensors else None

        out = ReferenceLogps(chosen=column("chosen"), rejected=column("rejected"))  # type: ignore[arg-type]
        out.corrupted_chosen = column("corrupted_chosen")
        if "chosen_token_logps" in self.tensors:  # one width for both sides, as a forward over all rows gives
            pieces = {side: self._pieces(side, rows) for side in ("chosen", "rejected")}
            width = max([len(p) for side in pieces.values() for p in side] + [1])
            out.chosen_token_logps = _stack(pieces["chosen"], width).to(device)
            out.rejected_token_logps = _stack(pieces["rejected"], width).to(device)
        return out

    def _pieces(self, side: str, rows: list[int]) -> list[Tensor]:
        flat, offsets = self.tensors[f"{side}_token_logps"], self.tensors[f"{side}_token_offsets"]
        return [flat[int(offsets[r]) : int(offsets[r + 1])] for r in rows]

    @classmethod
    def merge(cls, parts: Sequence[CachedReference]) -> CachedReference:
        """One lookup over the caches of several splits (train, eval)."""
        if len(parts) == 1:
            return parts[0]
        tensors: dict[str, Tensor] = {}
        index: dict[tuple[str, str], int] = {}
        base = 0
        for part in parts:
            index.update({key: base + row for key, row in part.index.items()})
            base += len(part.index)
        for name in parts[0].tensors:
            if name.endswith("_token_offsets"):
                continue
            tensors[name] = torch.cat([p.tensors[name] for p in parts])
        for side in ("chosen", "rejected"):
            if f"{side}_token_offsets" in parts[0].tensors:
                offsets, base = [torch.zeros(1, dtype=torch.long)], 0
                for part in parts:
                    offsets.append(part.tensors[f"{side}_token_offsets"][1:] + base)
                    base += int(part.tensors[f"{side}_token_offsets"][-1])
                tensors[f"{side}_token_offsets"] = torch.cat(offsets)
        return cls(tensors, index, files=[f for p in parts for f in p.files])


def _stack(pieces: list[Tensor], width: int) -> Tensor:
    out = torch.zeros(len(pieces), width)
    for i, piece in enumerate(pieces):
        out[i, : len(piece)] = piece
    return out


# ------------------------------------------------------------------------------------------ fingerprints


def weights_fingerprint(model: Any) -> str:
    """A hash of the reference weights: every parameter and buffer (name, dtype, shape, bytes).

    LoRA adapter weights are left out and peft's name prefixes removed, so a LoRA-wrapped model with its
    adapter disabled hashes like its plain base model (the two give the same log-probs).
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(type(unwrap_module(model)).__name__.encode())
    state = unwrap_module(model).state_dict()
    names = {}
    for name in state:
        if ".lora_" in name or "modules_to_save" in name:
            continue
        names[name.removeprefix("base_model.model.").replace(".base_layer.", ".")] = name
    for clean in sorted(names):
        tensor = state[names[clean]].detach()
        h.update(f"{clean}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(tensor.contiguous().cpu().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _image_key(image: Any, root: Path | None, field_name: str) -> Any:
    if isinstance(image, str):
        try:
            stat = resolve_image(root or Path("."), image, field_name).stat()
        except DataError:
            return ["missing", image]
        return [image, stat.st_size, stat.st_mtime_ns]
    if isinstance(image, ImageBlob):
        return [image.path, hashlib.sha256(image.data).hexdigest()]
    return [image.mode, list(image.size), hashlib.sha256(image.tobytes()).hexdigest()]


def processor_fingerprint(processor: Any) -> str:
    """A hash of what turns text and images into model inputs: vocabulary, chat template, image settings."""
    tokenizer = getattr(processor, "tokenizer", processor)
    parts = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "template": getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None),
        "image": getattr(getattr(processor, "image_processor", None), "to_dict", dict)(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def dataset_fingerprint(records: Sequence[PreferenceRecord], settings: dict[str, Any], processor_hash: str) -> str:
    """A hash of the records' content (images, video files and frames by path + size + mtime, or by their bytes)
    and how they are collated: a change to any record, image or video file or setting gives another fingerprint."""
    h = hashlib.sha256()
    h.update(json.dumps({"settings": settings, "processor": processor_hash}, sort_keys=True, default=str).encode())
    root = None if settings.get("image_root") is None else Path(settings["image_root"])
    for record in records:
        row = record.to_dict()
        for key, images in record.image_lists().items():
            row[key] = [_image_key(image, root, f"{key}[{i}]") for i, image in enumerate(images)]
        for key, videos in record.video_lists().items():  # a video file or each frame, like an image
            row[key] = [
                [_image_key(f, root, key) for f in video.frames]
                if video.frames is not None
                else [_image_key(video.path, root, key), video.to_dict()["sampling"]]
                for video in videos
            ]
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ the cache


def _load_cache(path: Path, fingerprint: str, weights: str, split: str) -> CachedReference | None:
    """The cache at ``path`` if it is complete and made for this fingerprint and these weights; else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        ids = json.loads(meta.get("ids", "null"))
    except Exception as err:  # a damaged file is recomputed, never trusted
        logger.warning("reference cache %s is unreadable (%s); recomputing", path, err)
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != fingerprint or meta.get("weights") != weights:
        logger.warning("reference cache %s was made for other data or weights; recomputing", path)
        return None
    n = len(ids) if isinstance(ids, list) else -1
    ok = n >= 0 and len(set(ids)) == n and all(t.shape[0] == n for k, t in tensors.items() if "token" not in k)
    for side in ("chosen", "rejected"):
        offsets = tensors.get(f"{side}_token_offsets")
        if offsets is not None:
            flat = tensors.get(f"{side}_token_logps")
            ok = ok and flat is not None and len(offsets) == n + 1 and int(offsets[-1]) == len(flat)
    if not ok:
        logger.warning("reference cache %s is inconsistent; recomputing", path)
        return None
    return CachedReference(tensors, {(split, i): row for row, i in enumerate(ids)}, files=[path])


def _save_cache(path: Path, tensors: dict[str, Tensor], ids: list[str], fingerprint: str, weights: str) -> None:
    from safetensors.torch import save_file

    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "weights": weights, "ids": json.dumps(ids)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def _compute(
    model: Any,
    records: Sequence[PreferenceRecord],
    collator: PreferenceCollator,
    batch_size: int,
    token_level: bool,
    scorer: RowScorer,
    adapter_off: bool,
) -> tuple[dict[str, Tensor], list[str]]:
    device = next(model.parameters()).device
    ids: list[str] = []
    columns: dict[str, list[Tensor]] = {}
    tokens: dict[str, list[Tensor]] = {"chosen": [], "rejected": []}
    off = unwrap_module(model).disable_adapter() if adapter_off else contextlib.nullcontext()
    with off, eval_mode(model):
        for start in range(0, len(records), batch_size):
            batch = collator(list(records[start : start + batch_size]))
            if not len(batch):
                continue
            scores = score(model, batch.to(device), token_level, scorer)
            ids.extend(batch.ids)
            sums = {"chosen": scores.chosen, "rejected": scores.rejected, "corrupted_chosen": scores.corrupted}
            for name, output in sums.items():
                if output is not None:
                    columns.setdefault(name, []).append(output.sum.detach().float().cpu())
            for side, output in (("chosen", scores.chosen), ("rejected", scores.rejected)):
                if token_level and output.token_logps is not None:
                    for row, count in enumerate(output.n_tokens.tolist()):
                        tokens[side].append(output.token_logps[row, :count].detach().float().cpu())
    tensors = {name: torch.cat(parts) for name, parts in columns.items()}
    if token_level:
        for side, pieces in tokens.items():
            lengths = torch.tensor([0] + [len(p) for p in pieces], dtype=torch.long)
            tensors[f"{side}_token_logps"] = torch.cat(pieces) if pieces else torch.zeros(0)
            tensors[f"{side}_token_offsets"] = lengths.cumsum(0)
    return tensors, ids


def precompute_reference(
    model: Any,
    records: Sequence[PreferenceRecord],
    collator: PreferenceCollator,
    processor: Any,
    cache_dir: str | Path,
    *,
    batch_size: int = 8,
    scorer: RowScorer,
    adapter_off: bool = False,
    name: str = "train",
    weights: str | None = None,
) -> CachedReference:
    """Reference log-probs of every pair in ``records`` from ``model`` (its LoRA adapter off when
    ``adapter_off``), read from ``cache_dir`` when a cache for exactly these records, settings and weights is
    there, otherwise computed in one pass and saved. Record ids must be unique. ``weights``: the model's
    :func:`weights_fingerprint` when already known."""
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise DataError(
                "duplicate record id; precomputed reference log-probs are looked up by id",
                record_id=record.id,
                field="id",
            )
        seen.add(record.id)
    token_level = collator.loss.needs_token_weights
    fingerprint = dataset_fingerprint(records, collator.settings(), processor_fingerprint(processor))
    weights = weights or weights_fingerprint(model)
    key = hashlib.sha256(f"{CACHE_FORMAT}|{fingerprint}|{weights}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"reference-{name}-{key}.safetensors"
    if path.is_file():
        cached = _load_cache(path, fingerprint, weights, name)
        if cached is not None:
            logger.info("reference log-probs (%s): %d pairs read from %s", name, len(cached.index), path)
            cached.description = f"{name}: read from {path}"
            return cached
    start = time.perf_counter()
    tensors, ids = _compute(model, records, collator, batch_size, token_level, scorer, adapter_off)
    _save_cache(path, tensors, ids, fingerprint, weights)
    logger.info(
        "reference log-probs (%s): %d pairs in %.1f s, saved to %s", name, len(ids), time.perf_counter() - start, path
    )
    index = {(name, i): row for row, i in enumerate(ids)}
    return CachedReference(tensors, index, f"{name}: computed, saved to {path}", [path])


def precompute_splits(
    model: Any,
    splits: Sequence[tuple[str, Sequence[PreferenceRecord], PreferenceCollator]],
    processor: Any,
    cache_dir: Path,
    *,
    batch_size: int,
    scorer: RowScorer,
    adapter_off: bool,
) -> CachedReference:
    """Reference log-probs of every pair of every split (train, eval), read from the cache or computed now.

    Under several processes the main one computes and saves first; the others then read its cache."""
    from accelerate import PartialState

    weights = weights_fingerprint(model)  # once for every split
    options = {"batch_size": batch_size, "scorer": scorer, "adapter_off": adapter_off, "weights": weights}
    parts = []
    with PartialState().main_process_first():
        for name, records, collator in splits:
            parts.append(precompute_reference(model, records, collator, processor, cache_dir, name=name, **options))
    merged = CachedReference.merge(parts)
    merged.description = "precomputed log-probs (" + "; ".join(p.description for p in parts) + ")"
    return merged
