"""Scenes: which objects, where, and how they were drawn, with the world's co-occurrence structure.

The world fixes, from its seed, a popularity ranking of the object types (Zipf weights, ``frequency_skew``)
and ``n_partner_pairs`` disjoint partner pairs. A scene draws a count k in [min_objects, max_objects], then
draws object types (weighted, without repeats) until it holds k objects; after each draw, if the drawn
object's partner is absent and the scene has room (fewer than max_objects), the partner is added with
probability ``partner_prob``. Each object takes a free grid cell (uniform), a size and a small jitter.

Randomness is Python's :class:`random.Random` (string seeds, ``random()`` only), so a seed gives the same
scenes on every platform.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

from mmalign.errors import ConfigError
from mmalign.objects.shapes import object_name, position_name
from mmalign.seeding import unit_interval
from mmalign.world.config import WorldConfig

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_REGIONS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
"""Each canonical scene key hashes to [0, 1); a split only keeps scenes whose key lands in its region, so no
scene (same objects in the same cells) is in two splits, whatever the split sizes."""
MAX_TRIES = 20_000
"""Draws per scene before a split is declared impossible (a split's region holds 10-80% of all scenes)."""


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str
    """``small`` or ``large``."""
    row: int
    col: int
    dx: float = 0.0
    """Horizontal offset as a fraction of the cell's free margin, in [-jitter, jitter]."""
    dy: float = 0.0
    via: str = "draw"
    """``draw`` (drawn by popularity) or ``partner`` (added as the partner of the object drawn before it)."""

    @property
    def name(self) -> str:
        return object_name(self.colour, self.shape)


@dataclass(frozen=True)
class Scene:
    id: str
    rows: int
    cols: int
    objects: tuple[SceneObject, ...]
    """In grid order (row-major), as captions list them."""
    partner_trials: int = 0
    """Times a partner could have been added (drawn object's partner absent, room left)..."""
    partner_added: int = 0
    """...and times it was."""

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """Object types present, in grid order."""
        return tuple(o.name for o in self.objects)

    def position(self, obj: SceneObject) -> str:
        return position_name(obj.row, obj.col, self.rows, self.cols)

    def key(self) -> str:
        """Canonical identity: the object types and their cells (sizes and jitter ignored)."""
        return ";".join(sorted(f"{o.name}@{o.row},{o.col}" for o in self.objects))


# ----------------------------------------------------------------------------------------- world layout


@functools.lru_cache(maxsize=32)
def object_types(cfg: WorldConfig) -> tuple[str, ...]:
    """Every object type of the world, colour-major: ``red circle, red square, ..., green circle, ...``."""
    return tuple(object_name(c, s) for c in cfg.colours for s in cfg.shapes)


@functools.lru_cache(maxsize=32)
def type_weights(cfg: WorldConfig) -> dict[str, float]:
    """Draw weight of each type: Zipf ``1 / rank^frequency_skew`` over a seeded ranking (sums to 1)."""
    types = shuffled(random.Random(f"{cfg.seed}:popularity"), list(object_types(cfg)))
    raw = {t: 1.0 / (rank + 1) ** cfg.frequency_skew for rank, t in enumerate(types)}
    total = sum(raw.values())
    return {t: raw[t] / total for t in object_types(cfg)}


@functools.lru_cache(maxsize=32)
def partner_pairs(cfg: WorldConfig) -> tuple[tuple[str, str], ...]:
    """The world's disjoint partner pairs, chosen by seed; each pair sorted by type order."""
    types = shuffled(random.Random(f"{cfg.seed}:partners"), list(object_types(cfg)))
    order = {t: i for i, t in enumerate(object_types(cfg))}
    pairs = [tuple(sorted(types[2 * i : 2 * i + 2], key=order.__getitem__)) for i in range(cfg.n_partner_pairs)]
    return tuple(sorted(pairs, key=lambda p: order[p[0]]))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def partner_of(cfg: WorldConfig) -> dict[str, str]:
    """Each paired type's partner (both directions); unpaired types are missing."""
    out: dict[str, str] = {}
    for a, b in partner_pairs(cfg):
        out[a], out[b] = b, a
    return out


def absent_partners(scene: Scene, cfg: WorldConfig) -> list[str]:
    """Partners of present objects that are absent, in the order of their present partners."""
    present = set(scene.names)
    partners = partner_of(cfg)
    out: list[str] = []
    for name in scene.names:
        other = partners.get(name)
        if other is not None and other not in present and other not in out:
            out.append(other)
    return out


# -------------------------------------------------------------------------------------------- sampling


def _weighted_pick(rng: random.Random, weights: dict[str, float], exclude: set[str]) -> str:
    total = sum(w for t, w in weights.items() if t not in exclude)
    x = rng.random() * total
    last = ""
    for t, w in weights.items():
        if t in exclude:
            continue
        last = t
        x -= w
        if x < 0:
            return t
    return last  # rounding at the end of the range


def sample_scene(rng: random.Random, cfg: WorldConfig, scene_id: str = "scene") -> Scene:
    """Draw one scene (see the module docstring for the process)."""
    weights = type_weights(cfg)
    partners = partner_of(cfg)
    span = cfg.max_objects - cfg.min_objects + 1
    k = cfg.min_objects + min(int(rng.random() * span), span - 1)
    free = [(r, c) for r in range(cfg.grid_rows) for c in range(cfg.grid_cols)]
    placed: list[tuple[str, str]] = []  # (type, via)
    present: set[str] = set()
    trials = added = 0
    while len(placed) < k:
        name = _weighted_pick(rng, weights, present)
        placed.append((name, "draw"))
        present.add(name)
        partner = partners.get(name)
        if partner is not None and partner not in present and len(placed) < cfg.max_objects:
            trials += 1
            if rng.random() < cfg.partner_prob:
                added += 1
                placed.append((partner, "partner"))
                present.add(partner)
    colour_of = {object_name(c, s): (c, s) for c in cfg.colours for s in cfg.shapes}
    objects = []
    for name, via in placed:
        cell = free.pop(min(int(rng.random() * len(free)), len(free) - 1))
        size = ("small" if rng.random() < 0.5 else "large") if cfg.object_sizes else "large"
        dx = round((2 * rng.random() - 1) * cfg.jitter, 4)
        dy = round((2 * rng.random() - 1) * cfg.jitter, 4)
        colour, shape = colour_of[name]
        objects.append(SceneObject(colour, shape, size, cell[0], cell[1], dx, dy, via))
    objects.sort(key=lambda o: (o.row, o.col))
    return Scene(scene_id, cfg.grid_rows, cfg.grid_cols, tuple(objects), trials, added)


def split_rng(cfg: WorldConfig, split: str) -> random.Random:
    return random.Random(f"{cfg.seed}:scenes:{split}")


def sample_split(cfg: WorldConfig, split: str, n: int) -> list[Scene]:
    """``n`` scenes of ``split``: scenes whose key falls outside the split's region are drawn again.

    Repeats inside a split are allowed (a small world has few one-object scenes); repeats across splits
    are impossible by construction.
    """
    lo, hi = SPLIT_REGIONS[split]
    rng = split_rng(cfg, split)
    scenes: list[Scene] = []
    for i in range(n):
        scene_id = f"{split}-{i:06d}"
        for _ in range(MAX_TRIES):
            scene = sample_scene(rng, cfg, scene_id)
            if lo <= unit_interval(cfg.seed, scene.key()) < hi:
                scenes.append(scene)
                break
        else:
            raise ConfigError(
                f"could not draw a {split} scene disjoint from the other splits in {MAX_TRIES} tries: "
                "the world has too few distinct scenes (add colours, shapes, cells or objects)"
            )
    return scenes


def scene_rng(cfg: WorldConfig, scene_id: str, purpose: str) -> random.Random:
    """An independent stream per scene and purpose, so changing one option does not reshuffle the others."""
    return random.Random(f"{cfg.seed}:{scene_id}:{purpose}")


def pick(rng: random.Random, items: list[Any]) -> Any:
    """One item, uniformly (``random()`` only, for cross-version stability)."""
    return items[min(int(rng.random() * len(items)), len(items) - 1)]


def sample(rng: random.Random, items: list[Any], k: int) -> list[Any]:
    """``k`` distinct items in random order (a partial Fisher-Yates with ``random()`` only)."""
    pool = list(items)
    out = []
    for _ in range(min(k, len(pool))):
        out.append(pool.pop(min(int(rng.random() * len(pool)), len(pool) - 1)))
    return out


def shuffled(rng: random.Random, items: list[Any]) -> list[Any]:
    return sample(rng, items, len(items))
