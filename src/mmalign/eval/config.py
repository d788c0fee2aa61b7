"""What ``mmalign eval run`` takes: :class:`EvalConfig`, a field per CLI option (run by :mod:`.run.evaluation`).

Each option is declared once, on its field: help, default, range and, where it differs from the field's name,
its flag; the command's options are derived from them (:mod:`mmalign.cli.options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError
from mmalign.eval.tasks.specs import get_task, parse_task_list
from mmalign.eval.tasks.suites import get_suite

if TYPE_CHECKING:
    from mmalign.judge import JudgeConfig

DEFAULT_MAX_LENGTH = 4096
"""Longest sequence evaluation runs the model on, in tokens with image tokens: prompt + generation budget when
generating, prompt when choosing an option, prompt + response when scoring a pair. It bounds what one item may
cost: texts are cut to the collator's character budget before tokenising, so a 50 MB prompt costs what 4096
tokens do. An item that does not fit is an error naming its file and line, never skipped (a skipped item would
change the score without saying so); raise ``--max-length`` for a model with a longer context."""


def parse_sources(values: list[str]) -> dict[str, Path]:
    """``--source TASK=PATH`` (repeatable) → {task: path}."""
    out: dict[str, Path] = {}
    for value in values:
        task, sep, path = value.partition("=")
        if not sep or not task.strip() or not path.strip():
            raise ConfigError(f"--source takes TASK=PATH, got {value!r}")
        if task.strip() in out:
            raise ConfigError(f"--source names task {task.strip()!r} twice")
        out[task.strip()] = Path(path.strip())
    return out


@dataclass
class EvalConfig:
    """Everything ``mmalign eval run`` takes; each field is one of its options (:func:`mmalign.config.option`)."""

    out: Path = option(help="Run directory: results.json, report.md, PNGs, questions/, predictions/, cache/.")
    model: Path | None = option(
        None,
        "The model directory to evaluate (a local Hugging Face dir). Not needed when only the reward-model "
        "benchmarks run (--reward-model or the judge decides them).",
    )
    tasks: str | None = option(
        None,
        "Comma-separated tasks: pope_random, pope_popular, pope_adversarial, chair, consistency, mme, mc, safety, "
        "dialogue, reward, preference (pope: its three splits), and the reward-model benchmarks vl_rewardbench, "
        "multimodal_rewardbench, mm_rlhf_rewardbench (with --source). Exclusive with --suite.",
    )
    suite: str | None = option(
        None,
        "A named suite: shapes, hallucination, general, alignment, rewardbench, quick (mmalign.eval.tasks.suites).",
    )
    data: Path | None = option(None, "A generated shapes world (default: OUT/world, generated if absent).")
    split: str = option("test", "World split to evaluate on: test or val.")
    sources: dict[str, Path] = option(
        {},
        "TASK=PATH: read a task's public benchmark file or directory instead of the world (repeatable; "
        "mmalign.eval.tasks.benchmarks).",
        flag="--source",
        flag_type=list[str],
        parse=parse_sources,
    )
    image_root: Path | None = option(None, "Where --source images are (default: beside the benchmark file).")
    limit: int | None = option(
        None,
        "Items per task: the first N, completed to the end of the scene or image in progress (default: all, or "
        "the suite's).",
        ge=1,
    )
    batch_size: int = option(8, "Items per forward pass / generation batch (left padding).", ge=1)
    fast: bool | None = option(
        None,
        "Yes/no and multiple choice: compare the options' log-probs in one forward pass (fast), or generate and "
        "parse every answer. Default: the fast path only on tasks whose measured agreement with generate-and-parse "
        "is at least 99% (every task states its figure).",
        flag="--fast/--generate",
    )
    agreement_sample: int = option(
        200,
        "Where the fast path is used: items per task also generated and parsed to measure agreement (0: none).",
        ge=0,
    )
    max_new_tokens: int | None = option(
        None, "Generation budget for every task (default: each task's own, 8 for short answers, 48 for captions).", ge=1
    )
    max_length: int = option(
        DEFAULT_MAX_LENGTH,
        "Longest sequence the model runs on, in tokens with image tokens (prompt + generation budget, or prompt + "
        "response): what one item may cost. An item over it is an error naming its file and line.",
        ge=2,
    )
    reference: Path | None = option(
        None, "Reference model for the reward task's DPO implicit rewards (the model before alignment)."
    )
    reward_model: Path | None = option(
        None,
        "A reward model (saved by `mmalign train rm`) that decides the reward-model benchmarks: each answer gets "
        "a reward, the higher one is preferred, equal rewards count as wrong. Else the judge decides them.",
    )
    beta: float = option(0.1, "β of the DPO implicit reward β·(log π − log π_ref).", gt=0)
    opponents: list[Path] = option(
        [], "Another model answering the preference task's questions (repeatable).", flag="--opponent"
    )
    judge: JudgeConfig | None = option(
        None,
        "Where the judge is (--judge-url, --judge-model, --judge-key-env, --judge-concurrency, --judge-temperature); "
        "None: the judged tasks (dialogue, preference; the reward-model benchmarks without --reward-model) are "
        "skipped.",
        cli=False,
    )
    judge_max_failed: float = option(
        0.1,
        "Fraction of a judged task's judgments that may fail (after retries, or unreadable) before the task is "
        "reported as failed, with no score (the run then exits with code 2); below it the score is computed over "
        "the judgments that succeeded and the failures are counted (mmalign.eval.run.judging). 0: none may fail.",
        ge=0,
        le=1,
    )
    judge_samples: int = option(
        1,
        "VL-RewardBench decided by the judge: samples an item, each with its own answer order drawn from --seed; "
        "an item's verdict is its samples' majority, as cal.py counts (inference.py takes 10 at temperature 0.2: "
        "--judge-samples 10 --judge-temperature 0.2).",
        ge=1,
    )
    n_resamples: int = option(
        1000, "Bootstrap resamples for the 95% intervals (preference: rounds).", ge=1, flag="--bootstrap"
    )
    seed: int = option(0, "Seed of the agreement sample, the bootstrap and a generated world.", ge=0)
    cache_dir: Path | None = option(
        None, "Resume cache (default OUT/cache): completed items per model fingerprint and task."
    )
    device: str | None = option(None, "Device to run the model on (cpu, cuda...; default: where it loads, CPU).")
    dtype: str = option("float32", "Weights dtype: float32, bfloat16, float16 or auto.")
    world_scenes: int = option(
        2000, "Training scenes of a world generated into OUT/world (test and val: 10% each).", ge=1
    )
    progress: bool = option(True, "Show progress bars.")

    def __post_init__(self) -> None:
        check_ranges(self, flags=True)

    def task_names(self) -> tuple[list[str], int | None]:
        """The tasks to run and the item limit (a suite may carry one), checked."""
        if (self.tasks is None) == (self.suite is None):
            raise ConfigError("give --tasks or --suite (one of them)")
        if self.tasks is not None:
            names, limit = parse_task_list(self.tasks), self.limit
        else:
            suite = get_suite(self.suite)  # type: ignore[arg-type]
            names, limit = list(suite.tasks), self.limit if self.limit is not None else suite.limit
        for task in self.sources:
            if task not in names:
                raise ConfigError(f"--source names task {task!r}, which is not being run")
        needs_model = [n for n in names if get_task(n).kind != "rm_bench"]
        if self.model is None and needs_model:
            raise ConfigError(f"give --model DIR: tasks {', '.join(needs_model)} evaluate a model")
        if self.model is None and self.reward_model is None and self.judge is None:
            raise ConfigError("give --reward-model DIR or the judge (--judge-url, --judge-model): nothing to evaluate")
        if self.split not in ("val", "test"):
            raise ConfigError(f"--split must be val or test, got {self.split!r}")
        return names, limit
