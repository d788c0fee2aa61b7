"""CHAIR: object hallucination in captions (Rohrbach et al., 2018), as used by Object HalBench.

Objects are found in a caption exactly as the original script (LisaAnne/Hallucination ``utils/chair.py``)
finds them, with the object vocabulary as a parameter:

1. lowercase, split into tokens with NLTK's ``word_tokenize`` as of nltk 3.2.5, the version the original pins
   (:mod:`.tokens`), and singularise every token (:mod:`.singular`, pattern.en 3.6's rules);
2. merge two-word names left to right: when ``"w[i] w[i+1]"`` is a known double word, it replaces both
   tokens by what it stands for (``"teddy bear"`` stays ``"teddy bear"``, ``"baby bird"`` becomes
   ``"bird"`` so that "baby" does not count as a person, ``"toilet seat"`` becomes ``"toilet"``,
   ``"passenger train"`` becomes ``"train"``, ``"wine glas"`` (pattern's singular) becomes
   ``"wine glass"``, ``"train track"`` stays a name of no object, so "train tracks" are no train);
3. drop a word when its partner appears anywhere (``"seat"`` when ``"toilet"`` is in the caption, so
   "the seat of the toilet" is not a chair);
4. keep the words in the vocabulary and map each to its object (``"puppy"`` → ``"dog"``).

Every mention counts: ``CHAIR-i = hallucinated mentions / all mentions`` (a caption naming "dog" twice
where there is none adds 2 to both); ``CHAIR-s = captions with at least one hallucinated mention / all
captions`` (captions without any object count in the denominator); ``recall = sum over captions of the
distinct objects mentioned that are in the ground truth / sum of ground-truth object counts`` (as in the
Python 3 CHAIR used by OPERA and Object HalBench). A rate whose denominator is 0 is reported as 0.0; the
counts say why.

Quirks of the original kept on purpose, so numbers match it: synonym entries keep stray spaces
(``" motor bike"`` never matches), ``"iPhone"`` is never matched (captions are lowercased), ``"bus"``
singularises to ``"bu"`` and is missed while ``"buses"`` is found, hyphenated words (``"hot-dog"``) are
single tokens, and the three-word ``"stove top oven"`` can never merge.

The shapes world uses :func:`shapes_vocabulary`: an object is a colour + shape type (``"red circle"``),
every such pair is a double word, sizes and counts are ignored ("two large red circles" is one mention of
``"red circle"``), and a bare shape with no colour is not an object.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmalign.eval.metrics.coco_synonyms import COCO_SYNONYMS
from mmalign.eval.metrics.singular import singularize
from mmalign.eval.metrics.tokens import word_tokenize
from mmalign.world.vocab import COLOURS, SHAPES

# Double words of the original (utils/chair.py); each stands for itself.
_COCO_DOUBLE_WORDS = (
    "motor bike",
    "motor cycle",
    "air plane",
    "traffic light",
    "street light",
    "traffic signal",
    "stop light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "suit case",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "cell phone",
    "mobile phone",
    "teddy bear",
    "hair drier",
    "potted plant",
    "bow tie",
    "laptop computer",
    "stove top oven",
    "home plate",
    "train track",
)
# "baby X" / "adult X" is the animal X, not a person.
_ANIMAL_WORDS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
# "passenger X" is the vehicle X, not a person.
_VEHICLE_WORDS = ("jet", "train")


@dataclass(frozen=True)
class ObjectVocabulary:
    """What CHAIR counts as an object mention. All keys are lowercase, singularised words."""

    name: str
    synonyms: Mapping[str, str]
    """Surface word or two-word name → the object it names (``"puppy"`` → ``"dog"``)."""
    double_words: Mapping[str, str] = field(default_factory=dict)
    """``"w1 w2"`` → the single token that replaces the pair before lookup (it may name no object)."""
    drop_with: Mapping[str, str] = field(default_factory=dict)
    """``word`` → ``partner``: remove every ``word`` from a caption that also contains ``partner``."""

    @property
    def objects(self) -> list[str]:
        """The distinct object names, in first-seen order."""
        return list(dict.fromkeys(self.synonyms.values()))


def parse_synonyms(text: str) -> dict[str, str]:
    """Synonym lines (``canonical, synonym, ...``) → word → canonical, split exactly as the original does.

    Lines are stripped and split on ``", "``; entries keep any other whitespace. A word listed under two
    classes maps to the later one (the original builds the same dict in file order).
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        entries = line.strip().split(", ")
        if entries == [""]:
            continue
        for entry in entries:
            out[entry] = entries[0]
    return out


def coco_vocabulary(synonyms_text: str | None = None) -> ObjectVocabulary:
    """The COCO vocabulary of the original CHAIR: 80 classes, their synonyms and its special cases."""
    double = {word: word for word in _COCO_DOUBLE_WORDS}
    for animal in _ANIMAL_WORDS:
        double[f"baby {animal}"] = animal
        double[f"adult {animal}"] = animal
    for vehicle in _VEHICLE_WORDS:
        double[f"passenger {vehicle}"] = vehicle
    double["bow tie"] = "tie"
    double["toilet seat"] = "toilet"
    double["wine glas"] = "wine glass"
    return ObjectVocabulary(
        name="coco",
        synonyms=parse_synonyms(COCO_SYNONYMS if synonyms_text is None else synonyms_text),
        double_words=double,
        drop_with={"seat": "toilet"},
    )


def shapes_vocabulary(colours: Iterable[str] | None = None, shapes: Iterable[str] | None = None) -> ObjectVocabulary:
    """The shapes world's vocabulary: every ``"<colour> <shape>"`` is an object (defaults: the whole world)."""
    names = [
        f"{c} {s}" for c in (COLOURS if colours is None else colours) for s in (SHAPES if shapes is None else shapes)
    ]
    return ObjectVocabulary(name="shapes", synonyms={n: n for n in names}, double_words={n: n for n in names})


@dataclass(frozen=True)
class Mention:
    word: str
    """The word (or merged two-word name) as found, singularised."""
    object: str
    """The object it names in the vocabulary."""
    position: int
    """Index of its first token among the caption's singularised tokens."""


def extract_mentions(caption: str, vocab: ObjectVocabulary) -> list[Mention]:
    """Every object mention in ``caption``, in order (see the module docstring for the steps)."""
    tokens = [singularize(token) for token in word_tokenize(caption.lower())]
    merged: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        pair = " ".join(tokens[i : i + 2])
        if i + 1 < len(tokens) and pair in vocab.double_words:
            merged.append((vocab.double_words[pair], i))
            i += 2
        else:
            merged.append((tokens[i], i))
            i += 1
    present = {word for word, _ in merged}
    dropped = {word for word, partner in vocab.drop_with.items() if word in present and partner in present}
    return [
        Mention(word, vocab.synonyms[word], position)
        for word, position in merged
        if word not in dropped and word in vocab.synonyms
    ]


def objects_in(caption: str, vocab: ObjectVocabulary) -> set[str]:
    """The distinct objects a caption mentions."""
    return {mention.object for mention in extract_mentions(caption, vocab)}


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
    mentions = extract_mentions(caption, vocab)
    truth = set(ground_truth)
    hallucinated = [(m.word, m.object) for m in mentions if m.object not in truth]
    recalled = {m.object for m in mentions if m.object in truth}
    return {
        "mentions": len(mentions),
        "hallucinated_mentions": len(hallucinated),
        "hallucinated": [list(pair) for pair in hallucinated],
        "objects": sorted({m.object for m in mentions}),
        "recalled": len(recalled),
        "gt_objects": len(truth),
        "ground_truth": sorted(truth),
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
