"""One collator for every family: records -> padded model inputs with response labels.

The prompt (chat template with the generation prompt) goes through the model's own processor, which
expands each image placeholder into the family's image tokens and makes the pixel inputs
(``pixel_values``, ``image_grid_thw``, ``pixel_attention_mask``, ``mm_token_type_ids``...). The response is the
rest of the templated conversation (``template(prompt + response)`` minus ``template(prompt)``, end-of-turn
token included), tokenized alone and appended, so prompt tokens are exactly what generation sees and
response tokens carry labels; prompt, image and padding positions are -100.

Training pads on the right (each response starts at its row's prompt length); generation pads on the left.
Truncation never cuts the prompt (images and template stay whole): the response is cut at its end, and a
record whose prompt alone does not fit raises a :class:`DataError` or, with ``on_overflow="skip"``, is
dropped and counted. A preference pair is kept or dropped as a unit.

A video becomes its frames (:mod:`mmalign.models.video_inputs`: images for LLaVA, the native video inputs for
Qwen2-VL); a prompt too long because of its video is refused like any other, or, with ``video_overflow="thin"``,
its videos keep fewer whole frames until it fits. No frame's tokens are ever cut.

Memory follows ``max_length``, not the record: before anything is templated or tokenised, a prompt's and a
response's text are each cut to :attr:`Collator.text_budget` characters, more than ``max_length`` tokens can
cover (the longest token in the vocabulary, times two for Unicode normalisation, per token). Text within the
budget is untouched, so normal records encode exactly as before; a longer response is then truncated to the
token, as always, and a longer prompt cannot fit, so it is an error or skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.records import PreferenceRecord, Record, locate, response_text
from mmalign.errors import ConfigError, DataError
from mmalign.models.examples import (
    Example,
    Input,
    as_record,
    check_placeholders,
    clip_example,
    examples_from,
    open_images,
)
from mmalign.models.video_inputs import open_video_frames, resolve_videos, thin_to_fit

IGNORE = -100
PER_TOKEN = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
"""Processor outputs laid out per token: extended over the response and padded like ``input_ids``."""
FALLBACK_TOKEN_CHARS = 256
"""Characters per token assumed when a tokenizer cannot list its vocabulary."""


@dataclass
class Batch:
    """Model inputs for B sequences of T tokens. In a preference batch (``n_pairs`` > 0) rows ``[0, n)`` are the
    chosen responses and rows ``[n, 2n)`` the rejected ones, pair i in rows i and n + i."""

    input_ids: Tensor
    """(B, T) token ids."""
    attention_mask: Tensor
    """(B, T) 1 on tokens, 0 on padding."""
    labels: Tensor | None
    """(B, T) response token ids, -100 on prompt, image and padding positions; None when generating."""
    prompt_lengths: Tensor
    """(B,) tokens before the response (image tokens included). With right padding, where the response starts."""
    extras: dict[str, Tensor] = field(default_factory=dict)
    """Other model inputs (pixel_values, image_grid_thw, pixel_attention_mask, mm_token_type_ids...)."""
    ids: list[str] = field(default_factory=list)
    """Record id of each row."""
    n_pairs: int = 0
    """Number of preference pairs (0 for a batch of single sequences)."""
    padding_side: str = "right"
    response_offsets: list[list[tuple[int, int]]] = field(default_factory=list)
    """Per row, the character range of each response token in the response's templated text."""
    response_text_start: list[int] = field(default_factory=list)
    """Per row, where the record's response text starts in that templated text (-1 if the template changed it)."""
    skipped: list[str] = field(default_factory=list)
    """Ids of records left out because they did not fit ``max_length`` (``on_overflow="skip"``)."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for the model's forward (labels excluded: losses are computed outside)."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, **self.extras}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """A copy on ``device``; floating-point extras (pixels) are cast to ``dtype`` when given."""

        def move(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device)

        return replace(
            self,
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            labels=None if self.labels is None else move(self.labels),
            prompt_lengths=move(self.prompt_lengths),
            extras={k: move(v) for k, v in self.extras.items()},
        )


@dataclass
class Collator:
    """Turns a list of records (or :class:`Example` objects, or record dicts) into a :class:`Batch`."""

    processor: Any
    """The model's processor (or tokenizer, for a text-only model)."""
    mode: Literal["train", "generate"] = "train"
    """train: prompt + response, right padding, labels. generate: prompt + generation prompt, left padding."""
    max_length: int | None = None
    """Longest sequence in tokens (image tokens included); None: no limit."""
    on_overflow: Literal["error", "skip"] = "error"
    """What to do with a record whose prompt (with its image tokens) leaves no room for a response token."""
    image_root: str | Path | None = None
    """Data root that relative image paths are opened under."""
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels are refused (decompression bombs)."""
    pad_to_multiple_of: int | None = None
    """Pad T up to a multiple of this (helps some kernels)."""
    n_skipped: int = 0
    """Records skipped so far by this collator (``on_overflow="skip"``)."""
    overflow_hint: str = "raise max_length or use on_overflow='skip'"
    """What the error of a record that does not fit tells the user to do (evaluation names its own flag)."""
    video_overflow: Literal["error", "thin"] = "error"
    """A record whose video(s) do not fit ``max_length``: error (as any prompt too long: see ``on_overflow``) or
    thin (keep fewer whole frames, spread uniformly, until it fits; logged and counted in ``n_frames_dropped``).
    A frame's tokens are never cut either way."""
    n_frames_dropped: int = 0
    """Video frames left out so far by ``video_overflow="thin"`` (per sequence: a pair's two sides both count)."""

    def __post_init__(self) -> None:
        if self.mode not in ("train", "generate"):
            raise ConfigError(f"collator mode must be 'train' or 'generate', got {self.mode!r}")
        if self.on_overflow not in ("error", "skip"):
            raise ConfigError(f"on_overflow must be 'error' or 'skip', got {self.on_overflow!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, got {self.max_length}")
        if self.video_overflow not in ("error", "thin"):
            raise ConfigError(f"video_overflow must be 'error' or 'thin', got {self.video_overflow!r}")

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def multimodal(self) -> bool:
        return hasattr(self.processor, "image_processor")

    @property
    def text_budget(self) -> int | None:
        """Characters of text kept per prompt and per response before tokenising; None without ``max_length``."""
        if self.max_length is None:
            return None
        return (self.max_length + 1) * 2 * self._token_chars

    @cached_property
    def _token_chars(self) -> int:
        return longest_token(self.tokenizer)

    def __call__(self, items: list[Input]) -> Batch:
        records = [as_record(item) for item in items]
        try:
            return self._collate(records)
        except DataError as err:  # name the record's file and line when it knows them
            raise locate(err, records).with_traceback(err.__traceback__) from None

    def _collate(self, records: list[Example | Record]) -> Batch:
        pairs = [isinstance(r, PreferenceRecord) for r in records]
        if self.mode == "train" and any(pairs) and not all(pairs):
            raise ConfigError("a batch mixes preference pairs with other records; collate them separately")
        units = [examples_from(r)[: 1 if self.mode == "generate" else 2] for r in records]
        for unit in units:
            for example in unit:
                self._check(example)
        units, cut = self._clip(units)
        is_pair = self.mode == "train" and bool(units) and all(pairs)
        opened = [[open_video_frames(e, self.image_root, self.max_image_pixels) for e in unit] for unit in units]
        units = [[resolve_videos(e, self.processor) for e in unit] for unit in opened]
        rows, texts, prompts, pixels = self._encode(units)
        lengths = self._lengths(units, rows, prompts)
        if self.video_overflow == "thin" and self._thin(units, opened, lengths):
            rows, texts, prompts, pixels = self._encode(units)
            lengths = self._lengths(units, rows, prompts)
        fits = [self._fits(unit, n, c) for unit, n, c in zip(units, lengths, cut, strict=True)]
        skipped = [unit[0].id for unit, ok in zip(units, fits, strict=True) if not ok]
        if skipped:  # rare: encode the rest again, so the pixel inputs hold only the kept records' images
            self.n_skipped += len(skipped)
            units = [unit for unit, ok in zip(units, fits, strict=True) if ok]
            rows, texts, prompts, pixels = self._encode(units)
        if not units:
            empty = torch.zeros(0, 0, dtype=torch.long)
            return Batch(empty, empty, None, torch.zeros(0, dtype=torch.long), skipped=skipped)
        examples = [units[u][s] for u, s in rows]
        batch = self._assemble(examples, [t[1] for t in texts], prompts)
        batch.extras.update(pixels)
        batch.n_pairs = len(units) if is_pair else 0
        batch.skipped = skipped
        return batch

    def _encode(
        self, units: list[list[Example]]
    ) -> tuple[list[tuple[int, int]], list[tuple[str, str | None]], list[dict[str, list[int]]], dict[str, Tensor]]:
        """Rows in batch order (all first sequences, then all second ones: chosen..., rejected...), their
        texts, their prompts' per-token inputs and the batch's pixel inputs."""
        width = max((len(unit) for unit in units), default=0)
        rows = [(u, s) for s in range(width) for u in range(len(units))]
        examples = [units[u][s] for u, s in rows]
        texts = [self._texts(e) for e in examples]
        prompts, pixels = self._encode_prompts(examples, [t[0] for t in texts]) if examples else ([], {})
        return rows, texts, prompts, pixels

    @staticmethod
    def _lengths(
        units: list[list[Example]], rows: list[tuple[int, int]], prompts: list[dict[str, list[int]]]
    ) -> list[list[int]]:
        lengths: list[list[int]] = [[] for _ in units]
        for (u, _), prompt in zip(rows, prompts, strict=True):
            lengths[u].append(len(prompt["input_ids"]))
        return lengths

    def _thin(self, units: list[list[Example]], opened: list[list[Example]], lengths: list[list[int]]) -> bool:
        """Thin the videos of each unit that does not fit ``max_length`` (``units`` changed in place; see
        :func:`~mmalign.models.video_inputs.thin_to_fit`). True if any unit changed. A unit that does not fit even
        at the smallest frame count is left for :meth:`_fits` (an error, or skipped)."""
        if self.max_length is None:
            return False
        room = self.max_length - (1 if self.mode == "train" else 0)
        changed = False
        for u, unit in enumerate(opened):
            if max(lengths[u]) > room and any(e.videos for e in unit):

                def prompt_lengths(trial: list[Example]) -> list[int]:
                    return [len(p["input_ids"]) for p in self._encode([trial])[2]]

                thinned = thin_to_fit(unit, self.processor, prompt_lengths, room)
                if thinned is not None:
                    units[u], dropped = thinned
                    self.n_frames_dropped += dropped
                    changed = True
        return changed

    # ---------------------------------------------------------------------------------------------- steps

    def _check(self, example: Example) -> None:
        check_placeholders(example)
        if (example.images or example.videos) and not self.multimodal:
            what = f"{len(example.images)} image(s)" if example.images else f"{len(example.videos)} video(s)"
            raise DataError(
                f"the model is text-only but the record has {what}",
                record_id=example.id,
                field=example.images_field if example.images else example.videos_field,
            )
        if self.mode == "train" and example.response is None:
            raise DataError("nothing to train on: the record has no response", record_id=example.id)

    def _clip(self, units: list[list[Example]]) -> tuple[list[list[Example]], list[bool]]:
        """Units with their texts cut to :attr:`text_budget`; per unit, whether a prompt was cut."""
        budget = self.text_budget
        if budget is None:
            return units, [False] * len(units)
        clipped = [[clip_example(example, budget) for example in unit] for unit in units]
        return [[e for e, _ in unit] for unit in clipped], [any(c for _, c in unit) for unit in clipped]

    def _template(self, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
        if not self.multimodal:  # text-only chat templates expect string content
            messages = [{"role": m["role"], "content": response_text([m])} for m in messages]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def _texts(self, example: Example) -> tuple[str, str | None]:
        """(prompt text with the generation prompt, response text with its end-of-turn token)."""
        prompt = self._template(example.prompt, True)
        if self.mode == "generate":
            return prompt, None
        assert example.response is not None
        full = self._template(example.prompt + example.response, False)
        if not full.startswith(prompt) or len(full) == len(prompt):
            raise ConfigError(
                "the chat template does not render prompt + response as the prompt (with the generation "
                f"prompt) followed by the response; cannot tell where the response starts (record {example.id!r})"
            )
        return prompt, full[len(prompt) :]

    def _encode_prompts(
        self, examples: list[Example], texts: list[str]
    ) -> tuple[list[dict[str, list[int]]], dict[str, Tensor]]:
        """Per example, its prompt's per-token inputs (unpadded lists); and the batch's pixel inputs."""
        images = [img for e in examples for img in open_images(e, self.image_root, self.max_image_pixels)]
        videos = [video for e in examples for video in e.video_frames or []]  # native video (Qwen2-VL)
        kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt", "add_special_tokens": False}
        if videos:
            kwargs["videos"] = videos
        try:
            if self.multimodal:
                encoded = self.processor(text=texts, images=images or None, padding_side="right", **kwargs)
            else:
                encoded = self.processor(texts, padding_side="right", **kwargs)
        except ValueError as err:
            ids = ", ".join(repr(e.id) for e in examples)
            raise DataError(f"the processor refused the batch of records {ids}: {err}") from None
        n = encoded["attention_mask"].sum(-1).tolist()
        out = [{k: encoded[k][i, : n[i]].tolist() for k in PER_TOKEN if k in encoded} for i in range(len(texts))]
        return out, {k: v for k, v in encoded.items() if k not in PER_TOKEN and isinstance(v, Tensor)}

    def _fits(self, unit: list[Example], prompt_lengths: list[int], cut: bool = False) -> bool:
        need = 1 if self.mode == "train" else 0
        if self.max_length is None or (not cut and all(n + need <= self.max_length for n in prompt_lengths)):
            return True
        if self.on_overflow == "skip":
            return False
        size = f"over {self.text_budget} characters" if cut else f"{max(prompt_lengths)} tokens with its image tokens"
        raise DataError(
            f"the prompt is {size}, which leaves no room for a response within max_length {self.max_length}; "
            + self.overflow_hint,
            record_id=unit[0].id,
        )

    def _assemble(
        self, examples: list[Example], responses: list[str | None], prompts: list[dict[str, list[int]]]
    ) -> Batch:
        rows, offsets, starts = [], [], []
        for example, response, prompt in zip(examples, responses, prompts, strict=True):
            row = {key: list(values) for key, values in prompt.items()}
            n_prompt = len(row["input_ids"])
            row["labels"] = [IGNORE] * n_prompt
            token_offsets: list[tuple[int, int]] = []
            if response is not None:
                enc = self.tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
                room = None if self.max_length is None else self.max_length - n_prompt
                tokens = enc["input_ids"][:room]
                token_offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"][:room]]
                extend = {"input_ids": tokens, "labels": tokens, "attention_mask": [1] * len(tokens)}
                for key in row:  # other per-token inputs (token types) mark the response as text: 0
                    row[key] += extend.get(key, [0] * len(tokens))
                record_text = response_text(example.response or [])
                starts.append(response.find(record_text))
            else:
                starts.append(-1)
            rows.append(row)
            offsets.append(token_offsets)
        padded = self._pad(rows)
        labels = padded.pop("labels")
        return Batch(
            input_ids=padded.pop("input_ids"),
            attention_mask=padded.pop("attention_mask"),
            labels=labels if self.mode == "train" else None,
            prompt_lengths=torch.tensor([len(p["input_ids"]) for p in prompts], dtype=torch.long),
            extras=padded,
            ids=[e.id for e in examples],
            padding_side="right" if self.mode == "train" else "left",
            response_offsets=offsets,
            response_text_start=starts,
        )

    def _pad(self, rows: list[dict[str, list[int]]]) -> dict[str, Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        values = {"input_ids": self.tokenizer.pad_token_id, "labels": IGNORE}
        out = {}
        for key in rows[0]:
            fill = values.get(key, 0)
            padded = []
            for row in rows:
                pad = [fill] * (width - len(row[key]))
                padded.append(row[key] + pad if self.mode == "train" else pad + row[key])
            out[key] = torch.tensor(padded, dtype=torch.long)
        return out


def longest_token(tokenizer: Any) -> int:
    """Characters in the longest token of the vocabulary (special tokens included): no token covers more text.
    A byte-level token's string has one character per byte, so this bounds the text it covers too."""
    try:
        return max(len(token) for token in tokenizer.get_vocab())  # added (special) tokens included
    except (AttributeError, TypeError, ValueError, NotImplementedError):
        return FALLBACK_TOKEN_CHARS


def collate(items: list[Input], processor: Any, mode: Literal["train", "generate"] = "train", **options: Any) -> Batch:
    """Encode ``items`` for ``processor``'s model: see :class:`Collator` for the options."""
    return Collator(processor, mode=mode, **options)(items)
