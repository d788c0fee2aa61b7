"""Binary-feedback records: parsed, checked (a bad label names file, line, record, field), read and written in every
format, counted by stats, and made from pairs by ``mmalign data unpair``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmalign.data.feedback import unpair, unpair_file
from mmalign.data.io import read_records, write_records
from mmalign.data.parse import record_from_dict
from mmalign.data.records import FeedbackRecord, ImageBlob, PreferenceRecord, assistant, user_prompt
from mmalign.data.validate import stats, validate
from mmalign.errors import DataError


def feedback_dict(i: int = 0, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"f-{i}",
        "images": ["images/red.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        "completion": [{"role": "assistant", "content": "A red square."}],  # TRL's string content
        "label": i % 2 == 0,
    }
    row.update(overrides)
    return row


def test_parse_trl_unpaired_row() -> None:
    record = record_from_dict(feedback_dict(0, source="thumbs", meta={"user": 3}))
    assert isinstance(record, FeedbackRecord) and record.kind == "feedback"
    assert record.label is True and record.completion_text == "A red square." and record.images == ["images/red.png"]
    assert record.to_dict() == {
        "id": "f-0",
        "images": ["images/red.png"],
        "prompt": feedback_dict()["prompt"],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": "A red square."}]}],
        "label": True,
        "source": "thumbs",
        "meta": {"user": 3},
    }
    assert record_from_dict(feedback_dict(1)).label is False


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"label": 1}, "label", "must be true (desirable) or false (undesirable), got int 1"),
        ({"label": "yes"}, "label", "got str 'yes'"),
        ({"label": None}, "label", "missing required field"),
        ({"completion": [{"role": "assistant", "content": " "}]}, "completion", "empty response"),
        ({"images": []}, "images", "1 image placeholder(s) but the record has 0"),
        ({"rating": 1}, "rating", "unknown field"),
    ],
)
def test_bad_feedback_records_name_the_field(change: dict[str, Any], field: str, message: str) -> None:
    row = {**feedback_dict(), **change}
    with pytest.raises(DataError) as err:
        record_from_dict(row, kind="feedback")
    assert err.value.field == field and err.value.record_id == "f-0" and message in str(err.value)


def test_bad_label_in_a_file_names_file_line_record_and_field(tmp_path: Path, data_dir: Path, helpers: Any) -> None:
    path = helpers.lines(data_dir / "fb.jsonl", [feedback_dict(0), feedback_dict(1, label="thumbs up")])
    with pytest.raises(DataError) as err:
        list(read_records(path))
    text = str(err.value)
    assert "fb.jsonl" in text and "line 2" in text and "f-1" in text and "label" in text
    report = validate(path)
    assert report.n_bad == 1 and report.kinds["feedback"] == 1


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ""])
def test_round_trip_every_format(suffix: str, tmp_path: Path, data_dir: Path) -> None:
    records = [record_from_dict(feedback_dict(i)) for i in range(3)]
    target = tmp_path / f"fb{suffix or '_ds'}"
    root = data_dir if suffix == ".jsonl" else None
    assert write_records(target, records, src_root=data_dir, root=root) == 3
    back = list(read_records(target, root=root, check_images="decode"))
    got = [r.to_dict() for r in back]
    for row in got:
        row["images"] = [i.path if isinstance(i, ImageBlob) else i for i in row["images"]]
    assert got == [r.to_dict() for r in records]
    assert [r.label for r in back] == [True, False, True]


def test_stats_counts_labels(data_dir: Path, helpers: Any) -> None:
    path = helpers.lines(data_dir / "fb.jsonl", [feedback_dict(i) for i in range(5)])
    summary = stats(path).to_dict()
    assert summary["kinds"] == {"feedback": 5} and summary["desirable"] == 3
    assert set(summary["lengths"]) == {"prompt", "completion"}


def test_unpair_makes_a_desirable_and_an_undesirable_half() -> None:
    pair = PreferenceRecord(
        "p", user_prompt("Q?"), assistant("yes"), assistant("no"), ["a.png"], ["b.png"], None, [(0, 2)], "src", {"m": 1}
    )
    good, bad = unpair(pair)
    assert (good.id, good.label, good.completion_text, good.images) == ("p-chosen", True, "yes", ["a.png"])
    # the rejected half keeps the pair's own rejected images (image-side pairs)
    assert (bad.id, bad.label, bad.completion_text, bad.images) == ("p-rejected", False, "no", ["b.png"])
    assert good.meta == bad.meta == {"m": 1, "pair": "p"} and good.source == "src" and pair.meta == {"m": 1}


def test_unpair_file_and_cli(tmp_path: Path, data_dir: Path, helpers: Any, cli_run: Any) -> None:
    src = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(i) for i in range(3)])
    out = data_dir / "fb.jsonl"
    assert unpair_file(src, out) == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows[:2]] == [("p-0-chosen", True), ("p-0-rejected", False)]
    assert rows[1]["completion"][0]["content"][0]["text"] == "A red square and a star."
    code, stdout, _ = cli_run(["data", "unpair", str(src), str(tmp_path / "fb.parquet")])
    assert code == 0 and "wrote 6 feedback records (3 desirable, 3 undesirable)" in stdout
    back = list(read_records(tmp_path / "fb.parquet"))
    assert [r.label for r in back] == [True, False] * 3 and all(isinstance(r.images[0], ImageBlob) for r in back)
    empty = helpers.lines(data_dir / "empty.jsonl", [])
    with pytest.raises(DataError, match="holds no preference pairs"):
        unpair_file(empty, tmp_path / "none.jsonl")
    assert not (tmp_path / "none.jsonl").exists()


def test_import_trl_unpaired_dataset(tmp_path: Path) -> None:
    # TRL's unpaired (KTO) layout, standard and conversational, with PIL images and no id column
    import datasets
    from PIL import Image

    from mmalign.data.importers import import_file

    image = Image.new("RGB", (8, 8), "green")
    rows = [
        {"images": [image], "prompt": "What colour?", "completion": "Green.", "label": True},
        {"images": [image], "prompt": "What colour?", "completion": "Red.", "label": False},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "kto"))
    report = import_file("trl-unpaired", tmp_path / "kto", tmp_path / "fb.jsonl")
    good, bad = read_records(tmp_path / "fb.jsonl", check_images="decode")
    assert report.records == 2 and isinstance(good, FeedbackRecord) and (good.label, bad.label) == (True, False)
    assert good.completion_text == "Green." and good.prompt[0]["content"][0] == {"type": "image"}
    assert good.id != bad.id and good.id.startswith("trl-unpaired-") and good.source == "trl-unpaired"
    bad_rows = [{"prompt": [{"role": "user", "content": "Q?"}], "completion": "A.", "label": "yes"}]
    datasets.Dataset.from_list(bad_rows).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match="label") as err:
        import_file("trl-unpaired", tmp_path / "bad", tmp_path / "bad.jsonl")
    assert err.value.field == "label" and not (tmp_path / "bad.jsonl").exists()
