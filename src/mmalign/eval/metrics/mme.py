"""MME yes/no scoring (Fu et al., 2023, "MME: A Comprehensive Evaluation Benchmark for MLLMs").

As the official ``eval_tool/calculation.py``:

* a prediction is lowercased; if it is exactly ``yes`` or ``no`` that is the answer; otherwise its first
  four characters decide: ``yes`` among them → yes, else ``no`` among them → no, else *other* (wrong).
  So ``"No, it is not."`` → no, ``"Not sure"`` → no (``"not "`` contains "no"), ``"none"`` → no,
  ``" yes"`` → yes, ``"The answer is yes"`` → other. (The official reads lines with their newline; the
  newline can never create or hide a match in the first four characters, so it is stripped here.)
* each image has two questions (consecutive lines of a subtask file); accuracy is over questions,
  ``acc+`` over images (both questions right), and a subtask's score is ``100·acc + 100·acc+`` (max 200).
* Perception sums its 10 subtasks (max 2000), Cognition its 4 (max 800). Subtasks outside both lists are
  scored and reported but summed in neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_parse(prediction: str) -> str:
    """``"yes"``, ``"no"`` or ``"other"`` for a raw prediction, by the official rule."""
    pred = prediction.rstrip("\r\n").lower()
    if pred in ("yes", "no"):
        return pred
    prefix = pred[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


@dataclass
class MMESubtask:
    """One subtask's score; ``pairs`` are images, each with two questions."""

    name: str
    n_images: int
    n_questions: int
    n_correct: int
    n_images_both_correct: int
    n_other: int
    """Predictions that are neither yes nor no (counted wrong)."""
    acc: float
    acc_plus: float
    score: float
    """``100·acc + 100·acc_plus``."""

    def metrics(self) -> dict[str, float | int | str]:
        return asdict(self)


def mme_subtask(name: str, images: Sequence[Sequence[tuple[str, str]]]) -> MMESubtask:
    """Score a subtask from its images, each a sequence of (ground truth, raw prediction) for its questions.

    Ground truth is ``yes``/``no`` in any case. The official tool pairs lines two by two; an image with
    another number of questions is accepted here (acc+ then needs all of them right).
    """
    n_questions = n_correct = both = other = 0
    for questions in images:
        right = 0
        for truth, prediction in questions:
            truth = truth.lower()
            if truth not in ("yes", "no"):
                raise ValueError(f"ground truth must be yes or no, got {truth!r}")
            parsed = mme_parse(prediction)
            other += parsed == "other"
            right += parsed == truth
            n_questions += 1
        n_correct += right
        both += right == len(questions)
    acc = n_correct / n_questions if n_questions else 0.0
    acc_plus = both / len(images) if images else 0.0
    return MMESubtask(
        name=name,
        n_images=len(images),
        n_questions=n_questions,
        n_correct=n_correct,
        n_images_both_correct=both,
        n_other=other,
        acc=acc,
        acc_plus=acc_plus,
        score=100 * acc + 100 * acc_plus,
    )


def mme_totals(subtasks: Mapping[str, MMESubtask]) -> dict[str, float]:
    """Perception and Cognition totals: sums of the scores of the subtasks present."""
    return {
        "perception": sum(s.score for name, s in subtasks.items() if name in PERCEPTION),
        "cognition": sum(s.score for name, s in subtasks.items() if name in COGNITION),
        "perception_subtasks": sum(1 for name in subtasks if name in PERCEPTION),
        "cognition_subtasks": sum(1 for name in subtasks if name in COGNITION),
    }
