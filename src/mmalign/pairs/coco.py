"""COCO-style annotations as a source of ground truth for ``hallucinate``: objects per image, reference
captions, and object mentions in a caption located by character offsets (so an edit can be spanned).

The input is a directory holding ``instances_*.json`` and ``captions_*.json`` in COCO's layout (as CHAIR
reads them) or one instances file with its captions file beside it. An image is used when it has at least one
object annotation and one caption; its path is ``image_prefix`` + the ``file_name`` COCO lists for it.
Objects are named by category names, and found in captions with CHAIR's synonym list (``puppy`` → ``dog``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.io import read_json
from mmalign.errors import DataError

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    """Character span ``[start, end)`` of the words in the caption."""
    object: str
    """The category the words name."""
    plural: bool


@dataclass
class CocoImages:
    units: list[dict[str, Any]]
    """Per image: ``id``, ``image`` (path), ``objects`` (sorted categories present), ``captions``."""
    categories: tuple[str, ...]
    files: list[Path]


def annotation_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(instances files, captions files) from a directory, or from one instances file and its caption twin."""
    if path.is_dir():
        instances, captions = sorted(path.glob("instances_*.json")), sorted(path.glob("captions_*.json"))
    elif path.is_file() and path.name.startswith("instances_"):
        instances = [path]
        captions = [path.with_name("captions_" + path.name.removeprefix("instances_"))]
        captions = [c for c in captions if c.is_file()]
    else:
        raise DataError("expected a directory of COCO annotations or an instances_*.json file", file=path)
    if not instances or not captions:
        raise DataError(
            f"COCO-style input needs instances_*.json and captions_*.json (found {len(instances)} and {len(captions)})",
            file=path,
        )
    return instances, captions


def _load(file: Path) -> dict[str, Any]:
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError("not a COCO annotation file (no 'annotations' list)", file=file, field="annotations")
    return data


def read_coco(path: Path, image_prefix: str = "") -> CocoImages:
    """The images of a COCO-style annotation set that have objects and captions, sorted by image id."""
    instances, caption_files = annotation_files(path)
    names: dict[int, str] = {}
    objects: dict[int, set[str]] = {}
    captions: dict[int, list[str]] = {}
    file_names: dict[int, str] = {}
    categories: dict[str, None] = {}
    for file in instances:
        data = _load(file)
        _file_names(data, file, file_names)
        for i, cat in enumerate(data.get("categories", [])):
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
                raise DataError("a category needs an integer 'id' and a 'name'", file=file, index=i, field="categories")
            names[cat["id"]] = cat["name"]
            categories[cat["name"]] = None
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
                raise DataError("needs an integer 'image_id'", file=file, index=i, field="annotations.image_id")
            if ann.get("category_id") not in names:
                raise DataError(
                    f"unknown category_id {ann.get('category_id')!r}",
                    file=file,
                    index=i,
                    field="annotations.category_id",
                )
            objects.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    for file in caption_files:
        data = _load(file)
        _file_names(data, file, file_names)
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
                raise DataError("needs an integer 'image_id'", file=file, index=i, field="annotations.image_id")
            if not isinstance(ann.get("caption"), str) or not ann["caption"].strip():
                raise DataError("needs a non-empty string 'caption'", file=file, index=i, field="annotations.caption")
            captions.setdefault(ann["image_id"], []).append(" ".join(ann["caption"].split()))
    units = []
    for image_id in sorted(set(objects) & set(captions)):
        if image_id not in file_names:
            raise DataError(
                f"image {image_id} is annotated but not listed under 'images' with a file_name",
                file=instances[0],
                field="images",
            )
        units.append(
            {
                "id": f"coco-{image_id}",
                "image": image_prefix + file_names[image_id],
                "objects": sorted(objects[image_id]),
                "captions": captions[image_id],
            }
        )
    return CocoImages(units, tuple(categories), [*instances, *caption_files])


def _file_names(data: dict[str, Any], file: Path, out: dict[int, str]) -> None:
    images = data.get("images", [])
    if not isinstance(images, list):
        raise DataError("'images' must be a list", file=file, field="images")
    for i, image in enumerate(images):
        if isinstance(image, dict) and isinstance(image.get("id"), int) and isinstance(image.get("file_name"), str):
            out[image["id"]] = image["file_name"]
        elif not isinstance(image, dict) or "id" not in image:
            raise DataError("an image needs an integer 'id' and a 'file_name'", file=file, index=i, field="images")


# ------------------------------------------------------------------------------------------- mentions


@functools.lru_cache(maxsize=1)
def _vocabulary() -> Any:
    from mmalign.objects.vocabulary import coco_vocabulary

    return coco_vocabulary()


def find_mentions(caption: str) -> list[Mention]:
    """Object mentions in ``caption`` with character offsets: CHAIR's synonyms and two-word names."""
    from mmalign.objects.singular import singularize

    vocab = _vocabulary()
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(caption)]
    singular = [singularize(w) for _, _, w in words]
    out: list[Mention] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and caption[words[i][1] : words[i + 1][0]] == " ":
            pair = f"{singular[i]} {singular[i + 1]}"
            merged = vocab.double_words.get(pair)
            if merged in vocab.synonyms:
                out.append(
                    Mention(words[i][0], words[i + 1][1], vocab.synonyms[merged], singular[i + 1] != words[i + 1][2])
                )
                i += 2
                continue
        if singular[i] in vocab.synonyms:
            out.append(Mention(words[i][0], words[i][1], vocab.synonyms[singular[i]], singular[i] != words[i][2]))
        i += 1
    return out


def plural(name: str) -> str:
    """A plain English plural of a category name (``bus`` → ``buses``, ``sheep`` stays)."""
    if name in ("sheep", "skis", "scissors", "person"):
        return {"person": "people"}.get(name, name)
    head, _, last = name.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    elif last.endswith("knife"):
        last = last[:-2] + "ves"
    else:
        last += "s"
    return f"{head} {last}" if head else last
