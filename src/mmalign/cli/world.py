"""``mmalign world``: generate the shapes world (filled by the world module)."""

from __future__ import annotations


def world() -> None:
    """Generate a shapes-world dataset."""
    raise SystemExit("not yet")
