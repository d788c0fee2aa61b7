"""Mixing preference files into one, and splitting one into train/val/test without leaking images.

``mix``: each source is ``PATH`` (all its records), ``PATH:n=500`` (500 drawn without replacement) or
``PATH:w=0.7`` (a share of ``total``, shares normalised, rounded by largest remainder), optionally with its
own data root (``PATH:w=0.7,root=DIR``). Draws and the final shuffle are seeded. Record ids must stay
unique across sources (``prefix_ids`` prefixes each with its source's file stem).

``split``: records are grouped (by their images, by prompt, by id, or not at all) so that a group never
straddles two splits; groups are shuffled by seed and cut at the cumulative ratios by record count.

Both read everything into memory (fine for the preference sets this project builds: 10^5 records).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmalign.data.io import default_out_root, default_root, read_records, write_records
from mmalign.data.records import ImageBlob, ImageRef, Record, VideoRef
from mmalign.errors import ConfigError, DataError

GROUP_BY: tuple[str, ...] = ("image", "prompt", "id", "none")


@dataclass(frozen=True)
class MixSource:
    path: Path
    count: int | None = None
    weight: float | None = None
    root: Path | None = None

    @property
    def data_root(self) -> Path:
        return self.root if self.root is not None else default_root(self.path)


def parse_source(spec: str, default_root: Path | None = None) -> MixSource:
    """``PATH[:n=N | :w=W][,root=DIR]`` → a :class:`MixSource` (ConfigError naming the bad part)."""
    head, sep, tail = spec.rpartition(":")
    path, rest = (head, tail) if sep and "=" in tail else (spec, "")
    values: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in ("n", "w", "root"):
            raise ConfigError(f"source {spec!r}: expected n=COUNT, w=WEIGHT or root=DIR after ':', got {part!r}")
        values[key] = value
    if "n" in values and "w" in values:
        raise ConfigError(f"source {spec!r}: give a count (n=) or a weight (w=), not both")
    try:
        count = int(values["n"]) if "n" in values else None
        weight = float(values["w"]) if "w" in values else None
    except ValueError:
        raise ConfigError(f"source {spec!r}: n must be an integer and w a number") from None
    if (count is not None and count < 0) or (weight is not None and not (math.isfinite(weight) and weight >= 0)):
        raise ConfigError(f"source {spec!r}: counts and weights must be finite numbers >= 0")
    root = Path(values["root"]) if "root" in values else default_root
    return MixSource(Path(path), count, weight, root)


def _counts(sources: list[MixSource], sizes: list[int], total: int | None) -> list[int]:
    weighted = [i for i, s in enumerate(sources) if s.weight is not None]
    if weighted and total is None:
        raise ConfigError("weights (w=) need --total, the number of records to draw in all")
    if not weighted and total is not None:
        raise ConfigError("--total needs sources with weights (PATH:w=WEIGHT)")
    counts = [
        s.count if s.count is not None else (0 if s.weight is not None else n)
        for s, n in zip(sources, sizes, strict=True)
    ]
    if weighted:
        assert total is not None
        left = total - sum(c for i, c in enumerate(counts) if i not in weighted)
        weight_sum = sum(sources[i].weight or 0.0 for i in weighted)
        if left < 0 or weight_sum <= 0:
            raise ConfigError(f"--total {total} leaves nothing for the weighted sources (or their weights are 0)")
        exact = [left * (sources[i].weight or 0.0) / weight_sum for i in weighted]
        floors = [int(x) for x in exact]
        order = sorted(range(len(weighted)), key=lambda k: (floors[k] - exact[k], k))
        for k in order[: left - sum(floors)]:
            floors[k] += 1
        for k, i in enumerate(weighted):
            counts[i] = floors[k]
    for source, count, size in zip(sources, counts, sizes, strict=True):
        if count > size:
            raise ConfigError(f"{source.path}: asked for {count} records but it has {size}")
    return counts


def mix(
    sources: list[MixSource],
    out: str | Path,
    *,
    total: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
    prefix_ids: bool = False,
    out_root: str | Path | None = None,
) -> dict[str, int]:
    """Write the mix to ``out``; returns records taken per source path (in order)."""
    if not sources:
        raise ConfigError("mix needs at least one --input")
    out = Path(out)
    roots = {s.data_root.resolve() for s in sources}
    if out_root is not None:
        root = Path(out_root)
    elif len(roots) == 1:
        root = default_out_root(out, sources[0].data_root)
    else:
        root = out.resolve().parent
    loaded = [list(read_records(s.path, root=s.data_root)) for s in sources]
    counts = _counts(sources, [len(records) for records in loaded], total)
    picked: list[Record] = []
    taken: dict[str, int] = {}
    stems = [s.path.stem for s in sources]
    prefixes = stems if len(set(stems)) == len(stems) else [f"{i}-{stem}" for i, stem in enumerate(stems)]
    for i, (source, records, count) in enumerate(zip(sources, loaded, counts, strict=True)):
        rng = random.Random(f"{seed}:mix:{i}")
        chosen = sorted(rng.sample(range(len(records)), count)) if count < len(records) else range(len(records))
        for j in chosen:
            try:
                record = _rebased(records[j], source.data_root, root)
            except DataError as err:
                raise err.located(file=source.path, record_id=records[j].id) from None
            picked.append(replace(record, id=f"{prefixes[i]}-{record.id}") if prefix_ids else record)
        taken[str(source.path)] = count
    seen: dict[str, str] = {}
    paths = [str(s.path) for s, c in zip(sources, counts, strict=True) for _ in range(c)]
    for record, path in zip(picked, paths, strict=True):
        if record.id in seen:
            raise DataError(f"id {record.id!r} is in both {seen[record.id]} and {path}: pass --prefix-ids")
        seen[record.id] = path
    if not picked:
        raise DataError(f"the sources hold no records to mix ({', '.join(map(str, taken))}): {out} not written")
    if shuffle:
        random.Random(f"{seed}:mix:shuffle").shuffle(picked)
    write_records(out, picked, root=root, src_root=root)
    return taken


def _rebased(record: Record, src_root: Path, out_root: Path) -> Record:
    """Path images from another root become blobs (same relative path), so they are copied to ``out_root``."""
    if src_root.resolve() == out_root.resolve():
        return record
    changes: dict[str, Any] = {}
    for key, refs in record.image_lists().items():
        changes[key] = [_blob(ref, src_root) for ref in refs]
    for key, videos in record.video_lists().items():
        changes[key] = [_video_blobs(video, src_root, f"{key}[{i}]") for i, video in enumerate(videos)]
    return replace(record, **changes)


def _video_blobs(video: VideoRef, root: Path, field: str) -> VideoRef:
    """A frame list's path frames as blobs (copied to the output root like images); a video file cannot move."""
    if video.frames is None:
        raise DataError(
            f"{field} is a video file ({video.path!r}) under another data root than the mix's output: give the "
            "sources one data root (root=DIR) or --out-root, or use frame lists",
            field=f"{field}.path",
        )
    return VideoRef(frames=tuple(_blob(frame, root) for frame in video.frames))


