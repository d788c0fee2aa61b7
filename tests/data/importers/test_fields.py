"""Fields beyond the mapped ones, cached log-probs, DatasetDict splits, and what a failed import leaves."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmalign.data.importers import import_file
from mmalign.data.io import read_records
from mmalign.errors import DataError

from .conftest import RLAIF_V_SCHEMA, rlaif_v_rows, write_parquet


def test_unmapped_fields_are_kept_in_meta_and_listed_once(src, tmp_path, cli_run):
    rows = json.loads(src.llava_rlhf.read_text())
    for i, row in enumerate(rows):
        row["annotator"] = f"a{i}"  # a column no importer maps
    rows[0]["flaw"] = {"kind": "object", "words": ["wine"]}
    rows[1]["flaw"] = None  # empty: not kept
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows))
    out = tmp_path / "o.jsonl"
    report = import_file("llava-rlhf", path, out)
    records = list(read_records(out, check_images="none"))
    assert report.records == 3 and dict(report.unmapped) == {"annotator": 3, "flaw": 1}
    assert records[0].meta["source_fields"] == {"annotator": "a0", "flaw": {"kind": "object", "words": ["wine"]}}
    assert records[2].meta["source_fields"] == {"annotator": "a2"}
    code, stdout, _ = cli_run(["data", "import", "llava-rlhf", str(path), str(out)])
    assert code == 0 and stdout.splitlines()[1:] == [
        "kept source fields no importer maps in meta['source_fields']: annotator (3 rows), flaw (1 rows)"
    ]  # one line for the whole file, not one per row
    code, stdout, _ = cli_run(["data", "import", "llava-rlhf", str(path), str(out), "--ignore-field", "annotator"])
    assert code == 0 and "annotator" not in stdout and "flaw (1 rows)" in stdout


def test_nested_and_columnar_unmapped_fields(src, tmp_path):
    table = pq.read_table(src.rlhf_v)
    rows = table.to_pylist()
    text = json.loads(rows[0]["text"])
    rows[0]["text"] = json.dumps({**text, "note": "second annotator"})
    extra = pa.Table.from_pylist(rows, schema=table.schema).append_column("split", pa.array(["train", "train"]))
    pq.write_table(extra, tmp_path / "extra.parquet")
    report = import_file("rlhf-v", tmp_path / "extra.parquet", tmp_path / "o.jsonl")
    first, second = read_records(tmp_path / "o.jsonl", check_images="none")
    assert dict(report.unmapped) == {"split": 2, "text.note": 1}
    assert first.meta["source_fields"] == {"split": "train", "text.note": "second annotator"}
    assert second.meta["source_fields"] == {"split": "train"}
    lines = src.vlfeedback.read_text().splitlines()
    row = json.loads(lines[0])
    row["completions"][1]["score"] = 3
    (tmp_path / "v.jsonl").write_text(json.dumps(row) + "\n")
    report = import_file("vlfeedback", tmp_path / "v.jsonl", tmp_path / "o.jsonl")
    assert dict(report.unmapped) == {"completions[1].score": 1}
    records = read_records(tmp_path / "o.jsonl", check_images="none")
    assert all(r.meta["source_fields"] == {"completions[1].score": 3} for r in records)


def test_rlaif_v_cached_log_probs_are_dropped_with_one_line(tmp_path, cli_run):
    # the layout of RLAIF-V's logps_calculator.py output: a "logps" column, JSON of
    # [win_logp, win_avg_logp, win_per_token_logp, rej_logp, rej_avg_logp, rej_per_token_logp]
    rows = rlaif_v_rows(0, 3)
    for row in rows:
        row["logps"] = json.dumps([-12.5, -1.25, [-1.0] * 10, -20.0, -2.0, [-2.0] * 10])
    schema = RLAIF_V_SCHEMA.append(pa.field("logps", pa.string()))
    src = write_parquet(tmp_path / "RLAIF-V-Dataset-withlogp_000-3.parquet", rows, schema)
    out = tmp_path / "o.parquet"
    report = import_file("rlaif-v", src, out)
    assert report.records == 3 and dict(report.dropped) == {"logps": 3} and not report.unmapped
    assert all("logps" not in json.dumps(r.meta) for r in read_records(out))
    code, stdout, _ = cli_run(["data", "import", "rlaif-v", str(src), str(out)])
    (line,) = stdout.splitlines()[1:]
    assert code == 0 and line.startswith("dropped logps (3 rows): RLAIF-V's cached reference log-probs")
    # the unpacked columns of its dataset class, too: one line for all six
    for row in rows:
        del row["logps"]
        row.update(ref_win_logp=-12.5, ref_rej_logp=-20.0, ref_win_avg_logp=-1.25, ref_rej_avg_logp=-2.0)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "unpacked.parquet")
    report = import_file("rlaif-v", tmp_path / "unpacked.parquet", out)
    (line,) = report.notes()
    assert line.startswith("dropped ref_rej_avg_logp, ref_rej_logp, ref_win_avg_logp, ref_win_logp (3 rows): ")


def _trl_dataset_dict(tmp_path):
    """RLAIF-V rows turned into TRL's vision DPO layout as trl's examples/datasets/rlaif-v.py does it
    (to_conversational, images as Sequence(Image)), split with train_test_split and saved with save_to_disk."""
    import datasets
    from PIL import Image

    def to_conversational(row):
        def text(value):
            return [{"type": "text", "text": value}]

        return {
            "prompt": [{"role": "user", "content": [{"type": "image"}, *text(row["question"])]}],
            "images": [Image.new("RGB", (8, 8), (10 * int(row["idx"]), 0, 0))],
            "chosen": [{"role": "assistant", "content": text(row["chosen"])}],
            "rejected": [{"role": "assistant", "content": text(row["rejected"])}],
        }

    dataset = datasets.Dataset.from_list([to_conversational(r) for r in rlaif_v_rows(0, 5)])
    dataset = dataset.cast_column("images", datasets.Sequence(datasets.Image(decode=True)))
    dataset.train_test_split(test_size=0.4, seed=0).save_to_disk(str(tmp_path / "rlaif-v-trl"))
    return tmp_path / "rlaif-v-trl"


def test_a_dataset_dict_needs_a_split_and_names_them(tmp_path, cli_run):
    folder = _trl_dataset_dict(tmp_path)
    with pytest.raises(DataError, match=r"is a DatasetDict with splits train, test: pick one with --split"):
        import_file("trl", folder, tmp_path / "o.jsonl")
    code, _, err = cli_run(["data", "import", "trl", str(folder), str(tmp_path / "o.jsonl")])
    assert code == 2 and "--split" in err and "train, test" in err
    with pytest.raises(DataError, match=r"has no split 'validation'; its splits are train, test"):
        import_file("trl", folder, tmp_path / "o.jsonl", split="validation")
    code, stdout, _ = cli_run(["data", "import", "trl", str(folder), str(tmp_path / "o.jsonl"), "--split", "test"])
    assert code == 0 and "wrote 2 records from 2 trl rows" in stdout
    records = list(read_records(tmp_path / "o.jsonl", check_images="decode"))
    assert all(r.chosen_text.startswith("There are") and r.images[0].startswith("images/trl/") for r in records)
    with pytest.raises(DataError, match="--split test needs a DatasetDict directory"):
        import_file("trl", folder / "train", tmp_path / "o.jsonl", split="test")


def test_a_failed_import_leaves_no_image_files(tmp_path, src, helpers):
    # embedded images: rows 0-2 are written out before row 3 fails
    rows = rlaif_v_rows(0, 4)
    rows[3]["chosen"] = None
    bad = write_parquet(tmp_path / "bad.parquet", rows, RLAIF_V_SCHEMA)
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(DataError, match=r"record 3 \(id '3'\), field 'chosen'"):
        import_file("rlaif-v", bad, out)
    assert not (tmp_path / "out").exists()  # no images/, no staging folder, no output, not even the folder
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("theirs")
    with pytest.raises(DataError):
        import_file("rlaif-v", bad, out)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    # copied images: the first row's image is copied before the second's is found missing
    images = tmp_path / "coco"
    helpers.png(images, "COCO_train2014_000000291476.jpg")
    missing = r"record 1 \(id 'povid-17029'\), field 'images\[0\]': image file not found: .*000017029.jpg' "
    with pytest.raises(DataError, match=missing + r"\(the row's path, after --image-prefix, under --image-root\)"):
        import_file("povid", src.povid, tmp_path / "copied" / "p.jsonl", image_root=images)
    assert not (tmp_path / "copied").exists()
    # a success moves every file in place, and a second import of the same data finds them identical
    report = import_file("rlaif-v", write_parquet(tmp_path / "good.parquet", rows[:3], RLAIF_V_SCHEMA), out)
    records = list(read_records(out, check_images="decode"))
    assert report.records == 3 and all((tmp_path / "out" / r.images[0]).is_file() for r in records)
    import_file("rlaif-v", tmp_path / "good.parquet", out)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images", "keep.txt", "o.jsonl"]


def test_a_different_file_in_the_way_is_not_overwritten_and_nothing_is_moved(tmp_path):
    rows = rlaif_v_rows(0, 2)
    good = write_parquet(tmp_path / "good.parquet", rows, RLAIF_V_SCHEMA)
    out = tmp_path / "out" / "o.jsonl"
    import_file("rlaif-v", good, out)
    first, second = read_records(out)
    (tmp_path / "out" / second.images[0]).write_bytes(b"another file")
    (tmp_path / "out" / first.images[0]).unlink()
    out.unlink()
    with pytest.raises(DataError, match="refusing to overwrite"):
        import_file("rlaif-v", good, out)
    assert not out.exists() and not (tmp_path / "out" / first.images[0]).exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["images"]
