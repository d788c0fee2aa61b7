"""Records from dicts: every field checked, errors that name the record and the field.

:func:`record_from_dict` turns a JSON object (or a TRL dataset row) into a
:class:`~mmalign.data.records.PreferenceRecord`, :class:`~mmalign.data.records.FeedbackRecord`,
:class:`~mmalign.data.records.SFTRecord` or
:class:`~mmalign.data.records.EvalItem`. Every check here is pure (no file access): placeholder and image
counts, non-empty and different responses, spans inside their text, image paths inside the data root.
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image

from mmalign.data.records import (
    RECORD_TYPES,
    ROLES,
    EvalItem,
    FeedbackRecord,
    ImageBlob,
    ImageRef,
    Message,
    PreferenceRecord,
    Record,
    SFTRecord,
    count_image_placeholders,
    response_text,
)
from mmalign.errors import DataError


def detect_kind(data: dict[str, Any]) -> str:
    """Which record type a dict is, from its fields."""
    if "chosen" in data or "rejected" in data:
        return "preference"
    if "label" in data:
        return "feedback"
    if "completion" in data:
        return "sft"
    if "question" in data:
        return "eval"
    raise DataError(
        "cannot tell the record kind: expected 'chosen'/'rejected' (preference pair), "
        "'completion' and 'label' (binary feedback), 'completion' (SFT example) or 'question' (evaluation item)"
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
        ok = (
            isinstance(span, list | tuple)
            and len(span) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
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


def _parse_feedback(data: dict[str, Any]) -> FeedbackRecord:
    _check_keys(data, FeedbackRecord, ("id", "prompt", "completion", "label"))
    prompt = parse_messages(data["prompt"], "prompt")
    images = parse_images(data.get("images"), "images")
    _check_placeholders(prompt, images)
    label = data["label"]
    if not isinstance(label, bool):
        raise DataError(
            f"must be true (desirable) or false (undesirable), got {type(label).__name__} {label!r}", field="label"
        )
    return FeedbackRecord(
        id=_id(data),
        prompt=prompt,
        completion=_response(data, "completion"),
        label=label,
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


_PARSERS = {"preference": _parse_preference, "feedback": _parse_feedback, "sft": _parse_sft, "eval": _parse_eval}
