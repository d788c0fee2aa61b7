"""Dialogue and preference through the fake OpenAI-compatible judge: scores, battles, ratings, judge cache."""

from __future__ import annotations

import json
import re

from mmalign.eval.tasks.world import dialogue_items


def test_dialogue_and_battles_against_a_scripted_judge(cli, models, world_dir, tmp_path, judge_server):
    references = {item.answer for item in dialogue_items(world_dir, "test")}

    def respond(request):
        text = judge_server.last_user_text(request)
        if "[Assistant 1]" in text:  # LLaVA-Bench rubric: reference (Assistant 1) 8, the model's answer 6
            return judge_server.Reply("8 6\nThe second answer misses objects.")
        a = re.search(r"\[Answer A\]\n(.*?)\n\[End of answer a\]", text, re.S).group(1)
        b = re.search(r"\[Answer B\]\n(.*?)\n\[End of answer b\]", text, re.S).group(1)
        verdict = "A" if a in references else ("B" if b in references else "tie")
        return judge_server.Reply(f"Checked against the image. [[{verdict}]]")

    judge_server.respond = respond
    out = tmp_path / "judged"
    args = [
        "eval",
        "run",
        "--model",
        str(models["base"]),
        "--data",
        str(world_dir),
        "--out",
        str(out),
        "--tasks",
        "dialogue,preference",
        "--limit",
        "3",
        "--max-new-tokens",
        "4",
        "--no-progress",
        "--opponent",
        str(models["yesno"]),
        "--judge-url",
        judge_server.url,
        "--judge-model",
        "fake-judge",
        "--judge-key-env",
        judge_server.key_env,
        "--bootstrap",
        "50",
    ]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    dialogue = results["tasks"]["dialogue"]
    # 100 × mean(6) / mean(8) = 75
    assert dialogue["metrics"]["relative_score"] == 75.0 and dialogue["metrics"]["n"] == 3
    assert dialogue["intervals"]["relative_score"]["estimate"] == 75.0 and dialogue["summary"] == 0.75
    assert results["settings"]["judge"] == {"base_url": judge_server.url, "model": "fake-judge"}
    # three contestants, three pairs a question; the reference wins in both orders, the two models tie
    battles = [json.loads(x) for x in (out / "battles/preference.jsonl").read_text().splitlines()]
    assert len(battles) == 9
    for battle in battles:
        if "reference" in (battle["model_a"], battle["model_b"]):
            assert battle["winner"] == ("model_a" if battle["model_a"] == "reference" else "model_b")
        else:
            assert battle["winner"] == "tie" and {battle["model_a"], battle["model_b"]} == {"tiny-llava", "yesno"}
    board = {row["model"]: row for row in results["tasks"]["preference"]["metrics"]["leaderboard"]}
    assert board["reference"]["rating"] == 1000.0  # the anchor
    assert board["tiny-llava"]["rating"] == board["yesno"]["rating"] < 1000.0
    assert results["tasks"]["preference"]["summary"] == board["tiny-llava"]["win_rate"] < 0.5
    assert len(judge_server.requests) == 3 + 9 * 2  # dialogue ratings, battles judged in both orders
    answers = [json.loads(x) for x in (out / "predictions/preference.jsonl").read_text().splitlines()]
    assert {a["model_id"] for a in answers} == {"tiny-llava", "yesno"} and len(answers) == 6
    assert "## Dialogue" in (out / "report.md").read_text()
    # a rerun pays for nothing: answers come from the resume cache, judgments from the judge's cache
    assert cli(args) == 0
    assert len(judge_server.requests) == 3 + 9 * 2
    assert json.loads((out / "results.json").read_text())["tasks"] == results["tasks"]
