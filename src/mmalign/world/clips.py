"""Moving scenes: clips in which shapes move, appear, disappear and change colour, with exact ground truth.

A clip of split ``s`` starts from the scene of the same id that :func:`mmalign.world.scene.sample_split` draws
for ``s`` (so clips of different splits start from different scenes: the splits stay disjoint). It draws a
number of events k, uniform in [``min_events``, ``max_events``], on k distinct frames among 1 ..
``clip_frames - 1`` (frame 0 shows the start; an event's ``frame`` is the first frame where its change is
visible; one event a frame, so their order is never ambiguous). Events are applied in time order; each draws
its type by the ``p_*`` weights among the types possible at that moment:

- ``move``: an object goes to a free neighbouring cell (up, down, left or right), keeping its size and jitter;
- ``appear``: an absent object type (drawn by the world's popularity weights) takes a free cell, with a random
  size and jitter, while fewer than ``max_objects`` objects are present;
- ``disappear``: an object goes, while at least two are present (no frame is empty);
- ``change_colour``: an object takes another of the world's colours whose object is not present, so object
  names (colour + shape) stay unique in every frame, as in a still scene.

Events (their JSON form, as ``clips.jsonl`` stores them)::

    {"type": "move", "object": "blue star", "frame": 3, "from": [0, 1], "to": [1, 1]}
    {"type": "appear", "object": "green square", "frame": 5, "cell": [2, 0], "size": "small"}
    {"type": "disappear", "object": "red circle", "frame": 2, "cell": [0, 0]}
    {"type": "change_colour", "object": "blue star", "frame": 6, "from": "blue", "to": "green", "cell": [1, 1]}

``object`` is the object's name before the event (a colour change's new name is ``to`` + its shape).
Randomness: one stream per clip (``{seed}:{clip id}:clip``), ``random()`` only, as for scenes.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from mmalign.objects.shapes import object_name
from mmalign.world.config import WorldConfig
from mmalign.world.scene import Scene, SceneObject, _weighted_pick, pick, sample, sample_split, type_weights

EVENT_TYPES: tuple[str, ...] = ("move", "appear", "disappear", "change_colour")

STEPS: dict[str, tuple[int, int]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
"""A move's direction word and its (row, column) step."""


@dataclass(frozen=True)
class Clip:
    """A clip's ground truth: the scene shown in each frame and the events between them, in time order."""

    id: str
    frames: tuple[Scene, ...]
    events: tuple[dict[str, Any], ...]

    @property
    def per_frame(self) -> list[list[str]]:
        """Object names present in each frame, in grid order."""
        return [list(scene.names) for scene in self.frames]

    def frame_objects(self) -> list[list[dict[str, Any]]]:
        """Each frame's objects with their size and cell, in grid order."""
        return [
            [{"object": o.name, "size": o.size, "cell": [o.row, o.col]} for o in scene.objects] for scene in self.frames
        ]


def direction(source: list[int] | tuple[int, int], target: list[int] | tuple[int, int]) -> str:
    """The word for a one-cell move: ``up``, ``down``, ``left`` or ``right``."""
    step = (target[0] - source[0], target[1] - source[1])
    for word, delta in STEPS.items():
        if delta == step:
            return word
    raise ValueError(f"not a one-cell move: {list(source)} -> {list(target)}")


def _frame(clip_id: str, i: int, base: Scene, objects: list[SceneObject]) -> Scene:
    ordered = tuple(sorted(objects, key=lambda o: (o.row, o.col)))
    return Scene(f"{clip_id}-{i:03d}", base.rows, base.cols, ordered)


