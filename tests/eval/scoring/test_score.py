"""``mmalign eval score`` through the CLI entry point: output, JSON report, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.cli.main import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADVERSARIAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "pope" / "sample_coco_pope_adversarial.jsonl"


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def _items(tmp_path: Path) -> tuple[Path, Path]:
    """Shapes-world style eval items (POPE, MME pairs, multiple choice) and answers to them."""
    items = [
        {"id": "p0", "task": "pope_random", "question": "Is there a red circle?", "answer": "yes"},
        {"id": "p1", "task": "pope_random", "question": "Is there a blue star?", "answer": "no"},
        {"id": "p2", "task": "pope_adversarial", "question": "Is there a red circle?", "answer": "yes"},
        {"id": "p3", "task": "pope_adversarial", "question": "Is there a green cross?", "answer": "no"},
    ]
    answers = {"p0": "Yes.", "p1": "Yes.", "p2": "No.", "p3": "No."}
    q, a = tmp_path / "items.jsonl", tmp_path / "answers.jsonl"
    q.write_text("".join(json.dumps(i) + "\n" for i in items))
    a.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in answers.items()))
    return q, a


def test_score_eval_items_per_split(tmp_path, capsys):
    q, a = _items(tmp_path)
    out = tmp_path / "report.json"
    assert run(["eval", "score", "--task", "pope", "--questions", str(q), "--answers", str(a), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and f"report written to {out}" in printed
    report = json.loads(out.read_text())
    # random: p0 right (TP), p1 wrong (FP); adversarial: p2 wrong (FN), p3 right (TN)
    assert report["metrics"]["accuracy"] == 0.5
    assert report["metrics"]["splits"]["random"]["fp"] == 1 and report["metrics"]["splits"]["adversarial"]["fn"] == 1
    assert len(report["items"]) == 4


def test_mme_and_mc_items(tmp_path, capsys):
    q = tmp_path / "mme.jsonl"
    meta = {"group": "img1", "subtask": "count"}
    rows = [
        {"id": "m0", "task": "mme", "question": "Q", "answer": "yes", "meta": meta},
        {"id": "m1", "task": "mme", "question": "Q", "answer": "no", "meta": meta},
    ]
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = tmp_path / "a.jsonl"
    a.write_text('{"id": "m0", "text": "Yes"}\n{"id": "m1", "text": "No"}\n')
    assert run(["eval", "score", "--task", "mme", "--questions", str(q), "--answers", str(a)]) == 0
    assert "total" in capsys.readouterr().out
    mc = tmp_path / "mc.jsonl"
    mc.write_text(
        '{"id": "c0", "task": "mc", "question": "Which?", "answer": "B", "choices": ["red circle", "blue star"]}\n'
    )
    a.write_text('{"id": "c0", "text": "(B) blue star"}\n')
    assert run(["eval", "score", "--task", "mc", "--questions", str(mc), "--answers", str(a), "--strict"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "bleu"], "unknown task 'bleu'"),
        (["--task", "mme", "--strict"], "--strict has no meaning for --task mme"),
        (["--task", "pope", "--annotations", "."], "--annotations is only used by --task chair"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    a = tmp_path / "a.jsonl"
    a.write_text('{"question_id": 1, "text": "yes"}\n')
    assert run(["eval", "score", "--answers", str(a), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_malformed_line_is_one_line_error(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    a.write_text('{"question_id": 1, "text": "yes"}\nnot json\n')
    assert run(["eval", "score", "--task", "pope", "--questions", str(ADVERSARIAL), "--answers", str(a)]) == 2
    err = capsys.readouterr().err
    assert "a.jsonl, line 2: not valid JSON" in err and "Traceback" not in err
