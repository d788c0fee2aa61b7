"""The judge client: an external model behind an OpenAI-compatible chat-completions API (Silkie / GPT-4V style).

    config = JudgeConfig(base_url="http://127.0.0.1:8000/v1", model="judge", cache_path="out/judge.sqlite")
    with JudgeClient(config) as judge:
        texts = judge.complete_many([messages_1, messages_2])   # OpenAI-format messages, images as data URLs

Requests run on ``max_concurrency`` threads with a progress bar; every answer is stored in a SQLite cache
(:mod:`mmalign.judge.cache`) as soon as it arrives, so a rerun, or a run after a crash, only pays for the
judgments it does not have yet. Identical requests in one batch are sent once.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError, DataError
from mmalign.judge.cache import JudgeCache, judgment_key
from mmalign.judge.transport import (
    ChatTransport,
    JudgeAuthError,
    JudgeError,
    JudgeStats,
    display_url,
    parse_chat_completion,
)

log = logging.getLogger("mmalign.judge")

Messages = list[dict[str, Any]]
"""One conversation in OpenAI chat format: ``[{"role": "user", "content": [...parts]}, ...]``."""

_RESERVED_BODY_KEYS = frozenset({"model", "messages", "stream", "n"})


@dataclass
class JudgeConfig:
    """Where the judge lives and how to call it. The API key is never part of a config: only its variable name."""

    base_url: str = option(
        "https://api.openai.com/v1",
        "Base URL of the OpenAI-compatible API, up to the version (…/v1); requests go to <base_url>/chat/completions.",
    )
    model: str = option("", "Judge model name as the server knows it (e.g. gpt-4o). Required.")
    api_key_env: str | None = option(
        "OPENAI_API_KEY",
        "Environment variable holding the API key, sent as a Bearer token. If it is unset no key is sent (fine "
        "for a local server without auth); null: never send one. The key is never logged, cached or shown.",
    )
    max_concurrency: int = option(4, "Requests in flight at once, at most.", ge=1)
    timeout_s: float = option(
        60.0, "Seconds one request may take (connect, wait, read) before it counts as failed.", gt=0
    )
    max_retries: int = option(
        5,
        "Retries of one request after HTTP 408/409/429/5xx, a timeout or a dropped connection (not 400/401/403).",
        ge=0,
    )
    backoff_s: float = option(
        1.0, "Delay before the first retry in seconds; it doubles with each retry (jittered).", ge=0
    )
    max_backoff_s: float = option(
        60.0, "Longest wait between retries; also caps what a server's Retry-After asks.", ge=0
    )
    temperature: float | None = option(0.0, "Sampling temperature sent to the judge; null: the server's default.", ge=0)
    max_tokens: int | None = option(
        1024,
        "Most tokens the judge may write; null: not sent (models wanting max_completion_tokens: extra_body).",
        ge=1,
    )
    seed: int | None = option(None, "Sampling seed sent to the judge, where the server supports it; null: none.")
    extra_body: dict[str, Any] = option(
        {}, "More request fields sent as they are, e.g. {max_completion_tokens: 2048}. Part of the cache key."
    )
    cache_path: str | None = option(
        None, "SQLite file that keeps every judgment, so reruns never pay twice; null: no cache (not advised)."
    )
    progress: bool = option(True, "Show a progress bar (on a terminal) while judging.")

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"judge base_url must be an http(s) URL like https://host/v1, got {self.base_url!r}")
        if parts.username or parts.password or parts.query:
            raise ConfigError("judge base_url must not hold credentials or a query: the key comes from api_key_env")
        check_ranges(self, prefix="judge.")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError(f"judge max_backoff_s ({self.max_backoff_s}) is below backoff_s ({self.backoff_s})")
        reserved = sorted(_RESERVED_BODY_KEYS & set(self.extra_body))
        if reserved:
            raise ConfigError(f"judge extra_body may not set {', '.join(reserved)} (the client sets or forbids them)")
        for name in ("temperature", "max_tokens", "seed"):
            if name in self.extra_body and getattr(self, name) is not None:
                raise ConfigError(f"judge: can't set both {name} and extra_body.{name}")

    def sampling_params(self) -> dict[str, Any]:
        """The request fields besides model and messages (also part of every cache key)."""
        params: dict[str, Any] = {}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.seed is not None:
            params["seed"] = self.seed
        params.update(self.extra_body)
        return params


class JudgeClient:
    """Calls the judge with bounded concurrency, retries and a cache. Usable from several threads at once."""

    def __init__(self, config: JudgeConfig, *, cache: JudgeCache | None = None) -> None:
        if not config.model:
            raise ConfigError("judge model is not set (judge.model)")
        self.config = config
        self.endpoint = config.base_url.rstrip("/") + "/chat/completions"
        self.stats = JudgeStats()
        self.transport = ChatTransport(
            self.endpoint,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            stats=self.stats,
        )
        self.cache = cache if cache is not None else (JudgeCache(config.cache_path) if config.cache_path else None)
        self._slots = threading.BoundedSemaphore(config.max_concurrency)

    def __repr__(self) -> str:
        return f"JudgeClient(model={self.config.model!r}, url={display_url(self.endpoint)!r}, cache={self.cache!r})"

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def key(self, messages: Messages, rubric_version: str = "") -> str:
        """The cache key of ``messages`` sent to this judge."""
        return judgment_key(
            base_url=self.config.base_url,
            model=self.config.model,
            messages=messages,
            params=self.config.sampling_params(),
            rubric_version=rubric_version,
        )

    def complete(self, messages: Messages, *, rubric_version: str = "") -> str:
        """The judge's answer to one conversation."""
        return self.complete_many([messages], rubric_version=rubric_version, progress=False)[0]  # type: ignore[return-value]

    def complete_many(
        self,
        conversations: list[Messages],
        *,
        rubric_version: str = "",
        return_errors: bool = False,
        progress: bool | None = None,
        desc: str = "judge",
    ) -> list[str] | list[str | JudgeError]:
        """The judge's answers, in order. Cached answers cost nothing; the others are requested in parallel.

        ``rubric_version`` goes into the cache key (bump it when a rubric changes meaning but not text).
        On a failure the first error is raised once running requests finish (their answers are cached);
        with ``return_errors=True`` a failed conversation gets its :class:`JudgeError` in the list instead
        and the others go on, except on an auth failure, which always stops the run.
        """
        for i, messages in enumerate(conversations):
            _check_messages(messages, i)
        keys = [self.key(m, rubric_version) for m in conversations]
        results: list[Any] = [None] * len(conversations)
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        if cached:  # scrubbed again: a cache written before the key was scrubbed may hold it
            cached = {k: self.transport.scrub(v) for k, v in cached.items()}
        todo: dict[str, int] = {}  # key -> first index with it
        for i, key in enumerate(keys):
            if key in cached:
                results[i] = cached[key]
            else:
                todo.setdefault(key, i)
        self.stats.add(cache_hits=len(conversations) - sum(1 for k in keys if k in todo))
        answers = self._run(todo, conversations, return_errors, progress, desc) if todo else {}
        for i, key in enumerate(keys):
            if results[i] is None:
                results[i] = answers[key]
        n_new = sum(1 for a in answers.values() if isinstance(a, str))
        log.info(
            "%s: %d judgments, %d from cache, %d new, %d failed (%d HTTP requests so far, %d retries)",
            desc,
            len(keys),
            len(keys) - len(todo),
            n_new,
            len(answers) - n_new,
            self.stats.attempts,
            self.stats.retries,
        )
        return results

    def _run(
        self,
        todo: dict[str, int],
        conversations: list[Messages],
        return_errors: bool,
        progress: bool | None,
        desc: str,
    ) -> dict[str, str | JudgeError]:
        show = self.config.progress if progress is None else progress
        answers: dict[str, str | JudgeError] = {}
        pool = ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(todo)), thread_name_prefix="judge")
        bar = tqdm(total=len(todo), desc=desc, unit="req", disable=None if show else True, leave=False)
        failure: BaseException | None = None
        try:
            futures: dict[Future[str], str] = {
                pool.submit(self._request, key, conversations[i]): key for key, i in todo.items()
            }
            pending = set(futures)
            while pending and failure is None:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is None:
                        answers[futures[future]] = future.result()
                    elif return_errors and isinstance(error, JudgeError) and not isinstance(error, JudgeAuthError):
                        answers[futures[future]] = error
                    elif failure is None:
                        failure = error
                    bar.update(1)
        except BaseException as err:  # KeyboardInterrupt: stop queued requests, keep what is cached
            failure = err
        finally:
            bar.close()
            # Queued requests are dropped; running ones finish and land in the cache (a rerun will not pay).
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure
        return answers

    def _request(self, key: str, messages: Messages) -> str:
        payload = {"model": self.config.model, "messages": messages, **self.config.sampling_params()}
        scrub = self.transport.scrub
        try:
            with self._slots:
                data = self.transport.post(payload)
            text, usage = parse_chat_completion(data, self.transport.where)
        except JudgeError as err:  # a message quoting what the server said: never with the key in it
            raise type(err)(scrub(str(err)), status=err.status) from None
        # A server may echo the key or the Authorization header back: what is cached and returned never has it.
        text = scrub(text)
        if self.cache is not None:
            model = scrub(str(data.get("model") or self.config.model))
            self.cache.put(key, text, model=model, usage=_counts(usage))
        tokens = usage or {}
        self.stats.add(
            completed=1,
            prompt_tokens=_int(tokens.get("prompt_tokens")),
            completion_tokens=_int(tokens.get("completion_tokens")),
        )
        return text


def _counts(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """The token counts of a ``usage`` object (numbers, and nested objects of numbers): nothing else is kept."""
    if not usage:
        return None
    out: dict[str, Any] = {}
    for name, value in usage.items():
        if isinstance(value, dict):
            value = _counts(value)
        if isinstance(value, int | float | dict) and not isinstance(value, bool):
            out[str(name)] = value
    return out or None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_messages(messages: Any, index: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise DataError("a judge conversation must be a non-empty list of messages", index=index, field="messages")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise DataError("each judge message needs a 'role' and a 'content'", index=index, field="messages")
        content = m["content"]
        if not isinstance(content, str | list):
            raise DataError("a message's content must be a string or a list of parts", index=index, field="messages")
