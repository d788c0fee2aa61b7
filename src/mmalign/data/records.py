"""The record schema every stage shares: preference pairs, SFT examples and evaluation items.

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

A message's ``content`` may be given as a plain string (TRL accepts both); it is normalised to a list of
parts. Response text (what spans index into) is the text parts of the response messages, concatenated, with
messages joined by a newline: see :func:`response_text`.

Every check here is pure (no file access): the number of image placeholders must equal the number of images,
responses must be non-empty, chosen must differ from rejected (unless the pair is image-side), spans must lie
inside their text, image paths must stay inside the data root. File-level checks (missing, corrupt or huge
images) live in :mod:`mmalign.data.images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, ClassVar

from PIL import Image

from mmalign.errors import DataError


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
        from mmalign.data.images import DEFAULT_MAX_PIXELS, decode_image

        return decode_image(self.data, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)


ImageRef = str | Image.Image | ImageBlob
"""An image: a path relative to the data root (files on disk), a PIL image (in memory) or an encoded blob."""

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

    kind: ClassVar[str] = "preference"
    fields: ClassVar[tuple[str, ...]] = (
        "id", "images", "prompt", "chosen", "rejected", "rejected_images",
        "chosen_spans", "rejected_spans", "source", "meta",
    )  # fmt: skip

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
        }


@dataclass
class SFTRecord:
    """A supervised example: ``completion`` (the response) answers ``prompt`` (TRL's prompt-completion)."""

    id: str
    prompt: list[Message]
    completion: list[Message]
    images: list[ImageRef] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "sft"
    fields: ClassVar[tuple[str, ...]] = ("id", "images", "prompt", "completion", "source", "meta")

    @property
    def completion_text(self) -> str:
        return response_text(self.completion)

    def image_lists(self) -> dict[str, list[ImageRef]]:
        return {"images": self.images}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "images": list(self.images),
            "prompt": self.prompt,
            "completion": self.completion,
            "source": self.source,
            "meta": self.meta,
        }


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

    kind: ClassVar[str] = "eval"
    fields: ClassVar[tuple[str, ...]] = (
        "id", "task", "images", "question", "answer", "objects", "choices", "meta",
    )  # fmt: skip

    def image_lists(self) -> dict[str, list[ImageRef]]:
        return {"images": self.images}

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
        }


Record = PreferenceRecord | SFTRecord | EvalItem
RECORD_TYPES: dict[str, type[PreferenceRecord] | type[SFTRecord] | type[EvalItem]] = {
    "preference": PreferenceRecord,
    "sft": SFTRecord,
    "eval": EvalItem,
}


def _spans_out(spans: list[tuple[int, int]] | None) -> list[list[int]] | None:
    return None if spans is None else [[int(a), int(b)] for a, b in spans]


# ---------------------------------------------------------------------------------------------- parsing


def detect_kind(data: dict[str, Any]) -> str:
    """Which record type a dict is, from its fields."""
    if "chosen" in data or "rejected" in data:
        return "preference"
    if "completion" in data:
        return "sft"
    if "question" in data:
        return "eval"
    raise DataError(
        "cannot tell the record kind: expected 'chosen'/'rejected' (preference pair), "
        "'completion' (SFT example) or 'question' (evaluation item)"
    )


def record_from_dict(data: Any, kind: str | None = None) -> Record:
    """Parse and check one record. Raises :class:`DataError` naming the record id and field."""
    if not isinstance(data, dict):
        raise DataError(f"a record must be a JSON object, got {type(data).__name__}")
    kind = kind or detect_kind(data)
    if kind not in RECORD_TYPES:
        raise DataError(f"unknown record kind {kind!r}; expected one of {sorted(RECORD_TYPES)}")
    record_id = data.get("id")
    try:
        return _PARSERS[kind](data)
    except DataError as err:
        rid = record_id if isinstance(record_id, str | int) and not isinstance(record_id, bool) else None
        raise err.located(record_id=None if rid is None else str(rid)) from None


def _check_keys(data: dict[str, Any], cls: Any, required: tuple[str, ...]) -> None:
    for key in data:
        if key not in cls.fields:
            raise DataError(f"unknown field for a {cls.kind} record (allowed: {', '.join(cls.fields)})", field=key)
    for key in required:
        if key not in data or data[key] is None:
            raise DataError("missing required field", field=key)


