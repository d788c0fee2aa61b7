"""``mmalign model init`` / ``info`` through the CLI entry point: tables on success, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch


def test_init_default_preset_then_info(tmp_path, capsys, cli_run):
    out = tmp_path / "m"
    code, stdout, _ = cli_run(["model", "init", "--out", str(out)])
    assert code == 0
    assert json.loads((out / "mmalign.json").read_text())["preset"] == "tiny-llava"
    assert "llava" in stdout and "9 per 48x48 image" in stdout
    code, stdout, _ = cli_run(["model", "info", str(out)])
    assert code == 0 and "LlavaForConditionalGeneration" in stdout and "float32" in stdout


def test_init_arch_with_overrides(tmp_path, capsys, cli_run):
    out = tmp_path / "q"
    argv = ["model", "init", "--arch", "qwen2_vl", "--out", str(out), "--image-size", "32", "--text-layers", "1"]
    code, stdout, _ = cli_run(argv)
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 1
    assert "4 per 32x32 image" in stdout  # (32 / 8)^2 = 16 patches, merged 2x2 -> 4 tokens


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model", "init", "--arch", "llava", "--preset", "tiny-llava"], "give a preset or an arch, not both"),
        (["model", "init", "--arch", "llava", "--patch-size", "7"], "image_size 48 must be a multiple of 7"),
        (["model", "info", "{tmp}/missing"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, capsys, argv, message, cli_run):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[1] == "init":
        argv += ["--out", str(tmp_path / "out")]
    code, _, err = cli_run(argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_init_refuses_a_full_directory_and_info_refuses_pickles(tmp_path, capsys, cli_run):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli_run(["model", "init", "--out", str(out)])
    assert code == 2 and "already exists and is not empty" in err
    assert (out / "notes.txt").read_text() == "mine"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llava"}))
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    code, _, err = cli_run(["model", "info", str(pickled)])
    assert code == 2 and "pytorch_model.bin" in err and "safetensors" in err and "Traceback" not in err
