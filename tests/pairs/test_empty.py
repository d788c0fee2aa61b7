"""An empty output is an error, never a success; a world's files validate without --root (issue 14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmalign.data.io import convert, default_root
from mmalign.errors import DataError
from mmalign.pairs import shards
from mmalign.pairs.filters import FilterConfig, filter_file
from mmalign.pairs.mix import mix, parse_source, split
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build, shards_dir
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world


def test_build_from_a_split_without_scenes_is_an_error_and_writes_nothing(tmp_path, cli_run):
    world = tmp_path / "w"
    generate_world(world, WorldConfig(train_scenes=20, val_scenes=0, test_scenes=5, image_size=32))
    out = world / "pref" / "val.jsonl"
    code, text, err = cli_run(["data", "build", str(out), "-s", "hallucinate", "--world", str(world), "--split", "val"])
    assert code == 2 and text == ""
    assert f"split 'val' of world {world} has no scenes" in err and "--val-scenes N" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not shards_dir(out).exists()


def test_a_build_that_makes_no_pairs_is_an_error_and_writes_nothing(world, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_run_units", lambda units, job, num_proc: [])  # every unit ruled out
    out = tmp_path / "none.jsonl"
    builder = make_builder("hallucinate", {})
    with pytest.raises(DataError, match=f"made no pairs from 240 scenes of world {world} .*{out} not written"):
        run_build(builder, BuildInputs(world=world, split="train"), out)
    assert not out.exists() and not shards_dir(out).exists()


def test_files_inside_a_world_validate_without_root(world, tmp_path, cli_run):
    pairs = world / "pref" / "issue14.jsonl"
    code, _, err = cli_run(["data", "build", str(pairs), "-s", "hallucinate", "--world", str(world)])
    assert code == 0, err
    for path in (world / "train" / "sft.jsonl", pairs):
        assert default_root(path) == world.resolve()  # the nearest folder above with a world.json
        code, text, err = cli_run(["data", "validate", str(path)])
        assert code == 0, err
        assert " 0 bad " in text
    loose = tmp_path / "loose" / "x.jsonl"
    loose.parent.mkdir()
    loose.write_text("")
    assert default_root(loose) == loose.parent.resolve()  # outside a world: the file's folder


def test_default_root_is_the_file_folder_when_no_world_is_above(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert default_root(tmp_path / "a" / "b" / "r.jsonl") == (tmp_path / "a" / "b").resolve()


def _pairs(data_dir: Path, helpers: Any, name: str, texts: list[tuple[str, str]]) -> Path:
    def say(text: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    rows = [helpers.pref(i, chosen=say(c), rejected=say(r)) for i, (c, r) in enumerate(texts)]
    return helpers.lines(data_dir / name, rows)


def test_filter_that_keeps_nothing_is_an_error_and_writes_nothing(data_dir, helpers, tmp_path):
    src = _pairs(data_dir, helpers, "same.jsonl", [("A red square.", "a red  square!")] * 2)
    out, dropped = data_dir / "clean.jsonl", tmp_path / "dropped.jsonl"
    with pytest.raises(DataError, match=r"no record kept of 2 read \(dropped: .*identical.*\): .* not written"):
        filter_file(src, out, FilterConfig(), dropped=dropped)
    assert not out.exists() and not dropped.exists()


def test_split_that_would_leave_a_split_empty_is_an_error_and_writes_nothing(data_dir, helpers, tmp_path):
    src = _pairs(data_dir, helpers, "one.jsonl", [("A red square.", "A blue star.")])
    message = r"split '(train|val)' would get none of the 1 records of .*: nothing written; change --ratio"
    with pytest.raises(DataError, match=message):
        split(src, tmp_path / "splits", {"train": 0.5, "val": 0.5})
    assert not (tmp_path / "splits").exists() or not any((tmp_path / "splits").iterdir())


def test_convert_and_mix_of_no_records_are_errors_and_write_nothing(data_dir, tmp_path):
    empty = data_dir / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=f"{empty} holds no records: .*not written"):
        convert(empty, tmp_path / "e.parquet")
    assert not (tmp_path / "e.parquet").exists()
    with pytest.raises(DataError, match="no records to mix"):
        mix([parse_source(str(empty))], tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_import_of_no_records_is_an_error_and_writes_nothing(tmp_path, cli_run):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out" / "pairs.jsonl"
    code, text, err = cli_run(["data", "import", "trl", str(empty), str(out)])
    assert code == 2 and text == ""
    assert f"{empty}: no record imported of 0 rows (skipped: none): {out} not written" in err
    assert not out.exists() and not [p for p in tmp_path.rglob("*") if p.is_file() and p != empty]
