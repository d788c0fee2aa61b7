"""Video DPO end to end through the CLI: pairs built from a tiny moving world (``mmalign data build --strategy
video-hallucinate`` / ``video-corrupt``), then two steps of ``mmalign train pref`` on each with the tiny LLaVA:
DPO on the temporal-hallucination pairs, mDPO on the shuffled / dropped-frame pairs."""

from __future__ import annotations

import math

import pytest
import yaml

from mmalign.cli.main import main
from mmalign.models import load
from mmalign.train.callbacks import read_metrics
from mmalign.world.config import WorldConfig
from mmalign.world.video import generate_video_world

pytestmark = pytest.mark.usefixtures("one_thread")

CLIPS = WorldConfig(video=True, train_scenes=4, val_scenes=1, test_scenes=1, image_size=48, min_events=2)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert int(exit_info.value.code or 0) == 0, captured.err
    return captured.out


@pytest.mark.parametrize(
    ("strategy", "options", "loss"),
    [
        ("video-hallucinate", ["video=frames", "num_frames=4", "kinds=[order, invent, static]"], "sigmoid"),
        ("video-corrupt", ["num_frames=4", "modes=[shuffle]"], "mdpo"),
    ],
)
def test_two_steps_of_video_preference_training_on_built_pairs(strategy, options, loss, tiny_dir, tmp_path, capsys):
    world = tmp_path / "w"
    generate_video_world(world, CLIPS)
    pairs = world / "pairs" / f"{strategy}.jsonl"
    flags = [f for option in options for f in ("--option", option)]
    out = run(["data", "build", "--strategy", strategy, "--world", str(world), *flags, str(pairs)], capsys)
    assert f"from 4 clips of video world {world} (train)" in out

    out_dir = tmp_path / "run"
    config = {
        "kind": "pref",
        "model": {"path": str(tiny_dir("tiny-llava"))},
        "data": {"train": str(pairs), "max_length": 160},
        "train": {
            "output_dir": str(out_dir),
            "batch_size": 2,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
        },
        "loss": {"name": loss},
    }
    (tmp_path / "pref.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = run(["train", "pref", "--config", str(tmp_path / "pref.yaml"), "--no-progress"], capsys)
    assert "trained 2 steps" in out
    rows = [r for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    # Step 1: policy = reference, every log-ratio is 0, each term is -log σ(0) = ln 2: DPO has one term, mDPO three
    # (DPO, the conditional term on the corrupted clip, the anchor with δ = 0), weights 1: 3 ln 2 = 2.0794.
    assert rows[0]["loss"] == pytest.approx((1 if loss == "sigmoid" else 3) * math.log(2), abs=1e-5)
    assert rows[1]["loss"] < rows[0]["loss"]
    assert load(out_dir).family.name == "llava"  # the saved model loads
