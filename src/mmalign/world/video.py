"""Writing a moving shapes world (``mmalign world --video``): clips with exact ground truth, frames and mp4s.

Output layout (agreed with the readers of issue 18; paths in rows are relative to the world directory)::

    DIR/world.json                          config (with the video options), object types, colours, grid,
                                            encoder, per-split event statistics, the files written
    DIR/<split>/clips.jsonl                 one row per clip (split = train, val, test), below
    DIR/frames/<split>/<id>/000.png, ...    every frame of the clip, in order
    DIR/videos/<split>/<id>.mp4             the same frames at ``clip_fps`` (lossless H.264, PyAV)

A row of ``clips.jsonl``::

    {"id": "val-000003", "video": "videos/val/val-000003.mp4", "frames": "frames/val/val-000003",
     "fps": 4.0, "n_frames": 8, "size": [48, 48],
     "per_frame": [["red circle", "blue star"], ...],          # names present in each frame, grid order
     "frame_objects": [[{"object": "red circle", "size": "small", "cell": [0, 0]}, ...], ...],
     "events": [...],                                          # time order (mmalign.world.clips)
     "caption": "There is a small red circle and a large blue star. The blue star moves down. ..."}

Clips per split are the world's scene counts (``train_scenes``, ``val_scenes``, ``test_scenes``). The whole
folder is written under a temporary name and renamed into place when complete (``atomic_path``): an
interrupted run leaves no half world.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.data.io import iter_rows, write_jsonl
from mmalign.data.video import ENCODER, check_video_path, write_video
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path
from mmalign.objects.shapes import BACKGROUND, RGB, position_name
from mmalign.world.clips import EVENT_TYPES, Clip, sample_clips
from mmalign.world.config import WorldConfig
from mmalign.world.draw import render, save_png
from mmalign.world.generate import FORMAT, Progress, _check_out_dir, read_world, render_in_chunks, run_with_progress
from mmalign.world.scene import SPLITS, object_types
from mmalign.world.text import clip_caption

ROW_KEYS: tuple[str, ...] = ("id", "video", "frames", "fps", "n_frames", "size", "per_frame", "events", "caption")
"""The keys every ``clips.jsonl`` row has (the agreed layout; ``frame_objects`` is extra ground truth)."""

RENDER_CHUNK = 32
"""Clips per rendering job (a clip is ``clip_frames`` images and one mp4)."""


@dataclass
class VideoSummary:
    """What :func:`generate_video_world` did."""

    out_dir: Path
    config: WorldConfig
    clips: dict[str, int]
    events: dict[str, dict[str, int]]
    """Per split, events by type."""
    files: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def clips_per_second(self) -> float:
        return sum(self.clips.values()) / self.seconds if self.seconds > 0 else float("inf")


def clip_paths(split: str, clip_id: str) -> tuple[str, str]:
    """The (frames folder, video file) of a clip, relative to the world directory."""
    return f"frames/{split}/{clip_id}", f"videos/{split}/{clip_id}.mp4"


def frame_name(i: int) -> str:
    return f"{i:03d}.png"


def clip_row(clip: Clip, split: str, cfg: WorldConfig) -> dict[str, Any]:
    """The ``clips.jsonl`` row of ``clip`` (layout in the module docstring)."""
    frames, video = clip_paths(split, clip.id)
    return {
        "id": clip.id,
        "video": video,
        "frames": frames,
        "fps": float(cfg.clip_fps),
        "n_frames": len(clip.frames),
        "size": [cfg.image_size, cfg.image_size],
        "per_frame": clip.per_frame,
        "frame_objects": clip.frame_objects(),
        "events": [dict(e) for e in clip.events],
        "caption": clip_caption(clip.frames[0], clip.events, cfg),
    }


def render_clips(jobs: list[tuple[Clip, str, str]], size: int, fps: float) -> int:
    """Render each (clip, frames folder, video path): PNG frames and the mp4. Runs in worker processes too."""
    for clip, frames_dir, video in jobs:
        images = [render(scene, size) for scene in clip.frames]
        Path(frames_dir).mkdir(parents=True)
        for i, image in enumerate(images):
            save_png(image, Path(frames_dir) / frame_name(i))
        write_video(video, images, fps)
    return len(jobs)


def event_statistics(clips: list[Clip]) -> dict[str, Any]:
    """Events by type, events per clip, objects per frame, over one split."""
    by_type = Counter(e["type"] for clip in clips for e in clip.events)
    per_clip = Counter(len(clip.events) for clip in clips)
    objects = [len(scene.objects) for clip in clips for scene in clip.frames]
    return {
        "clips": len(clips),
        "events": {t: by_type[t] for t in EVENT_TYPES},
        "events_per_clip": {str(k): per_clip[k] for k in sorted(per_clip)},
        "mean_objects_per_frame": round(sum(objects) / len(objects), 4) if objects else 0.0,
    }


def video_info(cfg: WorldConfig, clips: dict[str, list[Clip]]) -> dict[str, Any]:
    """The content of a video world's ``world.json`` (without the file list)."""
    cells = [
        {"row": r, "col": c, "name": position_name(r, c, cfg.grid_rows, cfg.grid_cols)}
        for r in range(cfg.grid_rows)
        for c in range(cfg.grid_cols)
    ]
    return {
        "format": FORMAT,
        "kind": "video",
        "config": cfg.to_dict(),
        "split_sizes": {split: len(clips[split]) for split in SPLITS},
        "objects": list(object_types(cfg)),
        "colours": {c: list(RGB[c]) for c in cfg.colours},
        "shapes": list(cfg.shapes),
        "background": list(BACKGROUND),
        "grid": {"rows": cfg.grid_rows, "cols": cfg.grid_cols, "cells": cells},
        "video": {
            "frames": cfg.clip_frames,
            "fps": float(cfg.clip_fps),
            "event_probabilities": {k: round(v, 6) for k, v in cfg.event_weights.items()},
            "encoder": ENCODER,
        },
        "statistics": {split: event_statistics(clips[split]) for split in SPLITS},
    }


