"""GRPO rollouts from an external vLLM server (``grpo.rollout: server``): where it is, how to ask it, how to sync it.

    client = ServerClient(RolloutServerConfig(base_url="http://10.0.0.2:8000"))
    groups = client.sample(prompts, root, group_size=8, sampling=options.sampling(), seed=7, tokenizer=tok)

Both protocols ask for completions the same way: one ``POST /v1/chat/completions`` per prompt with ``n`` = G, the
prompt's messages in OpenAI form (each image a ``data:image/png;base64`` URL, in the order of the prompt's image
parts), the sampling options (``temperature``, ``top_p``, ``max_tokens``, a per-request ``seed``; ``top_k`` when
set) and ``logprobs``. They differ in what they need of the server:

- ``trl``: what TRL 1.16's ``VLLMClient.chat`` speaks to ``trl vllm-serve`` (since TRL 1.x that is ``vllm serve`` in
  dev mode with the NCCL weight-transfer engine): ``return_token_ids`` and ``return_tokens_as_token_ids`` are sent
  and the answer must carry each choice's ``token_ids`` (vLLM >= 0.10.2), used as they are. Weights are pushed over
  NCCL (:mod:`mmalign.train.weight_sync`).
- ``openai``: any OpenAI-compatible server. With ``request_token_ids`` (vLLM) the same extensions are asked and the
  ids come from ``token_ids``, else from ``logprobs.content[].token`` (``"token_id:<id>"``); a server that gives
  neither (or ``request_token_ids: false``) has its text tokenized with the policy's tokenizer, which may differ
  from the tokens it sampled (said once in the log). Weights: a LoRA adapter loaded by name, or none.

Every token id is checked before the update (:mod:`mmalign.models.rollout_ids`). The API key, if any, is read from
the environment variable ``api_key_env`` names at each request and never logged or written (the judge's transport).
"""

from __future__ import annotations

import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmalign.config import check_ranges, option
from mmalign.data.images import load_images
from mmalign.errors import ConfigError, MMAlignError
from mmalign.judge.prompts import image_data_url
from mmalign.judge.transport import ChatTransport, JudgeError, JudgeStats
from mmalign.models.rollout import SamplingOptions
from mmalign.models.rollout_ids import Completion
from mmalign.train.prompts import Prompt

log = logging.getLogger("mmalign.train")

SYNC_MODES = ("nccl", "lora", "none")


class RolloutServerError(MMAlignError):
    """The rollout server could not be reached, refused a request, or answered something unusable."""


@dataclass
class RolloutServerConfig:
    """An external vLLM server that samples the rollouts (``grpo.rollout: server``)."""

    base_url: str = option("http://127.0.0.1:8000", "The server's root URL (requests go to <base_url>/v1/...).")
    protocol: Literal["trl", "openai"] = option(
        "trl", "trl: vLLM in dev mode as `trl vllm-serve` runs it (token ids, NCCL sync); openai: any OpenAI server."
    )
    model: str = option("", "The served model's name; empty: the first one GET /v1/models lists.")
    api_key_env: str | None = option(
        None, "Environment variable holding an API key, sent as a Bearer token; never logged. null: none sent."
    )
    request_token_ids: bool = option(
        True, "openai: ask for the sampled token ids (vLLM's return_token_ids); false: tokenize the text here."
    )
    timeout_s: float = option(600.0, "Seconds one request may take.", gt=0)
    max_retries: int = option(2, "Retries after a timeout, a dropped connection or HTTP 408/409/429/5xx.", ge=0)
    backoff_s: float = option(1.0, "Wait before the first retry in seconds, doubled each retry.", ge=0)
    max_concurrency: int = option(8, "Prompts asked at once (one request per prompt, n = group_size).", ge=1)
    sync: Literal["auto", "nccl", "lora", "none"] = option(
        "auto",
        "Weight sync: nccl (trl), lora (openai: save the adapter, /v1/load_lora_adapter), none (the server keeps "
        "its starting weights: off-policy). auto: nccl for trl, lora for openai with model.lora.",
    )
    sync_steps: int = option(1, "Sync the server every this many optimiser steps.", ge=1)
    adapter_dir: str | None = option(
        None, "lora sync: where adapters are saved, a path the server can read; null: <output_dir>/server-adapters."
    )
    nccl_port: int = option(51216, "nccl sync: the port of the weight-update group (TRL's group_port).", ge=1, le=65535)
    master_address: str | None = option(
        None, "nccl sync: this machine's address as the server reaches it; null: the address on the route to base_url."
    )

    def __post_init__(self) -> None:
        check_ranges(self, prefix="grpo.server.")
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"grpo.server.base_url must be an http(s) URL, got {self.base_url!r}")
        if parts.path.rstrip("/").endswith("/v1"):
            raise ConfigError("grpo.server.base_url: give the server's root, without /v1 (requests add /v1/...)")
        if self.protocol == "trl" and not self.request_token_ids:
            raise ConfigError("grpo.server.request_token_ids: the trl protocol always uses the server's token ids")

    def sync_mode(self, lora: bool) -> str:
        """The weight sync this config asks for with the policy as it is (``lora``: model.lora.enabled)."""
        mode = self.sync
        if mode == "auto":
            if self.protocol == "trl":
                mode = "nccl"
            elif lora:
                mode = "lora"
            else:
                raise ConfigError(
                    "grpo.server.sync: the openai protocol can sync only a LoRA adapter: enable model.lora, or set "
                    "sync: none (the server keeps its starting weights and the rollouts are off-policy)"
                )
        if mode == "nccl" and self.protocol != "trl":
            raise ConfigError("grpo.server.sync nccl needs protocol trl (vLLM's weight-transfer endpoints)")
        if mode == "lora" and self.protocol != "openai":
            raise ConfigError("grpo.server.sync lora needs protocol openai (/v1/load_lora_adapter); trl syncs by nccl")
        if mode == "lora" and not lora:
            raise ConfigError("grpo.server.sync lora needs model.lora.enabled (only the adapter is sent)")
        return mode


