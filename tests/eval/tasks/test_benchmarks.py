"""Public benchmark files as task inputs (``--source TASK=PATH``), read into items and run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmalign.errors import DataError
from mmalign.eval.tasks.benchmarks import CHAIR_PROMPT, benchmark_input
from mmalign.eval.tasks.specs import get_task

POPE_SAMPLE = Path(__file__).resolve().parents[4] / "shared" / "data" / "pope" / "sample_coco_pope_adversarial.jsonl"


def image(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 48), colour).save(path)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pope_question_file(tmp_path):
    inp = benchmark_input(get_task("pope_adversarial"), POPE_SAMPLE, tmp_path)
    assert len(inp.items) == 20 and inp.image_root == tmp_path
    first = inp.items[0]
    assert (first.id, first.answer, first.images, first.meta) == (
        "1",
        "yes",
        ["COCO_val2014_000000310196.jpg"],
        {"split": "adversarial"},
    )


def test_mme_eval_tool_directory(tmp_path):
    (tmp_path / "mme").mkdir()
    (tmp_path / "mme" / "existence.txt").write_text(
        "a.png\tIs there a dog? Please answer yes or no.\tYes\n"
        "a.png\tIs there a cat? Please answer yes or no.\tNo\tNo\n"
    )
    image(tmp_path / "images" / "existence" / "images" / "a.png")
    inp = benchmark_input(get_task("mme"), tmp_path / "mme", tmp_path / "images")
    assert [i.id for i in inp.items] == ["existence/a.png#0", "existence/a.png#1"]
    assert [i.answer for i in inp.items] == ["yes", "no"]
    assert inp.items[0].images == ["existence/images/a.png"] and inp.items[0].meta["group"] == "existence/a.png"
    (tmp_path / "mme" / "existence.txt").write_text("a.png\tIs there a dog?\n")
    with pytest.raises(DataError, match=r"existence.txt, line 1: expected image<TAB>question<TAB>Yes\|No"):
        benchmark_input(get_task("mme"), tmp_path / "mme", None)


def test_coco_annotations_hallusion_llava_bench_and_pairs(tmp_path):
    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "instances_val2014.json").write_text(
        json.dumps(
            {"images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg"}], "annotations": [], "categories": []}
        )
    )
    inp = benchmark_input(get_task("chair"), coco, tmp_path)
    assert inp.annotations == coco and inp.items[0].question == CHAIR_PROMPT and inp.items[0].meta["image_id"] == 7

    hallusion = tmp_path / "HallusionBench.json"
    base = {"category": "VD", "subcategory": "illusion", "set_id": "0", "question_id": "0", "question": "Is it red?"}
    hallusion.write_text(
        json.dumps(
            [
                {**base, "figure_id": "0", "gt_answer": "1", "filename": "./VD/illusion/0_0.png", "visual_input": "1"},
                {**base, "figure_id": "1", "gt_answer": "0", "filename": "./VD/illusion/0_1.png", "visual_input": "1"},
            ]
        )
    )
    items = benchmark_input(get_task("consistency"), hallusion, tmp_path).items
    assert [(i.answer, i.images, i.meta["pair_id"]) for i in items] == [
        ("yes", ["VD/illusion/0_0.png"], "VD/illusion/0/q0"),
        ("no", ["VD/illusion/0_1.png"], "VD/illusion/0/q0"),
    ]

    bench = tmp_path / "llava-bench"
    jsonl(
        bench / "questions.jsonl", [{"question_id": 0, "image": "001.jpg", "text": "What is it?", "category": "conv"}]
    )
    jsonl(bench / "answers_gpt4.jsonl", [{"question_id": 0, "text": "A red square."}])
    jsonl(bench / "context.jsonl", [{"image": "001.jpg", "caption": "A red square on grey."}])
    image(bench / "images" / "001.jpg")
    (item,) = benchmark_input(get_task("dialogue"), bench, None).items
    assert (item.answer, item.images) == ("A red square.", ["images/001.jpg"])
    assert item.meta == {"category": "conv", "context": "A red square on grey."}
    (bench / "answers_gpt4.jsonl").write_text("")
    with pytest.raises(DataError, match="no reference answer"):
        benchmark_input(get_task("dialogue"), bench, None)

    image(tmp_path / "pairs" / "a.png")
    pair = {
        "id": "p0",
        "images": ["a.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        "chosen": [{"role": "assistant", "content": "A red square."}],
        "rejected": [{"role": "assistant", "content": "A red square and a dog."}],
        "meta": {"category": "object"},
    }
    pairs = benchmark_input(get_task("reward"), jsonl(tmp_path / "pairs" / "pairs.jsonl", [pair]), None).items
    assert pairs[0].chosen_text == "A red square." and pairs[0].meta["category"] == "object"


def test_pope_source_end_to_end_scores_with_the_official_question_file(cli, models, tmp_path):
    images = tmp_path / "coco"
    for row in map(json.loads, POPE_SAMPLE.read_text().splitlines()):
        if not (images / row["image"]).exists():
            image(images / row["image"], (40, 40 + 10 * row["question_id"], 200))
    out = tmp_path / "run"
    args = [
        "eval",
        "run",
        "--model",
        str(models["base"]),
        "--out",
        str(out),
        "--tasks",
        "pope_adversarial",
        "--source",
        f"pope_adversarial={POPE_SAMPLE}",
        "--image-root",
        str(images),
        "--no-progress",
        "--agreement-sample",
        "0",
    ]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    entry = results["tasks"]["pope_adversarial"]
    assert entry["source"] == str(POPE_SAMPLE) and entry["n_items"] == 20 and results["settings"]["data"] is None
    assert not (out / "world").exists()  # no world is generated when every task has a source
    report = tmp_path / "official.json"
    assert (
        cli(
            [
                "eval",
                "score",
                "--task",
                "pope",
                "--questions",
                str(POPE_SAMPLE),
                "--answers",
                str(out / entry["files"]["predictions"]),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    assert json.loads(report.read_text())["metrics"] == entry["metrics"]
