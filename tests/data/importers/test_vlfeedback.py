"""VLFeedback: completions rated on three aspects become Silkie-style pairs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from mmalign.data.importers import import_file
from mmalign.data.importers.vlfeedback import score
from mmalign.data.io import read_records


def test_scores_average_numeric_ratings(src):
    rows = [json.loads(line) for line in src.vlfeedback.read_text().splitlines()]
    completions = rows[0]["completions"]
    aspects = ["Helpfulness", "Visual Faithfulness", "Ethical Considerations"]
    # gpt-4v: (5 + 5 + 5) / 3; llava: (3 + 2 + 5) / 3; instructblip: N/A left out, (1 + 1) / 2; fuyu: 13 / 3
    assert [score(c, aspects, "c") for c in completions] == [5.0, 10 / 3, 1.0, 13 / 3]
    assert score(completions[1], ["Visual Faithfulness"], "c") == 2.0


def test_best_vs_random_best_vs_worst_and_all(src, tmp_path):
    out = tmp_path / "vlf.jsonl"
    report = import_file("vlfeedback", src.vlfeedback, out, image_prefix="vlfeedback_images/")
    records = list(read_records(out, check_images="none"))
    # the second row's two completions tie at 4.0: no pair, counted
    assert report.records == 1 and dict(report.skipped) == {"no two completions scored apart": 1}
    best = records[0]
    assert best.chosen_text == "She is holding a red umbrella." and best.meta["scores"][0] == 5.0
    assert best.meta["models"][0] == "gpt-4v" and best.images == ["vlfeedback_images/svit/2045.jpg"]
    import_file("vlfeedback", src.vlfeedback, out, options={"pairing": "best-vs-worst"})
    (worst,) = read_records(out, check_images="none")
    assert worst.rejected_text == "A dog." and worst.id == "vlfeedback-svit-conversation-2045-0-2"
    import_file("vlfeedback", src.vlfeedback, out, options={"pairing": "all", "min_margin": 0.5})
    pairs = [tuple(r.meta["completions"]) for r in read_records(out, check_images="none")]
    # scores 5, 3.33, 1, 4.33 → order 0, 3, 1, 2; pairs whose gap exceeds 0.5
    assert pairs == [(0, 3), (0, 1), (0, 2), (3, 1), (3, 2), (1, 2)]


def test_the_hub_parquet_struct_of_lists_reads_the_same(src, tmp_path):
    rows = [json.loads(line) for line in src.vlfeedback.read_text().splitlines()]
    for row in rows:  # datasets stores a sequence of structs as a struct of lists
        row["completions"] = {key: [c[key] for c in row["completions"]] for key in ("annotations", "model", "response")}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "vlfeedback.parquet")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    import_file("vlfeedback", tmp_path / "vlfeedback.parquet", a)
    import_file("vlfeedback", src.vlfeedback, b)
    assert a.read_bytes() == b.read_bytes()
    import_file("vlfeedback", src.vlfeedback, a, seed=5)
    assert len(a.read_bytes()) > 0
