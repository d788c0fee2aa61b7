"""What the collator encodes: an :class:`Example` is one sequence (prompt, images, optional response).

Records become examples here: an SFT record is one (its completion is the response), and so is a binary-feedback
record; a preference pair is two
(chosen with ``images``, rejected with ``rejected_images`` when the pair has them, else ``images``); an
evaluation item is one whose prompt is a single user turn with the images before the question, and whose
response is its reference answer (used when scoring answers by likelihood; ignored for generation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from mmalign.data.images import load_images
from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.parse import record_from_dict
from mmalign.data.records import (
    EvalItem,
    FeedbackRecord,
    ImageRef,
    Message,
    Origin,
    PreferenceRecord,
    Record,
    SFTRecord,
    VideoRef,
    assistant,
    count_image_placeholders,
    count_video_placeholders,
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
    origin: Origin | None = None
    """Where the record was read from (file and line, named in errors)."""
    videos: list[VideoRef] = field(default_factory=list)
    """Videos, one per ``{"type": "video"}`` prompt part."""
    videos_field: str = "videos"
    """Which record field the videos came from (named in errors)."""
    video_frames: list[list[Image.Image]] | None = None
    """The videos' frames once opened (native-video processors get them as ``videos=``); None before."""


Input = Example | Record | dict[str, Any]
"""What the collator accepts: examples, records, or record dicts (parsed and checked)."""


def as_record(item: Input) -> Example | Record:
    if isinstance(item, dict):
        return record_from_dict(item)
    if isinstance(item, Example | PreferenceRecord | FeedbackRecord | SFTRecord | EvalItem):
        return item
    raise DataError(f"cannot encode a {type(item).__name__}: expected a record, a record dict or an Example")


def eval_example(item: EvalItem) -> Example:
    """An evaluation item as a prompt: one user turn, the images first, then the question."""
    response = assistant(item.answer) if item.answer.strip() else None
    prompt = user_prompt(item.question, len(item.images))
    prompt[0]["content"][:0] = [{"type": "video"} for _ in item.videos]
    return Example(item.id, prompt, list(item.images), response, origin=item.origin, videos=list(item.videos))


def examples_from(record: Example | Record) -> list[Example]:
    """The sequences of a record: two for a preference pair (chosen, rejected), one otherwise."""
    if isinstance(record, Example):
        return [record]
    if isinstance(record, PreferenceRecord):
        rejected_images = record.images if record.rejected_images is None else record.rejected_images
        field_name = "images" if record.rejected_images is None else "rejected_images"
        rejected_videos = record.videos if record.rejected_videos is None else record.rejected_videos
        videos_field = "videos" if record.rejected_videos is None else "rejected_videos"
        chosen = Example(record.id, record.prompt, list(record.images), record.chosen, origin=record.origin)
        rejected = Example(record.id, record.prompt, list(rejected_images), record.rejected, field_name, record.origin)
        return [
            replace(chosen, videos=list(record.videos)),
            replace(rejected, videos=list(rejected_videos), videos_field=videos_field),
        ]
    if isinstance(record, SFTRecord | FeedbackRecord):
        example = Example(record.id, record.prompt, list(record.images), record.completion, origin=record.origin)
        return [replace(example, videos=list(record.videos))]
    return [eval_example(record)]


def check_placeholders(example: Example) -> None:
    n = count_image_placeholders(example.prompt)
    if n != len(example.images):
        raise DataError(
            f"the prompt has {n} image placeholder(s) but {len(example.images)} image(s) were given",
            record_id=example.id,
            field=example.images_field,
        )
    n = count_video_placeholders(example.prompt)
    if n != len(example.videos):
        raise DataError(
            f"the prompt has {n} video placeholder(s) but {len(example.videos)} video(s) were given",
            record_id=example.id,
            field=example.videos_field,
        )


def clip_texts(messages: list[Message], budget: int) -> tuple[list[Message], bool]:
    """``messages`` with their text parts cut to ``budget`` characters in all (in order; image parts kept).

    Returns the same list, untouched, when the text already fits; else a cut copy and True. The record's own
    messages are never modified."""
    if sum(len(part.get("text") or "") for m in messages for part in _text_parts(m)) <= budget:
        return messages, False
    left = budget
    out: list[Message] = []
    for message in messages:
        content = []
        for part in message["content"]:
            if part.get("type") == "text":
                text = part.get("text") or ""
                if len(text) > left:
                    part = {**part, "text": text[:left]}
                left -= len(part.get("text") or "")
            content.append(part)
        out.append({**message, "content": content})
    return out, True


def clip_example(example: Example, budget: int) -> tuple[Example, bool]:
    """``example`` with prompt and response each cut to ``budget`` characters of text (:func:`clip_texts`);
    True when the prompt had to be cut. The same object when nothing was cut."""
    prompt, prompt_cut = clip_texts(example.prompt, budget)
    response, response_cut = (None, False) if example.response is None else clip_texts(example.response, budget)
    if not (prompt_cut or response_cut):
        return example, False
    return replace(example, prompt=prompt, response=response), prompt_cut


def _text_parts(message: Message) -> list[dict[str, Any]]:
    return [part for part in message["content"] if part.get("type") == "text"]


def open_images(example: Example, root: str | Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """The example's images as RGB PIL images (paths are opened safely under ``root``)."""
    return load_images(example.images, root, record_id=example.id, field=example.images_field, max_pixels=max_pixels)
