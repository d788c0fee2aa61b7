"""Inputs the builders share: a shapes world's split, co-occurrence counts, JSONL records read as units."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from mmalign.config import config_from_dict
from mmalign.data.io import iter_rows, parse_row
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.registry import BuildInputs, file_fingerprint
from mmalign.world.config import WorldConfig
from mmalign.world.scene import SPLITS


@dataclass
class Cooccurrence:
    """Per-image counts of object types and of unordered pairs, and the absent objects they make likely.

    A model trained on such data tends to "see" an object that usually comes with what is there: those are
    the realistic hallucinations (POPE's adversarial negatives, Li et al., 2023; the co-occurrence cause in
    HA-DPO, Zhao et al., 2023, and LURE, Zhou et al., 2024).
    """

    types: tuple[str, ...]
    object_counts: dict[str, int] = field(default_factory=dict)
    pair_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    """Images holding both types; keys sorted by :attr:`types` order."""

    def __post_init__(self) -> None:
        self._order = {t: i for i, t in enumerate(self.types)}

    def _key(self, a: str, b: str) -> tuple[str, str]:
        return (a, b) if self._order[a] <= self._order[b] else (b, a)

    def count(self, a: str, b: str) -> int:
        """Images holding both ``a`` and ``b`` (for ``a == b``: images holding ``a``)."""
        if a == b:
            return self.object_counts.get(a, 0)
        return self.pair_counts.get(self._key(a, b), 0)

    def score(self, candidate: str, present: Iterable[str]) -> int:
        """How often ``candidate`` appears with the present objects: the sum of pair counts."""
        return sum(self.count(p, candidate) for p in set(present) if p != candidate)

    def ranked_absent(self, present: Iterable[str]) -> list[str]:
        """Absent types, most co-occurring with ``present`` first (ties: more frequent, then type order)."""
        here = set(present)
        absent = [t for t in self.types if t not in here]
        return sorted(absent, key=lambda t: (-self.score(t, here), -self.object_counts.get(t, 0), self._order[t]))

    @classmethod
    def from_sets(cls, types: Iterable[str], images: Iterable[Iterable[str]]) -> Cooccurrence:
        """Counts over images, each given as the object types it holds."""
        stats = cls(tuple(types))
        objects: Counter[str] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        for names in images:
            present = sorted(set(names), key=stats._order.__getitem__)
            objects.update(present)
            pairs.update(combinations(present, 2))
        stats.object_counts, stats.pair_counts = dict(objects), dict(pairs)
        return stats

    @classmethod
    def from_world(cls, info: dict[str, Any], split: str = "train") -> Cooccurrence:
        """The counts ``world.json`` records for ``split`` (train: what a model learned from)."""
        try:
            stats = info["statistics"][split]
            counts = {t: int(n) for t, n in stats["object_frequency"].items()}
            stats_obj = cls(tuple(info["objects"]), counts)
            stats_obj.pair_counts = {
                stats_obj._key(p["a"], p["b"]): int(p["count"]) for p in stats["pair_cooccurrence"]
            }
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"world.json has no usable co-occurrence statistics for {split!r} ({err})") from None
        return stats_obj


@dataclass
class WorldSplit:
    """One split of a shapes world (still or video), read for a builder."""

    root: Path
    split: str
    config: WorldConfig
    info: dict[str, Any]
    rows: list[dict[str, Any]]
    """The split's ``scenes.jsonl`` rows (a video world's: ``clips.jsonl``), in file order."""
    fingerprint: str
    unit: str = "scenes"
    """What a row is: scenes, or clips of a video world (:func:`mmalign.pairs.video_clips.read_clip_split`)."""

    @property
    def description(self) -> str:
        world = "video world" if self.unit == "clips" else "world"
        return f"{len(self.rows)} {self.unit} of {world} {self.root} ({self.split})"


def world_header(inputs: BuildInputs, strategy: str, needs: str) -> tuple[Path, dict[str, Any], WorldConfig]:
    """The world directory named by ``--world`` (``needs``: what kind, for the message), its world.json and its
    config, after checking ``--world`` is given, ``--input`` is not, and ``--split`` is a split (the still and the
    video worlds' builders)."""
    from mmalign.world.generate import read_world

    if inputs.world is None:
        raise ConfigError(f"{strategy} builds from {needs}: pass --world DIR (and --split)")
    if inputs.input is not None:
        raise ConfigError(f"{strategy} builds from --world; --input {inputs.input} would be ignored: drop one")
    if inputs.split not in SPLITS:
        raise ConfigError(f"unknown split {inputs.split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(inputs.world)
    info = read_world(root)
    return root, info, config_from_dict(WorldConfig, info.get("config", {}), f"{root / 'world.json'} config")


def read_world_split(inputs: BuildInputs, strategy: str) -> WorldSplit:
    """The world split named by ``inputs`` (``--world`` and ``--split``); errors say what is missing."""
    root, info, config = world_header(inputs, strategy, "a shapes world")
    path = root / inputs.split / "scenes.jsonl"
    if not path.is_file():
        raise DataError("the world has no scenes for this split", file=path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err.msg}", file=path, line=lineno) from None
        for key in ("id", "image", "objects", "present"):
            if key not in row:
                raise DataError("missing field of a scene row", file=path, line=lineno, field=key)
        rows.append(row)
    if not rows:
        raise ConfigError(
            f"split {inputs.split!r} of world {root} has no scenes: nothing to build; choose a split that has "
            f"scenes (world.json split_sizes: {info.get('split_sizes')}) or make a world with them (mmalign world "
            f"--{'val-' if inputs.split == 'val' else 'test-' if inputs.split == 'test' else ''}scenes N)"
        )
    fingerprint = file_fingerprint(root / "world.json", path)
    return WorldSplit(root, inputs.split, config, info, rows, fingerprint)


def read_record_units(inputs: BuildInputs, strategy: str) -> tuple[list[dict[str, Any]], Path, str, str]:
    """Records of a JSONL file as units (dicts as written), checked; returns (units, root, fingerprint, what).

    With ``--world`` and no ``--input``, the world's clean caption records (``train/captions_clean.jsonl``)
    are used, with the world directory as data root.
    """
    if inputs.input is not None and inputs.world is not None:
        raise ConfigError(f"{strategy} reads --input or --world (its clean captions), not both")
    if inputs.input is not None:
        path = Path(inputs.input)
        root = Path(inputs.root) if inputs.root is not None else path.resolve().parent
    elif inputs.world is not None:
        path = Path(inputs.world) / inputs.split / "captions_clean.jsonl"
        root = Path(inputs.world)
        if not path.is_file():
            raise ConfigError(
                f"{strategy}: the world has no {inputs.split}/captions_clean.jsonl (only train has one); "
                "pass --input FILE to build from other records"
            )
    else:
        raise ConfigError(f"{strategy} needs --input FILE (records with images) or --world DIR")
    if path.suffix.lower() != ".jsonl":
        raise ConfigError(
            f"{strategy} reads JSONL records with image files ({path.name} is not .jsonl); "
            "convert it first with `mmalign data convert`"
        )
    units = []
    for row in iter_rows(path):
        record = parse_row(row, file=path)  # located DataError on a bad record
        if record.kind == "eval":
            raise DataError(
                f"{strategy} needs SFT or preference records, not evaluation items",
                file=path,
                line=row.line,
                record_id=record.id,
            )
        units.append(row.data)
    ids = Counter(str(u["id"]) for u in units)
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        raise DataError(f"duplicate record id {duplicated[0]!r}: units of a build need unique ids", file=path)
    return units, root, file_fingerprint(path), f"{len(units)} records of {path}"