class ServerClient:
    """HTTP calls to one server, retried as the judge's are; errors are :class:`RolloutServerError`."""

    def __init__(self, config: RolloutServerConfig) -> None:
        self.config = config
        self.root = config.base_url.rstrip("/")
        self.model = config.model
        self.stats = JudgeStats()
        self._transports: dict[str, ChatTransport] = {}
        self._said_tokenized = False
        self.prompt_ids: list[list[int] | None] = []
        """Per prompt of the last :meth:`sample`, the prompt's token ids as the server rendered them (vLLM's
        ``prompt_token_ids``; None: not given)."""

    def _transport(self, path: str) -> ChatTransport:
        if path not in self._transports:
            c = self.config
            self._transports[path] = ChatTransport(
                self.root + path,
                api_key_env=c.api_key_env,
                timeout_s=c.timeout_s,
                max_retries=c.max_retries,
                backoff_s=c.backoff_s,
                max_backoff_s=max(c.backoff_s, 60.0),
                stats=self.stats,
                label="rollout server",
            )
        return self._transports[path]

    def get(self, path: str, *, text_ok: bool = False) -> dict[str, Any]:
        try:
            return self._transport(path).get(text_ok=text_ok)
        except JudgeError as err:
            raise RolloutServerError(str(err)) from None

    def post(self, path: str, payload: dict[str, Any], *, text_ok: bool = False) -> dict[str, Any]:
        try:
            return self._transport(path).post(payload, text_ok=text_ok)
        except JudgeError as err:
            raise RolloutServerError(str(err)) from None

    def connect(self) -> None:
        """Check the server answers ``GET /health`` and learn the served model's name if none is configured."""
        self.get("/health", text_ok=True)
        if not self.model:
            listed = self.get("/v1/models").get("data")
            if not isinstance(listed, list) or not listed or not isinstance(listed[0], dict) or "id" not in listed[0]:
                raise RolloutServerError(f"rollout server at {self.root}/v1/models lists no model (set server.model)")
            self.model = str(listed[0]["id"])

    # ------------------------------------------------------------------------------------------------ sampling

    def sample(
        self,
        prompts: list[Prompt],
        root: Path | None,
        group_size: int,
        sampling: SamplingOptions,
        seed: int,
        tokenizer: Any,
    ) -> list[list[Completion]]:
        """``group_size`` completions per prompt, in order, as the server returned them."""

        def ask(index: int) -> tuple[list[Completion], Any]:
            prompt = prompts[index]
            payload = self.request(prompt, root, group_size, sampling, (seed + index) % 2**31)
            answer = self.post("/v1/chat/completions", payload)
            return self.parse(answer, prompt.id, group_size, tokenizer), answer.get("prompt_token_ids")

        workers = min(self.config.max_concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = list(pool.map(ask, range(len(prompts))))
        self.prompt_ids = [ids if isinstance(ids, list) else None for _, ids in answers]
        return [group for group, _ in answers]

    def request(
        self, prompt: Prompt, root: Path | None, group_size: int, sampling: SamplingOptions, seed: int
    ) -> dict[str, Any]:
        """The chat-completions body for ``group_size`` completions of ``prompt``."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(prompt, root),
            "n": group_size,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": seed,
            "logprobs": True,
            "top_logprobs": 0,
        }
        if sampling.top_k > 0:
            payload["top_k"] = sampling.top_k  # a vLLM extension: sent only when it cuts
        if self.config.request_token_ids:
            payload.update(return_token_ids=True, return_tokens_as_token_ids=True)
        return payload

    def parse(self, answer: dict[str, Any], prompt_id: str, group_size: int, tokenizer: Any) -> list[Completion]:
        """The completions of one answer, in ``index`` order; errors name the prompt."""
        where = f"rollout server at {self.root}/v1/chat/completions, prompt {prompt_id!r}"
        choices = answer.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise RolloutServerError(f"{where}: the answer has no list of 'choices' (keys: {sorted(answer)})")
        if len(choices) != group_size:
            raise RolloutServerError(f"{where}: asked for n={group_size} completions, got {len(choices)}")
        choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
        return [self._completion(c, f"{where}, choice {i}", tokenizer) for i, c in enumerate(choices)]

    def _completion(self, choice: dict[str, Any], where: str, tokenizer: Any) -> Completion:
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise RolloutServerError(f"{where}: message.content is not text")
        entries = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        logps = _entry_logps(entries, where)
        ids = choice.get("token_ids")
        if ids is None and entries is not None and self.config.request_token_ids:
            ids = _entry_ids(entries, where)
        if ids is None:
            if self.config.protocol == "trl":
                raise RolloutServerError(
                    f"{where}: no 'token_ids' in the answer: the trl protocol needs vLLM >= 0.10.2 (return_token_ids)"
                )
            if not self._said_tokenized:
                log.warning("rollout server gives no token ids: its texts are tokenized with the policy's tokenizer")
                self._said_tokenized = True
            ids, logps = tokenizer(text, add_special_tokens=False)["input_ids"], None
        if not isinstance(ids, list):
            raise RolloutServerError(f"{where}: 'token_ids' is not a list")
        if logps is not None and len(logps) != len(ids):
            logps = None  # logprobs of another tokenization (or cut): not the ids' own
        finished = choice.get("finish_reason") != "length"
        return Completion(token_ids=ids, text=text, finished=finished, logps=logps)


def _entry_logps(entries: Any, where: str) -> list[float] | None:
    if not isinstance(entries, list):
        return None
    try:
        return [float(e["logprob"]) for e in entries]
    except (KeyError, TypeError, ValueError):
        raise RolloutServerError(f"{where}: malformed logprobs.content (each entry needs a 'logprob')") from None


def _entry_ids(entries: list[Any], where: str) -> list[int] | None:
    """Ids from ``"token_id:<id>"`` tokens (vLLM's return_tokens_as_token_ids); None if they are not in that form."""
    ids: list[int] = []
    for entry in entries:
        token = entry.get("token") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not token.startswith("token_id:"):
            return None
        try:
            ids.append(int(token.removeprefix("token_id:")))
        except ValueError:
            raise RolloutServerError(f"{where}: malformed token {token!r} in logprobs") from None
    return ids


def openai_messages(prompt: Prompt, root: Path | None) -> list[dict[str, Any]]:
    """``prompt``'s messages in OpenAI form: each ``{"type": "image"}`` part the next image as a PNG data URL."""
    images = iter(load_images(list(prompt.images), root, record_id=prompt.id) if prompt.images else [])
    out = []
    for message in prompt.prompt:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                image = next(images, None)
                if image is None:
                    raise RolloutServerError(f"prompt {prompt.id!r}: more image parts than images")
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        out.append({"role": message["role"], "content": parts})
    return out
