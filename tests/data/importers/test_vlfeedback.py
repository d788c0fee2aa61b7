"""VLFeedback: completions rated on three aspects become pairs by Silkie's recipe (run_dpo.py)."""

from __future__ import annotations

import json
from itertools import combinations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmalign.data.importers import import_file
from mmalign.data.importers.vlfeedback import ASPECTS, score
from mmalign.data.io import read_records


def _rows(src) -> list[dict]:
    return [json.loads(line) for line in src.vlfeedback.read_text().splitlines()]


def silkie_pairs(row: dict) -> set[tuple[int, int]]:
    """Silkie's make_batch_pairs (vlf-silkie/VLFeedback run_dpo.py, commit e6ddec7) on one row, restated:
    every two completions, the mean of all their ratings, a float() failure skips the pair, ties skip."""
    annotations = [c["annotations"] for c in row["completions"]]
    pairs = set()
    for i, j in combinations(range(len(annotations)), 2):
        try:
            a = sum(float(r["Rating"]) for r in annotations[i].values()) / len(annotations[i])
            b = sum(float(r["Rating"]) for r in annotations[j].values()) / len(annotations[j])
        except ValueError:
            continue
        if a != b:
            pairs.add((i, j) if a > b else (j, i))
    return pairs


def test_scores_average_numeric_ratings_and_na_drops_the_completion(src):
    completions = _rows(src)[0]["completions"]
    aspects = list(ASPECTS)
    # gpt-4v: (5 + 5 + 5) / 3; llava: (3 + 2 + 5) / 3; instructblip: Ethical Considerations is "N/A"; fuyu: 13 / 3
    assert [score(c, aspects, "c") for c in completions] == [5.0, 10 / 3, None, 13 / 3]
    # skip-rating averages what is numeric instead: instructblip (1 + 1) / 2
    assert score(completions[2], aspects, "c", na="skip-rating") == 1.0
    assert score(completions[1], ["Visual Faithfulness"], "c") == 2.0


def test_default_pairs_are_silkies(src, tmp_path):
    out = tmp_path / "vlf.jsonl"
    report = import_file("vlfeedback", src.vlfeedback, out, image_prefix="vlfeedback_images/")
    records = list(read_records(out, check_images="none"))
    rows = _rows(src)
    # row 1: scores 5, 3.33, (N/A), 4.33 → pairs 0>3, 0>1, 3>1; row 2: both 4.0, a tie, no pair
    assert {tuple(r.meta["completions"]) for r in records} == silkie_pairs(rows[0]) == {(0, 3), (0, 1), (3, 1)}
    assert silkie_pairs(rows[1]) == set() and dict(report.skipped) == {"no two completions scored apart": 1}
    best = records[0]
    assert best.chosen_text == "She is holding a red umbrella." and best.meta["scores"] == [5.0, 4.3333]
    assert best.meta["models"] == ["gpt-4v", "fuyu-8b"] and best.images == ["vlfeedback_images/svit/2045.jpg"]
    assert best.id == "vlfeedback-svit-conversation-2045-0-3"


@pytest.mark.parametrize(
    "options, pairs",
    [
        ({"pairing": "best-vs-worst"}, [(0, 1)]),  # the worst scored completion (instructblip has N/A: left out)
        ({"pairing": "best-vs-worst", "na": "skip-rating"}, [(0, 2)]),  # instructblip scored 1.0: the worst
        ({"pairing": "all", "min_margin": 0.7}, [(0, 1), (3, 1)]),  # 5 - 4.33 = 0.67 is not above 0.7
    ],
)
def test_other_pairings(src, tmp_path, options, pairs):
    out = tmp_path / "vlf.jsonl"
    import_file("vlfeedback", src.vlfeedback, out, options=options)
    assert [tuple(r.meta["completions"]) for r in read_records(out, check_images="none")] == pairs


def test_best_vs_random_draws_by_seed(src, tmp_path):
    out = tmp_path / "vlf.jsonl"
    drawn = set()
    for seed in range(8):
        import_file("vlfeedback", src.vlfeedback, out, options={"pairing": "best-vs-random"}, seed=seed)
        (record,) = read_records(out, check_images="none")
        drawn.add(tuple(record.meta["completions"]))
    assert drawn <= {(0, 3), (0, 1)} and len(drawn) == 2  # the best against either lower one, never N/A's


def test_the_hub_parquet_struct_of_lists_reads_the_same(src, tmp_path):
    rows = _rows(src)
    for row in rows:  # datasets stores a sequence of structs as a struct of lists
        row["completions"] = {key: [c[key] for c in row["completions"]] for key in ("annotations", "model", "response")}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "vlfeedback.parquet")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    import_file("vlfeedback", tmp_path / "vlfeedback.parquet", a)
    import_file("vlfeedback", src.vlfeedback, b)
    assert a.read_bytes() == b.read_bytes()