def generate_video_world(
    out_dir: str | Path,
    cfg: WorldConfig,
    *,
    num_workers: int = 1,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> VideoSummary:
    """Generate the clips described by ``cfg`` (``video`` on) into ``out_dir`` (layout in the module docstring)."""
    if not cfg.video:
        raise ConfigError("generate_video_world needs a config with video on (mmalign world --video)")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    report = progress or (lambda stage, done, total: None)
    sizes = cfg.split_sizes()
    total = sum(sizes.values())

    report("sampling", 0, total)
    clips = {split: sample_clips(cfg, split, n) for split, n in sizes.items()}
    report("sampling", total, total)

    files: dict[str, int] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        jobs = []
        for split in SPLITS:
            (tmp / "videos" / split).mkdir(parents=True)
            (tmp / "frames" / split).mkdir(parents=True)
            for clip in clips[split]:
                frames, video = clip_paths(split, clip.id)
                jobs.append((clip, str(tmp / frames), str(tmp / video)))
        done = 0

        def rendered(n: int) -> None:
            nonlocal done
            done += n
            report("rendering", done, total)

        report("rendering", 0, total)
        render_in_chunks(render_clips, jobs, (cfg.image_size, cfg.clip_fps), num_workers, rendered)
        report("writing", 0, total)
        done = 0
        for split in SPLITS:
            files[f"frames/{split}"] = sum(len(c.frames) for c in clips[split])
            files[f"videos/{split}"] = len(clips[split])
            rows = [clip_row(clip, split, cfg) for clip in clips[split]]
            files[f"{split}/clips.jsonl"] = write_jsonl(tmp / split / "clips.jsonl", rows)
            done += len(rows)
            report("writing", done, total)
        info = video_info(cfg, clips) | {"files": dict(sorted(files.items()))}
        (tmp / "world.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return VideoSummary(
        out_dir=out_dir,
        config=cfg,
        clips=sizes,
        events={split: info["statistics"][split]["events"] for split in SPLITS},
        files=dict(sorted(files.items())),
        seconds=time.perf_counter() - start,
    )


def generate_video_with_progress(
    out: Path, cfg: WorldConfig, workers: int, overwrite: bool, console: Any
) -> VideoSummary:
    """:func:`generate_video_world` with a progress bar per stage on a ``rich`` console."""
    return run_with_progress(generate_video_world, out, cfg, workers, overwrite, console)


def read_clips(world_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The rows of ``DIR/<split>/clips.jsonl`` of a video world, checked: every key of the layout, safe relative
    paths, ``per_frame`` with ``n_frames`` entries, events in time order on frames 1 .. n_frames - 1."""
    world_dir = Path(world_dir)
    info = read_world(world_dir)
    if info.get("kind") != "video":
        raise DataError("not a video world (generate one with `mmalign world --video`)", file=world_dir / "world.json")
    path = world_dir / split / "clips.jsonl"
    out = []
    for row in iter_rows(path):
        if row.error is not None:
            raise row.error.located(file=path)
        data = row.data

        def bad(message: str, field: str | None = None, data: Any = data, row: Any = row) -> DataError:
            clip_id = data.get("id") if isinstance(data, dict) else None
            return DataError(message, file=path, line=row.line, record_id=clip_id, field=field)

        if not isinstance(data, dict):
            raise bad(f"a clip row must be an object, got {type(data).__name__}")
        missing = [k for k in ROW_KEYS if k not in data]
        if missing:
            raise bad(f"missing keys {missing}")
        for key in ("video", "frames"):
            try:
                check_video_path(data[key], key, what=key.rstrip("s"))
            except DataError as err:
                raise bad(err.message, key) from None
        n = data["n_frames"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad(f"must be a positive integer, got {n!r}", "n_frames")
        if not isinstance(data["per_frame"], list) or len(data["per_frame"]) != n:
            raise bad(f"must list the objects of each of the {n} frames", "per_frame")
        frames = [e.get("frame") if isinstance(e, dict) else None for e in data["events"]]
        if not all(isinstance(f, int) and 1 <= f < n for f in frames) or frames != sorted(frames):
            raise bad(f"event frames must be in time order within 1..{n - 1}, got {frames}", "events")
        out.append(data)
    return out
