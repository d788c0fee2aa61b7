"""Training on video records (frame lists of solid-colour clips): the precomputed reference equals the in-memory
one, mDPO's corrupted video, a two-step ``mmalign train pref`` run through the CLI, and an SFT step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mmalign.cli.main import main
from mmalign.config import config_from_dict
from mmalign.data.io import read_records
from mmalign.losses import build_loss
from mmalign.models import load
from mmalign.models.logps import sequence_logps
from mmalign.train.callbacks import read_metrics
from mmalign.train.pref_batch import PreferenceCollator
from mmalign.train.preference import PreferenceConfig, build_trainer
from mmalign.train.reference import ModelReference, frozen_copy
from mmalign.train.reference_cache import CachedReference, precompute_reference

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (220, 220, 30)}
CLIPS = [("red", "green"), ("blue", "yellow"), ("green", "blue"), ("yellow", "red")]


def write_pairs(root: Path, n_frames: int = 4) -> Path:
    """Four pairs: a clip that turns from one colour to another (solid frames, PNG files); chosen says so, rejected
    says the clip stays the first colour (a static caption for a changing clip)."""
    rows = []
    for i, (a, b) in enumerate(CLIPS):
        frames = []
        for k in range(n_frames):
            path = root / "frames" / f"c{i}" / f"{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 48), COLOURS[a if k < n_frames // 2 else b]).save(path)
            frames.append(path.relative_to(root).as_posix())
        rows.append(
            {
                "id": f"clip-{i}",
                "prompt": [
                    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the clip."}]}
                ],
                "chosen": [{"role": "assistant", "content": f"The clip turns from {a} to {b}."}],
                "rejected": [{"role": "assistant", "content": f"The clip stays {a}."}],
                "videos": [{"frames": frames}],
            }
        )
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "data")


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
@pytest.mark.parametrize("loss_name", ["sigmoid", "mdpo"])
def test_precomputed_reference_equals_the_live_one_on_video_pairs(preset, loss_name, tiny_dir, data, tmp_path):
    loaded = load(tiny_dir(preset))
    records = list(read_records(data))
    loss = build_loss(loss_name, corruption="mask") if loss_name == "mdpo" else build_loss(loss_name)
    collator = PreferenceCollator(loaded.collator(mode="train", image_root=data.parent), loss, seed=3)
    cached = precompute_reference(
        loaded.model, records, collator, loaded.processor, tmp_path / "cache", batch_size=3, scorer=sequence_logps
    )
    live = ModelReference(frozen_copy(loaded.model), False, sequence_logps)
    batch = collator([records[3], records[0]])  # another batching than the precompute pass
    got, want = cached.logps(loaded.model, batch), live.logps(loaded.model, batch)
    torch.testing.assert_close(got.chosen, want.chosen, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.rejected, want.rejected, atol=1e-5, rtol=0)
    assert (got.corrupted_chosen is None) == (loss_name == "sigmoid")
    if loss_name == "mdpo":  # every frame corrupted, seeded by the record: the same m' in both passes
        torch.testing.assert_close(got.corrupted_chosen, want.corrupted_chosen, atol=1e-5, rtol=0)
        assert (got.corrupted_chosen - got.chosen).abs().min() > 1e-3  # m' (frames masked) is not the clip itself
    # A changed frame file gives another fingerprint: the cache is recomputed, never read stale.
    frame = data.parent / "frames" / "c1" / "000.png"
    Image.new("RGB", (48, 48), (0, 0, 0)).save(frame)
    again = precompute_reference(
        loaded.model, records, collator, loaded.processor, tmp_path / "cache", batch_size=3, scorer=sequence_logps
    )
    assert len(list((tmp_path / "cache").iterdir())) == 2 and again.files != cached.files


def test_a_precomputed_reference_step_equals_the_in_memory_one(tiny_dir, data, tmp_path):
    def losses(reference: dict, name: str) -> list[float]:
        settings = {
            "model": {"path": str(tiny_dir("tiny-qwen2-vl"))},
            "data": {"train": str(data)},
            "train": {
                "output_dir": str(tmp_path / name),
                "batch_size": 2,
                "max_steps": 2,
                "logging_steps": 1,
                "learning_rate": 1e-3,
                "seed": 5,
            },
            "loss": {"name": "sigmoid"},
            "reference": reference,
            "share_prefix": True,
        }
        config = config_from_dict(PreferenceConfig, settings, "test")
        trainer = build_trainer(config, load(tiny_dir("tiny-qwen2-vl"), **config.model.load_options()))
        assert isinstance(trainer.reference, CachedReference) == (reference.get("mode") == "precomputed")
        trainer.train()
        return [row["loss"] for row in trainer.state.log_history if "loss" in row]

    cached = losses({"mode": "precomputed", "cache_dir": str(tmp_path / "cache")}, "cached")
    live = losses({"mode": "model"}, "live")
    assert cached[0] == pytest.approx(0.6931472, abs=1e-5)  # step 1: policy = reference, every log-ratio is 0
    assert cached == pytest.approx(live, abs=1e-5)  # step 2 too: the same updated policy against the same reference


def test_train_pref_runs_two_steps_on_video_pairs(tiny_dir, data, tmp_path, capsys, caplog):
    out_dir = tmp_path / "run"
    config = {
        "kind": "pref",
        "model": {"path": str(tiny_dir("tiny-llava"))},
        "data": {"train": str(data), "max_length": 36, "video_overflow": "thin"},
        "train": {
            "output_dir": str(out_dir),
            "batch_size": 2,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
        },
        "loss": {"name": "sigmoid"},
    }
    (tmp_path / "pref.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "pref", "--config", str(tmp_path / "pref.yaml"), "--no-progress"])
    captured = capsys.readouterr()
    assert int(exit_info.value.code or 0) == 0, captured.err
    assert "trained 2 steps" in captured.out
    rows = [r for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["loss"] == pytest.approx(0.6931472, abs=1e-5)
    assert "video_overflow=thin" in caplog.text  # 4 frames x 9 tokens do not fit 36 tokens: thinned, and said


def test_an_sft_step_on_video_records_trains_the_vision_tower(tiny_dir, data, tmp_path):
    """SFT shares the collator: one step on Qwen2-VL video records moves the vision tower (the frames reach it
    through pixel_values_videos) and the language model."""
    from mmalign.train.sft import SFTConfig
    from mmalign.train.sft import build_trainer as build_sft

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    sft = data.parent / "sft.jsonl"
    sft.write_text(
        "".join(
            json.dumps({"id": r["id"], "prompt": r["prompt"], "completion": r["chosen"], "videos": r["videos"]}) + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    settings = {
        "model": {"path": str(tiny_dir("tiny-qwen2-vl"))},
        "data": {"train": str(sft)},
        "train": {"output_dir": str(tmp_path / "sft"), "batch_size": 4, "max_steps": 1, "learning_rate": 1e-3},
    }
    config = config_from_dict(SFTConfig, settings, "test")
    loaded = load(tiny_dir("tiny-qwen2-vl"), **config.model.load_options())
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    trainer, _ = build_sft(config, loaded, [])
    trainer.train()
    changed = {n for n, p in loaded.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(".visual.patch_embed." in n for n in changed)  # the Conv3d that reads frame pairs
    assert any(".language_model." in n for n in changed)
