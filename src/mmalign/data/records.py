"""The record schema every stage shares: preference pairs, binary feedback, SFT examples and evaluation items.

The layout is TRL's *conversational* format, so a list of ``PreferenceRecord.to_dict()`` is a dataset that
TRL's ``DPOTrainer`` reads as it is, and a TRL dataset with an ``id`` column reads back here:

    {"id": "w-0001",
     "images": ["images/train/000001.png"],              # relative to a data root, or PIL images
     "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
     "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]}],
     "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "A red circle and a star."}]}],
     "rejected_images": null,        # image-side preference (mDPO, Image DPO): same placeholders, other images
     "chosen_spans": null,           # [[start, end], ...] character spans in the chosen text (RLHF-V dense DPO)
     "rejected_spans": [[15, 23]],   # ... and in the rejected text (the hallucinated segment)
     "source": "hallucinate", "meta": {"seed": 0}}

A binary-feedback record (thumbs up / down, for KTO and for reward models trained on labels) is TRL's
*unpaired preference* format, one response and a boolean ``label`` (true: desirable, false: undesirable):

    {"id": "w-0001-c", "images": ["images/train/000001.png"], "prompt": [...],
     "completion": [{"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]}],
     "label": true, "source": "unpair", "meta": {"pair": "w-0001"}}

A record may also carry ``videos`` (``rejected_videos`` for a pair): each a file read with a frame sampling,
``{"path": "videos/x.mp4", "sampling": {"mode": "uniform", "num_frames": 8}}``, or an ordered frame list,
``{"frames": ["f/000.png", ...]}``, one per ``{"type": "video"}`` prompt part (see :class:`VideoRef`); written only
when present, so image-only records keep TRL's layout.

A message's ``content`` may be given as a plain string (TRL accepts both); it is normalised to a list of
parts. Response text (what spans index into) is the text parts of the response messages, concatenated, with
messages joined by a newline: see :func:`response_text`.

Parsing dicts into records, with every check, is :mod:`mmalign.data.parse`. Those checks are pure (no file
access): the number of image placeholders must equal the number of images, responses must be non-empty, chosen
must differ from rejected (unless the pair is image-side), spans must lie inside their text, image paths must
stay inside the data root. File-level checks (missing, corrupt or huge images) live in
:mod:`mmalign.data.images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from mmalign.errors import DataError


@dataclass(frozen=True)
class Origin:
    """Where a record was read from, so that a failure long after reading (an image that will not open at
    training) still names the file and line. Not part of the record's content: never written, never compared."""

    file: str
    line: int | None = None
    """1-based line (JSONL and other line formats); None for columnar formats."""
    index: int | None = None
    """0-based record index in the file."""

    def where(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`mmalign.errors.DataError.located`."""
        return {"file": self.file, "line": self.line, "index": self.index}


def locate(err: DataError, items: list[Any]) -> DataError:
    """``err`` with the file and line of the item it names by id, when that item knows its :class:`Origin`."""
    if err.file is None and err.record_id is not None:
        for item in items:
            origin = getattr(item, "origin", None)
            if origin is not None and getattr(item, "id", None) == err.record_id:
                return err.located(**origin.where())
    return err


@dataclass(frozen=True, eq=True)
class ImageBlob:
    """An encoded image file carried in a record (read from Parquet or a ``datasets`` directory).

    ``data`` holds the file's bytes exactly as they were on disk, and ``path`` the relative path the file had
    (or will have) under a data root, so converting back to JSONL writes the same file at the same place.
    """

    path: str | None
    data: bytes = field(repr=False)

    def open(self, max_pixels: int | None = None) -> Image.Image:
        """Decode to an RGB PIL image (header checked against ``max_pixels`` before decoding)."""
        from mmalign.data.decode import decode_image
        from mmalign.data.limits import DEFAULT_MAX_PIXELS

        return decode_image(self.data, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)


ImageRef = str | Image.Image | ImageBlob
"""An image: a path relative to the data root (files on disk), a PIL image (in memory) or an encoded blob."""


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video file are read: ``uniform`` (``num_frames`` spread evenly over the clip) or ``fps``
    (``fps`` frames per second of video), never more than ``max_frames``."""

    mode: str = "uniform"
    num_frames: int | None = 8
    fps: float | None = None
    max_frames: int = 16

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "max_frames": self.max_frames}
        if self.num_frames is not None:
            out["num_frames"] = self.num_frames
        if self.fps is not None:
            out["fps"] = self.fps
        return out


