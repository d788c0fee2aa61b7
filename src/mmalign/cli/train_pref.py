"""``mmalign train pref`` (being written)."""

from __future__ import annotations


def pref() -> None:
    """Not yet available."""
    raise SystemExit("mmalign train pref: not yet available")
