"""RLHF-V and RLAIF-V: parquet with embedded images; RLHF-V's corrections become diff spans."""

from __future__ import annotations

import json

from mmalign.data.importers import import_file
from mmalign.data.importers.rlhf_v import diff_spans
from mmalign.data.io import read_records


def test_diff_spans_mark_the_corrected_words():
    chosen = "A red bus stops at a corner with two people."
    rejected = "A red bus stops at a corner with three people and a dog."
    good, bad = diff_spans(chosen, rejected)
    # words compare whole ("people." is not "people"), so the changed run is "two people." → "three ... dog."
    assert [chosen[a:b] for a, b in good] == ["two people."]
    assert [rejected[a:b] for a, b in bad] == ["three people and a dog."]
    good, bad = diff_spans("a cat on a mat", "a dog on a red mat")
    assert good == [(2, 5)] and bad == [(2, 5), (11, 14)]  # "cat" → "dog", and "red" inserted
    assert diff_spans("same words", "same words") == ([], [])


def test_rlhf_v_parquet_to_jsonl_with_image_files(src, tmp_path):
    out = tmp_path / "out" / "rlhf-v.jsonl"
    report = import_file("rlhf-v", src.rlhf_v, out)
    assert (report.rows, report.records, dict(report.skipped)) == (2, 2, {})
    records = list(read_records(out, check_images="decode"))  # embedded images written next to the file
    first = records[0]
    assert first.id == "rlhf-v-100" and first.source == "rlhf-v"
    question = {"type": "text", "text": "Describe the image in detail."}
    assert first.prompt == [{"role": "user", "content": [{"type": "image"}, question]}]
    assert first.chosen_text == "A red bus stops at a corner with two people."
    assert [first.rejected_text[a:b] for a, b in first.rejected_spans] == ["three people and a dog."]
    assert first.meta["origin_split"] == {"model": "muffin", "type": "detailed_description"}  # JSON meta parsed
    assert "source_fields" not in first.meta  # every published field is mapped
    assert first.images[0].startswith("images/rlhf-v/") and first.images[0].endswith(".png")
    row = json.loads(out.read_text().splitlines()[1])
    assert row["id"] == "rlhf-v-101" and row["meta"]["image_path"] == "coco/1.jpg"


def test_a_reimport_gives_the_same_bytes_and_spans_can_be_off(src, tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    import_file("rlhf-v", src.rlhf_v, a)
    import_file("rlhf-v", src.rlhf_v, b)
    assert a.read_bytes() == b.read_bytes()
    import_file("rlhf-v", src.rlhf_v, c, options={"spans": False})
    assert all(r.chosen_spans is None for r in read_records(c))


def test_rlaif_v_reads_a_folder_of_parquet_shards(src, tmp_path):
    out = tmp_path / "rlaif.parquet"
    report = import_file("rlaif-v", src.rlaif_v, out)
    records = list(read_records(out))
    assert report.records == 5 and [r.id for r in records] == [f"rlaif-v-{i}" for i in range(5)]
    assert (
        records[4].chosen_text == "There are 2 apples." and records[4].rejected_text == "There are 5 apples and a pear."
    )
    assert records[0].meta["origin_split"]["feedback_model"] == "OmniLMM-12B"
    assert records[0].images[0].data.startswith(b"\x89PNG")  # the image travels embedded
