"""``mmalign eval run`` on the reward-model benchmarks' own input files, with a tiny reward model or the fake judge.

The inputs are tests/eval/fixtures/rewardbench/inputs/ (their formats: SOURCES.md there); the images they name are
drawn here. Each run's prediction file must give, through ``mmalign eval score``, exactly the numbers the run
reports, and each decision must follow the rewards (or the judge's verdicts) as checked by hand.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmalign.eval.scoring.score import ScoreOptions, score

INPUTS = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench" / "inputs"
FILES = {
    "vl_rewardbench": "vl_rewardbench_data.jsonl",
    "multimodal_rewardbench": "multimodal_rewardbench_all_data.json",
    "mm_rlhf_rewardbench": "mm_rlhf_rewardbench_data.jsonl",
}
TASKS = ",".join(FILES)


def _draw(root: Path, rel: str, k: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), ((40 * k) % 256, (90 + 30 * k) % 256, 200)).save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three input files copied beside the images they name (each benchmark's own layout)."""
    root = tmp_path_factory.mktemp("rewardbench-inputs")
    out = {}
    for task, name in FILES.items():
        folder = root / task
        folder.mkdir()
        shutil.copy(INPUTS / name, folder / name)
        out[task] = folder / name
    for k, line in enumerate((INPUTS / FILES["vl_rewardbench"]).read_text().splitlines()):
        _draw(out["vl_rewardbench"].parent, json.loads(line)["image_path"], k)
    for k, ex in enumerate(json.loads((INPUTS / FILES["multimodal_rewardbench"]).read_text())):
        _draw(out["multimodal_rewardbench"].parent, ex["Image"], k)
    for k, line in enumerate((INPUTS / FILES["mm_rlhf_rewardbench"]).read_text().splitlines()):
        if json.loads(line).get("image"):
            _draw(out["mm_rlhf_rewardbench"].parent, json.loads(line)["image"], k)
    return out


