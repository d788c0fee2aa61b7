"""What one input may cost at most: pixels per image (and per video frame), frames and seconds per video, bytes
per JSONL line (or text cell), bytes per JSON file read whole. Each limit is defined here once.

This module imports nothing heavy (no PIL), so the CLI and the configs can name the defaults at start-up.
"""

from __future__ import annotations

import os

from mmalign.errors import ConfigError

DEFAULT_MAX_PIXELS = 89_478_485
"""Largest width × height accepted by default: PIL's own warning threshold (about 9459 × 9459). Larger images
are refused from their header, before any pixel is decompressed (decompression bombs)."""

DEFAULT_MAX_VIDEO_FRAMES = 100_000
"""Most frames a video may hold (from its header, and counted again while decoding): about an hour at 30 fps.
Every frame is decoded to reach the sampled ones, so this bounds the time one video may take."""

DEFAULT_MAX_VIDEO_SECONDS = 3600.0
"""Longest video accepted by default (its duration from the header, else frames / rate): one hour."""

DEFAULT_MAX_LINE_BYTES = 16 * 2**20
"""Largest JSONL line (one record) read by default: 16 MiB. A longer line is a located error, read no further
than the limit, so one bad line never takes memory in proportion to its size."""

MAX_LINE_BYTES_ENV = "MMALIGN_MAX_LINE_BYTES"
"""Environment variable that overrides :data:`DEFAULT_MAX_LINE_BYTES` everywhere records are read."""


DEFAULT_MAX_JSON_BYTES = 2 * 2**30
"""Largest whole JSON document read by default (a ``.json`` import source, COCO annotations, a manifest): 2 GiB.
Such a file is parsed in one piece, costing several times its size in memory; a larger one is refused before
it is read (JSONL is read a line at a time)."""

MAX_JSON_BYTES_ENV = "MMALIGN_MAX_JSON_BYTES"
"""Environment variable that overrides :data:`DEFAULT_MAX_JSON_BYTES`."""


def max_line_bytes() -> int:
    """The JSONL line limit in force: ``$MMALIGN_MAX_LINE_BYTES`` when set, else :data:`DEFAULT_MAX_LINE_BYTES`.
    It also bounds one text cell of a Parquet file or ``datasets`` directory (one record's worth of text)."""
    return _limit(MAX_LINE_BYTES_ENV, DEFAULT_MAX_LINE_BYTES)


def max_json_bytes() -> int:
    """The whole-JSON limit in force: ``$MMALIGN_MAX_JSON_BYTES`` when set, else :data:`DEFAULT_MAX_JSON_BYTES`."""
    return _limit(MAX_JSON_BYTES_ENV, DEFAULT_MAX_JSON_BYTES)


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env, "").strip()
    if not value:
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ConfigError(f"{env} must be a positive number of bytes, got {value!r}")
    return limit


DEFAULT_MAX_FRAMES = 256
"""Most frames one video may bring into a record by default: listed in ``frames`` or sampled from a file (a
``sampling`` asking for more is refused when the record is read). Each frame is an image, checked against the
pixel limit like any other."""

DEFAULT_MAX_VIDEO_SECONDS = 3600.0
"""Longest video file read by default (from the container's header, before any frame is decoded)."""
