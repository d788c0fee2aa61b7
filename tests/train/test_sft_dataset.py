"""RecordDataset (kinds, limit, fingerprint, located errors), preset resolution and the training log."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from mmalign.data.io import write_jsonl
from mmalign.data.records import PreferenceRecord, SFTRecord, assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.train.callbacks import TrainingLog, read_metrics
from mmalign.train.dataset import RecordDataset
from mmalign.train.presets import mmalign_home, resolve_model_path


def sft_row(i: int, text: str = "There is a red circle.") -> dict:
    return SFTRecord(f"s-{i}", user_prompt("Describe the image.", 1), assistant(text), [f"img/{i}.png"]).to_dict()


def pref_row(i: int) -> dict:
    record = PreferenceRecord(
        f"p-{i}", user_prompt("Describe.", 1), assistant("A red circle."), assistant("A red star."), [f"img/{i}.png"]
    )
    return record.to_dict()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    (tmp_path / "img").mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "img" / f"{i}.png")
    write_jsonl(tmp_path / "sft.jsonl", [sft_row(i) for i in range(6)])
    write_jsonl(tmp_path / "pref.jsonl", [pref_row(i) for i in range(3)])
    return tmp_path


def test_reads_records_in_order_with_limit(data_dir):
    full = RecordDataset.from_file(data_dir / "sft.jsonl")
    assert len(full) == 6 and [r.id for r in full] == [f"s-{i}" for i in range(6)]
    assert full.root == data_dir.resolve() and full.kinds() == {"sft": 6}
    short = RecordDataset.from_file(data_dir / "sft.jsonl", limit=2)
    assert [short[i].id for i in range(len(short))] == ["s-0", "s-1"]
    pairs = RecordDataset.from_file(data_dir / "pref.jsonl", kinds=("preference",))
    assert pairs.kinds() == {"preference": 3} and isinstance(pairs[0], PreferenceRecord)


def test_wrong_kind_is_located(data_dir):
    rows = [sft_row(0), pref_row(1)]
    write_jsonl(data_dir / "mixed.jsonl", rows)
    with pytest.raises(DataError) as err:
        RecordDataset.from_file(data_dir / "mixed.jsonl", kinds=("sft", "eval"))
    assert "mixed.jsonl" in str(err.value) and "record 1" in str(err.value) and "'p-1'" in str(err.value)
    assert "a preference record where sft or eval records are expected" in str(err.value)


def test_missing_image_and_empty_file_fail_at_start(data_dir):
    write_jsonl(data_dir / "gone.jsonl", [sft_row(0), sft_row(9)])
    with pytest.raises(DataError, match=r"line 2 \(id 's-9'\), field 'images\[0\]': image file not found"):
        RecordDataset.from_file(data_dir / "gone.jsonl")
    (data_dir / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="no records"):
        RecordDataset.from_file(data_dir / "empty.jsonl")
    with pytest.raises(ConfigError, match="record kinds"):
        RecordDataset.from_file(data_dir / "sft.jsonl", kinds=("sft", "pairs"))


def test_fingerprint_follows_content(data_dir):
    a = RecordDataset.from_file(data_dir / "sft.jsonl").fingerprint()
    assert a == RecordDataset.from_file(data_dir / "sft.jsonl").fingerprint()
    assert len(a) == 64
    edited = [sft_row(i) for i in range(6)]
    edited[3] = sft_row(3, "There is a red star.")
    write_jsonl(data_dir / "edited.jsonl", edited)
    assert RecordDataset.from_file(data_dir / "edited.jsonl").fingerprint() != a
    assert RecordDataset.from_file(data_dir / "sft.jsonl", limit=5).fingerprint() != a
    in_memory = [
        SFTRecord("m", user_prompt("Describe.", 1), assistant("x"), [Image.new("RGB", (4, 4), c)])
        for c in ((1, 2, 3), (3, 2, 1))
    ]
    prints = {RecordDataset([r]).fingerprint() for r in in_memory}
    assert len(prints) == 2  # same id and text, different pixels


def test_presets_resolve_under_mmalign_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMALIGN_HOME", str(tmp_path / "home"))
    assert mmalign_home() == tmp_path / "home"
    built = resolve_model_path("tiny-llama")
    assert built == tmp_path / "home" / "presets" / "tiny-llama" and (built / "config.json").is_file()
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("tiny-llama") == built and (built / "model.safetensors").stat().st_mtime_ns == stamp
    assert resolve_model_path(str(built)) == built  # an existing directory is used as it is
    with pytest.raises(ConfigError, match="neither an existing directory nor a preset"):
        resolve_model_path("tiny-gpt")
    monkeypatch.delenv("MMALIGN_HOME")
    assert mmalign_home() == Path.home() / ".cache" / "mmalign"


def _state(step: int, tokens: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=100, epoch=step / 50, num_input_tokens_seen=tokens)


def test_training_log_lines_file_and_resume_truncation(tmp_path):
    args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=2, world_size=1)
    lines: list[str] = []
    log = TrainingLog(tmp_path, progress=False, write=lines.append)
    log.on_train_begin(args, _state(0, 0), None)
    log._last_time -= 2.0  # pretend the first 10 steps took 2 s
    log.on_log(args, _state(10, 3200), None, logs={"loss": 1.25, "learning_rate": 2e-3, "grad_norm": 0.5})
    row = read_metrics(tmp_path / "metrics.jsonl")[0]
    # 10 steps x 8 x 2 examples in ~2 s = ~80 examples/s; 3200 tokens in ~2 s = ~1600 tokens/s
    assert row["step"] == 10 and row["loss"] == 1.25
    assert row["examples_per_s"] == pytest.approx(80, rel=0.05)
    assert row["tokens_per_s"] == pytest.approx(1600, rel=0.05)
    assert lines[0].startswith("step 10/100  loss 1.2500  lr 2.00e-03  grad_norm 0.5000")
    assert "tok/s" in lines[0] and "ex/s" in lines[0]
    log.on_log(args, _state(20, 6400), None, logs={"loss": 1.0})
    log.on_log(args, _state(20, 6400), None, logs={"eval_loss": 0.9, "eval_runtime": 1.0})
    assert lines[-1] == "step 20/100  eval_loss 0.9000  eval_runtime 1.0000"

    resumed = TrainingLog(tmp_path, progress=False, write=lines.append)
    resumed.on_train_begin(args, _state(10, 3200), None)  # back to the checkpoint of step 10
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [10]
    fresh = TrainingLog(tmp_path, progress=False, write=lines.append)
    fresh.on_train_begin(args, _state(0, 0), None)
    assert read_metrics(tmp_path / "metrics.jsonl") == []
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1}) + '\n{"step": 2, "lo')
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1}]  # a line cut by a crash is skipped
