"""What the ``hallucinate`` builders share: their options, and the text edits both the world's and the COCO-style
edits make (:mod:`.hallucinate` for the world and the builder, :mod:`.hallucinate_coco` for COCO-style captions,
:mod:`.multi_image` reuses the caption spans)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from mmalign.config import option
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import ConfigError
from mmalign.objects import shapes
from mmalign.pairs.registry import check_choices, check_fraction
from mmalign.pairs.sources import Cooccurrence

KINDS: tuple[str, ...] = ("add", "swap", "attribute", "count", "existence")
WORLD_ONLY: tuple[str, ...] = ("attribute", "count")


@dataclass(frozen=True)
class HallucinateOptions:
    kinds: list[str] = option(
        ["add", "swap", "attribute", "existence"],
        f"Kinds of pair made per image, each when the image allows it: {', '.join(KINDS)} "
        "(attribute and count need the shapes world).",
    )
    cooccur_prob: float = option(
        0.8,
        "Probability that the hallucinated object is the absent object co-occurring most with the present "
        "ones (the realistic hallucination); otherwise it is drawn uniformly from the absent objects.",
    )
    image_prefix: str = option("", "COCO-style input: prefix joined to each file_name to form the image path.")
    captions_per_image: int = option(1, "COCO-style input: reference captions used per image (drawn at random).")
    critiques: bool = option(
        False,
        "Also write truthful critiques of both sides from the ground truth (meta.chosen_critique, "
        "meta.rejected_critique), for critique-then-score reward models (mmalign train rm with rm.critique).",
    )

    def __post_init__(self) -> None:
        check_choices(list(self.kinds), KINDS, "kinds")
        check_fraction(self.cooccur_prob, "cooccur_prob")
        if self.captions_per_image < 1:
            raise ConfigError(f"option 'captions_per_image' must be at least 1, got {self.captions_per_image}")


@dataclass
class Span:
    """A phrase placed in a caption: where its object words start and end."""

    start: int
    end: int


def pick_absent(present: list[str], stats: Cooccurrence, rng: random.Random, cooccur_prob: float) -> tuple[str, str]:
    """The hallucinated object and how it was chosen (``cooccur`` or ``random``)."""
    ranked = stats.ranked_absent(present)
    if rng.random() < cooccur_prob:
        return ranked[0], "cooccur"
    return ranked[min(int(rng.random() * len(ranked)), len(ranked) - 1)], "random"


def anchor(present: list[str], target: str, stats: Cooccurrence) -> int:
    """Index of the present object that co-occurs most with ``target`` (first in order on ties)."""
    counts = [stats.count(p, target) for p in present]
    return counts.index(max(counts))


def pair(
    record_id: str,
    images: list[str],
    question: str,
    chosen: str,
    rejected: str,
    chosen_spans: list[tuple[int, int]] | None,
    rejected_spans: list[tuple[int, int]] | None,
    meta: dict[str, Any],
    source: str = "hallucinate",
) -> PreferenceRecord:
    """A text pair for one prompt over ``images`` (placeholders first), made by ``source``."""
    return PreferenceRecord(
        id=record_id,
        prompt=user_prompt(question, len(images)),
        chosen=assistant(chosen),
        rejected=assistant(rejected),
        images=list(images),
        chosen_spans=chosen_spans,
        rejected_spans=rejected_spans,
        source=source,
        meta=meta,
    )


def answer_span(text: str) -> list[tuple[int, int]]:
    """The answer word of a one-word sentence (``Yes.`` → ``Yes``)."""
    return [(0, len(text.rstrip(".")))]


def caption_with_spans(phrases: list[str]) -> tuple[str, list[Span]]:
    """The world's caption of ``phrases`` and, per phrase, the span of its object words (article dropped)."""
    text = shapes.caption(phrases)
    spans, pos = [], len("There is ")
    for i, phrase in enumerate(phrases):
        article = phrase.split(" ", 1)[0]
        spans.append(Span(pos + len(article) + 1, pos + len(phrase)))
        pos += len(phrase) + (2 if i < len(phrases) - 2 else 5)
    for span, phrase in zip(spans, phrases, strict=True):  # the template and the offsets must agree
        assert text[span.start - len(phrase.split(" ", 1)[0]) - 1 : span.end] == phrase, (text, phrases)
    return text, spans


def existence_pairs(
    rid: str,
    images: list[str],
    present: list[str],
    target: str,
    rng: random.Random,
    asked_meta: dict[str, Any],
    target_meta: dict[str, Any],
) -> list[PreferenceRecord]:
    """``existence``: "Is there a X?" for a present X drawn with ``rng`` (chosen "Yes.") and for the hallucinated
    ``target`` (chosen "No."), each with the wrong answer as the rejected one."""
    asked = present[min(int(rng.random() * len(present)), len(present) - 1)]
    yes, no = shapes.sentence("yes"), shapes.sentence("no")
    meta = {**asked_meta, "object": asked, "present": True}
    ask = shapes.exists_question
    return [
        pair(f"{rid}-yes", images, ask(asked), yes, no, answer_span(yes), answer_span(no), meta),
        pair(
            f"{rid}-no",
            images,
            ask(target),
            no,
            yes,
            answer_span(no),
            answer_span(yes),
            {**target_meta, "present": False},
        ),
    ]
