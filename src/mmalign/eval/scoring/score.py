"""Score predictions another system produced, from benchmark files: the entry point of ``mmalign eval score``.

:func:`score` reads the files of one task and returns its metrics (:mod:`.hallucination`, :mod:`.general`,
:mod:`.alignment`, VideoHallucer and the video captions (:mod:`.videohallucer`, :mod:`.video`), the reward-model
benchmarks of :mod:`.rewardbench`, with the metric core
:mod:`mmalign.eval.metrics`), percentile-bootstrap 95 % intervals of its
headline numbers and, given a baseline answer file of the same questions, the paired before/after deltas with
their intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError, DataError
from mmalign.eval.metrics.bootstrap import bootstrap_interval, paired_difference
from mmalign.eval.scoring import rewardbench, videohallucer
from mmalign.eval.scoring.task_score import TaskScore
from mmalign.eval.scoring.video import score_video_chair, video_summary
from mmalign.eval.scoring.videohallucer import score_videohallucer

SCORERS: dict[str, str] = {
    "pope": "POPE yes/no object probing (official question + answer JSON lines)",
    "chair": "CHAIR object hallucination in captions (COCO annotations dir, or items with objects)",
    "mme": "MME yes/no pairs (eval-tool <subtask>.txt files, or items with meta.group)",
    "mc": "multiple choice, MMMU parsing (MMMU output folder or output.json, or items with choices)",
    "consistency": "HallusionBench-style paired questions (its result JSON, or items with meta.pair_id)",
    "videohallucer": "VideoHallucer basic/hallucinated pairs (its prediction files or folder, or items with "
    "meta.pair_id and meta.role)",
    "video_chair": "CHAIR over a clip's objects plus event precision/recall of video captions (video caption items)",
    "safety": "refusal rate / attack success rate, VLGuard detector",
    "reward": "pairwise accuracy of a reward model or DPO implicit rewards",
    "preference": "Bradley-Terry leaderboard with bootstrap intervals from judged battles",
    **rewardbench.SCORERS,
}
"""``--task`` name → what it scores. Scorers, not the tasks of ``mmalign eval run`` (each of those names its
scorer: :attr:`mmalign.eval.tasks.specs.TaskSpec.scorer`)."""


@dataclass
class ScoreOptions:
    annotations: Path | None = None
    """COCO annotation directory (CHAIR)."""
    strict: bool = False
    """Strict answer parsing (POPE/consistency: first word yes/no; mc: explicit letter only)."""
    caption_key: str | None = None
    """CHAIR: the caption field of the caption file (default: first of caption, answer, text)."""
    ties: str = "wrong"
    """Reward: a tie is 'wrong' (default, as MM-RLHF-RewardBench) or worth 'half'."""
    anchor: str | None = None
    """Preference: the model fixed at 1000 and the win rates' reference."""
    k: int | None = None
    """VL-RewardBench: count at most k judge samples an item, taken in ``cal.py``'s shuffle seeded with 1234 (its
    number for a run of this k alone; its main's k = 1, 3, 5, 7, 9 are in the report's ``sweep``). None: every
    sample, as ``cal.py`` with any k at least the samples an item has."""
    mc_random_seed: int | None = None
    """mc: None (default) scores an answer naming no option wrong, so the score never moves with a draw; a seed
    draws a letter for it in file order, MMMU's rule (42 gives MMMU's own figures). Recorded in the metrics."""
    n_resamples: int = 1000
    """Bootstrap resamples for intervals and deltas (preference: rounds)."""
    confidence: float = 0.95
    seed: int = 0
    """Seed of the bootstrap resampling (preference: of the rounds)."""


