"""Captions and questions on hand-made scenes, with the answers worked out by hand."""

from __future__ import annotations

import random

from mmalign.objects import shapes
from mmalign.world.config import WorldConfig
from mmalign.world.scene import Scene, SceneObject, absent_partners, partner_of
from mmalign.world.stats import CooccurrenceStats
from mmalign.world.text import (
    colour_qa,
    count_qa,
    existence_qa,
    mc_qa,
    mme_pair,
    noisy_caption,
    position_qa,
    reference_caption,
    training_qa,
    unique_shapes,
)

CFG = WorldConfig()


def scene_of(*objects: tuple[str, str, str, int, int]) -> Scene:
    """Objects as (colour, shape, size, row, col), sorted into grid order as sample_scene does."""
    objs = sorted((SceneObject(c, s, z, r, k) for c, s, z, r, k in objects), key=lambda o: (o.row, o.col))
    return Scene("val-000007", 3, 3, tuple(objs))


SCENE = scene_of(("blue", "star", "large", 2, 0), ("red", "circle", "small", 0, 1), ("green", "circle", "large", 1, 2))


def test_reference_caption_lists_objects_in_grid_order():
    assert reference_caption(SCENE, CFG) == "There is a small red circle, a large green circle and a large blue star."
    assert reference_caption(SCENE, CFG.replace(object_sizes=False)) == (
        "There is a red circle, a green circle and a blue star."
    )
    one = scene_of(("purple", "square", "small", 1, 1))
    assert reference_caption(one, CFG) == "There is a small purple square."
    assert shapes.object_phrase("orange", "heart") == "an orange heart"
    assert shapes.caption(["a red circle", "a blue star"]) == "There is a red circle and a blue star."


def test_noisy_caption_names_absent_partners_right_after_their_partner():
    partners = partner_of(CFG)
    present = scene_of(("red", "circle", "large", 0, 0))
    partner = partners["red circle"]
    assert absent_partners(present, CFG) == [partner]
    text, named = noisy_caption(present, CFG, random.Random(0))
    assert named == [partner]
    assert text.startswith("There is a large red circle and a ")
    assert text.endswith(f" {partner}.")
    with_partner = Scene("s", 3, 3, (*present.objects, SceneObject(*partner.split(" "), "small", 2, 2)))
    assert absent_partners(with_partner, CFG) == []
    assert noisy_caption(with_partner, CFG, random.Random(0)) == (reference_caption(with_partner, CFG), [])


def test_question_answers():
    assert (existence_qa(SCENE, "blue star").question, existence_qa(SCENE, "blue star").answer) == (
        "Is there a blue star in the image?",
        "Yes.",
    )
    no = existence_qa(SCENE, "purple square")
    assert (no.answer, no.short) == ("No.", "no")
    total, circles, squares = count_qa(SCENE), count_qa(SCENE, "circle"), count_qa(SCENE, "square")
    assert (total.question, total.answer, total.short) == ("How many objects are there?", "Three.", "three")
    assert (circles.question, circles.answer) == ("How many circles are there?", "Two.")
    assert squares.short == "zero"
    assert [o.name for o in unique_shapes(SCENE)] == ["blue star"]  # the two circles make "the circle" ambiguous
    star = colour_qa(unique_shapes(SCENE)[0])
    assert (star.question, star.answer, star.short) == ("What colour is the star?", "Blue.", "blue")
    where = position_qa(SCENE, SCENE.objects[1])
    assert (where.question, where.answer, where.short) == (
        "Where is the green circle?",
        "Middle right.",
        "middle right",
    )
    assert position_qa(SCENE, SCENE.objects[2]).short == "bottom left"


def test_multiple_choice_has_one_present_option_and_the_hardest_distractor():
    for seed in range(20):
        qa = mc_qa(SCENE, CFG, random.Random(seed), ["yellow star", "red star"])
        assert qa.choices is not None and len(qa.choices) == 4 and len(set(qa.choices)) == 4
        assert [c in SCENE.names for c in qa.choices].count(True) == 1
        assert "yellow star" in qa.choices
        letter = shapes.LETTERS[qa.choices.index(qa.meta["object"])]
        assert qa.short == letter and qa.answer == f"{letter}."
        assert f"\n{letter}. {qa.meta['object']}\n" in qa.question


def test_mme_pairs_are_one_true_and_one_false_statement():
    seen = set()
    for seed in range(80):
        yes, no = mme_pair(SCENE, CFG, random.Random(seed))
        category = yes.meta["category"]
        seen.add(category)
        assert (yes.short, no.short) == ("yes", "no") and no.meta["category"] == category
        assert yes.meta["subtask"] == {"colour": "color"}.get(category, category)
        for qa in (yes, no):
            assert qa.question.endswith(" Please answer yes or no.")
            assert _true(qa.question.removesuffix(" Please answer yes or no.")) == (qa.short == "yes"), qa.question
    assert seen == {"existence", "count", "colour", "position"}


def _true(question: str) -> bool:
    """Check an MME statement against SCENE by hand."""
    names = SCENE.names
    for name in (f"{c} {s}" for c in CFG.colours for s in CFG.shapes):
        if question == shapes.exists_question(name):
            return name in names
        for obj in SCENE.objects:
            if obj.name == name and question.startswith(f"Is the {name} in the "):
                return question == f"Is the {name} in the {SCENE.position(obj)}?"
    if "objects in the image" in question or "one object" in question:
        return question in ("Are there three objects in the image?",)
    assert question.startswith("Is the star "), question
    return question == "Is the star blue?"


def test_training_questions_are_clean_and_mixed():
    kinds = set()
    for i in range(60):
        for qa in training_qa(SCENE, CFG, random.Random(i), 3):
            kinds.add(qa.task)
            if qa.task == "existence":
                assert (qa.short == "yes") == (qa.meta["object"] in SCENE.names)
    assert kinds == {"existence", "count", "colour", "position", "mc"}


def test_stats_rankings_for_pope_negatives():
    a, b, c, d, e = types = ("red circle", "red square", "green circle", "green square", "blue circle")
    stats = CooccurrenceStats(types)
    # Scenes: {a,b} x3, {a,c} x1, {d} x5, {e,c} x2. Frequencies: a 4, b 3, c 3, d 5, e 2.
    for names, n in (((a, b), 3), ((a, c), 1), ((d,), 5), ((e, c), 2)):
        objects = tuple(SceneObject(*name.split(), "large", 0, i) for i, name in enumerate(names))
        for _ in range(n):
            stats.add(Scene("s", 3, 3, objects))
    assert stats.cooccur(a, b) == 3 and stats.p_given(b, a) == 0.75 and stats.p_given(a, b) == 1.0
    assert stats.popular_absent([a]) == [d, b, c, e]  # by frequency; b before c (tie: type order)
    # Present a: co-occurrence b 3, c 1, d 0, e 0 -> b, c, then d (more frequent) before e.
    assert stats.adversarial_absent([a]) == [b, c, d, e]
    # Present a and e: c scores 1 + 2 = 3 and b 3 + 0 = 3; equal frequency (3) too, so type order: b, c.
    assert stats.adversarial_absent([a, e]) == [b, c, d]
