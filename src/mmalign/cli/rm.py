"""``mmalign rm``: use a trained reward model: ``score`` a file's responses, sample the ``best-of`` n responses; and
``study`` one on the shapes world (suite per pair kind, best-of-n over-optimisation).

Thin: parses options, calls :func:`mmalign.pairs.reward_score.score_file`, the ``best-of-n`` builder
(:mod:`mmalign.pairs.best_of`, run by :func:`mmalign.pairs.run_build`) and :func:`mmalign.demo.rm_study.run_study`,
prints. Heavy imports stay inside the
commands so ``mmalign --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Use a reward model: score responses, best-of-n sampling; study one on the shapes world.",
    no_args_is_help=True,
)

ROOT_HELP = (
    "Data root that image paths are relative to (default: the shapes world holding the file, the nearest folder "
    "above it with a world.json; else the file's folder)."
)
PROGRESS_HELP = "Show a progress bar on stderr (default: when stderr is a terminal)."


@app.command()
def score(
    reward_model: Path = typer.Option(..., "--reward-model", help="Reward-model directory (mmalign train rm)."),
    data: Path = typer.Option(
        ..., "--data", help="Input .jsonl: preference pairs, SFT records or candidate lists (docs/reward.md)."
    ),
    out: Path = typer.Option(..., "--out", help="Output .jsonl: each input line with its rewards added."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Sequences scored per forward pass."),
    max_length: int | None = typer.Option(
        None, "--max-length", min=1, help="Longest sequence in tokens (longer: an error naming the line)."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="Dtype of the reward model: float32, bfloat16, float16."),
    device: str | None = typer.Option(None, "--device", help="Device (cpu, cuda...); default: transformers' choice."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT, and discard an unfinished run of it instead of resuming."
    ),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP),
) -> None:
    """Add a reward model's rewards to every line of a JSONL file (rerun the same command to resume)."""
    from transformers.utils import logging

    from mmalign.files import OutputLock
    from mmalign.pairs.reward_score import score_file

    logging.disable_progress_bar()  # no per-shard bars when loading weights

    with OutputLock.beside(out, "mmalign rm score"), _counter("scoring", "lines", progress) as report:
        result = score_file(
            reward_model,
            data,
            out,
            root=root,
            batch_size=batch_size,
            overwrite=overwrite,
            dtype=dtype,
            device=device,
            max_length=max_length,
            progress=report,
        )
    resumed = f"; resumed after {result.resumed_lines} lines" if result.resumed_lines else ""
    rate = result.sequences / result.seconds if result.seconds > 0 else 0.0
    typer.echo(
        f"wrote {result.lines} lines to {out} ({result.sequences} sequences scored in {result.seconds:.1f} s, "
        f"{rate:,.1f}/s){resumed}"
    )


@app.command("best-of")
def best_of(
    model: Path = typer.Option(..., "--model", help="Policy model directory that samples the responses."),
    reward_model: Path = typer.Option(..., "--reward-model", help="Reward-model directory (mmalign train rm)."),
    out: Path = typer.Option(..., "--out", help="Output .jsonl of SFT records (image files go under --out-root)."),
    data: Path | None = typer.Option(
        None, "--data", help="Prompts: a .jsonl of records (their prompts) or COCO-style annotations."
    ),
    world: Path | None = typer.Option(None, "--world", help="Prompts: a shapes world's scenes (with --prompt)."),
    split: str = typer.Option("train", "--split", help="Split of the world: train, val or test."),
    root: Path | None = typer.Option(None, "--root", help="Data root of --data's image paths (default: its folder)."),
    out_root: Path | None = typer.Option(
        None, "--out-root", help="Where the output's image paths are relative to (as for `mmalign data build`)."
    ),
    n: int = typer.Option(4, "--n", min=1, help="Responses sampled per prompt."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling probability mass."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Longest sampled response, in tokens."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sampling (each prompt group: its own seed)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Sequences generated together."),
    reward_batch_size: int = typer.Option(16, "--reward-batch-size", min=1, help="Candidates scored per forward."),
    prompts_per_unit: int = typer.Option(8, "--prompts-per-unit", min=1, help="Prompts per unit of resume."),
    min_reward: float | None = typer.Option(
        None, "--min-reward", help="Leave out prompts whose best reward is below this (they are counted)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Question asked of each world or COCO image."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N prompts."),
    dtype: str = typer.Option("float32", "--dtype", help="Dtype of both models: float32, bfloat16, float16."),
    device: str | None = typer.Option(None, "--device", help="Device (cpu, cuda...); default: transformers' choice."),
    restart: bool = typer.Option(False, "--restart", help="Discard an unfinished run of OUT instead of resuming."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP),
) -> None:
    """Sample n responses per prompt and keep the one the reward model rates highest, as SFT records (train on
    them with `mmalign train sft`: rejection-sampling fine-tuning). Rerun the same command to resume."""
    from transformers.utils import logging

    from mmalign.files import OutputLock
    from mmalign.pairs import best_of as strategy
    from mmalign.pairs.registry import BuildInputs, make_builder
    from mmalign.pairs.shards import run_build

    options: dict[str, Any] = {
        "model": str(model),
        "reward": {"path": str(reward_model), "batch_size": reward_batch_size},
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "prompts_per_unit": prompts_per_unit,
        "min_reward": min_reward,
        "limit": limit,
        "dtype": dtype,
        "device": device,
    }
    if prompt is not None:
        options["prompt"] = prompt
    builder = make_builder("best-of-n", options)
    logging.disable_progress_bar()
    inputs = BuildInputs(world=world, split=split, input=data, root=root)
    before = strategy.STATS.copy()
    with OutputLock.beside(out, "mmalign rm best-of"), _counter("best-of-n", "prompt groups", progress) as report:
        result = run_build(
            builder,
            inputs,
            out,
            seed=seed,
            out_root=out_root,
            restart=restart,
            progress=lambda p: report(p.units_done),
        )
    counts = strategy.STATS - before
    skipped = f"; left out: {counts['skipped:min_reward']} below --min-reward, {counts['skipped:empty']} empty"
    resumed = f"; resumed {result.resumed_shards} of {result.shards} shards" if result.resumed_shards else ""
    typer.echo(
        f"wrote {result.pairs} SFT records from {result.description} to {out} in {result.seconds:.1f} s"
        f"{skipped if counts['prompts'] else ''}{resumed}; image paths are relative to {result.out_root}"
    )


@contextlib.contextmanager
def _counter(label: str, unit: str, shown: bool | None) -> Iterator[Callable[[int], None]]:
    """``report(done)``: a count of ``unit`` done on stderr, refreshed by hand (nothing when not shown)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not (sys.stderr.isatty() if shown is None else shown):
        yield lambda done: None
        return
    columns = (SpinnerColumn(), TextColumn(f"{label}: {{task.completed:,}} {unit}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), auto_refresh=False, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(done: int) -> None:
            bar.update(task, completed=done)
            bar.refresh()

        yield report


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
