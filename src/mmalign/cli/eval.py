"""``mmalign eval``: evaluate a model (``run``), put runs side by side (``compare``) and score predictions in
benchmarks' official formats (``score``).

``mmalign eval --model DIR ...`` (options straight after ``eval``) is a shorthand for ``mmalign eval run --model
DIR ...`` (:func:`mmalign.cli.main.main` inserts ``run``): a typer group whose callback also took ``--model``
would swallow the subcommands' names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmalign.cli.options import config_options
from mmalign.eval.config import EvalConfig

app = typer.Typer(
    help="Evaluate: run a model on benchmark tasks, compare runs, score predictions in official formats.",
    no_args_is_help=True,
)


@app.command("score")
def score(
    task: str = typer.Option(
        ...,
        "--task",
        help="pope, chair, mme, mc, consistency, safety, reward, preference, videohallucer, video_chair, or a "
        "reward-model benchmark: vl_rewardbench, multimodal_rewardbench, mm_rlhf_rewardbench.",
    ),
    answers: Path = typer.Option(
        ...,
        "--answers",
        help="The predictions: answer JSON lines, a CHAIR caption file, an MME results dir, "
        "MMMU's output folder or an output.json, a VLGuard result file, reward pairs, judged battles, "
        "VideoHallucer's prediction file(s) (<qa_type>_<model>.json, or their folder), or a "
        "reward-model benchmark's prediction file (judge rows, or reward rows with rewards: [chosen, rejected]).",
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
        help="Strict parsing: yes/no must be the first word (pope, consistency; videohallucer: re.match, as its "
        "earlier evaluation_utils.py); "
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
    k: int | None = typer.Option(
        None,
        "--k",
        help="vl_rewardbench: count at most K judge samples an item, in cal.py's shuffle seeded with 1234 (its "
        "number for a run of k = K alone; the report's sweep holds its main's k = 1, 3, 5, 7, 9). Default: every "
        "sample.",
    ),
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

    from mmalign.eval.scoring.score import ScoreOptions, summary_lines
    from mmalign.eval.scoring.score import score as run_score
    from mmalign.files import OutputLock, atomic_path

    options = ScoreOptions(
        annotations=annotations,
        strict=strict,
        caption_key=caption_key,
        ties=ties,
        k=k,
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


@app.command("run")
@config_options(EvalConfig)
def run(
    values: dict[str, Any],
    judge_url: str | None = typer.Option(
        None,
        "--judge-url",
        help="OpenAI-compatible judge API base URL (…/v1); enables dialogue, preference and, without "
        "--reward-model, the reward-model benchmarks.",
    ),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Judge model name as the server knows it."),
    judge_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--judge-key-env", help="Environment variable holding the judge's API key."
    ),
    judge_concurrency: int = typer.Option(4, "--judge-concurrency", help="Judge requests in flight at once."),
    judge_temperature: float | None = typer.Option(
        None, "--judge-temperature", help="Sampling temperature sent to the judge (default 0)."
    ),
) -> None:
    """Evaluate a model: results.json, report.md, plots and predictions in OUT (rerun to resume)."""
    from mmalign.errors import ConfigError
    from mmalign.eval.run.evaluation import evaluate
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
            progress=values["progress"],
            **({} if judge_temperature is None else {"temperature": judge_temperature}),
        )
    cfg = EvalConfig(**values, judge=judge)
    out = cfg.out
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
