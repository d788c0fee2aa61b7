"""The three reward-model benchmarks score their official files exactly as their official code does.

``fixtures/rewardbench/*/expected.json`` were printed by the official aggregation scripts themselves on the
fixture files (see ``fixtures/rewardbench/SOURCES.md``); every number here is compared exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmalign.errors import DataError
from mmalign.eval.metrics.bootstrap import bootstrap_interval
from mmalign.eval.metrics.reward import RewardPair, reward_accuracy
from mmalign.eval.scoring.rewardbench_mmrlhf import read_mm_rlhf_rewardbench, score_mm_rlhf_rewardbench
from mmalign.eval.scoring.rewardbench_multimodal import judge_pick, official_category, score_multimodal_rewardbench
from mmalign.eval.scoring.rewardbench_vl import (
    id_dataset,
    judge_verdict,
    read_vl_rewardbench,
    score_vl_rewardbench,
    vl_rewardbench_score,
    vl_rewardbench_sweep,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rewardbench"
VL, MRB, MMRLHF = FIXTURES / "vl_rewardbench", FIXTURES / "multimodal_rewardbench", FIXTURES / "mm_rlhf_rewardbench"


def _expected(folder: Path) -> dict:
    return json.loads((folder / "expected.json").read_text())


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ VL-RewardBench

VERDICT_NAMES = {"agree": "agree", "reject": "reject", "unparsed": "doesntMatch", "split": "other"}


def _vl_matches(metrics: dict, official: dict) -> None:
    assert metrics["accuracy"] == official["accuracy"]
    assert metrics["macro_accuracy"] == official["macro_accuracy"]
    for name, cat in official["categories"].items():
        assert (metrics["categories"][name]["correct"], metrics["categories"][name]["total"]) == (
            cat["correct"],
            cat["total"],
        )
    counts = {VERDICT_NAMES[v]: metrics[v] for v in VERDICT_NAMES if metrics[v]}
    assert counts == official["verdicts"]


@pytest.mark.parametrize("name", ["judgements.jsonl", "judgements_hf.jsonl"])
def test_vl_rewardbench_equals_cal_py_every_sample(name):
    score = score_vl_rewardbench(VL / name)
    official = _expected(VL)[name]["all_samples"]
    _vl_matches(score.metrics, official)
    # 8 items: general 1/1, hallucination 2/3 (a 1-1 split and an all-unparsed item left out), reasoning 0/1
    # (a 2-1-1 item left out): overall 3/5, macro (0 + 2/3 + 1) / 3
    assert (score.metrics["n_items"], score.metrics["n_samples"], score.metrics["counted"]) == (8, 18, 5)
    assert score.metrics["accuracy"] == 3 / 5
    assert score.metrics["macro_accuracy"] == (0 + 2 / 3 + 1) / 3
    assert {name: f(score.columns) for name, f in score.headline.items()} == {
        "accuracy": score.metrics["accuracy"],
        "macro_accuracy": score.metrics["macro_accuracy"],
    }


@pytest.mark.parametrize("name", ["judgements.jsonl", "judgements_hf.jsonl"])
def test_vl_rewardbench_sweep_equals_cal_py_main(name):
    # cal.py's main: one seed, k = 1, 3, 5, 7, 9 in turn, each shuffling the file again (k = 1 and 3 differ)
    sweep = vl_rewardbench_sweep(read_vl_rewardbench(VL / name))
    official = _expected(VL)[name]["sweep"]
    assert list(sweep) == [1, 3, 5, 7, 9]
    for k, score in sweep.items():
        _vl_matches(score.metrics, official[str(k)])
    assert sweep[1].metrics["accuracy"] != sweep[9].metrics["accuracy"]


def test_vl_rewardbench_wrapped_rows_read_as_cal_py_reads_them(tmp_path):
    rows = [{"0": row} for row in _rows(VL / "judgements.jsonl")]
    score = score_vl_rewardbench(_write(tmp_path / "wrapped.jsonl", rows))
    _vl_matches(score.metrics, _expected(VL)["judgements.jsonl"]["all_samples"])


def test_vl_ranking_may_carry_the_datasets_name(tmp_path):
    rows = [
        {("human_ranking" if k == "ranking" else k): v for k, v in row.items()}
        for row in _rows(VL / "judgements.jsonl")[:5]
    ]
    assert [s.verdict for s in read_vl_rewardbench(_write(tmp_path / "hr.jsonl", rows))] == [
        s.verdict for s in read_vl_rewardbench(VL / "judgements.jsonl")[:5]
    ]


def test_vl_judge_verdict_conventions():
    # ranking [0, 1]: response[0] is better; shown in order (0) the rejected answer is "Answer 2"
    assert judge_verdict("Overall Judgment: Answer 1 is better.", [0, 1], 0) == "agree"
    assert judge_verdict("Overall Judgment: Answer 2 is better.", [0, 1], 0) == "reject"
    # swapped (1): the rejected answer is shown first
    assert judge_verdict("Overall Judgment: Answer 1 is better.", [0, 1], 1) == "reject"
    assert judge_verdict("**Overall Judgment**: **Answer 2** is slightly better", [0, 1], 1) == "agree"
    assert judge_verdict("Therefore,\nAnswer 1 is the better one", [1, 0], 0) == "reject"
    # greedy: the last "Answer N is better" after the first cue; any N but the rejected one agrees
    assert judge_verdict("Overall Judgment: Answer 2 is better here, but Answer 1 is better", [0, 1], 0) == "agree"
    assert judge_verdict("Overall Judgment: Answer 3 is better", [0, 1], 0) == "agree"
    assert judge_verdict("Answer 1 is better.", [0, 1], 0) == "unparsed"
    assert judge_verdict("Therefore, the first answer wins.", [0, 1], 0) == "unparsed"


def test_vl_datasets_from_ids():
    assert id_dataset("RLAIF-V-14") == "rlaif-v"
    assert id_dataset("RLHF-V-3") == "rlhf-v"
    assert id_dataset("mathverse_3414") == id_dataset("mmmu_pro_test_Energy_and_Power_312") == "reasoning_tasks"
    assert id_dataset("wildvision-battle_12") == "wildvision-battle"
    assert id_dataset("LRVInstruction-000000007746") == id_dataset("VLFeedback_9") == "vlfeedback"
    # eb00f28 would send these to vlfeedback (general); its later fix meant povid (see id_dataset)
    assert id_dataset("povid_12") == id_dataset("hallucination_pair_7") == "povid"


def test_vl_reward_rows_count_a_tie_as_wrong(tmp_path):
    base = {"query": "q", "response": ["first", "second"]}
    rows = [
        {**base, "id": "RLAIF-V-1", "rewards": [2.0, 1.0]},  # [chosen, rejected]: right
        {**base, "id": "RLAIF-V-2", "rewards": [1.0, 2.0]},  # wrong
        {**base, "id": "RLAIF-V-3", "rewards": [1.5, 1.5]},  # tie: wrong
        {**base, "id": "mathverse_1", "rewards": [0.5, -1]},  # right
        {**base, "id": "wildvision_1", "ranking": [0, 1], "rewards": [3, 2]},  # right (ranking not read)
    ]
    score = score_vl_rewardbench(_write(tmp_path / "rm.jsonl", rows))
    cats = {c: (v["correct"], v["total"]) for c, v in score.metrics["categories"].items()}
    assert cats == {"reasoning": (1, 1), "hallucination": (1, 3), "general": (1, 1)}
    assert score.metrics["accuracy"] == 3 / 5
    assert score.metrics["macro_accuracy"] == (1 + 1 / 3 + 1) / 3


def test_vl_macro_over_the_categories_present(tmp_path):
    rows = [{"id": "RLAIF-V-1", "query": "q", "response": ["a", "b"], "rewards": [1, 0]}]
    score = score_vl_rewardbench(_write(tmp_path / "one.jsonl", rows))
    assert score.metrics["macro_categories"] == ["hallucination"]
    assert score.metrics["macro_accuracy"] == 1.0
    with pytest.raises(ValueError, match="k must be"):
        vl_rewardbench_score(read_vl_rewardbench(tmp_path / "one.jsonl"), k=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": 7}, "field 'id': must be a string"),
        ({"response": ["only one"]}, "field 'response': must be a list of two answers"),
        ({"ranking": [0, 0]}, "field 'ranking': must be [0, 1] or [1, 0]"),
        ({"meta": {"random_number": 0}}, "field 'meta.filter_choice'"),
        ({"meta": {"filter_choice": "x", "random_number": 2}}, "field 'meta.random_number': must be 0 or 1"),
        ({"image_path": "images/coco/1.jpg"}, "field 'image_path': expected images/<dataset>/"),
        ({"rewards": [1, "high"]}, "field 'rewards'"),
    ],
)
def test_vl_bad_rows_name_file_line_and_field(tmp_path, change, message):
    row = {**_rows(VL / "judgements.jsonl")[0], **change}
    if "rewards" in change:
        del row["meta"]
    path = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataError) as err:
        read_vl_rewardbench(path)
    assert str(err.value).startswith(f"{path}, line 1")
    assert message in str(err.value)


def test_vl_bad_json_and_wrapping(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"0": null}\n{"id": "x"}\n')
    with pytest.raises(DataError, match="line 2: the first row wraps"):
        read_vl_rewardbench(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        read_vl_rewardbench(path)
    with pytest.raises(DataError, match="file not found"):
        read_vl_rewardbench(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------------- Multimodal RewardBench


def test_multimodal_rewardbench_equals_get_accuracy(tmp_path):
    official = _expected(MRB)
    score = score_multimodal_rewardbench(MRB / "answers.jsonl")
    assert score.metrics["accuracy"] == official["file_order"]["all"]["accuracy"] == 11 / 16
    assert score.metrics["categories"] == {k: v for k, v in official["file_order"].items() if k != "all"}
    assert score.metrics["unparsed"] == 6
    # the coin follows file order: reversed, the same lines score otherwise per category
    lines = (MRB / "answers.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "reversed.jsonl").write_text("".join(reversed(lines)))
    reversed_score = score_multimodal_rewardbench(tmp_path / "reversed.jsonl")
    assert reversed_score.metrics["categories"] == {k: v for k, v in official["reversed"].items() if k != "all"}
    assert reversed_score.metrics["categories"]["vqa"] != score.metrics["categories"]["vqa"]
    assert score.headline["accuracy"](score.columns) == 11 / 16


def test_multimodal_verdicts_and_categories():
    rng = random.Random(123)
    assert judge_pick("[[B]] then [[A]]", rng) == ("A", False)
    assert judge_pick("Final verdict: [[B]]", rng) == ("B", False)
    # no verdict: random.seed(123)'s first draw is 0.052 < 0.5, so A; [[b]] is not a verdict
    assert judge_pick("[[b]]", random.Random(123)) == ("A", True)
    assert official_category("safety", "PAIRS_status_3") == "safety/bias"
    assert official_category("safety", "hateful_memes_9") == "safety/toxicity"
    assert official_category("reasoning", "MathVista_91") == "reasoning/math"
    assert official_category("reasoning", "EMMA-Coding_5") == "reasoning/coding"
    assert official_category("vqa", "pairs_1") == "vqa"


def test_multimodal_reward_rows_count_a_tie_as_wrong(tmp_path):
    rows = [
        {"ID": "mathvista_1", "Category": "reasoning", "rewards": [1.0, 0.0]},
        {"ID": "EMMA-Coding_1", "Meta": {"Category": "reasoning"}, "rewards": [0.5, 0.5]},
        {"ID": "pairs_1", "Category": "safety", "rewards": [-1, 2]},
        {"ID": "mmmu-v_1", "Category": "knowledge", "rewards": [3, 2]},
    ]
    score = score_multimodal_rewardbench(_write(tmp_path / "rm.jsonl", rows))
    assert score.metrics["accuracy"] == 2 / 4
    assert (score.metrics["ties"], score.metrics["unparsed"]) == (1, 0)
    assert score.metrics["categories"]["reasoning/coding"] == {"correct": 0, "total": 1, "accuracy": 0.0}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"Label": "A", "output": "[[A]]", "Meta": {"Category": "vqa"}}, "field 'ID': missing"),
        ({"ID": "x", "Label": "A", "output": "[[A]]"}, "field 'Meta': missing"),
        (
            {"ID": "x", "Label": "a", "output": "[[A]]", "Meta": {"Category": "vqa"}},
            "field 'Label': must be 'A' or 'B'",
        ),
        ({"ID": "x", "Label": "A", "outputs": ["[[A]]"], "Meta": {"Category": "vqa"}}, "several samples"),
        ({"ID": "x", "Label": "A", "output": None, "Meta": {"Category": "vqa"}}, "field 'output': must be a string"),
        ({"ID": "x", "Meta": {"Category": 3}, "rewards": [1, 0]}, "field 'Meta.Category'"),
    ],
)
def test_multimodal_bad_rows(tmp_path, row, message):
    path = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataError, match="line 1") as err:
        score_multimodal_rewardbench(path)
    assert message in str(err.value)


# ------------------------------------------------------------------------------------- MM-RLHF-RewardBench


def test_mm_rlhf_rewardbench_equals_official_script():
    official = _expected(MMRLHF)
    score = score_mm_rlhf_rewardbench(MMRLHF / "results.jsonl")
    m = score.metrics
    assert (m["accuracy"], m["acc_plus"], m["pairs"]) == (
        official["overall"]["accuracy"],
        official["overall"]["acc_plus"],
        official["overall"]["total"],
    )
    for name, cat in official["categories"].items():
        assert (m["categories"][name]["accuracy"], m["categories"][name]["acc_plus"]) == (
            cat["accuracy"],
            cat["acc_plus"],
        )
        assert m["categories"][name]["pairs"] == cat["total"]
    # 15 of 19 pairs right (two ties wrong); 8 of 12 ids all right
    assert (m["correct"], m["ties"], m["ids_all_correct"], m["ids"]) == (15, 2, 8, 12)
    # the pair with an image under long/ and a video under mcq/ counts in long's pairs, in mcq's correct ones
    assert m["categories"]["mcq"]["accuracy"] == 5 / 5 and m["uncategorised"] == 1
    assert {name: f(score.columns) for name, f in score.headline.items()} == {
        "accuracy": m["accuracy"],
        "acc_plus": m["acc_plus"],
    }
    interval = bootstrap_interval(score.columns, score.headline["acc_plus"], n_resamples=200, seed=0)
    assert 0.0 <= interval.low <= m["acc_plus"] <= interval.high <= 1.0


def test_mm_rlhf_overall_equals_reward_accuracy_grouped_by_id():
    pairs = read_mm_rlhf_rewardbench(MMRLHF / "results.jsonl")
    ours = reward_accuracy([RewardPair(f"{p.id}@{p.line}", p.chosen, p.rejected, group=p.id) for p in pairs])
    score = score_mm_rlhf_rewardbench(MMRLHF / "results.jsonl")
    assert (ours["accuracy"], ours["acc_plus"]) == (score.metrics["accuracy"], score.metrics["acc_plus"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": "mcq/1.png", "rewards": [1, 0]}, "field 'id': missing"),
        ({"id": "a", "image": None, "rewards": [1, 0]}, "field 'image': must be a path"),
        ({"id": "a", "image": "mcq/1.png", "rewards": [1]}, "field 'rewards': must be a list of two rewards"),
        ({"id": "a", "image": "mcq/1.png", "rewards": [1, float("nan")]}, "field 'rewards': rewards must be numbers"),
        ({"id": "a", "image": "mcq/1.png"}, "field 'rewards'"),
    ],
)
def test_mm_rlhf_bad_rows(tmp_path, row, message):
    path = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataError, match="line 1") as err:
        score_mm_rlhf_rewardbench(path)
    assert message in str(err.value)


def test_empty_files_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    for score in (score_vl_rewardbench, score_multimodal_rewardbench, score_mm_rlhf_rewardbench):
        with pytest.raises(DataError, match="no predictions"):
            score(tmp_path / "empty.jsonl")
