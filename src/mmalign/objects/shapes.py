"""The shapes world's words: colours, shapes, sizes, grid positions, numbers, and the sentence templates.

Everything the world (:mod:`mmalign.world`) says is built from these, and the tiny models' tokenizers
(:mod:`mmalign.models.tokenizer`, :mod:`mmalign.models.tiny_clip`) are trained on :func:`tokenizer_corpus`, so
world text tokenizes into few tokens (other text still works: byte fallback). Both import them from here.
There is one canonical phrase per fact, so answers can be scored by exact match:

    caption     Describe the image.                          There is a small red circle and a large blue star.
    existence   Is there a red circle in the image?          Yes. / No.
    count       How many objects are there? / How many circles are there?      Two.
    colour      What colour is the circle?                   Red.
    position    Where is the red circle?                     Top left.
    mc          Which of these objects is in the image?\\nA. red circle\\nB. ...\\nAnswer with the letter.   B.
    mme         <a yes/no question> Please answer yes or no.

An *object* (what hallucination metrics count) is a colour + shape type such as ``red circle``; sizes are
mentioned in captions but are not part of an object's identity.
"""

from __future__ import annotations

from collections.abc import Iterator

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "cyan")
"""Colour names; a world uses the first ``n_colours``."""

RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "cyan": (40, 200, 210),
}

BACKGROUND: tuple[int, int, int] = (64, 64, 64)
"""Plain dark grey: far from every colour in :data:`RGB`."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "heart")
"""Shape names; a world uses the first ``n_shapes``."""

PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}

SIZES: tuple[str, ...] = ("small", "large")

NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
"""Option letters of multiple-choice questions."""


def position_name(row: int, col: int, rows: int, cols: int) -> str:
    """Plain name of a grid cell: ``top left``, ``center``, ``bottom right``... (any grid size)."""
    vertical = "top" if row == 0 else ("bottom" if row == rows - 1 else "middle")
    horizontal = "left" if col == 0 else ("right" if col == cols - 1 else "center")
    if vertical == "middle" and horizontal == "center":
        return "center"
    if vertical == "middle":
        return f"middle {horizontal}"
    return f"{vertical} {horizontal}"


POSITIONS: tuple[str, ...] = tuple(position_name(r, c, 3, 3) for r in range(3) for c in range(3))
"""Every name :func:`position_name` can give (on any grid)."""

TEMPLATE_WORDS: tuple[str, ...] = tuple(
    """a an the and there is are in on of image picture scene this what which where how many colour color
    shape object objects yes no or answer with letter option describe list every see you can i these
    only none nothing else left right top bottom center middle small large big
    of it its than more fewer same both first second third image1 image2 image3 image4
    please short word one sentence . , ? ! : ( ) A B C D E""".split()
)

# ------------------------------------------------------------------------------------------- templates

DESCRIBE_PROMPT = "Describe the image."
MME_SUFFIX = " Please answer yes or no."
MC_PROMPT = "Which of these objects is in the image?"
MC_INSTRUCTION = "Answer with the letter."


def article(word: str) -> str:
    """``an`` before a vowel sound (``an orange circle``), else ``a``."""
    return "an" if word[0] in "aeiou" else "a"


def object_name(colour: str, shape: str) -> str:
    """An object type, the unit of hallucination metrics: ``red circle``."""
    return f"{colour} {shape}"


def object_phrase(colour: str, shape: str, size: str | None = None) -> str:
    """An object as a caption names it: ``a small red circle`` (no size word when sizes are off)."""
    words = f"{size} {colour} {shape}" if size else f"{colour} {shape}"
    return f"{article(words)} {words}"


def caption(phrases: list[str]) -> str:
    """``There is a red circle, a large blue star and a green square.`` (phrases already ordered)."""
    if not phrases:
        return "There is nothing in the image."
    if len(phrases) == 1:
        return f"There is {phrases[0]}."
    return f"There is {', '.join(phrases[:-1])} and {phrases[-1]}."


def exists_question(name: str) -> str:
    return f"Is there {article(name)} {name} in the image?"


def count_question(shape: str | None = None) -> str:
    """``How many objects are there?`` or, for one shape, ``How many circles are there?``."""
    return f"How many {PLURALS[shape] if shape else 'objects'} are there?"


def colour_question(shape: str) -> str:
    return f"What colour is the {shape}?"


def position_question(name: str) -> str:
    return f"Where is the {name}?"


def mc_question(options: list[str]) -> str:
    lines = [MC_PROMPT] + [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)] + [MC_INSTRUCTION]
    return "\n".join(lines)


def mme_count_question(n: int) -> str:
    if n == 1:
        return "Is there one object in the image?"
    return f"Are there {NUMBER_WORDS[n]} objects in the image?"


def mme_colour_question(shape: str, colour: str) -> str:
    return f"Is the {shape} {colour}?"


def mme_position_question(name: str, position: str) -> str:
    return f"Is the {name} in the {position}?"


def sentence(word: str) -> str:
    """A one-word answer as the model says it: ``top left`` → ``Top left.``, ``B`` → ``B.``."""
    return f"{word[0].upper()}{word[1:]}."


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


# ------------------------------------------------------------------------------------------ tokenizer


def tokenizer_corpus(n_colours: int = len(COLOURS), n_shapes: int = len(SHAPES)) -> Iterator[str]:
    """Sentences in the world's own phrasing, enough to teach a tokenizer its words.

    Every template above is filled with every colour, shape, size, number and position, so each
    whitespace-separated token the world emits (``circle,`` and ``circle.`` included) appears here.
    """
    colours, shapes = COLOURS[:n_colours], SHAPES[:n_shapes]
    yield " ".join(TEMPLATE_WORDS)
    yield " ".join(NUMBER_WORDS) + " " + " ".join(sentence(n) for n in NUMBER_WORDS)
    yield " ".join(sentence(w) for w in ("yes", "no", *LETTERS))
    yield DESCRIBE_PROMPT + " " + caption([]) + MME_SUFFIX
    yield count_question() + " " + " ".join(mme_count_question(n) + MME_SUFFIX for n in range(len(NUMBER_WORDS)))
    other = object_phrase(colours[0], shapes[0])
    # multi-image prompts (MIA-DPO style pairs): "In which image is there a red circle? Image2."
    images = [f"image{k}" for k in range(1, 5)]
    yield f"In which image is there {other}? " + " ".join(sentence(w) for w in images)
    yield " ".join(f"Is there {other} in {w}?" for w in images)
    for colour in colours:
        yield sentence(colour)
        for shape in shapes:
            name = object_name(colour, shape)
            for size in (None, *SIZES):
                phrase = object_phrase(colour, shape, size)
                yield caption([phrase])
                yield caption([phrase, other, other])
                yield caption([other, phrase, phrase])
            yield f"{exists_question(name)} Yes. No.{MME_SUFFIX}"
            yield f"{mme_colour_question(shape, colour)}{MME_SUFFIX}"
            yield mc_question([name, other]) + " " + mc_question([other, name])
            for position in POSITIONS:
                yield f"{position_question(name)} {sentence(position)} {mme_position_question(name, position)}"
    for shape in shapes:
        yield f"{count_question(shape)} {colour_question(shape)} {sentence(shape)}"
