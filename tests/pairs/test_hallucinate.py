"""``hallucinate`` on the shapes world: text in the world's phrasing, exact spans, absent objects,
co-occurring absents preferred; and on COCO-style annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.data.parse import record_from_dict
from mmalign.objects import shapes
from mmalign.pairs.hallucinate_common import caption_with_spans
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.pairs.sources import Cooccurrence
from mmalign.world.generate import read_world
from mmalign.world.text import reference_caption

ALL_KINDS = ["add", "swap", "attribute", "count", "existence"]


def _build(world: Path, out: Path, h, **options) -> list[dict]:
    run_build(make_builder("hallucinate", options), BuildInputs(world=world), out, shard_size=64)
    return h.read_lines(out)


@pytest.fixture(scope="module")
def pairs(world: Path, tmp_path_factory: pytest.TempPathFactory, h) -> list[dict]:
    return _build(world, tmp_path_factory.mktemp("hal") / "pairs.jsonl", h, kinds=ALL_KINDS)


def test_caption_spans_point_at_object_words():
    phrases = ["a small red circle", "an orange star", "a large blue square"]
    text, spans = caption_with_spans(phrases)
    assert text == shapes.caption(phrases) == "There is a small red circle, an orange star and a large blue square."
    assert [text[s.start : s.end] for s in spans] == ["small red circle", "orange star", "large blue square"]


def test_every_record_is_valid_and_spans_slice_the_changed_words(pairs, world, h):
    truth = h.scenes(world)
    kinds = {row["meta"]["kind"] for row in pairs}
    assert kinds == set(ALL_KINDS)
    for row in pairs:
        assert record_from_dict(row).source == "hallucinate"  # and raises on any schema problem
        chosen, rejected = h.texts(row)
        meta, scene = row["meta"], truth[row["meta"]["scene_id"]]
        said = [rejected[a:b] for a, b in row["rejected_spans"]]
        fixed = [chosen[a:b] for a, b in row["chosen_spans"]]
        if meta["kind"] in ("add", "swap"):
            assert said[0].endswith(meta["object"])  # "small blue star" names the hallucinated "blue star"
            assert meta["object"] not in scene["present"]  # really absent
            assert chosen == scene["caption"]  # the clean reference caption
        if meta["kind"] == "add":
            assert fixed == [] and len(rejected) > len(chosen)
        if meta["kind"] == "swap":
            assert fixed[0].endswith(meta["replaced"]) and meta["replaced"] in scene["present"]
            assert chosen[: row["chosen_spans"][0][0]] == rejected[: row["rejected_spans"][0][0]]  # same prefix
            assert chosen[row["chosen_spans"][0][1] :] == rejected[row["rejected_spans"][0][1] :]  # same suffix
        if meta["kind"] == "attribute":
            assert fixed == [meta["from"]] and said == [meta["to"]] and meta["from"] != meta["to"]
            if meta["attribute"] == "colour":
                assert shapes.object_name(meta["to"], meta["object"].split(" ")[1]) not in scene["present"]
        if meta["kind"] == "count":
            assert row["prompt"][0]["content"][1]["text"] == "How many objects are there?"
            assert fixed == [shapes.NUMBER_WORDS[len(scene["present"])].capitalize()]
            assert abs(shapes.NUMBER_WORDS.index(said[0].lower()) - len(scene["present"])) == 1
        if meta["kind"] == "existence":
            question = row["prompt"][0]["content"][1]["text"]
            assert question == shapes.exists_question(meta["object"])
            assert (chosen, rejected) == (("Yes.", "No.") if meta["present"] else ("No.", "Yes."))
            assert (meta["object"] in scene["present"]) == meta["present"]
            assert said == [rejected[:-1]] and fixed == [chosen[:-1]]


def test_rejected_captions_are_the_world_template_of_the_edited_scene(pairs, world, h):
    """A rejected caption is exactly the world's caption of the scene with the edit applied."""
    truth = h.scenes(world)
    sizes = ("small", "large")
    for row in pairs:
        meta = row["meta"]
        if meta["kind"] not in ("add", "swap"):
            continue
        _, rejected = h.texts(row)
        body = rejected.removeprefix("There is ").removesuffix(".")
        phrases = [p for chunk in body.split(", ") for p in chunk.split(" and ")]
        assert shapes.caption(phrases) == rejected
        names = [" ".join(w for w in p.split(" ")[1:] if w not in sizes) for p in phrases]
        present = truth[meta["scene_id"]]["present"]
        if meta["kind"] == "add":
            assert sorted(names) == sorted([*present, meta["object"]])
        else:
            assert sorted(names) == sorted([meta["object"] if n == meta["replaced"] else n for n in present])


