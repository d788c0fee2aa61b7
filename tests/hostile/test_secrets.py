"""The judge's API key never reaches a file, a log, a cache or a message, even from a server that echoes it.

The judge tests' fake server (tests/judge/conftest.py, bound to 127.0.0.1, closed by the fixture and by a
timer) answers here with the ``Authorization`` header it received and the key itself, raw and base64, in
its replies, its error bodies and its model name. After each case every file under the output and cache
folders, the captured stdout/stderr and the log records are searched for the key in those forms: absent.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mmalign_tests_judge_server
import pytest

from mmalign.judge import JudgeCache, JudgeClient, JudgeConfig, JudgeError
from mmalign.judge.secrets import MASK, scrub
from mmalign.world import WorldConfig, generate_world

pytestmark = pytest.mark.usefixtures("one_thread")

SERVER = mmalign_tests_judge_server  # the fake judge server, registered by tests/conftest.py
KEY = SERVER.SECRET


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FORMS = [KEY, b64(KEY), b64(f"Bearer {KEY}")]
"""The key as a server may echo it: raw, base64 of the key and of the header value."""


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="replace")
    return [form for form in FORMS if form.encode() in data]


def leaks_in_folder(*folders: Path) -> dict[str, list[str]]:
    """Every file under ``folders`` (SQLite files and their WAL included) that holds the key in some form."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and leaks(path.read_bytes()):
                found[str(path)] = leaks(path.read_bytes())
    return found


