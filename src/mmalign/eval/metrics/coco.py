"""CHAIR's input files: generated captions and COCO annotations (local files; nothing is downloaded).

Generated captions, any of:

* the original CHAIR format: a JSON object whose ``"imgToEval"`` maps keys to ``{"image_id", "caption"}``;
* a JSON list or JSON lines of objects with an image id and a caption, as the Python 3 CHAIR used by
  Object HalBench and OPERA reads them; the caption key defaults to the first of ``caption``, ``answer``,
  ``text`` present (pass ``caption_key`` to choose), the id key to ``image_id``.

COCO annotations: a directory holding ``instances_*.json`` and ``captions_*.json`` (e.g. ``instances_val2014.json``
and ``captions_val2014.json``; train and val files together, as Object HalBench uses both). Every file of each
kind is read and merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.errors import DataError
from mmalign.eval.metrics.official import field_value, read_json, read_records

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


@dataclass
class CocoAnnotations:
    instances: list[tuple[int, str]]
    """(image id, category name) for every instance annotation."""
    captions: list[tuple[int, str]]
    """(image id, reference caption)."""
    image_ids: set[int]
    """Every image the files know (listed under ``images`` or annotated)."""


def read_coco_annotations(directory: str | Path) -> CocoAnnotations:
    """Merge every ``instances_*.json`` and ``captions_*.json`` in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("annotation directory not found", file=directory)
    instance_files = sorted(directory.glob("instances_*.json"))
    caption_files = sorted(directory.glob("captions_*.json"))
    if not instance_files or not caption_files:
        raise DataError(
            "CHAIR needs both COCO instances_*.json and captions_*.json files here "
            f"(found {len(instance_files)} and {len(caption_files)})",
            file=directory,
        )
    out = CocoAnnotations([], [], set())
    for file in instance_files:
        data = _coco_file(file)
        names = {}
        for i, cat in enumerate(data.get("categories", [])):
            if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
                raise DataError("a category needs 'id' and 'name'", file=file, index=i, field="categories")
            names[cat["id"]] = cat["name"]
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or "image_id" not in ann or ann.get("category_id") not in names:
                raise DataError("needs 'image_id' and a known 'category_id'", file=file, index=i, field="annotations")
            out.instances.append((int(ann["image_id"]), names[ann["category_id"]]))
        out.image_ids |= _listed_images(data, file)
    for file in caption_files:
        data = _coco_file(file)
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
                raise DataError("needs 'image_id' and a string 'caption'", file=file, index=i, field="annotations")
            out.captions.append((int(ann["image_id"]), ann["caption"]))
        out.image_ids |= _listed_images(data, file)
    out.image_ids |= {i for i, _ in out.instances} | {i for i, _ in out.captions}
    return out


def _coco_file(file: Path) -> dict[str, Any]:
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError("not a COCO annotation file (no 'annotations' list)", file=file)
    return data


def _listed_images(data: dict[str, Any], file: Path) -> set[int]:
    images = data.get("images", [])
    if not isinstance(images, list):
        raise DataError("'images' must be a list", file=file, field="images")
    return {int(img["id"]) for img in images if isinstance(img, dict) and "id" in img}
