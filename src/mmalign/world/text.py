"""What the world says about a scene: captions (clean and noisy) and question-answer pairs.

All text comes from the templates in :mod:`mmalign.objects.shapes`. A :class:`QA` carries the answer twice:
``answer`` is what a model is trained to say (``Top left.``) and ``short`` is the normalised form an
evaluator compares against (``top left``; ``yes``/``no`` as in POPE; an option letter for multiple choice).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from mmalign.objects import shapes
from mmalign.world.config import WorldConfig
from mmalign.world.scene import Scene, SceneObject, absent_partners, object_types, partner_of, pick, sample, shuffled

MC_OPTIONS = 4
"""Options of a multiple-choice question: one present object, the rest absent."""

QA_MIX: dict[str, float] = {"existence": 0.4, "count": 0.15, "colour": 0.15, "position": 0.15, "mc": 0.15}
"""Kinds of training questions and their shares (existence is half yes, half no)."""

MME_SUBTASKS = {"existence": "existence", "count": "count", "position": "position", "colour": "color"}
"""MME's perception subtasks these categories match (MME's own names, in ``meta.subtask``)."""


@dataclass
class QA:
    task: str
    question: str
    answer: str
    """What the model should say, e.g. ``Two.``."""
    short: str
    """The normalised answer for scoring, e.g. ``two``."""
    choices: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------- captions


def phrase(obj: SceneObject, cfg: WorldConfig) -> str:
    return shapes.object_phrase(obj.colour, obj.shape, obj.size if cfg.object_sizes else None)


def reference_caption(scene: Scene, cfg: WorldConfig) -> str:
    """The clean caption: every object once, in grid order (row by row, left to right)."""
    return shapes.caption([phrase(o, cfg) for o in scene.objects])


def noisy_caption(scene: Scene, cfg: WorldConfig, rng: random.Random) -> tuple[str, list[str]]:
    """A caption that also names every absent partner, right after its present partner (as co-occurrence-
    biased web captions do). Returns the caption and the absent objects it names."""
    missing = set(absent_partners(scene, cfg))
    partners = partner_of(cfg)
    phrases: list[str] = []
    named: list[str] = []
    for obj in scene.objects:
        phrases.append(phrase(obj, cfg))
        other = partners.get(obj.name)
        if other in missing and other not in named:
            colour, shape = other.split(" ", 1)
            size = (shapes.SIZES[0] if rng.random() < 0.5 else shapes.SIZES[1]) if cfg.object_sizes else None
            phrases.append(shapes.object_phrase(colour, shape, size))
            named.append(other)
    return shapes.caption(phrases), named


# --------------------------------------------------------------------------------------- clip captions

NO_CHANGE = "Nothing changes."
"""What a clip's caption says after the first frame when no event happens."""


def event_sentence(event: dict[str, Any], cfg: WorldConfig) -> str:
    """One event as a sentence: ``The blue star moves down.``, ``A small green square appears.``,
    ``The red circle disappears.``, ``The blue star turns green.`` (events in the JSON form of
    :mod:`mmalign.world.clips`; an appearing object is named with its size, as captions name objects)."""
    from mmalign.world.clips import direction

    kind, name = event["type"], event["object"]
    if kind == "move":
        return f"The {name} moves {direction(event['from'], event['to'])}."
    if kind == "appear":
        colour, shape = name.split(" ", 1)
        words = shapes.object_phrase(colour, shape, event.get("size") if cfg.object_sizes else None)
        return f"{words[0].upper()}{words[1:]} appears."
    if kind == "disappear":
        return f"The {name} disappears."
    if kind == "change_colour":
        return f"The {name} turns {event['to']}."
    raise ValueError(f"unknown event type {kind!r}")


def clip_caption(start: Scene, events: list[dict[str, Any]] | tuple[dict[str, Any], ...], cfg: WorldConfig) -> str:
    """A clip's caption, in time order: the first frame as a still caption, then one sentence per event
    (``There is a small red circle and a large blue star. The blue star moves down. The red circle
    disappears.``), or :data:`NO_CHANGE` when nothing happens."""
    sentences = [reference_caption(start, cfg), *(event_sentence(e, cfg) for e in events)]
    return " ".join(sentences if events else [*sentences, NO_CHANGE])


# ---------------------------------------------------------------------------------------------- QA


def existence_qa(scene: Scene, name: str) -> QA:
    present = name in scene.names
    return QA(
        "existence",
        shapes.exists_question(name),
        shapes.sentence(shapes.yes_no(present)),
        shapes.yes_no(present),
        meta={"object": name},
    )


def count_qa(scene: Scene, shape: str | None = None) -> QA:
    """How many objects (``shape=None``) or how many of one shape (zero is a valid answer)."""
    n = sum(1 for o in scene.objects if shape is None or o.shape == shape)
    word = shapes.NUMBER_WORDS[n]
    return QA("count", shapes.count_question(shape), shapes.sentence(word), word, meta={"shape": shape, "count": n})


