"""One chat-completions request over the standard library, with retries, backoff, timeouts and clear errors.

Retried: HTTP 408, 409, 429 and 5xx answers, timeouts and dropped connections (what the OpenAI client
retries), waiting ``backoff_s * 2**attempt`` with jitter, or what the server's ``Retry-After`` (or
``retry-after-ms``) asks, capped at ``max_backoff_s``. Not retried: 401/403 (:class:`JudgeAuthError`),
other 4xx and redirects (:class:`JudgeRequestError`: a redirect would carry the key to another host),
malformed 200 answers (:class:`JudgeResponseError`). Retries exhausted: :class:`JudgeUnavailableError`.

The API key is read from the environment at each request and never kept, logged or put in an error:
text that comes back from the server is scrubbed of it (:mod:`mmalign.judge.secrets`) before it is shown.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from mmalign.errors import MMAlignError
from mmalign.judge.secrets import env_secret, scrub

log = logging.getLogger("mmalign.judge")

RETRY_STATUSES = frozenset({408, 409, 429})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class JudgeError(MMAlignError):
    """A judge request failed; the message names the endpoint, the status and the server's reason."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JudgeAuthError(JudgeError):
    """HTTP 401/403: the key is missing, wrong, or lacks access. Never retried."""


class JudgeRequestError(JudgeError):
    """The server refused the request itself (400, 404, 422, a redirect...). Never retried."""


class JudgeResponseError(JudgeError):
    """The server answered 200 with something that is not a chat completion with text."""


class JudgeUnavailableError(JudgeError):
    """Every attempt failed with a retryable error (429/5xx, timeout, connection): the last one is named."""


