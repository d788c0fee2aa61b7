"""VideoHallucer (Wang et al., 2024, "VideoHallucer: Evaluating Intrinsic and Extrinsic Hallucinations in Large
Video-Language Models"): paired basic / hallucinated yes-no questions about one video.

Each pair asks a *basic* question (answer yes on the five main sub-tasks) and a *hallucinated* one (answer no)
of the same video. Scored as the official code scores its prediction files (github.com/patrick-tssn/VideoHallucer,
``evaluations/evaluation_utils.py`` ``cal_score`` and ``evaluations/evaluation.py``; the extra statistics from
``evaluations/evaluation_bias.py`` and ``evaluation_bias_sep.py``, read at commit
2c6152e61207fd00db1d6d8b72d4893533828867):

* **answer parsing**: a question is answered right when the reference answer (``yes`` / ``no``) occurs in the
  model's text as a whole word, in any case: ``re.search(r"\\b(" + answer + r")\\b", predict, re.IGNORECASE)``.
  So ``"Yes, there is no ..."`` is right for *both* answers, ``"Not really"`` for neither (``\\bno\\b`` needs a
  word boundary after *no*), ``"I don't know"`` for neither. ``strict=True`` is the rule of the earlier
  ``evaluation_utils.py`` (commit 2c563065b2cd1639da93afe1408950c95ea2fa9f): the same pattern with
  ``re.match``, so the answer must open the reply (``"The answer is yes"`` is wrong there);
* **per sub-task** (one prediction file, ``<qa_type>_<model>.json``): basic accuracy = basic questions right /
  pairs, hallucinated accuracy = hallucinated questions right / pairs, accuracy (the paper's *overall*) =
  pairs with *both* right / pairs;
* **all**: the plain mean of those three over the sub-tasks scored (not weighted by pairs), as
  ``evaluation.py`` averages ``final_result``; with ``fact_detect`` scored, it also prints the *fact score*
  (basic + hallucinated accuracy) / 2 of those means;
* **bias statistics** (``evaluation_bias.py``, pooled over sub-tasks; ``evaluation_bias_sep.py``, per
  sub-task), defined only where the basic answer is yes and the hallucinated one no (the script asserts it;
  ``fact_detect``, both no, is left out). Per pair, with *y* = the basic reply reads yes and *n* = the
  hallucinated reply reads no, the script's counters move so: (y, n): one predicted yes and one no;
  (y, not n): two predicted yes and one false positive, and the pair counts once in the denominator ``n`` of
  the false-positive ratio; (not y, n): two predicted no and one denominator count; (not y, not n): two
  denominator counts. Then yes difference = (predicted yes − pairs) / (2 · pairs), no difference =
  (predicted no − pairs) / (2 · pairs), false-positive ratio = false positives / denominator (0 when it is 0),
  hallucination score = pairs with basic right and hallucinated not answered no / pairs with basic right
  (the script divides by zero when no basic question is right; reported as None here).

Where we differ: an empty file is an error naming it (the official code divides by zero); a reference answer is
matched as a literal word (the official code puts it into the pattern unescaped, which is the same for
``yes`` / ``no``, the only answers VideoHallucer has).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUBTASKS: tuple[str, ...] = ("obj_rel", "temporal", "semantic", "interaction", "fact", "nonfact", "factdet")
"""The ``qa_type`` names of ``evaluation.py``, which name its prediction files ``<qa_type>_<model>.json``:
object-relation, temporal, semantic detail, interaction, extrinsic factual, extrinsic non-factual, fact
detection."""


def answer_right(answer: str, predict: str, strict: bool = False) -> bool:
    """Whether ``predict`` answers ``answer`` as ``cal_score`` reads it (``strict``: the answer opens the reply)."""
    pattern = r"\b(" + re.escape(answer) + r")\b"
    found = re.match(pattern, predict, re.IGNORECASE) if strict else re.search(pattern, predict, re.IGNORECASE)
    return found is not None


@dataclass(frozen=True)
class Pair:
    """One basic / hallucinated question pair with the model's replies."""

    id: str
    subtask: str
    basic_answer: str
    basic_predict: str
    halluc_answer: str
    halluc_predict: str

    def hits(self, strict: bool = False) -> tuple[bool, bool]:
        """(basic right, hallucinated right)."""
        return (
            answer_right(self.basic_answer, self.basic_predict, strict),
            answer_right(self.halluc_answer, self.halluc_predict, strict),
        )


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def subtask_scores(pairs: Sequence[Pair], strict: bool = False) -> dict[str, Any]:
    """``cal_score`` of one sub-task's pairs: basic, hallucinated and pair accuracy, with their counts."""
    if not pairs:
        raise ValueError("no pairs to score")
    hits = [p.hits(strict) for p in pairs]
    basic = sum(b for b, _ in hits)
    halluc = sum(h for _, h in hits)
    both = sum(b and h for b, h in hits)
    n = len(pairs)
    return {
        "basic_accuracy": basic / n,
        "halluc_accuracy": halluc / n,
        "accuracy": both / n,
        "pairs": n,
        "basic_right": basic,
        "halluc_right": halluc,
        "both_right": both,
    }


def overall(per_subtask: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``evaluation.py``'s ``all``: the plain mean of each accuracy over the sub-tasks (and the fact score)."""
    keys = ("basic_accuracy", "halluc_accuracy", "accuracy")
    out: dict[str, Any] = {k: sum(r[k] for r in per_subtask.values()) / len(per_subtask) for k in keys}
    if "factdet" in per_subtask:
        out["fact_score"] = (out["basic_accuracy"] + out["halluc_accuracy"]) / 2
    return out


def bias_stats(pairs: Sequence[Pair], strict: bool = False) -> dict[str, Any] | None:
    """``evaluation_bias.py``'s statistics over the pairs whose answers are yes / no (None when there are none)."""
    kept = [p for p in pairs if p.basic_answer.lower() == "yes" and p.halluc_answer.lower() == "no"]
    if not kept:
        return None
    n_yes = n_no = denominator = fp = basic_right = halluc_missed = 0
    for pair in kept:
        yes, no = pair.hits(strict)
        if yes:
            n_yes, basic_right = n_yes + 1, basic_right + 1
            halluc_missed += not no
        else:
            n_no += no
            denominator += 1
        if no:
            n_no += 1
        else:
            n_yes += yes
            fp += yes
            denominator += 1
    n = len(kept)
    return {
        "yes_difference": (n_yes - n) / (2 * n),
        "no_difference": (n_no - n) / (2 * n),
        "false_positive_ratio": ratio(fp, denominator),
        "hallucination_score": halluc_missed / basic_right if basic_right else None,
        "pairs": n,
        "predicted_yes": n_yes,
        "predicted_no": n_no,
        "false_positives": fp,
        "left_out": len(pairs) - n,
    }
