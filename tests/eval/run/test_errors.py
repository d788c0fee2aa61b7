"""Bad input to ``mmalign eval run``: one clear line on stderr, exit code 2, nothing from deep inside."""

from __future__ import annotations

import shutil

import pytest


def run(cli, capsys, *args: str) -> str:
    assert cli(["eval", "run", "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    return " ".join(err.split())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "popes,chair"], "unknown task 'popes'; choose from: pope_random"),
        (["--tasks", "mme", "--suite", "quick"], "give --tasks or --suite"),
        ([], "give --tasks or --suite"),
        (["--suite", "everything"], "unknown suite 'everything'"),
        (["--tasks", "mme", "--source", "mc=x.jsonl"], "--source names task 'mc', which is not being run"),
        (["--tasks", "mme", "--source", "mme"], "--source takes TASK=PATH"),
        (["--tasks", "mme", "--judge-url", "http://127.0.0.1:1/v1"], "give both --judge-url and --judge-model"),
        (["--tasks", "mme", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--tasks", "mme", "--split", "train"], "--split must be val or test"),
    ],
)
def test_usage_errors(cli, capsys, models, world_dir, tmp_path, extra, message):
    args = ["--model", str(models["base"]), "--data", str(world_dir), "--out", str(tmp_path / "o"), *extra]
    assert message in run(cli, capsys, *args)


def test_eval_with_options_is_eval_run(cli, capsys, tmp_path):
    """``mmalign eval --model DIR ...`` is the shorthand of ``mmalign eval run --model DIR ...``."""
    assert (
        cli(
            [
                "eval",
                "--no-progress",
                "--model",
                str(tmp_path / "nope"),
                "--tasks",
                "pope,chair",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "does not exist" in err and "No such command" not in err


def test_pope_stands_for_its_three_splits():
    from mmalign.eval.tasks.specs import parse_task_list

    assert parse_task_list("pope, chair, pope_random") == ["pope_random", "pope_popular", "pope_adversarial", "chair"]


def test_missing_model_and_world(cli, capsys, models, tmp_path):
    assert "does not exist" in run(
        cli, capsys, "--model", str(tmp_path / "nope"), "--tasks", "mme", "--out", str(tmp_path / "o")
    )
    message = run(
        cli,
        capsys,
        "--model",
        str(models["base"]),
        "--tasks",
        "mme",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    )
    assert "world.json is missing" in message


def test_missing_image_names_the_record(cli, capsys, models, world_dir, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(world_dir, world)
    (world / "images" / "test" / "000003.png").unlink()
    message = run(
        cli,
        capsys,
        "--model",
        str(models["base"]),
        "--data",
        str(world),
        "--out",
        str(tmp_path / "o"),
        "--tasks",
        "pope_random",
    )
    assert "(id 'test-000003-pope_random-0')" in message and "images[0]" in message and "task pope_random" in message


def test_malformed_benchmark_lines(cli, capsys, models, world_dir, tmp_path):
    pope = tmp_path / "coco_pope_random.json"
    pope.write_text(
        '{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\n{"question_id": 2,\n'
    )
    base = ["--model", str(models["base"]), "--data", str(world_dir), "--out", str(tmp_path / "o")]
    message = run(cli, capsys, *base, "--tasks", "pope_random", "--source", f"pope_random={pope}")
    assert f"{pope}, line 2: not valid JSON" in message
    pope.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "maybe"}\n')
    message = run(cli, capsys, *base, "--tasks", "pope_random", "--source", f"pope_random={pope}")
    assert "line 1 (id '1'), field 'label': label must be 'yes' or 'no'" in message
    items = tmp_path / "mc.jsonl"
    items.write_text('{"id": "q1", "task": "mc", "question": "Which?", "answer": "A"}\n')
    message = run(cli, capsys, *base, "--tasks", "mc", "--source", f"mc={items}")
    assert "(id 'q1'), field 'choices': a multiple-choice item needs choices" in message
    message = run(cli, capsys, *base, "--tasks", "mc", "--source", f"mc={tmp_path / 'absent.jsonl'}")
    assert "absent.jsonl: benchmark file or directory not found" in message
