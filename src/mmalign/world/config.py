"""``WorldConfig``: every knob of the shapes world, documented beside its definition and checked at start.

Each field is a key of a world YAML file and a flag of ``mmalign world`` (its own name, or the ``flag`` it declares).

The defaults are the demo's world: 48 px images on a 3×3 grid (one 16 px patch per cell), 5 colours × 4
shapes = 20 object types, 10 fixed partner pairs added with probability 0.8, 40 000 training scenes and
caption noise 0.6 (at 0.5, the demo's SFT baseline named absent partners in only 18 % of held-out captions:
too little hallucination for alignment to measurably remove). With ``video`` on, the same world moves: clips of
``clip_frames`` frames with ``min_events``-``max_events`` events drawn by the ``p_*`` weights (docs/video.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError
from mmalign.objects.shapes import COLOURS, NUMBER_WORDS, SHAPES

EVAL_FRACTION = 0.1
"""Default size of val and test, as a fraction of ``train_scenes``..."""
EVAL_CAP = 2000
"""...capped at this many scenes each."""


@dataclass(frozen=True)
class WorldConfig:
    """The shapes world: scenes, co-occurrence structure, caption noise, splits."""

    n_colours: int = option(
        5,
        f"Number of colours used, from the start of {', '.join(COLOURS)}.",
        ge=1,
        le=len(COLOURS),
        flag="--colours",
    )
    n_shapes: int = option(
        4, f"Number of shapes used, from the start of {', '.join(SHAPES)}.", ge=1, le=len(SHAPES), flag="--shapes"
    )
    grid_rows: int = option(3, "Rows of the grid objects are placed on (one object per cell).", ge=1)
    grid_cols: int = option(3, "Columns of the grid objects are placed on.", ge=1)
    image_size: int = option(
        48,
        "Image side in pixels (small, e.g. 48-64, for CPU; 224-448 for real models).",
        ge=4,
        le=4096,
        flag="--size",
    )
    min_objects: int = option(1, "Fewest objects drawn for a scene.", ge=1)
    max_objects: int = option(
        4,
        "Most objects in a scene. A scene draws a count from min to max; a partner may add one more, up to max.",
        ge=1,
        le=len(NUMBER_WORDS) - 1,
    )
    object_sizes: bool = option(
        True,
        "Draw objects small or large (named in captions); off: all large, no size word.",
        flag="--sizes/--no-sizes",
    )
    frequency_skew: float = option(
        0.5,
        "Zipf exponent of how often each object type is drawn (over a seeded ranking): 0 = uniform. "
        "Makes some objects popular, as in real data (POPE's 'popular' negatives).",
        ge=0,
        flag="--skew",
    )
    n_partner_pairs: int = option(
        10,
        "Fixed partner pairs of object types (disjoint, chosen by seed); at most n_colours*n_shapes/2.",
        ge=0,
        flag="--pairs",
    )
    partner_prob: float = option(
        0.8, "Probability that placing an object also places its partner (if absent and there is room).", ge=0, le=1
    )
    caption_noise: float = option(
        0.6,
        "Fraction of training captions of scenes with an absent partner that name that partner anyway "
        "(noisy web captions teach hallucination). Evaluation splits are always clean.",
        ge=0,
        le=1,
    )
    jitter: float = option(0.5, "How far (0-1) an object may move inside its cell's free margin.", ge=0, le=1)
    seed: int = option(0, "Seed of everything: partner pairs, popularity ranking, scenes, questions.", ge=0)
    train_scenes: int = option(40_000, "Scenes in the train split (statistics come from train).", ge=1, flag="--scenes")
    val_scenes: int | None = option(
        None, f"Scenes in the val split (default: {EVAL_FRACTION:.0%} of train_scenes, at most {EVAL_CAP}).", ge=0
    )
    test_scenes: int | None = option(
        None, f"Scenes in the test split (default: {EVAL_FRACTION:.0%} of train_scenes, at most {EVAL_CAP}).", ge=0
    )
    pope_k: int = option(
        3, "POPE: present objects asked per image (as many absent ones per strategy), as in POPE.", ge=1
    )
    qa_per_scene: int = option(2, "Question-answer SFT examples per training scene (besides its caption).", ge=0)
    video: bool = option(
        False,
        "Write moving clips instead of still scenes (one clip per scene of each split; layout in docs/video.md).",
        flag="--video/--still",
    )
    clip_frames: int = option(8, "Video: frames per clip (8-16 is typical).", ge=2, le=64)
    clip_fps: float = option(4.0, "Video: frame rate of each clip's mp4 (frames per second).", gt=0, le=60)
    min_events: int = option(1, "Video: fewest events (move, appear, disappear, colour change) in a clip.", ge=0)
    max_events: int = option(
        3, "Video: most events in a clip, one a frame (at most clip_frames - 1); a clip draws a count between.", ge=0
    )
    p_move: float = option(
        0.4, "Video: relative probability that an event moves an object to a neighbouring free cell.", ge=0
    )
    p_appear: float = option(0.2, "Video: relative probability that an event makes an absent object appear.", ge=0)
    p_disappear: float = option(0.2, "Video: relative probability that an event makes an object disappear.", ge=0)
    p_change_colour: float = option(
        0.2, "Video: relative probability that an event changes an object's colour (the four are normalised).", ge=0
    )

    def __post_init__(self) -> None:
        self._check_ints()
        check_ranges(self)
        n_types = self.n_colours * self.n_shapes
        cells = self.grid_rows * self.grid_cols
        if self.max_objects < self.min_objects:
            raise ConfigError(f"max_objects ({self.max_objects}) is below min_objects ({self.min_objects})")
        if self.max_objects > cells:
            raise ConfigError(f"max_objects ({self.max_objects}) exceeds the {cells} grid cells (one object a cell)")
        if self.max_objects >= n_types:
            raise ConfigError(
                f"max_objects ({self.max_objects}) must be below the {n_types} object types, "
                "so every scene has absent objects to ask about"
            )
        if self.image_size < 4 * max(self.grid_rows, self.grid_cols):
            raise ConfigError(
                f"image_size {self.image_size} is too small for a {self.grid_rows}x{self.grid_cols} grid "
                f"(at least 4 px a cell: {4 * max(self.grid_rows, self.grid_cols)})"
            )
        if self.max_events < self.min_events:
            raise ConfigError(f"max_events ({self.max_events}) is below min_events ({self.min_events})")
        if self.max_events > self.clip_frames - 1:
            raise ConfigError(
                f"max_events ({self.max_events}) exceeds clip_frames - 1 ({self.clip_frames - 1}): one event a frame, "
                "none on the first"
            )
        if self.p_move + self.p_appear + self.p_disappear + self.p_change_colour <= 0:
            raise ConfigError("p_move, p_appear, p_disappear and p_change_colour are all 0: no event can happen")
        if self.n_partner_pairs > n_types // 2:
            raise ConfigError(
                f"n_partner_pairs must be between 0 and {n_types // 2} (pairs are disjoint among "
                f"{n_types} object types), got {self.n_partner_pairs}"
            )

    def _check_ints(self) -> None:
        """Types, for configs built in code (YAML input is already type-checked by mmalign.config)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("val_scenes", "test_scenes"):
                continue
            expected: Any = {"bool": bool, "float": (int, float)}.get(str(f.type), int)
            if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
                raise ConfigError(f"{f.name} must be {f.type}, got {value!r}")

    @property
    def colours(self) -> tuple[str, ...]:
        return COLOURS[: self.n_colours]

    @property
    def shapes(self) -> tuple[str, ...]:
        return SHAPES[: self.n_shapes]

    @property
    def n_types(self) -> int:
        return self.n_colours * self.n_shapes

    def split_sizes(self) -> dict[str, int]:
        """Scenes per split, defaults filled in: ``{"train": ..., "val": ..., "test": ...}``."""
        default = min(EVAL_CAP, max(1, round(EVAL_FRACTION * self.train_scenes)))
        return {
            "train": self.train_scenes,
            "val": default if self.val_scenes is None else self.val_scenes,
            "test": default if self.test_scenes is None else self.test_scenes,
        }

    def replace(self, **changes: Any) -> WorldConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field; a still world (``video`` off) leaves the video fields out, so its ``world.json`` and the
        demo's step keys stay what they were before videos existed."""
        out = dataclasses.asdict(self)
        return out if self.video else {k: v for k, v in out.items() if k not in VIDEO_FIELDS}

    @property
    def event_weights(self) -> dict[str, float]:
        """Event type -> probability (the four ``p_*`` options, normalised)."""
        raw = {
            "move": self.p_move,
            "appear": self.p_appear,
            "disappear": self.p_disappear,
            "change_colour": self.p_change_colour,
        }
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}


VIDEO_FIELDS: tuple[str, ...] = (
    "video",
    "clip_frames",
    "clip_fps",
    "min_events",
    "max_events",
    "p_move",
    "p_appear",
    "p_disappear",
    "p_change_colour",
)
"""The fields that only a video world uses (left out of a still world's :meth:`WorldConfig.to_dict`)."""
