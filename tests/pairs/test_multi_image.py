"""``multi-image``: prompts over 2-4 world images whose rejected answer confuses the images."""

from __future__ import annotations

import pytest

from mmalign.data.parse import record_from_dict
from mmalign.data.records import count_image_placeholders, prompt_text
from mmalign.errors import ConfigError
from mmalign.objects import shapes
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build


@pytest.fixture(scope="module")
def groups(world, tmp_path_factory, h) -> list[dict]:
    out = tmp_path_factory.mktemp("mi") / "mi.jsonl"
    run_build(make_builder("multi-image", {"groups": 60}), BuildInputs(world=world), out, out_root=world, seed=3)
    return h.read_lines(out)


def test_prompts_hold_two_to_four_images_in_order(groups, world, h):
    truth = h.scenes(world)
    sizes = set()
    for row in groups:
        record = record_from_dict(row)
        ids = row["meta"]["scene_ids"]
        sizes.add(len(ids))
        assert record.images == [truth[i]["image"] for i in ids]
        assert count_image_placeholders(record.prompt) == len(ids) == len(set(ids))
        assert record.source == "multi-image"
    assert sizes == {2, 3, 4}


def test_which_and_exists_name_the_right_and_the_confused_image(groups, world, h):
    truth = h.scenes(world)
    kinds = set()
    for row in groups:
        meta = row["meta"]
        kinds.add(meta["kind"])
        if meta["kind"] == "describe":
            continue
        present = [set(truth[i]["present"]) for i in meta["scene_ids"]]
        holder, wrong, name = meta["image"], meta["confused_with"], meta["object"]
        assert [name in p for p in present].count(True) == 1 and name in present[holder]
        assert wrong != holder and name not in present[wrong]
        chosen, rejected = h.texts(row)
        question = prompt_text(record_from_dict(row).prompt)
        colour, shape = name.split(" ")
        if meta["kind"] == "which":
            assert question == f"In which image is there {shapes.object_phrase(colour, shape)}?"
            assert (chosen, rejected) == (f"Image{holder + 1}.", f"Image{wrong + 1}.")
        else:
            asked = meta["asked_image"]
            assert question == f"Is there {shapes.object_phrase(colour, shape)} in image{asked + 1}?"
            assert chosen == ("Yes." if name in present[asked] else "No.") and rejected != chosen
    assert kinds == {"which", "exists", "describe"}


def test_describe_spans_mark_objects_the_wrong_caption_invents(groups, world, h):
    truth = h.scenes(world)
    for row in (r for r in groups if r["meta"]["kind"] == "describe"):
        meta = row["meta"]
        right, wrong = (truth[meta["scene_ids"][k]] for k in (meta["image"], meta["confused_with"]))
        chosen, rejected = h.texts(row)
        assert chosen == right["caption"] and rejected == wrong["caption"]
        invented = {
            rejected[a:b].split(" ", 1)[-1] if rejected[a:b].split(" ")[0] in shapes.SIZES else rejected[a:b]
            for a, b in row["rejected_spans"]
        }
        assert invented == set(wrong["present"]) - set(right["present"])
        missed = {chosen[a:b].split(" ", 1)[-1] for a, b in row["chosen_spans"]}
        assert missed == set(right["present"]) - set(wrong["present"])


def test_groups_depend_on_the_seed_and_options_are_checked(world, tmp_path, h):
    builder = make_builder("multi-image", {"groups": 10, "kinds": ["which"]})
    plans = [builder.plan(BuildInputs(world=world), seed) for seed in (0, 0, 1)]
    assert plans[0].units == plans[1].units != plans[2].units
    with pytest.raises(ConfigError, match="max_images"):
        make_builder("multi-image", {"max_images": 5})
    with pytest.raises(ConfigError, match="builds from a shapes world"):
        builder.plan(BuildInputs(input=tmp_path / "x.jsonl"), 0)
