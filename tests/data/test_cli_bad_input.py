"""Every bad-input case through ``mmalign data validate``: exit code, one located line, no traceback."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmalign.cli.main import main
from mmalign.errors import DataError


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _text(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def _setup_image(root: Path, case: str) -> str:
    """Make the image file a case needs; returns the path to put in the record."""
    images = root / "images"
    if case == "corrupt":
        (images / "bad.png").write_bytes(b"this is not an image at all" * 10)
        return "images/bad.png"
    if case == "truncated_png":
        noise = Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48)
        buffer = io.BytesIO()
        noise.save(buffer, format="PNG")
        data = buffer.getvalue()
        (images / "cut.png").write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut
        return "images/cut.png"
    if case == "zero_byte":
        (images / "empty.png").write_bytes(b"")
        return "images/empty.png"
    if case == "symlink":
        outside = root.parent / "outside.png"
        outside.write_bytes((images / "red.png").read_bytes())
        os.symlink(outside, images / "link.png")
        return "images/link.png"
    raise AssertionError(case)


# case name -> (how to break record p-1, expected field or None, words the message must contain)
CASES: dict[str, tuple[Any, str | None, str]] = {
    "missing_field": (lambda r, root: r.pop("chosen"), "chosen", "missing required field"),
    "wrong_type": (lambda r, root: r.update(images="images/red.png"), "images", "must be a list"),
    "wrong_type_id": (lambda r, root: r.update(id=[1]), "id", "must be a string"),
    "image_missing": (lambda r, root: r.update(images=["images/nope.png"]), "images[0]", "not found"),
    "image_corrupt": (
        lambda r, root: r.update(images=[_setup_image(root, "corrupt")]),
        "images[0]",
        "not a readable image",
    ),
    "image_truncated": (
        lambda r, root: r.update(images=[_setup_image(root, "truncated_png")]),
        "images[0]",
        "corrupt or truncated",
    ),
    "image_zero_byte": (
        lambda r, root: r.update(images=[_setup_image(root, "zero_byte")]),
        "images[0]",
        "empty (0 bytes)",
    ),
    "escapes_root": (lambda r, root: r.update(images=["../../etc/passwd"]), "images[0]", "escapes the data root"),
    "absolute_path": (lambda r, root: r.update(images=["/etc/passwd"]), "images[0]", "is absolute"),
    "symlink_escape": (
        lambda r, root: r.update(images=[_setup_image(root, "symlink")]),
        "images[0]",
        "through a symlink",
    ),
    "placeholder_mismatch": (
        lambda r, root: r.update(images=["images/red.png", "images/blue.png"]),
        "images",
        "1 image placeholder(s) but the record has 2 image(s)",
    ),
    "rejected_images_count": (
        lambda r, root: r.update(rejected_images=["images/blue.png", "images/red.png"]),
        "rejected_images",
        "must fill the same placeholders",
    ),
    "empty_chosen": (lambda r, root: r.update(chosen=_text("  ")), "chosen", "empty response"),
    "empty_rejected": (lambda r, root: r.update(rejected=_text("")), "rejected", "empty response"),
    "identical": (lambda r, root: r.update(rejected=r["chosen"]), "rejected", "chosen is identical to rejected"),
    "span_outside": (lambda r, root: r.update(rejected_spans=[[3, 999]]), "rejected_spans[0]", "outside the text"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_is_reported_on_one_line(case: str, data_dir: Path, helpers: Any, capsys: Any) -> None:
    breaker, field, words = CASES[case]
    bad = helpers.pref(1)
    breaker(bad, data_dir)
    # line 1 good, line 2 blank, line 3 bad, line 4 good: the bad record is on line 3
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0), "", bad, helpers.pref(2)])
    code, out, err = run(["data", "validate", str(path)], capsys)
    assert code == 1
    rid = f" (id {bad['id']!r})" if isinstance(bad["id"], str) else ""
    where = f"{path}, line 3{rid}" + (f", field {field!r}" if field else "")
    error_lines = [line for line in out.splitlines() if line.startswith(str(path) + ",")]
    assert len(error_lines) == 1, out
    assert error_lines[0].startswith(where + ": "), error_lines[0]
    assert words in error_lines[0]
    assert f"{path}: 3 records, 2 ok, 1 bad" in out
    assert "Traceback" not in out + err


def test_image_over_pixel_limit(data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0)])
    code, out, _ = run(["data", "validate", str(path), "--max-pixels", "63"], capsys)  # red.png is 8x8 = 64
    assert code == 1
    assert f"{path}, line 1 (id 'p-0'), field 'images[0]': " in out
    assert "8x8 = 64 pixels, over the limit of 63" in out
    code, out, _ = run(["data", "validate", str(path), "--max-pixels", "64"], capsys)
    assert code == 0, out


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"id": "p-1", "prompt": [', "truncated line"),
        ("not json at all", "not valid JSON"),
        ('{"id": "p-1"} trailing', "not valid JSON: Extra data"),
        ("[1, 2, 3]", "a record must be a JSON object"),
    ],
)
def test_unreadable_line(line: str, words: str, data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0), line, helpers.pref(2)])
    code, out, err = run(["data", "validate", str(path)], capsys)
    assert code == 1
    assert f"{path}, line 2: " in out and words in out
    assert "Traceback" not in out + err


def test_file_cut_off_mid_line(data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = data_dir / "pairs.jsonl"
    path.write_text(json.dumps(helpers.pref(0)) + "\n" + json.dumps(helpers.pref(1))[:50])  # no final newline
    code, out, _ = run(["data", "validate", str(path)], capsys)
    assert code == 1
    assert f"{path}, line 2: truncated line" in out and "cut off while writing" in out


def test_non_utf8_line(data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = data_dir / "pairs.jsonl"
    path.write_bytes(json.dumps(helpers.pref(0)).encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    code, out, _ = run(["data", "validate", str(path)], capsys)
    assert code == 1 and f"{path}, line 2: not valid UTF-8" in out


def test_all_bad_records_in_one_pass_and_the_limit(data_dir: Path, helpers: Any, capsys: Any) -> None:
    rows = [
        helpers.pref(0),
        "garbage",
        helpers.pref(2, images=["images/none.png"]),
        helpers.pref(3, chosen=_text("")),
        helpers.pref(4),
        helpers.pref(5, rejected=_text("A red square.")),
        helpers.pref(0),  # duplicate id of line 1
    ]
    path = helpers.lines(data_dir / "pairs.jsonl", rows)
    code, out, _ = run(["data", "validate", str(path)], capsys)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith(str(path) + ",")]
    assert [line.split(":")[0] for line in lines] == [
        f"{path}, line 2",
        f"{path}, line 3 (id 'p-2'), field 'images[0]'",
        f"{path}, line 4 (id 'p-3'), field 'chosen'",
        f"{path}, line 6 (id 'p-5'), field 'rejected'",
        f"{path}, line 7 (id 'p-0'), field 'id'",
    ]
    assert "duplicate id (first used at line 1)" in lines[-1]
    assert f"{path}: 7 records, 2 ok, 5 bad" in out

    code, out, _ = run(["data", "validate", str(path), "--max-errors", "2"], capsys)
    assert code == 1
    assert len([line for line in out.splitlines() if line.startswith(str(path) + ",")]) == 2
    assert "... and 3 more bad records" in out


def test_debug_shows_tracebacks(data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0, images=["images/none.png"])])
    code, out, err = run(["--debug", "data", "validate", str(path)], capsys)
    assert code == 1
    assert "Traceback" in err and "resolve_image" in err  # the frame that found the problem
    assert f"{path}, line 1 (id 'p-0'), field 'images[0]'" in out


def test_convert_stops_at_bad_record_with_one_line(tmp_path: Path, data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0), helpers.pref(1, images=["../x.png"])])
    target = tmp_path / "out.parquet"
    code, out, err = run(["data", "convert", str(path), str(target)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {path}, line 2 (id 'p-1'), field 'images[0]': image path '../x.png' escapes the data root"
    ]
    assert "Traceback" not in out + err
    assert not target.exists() and list(tmp_path.iterdir()) == [data_dir]  # no half file, no temp litter
    with pytest.raises(DataError, match="escapes the data root"):
        main(["--debug", "data", "convert", str(path), str(target)])


def test_missing_file_is_one_line(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run(["data", "validate", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file"


def test_bad_blob_in_parquet_is_located_by_record(tmp_path: Path, data_dir: Path, helpers: Any, capsys: Any) -> None:
    from mmalign.data.io import convert

    src = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0), helpers.pref(1)])
    parquet = tmp_path / "pairs.parquet"
    convert(src, parquet)
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    rows = table.to_pylist()
    rows[1]["images"][0]["bytes"] = b"\x89PNG broken"
    pq.write_table(table.from_pylist(rows, schema=table.schema), parquet)
    code, out, err = run(["data", "validate", str(parquet)], capsys)
    assert code == 1
    assert f"{parquet}, record 1 (id 'p-1'), field 'images[0]': embedded image 'images/red.png'" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--kind", "pairs"],
            "error: unknown record kind 'pairs'; expected one of ['eval', 'feedback', 'preference', 'sft']",
        ),
        (["--check-images", "all"], "error: unknown image check 'all'; expected one of ['none', 'exists', 'decode']"),
    ],
)
def test_bad_options_fail_at_start(options: list[str], message: str, data_dir: Path, helpers: Any, capsys: Any) -> None:
    path = helpers.lines(data_dir / "pairs.jsonl", [helpers.pref(0)])
    for command in ("validate", "convert"):
        argv = ["data", command, str(path), *([str(data_dir / "out.parquet")] if command == "convert" else [])]
        code, _, err = run([*argv, *options], capsys)
        assert code == 2 and err.strip() == message
    assert not (data_dir / "out.parquet").exists()


def test_cli_pixel_default_matches_the_library() -> None:
    from mmalign.cli import data as cli_data
    from mmalign.data import images

    assert cli_data.DEFAULT_MAX_PIXELS == images.DEFAULT_MAX_PIXELS
