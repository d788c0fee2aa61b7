"""``mmalign demo``: the whole pipeline on the embedded default."""

from __future__ import annotations


def demo() -> None:
    """Run the demo."""
    raise SystemExit("not yet")
