"""The shipped SFT baseline: it verifies, damage is found and named, export round-trips, worlds must match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmalign.demo import checkpoint
from mmalign.errors import ConfigError, DataError
from mmalign.world.config import WorldConfig


def test_the_shipped_baseline_verifies_and_is_a_small_safetensors_model():
    manifest = checkpoint.verify()
    files = manifest["files"]
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # no pickle
    size = sum((checkpoint.shipped_dir() / name).stat().st_size for name in files)
    assert size < 8e6, f"the shipped baseline should stay a few MB, it is {size / 1e6:.1f} MB"
    assert manifest["command"] == checkpoint.REGENERATE
    assert manifest["recipe"]["config_file"] == "configs/demo/sft.yaml"
    assert manifest["recipe"]["config"]["kind"] == "sft"
    checkpoint.check_world(manifest, WorldConfig(test_scenes=400, val_scenes=0).to_dict())  # the demo's world


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    out = tmp_path / "baseline"
    shutil.copytree(checkpoint.shipped_dir(), out)
    return out


def test_a_changed_file_is_named(copy):
    config = json.loads((copy / "config.json").read_text())
    config["_name_or_path"] = "tampered"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"config.json: SHA-256 differs"):
        checkpoint.verify(copy)


def test_a_missing_or_unlisted_file_is_named(copy):
    (copy / "tokenizer.json").rename(copy / "extra.json")
    with pytest.raises(DataError, match=r"tokenizer.json: missing"):
        checkpoint.verify(copy)
    shutil.copyfile(copy / "extra.json", copy / "tokenizer.json")
    with pytest.raises(DataError, match=r"model files not in baseline.json: extra.json"):
        checkpoint.verify(copy)


def test_a_directory_without_manifest_is_not_a_baseline(tmp_path):
    with pytest.raises(DataError, match="not a demo baseline"):
        checkpoint.verify(tmp_path)
    (tmp_path / checkpoint.MANIFEST).write_text('{"format": "other"}')
    with pytest.raises(DataError, match="unknown baseline format"):
        checkpoint.verify(tmp_path)


def test_export_writes_model_files_and_a_manifest_that_verifies(copy, tmp_path):
    (copy / "metrics.jsonl").write_text("{}\n")  # training logs and pickles are not model files
    (copy / "training_args.bin").write_bytes(b"pickle")
    (copy / "checkpoint-10").mkdir()
    dest = tmp_path / "exported"
    manifest = checkpoint.export(
        copy, dest, recipe={"config_file": "x.yaml"}, world={"seed": 0}, training={"global_step": 3}
    )
    assert sorted(p.name for p in dest.iterdir()) == sorted([*manifest["files"], checkpoint.MANIFEST])
    assert "metrics.jsonl" not in manifest["files"] and "training_args.bin" not in manifest["files"]
    assert checkpoint.verify(dest)["training"] == {"global_step": 3}
    assert manifest["files"]["model.safetensors"] == checkpoint.sha256(copy / "model.safetensors")


def test_copy_model_refuses_a_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="no safetensors weights"):
        checkpoint.copy_model(tmp_path, tmp_path / "out")


def test_another_world_is_refused_but_other_split_sizes_are_fine():
    manifest = {"world": WorldConfig().to_dict()}
    checkpoint.check_world(manifest, WorldConfig(train_scenes=300, test_scenes=24, val_scenes=0).to_dict())
    with pytest.raises(ConfigError, match=r"another world \(caption_noise 0.6 → 0.2, seed 0 → 1\).*--from-scratch"):
        checkpoint.check_world(manifest, WorldConfig(seed=1, caption_noise=0.2).to_dict())
