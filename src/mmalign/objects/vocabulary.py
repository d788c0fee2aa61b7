"""Object vocabularies: what counts as a mention of an object, for CHAIR and for the pair builders.

An :class:`ObjectVocabulary` maps words (and two-word names) to the objects they name. Two ship:

* :func:`coco_vocabulary`: the 80 COCO classes with the synonyms, double words and special cases of the
  original CHAIR script (Rohrbach et al., 2018; LisaAnne/Hallucination ``utils/chair.py``), quirks kept on
  purpose so numbers match it: synonym entries keep stray spaces (``" motor bike"`` never matches),
  ``"iPhone"`` is never matched (captions are lowercased), and the three-word ``"stove top oven"`` can never
  merge;
* :func:`shapes_vocabulary`: the shapes world's, where an object is a colour + shape type (``"red circle"``),
  every such pair is a double word, and a bare shape with no colour is not an object.

How a text's mentions are found with a vocabulary: :mod:`mmalign.objects.mentions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mmalign.objects.coco_synonyms import COCO_SYNONYMS
from mmalign.objects.shapes import COLOURS, SHAPES

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