def _possible(objects: list[SceneObject], cfg: WorldConfig) -> dict[str, list[Any]]:
    """Per event type, what it could act on now (an empty list: impossible)."""
    taken = {(o.row, o.col) for o in objects}
    free = [(r, c) for r in range(cfg.grid_rows) for c in range(cfg.grid_cols) if (r, c) not in taken]
    names = {o.name for o in objects}
    moves = [
        (o, (o.row + dr, o.col + dc)) for o in objects for dr, dc in STEPS.values() if (o.row + dr, o.col + dc) in free
    ]
    recolour = [(o, c) for o in objects for c in cfg.colours if c != o.colour and object_name(c, o.shape) not in names]
    return {
        "move": moves,
        "appear": free if len(objects) < cfg.max_objects else [],
        "disappear": list(objects) if len(objects) >= 2 else [],
        "change_colour": recolour,
    }


def _draw_type(rng: random.Random, weights: dict[str, float], possible: dict[str, list[Any]]) -> str | None:
    open_types = [t for t in EVENT_TYPES if possible[t] and weights[t] > 0]
    if not open_types:
        return None
    x = rng.random() * sum(weights[t] for t in open_types)
    for t in open_types:
        x -= weights[t]
        if x < 0:
            return t
    return open_types[-1]


def _apply(
    rng: random.Random, cfg: WorldConfig, kind: str, frame: int, objects: list[SceneObject], options: list[Any]
) -> tuple[list[SceneObject], dict[str, Any]]:
    """One event of type ``kind`` drawn from ``options``: the objects after it, and its JSON form."""
    if kind == "move":
        obj, (row, col) = pick(rng, options)
        moved = dataclasses.replace(obj, row=row, col=col)
        event = {"type": "move", "object": obj.name, "frame": frame, "from": [obj.row, obj.col], "to": [row, col]}
        return [moved if o is obj else o for o in objects], event
    if kind == "appear":
        row, col = pick(rng, options)
        name = _weighted_pick(rng, type_weights(cfg), {o.name for o in objects})
        colour, shape = name.split(" ", 1)
        size = ("small" if rng.random() < 0.5 else "large") if cfg.object_sizes else "large"
        dx = round((2 * rng.random() - 1) * cfg.jitter, 4)
        dy = round((2 * rng.random() - 1) * cfg.jitter, 4)
        new = SceneObject(colour, shape, size, row, col, dx, dy, via="appear")
        event = {"type": "appear", "object": name, "frame": frame, "cell": [row, col], "size": size}
        return [*objects, new], event
    if kind == "disappear":
        obj = pick(rng, options)
        event = {"type": "disappear", "object": obj.name, "frame": frame, "cell": [obj.row, obj.col]}
        return [o for o in objects if o is not obj], event
    obj, colour = pick(rng, options)
    event = {
        "type": "change_colour",
        "object": obj.name,
        "frame": frame,
        "from": obj.colour,
        "to": colour,
        "cell": [obj.row, obj.col],
    }
    return [dataclasses.replace(obj, colour=colour) if o is obj else o for o in objects], event


def make_clip(start: Scene, cfg: WorldConfig) -> Clip:
    """The clip that starts from ``start`` (its id is the clip's; see the module docstring for the process)."""
    rng = random.Random(f"{cfg.seed}:{start.id}:clip")
    span = cfg.max_events - cfg.min_events + 1
    k = cfg.min_events + min(int(rng.random() * span), span - 1)
    when = sorted(sample(rng, list(range(1, cfg.clip_frames)), k))
    objects = list(start.objects)
    frames: list[Scene] = []
    events: list[dict[str, Any]] = []
    weights = cfg.event_weights
    for i in range(cfg.clip_frames):
        if i in when:
            possible = _possible(objects, cfg)
            kind = _draw_type(rng, weights, possible)
            if kind is not None:  # nothing possible (a tiny grid or world): the frame stays as it was
                objects, event = _apply(rng, cfg, kind, i, objects, possible[kind])
                events.append(event)
        frames.append(_frame(start.id, i, start, objects))
    return Clip(start.id, tuple(frames), tuple(events))


def sample_clips(cfg: WorldConfig, split: str, n: int) -> list[Clip]:
    """``n`` clips of ``split`` (ids ``<split>-<n>``), each from that split's scene of the same id."""
    return [make_clip(scene, cfg) for scene in sample_split(cfg, split, n)]
