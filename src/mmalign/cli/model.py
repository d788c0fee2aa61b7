"""``mmalign model``: build tiny offline models (``init``) and inspect model directories (``info``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mmalign.models.tiny import ARCHS, DEFAULT_PRESET, PRESETS

app = typer.Typer(help="Build tiny offline models and inspect model directories.", no_args_is_help=True)


@app.command("init")
def init(
    out: Path = typer.Option(..., "--out", help="Directory to write the model to (created; must be empty)."),
    preset: str | None = typer.Option(
        None, "--preset", help=f"Named tiny model: {', '.join(PRESETS)} (default {DEFAULT_PRESET})."
    ),
    arch: str | None = typer.Option(None, "--arch", help=f"Family, with its small defaults: {', '.join(ARCHS)}."),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Image side in pixels the vision tower sees (idefics3: one tile)."
    ),
    patch_size: int | None = typer.Option(None, "--patch-size", help="Vision patch side in pixels."),
    image_split: int | None = typer.Option(
        None, "--image-split", help="idefics3: tiles per image side (plus a global view); 1 disables splitting."
    ),
    vision_width: int | None = typer.Option(None, "--vision-width", help="Hidden size of the vision tower."),
    vision_layers: int | None = typer.Option(None, "--vision-layers", help="Layers of the vision tower."),
    vision_heads: int | None = typer.Option(None, "--vision-heads", help="Attention heads of the vision tower."),
    text_width: int | None = typer.Option(None, "--text-width", help="Hidden size of the language model."),
    text_layers: int | None = typer.Option(None, "--text-layers", help="Decoder layers of the language model."),
    text_heads: int | None = typer.Option(None, "--text-heads", help="Attention heads of the language model."),
    max_positions: int | None = typer.Option(None, "--max-positions", help="Longest sequence the model accepts."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it already holds files."),
) -> None:
    """Build a small random-weight model with its processor and tokenizer, saved like a Hugging Face checkpoint."""
    from mmalign.files import OutputLock
    from mmalign.models.loading import load
    from mmalign.models.tiny import save_tiny, spec_for

    _quiet()
    spec = spec_for(
        preset,
        arch,
        image_size=image_size,
        patch_size=patch_size,
        image_split=image_split,
        vision_width=vision_width,
        vision_layers=vision_layers,
        vision_heads=vision_heads,
        text_width=text_width,
        text_layers=text_layers,
        text_heads=text_heads,
        max_positions=max_positions,
        seed=seed,
    )
    name = preset or (None if arch else DEFAULT_PRESET)
    with OutputLock.beside(out, "mmalign model init"):
        save_tiny(spec, out, overwrite=overwrite, preset=name)
    _print_info(load(out), Console(), title=f"Wrote {out}")


@app.command("info")
def info(
    path: Path = typer.Argument(..., help="A local model directory (config.json and safetensors weights)."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the directory's own Python code to run."
    ),
) -> None:
    """Load a model directory as the stages would and print its family, sizes and image tokens."""
    from mmalign.models.loading import load

    _quiet()
    _print_info(load(path, trust_remote_code=trust_remote_code), Console(), title=str(path))


def _quiet() -> None:
    """No per-shard progress bars from transformers: one table says what happened."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _print_info(loaded: object, console: Console, title: str) -> None:
    from mmalign.models.info import describe

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in describe(loaded).items():  # type: ignore[arg-type]
        table.add_row(key, value)
    console.print(table)