def _load(task: str, questions: Path | None, answers: Path, opts: ScoreOptions) -> TaskScore:
    from mmalign.eval.scoring import alignment as al
    from mmalign.eval.scoring import general as gen
    from mmalign.eval.scoring import hallucination as hal

    if task == "pope":
        return hal.score_pope(questions, answers, opts.strict)
    if task == "chair":
        return hal.score_chair(questions, answers, opts.annotations, opts.caption_key)
    if task == "consistency":
        return hal.score_consistency(questions, answers, opts.strict)
    if task == "videohallucer":
        return score_videohallucer(questions, answers, opts.strict)
    if task == "video_chair":
        return score_video_chair(questions, answers)
    if task == "mme":
        return gen.score_mme(questions, answers)
    if task == "mc":
        return gen.score_mc(questions, answers, opts.strict, random_seed=opts.mc_random_seed)
    if task == "safety":
        return al.score_safety(questions, answers)
    if task == "reward":
        return al.score_reward(answers, opts.ties)
    if task in rewardbench.SCORERS:
        return rewardbench.load(task, answers, opts.k)
    return al.score_preference(answers, opts.anchor, n_rounds=opts.n_resamples, seed=opts.seed)


def _check(task: str, questions: Path | None, answers: Path, opts: ScoreOptions) -> None:
    if task not in SCORERS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(SCORERS)}")
    if opts.annotations is not None and task != "chair":
        raise ConfigError("--annotations is only used by --task chair")
    if opts.annotations is not None and questions is not None:
        raise ConfigError("--task chair takes ground truth from --annotations or from --questions, not both")
    if opts.strict and task not in ("pope", "consistency", "mc", "videohallucer"):
        raise ConfigError(f"--strict has no meaning for --task {task} (pope, consistency, mc and videohallucer only)")
    if opts.mc_random_seed is not None and task != "mc":
        raise ConfigError(f"--mc-random-seed has no meaning for --task {task} (mc only)")
    if opts.ties not in ("wrong", "half"):
        raise ConfigError(f"ties must be 'wrong' or 'half', got {opts.ties!r}")
    if opts.ties != "wrong" and task != "reward":
        raise ConfigError(
            f"--ties has no meaning for --task {task} (reward only; the reward-model benchmarks count a tie as wrong)"
        )
    if opts.k is not None and task != "vl_rewardbench":
        raise ConfigError(f"--k has no meaning for --task {task} (vl_rewardbench only)")
    if opts.k is not None and opts.k < 1:
        raise ConfigError(f"--k must be at least 1, got {opts.k}")
    if questions is not None and task in rewardbench.SCORERS:
        raise ConfigError(f"--task {task} reads no --questions: its prediction file holds the labels")
    if opts.n_resamples < 1:
        raise ConfigError("the number of bootstrap resamples must be at least 1")
    for path in (questions, answers, opts.annotations):
        if path is not None and not path.exists():
            raise DataError("not found", file=path)


def score(
    task: str,
    answers: str | Path,
    questions: str | Path | None = None,
    baseline: str | Path | None = None,
    options: ScoreOptions | None = None,
) -> dict[str, Any]:
    """Score ``answers`` (and ``baseline`` answers to the same questions, if given) for ``task``.

    Returns a JSON-ready report: ``metrics``, ``intervals`` of the headline metrics, ``deltas`` (after −
    before, paired bootstrap) when there is a baseline, and ``items`` (per-item details).
    """
    opts = options or ScoreOptions()
    qpath = None if questions is None else Path(questions)
    apath = Path(answers)
    _check(task, qpath, apath, opts)
    if baseline is not None and task == "preference":
        raise ConfigError("--baseline compares answer files item by item; battles have no items to pair")
    after = _load(task, qpath, apath, opts)
    report: dict[str, Any] = {
        "task": task,
        "questions": None if qpath is None else str(qpath),
        "answers": str(apath),
        "metrics": after.metrics,
        "intervals": intervals(after, opts),
    }
    if baseline is not None:
        bpath = Path(baseline)
        _check(task, qpath, bpath, opts)
        before = _load(task, qpath, bpath, opts)
        report["baseline"] = str(bpath)
        report["baseline_metrics"] = before.metrics
        report["deltas"] = deltas(before, after, opts, bpath)
    report["items"] = after.details
    return report


