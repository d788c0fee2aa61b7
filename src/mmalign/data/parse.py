"""Records from dicts: every field checked, errors that name the record and the field.

:func:`record_from_dict` turns a JSON object (or a TRL dataset row) into a
:class:`~mmalign.data.records.PreferenceRecord`, :class:`~mmalign.data.records.FeedbackRecord`,
:class:`~mmalign.data.records.SFTRecord` or
:class:`~mmalign.data.records.EvalItem`. Every check here is pure (no file access): placeholder and image
counts, non-empty and different responses, spans inside their text, image paths inside the data root.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image

from mmalign.data.limits import DEFAULT_MAX_FRAMES
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
    Sampling,
    SFTRecord,
    VideoRef,
    count_image_placeholders,
    count_video_placeholders,
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
                if not isinstance(part, dict) or part.get("type") not in ("text", "image", "video"):
                    raise DataError("a content part must be {'type': 'text'|'image'|'video', ...}", field=part_where)
                if part["type"] == "text":
                    if not isinstance(part.get("text"), str):
                        raise DataError("a text part needs a string 'text'", field=part_where)
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    parts.append({"type": part["type"]})
        else:
            raise DataError("content must be a string or a list of parts", field=f"{where}.content")
        out.append({"role": role, "content": parts})
    return out


def _response(data: dict[str, Any], key: str) -> list[Message]:
    messages = parse_messages(data[key], key, roles=("assistant",))
    if count_image_placeholders(messages) or count_video_placeholders(messages):
        raise DataError("a response must not contain image or video placeholders", field=key)
    if not response_text(messages).strip():
        raise DataError("empty response", field=key)
    return messages


def check_image_path(path: str, field_name: str | None, what: str = "image") -> None:
    """Lexical check: a relative path that stays under the data root (symlinks are checked on open); ``what``
    names the file in the messages (image, video, frame)."""
    if not isinstance(path, str) or not path.strip():
        raise DataError(f"empty {what} path", field=field_name)
    if "\x00" in path:
        raise DataError(f"{what} path contains a NUL byte", field=field_name)
    if ".." not in path and ":" not in path and not path.startswith(("/", "\\")):
        return  # no root, drive or parent step is possible: the common case, checked without pathlib
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or PureWindowsPath(path).drive:
        raise DataError(f"{what} path {path!r} is absolute; paths must be relative to the data root", field=field_name)
    depth = 0
    for part in PurePosixPath(path.replace("\\", "/")).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise DataError(f"{what} path {path!r} escapes the data root", field=field_name)


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


# ------------------------------------------------------------------------------------------------ videos

SAMPLING_MODES = ("uniform", "fps")
SAMPLING_KEYS = ("mode", "num_frames", "fps", "max_frames")


def parse_sampling(value: Any, field: str, max_frames: int = DEFAULT_MAX_FRAMES) -> Sampling:
    """A :class:`Sampling` from its dict (missing keys take the defaults: uniform, 8 frames, at most 16)."""
    if value is None:
        return Sampling()
    if not isinstance(value, dict):
        raise DataError(f"must be an object, got {type(value).__name__}", field=field)
    unknown = sorted(set(value) - set(SAMPLING_KEYS))
    if unknown:
        raise DataError(f"unknown sampling key(s) {unknown} (allowed: {', '.join(SAMPLING_KEYS)})", field=field)
    mode = value.get("mode", "uniform")
    if mode not in SAMPLING_MODES:
        raise DataError(f"mode must be one of {list(SAMPLING_MODES)}, got {mode!r}", field=f"{field}.mode")
    cap = _positive_int(value.get("max_frames", 16), f"{field}.max_frames")
    if cap > max_frames:
        raise DataError(
            f"max_frames {cap} is over the limit of {max_frames} frames per video", field=f"{field}.max_frames"
        )
    num = value.get("num_frames", 8 if mode == "uniform" else None)
    num = None if num is None else _positive_int(num, f"{field}.num_frames")
    fps = value.get("fps")
    if mode == "fps":
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
            raise DataError(f"fps sampling needs a positive 'fps', got {fps!r}", field=f"{field}.fps")
        fps = float(fps)
    elif fps is not None:
        raise DataError("'fps' is only read with mode 'fps'", field=f"{field}.fps")
    return Sampling(mode=mode, num_frames=num, fps=fps, max_frames=cap)


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"must be a positive integer, got {value!r}", field=field)
    return value


def parse_video(value: Any, field: str, max_frames: int = DEFAULT_MAX_FRAMES) -> VideoRef:
    """One ``videos`` entry (a dict, or an already built :class:`VideoRef`), checked without file access."""
    if isinstance(value, VideoRef):
        value = {"frames": list(value.frames)} if value.frames is not None else value.to_dict()
    if not isinstance(value, dict):
        raise DataError(
            f"a video must be {{'path': ..., 'sampling': ...}} or {{'frames': [...]}}, got {type(value).__name__}",
            field=field,
        )
    has_path, has_frames = value.get("path") is not None, value.get("frames") is not None
    if has_path == has_frames:
        raise DataError("a video needs exactly one of 'path' (a file) and 'frames' (a frame list)", field=field)
    if has_frames:
        unknown = sorted(set(value) - {"frames"})
        if unknown:
            raise DataError(f"unknown key(s) {unknown} beside 'frames' (a frame list is not sampled)", field=field)
        frames = parse_images(value["frames"], f"{field}.frames")
        if not frames:
            raise DataError("a frame list must not be empty", field=f"{field}.frames")
        if len(frames) > max_frames:
            raise DataError(
                f"{len(frames)} frames, over the limit of {max_frames} frames per video", field=f"{field}.frames"
            )
        return VideoRef(frames=tuple(frames))
    unknown = sorted(set(value) - {"path", "sampling"})
    if unknown:
        raise DataError(f"unknown key(s) {unknown} (allowed: path, sampling)", field=field)
    path = value["path"]
    if not isinstance(path, str):
        raise DataError(f"must be a path string, got {type(path).__name__}", field=f"{field}.path")
    check_image_path(path, f"{field}.path")
    return VideoRef(path=path, sampling=parse_sampling(value.get("sampling"), f"{field}.sampling", max_frames))


def parse_videos(value: Any, field: str = "videos") -> list[VideoRef]:
    """A record's ``videos`` (None or absent: no video)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"must be a list of videos, got {type(value).__name__}", field=field)
    return [parse_video(video, f"{field}[{i}]") for i, video in enumerate(value)]


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


