"""``mmalign eval``: evaluate a model (``run``), put runs side by side (``compare``) and score predictions in
benchmarks' official formats (``score``).

``mmalign eval --model DIR ...`` (options straight after ``eval``) is a shorthand for ``mmalign eval run --model
DIR ...`` (:func:`mmalign.cli.main.main` inserts ``run``): a typer group whose callback also took ``--model``
would swallow the subcommands' names.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Evaluate: run a model on benchmark tasks, compare runs, score predictions in official formats.",
    no_args_is_help=True,
)


@app.command("score")
def score(
    task: str = typer.Option(..., "--task", help="pope, chair, mme, mc, consistency, safety, reward or preference."),
    answers: Path = typer.Option(
        ...,
        "--answers",
        help="The predictions: answer JSON lines, a CHAIR caption file, an MME results dir, "
        "MMMU's output folder or an output.json, a VLGuard result file, reward pairs or judged battles.",
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
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap resampling."),
    mc_random_seed: int | None = typer.Option(
        None,
        "--mc-random-seed",
        help="mc: score an answer that names no option as a letter drawn with this seed, in file order, as MMMU "
        "does (42 gives MMMU's own figures). Default: such an answer is wrong, so the score never moves with a draw.",
    ),
) -> None:
    """Score another system's predictions with the benchmark's official metric definitions."""
    import contextlib
    import json

    from mmalign.eval.score import ScoreOptions, summary_lines
    from mmalign.eval.score import score as run_score
    from mmalign.files import OutputLock, atomic_path

    options = ScoreOptions(
        annotations=annotations,
        strict=strict,
        caption_key=caption_key,
        ties=ties,
        anchor=anchor,
        n_resamples=n_resamples,
        seed=seed,
        mc_random_seed=mc_random_seed,
    )
    lock = contextlib.nullcontext() if json_out is None else OutputLock.beside(json_out, "mmalign eval score")
    with lock:
        report = run_score(task, answers, questions=questions, baseline=baseline, options=options)
        for line in summary_lines(report):
            typer.echo(line)
        if json_out is not None:
            with atomic_path(json_out) as tmp:
                tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            typer.echo(f"report written to {json_out}")


def _sources(values: list[str]) -> dict[str, Path]:
    from mmalign.errors import ConfigError

    out: dict[str, Path] = {}
    for value in values:
        task, sep, path = value.partition("=")
        if not sep or not task.strip() or not path.strip():
            raise ConfigError(f"--source takes TASK=PATH, got {value!r}")
        if task.strip() in out:
            raise ConfigError(f"--source names task {task.strip()!r} twice")
        out[task.strip()] = Path(path.strip())
    return out


@app.command("run")
def run(
    model: Path = typer.Option(..., "--model", help="The model directory to evaluate (a local Hugging Face dir)."),
    out: Path = typer.Option(..., "--out", help="Run directory: results.json, report.md, PNGs, predictions, cache."),
    tasks: str | None = typer.Option(
        None,
        "--tasks",
        help="Comma-separated tasks: pope_random, pope_popular, pope_adversarial, chair, "
        "consistency, mme, mc, safety, dialogue, reward, preference (pope: its three splits).",
    ),
    suite: str | None = typer.Option(
        None, "--suite", help="A named suite: shapes, hallucination, general, alignment, quick."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="A generated shapes world (default: OUT/world, generated if absent)."
    ),
    split: str = typer.Option("test", "--split", help="World split to evaluate on: test or val."),
    source: list[str] = typer.Option(
        [], "--source", help="TASK=PATH: read a task's public benchmark files instead of the world (repeatable)."
    ),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Where --source images are (default: beside the benchmark file)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="Items per task: the first N, completed to the end of the scene or image in progress."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Items per forward pass / generation batch (left padding)."),
    fast: bool | None = typer.Option(
        None,
        "--fast/--generate",
        help="Yes/no and multiple choice: compare the options' log-probs in one forward pass (fast), or generate "
        "and parse every answer. Default: the fast path only on tasks whose measured agreement with "
        "generate-and-parse is at least 99% (every task states its figure).",
        show_default=False,
    ),
    agreement_sample: int = typer.Option(
        200,
        "--agreement-sample",
        help="Where the fast path is used: items per task also generated and parsed to measure agreement.",
    ),
    max_new_tokens: int | None = typer.Option(
        None,
        "--max-new-tokens",
        help="Generation budget for every task (default: 8 for short answers, 48 for captions).",
    ),
    max_length: int = typer.Option(
        4096,
        "--max-length",
        help="Longest sequence the model runs on, in tokens with image tokens (prompt + generation budget, or "
        "prompt + response): what one item may cost. An item over it is an error naming its file and line.",
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Reference model for the reward task's DPO implicit rewards (the model before alignment).",
    ),
    beta: float = typer.Option(0.1, "--beta", help="β of the DPO implicit reward β·(log π − log π_ref)."),
    opponent: list[Path] = typer.Option(
        [], "--opponent", help="Another model answering the preference task's questions (repeatable)."
    ),
    judge_url: str | None = typer.Option(
        None, "--judge-url", help="OpenAI-compatible judge API base URL (…/v1); enables dialogue and preference."
    ),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Judge model name as the server knows it."),
    judge_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--judge-key-env", help="Environment variable holding the judge's API key."
    ),
    judge_concurrency: int = typer.Option(4, "--judge-concurrency", help="Judge requests in flight at once."),
    judge_max_failed: float = typer.Option(
        0.1,
        "--judge-max-failed",
        help="Fraction of a judged task's judgments that may fail (after retries, or unreadable) before the task "
        "is reported as failed, with no score (the run then exits with code 2); below it the score is computed "
        "over the judgments that succeeded and the failures are counted.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the agreement sample, the bootstrap and a generated world."),
    n_resamples: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Resume cache (default OUT/cache): completed items per model fingerprint and task."
    ),
    device: str | None = typer.Option(None, "--device", help="Device to run the model on (cpu, cuda...)."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights dtype: float32, bfloat16, float16 or auto."),
    world_scenes: int = typer.Option(
        2000, "--world-scenes", help="Training scenes of a world generated into OUT/world (test and val: 10% each)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Evaluate a model: results.json, report.md, plots and predictions in OUT (rerun to resume)."""
    from mmalign.errors import ConfigError
    from mmalign.eval.config import EvalConfig
    from mmalign.eval.runner import evaluate
    from mmalign.files import OutputLock

    judge = None
    if (judge_url is None) != (judge_model is None):
        raise ConfigError("give both --judge-url and --judge-model (or neither)")
    if judge_url is not None:
        from mmalign.judge import JudgeConfig

        judge = JudgeConfig(
            base_url=judge_url,
            model=judge_model or "",
            api_key_env=judge_key_env,
            max_concurrency=judge_concurrency,
            progress=progress,
        )
    cfg = EvalConfig(
        model=model,
        out=out,
        tasks=tasks,
        suite=suite,
        data=data,
        split=split,
        sources=_sources(source),
        image_root=image_root,
        limit=limit,
        batch_size=batch_size,
        fast=fast,
        agreement_sample=agreement_sample,
        max_new_tokens=max_new_tokens,
        reference=reference,
        beta=beta,
        opponents=list(opponent),
        judge=judge,
        judge_max_failed=judge_max_failed,
        max_length=max_length,
        n_resamples=n_resamples,
        seed=seed,
        cache_dir=cache_dir,
        device=device,
        dtype=dtype,
        world_scenes=world_scenes,
        progress=progress,
    )
    with OutputLock(out, "mmalign eval run"):
        results = evaluate(cfg, echo=typer.echo)
    for key, dim in results["dimensions"].items():
        typer.echo(f"  {key:<14} {dim['score']:.3f}  ({', '.join(f'{t} {v:.3f}' for t, v in dim['tasks'].items())})")
    for name, entry in results["tasks"].items():
        fp = entry.get("fast_path") or {}
        if fp.get("applies"):
            sample = (
                ""
                if fp.get("agreement") is None
                else (f"; this run: {100 * fp['agreement']:.1f}% of {fp['n']} sampled items agree")
            )
            typer.echo(f"  {name}: {'fast path' if fp['used'] else 'generated'}, {fp['reason']}{sample}")
    typer.echo(f"results written to {out / 'results.json'}, report to {out / 'report.md'}")
    failed = {name: entry["reason"] for name, entry in results["tasks"].items() if entry["status"] == "failed"}
    if failed:
        from mmalign.errors import MMAlignError

        listed = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
        raise MMAlignError(
            f"{len(failed)} of {len(results['tasks'])} tasks failed, with no score ({listed}); "
            f"{out / 'results.json'} and report.md say so, with the other tasks' scores"
        )


@app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories of `mmalign eval run`; the first is the baseline."),
    out: Path = typer.Option(..., "--out", help="Where to write compare.md, compare.json and the PNGs."),
    n_resamples: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the paired intervals."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap resampling."),
) -> None:
    """Put runs side by side: per metric, baseline vs each run with paired bootstrap deltas (items matched by id)."""
    from mmalign.eval.compare import compare_runs
    from mmalign.files import OutputLock

    with OutputLock(out, "mmalign eval compare"):
        report = compare_runs(list(runs), out, n_resamples=n_resamples, seed=seed)
    for task, entry in report["tasks"].items():
        for run_name, row in entry["runs"].items():
            if row["status"] != "paired":
                typer.echo(f"  {task} {run_name}: {row.get('reason', row['status'])}")
                continue
            for metric, d in row["deltas"].items():
                typer.echo(
                    f"  {task} {metric} {run_name}: {d['before']:.4f} → {d['after']:.4f}  "
                    f"Δ {d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
                )
    typer.echo(f"comparison written to {out / 'compare.md'}")
