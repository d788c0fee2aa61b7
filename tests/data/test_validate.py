"""validate (all bad records in one pass, duplicate ids, cached image checks) and stats (worked-out numbers)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmalign.cli.main import main
from mmalign.data.io import convert, read_records
from mmalign.data.records import assistant, user_prompt
from mmalign.data.validate import _IdFilter, plot_stats, quantile, stats, summarize, validate


def test_validate_good_file_decodes_each_shared_image_once(data_dir: Path, helpers: Any) -> None:
    rows = [helpers.pref(i, images=["images/red.png" if i % 2 else "images/blue.png"]) for i in range(40)]
    path = helpers.lines(data_dir / "pairs.jsonl", rows)
    report = validate(path)
    assert (report.n_records, report.n_ok, report.n_bad, report.errors) == (40, 40, 0, [])
    assert report.kinds == Counter(preference=40)
    assert report.images_checked == 2  # 40 references, 2 files
    assert report.ok and not report.truncated


def test_validate_counts_all_and_keeps_max_errors(data_dir: Path, helpers: Any) -> None:
    rows: list[Any] = [helpers.pref(i, images=["images/missing.png"]) for i in range(30)]
    rows += ["nope"] * 5 + [helpers.pref(100)]
    path = helpers.lines(data_dir / "pairs.jsonl", rows)
    report = validate(path, max_errors=7)
    assert (report.n_records, report.n_bad, report.n_ok, len(report.errors)) == (36, 35, 1, 7)
    assert report.truncated
    assert report.errors[0].startswith(f"{path}, line 1 (id 'p-0'), field 'images[0]': image file not found")
    assert report.images_checked == 2  # missing.png looked up once (its failure is cached), red.png once
    assert report.to_dict()["bad"] == 35


def test_validate_columnar_and_duplicates(tmp_path: Path, data_dir: Path, helpers: Any) -> None:
    rows = [helpers.pref(i) for i in range(5)] + [helpers.pref(2), helpers.pref(4), helpers.pref(2)]
    src = helpers.lines(data_dir / "pairs.jsonl", rows)
    convert(src, tmp_path / "p.parquet")  # convert does not check ids: it copies what it reads
    report = validate(tmp_path / "p.parquet")
    assert report.n_bad == 3 and report.kinds == Counter(preference=5)
    assert report.errors == [
        f"{tmp_path / 'p.parquet'}, record 5 (id 'p-2'), field 'id': duplicate id (first used at record 2)",
        f"{tmp_path / 'p.parquet'}, record 6 (id 'p-4'), field 'id': duplicate id (first used at record 4)",
        f"{tmp_path / 'p.parquet'}, record 7 (id 'p-2'), field 'id': duplicate id (first used at record 2)",
    ]
    assert validate(tmp_path / "p.parquet", check_ids=False).ok


def test_id_filter_has_no_false_alarms_on_distinct_ids() -> None:
    seen = _IdFilter()
    for i in range(50_000):
        seen.add(f"id-{i}")
    assert seen.suspects == set()
    seen.add("id-123")
    assert seen.suspects == {"id-123"}


def test_quantile_matches_numpy() -> None:
    rng = random.Random(0)
    for n in (1, 2, 3, 10, 101):
        values = [rng.randint(0, 30) for _ in range(n)]
        counts = Counter(values)
        for q in (0.0, 0.25, 0.5, 0.95, 1.0):
            assert quantile(counts, q) == pytest.approx(float(np.quantile(values, q)))
    assert summarize(Counter()) == {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}


def _stats_file(data_dir: Path, helpers: Any) -> Path:
    two_images = user_prompt("Compare the two images.", 2)
    rows = [
        helpers.pref(0, chosen=assistant("A red square."), rejected=assistant("A red square and a star.")),
        helpers.pref(
            1,
            images=[],
            prompt=user_prompt("Say a word.", 0),
            chosen=assistant("Two."),
            rejected=assistant("Three circles here."),
            source="edit",
            rejected_spans=[[0, 5]],
        ),
        helpers.pref(
            2,
            images=["images/red.png", "images/blue.png"],
            prompt=two_images,
            chosen=assistant("A big blue square in the middle."),
            rejected=assistant("No."),
        ),
        {"id": "s-0", "prompt": user_prompt("Describe.", 0), "completion": assistant("Nothing.")},
        "broken line",
    ]
    return helpers.lines(data_dir / "mixed.jsonl", rows)


def test_stats_worked_example(data_dir: Path, helpers: Any) -> None:
    data = stats(_stats_file(data_dir, helpers)).to_dict()
    assert (data["records"], data["bad"]) == (5, 1)
    assert data["kinds"] == {"preference": 3, "sft": 1}
    # chosen chars: "A red square." 13, "Two." 4, "A big blue square in the middle." 32 -> sorted [4, 13, 32]
    # mean 49/3; median 13; p95 at rank 0.95*2 = 1.9 -> 13 + 0.9*(32-13) = 30.1; max 32
    chosen = data["lengths"]["chosen"]["chars"]
    assert chosen == pytest.approx({"count": 3, "mean": 49 / 3, "median": 13, "p95": 30.1, "max": 32})
    # rejected words: 6, 3, 1 -> mean 10/3, median 3, p95 3 + 0.9*(6-3) = 5.7
    rejected = data["lengths"]["rejected"]["words"]
    assert rejected == pytest.approx({"count": 3, "mean": 10 / 3, "median": 3, "p95": 5.7, "max": 6})
    # prompts of the pairs and the SFT example: "Describe the image." (3 words), "Say a word." (3),
    # "Compare the two images." (4), "Describe." (1)
    assert data["lengths"]["prompt"]["words"]["count"] == 4
    assert data["lengths"]["prompt"]["words"]["mean"] == pytest.approx(11 / 4)
    assert data["lengths"]["completion"]["chars"]["max"] == len("Nothing.")
    assert data["images_per_record"] == {"0": 2, "1": 1, "2": 1}
    assert data["sources"] == {"test": 2, "edit": 1, "(none)": 1}
    assert data["pairs_with_spans"] == 1 and data["image_side_pairs"] == 0
    assert data["errors"] == [f"{data_dir / 'mixed.jsonl'}, line 5: not valid JSON: Expecting value at column 1"]


def test_stats_plot_is_a_png(tmp_path: Path, data_dir: Path, helpers: Any) -> None:
    png = plot_stats(stats(_stats_file(data_dir, helpers)), tmp_path / "plots" / "stats.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1200, 800)
    assert sorted(p.name for p in png.parent.iterdir()) == ["stats.png"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_and_validate_cli(tmp_path: Path, data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = _stats_file(data_dir, helpers)
    code, out, _ = _run(["data", "stats", str(path), "--json", "--plot", str(tmp_path / "s.png")], capsys)
    assert code == 0
    assert json.loads(out)["sources"] == {"test": 2, "edit": 1, "(none)": 1}
    assert (tmp_path / "s.png").stat().st_size > 0
    code, out, _ = _run(["data", "stats", str(path)], capsys)
    assert code == 0 and "lengths (words / chars)" in out and "edit" in out
    code, out, _ = _run(["data", "validate", str(path), "--json"], capsys)
    assert code == 1
    assert json.loads(out)["bad"] == 1


def test_convert_cli_round_trip(tmp_path: Path, data_dir: Path, helpers: Any, capsys: Any) -> None:
    src = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(i) for i in range(3)])
    out_root = tmp_path / "out"
    for argv in (
        ["data", "convert", str(src), str(tmp_path / "p.parquet")],
        ["data", "convert", str(tmp_path / "p.parquet"), str(tmp_path / "ds")],
        ["data", "convert", str(tmp_path / "ds"), str(tmp_path / "back.jsonl"), "--out-root", str(out_root)],
    ):
        code, out, _ = _run(argv, capsys)
        assert code == 0 and out.startswith("wrote 3 records to ")
    back = [r.to_dict() for r in read_records(tmp_path / "back.jsonl", root=out_root)]
    assert back == [r.to_dict() for r in read_records(src)]
    assert (out_root / "images/red.png").read_bytes() == (data_dir / "images/red.png").read_bytes()
    code, out, _ = _run(["data", "validate", str(tmp_path / "back.jsonl"), "--root", str(out_root)], capsys)
    assert code == 0 and "3 records, 3 ok, 0 bad" in out


def test_validate_in_memory_image_over_limit(tmp_path: Path) -> None:
    from mmalign.data.io import write_records
    from mmalign.data.records import PreferenceRecord

    pair = PreferenceRecord(
        id="big",
        prompt=user_prompt("Q?"),
        chosen=assistant("A."),
        rejected=assistant("B."),
        images=[Image.new("RGB", (20, 20))],
    )
    write_records(tmp_path / "p.parquet", [pair])
    report = validate(tmp_path / "p.parquet", max_pixels=399)
    assert report.n_bad == 1 and "20x20 = 400 pixels, over the limit of 399" in report.errors[0]