@pytest.fixture
def echo_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake judge with the key set; by default its replies echo the Authorization header and the key."""
    server = SERVER.FakeJudgeServer(api_key=KEY)
    monkeypatch.setenv(SERVER.KEY_ENV, KEY)

    def echo(request: dict[str, Any]) -> Any:
        auth = server.requests[-1]["headers"].get("authorization", "")  # every request carries the same header
        text = SERVER.last_user_text(request)
        verdict = "8 6" if "[Assistant 1]" in text else "[[A]]"
        return SERVER.Reply(f"{verdict}\nYou sent Authorization: {auth}. Key {KEY}, base64 {b64(auth)} {b64(KEY)}.")

    server.respond = echo
    server.close_after(120)  # a hung test never leaves the server behind
    yield server
    server.close()


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def client(server: Any, cache: Path, **options: Any) -> JudgeClient:
    config = {
        "base_url": server.url,
        "model": "fake-judge",
        "api_key_env": SERVER.KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_s": 0.001,
        "max_backoff_s": 0.01,
        "progress": False,
        "cache_path": str(cache),
    }
    return JudgeClient(JudgeConfig(**{**config, **options}))


# ------------------------------------------------------------------------------------------------ scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Incorrect API key provided: {KEY}", f"Incorrect API key provided: {MASK}"),
        (f"Authorization: Bearer {KEY}", f"Authorization: Bearer {MASK}"),
        ('{"authorization": "Bearer some-other-token-123"}', '{"authorization": "Bearer ***"}'),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {MASK}"),
        (f"proxy saw bearer {b64(KEY)}", f"proxy saw bearer {MASK}"),
        (f"echo {b64('Bearer ' + KEY)} done", f"echo {MASK} done"),
        (f"url ?key={KEY.replace('-', '%2D')}", "url ?key=" + KEY.replace("-", "%2D")),  # quote() keeps '-'
        ("A bearer holding 3 flags; Basic shapes: a circle.", "A bearer holding 3 flags; Basic shapes: a circle."),
        ("Rating: [[7]]", "Rating: [[7]]"),
    ],
)
def test_scrub(text, expected):
    assert scrub(text, [KEY]) == expected


def test_a_short_key_is_only_removed_as_a_credential():
    # "none" as a placeholder key for a local server: removing every "none" would corrupt the replies
    assert scrub("There is none. Authorization: none", ["none"]) == f"There is none. Authorization: {MASK}"


# ------------------------------------------------------------------------------------------------ client


def test_replies_are_cached_and_returned_without_the_key(echo_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache" / "judge.sqlite"
    with client(echo_server, cache) as judge:
        texts = judge.complete_many([ask(f"q{i}") for i in range(3)])
    assert len(echo_server.requests) == 3
    assert all(text.startswith("[[A]]\nYou sent Authorization: Bearer ***") for text in texts), texts
    assert not any(leaks(t) for t in texts)
    assert leaks_in_folder(tmp_path) == {}
    assert not leaks(caplog.text)


def test_a_model_name_and_usage_that_echo_the_key_are_not_cached(echo_server, tmp_path):
    body = SERVER.completion("[[B]]", model=f"judge-for-{KEY}")
    body["usage"]["note"] = f"billed to {KEY}"
    echo_server.queue(SERVER.Reply(body=body))
    with client(echo_server, tmp_path / "judge.sqlite") as judge:
        assert judge.complete(ask("x")) == "[[B]]"
    assert leaks_in_folder(tmp_path) == {}


def test_a_cache_written_with_the_key_does_not_give_it_back(echo_server, tmp_path):
    cache_path = tmp_path / "old.sqlite"
    with client(echo_server, cache_path) as judge:
        key = judge.key(ask("old"))
    old = JudgeCache(cache_path)  # as an mmalign before scrubbing would have stored an echoing reply
    old.put(key, f"Rating: [[7]] (you sent Bearer {KEY})", model="fake-judge")
    old.close()
    with client(echo_server, cache_path) as judge:
        assert judge.complete(ask("old")) == "Rating: [[7]] (you sent Bearer ***)"
    assert echo_server.requests == []  # from the cache


def _error_body(status: int) -> Any:
    return {"error": {"message": f"request {status} rejected; headers were Authorization: Bearer {KEY}"}}


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 400, "body": _error_body(400)},  # refused, not retried
        {"status": 500, "body": _error_body(500), "headers": {"Retry-After": "0"}},  # retried, then given up
        {"status": 404, "body": f"<html>no route; you sent {KEY}</html>".encode()},  # an HTML error page
        {"status": 200, "body": _error_body(200)},  # 200 with an error object
        {"status": 200, "body": f"not json {KEY}".encode()},
        {"status": 200, "body": {"choices": [{"message": {"content": None, "refusal": f"no, {KEY}"}}]}},
        {"status": 200, "body": {"unexpected": KEY}},
    ],
    ids=["400", "500-retried", "404-html", "200-error", "200-not-json", "refusal", "no-choices"],
)
def test_errors_quoting_the_server_never_quote_the_key(echo_server, tmp_path, caplog, reply):
    caplog.set_level(logging.DEBUG)
    echo_server.respond = lambda request: SERVER.Reply(**reply)
    with client(echo_server, tmp_path / "judge.sqlite") as judge:
        with pytest.raises(JudgeError) as err:
            judge.complete(ask("x"))
        answers = judge.complete_many([ask("y")], return_errors=True)
    assert not leaks(str(err.value)) and not leaks(repr(err.value)) and not leaks(str(answers[0]))
    assert not leaks(caplog.text)
    assert leaks_in_folder(tmp_path) == {}


def test_a_refused_key_is_named_by_its_variable_never_by_its_value(echo_server, tmp_path, monkeypatch):
    wrong = "sk-wrong-0123456789abcdef"
    monkeypatch.setenv(SERVER.KEY_ENV, wrong)  # the fake server answers 401 quoting the header it got
    with client(echo_server, tmp_path / "judge.sqlite") as judge, pytest.raises(JudgeError) as err:
        judge.complete(ask("x"))
    assert SERVER.KEY_ENV in str(err.value) and wrong not in str(err.value) and "Bearer ***" in str(err.value)


def test_the_data_builders_judge_scorer_caches_no_key(echo_server, tmp_path):
    from mmalign.data.records import user_prompt
    from mmalign.pairs import scorers

    echo_server.respond = lambda request: SERVER.Reply(f"Rating: [[7]] (you sent Bearer {KEY})")
    options = scorers.JudgeOptions(
        base_url=echo_server.url,
        model="fake-judge",
        api_key_env=SERVER.KEY_ENV,
        timeout_s=5.0,
        max_retries=0,
        progress=False,
    )
    context = scorers.ScoreContext("p-1", "Describe the image.", user_prompt("Describe the image."))
    try:
        assert scorers.JudgeScorer(options, tmp_path).score(["A red circle.", "A star."], context) == [7.0, 7.0]
    finally:
        scorers.clear_cache()
    assert (tmp_path / scorers.DEFAULT_JUDGE_CACHE).is_file()
    assert leaks_in_folder(tmp_path) == {}


# ---------------------------------------------------------------------------------------------- eval run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets") / "world"
    generate_world(out, WorldConfig(train_scenes=4, val_scenes=0, test_scenes=2))
    return out


def eval_args(server: Any, model: Path, world: Path, out: Path, tasks: str = "dialogue,preference") -> list[str]:
    return [
        "eval",
        "run",
        "--model",
        str(model),
        "--data",
        str(world),
        "--out",
        str(out),
        "--tasks",
        tasks,
        "--limit",
        "2",
        "--max-new-tokens",
        "3",
        "--no-progress",
        "--bootstrap",
        "20",
        "--judge-url",
        server.url,
        "--judge-model",
        "fake-judge",
        "--judge-key-env",
        SERVER.KEY_ENV,
    ]


def test_an_echoing_judge_leaves_no_key_in_a_run(echo_server, world, tiny_dir, tmp_path, cli_run, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "run"
    code, stdout, stderr = cli_run(eval_args(echo_server, tiny_dir("tiny-llava"), world, out))
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["dialogue"]["metrics"]["relative_score"] == 75.0  # 100 × 6 / 8, the echo aside
    rows = [json.loads(line) for line in (out / "judgments" / "dialogue.jsonl").read_text().splitlines()]
    assert all("Authorization: Bearer ***" in row["raw"] for row in rows)
    assert (out / "judge.sqlite").is_file()
    assert leaks_in_folder(out) == {}
    assert not leaks(stdout) and not leaks(stderr) and not leaks(caplog.text)


def test_an_echoing_judge_that_fails_leaves_no_key_in_the_error(echo_server, world, tiny_dir, tmp_path, cli_run):
    echo_server.respond = lambda request: SERVER.Reply(status=400, body=_error_body(400))
    out = tmp_path / "run"
    code, stdout, stderr = cli_run(eval_args(echo_server, tiny_dir("tiny-llava"), world, out))
    assert code == 2 and "Traceback" not in stderr
    assert "HTTP 400" in stderr and "Authorization: Bearer ***" in stderr
    assert leaks_in_folder(out) == {}
    assert not leaks(stdout) and not leaks(stderr)
