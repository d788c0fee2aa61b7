"""Hostile inputs: every case ends with a non-zero exit, one clear located line, no traceback, earlier outputs
intact, and memory bounded by the settings rather than by the input.

Cases: a 50 MB record (memory follows ``max_length``; normal records encode exactly as before) at training and
at evaluation (``--max-length``), a JSONL line over the line limit, a Parquet text cell over it, a ``.json``
source over the whole-JSON limit, a corrupt PNG and a decompression-bomb PNG through ``data convert`` and
``data import``, and a corrupt image met at training and at evaluation (named with the record's file and line).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mmalign.data.io import read_records
from mmalign.data.records import EvalItem, PreferenceRecord, SFTRecord, assistant, user_prompt
from mmalign.errors import DataError
from mmalign.models import load
from mmalign.models.collate import Collator

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the red circle is left of a small blue square and a large green star above them".split()


# ------------------------------------------------------------------------------------------------ helpers


def png(colour: Any = "red", size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring width x height grey pixels (2.5 GB decoded) in a file of a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # the first 4 rows; a real bomb would hold them all
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def corrupt_png() -> bytes:
    """A PNG whose header reads but whose pixel data is cut short (a file copied halfway)."""
    noise = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def sft_row(i: int, image: str = "images/ok.png", text: str = "A red circle.") -> dict[str, Any]:
    return {
        "id": f"s-{i}",
        "images": [image],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def data_with_bad_image(root: Path, bad: bytes, line: int = 3) -> Path:
    """``root/data.jsonl`` with three records; the one on ``line`` names ``images/bad.png`` holding ``bad``."""
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.png").write_bytes(png())
    (root / "images" / "bad.png").write_bytes(bad)
    rows = [sft_row(i, "images/bad.png" if i == line else "images/ok.png") for i in (1, 2, 3)]
    return write_jsonl(root / "data.jsonl", rows)


def one_clear_line(code: int, stderr: str, *parts: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    for part in parts:
        assert part in stderr, (part, stderr)


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples this process's RSS every 2 ms; yields a list whose item 0 is the peak growth in bytes."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss - start)
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


@pytest.fixture(scope="module")
def llava(tiny_dir: Callable[[str], Path]) -> Any:
    return load(tiny_dir("tiny-llava"))


# -------------------------------------------------------------------------------------- memory of one record


def test_a_50_mb_record_costs_memory_by_max_length_not_by_its_size(tiny_dir: Callable[[str], Path]) -> None:
    # before: the whole text was tokenised, then truncated: about 150 MB per MB of text (7.6 GB for 50 MB)
    loaded = load(tiny_dir("tiny-llama"))
    collator = Collator(loaded.processor, max_length=128, on_overflow="skip")
    assert collator.text_budget is not None and collator.text_budget < 10_000  # fails fast if the cut is gone
    text = ("The red circle is left of the blue square. " * 1_200_000)[:50_000_000]
    long_response = SFTRecord("big", user_prompt("Describe.", 0), assistant(text), [])
    long_prompt = SFTRecord("huge-prompt", user_prompt(text, 0), assistant("Red."), [])
    with peak_rss() as peak:
        batch = collator([long_response])
        skipped = collator([long_prompt])
    assert batch.input_ids.shape == (1, 128) and skipped.skipped == ["huge-prompt"]
    assert peak[0] < 200 * 2**20, f"{peak[0] / 2**20:.0f} MiB"  # measured: under 1 MiB
    with pytest.raises(DataError, match=r"\(id 'huge-prompt'\): the prompt is over \d+ characters"):
        Collator(loaded.processor, max_length=128)([long_prompt])


def test_records_within_the_budget_encode_exactly_as_before(llava: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(6000)]
    long_text = " ".join(words).capitalize() + "."  # ~30 000 characters: over the budget of max_length 96
    image = Image.new("RGB", (48, 48), "red")
    records = [
        SFTRecord("short", user_prompt("Describe the image.", 1), assistant("A red circle."), [image]),
        SFTRecord("long", user_prompt("Describe the image.", 1), assistant(long_text), [image]),
    ]
    collator = Collator(llava.processor, max_length=96)
    assert len(long_text) > collator.text_budget  # type: ignore[operator]
    cut = collator(records)
    monkeypatch.setattr(Collator, "text_budget", property(lambda self: None))  # as before: tokenise everything
    whole = Collator(llava.processor, max_length=96)(records)
    for name in ("input_ids", "attention_mask", "labels", "prompt_lengths"):
        assert torch.equal(getattr(cut, name), getattr(whole, name)), name
    assert cut.response_offsets == whole.response_offsets
    assert cut.response_text_start == whole.response_text_start == [0, 0]
    assert all(torch.equal(cut.extras[k], whole.extras[k]) for k in whole.extras)


# ------------------------------------------------------------------------------------------- a giant line


def test_a_line_over_the_limit_is_located_and_never_read_whole(tmp_path: Path, cli_run: Any) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(png())
    path = tmp_path / "data.jsonl"
    giant = json.dumps(sft_row(2, text="x" * (40 * 2**20)))  # 40 MiB: over the 16 MiB default
    path.write_text(json.dumps(sft_row(1)) + "\n" + giant + "\n" + json.dumps(sft_row(3)) + "\n")
    with peak_rss() as peak, pytest.raises(DataError) as caught:
        list(read_records(path))
    assert str(caught.value).startswith(f"{path}, line 2: line longer than 16,777,216 bytes")
    assert peak[0] < 48 * 2**20, f"{peak[0] / 2**20:.0f} MiB"  # the limit and a chunk, not 40 MiB and copies
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous output")
    code, _, stderr = cli_run(["data", "convert", str(path), str(out)])
    one_clear_line(code, stderr, f"{path}, line 2:", "MMALIGN_MAX_LINE_BYTES")
    assert out.read_bytes() == b"previous output"
    code, stdout, _ = cli_run(["data", "validate", str(path)])  # reports it and reads on
    assert code == 1 and "line 2:" in stdout and "3 records, 2 ok, 1 bad" in stdout


def test_the_line_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_run: Any) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [sft_row(1, text="y" * 5000)])
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(png())
    assert len(list(read_records(path))) == 1
    with pytest.raises(DataError, match="line 1: line longer than 1,000 bytes"):
        list(read_records(path, max_line_bytes=1000))
    monkeypatch.setenv("MMALIGN_MAX_LINE_BYTES", "1000")
    code, _, stderr = cli_run(["data", "convert", str(path), str(tmp_path / "out.parquet")])
    one_clear_line(code, stderr, "line 1: line longer than 1,000 bytes")
    monkeypatch.setenv("MMALIGN_MAX_LINE_BYTES", "lots")
    code, _, stderr = cli_run(["data", "convert", str(path), str(tmp_path / "out.parquet")])
    one_clear_line(code, stderr, "MMALIGN_MAX_LINE_BYTES must be a positive number of bytes")


def test_a_json_source_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_run: Any) -> None:
    rows = [{"id": f"t-{i}", "prompt": "Describe.", "chosen": "A red circle.", "rejected": "A star."} for i in (1, 2)]
    src = tmp_path / "src.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "out" / "pairs.jsonl"
    assert cli_run(["data", "import", "trl", str(src), str(out)])[0] == 0
    monkeypatch.setenv("MMALIGN_MAX_JSON_BYTES", "100")  # the default is 2 GiB
    code, _, stderr = cli_run(["data", "import", "trl", str(src), str(tmp_path / "again.jsonl")])
    size = src.stat().st_size
    one_clear_line(
        code,
        stderr,
        f"{src}: is {size:,} bytes, over the limit of 100",
        "convert it to JSONL",
        "MMALIGN_MAX_JSON_BYTES",
    )
    assert not (tmp_path / "again.jsonl").exists()


@pytest.mark.parametrize("command", [["data", "import", "trl"], ["data", "convert"]])
def test_a_columnar_text_cell_over_the_line_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_run: Any, command: list[str]
) -> None:
    rows = [
        {
            "id": f"t-{i}",
            "prompt": user_prompt("Describe.", 0),
            "chosen": assistant("A red circle."),
            "rejected": assistant("y" * 5000 if i == 300 else "A star."),
        }
        for i in range(400)
    ]
    src = tmp_path / "src.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)  # row 300 is in the second batch of 256 rows
    out = tmp_path / "out" / "pairs.jsonl"
    monkeypatch.setenv("MMALIGN_MAX_LINE_BYTES", "1000")
    code, _, stderr = cli_run([*command, str(src), str(out)])
    one_clear_line(
        code,
        stderr,
        f"{src}, record 300, field 'rejected': holds 5,",
        "over the limit of 1,000",
        "MMALIGN_MAX_LINE_BYTES",
    )
    assert not out.exists()


# -------------------------------------------------------------------------------------- images on the way in

BAD_IMAGES = {
    "corrupt": (corrupt_png, "is corrupt or truncated"),
    "bomb": (bomb_png, "is 2500000000 pixels, over the limit of 89478485"),  # refused from the header
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
@pytest.mark.parametrize("target", ["out/out.parquet", "out/out.jsonl"])
def test_convert_refuses_bad_images_and_leaves_earlier_output(tmp_path: Path, cli_run: Any, case: str, target: str):
    make, words = BAD_IMAGES[case]
    src = data_with_bad_image(tmp_path / "src", make())
    out = tmp_path / target
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"previous output")
    code, _, stderr = cli_run(["data", "convert", str(src), str(out)])
    bad = tmp_path / "src" / "images" / "bad.png"
    one_clear_line(code, stderr, f"{src}, line 3 (id 's-3'), field 'images[0]'", str(bad), words)
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out" + out.suffix]  # no temporary left
    code, _, _ = cli_run(["data", "convert", str(src), str(out), "--check-images", "exists"])  # the opt-out
    assert code == 0 and out.read_bytes() != b"previous output"


def test_import_refuses_a_bomb_named_by_path(tmp_path: Path, cli_run: Any) -> None:
    images = tmp_path / "coco"
    images.mkdir()
    (images / "ok.png").write_bytes(png())
    (images / "bomb.png").write_bytes(bomb_png())
    rows = [
        {
            "id": f"t-{i}",
            "prompt": "Describe.",
            "chosen": "A red circle.",
            "rejected": "A star.",
            "images": ["bomb.png" if i == 2 else "ok.png"],
        }
        for i in (1, 2)
    ]
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    out = tmp_path / "out" / "pairs.jsonl"
    out.parent.mkdir()
    out.write_text("previous output\n")
    code, _, stderr = cli_run(["data", "import", "trl", str(src), str(out), "--image-root", str(images)])
    where = f"{src}, line 2 (id 't-2'), field 'images[0]'"
    one_clear_line(code, stderr, where, str(images / "bomb.png"), "over the limit of 89478485")
    assert out.read_text() == "previous output\n" and sorted(p.name for p in out.parent.iterdir()) == ["pairs.jsonl"]


def test_import_refuses_a_corrupt_embedded_image(tmp_path: Path, cli_run: Any) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("prompt", pa.string()),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("images", pa.list_(image)),
        ]
    )
    rows = [
        {
            "id": f"t-{i}",
            "prompt": "Describe.",
            "chosen": "A red circle.",
            "rejected": "A star.",
            "images": [{"bytes": corrupt_png() if i == 1 else png(), "path": None}],
        }
        for i in (0, 1)
    ]
    src = tmp_path / "src.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), src)
    out = tmp_path / "out" / "pairs.jsonl"
    code, _, stderr = cli_run(["data", "import", "trl", str(src), str(out)])
    one_clear_line(code, stderr, f"{src}, record 1 (id 't-1'), field 'images[0]'", "corrupt or truncated")
    assert not out.exists() and not (tmp_path / "out" / "images").exists()


# ---------------------------------------------------------------------------- images met at training, eval


def test_a_corrupt_image_at_training_names_file_and_line(
    tiny_dir: Callable[[str], Path], tmp_path: Path, cli_run: Any
) -> None:
    src = data_with_bad_image(tmp_path / "data", corrupt_png())  # passes the start-up check (present, non-empty)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("previous output")
    argv = [
        "train",
        "sft",
        f"model.path={tiny_dir('tiny-llava')}",
        f"data.train={src}",
        f"train.output_dir={out}",
        "train.max_steps=2",
        "train.batch_size=2",
        "--no-progress",
    ]
    code, _, stderr = cli_run(argv)
    bad = tmp_path / "data" / "images" / "bad.png"
    one_clear_line(code, stderr, f"{src}, line 3 (id 's-3'), field 'images[0]'", str(bad), "corrupt or truncated")
    assert (out / "notes.txt").read_text() == "previous output"
    assert not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()


def test_a_corrupt_image_at_evaluation_names_file_and_line(llava: Any, tmp_path: Path) -> None:
    from mmalign.eval.run.runner import OpenedImages
    from mmalign.eval.tasks.items import read_eval_items

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(png())
    (tmp_path / "images" / "bad.png").write_bytes(corrupt_png())
    rows = [
        {
            "id": f"e-{i}",
            "task": "pope",
            "question": "Is there a red circle?",
            "answer": "yes",
            "images": ["images/bad.png" if i == 2 else "images/ok.png"],
        }
        for i in (1, 2)
    ]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    items = read_eval_items(path)
    with pytest.raises(DataError) as caught:
        OpenedImages().items(items, tmp_path)
    assert str(caught.value).startswith(f"{path}, line 2 (id 'e-2'), field 'images[0]': image ")
    with pytest.raises(DataError) as caught:  # the collator (fast path, likelihoods) names it the same way
        Collator(llava.processor, mode="generate", image_root=tmp_path)(items)
    assert str(caught.value).startswith(f"{path}, line 2 (id 'e-2'), field 'images[0]': image ")


@pytest.mark.parametrize("loss", ["sigmoid", "mdpo"])  # mdpo opens the chosen images itself to corrupt them
def test_a_corrupt_image_in_a_preference_batch_names_file_and_line(llava: Any, tmp_path: Path, loss: str) -> None:
    from mmalign.losses import build_loss
    from mmalign.train.pref_batch import PreferenceCollator

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(png())
    (tmp_path / "images" / "bad.png").write_bytes(corrupt_png())
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    rows = [
        {
            "id": f"p-{i}",
            "images": ["images/bad.png" if i == 2 else "images/ok.png"],
            "prompt": prompt,
            "chosen": assistant("A red circle."),
            "rejected": assistant("A blue star."),
        }
        for i in (1, 2)
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    records = list(read_records(path, kind="preference"))
    collate = PreferenceCollator(Collator(llava.processor, image_root=tmp_path), build_loss(loss))
    with pytest.raises(DataError) as caught:
        collate(records)
    assert str(caught.value).startswith(f"{path}, line 2 (id 'p-2'), field 'images[0]': image ")


# ------------------------------------------------------------------------------ a 50 MB prompt at evaluation


def test_a_50_mb_eval_item_costs_memory_by_max_length(tiny_dir: Callable[[str], Path], tmp_path: Path) -> None:
    # before: no bound at evaluation, the whole prompt tokenised (about 150 MB per MB of text: GBs for 50 MB)
    from mmalign.eval.run.runner import Runner
    from mmalign.eval.tasks.items import read_eval_items

    loaded = load(tiny_dir("tiny-llama"))
    rows = [{"id": f"e-{i}", "task": "pope", "question": "Is there a red circle?", "answer": "yes"} for i in (1, 2)]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    items = read_eval_items(path)
    pairs_path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "id": f"p-{i}",
                "prompt": user_prompt("Describe.", 0),
                "chosen": assistant("A red circle."),
                "rejected": assistant("A blue star."),
            }
            for i in (1, 2)
        ],
    )
    pairs = list(read_records(pairs_path, kind="preference"))
    text = ("Is the red circle left of the blue square? " * 1_200_000)[:50_000_000]
    hostile = [dataclasses.replace(items[1], question=text)]
    hostile_pair = [pairs[0], dataclasses.replace(pairs[1], chosen=assistant(text))]
    runner = Runner(loaded, "f" * 64, tmp_path / "cache", batch_size=2, progress=False, max_length=256)
    calls = {
        "generate": lambda: runner.generate("pope", [items[0], *hostile], None, 4),
        "choose": lambda: runner.choose("pope", [items[0], *hostile], None),
        "pair_logps": lambda: runner.pair_logps("reward", hostile_pair, None),
    }
    for name, call in calls.items():
        with peak_rss() as peak, pytest.raises(DataError) as caught:
            call()
        where = f"{pairs_path}, line 2 (id 'p-2')" if name == "pair_logps" else f"{path}, line 2 (id 'e-2')"
        assert str(caught.value).startswith(where) and "--max-length" in str(caught.value), name
        # measured: 48 MiB each, one copy of the text made for the item's cache key; nothing tokenised past the cut
        assert peak[0] < 200 * 2**20, f"{name}: {peak[0] / 2**20:.0f} MiB"


def test_eval_items_within_max_length_give_the_same_results(tiny_dir: Callable[[str], Path], tmp_path: Path) -> None:
    from mmalign.eval.run.fastpath import choose_options
    from mmalign.eval.run.runner import Runner, options_for
    from mmalign.models.generation import generate
    from mmalign.models.logps import preference_logps

    loaded = load(tiny_dir("tiny-llama"))
    question = " ".join(WORDS * 3) + "?"
    items = [EvalItem(f"e-{i}", "pope", question[: 40 * i], "yes") for i in (1, 2, 3)]
    pairs = [
        PreferenceRecord(
            f"p-{i}", user_prompt(question[: 30 * i], 0), assistant(" ".join(WORDS[: i * 4])), assistant("A blue star.")
        )
        for i in (1, 2)
    ]
    runner = Runner(loaded, "f" * 64, tmp_path / "cache", batch_size=3, progress=False)
    assert runner.generate("pope", items, None, 6) == generate(loaded, items, max_new_tokens=6, batch_size=3)
    unbounded = choose_options(loaded, items, [options_for(i) for i in items], batch_size=3)
    assert [r["logps"] for r in runner.choose("pope", items, None)] == [
        [round(v, 6) for v in c.logps] for c in unbounded
    ]
    with torch.no_grad():
        out = preference_logps(loaded.model, Collator(loaded.processor)(pairs))
    assert [r["chosen_logp"] for r in runner.pair_logps("reward", pairs, None)] == out.chosen.sum.tolist()
