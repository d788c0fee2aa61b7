"""Judging many answers at once: 1–10 scores (optionally against a reference) and pairwise verdicts.

    judgments = score_answers(judge, [ScoreItem(question, answer, images=[img], reference=gpt4_answer)])
    relative_score(judgments)          # LLaVA-Bench: 100 * mean(candidate) / mean(reference)
    verdicts = compare_pairs(judge, [PairItem(question, answer_of_model_1, answer_of_model_2, images=[img])])

Every reply is kept (``raw``) next to what was read from it, so an unreadable reply (score None) can be
counted and inspected instead of silently dropped. All requests of one call go through one
:meth:`JudgeClient.complete_many`, so they share its concurrency, cache and progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmalign.judge.client import JudgeClient
from mmalign.judge.prompts import (
    PAIRWISE_RUBRIC_VERSION,
    RELATIVE_RUBRIC_VERSION,
    SCORE_RUBRIC_VERSION,
    ImageLike,
    Verdict,
    combine_swapped,
    image_data_url,
    pairwise_messages,
    parse_score,
    parse_score_pair,
    parse_verdict,
    relative_messages,
    score_messages,
    swap_verdict,
)
from mmalign.judge.transport import JudgeError


@dataclass
class ScoreItem:
    """One answer to judge."""

    question: str
    answer: str
    images: list[ImageLike] = field(default_factory=list)
    reference: str | None = None
    """A reference answer (LLaVA-Bench): the judge then scores both, and ``relative`` = answer / reference."""
    context: str | None = None
    """Ground-truth facts about the image, given to the judge as text (LLaVA-Bench gives captions and boxes)."""
    id: str = ""


@dataclass
class ScoreJudgment:
    """What the judge said about one :class:`ScoreItem`."""

    id: str
    score: float | None
    """The answer's score, 1–10; None if the reply could not be read (or the request failed)."""
    reference_score: float | None = None
    """The reference answer's score, when the item had a reference."""
    raw: str | None = None
    """The judge's reply, as it came."""
    error: str | None = None
    """Why there is no reply (only with ``return_errors=True``)."""

    @property
    def relative(self) -> float | None:
        """score / reference_score (LLaVA-Bench's per-item ratio), when both are known."""
        if self.score is None or not self.reference_score:
            return None
        return self.score / self.reference_score


@dataclass
class PairItem:
    """Two answers to the same question to compare; ``answer_a`` is "A" in the verdicts."""

    question: str
    answer_a: str
    answer_b: str
    images: list[ImageLike] = field(default_factory=list)
    reference: str | None = None
    """A reference answer shown to the judge (Arena-Hard style), or None."""
    context: str | None = None
    """Ground-truth facts about the image, given to the judge as text."""
    id: str = ""


@dataclass
class PairJudgment:
    """The verdict on one :class:`PairItem`, in its labels ("A" = ``answer_a`` won)."""

    id: str
    verdict: Verdict | None
    """Both orders combined (:func:`combine_swapped`); with ``swap=False``, the one order's verdict."""
    first: Verdict | None
    """The verdict with answer_a shown first."""
    second: Verdict | None = None
    """The verdict with answer_b shown first, mapped back to this item's labels; None without a swap."""
    raw_first: str | None = None
    raw_second: str | None = None
    error: str | None = None

    @property
    def consistent(self) -> bool:
        """Both orders gave the same verdict (a measure of the judge's position bias when False)."""
        return self.first is not None and self.first == self.second


def _image_urls(images: list[ImageLike], memo: dict[int, str]) -> list[str]:
    """Data URLs, encoding each distinct image object once per call (items often share images)."""
    urls = []
    for image in images:
        slot = id(image)
        if slot not in memo:
            memo[slot] = image_data_url(image)
        urls.append(memo[slot])
    return urls


