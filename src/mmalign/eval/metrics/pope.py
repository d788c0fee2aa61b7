"""POPE: polling-based object probing (Li et al., 2023, "Evaluating Object Hallucination in LVLMs").

Two answer parsers:

* :func:`official_yes_no` is the official ``evaluate.py`` (RUCAIBox/POPE) rule, byte for byte in effect:
  keep the text before the first ``"."`` (the first sentence, so "3.5" cuts at "3"), delete commas,
  split on single spaces, and answer *no* when one of the words is exactly ``No``, ``not`` or ``no``;
  anything else, the empty answer included, is *yes*. Case and punctuation matter: ``"NO"``, ``"No!"``,
  ``"Not"`` and ``"Nobody"`` are all *yes*; ``"I don't think so"`` is *yes*; ``"There is no dog."`` is *no*.
* :func:`strict_yes_no` (``--strict``) only accepts an answer whose first word is yes or no (any case,
  surrounding punctuation ignored): ``"Yes, there is."`` → yes, ``"No."`` → no, ``"There is a dog."`` →
  unparsed. An unparsed answer is wrong: it is neither a positive nor a negative prediction, so it lowers
  accuracy and recall (a *yes* label missed) but not precision.

Metrics take *yes* as the positive class: precision = TP / (TP + FP), recall = TP / (number of *yes*
labels), F1 their harmonic mean, accuracy = correct / all, and yes-ratio = predicted *yes* / all questions,
from the *predictions* (the official script's definition; a harness that computes it from the labels
always prints 0.5 on POPE's balanced splits). A rate whose denominator is 0 is 0.0.

Where we differ from the official ``evaluate.py`` (RUCAIBox/POPE), and what we do about it:

* **Labels.** The official script maps a label to *no* only when it is exactly ``no``; ``No``, ``no `` or
  ``maybe`` are positives there. :func:`mmalign.eval.metrics.official.read_pope_questions` refuses any label
  other than exactly ``yes`` or ``no``, naming the line: matching would score a ``No`` label as yes, and
  normalising it would print other figures than the official script on the same file. Refusing keeps both
  true: every file we score has the same labels in both.
* **Pairing.** The official script pairs answers with questions by line order (``zip``, which also drops
  the longer file's extra lines). We pair by ``question_id`` when every answer has one (a missing, extra or
  repeated answer is an error); when the ids come in another order than the questions, the results carry a
  warning and ``line_order``, the metrics the official script's line-by-line pairing would give.
* **Answer field.** The official script reads ``answer``; LLaVA's ``eval_pope.py`` reads ``text``. We read
  ``text`` first, then ``answer``; a line whose two fields differ gets a warning in the results.
* **Division by zero.** The official script divides without checks, so it stops with ``ZeroDivisionError``
  when no answer reads as yes (precision), when no answer is a true positive (F1), or when no label is yes
  (recall). We report 0.0 for such a rate and say so in the results' warnings (:func:`official_script_stops`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def official_yes_no(text: str) -> str:
    """The official POPE mapping of a free-form answer to ``"yes"`` / ``"no"`` (see module docstring)."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


_FIRST_WORD = re.compile(r"^[\W_]*([A-Za-z]+)")


def strict_yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` when the answer's first word is yes or no (case-insensitive), else None."""
    match = _FIRST_WORD.match(text)
    if not match:
        return None
    word = match.group(1).lower()
    return word if word in ("yes", "no") else None


def parse_yes_no(text: str, strict: bool = False) -> str | None:
    """:func:`strict_yes_no` when ``strict``, else :func:`official_yes_no`."""
    return strict_yes_no(text) if strict else official_yes_no(text)


@dataclass
class BinaryResult:
    """Yes/no classification counts and rates (yes is the positive class)."""

    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    unparsed: int
    """Answers neither yes nor no (strict parser only); they count as wrong."""
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    """Share of questions answered *yes* (predictions, not labels)."""

    def metrics(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def binary_metrics(predictions: Sequence[str | None], labels: Sequence[str]) -> BinaryResult:
    """Counts and rates for yes/no ``predictions`` (None = unparsed) against ``"yes"``/``"no"`` labels."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    tp = fp = tn = fn = unparsed = 0
    for pred, label in zip(predictions, labels, strict=True):
        if label not in ("yes", "no"):
            raise ValueError(f"label must be 'yes' or 'no', got {label!r}")
        if pred is None:
            unparsed += 1
        elif pred == "yes":
            tp, fp = (tp + 1, fp) if label == "yes" else (tp, fp + 1)
        elif pred == "no":
            tn, fn = (tn + 1, fn) if label == "no" else (tn, fn + 1)
        else:
            raise ValueError(f"prediction must be 'yes', 'no' or None, got {pred!r}")
    n = len(labels)
    positives = sum(1 for label in labels if label == "yes")
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, positives)
    return BinaryResult(
        n=n,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        unparsed=unparsed,
        accuracy=_ratio(tp + tn, n),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        yes_ratio=_ratio(tp + fp, n),
    )


def official_script_stops(result: BinaryResult) -> str | None:
    """Why the official ``evaluate.py`` would stop with ``ZeroDivisionError`` on these counts, or None.

    It computes the yes-ratio over the answers, then precision = TP / (TP + FP), recall = TP / (TP + FN) and
    F1 = 2PR / (P + R), in that order, with no check; we report 0.0 for each of those. ``result`` should come
    from the official parser (the only one the script has; it leaves nothing unparsed).
    """
    if result.n == 0:
        return "no answers (yes-ratio divides by 0)"
    if result.tp + result.fp == 0:
        return "no answer reads as yes (precision divides by TP + FP = 0)"
    if result.tp + result.fn == 0:
        return "no label is yes (recall divides by TP + FN = 0)"
    if result.tp == 0:
        return "no true positive (F1 divides by precision + recall = 0)"
    return None


@dataclass
class PopeResult:
    """POPE metrics with the chosen parser, and how often the other parser reads the answers differently."""

    result: BinaryResult
    parser: str
    """``"official"`` or ``"strict"``."""
    other: BinaryResult
    """The same metrics with the other parser, for comparison."""
    disagreements: int
    """Answers the two parsers map differently (an unparsed strict answer differs from any official one)."""
    disagreement_ids: list[str]

    def metrics(self) -> dict[str, object]:
        other_name = "official" if self.parser == "strict" else "strict"
        return {
            "parser": self.parser,
            **self.result.metrics(),
            "parser_disagreements": self.disagreements,
            "parser_disagreement_rate": _ratio(self.disagreements, self.result.n),
            f"{other_name}_parser": {k: v for k, v in self.other.metrics().items()},
        }


def pope_metrics(
    answers: Sequence[str], labels: Sequence[str], strict: bool = False, ids: Sequence[str] | None = None
) -> PopeResult:
    """Score free-form ``answers`` to POPE questions with the official (default) or the strict parser."""
    official = [official_yes_no(a) for a in answers]
    strict_preds = [strict_yes_no(a) for a in answers]
    ids = [str(i) for i in range(len(answers))] if ids is None else list(ids)
    differ = [i for i, (a, b) in enumerate(zip(official, strict_preds, strict=True)) if a != b]
    chosen, other = (strict_preds, official) if strict else (official, strict_preds)
    return PopeResult(
        result=binary_metrics(chosen, labels),
        parser="strict" if strict else "official",
        other=binary_metrics(other, labels),
        disagreements=len(differ),
        disagreement_ids=[ids[i] for i in differ],
    )
