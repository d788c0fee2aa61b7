"""TRL preference datasets saved locally (a ``datasets`` directory, Parquet, JSON or JSONL).

TRL's DPO data has ``chosen`` and ``rejected`` and usually ``prompt``, each either *conversational*
(a list of ``{"role", "content"}`` messages, content a string or a list of ``{"type": "text"|"image"}``
parts) or *standard* (plain strings), with the images in ``images`` (a list) or ``image`` (one). Without
a ``prompt`` column the prompt is *implicit*: the turns ``chosen`` and ``rejected`` share before their last
(assistant) message. When a conversational prompt has no image placeholder, the images go at the start of
its first user message, as TRL does; a standard prompt may place them with ``<image>`` tokens.

Files written by mmalign itself (columns ``image_paths``, ``meta`` as JSON...) read back losslessly.

``trl-unpaired`` reads TRL's *unpaired preference* data (KTO's): ``prompt``, one ``completion`` and a boolean
``label`` (true: desirable), conversational or standard, with the same image columns, into binary-feedback records
(:class:`~mmalign.data.records.FeedbackRecord`); ids are the row's ``id`` or a hash of its content.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from mmalign.data.columnar import from_columns
from mmalign.data.importers.base import Importer, content_id, user_message
from mmalign.data.parse import parse_messages
from mmalign.data.records import Message, count_image_placeholders, text_message
from mmalign.errors import DataError

OWN = ("rejected_images", "chosen_spans", "rejected_spans", "source", "meta", "image_paths", "rejected_image_paths")


class TRLImporter(Importer):
    name: ClassVar[str] = "trl"
    fields: ClassVar[tuple[str, ...]] = ("id", "prompt", "chosen", "rejected", "images", "image", *OWN)
    required: ClassVar[tuple[str, ...]] = ("chosen", "rejected")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        if "image_paths" in row:  # written by mmalign: the record is all there
            data = from_columns(row)
            data.setdefault("id", row_id or content_id(self.name, row.get("prompt"), row["chosen"], row["rejected"]))
            return [{k: v for k, v in data.items() if v is not None or k in ("id",)}]
        if row.get("images") is not None and row.get("image") is not None:
            raise DataError(
                "has both 'images' and 'image'; drop one with --ignore-field image (or images)", field="image"
            )
        images = _images(self, row)
        chosen, rejected = _response(row["chosen"], "chosen"), _response(row["rejected"], "rejected")
        if row.get("prompt") is None:
            if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
                raise DataError(
                    "without a prompt column, chosen and rejected must share every turn but the last", field="prompt"
                )
            prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
        else:
            prompt = _prompt(row["prompt"], images)
        for side, messages in (("chosen", chosen), ("rejected", rejected)):
            if any(m["role"] != "assistant" for m in messages):
                raise DataError("the response must be assistant messages", field=side)
        record_id = row_id or content_id(self.name, prompt, chosen, rejected, [_key(i) for i in images])
        meta = _meta(row)
        return [
            {
                "id": record_id,
                "images": images,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": row.get("source") or self.name,
                "meta": meta or {},
            }
        ]


class TRLUnpairedImporter(Importer):
    name: ClassVar[str] = "trl-unpaired"
    kind: ClassVar[str] = "feedback"
    fields: ClassVar[tuple[str, ...]] = ("id", "prompt", "completion", "label", "images", "image", *OWN)
    required: ClassVar[tuple[str, ...]] = ("prompt", "completion", "label")

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        if "image_paths" in row:  # written by mmalign: the record is all there
            data = from_columns(row)
            data.setdefault("id", row_id or content_id(self.name, row["prompt"], row["completion"], row["label"]))
            return [{k: v for k, v in data.items() if v is not None or k in ("id",)}]
        images = _images(self, row)
        prompt, completion = _prompt(row["prompt"], images), _response(row["completion"], "completion")
        if any(m["role"] != "assistant" for m in completion):
            raise DataError("the response must be assistant messages", field="completion")
        label = row["label"]  # checked by the record's parser: true or false
        record_id = row_id or content_id(self.name, prompt, completion, label, [_key(i) for i in images])
        return [
            {
                "id": record_id,
                "images": images,
                "prompt": prompt,
                "completion": completion,
                "label": label,
                "source": row.get("source") or self.name,
                "meta": _meta(row),
            }
        ]


def _images(importer: Importer, row: dict[str, Any]) -> list[Any]:
    """The row's ``images`` (a list) or ``image`` (one), as image references."""
    cells = (
        row.get("images") if row.get("images") is not None else ([row["image"]] if row.get("image") is not None else [])
    )
    if not isinstance(cells, list):
        raise DataError("must be a list of images", field="images")
    key = "images" if row.get("images") is not None else "image"
    return [importer.image(cell, f"{key}[{i}]" if key == "images" else key) for i, cell in enumerate(cells)]


def _prompt(value: Any, images: list[Any]) -> list[Message]:
    """A standard (string) or conversational prompt, with a placeholder per image at the start of its first user
    message when it has none (as TRL does)."""
    if isinstance(value, str):
        message, _ = user_message(value, len(images), "prompt")
        prompt = [message]
    else:
        prompt = parse_messages(value, "prompt")
    if images and count_image_placeholders(prompt) == 0:
        first = next((m for m in prompt if m["role"] == "user"), None)
        if first is None:
            raise DataError("has images but no user message to put them in", field="prompt")
        first["content"] = [{"type": "image"} for _ in images] + first["content"]
    return prompt


def _meta(row: dict[str, Any]) -> Any:
    meta = row.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise DataError("not valid JSON", field="meta") from None
    return meta or {}


def _response(value: Any, field_name: str) -> list[Message]:
    if isinstance(value, str):
        return [text_message("assistant", value)]
    return parse_messages(value, field_name)


def _key(image: Any) -> str:
    return image if isinstance(image, str) else (image.path or "")
