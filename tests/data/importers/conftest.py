"""Sources in their authors' published layouts: JSON fixtures on disk, Parquet written here with the
Hub's schemas (images as ``{"bytes", "path"}`` structs), a TRL dataset saved with ``save_to_disk``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(colour: Any, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line]


def rlhf_v_rows() -> list[dict[str, Any]]:
    """Rows as in ``RLHF-V-Dataset.parquet`` (fixtures/rlhf_v.jsonl), each with a tiny embedded PNG."""
    rows = _jsonl("rlhf_v.jsonl")
    for row, colour in zip(rows, ["red", "brown"], strict=True):
        row["image"] = {"bytes": png(colour), "path": row["image_path"]}
    return rows


RLHF_V_SCHEMA = pa.schema(
    [
        ("ds_name", pa.string()),
        ("image", IMAGE),
        ("text", pa.string()),
        ("origin_dataset", pa.string()),
        ("origin_split", pa.string()),
        ("idx", pa.int64()),
        ("image_path", pa.string()),
    ]
)
RLAIF_V_SCHEMA = pa.schema(
    [
        ("ds_name", pa.string()),
        ("image", IMAGE),
        ("question", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("origin_dataset", pa.string()),
        ("origin_split", pa.string()),
        ("idx", pa.string()),
        ("image_path", pa.string()),
    ]
)


def rlaif_v_rows(start: int, n: int) -> list[dict[str, Any]]:
    """Rows as in ``RLAIF-V-Dataset_*.parquet`` (fixtures/rlaif_v.jsonl), each with a tiny embedded PNG."""
    rows = _jsonl("rlaif_v.jsonl")[start : start + n]
    for row in rows:
        row["image"] = {"bytes": png((10 * int(row["idx"]), 0, 0)), "path": None}
    return rows


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@pytest.fixture
def src(tmp_path: Path) -> SimpleNamespace:
    """Paths of one source per format (written fresh for each test)."""
    rlaif = tmp_path / "RLAIF-V-Dataset"
    write_parquet(rlaif / "RLAIF-V-Dataset_000.parquet", rlaif_v_rows(0, 3), RLAIF_V_SCHEMA)
    write_parquet(rlaif / "RLAIF-V-Dataset_001.parquet", rlaif_v_rows(3, 2), RLAIF_V_SCHEMA)
    return SimpleNamespace(
        rlhf_v=write_parquet(tmp_path / "RLHF-V-Dataset.parquet", rlhf_v_rows(), RLHF_V_SCHEMA),
        rlaif_v=rlaif,
        llava_rlhf=FIXTURES / "llava_7b_v1_preference.json",
        povid=FIXTURES / "POVID_preference_data_for_VLLMs.json",
        vlfeedback=FIXTURES / "vlfeedback.jsonl",
        root=tmp_path,
    )
