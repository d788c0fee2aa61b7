"""``mmalign world``: generate the shapes world (scenes, images, SFT data, evaluation items) into a directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from mmalign.world.config import WorldConfig

if TYPE_CHECKING:
    from mmalign.world.generate import WorldSummary


def field_help(name: str) -> str:
    """The documentation of a :class:`WorldConfig` field and its default (what ``--help`` prints)."""
    field = {f.name: f for f in dataclasses.fields(WorldConfig)}[name]
    text = field.metadata.get("help", "")
    return text if field.default is None else f"{text} (default: {field.default})"


def build_config(config_file: Path | None, overrides: dict[str, Any]) -> WorldConfig:
    """A checked config from an optional YAML file of WorldConfig keys, with command-line values on top."""
    from mmalign.config import config_from_dict, read_yaml

    data = read_yaml(config_file) if config_file is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    where = str(config_file) if config_file is not None else "options"
    return config_from_dict(WorldConfig, data, where)


def print_summary(summary: WorldSummary, console: Console) -> None:
    """Scenes per split, objects per scene, co-occurrence, caption noise and files, as tables."""
    cfg = summary.config
    splits = Table(title="Scenes", title_justify="left")
    for col in ("split", "scenes", "objects / scene", "with an absent partner"):
        splits.add_column(col, justify="right" if col != "split" else "left")
    for split, n in summary.scenes.items():
        splits.add_row(split, str(n), f"{summary.mean_objects[split]:.2f}", str(summary.with_absent_partner[split]))
    console.print(splits)

    pairs = Table(title="Most co-occurring pairs (train)", title_justify="left")
    for col in ("object", "object", "scenes with both", "partners"):
        pairs.add_column(col, justify="right" if col == "scenes with both" else "left")
    for a, b, n, partners in summary.top_pairs:
        pairs.add_row(a, b, str(n), "yes" if partners else "no")
    console.print(pairs)

    facts = Table(title="Co-occurrence and caption noise (train)", title_justify="left")
    facts.add_column("quantity")
    facts.add_column("configured", justify="right")
    facts.add_column("sampled", justify="right")
    rate = "-" if summary.partner_rate is None else f"{summary.partner_rate:.3f}"
    facts.add_row("partner added when possible", f"{cfg.partner_prob:.3f}", rate)
    facts.add_row("P(partner present | object present)", "", f"{summary.p_partner_given_object:.3f}")
    facts.add_row("P(other object present | object present)", "", f"{summary.p_other_given_object:.3f}")
    noise = "-" if summary.noise_rate is None else f"{summary.noise_rate:.3f}"
    facts.add_row(
        f"caption noise ({summary.noise_applied} of {summary.noise_eligible} eligible captions)",
        f"{cfg.caption_noise:.3f}",
        noise,
    )
    console.print(facts)

    files = Table(title="Files written (rows)", title_justify="left")
    for col in ("split", "images", "records"):
        files.add_column(col, justify="right" if col == "images" else "left")
    for split in summary.scenes:
        records = [f"{Path(path).stem} {n}" for path, n in summary.files.items() if path.startswith(f"{split}/")]
        files.add_row(split, str(summary.files.get(f"images/{split}", 0)), ", ".join(records))
    console.print(files)
    total = sum(summary.scenes.values())
    console.print(
        f"Wrote {total} scenes ({cfg.image_size} px) to [bold]{summary.out_dir}[/bold] in {summary.seconds:.1f} s "
        f"({summary.scenes_per_second:.0f} scenes/s); layout: world.json, images/<split>/, <split>/*.jsonl.",
        highlight=False,
    )


def world(
    out: Path = typer.Option(..., "--out", help="Directory to write the world into (replaced only with --overwrite)."),
    scenes: int | None = typer.Option(None, "--scenes", help=field_help("train_scenes")),
    val_scenes: int | None = typer.Option(None, "--val-scenes", help=field_help("val_scenes")),
    test_scenes: int | None = typer.Option(None, "--test-scenes", help=field_help("test_scenes")),
    size: int | None = typer.Option(None, "--size", help=field_help("image_size")),
    seed: int | None = typer.Option(None, "--seed", help=field_help("seed")),
    caption_noise: float | None = typer.Option(None, "--caption-noise", help=field_help("caption_noise")),
    partner_prob: float | None = typer.Option(None, "--partner-prob", help=field_help("partner_prob")),
    pairs: int | None = typer.Option(None, "--pairs", help=field_help("n_partner_pairs")),
    colours: int | None = typer.Option(None, "--colours", help=field_help("n_colours")),
    shapes: int | None = typer.Option(None, "--shapes", help=field_help("n_shapes")),
    grid_rows: int | None = typer.Option(None, "--grid-rows", help=field_help("grid_rows")),
    grid_cols: int | None = typer.Option(None, "--grid-cols", help=field_help("grid_cols")),
    min_objects: int | None = typer.Option(None, "--min-objects", help=field_help("min_objects")),
    max_objects: int | None = typer.Option(None, "--max-objects", help=field_help("max_objects")),
    object_sizes: bool | None = typer.Option(None, "--sizes/--no-sizes", help=field_help("object_sizes")),
    skew: float | None = typer.Option(None, "--skew", help=field_help("frequency_skew")),
    pope_k: int | None = typer.Option(None, "--pope-k", help=field_help("pope_k")),
    qa_per_scene: int | None = typer.Option(None, "--qa-per-scene", help=field_help("qa_per_scene")),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file of world options (WorldConfig keys); command-line options win."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes rendering images (same bytes for any number)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing world in --out."),
) -> None:
    """Generate a shapes world: scenes with exact ground truth, images, SFT data and evaluation items."""
    cfg = build_config(
        config,
        {
            "train_scenes": scenes,
            "val_scenes": val_scenes,
            "test_scenes": test_scenes,
            "image_size": size,
            "seed": seed,
            "caption_noise": caption_noise,
            "partner_prob": partner_prob,
            "n_partner_pairs": pairs,
            "n_colours": colours,
            "n_shapes": shapes,
            "grid_rows": grid_rows,
            "grid_cols": grid_cols,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "object_sizes": object_sizes,
            "frequency_skew": skew,
            "pope_k": pope_k,
            "qa_per_scene": qa_per_scene,
        },
    )
    from mmalign.files import OutputLock
    from mmalign.world.generate import generate_with_progress

    console = Console()
    with OutputLock.beside(out, "mmalign world"):
        summary = generate_with_progress(out, cfg, workers, overwrite, console)
    print_summary(summary, console)
