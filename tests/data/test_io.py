"""Reading and writing records: round trips across JSONL, Parquet and datasets; atomic writes; streaming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmalign.data.io import convert, detect_format, read_records, write_jsonl, write_records
from mmalign.data.parse import record_from_dict
from mmalign.data.records import EvalItem, ImageBlob, PreferenceRecord, SFTRecord, assistant, user_prompt
from mmalign.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mixed_pairs() -> list[PreferenceRecord]:
    """Pairs with path images, in-memory images, image-side pairs, spans and nested meta."""
    red = Image.new("RGB", (6, 4), (200, 10, 10))
    noisy = Image.frombytes("RGB", (5, 5), bytes(range(75)))
    return [
        PreferenceRecord(
            id="a",
            prompt=user_prompt("What is there?"),
            chosen=assistant("A red square."),
            rejected=assistant("A red square and a star."),
            images=["images/red.png"],
            rejected_spans=[(13, 23)],
            source="hallucinate",
            meta={"seed": 1, "score": 0.125, "tags": ["x", "é"]},
        ),
        PreferenceRecord(
            id="b",
            prompt=user_prompt("Describe.", 2),
            chosen=assistant("Two squares."),
            rejected=assistant("Two circles."),
            images=[red, "images/blue.png"],
            chosen_spans=[(4, 11)],
            rejected_spans=[(4, 11)],
            source="edit",
        ),
        PreferenceRecord(
            id="c",
            prompt=user_prompt("Describe."),
            chosen=assistant("A blue square."),
            rejected=assistant("A blue square."),
            images=["images/blue.png"],
            rejected_images=[noisy],
            source="mdpo",
        ),
    ]


def _dicts(records: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in records]


def test_round_trip_jsonl_parquet_datasets_jsonl(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "pairs.jsonl"
    assert write_records(src, _mixed_pairs()) == 3
    first = _dicts(read_records(src, check_images="decode"))
    # in-memory images were saved as PNG files named by content, relative to the root
    assert first[1]["images"][0].startswith("images/") and first[1]["images"][0].endswith(".png")
    assert Image.open(data_dir / first[1]["images"][0]).size == (6, 4)
    assert first[0]["meta"] == {"seed": 1, "score": 0.125, "tags": ["x", "é"]}
    assert first[0]["rejected_spans"] == [[13, 23]]

    parquet, dataset, back = tmp_path / "p.parquet", tmp_path / "ds", tmp_path / "back" / "pairs.jsonl"
    assert convert(src, parquet) == 3
    assert convert(parquet, dataset) == 3
    assert convert(dataset, back) == 3
    assert detect_format(dataset) == "datasets"
    assert _dicts(read_records(back)) == first
    before, after = _files(data_dir / "images"), _files(back.parent / "images")
    assert after == before and len(after) == 4  # red, blue and two in-memory images: byte-identical, same paths
    # the original jsonl file itself comes back byte for byte
    assert back.read_bytes() == src.read_bytes()


def test_columnar_records_carry_image_bytes(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "pairs.jsonl"
    write_records(src, _mixed_pairs())
    convert(src, tmp_path / "p.parquet")
    records = list(read_records(tmp_path / "p.parquet", check_images="decode"))
    blob = records[0].images[0]
    assert isinstance(blob, ImageBlob)
    assert blob.path == "images/red.png"
    assert blob.data == (data_dir / "images/red.png").read_bytes()
    assert blob.open().size == (8, 8)
    assert "data" not in repr(blob)  # bytes are not dumped in reprs


def test_datasets_directory_has_image_feature_for_trl(tmp_path: Path, data_dir: Path) -> None:
    import datasets
    from trl.data_utils import is_conversational

    write_records(tmp_path / "ds", _mixed_pairs(), src_root=data_dir)
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert isinstance(loaded.features["images"], datasets.List)
    assert isinstance(loaded.features["images"].feature, datasets.Image)
    row = loaded[2]
    assert isinstance(row["images"][0], Image.Image) and row["images"][0].size == (8, 8)
    assert isinstance(row["rejected_images"][0], Image.Image) and row["rejected_images"][0].size == (5, 5)
    assert row["image_paths"] == ["images/blue.png"]
    assert is_conversational(row)
    assert json.loads(loaded[0]["meta"])["tags"] == ["x", "é"]


def test_parquet_reads_as_hf_dataset(tmp_path: Path, data_dir: Path) -> None:
    import datasets

    write_records(tmp_path / "p.parquet", _mixed_pairs(), src_root=data_dir)
    loaded = datasets.Dataset.from_parquet(str(tmp_path / "p.parquet"), cache_dir=str(tmp_path / "cache"))
    assert isinstance(loaded[1]["images"][0], Image.Image) and loaded[1]["images"][0].size == (6, 4)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ""])
def test_sft_and_eval_round_trip(suffix: str, tmp_path: Path, data_dir: Path) -> None:
    sft = [
        SFTRecord(
            id="s1",
            prompt=user_prompt("Describe."),
            completion=assistant("A red square."),
            images=["images/red.png"],
            source="captions",
            meta={"n": 1},
        ),
        SFTRecord(id="s2", prompt=user_prompt("Say hi.", 0), completion=assistant("Hi.")),
    ]
    evals = [
        EvalItem(
            id="e1",
            task="pope_random",
            question="Is there a star?",
            answer="no",
            images=["images/blue.png"],
            objects=["square"],
        ),
        EvalItem(id="e2", task="mc", question="Which colour?", answer="B", choices=["red", "blue"], objects=[]),
    ]
    for name, records in (("sft", sft), ("eval", evals)):
        target = tmp_path / f"{name}{suffix or '_ds'}"
        write_records(target, records, src_root=data_dir, root=data_dir if suffix == ".jsonl" else None)
        root = data_dir if suffix == ".jsonl" else None
        back = list(read_records(target, root=root, check_images="decode"))
        assert [type(r) for r in back] == [type(r) for r in records]
        got = _dicts(back)
        for row in got:  # columnar images come back as blobs; compare their paths
            row["images"] = [i.path if isinstance(i, ImageBlob) else i for i in row["images"]]
        assert got == _dicts(records)


def test_trl_style_dicts_and_string_content_parse() -> None:
    trl_row = {
        "id": 7,
        "images": ["a/b.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}],
        "chosen": [{"role": "assistant", "content": "A cat."}],
        "rejected": [{"role": "assistant", "content": "A dog."}],
    }
    record = record_from_dict(trl_row)
    assert isinstance(record, PreferenceRecord) and record.id == "7"
    assert record.chosen == [{"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]
    assert record_from_dict(record.to_dict()) == record
    blob = ImageBlob("x.png", b"\x89PNG")
    assert record_from_dict({**trl_row, "images": [blob]}).images == [blob]


def test_write_refuses_to_overwrite_a_different_image(tmp_path: Path, data_dir: Path) -> None:
    record = PreferenceRecord(
        id="x",
        prompt=user_prompt("Q?"),
        chosen=assistant("A."),
        rejected=assistant("B."),
        images=[ImageBlob("images/red.png", (data_dir / "images/blue.png").read_bytes())],
    )
    with pytest.raises(DataError, match=r"record 0 \(id 'x'\), field 'images\[0\]': refusing to overwrite"):
        write_records(data_dir / "out.jsonl", [record])
    assert not (data_dir / "out.jsonl").exists()


def test_mixed_kinds_in_a_columnar_file_fail(tmp_path: Path) -> None:
    pair = PreferenceRecord(id="p", prompt=user_prompt("Q?", 0), chosen=assistant("A."), rejected=assistant("B."))
    sft = SFTRecord(id="s", prompt=user_prompt("Q?", 0), completion=assistant("A."))
    with pytest.raises(DataError, match=r"record 1 \(id 's'\): a sft record in a preference file"):
        write_records(tmp_path / "x.parquet", [pair, sft])


def test_empty_columnar_file_round_trips(tmp_path: Path) -> None:
    assert write_records(tmp_path / "e.parquet", [], kind="sft") == 0
    assert list(read_records(tmp_path / "e.parquet")) == []
    assert write_records(tmp_path / "e_ds", []) == 0
    assert list(read_records(tmp_path / "e_ds")) == []


def test_unreadable_containers(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"x\.parquet: not a readable Parquet file"):
        read_records(tmp_path / "x.parquet")  # fails when opened, before the first record is asked for
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"folder: not a datasets directory"):
        read_records(tmp_path / "folder")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"unknown data format '\.csv'"):
        read_records(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        read_records(tmp_path / "nope.jsonl")


def test_dataset_dict_directory_asks_for_a_split(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"id": ["a"]})
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"DatasetDict \(splits: test, train\)"):
        list(read_records(tmp_path / "dd"))


# ------------------------------------------------------------------------------------------- streaming


def test_reading_is_lazy(tmp_path: Path, helpers: Any) -> None:
    """The first record comes out without reading the rest: a broken last line is not reached."""
    rows = [helpers.pref(i, images=[], prompt=user_prompt("Q?", 0)) for i in range(2000)] + ["{broken"]
    path = helpers.lines(tmp_path / "big.jsonl", rows)
    records = read_records(path)
    assert next(records).id == "p-0"
    assert next(records).id == "p-1"
    with pytest.raises(DataError, match="line 2001: not valid JSON"):
        list(records)


def test_parquet_reading_is_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    import mmalign.data.columnar as columnar

    records = (
        PreferenceRecord(id=str(i), prompt=user_prompt("Q?", 0), chosen=assistant("A."), rejected=assistant("B."))
        for i in range(1000)
    )
    write_records(tmp_path / "p.parquet", records)
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.num_row_groups == 4  # 256 rows per group
    batches: list[int] = []
    real = columnar.parquet_batches

    def counting(path: Path) -> Iterator[Any]:
        for batch in real(path):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(columnar, "parquet_batches", counting)
    it = read_records(tmp_path / "p.parquet")
    assert next(it).id == "0"
    assert batches == [256]  # one batch in memory, not the file


# ------------------------------------------------------------------------------------------- atomicity


def _pairs_then_crash(n: int) -> Iterator[PreferenceRecord]:
    for i in range(n):
        yield PreferenceRecord(
            id=str(i),
            prompt=user_prompt("Q?", 1),
            chosen=assistant("A."),
            rejected=assistant("B."),
            images=[Image.new("RGB", (4, 4), (i % 256, 0, 0))],
        )
    raise RuntimeError("simulated crash")


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_ds"])
def test_crash_mid_write_keeps_old_target_and_leaves_no_temp(name: str, tmp_path: Path) -> None:
    target = tmp_path / name
    old = [PreferenceRecord(id="old", prompt=user_prompt("Q?", 0), chosen=assistant("A."), rejected=assistant("B."))]
    write_records(target, old)
    listing = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_records(target, _pairs_then_crash(600))  # past two Arrow batches
    assert [r.id for r in read_records(target)] == ["old"]
    # no temp file or folder left; the images written before the crash are complete files
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "images") == listing
    for png in (tmp_path / "images").glob("*") if (tmp_path / "images").exists() else []:
        assert Image.open(png).size == (4, 4)


def test_crash_on_first_write_leaves_no_target(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        write_jsonl(tmp_path / "x.jsonl", ({"i": i} if i < 5 else 1 / 0 for i in range(10)))  # type: ignore[misc]
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_leaves_no_half_target(tmp_path: Path) -> None:
    """SIGKILL in the middle of a write: the target name never holds a partial file."""
    marker, target = tmp_path / "started", tmp_path / "out.jsonl"
    script = f"""
