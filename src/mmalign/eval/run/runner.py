"""Running a model over a task's items, in fixed batches, with every completed batch kept in the resume cache.

Items are cut into batches by position (items ``[k·B, (k+1)·B)``), whatever is cached, so a resumed run
feeds the model exactly the batches an uninterrupted run would (left-padded batches can differ from one
another in the last float bits) and gives the same outputs. A batch with every item cached is skipped.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from mmalign.data.images import load_image
from mmalign.data.records import EvalItem, PreferenceRecord, locate
from mmalign.errors import DataError
from mmalign.eval.config import DEFAULT_MAX_LENGTH
from mmalign.eval.run.cache import ItemKeys, PredictionCache, settings_hash
from mmalign.eval.run.fastpath import YES_NO, OptionSet, choose_options, letter_options
from mmalign.models.loading import LoadedModel

CACHE_VERSION = 2
"""Bumped when what a cached row means changes (2: fast-path rows say whether they are on the greedy path)."""


@dataclass
class RunStats:
    """What one pass over a task's items cost."""

    seconds: float = 0.0
    computed: int = 0
    """Items the model ran on."""
    cached: int = 0
    """Items read back from the resume cache."""

    def add(self, other: RunStats) -> None:
        self.seconds += other.seconds
        self.computed += other.computed
        self.cached += other.cached

    def to_dict(self) -> dict[str, float | int]:
        rate = self.computed / self.seconds if self.seconds > 0 else 0.0
        return {
            "seconds": round(self.seconds, 3),
            "items_computed": self.computed,
            "items_cached": self.cached,
            "items_per_s": round(rate, 2),
        }


