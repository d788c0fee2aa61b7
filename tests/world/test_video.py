"""The moving world (``mmalign world --video``): ground truth checked by replaying the events, frames and mp4s that
agree pixel for pixel, determinism, disjoint splits, atomic writes, and the still world left byte-identical."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmalign.cli.main import main
from mmalign.data.video import Sampling, open_video
from mmalign.errors import ConfigError, DataError
from mmalign.world import video as video_module
from mmalign.world.clips import make_clip
from mmalign.world.config import VIDEO_FIELDS, WorldConfig
from mmalign.world.generate import generate_world
from mmalign.world.scene import Scene, SceneObject
from mmalign.world.text import clip_caption, event_sentence
from mmalign.world.video import generate_video_world, read_clips

CLIPS = WorldConfig(video=True, train_scenes=6, val_scenes=3, test_scenes=3, image_size=48, max_events=4)


@pytest.fixture(scope="module")
def video_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("video") / "w"
    generate_video_world(out, CLIPS)
    return out


def rows(world: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (world / split / "clips.jsonl").read_text().splitlines()]


def replay(start: list[str], events: list[dict], n_frames: int) -> list[list[str]]:
    """The names present in each frame from frame 0's names and the events alone (sorted within a frame)."""
    present, by_frame, out = set(start), {e["frame"]: e for e in events}, []
    for i in range(n_frames):
        event = by_frame.get(i)
        if event is not None:
            kind, name = event["type"], event["object"]
            if kind in ("disappear", "change_colour"):
                present.remove(name)
            if kind == "appear":
                present.add(name)
            if kind == "change_colour":
                present.add(f"{event['to']} {name.split(' ', 1)[1]}")
        out.append(sorted(present))
    return out


def test_rows_follow_the_layout_and_per_frame_is_the_events_replayed(video_world):
    info = json.loads((video_world / "world.json").read_text())
    assert info["kind"] == "video" and info["config"]["video"] is True and info["split_sizes"]["val"] == 3
    assert info["video"]["event_probabilities"] == {"move": 0.4, "appear": 0.2, "disappear": 0.2, "change_colour": 0.2}
    n_events = 0
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        clips = rows(video_world, split)
        assert [c["id"] for c in clips] == [f"{split}-{i:06d}" for i in range(n)]
        for c in clips:
            assert (c["fps"], c["n_frames"], c["size"]) == (4.0, 8, [48, 48])
            assert (c["video"], c["frames"]) == (f"videos/{split}/{c['id']}.mp4", f"frames/{split}/{c['id']}")
            frames = [e["frame"] for e in c["events"]]
            assert frames == sorted(set(frames)) and all(1 <= f <= 7 for f in frames)  # time order, one a frame
            assert 1 <= len(c["events"]) <= 4
            assert [sorted(p) for p in c["per_frame"]] == replay(c["per_frame"][0], c["events"], 8)
            assert [[o["object"] for o in f] for f in c["frame_objects"]] == c["per_frame"]
            assert all(len(set(p)) == len(p) >= 1 for p in c["per_frame"])  # names unique, never an empty frame
            n_events += len(c["events"])
    assert n_events >= 12


def test_each_event_changes_exactly_what_it_says_between_two_frames(video_world):
    for split in ("train", "val", "test"):
        for c in rows(video_world, split):
            states = [{o["object"]: (tuple(o["cell"]), o["size"]) for o in f} for f in c["frame_objects"]]
            by_frame = {e["frame"]: e for e in c["events"]}
            for i in range(1, 8):
                before, after, event = states[i - 1], states[i], by_frame.get(i)
                if event is None:
                    assert after == before
                    continue
                name, rest = event["object"], dict(before)
                if event["type"] == "move":
                    (r0, c0), (r1, c1) = event["from"], event["to"]
                    assert abs(r1 - r0) + abs(c1 - c0) == 1 and before[name][0] == (r0, c0)
                    rest[name] = ((r1, c1), before[name][1])
                elif event["type"] == "appear":
                    assert name not in before and tuple(event["cell"]) not in {v[0] for v in before.values()}
                    rest[name] = (tuple(event["cell"]), event["size"])
                elif event["type"] == "disappear":
                    assert before[name][0] == tuple(event["cell"])
                    del rest[name]
                else:
                    assert name.split(" ")[0] == event["from"] != event["to"]
                    rest[f"{event['to']} {name.split(' ', 1)[1]}"] = rest.pop(name)
                assert after == rest, (c["id"], i)


