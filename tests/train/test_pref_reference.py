"""Reference log-probs: the LoRA base with the adapter disabled, and the precomputed cache (equal to the live
reference, reused on rerun, recomputed whenever the data, an image file or the weights change, never read stale)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from mmalign.config import config_from_dict
from mmalign.data.io import read_records, write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import DataError
from mmalign.losses import build_loss
from mmalign.models import load, preference_logps
from mmalign.models.logps import sequence_logps
from mmalign.train import reference_cache as reference_module
from mmalign.train.pref_batch import PreferenceCollator
from mmalign.train.preference import PreferenceConfig, build_trainer
from mmalign.train.reference import AdapterReference, ModelReference, frozen_copy
from mmalign.train.reference_cache import CachedReference, precompute_reference


def record(i: int, text: str = "There is a red circle.") -> PreferenceRecord:
    img = Image.new("RGB", (48, 48), (64, 64, 64))
    ImageDraw.Draw(img).ellipse((4 + 3 * i, 8, 28 + 3 * i, 32), fill=(220, 40 + 30 * i, 40))
    return PreferenceRecord(
        f"r-{i}",
        user_prompt("Describe the image."),
        assistant(text),
        assistant(f"There is a blue star and {'a green square ' * (i % 2)}nothing else."),
        [img],
        rejected_spans=[[9, 20]],
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tiny_dir) -> Path:
    return tiny_dir("tiny-llava")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Four pairs in a JSONL file with their images as PNG files beside it."""
    path = tmp_path / "data" / "pairs.jsonl"
    write_records(path, [record(i) for i in range(4)])
    return path


def collator_for(loaded, loss_name: str, root: Path | None = None) -> PreferenceCollator:
    return PreferenceCollator(loaded.collator(mode="train", image_root=root), build_loss(loss_name), seed=3)


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_lora_reference_is_the_base_model(preset, tiny_dir):
    model_dir = tiny_dir(preset)
    base = load(model_dir)
    lora = load(model_dir, lora={"r": 4, "alpha": 8, "dropout": 0.1})
    with torch.no_grad():  # move the adapter off zero, so the adapted model differs from its base
        for name, parameter in lora.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    lora.model.train()
    batch = collator_for(lora, "sigmoid")([record(i) for i in range(3)])
    ref = AdapterReference(token_level=False, scorer=sequence_logps).logps(lora.model, batch)
    assert lora.model.training  # the train mode is restored after the reference pass
    with torch.no_grad():
        want = preference_logps(base.model, batch.rows)
        adapted = preference_logps(lora.model.eval(), batch.rows)
    torch.testing.assert_close(ref.chosen, want.chosen.sum, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref.rejected, want.rejected.sum, atol=1e-5, rtol=0)
    assert (adapted.chosen.sum - want.chosen.sum).abs().max() > 1e-2  # the adapter does change the policy


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl"])
@pytest.mark.parametrize("loss_name", ["sigmoid", "mdpo", "ddpo"])
def test_precomputed_equals_the_live_reference(loss_name, preset, tiny_dir, data, tmp_path):
    model_dir = tiny_dir(preset)
    loaded = load(model_dir)
    records = list(read_records(data))
    collator = collator_for(loaded, loss_name, data.parent)
    cached = precompute_reference(
        loaded.model, records, collator, loaded.processor, tmp_path / "cache", batch_size=3, scorer=sequence_logps
    )
    live = ModelReference(frozen_copy(loaded.model), collator.loss.needs_token_weights, sequence_logps)
    batch = collator([records[3], records[1]])  # another batching than the precompute pass
    got, want = cached.logps(loaded.model, batch), live.logps(loaded.model, batch)
    for name in ("chosen", "rejected", "corrupted_chosen", "chosen_token_logps", "rejected_token_logps"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)
    assert (got.corrupted_chosen is not None) == (loss_name == "mdpo")
    assert (got.chosen_token_logps is not None) == (loss_name == "ddpo")


