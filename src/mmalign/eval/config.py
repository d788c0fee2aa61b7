"""What ``mmalign eval run`` takes: :class:`EvalConfig`, a field per CLI option (run by :mod:`.runner`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError
from mmalign.eval.run.runner import DEFAULT_MAX_LENGTH
from mmalign.eval.tasks.specs import parse_task_list
from mmalign.eval.tasks.suites import get_suite

if TYPE_CHECKING:
    from mmalign.judge import JudgeConfig

FLAGS = {"n_resamples": "--bootstrap", "sources": "--source", "opponents": "--opponent"}
"""The CLI options of :class:`EvalConfig` fields whose flag is not the field's name."""


@dataclass
class EvalConfig:
    """Everything ``mmalign eval run`` takes; each field is the CLI option of the same name."""

    model: Path
    """The model directory to evaluate."""
    out: Path
    """Run directory: results.json, report.md, PNGs, questions/, predictions/, cache/."""
    tasks: str | None = None
    """Comma-separated task names (exclusive with ``suite``)."""
    suite: str | None = None
    """A named suite (:mod:`mmalign.eval.suites`)."""
    data: Path | None = None
    """A generated shapes world; None: OUT/world, generated if absent."""
    split: str = "test"
    """World split: test or val."""
    sources: dict[str, Path] = field(default_factory=dict)
    """Task → public benchmark file or directory read instead of the world (:mod:`mmalign.eval.benchmarks`)."""
    image_root: Path | None = None
    """Where benchmark images are (default: beside the benchmark file)."""
    limit: int | None = option(None, ge=1)
    """Items per task: the first N, completed to the end of the group in progress; None: all (or the suite's)."""
    batch_size: int = option(8, ge=1)
    """Items per forward pass or generation batch."""
    fast: bool | None = None
    """Yes/no and multiple choice: None, the log-prob fast path on the tasks whose measured agreement with
    generate-and-parse is at least 99 % and generation elsewhere; True, the fast path on every closed task;
    False, generate and parse everywhere."""
    agreement_sample: int = option(200, ge=0)
    """Where the fast path is used: items per task also generated and parsed, to measure agreement (0: none)."""
    max_new_tokens: int | None = option(None, ge=1)
    """Generation budget for every task; None: each task's own (8 for short answers, 48 for captions)."""
    max_length: int = option(DEFAULT_MAX_LENGTH, ge=2)
    """Longest sequence the model runs on, in tokens with image tokens (prompt + generation budget, or prompt +
    response): what one item may cost. An item over it is an error naming its file and line (:mod:`.execute`)."""
    reference: Path | None = None
    """Reference model of the reward task's DPO implicit rewards."""
    beta: float = option(0.1, gt=0)
    """β of the implicit reward β·(log π − log π_ref)."""
    opponents: list[Path] = field(default_factory=list)
    """More models answering the preference task's questions."""
    judge: JudgeConfig | None = None
    """Where the judge is; None: the judged tasks (dialogue, preference) are skipped."""
    judge_max_failed: float = option(0.1, ge=0, le=1)
    """The most judgments of a judged task that may fail (request failed after its retries, or reply unreadable):
    above it, or when all fail, the task is reported as failed, with no score; below it the score is computed over
    the judgments that succeeded and the failures are counted (:mod:`mmalign.eval.judged`). 0: none may fail."""
    n_resamples: int = option(1000, ge=1)
    """Bootstrap resamples of the 95 % intervals (preference: rounds)."""
    seed: int = option(0, ge=0)
    """Seed of the agreement sample, the bootstrap and a generated world."""
    cache_dir: Path | None = None
    """Resume cache; None: OUT/cache."""
    device: str | None = None
    """Device the models run on; None: where they load (CPU)."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16, float16 or auto."""
    world_scenes: int = option(2000, ge=1)
    """Training scenes of a world generated into OUT/world."""
    progress: bool = True
    """Progress bars."""

    def __post_init__(self) -> None:
        check_ranges(self, name=lambda key: FLAGS.get(key, "--" + key.replace("_", "-")))

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
        if self.split not in ("val", "test"):
            raise ConfigError(f"--split must be val or test, got {self.split!r}")
        return names, limit
