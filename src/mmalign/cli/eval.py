"""``mmalign eval``: score predictions in benchmarks' official formats (``score``)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate: score predictions in benchmarks' official file formats.", no_args_is_help=True)


@app.command("score")
def score(
    task: str = typer.Option(..., "--task", help="pope, chair, mme, mc, consistency, safety, reward or preference."),
    answers: Path = typer.Option(
        ...,
        "--answers",
        help="The predictions: answer JSON lines, a CHAIR caption file, an MME results dir, "
        "MMMU output.json, a VLGuard result file, reward pairs or judged battles.",
    ),
    questions: Path | None = typer.Option(
        None, "--questions", help="The questions with their labels (POPE question file, or mmalign eval items)."
    ),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="CHAIR: directory with COCO instances_*.json and captions_*.json."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Strict parsing: yes/no must be the first word (pope, consistency); "
        "an explicit option letter (mc). Disagreement with the official parser is always reported.",
    ),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        help="Answers of a baseline run on the same questions: report paired deltas with bootstrap intervals.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report (with per-item details) here."),
    caption_key: str | None = typer.Option(
        None, "--caption-key", help="CHAIR: caption field of the caption file (default: caption, answer or text)."
    ),
    ties: str = typer.Option("wrong", "--ties", help="Reward: a tied pair is 'wrong' (default) or worth 'half'."),
    anchor: str | None = typer.Option(
        None, "--anchor", help="Preference: model fixed at rating 1000; win rates are against it."
    ),
    n_resamples: int = typer.Option(
        1000, "--bootstrap", help="Bootstrap resamples for intervals and deltas (preference: rounds)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
) -> None:
    """Score another system's predictions with the benchmark's official metric definitions."""
    import json

    from mmalign.data.io import atomic_path
    from mmalign.eval.score import ScoreOptions, summary_lines
    from mmalign.eval.score import score as run_score

    options = ScoreOptions(
        annotations=annotations, strict=strict, caption_key=caption_key, ties=ties, anchor=anchor,
        n_resamples=n_resamples, seed=seed,
    )  # fmt: skip
    report = run_score(task, answers, questions=questions, baseline=baseline, options=options)
    for line in summary_lines(report):
        typer.echo(line)
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        typer.echo(f"report written to {json_out}")