def intervals(result: TaskScore, opts: ScoreOptions) -> dict[str, dict[str, Any]]:
    """Percentile bootstrap intervals of the headline metrics (resampling items)."""
    if not result.ids:
        return {}
    return {
        name: bootstrap_interval(
            result.columns, metric, n_resamples=opts.n_resamples, confidence=opts.confidence, seed=opts.seed
        ).to_dict()
        for name, metric in result.headline.items()
    }


def deltas(before: TaskScore, after: TaskScore, opts: ScoreOptions, baseline_path: Path) -> dict[str, dict[str, Any]]:
    """After − before for each headline metric, with a paired bootstrap interval over the shared items."""
    if set(before.ids) != set(after.ids) or len(before.ids) != len(after.ids):
        only_before = sorted(set(before.ids) - set(after.ids))[:3]
        only_after = sorted(set(after.ids) - set(before.ids))[:3]
        raise DataError(
            "the baseline must answer exactly the same items to be compared "
            f"(only in baseline: {only_before}, only in answers: {only_after})",
            file=baseline_path,
        )
    order = {rid: k for k, rid in enumerate(before.ids)}
    idx = [order[rid] for rid in after.ids]
    aligned = {k: v[idx] for k, v in before.columns.items()}
    out = {}
    for name, metric in after.headline.items():
        interval = paired_difference(
            aligned, after.columns, metric, n_resamples=opts.n_resamples, confidence=opts.confidence, seed=opts.seed
        )
        out[name] = {"before": metric(aligned), "after": metric(after.columns), **interval.to_dict()}
        out[name]["delta"] = out[name].pop("estimate")
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines a person wants to read: headline numbers with intervals, and deltas."""
    lines = [f"{report['task']}: {report['answers']}"]
    metrics = report["metrics"]
    if report["task"] == "preference":
        for row in metrics["leaderboard"]:
            extra = f"  win rate {100 * row['win_rate']:.1f}%" if "win_rate" in row else ""
            lines.append(f"  {row['model']:<24} {row['rating']:8.1f}  [{row['low']:.1f}, {row['high']:.1f}]{extra}")
        if not metrics["converged"]:
            lines.append("  note: a model won or lost every battle; its rating has no finite estimate")
        return lines
    for name, iv in report["intervals"].items():
        lines.append(f"  {name:<28} {iv['estimate']:.4f}  [{iv['low']:.4f}, {iv['high']:.4f}]  (n={iv['n']})")
    if report["task"] in rewardbench.SCORERS:
        lines += rewardbench.summary(report["task"], metrics)
    if report["task"] == "videohallucer":
        lines += videohallucer.summary(metrics)
    if report["task"] == "video_chair":
        lines += video_summary(metrics)
    for key in ("parser_disagreements", "unparsed", "n_unparsed", "n_other"):
        if key in metrics and report["task"] not in rewardbench.SCORERS:
            lines.append(f"  {key:<28} {metrics[key]}")
    if "all_questions" in metrics:
        every = metrics["all_questions"]
        opened = f"open {every['n_open_correct']}/{every['n_open']}"
        lines.append(
            f"  {'right':<28} multiple choice {metrics['n_correct']}/{metrics['n']}, {opened}, "
            f"every question {every['n_correct']}/{every['n']} (MMMU's headline)"
        )
    if metrics.get("unparsed_rule") == "random":
        lines.append(f"  {'unparsed scored as':<28} a random letter, seed {metrics['random_seed']} (MMMU's rule)")
    elif metrics.get("unparsed_rule") == "wrong":
        lines.append(f"  {'unparsed scored as':<28} wrong (MMMU's rule: --mc-random-seed 42)")
    for warning in metrics.get("warnings", []):
        lines.append(f"  warning: {warning}")
    for name, d in report.get("deltas", {}).items():
        lines.append(
            f"  Δ {name:<26} {d['delta']:+.4f}  [{d['low']:+.4f}, {d['high']:+.4f}]  "
            f"({d['before']:.4f} → {d['after']:.4f}; Δ > 0 in {100 * d['share_above_zero']:.0f}% of resamples)"
        )
    return lines
