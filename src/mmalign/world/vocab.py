"""The shapes world's words: colours, shapes, sizes, grid positions, numbers, and the sentence templates.

Everything the world says is built from these, and the tiny models' tokenizer is trained on
:func:`tokenizer_corpus`, so world text tokenizes into few tokens (other text still works: byte fallback).
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

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "heart")
"""Shape names; a world uses the first ``n_shapes``."""

PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}

SIZES: tuple[str, ...] = ("small", "large")

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)  # fmt: skip


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

TEMPLATE_WORDS: tuple[str, ...] = tuple(
    """a an the and there is are in on of image picture scene this what which where how many colour color
    shape object objects yes no answer with letter option describe list every see you can i
    only none nothing else left right top bottom center middle small large big
    of it its than more fewer same both first second third image1 image2 image3 image4
    please short word one sentence . , ? ! : ( ) A B C D E""".split()
)


def tokenizer_corpus(n_colours: int = len(COLOURS), n_shapes: int = len(SHAPES)) -> Iterator[str]:
    """Sentences in the world's own phrasing, enough to teach a tokenizer its words."""
    colours, shapes = COLOURS[:n_colours], SHAPES[:n_shapes]
    yield " ".join(TEMPLATE_WORDS)
    yield " ".join(NUMBER_WORDS) + " " + " ".join(n.capitalize() for n in NUMBER_WORDS)
    for colour in colours:
        for shape in shapes:
            for size in SIZES:
                yield f"There is a {size} {colour} {shape} in the image."
            yield f"Is there a {colour} {shape} in the image? Yes. No."
            yield f"How many {PLURALS[shape]} are there? Where is the {colour} {shape}?"
            yield f"What colour is the {shape}? {colour.capitalize()}. {shape.capitalize()}."
    for position in POSITIONS:
        yield f"The object is in the {position}. {position.capitalize()}."