def test_reference_caption_matches_the_world(world, h):
    from mmalign.world.config import WorldConfig
    from mmalign.world.items import scene_from_row

    info = read_world(world)
    cfg = WorldConfig(**info["config"])
    for row in list(h.scenes(world).values())[:20]:
        assert reference_caption(scene_from_row(row), cfg) == row["caption"]


def test_cooccurring_absent_objects_are_preferred(world, tmp_path, h):
    """With cooccur_prob p, the hallucinated object is the top co-occurring absent one at rate p + (1-p)/|absent|;
    those are mostly the scene's absent partners, far above the uniform rate."""
    stats = Cooccurrence.from_world(read_world(world), "train")
    truth = h.scenes(world)
    rates = {}
    for p in (1.0, 0.8, 0.0):
        rows = _build(world, tmp_path / f"p{p}.jsonl", h, kinds=["add"], cooccur_prob=p)
        top = [r["meta"]["object"] == stats.ranked_absent(truth[r["meta"]["scene_id"]]["present"])[0] for r in rows]
        with_partner = [r for r in rows if truth[r["meta"]["scene_id"]]["absent_partners"]]
        partner = sum(r["meta"]["absent_partner"] for r in with_partner) / len(with_partner)
        rates[p] = (sum(top) / len(top), partner)
        assert all(r["meta"]["choice"] == ("cooccur" if p == 1.0 else r["meta"]["choice"]) for r in rows)
    assert rates[1.0][0] == 1.0
    assert 0.72 < rates[0.8][0] < 0.9  # 0.8 + 0.2 / 16 ≈ 0.81 expected; 240 scenes
    assert rates[0.0][0] < 0.2  # uniform over ~16 absent types
    # where a present object's partner is absent, that partner is chosen far above the uniform 1/16 (seen here:
    # 0.875 at p=1, 0.72 at p=0.8, 0.05 at p=0; the rest are popular objects co-occurring with several present)
    assert rates[1.0][1] > 0.8 and rates[0.8][1] > 0.6 and rates[0.0][1] < 0.2


