"""What one input may cost at most: pixels per image, bytes per JSONL line. Each limit is defined here once.

This module imports nothing heavy (no PIL), so the CLI and the configs can name the defaults at start-up.
"""

from __future__ import annotations

import os

from mmalign.errors import ConfigError

DEFAULT_MAX_PIXELS = 89_478_485
"""Largest width × height accepted by default: PIL's own warning threshold (about 9459 × 9459). Larger images
are refused from their header, before any pixel is decompressed (decompression bombs)."""

DEFAULT_MAX_LINE_BYTES = 16 * 2**20
"""Largest JSONL line (one record) read by default: 16 MiB. A longer line is a located error, read no further
than the limit, so one bad line never takes memory in proportion to its size."""

MAX_LINE_BYTES_ENV = "MMALIGN_MAX_LINE_BYTES"
"""Environment variable that overrides :data:`DEFAULT_MAX_LINE_BYTES` everywhere records are read."""


def max_line_bytes() -> int:
    """The JSONL line limit in force: ``$MMALIGN_MAX_LINE_BYTES`` when set, else :data:`DEFAULT_MAX_LINE_BYTES`."""
    value = os.environ.get(MAX_LINE_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_LINE_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ConfigError(f"{MAX_LINE_BYTES_ENV} must be a positive number of bytes, got {value!r}")
    return limit