def _id(data: dict[str, Any]) -> str:
    value = data["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"must be a string, got {type(value).__name__}", field="id")
    value = str(value)
    if not value.strip():
        raise DataError("must not be empty", field="id")
    return value


def _str(data: dict[str, Any], key: str, default: str | None = None, allow_empty: bool = True) -> str:
    value = data.get(key, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", field=key)
    if not allow_empty and not value.strip():
        raise DataError("must not be empty", field=key)
    return value


def _meta(data: dict[str, Any]) -> dict[str, Any]:
    value = data.get("meta")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"must be an object, got {type(value).__name__}", field="meta")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError("must be a list of strings", field=key)
    return list(value)


def parse_messages(value: Any, field_name: str, roles: tuple[str, ...] = ROLES) -> list[Message]:
    """Check and normalise a list of chat messages (string content becomes one text part)."""
    if not isinstance(value, list) or not value:
        raise DataError("must be a non-empty list of chat messages", field=field_name)
    out: list[Message] = []
    for i, message in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(message, dict):
            raise DataError(f"a message must be an object, got {type(message).__name__}", field=where)
        role = message.get("role")
        if role not in roles:
            raise DataError(f"role must be one of {list(roles)}, got {role!r}", field=f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                part_where = f"{where}.content[{j}]"
                if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                    raise DataError("a content part must be {'type': 'text'|'image', ...}", field=part_where)
                if part["type"] == "text":
                    if not isinstance(part.get("text"), str):
                        raise DataError("a text part needs a string 'text'", field=part_where)
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    parts.append({"type": "image"})
        else:
            raise DataError("content must be a string or a list of parts", field=f"{where}.content")
        out.append({"role": role, "content": parts})
    return out


def _response(data: dict[str, Any], key: str) -> list[Message]:
    messages = parse_messages(data[key], key, roles=("assistant",))
    if count_image_placeholders(messages):
        raise DataError("a response must not contain image placeholders", field=key)
    if not response_text(messages).strip():
        raise DataError("empty response", field=key)
    return messages


def check_image_path(path: str, field_name: str) -> None:
    """Lexical check: a relative path that stays under the data root (symlinks are checked on open)."""
    if not path.strip():
        raise DataError("empty image path", field=field_name)
    if "\x00" in path:
        raise DataError("image path contains a NUL byte", field=field_name)
    if ".." not in path and ":" not in path and not path.startswith(("/", "\\")):
        return  # no root, drive or parent step is possible: the common case, checked without pathlib
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or PureWindowsPath(path).drive:
        raise DataError(f"image path {path!r} is absolute; paths must be relative to the data root", field=field_name)
    depth = 0
    for part in PurePosixPath(path.replace("\\", "/")).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise DataError(f"image path {path!r} escapes the data root", field=field_name)


def parse_images(value: Any, field_name: str) -> list[ImageRef]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"must be a list of image paths, got {type(value).__name__}", field=field_name)
    out: list[ImageRef] = []
    for i, image in enumerate(value):
        where = f"{field_name}[{i}]"
        if isinstance(image, Image.Image | ImageBlob):
            out.append(image)
        elif isinstance(image, str):
            check_image_path(image, where)
            out.append(image)
        else:
            raise DataError(f"must be a path string or an image, got {type(image).__name__}", field=where)
    return out


def parse_spans(value: Any, field_name: str, text: str) -> list[tuple[int, int]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise DataError("must be a list of [start, end] pairs", field=field_name)
    spans: list[tuple[int, int]] = []
    for i, span in enumerate(value):
        ok = isinstance(span, list | tuple) and len(span) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in span
        )
        if not ok:
            raise DataError("must be a list of [start, end] integer pairs", field=f"{field_name}[{i}]")
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"span [{start}, {end}] is outside the text (length {len(text)}) or empty",
                field=f"{field_name}[{i}]",
            )
        spans.append((start, end))
    return spans


def _check_placeholders(prompt: list[Message], images: list[ImageRef], field_name: str = "images") -> None:
    n = count_image_placeholders(prompt)
    if n != len(images):
        raise DataError(
            f"the prompt has {n} image placeholder(s) but the record has {len(images)} image(s)",
            field=field_name,
        )


def _parse_preference(data: dict[str, Any]) -> PreferenceRecord:
    _check_keys(data, PreferenceRecord, ("id", "prompt", "chosen", "rejected"))
    rid = _id(data)
    prompt = parse_messages(data["prompt"], "prompt")
    chosen = _response(data, "chosen")
    rejected = _response(data, "rejected")
    images = parse_images(data.get("images"), "images")
    _check_placeholders(prompt, images)
    rejected_images = None
    if data.get("rejected_images") is not None:
        rejected_images = parse_images(data["rejected_images"], "rejected_images")
        if len(rejected_images) != len(images):
            raise DataError(
                f"has {len(rejected_images)} image(s) but 'images' has {len(images)}: "
                "the rejected side must fill the same placeholders",
                field="rejected_images",
            )
    chosen_text, rejected_text = response_text(chosen), response_text(rejected)
    if chosen_text.strip() == rejected_text.strip() and (rejected_images is None or rejected_images == images):
        raise DataError("chosen is identical to rejected: the pair prefers nothing", field="rejected")
    return PreferenceRecord(
        id=rid,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        images=images,
        rejected_images=rejected_images,
        chosen_spans=parse_spans(data.get("chosen_spans"), "chosen_spans", chosen_text),
        rejected_spans=parse_spans(data.get("rejected_spans"), "rejected_spans", rejected_text),
        source=_str(data, "source", ""),
        meta=_meta(data),
    )


def _parse_sft(data: dict[str, Any]) -> SFTRecord:
    _check_keys(data, SFTRecord, ("id", "prompt", "completion"))
    prompt = parse_messages(data["prompt"], "prompt")
    images = parse_images(data.get("images"), "images")
    _check_placeholders(prompt, images)
    return SFTRecord(
        id=_id(data),
        prompt=prompt,
        completion=_response(data, "completion"),
        images=images,
        source=_str(data, "source", ""),
        meta=_meta(data),
    )


def _parse_eval(data: dict[str, Any]) -> EvalItem:
    _check_keys(data, EvalItem, ("id", "task", "question", "answer"))
    choices = data.get("choices")
    if choices is not None:
        choices = _str_list(data, "choices")
        if len(choices) < 2:
            raise DataError("a multiple-choice item needs at least two choices", field="choices")
    return EvalItem(
        id=_id(data),
        task=_str(data, "task", allow_empty=False),
        question=_str(data, "question", allow_empty=False),
        answer=_str(data, "answer"),
        images=parse_images(data.get("images"), "images"),
        objects=_str_list(data, "objects"),
        choices=choices,
        meta=_meta(data),
    )


_PARSERS = {"preference": _parse_preference, "sft": _parse_sft, "eval": _parse_eval}
