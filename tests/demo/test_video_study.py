"""``mmalign video-study``: the whole study runs through the CLI at the quick size; every model is scored on the
same items, the paired deltas are after − before of the models' own estimates, DPO and the control train the same
steps on the same pairs, and a rerun redoes nothing."""

from __future__ import annotations

import json

import pytest

from mmalign.demo.video_report import comparison_sentence
from mmalign.demo.video_study import MODELS, VideoStudySettings, run_video_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_comparison_sentence_reads_the_intervals_in_each_metrics_direction():
    deltas = {
        "video_chair": {
            "chair_i": {"before": 0.3, "after": 0.1, "delta": -0.2, "low": -0.3, "high": -0.1},  # ↓: better
            "recall": {"before": 0.5, "after": 0.4, "delta": -0.1, "low": -0.2, "high": -0.05},  # ↑: worse
        },
        "video_pope": {"accuracy": {"before": 0.6, "after": 0.62, "delta": 0.02, "low": -0.01, "high": 0.05}},
    }
    assert comparison_sentence("DPO against X", deltas) == (
        "DPO against X: better on video_chair chair_i (-20.0 [-30.0, -10.0] pp); worse on video_chair recall "
        "(-10.0 [-20.0, -5.0] pp); no change the intervals can show on the 1 other metrics."
    )
    same = {"video_pope": {"f1": {"before": 0.5, "after": 0.5, "delta": 0.0, "low": 0.0, "high": 0.0}}}
    assert comparison_sentence("A", same) == "A: no change the intervals can show on the 1 metrics."
    assert comparison_sentence("A", {}) == "A: no paired comparison."