@dataclass(frozen=True)
class VideoRef:
    """A video in a record: a file read with ``sampling`` (``{"path": ..., "sampling": {...}}``) or an ordered
    list of frames (``{"frames": [...]}``), each frame an :data:`ImageRef`. Exactly one of the two is set.
    Parsing and checks: :mod:`mmalign.data.video_refs`."""

    path: str | None = None
    frames: tuple[ImageRef, ...] | None = None
    sampling: Sampling | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.frames is not None:
            return {"frames": list(self.frames)}
        return {"path": self.path, "sampling": (self.sampling or Sampling()).to_dict()}


Message = dict[str, Any]
"""A chat message: ``{"role": "user" | "assistant" | "system", "content": [part, ...]}``."""

ROLES = ("system", "user", "assistant")


# --------------------------------------------------------------------------------------------- messages


def text_message(role: str, text: str, n_images: int = 0) -> Message:
    """A message with ``n_images`` image placeholders followed by ``text``."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    return {"role": role, "content": content}


def user_prompt(text: str, n_images: int = 1) -> list[Message]:
    """The usual prompt: one user turn, its images first, then the text."""
    return [text_message("user", text, n_images)]


def assistant(text: str) -> list[Message]:
    """A response: one assistant turn with one text part."""
    return [text_message("assistant", text)]


def count_image_placeholders(messages: list[Message]) -> int:
    return sum(1 for m in messages for part in m["content"] if part.get("type") == "image")


def count_video_placeholders(messages: list[Message]) -> int:
    """``{"type": "video"}`` parts: where each of a record's ``videos`` goes (the ``<video>`` placeholder)."""
    return sum(1 for m in messages for part in m["content"] if part.get("type") == "video")


def _videos_out(out: dict[str, Any], **lists: list[VideoRef] | None) -> dict[str, Any]:
    """``out`` with each video list that is set (written only when present, so image-only records keep TRL's
    exact layout)."""
    for key, videos in lists.items():
        if videos:
            out[key] = [video.to_dict() for video in videos]
    return out


def message_text(message: Message) -> str:
    return "".join(part.get("text") or "" for part in message["content"] if part.get("type") == "text")


def response_text(messages: list[Message]) -> str:
    """Text of a response: its messages' text parts, messages joined by a newline. Spans index into this."""
    return "\n".join(message_text(m) for m in messages)


def prompt_text(messages: list[Message]) -> str:
    """The text of the last user turn (what a question is), without image placeholders."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message_text(message)
    return ""


# ---------------------------------------------------------------------------------------------- records


@dataclass
class PreferenceRecord:
    """A preference pair: for the same prompt and images, ``chosen`` is preferred over ``rejected``."""

    id: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    images: list[ImageRef] = field(default_factory=list)
    rejected_images: list[ImageRef] | None = None
    """Images for the rejected side (same count as ``images``); None when both sides see ``images``."""
    chosen_spans: list[tuple[int, int]] | None = None
    """Character spans [start, end) of corrected segments in the chosen text (dense DPO); None if unknown."""
    rejected_spans: list[tuple[int, int]] | None = None
    """Character spans [start, end) of hallucinated segments in the rejected text; None if unknown."""
    source: str = ""
    """How the pair was made (builder or importer name)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Anything else: builder options, seeds, ground truth, scores. Must be JSON-serialisable."""
    videos: list[VideoRef] = field(default_factory=list)
    """Videos, one per ``{"type": "video"}`` prompt part (see :class:`VideoRef`)."""
    rejected_videos: list[VideoRef] | None = None
    """Videos for the rejected side (same count as ``videos``: shuffled or dropped frames, mDPO-style); None when
    both sides see ``videos``."""
    origin: Origin | None = field(default=None, compare=False, repr=False)
    """Where the record was read from (set by the readers); not part of its content."""

    kind: ClassVar[str] = "preference"
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "images",
        "prompt",
        "chosen",
        "rejected",
        "rejected_images",
        "chosen_spans",
        "rejected_spans",
        "source",
        "meta",
        "videos",
        "rejected_videos",
    )

    @property
    def chosen_text(self) -> str:
        return response_text(self.chosen)

    @property
    def rejected_text(self) -> str:
        return response_text(self.rejected)

    def image_lists(self) -> dict[str, list[ImageRef]]:
        out = {"images": self.images}
        if self.rejected_images is not None:
            out["rejected_images"] = self.rejected_images
        return out

    def video_lists(self) -> dict[str, list[VideoRef]]:
        out = {"videos": self.videos}
        if self.rejected_videos is not None:
            out["rejected_videos"] = self.rejected_videos
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "images": list(self.images),
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "rejected_images": None if self.rejected_images is None else list(self.rejected_images),
            "chosen_spans": _spans_out(self.chosen_spans),
            "rejected_spans": _spans_out(self.rejected_spans),
            "source": self.source,
            "meta": self.meta,
        } | _videos_out({}, videos=self.videos, rejected_videos=self.rejected_videos)


@dataclass
class SFTRecord:
    """A supervised example: ``completion`` (the response) answers ``prompt`` (TRL's prompt-completion)."""

    id: str
    prompt: list[Message]
    completion: list[Message]
    images: list[ImageRef] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    videos: list[VideoRef] = field(default_factory=list)
    """Videos, one per ``{"type": "video"}`` prompt part (see :class:`VideoRef`)."""
    origin: Origin | None = field(default=None, compare=False, repr=False)
    """Where the record was read from (set by the readers); not part of its content."""

    kind: ClassVar[str] = "sft"
    fields: ClassVar[tuple[str, ...]] = ("id", "images", "prompt", "completion", "source", "meta", "videos")

    @property
    def completion_text(self) -> str:
        return response_text(self.completion)

    def image_lists(self) -> dict[str, list[ImageRef]]:
        return {"images": self.images}

    def video_lists(self) -> dict[str, list[VideoRef]]:
        return {"videos": self.videos}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "images": list(self.images),
            "prompt": self.prompt,
            "completion": self.completion,
            "source": self.source,
            "meta": self.meta,
        } | _videos_out({}, videos=self.videos)


