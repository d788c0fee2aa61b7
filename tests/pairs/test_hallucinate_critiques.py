"""``hallucinate`` with ``critiques: true``: each side gets a critique that is true of the scene (checked against the
world's ground truth for every kind), the pairs are otherwise the same bytes, and COCO-style pairs get them too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.objects import shapes
from mmalign.pairs.hallucinate_critiques import pair_critiques
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build

ALL_KINDS = ["add", "swap", "attribute", "count", "existence"]
RIGHT, WRONG = "so the answer is right.", "so the answer is wrong."


def _build(world: Path, out: Path, h, **options) -> list[dict]:
    run_build(make_builder("hallucinate", {"kinds": ALL_KINDS, **options}), BuildInputs(world=world), out)
    return h.read_lines(out)


def test_critiques_are_true_of_the_scene_for_every_kind(world, tmp_path, h):
    rows = _build(world, tmp_path / "c.jsonl", h, critiques=True)
    truth = h.scenes(world)
    seen = set()
    for row in rows:
        meta = row["meta"]
        good, bad = meta["chosen_critique"], meta["rejected_critique"]
        scene = truth[meta["scene_id"]]
        present = {o["name"] for o in scene["objects"]}
        assert good.endswith(RIGHT) and bad.endswith(WRONG)
        kind = meta["kind"]
        seen.add(kind)
        if kind in ("add", "swap"):
            assert good == f"Every object in the answer is in the image, {RIGHT}"
            assert bad == f"There is no {meta['object']} in the image, {WRONG}" and meta["object"] not in present
        elif kind == "attribute" and meta["attribute"] == "colour":
            absent = shapes.object_name(meta["to"], meta["object"].split(" ", 1)[1])
            assert bad == f"There is no {absent} in the image, {WRONG}" and absent not in present
        elif kind == "attribute":
            sizes = {o["size"] for o in scene["objects"] if o["name"] == meta["object"]}
            assert bad == f"The {meta['object']} is {meta['from']}, not {meta['to']}, {WRONG}"
            assert meta["from"] in sizes
        elif kind == "count":
            n = len(scene["objects"])
            there = "There is one object" if n == 1 else f"There are {shapes.NUMBER_WORDS[n]} objects"
            assert good == f"{there}, {RIGHT}" and bad == f"{there}, not {shapes.NUMBER_WORDS[meta['said']]}, {WRONG}"
        else:
            said = f"There is {shapes.article(meta['object'])} {meta['object']} in the image"
            evidence = said if meta["object"] in present else f"There is no {meta['object']} in the image"
            assert (good, bad) == (f"{evidence}, {RIGHT}", f"{evidence}, {WRONG}")
    assert seen == set(ALL_KINDS)


def test_without_the_option_the_pairs_are_the_same_but_carry_no_critiques(world, tmp_path, h):
    plain = _build(world, tmp_path / "p.jsonl", h)
    critiqued = _build(world, tmp_path / "c.jsonl", h, critiques=True)
    assert not any("chosen_critique" in row["meta"] for row in plain)
    for row in critiqued:
        del row["meta"]["chosen_critique"], row["meta"]["rejected_critique"]
    assert critiqued == plain


def test_by_hand_and_an_unknown_kind():
    meta = {"kind": "count", "count": 1, "said": 2}
    assert pair_critiques(meta) == (
        "There is one object, so the answer is right.",
        "There is one object, not two, so the answer is wrong.",
    )
    meta = {"kind": "existence", "object": "orange star", "present": True}
    assert pair_critiques(meta)[1] == "There is an orange star in the image, so the answer is wrong."
    with pytest.raises(ValueError, match="kind 'caption'"):
        pair_critiques({"kind": "caption"})


def test_coco_style_pairs_get_critiques(tmp_path, h):
    folder = tmp_path / "annotations"
    folder.mkdir()
    categories = [
        {"id": 1, "name": "person"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "frisbee"},
        {"id": 4, "name": "cat"},
    ]
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in (1, 2)]
    anns = [{"image_id": 1, "category_id": c} for c in (1, 2, 3)] + [{"image_id": 2, "category_id": 2}]
    (folder / "instances_val2014.json").write_text(
        json.dumps({"images": images, "categories": categories, "annotations": anns})
    )
    captions = [
        {"image_id": 1, "id": 1, "caption": "A man and his dog."},
        {"image_id": 2, "id": 2, "caption": "A dog."},
    ]
    (folder / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": captions}))
    options = {"kinds": ["add", "existence"], "cooccur_prob": 1.0, "critiques": True}
    run_build(make_builder("hallucinate", options), BuildInputs(input=folder), tmp_path / "coco.jsonl")
    rows = {r["id"]: r["meta"] for r in h.read_lines(tmp_path / "coco.jsonl")}
    add = rows["coco-2-hal-add"]
    assert add["rejected_critique"] == f"There is no {add['object']} in the image, {WRONG}"
    assert add["object"] in ("person", "frisbee", "cat")
    assert rows["coco-2-hal-existence-yes"]["chosen_critique"] == f"There is a dog in the image, {RIGHT}"
