"""The task registry of ``mmalign eval run``: what each task asks, how the model answers it, what scores it.

Every task has a shapes-world version with exact ground truth (built from a generated world, so the suite
runs offline) and reads the public benchmark's own files when given ``--source TASK=PATH``
(:mod:`.benchmarks`; the shapes-world versions: :mod:`.world`). Predictions are written in the benchmark's answer
format and scored by the same code as ``mmalign eval score`` (:mod:`mmalign.eval.scoring`), so that command
reproduces every number.

Dimensions follow the survey's six: hallucination, general knowledge, safety, dialogue, reward model and
human preference. How a task's model outputs are made (``kind``):

* ``yesno`` / ``choice``: closed answers; the scoring fast path (:mod:`mmalign.eval.run.fastpath`) or
  generate-and-parse. The fast path is a task's default only where its agreement with generate-and-parse,
  measured on the shipped model (``fast_agreement``, :mod:`.measured`), is at least 99 %;
* ``caption``, ``safety``, ``dialogue``: generated text (greedy, batched with left padding);
* ``reward``: DPO implicit rewards from policy and reference log-probs of preference pairs;
* ``battle``: answers of several models compared pairwise by the judge;
* ``rm_bench``: a public reward-model benchmark's pairs (``--source`` only, no shapes-world version), decided by
  ``--reward-model`` (the higher reward wins) or by the judge prompted as the benchmark's own inference script
  prompts (:mod:`mmalign.eval.run.rewardbench`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmalign.errors import ConfigError
from mmalign.eval.tasks.measured import MEASURED, MIN_AGREEMENT, Agreement

DIMENSIONS: dict[str, str] = {
    "hallucination": "Hallucination",
    "general": "General knowledge",
    "safety": "Safety",
    "dialogue": "Dialogue",
    "reward": "Reward model",
    "preference": "Human preference",
}
"""Dimension key → title, in report order."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dimension: str
    kind: str
    """yesno, choice, caption, safety, dialogue, reward, battle or rm_bench (see the module docstring)."""
    scorer: str
    """The ``mmalign eval score --task`` that scores the predictions (``dialogue``: scored here, by the judge)."""
    description: str
    max_new_tokens: int = 8
    """Generation budget (a yes/no answer is "Yes." plus the end of the turn; captions need more)."""
    needs: str | None = None
    """``judge``, ``reference``, or ``reward_or_judge`` (``--reward-model`` or the judge, and the benchmark's file
    as ``--source``): the task is skipped (and says why) without it."""
    world_file: str | None = None
    """The shapes world's item file for this task (``<split>/<world_file>``); None: built from scenes."""
    video: bool = False
    """Asks about video clips: built from a clip set's ``<split>/clips.jsonl`` (``mmalign world --video``,
    :mod:`.video`), so it is not in the still world's suites."""

    @property
    def fast(self) -> bool:
        """Whether the scoring fast path applies (closed answer sets; not yet on video, where it was never
        measured against generate-and-parse)."""
        return self.kind in ("yesno", "choice") and not self.video

    @property
    def fast_agreement(self) -> Agreement | None:
        """The fast path's measured agreement with generate-and-parse on this task (:mod:`.measured`)."""
        return MEASURED.get(self.name) if self.fast else None

    @property
    def fast_by_default(self) -> bool:
        """Whether ``mmalign eval run`` uses the fast path here unless told otherwise."""
        measured = self.fast_agreement
        return measured is not None and measured.rate >= MIN_AGREEMENT


_SPECS = (
    *(
        TaskSpec(
            f"pope_{s}",
            "hallucination",
            "yesno",
            "pope",
            f"POPE object probing, {s} negatives",
            world_file=f"pope_{s}.jsonl",
        )
        for s in ("random", "popular", "adversarial")
    ),
    TaskSpec(
        "chair",
        "hallucination",
        "caption",
        "chair",
        "CHAIR on generated captions; absent co-occurring partner named rate",
        max_new_tokens=48,
        world_file="caption.jsonl",
    ),
    TaskSpec(
        "consistency",
        "hallucination",
        "yesno",
        "consistency",
        "HallusionBench-style paired questions over an image and its edited twin",
    ),
    TaskSpec(
        "video_hallucer",
        "hallucination",
        "yesno",
        "videohallucer",
        "VideoHallucer-style basic/hallucinated question pairs over a clip (existence, temporal order, counts over "
        "time, events); pair accuracy",
        video=True,
    ),
    TaskSpec(
        "video_pope",
        "hallucination",
        "yesno",
        "pope",
        "temporal POPE: is an object there at the start, at the end, at some time of the clip",
        video=True,
    ),
    TaskSpec(
        "video_chair",
        "hallucination",
        "caption",
        "video_chair",
        "video captions: CHAIR over the objects of the whole clip, event precision and recall",
        max_new_tokens=64,
        video=True,
    ),
    TaskSpec("mme", "general", "yesno", "mme", "MME-style yes/no pairs per image (acc + acc+)", world_file="mme.jsonl"),
    TaskSpec("mc", "general", "choice", "mc", "multiple choice, MMMU answer parsing", world_file="mc.jsonl"),
    TaskSpec(
        "safety",
        "safety",
        "safety",
        "safety",
        "refusal of harmful image-text prompts, attack success on perturbed images, over-refusal",
        max_new_tokens=24,
    ),
    TaskSpec(
        "dialogue",
        "dialogue",
        "dialogue",
        "dialogue",
        "open answers rated by the judge against a reference answer (LLaVA-Bench style)",
        max_new_tokens=48,
        needs="judge",
    ),
    TaskSpec(
        "reward",
        "reward",
        "reward",
        "reward",
        "DPO implicit-reward accuracy (policy vs reference) on held-out preference pairs",
        needs="reference",
    ),
    TaskSpec(
        "preference",
        "preference",
        "battle",
        "preference",
        "pairwise battles judged by the judge, Bradley-Terry ratings with bootstrap intervals (Arena-Hard)",
        max_new_tokens=48,
        needs="judge",
    ),
    TaskSpec(
        "vl_rewardbench",
        "reward",
        "rm_bench",
        "vl_rewardbench",
        "VL-RewardBench: which of two answers is better, by a reward model or a judge (accuracy, macro over "
        "general, hallucination, reasoning)",
        needs="reward_or_judge",
    ),
    TaskSpec(
        "multimodal_rewardbench",
        "reward",
        "rm_bench",
        "multimodal_rewardbench",
        "Multimodal RewardBench: the better of two answers by a reward model or a judge, accuracy per category",
        needs="reward_or_judge",
    ),
    TaskSpec(
        "mm_rlhf_rewardbench",
        "reward",
        "rm_bench",
        "mm_rlhf_rewardbench",
        "MM-RLHF-RewardBench: chosen vs rejected by a reward model or a judge (accuracy and ACC+)",
        needs="reward_or_judge",
    ),
)
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from: {', '.join([*TASKS, *ALIASES])}")
    return TASKS[name]


ALIASES: dict[str, tuple[str, ...]] = {"pope": ("pope_random", "pope_popular", "pope_adversarial")}
"""Names that stand for several tasks in ``--tasks``: ``pope`` is its three negative-sampling splits."""


def parse_task_list(text: str) -> list[str]:
    """``"pope, chair"`` → checked task names in the given order (aliases expanded), without repeats."""
    names = [name for part in text.split(",") if part.strip() for name in ALIASES.get(part.strip(), (part.strip(),))]
    if not names:
        raise ConfigError("--tasks names no task")
    for name in names:
        get_task(name)
    return list(dict.fromkeys(names))