def test_the_mp4_decodes_to_exactly_the_png_frames(video_world):
    """Encoded lossless (H.264 RGB at qp 0, libx264rgb): decoded pixels equal the PNGs exactly, not within a
    tolerance."""
    for c in rows(video_world, "val"):
        video = open_video(video_world, c["video"])
        assert (video.n_frames, video.fps, video.indices) == (8, 4.0, list(range(8)))
        pngs = sorted((video_world / c["frames"]).iterdir())
        assert [p.name for p in pngs] == [f"{i:03d}.png" for i in range(8)]
        for frame, png in zip(video.frames, pngs, strict=True):
            assert np.array_equal(np.asarray(frame), np.asarray(Image.open(png).convert("RGB")))
        sampled = open_video(video_world, c["video"], Sampling("uniform", num_frames=3))
        assert sampled.indices == [0, 3, 7]
    frames = [np.asarray(Image.open(p)) for p in sorted((video_world / "frames/val/val-000000").iterdir())]
    changed = [i for i in range(1, 8) if not np.array_equal(frames[i], frames[i - 1])]
    assert changed == [e["frame"] for e in rows(video_world, "val")[0]["events"]]  # pixels change at events only


def test_same_config_same_bytes_other_seed_other_clips_and_splits_disjoint(tmp_path, video_world):
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}

    again = generate_video_world(tmp_path / "b", CLIPS, num_workers=2)
    assert digest(again.out_dir) == digest(video_world)
    other = generate_video_world(tmp_path / "c", CLIPS.replace(seed=1))
    assert rows(other.out_dir, "val")[0]["caption"] != rows(video_world, "val")[0]["caption"]
    starts = {
        split: {json.dumps(c["frame_objects"][0], sort_keys=True) for c in rows(video_world, split)}
        for split in ("train", "val", "test")
    }
    assert not (starts["train"] & starts["val"]) and not (starts["train"] & starts["test"])
    assert not (starts["val"] & starts["test"])


def test_captions_tell_the_events_in_time_order():
    cfg = CLIPS.replace(min_events=0, max_events=0)
    start = Scene(
        "val-000009",
        3,
        3,
        (SceneObject("red", "circle", "small", 0, 0), SceneObject("blue", "star", "large", 1, 1)),
    )
    events = [
        {"type": "move", "object": "blue star", "frame": 1, "from": [1, 1], "to": [2, 1]},
        {"type": "disappear", "object": "red circle", "frame": 2, "cell": [0, 0]},
        {"type": "appear", "object": "orange square", "frame": 5, "cell": [0, 2], "size": "small"},
        {"type": "change_colour", "object": "blue star", "frame": 6, "from": "blue", "to": "green", "cell": [2, 1]},
    ]
    assert clip_caption(start, events, cfg) == (
        "There is a small red circle and a large blue star. The blue star moves down. The red circle disappears. "
        "A small orange square appears. The blue star turns green."
    )
    assert event_sentence({"type": "move", "object": "red circle", "from": [0, 1], "to": [0, 0]}, cfg) == (
        "The red circle moves left."
    )
    assert event_sentence(events[2], cfg.replace(object_sizes=False)) == "An orange square appears."
    still = make_clip(start, cfg)  # no events: every frame is the start
    assert still.events == () and still.per_frame == [["red circle", "blue star"]] * 8
    assert clip_caption(start, still.events, cfg).endswith("large blue star. Nothing changes.")


