"""MMMU: the two rules for answers naming no option, open questions, MMMU's output folder as shipped, the CLI.

Reference: MMMU-Benchmark/MMMU ``eval/eval_utils.py`` (``parse_multi_choice_response``, ``parse_open_response``,
``eval_open``; ``random.seed(42)`` at import) driven by ``eval/main_parse_and_eval.py --subject ALL``. The
expected values below are what that code gives on these inputs (run once, outside this repository).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from mmalign.errors import ConfigError, DataError
from mmalign.eval.metrics.multiple_choice import mc_metrics
from mmalign.eval.metrics.open_answer import numbers_in, open_candidates, open_correct
from mmalign.eval.scoring.score import ScoreOptions, score

QWEN_VL = Path(__file__).resolve().parents[4] / "shared" / "data" / "mmmu" / "qwen_vl"
"""MMMU's example outputs of Qwen-VL (bb0b95a ``mmmu/example_outputs/qwen_vl/``): 900 questions, 847 multiple
choice (48 of whose responses name no option), 53 open."""
ABCD = ["red", "blue", "green", "yellow"]


# ------------------------------------------------------------------------------------- MMMU's own outputs


def test_default_rule_on_mmmu_outputs():
    m = score("mc", QWEN_VL, options=ScoreOptions(n_resamples=20))["metrics"]
    assert (m["n"], m["n_unparsed"], m["n_correct"]) == (847, 48, 303)  # 303/847 = 0.358: unparsed are wrong
    assert round(m["accuracy"], 3) == 0.358
    assert (m["unparsed_rule"], m["random_seed"]) == ("wrong", None)
    every = m["all_questions"]
    assert (every["n"], every["n_open"], every["n_open_correct"], every["n_correct"]) == (900, 53, 6, 309)


def test_mmmu_rule_gives_mmmu_figures():
    # MMMU's main_parse_and_eval.py --subject ALL then print_results.py on this folder: multiple choice
    # 319/847 = 0.377 (its 48 random letters hit 16 times), "Overall" 325/900 = 0.361 with the 6 open ones
    report = score("mc", QWEN_VL, options=ScoreOptions(n_resamples=20, mc_random_seed=42))
    m = report["metrics"]
    assert (m["n_correct"], round(m["accuracy"], 3)) == (319, 0.377)
    assert (m["unparsed_rule"], m["random_seed"]) == ("random", 42)
    assert (m["all_questions"]["n_correct"], round(m["all_questions"]["accuracy"], 3)) == (325, 0.361)
    assert report["intervals"]["all_question_accuracy"]["estimate"] == pytest.approx(325 / 900)
    assert report["intervals"]["accuracy"]["estimate"] == pytest.approx(319 / 847)
    drawn = [d for d in report["items"] if "random_choice" in d]
    assert len(drawn) == 48 and all(d["parsed"] is None for d in drawn)
    other = score("mc", QWEN_VL, options=ScoreOptions(n_resamples=20, mc_random_seed=0))["metrics"]
    assert other["n_correct"] != 319  # another seed, another number: why the draw is not the default


# ---------------------------------------------------------------------------------- unparsed, by hand


def test_unparsed_answers_under_both_rules():
    responses = ["no idea", "(B)", "I cannot tell", "maybe"]
    options = [ABCD, ABCD, ["yes", "no"], ABCD]
    answers = ["A", "B", "B", "C"]
    wrong = mc_metrics(responses, options, answers)
    assert (wrong.n_correct, wrong.n_unparsed, wrong.predictions) == (1, 3, [None, "B", None, None])
    # MMMU: random.seed(42), then random.choice(all_choices) for each unparsed answer in turn; the parsed "(B)"
    # draws nothing. random.seed(42): choice("ABCD") = "A", choice("AB") = "A", choice("ABCD") = "C"
    random.seed(42)
    assert [random.choice("ABCD"), random.choice("AB"), random.choice("ABCD")] == ["A", "A", "C"]
    seeded = mc_metrics(responses, options, answers, random_seed=42)
    assert seeded.predictions == ["A", "B", "A", "C"] and seeded.parsed == [None, "B", None, None]
    assert (seeded.n_correct, seeded.n_unparsed) == (3, 3)  # A right, B right, A wrong (B), C right


def test_seed_is_recorded_and_only_for_mc(tmp_path):
    records = [
        {
            "id": "validation_Art_1",
            "question_type": "multiple-choice",
            "answer": "A",
            "all_choices": list("ABCD"),
            "index2ans": dict(zip("ABCD", ABCD, strict=True)),
            "response": "no idea",
        },
        {"id": "validation_Art_2", "question_type": "short-answer", "answer": "4", "response": "It is 4."},
    ]
    path = tmp_path / "output.json"
    path.write_text(json.dumps(records))
    plain = score("mc", path, options=ScoreOptions(n_resamples=10))
    assert plain["metrics"]["n_correct"] == 0 and "random_choice" not in plain["items"][0]
    seeded = score("mc", path, options=ScoreOptions(n_resamples=10, mc_random_seed=42))
    assert seeded["items"][0]["random_choice"] == "A" and seeded["metrics"]["n_correct"] == 1
    assert seeded["metrics"]["all_questions"]["n_correct"] == 2  # "It is 4" -> tail "4" -> 4.0 = 4.0
    with pytest.raises(ConfigError, match="--mc-random-seed has no meaning for --task pope"):
        score("pope", path, options=ScoreOptions(mc_random_seed=42))


# --------------------------------------------------------------------------------------- open questions


@pytest.mark.parametrize(
    ("answer", "response", "right"),
    [
        ("1.06", "The deflection is 1.06 in.", True),  # tail after "is ": "1.06 in", and its number 1.06
        ("1000", "The total is $1,000.", True),  # commas group thousands
        ("0.5", "x = .50", True),  # "=" counts in the last line; numbers compare as floats
        ("12.97", "so the mass is 12.973 g", True),  # both rounded to 2 decimals
        ("0.0015", "the rate is 1.5e-3", True),  # ... so 0.0015 and 0.0 are the same number
        ("-120", "the phase is -120 degrees", True),
        ("3", "Two.", False),  # no number, and "two" is not "3"
        ("9.20", "$11.55", False),
        ("A", "A", True),  # one character: " a" or "a " must occur in the text
        ("A", "Point A shows the force.", True),
        (["Tampa", "Florida"], "The city is Tampa, Florida", True),  # any accepted answer, inside the tail
        ("embryonic", "12-20 weeks", False),
        ("2", "The answer is 2 and so on", False),  # the shortest tail wins: "on" (after "so ")
        ("7", "The result is 5. So the answer is 7", True),  # lower-cased first: no sentence cut, tail "7"
        ("5", "The result is 5. So the answer is 7", False),
        ("5", "x is 5\nso y is 7", True),  # a tail per line: "5" and "7"
        ("5", "it is 5 so \nthat was it", True),  # "so " leaves "", which gives way to "5 so" (after "is ")
    ],
)
def test_open_answers_as_mmmu(answer, response, right):
    assert open_correct(answer, response) is right


def test_open_candidates_and_numbers():
    assert set(open_candidates("The total is $1,000.")) == {"$1,000", 1000.0, 0.0}  # "000" read alone too
    assert open_candidates("A") == [" a", "a "]
    assert open_candidates("Two.") == ["two"]
    assert numbers_in("1.5e-3 and -0.25 and .5") == ["1.5e-3", "1", "-3", "-0.25", ".5"]
    assert numbers_in("x = 12, y = 3.5") == ["3.5"]  # a number before a comma is taken for a thousands group


# ------------------------------------------------------------------------------- MMMU's output folder


def _copy_subjects(tmp_path: Path, subjects: tuple[str, ...]) -> tuple[Path, list[dict]]:
    root = tmp_path / "qwen_vl"
    records = []
    for subject in subjects:
        shutil.copytree(QWEN_VL / subject, root / subject)
        records += json.loads((QWEN_VL / subject / "output.json").read_text())
    return root, records


def test_folder_with_total_file_is_read_once(tmp_path):
    root, records = _copy_subjects(tmp_path, ("Art", "Chemistry"))
    # total_val_output.json as MMMU ships it beside the subjects (eval/README.md, "Evaluation Only"): id -> the
    # final letter of a multiple-choice question, or the response string of an open one
    total = {r["id"]: ("B" if r["question_type"] == "multiple-choice" else r["response"]) for r in records}
    (root / "total_val_output.json").write_text(json.dumps(total))
    (root / "Art" / "result.json").write_text(json.dumps({"acc": 0.3, "num_example": 30}))
    (root / "Art" / "parsed_output.json").write_text(json.dumps(records[:30]))  # main_parse_and_eval.py writes it
    m = score("mc", root, options=ScoreOptions(n_resamples=10))["metrics"]
    n_choice = sum(r["question_type"] == "multiple-choice" for r in records)
    assert (m["n"], m["all_questions"]["n"]) == (n_choice, len(records))


def test_total_file_alone_is_a_clear_error(tmp_path):
    root = tmp_path / "qwen_vl"
    root.mkdir()
    (root / "total_val_output.json").write_text(json.dumps({"validation_Art_1": "B"}))
    for path in (root, root / "total_val_output.json"):
        with pytest.raises(DataError, match=r"total_val_output\.json holds only final predictions keyed by id"):
            score("mc", path)


def test_an_id_twice_is_an_error(tmp_path):
    root, _ = _copy_subjects(tmp_path, ("Art",))
    shutil.copytree(root / "Art", root / "Art copy")
    with pytest.raises(DataError, match=r"Art copy/output.json, record 0 \(id 'validation_Art_1'\), field 'id'"):
        score("mc", root)


def test_bad_all_choices_names_the_record(tmp_path):
    record = {
        "id": "validation_Art_9",
        "question_type": "multiple-choice",
        "answer": "A",
        "all_choices": ["A", "C"],
        "index2ans": {"A": "x", "B": "y"},
        "response": "A",
    }
    path = tmp_path / "output.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(DataError, match=r"record 0 \(id 'validation_Art_9'\), field 'all_choices'"):
        score("mc", path)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_mc_random_seed(cli_run, tmp_path):
    out = tmp_path / "report.json"
    args = ["eval", "score", "--task", "mc", "--answers", str(QWEN_VL), "--bootstrap", "20"]
    code, stdout, _ = cli_run([*args, "--mc-random-seed", "42", "--json", str(out)])
    assert code == 0
    assert "a random letter, seed 42" in stdout and "every question 325/900" in stdout
    metrics = json.loads(out.read_text())["metrics"]
    assert (metrics["unparsed_rule"], metrics["random_seed"], metrics["n_correct"]) == ("random", 42, 319)
    code, stdout, _ = cli_run(args)
    assert code == 0 and "wrong (MMMU's rule: --mc-random-seed 42)" in stdout and "0.3577" in stdout
    code, _, err = cli_run(["eval", "score", "--task", "mme", "--answers", str(QWEN_VL), "--mc-random-seed", "1"])
    assert code == 2 and "--mc-random-seed has no meaning for --task mme" in err
