"""Object mentions in a text, found exactly as the original CHAIR script finds them, and counted against the
objects truly present.

With an :class:`~mmalign.objects.vocabulary.ObjectVocabulary` (LisaAnne/Hallucination ``utils/chair.py``,
Rohrbach et al., 2018):

1. lowercase, split into tokens with NLTK's ``word_tokenize`` as of nltk 3.2.5, the version the original pins
   (:mod:`mmalign.objects.tokens`), and singularise every token (:mod:`mmalign.objects.singular`, pattern.en
   3.6's rules);
2. merge two-word names left to right: when ``"w[i] w[i+1]"`` is a known double word, it replaces both
   tokens by what it stands for (``"teddy bear"`` stays ``"teddy bear"``, ``"baby bird"`` becomes
   ``"bird"`` so that "baby" does not count as a person, ``"toilet seat"`` becomes ``"toilet"``,
   ``"passenger train"`` becomes ``"train"``, ``"wine glas"`` (pattern's singular) becomes
   ``"wine glass"``, ``"train track"`` stays a name of no object, so "train tracks" are no train);
3. drop a word when its partner appears anywhere (``"seat"`` when ``"toilet"`` is in the caption, so
   "the seat of the toilet" is not a chair);
4. keep the words in the vocabulary and map each to its object (``"puppy"`` → ``"dog"``).

Quirks of the original kept: ``"bus"`` singularises to ``"bu"`` and is missed while ``"buses"`` is found,
hyphenated words (``"hot-dog"``) are single tokens. With the shapes vocabulary, sizes and counts are ignored
("two large red circles" is one mention of ``"red circle"``).

CHAIR (:mod:`mmalign.eval.metrics.chair`) and the ``truth`` scorer of the pair builders
(:mod:`mmalign.pairs.scorers`) both count with :func:`count_mentions`, so a pair ranked by ``truth`` is ranked
the way CHAIR will judge it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mmalign.objects.singular import singularize
from mmalign.objects.tokens import word_tokenize
from mmalign.objects.vocabulary import ObjectVocabulary


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


@dataclass(frozen=True)
class MentionCounts:
    """A text's object mentions checked against the objects truly present."""

    mentions: list[Mention]
    truth: set[str]
    """The objects present (ground truth)."""

    @property
    def hallucinated(self) -> list[Mention]:
        """Mentions of objects not present, in order (each counts: "dog ... dog" is two)."""
        return [m for m in self.mentions if m.object not in self.truth]

    @property
    def recalled(self) -> set[str]:
        """The distinct present objects the text mentions."""
        return {m.object for m in self.mentions if m.object in self.truth}


def count_mentions(caption: str, ground_truth: Collection[str], vocab: ObjectVocabulary) -> MentionCounts:
    """The mentions of ``caption`` (:func:`extract_mentions`) against the objects ``ground_truth`` holds."""
    return MentionCounts(extract_mentions(caption, vocab), set(ground_truth))
