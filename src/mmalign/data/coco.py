"""COCO annotation files, read in one place: the ``hallucinate`` and ``sample-rank`` builders' ground truth
(:func:`read_coco`: per image its objects, captions and file name) and CHAIR's (:func:`read_coco_annotations`: every
instance and caption, as the original CHAIR script reads them, merged over files).

The input is a directory holding ``instances_*.json`` and ``captions_*.json`` in COCO's layout (e.g.
``instances_val2014.json`` and ``captions_val2014.json``; train and val files together, as Object HalBench uses
both), or, for the builders, one instances file with its captions file beside it. The builders take an image when
it has at least one object annotation and one caption, its path ``image_prefix`` + the ``file_name`` COCO lists
for it, and want integer ids; CHAIR keeps what its original script keeps (ids read with ``int``, captions as
written). Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.io import read_json
from mmalign.errors import DataError


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


def load_annotation_file(file: Path) -> dict[str, Any]:
    """A COCO annotation file (JSON object with an ``annotations`` list); anything else is a :class:`DataError`."""
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
        data = load_annotation_file(file)
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
        data = load_annotation_file(file)
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
        data = load_annotation_file(file)
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
        data = load_annotation_file(file)
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
                raise DataError("needs 'image_id' and a string 'caption'", file=file, index=i, field="annotations")
            out.captions.append((int(ann["image_id"]), ann["caption"]))
        out.image_ids |= _listed_images(data, file)
    out.image_ids |= {i for i, _ in out.instances} | {i for i, _ in out.captions}
    return out


def _listed_images(data: dict[str, Any], file: Path) -> set[int]:
    images = data.get("images", [])
    if not isinstance(images, list):
        raise DataError("'images' must be a list", file=file, field="images")
    return {int(img["id"]) for img in images if isinstance(img, dict) and "id" in img}
