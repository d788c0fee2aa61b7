"""LLaVA-RLHF human preferences and POVID: LLaVA conversations, images named by path."""

from __future__ import annotations

import pytest

from mmalign.data.importers import import_file
from mmalign.data.io import read_records
from mmalign.errors import DataError


def test_llava_rlhf_preference_picks_the_preferred_output(src, tmp_path):
    out = tmp_path / "llava.jsonl"
    report = import_file("llava-rlhf", src.llava_rlhf, out, image_prefix="coco/train2017/")
    one, two, three = read_records(out, check_images="none")
    # every published row has "hallucination" (llava-rlhf/LLaVA-RLHF issue #23): mapped to meta, never rejected
    assert (report.rows, report.records, dict(report.unmapped)) == (3, 3, {})
    assert [r.meta["hallucination"] for r in (one, two, three)] == [True, False, True]
    assert one.meta == {"preference": 1, "hallucination": True, "image_path": "000000000009.jpg"}
    assert one.id == "llava-rlhf-000000001" and one.images == ["coco/train2017/000000000009.jpg"]
    assert one.chosen_text == "There is broccoli, bread and a fork on the plate."  # preference 1
    assert one.prompt == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is on the plate?"}]}
    ]
    assert two.chosen_text == "It is eating leaves from a tree."  # preference 2
    # multi-turn: the history stays in the prompt; the <image> token placed the image after the text
    assert [m["role"] for m in two.prompt] == ["user", "assistant", "user"]
    assert two.prompt[0]["content"] == [{"type": "text", "text": "What animal is this?"}, {"type": "image"}]
    assert two.prompt[1]["content"][0]["text"] == "It is a giraffe."
    assert three.chosen_text == "There is one white vase with red roses on the table."


def test_llava_rlhf_conversations_wrapped_in_a_list_read_as_the_authors_loader_does(src, tmp_path, helpers):
    import json

    row = json.loads(src.llava_rlhf.read_text())[0]
    row["conversations"] = [row["conversations"]]  # data_utils_rm.py: "if isinstance(_s[-1], list): _s = _s[-1]"
    out = tmp_path / "o.jsonl"
    import_file("llava-rlhf", helpers.lines(tmp_path / "wrapped.jsonl", [row]), out)
    (record,) = read_records(out, check_images="none")
    assert record.chosen_text == "There is broccoli, bread and a fork on the plate."


def test_povid_pairs_conversations_with_rejected_conversations(src, tmp_path):
    out = tmp_path / "povid.jsonl"
    import_file("povid", src.povid, out)
    first, second = read_records(out, check_images="none")
    assert first.id == "povid-291476" and first.images == ["COCO_train2014_000000291476.jpg"]
    assert first.chosen_text.startswith("A man rides a bicycle") and "motorcycle" in first.rejected_text
    assert second.prompt[0]["content"] == [{"type": "text", "text": "What color is the cat?"}, {"type": "image"}]


def test_images_are_checked_and_copied_with_an_image_root(src, tmp_path, helpers):
    images = tmp_path / "coco"
    helpers.png(images, "COCO_train2014_000000291476.jpg")
    with pytest.raises(
        DataError, match=r"POVID_preference_data_for_VLLMs.json, record 1 \(id 'povid-17029'\), field 'images\[0\]'"
    ):
        import_file("povid", src.povid, tmp_path / "out" / "p.jsonl", image_root=images)
    helpers.png(images, "COCO_train2014_000000017029.jpg")
    report = import_file("povid", src.povid, tmp_path / "out" / "p.jsonl", image_root=images)
    assert report.out_root == tmp_path / "out"
    assert (tmp_path / "out" / "COCO_train2014_000000017029.jpg").is_file()