import time
from pathlib import Path
from mmalign.data.io import write_jsonl
def rows():
    for i in range(100000):
        if i == 1000:
            Path({str(marker)!r}).touch()
            time.sleep(60)
        yield {{"i": i}}
write_jsonl({str(target)!r}, rows())
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists()
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.")]
    # What a kill leaves is a hidden temporary name, never the target.
    assert all(p.name.endswith(".tmp") for p in temps)


def test_jsonl_to_jsonl_with_another_root_copies_images(tmp_path: Path, data_dir: Path, helpers: Any) -> None:
    src = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0), helpers.pref(1, images=["images/blue.png"])])
    out_root = tmp_path / "elsewhere"
    assert convert(src, tmp_path / "copy.jsonl", out_root=out_root) == 2
    assert _files(out_root) == {
        "images/red.png": (data_dir / "images/red.png").read_bytes(),
        "images/blue.png": (data_dir / "images/blue.png").read_bytes(),
    }
    assert [r.images for r in read_records(tmp_path / "copy.jsonl", root=out_root, check_images="decode")] == [
        ["images/red.png"],
        ["images/blue.png"],
    ]


def test_a_failed_write_leaves_no_folder_it_made(tmp_path: Path) -> None:
    def records() -> Iterator[PreferenceRecord]:
        image = Image.new("RGB", (8, 8), (200, 40, 40))  # an in-memory image: saved under the new folder first
        yield PreferenceRecord("p0", user_prompt("Q?", 1), assistant("A."), assistant("B."), [image])
        raise DataError("the source broke after the first record")

    out = tmp_path / "new" / "deeper" / "pairs.jsonl"
    with pytest.raises(DataError, match="source broke"):
        write_records(out, records())
    assert not (tmp_path / "new").exists()  # no JSONL, no images/, no staging folder, no folder it made
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(DataError, match="source broke"):
        write_records(kept / "pairs.jsonl", records())
    assert kept.is_dir() and not any(kept.iterdir())  # a folder that was there stays, empty as it was
