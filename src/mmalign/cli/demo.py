"""``mmalign demo``: the whole pipeline on the embedded shapes world, ending with a measured result.

World → SFT baseline (shipped, or ``--from-scratch``) → evaluation → preference pairs → DPO, DPO + NLL, mDPO,
SimPO and the SFT-on-chosen control from the same baseline on one budget → evaluation of each on the same
held-out scenes → ``OUT/report.md``, ``OUT/results.json``, plots, and the headline (:mod:`mmalign.demo`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from mmalign.demo.settings import METHODS


def demo(
    out: Path = typer.Option(
        Path("demo-out"),
        "--out",
        help="Output directory (a rerun resumes: finished steps whose inputs did not change are skipped).",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A one-minute smoke run: tiny sizes, every step runs, the numbers mean nothing."
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="Train the SFT baseline with configs/demo/sft.yaml "
        "(a few minutes) instead of using the shipped checkpoint.",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the pairs, the training order, the bootstrap (and the SFT "
        "with --from-scratch). Same seed, same machine: the same results.json.",
    ),
    world_seed: int = typer.Option(
        0, "--world-seed", help="Seed of the shapes world (the shipped baseline knows world seed 0 only)."
    ),
    test_scenes: int = typer.Option(400, "--test-scenes", help="Held-out scenes every model is evaluated on."),
    train_scenes: int = typer.Option(
        40_000,
        "--train-scenes",
        help="Training scenes of the world (the SFT recipe's; pairs come from the first ones).",
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Optimiser steps of every method (default: the configs', which must agree)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Pairs per step of every method (default: the configs')."
    ),
    methods: str | None = typer.Option(
        None,
        "--methods",
        help="Comma-separated subset of: " + ", ".join(m.name for m in METHODS) + " (the control always runs).",
    ),
    configs: Path | None = typer.Option(
        None, "--configs", help="Directory of the demo's configs (default: configs/demo of this checkout)."
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples of every interval."),
    eval_batch_size: int = typer.Option(64, "--eval-batch-size", help="Items per forward pass when evaluating."),
    export_baseline: Path | None = typer.Option(
        None,
        "--export-baseline",
        help="Train the baseline from scratch, write it to this directory as the shipped checkpoint, and stop.",
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: when the terminal is interactive)."
    ),
) -> None:
    """Run the whole pipeline on the shapes world and report what alignment changed, with intervals."""
    import sys

    from rich.console import Console

    from mmalign.demo.pipeline import run_demo
    from mmalign.demo.settings import DemoSettings
    from mmalign.files import OutputLock

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else tuple(m.name for m in METHODS)
    settings = DemoSettings(
        out=out,
        quick=quick,
        from_scratch=from_scratch,
        seed=seed,
        world_seed=world_seed,
        test_scenes=test_scenes,
        train_scenes=train_scenes,
        steps=steps,
        batch_size=batch_size,
        methods=chosen,
        configs=configs,
        bootstrap=bootstrap,
        eval_batch_size=eval_batch_size,
        export_baseline=export_baseline,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    with contextlib.ExitStack() as locks:
        locks.enter_context(OutputLock(out, "mmalign demo"))
        if export_baseline is not None:
            locks.enter_context(OutputLock.beside(export_baseline, "mmalign demo --export-baseline"))
        run_demo(settings, Console())
