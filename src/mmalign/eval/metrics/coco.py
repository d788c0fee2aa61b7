"""CHAIR's input files: generated captions and COCO annotations (local files; nothing is downloaded).

Generated captions, any of:

* the original CHAIR format: a JSON object whose ``"imgToEval"`` maps keys to ``{"image_id", "caption"}``;
* a JSON list or JSON lines of objects with an image id and a caption, as the Python 3 CHAIR used by
  Object HalBench and OPERA reads them; the caption key defaults to the first of ``caption``, ``answer``,
  ``text`` present (pass ``caption_key`` to choose), the id key to ``image_id``.

COCO annotations are read by :func:`mmalign.data.coco.read_coco_annotations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.io import read_json
from mmalign.errors import DataError
from mmalign.eval.metrics.official import field_value, read_records

CAPTION_KEYS = ("caption", "answer", "text")


@dataclass(frozen=True)
class GeneratedCaption:
    image_id: int
    caption: str
    file: str
    line: int | None
    """Line in a JSON-lines file (None for a JSON file)."""
    index: int | None
    """Index in a JSON file's list (None for JSON lines)."""


def _image_id(obj: dict[str, Any], key: str, where: dict[str, Any]) -> int:
    value = field_value(obj, (key,), (int, str), where)
    try:
        return int(value)
    except ValueError:
        raise DataError(f"must be a COCO image id (an integer), got {value!r}", field=key, **where) from None


def read_generated_captions(
    path: str | Path, caption_key: str | None = None, image_id_key: str = "image_id"
) -> list[GeneratedCaption]:
    """Generated captions from a CHAIR caption file (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict):
            if "imgToEval" not in data or not isinstance(data["imgToEval"], dict):
                raise DataError("a JSON object must hold the captions under 'imgToEval'", file=path, field="imgToEval")
            records = [(None, i, obj) for i, obj in enumerate(data["imgToEval"].values())]
        else:
            records = read_records(path)
    else:
        records = read_records(path)
    keys = (caption_key,) if caption_key else CAPTION_KEYS
    out = []
    for line, index, obj in records:
        if not isinstance(obj, dict):
            raise DataError(f"expected an object, got {type(obj).__name__}", file=path, line=line, index=index)
        where = {"file": path, "line": line, "index": index}
        image_id = _image_id(obj, image_id_key, where)
        caption = field_value(obj, keys, str, where)
        out.append(GeneratedCaption(image_id, caption, str(path), line, index))
    if not out:
        raise DataError("no captions", file=path)
    return out
