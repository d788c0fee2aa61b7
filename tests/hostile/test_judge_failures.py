"""A judged task whose judgments fail is reported as failed, with the reason, never as a score.

Through the real CLI (in-process) against the judge tests' fake server (127.0.0.1, closed by the fixture):
a judge that fails every call (after its retries), one that fails some, one whose replies cannot be read,
one that refuses the key. Each failed case exits with code 2 and one line naming the task and the cause, no
traceback; results.json and report.md are still written (status "failed", no metrics, no summary); partial
failures below ``--judge-max-failed`` are counted and the score is computed over the judgments that succeeded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mmalign_tests_judge_server
import pytest

from mmalign.errors import DataError
from mmalign.eval.run.judging import tally
from mmalign.eval.scoring.rescore import dialogue_score
from mmalign.world import WorldConfig, generate_world

pytestmark = pytest.mark.usefixtures("one_thread")

SERVER = mmalign_tests_judge_server  # the fake judge server, registered by tests/conftest.py


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake judge, rating every dialogue answer "8 6" (reference 8, answer 6) and calling A the winner."""
    server = SERVER.FakeJudgeServer(api_key=SERVER.SECRET)
    monkeypatch.setenv(SERVER.KEY_ENV, SERVER.SECRET)
    server.respond = lambda request: SERVER.Reply(
        "8 6" if "[Assistant 1]" in SERVER.last_user_text(request) else "[[A]]"
    )
    server.close_after(120)  # a hung test never leaves the server behind
    yield server
    server.close()


def failing_first(server: Any, n: int, reply: Any) -> None:
    """The first ``n`` requests to arrive get ``reply``; the others the server's usual answer."""
    usual, lock, seen = server.respond, threading.Lock(), [0]

    def respond(request: dict[str, Any]) -> Any:
        with lock:
            seen[0] += 1
            mine = seen[0]
        return reply if mine <= n else usual(request)

    server.respond = respond


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("judge-failures") / "world"
    generate_world(out, WorldConfig(train_scenes=4, val_scenes=0, test_scenes=10))
    return out


@pytest.fixture(scope="module")
def answers_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One resume cache for the module: the model's answers are generated once."""
    return tmp_path_factory.mktemp("answers-cache")


def run_eval(cli_run, server, tiny_dir, world, cache, out, tasks="dialogue", limit=10, *extra) -> tuple[int, str, str]:
    args = [
        "eval",
        "run",
        "--model",
        str(tiny_dir("tiny-llava")),
        "--data",
        str(world),
        "--out",
        str(out),
        "--tasks",
        tasks,
        "--limit",
        str(limit),
        "--max-new-tokens",
        "3",
        "--no-progress",
        "--bootstrap",
        "20",
        "--cache-dir",
        str(cache),
        "--judge-url",
        server.url,
        "--judge-model",
        "fake-judge",
        "--judge-key-env",
        SERVER.KEY_ENV,
        *extra,
    ]
    return cli_run(args)


def one_line_error(code: int, err: str) -> str:
    """The error line, after checking the exit code, the single line (progress bars aside), no traceback."""
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, err
    return lines[0]


def failed_entry(out: Path, task: str) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text())
    entry = results["tasks"][task]
    assert entry["status"] == "failed"
    assert "metrics" not in entry and "summary" not in entry and "intervals" not in entry
    assert task not in json.dumps(results["dimensions"])
    assert f"**{task}**: {entry['reason']}" in (out / "report.md").read_text()
    return entry


