"""``mmalign train sft`` (being written)."""

from __future__ import annotations


def sft() -> None:
    """Not yet available."""
    raise SystemExit("mmalign train sft: not yet available")
