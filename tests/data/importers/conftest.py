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


def rlhf_v_rows() -> list[dict[str, Any]]:
    """Rows as in ``RLHF-V-Dataset.parquet``: the pair is a JSON string in ``text``."""
    texts = [
        {"question": "Describe the image in detail.", "chosen": "A red bus stops at a corner with two people.",
         "rejected": "A red bus stops at a corner with three people and a dog."},
        {"question": "What is on the table?", "chosen": "A cup of coffee.", "rejected": "A cup of tea and a cake."},
    ]  # fmt: skip
    return [
        {"ds_name": "RLHF-V", "image": {"bytes": png(c), "path": f"coco/{i}.jpg"}, "text": json.dumps(t),
         "origin_dataset": "RLHF-V", "origin_split": json.dumps({"model": "muffin", "type": "detailed_description"}),
         "idx": 100 + i, "image_path": f"coco/{i}.jpg"}
        for i, (t, c) in enumerate(zip(texts, ["red", "brown"], strict=True))
    ]  # fmt: skip


RLHF_V_SCHEMA = pa.schema([("ds_name", pa.string()), ("image", IMAGE), ("text", pa.string()),
                           ("origin_dataset", pa.string()), ("origin_split", pa.string()), ("idx", pa.int64()),
                           ("image_path", pa.string())])  # fmt: skip
RLAIF_V_SCHEMA = pa.schema(
    [("ds_name", pa.string()), ("image", IMAGE), ("question", pa.string()), ("chosen", pa.string()),
     ("rejected", pa.string()), ("origin_dataset", pa.string()), ("origin_split", pa.string()),
     ("idx", pa.string()), ("image_path", pa.string())]
)  # fmt: skip


def rlaif_v_rows(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"ds_name": "RLAIF-V", "image": {"bytes": png((10 * i, 0, 0)), "path": None},
         "question": f"How many apples are there in picture {i}?", "chosen": f"There are {i % 3 + 1} apples.",
         "rejected": f"There are {i % 3 + 4} apples and a pear.", "origin_dataset": "VQAv2",
         "origin_split": json.dumps({"model": "OmniLMM", "feedback_model": "LLaVA-NeXT", "type": "question_answering"}),
         "idx": str(i), "image_path": f"vqav2/{i}.jpg"}
        for i in range(start, start + n)
    ]  # fmt: skip


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
