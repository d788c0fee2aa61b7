"""``mmalign world``: generate the shapes world (scenes, images, SFT data, evaluation items) into a directory;
with ``--video``, the moving world's clips (:mod:`mmalign.world.video`).

Its world options are the fields of :class:`WorldConfig` (:mod:`mmalign.cli.options`), given on top of an optional
YAML file of the same keys (``--config``; ``--show-options`` lists them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from mmalign.cli.help import print_options
from mmalign.cli.options import config_options
from mmalign.world.config import WorldConfig

if TYPE_CHECKING:
    from mmalign.world.generate import WorldSummary
    from mmalign.world.video import VideoSummary


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


def print_video_summary(summary: VideoSummary, console: Console) -> None:
    """Clips and events per split, as a table, and where they went."""
    cfg = summary.config
    table = Table(title=f"Clips ({cfg.clip_frames} frames at {cfg.clip_fps:g} fps)", title_justify="left")
    for col in ("split", "clips", *(f"{t} events" for t in summary.events["train"])):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, n in summary.clips.items():
        table.add_row(split, str(n), *(str(v) for v in summary.events[split].values()))
    console.print(table)
    console.print(
        f"Wrote {sum(summary.clips.values())} clips ({cfg.image_size} px) to [bold]{summary.out_dir}[/bold] in "
        f"{summary.seconds:.1f} s ({summary.clips_per_second:.0f} clips/s); layout: world.json, <split>/clips.jsonl, "
        "frames/<split>/<id>/, videos/<split>/<id>.mp4.",
        highlight=False,
    )


def _show_options(show: bool) -> None:
    if show:
        from mmalign.config import describe

        print_options("mmalign world: keys of a --config file (WorldConfig)", describe(WorldConfig))
        raise typer.Exit()


@config_options(WorldConfig, unset=True, own_first=True)
def world(
    values: dict[str, Any],
    out: Path = typer.Option(..., "--out", help="Directory to write the world into (replaced only with --overwrite)."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file of world options (WorldConfig keys); command-line options win."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes rendering images (same bytes for any number)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing world in --out."),
    show_options: bool = typer.Option(
        False,
        "--show-options",
        help="List every key of a --config file with its type, default and meaning (the flags above), then exit.",
        callback=_show_options,
        is_eager=True,
        expose_value=False,
    ),
) -> None:
    """Generate a shapes world: scenes with exact ground truth, images, SFT data and evaluation items; with
    --video, moving clips (frames, mp4s, events) instead."""
    cfg = build_config(config, values)
    from mmalign.files import OutputLock

    console = Console()
    if cfg.video:
        from mmalign.world.video import generate_video_with_progress

        with OutputLock.beside(out, "mmalign world"):
            video = generate_video_with_progress(out, cfg, workers, overwrite, console)
        print_video_summary(video, console)
        return
    from mmalign.world.generate import generate_with_progress

    with OutputLock.beside(out, "mmalign world"):
        summary = generate_with_progress(out, cfg, workers, overwrite, console)
    print_summary(summary, console)
