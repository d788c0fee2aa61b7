"""Timing helpers the bench scripts share (each script runs as ``python bench/NAME.py``, so this folder is on
``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rate(run: Callable[[], object], items: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs (after one warm-up run)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return items / best