class OpenedImages:
    """Items' image files, each opened (checked, decoded) once: POPE and MME ask several questions about every
    image, and opening a small image costs about as much as a tiny model's forward pass. Least recently used
    images are dropped beyond ``size``."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._images: OrderedDict[tuple[str, str], Image.Image] = OrderedDict()

    def items(self, items: list[EvalItem], root: Path | None) -> list[EvalItem]:
        """The items with their image paths replaced by the opened images."""
        return [
            dataclasses.replace(item, images=[self._open(ref, root, item, k) for k, ref in enumerate(item.images)])
            if any(isinstance(ref, str) for ref in item.images)
            else item
            for item in items
        ]

    def _open(self, ref: Any, root: Path | None, item: EvalItem, k: int) -> Any:
        if not isinstance(ref, str):
            return ref
        key = (str(root), ref)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        try:
            image = load_image(ref, root, field=f"images[{k}]")
        except DataError as err:
            raise locate(err.located(record_id=item.id), [item]) from None  # the item's file and line, if known
        self._images[key] = image
        if len(self._images) > self.size:
            self._images.popitem(last=False)
        return image


@dataclass
class Runner:
    """One loaded model with its resume cache."""

    loaded: LoadedModel
    fingerprint: str
    cache_root: Path
    batch_size: int = 8
    progress: bool = True
    stats: dict[str, RunStats] = field(default_factory=dict)
    images: OpenedImages = field(default_factory=OpenedImages)
    max_length: int = DEFAULT_MAX_LENGTH
    """Longest sequence the model runs on, in tokens with image tokens (see :data:`DEFAULT_MAX_LENGTH`)."""

    @property
    def overflow_hint(self) -> str:
        return "raise the evaluation's --max-length (its bound on prompt + generation budget, or prompt + response)"

    def _cache(self, task: str, mode: str, settings: dict[str, Any]) -> PredictionCache:
        name = f"{task}.{mode}.{settings_hash({'version': CACHE_VERSION, 'mode': mode, **settings})}.jsonl"
        return PredictionCache(self.cache_root / self.fingerprint[:16] / name)

    def _batched(
        self,
        task: str,
        items: list[Any],
        image_root: Path | None,
        cache: PredictionCache,
        compute: Callable[[list[Any]], list[dict[str, Any]]],
        label: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows for ``items`` in order: cached ones read back, the others computed batch by batch and cached.
        Run statistics are kept under ``label`` (default: the task)."""
        keys = ItemKeys(image_root)
        item_keys = [keys.key(item) for item in items]
        stats = RunStats()
        rows: list[dict[str, Any] | None] = [cache.get(i.id, k) for i, k in zip(items, item_keys, strict=True)]
        stats.cached = sum(r is not None for r in rows)
        label = label or task
        bar = tqdm(total=len(items), desc=label, disable=not self.progress, leave=False, initial=stats.cached)
        try:
            for start in range(0, len(items), self.batch_size):
                todo = [k for k in range(start, min(start + self.batch_size, len(items))) if rows[k] is None]
                if not todo:
                    continue
                began = time.perf_counter()
                outputs = compute([items[k] for k in todo])
                new = [{"id": items[k].id, "key": item_keys[k], **out} for k, out in zip(todo, outputs, strict=True)]
                cache.add(new)
                for k, row in zip(todo, new, strict=True):
                    rows[k] = row
                stats.seconds += time.perf_counter() - began
                stats.computed += len(todo)
                bar.update(len(todo))
        finally:
            bar.close()
        self.stats.setdefault(label, RunStats()).add(stats)
        return rows  # type: ignore[return-value]

    def generate(
        self, task: str, items: list[EvalItem], image_root: Path | None, max_new_tokens: int, label: str | None = None
    ) -> list[str]:
        """Greedy answers (the model layer's batched, left-padded generation)."""
        from mmalign.models.generation import generate

        def compute(batch: list[EvalItem]) -> list[dict[str, Any]]:
            opened = self.images.items(batch, image_root)
            texts = generate(
                self.loaded,
                opened,
                max_new_tokens=max_new_tokens,
                batch_size=len(batch),
                image_root=image_root,  # images are open already; videos are opened under it by the collator
                max_length=self.max_length + max_new_tokens,
                overflow_hint=self.overflow_hint,
            )
            return [{"text": text} for text in texts]

        cache = self._cache(task, "generate", {"max_new_tokens": max_new_tokens})
        return [row["text"] for row in self._batched(task, items, image_root, cache, compute, label)]

    def choose(self, task: str, items: list[EvalItem], image_root: Path | None) -> list[dict[str, Any]]:
        """The fast path's option for each item: rows with ``text`` (the option as written), ``label``,
        ``logps`` (per option), ``margin``, ``forwards`` and ``greedy`` (whether greedy decoding starts with the
        option; where it does not, the caller generates the answer)."""

        def compute(batch: list[EvalItem]) -> list[dict[str, Any]]:
            opened = self.images.items(batch, image_root)
            choices = choose_options(
                self.loaded,
                opened,
                [options_for(i) for i in batch],
                batch_size=len(batch),
                max_length=self.max_length,
                overflow_hint=self.overflow_hint,
            )
            return [
                {
                    "text": c.text,
                    "label": c.label,
                    "logps": [round(v, 6) for v in c.logps],
                    "margin": round(c.margin, 6),
                    "forwards": c.forwards,
                    "greedy": c.greedy,
                }
                for c in choices
            ]

        forms = {"yes_no": [YES_NO.forms(0), YES_NO.forms(1)], "letters": letter_options(2).forms(0)}
        return self._batched(task, items, image_root, self._cache(task, "fast", {"forms": forms}), compute)

    def whole_pairs(self, image_root: Path | None) -> Callable[[list[PreferenceRecord]], Any]:
        """Collates a batch of pairs in train mode and refuses one whose prompt and response do not fit
        ``max_length`` whole: it collates to one token more, so a row that reaches it had its response cut (a cut
        response would be scored in part, and move the token a reward head reads)."""
        from mmalign.models.collate import Collator

        collator = Collator(
            self.loaded.processor,
            mode="train",
            image_root=image_root,
            max_length=self.max_length + 1,
            overflow_hint=self.overflow_hint,
        )

        def encode(batch: list[PreferenceRecord]) -> Any:
            encoded = collator(batch)
            for row, length in zip(encoded.ids, encoded.attention_mask.sum(-1).tolist(), strict=True):
                if length > self.max_length:
                    err = DataError(
                        f"the prompt and response are over max_length {self.max_length} tokens; {self.overflow_hint}",
                        record_id=row,
                    )
                    raise locate(err, batch)
            return encoded

        return encode

    def pair_logps(self, task: str, pairs: list[PreferenceRecord], image_root: Path | None) -> list[dict[str, Any]]:
        """Summed response log-probs of chosen and rejected (one forward per batch of pairs)."""
        import torch

        from mmalign.models.logps import preference_logps

        encode = self.whole_pairs(image_root)

        def compute(batch: list[PreferenceRecord]) -> list[dict[str, Any]]:
            encoded = encode(batch)
            with torch.no_grad():
                out = preference_logps(self.loaded.model, encoded)
            return [
                {"chosen_logp": float(c), "rejected_logp": float(r)}
                for c, r in zip(out.chosen.sum.tolist(), out.rejected.sum.tolist(), strict=True)
            ]

        return self._batched(task, pairs, image_root, self._cache(task, "logps", {}), compute)

    def rewards(self, task: str, pairs: list[PreferenceRecord], image_root: Path | None) -> list[dict[str, Any]]:
        """A reward model's rewards of chosen and rejected (:func:`mmalign.models.critique.score_with`: a plain
        model's head on the response, a critique model's on its own greedy critique; both responses of a batch of
        pairs in one call): rows with ``chosen_reward`` and ``rejected_reward``."""
        from mmalign.models.critique import score_with
        from mmalign.models.examples import examples_from

        check = self.whole_pairs(image_root)  # a pair that does not fit whole is an error, never a partial reward

        def compute(batch: list[PreferenceRecord]) -> list[dict[str, Any]]:
            check(batch)
            examples, rows = [], []
            for pair in batch:
                chosen, rejected = examples_from(pair)
                examples.append(chosen)
                first = len(examples) - 1
                # the same response to the same prompt is scored once: its two rewards are equal, a tie, as when
                # the official scripts score each response on its own (batched, they could differ in the last bit)
                if (chosen.response, chosen.images) != (rejected.response, rejected.images):
                    examples.append(rejected)
                rows.append((first, len(examples) - 1))
            # a critique model scores prompt + response + its critique: the check above bounds prompt + response, the
            # critique adds the request and at most max_new_tokens, never cut (a cut would move the token read)
            critique = getattr(self.loaded.model, "critique_request", None) is not None
            scores = score_with(
                self.loaded,
                examples,
                batch_size=len(examples),
                image_root=image_root,
                max_length=None if critique else self.max_length + 1,
            )
            return [{"chosen_reward": scores[c], "rejected_reward": scores[r]} for c, r in rows]

        return self._batched(task, pairs, image_root, self._cache(task, "rewards", {}), compute)


def options_for(item: EvalItem) -> OptionSet:
    """Letters for a multiple-choice item, yes/no otherwise."""
    return letter_options(len(item.choices)) if item.choices else YES_NO