@dataclass
class FeedbackRecord:
    """Binary feedback: ``completion`` answers ``prompt`` and is desirable (``label`` true) or not (TRL's unpaired
    preference format: ``prompt``, ``completion``, ``label``)."""

    id: str
    prompt: list[Message]
    completion: list[Message]
    label: bool
    """True: a desirable response (thumbs up); False: an undesirable one (thumbs down)."""
    images: list[ImageRef] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    videos: list[VideoRef] = field(default_factory=list)
    """Videos, one per ``{"type": "video"}`` prompt part (see :class:`VideoRef`)."""
    origin: Origin | None = field(default=None, compare=False, repr=False)
    """Where the record was read from (set by the readers); not part of its content."""

    kind: ClassVar[str] = "feedback"
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "images",
        "prompt",
        "completion",
        "label",
        "source",
        "meta",
        "videos",
    )

    @property
    def completion_text(self) -> str:
        return response_text(self.completion)

    def image_lists(self) -> dict[str, list[ImageRef]]:
        return {"images": self.images}

    def video_lists(self) -> dict[str, list[VideoRef]]:
        return {"videos": self.videos}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "images": list(self.images),
            "prompt": self.prompt,
            "completion": self.completion,
            "label": self.label,
            "source": self.source,
            "meta": self.meta,
        } | _videos_out({}, videos=self.videos)


@dataclass
class EvalItem:
    """One evaluation question. The images come before the question in the prompt the model sees."""

    id: str
    task: str
    """Task name, e.g. ``pope_adversarial``, ``caption``, ``count``, ``mme``, ``mc``."""
    question: str
    answer: str
    """The reference answer (``yes``/``no``, a number, an option letter, a reference caption...)."""
    images: list[ImageRef] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    """Ground-truth objects present in the image(s) (CHAIR, POPE)."""
    choices: list[str] | None = None
    """Options of a multiple-choice question, in order (A, B, C, ...); None otherwise."""
    meta: dict[str, Any] = field(default_factory=dict)
    videos: list[VideoRef] = field(default_factory=list)
    """Videos, one per ``{"type": "video"}`` prompt part (see :class:`VideoRef`)."""
    origin: Origin | None = field(default=None, compare=False, repr=False)
    """Where the record was read from (set by the readers); not part of its content."""

    kind: ClassVar[str] = "eval"
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "task",
        "images",
        "question",
        "answer",
        "objects",
        "choices",
        "meta",
        "videos",
    )

    def image_lists(self) -> dict[str, list[ImageRef]]:
        return {"images": self.images}

    def video_lists(self) -> dict[str, list[VideoRef]]:
        return {"videos": self.videos}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "images": list(self.images),
            "question": self.question,
            "answer": self.answer,
            "objects": list(self.objects),
            "choices": None if self.choices is None else list(self.choices),
            "meta": self.meta,
        } | _videos_out({}, videos=self.videos)


Record = PreferenceRecord | FeedbackRecord | SFTRecord | EvalItem
RECORD_TYPES: dict[str, type[PreferenceRecord] | type[FeedbackRecord] | type[SFTRecord] | type[EvalItem]] = {
    "preference": PreferenceRecord,
    "feedback": FeedbackRecord,
    "sft": SFTRecord,
    "eval": EvalItem,
}


def _spans_out(spans: list[tuple[int, int]] | None) -> list[list[int]] | None:
    return None if spans is None else [[int(a), int(b)] for a, b in spans]