def _check_videos(prompt: list[Message], data: dict[str, Any]) -> list[VideoRef]:
    """The record's ``videos``, as many as the prompt has ``{"type": "video"}`` parts (``<video>``)."""
    videos = parse_videos(data.get("videos"), "videos")
    n = count_video_placeholders(prompt)
    if n != len(videos):
        raise DataError(
            f"the prompt has {n} video placeholder(s) but the record has {len(videos)} video(s)", field="videos"
        )
    return videos


def _rejected_side(data: dict[str, Any], kind: str, n: int, parse: Any) -> list[Any] | None:
    """``rejected_<kind>`` (images or videos) parsed, one per placeholder the chosen side fills (None: not given)."""
    if data.get(f"rejected_{kind}") is None:
        return None
    rejected = parse(data[f"rejected_{kind}"], f"rejected_{kind}")
    if len(rejected) != n:
        raise DataError(
            f"has {len(rejected)} {kind[:-1]}(s) but '{kind}' has {n}: the rejected side must fill the same "
            "placeholders",
            field=f"rejected_{kind}",
        )
    return rejected


def _parse_preference(data: dict[str, Any]) -> PreferenceRecord:
    _check_keys(data, PreferenceRecord, ("id", "prompt", "chosen", "rejected"))
    rid = _id(data)
    prompt = parse_messages(data["prompt"], "prompt")
    chosen = _response(data, "chosen")
    rejected = _response(data, "rejected")
    images = parse_images(data.get("images"), "images")
    _check_placeholders(prompt, images)
    videos = _check_videos(prompt, data)
    rejected_videos = _rejected_side(data, "videos", len(videos), parse_videos)
    rejected_images = _rejected_side(data, "images", len(images), parse_images)
    chosen_text, rejected_text = response_text(chosen), response_text(rejected)
    same_images = rejected_images is None or rejected_images == images
    same_videos = rejected_videos is None or rejected_videos == videos
    if chosen_text.strip() == rejected_text.strip() and same_images and same_videos:
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
        videos=videos,
        rejected_videos=rejected_videos,
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
        videos=_check_videos(prompt, data),
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
        videos=_check_videos(prompt, data),
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
        videos=parse_videos(data.get("videos"), "videos"),
    )


_PARSERS = {"preference": _parse_preference, "feedback": _parse_feedback, "sft": _parse_sft, "eval": _parse_eval}
