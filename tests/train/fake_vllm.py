"""A fake vLLM server for the rollout-server tests: http.server on 127.0.0.1 (port 0) in a thread.

It answers the endpoints ``grpo.rollout: server`` calls (health, model list, chat completions, the dev-mode
weight-transfer endpoints, LoRA load/unload) and records every request (method, path, JSON body, headers) in order.
Chat completions are known token ids: completion g of a request is ``script(request, g)`` (ids and text), so a test
knows exactly what the trainer should have used. ``mode`` switches on the failures the client must report.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[[dict[str, Any], int], tuple[list[int], str]]


class FakeVLLM:
    """``with FakeVLLM(script) as server: server.url ...``; ``server.requests``: what arrived, in order."""

    def __init__(self, script: Script, served: str = "tiny-served", mode: str = "ok") -> None:
        self.script, self.served, self.mode = script, served, mode
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def do_GET(self) -> None:
                fake.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake.handle(self, json.loads(self.rfile.read(length) or b"null"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeVLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    def bodies(self, path: str) -> list[Any]:
        return [r["body"] for r in self.requests if r["path"] == path]

    # ------------------------------------------------------------------------------------------------ answers

    def handle(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        path = handler.path
        with self.lock:
            self.requests.append(
                {"method": handler.command, "path": path, "body": body, "headers": dict(handler.headers)}
            )
        if self.mode == "http500":
            return self.send(handler, 500, {"error": {"message": "engine crashed"}})
        if path == "/health":
            return self.send(handler, 200, None)
        if path == "/v1/models":
            return self.send(handler, 200, {"object": "list", "data": [{"id": self.served, "object": "model"}]})
        if path == "/v1/chat/completions":
            if self.mode == "notjson":
                return self.send(handler, 200, b"<html>proxy error</html>")
            return self.send(handler, 200, self.chat(body))
        if path.startswith("/server_info"):
            transfer = None if self.mode == "no_transfer" else {"backend": "nccl"}
            return self.send(handler, 200, {"vllm_config": {"weight_transfer_config": transfer}})
        if path == "/get_world_size":
            return self.send(handler, 200, {"world_size": 1})
        if path in ("/init_weight_transfer_engine", "/start_weight_update", "/update_weights", "/finish_weight_update"):
            return self.send(handler, 200, {"status": "ok"})
        if path == "/reset_prefix_cache":
            return self.send(handler, 200, None)
        if path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            return self.send(handler, 200, b"Success: LoRA adapter updated.")  # vLLM answers plain text
        return self.send(handler, 404, {"detail": "Not Found"})

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        n = body["n"] - 1 if self.mode == "wrong_n" else body["n"]
        choices = []
        for g in range(n):
            ids, text = self.script(body, g)
            choice: dict[str, Any] = {
                "index": g,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": f"token_id:{i}", "logprob": -0.5, "top_logprobs": []} for i in ids]},
            }
            if self.mode == "text_only":
                choice["logprobs"] = None
            elif self.mode != "logprob_ids":
                choice["token_ids"] = ids
            choices.append(choice)
        choices.reverse()  # the client must order choices by index
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": choices}
        if self.mode == "ok":
            answer["prompt_token_ids"] = [1, 2, 3]  # not the policy's prompt: the trainer warns once
        return answer

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        raw = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