class Counter:
    """Wraps the cache's compute pass and counts the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = reference_module._compute

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(reference_module, "_compute", counted)


def test_cache_is_reused_and_never_read_stale(model_dir, data, tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    loaded = load(model_dir)
    cache = tmp_path / "cache"

    def run(records, model=loaded.model) -> CachedReference:
        return precompute_reference(
            model,
            records,
            collator_for(loaded, "sigmoid", data.parent),
            loaded.processor,
            cache,
            batch_size=4,
            scorer=sequence_logps,
        )

    records = list(read_records(data))
    first = run(records)
    assert counter.calls == 1 and len(list(cache.iterdir())) == 1
    again = run(list(read_records(data)))  # a rerun: same records, same weights
    assert counter.calls == 1
    torch.testing.assert_close(again.tensors["chosen"], first.tensors["chosen"])

    edited = [
        PreferenceRecord(r.id, r.prompt, assistant("There is a green square."), r.rejected, r.images)
        if r.id == "r-2"
        else r
        for r in records
    ]
    changed_text = run(edited)
    assert counter.calls == 2 and len(list(cache.iterdir())) == 2
    assert changed_text.tensors["chosen"][2] != first.tensors["chosen"][2]

    image = data.parent / records[0].images[0]  # an image file rewritten in place: same path, new pixels
    Image.new("RGB", (48, 48), (250, 250, 250)).save(image)
    os.utime(image, ns=(os.stat(image).st_atime_ns, os.stat(image).st_mtime_ns + 10**9))
    new_image = run(list(read_records(data)))
    assert counter.calls == 3
    assert new_image.tensors["chosen"][0] != first.tensors["chosen"][0]

    moved = frozen_copy(loaded.model)
    with torch.no_grad():
        next(p for n, p in moved.named_parameters() if "embed_tokens" in n).mul_(1.5)
    other_weights = run(list(read_records(data)), moved)
    assert counter.calls == 4
    assert other_weights.tensors["chosen"][1] != new_image.tensors["chosen"][1]


def test_a_stale_or_damaged_file_under_the_expected_name_is_recomputed(model_dir, data, tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    loaded = load(model_dir)
    records = list(read_records(data))
    args = (loaded.processor, tmp_path / "cache")

    def run(rs):
        return precompute_reference(
            loaded.model, rs, collator_for(loaded, "sigmoid", data.parent), *args, batch_size=4, scorer=sequence_logps
        )

    good = run(records)
    (path,) = good.files
    shorter = run(records[:3])  # another cache file, for other data
    shutil.copy(shorter.files[0], path)  # ... planted under the first one's name: its stored keys do not match
    again = run(records)
    assert counter.calls == 3
    torch.testing.assert_close(again.tensors["chosen"], good.tensors["chosen"])
    path.write_bytes(b"not a safetensors file")
    assert run(records).tensors["chosen"].shape == (4,) and counter.calls == 4


def test_duplicate_ids_are_refused(model_dir, tmp_path):
    loaded = load(model_dir)
    with pytest.raises(DataError, match="duplicate record id"):
        precompute_reference(
            loaded.model,
            [record(0), record(0)],
            collator_for(loaded, "sigmoid"),
            loaded.processor,
            tmp_path,
            batch_size=2,
            scorer=sequence_logps,
        )


def test_trainer_with_precomputed_reference(model_dir, data, tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    settings = {
        "model": {"path": str(model_dir), "lora": {"enabled": True, "r": 4, "dropout": 0.0}},
        "data": {"train": str(data), "eval": str(data)},
        "train": {
            "output_dir": str(tmp_path / "run"),
            "batch_size": 2,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "eval_steps": 2,
        },
        "loss": {"name": "mdpo"},
        "reference": {"mode": "precomputed", "cache_dir": str(tmp_path / "cache")},
    }
    config = config_from_dict(PreferenceConfig, settings, "test")
    trainer = build_trainer(config, load(model_dir, **config.model.load_options()))
    assert isinstance(trainer.reference, CachedReference) and counter.calls == 2  # train and eval splits
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses[0] == pytest.approx(3 * 0.6931472, abs=1e-5)  # LoRA starts as the base: every log-ratio is 0
    assert losses[1] < losses[0]
    # Reference-free losses never compute or read one.
    free = config_from_dict(PreferenceConfig, {**settings, "loss": {"name": "simpo"}, "reference": {}}, "test")
    assert build_trainer(free, load(model_dir, **free.model.load_options())).reference is None
    rebuilt = build_trainer(config, load(model_dir, **config.model.load_options()))
    assert counter.calls == 2 and len(rebuilt.reference.files) == 2  # both read back from the cache
