"""What the three reward-model benchmark scorers share: reading their JSON-lines files and reward pairs.

The benchmarks themselves are in :mod:`.rewardbench_vl` (VL-RewardBench), :mod:`.rewardbench_multimodal`
(Multimodal RewardBench) and :mod:`.rewardbench_mmrlhf` (MM-RLHF-RewardBench).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmalign.errors import DataError
from mmalign.eval.metrics.official import read_jsonl


def read_json_lines(path: str | Path, *, allow_null: bool = False) -> list[tuple[int, dict[str, Any] | None]]:
    """(line number, object) for each non-blank line of ``path``.

    Bad JSON, or a value that is not an object, is a :class:`DataError` naming the line; ``null`` lines are kept
    as ``None`` when ``allow_null`` (VL-RewardBench's script skips them, after they took part in its shuffle).
    """
    rows = read_jsonl(path, allow_null=allow_null)
    if not rows:
        raise DataError("no predictions in the file", file=path)
    return rows


def reward_pair(obj: dict[str, Any], where: dict[str, Any], key: str = "rewards") -> tuple[float, float]:
    """``obj[key]`` as two numbers: a list ``[first, second]`` of ints or floats (not NaN)."""
    value = obj.get(key)
    if not (isinstance(value, list) and len(value) == 2):
        raise DataError("must be a list of two rewards", field=key, **where)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise DataError(f"rewards must be numbers, got {v!r}", field=key, **where)
    return float(value[0]), float(value[1])


def text_field(obj: dict[str, Any], key: str, where: dict[str, Any]) -> str:
    """``obj[key]``, which must be a string."""
    if key not in obj:
        raise DataError("missing", field=key, **where)
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", field=key, **where)
    return value