def unique_shapes(scene: Scene) -> list[SceneObject]:
    """Objects whose shape appears once in the scene (so 'the circle' names one object)."""
    shapes = [o.shape for o in scene.objects]
    return [o for o in scene.objects if shapes.count(o.shape) == 1]


def colour_qa(obj: SceneObject) -> QA:
    return QA(
        "colour", shapes.colour_question(obj.shape), shapes.sentence(obj.colour), obj.colour, meta={"object": obj.name}
    )


def position_qa(scene: Scene, obj: SceneObject) -> QA:
    where = scene.position(obj)
    return QA(
        "position",
        shapes.position_question(obj.name),
        shapes.sentence(where),
        where,
        meta={"object": obj.name, "cell": [obj.row, obj.col]},
    )


def mc_qa(scene: Scene, cfg: WorldConfig, rng: random.Random, hardest_absent: list[str]) -> QA:
    """One present object among absent ones; the first distractor is the hardest absent object
    (``hardest_absent`` is ranked, e.g. by co-occurrence with the present objects), the others random."""
    answer_obj = pick(rng, scene.names)
    absent = [t for t in object_types(cfg) if t not in scene.names]
    n_distract = min(MC_OPTIONS - 1, len(absent))
    distractors = hardest_absent[:1] if hardest_absent else []
    distractors += sample(rng, [t for t in absent if t not in distractors], n_distract - len(distractors))
    options = shuffled(rng, [answer_obj, *distractors])
    letter = shapes.LETTERS[options.index(answer_obj)]
    return QA(
        "mc",
        shapes.mc_question(options),
        shapes.sentence(letter),
        letter,
        choices=options,
        meta={"object": answer_obj, "distractors": distractors},
    )


def mme_pair(scene: Scene, cfg: WorldConfig, rng: random.Random) -> list[QA]:
    """MME-style: one yes and one no question about the same image and category (existence, count, colour or
    position), each ending with "Please answer yes or no." (MME, Fu et al., 2023: acc+ needs both right)."""
    cell_names = {
        shapes.position_name(r, c, scene.rows, scene.cols) for r in range(scene.rows) for c in range(scene.cols)
    }
    categories = ["existence", "count"]
    categories += ["position"] if len(cell_names) > 1 else []
    categories += ["colour"] if unique_shapes(scene) and len(cfg.colours) > 1 else []
    category = pick(rng, categories)
    absent = [t for t in object_types(cfg) if t not in scene.names]
    if category == "existence":
        pairs = [
            (shapes.exists_question(pick(rng, scene.names)), True),
            (shapes.exists_question(pick(rng, absent)), False),
        ]
    elif category == "count":
        n = len(scene.objects)
        wrong = pick(rng, [m for m in (n - 1, n + 1) if 1 <= m < len(shapes.NUMBER_WORDS)])
        pairs = [(shapes.mme_count_question(n), True), (shapes.mme_count_question(wrong), False)]
    elif category == "colour":
        obj = pick(rng, unique_shapes(scene))
        other = pick(rng, [c for c in cfg.colours if c != obj.colour])
        pairs = [
            (shapes.mme_colour_question(obj.shape, obj.colour), True),
            (shapes.mme_colour_question(obj.shape, other), False),
        ]
    else:
        obj = pick(rng, list(scene.objects))
        where = scene.position(obj)
        names = sorted(cell_names - {where})
        pairs = [
            (shapes.mme_position_question(obj.name, where), True),
            (shapes.mme_position_question(obj.name, pick(rng, names)), False),
        ]
    return [
        QA(
            "mme",
            q + shapes.MME_SUFFIX,
            shapes.sentence(shapes.yes_no(y)),
            shapes.yes_no(y),
            meta={"category": category, "subtask": MME_SUBTASKS[category]},
        )
        for q, y in pairs
    ]


def training_qa(scene: Scene, cfg: WorldConfig, rng: random.Random, n: int) -> list[QA]:
    """``n`` clean training questions about ``scene``, kinds drawn from :data:`QA_MIX`."""
    absent = [t for t in object_types(cfg) if t not in scene.names]
    out: list[QA] = []
    kinds, weights = list(QA_MIX), list(QA_MIX.values())
    for _ in range(n):
        x, kind = rng.random() * sum(weights), kinds[-1]
        for k, w in zip(kinds, weights, strict=True):
            x -= w
            if x < 0:
                kind = k
                break
        if kind == "colour" and not unique_shapes(scene):
            kind = "existence"
        if kind == "existence":
            out.append(existence_qa(scene, pick(rng, scene.names if rng.random() < 0.5 else absent)))
        elif kind == "count":
            out.append(count_qa(scene, None if rng.random() < 0.5 else pick(rng, list(cfg.shapes))))
        elif kind == "colour":
            out.append(colour_qa(pick(rng, unique_shapes(scene))))
        elif kind == "position":
            out.append(position_qa(scene, pick(rng, list(scene.objects))))
        else:
            out.append(mc_qa(scene, cfg, rng, []))
    return out
