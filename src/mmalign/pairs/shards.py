"""Running a build: units in shards, several processes, resume after a crash, one JSONL at the end.

``run_build`` writes ``OUT.shards/`` beside the output ``OUT`` (a ``.jsonl`` file):

    OUT.shards/manifest.json       strategy, options, seed, input fingerprint, shard size, unit count, roots
    OUT.shards/shard-00000.jsonl   the records of units [0, shard_size), written atomically when complete
    ...

and, when every shard is there, concatenates them into ``OUT`` (atomically) and removes the directory.
Image files (new ones, and copies of input images when the output root is not the input root) go straight
under the output root, named by content; so do a video's frames and video files (``videos``,
``rejected_videos``). A build that is killed leaves its finished shards; running the same command again
checks the manifest (same strategy, options, seed, inputs), skips those shards and produces exactly the
bytes an uninterrupted run would: every unit is built from its own seed, so neither shard boundaries nor
the number of processes change a record.

With ``num_proc > 1`` each shard's units go through ``datasets.Dataset.map(num_proc=...)`` (one shard at a
time, so progress and resume keep shard granularity); with 1 they run in this process.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.images import blob_target, content_path, encode_png, resolve_image, write_image_file
from mmalign.data.io import default_out_root
from mmalign.data.parse import record_from_dict
from mmalign.data.records import ImageBlob, ImageRef, PreferenceRecord, SFTRecord, VideoRef
from mmalign.errors import ConfigError, DataError, MMAlignError
from mmalign.files import atomic_path
from mmalign.pairs.registry import Builder, BuildInputs, options_dict
from mmalign.seeding import derive_seed

MANIFEST_FORMAT = "mmalign.build/1"
DEFAULT_SHARD_SIZE = 1000


@dataclass
class BuildProgress:
    """Passed to the progress callback after the resume check and after each shard."""

    units_done: int
    units_total: int
    pairs: int
    """Pairs in all finished shards (resumed ones included)."""
    new_pairs: int
    """Pairs built by this run (what a rate should use)."""
    seconds: float
    """Time spent building in this run."""


@dataclass
class BuildResult:
    out: Path
    out_root: Path
    units: int
    pairs: int
    shards: int
    resumed_shards: int
    new_pairs: int
    seconds: float
    description: str

    @property
    def pairs_per_second(self) -> float:
        return self.new_pairs / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs besides the units (pickled once per worker)."""

    strategy: str
    options: dict[str, Any]
    seed: int
    shared: Any
    in_root: str
    out_root: str


def shards_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.shards"


