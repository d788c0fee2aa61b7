"""Writing a shapes world to disk: the embedded default data of the whole project.

Output layout (stable: other stages read it; image paths in records are relative to the world directory)::

    DIR/world.json                  config, object types, colours (RGB), grid cells, partner pairs, draw
                                    weights, per-split co-occurrence statistics (object frequencies, pair
                                    co-occurrence counts, P(partner | object), partner rate actually drawn),
                                    caption noise actually applied, and the files written with their row counts
    DIR/images/<split>/<n>.png      one image per scene (split = train, val, test)
    DIR/<split>/scenes.jsonl        ground truth per scene: objects (name, colour, shape, size, row, col,
                                    position, jitter, box), present types, absent partners, clean caption;
                                    train rows also carry the caption used for training and whether it is noisy
    DIR/train/sft.jsonl             SFT records (mmalign.data.records.SFTRecord): per scene its caption (noisy
                                    at the configured rate) and ``qa_per_scene`` clean questions
    DIR/train/captions_clean.jsonl  the same caption records (same ids) with clean captions
    DIR/<split>/<task>.jsonl        for val and test, evaluation items (EvalItem), task in pope_random,
                                    pope_popular, pope_adversarial, caption, count, colour, position, mc, mme

Record ids: ``<scene id>-caption`` / ``-qa<j>`` (SFT), ``<scene id>-<task>-<j>`` (eval); scene ids are
``<split>-<n>``. Eval answers are normalised (``yes``/``no``, ``two``, ``red``, ``top left``, an option letter,
the reference caption); ``objects`` is the ground truth; ``meta`` holds ``scene_id`` and, by task, ``object``,
``strategy`` and ``absent_partner`` (POPE: the asked object is an absent partner of a present one),
``absent_partners`` (caption), ``group`` and ``subtask`` (MME), ``shape`` and ``count`` (count).

Same config (seed included) → byte-identical files, with any number of render workers. The directory is
written atomically: built beside DIR and renamed into place when complete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mmalign.data.io import read_json, write_jsonl
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path
from mmalign.objects.shapes import BACKGROUND, RGB, position_name
from mmalign.world.config import WorldConfig
from mmalign.world.draw import render_to_files
from mmalign.world.items import (
    EVAL_TASKS,
    TrainCaption,
    eval_items,
    image_path,
    scene_row,
    train_caption,
    train_records,
)
from mmalign.world.scene import SPLITS, Scene, object_types, partner_pairs, sample_split, type_weights
from mmalign.world.stats import CooccurrenceStats, compute_stats

T = TypeVar("T")

FORMAT = "mmalign.world/1"
RENDER_CHUNK = 256

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``sampling``, ``rendering``, ``writing``."""


@dataclass
class WorldSummary:
    """What :func:`generate_world` did, for a person (the CLI's table) and for code."""

    out_dir: Path
    config: WorldConfig
    scenes: dict[str, int]
    mean_objects: dict[str, float]
    with_absent_partner: dict[str, int]
    """Scenes per split where a present object's partner is absent."""
    top_pairs: list[tuple[str, str, int, bool]]
    """Most co-occurring pairs in train: (a, b, scenes with both, a and b are partners)."""
    p_partner_given_object: float
    """Mean over paired types of P(partner present | object present), in train."""
    p_other_given_object: float
    """Mean over other ordered pairs of P(b present | a present), in train: the baseline."""
    partner_rate: float | None
    """Partners added / partner trials in train (the configured ``partner_prob``, as drawn)."""
    noise_eligible: int
    noise_applied: int
    files: dict[str, int] = field(default_factory=dict)
    """Every file written (relative path → rows; ``images/<split>`` → images), as in ``world.json``."""
    seconds: float = 0.0

    @property
    def noise_rate(self) -> float | None:
        return self.noise_applied / self.noise_eligible if self.noise_eligible else None

    @property
    def scenes_per_second(self) -> float:
        return sum(self.scenes.values()) / self.seconds if self.seconds > 0 else float("inf")


def sample_world(cfg: WorldConfig) -> dict[str, list[Scene]]:
    """Every split's scenes, in memory (cheap: no rendering)."""
    return {split: sample_split(cfg, split, n) for split, n in cfg.split_sizes().items()}


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConfigError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / "world.json").is_file():
            raise ConfigError(
                f"{out_dir} is not empty and is not a shapes world (no world.json); refusing to replace it"
            )
        if not overwrite:
            raise ConfigError(f"{out_dir} already holds a world; pass --overwrite to replace it")


def render_in_chunks(
    render: Callable[..., int], jobs: list[Any], args: tuple[Any, ...], num_workers: int, report: Callable[[int], None]
) -> None:
    """``render(chunk, *args)`` over the jobs in chunks of ``RENDER_CHUNK`` (in ``num_workers`` spawned processes when
    more than 1), reporting each chunk's count as it finishes (scenes here, clips for :mod:`mmalign.world.video`)."""
    chunks = [jobs[i : i + RENDER_CHUNK] for i in range(0, len(jobs), RENDER_CHUNK)]
    if num_workers <= 1:
        for chunk in chunks:
            report(render(chunk, *args))
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork: the caller may run threads (progress bars)
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
        for n in pool.map(render, chunks, *([a] * len(chunks) for a in args)):
            report(n)


