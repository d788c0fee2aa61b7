"""Bad input to an importer: a DataError naming the file, the record and the field; one line from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmalign.cli.main import main
from mmalign.data.importers import import_file
from mmalign.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"


def _json(tmp_path: Path, name: str, rows: list) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def _llava(**changes) -> dict:
    row = json.loads((FIXTURES / "llava_7b_v1_preference.json").read_text())[0]
    row.update(changes)
    return row


def _povid(**changes) -> dict:
    row = json.loads((FIXTURES / "POVID_preference_data_for_VLLMs.json").read_text())[0]
    row.update(changes)
    return row


BAD_JSON = {
    "preference-3": ("llava-rlhf", _llava(preference=3), "preference", "must be 1 or 2"),
    "preference-str": ("llava-rlhf", _llava(preference="1"), "preference", "must be 1 or 2"),
    "hallucination-not-bool": (
        "llava-rlhf",
        _llava(hallucination=1),
        "hallucination",
        "must be true or false, got 1 (an optional field: --ignore-field hallucination imports the rows without it)",
    ),
    "missing-output": ("llava-rlhf", {k: v for k, v in _llava().items() if k != "output_2"}, "output_2", "missing"),
    "output-not-object": ("llava-rlhf", _llava(output_1="text"), "output_1", "must be {'from'"),
    "turns-out-of-order": (
        "llava-rlhf",
        _llava(conversations=[{"from": "gpt", "value": "x"}, {"from": "gpt", "value": "y"}]),
        "conversations[0].from",
        "turns must alternate",
    ),
    "two-image-tokens": (
        "povid",
        _povid(conversations=[{"from": "human", "value": "<image><image> Hi"}, {"from": "gpt", "value": "A."}]),
        "conversations",
        "2 <image> token(s) but the row has 1 image(s)",
    ),
    "prompts-differ": (
        "povid",
        _povid(rejected_conversations=[{"from": "human", "value": "<image>\nOther?"}, {"from": "gpt", "value": "B."}]),
        "rejected_conversations",
        "differ",
    ),
    "absolute-image": ("povid", _povid(image="/etc/passwd"), "image", "absolute"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_rows_name_file_record_and_field(tmp_path, case):
    fmt, row, field, words = BAD_JSON[case]
    good = json.loads(
        (
            FIXTURES
            / ("llava_7b_v1_preference.json" if fmt == "llava-rlhf" else "POVID_preference_data_for_VLLMs.json")
        ).read_text()
    )[1]
    path = _json(tmp_path, "source.json", [good, row])  # the bad row is record 1
    with pytest.raises(DataError) as caught:
        import_file(fmt, path, tmp_path / "out.jsonl")
    err = caught.value
    assert (Path(err.file).name, err.index, err.field) == ("source.json", 1, field), str(err)
    assert err.record_id is not None and words in err.message
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_parquet_rows_are_located(src, tmp_path):
    table = pq.read_table(src.rlhf_v)
    rows = table.to_pylist()
    rows[1]["text"] = json.dumps({"question": "Q", "chosen": 3, "rejected": "B"})
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "badtext.parquet")
    with pytest.raises(DataError, match=r"record 1 \(id '101'\), field 'text.chosen': must be a string, got int"):
        import_file("rlhf-v", tmp_path / "badtext.parquet", tmp_path / "o.jsonl")
    rows[1]["text"] = "{not json"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "badtext.parquet")
    with pytest.raises(DataError, match=r"field 'text': not valid JSON"):
        import_file("rlhf-v", tmp_path / "badtext.parquet", tmp_path / "o.jsonl")


def test_unusable_pairs_are_skipped_and_counted(tmp_path):
    same = _povid(rejected_conversations=_povid()["conversations"])
    report = import_file("povid", _json(tmp_path, "p.json", [same, _povid(id="2")]), tmp_path / "o.jsonl")
    assert report.records == 1 and dict(report.skipped) == {"chosen identical to rejected": 1}


def test_jsonl_errors_have_line_numbers_and_vlfeedback_fields(tmp_path, src):
    lines = src.vlfeedback.read_text().splitlines()
    row = json.loads(lines[0])
    row["completions"][1]["annotations"]["Helpfulness"] = "3"
    path = tmp_path / "v.jsonl"
    path.write_text(lines[1] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(
        DataError,
        match=r"v.jsonl, line 2 \(id 'svit-conversation-2045'\), "
        r"field 'completions\[1\].annotations.Helpfulness'",
    ):
        import_file("vlfeedback", path, tmp_path / "o.jsonl")
    path.write_text(lines[1] + '\n{"id": \n')
    with pytest.raises(DataError, match=r"v.jsonl, line 2: truncated line"):
        import_file("vlfeedback", path, tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match="unknown import format 'hh-rlhf'"):
        import_file("hh-rlhf", path, tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match="--option pairing must be one of"):
        import_file("vlfeedback", path, tmp_path / "o.jsonl", options={"pairing": "best"})
    with pytest.raises(ConfigError, match=r"vlfeedback options \(--option KEY=VALUE\): unknown key"):
        import_file("vlfeedback", path, tmp_path / "o.jsonl", options={"pair": "all"})


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = _json(tmp_path, "s.json", [_llava(preference=0)])
    with pytest.raises(SystemExit) as stop:
        main(["data", "import", "llava-rlhf", str(path), str(tmp_path / "o.jsonl")])
    _, err = capsys.readouterr()
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: {path}, record 0 (id '000000001'), field 'preference': must be 1 or 2 (the preferred output), got 0"
    ]
    with pytest.raises(SystemExit) as stop:
        main(["data", "import", "llava-rlhf", str(FIXTURES / "llava_7b_v1_preference.json"), str(tmp_path / "o.jsonl")])
    assert stop.value.code == 0 and "wrote 3 records from 3 llava-rlhf rows" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["data", "import", "vlfeedback", "--show-options"])
    assert stop.value.code == 0 and "best-vs-random" in capsys.readouterr().out
