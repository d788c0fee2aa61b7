"""TRL-format datasets saved locally: conversational, standard and implicit-prompt layouts."""

from __future__ import annotations

import datasets
import pytest

from mmalign.data.importers import import_file
from mmalign.data.io import read_records, write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt


def test_conversational_dataset_with_pil_images(tmp_path, helpers):
    from PIL import Image

    image = Image.new("RGB", (8, 8), "green")
    rows = {
        "images": [[image], [image]],
        "prompt": [
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}],
            [{"role": "user", "content": [{"type": "text", "text": "Shape?"}]}],
        ],
        "chosen": [
            [{"role": "assistant", "content": [{"type": "text", "text": "Green."}]}],
            [{"role": "assistant", "content": [{"type": "text", "text": "A square."}]}],
        ],
        "rejected": [
            [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}],
            [{"role": "assistant", "content": [{"type": "text", "text": "A circle."}]}],
        ],
    }
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "prompt": datasets.List(
                {
                    "role": datasets.Value("string"),
                    "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
                }
            ),
            "chosen": datasets.List(
                {
                    "role": datasets.Value("string"),
                    "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
                }
            ),
            "rejected": datasets.List(
                {
                    "role": datasets.Value("string"),
                    "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
                }
            ),
        }
    )
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "trl"))
    out = tmp_path / "trl.jsonl"
    report = import_file("trl", tmp_path / "trl", out)
    first, second = read_records(out, check_images="decode")
    assert report.records == 2 and first.chosen_text == "Green." and first.images[0].startswith("images/trl/")
    # the second prompt had no placeholder: the image goes first in the first user turn, as TRL does
    assert second.prompt[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Shape?"}]
    assert first.id.startswith("trl-") and first.id != second.id


def test_standard_and_implicit_prompt_layouts(tmp_path, helpers):
    standard = [{"prompt": "<image>\nWhat is it?", "chosen": "A cat.", "rejected": "A dog.", "image": "img/a.png"}]
    hi = {"role": "user", "content": "Hi?"}
    implicit = [
        {
            "chosen": [hi, {"role": "assistant", "content": "Hello."}],
            "rejected": [hi, {"role": "assistant", "content": "Go away."}],
        }
    ]
    out = tmp_path / "o.jsonl"
    import_file("trl", helpers.lines(tmp_path / "standard.jsonl", standard), out)
    (record,) = read_records(out, check_images="none")
    assert record.prompt[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it?"}]
    assert record.images == ["img/a.png"] and (record.chosen_text, record.rejected_text) == ("A cat.", "A dog.")
    import_file("trl", helpers.lines(tmp_path / "implicit.jsonl", implicit), out)
    (record,) = read_records(out, check_images="none")
    assert record.prompt == [{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}]
    assert record.rejected_text == "Go away."


def test_an_mmalign_parquet_reads_back_losslessly(data_dir, tmp_path):
    record = PreferenceRecord(
        "p-1",
        user_prompt("Describe."),
        assistant("A red square."),
        assistant("A red square and a star."),
        images=["images/red.png"],
        rejected_spans=[(13, 24)],
        source="hallucinate",
        meta={"k": 1},
    )
    write_records(tmp_path / "own.parquet", [record], src_root=data_dir)
    out = tmp_path / "back.jsonl"
    import_file("trl", tmp_path / "own.parquet", out)
    (back,) = read_records(out)
    assert back.to_dict() == record.to_dict()
    assert (tmp_path / "images/red.png").read_bytes() == (data_dir / "images/red.png").read_bytes()


@pytest.mark.parametrize(
    "row, field",
    [
        ({"prompt": "Q?", "chosen": "A.", "rejected": "B.", "images": ["a.png"], "image": "b.png"}, "image"),
        ({"chosen": "A.", "rejected": "B."}, "prompt"),
        ({"prompt": "Q?", "chosen": [{"role": "user", "content": "A."}], "rejected": "B."}, "chosen"),
    ],
)
def test_inconsistent_rows_name_the_field(tmp_path, helpers, row, field):
    from mmalign.errors import DataError

    with pytest.raises(DataError, match=f"bad.jsonl, line 1, field '{field}'"):
        import_file("trl", helpers.lines(tmp_path / "bad.jsonl", [row]), tmp_path / "o.jsonl")