def test_clip_options_are_checked_and_event_weights_apply():
    with pytest.raises(ConfigError, match=r"max_events \(8\) exceeds clip_frames - 1 \(7\)"):
        WorldConfig(video=True, max_events=8)
    with pytest.raises(ConfigError, match="max_events \\(1\\) is below min_events \\(2\\)"):
        WorldConfig(min_events=2, max_events=1)
    with pytest.raises(ConfigError, match="all 0"):
        WorldConfig(p_move=0, p_appear=0, p_disappear=0, p_change_colour=0)
    with pytest.raises(ConfigError, match="clip_frames"):
        WorldConfig(clip_frames=1)
    only_moves = CLIPS.replace(p_appear=0, p_disappear=0, p_change_colour=0, clip_frames=16, min_events=5, max_events=6)
    clips = video_module.sample_clips(only_moves, "val", 4)
    assert {e["type"] for c in clips for e in c.events} == {
        "move"
    }  # a move is always possible: <= 4 objects of 9 cells
    assert all(len(c.frames) == 16 and 5 <= len(c.events) <= 6 for c in clips)


def test_read_clips_checks_the_layout(tmp_path, video_world):
    assert read_clips(video_world, "val") == rows(video_world, "val")
    good = rows(video_world, "val")[0]
    cases = [
        ({k: v for k, v in good.items() if k != "caption"}, "missing keys ['caption']"),
        (good | {"video": "../x.mp4"}, "field 'video': video path '../x.mp4' escapes the data root"),
        (good | {"per_frame": good["per_frame"][:-1]}, "field 'per_frame': must list the objects of each of the 8"),
        (good | {"events": [{"frame": 3}, {"frame": 2}]}, "event frames must be in time order within 1..7"),
        (good | {"events": [{"frame": 0}]}, "event frames must be in time order"),
    ]
    for row, message in cases:
        (tmp_path / "w" / "val").mkdir(parents=True, exist_ok=True)
        (tmp_path / "w" / "world.json").write_text((video_world / "world.json").read_text())
        (tmp_path / "w" / "val" / "clips.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(DataError, match=r"clips\.jsonl, line 2 \(id 'val-000000'\)") as err:
            read_clips(tmp_path / "w", "val")
        assert message in str(err.value), message
    generate_world(tmp_path / "still", WorldConfig(train_scenes=5, val_scenes=1, test_scenes=1))
    with pytest.raises(DataError, match="not a video world"):
        read_clips(tmp_path / "still", "val")


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(video_module, "write_video", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_video_world(tmp_path / "w", CLIPS)
    assert list(tmp_path.iterdir()) == []


def test_the_still_world_is_byte_identical_to_before_videos(tmp_path):
    """The digest of a small still world (text bytes, PNG pixels) as main wrote it at fbf18e1, before videos."""
    cfg = WorldConfig(train_scenes=40, val_scenes=8, test_scenes=8, image_size=48)
    assert not set(cfg.to_dict()) & set(VIDEO_FIELDS)
    out = generate_world(tmp_path / "w", cfg).out_dir
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(out)).encode())
            h.update(Image.open(p).tobytes() if p.suffix == ".png" else p.read_bytes())
    assert h.hexdigest() == "9331e187807d87be0ddae9bc5d57fcdc35387d981b77c7bc232ceecdd63204e3"
    assert not (out / "videos").exists() and not (out / "val" / "clips.jsonl").exists()


def test_world_video_command(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["world", "--video", "--out", str(out), "--scenes", "3", "--val-scenes", "1", "--test-scenes", "1"]
    try:
        main([*args, "--clip-frames", "12", "--clip-fps", "6", "--size", "32"])
    except SystemExit as exit_:
        assert not exit_.code
    text = capsys.readouterr().out
    assert "Wrote 5 clips (32 px)" in text and "Clips (12 frames at 6 fps)" in text
    (row,) = rows(out, "val")
    assert (row["n_frames"], row["fps"], row["size"]) == (12, 6.0, [32, 32])
    assert open_video(out, row["video"]).n_frames == 12