def test_same_seed_same_bytes_other_seed_other_choices(world, tmp_path):
    builder = make_builder("hallucinate", {"cooccur_prob": 0.5})
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_build(builder, BuildInputs(world=world), tmp_path / f"{name}.jsonl", seed=seed, shard_size=50)
    a, b, c = ((tmp_path / f"{n}.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c


# ------------------------------------------------------------------------------------------------ COCO


def _coco(tmp_path: Path) -> Path:
    folder = tmp_path / "annotations"
    folder.mkdir()
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(["person", "dog", "cat", "frisbee", "bench", "couch"])]
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in (1, 2, 3, 4)]
    # person+dog+frisbee co-occur (images 1, 2, 4); cat+couch (image 3)
    objects = {1: [1, 2, 4], 2: [1, 2, 4, 5], 3: [3, 6], 4: [1, 2]}
    anns = [{"image_id": i, "category_id": c} for i, cs in objects.items() for c in cs]
    (folder / "instances_val2014.json").write_text(
        json.dumps({"images": images, "categories": categories, "annotations": anns})
    )
    captions = {
        1: "A man throws a frisbee to his puppy.",
        2: "Two people and a dog on a bench.",
        3: "A kitten sleeps on a couch.",
        4: "A woman walks an old dog.",
    }
    cap = [{"image_id": i, "id": 100 + i, "caption": c} for i, c in captions.items()]
    (folder / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": cap}))
    return folder


def test_coco_swap_and_add_edit_the_reference_caption(tmp_path, h):
    folder = _coco(tmp_path)
    builder = make_builder(
        "hallucinate", {"kinds": ["swap", "add", "existence"], "cooccur_prob": 1.0, "image_prefix": "val2014/"}
    )
    result = run_build(builder, BuildInputs(input=folder), tmp_path / "coco.jsonl")
    rows = {r["id"]: r for r in h.read_lines(tmp_path / "coco.jsonl")}
    assert result.units == 4 and rows["coco-1-hal-swap"]["images"] == ["val2014/COCO_val2014_000000000001.jpg"]
    # image 4 holds person and dog; the absent object co-occurring most with them is frisbee (2 images)
    swap = rows["coco-4-hal-swap"]
    chosen, rejected = h.texts(swap)
    assert chosen == "A woman walks an old dog."
    assert swap["meta"]["object"] == "frisbee" and swap["meta"]["replaced"] == "person"
    assert rejected == "A frisbee walks an old dog."  # the person mention swapped (first with the top count)
    assert [rejected[a:b] for a, b in swap["rejected_spans"]] == ["frisbee"]
    assert [chosen[a:b] for a, b in swap["chosen_spans"]] == ["woman"]
    add = rows["coco-3-hal-add"]
    assert h.texts(add)[1] == "A kitten sleeps on a couch. There is also a person in the image."
    assert [h.texts(add)[1][a:b] for a, b in add["rejected_spans"]] == ["person"]
    assert h.texts(rows["coco-3-hal-existence-no"]) == ("No.", "Yes.")


def test_coco_image_holding_every_category_makes_no_pair(tmp_path, h):
    folder = _coco(tmp_path)
    instances = json.loads((folder / "instances_val2014.json").read_text())
    instances["images"].append({"id": 5, "file_name": "COCO_val2014_000000000005.jpg"})
    instances["annotations"] += [{"image_id": 5, "category_id": c} for c in range(1, 7)]  # all six categories
    (folder / "instances_val2014.json").write_text(json.dumps(instances))
    captions = json.loads((folder / "captions_val2014.json").read_text())
    captions["images"] = instances["images"]
    captions["annotations"].append({"image_id": 5, "id": 105, "caption": "A person, a dog and a cat on a couch."})
    (folder / "captions_val2014.json").write_text(json.dumps(captions))
    builder = make_builder("hallucinate", {"kinds": ["swap", "add", "existence"]})
    run_build(builder, BuildInputs(input=folder), tmp_path / "coco.jsonl")
    ids = {r["id"] for r in h.read_lines(tmp_path / "coco.jsonl")}
    assert not any(i.startswith("coco-5-") for i in ids) and "coco-3-hal-add" in ids


def test_coco_rejects_world_only_kinds_and_bad_files(tmp_path):
    from mmalign.errors import ConfigError, DataError

    folder = _coco(tmp_path)
    with pytest.raises(ConfigError, match="kinds attribute need the shapes world"):
        make_builder("hallucinate", {"kinds": ["attribute"]}).plan(BuildInputs(input=folder), 0)
    data = json.loads((folder / "instances_val2014.json").read_text())
    data["annotations"][2]["category_id"] = 99
    (folder / "instances_val2014.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"instances_val2014.json, record 2, field 'annotations.category_id'"):
        make_builder("hallucinate", {"kinds": ["add"]}).plan(BuildInputs(input=folder), 0)
