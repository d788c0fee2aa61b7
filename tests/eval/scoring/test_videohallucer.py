"""VideoHallucer scoring equals its official code on a hand-written fixture.

Official code: github.com/patrick-tssn/VideoHallucer, ``evaluations/evaluation_utils.py`` (``cal_score``),
``evaluations/evaluation.py`` (the ``all`` means, the fact score) and ``evaluations/evaluation_bias.py`` (yes / no
difference, false-positive ratio, hallucination score), read at commit 2c6152e61207fd00db1d6d8b72d4893533828867;
``--strict`` is the ``re.match`` of ``evaluation_utils.py`` at 2c563065b2cd1639da93afe1408950c95ea2fa9f.
The fixture (``tests/eval/fixtures/videohallucer/``) is written by hand in the prediction format
``evaluation_utils.py`` writes (``<qa_type>_<model>.json``, pairs of ``basic`` / ``hallucination`` with ``answer`` and
``predict``); the expected numbers are worked out below pair by pair from the official formulas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmalign.errors import DataError
from mmalign.eval.metrics.videohallucer import Pair, answer_right, bias_stats
from mmalign.eval.scoring.score import ScoreOptions, score, summary_lines
from mmalign.eval.scoring.videohallucer import read_predictions, score_videohallucer, subtask_of

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "videohallucer"

# Pair by pair (b = basic right, h = hallucinated right; official parse: re.search(r"\b(answer)\b", predict, I)):
#   obj_rel   "Yes, the man..."/"No." b h | "yes"/"Yes, there is no dog." b h | "The answer is yes."/"Not really." b -
#             → basic 3/3, halluc 2/3, both 2/3   ("Not" holds no word "no")
#   temporal  "No."/"No." - h | "YES"/"yes" b - | "Yes."/"no, it does not" b h | ""/"I don't know" - -
#             → 2/4, 2/4, 1/4
#   semantic  "yes"/"no" b h | "Yes"/"No" b h | "yesterday..."/"Nope." - -   → 2/3, 2/3, 2/3
#   fact      "Yes"/"Yes" b - | "No"/"No" - h                                   → 1/2, 1/2, 0
#   nonfact   both pairs right                                                  → 1, 1, 1
#   factdet   (answers no / no) "No."/"No." b h | "Yes."/"No" - h | "no"/"yes" b -   → 2/3, 2/3, 1/3
# all = plain mean over the six sub-tasks:
#   basic  (1 + 1/2 + 2/3 + 1/2 + 1 + 2/3) / 6 = 13/18;  halluc (2/3 + 1/2 + 2/3 + 1/2 + 1 + 2/3) / 6 = 2/3
#   accuracy (2/3 + 1/4 + 2/3 + 0 + 1 + 1/3) / 6 = 35/72;  fact score (13/18 + 2/3) / 2 = 25/36
SUBTASKS = {
    "obj_rel": (1, 2 / 3, 2 / 3),
    "temporal": (0.5, 0.5, 0.25),
    "semantic": (2 / 3, 2 / 3, 2 / 3),
    "fact": (0.5, 0.5, 0.0),
    "nonfact": (1.0, 1.0, 1.0),
    "factdet": (2 / 3, 2 / 3, 1 / 3),
}


def test_every_subtask_and_the_mean_equal_the_official_code():
    report = score("videohallucer", FIXTURE, options=ScoreOptions(n_resamples=50))
    m = report["metrics"]
    assert set(m["subtasks"]) == set(SUBTASKS)  # the evaluation.py summary file is skipped
    for name, (basic, halluc, both) in SUBTASKS.items():
        row = m["subtasks"][name]
        assert (row["basic_accuracy"], row["halluc_accuracy"], row["accuracy"]) == pytest.approx((basic, halluc, both))
    assert m["basic_accuracy"] == pytest.approx(13 / 18)
    assert m["halluc_accuracy"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(35 / 72)
    assert m["fact_score"] == pytest.approx(25 / 36)
    assert m["pairs"] == 17
    # the bootstrap's headline recomputes the same means from the per-pair columns
    assert report["intervals"]["accuracy"]["estimate"] == pytest.approx(35 / 72)
    assert report["intervals"]["basic_accuracy"]["estimate"] == pytest.approx(13 / 18)


def test_bias_statistics_equal_evaluation_bias_py():
    # The 14 pairs of the five yes/no sub-tasks (factdet's no/no pairs are left out, as the script asserts yes/no).
    # y = basic reply reads yes, n = hallucinated reply reads no:
    #   (y, n): 7 pairs → +1 yes, +1 no each;  (y, not n): 3 (obj_rel "Not really", temporal "yes", fact "Yes")
    #   → +2 yes, +1 false positive, +1 denominator;  (not y, n): 2 (temporal "No.", fact "No") → +2 no,
    #   +1 denominator;  (not y, not n): 2 (temporal "", semantic "yesterday") → +2 denominator.
    # predicted yes 7 + 6 = 13, predicted no 7 + 4 = 11, false positives 3, denominator 3 + 2 + 4 = 9
    # yes difference (13 − 14) / 28 = −1/28, no difference (11 − 14) / 28 = −3/28, FPR 3/9,
    # hallucination score: basic right 10, of which hallucinated not answered no 3 → 0.3
    bias = score("videohallucer", FIXTURE, options=ScoreOptions(n_resamples=10))["metrics"]["bias"]
    assert bias["yes_difference"] == pytest.approx(-1 / 28)
    assert bias["no_difference"] == pytest.approx(-3 / 28)
    assert bias["false_positive_ratio"] == pytest.approx(1 / 3)
    assert bias["hallucination_score"] == pytest.approx(0.3)
    assert (bias["pairs"], bias["left_out"], bias["predicted_yes"], bias["predicted_no"]) == (14, 3, 13, 11)


def test_bias_per_subtask_as_evaluation_bias_sep_py():
    # temporal: (not y, n), (y, not n), (y, n), (not y, not n): yes 2 + 1 = 3, no 2 + 1 = 3, fp 1, denominator 4
    result = score_videohallucer(None, FIXTURE / "temporal_TinyVideo.json")
    bias = result.metrics["subtasks"]["temporal"]["bias"]
    assert (bias["yes_difference"], bias["no_difference"]) == pytest.approx((-1 / 8, -1 / 8))
    assert bias["false_positive_ratio"] == pytest.approx(0.25)
    assert bias["hallucination_score"] == pytest.approx(0.5)
    assert "bias" not in score_videohallucer(None, FIXTURE / "factdet_TinyVideo.json").metrics


def test_strict_is_the_earlier_re_match():
    # re.match: the answer must open the reply. Changes: obj_rel "Yes, there is no dog." (halluc) and "The answer is
    # yes." (basic) become wrong → obj_rel 2/3, 1/3, 1/3; the other sub-tasks' replies open with their word.
    m = score("videohallucer", FIXTURE, options=ScoreOptions(strict=True, n_resamples=10))["metrics"]
    assert m["subtasks"]["obj_rel"]["accuracy"] == pytest.approx(1 / 3)
    assert m["basic_accuracy"] == pytest.approx(2 / 3)  # (2/3 + 1/2 + 2/3 + 1/2 + 1 + 2/3) / 6
    assert m["halluc_accuracy"] == pytest.approx(11 / 18)  # (1/3 + 1/2 + 2/3 + 1/2 + 1 + 2/3) / 6
    assert m["accuracy"] == pytest.approx(31 / 72)  # (1/3 + 1/4 + 2/3 + 0 + 1 + 1/3) / 6


def test_answer_parsing_matches_the_official_pattern_on_awkward_replies():
    replies = ["Yes", "yes.", "YES!", "Yes, there is no cat", "No", "Not at all", "nope", "I don't know", "", "yes/no"]
    for reply in replies:
        for answer in ("yes", "no"):
            pattern = r"\b(" + answer + r")\b"
            assert answer_right(answer, reply) == bool(re.search(pattern, reply, re.IGNORECASE)), (reply, answer)
            assert answer_right(answer, reply, strict=True) == bool(re.match(pattern, reply, re.IGNORECASE))
    assert not answer_right("no", "Not at all") and answer_right("no", "Yes, there is no cat")


def test_hallucination_score_is_none_when_no_basic_question_is_right():
    pairs = [Pair("a", "temporal", "yes", "No.", "no", "No.")]
    assert bias_stats(pairs)["hallucination_score"] is None


def test_file_names_give_the_subtask():
    assert subtask_of(Path("obj_rel_VideoChatGPT.json")) == "obj_rel"
    assert subtask_of(Path("factdet_Gemini-1.5-pro.json")) == "factdet"
    assert subtask_of(Path("fact_LLaVA.json")) == "fact"
    assert subtask_of(Path("mine.json")) == "mine"


def test_summary_lines_name_the_subtasks_and_bias():
    lines = summary_lines(score("videohallucer", FIXTURE, options=ScoreOptions(n_resamples=10)))
    text = "\n".join(lines)
    assert "temporal" in text and "fact score" in text and "false-positive ratio 0.3333" in text


def test_bad_files_name_file_and_field(tmp_path):
    bad = tmp_path / "temporal_m.json"
    bad.write_text(json.dumps([{"basic": {"answer": "yes", "predict": "Yes"}, "hallucination": {"answer": "no"}}]))
    with pytest.raises(DataError, match=r"temporal_m.json.*hallucination.predict"):
        read_predictions(bad)
    empty = tmp_path / "obj_rel_m.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="no question pairs"):
        read_predictions(empty)
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("obj_rel_a.json", "obj_rel_b.json"):
        (folder / name).write_text((FIXTURE / "obj_rel_TinyVideo.json").read_text())
    with pytest.raises(DataError, match="several prediction files"):
        read_predictions(folder)
