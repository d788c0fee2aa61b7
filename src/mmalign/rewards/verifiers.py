"""Verifiable rewards for the shapes world (and any data with the same ground truth): objects named against objects
present, exact counts, yes/no answers, grounding boxes, output format.

Each is a TRL reward (:mod:`mmalign.rewards.base`): ``reward(prompts, completions, **columns)``, reading the answer
with :func:`~mmalign.rewards.base.answer_text` (inside ``<answer>…</answer>`` when the completion has it), 0.0
for a malformed or None completion, None for a row without the ground-truth column.

Columns (each reward's ``column`` option renames it):

* :class:`ObjectReward` ``objects``: the objects present, names (``"red circle"``) or scene-row dicts with a
  ``name`` (``scenes.jsonl``'s ``objects``). Mentions are found and counted exactly as CHAIR counts them
  (:func:`mmalign.objects.mentions.count_mentions`, as the ``truth`` pair scorer does).
* :class:`CountReward` ``count``: the true number (an int).
* :class:`YesNoReward` ``answer``: ``"yes"`` / ``"no"`` (or a bool).
* :class:`GroundingReward` ``box``: the true box ``[x0, y0, x1, y1]`` as fractions of the image side (as the world
  writes ``objects[i].box``), or a list of such boxes (the best IoU counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmalign.errors import ConfigError, DataError
from mmalign.objects.shapes import NUMBER_WORDS
from mmalign.rewards.base import answer_text, column, completion_text

OBJECT_METRICS = ("precision", "recall", "f1", "chair_s")
THINK_ANSWER = r"<think>.*?</think>\s*<answer>.*?</answer>"
"""The DeepSeek-R1 format: reasoning in think tags, then the answer in answer tags, nothing around them."""

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_BOX = re.compile(rf"[\[(]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*[\])]")
_CORNERS = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")
_COUNT = re.compile(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


class _Verifier:
    """A reward comparing each completion's answer with one ground-truth column. Subclasses are dataclasses with
    ``eq=False``: compared by identity and hashable, as plain functions are."""

    column: str
    name: str

    def __post_init__(self) -> None:
        self.__name__ = self.name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        truths = column(self.column, kwargs, len(completions))
        out: list[float | None] = []
        for row, (completion, truth) in enumerate(zip(completions, truths, strict=True)):
            if truth is None:
                out.append(None)
                continue
            text = answer_text(completion)
            out.append(0.0 if text is None or not text.strip() else self.score(text, truth, row))
        return out

    def score(self, answer: str, truth: Any, row: int) -> float:
        raise NotImplementedError

    def bad_truth(self, row: int, truth: Any, expected: str) -> DataError:
        return DataError(f"reward {self.name!r}: row {row}: expected {expected}, got {truth!r}", field=self.column)


@dataclass(eq=False)
class ObjectReward(_Verifier):
    """Objects the completion names against those present, CHAIR's way (Rohrbach et al., 2018).

    ``precision`` = mentions of present objects / all mentions = 1 − CHAIR_i (1 when nothing is named);
    ``recall`` = distinct present objects named / objects present (1 when none are); ``f1`` their harmonic mean;
    ``chair_s`` = 1 − CHAIR_s: 1 when no mention is of an absent object, else 0. Truth {red circle, blue star},
    "a red circle and a green square": precision 1/2, recall 1/2, F1 1/2, chair_s 0.
    """

    metric: str = "f1"
    vocabulary: str = "shapes"
    """``shapes`` (colour + shape) or ``coco`` (CHAIR's 80 classes and synonyms)."""
    column: str = "objects"
    name: str = ""

    def __post_init__(self) -> None:
        from mmalign.objects.vocabulary import coco_vocabulary, shapes_vocabulary

        if self.metric not in OBJECT_METRICS:
            raise ConfigError(f"object reward metric must be one of {', '.join(OBJECT_METRICS)}, got {self.metric!r}")
        if self.vocabulary not in ("shapes", "coco"):
            raise ConfigError(f"object reward vocabulary must be shapes or coco, got {self.vocabulary!r}")
        self.vocab = shapes_vocabulary() if self.vocabulary == "shapes" else coco_vocabulary()
        self.name = self.name or f"object_{self.metric}"
        super().__post_init__()

    def score(self, answer: str, truth: Any, row: int) -> float:
        from mmalign.objects.mentions import count_mentions

        if not isinstance(truth, list | tuple):
            raise self.bad_truth(row, truth, "a list of object names")
        names = [o.get("name") if isinstance(o, dict) else o for o in truth]
        if not all(isinstance(n, str) for n in names):
            raise self.bad_truth(row, truth, "object names (strings or dicts with a 'name')")
        counts = count_mentions(answer, [self.vocab.synonyms.get(n, n) for n in names], self.vocab)
        mentions, hallucinated = len(counts.mentions), len(counts.hallucinated)
        precision = 1.0 - hallucinated / mentions if mentions else 1.0
        recall = len(counts.recalled) / len(counts.truth) if counts.truth else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "chair_s": float(hallucinated == 0)}[self.metric]


