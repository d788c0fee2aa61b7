"""CHAIR: object hallucination in captions (Rohrbach et al., 2018), as used by Object HalBench.

Objects are found in a caption exactly as the original script (LisaAnne/Hallucination ``utils/chair.py``)
finds them, with the object vocabulary as a parameter: :mod:`mmalign.objects.mentions` (the steps, and the
original's quirks kept so numbers match it) with a vocabulary of :mod:`mmalign.objects.vocabulary` (COCO's or
the shapes world's).

Every mention counts: ``CHAIR-i = hallucinated mentions / all mentions`` (a caption naming "dog" twice
where there is none adds 2 to both); ``CHAIR-s = captions with at least one hallucinated mention / all
captions`` (captions without any object count in the denominator); ``recall = sum over captions of the
distinct objects mentioned that are in the ground truth / sum of ground-truth object counts`` (as in the
Python 3 CHAIR used by OPERA and Object HalBench). A rate whose denominator is 0 is reported as 0.0; the
counts say why.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmalign.objects.mentions import count_mentions, objects_in
from mmalign.objects.vocabulary import ObjectVocabulary


@dataclass
class ChairResult:
    """CHAIR over a set of captions; rates in [0, 1] with the counts behind them."""

    chair_s: float
    chair_i: float
    recall: float
    n_captions: int
    n_hallucinated_captions: int
    n_mentions: int
    n_hallucinated_mentions: int
    n_gt_objects: int
    n_recalled_objects: int
    per_caption: list[dict[str, Any]]
    """One entry a caption: id, mentioned objects, hallucinated (word, object) pairs, ground truth."""

    def metrics(self) -> dict[str, float | int]:
        return {k: v for k, v in self.__dict__.items() if k != "per_caption"}


def chair_row(caption: str, ground_truth: Collection[str], vocab: ObjectVocabulary) -> dict[str, Any]:
    """One caption's CHAIR counts: mentions, hallucinated mentions, recalled and ground-truth objects."""
    counts = count_mentions(caption, ground_truth, vocab)
    hallucinated = [(m.word, m.object) for m in counts.hallucinated]
    return {
        "mentions": len(counts.mentions),
        "hallucinated_mentions": len(hallucinated),
        "hallucinated": [list(pair) for pair in hallucinated],
        "objects": sorted({m.object for m in counts.mentions}),
        "recalled": len(counts.recalled),
        "gt_objects": len(counts.truth),
        "ground_truth": sorted(counts.truth),
    }


def chair_metrics(
    captions: Sequence[str],
    ground_truth: Sequence[Collection[str]],
    vocab: ObjectVocabulary,
    ids: Sequence[str] | None = None,
) -> ChairResult:
    """CHAIR-s, CHAIR-i and recall of ``captions`` against the ground-truth objects of their images."""
    if len(captions) != len(ground_truth):
        raise ValueError(f"{len(captions)} captions but {len(ground_truth)} ground-truth sets")
    rows = []
    for i, (caption, truth) in enumerate(zip(captions, ground_truth, strict=True)):
        row = {"id": ids[i] if ids is not None else str(i), **chair_row(caption, truth, vocab)}
        rows.append(row)
    return summarize_chair(rows)


def summarize_chair(rows: Sequence[Mapping[str, Any]]) -> ChairResult:
    """Aggregate :func:`chair_row` outputs (micro-averaged, as the original)."""
    n = len(rows)
    n_hall_caps = sum(1 for r in rows if r["hallucinated_mentions"] > 0)
    mentions = sum(r["mentions"] for r in rows)
    hall = sum(r["hallucinated_mentions"] for r in rows)
    gt = sum(r["gt_objects"] for r in rows)
    recalled = sum(r["recalled"] for r in rows)
    return ChairResult(
        chair_s=n_hall_caps / n if n else 0.0,
        chair_i=hall / mentions if mentions else 0.0,
        recall=recalled / gt if gt else 0.0,
        n_captions=n,
        n_hallucinated_captions=n_hall_caps,
        n_mentions=mentions,
        n_hallucinated_mentions=hall,
        n_gt_objects=gt,
        n_recalled_objects=recalled,
        per_caption=[dict(r) for r in rows],
    )


def coco_ground_truth(
    image_ids: Iterable[int],
    instances: Iterable[tuple[int, str]],
    captions: Iterable[tuple[int, str]],
    vocab: ObjectVocabulary,
) -> dict[int, set[str]]:
    """Objects of each image from COCO annotations: instance categories plus objects its reference captions name.

    ``instances`` are (image id, category name) pairs; ``captions`` are (image id, caption) pairs. Both are
    needed, as in the original (captions add objects the segmentations miss, e.g. synonyms in context).
    """
    wanted = set(image_ids)
    truth: dict[int, set[str]] = {image_id: set() for image_id in wanted}
    for image_id, name in instances:
        if image_id in wanted:
            truth[image_id].add(vocab.synonyms.get(name, name))
    for image_id, caption in captions:
        if image_id in wanted:
            truth[image_id] |= objects_in(caption, vocab)
    return truth
