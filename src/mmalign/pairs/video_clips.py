"""What the video builders share: a video world's split of clips read as units, the clip as a video reference,
the ``<video>`` prompt, and the clip's first frame rebuilt as a scene (for the world's caption functions).

A clip goes into a record as the agreed video reference (docs/video.md): its mp4 with a frame sampling,
``{"path": "videos/train/train-000003.mp4", "sampling": {"mode": "uniform", "num_frames": 8, "max_frames": 16}}``,
or its PNG frames, ``{"frames": ["frames/train/train-000003/000.png", ...]}``, the frames the same sampling picks
(:func:`mmalign.data.video_refs.sample_indices`), in order. Paths are relative to the world directory, the data
root of the build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmalign.config import option
from mmalign.data.parse import parse_sampling
from mmalign.data.records import Message, Sampling, VideoRef
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.registry import BuildInputs, file_fingerprint
from mmalign.pairs.sources import WorldSplit, world_header
from mmalign.world.config import WorldConfig
from mmalign.world.scene import Scene, SceneObject

DESCRIBE_VIDEO = "Describe the video."
"""The caption prompt, as the ``video_chair`` evaluation task asks it."""


@dataclass(frozen=True)
class ClipOptions:
    """How a clip's frames are picked (the options both video builders take)."""

    sampling: str = option("uniform", "Frames taken from a clip: uniform (num_frames spread evenly) or fps.")
    num_frames: int = option(0, "uniform: frames taken per clip (0: every frame of the clip).", ge=0)
    fps: float = option(0.0, "fps: frames taken per second of clip (needed with sampling fps).", ge=0)
    max_frames: int = option(16, "Most frames taken per clip (more are thinned uniformly).", ge=1)

    def __post_init__(self) -> None:
        self.sampling_for(2)  # ConfigError now on a bad combination, not at the first clip

    def sampling_for(self, n_frames: int) -> Sampling:
        """The sampling of a clip of ``n_frames`` frames (``num_frames`` 0 means all of them)."""
        value: dict[str, Any] = {"mode": self.sampling, "max_frames": self.max_frames}
        if self.sampling == "uniform":
            value["num_frames"] = self.num_frames or n_frames
        elif self.fps > 0:
            value["fps"] = self.fps
        if self.sampling == "fps" and self.num_frames:
            raise ConfigError("option 'num_frames' is read with sampling uniform only; drop it or use uniform")
        try:
            return parse_sampling(value, "sampling")
        except DataError as err:
            raise ConfigError(f"options sampling/num_frames/fps/max_frames: {err.message}") from None


def read_clip_split(inputs: BuildInputs, strategy: str) -> WorldSplit:
    """The video world split named by ``inputs`` (``--world`` and ``--split``); errors say what is missing."""
    from mmalign.world.video import read_clips

    root, info, config = world_header(inputs, strategy, "a video world (mmalign world --video)")
    rows = read_clips(root, inputs.split)  # DataError (not a video world, a bad row) naming file and line
    if not rows:
        raise ConfigError(
            f"split {inputs.split!r} of video world {root} has no clips: nothing to build "
            f"(world.json split_sizes: {info.get('split_sizes')})"
        )
    path = root / inputs.split / "clips.jsonl"
    fingerprint = file_fingerprint(root / "world.json", path)
    return WorldSplit(root, inputs.split, config, info, rows, fingerprint, unit="clips")


def frame_paths(row: dict[str, Any], sampling: Sampling) -> list[str]:
    """The clip's frame files that ``sampling`` picks, in order (paths relative to the world)."""
    from mmalign.data.video_refs import sample_indices
    from mmalign.world.video import frame_name

    indices = sample_indices(row["n_frames"], row.get("fps"), sampling)
    return [f"{row['frames']}/{frame_name(i)}" for i in indices]


def clip_video(row: dict[str, Any], opts: ClipOptions, as_frames: bool) -> VideoRef:
    """The clip as a video reference: its frame files (``as_frames``) or its mp4 with the options' sampling."""
    sampling = opts.sampling_for(row["n_frames"])
    if as_frames:
        return VideoRef(frames=tuple(frame_paths(row, sampling)))
    return VideoRef(path=row["video"], sampling=sampling)


def video_prompt(text: str) -> list[Message]:
    """One user turn: the ``<video>`` placeholder, then ``text``."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]


def start_scene(row: dict[str, Any], cfg: WorldConfig, where: dict[str, Any]) -> Scene:
    """The clip's first frame as a :class:`Scene` (from ``frame_objects[0]``), what its caption starts with."""
    try:
        objects = tuple(
            SceneObject(*o["object"].split(" ", 1), o["size"], int(o["cell"][0]), int(o["cell"][1]))
            for o in row["frame_objects"][0]
        )
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise DataError(
            f"needs frame_objects[0] with object, size and cell of each object ({err!r})",
            field="frame_objects",
            **where,
        ) from None
    return Scene(f"{row['id']}-000", cfg.grid_rows, cfg.grid_cols, objects)
