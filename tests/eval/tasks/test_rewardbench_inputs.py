"""The reward-model benchmarks' input files read into preference pairs (``--source``): each official layout, the
better answer picked by the benchmark's own label, and bad rows named by file, line and field."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mmalign.data.records import ImageBlob
from mmalign.errors import DataError
from mmalign.eval.tasks.rewardbench import rewardbench_input

INPUTS = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench" / "inputs"


def _texts(pair) -> tuple[str, str, str]:
    question = pair.prompt[0]["content"][-1]["text"]
    return question, pair.chosen_text, pair.rejected_text


def test_vl_rewardbench_jsonl_and_the_hugging_face_parquet_give_the_same_pairs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = INPUTS / "vl_rewardbench_data.jsonl"
    pairs = rewardbench_input("vl_rewardbench", path, None).items
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    # human_ranking [1, 0]: the second answer is the better one
    assert _texts(pairs[0]) == (rows[0]["query"], rows[0]["response"][1], rows[0]["response"][0])
    assert _texts(pairs[1])[1:] == (rows[1]["response"][0], rows[1]["response"][1])
    assert _texts(pairs[2])[0] == "what was he getting used to in the top right box?"  # the <image> tag dropped
    assert pairs[0].images == ["images/vlfeedback/LRVInstruction-000000007746.jpg"]
    assert pairs[0].meta["row"]["ranking"] == [1, 0] and pairs[0].meta["row"]["meta"] == rows[0]["meta"]

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    table = pa.Table.from_pylist(
        [
            {
                **{k: v for k, v in row.items() if k not in ("image_path", "meta")},
                "image": {"bytes": png.getvalue(), "path": None},
            }
            for row in rows
        ]
    )
    pq.write_table(table, tmp_path / "test-00000-of-00001.parquet")
    hf = rewardbench_input("vl_rewardbench", tmp_path / "test-00000-of-00001.parquet", None).items
    assert [_texts(p) for p in hf] == [_texts(p) for p in pairs]
    assert isinstance(hf[0].images[0], ImageBlob) and hf[0].images[0].data == png.getvalue()
    assert "image" not in hf[0].meta["row"] and "image_path" not in hf[0].meta["row"]


def test_multimodal_rewardbench_picks_the_better_output_and_mm_rlhf_skips_videos():
    pairs = rewardbench_input("multimodal_rewardbench", INPUTS / "multimodal_rewardbench_all_data.json", None).items
    examples = json.loads((INPUTS / "multimodal_rewardbench_all_data.json").read_text())
    for pair, ex in zip(pairs, examples, strict=True):
        other = "Output2" if ex["Better"] == "Output1" else "Output1"
        assert _texts(pair) == (ex["Text"], ex[ex["Better"]], ex[other]) and pair.images == [ex["Image"]]
    inp = rewardbench_input("mm_rlhf_rewardbench", INPUTS / "mm_rlhf_rewardbench_data.jsonl", None)
    assert [p.id for p in inp.items] == ["mcq_0001", "mcq_0001#2", "long_0002", "short_0003"]
    assert [p.meta["group"] for p in inp.items] == ["mcq_0001", "mcq_0001", "long_0002", "short_0003"]
    assert inp.skipped == {"video": 1} and inp.image_root == INPUTS


@pytest.mark.parametrize(
    ("task", "content", "message"),
    [
        ("vl_rewardbench", {"human_ranking": [0, 0]}, "human_ranking"),
        ("vl_rewardbench", {"human_ranking": ["0", "1"]}, "human_ranking"),
        ("vl_rewardbench", {"response": ["only one"]}, "response"),
        ("mm_rlhf_rewardbench", {"chosen": 3}, "chosen"),
    ],
)
def test_a_bad_row_is_named_by_file_line_and_field(tmp_path, task, content, message):
    name = "vl_rewardbench_data.jsonl" if task == "vl_rewardbench" else "mm_rlhf_rewardbench_data.jsonl"
    lines = (INPUTS / name).read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), **content})
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        rewardbench_input(task, tmp_path / name, None)
    assert caught.value.line == 2 and caught.value.field == message and str(tmp_path / name) in str(caught.value)


def test_a_multimodal_rewardbench_example_without_a_valid_better_label_is_refused(tmp_path):
    examples = json.loads((INPUTS / "multimodal_rewardbench_all_data.json").read_text())
    examples[2]["Better"] = "Output3"
    (tmp_path / "all_data.json").write_text(json.dumps(examples))
    with pytest.raises(DataError, match="Output3") as caught:
        rewardbench_input("multimodal_rewardbench", tmp_path / "all_data.json", None)
    assert caught.value.field == "Better" and caught.value.record_id == "mathvista_12"
