"""The reward-model benchmarks through ``mmalign eval score``: the official numbers, the JSON report, one-line errors.

``fixtures/rewardbench/*/expected.json`` were printed by each benchmark's official aggregation script on the
fixture files (``fixtures/rewardbench/SOURCES.md``); every number is compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.cli.main import main

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "eval" / "fixtures" / "rewardbench"
VL, MRB, MMRLHF = FIXTURES / "vl_rewardbench", FIXTURES / "multimodal_rewardbench", FIXTURES / "mm_rlhf_rewardbench"
TASKS = ("vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench")
VERDICT_NAMES = {"agree": "agree", "reject": "reject", "unparsed": "doesntMatch", "split": "other"}


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def score(tmp_path: Path, task: str, answers: Path, *extra: str) -> dict:
    out = tmp_path / f"{task}.json"
    args = ["eval", "score", "--task", task, "--answers", str(answers), "--json", str(out), "--bootstrap", "50"]
    assert run([*args, *extra]) == 0
    return json.loads(out.read_text())


def _expected(folder: Path) -> dict:
    return json.loads((folder / "expected.json").read_text())


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _vl_matches(metrics: dict, official: dict) -> None:
    assert (metrics["accuracy"], metrics["macro_accuracy"]) == (official["accuracy"], official["macro_accuracy"])
    for name, cat in official["categories"].items():
        assert metrics["categories"][name]["correct"] == cat["correct"]
        assert metrics["categories"][name]["total"] == cat["total"]
    assert {VERDICT_NAMES[v]: metrics[v] for v in VERDICT_NAMES if metrics[v]} == official["verdicts"]


@pytest.mark.parametrize("name", ["judgements.jsonl", "judgements_hf.jsonl"])
def test_vl_rewardbench_gives_cal_py_numbers(tmp_path, capsys, name):
    report = score(tmp_path, "vl_rewardbench", VL / name)
    official = _expected(VL)[name]
    # every sample: 8 items, 5 counted: general 1/1, hallucination 2/3, reasoning 0/1; overall 3/5, macro 5/9
    _vl_matches(report["metrics"], official["all_samples"])
    assert report["metrics"]["accuracy"] == 3 / 5 and report["metrics"]["macro_accuracy"] == (0 + 2 / 3 + 1) / 3
    # cal.py's main (one seed, k = 1, 3, 5, 7, 9 in turn) is in the report as it prints it
    assert list(report["metrics"]["sweep"]) == ["1", "3", "5", "7", "9"]
    for k, row in report["metrics"]["sweep"].items():
        _vl_matches(row, official["sweep"][k])
    assert set(report["intervals"]) == {"accuracy", "macro_accuracy"}
    for metric, iv in report["intervals"].items():
        assert iv["estimate"] == report["metrics"][metric]
        assert iv["low"] <= iv["estimate"] <= iv["high"] and (iv["n"], iv["n_resamples"]) == (8, 50)
    assert (report["task"], report["answers"], report["questions"]) == ("vl_rewardbench", str(VL / name), None)
    assert len(report["items"]) == 8 and report["metrics"]["n_samples"] == 18
    printed = capsys.readouterr().out
    assert "accuracy                     0.6000" in printed and "macro_accuracy               0.5556" in printed
    assert "hallucination                0.6667  (2/3)" in printed
    assert "unparsed 1, split 2" in printed and "ties                         0" in printed
    assert "cal.py main accuracy         0.7143 0.6667 0.6000 0.6000 0.6000  (k = 1, 3, 5, 7, 9)" in printed


def test_vl_rewardbench_k_caps_samples_as_cal_py_first_k(tmp_path):
    # --k 1 shuffles with a fresh random.seed(1234): cal.py's first line (k = 1), not its later ones
    report = score(tmp_path, "vl_rewardbench", VL / "judgements.jsonl", "--k", "1")
    _vl_matches(report["metrics"], _expected(VL)["judgements.jsonl"]["sweep"]["1"])
    assert report["metrics"]["k"] == 1 and report["metrics"]["accuracy"] == 5 / 7


def test_multimodal_rewardbench_gives_get_accuracy_numbers(tmp_path, capsys):
    report = score(tmp_path, "multimodal_rewardbench", MRB / "answers.jsonl")
    official = _expected(MRB)["file_order"]
    assert report["metrics"]["categories"] == {k: v for k, v in official.items() if k != "all"}
    assert (report["metrics"]["accuracy"], report["metrics"]["correct"], report["metrics"]["n"]) == (11 / 16, 11, 16)
    assert official["all"] == {"correct": 11, "total": 16, "accuracy": 11 / 16}
    assert (report["metrics"]["unparsed"], report["metrics"]["ties"]) == (6, 0)
    assert list(report["intervals"]) == ["accuracy"] and report["intervals"]["accuracy"]["n"] == 16
    printed = capsys.readouterr().out
    assert "open_generation/correctness_task 0.5000  (1/2)" in printed
    assert "all                              0.6875  (11/16)" in printed and "unparsed                     6" in printed


def test_mm_rlhf_rewardbench_gives_official_numbers(tmp_path, capsys):
    report = score(tmp_path, "mm_rlhf_rewardbench", MMRLHF / "results.jsonl")
    official, m = _expected(MMRLHF), report["metrics"]
    assert (m["accuracy"], m["acc_plus"], m["pairs"]) == tuple(
        official["overall"][k] for k in ("accuracy", "acc_plus", "total")
    )
    for name, cat in official["categories"].items():
        row = m["categories"][name]
        assert (row["accuracy"], row["acc_plus"], row["pairs"]) == (cat["accuracy"], cat["acc_plus"], cat["total"])
    # 15 of 19 pairs right (the 2 ties wrong), 8 of 12 ids all right; the bootstrap resamples the 12 ids
    assert (m["correct"], m["ties"], m["ids_all_correct"], m["ids"]) == (15, 2, 8, 12)
    assert {k: iv["n"] for k, iv in report["intervals"].items()} == {"accuracy": 12, "acc_plus": 12}
    printed = capsys.readouterr().out
    assert "acc_plus                     0.6667" in printed
    assert "mcq                          accuracy 1.0000 (5/5 pairs), ACC+ 0.7500 (3/4 ids)" in printed
    assert "ties                         2" in printed


def test_reward_rows_score_in_all_three(tmp_path):
    base = {"query": "q", "response": ["better", "worse"]}
    vl = [
        {**base, "id": "RLAIF-V-1", "rewards": [2.0, 1.0]},  # right
        {**base, "id": "RLAIF-V-2", "rewards": [0.5, 0.5]},  # tie: wrong
        {**base, "id": "mathverse_1", "rewards": [-1, 0]},  # wrong
        {**base, "id": "wildvision_1", "rewards": [3, 2]},  # right
    ]
    m = score(tmp_path, "vl_rewardbench", _write(tmp_path / "vl.jsonl", vl))["metrics"]
    # overall 2/4; macro (reasoning 0/1 + hallucination 1/2 + general 1/1) / 3
    assert (m["accuracy"], m["macro_accuracy"], m["ties"], m["unparsed"]) == (2 / 4, (0 + 1 / 2 + 1) / 3, 1, 0)
    mrb = [
        {"ID": "mathvista_1", "Category": "reasoning", "rewards": [1, 0]},  # reasoning/math right
        {"ID": "pairs_1", "Meta": {"Category": "safety"}, "rewards": [0, 0]},  # safety/bias tie: wrong
        {"ID": "vqa_1", "Category": "vqa", "rewards": [0.2, 0.1]},  # right
    ]
    m = score(tmp_path, "multimodal_rewardbench", _write(tmp_path / "mrb.jsonl", mrb))["metrics"]
    assert (m["accuracy"], m["ties"], m["unparsed"]) == (2 / 3, 1, 0)
    assert m["categories"]["safety/bias"] == {"correct": 0, "total": 1, "accuracy": 0.0}
    rlhf = [
        {"id": 1, "image": "mcq/a.png", "rewards": [1, 0]},
        {"id": 1, "image": "mcq/a.png", "rewards": [1, 1]},  # tie: id 1 not all right
        {"id": 2, "image": "long/b.png", "rewards": [2, 1]},
    ]
    m = score(tmp_path, "mm_rlhf_rewardbench", _write(tmp_path / "rlhf.jsonl", rlhf))["metrics"]
    assert (m["accuracy"], m["acc_plus"], m["ties"]) == (2 / 3, 1 / 2, 1)


def test_baseline_gives_paired_deltas(tmp_path, capsys):
    rows = [{"id": f"p{i}", "image": "short/x.png", "rewards": [1, 0]} for i in range(4)]
    before = _write(tmp_path / "before.jsonl", [{**r, "rewards": [0, 1]} if i < 2 else r for i, r in enumerate(rows)])
    report = score(tmp_path, "mm_rlhf_rewardbench", _write(tmp_path / "after.jsonl", rows), "--baseline", str(before))
    # before 2/4 right, after 4/4: +0.5 on accuracy and on ACC+ (one pair an id)
    for name in ("accuracy", "acc_plus"):
        d = report["deltas"][name]
        assert (d["before"], d["after"], d["delta"]) == (0.5, 1.0, 0.5) and d["low"] <= 0.5 <= d["high"]
    assert report["baseline_metrics"]["correct"] == 2
    assert "Δ acc_plus" in capsys.readouterr().out


BAD = [
    ("vl_rewardbench", {"id": "RLAIF-V-1", "query": "q", "response": ["a"], "rewards": [1, 0]}, "field 'response'"),
    ("vl_rewardbench", {"id": "RLAIF-V-1", "query": "q", "response": ["a", "b"], "rewards": [1]}, "field 'rewards'"),
    ("multimodal_rewardbench", {"ID": "x", "Label": "C", "output": "[[A]]", "Meta": {"Category": "vqa"}}, "'Label'"),
    ("mm_rlhf_rewardbench", {"id": "a", "image": "mcq/1.png", "rewards": [1, "high"]}, "field 'rewards'"),
]


@pytest.mark.parametrize(("task", "row", "field"), BAD)
def test_bad_file_is_one_line_naming_file_line_and_field(tmp_path, capsys, task, row, field):
    good = {
        "vl_rewardbench": {"id": "RLAIF-V-0", "query": "q", "response": ["a", "b"], "rewards": [1, 0]},
        "multimodal_rewardbench": {"ID": "y", "Category": "vqa", "rewards": [1, 0]},
        "mm_rlhf_rewardbench": {"id": "b", "image": "mcq/0.png", "rewards": [1, 0]},
    }[task]
    path = _write(tmp_path / "bad.jsonl", [good, row])
    assert run(["eval", "score", "--task", task, "--answers", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}, line 2" in err and field in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "mme", "--k", "3"], "--k has no meaning for --task mme (vl_rewardbench only)"),
        (["--task", "vl_rewardbench", "--k", "0"], "--k must be at least 1, got 0"),
        (["--task", "mm_rlhf_rewardbench", "--ties", "half"], "--ties has no meaning for --task mm_rlhf_rewardbench"),
        (["--task", "multimodal_rewardbench", "--questions", "."], "reads no --questions"),
        (["--task", "vl_rewardbench", "--answers", "missing.jsonl"], "missing.jsonl: not found"),
        (["--task", "bleu"], "vl_rewardbench, multimodal_rewardbench, mm_rlhf_rewardbench"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    answers = MMRLHF / "results.jsonl"
    assert run(["eval", "score", "--answers", str(answers), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_null_rows_only_name_the_file(tmp_path, capsys):
    path = tmp_path / "nulls.jsonl"
    path.write_text("null\nnull\n")
    assert run(["eval", "score", "--task", "vl_rewardbench", "--answers", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: no predictions (every row is null)" in err and len(err.strip().splitlines()) == 1


def test_docs_and_help_list_the_tasks(capsys):
    docs = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert run(["eval", "score", "--help"]) == 0
    helptext = " ".join(capsys.readouterr().out.split())
    for task in TASKS:
        assert f"--task {task}" in docs and task in readme and task in helptext