def test_quick_study_through_the_cli_is_consistent_and_resumes(cli_run, tmp_path):
    out = tmp_path / "vs"
    code, stdout, stderr = cli_run(["video-study", "--quick", "--out", str(out), "--seed", "1"])
    assert code == 0, stderr + stdout
    for name in ("report.md", "results.json", "compare/dpo_vs_baseline/compare.json", "pairs/pairs.jsonl"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    quick = VideoStudySettings(quick=True).with_quick_profile()
    assert results["settings"]["seed"] == 1 and results["settings"]["steps"] == quick.steps

    # the baseline's SFT records: one caption per training clip ("Describe the video.", all its frames), and the
    # yes/no questions the video tasks ask, of training clips only, answered Yes. / No.
    clips = _jsonl(out / "world" / "train" / "clips.jsonl")
    records = _jsonl(out / "sft" / "train.jsonl")
    sft = [r for r in records if r["source"] == "video-caption"]
    assert len(clips) == quick.train_clips == len(sft)
    assert [r["completion"][0]["content"][0]["text"] for r in sft] == [c["caption"] for c in clips]
    assert all(len(r["videos"][0]["frames"]) == c["n_frames"] for r, c in zip(sft, clips, strict=True))
    questions = [r for r in records if r["source"] == "video-question"]
    assert len(questions) == len(records) - len(sft) > 0
    assert {r["completion"][0]["content"][0]["text"] for r in questions} == {"Yes.", "No."}
    assert {r["meta"]["clip_id"] for r in questions} <= {c["id"] for c in clips}

    # DPO and the control: the same pairs (the control their chosen captions), the same number of steps
    pairs, chosen = _jsonl(out / "pairs" / "pairs.jsonl"), _jsonl(out / "pairs" / "chosen.jsonl")
    assert len(pairs) == quick.steps * quick.batch_size == results["pairs"]["pairs"]
    assert [p["id"] for p in pairs] == [c["id"] for c in chosen]
    assert [p["chosen"] for p in pairs] == [c["completion"] for c in chosen]
    assert [p["videos"] for p in pairs] == [c["videos"] for c in chosen]
    assert {p["meta"]["kind"] for p in pairs} <= {"order", "invent", "miss", "count", "static"}
    done = {
        m: json.loads((out / "train" / m / "train_result.json").read_text())["global_step"] for m in ("dpo", "control")
    }
    assert done == {"dpo": quick.steps, "control": quick.steps}
    assert results["budget"] == {"steps": quick.steps, "pairs_per_step": quick.batch_size}
    dpo_cfg, control_cfg = (results["methods"][m]["config"]["train"] for m in ("dpo", "control"))
    assert dpo_cfg["learning_rate"] == control_cfg["learning_rate"]

    # every model on the same items: the same questions, and every test clip captioned once
    for task in ("video_hallucer", "video_pope", "video_chair"):
        ids = [[q["id"] for q in _jsonl(out / "eval" / m / "questions" / f"{task}.jsonl")] for m in MODELS]
        assert ids[0] and ids[0] == ids[1] == ids[2], task
        assert {results["items"][m][task] for m in MODELS} == {len(ids[0])}
    assert results["items"]["baseline"]["video_chair"] == quick.test_clips

    # paired deltas: before and after are the two models' own estimates, delta = after − before, inside its interval
    pairs_of = {
        "dpo_vs_baseline": ("baseline", "dpo"),
        "dpo_vs_control": ("control", "dpo"),
        "control_vs_baseline": ("baseline", "control"),
    }
    assert set(results["comparisons"]) == set(pairs_of) == set(results["sentences"])
    models = results["models"]
    for key, (before, after) in pairs_of.items():
        deltas = results["comparisons"][key]
        assert set(deltas) == set(models["baseline"])
        for task, metrics in deltas.items():
            for metric, d in metrics.items():
                assert d["before"] == pytest.approx(models[before][task][metric]["estimate"]), (key, task, metric)
                assert d["after"] == pytest.approx(models[after][task][metric]["estimate"]), (key, task, metric)
                assert d["delta"] == pytest.approx(d["after"] - d["before"])
                assert d["low"] - 1e-9 <= d["high"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert results["sentences"]["dpo_vs_control"] in report and "| video_chair | chair_i ↓ |" in report
    assert "how competent the baseline is on the test clips: temporal POPE accuracy " in report

    # a rerun redoes nothing and writes the same results
    said: list[str] = []
    again = run_video_study(VideoStudySettings(out=out, quick=True, seed=1), said.append)
    skipped = [line for line in said if "up to date, skipped" in line]
    assert len(skipped) == 9 and not [line for line in said if "done in" in line]
    assert again == results


def test_baseline_records_are_the_captions_then_each_clips_questions(tmp_path):
    from mmalign.demo.video_study import caption_records
    from mmalign.eval.tasks.video import video_items
    from mmalign.world.config import WorldConfig
    from mmalign.world.video import generate_video_world

    world = tmp_path / "world"
    generate_video_world(world, WorldConfig(video=True, train_scenes=3, val_scenes=1, test_scenes=1))
    captions = caption_records(world, questions=False)
    assert [r.source for r in captions] == ["video-caption"] * 3
    both = caption_records(world, questions=True)
    asked = [i for task in ("video_hallucer", "video_pope") for i in video_items(task, world, "train")]
    assert len(both) == 3 + len(asked)
    assert [r.id for r in both if r.source == "video-caption"] == [r.id for r in captions]
    by_id = {f"{i.id}-qa": i for i in asked}
    for record in both[1:]:
        if record.source == "video-question":
            item = by_id[record.id]
            assert record.completion_text == {"yes": "Yes.", "no": "No."}[item.answer]
            assert record.prompt[0]["content"][1]["text"] == item.question


def test_the_reproduce_command_gives_the_same_settings(cli_run, tmp_path, monkeypatch):
    from mmalign.demo.video_report import reproduce_command

    ran = VideoStudySettings(quick=True, seed=2, baseline_questions=False, learning_rate=5e-5).with_quick_profile()
    command = reproduce_command(ran.to_dict())
    assert command.startswith("mmalign video-study --seed 2 ") and "--captions-only" in command
    seen: list[VideoStudySettings] = []
    monkeypatch.setattr("mmalign.demo.video_study.run_video_study", lambda settings, say: seen.append(settings))
    code, _, stderr = cli_run([*command.split()[1:], "--out", str(tmp_path / "o")])
    assert code == 0, stderr
    expected = {**ran.to_dict(), "quick": False}
    assert seen[0].with_quick_profile().to_dict() == expected