def first_count(text: str) -> int | None:
    """The first number in ``text``, in digits or as a word (``"There are three."`` → 3); None if there is none."""
    match = _COUNT.search(text)
    if match is None:
        return None
    word = match.group(1).lower()
    return int(word) if word.isdigit() else NUMBER_WORDS.index(word)


@dataclass(eq=False)
class CountReward(_Verifier):
    """1.0 when the first number in the answer (digits or a word, "zero" to the world's largest) equals the
    column's count, else 0.0 (also when there is no number)."""

    column: str = "count"
    name: str = "count_exact"

    def score(self, answer: str, truth: Any, row: int) -> float:
        if isinstance(truth, bool) or not isinstance(truth, int):
            raise self.bad_truth(row, truth, "an integer count")
        return float(first_count(answer) == truth)


@dataclass(eq=False)
class YesNoReward(_Verifier):
    """1.0 when the answer's first "yes" or "no" (a whole word, any case) is the column's answer, else 0.0."""

    column: str = "answer"
    name: str = "yes_no"

    def score(self, answer: str, truth: Any, row: int) -> float:
        if isinstance(truth, bool):
            truth = "yes" if truth else "no"
        if not isinstance(truth, str) or truth.strip().lower().rstrip(".") not in ("yes", "no"):
            raise self.bad_truth(row, truth, "'yes' or 'no'")
        match = _YES_NO.search(answer)
        return float(match is not None and match.group(1).lower() == truth.strip().lower().rstrip("."))


def parse_box(text: str, scale: float = 1000.0) -> list[float] | None:
    """The first box in ``text`` as fractions ``[x0, y0, x1, y1]``, or None.

    Accepted: ``[x0, y0, x1, y1]`` or ``(x0, y0, x1, y1)``, and Qwen2-VL's corners ``(x0,y0),(x1,y1)`` (its
    ``<|box_start|>``/``<|box_end|>`` tokens may surround it). Numbers all within [0, 1] are fractions of the image
    side; otherwise all four are divided by ``scale`` (1000: Qwen2-VL's 0-1000 grid; pass the image side for pixel
    coordinates).
    """
    found = [m for m in (_BOX.search(text), _CORNERS.search(text)) if m is not None]
    if not found:
        return None
    match = min(found, key=lambda m: m.start())
    box = [float(v) for v in match.groups()]
    if any(v < 0 or v > 1 for v in box):
        box = [v / scale for v in box]
    return box


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two boxes ``[x0, y0, x1, y1]``; 0 when either is empty (x1 <= x0 or y1 <= y0)."""
    if a[2] <= a[0] or a[3] <= a[1] or b[2] <= b[0] or b[3] <= b[1]:
        return 0.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@dataclass(eq=False)
class GroundingReward(_Verifier):
    """The IoU of the answer's first box (:func:`parse_box`) with the true box (the best of several); 0.0 when
    the answer has no box or an empty one."""

    scale: float = 1000.0
    column: str = "box"
    name: str = "grounding_iou"

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ConfigError(f"grounding reward: scale must be > 0, got {self.scale!r}")
        super().__post_init__()

    def score(self, answer: str, truth: Any, row: int) -> float:
        boxes = truth if truth and isinstance(truth[0], list | tuple) else [truth]
        for box in boxes:
            if not isinstance(box, list | tuple) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
                raise self.bad_truth(row, truth, "a box [x0, y0, x1, y1] or a list of boxes")
        found = parse_box(answer, self.scale)
        return 0.0 if found is None else max(iou(found, [float(v) for v in box]) for box in boxes)


class FormatReward:
    """1.0 when the whole completion (stripped) matches ``pattern`` (``re.fullmatch``, ``.`` matching newlines),
    else 0.0; needs no column. Default :data:`THINK_ANSWER`."""

    def __init__(self, pattern: str = THINK_ANSWER, name: str = "format") -> None:
        try:
            self.pattern = re.compile(pattern, re.DOTALL)
        except re.error as e:
            raise ConfigError(f"format reward: bad pattern {pattern!r}: {e}") from None
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        return [float(t is not None and self.pattern.fullmatch(t.strip()) is not None) for t in texts]


object_precision = ObjectReward("precision")
object_recall = ObjectReward("recall")
object_f1 = ObjectReward("f1")
object_chair_s = ObjectReward("chair_s")
count_exact = CountReward()
yes_no = YesNoReward()
grounding_iou = GroundingReward()
think_answer_format = FormatReward(THINK_ANSWER, name="think_answer_format")
