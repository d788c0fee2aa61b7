"""Published rows, copied verbatim (fixtures/real/, sources in fixtures/SOURCES.md § Verbatim rows), through the
importers: the mapped question, chosen and rejected texts must equal the source's, character for character.

Only the columns a source printed are in a fixture; the images are tiny generated PNGs (no source printed the
bytes). Formats with no verbatim row found (LLaVA-RLHF, POVID, VLFeedback, TRL) are listed in SOURCES.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mmalign.data.importers import import_file
from mmalign.data.io import read_records

from .conftest import FIXTURES, IMAGE, RLAIF_V_SCHEMA, RLHF_V_SCHEMA, png, write_parquet

REAL = FIXTURES / "real"


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (REAL / name).read_text(encoding="utf-8").splitlines() if line]


def with_images(source: list[dict[str, Any]], published: pa.Schema) -> tuple[list[dict[str, Any]], pa.Schema]:
    """The rows with a stand-in PNG in ``image``, and the published schema cut to the columns they have."""
    out = [{**row, "image": {"bytes": png((40 * i, 40 * i, 40 * i)), "path": None}} for i, row in enumerate(source)]
    schema = pa.schema([f for f in published if f.name in out[0]])
    assert schema.field("image").type == IMAGE and len(schema) == len(out[0])  # every fixture column is published
    return out, schema


def question_of(record: Any) -> str:
    (turn,) = record.prompt
    assert turn["role"] == "user" and turn["content"][0] == {"type": "image"}
    return turn["content"][1]["text"]


def test_rlaif_v_published_rows_import_verbatim(tmp_path: Path, cli_run: Any) -> None:
    source = rows("rlaif_v.jsonl")
    shard, schema = with_images(source, RLAIF_V_SCHEMA)
    folder = tmp_path / "RLAIF-V-Dataset"
    write_parquet(folder / "RLAIF-V-Dataset_000.parquet", shard, schema)
    out = tmp_path / "rlaif-v.jsonl"
    code, stdout, _ = cli_run(["data", "import", "rlaif-v", str(folder), str(out)])
    assert code == 0, stdout
    records = list(read_records(out, check_images="decode"))
    assert len(records) == len(source) == 3
    for record, row in zip(records, source, strict=True):
        assert question_of(record) == row["question"]  # as published, e.g. the lower-case "how many families?"
        assert (record.chosen_text, record.rejected_text) == (row["chosen"], row["rejected"])
        assert record.source == "rlaif-v" and record.images[0].startswith("images/rlaif-v/")
        assert record.meta == {}  # none of ds_name, origin_*, idx, image_path was printed by the sources
    # no idx printed: ids come from the content, distinct and the same on a second import
    assert len({r.id for r in records}) == 3
    again = tmp_path / "again.jsonl"
    import_file("rlaif-v", folder, again)
    assert [r.id for r in read_records(again, check_images="none")] == [r.id for r in records]
    # row 2: chosen and rejected open with the same sentence and differ after it; both are kept whole
    shared = "The person in the yellow jacket is wearing a fedora. "
    assert records[1].chosen_text.startswith(shared) and records[1].rejected_text.startswith(shared)


def test_rlhf_v_published_row_imports_verbatim_with_the_correction_as_spans(tmp_path: Path) -> None:
    (row,) = rows("rlhf_v.jsonl")
    table, schema = with_images([row], RLHF_V_SCHEMA)
    path = write_parquet(tmp_path / "RLHF-V-Dataset.parquet", table, schema)
    out = tmp_path / "rlhf-v.jsonl"
    report = import_file("rlhf-v", path, out)
    assert (report.rows, report.records, dict(report.skipped), dict(report.unmapped)) == (1, 1, {}, {})
    (record,) = read_records(out, check_images="decode")
    text = json.loads(row["text"])
    assert record.id == "rlhf-v-0"  # idx 0
    assert question_of(record) == "What are the key features you observe in the image?" == text["question"]
    assert record.chosen_text == "A young man standing on stage wearing a white shirt and black pants."
    assert record.rejected_text == "A young man standing on stage wearing white pants and shoes."
    assert record.meta == {
        "origin_dataset": "LCS-558K",
        "origin_split": {"model": "InstructBLIP-Flan-T5-xxl", "type": "detailed_description"},  # JSON parsed
        "idx": 0,
        "image_path": "llava1.5_raw_images/00013/000139279.jpg",
    }
    # The annotator's correction, as a word diff. Words after the shared "A young man standing on stage wearing":
    #   chosen   a white shirt and black pants.
    #   rejected   white pants and shoes.
    # difflib keeps "white" and "and": "a" is deleted, "shirt" -> "pants", "black pants." -> "shoes."
    chosen, rejected = record.chosen_text, record.rejected_text
    assert [chosen[a:b] for a, b in record.chosen_spans] == ["a", "shirt", "black pants."]
    assert [rejected[a:b] for a, b in record.rejected_spans] == ["pants", "shoes."]


def test_the_rlaif_v_texts_in_trls_layout_come_back_verbatim(tmp_path: Path) -> None:
    """No published TRL row was found (SOURCES.md). trl-lib/rlaif-v is openbmb/RLAIF-V-Dataset put through trl's
    examples/datasets/rlaif-v.py (``to_conversational``, images cast to ``Sequence(Image)``); the same conversion of
    the verbatim RLAIF-V rows gives the TRL importer published texts in the layout that script writes."""
    import datasets
    from PIL import Image

    def to_conversational(row: dict[str, Any]) -> dict[str, Any]:
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["question"]}]}]
        chosen = [{"role": "assistant", "content": [{"type": "text", "text": row["chosen"]}]}]
        rejected = [{"role": "assistant", "content": [{"type": "text", "text": row["rejected"]}]}]
        return {"prompt": prompt, "images": [Image.new("L", (8, 8), 128)], "chosen": chosen, "rejected": rejected}

    source = rows("rlaif_v.jsonl")
    dataset = datasets.Dataset.from_list([to_conversational(row) for row in source])
    dataset.cast_column("images", datasets.Sequence(datasets.Image(decode=True))).save_to_disk(str(tmp_path / "trl"))
    out = tmp_path / "trl.jsonl"
    assert import_file("trl", tmp_path / "trl", out).records == 3
    for record, row in zip(read_records(out, check_images="decode"), source, strict=True):
        assert question_of(record) == row["question"]
        assert (record.chosen_text, record.rejected_text) == (row["chosen"], row["rejected"])


@pytest.mark.parametrize("name", ["rlaif_v.jsonl", "rlhf_v.jsonl"])
def test_the_real_fixtures_hold_only_published_columns(name: str) -> None:
    published = {"rlaif_v.jsonl": RLAIF_V_SCHEMA, "rlhf_v.jsonl": RLHF_V_SCHEMA}[name].names
    for row in rows(name):
        assert set(row) <= set(published) and "image" not in row  # images are generated in the tests