def run_build(
    builder: Builder,
    inputs: BuildInputs,
    out: str | Path,
    *,
    seed: int = 0,
    out_root: str | Path | None = None,
    num_proc: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    restart: bool = False,
    keep_shards: bool = False,
    progress: Callable[[BuildProgress], None] | None = None,
) -> BuildResult:
    """Plan, build every shard not built yet, and assemble ``out`` (see the module docstring)."""
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"a build writes JSON lines: name the output *.jsonl, not {out.name!r} (convert later)")
    if num_proc < 1:
        raise ConfigError(f"num_proc must be at least 1, got {num_proc}")
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
    plan = builder.plan(inputs, seed)
    if not plan.units:
        raise DataError(f"{builder.name}: {plan.description} holds nothing to build from: {out} not written")
    ids = [str(unit["id"]) for unit in plan.units]
    if len(set(ids)) != len(ids):
        raise DataError(f"{builder.name}: two units share an id; unit ids must be unique")
    root = Path(out_root) if out_root is not None else default_out_root(out, plan.in_root)
    manifest = {
        "format": MANIFEST_FORMAT,
        "strategy": builder.name,
        "options": options_dict(builder),
        "seed": seed,
        "inputs": plan.fingerprint,
        "shard_size": shard_size,
        "units": len(plan.units),
        "in_root": str(plan.in_root.resolve()),
        "out_root": str(root.resolve()),
    }
    directory = _open_shards(shards_dir(out), manifest, restart)
    _WRITTEN.clear()  # image files are checked again by each build (they may have been removed since)
    job = ShardJob(builder.name, manifest["options"], seed, plan.shared, str(plan.in_root), str(root))
    n_shards = math.ceil(len(plan.units) / shard_size)
    done = {i for i in range(n_shards) if _shard_path(directory, i).is_file()}
    pairs = sum(_count_lines(_shard_path(directory, i)) for i in done)
    units_done = sum(len(plan.units[i * shard_size : (i + 1) * shard_size]) for i in done)
    start, new_pairs = time.perf_counter(), 0
    report = progress or (lambda p: None)
    report(BuildProgress(units_done, len(plan.units), pairs, 0, 0.0))
    for i in range(n_shards):
        if i in done:
            continue
        units = plan.units[i * shard_size : (i + 1) * shard_size]
        lines = _run_units(units, job, num_proc)
        with atomic_path(_shard_path(directory, i)) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        units_done += len(units)
        pairs += len(lines)
        new_pairs += len(lines)
        report(BuildProgress(units_done, len(plan.units), pairs, new_pairs, time.perf_counter() - start))
    seconds = time.perf_counter() - start
    if pairs == 0:  # an empty file is not a result: say why, write nothing, keep no shards
        shutil.rmtree(directory, ignore_errors=True)
        raise DataError(
            f"{builder.name} made no pairs from {plan.description} (its options rule every unit out): {out} not written"
        )
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        for i in range(n_shards):
            with open(_shard_path(directory, i), "rb") as shard:
                shutil.copyfileobj(shard, f)
    if not keep_shards:
        shutil.rmtree(directory, ignore_errors=True)
    return BuildResult(out, root, len(plan.units), pairs, n_shards, len(done), new_pairs, seconds, plan.description)


def _shard_path(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.jsonl"


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _open_shards(directory: Path, manifest: dict[str, Any], restart: bool) -> Path:
    """The shard directory for this build: new, or an earlier run's if its manifest matches."""
    path = directory / "manifest.json"
    if directory.exists() and restart:
        if directory.is_dir() and not path.is_file() and any(directory.iterdir()):
            raise ConfigError(f"{directory} is not a build's shard directory (no manifest.json); remove it yourself")
        shutil.rmtree(directory)
    if directory.exists():
        if not path.is_file():
            raise ConfigError(f"{directory} exists but has no manifest.json: remove it or pass --restart")
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path} is damaged: pass --restart to build from scratch") from None
        changed = [key for key in manifest if old.get(key) != manifest[key]]
        if changed:
            raise ConfigError(
                f"{directory} holds an unfinished build with different {', '.join(changed)}: "
                "run the same command to resume it, or pass --restart to discard it"
            )
        return directory
    with atomic_path(directory) as tmp:  # made whole with its manifest: never a shard folder without one
        tmp.mkdir(parents=True)
        (tmp / path.name).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory


# ------------------------------------------------------------------------------------------- workers


def _run_units(units: list[dict[str, Any]], job: ShardJob, num_proc: int) -> list[str]:
    """JSON lines of the records of ``units``, in unit order."""
    if num_proc == 1 or len(units) < 2:
        return [line for unit in units for line in unit_lines(unit, job)]
    import datasets

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        table = datasets.Dataset.from_dict({"unit": [json.dumps(u, ensure_ascii=False) for u in units]})
        mapped = table.map(
            _map_batch,
            batched=True,
            batch_size=max(1, math.ceil(len(units) / num_proc)),  # one batch per process
            num_proc=min(num_proc, len(units)),
            fn_kwargs={"job": job},
            remove_columns=["unit"],
            load_from_cache_file=False,
            keep_in_memory=True,
            new_fingerprint=f"mmalign-build-{derive_seed(job.seed, job.strategy, units[0]['id'])}",
        )
        return [line for lines in mapped["lines"] for line in lines]
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _map_batch(batch: dict[str, list[Any]], job: ShardJob) -> dict[str, list[Any]]:
    return {"lines": [unit_lines(json.loads(text), job) for text in batch["unit"]]}


