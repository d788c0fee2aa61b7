"""The judge client against a fake OpenAI-compatible server: payload, auth, retries, timeouts, concurrency."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from mmalign.config import config_from_dict
from mmalign.errors import ConfigError, DataError
from mmalign.judge import (
    JudgeAuthError,
    JudgeClient,
    JudgeConfig,
    JudgeError,
    JudgeRequestError,
    JudgeResponseError,
    JudgeUnavailableError,
)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def test_request_payload_auth_and_answer(server, make_client):
    judge = make_client(temperature=0.0, max_tokens=64, seed=3, extra_body={"top_p": 0.5})
    server.queue(server.Reply("Rating: [[9]]"))
    assert judge.complete(ask("rate this")) == "Rating: [[9]]"
    (request,) = server.requests
    assert request["headers"]["authorization"] == f"Bearer {server.api_key}"
    assert request["headers"]["content-type"] == "application/json"
    assert request["json"] == {
        "model": "fake-judge",
        "messages": ask("rate this"),
        "temperature": 0.0,
        "max_tokens": 64,
        "seed": 3,
        "top_p": 0.5,
    }
    assert (judge.stats.completed, judge.stats.attempts, judge.stats.prompt_tokens) == (1, 1, 11)


def test_optional_sampling_fields_are_left_out(server, make_client):
    judge = make_client(temperature=None, max_tokens=None, extra_body={"max_completion_tokens": 99})
    judge.complete(ask("x"))
    body = server.requests[0]["json"]
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == 99


def test_429_waits_for_retry_after_then_succeeds(server, make_client):
    judge = make_client(max_backoff_s=5.0)
    server.queue(server.Reply(status=429, headers={"Retry-After": "0.3"}), server.Reply("ok"))
    assert judge.complete(ask("x")) == "ok"
    first, second = server.requests
    assert second["t"] - first["t"] >= 0.28  # honoured the server's 0.3 s, not our 1 ms backoff
    assert judge.stats.retries == 1


def test_retry_after_is_capped(server, make_client):
    judge = make_client(max_backoff_s=0.05)
    server.queue(server.Reply(status=429, headers={"Retry-After": "120"}), server.Reply("ok"))
    start = time.monotonic()
    assert judge.complete(ask("x")) == "ok"
    assert time.monotonic() - start < 2.0  # waited the 0.05 s cap, not 120 s
    assert len(server.requests) == 2


def test_retry_after_ms_header_is_read(server, make_client):
    judge = make_client(max_backoff_s=5.0)
    server.queue(server.Reply(status=503, headers={"retry-after-ms": "250"}), server.Reply("ok"))
    assert judge.complete(ask("x")) == "ok"
    first, second = server.requests
    assert second["t"] - first["t"] >= 0.23


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_transient_statuses_are_retried(server, make_client, status):
    judge = make_client(max_retries=3)
    server.queue(server.Reply(status=status), server.Reply(status=status), server.Reply("fine"))
    assert judge.complete(ask("x")) == "fine"
    assert len(server.requests) == 3


def test_backoff_doubles_with_jitter(server, make_client):
    judge = make_client(backoff_s=0.1, max_backoff_s=10.0)
    delays = [judge.transport._delay(attempt, None) for attempt in range(4)]
    # base 0.1 * 2**attempt, times a jitter factor in [0.5, 1]
    for attempt, delay in enumerate(delays):
        assert 0.05 * 2**attempt <= delay <= 0.1 * 2**attempt
    assert judge.transport._delay(0, 3.0) == 3.0  # Retry-After wins over backoff, below the cap
    assert judge.transport._delay(0, 30.0) == 10.0


def test_retries_exhausted_is_a_clear_error(server, make_client):
    judge = make_client(max_retries=2)
    server.respond = lambda request: server.Reply(status=503)
    with pytest.raises(JudgeUnavailableError) as err:
        judge.complete(ask("x"))
    assert len(server.requests) == 3
    assert err.value.status == 503
    message = str(err.value)
    assert "gave up after 3 attempts" in message and "HTTP 503" in message and "scripted error 503" in message
    assert server.url in message


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(server, make_client, status):
    judge = make_client()
    server.respond = lambda request: server.Reply(status=status)
    with pytest.raises(JudgeRequestError, match=f"HTTP {status}: scripted error {status}"):
        judge.complete(ask("x"))
    assert len(server.requests) == 1


def test_wrong_key_is_an_auth_error_without_the_key(server, make_client, monkeypatch, caplog):
    wrong = "sk-wrong-key-0000000000"
    judge = make_client()
    monkeypatch.setenv(server.key_env, wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(JudgeAuthError) as err:
        judge.complete(ask("x"))
    assert len(server.requests) == 1  # 401 is never retried
    text = str(err.value)
    assert "HTTP 401" in text and server.key_env in text and "refused" in text
    assert "Incorrect API key provided: Bearer ***" in text  # the server echoed the key; it was scrubbed
    assert wrong not in text and wrong not in repr(err.value) and wrong not in caplog.text


def test_missing_key_variable_sends_no_header_and_says_what_to_set(server, make_client, monkeypatch):
    judge = make_client()
    monkeypatch.delenv(server.key_env)
    with pytest.raises(JudgeAuthError, match=f"no API key was sent: set the environment variable {server.key_env}"):
        judge.complete(ask("x"))
    assert "authorization" not in server.requests[0]["headers"]


def test_server_without_auth_needs_no_key(server, make_client, monkeypatch):
    server.api_key = None
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = make_client(api_key_env="OPENAI_API_KEY")
    assert judge.complete(ask("x")) == "Rating: [[7]]"
    assert "authorization" not in server.requests[0]["headers"]
    judge = make_client(api_key_env=None)  # never send one, even if a variable is set
    assert judge.complete(ask("y")) == "Rating: [[7]]"
    assert "authorization" not in server.requests[1]["headers"]


def test_key_never_logged_during_retries(server, make_client, caplog):
    judge = make_client(max_retries=1)
    server.respond = lambda request: server.Reply(
        status=500, body={"error": {"message": f"upstream saw Bearer {server.api_key}"}}
    )
    with caplog.at_level(logging.DEBUG, logger="mmalign"), pytest.raises(JudgeUnavailableError) as err:
        judge.complete(ask("x"))
    assert "retry 1/1" in caplog.text and "upstream saw Bearer ***" in caplog.text
    assert server.api_key not in caplog.text and server.api_key not in str(err.value)
    assert server.api_key not in repr(judge) and server.api_key not in repr(judge.config)


def test_timeout_then_retry_succeeds(server, make_client):
    judge = make_client(timeout_s=0.2, max_retries=2)
    server.queue(server.Reply("late", delay=1.0), server.Reply("on time"))
    start = time.monotonic()
    assert judge.complete(ask("x")) == "on time"
    assert time.monotonic() - start < 0.9  # gave up on the slow answer at 0.2 s
    assert len(server.requests) == 2


def test_timeouts_exhausted(server, make_client):
    judge = make_client(timeout_s=0.15, max_retries=1)
    server.respond = lambda request: server.Reply("late", delay=0.6)
    with pytest.raises(JudgeUnavailableError, match=r"gave up after 2 attempts: timed out after 0.15 s"):
        judge.complete(ask("x"))
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = JudgeClient(
        JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff_s=0.001, progress=False)
    )
    with pytest.raises(JudgeUnavailableError, match="gave up after 2 attempts: could not connect"):
        judge.complete(ask("x"))
    assert judge.stats.attempts == 2


def test_concurrency_bound_is_respected(server, make_client):
    judge = make_client(max_concurrency=3)
    server.respond = lambda request: server.Reply(server.last_user_text(request), delay=0.05)
    texts = [f"q{i}" for i in range(12)]
    assert judge.complete_many([ask(t) for t in texts]) == texts  # answers come back in order
    assert server.max_in_flight == 3


def test_concurrency_bound_holds_across_threads(server, make_client):
    judge = make_client(max_concurrency=2)
    server.respond = lambda request: server.Reply(server.last_user_text(request), delay=0.04)
    results: dict[int, list] = {}

    def run(n: int) -> None:
        results[n] = judge.complete_many([ask(f"t{n}-{i}") for i in range(4)])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight == 2
    assert results[1] == [f"t1-{i}" for i in range(4)]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>Bad gateway page</html>", "not JSON: <html>Bad gateway page</html>"),
        ({"object": "list"}, "no 'choices'"),
        ({"choices": []}, "no 'choices'"),
        ({"choices": [{"message": {"content": None}, "finish_reason": "length"}]}, "raise max_tokens"),
        ({"choices": [{"message": {"content": None, "refusal": "I can't"}}]}, "refused: I can't"),
        ({"error": {"message": "model overloaded"}}, "with an error: model overloaded"),
    ],
)
def test_malformed_answers_are_clear_errors(server, make_client, body, needle):
    judge = make_client()
    server.queue(server.Reply(body=body))
    with pytest.raises(JudgeResponseError) as err:
        judge.complete(ask("x"))
    assert needle in str(err.value)
    assert len(server.requests) == 1


def test_content_parts_are_joined(server, make_client):
    judge = make_client()
    parts = [{"type": "text", "text": "Rating: "}, {"type": "text", "text": "[[4]]"}]
    server.queue(server.Reply(body={"choices": [{"message": {"content": parts}}]}))
    assert judge.complete(ask("x")) == "Rating: [[4]]"


def test_return_errors_keeps_the_rest(server, make_client):
    judge = make_client(max_concurrency=1)
    server.respond = lambda request: (
        server.Reply(status=400) if server.last_user_text(request) == "bad" else server.Reply("good")
    )
    out = judge.complete_many([ask("a"), ask("bad"), ask("c")], return_errors=True)
    assert out[0] == "good" and out[2] == "good"
    assert isinstance(out[1], JudgeRequestError) and out[1].status == 400
    with pytest.raises(JudgeRequestError):
        judge.complete_many([ask("bad")])


def test_auth_failure_stops_even_with_return_errors(server, make_client, monkeypatch):
    judge = make_client()
    monkeypatch.setenv(server.key_env, "sk-nope")
    with pytest.raises(JudgeAuthError):
        judge.complete_many([ask("a"), ask("b")], return_errors=True)


def test_redirects_are_not_followed(server, make_client):
    judge = make_client()
    server.queue(server.Reply(status=307, headers={"Location": "http://elsewhere.example/v1/chat/completions"}))
    with pytest.raises(JudgeRequestError, match=r"redirected \(HTTP 307\) to http://elsewhere.example"):
        judge.complete(ask("x"))
    assert len(server.requests) == 1


def test_bad_messages_are_data_errors(make_client):
    judge = make_client()
    with pytest.raises(DataError, match=r"record 1, field 'messages'"):
        judge.complete_many([ask("ok"), [{"content": "no role"}]])
    with pytest.raises(DataError, match="non-empty list"):
        judge.complete_many([[]])


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"base_url": "ftp://x/v1"}, "http(s) URL"),
        ({"base_url": "https://user:pw@host/v1"}, "must not hold credentials"),
        ({"max_concurrency": 0}, "key 'judge.max_concurrency' must be an integer >= 1, got 0"),
        ({"timeout_s": 0}, "key 'judge.timeout_s' must be a finite number > 0, got 0"),
        ({"max_retries": -1}, "key 'judge.max_retries' must be an integer >= 0, got -1"),
        ({"backoff_s": 2.0, "max_backoff_s": 1.0}, "below backoff_s"),
        ({"extra_body": {"stream": True}}, "may not set stream"),
        ({"extra_body": {"temperature": 1.0}}, "can't set both temperature and extra_body.temperature"),
        ({"max_tokens": 0}, "key 'judge.max_tokens' must be an integer >= 1, got 0"),
    ],
)
def test_bad_configs_fail_at_start(options, needle):
    with pytest.raises(ConfigError) as err:
        JudgeConfig(model="m", **options)
    assert needle in str(err.value)


def test_config_from_yaml_mapping_and_missing_model():
    config = config_from_dict(JudgeConfig, {"base_url": "http://localhost:8000/v1", "model": "j", "timeout_s": 5})
    assert config.timeout_s == 5.0 and config.api_key_env == "OPENAI_API_KEY"
    with pytest.raises(ConfigError, match="unknown key 'api_key'"):
        config_from_dict(JudgeConfig, {"model": "j", "api_key": "sk-123"})
    with pytest.raises(ConfigError, match=r"judge model is not set"):
        JudgeClient(JudgeConfig())


def test_errors_are_mmalign_errors():
    assert issubclass(JudgeAuthError, JudgeError)
    from mmalign.errors import MMAlignError

    assert issubclass(JudgeError, MMAlignError)


def test_every_option_is_documented_and_import_is_light():
    import subprocess
    import sys

    from mmalign.config import describe

    undocumented = [key for key, _, _, helptext in describe(JudgeConfig) if not helptext]
    assert undocumented == []
    # A fresh interpreter (the point of the subprocess): the judge must not pull in torch or transformers.
    code = "import sys, mmalign.judge; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
