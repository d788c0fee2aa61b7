"""``video-corrupt``: video-side pairs, the clip's true caption preferred with the clip over a corrupted clip.

mDPO's conditional preference (Wang et al., 2024) contrasts a response given the real image with the same
response given a corrupted one; for video, the corruptions that break time are the ones that matter: frames
shuffled (the events' order is lost) and frames dropped (events can vanish). Each clip of a video world's split
becomes ``variants`` records (one mode each, drawn from ``modes``): chosen and rejected are the clip's true caption
(``Describe the video.``), ``videos`` its frames in order and ``rejected_videos`` the same frame files
re-listed, no image copied:

* ``shuffle``: ``shuffle_frames`` of the frames (0: all) change places, none keeping its own (a derangement);
* ``drop``: ``drop_frames`` frames left out, the rest in order (a clip needs more frames than that).

Frames are those the sampling options pick (default: every frame). ``meta.order`` lists the rejected side's frames
as indices into the chosen side's list. A clip a mode cannot corrupt (fewer than two frames to shuffle, no frame
left after dropping) is skipped, and counted in the build's result line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.data.records import PreferenceRecord, VideoRef, assistant
from mmalign.errors import ConfigError
from mmalign.pairs.registry import Builder, BuildInputs, Plan, check_choices
from mmalign.pairs.video_clips import DESCRIBE_VIDEO, ClipOptions, frame_paths, read_clip_split, video_prompt

MODES: tuple[str, ...] = ("shuffle", "drop")


@dataclass(frozen=True)
class VideoCorruptOptions(ClipOptions):
    modes: list[str] = option(["shuffle", "drop"], "Corruptions to draw from: shuffle (frames change places), drop.")
    variants: int = option(1, "Records made per clip, each with a different mode (at most len(modes)).", ge=1)
    shuffle_frames: int = option(0, "shuffle: how many frames change places (0: all of them; else at least 2).", ge=0)
    drop_frames: int = option(2, "drop: how many frames are left out.", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(list(self.modes), MODES, "modes")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"option 'modes' lists a mode twice: {self.modes}")
        if self.variants > len(self.modes):
            raise ConfigError(f"option 'variants' must be between 1 and {len(self.modes)} (one mode each)")
        if self.shuffle_frames == 1:
            raise ConfigError("option 'shuffle_frames' must be 0 (all) or at least 2: one frame cannot change place")


def corrupt_order(mode: str, n: int, opts: VideoCorruptOptions, rng: random.Random) -> list[int] | None:
    """The rejected clip as indices into the ``n`` frames, or None when ``mode`` cannot corrupt that many."""
    if mode == "drop":
        if opts.drop_frames >= n:
            return None
        dropped = set(rng.sample(range(n), opts.drop_frames))
        return [i for i in range(n) if i not in dropped]
    k = opts.shuffle_frames or n
    if n < 2 or k > n:
        return None
    places = sorted(rng.sample(range(n), k))
    moved = places[:]
    rng.shuffle(moved)
    # A random cyclic order of the chosen places: frame moved[i] goes where moved[i + 1] was, none stays put.
    order = list(range(n))
    for i, place in enumerate(moved):
        order[moved[(i + 1) % k]] = place
    return order


def applies(mode: str, n: int, opts: VideoCorruptOptions) -> bool:
    return corrupt_order(mode, n, opts, random.Random(0)) is not None


class VideoCorruptBuilder(Builder):
    name: ClassVar[str] = "video-corrupt"
    options_class: ClassVar[type] = VideoCorruptOptions
    unit_name: ClassVar[str] = "clips"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        clips = read_clip_split(inputs, self.name)
        skipped = {mode: 0 for mode in self.options.modes}
        for row in clips.rows:
            n = len(frame_paths(row, self.options.sampling_for(row["n_frames"])))
            for mode in self.options.modes:
                skipped[mode] += not applies(mode, n, self.options)
        what = clips.description
        if any(skipped.values()):
            what += "; clips a mode cannot corrupt (too few frames), skipped: " + ", ".join(
                f"{mode} {n}" for mode, n in skipped.items() if n
            )
        return Plan(clips.rows, clips.root, clips.fingerprint, None, what)

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        opts = self.options
        frames = frame_paths(unit, opts.sampling_for(unit["n_frames"]))
        rng = random.Random(f"{seed}:modes")
        modes = list(opts.modes)
        picked = [modes.pop(min(int(rng.random() * len(modes)), len(modes) - 1)) for _ in range(opts.variants)]
        out = []
        for mode in picked:
            order = corrupt_order(mode, len(frames), opts, random.Random(f"{seed}:{mode}"))
            if order is None:
                continue
            out.append(
                PreferenceRecord(
                    id=f"{unit['id']}-{mode}",
                    prompt=video_prompt(DESCRIBE_VIDEO),
                    chosen=assistant(unit["caption"]),
                    rejected=assistant(unit["caption"]),
                    videos=[VideoRef(frames=tuple(frames))],
                    rejected_videos=[VideoRef(frames=tuple(frames[i] for i in order))],
                    source=self.name,
                    meta={"clip_id": unit["id"], "mode": mode, "order": order, "events": unit["events"]},
                )
            )
        return out