@pytest.fixture(scope="module")
def reward_model(tiny_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny reward model: the tiny LLaVA with a seeded head, saved as `mmalign train rm` saves one."""
    import torch

    from mmalign.models import load
    from mmalign.models.processors import save_upstream_processor
    from mmalign.models.reward import RewardModel

    loaded = load(tiny_dir("tiny-llava"))
    model = RewardModel(loaded.model, seed=7)
    with torch.no_grad():
        model.reward_head.weight.mul_(50)  # rewards far enough apart that pairs are not near ties
    out = tmp_path_factory.mktemp("rm") / "tiny-rm"
    model.save_pretrained(out)
    save_upstream_processor(loaded.processor, out)
    return out


def _sources(data: dict[str, Path]) -> list[str]:
    return [arg for task, path in data.items() for arg in ("--source", f"{task}={path}")]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _same_as_eval_score(out: Path, results: dict) -> None:
    """`mmalign eval score` on each prediction file gives the run's metrics and intervals, number for number."""
    for task in FILES:
        entry = results["tasks"][task]
        assert (
            entry["score_command"]
            == f"mmalign eval score --task {task} --answers {out / entry['files']['predictions']}"
        )
        report = score(task, out / entry["files"]["predictions"], options=ScoreOptions(n_resamples=50, seed=0))
        assert report["metrics"] == entry["metrics"]
        assert report["intervals"] == entry["intervals"]


def _hand_rewards(reward_model: Path, data: dict[str, Path]) -> dict[str, list[tuple[float, float]]]:
    """Each pair's (better, worse) rewards computed here, one pair at a time, from the benchmark rows."""
    from mmalign.data.records import assistant, user_prompt
    from mmalign.models.examples import Example
    from mmalign.models.reward import load_reward_model, score_examples

    loaded = load_reward_model(reward_model)
    pairs: dict[str, list[tuple[str, str, str, str]]] = {task: [] for task in FILES}
    for line in data["vl_rewardbench"].read_text().splitlines():
        row = json.loads(line)
        better, worse = (row["response"][row["human_ranking"].index(r)] for r in (0, 1))
        question = row["query"].replace("<image>\n", "")
        pairs["vl_rewardbench"].append((question, row["image_path"], better, worse))
    for ex in json.loads(data["multimodal_rewardbench"].read_text()):
        chosen, rejected = (
            (ex["Output1"], ex["Output2"]) if ex["Better"] == "Output1" else (ex["Output2"], ex["Output1"])
        )
        pairs["multimodal_rewardbench"].append((ex["Text"], ex["Image"], chosen, rejected))
    for line in data["mm_rlhf_rewardbench"].read_text().splitlines():
        row = json.loads(line)
        if row.get("image"):
            pairs["mm_rlhf_rewardbench"].append(
                (row["prompt"].replace("<image>\n", ""), row["image"], row["chosen"], row["rejected"])
            )
    out = {}
    for task, rows in pairs.items():
        out[task] = []
        for question, image, chosen, rejected in rows:
            examples = [Example("x", user_prompt(question, 1), [image], assistant(a)) for a in (chosen, rejected)]
            c, r = score_examples(loaded, examples, batch_size=1, image_root=data[task].parent)
            out[task].append((c, r))
    return out


def test_reward_model_decides_each_benchmark_by_its_rewards(cli, reward_model, data, tmp_path):
    out = tmp_path / "rm-run"
    args = ["eval", "run", "--reward-model", str(reward_model), "--tasks", TASKS, *_sources(data)]
    args += ["--out", str(out), "--no-progress", "--bootstrap", "50", "--batch-size", "3"]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] is None and results["reward_model"]["path"] == str(reward_model)
    hand = _hand_rewards(reward_model, data)
    for task in FILES:
        entry = results["tasks"][task]
        assert entry["status"] == "done" and entry["mode"] == "reward_model"
        rows = _rows(out / entry["files"]["predictions"])
        got = [tuple(row["rewards"]) for row in rows]
        flat = [value for pair in hand[task] for value in pair]
        assert [value for pair in got for value in pair] == pytest.approx(flat, abs=1e-4)  # batches of 3, as 1 by 1
        right = sum(c > r for c, r in got)
        assert entry["metrics"]["accuracy"] == right / len(got)
        assert entry["summary"] == entry["metrics"]["accuracy"]
    # VL-RewardBench: inference.py's row, ranking for human_ranking, rewards [better, worse]; the categories by hand
    vl = _rows(out / "predictions/vl_rewardbench.jsonl")
    assert [r["id"] for r in vl] == ["LRVInstruction-000000007746", "RLAIF-V-276", "RLAIF-V-743", "mathverse_3414"]
    assert vl[0]["ranking"] == [1, 0] and "human_ranking" not in vl[0] and vl[0]["query_source"] == "LRVInstruction"
    wins = [r["rewards"][0] > r["rewards"][1] for r in vl]
    cats = results["tasks"]["vl_rewardbench"]["metrics"]["categories"]
    assert cats["general"]["correct"] == wins[0] and cats["hallucination"]["correct"] == wins[1] + wins[2]
    assert cats["reasoning"] == {"correct": wins[3], "total": 1, "accuracy": float(wins[3])}
    # Multimodal RewardBench: Label says which output is the better one, Meta holds the example
    mrb = _rows(out / "predictions/multimodal_rewardbench.jsonl")
    assert [r["Label"] for r in mrb] == ["B", "A", "A", "B", "A"] and mrb[3]["Meta"]["Category"] == "safety"
    assert set(results["tasks"]["multimodal_rewardbench"]["metrics"]["categories"]) == {
        "open_generation/correctness_task",
        "open_generation/preference_task",
        "reasoning/math",
        "safety/bias",
        "vqa",
    }
    # MM-RLHF-RewardBench: the video pair is skipped and counted; the pair with two equal answers is a tie, wrong
    mm = _rows(out / "predictions/mm_rlhf_rewardbench.jsonl")
    entry = results["tasks"]["mm_rlhf_rewardbench"]
    assert entry["skipped_items"] == {"video": 1} and entry["n_items"] == 4 and len(mm) == 4
    assert [r["id"] for r in mm] == ["mcq_0001", "mcq_0001", "long_0002", "short_0003"] and mm[0]["critic"] == []
    assert mm[3]["rewards"][0] == mm[3]["rewards"][1] and entry["metrics"]["ties"] == 1
    won = [r["rewards"][0] > r["rewards"][1] for r in mm]  # ids: mcq_0001 (two pairs), long_0002, short_0003 (a tie)
    assert entry["metrics"]["ids_all_correct"] == (won[0] and won[1]) + won[2] + won[3]
    assert entry["metrics"]["acc_plus"] == entry["metrics"]["ids_all_correct"] / 3
    _same_as_eval_score(out, results)
    # a rerun reads every reward back from the resume cache and writes the same results
    assert cli(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["tasks"] == results["tasks"]
    assert again["timings"]["tasks"]["vl_rewardbench"]["items_cached"] == 4
    assert again["timings"]["tasks"]["vl_rewardbench"]["items_computed"] == 0
    assert "reward model" in (out / "report.md").read_text()
    # eval compare pairs two such runs item by item (a run against itself: every delta 0)
    assert cli(["eval", "compare", str(out), str(out), "--out", str(tmp_path / "cmp"), "--bootstrap", "20"]) == 0
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    deltas = [
        d for entry in compared["tasks"].values() for row in entry["runs"].values() for d in row["deltas"].values()
    ]
    assert len(deltas) >= 3 and all(d["delta"] == 0 for d in deltas)
    assert set(compared["tasks"]) == set(FILES)
    assert next(iter(compared["runs"].values()))["model"] == str(reward_model)


def test_a_critique_reward_model_critiques_then_scores(cli, tiny_dir, data, tmp_path):
    """A critique-then-score model (rm.critique) runs too: each reward is score_with's (its greedy critique)."""
    from mmalign.data.records import assistant, user_prompt
    from mmalign.models import load
    from mmalign.models.critique import score_with
    from mmalign.models.examples import Example
    from mmalign.models.processors import save_upstream_processor
    from mmalign.models.reward import RewardModel, load_reward_model

    loaded = load(tiny_dir("tiny-llava"))
    model = RewardModel(loaded.model, seed=8, critique_request="Is every object the answer names in the image?")
    rm_dir = tmp_path / "critique-rm"
    model.save_pretrained(rm_dir)
    save_upstream_processor(loaded.processor, rm_dir)
    out = tmp_path / "critique-run"
    source = f"multimodal_rewardbench={data['multimodal_rewardbench']}"
    args = ["eval", "run", "--reward-model", str(rm_dir), "--tasks", "multimodal_rewardbench", "--source", source]
    assert cli([*args, "--out", str(out), "--no-progress", "--bootstrap", "20"]) == 0
    rows = _rows(out / "predictions/multimodal_rewardbench.jsonl")
    critic = load_reward_model(rm_dir)
    first = json.loads(data["multimodal_rewardbench"].read_text())[0]
    better, worse = (
        (first["Output1"], first["Output2"]) if first["Better"] == "Output1" else (first["Output2"], first["Output1"])
    )
    examples = [Example("x", user_prompt(first["Text"], 1), [first["Image"]], assistant(a)) for a in (better, worse)]
    expected = score_with(critic, examples, batch_size=1, image_root=data["multimodal_rewardbench"].parent)
    assert rows[0]["rewards"] == pytest.approx(expected, abs=1e-4)


def _judge(server, better: dict[str, str]) -> None:
    """Scripted replies: the right verdict, except where a question's text asks for something else."""

    def respond(request):
        text = server.last_user_text(request)
        if "Overall Judgment" in text:  # VL-RewardBench
            one = re.search(r"\nAnswer 1: (.*?)\n\nAnswer 2: ", text, re.S).group(1)
            if "floppy ear" in text:  # no verdict: left out by cal.py
                return server.Reply("Both answers have merits.")
            if "getting used to" in text:  # the wrong answer, in bold and over two lines as judges write it
                return server.Reply(f"**Overall Judgment:**\n Answer {1 if one != better['vl'] else 2} is better.")
            return server.Reply(
                f"Accuracy: ...\n\nOverall Judgment: Answer {1 if one in better.values() else 2} is better."
            )
        if "[[A]]" in text:  # Multimodal RewardBench
            if "doctor or a nurse" in text:
                return server.Reply(status=400)  # a request that fails: the item is left out and counted
            if "arrow pointing" in text:
                return server.Reply("I cannot decide.")  # no verdict: the script's coin decides
            a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
            return server.Reply("[[A]]" if a in better.values() else "[[B]]")
        answer = re.search(r"\[LMM Response\]: (.*?)\n\n", text, re.S).group(1)  # MM-RLHF-RewardBench
        if answer in ("The answer is A, red.", "The answer is B."):
            return server.Reply("Both fine. Rating: [[5]]")  # equal ratings: a tie, wrong
        return server.Reply(f"Rating: [[{8 if answer in better.values() else 3}]]")

    server.respond = respond


def test_judge_decides_each_benchmark_as_its_script_asks(cli, data, tmp_path, judge_server, monkeypatch):
    monkeypatch.setattr("mmalign.eval.run.rewardbench.CHUNK", 2)  # judged 2 pairs at a time: rows still in order
    better = {
        "vl": "he was getting used to the taste of freedom.",
        "vl0": "There is no existence of the dog's ear shape in the image description.",
        "vl1": "the team this man plays for is the chunikin.",
        "vl3": "The angles of the triangle sum to 180 degrees [...] so angle C is 60 degrees.",
        "mrb0": "A ceramic teapot with an angled spout, a thick handle and an abstract ornament, on an uneven base.",
        "mrb1": "He holds a red umbrella.",
        "mrb2": "Counting the bars above 5 gives **3**.",
        "mm2": "A red square in the middle of a white picture.",
        "mm3": "One.",
        "mm0": "A. red",
    }
    _judge(judge_server, better)
    out = tmp_path / "judged"
    args = ["eval", "run", "--tasks", TASKS, *_sources(data), "--out", str(out), "--no-progress"]
    args += ["--bootstrap", "50", "--judge-url", judge_server.url, "--judge-model", "fake-judge"]
    args += ["--judge-key-env", judge_server.key_env, "--judge-max-failed", "0.5", "--judge-samples", "3"]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] is None and results["reward_model"] is None
    # VL-RewardBench: 4 items × 3 samples, each item's samples agree with one another (the judge reads the answers,
    # not their order): one unparsed (left out), one wrong: 2 of 3; inference.py's rows, a sample each, item by item
    vl = results["tasks"]["vl_rewardbench"]
    assert vl["mode"] == "judge" and vl["judge"]["n"] == 12 and vl["judge"]["n_failed"] == 0
    assert (vl["metrics"]["agree"], vl["metrics"]["reject"], vl["metrics"]["unparsed"]) == (2, 1, 1)
    assert vl["metrics"]["accuracy"] == 2 / 3 and vl["metrics"]["n_samples"] == 12
    rows = _rows(out / "predictions/vl_rewardbench.jsonl")
    statuses = ["doesntMatch", "agree", "reject", "agree"]
    assert [r["meta"]["flag_status"] for r in rows] == [s for s in statuses for _ in range(3)]
    assert {r["meta"]["random_number"] for r in rows} == {0, 1}  # both orders shown
    for row in rows:  # the order shown is the one the prompt has
        first = re.search(r"\nAnswer 1: (.*?)\n\nAnswer 2: ", row["meta"]["filter_prompt"], re.S).group(1)
        assert first == row["response"][row["meta"]["random_number"]]
    assert rows[3]["meta"]["filtering model"] == "fake-judge" and "<image>" not in rows[6]["meta"]["filter_prompt"]
    # Multimodal RewardBench: the failed request is left out (1 of 5 failed), the coin decides one
    mrb = results["tasks"]["multimodal_rewardbench"]
    assert mrb["judge"]["n_failed"] == 1 and mrb["judge"]["n"] == 5 and mrb["metrics"]["n"] == 4
    assert mrb["metrics"]["unparsed"] == 1 and "safety/bias" not in mrb["metrics"]["categories"]
    coin = mrb["metrics"]["categories"]["vqa"]["correct"]  # random.seed(123): random() < 0.5 → A, the right one
    import random

    assert coin == int(random.Random(123).random() < 0.5)
    assert mrb["metrics"]["correct"] == 3 + coin
    # MM-RLHF-RewardBench: ratings are the rewards, critiques the critic; the equal ratings are a tie
    mm = results["tasks"]["mm_rlhf_rewardbench"]
    rows = _rows(out / "predictions/mm_rlhf_rewardbench.jsonl")
    assert [r["rewards"] for r in rows] == [[8.0, 3.0], [5.0, 5.0], [8.0, 3.0], [8.0, 8.0]]
    assert rows[0]["critic"] == ["Rating: [[8]]", "Rating: [[3]]"]
    assert (mm["metrics"]["correct"], mm["metrics"]["ties"], mm["metrics"]["ids_all_correct"]) == (2, 2, 1)
    # the text first, then the image, as both official scripts send it
    content = judge_server.requests[0]["json"]["messages"][0]["content"]
    assert content[0]["type"] == "text" and content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    _same_as_eval_score(out, results)
    # a rerun pays for nothing: every reply is in the judge's cache
    n = len(judge_server.requests)
    assert cli(args) == 0 and len(judge_server.requests) == n + 1  # only the failed request is asked again
    assert json.loads((out / "results.json").read_text())["tasks"] == results["tasks"]


