"""Paired-question consistency, HallusionBench style (Guan et al., 2024).

HallusionBench asks the same question about an image and about its edited twin (an object removed, a
colour changed) and reports three accuracies, kept here under its names:

* ``all_accuracy`` (aAcc): share of questions answered correctly;
* ``question_pair_accuracy`` (qAcc): share of question groups (the same question over an image and its
  edits: HallusionBench's category, subcategory, set id and question id) with *every* answer correct;
* ``figure_accuracy`` (fAcc): share of figure groups (all questions about one figure) with every answer
  correct.

``inconsistent_pairs`` counts question groups with some answers right and some wrong: the model answered
the twin as if the edit did not happen (or the reverse). Items without a figure group count in aAcc and qAcc
only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PairedItem:
    id: str
    question_group: str
    """Items sharing it are the same question asked over an image and its edited twins."""
    correct: bool
    figure_group: str | None = None
    """Items sharing it are questions about the same figure (None: not grouped by figure)."""


@dataclass
class ConsistencyResult:
    n_questions: int
    n_correct: int
    n_question_groups: int
    n_question_groups_correct: int
    n_figure_groups: int
    n_figure_groups_correct: int
    inconsistent_pairs: int
    all_accuracy: float
    question_pair_accuracy: float
    figure_accuracy: float

    def metrics(self) -> dict[str, float | int]:
        return asdict(self)


def consistency_metrics(items: Sequence[PairedItem]) -> ConsistencyResult:
    """aAcc, qAcc and fAcc of ``items`` (see the module docstring)."""
    questions: dict[str, list[bool]] = defaultdict(list)
    figures: dict[str, list[bool]] = defaultdict(list)
    for item in items:
        questions[item.question_group].append(item.correct)
        if item.figure_group is not None:
            figures[item.figure_group].append(item.correct)
    n_correct = sum(item.correct for item in items)
    q_ok = sum(all(v) for v in questions.values())
    f_ok = sum(all(v) for v in figures.values())
    mixed = sum(any(v) and not all(v) for v in questions.values())
    return ConsistencyResult(
        n_questions=len(items),
        n_correct=n_correct,
        n_question_groups=len(questions),
        n_question_groups_correct=q_ok,
        n_figure_groups=len(figures),
        n_figure_groups_correct=f_ok,
        inconsistent_pairs=mixed,
        all_accuracy=n_correct / len(items) if items else 0.0,
        question_pair_accuracy=q_ok / len(questions) if questions else 0.0,
        figure_accuracy=f_ok / len(figures) if figures else 0.0,
    )
