"""CHAIR: object extraction with the original's special cases, and metrics worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.errors import DataError
from mmalign.eval.metrics.chair import chair_metrics
from mmalign.eval.scoring.score import ScoreOptions, score
from mmalign.objects.coco_synonyms import COCO_SYNONYMS
from mmalign.objects.mentions import extract_mentions
from mmalign.objects.vocabulary import coco_vocabulary, shapes_vocabulary

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "chair" / "coco_synonyms.txt"
COCO = coco_vocabulary()


def words(caption: str, vocab=COCO) -> list[tuple[str, str]]:
    return [(m.word, m.object) for m in extract_mentions(caption, vocab)]


def test_embedded_synonyms_equal_the_shared_file():
    if SHARED.exists():
        assert SHARED.read_text() == COCO_SYNONYMS
    assert len(COCO.objects) == 80


@pytest.mark.parametrize(
    ("caption", "want"),
    [
        ("A toilet seat in a bathroom.", [("toilet", "toilet")]),  # "toilet seat" is a toilet, not a chair
        ("The seat of the toilet is up.", [("toilet", "toilet")]),  # "seat" dropped when "toilet" is there
        ("A seat by the window.", [("seat", "chair")]),
        ("A baby bird and an adult giraffe.", [("bird", "bird"), ("giraffe", "giraffe")]),  # not persons
        ("A baby in a crib.", [("baby", "person")]),
        ("Two teddy bears.", [("teddy bear", "teddy bear")]),  # not bears
        ("Hot dogs on a plate.", [("hot dog", "hot dog")]),  # not dogs
        ("A hot-dog stand.", []),  # one hyphenated token, as NLTK tokenizes it
        ("A passenger train.", [("train", "train")]),  # "passenger" is not a person here
        ("Wine glasses and a glass.", [("wine glass", "wine glass")]),  # "glas" fix-up; "glass" is no object
        ("A man on a motor bike.", [("man", "person")]),  # the original's " motor bike" never matches
        ("Two buses and a bus.", [("bus", "bus")]),  # singular "bus" → "bu" is missed, as in the original
        (
            "People with puppies, kittens and a bow tie.",
            [("person", "person"), ("puppy", "dog"), ("kitten", "cat"), ("tie", "tie")],
        ),
        ("The dog's bowl.", [("dog", "dog"), ("bowl", "bowl")]),
    ],
)
def test_coco_extraction(caption, want):
    assert words(caption) == want


def test_shapes_vocabulary():
    shapes = shapes_vocabulary()
    got = words("There is a red circle and a large blue star. Two red circles and three green crosses.", shapes)
    assert got == [
        ("red circle", "red circle"),
        ("blue star", "blue star"),
        ("red circle", "red circle"),
        ("green cross", "green cross"),
    ]
    assert words("A circle and a red thing.", shapes) == []  # a bare shape has no colour: not an object type
    assert len(shapes.objects) == 64


def test_chair_metrics_by_hand():
    # caption 0: dog (ok), cat (hallucinated), cat (hallucinated) -> 3 mentions, 2 hallucinated, recalled {dog}
    # caption 1: no object -> counts in CHAIR-s's denominator only; ground truth {person}
    # caption 2: person, person -> 2 mentions, 0 hallucinated, recalled {person}
    r = chair_metrics(
        ["A dog chases a cat and another cat.", "Nothing here.", "A man and a woman."],
        [{"dog", "person"}, {"person"}, {"person"}],
        COCO,
    )
    assert (r.n_mentions, r.n_hallucinated_mentions, r.n_hallucinated_captions) == (5, 2, 1)
    assert r.chair_i == pytest.approx(2 / 5) and r.chair_s == pytest.approx(1 / 3)
    assert (r.n_recalled_objects, r.n_gt_objects) == (2, 4) and r.recall == pytest.approx(2 / 4)
    assert r.per_caption[0]["hallucinated"] == [["cat", "cat"], ["cat", "cat"]]


def test_score_with_coco_annotations():
    # ground truth: image 1 {person, dog} + objects of its reference caption {person, dog, bench};
    # image 2 {toilet}; image 3 {cat} + {cat, couch}.
    # caption 1: man, woman, dog, cat, cat -> 5 mentions, 2 hallucinated (cat x2), recalled {person, dog}
    # caption 2: toilet, sink ("seat" dropped) -> 2 mentions, 1 hallucinated, recalled {toilet}
    # caption 3: kitten, sofa -> 2 mentions, 0 hallucinated, recalled {cat, couch}
    report = score("chair", FIXTURES / "chair_captions.json", options=ScoreOptions(annotations=FIXTURES / "coco"))
    m = report["metrics"]
    assert (m["n_mentions"], m["n_hallucinated_mentions"], m["n_hallucinated_captions"]) == (9, 3, 2)
    assert m["chair_i"] == pytest.approx(3 / 9) and m["chair_s"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(5 / 6)
    assert report["items"][0]["ground_truth"] == ["bench", "dog", "person"]


def test_chair_delta_pairs_captions_by_image():
    # before (Object HalBench style "answer" key, other order): image 3 kitten, sofa, dog (hallucinated);
    # image 1 man, dog; image 2 toilet -> 6 mentions, 1 hallucinated: CHAIR-i 1/6, CHAIR-s 1/3
    report = score(
        "chair",
        FIXTURES / "chair_captions.json",
        baseline=FIXTURES / "chair_captions_before.jsonl",
        options=ScoreOptions(annotations=FIXTURES / "coco", n_resamples=200),
    )
    d = report["deltas"]
    assert d["chair_i"]["before"] == pytest.approx(1 / 6) and d["chair_i"]["delta"] == pytest.approx(3 / 9 - 1 / 6)
    assert d["chair_s"]["delta"] == pytest.approx(2 / 3 - 1 / 3)


def test_score_shapes_world_items():
    # s1: red circle, blue star, green cross (hallucinated); s2: green cross ("a circle" is no type)
    report = score("chair", FIXTURES / "shapes_captions.jsonl", questions=FIXTURES / "shapes_items.jsonl")
    m = report["metrics"]
    assert m["vocabulary"] == "shapes"
    assert (m["n_mentions"], m["n_hallucinated_mentions"]) == (4, 1)
    assert m["chair_s"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(3 / 3)


def test_unknown_image_and_bad_files(tmp_path):
    caps = tmp_path / "caps.jsonl"
    caps.write_text('{"image_id": 1, "caption": "A dog."}\n{"image_id": 7, "caption": "A cat."}\n')
    with pytest.raises(DataError, match=r"caps.jsonl, line 2, field 'image_id': image 7 is in none"):
        score("chair", caps, options=ScoreOptions(annotations=FIXTURES / "coco"))
    caps.write_text('{"image_id": "abc", "caption": "A dog."}\n')
    with pytest.raises(DataError, match="must be a COCO image id"):
        score("chair", caps, options=ScoreOptions(annotations=FIXTURES / "coco"))
    with pytest.raises(DataError, match="needs both COCO instances"):
        score("chair", FIXTURES / "chair_captions.json", options=ScoreOptions(annotations=tmp_path))
