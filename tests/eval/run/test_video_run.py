"""``mmalign eval run`` on a clip set: the three video tasks end to end with a tiny model, and ``mmalign eval score``
on the files the run wrote gives the numbers in results.json.

Needs the other parts of issue 18: the moving world (``mmalign.world.video``) and video in records and collation
(``EvalItem.videos``); skipped, saying so, on a tree without them.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from mmalign.data.records import EvalItem
from mmalign.eval.scoring.score import ScoreOptions, score

pytest.importorskip("mmalign.world.video", reason="needs the moving world (mmalign world --video)")
if not any(f.name == "videos" for f in dataclasses.fields(EvalItem)):
    pytest.skip("needs video in records (EvalItem.videos)", allow_module_level=True)

TASKS = {"video_pope": "pope", "video_hallucer": "videohallucer", "video_chair": "video_chair"}


def test_video_tasks_run_end_to_end_and_eval_score_reproduces_them(cli, models, tmp_path):
    from mmalign.world import WorldConfig
    from mmalign.world.video import generate_video_world

    world = tmp_path / "clips"
    generate_video_world(world, WorldConfig(video=True, train_scenes=2, val_scenes=3, test_scenes=3, image_size=48))
    out = tmp_path / "run"
    args = ["eval", "run", "--model", str(models["yesno"]), "--data", str(world), "--out", str(out), "--no-progress"]
    assert cli([*args, "--suite", "video"]) == 0
    results = json.loads((out / "results.json").read_text())
    for task, scorer in TASKS.items():
        entry = results["tasks"][task]
        assert entry["status"] == "done", (task, entry)
        questions = [json.loads(line) for line in (out / "questions" / f"{task}.jsonl").read_text().splitlines()]
        assert questions and all(q["videos"] and not q["images"] for q in questions)
        report = score(
            scorer,
            out / "predictions" / f"{task}.jsonl",
            questions=out / "questions" / f"{task}.jsonl",
            options=ScoreOptions(n_resamples=results["settings"].get("n_resamples", 1000)),
        )
        for name, value in report["metrics"].items():
            if isinstance(value, float | int):
                assert entry["metrics"][name] == pytest.approx(value), (task, name)
    # the determined model says only Yes or No (repeated): every answer opens with one of them
    answers = [json.loads(line)["text"] for line in (out / "predictions" / "video_pope.jsonl").read_text().splitlines()]
    assert all(a.startswith(("Yes", "No")) for a in answers), answers[:3]
    assert "hallucination" in results["dimensions"]
