"""A fake OpenAI-compatible judge on 127.0.0.1, run in a thread by each test that needs it.

It answers ``POST /v1/chat/completions`` with scripted replies (queued :class:`Reply` objects first, then
``server.respond(request_json)``), can return any status with any headers, can be slow, checks the
``Authorization`` header, records every request, and counts how many were in flight at once. Tests reach
the helpers through the fixture (``server.Reply``, ``server.api_key``): under ``--import-mode=importlib`` a
test module cannot import from a conftest.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmalign.judge import JudgeClient, JudgeConfig

KEY_ENV = "MMALIGN_TEST_JUDGE_KEY"
SECRET = "sk-test-S3CRET-a1b2c3d4e5f6"


@dataclass
class Reply:
    """One scripted answer: a chat completion with ``text``, or ``status``/``body``/``headers`` as given."""

    text: str | None = "Rating: [[7]]"
    status: int = 200
    body: Any = None
    """Overrides the body: bytes as they are, anything else as JSON."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""


def completion(text: str | None, model: str = "fake-judge") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def last_user_text(request: dict[str, Any]) -> str:
    """The text parts of the last user message of a recorded request."""
    content = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


class FakeJudgeServer:
    """Tests cannot import from conftest (importlib mode), so helpers hang off the server fixture."""

    Reply = Reply
    key_env = KEY_ENV
    last_user_text = staticmethod(last_user_text)

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        """Each request: {"json": body, "headers": {lower-case name: value}, "t": arrival time}."""
        self.script: deque[Reply] = deque()
        self.respond: Callable[[dict[str, Any]], Reply] = lambda request: Reply()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.handle_error = lambda request, address: None  # clients that time out close early
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._timer: threading.Timer | None = None

    def close_after(self, seconds: float) -> None:
        """Close the server after ``seconds`` even if the test hangs (a fixture still calls :meth:`close`)."""
        self._timer = threading.Timer(seconds, self.close)
        self._timer.daemon = True
        self._timer.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def queue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def bodies(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.respond(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                request = json.loads(raw)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append({"json": request, "headers": headers, "t": time.monotonic()})
                auth = headers.get("authorization")
                if server.api_key is not None and auth != f"Bearer {server.api_key}":
                    # A careless server that echoes the credential it got: the client must scrub it.
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}", "code": "invalid"}})
                    return
                reply = server._next_reply(request)
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(reply.delay)
                finally:
                    # Counted down before answering: the client still holds its slot until it has read the
                    # answer, so a count taken here can never exceed the client's real concurrency.
                    with server._lock:
                        server.in_flight -= 1
                if reply.body is not None:
                    body = reply.body
                elif reply.status == 200:
                    body = completion(reply.text, request.get("model", "fake-judge"))
                else:
                    body = {"error": {"message": f"scripted error {reply.status}", "type": "test"}}
                self._send(reply.status, body, reply.headers)

        return Handler


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    fake = FakeJudgeServer(api_key=SECRET)
    yield fake
    fake.close()


@pytest.fixture
def make_client(server: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., JudgeClient]]:
    """``make_client(**config_overrides)``: a client of ``server`` with tiny delays, the test key set."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    clients: list[JudgeClient] = []

    def make(**overrides: Any) -> JudgeClient:
        options: dict[str, Any] = {
            "base_url": server.url,
            "model": "fake-judge",
            "api_key_env": KEY_ENV,
            "timeout_s": 5.0,
            "max_retries": 3,
            "backoff_s": 0.001,
            "max_backoff_s": 0.5,
            "progress": False,
        }
        options.update(overrides)
        client = JudgeClient(JudgeConfig(**options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
