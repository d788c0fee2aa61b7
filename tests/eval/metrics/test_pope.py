"""POPE: the official and strict answer parsers, metrics worked out by hand, and the official files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.errors import ConfigError, DataError
from mmalign.eval.metrics import pope
from mmalign.eval.metrics.pope import binary_metrics, official_yes_no, pope_metrics, strict_yes_no
from mmalign.eval.scoring.score import ScoreOptions, score, summary_lines

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "pope"
ADVERSARIAL = SHARED / "sample_coco_pope_adversarial.jsonl"


@pytest.mark.parametrize(
    ("text", "official", "strict"),
    [
        ("Yes", "yes", "yes"),
        ("No, there is not.", "no", "no"),
        ("There is a dog.", "yes", None),
        ("There is no dog in the image.", "no", None),
        ("", "yes", None),  # empty: the official script says yes
        ("NO", "yes", "no"),  # case matters to the official rule
        ("No!", "yes", "no"),  # "No!" is not the word "No"
        ("Not at all", "yes", None),  # "Not" is not "not"
        ("I do not see one", "no", None),
        ("Nobody knows", "yes", None),
        ("The eyes of the cat.", "yes", None),  # "yes" inside a word
        ("Yesterday I saw one", "yes", None),
        ("Yes. But no cat.", "yes", "yes"),  # only the first sentence counts
        ("It is 3.5 no", "yes", None),  # the first "." cuts the sentence at "3"
        ("no, it is not", "no", "no"),
        ("  yes, a dog", "yes", "yes"),
    ],
)
def test_parsers(text, official, strict):
    assert official_yes_no(text) == official
    assert strict_yes_no(text) == strict


def test_binary_metrics_by_hand():
    # labels y y y n n n; predictions y n y y n None
    # TP=2 (0,2) FN=1 (1) FP=1 (3) TN=1 (4) unparsed=1 (5, label no)
    # acc = 3/6, precision = 2/3, recall = 2/3, F1 = 2/3, yes-ratio = 3/6
    r = binary_metrics(["yes", "no", "yes", "yes", "no", None], ["yes", "yes", "yes", "no", "no", "no"])
    assert (r.tp, r.fn, r.fp, r.tn, r.unparsed) == (2, 1, 1, 1, 1)
    assert r.accuracy == pytest.approx(0.5)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3) and r.f1 == pytest.approx(2 / 3)
    assert r.yes_ratio == pytest.approx(0.5)


def test_yes_ratio_comes_from_predictions_not_labels():
    r = binary_metrics(["yes"] * 4, ["yes", "yes", "no", "no"])
    assert r.yes_ratio == 1.0  # labels are balanced; a label-based yes-ratio would say 0.5
    assert (r.precision, r.recall, r.accuracy) == (0.5, 1.0, 0.5)
    assert binary_metrics(["no", "no"], ["yes", "no"]).f1 == 0.0  # no positive predictions: 0, not a crash


def test_disagreement_between_parsers():
    answers = ["Yes", "There is a dog.", "No", "NO"]
    r = pope_metrics(answers, ["yes", "yes", "no", "no"], ids=["a", "b", "c", "d"])
    # official: yes yes no yes; strict: yes None no no -> differ on b and d
    assert r.disagreements == 2 and r.disagreement_ids == ["b", "d"]
    assert r.result.accuracy == pytest.approx(3 / 4)  # official: d wrong
    assert r.other.accuracy == pytest.approx(3 / 4)  # strict: b unparsed (wrong)
    strict = pope_metrics(answers, ["yes", "yes", "no", "no"], strict=True)
    assert strict.parser == "strict" and strict.result.unparsed == 1 and strict.result.recall == pytest.approx(1 / 2)


def _answers(tmp_path: Path, texts: dict[int, str], key: str = "text") -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"question_id": q, key: t}) + "\n" for q, t in texts.items()))
    return path


def test_score_official_files(tmp_path):
    questions = [json.loads(line) for line in ADVERSARIAL.read_text().splitlines()]
    labels = {q["question_id"]: q["label"] for q in questions}
    assert sorted(labels.values()).count("yes") == 10
    # every "yes" question answered "Yes, there is.", every "no" question "No, there is not.", except
    # question 2 (label no) answered "There is a backpack." -> one false positive
    texts = {q: ("Yes, there is." if lab == "yes" else "No, there is not.") for q, lab in labels.items()}
    texts[2] = "There is a backpack."
    report = score("pope", _answers(tmp_path, dict(reversed(list(texts.items())))), questions=ADVERSARIAL)
    m = report["metrics"]
    assert m["split"] == "adversarial"
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (10, 1, 9, 0)
    assert m["accuracy"] == pytest.approx(19 / 20) and m["yes_ratio"] == pytest.approx(11 / 20)
    assert m["precision"] == pytest.approx(10 / 11) and m["f1"] == pytest.approx(2 * (10 / 11) / (1 + 10 / 11))
    assert m["parser_disagreements"] == 1 and m["strict_parser"]["unparsed"] == 1
    iv = report["intervals"]["accuracy"]
    assert iv["low"] <= 0.95 <= iv["high"] and iv["n"] == 20


def test_official_answer_key_and_order_matching(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"answer": "yes"}) + "\n" for _ in range(20)))
    m = score("pope", path, questions=ADVERSARIAL)["metrics"]
    assert m["accuracy"] == 0.5 and m["yes_ratio"] == 1.0


def test_strict_option(tmp_path):
    texts = {q: "There is one." for q in range(1, 21)}
    m = score("pope", _answers(tmp_path, texts), questions=ADVERSARIAL, options=ScoreOptions(strict=True))["metrics"]
    assert m["parser"] == "strict" and m["unparsed"] == 20 and m["accuracy"] == 0.0 and m["yes_ratio"] == 0.0
    assert m["official_parser"]["yes_ratio"] == 1.0


def test_baseline_delta(tmp_path):
    good = _answers(tmp_path, {q: "yes" for q in range(1, 21)})
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps({"question_id": q, "text": "no"}) + "\n" for q in range(1, 21)))
    d = score("pope", good, questions=ADVERSARIAL, baseline=base, options=ScoreOptions(n_resamples=200))["deltas"]
    assert d["yes_ratio"]["delta"] == 1.0 and d["yes_ratio"]["low"] == 1.0
    assert d["accuracy"]["delta"] == 0.0  # 10/20 both ways


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            '{"question_id": 1, "text": "yes"}\n{"question_id": 1, "text": "no"}\n',
            "line 2 (id '1'), field 'question_id': second answer",
        ),
        ('{"question_id": 99, "text": "yes"}\n', "not in the questions file"),
        ('{"question_id": 1, "text": "yes"\n', "line 1: not valid JSON"),
        ('{"question_id": 1, "reply": "yes"}\n', "field 'text': missing"),
        ('{"question_id": 1, "text": 3}\n', "field 'text': must be str"),
        ('{"text": "yes"}\n', "1 answers for 20 questions"),
    ],
)
def test_bad_answer_files(tmp_path, answers, message):
    path = tmp_path / "answers.jsonl"
    path.write_text(answers)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score("pope", path, questions=ADVERSARIAL)


def test_bad_question_file(tmp_path):
    q = tmp_path / "coco_pope_random.jsonl"
    q.write_text('{"question_id": 1, "image": "x.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    a = _answers(tmp_path, {1: "yes"})
    with pytest.raises(DataError, match=r"coco_pope_random.jsonl, line 1 \(id '1'\), field 'label'"):
        score("pope", a, questions=q)
    with pytest.raises(ConfigError, match="unknown task 'popee'"):
        score("popee", a, questions=q)
    with pytest.raises(ConfigError, match="needs --questions"):
        score("pope", a)


def test_answer_writer_round_trip(tmp_path):
    from mmalign.eval.metrics.official import write_pope_answers

    path = tmp_path / "out" / "answers.jsonl"
    assert write_pope_answers(path, [(str(q), "No") for q in range(20, 0, -1)]) == 20
    m = score("pope", path, questions=ADVERSARIAL)["metrics"]
    assert (m["tn"], m["fn"], m["yes_ratio"]) == (10, 10, 0.0)


# Edge cases against the official evaluate.py (RUCAIBox/POPE): it reads `answer`, pairs the two files line by
# line, counts every label other than exactly "no" as yes, and divides without checks.


@pytest.mark.parametrize("label", ["No", "no ", "YES", "maybe"])
def test_label_other_than_exactly_yes_or_no_is_refused(tmp_path, label):
    # the official script would count each of these as a positive ("No" included); we refuse the file instead
    rows = [json.loads(line) for line in ADVERSARIAL.read_text().splitlines()]
    rows[3]["label"] = label
    q = tmp_path / "coco_pope_adversarial.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"line 4 \(id '4'\), field 'label': label must be 'yes' or 'no' exactly"):
        score("pope", _answers(tmp_path, {q: "yes" for q in range(1, 21)}), questions=q)


def test_answers_in_another_order_are_matched_by_id_with_a_warning(tmp_path):
    rows = [json.loads(line) for line in ADVERSARIAL.read_text().splitlines()]
    labels = {row["question_id"]: row["label"] for row in rows}
    # every answer right, written in reverse order: by id, accuracy 1; the official line-by-line pairing
    # pairs answer 20 with question 1 and so on
    texts = {q: labels[q] for q in reversed(range(1, 21))}
    report = score("pope", _answers(tmp_path, texts), questions=ADVERSARIAL)
    m = report["metrics"]
    assert m["accuracy"] == 1.0
    assert len(m["warnings"]) == 1 and "not in the questions file's order (20 of 20 lines differ" in m["warnings"][0]
    assert "line 1, answers question_id '20' where the questions file has '1'" in m["warnings"][0]
    reversed_labels = [labels[q] for q in reversed(range(1, 21))]
    expected = sum(a == b for a, b in zip(reversed_labels, [labels[q] for q in range(1, 21)], strict=True)) / 20
    assert m["line_order"]["accuracy"] == pytest.approx(expected)
    assert any(line.startswith("  warning: ") for line in summary_lines(report))


def test_answers_in_question_order_have_no_warning(tmp_path):
    m = score("pope", _answers(tmp_path, {q: "Yes" for q in range(1, 21)}), questions=ADVERSARIAL)["metrics"]
    assert "warnings" not in m and "line_order" not in m


def test_text_read_before_answer_with_a_warning(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = [{"question_id": q, "text": "No", "answer": "No"} for q in range(1, 21)]
    rows[4]["answer"] = "Yes"  # line 5: the official script would read "Yes"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = score("pope", path, questions=ADVERSARIAL)["metrics"]
    assert m["fn"] == 10 and m["tp"] == 0  # "text" was read: every answer is no
    assert any("1 line(s) hold different 'text' and 'answer' strings (first: line 5)" in w for w in m["warnings"])


def test_no_yes_answer_scores_zero_where_the_official_script_crashes(tmp_path):
    # all "No": TP = FP = 0, so the official script's precision = 0 / 0 raises ZeroDivisionError; we report 0.0
    m = score("pope", _answers(tmp_path, {q: "No" for q in range(1, 21)}), questions=ADVERSARIAL)["metrics"]
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.0, 0.0, 0.0, 0.5)
    assert m["warnings"] == [
        "the official evaluate.py would stop with ZeroDivisionError: no answer reads as yes (precision divides by "
        "TP + FP = 0); those rates are reported as 0.0 here"
    ]


@pytest.mark.parametrize(
    ("preds", "labels", "reason"),
    [
        ([], [], "no answers"),
        (["no", "no"], ["yes", "no"], "no answer reads as yes"),
        (["yes", "no"], ["no", "no"], "no label is yes"),
        (["yes", "no"], ["no", "yes"], "no true positive"),  # P = R = 0: F1 = 0 / 0
        (["yes", "no"], ["yes", "no"], None),
    ],
)
def test_official_script_stops(preds, labels, reason):
    stops = pope.official_script_stops(binary_metrics(preds, labels))
    assert (stops is None) if reason is None else stops.startswith(reason)
