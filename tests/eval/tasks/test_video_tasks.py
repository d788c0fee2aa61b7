"""The shapes world's video tasks: items built from a hand-written clips.jsonl (the agreed layout), scored from
canned model answers with the same code as ``mmalign eval score``; every expected number is worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.data.io import write_jsonl
from mmalign.errors import DataError
from mmalign.eval.results import summary
from mmalign.eval.scoring.rescore import rescore, score_command
from mmalign.eval.scoring.score import ScoreOptions, score
from mmalign.eval.tasks.specs import TASKS, parse_task_list
from mmalign.eval.tasks.suites import SUITES
from mmalign.eval.tasks.world import world_input

RC, BS, GS, GST, YT = "red circle", "blue star", "green square", "green star", "yellow triangle"
CLIP_A = {
    "id": "val-000000",
    "video": "videos/val/val-000000.mp4",
    "frames": "frames/val/val-000000",
    "fps": 4.0,
    "n_frames": 8,
    "size": [48, 48],
    "per_frame": [[RC, BS], [RC, BS], [BS], [BS], [BS], [BS, GS], [GST, GS], [GST, GS]],
    "events": [
        {"type": "disappear", "object": RC, "frame": 2},
        {"type": "move", "object": BS, "frame": 3, "from": [0, 1], "to": [1, 1]},
        {"type": "appear", "object": GS, "frame": 5},
        {"type": "change_colour", "object": BS, "frame": 6, "from": "blue", "to": "green"},
    ],
    "caption": "The red circle disappears. The blue star moves down. A green square appears. "
    "The blue star turns green.",
}
CLIP_B = {
    "id": "val-000001",
    "frames": "frames/val/val-000001",
    "fps": 4.0,
    "n_frames": 8,
    "size": [48, 48],
    "per_frame": [[YT]] * 4 + [[YT, RC]] * 4,
    "events": [{"type": "appear", "object": RC, "frame": 4}],
    "caption": "A red circle appears.",
}


@pytest.fixture
def world(tmp_path: Path) -> Path:
    (tmp_path / "val").mkdir()
    write_jsonl(tmp_path / "val" / "clips.jsonl", [CLIP_A, CLIP_B])
    return tmp_path


def _items(task: str, world: Path, tmp_path: Path):
    return world_input(task, TASKS[task].world_file, world, "val", tmp_path / "inputs").items


def _files(items, answers: dict[str, str], tmp_path: Path) -> tuple[Path, Path]:
    questions, predictions = tmp_path / "questions.jsonl", tmp_path / "predictions.jsonl"
    write_jsonl(questions, [item.to_dict() for item in items])
    write_jsonl(predictions, [{"question_id": i.id, "text": answers[i.id]} for i in items])
    return questions, predictions


def _videos(item):
    """The item's video references as dicts (``videos`` where records have them, else ``meta.videos``)."""
    refs = getattr(item, "videos", None) or item.meta["videos"]
    return [ref if isinstance(ref, dict) else ref.to_dict() for ref in refs]


def test_items_carry_the_clip_as_the_agreed_video_reference(world, tmp_path):
    items = _items("video_hallucer", world, tmp_path)
    a = [i for i in items if i.meta["clip_id"] == "val-000000"]
    b = [i for i in items if i.meta["clip_id"] == "val-000001"]
    assert _videos(a[0]) == [
        {"path": "videos/val/val-000000.mp4", "sampling": {"mode": "uniform", "num_frames": 8, "max_frames": 8}}
    ]
    assert _videos(b[0]) == [{"frames": [f"frames/val/val-000001/{k:03d}.png" for k in range(8)]}]  # no mp4
    assert not a[0].images


def test_videohallucer_pairs_from_the_ground_truth(world, tmp_path):
    items = _items("video_hallucer", world, tmp_path)
    by_id = {i.id: i for i in items}
    # clip A: existence, temporal, count, event; clip B has one event kind, so no temporal pair
    assert len(items) == 14
    assert {i.meta["subtask"] for i in items if i.meta["clip_id"] == "val-000001"} == {"existence", "count", "event"}
    temporal = by_id["val-000000-vh-temporal-basic"], by_id["val-000000-vh-temporal-hallucination"]
    assert temporal[0].question == "Does the red circle disappear before the blue star moves?"
    assert temporal[1].question == "Does the blue star move before the red circle disappears?"
    assert (temporal[0].answer, temporal[1].answer) == ("yes", "no")
    # four distinct objects over the clip, at most two in one frame: the one-frame count is the hallucinated one
    assert by_id["val-000000-vh-count-basic"].question == "Are there four kinds of object in the video altogether?"
    assert by_id["val-000000-vh-count-hallucination"].question.startswith("Are there two kinds")
    # the never-present object of clip A is the only one of the split it never shows
    assert "yellow triangle" in by_id["val-000000-vh-existence-hallucination"].question
    # deterministic
    assert [i.to_dict() for i in _items("video_hallucer", world, tmp_path)] == [i.to_dict() for i in items]


