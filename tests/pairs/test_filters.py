"""Dedup and filters: each rule drops exactly the records it should, counted by reason."""

from __future__ import annotations

import json

import pytest

from mmalign.data.io import read_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import ConfigError
from mmalign.pairs.filters import FilterConfig, drop_reason, filter_file, filter_records, normalise


def _pair(rid: str, chosen: str, rejected: str, image: str = "images/red.png", prompt: str = "Describe.") -> dict:
    return {
        "id": rid,
        "images": [image] if image else [],
        "prompt": [
            {"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]}
        ],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


@pytest.fixture
def messy(data_dir, helpers):
    helpers.png(data_dir, "images/red_copy.png", colour="red")  # same bytes as red.png, another path
    rows = [
        _pair("a", "A red square.", "A red square and a star."),
        _pair("dup-of-a", "A red square.", "A red square and a star."),
        _pair("other-image", "A red square.", "A red square and a star.", image="images/blue.png"),
        _pair("same-bytes", "A red square.", "A red square and a star.", image="images/red_copy.png"),
        _pair("other-prompt", "A red square.", "A red square and a star.", prompt="What is it?"),
        _pair("identical", "A red square.", "a red  square!"),
        _pair("empty", "...", "A red square."),
        _pair("long", "Yes.", "Yes, there is a red square, a blue star, a green circle and more."),
    ]
    return helpers.lines(data_dir / "messy.jsonl", rows)


def test_each_rule_drops_its_records(messy, data_dir, tmp_path):
    cfg = FilterConfig(max_length_ratio=4.0)
    report = filter_file(messy, data_dir / "clean.jsonl", cfg, dropped=tmp_path / "dropped.jsonl")
    kept = [r.id for r in read_records(data_dir / "clean.jsonl")]
    assert kept == ["a", "other-image", "same-bytes", "other-prompt"]
    assert report.to_dict() == {
        "read": 8,
        "kept": 4,
        "dropped": {"duplicate": 1, "identical": 1, "empty": 1, "length_ratio": 1},
    }
    dropped = [json.loads(line) for line in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert dropped == [
        {"id": "dup-of-a", "reason": "duplicate"},
        {"id": "identical", "reason": "identical"},
        {"id": "empty", "reason": "empty"},
        {"id": "long", "reason": "length_ratio"},
    ]


def test_content_dedup_sees_the_same_image_at_another_path(messy, data_dir):
    report = filter_file(messy, data_dir / "c.jsonl", FilterConfig(image_key="content"))
    assert report.dropped["duplicate"] == 2  # dup-of-a, and same-bytes (red_copy.png has red.png's bytes)


def test_length_ratio_counts_words():
    record = PreferenceRecord("x", user_prompt("Q?", 0), assistant("one two"), assistant("one two three four five six"))
    # 6 words against 2: a ratio of 3
    assert drop_reason(record, FilterConfig(max_length_ratio=3.0)) is None
    assert drop_reason(record, FilterConfig(max_length_ratio=2.9)) == "length_ratio"
    assert normalise("A  Red, square!") == "a red square"


def test_image_side_pairs_are_not_identical_and_bad_config_fails():
    record = PreferenceRecord(
        "x", user_prompt("Q?"), assistant("Same."), assistant("Same."), images=["a.png"], rejected_images=["b.png"]
    )
    assert next(iter(filter_records(iter([record]), FilterConfig())))[1] is None
    with pytest.raises(ConfigError, match="unknown image key"):
        FilterConfig(image_key="name")
    with pytest.raises(ConfigError, match="--max-length-ratio must be a finite number >= 1, got 0"):
        FilterConfig(max_length_ratio=0.5)