def test_a_judge_that_fails_every_call_fails_both_judged_tasks(
    judge, world, tiny_dir, answers_cache, tmp_path, cli_run
):
    # HTTP 500 asking for no wait: each request is retried 5 times at once, then given up
    judge.respond = lambda request: SERVER.Reply(status=500, headers={"Retry-After": "0"})
    out = tmp_path / "run"
    code, _, err = run_eval(cli_run, judge, tiny_dir, world, answers_cache, out, "dialogue,preference", 2)
    line = one_line_error(code, err)
    assert line.startswith("error: 2 of 2 tasks failed, with no score (dialogue: every judgment failed (2 of 2;")
    assert "preference: every judgment failed (2 of 2;" in line and "gave up after 6 attempts: HTTP 500" in line
    dialogue = failed_entry(out, "dialogue")
    assert dialogue["judge"]["n_failed"] == 2 and dialogue["judge"]["failed_fraction"] == 1.0
    failed_entry(out, "preference")
    rows = [json.loads(x) for x in (out / "judgments" / "dialogue.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [None, None] and all("HTTP 500" in r["error"] for r in rows)
    assert len(judge.requests) == 6 * (2 + 2 * 2)  # bounded: 6 attempts per request, no more


def test_failures_up_to_the_stated_fraction_are_counted_and_left_out_of_the_score(
    judge, world, tiny_dir, answers_cache, tmp_path, cli_run
):
    failing_first(judge, 1, SERVER.Reply(status=400))  # one of ten judgments refused (not retried)
    out = tmp_path / "run"
    code, _, err = run_eval(cli_run, judge, tiny_dir, world, answers_cache, out)
    assert code == 0, err
    entry = json.loads((out / "results.json").read_text())["tasks"]["dialogue"]
    assert entry["status"] == "done"
    assert entry["judge"]["n"] == 10 and entry["judge"]["n_failed"] == 1 and entry["judge"]["failed_fraction"] == 0.1
    # 100 × (9 × 6) / (9 × 8) = 75, over the nine that succeeded
    assert entry["metrics"]["relative_score"] == 75.0
    assert (entry["metrics"]["n"], entry["metrics"]["n_scored"], entry["metrics"]["n_failed"]) == (10, 9, 1)
    assert (
        "- dialogue: 10 judgments, 1 failed (10.0%; at most 10.0% allowed): scored over the 9 that succeeded"
        in (out / "report.md").read_text()
    )


def test_more_failures_than_the_stated_fraction_fail_the_task(judge, world, tiny_dir, answers_cache, tmp_path, cli_run):
    failing_first(judge, 2, SERVER.Reply(status=400))
    out = tmp_path / "run"
    code, _, err = run_eval(cli_run, judge, tiny_dir, world, answers_cache, out)
    line = one_line_error(code, err)
    assert "dialogue: 20.0 % of the judgments failed (2 of 10; --judge-max-failed is 0.1)" in line
    assert "HTTP 400" in line
    assert failed_entry(out, "dialogue")["judge"]["n_failed"] == 2
    # the same judgments pass with a looser limit, from the judge's cache (only the failed two are asked again)
    failing_first(judge, 2, SERVER.Reply(status=400))
    before = len(judge.requests)
    code, _, err = run_eval(
        cli_run, judge, tiny_dir, world, answers_cache, out, "dialogue", 10, "--judge-max-failed", "0.25"
    )
    assert code == 0, err
    assert len(judge.requests) - before == 2


def test_unreadable_replies_are_failed_judgments(judge, world, tiny_dir, answers_cache, tmp_path, cli_run):
    judge.respond = lambda request: SERVER.Reply("I would rather not give numbers.")
    out = tmp_path / "run"
    code, _, err = run_eval(cli_run, judge, tiny_dir, world, answers_cache, out, "dialogue", 2)
    line = one_line_error(code, err)
    assert "every judgment failed (2 of 2;" in line and "unreadable reply: 'I would rather not give numbers.'" in line
    failed_entry(out, "dialogue")


def test_a_refused_key_fails_the_judged_tasks_and_names_the_variable(
    judge, world, tiny_dir, answers_cache, tmp_path, cli_run, monkeypatch
):
    monkeypatch.setenv(SERVER.KEY_ENV, "sk-wrong-0123456789abcdef")
    out = tmp_path / "run"
    code, stdout, err = run_eval(cli_run, judge, tiny_dir, world, answers_cache, out, "dialogue,preference", 2)
    line = one_line_error(code, err)
    assert f"HTTP 401, the API key in ${SERVER.KEY_ENV} was refused" in line
    assert "sk-wrong" not in line + stdout + (out / "results.json").read_text()
    failed_entry(out, "dialogue")
    failed_entry(out, "preference")


@pytest.mark.parametrize(
    ("errors", "limit", "n_failed", "reason"),
    [
        ([None] * 10, 0.1, 0, None),
        ([None] * 9 + ["x"], 0.1, 1, None),  # 1/10 = 10 %: not more than the limit
        (
            [None] * 8 + ["x", "y"],
            0.1,
            2,
            "20.0 % of the judgments failed (2 of 10; --judge-max-failed is 0.1)",
        ),
        (["x"], 1.0, 1, "every judgment failed (1 of 1;"),  # all failed is a failure whatever the limit
        ([None, "x"], 0.0, 1, "50.0 % of the judgments failed"),
    ],
)
def test_tally(errors, limit, n_failed, reason):
    result = tally(errors, limit)
    assert result["n"] == len(errors) and result["n_failed"] == n_failed
    assert result["reason"] is None if reason is None else reason in result["reason"]


def test_no_scored_judgment_is_an_error_not_a_zero(tmp_path):
    path = tmp_path / "dialogue.jsonl"
    path.write_text(json.dumps({"id": "a", "score": None, "reference_score": None, "error": "HTTP 500"}) + "\n")
    with pytest.raises(DataError, match="no judgment has both scores"):
        dialogue_score(path)
