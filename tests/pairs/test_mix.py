"""Mixing files by counts and weights, and splitting without leaking an image across splits."""

from __future__ import annotations

import pytest

from mmalign.data.io import read_records
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.mix import MixSource, assign_splits, mix, parse_ratios, parse_source, split


@pytest.fixture
def two_files(data_dir, helpers):
    a = [helpers.pref(i, id=f"a{i}") for i in range(10)]
    b = [helpers.pref(i, id=f"b{i}", images=["images/blue.png"]) for i in range(30)]
    return helpers.lines(data_dir / "a.jsonl", a), helpers.lines(data_dir / "b.jsonl", b)


def test_parse_source_specs(tmp_path):
    assert parse_source("x.jsonl") == MixSource(tmp_path.__class__("x.jsonl"))
    assert parse_source("d/x.jsonl:n=5").count == 5
    source = parse_source("x.jsonl:w=0.25,root=/data")
    assert source.weight == 0.25 and str(source.root) == "/data"
    for bad in ("x.jsonl:n=5,w=1", "x.jsonl:q=1", "x.jsonl:n=many"):
        with pytest.raises(ConfigError, match="source"):
            parse_source(bad)


def test_weights_share_the_total_by_largest_remainder(two_files, data_dir):
    a, b = two_files
    out = data_dir / "mix.jsonl"
    taken = mix([parse_source(f"{a}:w=1"), parse_source(f"{b}:w=2")], out, total=10, seed=1)
    # 10 * 1/3 = 3.33 and 10 * 2/3 = 6.67: floors 3 + 6, the larger remainder (b's .67) gets the last one
    assert list(taken.values()) == [3, 7]
    ids = [r.id for r in read_records(out)]
    assert len(ids) == 10 and sum(i.startswith("a") for i in ids) == 3
    again = data_dir / "mix2.jsonl"
    mix([parse_source(f"{a}:w=1"), parse_source(f"{b}:w=2")], again, total=10, seed=1)
    assert again.read_bytes() == out.read_bytes()
    mix([parse_source(f"{a}:w=1"), parse_source(f"{b}:w=2")], again, total=10, seed=2)
    assert again.read_bytes() != out.read_bytes()


def test_counts_all_records_and_id_clashes(two_files, data_dir):
    a, b = two_files
    taken = mix([parse_source(f"{a}:n=4"), parse_source(str(b))], data_dir / "m.jsonl", shuffle=False)
    assert taken == {str(a): 4, str(b): 30}
    with pytest.raises(ConfigError, match="asked for 11 records but it has 10"):
        mix([parse_source(f"{a}:n=11")], data_dir / "m.jsonl")
    with pytest.raises(ConfigError, match="need --total"):
        mix([parse_source(f"{a}:w=1")], data_dir / "m.jsonl")
    with pytest.raises(DataError, match="id 'a0' is in both"):
        mix([parse_source(str(a)), parse_source(str(a))], data_dir / "m.jsonl")
    mix([parse_source(str(a)), parse_source(str(a))], data_dir / "m.jsonl", prefix_ids=True)


def test_split_keeps_images_together_and_follows_ratios(data_dir, helpers):
    for k in range(20):
        helpers.png(data_dir, f"images/{k}.png", colour=(k, 0, 0))
    rows = [helpers.pref(i, images=[f"images/{i % 20}.png"]) for i in range(100)]  # 5 records per image
    src = helpers.lines(data_dir / "all.jsonl", rows)
    counts = split(src, data_dir / "splits", parse_ratios(["train=0.8", "val=0.1", "test=0.1"]), seed=4)
    assert counts == {"train": 80, "val": 10, "test": 10}  # 20 groups of 5: exact at these ratios
    images = {
        name: {r.images[0] for r in read_records(data_dir / "splits" / f"{name}.jsonl", root=data_dir)}
        for name in counts
    }
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    records = list(read_records(src))
    assert assign_splits(records, {"a": 0.5, "b": 0.5}, "image", 1) != assign_splits(
        records, {"a": 0.5, "b": 0.5}, "image", 2
    )
    by_id = assign_splits(records, {"a": 0.5, "b": 0.5}, "id", 1)
    assert by_id.count("a") == 50


def test_bad_ratios_fail():
    for bad in (["train=0.5"], ["train=0.5", "train=0.5"], ["train"], ["=1"]):
        with pytest.raises(ConfigError):
            parse_ratios(bad)