_BUILDERS: dict[tuple[str, str], Builder] = {}


def _builder(job: ShardJob) -> Builder:
    from mmalign.pairs.registry import make_builder

    key = (job.strategy, json.dumps(job.options, sort_keys=True))
    if key not in _BUILDERS:
        _BUILDERS[key] = make_builder(job.strategy, job.options)
    return _BUILDERS[key]


def unit_lines(unit: dict[str, Any], job: ShardJob) -> list[str]:
    """Build one unit and serialise its records as JSON lines, writing their image files under the output
    root; every record is checked by ``record_from_dict`` as a reader will see it."""
    builder = _builder(job)
    unit_id = str(unit["id"])
    try:
        records = builder.build(unit, job.shared, derive_seed(job.seed, job.strategy, unit_id))
    except DataError as err:
        raise err.located(record_id=unit_id) from None
    check_records(records)
    in_root, out_root = Path(job.in_root), Path(job.out_root)
    same_root = _same_dir(job.in_root, job.out_root)
    lines = []
    for record in records:
        row = record.to_dict()
        for key, refs in record.image_lists().items():
            row[key] = [_image_file(ref, in_root, out_root, same_root, f"{key}[{i}]") for i, ref in enumerate(refs)]
        for key, videos in record.video_lists().items():
            if key in row:  # written only when present
                row[key] = [_video_files(v, in_root, out_root, same_root, f"{key}[{i}]") for i, v in enumerate(videos)]
        try:
            record_from_dict(row, builder.record_kind)
        except MMAlignError as err:
            raise RuntimeError(f"{job.strategy} built an invalid record from unit {unit_id!r}: {err}") from None
        lines.append(json.dumps(row, ensure_ascii=False))
    return lines


@functools.lru_cache(maxsize=16)
def _same_dir(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


_WRITTEN: set[tuple[str, str]] = set()
"""(output root, path) of image files this process has written or found in place: many records share an
image (every pair of a scene names its image), and each needs checking or copying once."""


def _image_file(ref: ImageRef, in_root: Path, out_root: Path, same_root: bool, field: str) -> str:
    """The relative path of ``ref`` under the output root, writing the file there if it is not yet."""
    if isinstance(ref, str):
        if not same_root and (str(out_root), ref) not in _WRITTEN:
            write_image_file(out_root, ref, resolve_image(in_root, ref, field).read_bytes(), field)
            _WRITTEN.add((str(out_root), ref))
        return ref
    if isinstance(ref, ImageBlob):
        target, data = blob_target(ref), ref.data
    else:
        data = encode_png(ref)
        target = content_path(data)
    if (str(out_root), target) not in _WRITTEN:  # content-named: the same path always holds the same bytes
        write_image_file(out_root, target, data, field)
        _WRITTEN.add((str(out_root), target))
    return target


def _video_files(video: VideoRef, in_root: Path, out_root: Path, same_root: bool, field: str) -> dict[str, Any]:
    """A video's JSON form with its files under the output root: each frame as an image, a file copied as one."""
    if video.frames is None:
        assert video.path is not None
        return {**video.to_dict(), "path": _image_file(video.path, in_root, out_root, same_root, f"{field}.path")}
    where = f"{field}.frames"
    return {
        "frames": [_image_file(f, in_root, out_root, same_root, f"{where}[{j}]") for j, f in enumerate(video.frames)]
    }


def check_records(records: list[PreferenceRecord] | list[SFTRecord]) -> None:
    """Unique ids within one unit's output (a builder bug otherwise)."""
    ids = [r.id for r in records]
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"a builder returned duplicate record ids: {ids}")
