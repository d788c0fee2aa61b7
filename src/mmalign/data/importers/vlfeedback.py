"""VLFeedback (MMInstruction; Li et al., 2023, "Silkie: Preference Distillation for Large Visual Language
Models").

The published layout: ``id``, ``prompt``, ``models`` (the four models asked), ``completions`` (per model:
``annotations`` with a ``Rating`` and ``Rationale`` for each of Helpfulness, Visual Faithfulness and
Ethical Considerations, ``model`` and ``response``) and ``img_path`` (under the released image folder). The
Hub's parquet stores ``completions`` as a struct of lists; both that and a list of objects are read.

Pairs follow the reference recipe, Silkie's ``run_dpo.py`` (vlf-silkie/VLFeedback, commit e6ddec7,
``make_vlfeedback_paired_dataset``): a completion's score is the mean of its aspect ratings; every two
completions whose scores differ make a pair (``pairing: all``, the default; ties make none); and a rating
that is not a number ("N/A") makes ``float()`` fail there, which skips every pair of that completion: it is
left out (``na: drop-completion``, the default). ``na: skip-rating`` instead averages the numeric ratings
only. Other pairings, not Silkie's: ``best-vs-random`` (the best completion against one drawn among those
scored lower, the UltraFeedback-binarized convention) and ``best-vs-worst``; ``min_margin`` > 0 keeps only
pairs whose scores differ by more. Ratings are 1-5.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.data.importers.base import Importer, SkipRow, content_id, pair_record, string, user_message
from mmalign.errors import ConfigError, DataError

ASPECTS = ("Helpfulness", "Visual Faithfulness", "Ethical Considerations")
PAIRINGS = ("all", "best-vs-random", "best-vs-worst")
NA_RULES = ("drop-completion", "skip-rating")


@dataclass(frozen=True)
class VLFeedbackOptions:
    pairing: str = option("all", f"How completions become pairs: {', '.join(PAIRINGS)} (all: Silkie's).")
    min_margin: float = option(0.0, "Score difference a pair must exceed (scores are mean ratings, 1-5).")
    aspects: list[str] = option(list(ASPECTS), "Rated aspects averaged into a completion's score.")
    na: str = option(
        "drop-completion",
        "A non-numeric rating ('N/A') on an averaged aspect: drop-completion (Silkie's: the completion is in no "
        "pair) or skip-rating (average the numeric ones).",
    )

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"--option pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.min_margin < 0:
            raise ConfigError(f"--option min_margin must be >= 0, got {self.min_margin}")
        unknown = [a for a in self.aspects if a not in ASPECTS]
        if unknown or not self.aspects:
            raise ConfigError(f"--option aspects must name some of {', '.join(ASPECTS)}, got {self.aspects}")
        if self.na not in NA_RULES:
            raise ConfigError(f"--option na must be one of {', '.join(NA_RULES)}, got {self.na!r}")


def completions_list(value: Any) -> list[dict[str, Any]]:
    """Completions as a list of objects, from a list or a struct of equal-length lists."""
    if isinstance(value, dict):
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        if len(lengths) != 1 or not all(isinstance(v, list) for v in value.values()):
            raise DataError("a struct of completions must hold lists of one length", field="completions")
        n = lengths.pop()
        return [{key: column[i] for key, column in value.items()} for i in range(n)]
    if not isinstance(value, list):
        raise DataError("must be a list of completions", field="completions")
    return value


def score(completion: Any, aspects: list[str], where: str, na: str = "drop-completion") -> float | None:
    """Mean rating over ``aspects``; None when the completion has no rating to average or, with ``na``
    ``drop-completion``, a non-numeric one ("N/A")."""
    if not isinstance(completion, dict):
        raise DataError("a completion must be an object", field=where)
    annotations = completion.get("annotations")
    if not isinstance(annotations, dict):
        raise DataError("must be an object of aspect ratings", field=f"{where}.annotations")
    values = []
    for aspect in aspects:
        rating = annotations.get(aspect)
        if rating is None:
            continue
        if not isinstance(rating, dict) or "Rating" not in rating:
            raise DataError("must be {'Rating': ..., 'Rationale': ...}", field=f"{where}.annotations.{aspect}")
        try:
            values.append(float(rating["Rating"]))
        except (TypeError, ValueError):
            if na == "drop-completion":
                return None  # Silkie: float("N/A") raises, and the completion's pairs are skipped
    return sum(values) / len(values) if values else None


class VLFeedbackImporter(Importer):
    name: ClassVar[str] = "vlfeedback"
    fields: ClassVar[tuple[str, ...]] = ("id", "prompt", "models", "completions", "img_path")
    required: ClassVar[tuple[str, ...]] = ("prompt", "completions", "img_path")
    options_class: ClassVar[type] = VLFeedbackOptions

    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        opts = self.options
        question = string(row, "prompt")
        image = self.image(row["img_path"], "img_path")
        message, _ = user_message(question, 1, "prompt")
        scored = []
        for i, completion in enumerate(completions_list(row["completions"])):
            value = score(completion, opts.aspects, f"completions[{i}]", opts.na)
            for key in completion:
                if key not in ("annotations", "model", "response"):
                    self.keep(f"completions[{i}].{key}", completion[key])
            response = completion.get("response")
            if not isinstance(response, str):
                raise DataError("must be a string", field=f"completions[{i}].response")
            if value is not None and response.strip():
                scored.append((value, i, completion))
        if len(scored) < 2:
            raise SkipRow("fewer than two rated completions")
        base = row_id if row_id is not None else content_id(self.name, question)[len(self.name) + 1 :]
        pairs = self._pairs(scored, base)
        if not pairs:
            raise SkipRow("no two completions scored apart")
        out = []
        for (s_good, i, good), (s_bad, j, bad) in pairs:
            meta = {
                "models": [good.get("model"), bad.get("model")],
                "scores": [round(s_good, 4), round(s_bad, 4)],
                "completions": [i, j],
                "source_id": row_id,
            }
            try:
                out.append(
                    pair_record(
                        f"{self.name}-{base}-{i}-{j}",
                        [message],
                        good["response"],
                        bad["response"],
                        [image],
                        self.name,
                        meta,
                    )
                )
            except SkipRow:
                continue
        if not out:
            raise SkipRow("chosen identical to rejected")
        return out

    def _pairs(self, scored: list[tuple[float, int, dict[str, Any]]], base: str) -> list[Any]:
        margin = self.options.min_margin
        ranked = sorted(scored, key=lambda s: (-s[0], s[1]))
        if self.options.pairing == "all":
            return [(a, b) for k, a in enumerate(ranked) for b in ranked[k + 1 :] if a[0] - b[0] > margin]
        best = ranked[0]
        lower = [c for c in ranked[1:] if best[0] - c[0] > margin]
        if not lower:
            return []
        if self.options.pairing == "best-vs-worst":
            return [(best, lower[-1])]
        rng = random.Random(f"{self.seed}:{self.name}:{base}")
        return [(best, lower[min(int(rng.random() * len(lower)), len(lower) - 1)])]