def _blob(ref: ImageRef, root: Path) -> ImageRef:
    from mmalign.data.images import resolve_image

    return ImageBlob(ref, resolve_image(root, ref).read_bytes()) if isinstance(ref, str) else ref


# ----------------------------------------------------------------------------------------------- split


def parse_ratios(specs: list[str]) -> dict[str, float]:
    """``["train=0.9", "val=0.1"]`` → ratios summing to 1 (ConfigError otherwise)."""
    ratios: dict[str, float] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        try:
            ratio = float(value) if eq else -1.0
        except ValueError:
            ratio = -1.0
        if not name or not 0 <= ratio <= 1 or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"split ratio {spec!r} must look like NAME=FRACTION (e.g. train=0.9)")
        if name in ratios:
            raise ConfigError(f"split {name!r} given twice")
        ratios[name] = ratio
    if not ratios or abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ConfigError(f"split ratios must sum to 1, got {sum(ratios.values()):g}")
    return ratios


def group_key(record: Record, group_by: str) -> str:
    if group_by == "id":
        return record.id
    if group_by == "none":
        return f"record:{record.id}"
    if group_by == "prompt":
        value: Any = record.to_dict().get("prompt")
    else:
        value = [r if isinstance(r, str) else hashlib.sha256(_image_bytes(r)).hexdigest() for r in record.images]
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _image_bytes(ref: ImageRef) -> bytes:
    from mmalign.data.images import encode_png

    return ref.data if isinstance(ref, ImageBlob) else encode_png(ref)  # type: ignore[arg-type]


def assign_splits(records: list[Record], ratios: dict[str, float], group_by: str, seed: int) -> list[str]:
    """The split of each record: groups shuffled by seed, cut at cumulative ratios of the record count."""
    if group_by not in GROUP_BY:
        raise ConfigError(f"unknown grouping {group_by!r}; choose one of {', '.join(GROUP_BY)}")
    keys = [group_key(r, group_by) for r in records]
    sizes: dict[str, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    groups = sorted(sizes)
    random.Random(f"{seed}:split").shuffle(groups)
    names = list(ratios)
    bounds = [sum(list(ratios.values())[: i + 1]) * len(records) for i in range(len(names))]
    where: dict[str, str] = {}
    before = 0
    for key in groups:
        middle = before + sizes[key] / 2  # a group goes where its middle falls
        where[key] = names[next((i for i, b in enumerate(bounds) if middle < b), len(names) - 1)]
        before += sizes[key]
    return [where[k] for k in keys]


def split(
    src: str | Path,
    out_dir: str | Path,
    ratios: dict[str, float],
    *,
    group_by: str = "image",
    seed: int = 0,
    root: str | Path | None = None,
    out_root: str | Path | None = None,
) -> dict[str, int]:
    """Write ``out_dir/<name><suffix>`` per split (suffix of ``src``); returns records per split."""
    src, out_dir = Path(src), Path(out_dir)
    src_root = Path(root) if root is not None else default_root(src)
    records = list(read_records(src, root=src_root))
    labels = assign_splits(records, ratios, group_by, seed)
    suffix = src.suffix if src.suffix in (".jsonl", ".parquet") else ""
    empty = [name for name in ratios if name not in labels]
    if empty:
        raise DataError(
            f"split {', '.join(map(repr, empty))} would get none of the {len(records)} records of {src}: nothing "
            "written; change --ratio (or --group-by) so that every split gets some"
        )
    counts = {}
    for name in ratios:
        target = out_dir / f"{name}{suffix}"
        if out_root is not None:
            dest_root = Path(out_root)
        else:
            dest_root = default_out_root(target, src_root)
        counts[name] = write_records(
            target,
            _select(records, labels, name),
            root=dest_root,
            src_root=src_root,
            kind=records[0].kind if records else None,
        )
    return counts


def _select(records: list[Record], labels: list[str], name: str) -> Iterator[Record]:
    return (r for r, label in zip(records, labels, strict=True) if label == name)
