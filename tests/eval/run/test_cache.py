"""The resume cache (keyed on model files, settings and item content) and the item limit."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmalign.data.records import EvalItem
from mmalign.errors import DataError
from mmalign.eval.run.cache import ItemKeys, PredictionCache, model_fingerprint, settings_hash
from mmalign.eval.run.evaluation import _limit


def test_a_line_cut_by_a_crash_is_dropped_and_appends_start_clean(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = PredictionCache(path)
    cache.add([{"id": "a", "key": "k1", "text": "Yes"}, {"id": "b", "key": "k2", "text": "No"}])
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "key": "k3", "te')  # killed mid-write
    reopened = PredictionCache(path)
    assert set(reopened.rows) == {"a", "b"}
    assert reopened.get("a", "k1")["text"] == "Yes" and reopened.get("a", "other") is None
    reopened.add([{"id": "c", "key": "k3", "text": "Yes"}])
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]


def test_a_corrupt_line_inside_the_cache_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "key": "k"}\nnot json\n{"id": "b", "key": "k"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl, line 2: the resume cache is corrupt"):
        PredictionCache(path)


def test_keys_follow_content(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 10)
    first = model_fingerprint(model)
    (model / ".cache").write_text("ignored")
    assert model_fingerprint(model) == first
    (model / "model.safetensors").write_bytes(b"\0" * 9 + b"\1")
    assert model_fingerprint(model) != first
    assert settings_hash({"a": 1, "b": 2}) == settings_hash({"b": 2, "a": 1}) != settings_hash({"a": 2, "b": 2})

    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "x.png")
    item = EvalItem("q", "pope", "Is there a dog?", "yes", ["x.png"])
    key = ItemKeys(tmp_path).key(item)
    assert ItemKeys(tmp_path).key(EvalItem("other-id", "pope", "Is there a dog?", "no", ["x.png"])) == key
    assert ItemKeys(tmp_path).key(EvalItem("q", "pope", "Is there a cat?", "yes", ["x.png"])) != key
    Image.new("RGB", (4, 4), (1, 2, 4)).save(tmp_path / "x.png")  # same path, other pixels
    assert ItemKeys(tmp_path).key(item) != key


def test_limit_never_cuts_a_group():
    items = [EvalItem(f"i{k}", "mme", "Q", "yes", meta={"group": f"g{k // 2}"}) for k in range(6)]
    assert [i.id for i in _limit(items, 3)] == ["i0", "i1", "i2", "i3"]
    assert [i.id for i in _limit(items, 4)] == ["i0", "i1", "i2", "i3"]
    assert _limit(items, None) == items and _limit(items, 10) == items
    loose = [EvalItem(f"i{k}", "mc", "Q", "A") for k in range(5)]
    assert len(_limit(loose, 2)) == 2
