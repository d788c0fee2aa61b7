"""The judgment cache: hits cost no request, a crashed run resumes paying only for what is missing, keys."""

from __future__ import annotations

import base64
import io
import sqlite3
import threading

import pytest
from PIL import Image

from mmalign.errors import ConfigError
from mmalign.judge import JudgeCache, JudgeUnavailableError, image_data_url, judgment_key


def ask(text: str, image_url: str | None = None) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": image_url}}] if image_url else []
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def echo(server):
    return lambda request: server.Reply(f"answer to {server.last_user_text(request)}")


def test_cache_hit_sends_no_request(server, make_client, tmp_path):
    server.respond = echo(server)
    cache_path = str(tmp_path / "judge.sqlite")
    judge = make_client(cache_path=cache_path)
    questions = [ask(f"q{i}") for i in range(5)]
    first = judge.complete_many(questions)
    assert len(server.requests) == 5
    assert judge.complete_many(questions) == first
    assert len(server.requests) == 5 and judge.stats.cache_hits == 5
    # A new client (a rerun in a new process) over the same file: still nothing sent.
    again = make_client(cache_path=cache_path)
    assert again.complete_many(questions) == first
    assert len(server.requests) == 5 and again.stats.attempts == 0


def test_rerun_after_crash_pays_only_for_missing(server, make_client, tmp_path):
    cache_path = str(tmp_path / "judge.sqlite")
    judge = make_client(cache_path=cache_path, max_concurrency=1, max_retries=0)
    broken = {"q3"}
    server.respond = lambda request: (
        server.Reply(status=500) if server.last_user_text(request) in broken else echo(server)(request)
    )
    questions = [ask(f"q{i}") for i in range(10)]
    with pytest.raises(JudgeUnavailableError):
        judge.complete_many(questions)
    paid_first = [server.last_user_text(r["json"]) for r in server.requests]
    saved = set(paid_first) - broken
    assert {"q0", "q1", "q2"} <= saved and len(paid_first) < 10  # the run stopped early
    # No close(): the cache must already hold every judgment received (committed one by one).
    broken.clear()
    server.requests.clear()
    rerun = make_client(cache_path=cache_path)
    answers = rerun.complete_many(questions)
    assert answers == [f"answer to q{i}" for i in range(10)]
    paid_again = {server.last_user_text(r["json"]) for r in server.requests}
    assert paid_again == {f"q{i}" for i in range(10)} - saved
    assert rerun.stats.cache_hits == len(saved)


def test_identical_requests_in_one_batch_are_sent_once(server, make_client, tmp_path):
    server.respond = echo(server)
    judge = make_client()
    out = judge.complete_many([ask("same"), ask("other"), ask("same")])
    assert out == ["answer to same", "answer to other", "answer to same"]
    assert len(server.requests) == 2


def test_cached_judgments_need_no_key(server, make_client, tmp_path, monkeypatch):
    cache_path = str(tmp_path / "judge.sqlite")
    make_client(cache_path=cache_path).complete_many([ask("q")])
    monkeypatch.delenv(server.key_env)
    assert make_client(cache_path=cache_path).complete(ask("q")) == "Rating: [[7]]"
    assert len(server.requests) == 1


def test_key_and_images_never_stored(server, make_client, tmp_path):
    cache_path = tmp_path / "judge.sqlite"
    url = image_data_url(Image.new("RGB", (64, 64), (200, 10, 10)))
    judge = make_client(cache_path=str(cache_path))
    judge.complete_many([ask(f"q{i}", url) for i in range(3)])
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("judge.sqlite"))
    assert len(judge.cache) == 3
    assert server.api_key.encode() not in stored
    assert url.split(",")[1][:40].encode() not in stored
    with sqlite3.connect(cache_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        usage = conn.execute("SELECT usage FROM judgments LIMIT 1").fetchone()[0]
    assert '"prompt_tokens": 11' in usage


def test_threads_share_one_cache(server, make_client, tmp_path):
    server.respond = echo(server)
    judge = make_client(cache_path=str(tmp_path / "c.sqlite"), max_concurrency=4)
    threads = [
        threading.Thread(target=judge.complete_many, args=([ask(f"t{n}-{i}") for i in range(6)],)) for n in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(judge.cache) == 18
    assert judge.cache.get(judge.key(ask("t2-5"))) == "answer to t2-5"


def _png_url(colour: tuple[int, int, int], compress_level: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_key_covers_what_changes_the_answer():
    base = {
        "base_url": "http://h/v1",
        "model": "m",
        "messages": ask("q", _png_url((1, 2, 3), 6)),
        "params": {"temperature": 0.0},
        "rubric_version": "v1",
    }
    key = judgment_key(**base)
    assert len(key) == 64
    assert judgment_key(**{**base, "base_url": "http://h/v1/"}) == key  # a trailing slash is the same endpoint
    changed = [
        {"base_url": "http://other/v1"},
        {"model": "m2"},
        {"messages": ask("q2", _png_url((1, 2, 3), 6))},
        {"messages": ask("q", _png_url((1, 2, 4), 6))},  # one pixel value differs
        {"params": {"temperature": 0.7}},
        {"rubric_version": "v2"},
    ]
    for change in changed:
        assert judgment_key(**{**base, **change}) != key, change


def test_key_hashes_image_bytes():
    # Same pixels in another PNG encoding are other bytes, so another key (the judge sees other bytes too).
    url, other_bytes = _png_url((9, 9, 9), 6), _png_url((9, 9, 9), 0)
    assert other_bytes != url
    keys = {judgment_key(base_url="u", model="m", messages=ask("q", u), params={}) for u in (url, other_bytes)}
    assert len(keys) == 2
    # The key is built from a digest of the decoded bytes: the mime label alone does not matter.
    relabelled = url.replace("data:image/png", "data:image/x-png")
    assert judgment_key(base_url="u", model="m", messages=ask("q", relabelled), params={}) in keys


def test_not_a_database_is_a_config_error(tmp_path):
    path = tmp_path / "judge.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite database"):
        JudgeCache(path)


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "judge.sqlite"
    JudgeCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99"):
        JudgeCache(path)
