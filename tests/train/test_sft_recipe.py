"""``mmalign train sft`` end to end: a short version of the demo recipe on a tiny world, and bad input.

The accuracy the full recipe reaches is measured by bench/sft_world.py (minutes); here only the mechanics:
the loss falls, checkpoints and the final model are written, the model reloads and generates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.data.io import read_records
from mmalign.models import generate, load
from mmalign.train.callbacks import read_metrics
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "demo" / "sft.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recipe") / "world"
    generate_world(out, WorldConfig(train_scenes=60, val_scenes=8, test_scenes=8))
    return out


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private MMALIGN_HOME, so the tiny-llava preset is built here, not in the user's cache."""
    monkeypatch.setenv("MMALIGN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_short_demo_recipe_trains_saves_reloads_and_generates(world, home, tmp_path, capsys, cli_run):
    out = tmp_path / "sft"
    overrides = [
        f"data.train={world / 'train' / 'sft.jsonl'}",
        f"data.root={world}",
        f"train.output_dir={out}",
        "train.max_steps=24",
        "train.batch_size=16",
        "train.warmup_steps=2",
        "train.logging_steps=4",
        "train.save_steps=12",
    ]
    code, stdout, stderr = cli_run(["train", "sft", "--config", str(RECIPE), "--no-progress", *overrides])
    assert code == 0, stderr
    assert (home / "presets" / "tiny-llava" / "config.json").is_file()  # the preset was built on first use
    assert "step 24/24" in stdout and "tok/s" in stdout and "ex/s" in stdout
    assert f"metrics in {out / 'metrics.jsonl'}" in stdout

    losses = [row["loss"] for row in read_metrics(out / "metrics.jsonl") if "loss" in row]
    assert len(losses) == 6
    assert losses[-1] < 0.6 * losses[0]  # from ~6.6 (about ln 1024 at random) well down
    for step in (12, 24):
        assert (out / f"checkpoint-{step}" / "trainer_state.json").is_file()
        assert (out / f"checkpoint-{step}" / "processor_config.json").is_file()  # checkpoints load on their own
    result = json.loads((out / "train_result.json").read_text())
    assert result["global_step"] == 24 and result["examples"] == 24 * 16 and result["model_dir"] == str(out)

    loaded = load(out)
    assert not list(out.glob("*.bin")) and (out / "model.safetensors").is_file()
    items = list(read_records(world / "test" / "pope_random.jsonl", kind="eval", root=world))[:4]
    answers = generate(loaded, items, max_new_tokens=4, image_root=world)
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    assert load(out / "checkpoint-12").model.config.model_type == "llava"


def test_unknown_config_key_is_one_clear_line(world, home, tmp_path, capsys, cli_run):
    code, _, stderr = cli_run(["train", "sft", "--config", str(RECIPE), "train.learnign_rate=1e-3"])
    assert code == 2
    assert "unknown key 'train.learnign_rate'" in stderr and "allowed here:" in stderr
    assert "Traceback" not in stderr


def test_unknown_key_in_yaml_names_the_file(tmp_path, capsys, cli_run):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: sft\ndata:\n  train: x.jsonl\nmodle:\n  path: tiny-llava\n")
    code, _, stderr = cli_run(["train", "sft", "--config", str(path)])
    assert code == 2 and str(path) in stderr and "unknown key 'modle'" in stderr


def test_bad_records_fail_before_training_with_their_line(world, home, tmp_path, capsys, cli_run):
    data = tmp_path / "mixed.jsonl"
    lines = (world / "train" / "sft.jsonl").read_text().splitlines()[:2]
    lines.append((world / "test" / "pope_random.jsonl").read_text().splitlines()[0])  # an eval item, not SFT
    data.write_text("\n".join(lines) + "\n")
    argv = ["train", "sft", f"data.train={data}", f"data.root={world}", f"train.output_dir={tmp_path / 'o'}"]
    code, _, stderr = cli_run(argv)
    assert code == 2 and "Traceback" not in stderr
    assert "mixed.jsonl" in stderr and "line 3" in stderr
    assert not (tmp_path / "o" / "checkpoint-1").exists()


def test_missing_data_and_missing_model_are_clear(world, home, tmp_path, capsys, cli_run):
    code, _, stderr = cli_run(["train", "sft", f"data.train={tmp_path / 'nope.jsonl'}"])
    assert code == 2 and "nope.jsonl" in stderr and "no such file" in stderr
    argv = ["train", "sft", "model.path=no-such-model", f"data.train={world / 'train' / 'sft.jsonl'}"]
    code, _, stderr = cli_run(argv)
    assert code == 2 and "'no-such-model' is neither an existing directory nor a preset" in stderr


def test_output_dir_with_a_run_needs_resume(world, home, tmp_path, capsys, cli_run):
    out = tmp_path / "taken"
    (out / "checkpoint-5").mkdir(parents=True)
    argv = ["train", "sft", f"data.train={world / 'train' / 'sft.jsonl'}", f"train.output_dir={out}"]
    code, _, stderr = cli_run(argv)
    assert code == 2 and "already holds a run" in stderr and "train.resume=true" in stderr


def test_show_options_lists_every_section(capsys, cli_run):
    code, stdout, _ = cli_run(["train", "sft", "--show-options"])
    assert code == 0
    keys = ("model.path", "model.lora.r", "data.max_length", "train.learning_rate", "train.resume", "sft.merge_lora")
    assert all(key in stdout for key in keys)
