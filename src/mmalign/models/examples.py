"""What the collator encodes: an :class:`Example` is one sequence (prompt, images, optional response).

Records become examples here: an SFT record is one (its completion is the response); a preference pair is two
(chosen with ``images``, rejected with ``rejected_images`` when the pair has them, else ``images``); an
evaluation item is one whose prompt is a single user turn with the images before the question, and whose
response is its reference answer (used when scoring answers by likelihood; ignored for generation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from mmalign.data.images import DEFAULT_MAX_PIXELS, load_images
from mmalign.data.parse import record_from_dict
from mmalign.data.records import (
    EvalItem,
    ImageRef,
    Message,
    PreferenceRecord,
    Record,
    SFTRecord,
    assistant,
    count_image_placeholders,
    user_prompt,
)
from mmalign.errors import DataError


@dataclass
class Example:
    """One sequence to encode: chat ``prompt`` messages, their ``images``, and the ``response`` to score."""

    id: str
    prompt: list[Message]
    images: list[ImageRef] = field(default_factory=list)
    response: list[Message] | None = None
    """Assistant message(s); None when only generating."""
    images_field: str = "images"
    """Which record field the images came from (named in errors)."""


Input = Example | Record | dict[str, Any]
"""What the collator accepts: examples, records, or record dicts (parsed and checked)."""


def as_record(item: Input) -> Example | Record:
    if isinstance(item, dict):
        return record_from_dict(item)
    if isinstance(item, Example | PreferenceRecord | SFTRecord | EvalItem):
        return item
    raise DataError(f"cannot encode a {type(item).__name__}: expected a record, a record dict or an Example")


def eval_example(item: EvalItem) -> Example:
    """An evaluation item as a prompt: one user turn, the images first, then the question."""
    response = assistant(item.answer) if item.answer.strip() else None
    return Example(item.id, user_prompt(item.question, len(item.images)), list(item.images), response)


def examples_from(record: Example | Record) -> list[Example]:
    """The sequences of a record: two for a preference pair (chosen, rejected), one otherwise."""
    if isinstance(record, Example):
        return [record]
    if isinstance(record, PreferenceRecord):
        rejected_images = record.images if record.rejected_images is None else record.rejected_images
        field_name = "images" if record.rejected_images is None else "rejected_images"
        return [
            Example(record.id, record.prompt, list(record.images), record.chosen),
            Example(record.id, record.prompt, list(rejected_images), record.rejected, images_field=field_name),
        ]
    if isinstance(record, SFTRecord):
        return [Example(record.id, record.prompt, list(record.images), record.completion)]
    return [eval_example(record)]


def check_placeholders(example: Example) -> None:
    n = count_image_placeholders(example.prompt)
    if n != len(example.images):
        raise DataError(
            f"the prompt has {n} image placeholder(s) but {len(example.images)} image(s) were given",
            record_id=example.id,
            field=example.images_field,
        )


def open_images(example: Example, root: str | Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """The example's images as RGB PIL images (paths are opened safely under ``root``)."""
    return load_images(example.images, root, record_id=example.id, field=example.images_field, max_pixels=max_pixels)
