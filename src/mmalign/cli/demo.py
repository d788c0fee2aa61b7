"""``mmalign demo`` (interim): generate a small shapes world and print its statistics.

Until the demo issue lands (training a tiny LLaVA and aligning it), ``make demo`` runs this. It writes
``<out>/world`` with the demo's world settings (48 px, 3×3 grid, 20 object types, 10 partner pairs at 0.8,
caption noise 0.5) but fewer scenes, so it finishes in seconds on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Demo output directory; the world goes to OUT/world."),
    scenes: int = typer.Option(2000, "--scenes", help="Training scenes (val and test get 10% each)."),
    size: int = typer.Option(48, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed of the world."),
    workers: int = typer.Option(1, "--workers", help="Processes rendering images."),
) -> None:
    """Interim demo: generate the shapes world into OUT/world and print its statistics."""
    from rich.console import Console

    from mmalign.cli.world import build_config, print_summary, run_generation

    console = Console()
    console.print(
        "[bold]mmalign demo[/bold] (interim): generating the shapes world and printing its statistics.",
        highlight=False,
    )
    cfg = build_config(None, {"train_scenes": scenes, "image_size": size, "seed": seed})
    summary = run_generation(out / "world", cfg, workers, overwrite=True, console=console)
    print_summary(summary, console)
