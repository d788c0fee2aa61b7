"""``corrupt-image``: same text, the rejected side sees a degraded image written as a file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmalign.corruption import degrade
from mmalign.data.io import read_records
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build


def test_world_captions_become_image_side_pairs(world, tmp_path, h):
    out = tmp_path / "ci.jsonl"
    builder = make_builder(
        "corrupt-image", {"variants": 2, "modes": ["blur", "noise"], "severity_min": 0.5, "severity_max": 0.5}
    )
    result = run_build(builder, BuildInputs(world=world), out, out_root=world, shard_size=100)
    rows = h.read_lines(out)
    captions = h.read_lines(world / "train" / "captions_clean.jsonl")
    assert result.units == len(captions) and len(rows) == 2 * len(captions)
    assert {r["id"] for r in rows} == {f"{c['id']}-{m}" for c in captions for m in ("blur", "noise")}
    records = {r.id: r for r in read_records(out, root=world, check_images="decode")}  # files exist and decode
    for row in rows[:20]:
        source = next(c for c in captions if c["id"] == row["meta"]["from_id"])
        chosen, rejected = h.texts(row)
        assert chosen == rejected == source["completion"][0]["content"][0]["text"]
        assert row["images"] == source["images"] and row["rejected_images"][0].startswith("images/corrupt-image/")
        mode = row["meta"]["mode"]
        assert row["meta"]["severity"] == 0.5
        # the file is the degradation of the real image with the recorded parameters
        real = Image.open(world / row["images"][0]).convert("RGB")
        degraded = np.asarray(Image.open(world / row["rejected_images"][0]))
        if mode == "blur":
            assert row["meta"]["params"] == {"sigma": 0.5 * 32 / 8}
            assert np.array_equal(degraded, np.asarray(degrade(real, "blur", 0.5, 0)[0]))
        else:
            assert row["meta"]["params"] == {"sigma": 64.0}
            assert np.abs(degraded.astype(float) - np.asarray(real, dtype=float)).mean() > 20
        assert records[row["id"]].rejected_images is not None


def test_preference_input_keeps_its_text_pair_and_spans(world, tmp_path, h):
    hal = tmp_path / "hal.jsonl"
    run_build(make_builder("hallucinate", {"kinds": ["swap"]}), BuildInputs(world=world), hal, out_root=world)
    out = tmp_path / "both.jsonl"
    run_build(
        make_builder("corrupt-image", {"modes": ["pixelate"]}), BuildInputs(input=hal, root=world), out, out_root=world
    )
    source = {r["id"]: r for r in h.read_lines(hal)}
    for row in h.read_lines(out):
        original = source[row["meta"]["from_id"]]
        assert (row["chosen"], row["rejected"]) == (original["chosen"], original["rejected"])
        assert (row["chosen_spans"], row["rejected_spans"]) == (original["chosen_spans"], original["rejected_spans"])
        assert row["meta"]["from_meta"] == original["meta"] and row["meta"]["mode"] == "pixelate"


def test_severity_range_is_respected_and_bad_options_fail(world, tmp_path, h):
    out = tmp_path / "sev.jsonl"
    builder = make_builder("corrupt-image", {"modes": ["mask"], "severity_min": 0.2, "severity_max": 0.6})
    run_build(builder, BuildInputs(world=world), out, out_root=world)
    severities = [r["meta"]["severity"] for r in h.read_lines(out)]
    assert min(severities) >= 0.2 and max(severities) <= 0.6 and len(set(severities)) > 10
    for options, message in (
        ({"modes": ["sepia"]}, "unknown value 'sepia'"),
        ({"severity_min": 0.9, "severity_max": 0.1}, "severity_min"),
        ({"variants": 3, "modes": ["blur", "noise"]}, "variants"),
    ):
        with pytest.raises(ConfigError, match=message):
            make_builder("corrupt-image", options)


def test_records_without_images_or_eval_items_are_refused(tmp_path, helpers):
    data = tmp_path / "d"
    helpers.png(data, "images/red.png")
    bad = helpers.lines(
        data / "eval.jsonl",
        [{"id": "e1", "task": "caption", "question": "Describe.", "answer": "x", "images": ["images/red.png"]}],
    )
    with pytest.raises(DataError, match=r"eval.jsonl, line 1 \(id 'e1'\): corrupt-image needs SFT or preference"):
        make_builder("corrupt-image").plan(BuildInputs(input=bad), 0)
    text_only = helpers.pref(0, images=[], prompt=[{"role": "user", "content": "Hi?"}])
    no_image = helpers.lines(data / "text.jsonl", [text_only])
    with pytest.raises(DataError, match=r"id 'p-0'.*field 'images': record has no image to corrupt"):
        make_builder("corrupt-image").plan(BuildInputs(input=no_image), 0)
    with pytest.raises(ConfigError, match="reads JSONL"):
        make_builder("corrupt-image").plan(BuildInputs(input=data / "x.parquet"), 0)
    (data / "x.jsonl").write_text(json.dumps(helpers.pref(1)) + "\n" + json.dumps(helpers.pref(1)) + "\n")
    with pytest.raises(DataError, match="duplicate record id 'p-1'"):
        make_builder("corrupt-image").plan(BuildInputs(input=data / "x.jsonl"), 0)


def test_output_outside_the_data_root_copies_input_images(world, tmp_path, h):
    out = tmp_path / "elsewhere" / "ci.jsonl"
    builder = make_builder("corrupt-image", {"modes": ["crop"]})
    result = run_build(builder, BuildInputs(world=world), out)
    assert result.out_root == out.parent
    row = h.read_lines(out)[0]
    assert (out.parent / row["images"][0]).read_bytes() == (world / row["images"][0]).read_bytes()
    assert (out.parent / row["rejected_images"][0]).is_file()
    assert Path(row["rejected_images"][0]).parent.as_posix() == "images/corrupt-image"