def score_answers(
    judge: JudgeClient, items: list[ScoreItem], *, return_errors: bool = False, desc: str = "judge scores"
) -> list[ScoreJudgment]:
    """Score each answer 1–10 (against its reference when it has one). Results follow ``items``' order."""
    memo: dict[int, str] = {}
    plain = [i for i, item in enumerate(items) if item.reference is None]
    with_ref = [i for i, item in enumerate(items) if item.reference is not None]
    replies: dict[int, str | JudgeError] = {}
    batches = (
        (plain, SCORE_RUBRIC_VERSION, lambda it, urls: score_messages(it.question, it.answer, urls, it.context)),
        (
            with_ref,
            RELATIVE_RUBRIC_VERSION,
            lambda it, urls: relative_messages(it.question, it.reference, it.answer, urls, it.context),
        ),
    )
    for indices, version, build in batches:
        if not indices:
            continue
        conversations = [build(items[i], _image_urls(items[i].images, memo)) for i in indices]
        answers = judge.complete_many(conversations, rubric_version=version, return_errors=return_errors, desc=desc)
        replies.update(zip(indices, answers, strict=True))
    out = []
    for i, item in enumerate(items):
        reply = replies[i]
        if isinstance(reply, JudgeError):
            out.append(ScoreJudgment(item.id, None, None, raw=None, error=str(reply)))
        elif item.reference is None:
            out.append(ScoreJudgment(item.id, parse_score(reply), raw=reply))
        else:
            pair = parse_score_pair(reply)
            ref_score, score = pair if pair is not None else (None, None)
            out.append(ScoreJudgment(item.id, score, ref_score, raw=reply))
    return out


def relative_score(judgments: list[ScoreJudgment]) -> float | None:
    """LLaVA-Bench's number: 100 × mean candidate score / mean reference score, over items with both scores.

    (A ratio of means, as LLaVA-Bench reports it, not a mean of per-item ratios.) None if no item has both.
    """
    both = [j for j in judgments if j.score is not None and j.reference_score is not None]
    total_ref = sum(j.reference_score for j in both)  # type: ignore[misc]
    if not both or total_ref == 0:
        return None
    return 100.0 * sum(j.score for j in both) / total_ref  # type: ignore[misc]


def compare_pairs(
    judge: JudgeClient,
    items: list[PairItem],
    *,
    swap: bool = True,
    return_errors: bool = False,
    desc: str = "judge pairs",
) -> list[PairJudgment]:
    """A / B / tie for each pair; with ``swap`` each pair is judged in both orders and the verdicts combined.

    Judging both orders cancels the judge's position bias (MT-Bench, Zheng et al., 2023; Arena-Hard): a
    winner must win as A and as B. ``first`` and ``second`` keep both games for those who count them apart.
    """
    memo: dict[int, str] = {}
    conversations = []
    for item in items:
        urls = _image_urls(item.images, memo)
        conversations.append(
            pairwise_messages(item.question, item.answer_a, item.answer_b, urls, item.context, item.reference)
        )
        if swap:
            conversations.append(
                pairwise_messages(item.question, item.answer_b, item.answer_a, urls, item.context, item.reference)
            )
    replies = judge.complete_many(
        conversations, rubric_version=PAIRWISE_RUBRIC_VERSION, return_errors=return_errors, desc=desc
    )
    step = 2 if swap else 1
    out = []
    for n, item in enumerate(items):
        raw_first = replies[n * step]
        raw_second = replies[n * step + 1] if swap else None
        errors = list(dict.fromkeys(str(r) for r in (raw_first, raw_second) if isinstance(r, JudgeError)))
        if errors:
            out.append(PairJudgment(item.id, None, None, error="; ".join(errors)))
            continue
        first = parse_verdict(raw_first)  # type: ignore[arg-type]
        if not swap:
            out.append(PairJudgment(item.id, first, first, raw_first=raw_first))  # type: ignore[arg-type]
            continue
        second = swap_verdict(parse_verdict(raw_second))  # type: ignore[arg-type]
        out.append(
            PairJudgment(
                item.id, combine_swapped(first, second), first, second, raw_first=raw_first, raw_second=raw_second
            )  # type: ignore[arg-type]
        )
    return out