def test_videohallucer_world_task_scored_with_pair_accuracy(world, tmp_path):
    items = _items("video_hallucer", world, tmp_path)
    # a yes-sayer: every basic right, every hallucinated wrong → basic 1, hallucinated 0, pairs 0;
    # each of the 7 pairs is (yes, not no): predicted yes 14 → yes difference (14 − 7) / 14 = 0.5, FPR 7/7
    q, a = _files(items, {i.id: "Yes." for i in items}, tmp_path)
    m = score("videohallucer", a, questions=q, options=ScoreOptions(n_resamples=10))["metrics"]
    assert (m["basic_accuracy"], m["halluc_accuracy"], m["accuracy"]) == (1.0, 0.0, 0.0)
    assert (m["bias"]["yes_difference"], m["bias"]["false_positive_ratio"]) == (0.5, 1.0)
    # right everywhere but clip A's swapped order: sub-tasks existence 1, temporal (basic 1, halluc 0, pair 0),
    # count 1, event 1 → all: basic 1, halluc (1 + 0 + 1 + 1) / 4 = 0.75, pairs 0.75
    answers = {i.id: i.answer for i in items} | {"val-000000-vh-temporal-hallucination": "Yes, it does."}
    q, a = _files(items, answers, tmp_path)
    m = rescore("video_hallucer", {"questions": q.name, "predictions": a.name}, tmp_path).metrics
    assert (m["basic_accuracy"], m["halluc_accuracy"], m["accuracy"]) == (1.0, 0.75, 0.75)
    assert m["subtasks"]["temporal"]["pairs"] == 1 and m["subtasks"]["existence"]["pairs"] == 2
    assert summary("video_hallucer", m) == 0.75  # the pair accuracy


def test_temporal_pope_catches_a_time_blind_model(world, tmp_path):
    items = _items("video_pope", world, tmp_path)
    assert len(items) == 12 and sum(i.answer == "yes" for i in items) == 6
    negatives = {(i.meta["clip_id"], i.meta["scope"]): i.meta["negative"] for i in items if i.answer == "no"}
    assert negatives == {
        ("val-000000", "start"): "temporal",
        ("val-000000", "end"): "temporal",
        ("val-000000", "any"): "random",
        ("val-000001", "start"): "temporal",
        ("val-000001", "end"): "random",
        ("val-000001", "any"): "random",
    }
    end_no = next(i for i in items if i.id == "val-000000-vpope-end-no")
    assert end_no.question in (f"Is there a {o} at the end of the video?" for o in (RC, BS))
    # a model that answers yes whenever the object is in the clip at any time: the 3 temporal negatives become
    # false positives. TP 6, FP 3, TN 3, FN 0 → accuracy 9/12, precision 6/9, recall 1, F1 0.8, yes-ratio 9/12
    seen = {c["id"]: {o for f in c["per_frame"] for o in f} for c in (CLIP_A, CLIP_B)}
    answers = {i.id: "Yes." if i.meta["object"] in seen[i.meta["clip_id"]] else "No." for i in items}
    q, a = _files(items, answers, tmp_path)
    m = rescore("video_pope", {"questions": q.name, "predictions": a.name}, tmp_path).metrics
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0 and m["f1"] == pytest.approx(0.8) and m["yes_ratio"] == pytest.approx(0.75)


