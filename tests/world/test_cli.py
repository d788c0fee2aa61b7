"""``mmalign world`` and the interim ``mmalign demo``, called in-process."""

from __future__ import annotations

import json

import pytest

from mmalign.cli.main import main


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_world_command_writes_a_world_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["world", "--out", str(out), "--scenes", "40", "--size", "32", "--seed", "3", "--caption-noise", "1.0"]
    assert run([*args, "--partner-prob", "0.6", "--val-scenes", "8", "--test-scenes", "6", "--no-sizes"]) == 0
    text = capsys.readouterr().out
    info = json.loads((out / "world.json").read_text())
    cfg = info["config"]
    assert (cfg["train_scenes"], cfg["val_scenes"], cfg["test_scenes"], cfg["image_size"]) == (40, 8, 6, 32)
    assert (cfg["seed"], cfg["caption_noise"], cfg["partner_prob"], cfg["object_sizes"]) == (3, 1.0, 0.6, False)
    assert info["caption_noise"]["rate"] == 1.0
    for needle in ("Scenes", "train", "Most co-occurring pairs", "caption noise", "Files written", str(out)):
        assert needle in text, needle
    assert f"{info['caption_noise']['noisy']} of {info['caption_noise']['eligible']} eligible" in text
    assert len(list((out / "images/val").glob("*.png"))) == 8


def test_world_options_from_yaml_with_command_line_on_top(tmp_path, capsys):
    config = tmp_path / "world.yaml"
    config.write_text("train_scenes: 20\nn_colours: 3\nn_shapes: 3\nn_partner_pairs: 2\nimage_size: 24\n")
    out = tmp_path / "w"
    assert run(["world", "--out", str(out), "--config", str(config), "--shapes", "4"]) == 0
    cfg = json.loads((out / "world.json").read_text())["config"]
    assert (cfg["train_scenes"], cfg["n_colours"], cfg["n_shapes"], cfg["n_partner_pairs"]) == (20, 3, 4, 2)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-objects", "10"], "max_objects (10) exceeds the 9 grid cells"),
        (["--caption-noise", "2"], "key 'caption_noise' must be a finite number in [0, 1], got 2.0"),
        (["--pairs", "11"], "n_partner_pairs must be between 0 and 10"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, extra, needle):
    assert run(["world", "--out", str(tmp_path / "w"), "--scenes", "5", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_unknown_yaml_key_and_existing_world_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "world.yaml"
    config.write_text("train_scenes: 5\ncaption_nosie: 0.2\n")
    assert run(["world", "--out", str(tmp_path / "w"), "--config", str(config)]) == 2
    assert "unknown key 'caption_nosie'" in capsys.readouterr().err
    out = tmp_path / "w2"
    assert run(["world", "--out", str(out), "--scenes", "5", "--size", "24"]) == 0
    assert run(["world", "--out", str(out), "--scenes", "5", "--size", "24"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(["world", "--out", str(out), "--scenes", "6", "--size", "24", "--overwrite"]) == 0


def test_world_help_shows_documented_options(capsys):
    assert run(["world", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())  # rich wraps help text inside a box
    for needle in ("--caption-noise", "--partner-prob", "--workers", "noisy web captions", "(default: 0.8)"):
        assert needle in text, needle
