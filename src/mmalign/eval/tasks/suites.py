"""Named task suites for ``mmalign eval run --suite NAME``."""

from __future__ import annotations

from dataclasses import dataclass

from mmalign.errors import ConfigError
from mmalign.eval.tasks.specs import TASKS


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[str, ...]
    description: str
    limit: int | None = None
    """Items per task unless ``--limit`` says otherwise (None: all)."""


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "shapes",
            tuple(name for name, spec in TASKS.items() if spec.kind != "rm_bench" and not spec.video),
            "every task on the shapes world (judge and reference tasks when configured)",
        ),
        Suite(
            "video",
            tuple(name for name, spec in TASKS.items() if spec.video),
            "the video tasks on a clip set (`mmalign world --video`): VideoHallucer-style pairs, temporal POPE, "
            "video captions (CHAIR over time, events)",
        ),
        Suite(
            "hallucination",
            ("pope_random", "pope_popular", "pope_adversarial", "chair", "consistency"),
            "POPE (three splits), CHAIR with the absent-partner rate, paired-question consistency",
        ),
        Suite("general", ("mme", "mc"), "MME-style yes/no pairs and multiple choice"),
        Suite(
            "alignment",
            ("safety", "reward", "dialogue", "preference"),
            "safety, reward-model accuracy, judged dialogue and battles",
        ),
        Suite(
            "rewardbench",
            tuple(name for name, spec in TASKS.items() if spec.kind == "rm_bench"),
            "VL-RewardBench, Multimodal RewardBench, MM-RLHF-RewardBench (each needs --source and --reward-model or "
            "the judge)",
        ),
        Suite("quick", ("pope_adversarial", "chair", "mme", "mc"), "a smoke test: four tasks, 50 items each", limit=50),
    )
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose from: {', '.join(SUITES)}")
    return SUITES[name]