@dataclass
class JudgeStats:
    """What the judge cost: counts are updated from worker threads under a lock."""

    cache_hits: int = 0
    completed: int = 0
    """New judgments received (and cached) in this session."""
    attempts: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class _Retryable(Exception):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a 429/503 answer asks for: ``retry-after-ms``, then ``Retry-After`` (seconds or HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatTransport:
    """POSTs JSON to one chat-completions endpoint with retries; thread-safe."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key_env: str | None,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        stats: JudgeStats,
        label: str = "judge",
    ) -> None:
        self.endpoint = endpoint
        self.where = f"{label} at {display_url(endpoint)}"
        self.api_key_env = api_key_env or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = stats
        self.sleep = time.sleep
        self._random = random.Random()
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if urllib.parse.urlsplit(endpoint).hostname in LOOPBACK_HOSTS:
            handlers.append(urllib.request.ProxyHandler({}))  # a server on this machine is never behind a proxy
        self._opener = urllib.request.build_opener(*handlers)

    def _api_key(self) -> str | None:
        return env_secret(self.api_key_env)

    def scrub(self, text: str) -> str:
        """``text`` without the API key (in any of its encodings) or any Authorization value: see :mod:`.secrets`."""
        return scrub(text, [self._api_key()])

    def post(self, payload: dict[str, Any], *, text_ok: bool = False) -> dict[str, Any]:
        """Send ``payload``; retry what is worth retrying; return the decoded JSON answer (``text_ok``: a 200
        answer that is not a JSON object, as control endpoints answer plain text or nothing, is ``{}``)."""
        return self._send(json.dumps(payload, ensure_ascii=False).encode("utf-8"), text_ok)

    def get(self, *, text_ok: bool = False) -> dict[str, Any]:
        """GET the endpoint (a server's health or model list), retried as :meth:`post`; the decoded JSON answer."""
        return self._send(None, text_ok)

    def _send(self, body: bytes | None, text_ok: bool) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body, text_ok)
            except _Retryable as failure:
                if attempt == self.max_retries:
                    tries = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                    raise JudgeUnavailableError(
                        f"{self.where}: gave up after {tries}: {failure}", status=failure.status
                    ) from None
                delay = self._delay(attempt, failure.retry_after)
                log.info("%s: %s; retry %d/%d in %.2f s", self.where, failure, attempt + 1, self.max_retries, delay)
                self.stats.add(retries=1)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        # Exponential backoff with jitter (half fixed, half random) so parallel workers do not retry in step.
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return base * (0.5 + 0.5 * self._random.random())

    def _attempt(self, body: bytes | None, text_ok: bool = False) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "mmalign-judge"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method=method)
        self.stats.add(attempts=1)
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = _read_until(response, deadline, self.timeout_s)
        except urllib.error.HTTPError as err:
            self._raise_for_status(err.code, err.headers, _read_error_body(err))
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise JudgeRequestError(f"{self.where}: TLS certificate check failed: {reason}") from None
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g} s") from None
            raise _Retryable(f"could not connect: {reason}") from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.timeout_s:g} s") from None
        except (ConnectionError, OSError) as err:  # includes http.client errors raised as OSError subclasses
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from None
        except http.client.HTTPException as err:  # bad status line, incomplete read...
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if text_ok:
                return {}
            raise JudgeResponseError(
                f"{self.where}: answered HTTP 200 with a body that is not JSON: {self._snippet(raw)}"
            ) from None
        if not isinstance(data, dict):
            if text_ok:
                return {}
            raise JudgeResponseError(f"{self.where}: answered HTTP 200 with JSON that is not an object")
        return data

    def _raise_for_status(self, status: int, headers: Any, raw: bytes) -> None:
        reason = _error_message(raw) or self._snippet(raw) or "(no body)"
        reason = self.scrub(reason)
        if status in RETRY_STATUSES or status >= 500:
            raise _Retryable(f"HTTP {status}: {reason}", status=status, retry_after=retry_after_seconds(headers))
        if status in (401, 403):
            if self._api_key() is None:
                hint = (
                    f"no API key was sent: set the environment variable {self.api_key_env}"
                    if self.api_key_env
                    else "no API key was sent (api_key_env is null): set api_key_env to the variable holding it"
                )
            else:
                hint = f"the API key in ${self.api_key_env} was refused or lacks access"
            raise JudgeAuthError(f"{self.where}: HTTP {status}, {hint}: {reason}", status=status)
        if 300 <= status < 400:
            target = headers.get("location", "?") if headers is not None else "?"
            raise JudgeRequestError(
                f"{self.where}: redirected (HTTP {status}) to {display_url(target)}; set base_url to the final "
                "address (redirects are not followed, so the key never goes to another host)",
                status=status,
            )
        raise JudgeRequestError(f"{self.where}: HTTP {status}: {reason}", status=status)

    def _snippet(self, raw: bytes, limit: int = 300) -> str:
        text = self.scrub(raw.decode("utf-8", errors="replace").strip())
        return text if len(text) <= limit else text[:limit] + "..."


def _read_until(response: Any, deadline: float, timeout_s: float) -> bytes:
    """Read the whole body, failing as a timeout once ``deadline`` passes (a server that trickles bytes)."""
    chunks: list[bytes] = []
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s")
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _read_error_body(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read()[:4096]
    except Exception:  # a broken connection while reading an error body: the status is enough
        return b""


def _error_message(raw: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, if it has one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:300]
    if isinstance(error, str):
        return error[:300]
    return ""


def parse_chat_completion(data: dict[str, Any], where: str) -> tuple[str, dict[str, Any] | None]:
    """(text of the first choice, usage) from a chat-completions answer; :class:`JudgeResponseError` if none."""
    if "choices" not in data and "error" in data:
        message = _error_message(json.dumps(data).encode()) or str(data["error"])[:300]
        raise JudgeResponseError(f"{where}: answered HTTP 200 with an error: {message}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise JudgeResponseError(f"{where}: answer has no 'choices' (keys: {sorted(data)})")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise JudgeResponseError(f"{where}: answer's first choice has no 'message'")
    content = message.get("content")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str) or not content.strip():
        finish = choice.get("finish_reason")
        if message.get("refusal"):
            raise JudgeResponseError(f"{where}: the judge refused: {str(message['refusal'])[:300]}")
        hint = " (raise max_tokens: it ran out before writing text)" if finish == "length" else ""
        raise JudgeResponseError(f"{where}: answer has no text (finish_reason={finish!r}){hint}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    return content, usage