def world_info(cfg: WorldConfig, stats: dict[str, CooccurrenceStats], captions: list[TrainCaption]) -> dict[str, Any]:
    """The content of ``world.json`` (without the file list)."""
    eligible = sum(c.eligible for c in captions)
    noisy = sum(c.noisy for c in captions)
    cells = [
        {"row": r, "col": c, "name": position_name(r, c, cfg.grid_rows, cfg.grid_cols)}
        for r in range(cfg.grid_rows)
        for c in range(cfg.grid_cols)
    ]
    return {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "split_sizes": cfg.split_sizes(),
        "objects": list(object_types(cfg)),
        "colours": {c: list(RGB[c]) for c in cfg.colours},
        "shapes": list(cfg.shapes),
        "background": list(BACKGROUND),
        "grid": {"rows": cfg.grid_rows, "cols": cfg.grid_cols, "cells": cells},
        "partner_pairs": [list(p) for p in partner_pairs(cfg)],
        "draw_weights": {t: round(w, 6) for t, w in type_weights(cfg).items()},
        "pope_rankings_from": "train",
        "statistics": {split: s.summary(cfg) for split, s in stats.items()},
        "caption_noise": {
            "configured": cfg.caption_noise,
            "eligible": eligible,
            "noisy": noisy,
            "rate": round(noisy / eligible, 4) if eligible else None,
            "note": "train captions only; eligible = the scene has a partner of a present object absent",
        },
    }


def generate_world(
    out_dir: str | Path,
    cfg: WorldConfig,
    *,
    num_workers: int = 1,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> WorldSummary:
    """Generate the world described by ``cfg`` into ``out_dir`` (layout in the module docstring)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    report = progress or (lambda stage, done, total: None)
    sizes = cfg.split_sizes()
    total = sum(sizes.values())

    report("sampling", 0, total)
    scenes = sample_world(cfg)
    stats = {split: compute_stats(scenes[split], cfg) for split in SPLITS}
    captions = [train_caption(s, cfg) for s in scenes["train"]]
    report("sampling", total, total)

    files: dict[str, int] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        jobs = []
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            jobs += [(s, str(tmp / image_path(s))) for s in scenes[split]]
        done = 0

        def rendered(n: int) -> None:
            nonlocal done
            done += n
            report("rendering", done, total)

        report("rendering", 0, total)
        render_in_chunks(render_to_files, jobs, (cfg.image_size,), num_workers, rendered)
        for split in SPLITS:
            files[f"images/{split}"] = len(scenes[split])

        report("writing", 0, total)
        rows = [scene_row(s, cfg, c) for s, c in zip(scenes["train"], captions, strict=True)]
        files["train/scenes.jsonl"] = write_jsonl(tmp / "train/scenes.jsonl", rows)
        sft, clean = [], []
        for scene, caption in zip(scenes["train"], captions, strict=True):
            records, clean_record = train_records(scene, cfg, caption)
            sft += [r.to_dict() for r in records]
            clean.append(clean_record.to_dict())
        files["train/sft.jsonl"] = write_jsonl(tmp / "train/sft.jsonl", sft)
        files["train/captions_clean.jsonl"] = write_jsonl(tmp / "train/captions_clean.jsonl", clean)
        done = len(scenes["train"])
        report("writing", done, total)
        for split in ("val", "test"):
            files[f"{split}/scenes.jsonl"] = write_jsonl(
                tmp / split / "scenes.jsonl", [scene_row(s, cfg) for s in scenes[split]]
            )
            by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in EVAL_TASKS}
            for scene in scenes[split]:
                for task, items in eval_items(scene, cfg, stats["train"]).items():
                    by_task[task] += [item.to_dict() for item in items]
            for task in EVAL_TASKS:
                files[f"{split}/{task}.jsonl"] = write_jsonl(tmp / split / f"{task}.jsonl", by_task[task])
            done += len(scenes[split])
            report("writing", done, total)

        info = world_info(cfg, stats, captions) | {"files": dict(sorted(files.items()))}
        (tmp / "world.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    train = info["statistics"]["train"]
    ratios = train["p_partner_given_object"].values()
    return WorldSummary(
        out_dir=out_dir,
        config=cfg,
        scenes=sizes,
        mean_objects={split: info["statistics"][split]["mean_objects"] for split in SPLITS},
        with_absent_partner={split: info["statistics"][split]["scenes_with_absent_partner"] for split in SPLITS},
        top_pairs=[(p["a"], p["b"], p["count"], p["partners"]) for p in train["pair_cooccurrence"][:5]],
        p_partner_given_object=sum(ratios) / len(ratios) if ratios else 0.0,
        p_other_given_object=train["p_other_given_object_mean"],
        partner_rate=train["partner_rate"],
        noise_eligible=info["caption_noise"]["eligible"],
        noise_applied=info["caption_noise"]["noisy"],
        files=dict(sorted(files.items())),
        seconds=time.perf_counter() - start,
    )


def run_with_progress(
    generate: Callable[..., T], out: Path, cfg: WorldConfig, workers: int, overwrite: bool, console: Any
) -> T:
    """``generate`` (:func:`generate_world`, or the video world's) with a progress bar per stage on a ``rich``
    console."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        return generate(out, cfg, num_workers=workers, overwrite=overwrite, progress=progress)


def generate_with_progress(out: Path, cfg: WorldConfig, workers: int, overwrite: bool, console: Any) -> WorldSummary:
    """:func:`generate_world` with a progress bar per stage on a ``rich`` console (``mmalign world``, the demo)."""
    return run_with_progress(generate_world, out, cfg, workers, overwrite, console)


def read_world(world_dir: str | Path) -> dict[str, Any]:
    """``world.json`` of a generated world, checked for the format this code writes."""
    path = Path(world_dir) / "world.json"
    if not path.is_file():
        raise DataError("not a shapes world: world.json is missing (generate one with `mmalign world`)", file=path)
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"unknown world format (expected {FORMAT!r})", file=path, field="format")
    return info
