"""MME and multiple choice: official parsing rules, scores worked out by hand, official files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.errors import DataError
from mmalign.eval.metrics.mme import mme_parse, mme_subtask
from mmalign.eval.metrics.multiple_choice import mc_metrics, parse_choice
from mmalign.eval.scoring.score import ScoreOptions, score

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OPTIONS = ["red", "blue", "green", "yellow"]


@pytest.mark.parametrize(
    ("pred", "want"),
    [
        ("Yes", "yes"),
        ("no", "no"),
        ("No, it is not.", "no"),
        ("Not sure", "no"),
        ("none", "no"),
        (" yes", "yes"),
        ("The answer is yes", "other"),
        ("", "other"),
        ("yes\n", "yes"),
        ("Nyes", "yes"),
    ],
)
def test_mme_parse(pred, want):
    assert mme_parse(pred) == want


def test_mme_subtask_by_hand():
    # image 1: both right; image 2: one right; image 3: none right (one "other")
    # acc = 3/6, acc+ = 1/3, score = 50 + 33.33
    s = mme_subtask(
        "existence", [[("Yes", "yes"), ("No", "no")], [("Yes", "no"), ("No", "no")], [("Yes", "maybe"), ("No", "yes")]]
    )
    assert (s.n_correct, s.n_images_both_correct, s.n_other) == (3, 1, 1)
    assert s.score == pytest.approx(100 * 3 / 6 + 100 * 1 / 3)


def test_score_mme_results_dir():
    # existence: a.jpg both right; b.jpg "Not sure" (-> no, wrong) + "no" (right); c.jpg "The answer is yes"
    # (other, wrong) + "yes" (wrong): acc 3/6, acc+ 1/3 -> 83.33
    # numerical_calculation: "yes" right, "None of that" -> no, right: acc 1, acc+ 1 -> 200
    report = score("mme", FIXTURES / "mme", options=ScoreOptions(n_resamples=100))
    m = report["metrics"]
    assert m["subtasks"]["existence"]["score"] == pytest.approx(250 / 3)
    assert m["subtasks"]["numerical_calculation"]["score"] == pytest.approx(200)
    assert m["perception"] == pytest.approx(250 / 3) and m["cognition"] == pytest.approx(200)
    assert report["intervals"]["total"]["estimate"] == pytest.approx(250 / 3 + 200)


def test_mme_bad_files(tmp_path):
    bad = tmp_path / "count.txt"
    bad.write_text("a.jpg\tQ?\tYes\tyes\nb.jpg\tQ?\tNo\tno\n")
    with pytest.raises(DataError, match=r"count.txt, line 2, field 'image': lines 1 and 2 should be"):
        score("mme", bad)
    bad.write_text("a.jpg\tQ?\tYes\n")
    with pytest.raises(DataError, match="line 1: expected 4 tab-separated fields"):
        score("mme", bad)
    bad.write_text("a.jpg\tQ?\tMaybe\tyes\na.jpg\tQ?\tNo\tno\n")
    with pytest.raises(DataError, match="field 'answer': answer must be Yes or No"):
        score("mme", bad)


@pytest.mark.parametrize(
    ("response", "want"),
    [
        ("B", "B"),
        ("(C) green", "C"),
        ("The answer is D.", "D"),
        ("B.,", "B"),  # "," stripped, then "."
        ("B,.", None),  # "." stripped first... then "," stays: no letter found
        ("(A) or maybe (B)", "B"),  # several: the last one wins
        ("A cat? No, the answer is C", "C"),  # " A " and " C ": C occurs last
        ("I am quite sure that the colour is blue here", "B"),  # option text, > 5 words
        ("blue", None),  # option text needs more than 5 words
        ("b", None),  # letters are case-sensitive
        ("", None),
    ],
)
def test_parse_choice(response, want):
    assert parse_choice(response, OPTIONS) == want


def test_strict_choice_ignores_option_text():
    assert parse_choice("I am quite sure that the colour is blue here", OPTIONS, strict=True) is None
    assert parse_choice("(B)", OPTIONS, strict=True) == "B"


def test_mc_metrics_and_mmmu_files():
    r = mc_metrics(["(B)", "no idea at all", "C"], [OPTIONS] * 3, ["B", "A", ["C", "D"]])
    assert (r.n_correct, r.n_unparsed) == (2, 1) and r.accuracy == pytest.approx(2 / 3)
    seeded = mc_metrics(["no idea"] * 50, [OPTIONS] * 50, ["A"] * 50, random_seed=3)
    assert seeded.n_unparsed == 50 and 0 < seeded.n_correct < 50  # random letters, reproducible
    assert mc_metrics(["no idea"] * 50, [OPTIONS] * 50, ["A"] * 50, random_seed=3).n_correct == seeded.n_correct
    # MMMU file: 1 right "(B)"; 2 option texts "green" and "red" (inside "colo-red", MMMU matches substrings)
    # both appear, "red" last -> A, right by accident; 3 open (skipped); 4 "D." in [C, D] (right);
    # 5 "Hmm." unparsed -> 3/4
    m = score("mc", FIXTURES / "mmmu_output.json", options=ScoreOptions(n_resamples=50))["metrics"]
    assert (m["n"], m["n_correct"], m["n_unparsed"]) == (4, 3, 1)
    assert parse_choice("I think the sky in this painting is clearly green colored", OPTIONS) == "A"


def test_mme_writer_round_trip(tmp_path):
    from mmalign.eval.metrics.official import write_mme_file

    path = tmp_path / "results" / "color.txt"
    rows = [("x.jpg", "Is it red?", "Yes", "Yes"), ("x.jpg", "Is it blue?", "No", "Yes")]
    assert write_mme_file(path, rows) == 2
    m = score("mme", path.parent, options=ScoreOptions(n_resamples=20))["metrics"]
    assert m["subtasks"]["color"]["score"] == pytest.approx(50.0)  # acc 1/2, acc+ 0
    with pytest.raises(DataError, match="cannot contain tabs"):
        write_mme_file(tmp_path / "bad.txt", [("x.jpg", "a\tb", "Yes", "Yes")])


def test_mme_delta_pairs_images_not_lines(tmp_path):
    before = tmp_path / "before"
    before.mkdir()
    # same images as fixtures/mme/existence.txt, other order, everything answered "yes": acc 3/6, acc+ 0 -> 50
    lines = [
        "c.jpg\tQ\tYes\tyes",
        "c.jpg\tQ\tNo\tyes",
        "a.jpg\tQ\tYes\tyes",
        "a.jpg\tQ\tNo\tyes",
        "b.jpg\tQ\tYes\tyes",
        "b.jpg\tQ\tNo\tyes",
    ]
    (before / "existence.txt").write_text("\n".join(lines) + "\n")
    after = tmp_path / "after"
    after.mkdir()
    (after / "existence.txt").write_text((FIXTURES / "mme" / "existence.txt").read_text())
    d = score("mme", after, baseline=before, options=ScoreOptions(n_resamples=50))["deltas"]
    assert d["total"]["before"] == pytest.approx(50.0) and d["total"]["delta"] == pytest.approx(250 / 3 - 50)