def test_video_captions_chair_over_time_and_event_precision_recall(world, tmp_path):
    items = _items("video_chair", world, tmp_path)
    assert [i.objects for i in items] == [sorted([RC, BS, GS, GST]), sorted([YT, RC])]
    assert items[0].answer == CLIP_A["caption"] and items[0].meta["events"] == CLIP_A["events"]
    # clip A's caption invents a yellow triangle appearing; clip B's a move of the triangle.
    answers = {
        "val-000000-vchair": "The red circle disappears. The blue star moves down. A yellow triangle appears. "
        "The blue star turns green.",
        "val-000001-vchair": "A red circle appears, then the yellow triangle moves.",
    }
    q, a = _files(items, answers, tmp_path)
    report = score("video_chair", a, questions=q, options=ScoreOptions(n_resamples=10))
    m = report["metrics"]
    # CHAIR over the union of per_frame: A names red circle, blue star, yellow triangle, blue star (4 mentions, the
    # triangle is never in A: 1 hallucinated), B names red circle and yellow triangle (both present).
    # CHAIR-s 1/2, CHAIR-i 1/6, recall (2 of A's 4 + 2 of B's 2) / 6
    assert (m["chair_s"], m["chair_i"], m["recall"]) == pytest.approx((0.5, 1 / 6, 2 / 3))
    # events: A states disappear(red circle) ✓, move(blue star) ✓, appear(yellow triangle) ✗, change_colour(blue
    # star) ✓ of 4 true; B states appear(red circle) ✓, move(yellow triangle) ✗ of 1 true.
    # precision 4/6, recall 4/5, F1 2·(2/3)(4/5) / (2/3 + 4/5) = 8/11
    assert (m["event_precision"], m["event_recall"], m["event_f1"]) == pytest.approx((2 / 3, 0.8, 8 / 11))
    assert report["items"][0]["invented_events"] == [["appear", YT]]
    assert report["intervals"]["event_recall"]["estimate"] == pytest.approx(0.8)
    # results.json's summary: object F1 as CHAIR's, precision 1 − 1/6 = 5/6 and recall 2/3 → 2·(5/6)(2/3) / (3/2)
    assert summary("video_chair", m) == pytest.approx(20 / 27)
    # the reference captions themselves: no hallucination, every event stated
    q, a = _files(items, {i.id: i.answer for i in items}, tmp_path)
    m = score("video_chair", a, questions=q, options=ScoreOptions(n_resamples=10))["metrics"]
    assert (m["chair_i"], m["event_precision"], m["event_recall"]) == (0.0, 1.0, 1.0)


def test_registered_as_tasks_with_their_scorers_and_suite():
    assert parse_task_list("video_hallucer, video_pope,video_chair") == ["video_hallucer", "video_pope", "video_chair"]
    assert {TASKS[t].scorer for t in SUITES["video"].tasks} == {"videohallucer", "pope", "video_chair"}
    assert not set(SUITES["video"].tasks) & set(SUITES["shapes"].tasks)  # a still world has no clips
    files = {"questions": "questions/video_hallucer.jsonl", "predictions": "predictions/video_hallucer.jsonl"}
    command = score_command(TASKS["video_hallucer"], files, Path("run"))
    assert command == (
        "mmalign eval score --task videohallucer --questions run/questions/video_hallucer.jsonl "
        "--answers run/predictions/video_hallucer.jsonl"
    )


def test_a_bad_clip_row_names_file_line_and_field(tmp_path):
    (tmp_path / "val").mkdir()
    row = {k: v for k, v in CLIP_A.items() if k != "per_frame"}
    (tmp_path / "val" / "clips.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"clips.jsonl, line 1.*per_frame"):
        _items("video_pope", tmp_path, tmp_path)
    with pytest.raises(DataError, match="mmalign world --video"):
        _items("video_pope", tmp_path / "none", tmp_path)


def test_event_pairs_follow_an_object_through_its_colour_change():
    from mmalign.eval.tasks.video import _same_object, hallucer_items

    events = [
        {"type": "change_colour", "object": BS, "frame": 2, "from": "blue", "to": "green"},
        {"type": "move", "object": GST, "frame": 4, "from": [0, 0], "to": [0, 1]},
    ]
    assert _same_object(events) == {BS: {BS, GST}, GST: {BS, GST}}
    wrong = {f"Does the {BS} move?", f"Does the {GST} change colour?", f"Does the {GST} move?"}
    for k in range(20):  # the object and event drawn vary with the clip id; the hallucinated one never happened
        clip = {"id": f"c{k}", "video": "v.mp4", "per_frame": [[BS, RC]] * 2 + [[GST, RC]] * 6, "events": events}
        halluc = [i for i in hallucer_items(clip, [BS, GST, RC, YT]) if i.id.endswith("event-hallucination")]
        assert len(halluc) == 1 and halluc[0].question not in wrong and halluc[0].answer == "no"