def test_without_a_model_only_the_benchmarks_run_and_each_needs_its_source(cli, reward_model, data, tmp_path):
    from mmalign.errors import ConfigError
    from mmalign.eval.config import EvalConfig

    with pytest.raises(ConfigError, match="give --model DIR: tasks pope_random"):
        EvalConfig(out=tmp_path, tasks="pope_random,vl_rewardbench", reward_model=reward_model).task_names()
    with pytest.raises(ConfigError, match="give --reward-model DIR or the judge"):
        EvalConfig(out=tmp_path, suite="rewardbench").task_names()
    out = tmp_path / "one"
    args = ["eval", "run", "--reward-model", str(reward_model), "--suite", "rewardbench", "--no-progress"]
    args += ["--device", "cpu"]  # the reward head goes where the model is put
    args += ["--source", f"vl_rewardbench={data['vl_rewardbench']}", "--out", str(out), "--bootstrap", "20"]
    assert cli(args) == 0
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    assert tasks["vl_rewardbench"]["status"] == "done"
    assert tasks["multimodal_rewardbench"] == {
        "dimension": "reward",
        "status": "skipped",
        "description": tasks["multimodal_rewardbench"]["description"],
        "reason": "needs --source multimodal_rewardbench=PATH, the benchmark's own data (it has no shapes-world "
        "version)",
    }


def test_a_pair_that_does_not_fit_max_length_is_refused_not_scored_in_part(cli, reward_model, data, tmp_path, capsys):
    """A response cut to fit would be rewarded in part (the head would read another token): refused, naming the
    record and the flag."""
    source = f"multimodal_rewardbench={data['multimodal_rewardbench']}"
    args = ["eval", "run", "--reward-model", str(reward_model), "--tasks", "multimodal_rewardbench", "--source"]
    capsys.readouterr()
    assert cli([*args, source, "--out", str(tmp_path / "run"), "--no-progress", "--max-length", "120"]) == 2
    err = capsys.readouterr().err
    assert "the prompt and response are over max_length 120 tokens" in err and "--max-length" in err
