"""A local SQLite cache of judge completions, so a rerun or a crash never pays for the same judgment twice.

A judgment is keyed by a SHA-256 of everything that determines it: the endpoint, the model, the messages
(with each image's *bytes* hashed, so a re-encoded data URL of the same image still hits), the sampling
parameters and the rubric version. The cache stores only that key, the response text, the model name and
the token counts: never request headers, never the API key (the client scrubs what the server sent before it
is stored, :mod:`mmalign.judge.secrets`, even a reply that echoes the key).

The database runs in WAL mode and commits after every judgment, so a run killed halfway keeps every
judgment it had received; one connection is shared by the client's worker threads behind a lock, and
other processes may read and write the same file at once (SQLite's busy timeout waits for their locks).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    usage TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _image_digest(url: str) -> str:
    """``sha256:<hex>`` of the bytes in a base64 data URL; other URLs (http...) are kept as they are."""
    if not url.startswith("data:"):
        return url
    header, _, payload = url.partition(",")
    if header.endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            data = payload.encode()
    else:
        data = payload.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hash_images(value: Any) -> Any:
    """A copy of ``value`` (messages) with every ``image_url.url`` replaced by a digest of its image bytes."""
    if isinstance(value, list):
        return [_hash_images(v) for v in value]
    if isinstance(value, dict):
        out = {k: _hash_images(v) for k, v in value.items()}
        image_url = out.get("image_url")
        if isinstance(image_url, dict) and isinstance(image_url.get("url"), str):
            out["image_url"] = {**image_url, "url": _image_digest(image_url["url"])}
        elif isinstance(image_url, str):  # some servers accept the URL as a bare string
            out["image_url"] = _image_digest(image_url)
        return out
    return value


def judgment_key(
    *,
    base_url: str,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    rubric_version: str = "",
) -> str:
    """The cache key of one request: SHA-256 (hex) of a canonical JSON of what determines the response."""
    payload = {
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": _hash_images(messages),
        "params": params,
        "rubric_version": rubric_version,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgeCache:
    """Judge responses on disk, keyed by :func:`judgment_key`. Safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise ConfigError(
                    f"judge cache {self.path} has schema version {row[0]}, this mmalign writes {SCHEMA_VERSION}: "
                    "use another cache_path"
                )
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"judge cache {self.path} is not a usable SQLite database: {err}") from None

    def get(self, key: str) -> str | None:
        """The cached response for ``key``, or None."""
        with self._lock:
            row = self._conn.execute("SELECT response FROM judgments WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """Cached responses for those of ``keys`` that are present."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, response FROM judgments WHERE key IN ({marks})", chunk)
                found.update(dict(rows.fetchall()))
        return found

    def put(self, key: str, response: str, *, model: str, usage: dict[str, Any] | None = None) -> None:
        """Store one judgment and commit at once (autocommit), so a crash right after keeps it."""
        usage_text = json.dumps(usage, sort_keys=True) if usage else None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judgments (key, model, response, usage, created_at) VALUES (?, ?, ?, ?, ?)",
                (key, model, response, usage_text, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"
