"""An empty output is an error, never a success; a world's files validate without --root (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.cli.main import main
from mmalign.data.build import shards
from mmalign.data.build.registry import BuildInputs, make_builder
from mmalign.data.build.shards import run_build, shards_dir
from mmalign.data.io import default_root
from mmalign.errors import DataError
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_from_a_split_without_scenes_is_an_error_and_writes_nothing(tmp_path, capsys):
    world = tmp_path / "w"
    generate_world(world, WorldConfig(train_scenes=20, val_scenes=0, test_scenes=5, image_size=32))
    out = world / "pref" / "val.jsonl"
    code, text, err = run(["data", "build", str(out), "-s", "hallucinate", "--world", str(world), "--split", "val"],
                          capsys)  # fmt: skip
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


def test_files_inside_a_world_validate_without_root(world, tmp_path, capsys):
    pairs = world / "pref" / "issue14.jsonl"
    code, _, err = run(["data", "build", str(pairs), "-s", "hallucinate", "--world", str(world)], capsys)
    assert code == 0, err
    for path in (world / "train" / "sft.jsonl", pairs):
        assert default_root(path) == world.resolve()  # the nearest folder above with a world.json
        code, text, err = run(["data", "validate", str(path)], capsys)
        assert code == 0, err
        assert " 0 bad " in text
    loose = tmp_path / "loose" / "x.jsonl"
    loose.parent.mkdir()
    loose.write_text("")
    assert default_root(loose) == loose.parent.resolve()  # outside a world: the file's folder


def test_default_root_is_the_file_folder_when_no_world_is_above(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert default_root(tmp_path / "a" / "b" / "r.jsonl") == (tmp_path / "a" / "b").resolve()
