"""``mmalign rm``: reward-model studies on the shapes world (:mod:`mmalign.demo.rm_study`)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Reward models: measure one on the shapes world, whose truth is exact.", no_args_is_help=True)


@app.command("study")
def study(
    out: Path = typer.Option(Path("rm-study"), "--out", help="Output directory (a rerun resumes finished steps)."),
    quick: bool = typer.Option(
        False, "--quick", help="Small sizes: about 1.5 minutes on 2 CPU cores (numbers indicative only)."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the pairs, the RM's training, the sampling, the bootstrap."
    ),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Progress bars while training."),
) -> None:
    """World → pairs → train an RM → held-out suite per kind → best-of-n over-optimisation (gold vs proxy) →
    report.md, results.json, overopt.png."""
    from rich.console import Console

    from mmalign.demo.rm_study import StudySettings, run_study
    from mmalign.files import OutputLock

    console = Console()
    with OutputLock(out, "mmalign rm study"):
        run_study(
            StudySettings(out=out, quick=quick, seed=seed, progress=progress),
            lambda text: console.print(text, highlight=False, soft_wrap=True),
        )
