"""Keep the judge's API key out of everything mmalign stores or prints.

A judge server may echo what it received: the key in an error body ("Incorrect API key provided: sk-..."),
the ``Authorization`` header in a reply, a debugging proxy its request dump. Every text that comes back from
the judge goes through :func:`scrub` before it is cached, written to ``judgments/*.jsonl``, logged or put in
an error message:

    scrub(reply, secrets=[key])    # the key's value and its encodings -> "***", and so is what follows
                                   # "Authorization:" and any "Bearer <token>"

The key's value is replaced in its raw form and in the encodings a server or a log is likely to use: URL
(percent) encoding, JSON string escaping, and base64 (of the key alone and of the ``Bearer <key>`` header
value). A key shorter than :data:`MIN_SECRET_LENGTH` characters is no secret worth the name (a placeholder
such as "none" for a local server) and removing every occurrence of it would corrupt replies, so it is only
removed where it is an ``Authorization`` value, as any credential is. (A reply's prose that says
"authorization: ..." loses the word after it: judge replies about images have no reason to.)
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 8
"""Shorter keys are only removed as an Authorization value (see the module docstring)."""

# "Authorization: Bearer sk-...", "'authorization': 'sk-...'", "Authorization=Basic dXNlcjpwdw==": the value.
_AUTHORIZATION = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?[^\s\"',;}\]]+"
)
# A bearer token wherever it appears ("you sent Bearer sk-..."): 12 or more token characters with a digit (so
# "bearer" in prose is left alone).
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{12,}")


def encodings(secret: str) -> list[str]:
    """The forms of ``secret`` to remove: raw, URL-encoded, JSON-escaped, base64 (key and ``Bearer key``)."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
    for value in (secret, f"Bearer {secret}"):
        raw = value.encode("utf-8")
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = encoded.decode("ascii")
            forms.update({text, text.rstrip("=")})
    return sorted((f for f in forms if f), key=len, reverse=True)  # longest first: no partial replacement


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each secret (in each of its :func:`encodings`), every value after ``Authorization:`` and
    every bearer token replaced by ``***``."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            for form in encodings(secret):
                text = text.replace(form, MASK)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
    return _BEARER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def env_secret(name: str | None) -> str | None:
    """The value of the environment variable ``name`` (stripped), or None if it is unset, empty or unnamed."""
    if not name:
        return None
    return os.environ.get(name, "").strip() or None
